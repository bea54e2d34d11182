//! `sluice reconcile`: the daemon's flags and its start
//! ([`crate::reconcile::run`]). Holds no rollout logic.

use std::path::{Path, PathBuf};

use super::Exit;

/// `sluice reconcile`'s options (the repository is the global `--repo`).
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The branch to watch.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// An engine's base URL; repeat for every engine of the fleet.
    #[arg(long = "engine", value_name = "URL", required = true)]
    pub engines: Vec<String>,
    /// The engines' admin token, also required by the control API.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Where the rollout state, the audit log, artifacts and the git mirror
    /// are kept.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// How often the branch is fetched and the engines read.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// The control API's address (status, pause, resume, promote, rollback,
    /// POST /v1/hooks/git).
    #[arg(long, default_value = crate::reconcile::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// An engine decision log (JSON lines) to replay against each candidate,
    /// reporting decision flips by rule.
    #[arg(long, value_name = "FILE")]
    pub decision_log: Option<PathBuf>,
    /// How long engines may be unreachable during a live stage before the
    /// rollout pauses.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub engine_grace: std::time::Duration,
    /// How long one engine call may take.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub engine_timeout: std::time::Duration,
    /// How long an engine's lease lasts without renewal (renewed every third
    /// of it): past it, the engine drops the candidate and serves stable
    /// alone, and another daemon may take it.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease: std::time::Duration,
    /// How long a git fetch or push may go unanswered before it is given up
    /// and shown in status (the daemon never waits for git: rollbacks go on
    /// while the remote hangs).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub git_timeout: std::time::Duration,
    /// Take every engine's lease at start, even from another daemon (an
    /// operator's takeover of a fleet whose daemon is gone or must give it
    /// up). Use it once: a daemon restarted with it takes the fleet again.
    #[arg(long)]
    pub take_over: bool,
}

pub(super) fn cmd_reconcile(repo: &Path, args: ReconcileArgs) -> anyhow::Result<Exit> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = crate::reconcile::Config::new(
        &repo.to_string_lossy(),
        args.state_dir,
        args.engines,
        &args.admin_token,
    );
    config.branch = args.branch;
    config.interval = args.interval;
    config.listen = Some(args.listen);
    config.decision_log = args.decision_log;
    config.engine_grace = args.engine_grace;
    config.engine_timeout = args.engine_timeout;
    config.lease = args.lease;
    config.take_over = args.take_over;
    config.git_timeout = args.git_timeout;
    let rt = super::runtime(true)?;
    rt.block_on(crate::reconcile::run(
        config,
        crate::engine::serve::shutdown_signal(),
    ))?;
    Ok(Exit::Ok)
}
