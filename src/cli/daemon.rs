//! `sluice reconcile`: the daemon's flags and its start
//! ([`crate::reconcile::run`]). Holds no rollout logic.

use std::path::{Path, PathBuf};

use super::Exit;
use crate::reconcile::notify::{NotifyConfig, redacted};
use crate::reconcile::remote::GitAuth;

/// `sluice reconcile`'s options (the repository is the global `--repo`).
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The branch to watch.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// An engine's base URL; repeat for every engine of the fleet.
    #[arg(long = "engine", value_name = "URL", required = true)]
    pub engines: Vec<String>,
    /// The engines' admin token, also admitted by the control API.
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
    #[command(flatten)]
    pub http: super::engine::HttpFlags,
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
    /// A file holding the control API's operator token (commands, the git
    /// hook, status), so that operators need not hold the engines' admin
    /// token. SLUICE_OPERATOR_TOKEN holds the token itself.
    #[arg(long, value_name = "FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// A file holding a read-only token: `GET /v1/status` and nothing else.
    /// SLUICE_READ_TOKEN holds the token itself.
    #[arg(long, value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,
    /// A file holding the secret of forges' webhook deliveries: GitHub's
    /// `X-Hub-Signature-256`, GitLab's `X-Gitlab-Token`. It admits the git
    /// hook and nothing else. SLUICE_WEBHOOK_SECRET holds the secret itself.
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// POST each notified audit event, as JSON with a one-line `text`, to
    /// this URL (a Slack or Mattermost incoming webhook shows it as is);
    /// repeat for several receivers.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// The audit events notified, comma-separated.
    #[arg(
        long,
        value_name = "EVENTS",
        value_delimiter = ',',
        default_value = "refuse,rollback,reverted,pause,complete"
    )]
    pub notify_on: Vec<String>,
    /// A file holding the key that signs notifications
    /// (`X-Sluice-Signature-256`). SLUICE_NOTIFY_SECRET holds the key itself.
    #[arg(long, value_name = "FILE")]
    pub notify_secret_file: Option<PathBuf>,
    /// A file holding the token HTTPS fetches and pushes send (basic auth,
    /// user `--git-user`): a GitHub or GitLab access token. SLUICE_GIT_TOKEN
    /// holds the token itself. Never shown in logs, status or errors.
    #[arg(long, value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// The user the token is sent with.
    #[arg(long, value_name = "NAME", default_value = crate::reconcile::remote::DEFAULT_GIT_USER)]
    pub git_user: String,
    /// The private key ssh fetches and pushes authenticate with (a deploy
    /// key); its passphrase, if any, in SLUICE_GIT_SSH_PASSPHRASE.
    #[arg(long, value_name = "FILE")]
    pub git_ssh_key: Option<PathBuf>,
    /// The known_hosts file the ssh server's host key is checked against
    /// (default: ~/.ssh/known_hosts); an unknown or changed key is refused.
    #[arg(long, value_name = "FILE")]
    pub git_known_hosts: Option<PathBuf>,
    /// PEM certificates an HTTPS server's certificate is checked against
    /// instead of the system's (a private CA). Without it, the system's
    /// store, or SSL_CERT_FILE / SSL_CERT_DIR when set.
    #[arg(long, value_name = "FILE")]
    pub git_ca_file: Option<PathBuf>,
    /// How log lines are written to standard error: `text` (colours only on
    /// a terminal) or `json` (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every audit event a notification may be asked for.
const EVENTS: &[&str] = &[
    "install",
    "adopt",
    "refuse",
    "unchanged",
    "start",
    "supersede",
    "cancel",
    "advance",
    "complete",
    "promote",
    "rollback",
    "pause",
    "resume",
    "unquarantine",
    "reverted",
    "revert_failed",
    "revert_skipped",
    "force_push",
    "branch_deleted",
    "branch_restored",
    "fetch_failed",
    "fetch_restored",
];

/// The notifications the flags ask for; `Err` says which flag is wrong.
fn notify_config(args: &ReconcileArgs) -> anyhow::Result<Option<NotifyConfig>> {
    if args.notify.is_empty() {
        return Ok(None);
    }
    for url in &args.notify {
        let u = reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("--notify `{}` is not a URL: {e}", redacted(url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            anyhow::bail!("--notify `{}` is not an http(s) URL", redacted(url));
        }
    }
    let mut n = NotifyConfig::new(args.notify.clone());
    n.on = args
        .notify_on
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if let Some(bad) = n.on.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        anyhow::bail!(
            "--notify-on: `{bad}` is not an audit event (one of: {})",
            EVENTS.join(", ")
        );
    }
    n.secret = credential(
        "the notification secret",
        args.notify_secret_file.as_deref(),
        "SLUICE_NOTIFY_SECRET",
    )?;
    Ok(Some(n))
}

/// A credential from `file`, else from the environment variable `var`;
/// trimmed and at least [`crate::reconcile::access::MIN_SECRET_LEN`] bytes.
fn credential(what: &str, file: Option<&Path>, var: &str) -> anyhow::Result<Option<String>> {
    let raw = match file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read {what} from {}: {e}", f.display()))?,
        None => match std::env::var(var) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    let from = file.map_or_else(|| var.to_string(), |f| f.display().to_string());
    crate::reconcile::access::secret(&format!("{what} ({from})"), &raw)
        .map(Some)
        .map_err(anyhow::Error::msg)
}

/// The credentials and trust of `--repo`; `Err` says which flag is wrong.
fn git_auth(args: &ReconcileArgs) -> anyhow::Result<GitAuth> {
    let token = credential(
        "the git token",
        args.git_token_file.as_deref(),
        "SLUICE_GIT_TOKEN",
    )?;
    // A passphrase may be short: it is only read, never checked for length.
    let ssh_passphrase = std::env::var("SLUICE_GIT_SSH_PASSPHRASE")
        .ok()
        .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
        .filter(|p| !p.is_empty());
    Ok(GitAuth {
        user: Some(args.git_user.clone()),
        token,
        ssh_key: args.git_ssh_key.clone(),
        ssh_passphrase,
        known_hosts: args.git_known_hosts.clone(),
        ca_file: args.git_ca_file.clone(),
    })
}

pub(super) fn cmd_reconcile(repo: &Path, args: ReconcileArgs) -> anyhow::Result<Exit> {
    let notify = notify_config(&args);
    let git_auth = git_auth(&args);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => logs.json().try_init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    let admin_token = match crate::engine::http::secret("the admin token", &args.admin_token) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let mut config = crate::reconcile::Config::new(
        &repo.to_string_lossy(),
        args.state_dir,
        args.engines,
        &admin_token,
    );
    config.branch = args.branch;
    config.interval = args.interval;
    config.listen = Some(args.listen);
    config.http = match args.http.limits() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    config.decision_log = args.decision_log;
    config.engine_grace = args.engine_grace;
    config.engine_timeout = args.engine_timeout;
    config.lease = args.lease;
    config.take_over = args.take_over;
    config.git_timeout = args.git_timeout;
    let creds = (
        credential(
            "the operator token",
            args.operator_token_file.as_deref(),
            "SLUICE_OPERATOR_TOKEN",
        ),
        credential(
            "the read token",
            args.read_token_file.as_deref(),
            "SLUICE_READ_TOKEN",
        ),
        credential(
            "the webhook secret",
            args.webhook_secret_file.as_deref(),
            "SLUICE_WEBHOOK_SECRET",
        ),
    );
    match (creds, notify) {
        ((Ok(operator), Ok(read), Ok(webhook)), Ok(notify)) => {
            config.operator_token = operator;
            config.read_token = read;
            config.webhook_secret = webhook;
            config.notify = notify;
        }
        ((Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    }
    match git_auth {
        Ok(auth) => config.git_auth = auth,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    }
    let rt = super::runtime(true)?;
    rt.block_on(crate::reconcile::run(
        config,
        crate::engine::serve::shutdown_signal(),
    ))?;
    Ok(Exit::Ok)
}
