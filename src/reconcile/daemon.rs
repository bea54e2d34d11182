//! Setting the daemon up and the handle an embedder holds: [`Daemon::start`]
//! takes the state folder (lock, state, audit repair), opens the git mirror,
//! serves the control API and spawns the loop (`runner`) on the current
//! tokio runtime. The handle reads status, subscribes to audit events, runs
//! operator commands and stops the loop. Nothing here decides a transition.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

use super::Config;
use super::access::Access;
use super::api::{self, ApiState, CommandRequest, Said};
use super::client::{self, EngineClient, HttpEngine};
use super::err::ReconcileError;
use super::git::Mirror;
use super::lease;
use super::lock::FolderLock;
use super::metrics::Tally;
use super::notify;
use super::remote::Remote;

/// The oldest a fetch may be for the daemon to be ready, unless three
/// intervals are longer.
const STALE_FETCH: std::time::Duration = std::time::Duration::from_secs(30);
use super::runner::{Outputs, Runner};
use super::store::Store;
use axum::http::Method;

use crate::api::audit::Transition;
use crate::api::status::Status;
use crate::engine::guard::{BodyGuard, guard_body, serve_router};
use crate::rollout::machine;

/// The shortest `--lease` (renewed every third of it).
const MIN_LEASE: std::time::Duration = std::time::Duration::from_millis(300);

/// A running daemon.
pub struct Daemon {
    addr: Option<SocketAddr>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<Transition>,
    commands: mpsc::Sender<CommandRequest>,
    hook: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ReconcileError>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("addr", &self.addr).finish()
    }
}

impl Daemon {
    /// Starts the daemon with HTTP clients for `config.engines`.
    pub async fn start(config: Config) -> Result<Daemon, ReconcileError> {
        let http = client::http_client(config.engine_timeout).map_err(|source| {
            ReconcileError::Engine {
                engine: config.engines.join(", "),
                source,
            }
        })?;
        let engines: Vec<Arc<dyn EngineClient>> = config
            .engines
            .iter()
            .map(|url| {
                Arc::new(HttpEngine::with_client(
                    url,
                    &config.admin_token,
                    http.clone(),
                )) as Arc<dyn EngineClient>
            })
            .collect();
        Daemon::start_with(config, engines).await
    }

    /// Starts the daemon with the given engine clients.
    pub async fn start_with(
        config: Config,
        engines: Vec<Arc<dyn EngineClient>>,
    ) -> Result<Daemon, ReconcileError> {
        if engines.is_empty() {
            return Err(ReconcileError::Config(
                "no engine: name at least one with `--engine URL`".to_string(),
            ));
        }
        if config.lease < MIN_LEASE {
            return Err(ReconcileError::Config(format!(
                "--lease must be at least {MIN_LEASE:?}: a shorter lease lapses between two renewals"
            )));
        }
        let state_dir = config.state_dir.clone();
        // The folder is taken before anything in it is read or repaired.
        let (folder, store, state, identity) = tokio::task::spawn_blocking(move || {
            let folder = FolderLock::acquire(&state_dir)?;
            let (store, state) = Store::open(&state_dir)?;
            let identity = lease::identity(&state_dir)?;
            Ok::<_, ReconcileError>((folder, store, state, identity))
        })
        .await??;
        let remote = Remote::parse(&config.repo)?;
        let auth = Arc::new(config.git_auth.clone().for_remote(&remote)?);
        let git_dir = store.git_dir();
        let branch = config.branch.clone();
        let mirror = tokio::task::spawn_blocking(move || {
            Mirror::open_with(&git_dir, &remote, auth, &branch)
        })
        .await??;
        reach(&mirror, config.git_timeout).await?;
        // What status and log lines show of the repository.
        let mut config = config;
        config.repo = mirror.shown_url();
        let (status_tx, status_rx) = watch::channel(Status {
            identity: identity.clone(),
            ..Status::default()
        });
        let (events, _) = broadcast::channel(1024);
        let tally = Arc::new(Tally::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let hook = Arc::new(Notify::new());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);

        let mut addr = None;
        let mut server = None;
        if let Some(listen) = config.listen {
            let listener = crate::engine::guard::bind(listen).await.map_err(|source| {
                ReconcileError::Listen {
                    addr: listen.to_string(),
                    source,
                }
            })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ReconcileError::Listen {
                    addr: listen.to_string(),
                    source,
                })?;
            store.save_addr(&bound.to_string())?;
            let access = Access::new(&config.admin_token)
                .with_operator_token(config.operator_token.as_deref())
                .with_read_token(config.read_token.as_deref())
                .with_webhook_secret(config.webhook_secret.as_deref());
            let app = api::router(
                ApiState::new(
                    access,
                    &config.branch,
                    status_rx.clone(),
                    cmd_tx.clone(),
                    hook.clone(),
                )
                .with_metrics(tally.clone(), (config.interval * 3).max(STALE_FETCH)),
            );
            let limits = config.http;
            let app = app
                .layer(axum::middleware::from_fn_with_state(
                    BodyGuard {
                        limit: api::MAX_BODY,
                        larger: Some((Method::POST, "/v1/hooks/", api::MAX_HOOK_BODY)),
                        timeout: limits.body_timeout,
                    },
                    guard_body,
                ))
                .layer(axum::middleware::map_response(crate::engine::http::nosniff));
            let mut stop = shutdown_rx.clone();
            server = Some(tokio::spawn(async move {
                let graceful = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = serve_router(listener, app, limits, graceful).await {
                    tracing::error!(error = %e, "control API stopped");
                }
            }));
            addr = Some(bound);
        }

        tokio::spawn(tally.follow(events.subscribe(), shutdown_rx.clone()));
        let deliveries = config.notify.clone().map(|n| {
            let health = Arc::new(notify::Health::default());
            tokio::spawn(notify::run(
                n,
                config.branch.clone(),
                events.subscribe(),
                health.clone(),
                shutdown_rx.clone(),
            ));
            health
        });
        let runner = Runner::new(
            config,
            identity,
            folder,
            store,
            state,
            Arc::new(Mutex::new(mirror)),
            engines,
            cmd_rx,
            Outputs {
                status: status_tx,
                events: events.clone(),
                deliveries,
            },
        );
        let task = tokio::spawn(runner.run(hook.clone(), shutdown_rx));
        Ok(Daemon {
            addr,
            status: status_rx,
            events,
            commands: cmd_tx,
            hook,
            shutdown: shutdown_tx,
            task,
            server,
        })
    }

    /// The control API's address, when it serves one.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The status as of the last iteration.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Status updates, one per iteration.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Every transition from now on, as it is appended to the audit log.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events.subscribe()
    }

    /// Runs an operator command, as the control API does.
    pub async fn command(&self, c: machine::Command) -> Result<String, String> {
        self.command_said(c, Said::default()).await
    }

    /// Runs an operator command with who gave it (the audit log's `by`) and
    /// the reason of a command that has no reason of its own (`resume`).
    pub async fn command_said(&self, c: machine::Command, said: Said) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((c, said, tx))
            .await
            .map_err(|_| "the daemon is stopping".to_string())?;
        rx.await.map_err(|_| "the daemon is stopping".to_string())?
    }

    /// Fetches the branch at once (what `POST /v1/hooks/git` does).
    pub fn trigger_fetch(&self) {
        self.hook.notify_one();
    }

    /// Whether the loop has stopped (it stops only on shutdown or a fatal
    /// error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the daemon after its current iteration; the state folder is
    /// free once this returns.
    pub async fn stop(self) -> Result<(), ReconcileError> {
        let _ = self.shutdown.send(true);
        let out = self.task.await?;
        if let Some(s) = self.server {
            let _ = s.await;
        }
        out
    }
}

/// The remote reached once before the daemon runs, with its credentials
/// and trust, within `--git-timeout`: a URL that cannot be reached, a
/// credential refused, a host key or certificate refused stop a daemon
/// that has never fetched (it would run doing nothing); a daemon that has
/// (a restart while the forge is down) goes on with what it has, the
/// error in its status, and can still roll back.
async fn reach(mirror: &Mirror, timeout: std::time::Duration) -> Result<(), ReconcileError> {
    let handle = mirror.handle()?;
    let fetched_before = mirror.head().is_some();
    let (tx, rx) = oneshot::channel();
    // A thread of its own: a remote that hangs must not hold the runtime.
    std::thread::Builder::new()
        .name("sluice-git-probe".to_string())
        .spawn(move || {
            let _ = tx.send(handle.probe());
        })
        .map_err(|source| ReconcileError::Io {
            what: "starting a thread to reach the repository".to_string(),
            source,
        })?;
    let out = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(out)) => out,
        Ok(Err(_)) => Err(ReconcileError::Git(
            "reaching the repository stopped before it answered".to_string(),
        )),
        Err(_) => Err(ReconcileError::Git(format!(
            "the repository did not answer within {} s (--git-timeout)",
            timeout.as_secs_f32()
        ))),
    };
    match out {
        Ok(_) => Ok(()),
        Err(e) if fetched_before => {
            tracing::warn!(error = %e, "the repository cannot be reached; going on with the mirror");
            Ok(())
        }
        Err(e) => Err(ReconcileError::Unreachable {
            repo: mirror.shown_url(),
            why: e.to_string(),
        }),
    }
}

/// Runs the daemon until `shutdown` completes (or it fails).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ReconcileError> {
    let mut daemon = Daemon::start(config).await?;
    tokio::select! {
        () = shutdown => daemon.stop().await,
        r = &mut daemon.task => r?,
    }
}
