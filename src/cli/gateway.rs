//! `sluice hook claude-code` and `sluice gateway`: their flags, the files
//! they read (the artifact, `sluice.toml` for the schema), and the
//! [`crate::gateway`] parts started with them. Holds no decision logic.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::Exit;
use crate::compile::artifact::Artifact;
use crate::engine::decision_log::DecisionLog;
use crate::gateway::decide::Decider;
use crate::model::schema::Schema;

/// Where decisions come from: `--engine URL` or `--artifact FILE`.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct DecideArgs {
    /// Decide through this engine (`POST URL/v1/evaluate`); the request
    /// schema is read from the policy repository's sluice.toml (`--repo`).
    #[arg(long, value_name = "URL")]
    pub engine: Option<String>,
    /// Decide in this process with this compiled artifact (`sluice compile`).
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,
}

/// The flags shared by the hook and the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct CallerArgs {
    /// The request's `agent`.
    #[arg(long, env = "SLUICE_AGENT", value_name = "AGENT")]
    pub agent: Option<String>,
    /// The request's `org`.
    #[arg(long, env = "SLUICE_ORG", value_name = "ORG")]
    pub org: Option<String>,
    /// The agent's key, when the engine checks agent identity
    /// (`--agent-keys`): sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "SLUICE_AGENT_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub agent_key: Option<String>,
    /// How long a decision from `--engine` may take.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub engine_timeout: Duration,
}

/// Where an in-process engine (`--artifact`) keeps limit counters and
/// approvals.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// With --artifact: `memory` (this process), or `redis://HOST:PORT[/DB]`
    /// (`rediss://` for TLS) shared with engines, so that limits count
    /// across them and their admin API decides this process's approvals.
    #[arg(long, default_value = "memory", value_name = "BACKEND")]
    pub state_backend: String,
    /// The key prefix in a shared backend (default: the project's name).
    #[arg(long, value_name = "PREFIX")]
    pub state_prefix: Option<String>,
    /// How long one call to a shared backend may take before the call gets
    /// the failsafe.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub state_timeout: Duration,
    /// With --artifact: keys (distinct `by` values) one limit holds at most
    /// in a window; past it a request with a new key is refused as over the
    /// limit.
    #[arg(long, default_value_t = crate::eval::state::DEFAULT_MAX_KEYS, value_name = "N")]
    pub max_limit_keys: usize,
}

/// The agent integrations `sluice hook` serves.
#[derive(Debug, clap::Subcommand)]
pub enum HookCommand {
    /// A Claude Code `PreToolUse` hook: reads the event on standard input
    /// and prints the decision (allow, deny, ask; `updatedInput` for a
    /// modify). Any error exits 2, which blocks the tool call.
    ClaudeCode {
        #[command(flatten)]
        decide: DecideArgs,
        #[command(flatten)]
        caller: CallerArgs,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// The decider, the schema requests are built with, and with
/// `--artifact` the artifact.
async fn decider(
    repo: &Path,
    decide: &DecideArgs,
    caller: &CallerArgs,
    log: DecisionLog,
    state: &StateArgs,
) -> anyhow::Result<(Decider, Schema, Option<Artifact>)> {
    if let Some(path) = &decide.artifact {
        let bytes = std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?;
        let artifact = Artifact::from_bytes(&bytes)
            .with_context(|| format!("reading the artifact `{}`", path.display()))?;
        anyhow::ensure!(
            state.max_limit_keys >= 1,
            "--max-limit-keys must be at least 1"
        );
        let backend = super::engine::state_backend(
            &state.state_backend,
            state.state_prefix.as_deref(),
            state.state_timeout,
            state.max_limit_keys,
        )?;
        let decider = Decider::local(&bytes, backend, log)
            .await
            .with_context(|| format!("loading the artifact `{}`", path.display()))?;
        return Ok((decider, artifact.schema.clone(), Some(artifact)));
    }
    let url = decide
        .engine
        .as_deref()
        .context("pass --engine URL or --artifact FILE")?;
    anyhow::ensure!(
        state.state_backend == "memory" && state.state_prefix.is_none(),
        "--state-backend and --state-prefix are for --artifact: with --engine, the engine keeps the state"
    );
    let file = repo.join(crate::tree::PROJECT_FILE);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "reading `{}`: with --engine, the request schema comes from the policy repository's sluice.toml (pass --repo DIR)",
            file.display()
        )
    })?;
    let source = crate::source::SourceFile::new(crate::tree::PROJECT_FILE, text);
    let project = crate::project::parse(&source).map_err(|findings| {
        let first = findings
            .first()
            .map_or_else(String::new, |f| f.message.clone());
        anyhow::anyhow!("`{}` does not read: {first}", file.display())
    })?;
    let decider = Decider::remote(url, caller.agent_key.clone(), caller.engine_timeout)?;
    Ok((decider, project.schema, None))
}

/// The policies of the repository at `repo`, compiled (type-checked, not
/// analysed): what `--hide-denied` judges by with `--engine`.
fn repo_artifact(repo: &Path) -> anyhow::Result<Artifact> {
    let files = crate::tree::fs::load(repo, crate::tree::Traces::Skip)?;
    let checked = crate::pipeline::check_unanalysed(&files.project, &files.policies);
    match checked.artifact(None) {
        Some(artifact) => artifact.context("building the artifact"),
        None => anyhow::bail!(
            "--hide-denied: the policies in `{}` have errors: run `sluice check`",
            repo.display()
        ),
    }
}

pub(super) fn cmd_hook(repo: &Path, command: HookCommand) -> anyhow::Result<Exit> {
    use crate::gateway::hook;

    let HookCommand::ClaudeCode {
        decide,
        caller,
        state,
    } = command;
    let mut text = String::new();
    std::io::stdin()
        .take(16 << 20)
        .read_to_string(&mut text)
        .context("reading the hook event from standard input")?;
    let event = hook::read_event(&text)?;
    let rt = super::runtime(false)?;
    let output = rt.block_on(async {
        let (decider, schema, _) =
            decider(repo, &decide, &caller, DecisionLog::disabled(), &state).await?;
        let request = hook::request(
            &event,
            caller.agent.as_deref(),
            caller.org.as_deref(),
            &schema,
        );
        let response = decider
            .decide(&request, None)
            .await
            .with_context(|| format!("deciding the `{}` call", event.tool_name))?;
        anyhow::Ok(hook::answer(&event, &response))
    })?;
    println!("{}", serde_json::to_string(&output)?);
    Ok(Exit::Ok)
}

/// The flags of `sluice gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Serve streamable HTTP at `http://ADDR/mcp`.
    #[arg(long, default_value = "127.0.0.1:7410", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Serve one client over standard input and output instead.
    #[arg(long)]
    pub stdio: bool,
    /// An upstream MCP server: NAME=URL (streamable HTTP) or NAME=COMMAND
    /// (a program spoken to over stdio; arguments split on blanks). Its
    /// tools are offered as NAME.tool. Repeat for several.
    #[arg(long = "upstream", required = true, value_name = "NAME=URL|COMMAND")]
    pub upstreams: Vec<crate::gateway::upstream::Spec>,
    #[command(flatten)]
    pub decide: DecideArgs,
    #[command(flatten)]
    pub caller: CallerArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// How long an upstream may take to list its tools or to answer one
    /// call before the client gets an error.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub upstream_timeout: Duration,
    /// How long an upstream may take to start and shake hands.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub upstream_start_timeout: Duration,
    /// With --artifact: append one JSON line per decision here (the
    /// engine's decision log).
    #[arg(long, value_name = "FILE", requires = "artifact")]
    pub decision_log: Option<PathBuf>,
    /// A `Host` header value accepted besides the loopback names (DNS
    /// rebinding protection), e.g. the gateway's public name. Repeatable.
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// Leave out of `tools/list` the tools the policies deny the caller
    /// outright: a deny rule whose condition holds on `tool`, `agent` and
    /// `org` alone. With --engine, the policies are those of --repo, read
    /// at start.
    #[arg(long)]
    pub hide_denied: bool,
    /// Print the tools the gateway offers (a `tools/list` result, as
    /// `sluice check --upstream-schemas` reads it) and exit.
    #[arg(long, conflicts_with = "stdio")]
    pub print_tools: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

pub(super) fn cmd_gateway(repo: &Path, args: GatewayArgs) -> anyhow::Result<Exit> {
    use crate::gateway::serve::{serve_http, serve_stdio};
    use crate::gateway::server::{Config, Gateway};
    use crate::gateway::upstream::Upstream;

    // Standard output may be the MCP channel (--stdio): logs go to stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let mut names = std::collections::BTreeSet::new();
    for u in &args.upstreams {
        anyhow::ensure!(
            names.insert(u.name.clone()),
            "the upstream name `{}` is given twice",
            u.name
        );
    }
    let log = match &args.decision_log {
        Some(path) => DecisionLog::open(path)
            .with_context(|| format!("opening the decision log `{}`", path.display()))?,
        None => DecisionLog::disabled(),
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let (decider, schema, artifact) =
            decider(repo, &args.decide, &args.caller, log, &args.state).await?;
        let hide_denied = match (args.hide_denied, artifact) {
            (false, _) => None,
            (true, Some(artifact)) => Some(std::sync::Arc::new(artifact)),
            (true, None) => Some(std::sync::Arc::new(repo_artifact(repo)?)),
        };
        let mut connecting = tokio::task::JoinSet::new();
        for spec in args.upstreams.clone() {
            let (start, timeout) = (args.upstream_start_timeout, args.upstream_timeout);
            connecting.spawn(async move { Upstream::connect(&spec, start, timeout).await });
        }
        let mut upstreams = Vec::new();
        while let Some(done) = connecting.join_next().await {
            upstreams.push(done.context("connecting an upstream")??);
        }
        let session = format!(
            "gw-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        let closing = decider.clone();
        let gateway = Gateway::new(
            Config {
                decider,
                schema,
                agent: args.caller.agent.clone(),
                org: args.caller.org.clone(),
                session,
                hide_denied,
            },
            upstreams,
        );
        if args.print_tools {
            let list = rmcp::model::ListToolsResult::with_all_items(gateway.tools().await);
            println!(
                "{}",
                serde_json::to_string_pretty(&list).context("rendering the tools")?
            );
            return anyhow::Ok(Exit::Ok);
        }
        if args.stdio {
            let served = serve_stdio(gateway).await.map_err(anyhow::Error::msg);
            closing.shutdown().await;
            served?;
            return anyhow::Ok(Exit::Ok);
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%addr, "sluice gateway listening at /mcp");
        let served = serve_http(
            listener,
            gateway,
            args.allowed_hosts,
            crate::engine::serve::shutdown_signal(),
        )
        .await
        .context("serving");
        closing.shutdown().await;
        served?;
        anyhow::Ok(Exit::Ok)
    })
}
