//! The loop: each iteration fetches the branch when due, reads and
//! converges the engines (`converge`), then takes at most one transition of
//! the rollout machine: the stage in flight first, then a pending revert,
//! then a new head (`branch`). A transition is persisted and its audit line
//! appended *before* its actions run. Operator commands are steps of the
//! same loop, so they never race an iteration.
//!
//! The loop owns the state folder's lock for as long as it runs, and reads
//! the time only through the configuration's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, FibonacciBackoff, FibonacciBuilder};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;

use super::Config;
use super::api::CommandRequest;
use super::client::EngineClient;
use super::err::ReconcileError;
use super::git::Mirror;
use super::lock::FolderLock;
use super::store::Store;
use crate::api::audit::{Notes, Transition};
use crate::api::replay::ReplayTotals;
use crate::api::rollout_state::State;
use crate::api::route::RouteSpec;
use crate::api::stats::EngineStats;
use crate::api::status::Status;
use crate::model::plan::RolloutPlan;
use crate::model::short;
use crate::rollout::machine::{self, Action, Ctx, Event, Observed};
use crate::rollout::stage::StageDecision;

/// The longest wait between two attempts at pushing a revert.
pub(super) const MAX_REVERT_BACKOFF: Duration = Duration::from_secs(5);

/// The first wait before another attempt at pushing a revert (the loop's
/// interval when that is shorter).
const FIRST_REVERT_BACKOFF: Duration = Duration::from_millis(250);

/// One engine as last seen.
pub(super) struct EngineView {
    pub(super) client: Arc<dyn EngineClient>,
    pub(super) route: Option<RouteSpec>,
    /// Whether `route` was read (or set) successfully.
    pub(super) known: bool,
    pub(super) stats: Option<EngineStats>,
    pub(super) error: Option<String>,
    pub(super) down_since: Option<u64>,
}

/// A commit's build, kept while its head is not acted on.
#[derive(Clone)]
pub(super) enum Cached {
    Ready(Box<CachedReady>),
    Refused { reason: String, summary: String },
}

#[derive(Clone)]
pub(super) struct CachedReady {
    pub(super) artifact: String,
    pub(super) plan: Option<RolloutPlan>,
    pub(super) replay: ReplayTotals,
    pub(super) notes: Notes,
    pub(super) summary: String,
}

/// A build and the artifact bytes to keep in memory.
pub(super) type Built = (Cached, Option<(String, Vec<u8>)>);

/// Where the loop publishes what it does.
pub(super) struct Outputs {
    /// The status, once per iteration.
    pub(super) status: watch::Sender<Status>,
    /// Every transition, once persisted.
    pub(super) events: broadcast::Sender<Transition>,
}

/// The loop's state: what it knows of the branch, the engines and the
/// builds, beside the persisted rollout state.
pub(super) struct Runner {
    pub(super) config: Config,
    /// Held for as long as the loop runs.
    _folder: FolderLock,
    pub(super) store: Arc<Store>,
    pub(super) state: State,
    pub(super) mirror: Arc<Mutex<Mirror>>,
    pub(super) engines: Vec<EngineView>,
    /// Rollout plans by commit.
    pub(super) plans: HashMap<String, Option<RolloutPlan>>,
    pub(super) builds: HashMap<String, Cached>,
    /// The commit being built in the background.
    pub(super) building: Option<(
        String,
        tokio::task::JoinHandle<Result<Built, ReconcileError>>,
    )>,
    /// Wakes the loop when a build is done.
    pub(super) build_done: Arc<Notify>,
    pub(super) artifacts: HashMap<String, Arc<Vec<u8>>>,
    pub(super) head: Option<String>,
    pub(super) fetched_ms: Option<u64>,
    pub(super) git_error: Option<String>,
    pub(super) last_fetch: Option<Instant>,
    pub(super) fetch_now: bool,
    pub(super) observed: Observed,
    pub(super) decision: Option<StageDecision>,
    pub(super) waiting: Option<String>,
    pub(super) error: Option<String>,
    pub(super) revert_attempts: u32,
    pub(super) revert_error: Option<String>,
    pub(super) next_revert: Instant,
    /// The waits between attempts at pushing the pending revert.
    pub(super) revert_backoff: FibonacciBackoff,
    pub(super) out: Outputs,
}

/// The mirror, even if a thread panicked holding it (it holds no invariant
/// a panic could break: every call reads or writes git objects whole).
pub(super) fn lock(m: &Mutex<Mirror>) -> std::sync::MutexGuard<'_, Mirror> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Runner {
    pub(super) fn new(
        config: Config,
        folder: FolderLock,
        store: Store,
        state: State,
        mirror: Arc<Mutex<Mirror>>,
        engines: Vec<Arc<dyn EngineClient>>,
        out: Outputs,
    ) -> Runner {
        let revert_backoff = revert_backoff(config.interval);
        Runner {
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
            _folder: folder,
            store: Arc::new(store),
            state,
            mirror,
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
            revert_backoff,
            out,
        }
    }

    /// Now, from the configuration's clock.
    pub(super) fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    pub(super) async fn run(
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
                self.waiting = Some(format!("head {}: checking the commit", short::hash(&head)));
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

    pub(super) fn candidate_plan(&self) -> Option<&RolloutPlan> {
        let r = self.state.rollout.as_ref()?;
        self.plans.get(&r.commit)?.as_ref()
    }

    pub(super) fn step(&self, event: Event) -> machine::Step {
        let ctx = Ctx {
            now_ms: self.now_ms(),
            plan: self.candidate_plan(),
            observed: &self.observed,
            fleet: self.fleet(),
            engine_grace_ms: u64::try_from(self.config.engine_grace.as_millis())
                .unwrap_or(u64::MAX),
        };
        machine::step(&self.state, &ctx, event)
    }

    /// Persists a step, appends its audit line, then acts on it.
    pub(super) async fn commit(&mut self, step: machine::Step) -> Result<(), ReconcileError> {
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
        .await??;
        self.state = step.state;
        // The decision that led here belongs to the old phase.
        self.decision = None;
        tracing::info!(
            seq = t.seq,
            event = %t.event,
            from = %t.from,
            to = %t.to,
            cause = t.cause.as_str(),
            commit = t.commit.as_deref().map(short::hash).unwrap_or(""),
            "{}",
            t.reason
        );
        let _ = self.out.events.send(t);
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
                    self.revert_backoff = revert_backoff(self.config.interval);
                    self.next_revert = Instant::now();
                }
            }
        }
        Ok(())
    }
}

/// The waits between attempts at pushing a revert: growing from the loop's
/// interval (at most 250 ms) along the Fibonacci sequence, to 5 s at most,
/// for as long as it takes.
pub(super) fn revert_backoff(interval: Duration) -> FibonacciBackoff {
    FibonacciBuilder::new()
        .with_min_delay(interval.min(FIRST_REVERT_BACKOFF))
        .with_max_delay(MAX_REVERT_BACKOFF)
        .without_max_times()
        .build()
}
