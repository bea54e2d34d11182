//! The demo's fleet: three engines ([`crate::engine::server`]) served on
//! loopback, sharing one state backend as a fleet does (limits count and
//! approvals wait fleet-wide), and the reconcile daemon
//! ([`crate::reconcile::Daemon`]) that rolls policies out to them, sharing
//! one admin token.
//!
//! It starts and stops them and reads each engine's route at the end; it
//! sends no traffic and does not decide whether the run went well.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::facts::EngineRoute;
use super::{DemoError, io};
use crate::engine::backend::redis::{RedisBackend, RedisConfig};
use crate::engine::backend::{MemoryBackend, StateBackend};
use crate::engine::decision_log::DecisionLog;
use crate::engine::server::{self, EngineConfig};
use crate::reconcile::{Config, Daemon, ReconcileError};

/// A fresh admin token for the engines and the daemon: a hash of the time
/// and the process id, unguessable enough for a run on loopback.
pub(super) fn admin_token() -> String {
    let seed = format!(
        "{:?} {} {:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        Instant::now()
    );
    let digest = Sha256::digest(seed.as_bytes());
    let half: Vec<u8> = digest.iter().take(16).copied().collect();
    format!("demo-{}", hex::encode(half))
}

/// One engine served on loopback.
pub(super) struct EngineProc {
    pub(super) url: String,
    engine: Arc<server::Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl EngineProc {
    /// The engine's route as it stands.
    pub(super) fn route(&self) -> EngineRoute {
        let r = self.engine.route();
        EngineRoute {
            url: self.url.clone(),
            stable: r.as_ref().map(|a| a.spec.stable.clone()),
            candidate: r.as_ref().and_then(|a| a.spec.candidate.clone()),
            routes_set: r.as_ref().map_or(0, |a| a.version),
        }
    }
}

/// Starts the daemon watching `origin`'s branch, with its state in `state`,
/// rolling out to `urls`; it polls every 200 ms and serves its control API
/// on a free loopback port.
pub(super) async fn start_daemon(
    origin: &Path,
    state: &Path,
    urls: &[String],
    token: &str,
) -> Result<Daemon, ReconcileError> {
    let mut config = Config::new(
        &origin.to_string_lossy(),
        state.to_path_buf(),
        urls.to_vec(),
        token,
    );
    config.interval = Duration::from_millis(200);
    config.listen = "127.0.0.1:0".parse().ok();
    Daemon::start(config).await
}

/// The state the demo's engines share, and how to say where it is: one
/// in-process state by default (as a fleet on one Redis shares it), or
/// Redis at `url` under a prefix of this run's own.
pub(super) fn shared_state(
    url: Option<&str>,
    token: &str,
) -> Result<(Arc<dyn StateBackend>, String), DemoError> {
    match url {
        None => Ok((
            Arc::new(MemoryBackend::shared()),
            "in this process".to_string(),
        )),
        Some(url) => {
            let mut config = RedisConfig::new(url);
            config.prefix = Some(format!("sluice-demo-{}", token.trim_start_matches("demo-")));
            let backend = RedisBackend::new(&config).map_err(DemoError::State)?;
            let shared = format!(
                "Redis {}, prefix {}",
                backend.status().location,
                config.prefix.as_deref().unwrap_or_default()
            );
            Ok((Arc::new(backend), shared))
        }
    }
}

/// Starts `n` engines, each on a free loopback port, all on `backend`.
pub(super) async fn start_engines(
    n: usize,
    token: &str,
    backend: &Arc<dyn StateBackend>,
) -> Result<Vec<EngineProc>, DemoError> {
    let mut out = Vec::new();
    for _ in 0..n {
        let engine = server::Engine::start(
            EngineConfig::new(token),
            Arc::clone(backend),
            DecisionLog::disabled(),
        )
        .map_err(DemoError::Engine)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding an engine to 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading an engine's address"))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let e = engine.clone();
        let task = tokio::spawn(async move {
            if let Err(err) =
                crate::engine::serve::serve(listener, e, Default::default(), async move {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(error = %err, "demo engine stopped");
            }
        });
        out.push(EngineProc {
            url: format!("http://{addr}"),
            engine,
            stop: Some(tx),
            task,
        });
    }
    Ok(out)
}

/// Stops every engine, aborting one that does not stop within ten seconds.
pub(super) async fn stop_engines(engines: Vec<EngineProc>) {
    for mut e in engines {
        if let Some(tx) = e.stop.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(10), &mut e.task)
            .await
            .is_err()
        {
            e.task.abort();
        }
    }
}
