//! `sluice engine`: its flags, checked, and the HTTP server started with
//! them ([`crate::engine::server`]). Holds no server logic.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Exit;

/// The flags of `sluice engine`.
#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:7400", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The bearer token admin routes require.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// Append one JSON line per evaluation (and per state change) here.
    #[arg(long, value_name = "FILE")]
    pub decision_log: Option<PathBuf>,
    /// Decision log: the most its queue holds, in bytes (serialized lines); lines
    /// past it are dropped and counted.
    #[arg(long, default_value_t = crate::engine::decision_log::DEFAULT_QUEUE_BYTES, value_name = "BYTES")]
    pub decision_log_queue_bytes: usize,
    /// Decision log: how long a stop waits for queued lines to be written.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub decision_log_close_timeout: std::time::Duration,
    /// Load this artifact at start and route all traffic to it as stable.
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,
    /// The largest request body accepted (larger ones get 413).
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// The largest artifact upload accepted.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub max_artifact_body: usize,
    /// Shadow evaluations that may wait; more are dropped and counted.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub shadow_queue: usize,
    /// Breaker: the sliding window outcomes are counted over.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub breaker_window: std::time::Duration,
    /// Breaker: outcomes the window needs before it may open.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub breaker_min_requests: u64,
    /// Breaker: the share of failed evaluations that opens it.
    #[arg(long, default_value_t = 0.5, value_name = "RATE")]
    pub breaker_error_rate: f64,
    /// Breaker: an evaluation at least this long is slow.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub breaker_slow_call: std::time::Duration,
    /// Breaker: the share of slow evaluations that opens it.
    #[arg(long, default_value_t = 0.5, value_name = "RATE")]
    pub breaker_slow_rate: f64,
    /// Breaker: how long it stays open before probing.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub breaker_open_for: std::time::Duration,
    /// Breaker: successful probes that close it again.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub breaker_probes: u32,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Where limit counters and approvals live: `memory` (this process),
    /// or `redis://HOST:PORT[/DB]` (`rediss://` for TLS), shared by every
    /// engine on the same server and prefix.
    #[arg(long, default_value = "memory", value_name = "BACKEND")]
    pub state_backend: String,
    /// The key prefix in a shared backend (default: the project's name).
    #[arg(long, value_name = "PREFIX")]
    pub state_prefix: Option<String>,
    /// How long one call to a shared backend may take before the request
    /// gets the failsafe.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub state_timeout: std::time::Duration,
    /// How long an approval waits for a decision before it expires.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub approval_ttl: std::time::Duration,
    /// Approvals that may wait at once per group; past it requests are
    /// denied `APPROVAL_QUEUE_FULL`.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_pending_approvals: usize,
    /// Keys (distinct `by` values) one limit holds at most in a window;
    /// past it a request with a new key is refused as over the limit.
    #[arg(long, default_value_t = crate::eval::state::DEFAULT_MAX_KEYS, value_name = "N")]
    pub max_limit_keys: usize,
    /// Agent identity: a TOML file of `agent = "key"` lines. Evaluate then
    /// needs `Authorization: Bearer <key>`, and the request's `agent` must
    /// be the key's.
    #[arg(long, value_name = "FILE")]
    pub agent_keys: Option<PathBuf>,
    #[command(flatten)]
    pub http: HttpFlags,
}

/// The state backend `--state-backend` names.
pub(super) fn state_backend(
    spec: &str,
    prefix: Option<&str>,
    timeout: std::time::Duration,
    max_keys: usize,
) -> anyhow::Result<std::sync::Arc<dyn crate::engine::backend::StateBackend>> {
    use crate::engine::backend::MemoryBackend;
    use crate::engine::backend::redis::{RedisBackend, RedisConfig};
    use crate::eval::state::MemoryLimitStore;

    if spec == "memory" {
        anyhow::ensure!(
            prefix.is_none(),
            "--state-prefix names keys in a shared backend: it needs --state-backend redis://…"
        );
        return Ok(std::sync::Arc::new(MemoryBackend::with_limits(
            MemoryLimitStore::with_max_keys(max_keys),
        )));
    }
    anyhow::ensure!(
        spec.starts_with("redis://") || spec.starts_with("rediss://"),
        "--state-backend must be `memory`, `redis://HOST:PORT[/DB]` or `rediss://…`"
    );
    anyhow::ensure!(!timeout.is_zero(), "--state-timeout must be above zero");
    let config = RedisConfig {
        url: spec.to_string(),
        prefix: prefix.map(str::to_string),
        timeout,
        max_keys,
    };
    Ok(std::sync::Arc::new(RedisBackend::new(&config)?))
}

/// What a connection may cost: the flags of both servers (`sluice engine`,
/// `sluice reconcile`), documented in docs/engine.md.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpFlags {
    /// Time to receive a request's head; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub header_timeout: std::time::Duration,
    /// Time to receive a request's whole body (408 past it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub body_timeout: std::time::Duration,
    /// Connections open at once (lowered to what the open-file limit
    /// holds); more wait to be accepted.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
}

impl HttpFlags {
    /// The limits, refused when a value could never serve a request.
    pub fn limits(&self) -> anyhow::Result<crate::engine::guard::HttpLimits> {
        use std::time::Duration;
        for (name, d) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
        ] {
            anyhow::ensure!(
                d >= Duration::from_millis(10),
                "{name} must be at least 10ms, got {}",
                humantime::format_duration(d)
            );
        }
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        Ok(crate::engine::guard::HttpLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections,
        })
    }
}

pub(super) fn cmd_engine(args: EngineArgs) -> anyhow::Result<Exit> {
    use crate::api::route::RouteSpec;
    use crate::engine::approvals::ApprovalConfig;
    use crate::engine::breaker::BreakerConfig;
    use crate::engine::decision_log::DecisionLog;
    use crate::engine::serve::{reopen_on_hangup, serve, shutdown_signal};
    use crate::engine::server::{Engine, EngineConfig};

    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let token = args
        .admin_token
        .filter(|t| !t.is_empty())
        .context("an admin token is required: pass --admin-token or set SLUICE_ADMIN_TOKEN")?;
    let token =
        crate::engine::http::secret("the admin token", &token).map_err(anyhow::Error::msg)?;
    let limits = args.http.limits()?;
    for (name, rate) in [
        ("--breaker-error-rate", args.breaker_error_rate),
        ("--breaker-slow-rate", args.breaker_slow_rate),
    ] {
        anyhow::ensure!(
            rate > 0.0 && rate <= 1.0,
            "{name} must be above 0 and at most 1, got {rate}"
        );
    }
    let config = EngineConfig {
        max_body: args.max_body,
        max_artifact_body: args.max_artifact_body,
        shadow_queue: args.shadow_queue,
        breaker: BreakerConfig {
            window: args.breaker_window,
            min_requests: args.breaker_min_requests,
            error_rate: args.breaker_error_rate,
            slow_call: args.breaker_slow_call,
            slow_rate: args.breaker_slow_rate,
            open_for: args.breaker_open_for,
            probes: args.breaker_probes,
            ..BreakerConfig::default()
        },
        approvals: ApprovalConfig {
            ttl: args.approval_ttl,
            max_pending: args.max_pending_approvals,
        },
        agent_keys: match &args.agent_keys {
            Some(path) => Some(std::sync::Arc::new(
                crate::engine::agents::AgentKeys::read(path).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        },
        ..EngineConfig::new(token)
    };
    anyhow::ensure!(
        args.approval_ttl.as_secs() >= 1,
        "--approval-ttl must be at least one second"
    );
    anyhow::ensure!(
        args.max_limit_keys >= 1,
        "--max-limit-keys must be at least 1"
    );
    let artifact = match &args.artifact {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?)
        }
        None => None,
    };
    let log = match &args.decision_log {
        Some(path) => DecisionLog::open(path)
            .with_context(|| format!("opening the decision log `{}`", path.display()))?
            .with_queue_bytes(args.decision_log_queue_bytes)
            .with_close_timeout(args.decision_log_close_timeout),
        None => DecisionLog::disabled(),
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().context("starting the runtime")?;
    let reopen = log.reopener();
    rt.block_on(async move {
        reopen_on_hangup(reopen);
        // Inside the runtime: a Redis connection belongs to it.
        let backend = state_backend(
            &args.state_backend,
            args.state_prefix.as_deref(),
            args.state_timeout,
            args.max_limit_keys,
        )?;
        let status = backend.status();
        let engine = Engine::start(config, backend, log)?;
        let ready = engine.readiness().await;
        if ready.backend.up {
            tracing::info!(backend = %status.kind, location = %status.location, "state backend");
        } else {
            tracing::warn!(
                backend = %status.kind,
                location = %status.location,
                error = ready.backend.error.as_deref().unwrap_or(""),
                "the state backend does not answer yet: evaluations get the failsafe until it does"
            );
        }
        if let Some(bytes) = artifact {
            let hash = crate::compile::artifact::Artifact::from_bytes(&bytes)
                .context("reading --artifact")?
                .hash;
            engine
                .put_artifact(&hash, &bytes)
                .map_err(|e| anyhow::anyhow!("loading --artifact: {e}"))?;
            engine
                .set_route(RouteSpec::stable(hash.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("routing --artifact: {e}"))?;
            tracing::info!(artifact = %hash, "routed as stable");
        }
        let listener = crate::engine::guard::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%addr, "sluice engine listening");
        serve(listener, engine, limits, shutdown_signal())
            .await
            .context("serving")?;
        tracing::info!("sluice engine stopped");
        anyhow::Ok(Exit::Ok)
    })
}
