//! The reconcile daemon (`sluice reconcile`, SPEC §6): watches a branch of
//! a git repository and drives a fleet of engines through the rollout of
//! each new artifact, stage by stage, rolling back (and reverting the
//! commit) when the evidence says so.
//!
//! The loop is level-triggered, in the manner of a Kubernetes controller:
//! every iteration reads the desired state (the branch head, through
//! [`git`]) and the observed state (every engine's route and figures,
//! through [`client`]), moves engines that are not on the route the state
//! asks for, and takes **at most one** transition of the pure state machine
//! ([`crate::rollout::machine`]). A transition is persisted ([`store`])
//! *before* anything acts on it; after one the loop runs again at once,
//! otherwise it waits for the interval, a git hook or an operator command.
//!
//! - [`git`]: the bare mirror (fetch, read a commit's tree, revert + push).
//! - [`build`]: compile, check and replay a commit.
//! - [`client`]: [`client::EngineClient`] and its HTTP implementation.
//! - [`observe`]: the fleet's figures summed into one observation.
//! - [`store`]: `state.json`, `audit.jsonl`, stored artifacts.
//! - [`api`]: the control API for `status`, `pause`, `resume`, `promote`,
//!   `rollback` and git hooks.
//!
//! Embedding: [`Daemon::start`] runs the daemon on the current tokio
//! runtime and returns a handle (status, audit events, commands, stop);
//! [`run`] runs it until a shutdown future completes.

pub mod api;
pub mod build;
pub mod client;
pub mod clock;
pub mod control;
pub mod err;
pub mod git;
pub mod observe;
pub mod store;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::route::RouteSpec;
use crate::model::plan::RolloutPlan;
use crate::rollout::machine::{
    self, Action, Build, Ctx, Event, Fleet, Head, Observed, Ready, ReplaySummary, State, Transition,
};
use crate::rollout::stage::StageDecision;
use api::{ApiState, CandidateStatus, CommandRequest, EngineStatus, RevertStatus, Status};
use client::{EngineClient, EngineError, EngineStats, HttpEngine};
pub use err::ReconcileError;
use git::Mirror;
use store::Store;

/// The default address of the control API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7474";

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repository: a path or a `file://` URL.
    pub repo: String,
    pub branch: String,
    /// The engines' base URLs.
    pub engines: Vec<String>,
    /// The engines' admin token, also required by the control API.
    pub admin_token: String,
    pub state_dir: PathBuf,
    /// How often the branch is fetched and the engines read.
    pub interval: Duration,
    /// The control API's address; `None` serves none.
    pub listen: Option<SocketAddr>,
    /// An engine decision log to replay against each candidate.
    pub decision_log: Option<PathBuf>,
    /// How long engines may be unreachable in a live stage before it pauses.
    pub engine_grace: Duration,
    /// How long one engine call may take.
    pub engine_timeout: Duration,
}

impl Config {
    /// A configuration with the defaults: branch `main`, a 1 s interval,
    /// the control API on [`DEFAULT_LISTEN`], a 10 s grace for unreachable
    /// engines and a 2 s timeout per engine call.
    pub fn new(repo: &str, state_dir: PathBuf, engines: Vec<String>, admin_token: &str) -> Config {
        Config {
            repo: repo.to_string(),
            branch: "main".to_string(),
            engines,
            admin_token: admin_token.to_string(),
            state_dir,
            interval: Duration::from_secs(1),
            listen: DEFAULT_LISTEN.parse().ok(),
            decision_log: None,
            engine_grace: Duration::from_secs(10),
            engine_timeout: Duration::from_secs(2),
        }
    }
}

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
        let http =
            client::http_client(config.engine_timeout).map_err(|e| ReconcileError::Engine {
                engine: config.engines.join(", "),
                message: e.to_string(),
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
        let state_dir = config.state_dir.clone();
        let (store, state) = tokio::task::spawn_blocking(move || {
            let (store, state) = Store::open(&state_dir)?;
            store.claim()?;
            Ok::<_, ReconcileError>((store, state))
        })
        .await
        .map_err(|e| ReconcileError::Stopped(e.to_string()))??;
        let url = git::remote_url(&config.repo);
        let git_dir = store.git_dir();
        let branch = config.branch.clone();
        let mirror = tokio::task::spawn_blocking(move || Mirror::open(&git_dir, &url, &branch))
            .await
            .map_err(|e| ReconcileError::Stopped(e.to_string()))??;
        let (status_tx, status_rx) = watch::channel(Status::default());
        let (events, _) = broadcast::channel(1024);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let hook = Arc::new(Notify::new());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);

        let mut addr = None;
        let mut server = None;
        if let Some(listen) = config.listen {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| ReconcileError::Listen {
                    addr: listen.to_string(),
                    source,
                })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ReconcileError::Listen {
                    addr: listen.to_string(),
                    source,
                })?;
            store.save_addr(&bound.to_string())?;
            let app = api::router(ApiState::new(
                &config.admin_token,
                status_rx.clone(),
                cmd_tx.clone(),
                hook.clone(),
            ));
            let mut stop = shutdown_rx.clone();
            server = Some(tokio::spawn(async move {
                let graceful = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
                {
                    tracing::error!(error = %e, "control API stopped");
                }
            }));
            addr = Some(bound);
        }

        let runner = Runner {
            engines: engines
                .into_iter()
                .map(|client| EngineView {
                    client,
                    route: None,
                    known: false,
                    stats: None,
                    error: None,
                    down_since: None,
                })
                .collect(),
            config,
            store: Arc::new(store),
            state,
            mirror: Arc::new(Mutex::new(mirror)),
            plans: HashMap::new(),
            builds: HashMap::new(),
            building: None,
            build_done: Arc::new(Notify::new()),
            artifacts: HashMap::new(),
            head: None,
            fetched_ms: None,
            git_error: None,
            last_fetch: None,
            fetch_now: true,
            observed: Observed::default(),
            decision: None,
            waiting: None,
            error: None,
            revert_attempts: 0,
            revert_error: None,
            next_revert: Instant::now(),
            status: status_tx,
            events: events.clone(),
        };
        let hook_loop = hook.clone();
        let task = tokio::spawn(runner.run(cmd_rx, hook_loop, shutdown_rx));
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
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((c, tx))
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

    /// Stops the daemon after its current iteration.
    pub async fn stop(self) -> Result<(), ReconcileError> {
        let _ = self.shutdown.send(true);
        let out = self
            .task
            .await
            .map_err(|e| ReconcileError::Stopped(e.to_string()))?;
        if let Some(s) = self.server {
            let _ = s.await;
        }
        out
    }
}

/// Runs the daemon until `shutdown` completes (or it fails).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ReconcileError> {
    let mut daemon = Daemon::start(config).await?;
    tokio::select! {
        () = shutdown => daemon.stop().await,
        r = &mut daemon.task => r.map_err(|e| ReconcileError::Stopped(e.to_string()))?,
    }
}

/// One engine as last seen.
struct EngineView {
    client: Arc<dyn EngineClient>,
    route: Option<RouteSpec>,
    /// Whether `route` was read (or set) successfully.
    known: bool,
    stats: Option<EngineStats>,
    error: Option<String>,
    down_since: Option<u64>,
}

/// A commit's build, kept while its head is not acted on.
#[derive(Clone)]
enum Cached {
    Ready(Box<CachedReady>),
    Refused { reason: String, summary: String },
}

#[derive(Clone)]
struct CachedReady {
    artifact: String,
    plan: Option<RolloutPlan>,
    replay: ReplaySummary,
    notes: serde_json::Value,
    summary: String,
}

/// A build and the artifact bytes to keep in memory.
type Built = (Cached, Option<(String, Vec<u8>)>);

struct Runner {
    config: Config,
    store: Arc<Store>,
    state: State,
    mirror: Arc<Mutex<Mirror>>,
    engines: Vec<EngineView>,
    /// Rollout plans by commit.
    plans: HashMap<String, Option<RolloutPlan>>,
    builds: HashMap<String, Cached>,
    /// The commit being built in the background.
    building: Option<(
        String,
        tokio::task::JoinHandle<Result<Built, ReconcileError>>,
    )>,
    /// Wakes the loop when a build is done.
    build_done: Arc<Notify>,
    artifacts: HashMap<String, Arc<Vec<u8>>>,
    head: Option<String>,
    fetched_ms: Option<u64>,
    git_error: Option<String>,
    last_fetch: Option<Instant>,
    fetch_now: bool,
    observed: Observed,
    decision: Option<StageDecision>,
    waiting: Option<String>,
    error: Option<String>,
    revert_attempts: u32,
    revert_error: Option<String>,
    next_revert: Instant,
    status: watch::Sender<Status>,
    events: broadcast::Sender<Transition>,
}

fn lock(m: &Mutex<Mirror>) -> std::sync::MutexGuard<'_, Mirror> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

impl Runner {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<CommandRequest>,
        hook: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ReconcileError> {
        tracing::info!(
            repo = %self.config.repo,
            branch = %self.config.branch,
            engines = self.engines.len(),
            phase = %self.state.label(),
            "reconcile daemon started"
        );
        let mut command: Option<CommandRequest> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let moved = match command.take() {
                Some((c, reply)) => {
                    let answer = self.operator(c).await;
                    let moved = answer.is_ok();
                    let _ = reply.send(answer);
                    moved
                }
                None => match self.iterate().await {
                    Ok(moved) => {
                        self.error = None;
                        moved
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reconcile iteration failed");
                        self.error = Some(e.to_string());
                        false
                    }
                },
            };
            self.publish();
            if moved {
                continue;
            }
            let next = self.next_wake();
            let built = self.build_done.clone();
            tokio::select! {
                _ = shutdown.changed() => {}
                c = commands.recv() => command = c,
                () = hook.notified() => self.fetch_now = true,
                () = built.notified() => {}
                () = tokio::time::sleep_until(next) => {}
            }
        }
        tracing::info!("reconcile daemon stopped");
        Ok(())
    }

    fn next_wake(&self) -> Instant {
        let base = self.last_fetch.unwrap_or_else(Instant::now);
        let mut next = base + self.config.interval;
        if !self.state.reverts.is_empty() {
            next = next.min(self.next_revert);
        }
        next
    }

    /// One pass: fetch when due, read and converge the engines, then at most
    /// one transition. Returns whether a transition was made.
    async fn iterate(&mut self) -> Result<bool, ReconcileError> {
        let due = self.fetch_now
            || self
                .last_fetch
                .is_none_or(|t| t.elapsed() >= self.config.interval);
        if due {
            self.fetch().await;
        }
        self.observe().await;
        self.converge(false).await;
        self.compute_observed();

        // 1. The stage in flight (rollback triggers first of all).
        let step = self.step(Event::Tick);
        self.decision = step.decision.clone();
        if step.transition.is_some() {
            self.commit(step).await?;
            return Ok(true);
        }
        // 2. A revert still to land.
        if !self.state.reverts.is_empty()
            && Instant::now() >= self.next_revert
            && self.revert().await?
        {
            return Ok(true);
        }
        // 3. A new head.
        self.waiting = None;
        if let Some(head) = self.head.clone()
            && self.state.head.as_deref() != Some(head.as_str())
        {
            if !self.poll_build(&head).await? {
                self.waiting = Some(format!("head {}: checking the commit", short(&head)));
                return Ok(false);
            }
            let event = self.head_event(&head);
            let step = self.step(event);
            if step.transition.is_some() {
                self.commit(step).await?;
                return Ok(true);
            }
            if let Err(why) = step.reply {
                self.waiting = Some(why);
            }
        }
        Ok(false)
    }

    async fn operator(&mut self, c: machine::Command) -> Result<String, String> {
        let step = self.step(Event::Operator(c));
        let reply = step.reply.clone();
        if step.transition.is_some() {
            if let Err(e) = self.commit(step).await {
                return Err(format!("the transition could not be persisted: {e}"));
            }
        }
        reply
    }

    fn candidate_plan(&self) -> Option<&RolloutPlan> {
        let r = self.state.rollout.as_ref()?;
        self.plans.get(&r.commit)?.as_ref()
    }

    fn fleet(&self) -> Fleet {
        if self.engines.iter().any(|e| !e.known) {
            return Fleet::Unknown;
        }
        let stables: Vec<&str> = self
            .engines
            .iter()
            .filter_map(|e| e.route.as_ref().map(|r| r.stable.as_str()))
            .collect();
        match stables.first() {
            None => Fleet::Empty,
            Some(first)
                if stables.len() == self.engines.len() && stables.iter().all(|s| s == first) =>
            {
                Fleet::Stable((*first).to_string())
            }
            Some(_) => Fleet::Mixed,
        }
    }

    fn step(&self, event: Event) -> machine::Step {
        let ctx = Ctx {
            now_ms: clock::now_ms(),
            plan: self.candidate_plan(),
            observed: &self.observed,
            fleet: self.fleet(),
            engine_grace_ms: u64::try_from(self.config.engine_grace.as_millis())
                .unwrap_or(u64::MAX),
        };
        machine::step(&self.state, &ctx, event)
    }

    /// Persists a step, appends its audit line, then acts on it.
    async fn commit(&mut self, step: machine::Step) -> Result<(), ReconcileError> {
        let Some(t) = step.transition.clone() else {
            return Ok(());
        };
        let store = self.store.clone();
        let new = step.state.clone();
        let line = t.clone();
        tokio::task::spawn_blocking(move || {
            store.save_state(&new)?;
            store.append_audit(&line)
        })
        .await
        .map_err(|e| ReconcileError::Stopped(e.to_string()))??;
        self.state = step.state;
        // The decision that led here belongs to the old phase.
        self.decision = None;
        tracing::info!(
            seq = t.seq,
            event = %t.event,
            from = %t.from,
            to = %t.to,
            cause = t.cause.as_str(),
            commit = t.commit.as_deref().map(short).unwrap_or(""),
            "{}",
            t.reason
        );
        let _ = self.events.send(t);
        if let Some(r) = &self.state.rollout {
            self.ensure_plan(&r.commit.clone()).await;
        }
        for action in step.actions {
            match action {
                Action::SetRoutes => self.converge(true).await,
                Action::Upload { artifact } => self.upload_all(&artifact).await,
                Action::Revert { .. } => {
                    self.revert_attempts = 0;
                    self.revert_error = None;
                    self.next_revert = Instant::now();
                }
            }
        }
        Ok(())
    }

    async fn fetch(&mut self) {
        self.fetch_now = false;
        self.last_fetch = Some(Instant::now());
        let mirror = self.mirror.clone();
        let out = tokio::task::spawn_blocking(move || lock(&mirror).fetch()).await;
        match out {
            Ok(Ok(head)) => {
                self.head = Some(head);
                self.fetched_ms = Some(clock::now_ms());
                self.git_error = None;
            }
            Ok(Err(e)) => {
                if self.git_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(error = %e, "fetching the branch failed");
                }
                self.git_error = Some(e.to_string());
                if self.head.is_none() {
                    self.head = lock(&self.mirror).head();
                }
            }
            Err(e) => self.git_error = Some(e.to_string()),
        }
        // The plan of a candidate persisted by an earlier run.
        if let Some(r) = &self.state.rollout {
            self.ensure_plan(&r.commit.clone()).await;
        }
    }

    /// Loads a commit's rollout plan from its `sluice.toml`.
    async fn ensure_plan(&mut self, commit: &str) {
        if self.plans.contains_key(commit) {
            return;
        }
        if let Some(Cached::Ready(r)) = self.builds.get(commit) {
            self.plans.insert(commit.to_string(), r.plan.clone());
            return;
        }
        let mirror = self.mirror.clone();
        let c = commit.to_string();
        let read = tokio::task::spawn_blocking(move || lock(&mirror).read_commit(&c)).await;
        if let Ok(Ok(files)) = read
            && let Ok(sources) = &files.sources
            && let Ok(project) = crate::project::parse(&sources.project)
        {
            self.plans.insert(commit.to_string(), project.rollout);
        }
    }

    fn head_event(&mut self, head: &str) -> Event {
        let cached = self.builds.get(head).cloned();
        let (summary, build) = match cached {
            Some(Cached::Ready(r)) => {
                let r = *r;
                self.plans.insert(head.to_string(), r.plan.clone());
                (
                    r.summary,
                    Build::Ready(Box::new(Ready {
                        artifact: r.artifact,
                        plan: r.plan,
                        replay: r.replay,
                        notes: r.notes,
                    })),
                )
            }
            Some(Cached::Refused { reason, summary }) => (summary, Build::Refused { reason }),
            None => (
                String::new(),
                Build::Refused {
                    reason: "the commit could not be built".to_string(),
                },
            ),
        };
        Event::Head(Head {
            commit: head.to_string(),
            summary,
            build,
        })
    }

    /// Starts building `head` in the background unless it is built or being
    /// built; takes in a finished build. Returns whether `head` is built.
    async fn poll_build(&mut self, head: &str) -> Result<bool, ReconcileError> {
        if self.building.as_ref().is_some_and(|(_, h)| h.is_finished())
            && let Some((commit, handle)) = self.building.take()
        {
            let (cached, bytes) = handle
                .await
                .map_err(|e| ReconcileError::Stopped(e.to_string()))??;
            if let Some((hash, bytes)) = bytes {
                self.artifacts.insert(hash, Arc::new(bytes));
            }
            let keep = [self.head.clone(), self.state.head.clone()];
            self.builds
                .retain(|k, _| keep.iter().any(|h| h.as_deref() == Some(k.as_str())));
            self.builds.insert(commit, cached);
        }
        if self.builds.contains_key(head) {
            return Ok(true);
        }
        if self.building.is_none() {
            let live = self.live_states().await;
            let base = self.stable_set().await;
            let mirror = self.mirror.clone();
            let store = self.store.clone();
            let log = self.config.decision_log.clone();
            let done = self.build_done.clone();
            let commit = head.to_string();
            let handle = tokio::task::spawn_blocking(move || {
                let live = build::Live {
                    engines: &live,
                    base: base.as_ref(),
                };
                let out = build_commit(&mirror, &store, &commit, log.as_deref(), Some(live));
                done.notify_one();
                out
            });
            self.building = Some((head.to_string(), handle));
        }
        Ok(false)
    }

    /// The live state of every engine that exposes it.
    async fn live_states(&self) -> Vec<(String, crate::api::state::LiveState)> {
        let mut set = JoinSet::new();
        for e in self.engines.iter().filter(|e| e.known) {
            let client = e.client.clone();
            set.spawn(async move { (client.name().to_string(), client.live_state().await) });
        }
        let mut out = Vec::new();
        while let Some(Ok((name, r))) = set.join_next().await {
            match r {
                Ok(Some(state)) => out.push((name, state)),
                Ok(None) => {}
                Err(e) => tracing::warn!(engine = %name, error = %e, "live state unavailable"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The stable artifact's policy set, from the stored artifact.
    async fn stable_set(&mut self) -> Option<crate::model::ir::PolicySet> {
        let hash = self.state.stable.as_ref()?.artifact.clone();
        let bytes = self.artifact(&hash).await?;
        let a = crate::compile::artifact::Artifact::from_bytes(&bytes).ok()?;
        Some(crate::model::ir::PolicySet {
            policies: a.policies,
        })
    }

    async fn revert(&mut self) -> Result<bool, ReconcileError> {
        let Some(pending) = self.state.reverts.first().cloned() else {
            return Ok(false);
        };
        let mirror = self.mirror.clone();
        let p = pending.clone();
        let out = tokio::task::spawn_blocking(move || lock(&mirror).revert(&p))
            .await
            .map_err(|e| ReconcileError::Stopped(e.to_string()))?;
        match out {
            Ok(outcome) => {
                if let machine::RevertOutcome::Pushed { revert } = &outcome {
                    self.head = Some(revert.clone());
                    self.fetched_ms = Some(clock::now_ms());
                    self.git_error = None;
                }
                self.revert_attempts = 0;
                self.revert_error = None;
                let step = self.step(Event::Reverted {
                    commit: pending.commit.clone(),
                    outcome,
                });
                let moved = step.transition.is_some();
                self.commit(step).await?;
                Ok(moved)
            }
            Err(e) => {
                self.revert_attempts += 1;
                if self.revert_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(commit = %short(&pending.commit), error = %e, "the revert did not land; retrying");
                }
                self.revert_error = Some(e.to_string());
                let backoff = self
                    .config
                    .interval
                    .min(Duration::from_millis(250))
                    .saturating_mul(self.revert_attempts.min(20))
                    .min(Duration::from_secs(5));
                self.next_revert = Instant::now() + backoff;
                Ok(false)
            }
        }
    }

    /// Reads every engine's route and figures, in parallel.
    async fn observe(&mut self) {
        let mut set = JoinSet::new();
        for (i, e) in self.engines.iter().enumerate() {
            let client = e.client.clone();
            set.spawn(async move {
                let (route, stats) = tokio::join!(client.get_route(), client.stats());
                (i, route, stats)
            });
        }
        let now = clock::now_ms();
        while let Some(joined) = set.join_next().await {
            let Ok((i, route, stats)) = joined else {
                continue;
            };
            let Some(view) = self.engines.get_mut(i) else {
                continue;
            };
            match (route, stats) {
                (Ok(route), Ok(stats)) => {
                    view.route = route;
                    view.known = true;
                    view.stats = Some(stats);
                    view.error = None;
                    view.down_since = None;
                }
                (Err(e), _) | (_, Err(e)) => {
                    if view.error.is_none() {
                        tracing::warn!(engine = view.client.name(), error = %e, "engine unreachable");
                    }
                    view.known = false;
                    view.stats = None;
                    view.error = Some(e.to_string());
                    view.down_since.get_or_insert(now);
                }
            }
        }
    }

    fn desired(&self) -> Option<RouteSpec> {
        machine::desired_route(&self.state, self.candidate_plan())
    }

    async fn artifact(&mut self, hash: &str) -> Option<Arc<Vec<u8>>> {
        if let Some(a) = self.artifacts.get(hash) {
            return Some(a.clone());
        }
        let store = self.store.clone();
        let h = hash.to_string();
        let bytes = tokio::task::spawn_blocking(move || store.load_artifact(&h))
            .await
            .ok()?
            .ok()?;
        let bytes = Arc::new(bytes);
        self.artifacts.insert(hash.to_string(), bytes.clone());
        Some(bytes)
    }

    async fn upload_all(&mut self, hash: &str) {
        let Some(bytes) = self.artifact(hash).await else {
            tracing::warn!(artifact = %short(hash), "artifact not stored: cannot upload it");
            return;
        };
        let mut set = JoinSet::new();
        for e in &self.engines {
            let client = e.client.clone();
            let bytes = bytes.clone();
            let hash = hash.to_string();
            set.spawn(async move {
                let r = client.upload(&hash, &bytes).await;
                (client.name().to_string(), r)
            });
        }
        while let Some(Ok((name, r))) = set.join_next().await {
            if let Err(e) = r {
                tracing::warn!(engine = %name, error = %e, "upload failed; retried when the route is set");
            }
        }
    }

    /// Moves every engine that is not on the desired route onto it, in
    /// parallel; an engine missing an artifact gets it uploaded first.
    /// `all` also tries engines that did not answer the last read.
    async fn converge(&mut self, all: bool) {
        let Some(desired) = self.desired() else {
            return;
        };
        let mut hashes = vec![desired.stable.clone()];
        hashes.extend(desired.candidate.clone());
        let mut needed = Vec::new();
        for h in &hashes {
            if let Some(b) = self.artifact(h).await {
                needed.push((h.clone(), b));
            }
        }
        let needed = Arc::new(needed);
        let desired = Arc::new(desired);
        let mut set = JoinSet::new();
        for (i, e) in self.engines.iter().enumerate() {
            let on = e.known
                && e.route
                    .as_ref()
                    .is_some_and(|r| machine::same_route(r, &desired));
            if on || (!all && !e.known) {
                continue;
            }
            let client = e.client.clone();
            let desired = desired.clone();
            let needed = needed.clone();
            set.spawn(async move {
                let r = set_route(client.as_ref(), &desired, &needed).await;
                (i, r)
            });
        }
        while let Some(Ok((i, r))) = set.join_next().await {
            let Some(view) = self.engines.get_mut(i) else {
                continue;
            };
            match r {
                Ok(()) => {
                    view.route = Some((*desired).clone());
                    view.known = true;
                    // Figures of the old route do not count for the new one.
                    view.stats = None;
                }
                Err(e) => {
                    tracing::warn!(engine = view.client.name(), error = %e, "setting the route failed");
                    view.error = Some(e.to_string());
                }
            }
        }
    }

    fn compute_observed(&mut self) {
        let now = clock::now_ms();
        let desired = self.desired();
        let unreachable: Vec<&EngineView> = self.engines.iter().filter(|e| !e.known).collect();
        let unreachable_ms = unreachable
            .iter()
            .filter_map(|e| e.down_since)
            .min()
            .map_or(0, |t| now.saturating_sub(t));
        let names = unreachable
            .iter()
            .map(|e| e.client.name().to_string())
            .collect();
        let Some(desired) = desired else {
            self.observed = Observed {
                figures: None,
                complete: false,
                unreachable: names,
                unreachable_ms,
            };
            return;
        };
        let on: Vec<&EngineStats> = self
            .engines
            .iter()
            .filter(|e| {
                e.known
                    && e.route
                        .as_ref()
                        .is_some_and(|r| machine::same_route(r, &desired))
            })
            .filter_map(|e| e.stats.as_ref())
            .filter(|s| observe::stats_match(s, &desired))
            .collect();
        let complete = on.len() == self.engines.len();
        let figures =
            (desired.candidate.is_some() && !on.is_empty()).then(|| observe::sum(&desired, &on));
        self.observed = Observed {
            figures,
            complete,
            unreachable: names,
            unreachable_ms,
        };
    }

    fn publish(&self) {
        let desired = self.desired();
        let s = &self.state;
        let candidate = s.rollout.as_ref().map(|r| {
            let plan = self.candidate_plan();
            let stage = plan.and_then(|p| p.stages.get(r.stage));
            let ms =
                |d: Option<Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let d = self.decision.as_ref();
            let values = |v: Option<&Vec<crate::rollout::gate::GateReading>>| {
                v.map(|g| g.iter().map(|x| json!(x)).collect())
                    .unwrap_or_default()
            };
            CandidateStatus {
                commit: r.commit.clone(),
                summary: r.summary.clone(),
                artifact: r.artifact.clone(),
                stage: r.stage_name.clone(),
                stage_index: r.stage,
                stages: plan
                    .map(|p| p.stages.iter().map(|s| s.name.clone()).collect())
                    .unwrap_or_default(),
                kind: stage
                    .map(|s| s.kind.as_str().to_string())
                    .unwrap_or_default(),
                percent: stage.and_then(|s| s.percent),
                in_stage_ms: clock::now_ms().saturating_sub(r.stage_started_ms),
                min_duration_ms: ms(stage.and_then(|s| s.min_duration)),
                max_duration_ms: ms(stage.and_then(|s| s.max_duration)),
                min_samples: stage.and_then(|s| s.min_samples),
                step: d.map(|d| json!(d.step)),
                gates: values(d.map(|d| &d.readings)),
                triggers: values(d.map(|d| &d.triggers)),
                samples_left: d.map(|d| d.samples_left),
                time_left_ms: d.map(|d| u64::try_from(d.time_left.as_millis()).unwrap_or(u64::MAX)),
                observed: self.observed.figures.as_ref().map(|o| json!(o)),
                replay: r.replay.clone(),
                notes: r.notes.clone(),
            }
        });
        let engines = self
            .engines
            .iter()
            .map(|e| EngineStatus {
                url: e.client.name().to_string(),
                reachable: e.known,
                on_route: e.known
                    && match (&e.route, &desired) {
                        (Some(r), Some(d)) => machine::same_route(r, d),
                        (None, None) => true,
                        _ => false,
                    },
                route: e.route.clone(),
                error: e.error.clone(),
            })
            .collect();
        let reverts = s
            .reverts
            .iter()
            .enumerate()
            .map(|(i, r)| RevertStatus {
                commit: r.commit.clone(),
                stage: r.stage.clone(),
                trigger: r.trigger.clone(),
                attempts: if i == 0 { self.revert_attempts } else { 0 },
                last_error: if i == 0 {
                    self.revert_error.clone()
                } else {
                    None
                },
            })
            .collect();
        let status = Status {
            repo: self.config.repo.clone(),
            branch: self.config.branch.clone(),
            head: self.head.clone(),
            fetched: self.fetched_ms.map(machine::rfc3339),
            git_error: self.git_error.clone(),
            phase: s.phase(),
            paused: s.paused.clone(),
            stable: s.stable.clone(),
            previous: s.previous.clone(),
            candidate,
            engines,
            reverts,
            quarantine: s.quarantine.clone(),
            refused: s.refused.clone(),
            waiting: self.waiting.clone(),
            last: s.last.clone(),
            error: self.error.clone(),
        };
        self.status.send_replace(status);
    }
}

/// Reads, compiles, checks and replays a commit, and stores its artifact
/// (blocking: run on the blocking pool).
fn build_commit(
    mirror: &Mutex<Mirror>,
    store: &Store,
    commit: &str,
    log_path: Option<&std::path::Path>,
    live: Option<build::Live<'_>>,
) -> Result<Built, ReconcileError> {
    let read = lock(mirror).read_commit(commit);
    let files = match read {
        Ok(f) => f,
        Err(e) => {
            let summary = lock(mirror).summary(commit);
            let reason = e.to_string();
            return Ok((Cached::Refused { reason, summary }, None));
        }
    };
    let log = log_path.and_then(|p| std::fs::read_to_string(p).ok());
    match build::build(&files, log.as_deref(), live) {
        Ok(b) => {
            store.save_artifact(&b.artifact.hash, &b.bytes)?;
            let cached = Cached::Ready(Box::new(CachedReady {
                artifact: b.artifact.hash.clone(),
                plan: b.plan,
                replay: ReplaySummary::of(&b.replay),
                notes: b.notes,
                summary: files.summary.clone(),
            }));
            Ok((cached, Some((b.artifact.hash, b.bytes))))
        }
        Err(reason) => Ok((
            Cached::Refused {
                reason,
                summary: files.summary.clone(),
            },
            None,
        )),
    }
}

/// Sets one engine's route; when the engine lacks an artifact (409), uploads
/// the route's artifacts and tries once more. A call that did not get
/// through (a pooled connection the engine had closed) is tried again at
/// once: a rollback must not wait for the next pass.
async fn set_route(
    client: &dyn EngineClient,
    route: &RouteSpec,
    artifacts: &[(String, Arc<Vec<u8>>)],
) -> Result<(), EngineError> {
    let first = match client.set_route(route).await {
        Err(EngineError::Unreachable(_)) => client.set_route(route).await,
        other => other,
    };
    match first {
        Err(e) if e.is_missing_artifact() => {
            for (hash, bytes) in artifacts {
                client.upload(hash, bytes).await?;
            }
            client.set_route(route).await
        }
        other => other,
    }
}
