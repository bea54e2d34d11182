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
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Config;
use super::api::{CommandRequest, Said};
use super::client::{EngineClient, EngineError};
use super::err::ReconcileError;
use super::git::Mirror;
use super::gitcall::{GitCall, GitCalls};
use super::lock::FolderLock;
use super::store::Store;
use crate::api::audit::{Notes, Transition};
use crate::api::lease::LeaseGranted;
use crate::api::replay::ReplayTotals;
use crate::api::rollout_state::State;
use crate::api::route::{RouteInForce, RouteSpec};
use crate::api::stats::EngineStats;
use crate::api::status::Status;
use crate::model::plan::RolloutPlan;
use crate::model::short;
use crate::rollout::machine::{self, Action, Ctx, Event, Observed, RevertOutcome};
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
    /// The route's version as last read or set (0: no route).
    pub(super) version: u64,
    /// Who holds the engine's lease.
    pub(super) holder: Holder,
    /// When this daemon last renewed (or took) the lease.
    pub(super) renewed: Option<Instant>,
    /// `--take-over`: claim this engine by force.
    pub(super) take_over: bool,
    /// Whether `route` was read (or set) successfully.
    pub(super) known: bool,
    pub(super) stats: Option<EngineStats>,
    pub(super) error: Option<String>,
    pub(super) down_since: Option<u64>,
    /// A read of this engine is in flight.
    pub(super) reading: bool,
    /// A route change of this engine is in flight.
    pub(super) routing: bool,
    /// Route changes started on this engine: a read that started before
    /// the last one is not taken for its state.
    pub(super) epoch: u64,
    /// Deletions of artifacts it no longer needs are in flight.
    pub(super) deleting: bool,
}

/// A commit's build, kept while its head is not acted on.
#[derive(Clone)]
pub(super) struct Cached {
    pub(super) summary: String,
    /// What the build was made against; a build against anything else is
    /// made again.
    pub(super) against: Against,
    /// The commits since the stable commit, oldest first.
    pub(super) commits: Vec<String>,
    /// The commit does not descend from `against.anchor`.
    pub(super) forced: bool,
    /// The build, or why the commit is refused.
    pub(super) result: Result<Box<CachedReady>, String>,
}

/// What a commit is built against, read from the state when the build
/// starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Against {
    /// The stable commit: its plan and traces gate the build.
    pub(super) base: Option<String>,
    /// The commit a new head must descend from (the last head acted on, or
    /// an accepted rewrite's).
    pub(super) anchor: Option<String>,
}

#[derive(Clone)]
pub(super) struct CachedReady {
    pub(super) artifact: String,
    /// The plan that gates the commit (its stable commit's).
    pub(super) plan: Option<RolloutPlan>,
    pub(super) replay: ReplayTotals,
    pub(super) notes: Notes,
}

/// A build and the artifact bytes to keep in memory.
pub(super) type Built = (Cached, Option<(String, Vec<u8>)>);

/// Where the loop publishes what it does.
pub(super) struct Outputs {
    /// The status, once per iteration.
    pub(super) status: watch::Sender<Status>,
    /// Every transition, once persisted.
    pub(super) events: broadcast::Sender<Transition>,
    /// The notifications' deliveries, when there are any.
    pub(super) deliveries: Option<Arc<super::notify::Health>>,
}

/// The loop's state: what it knows of the branch, the engines and the
/// builds, beside the persisted rollout state.
pub(super) struct Runner {
    pub(super) config: Config,
    /// This daemon's identity: the owner named in every lease.
    pub(super) identity: String,
    /// Held for as long as the loop runs.
    _folder: FolderLock,
    pub(super) store: Arc<Store>,
    pub(super) state: State,
    pub(super) mirror: Arc<Mutex<Mirror>>,
    pub(super) engines: Vec<EngineView>,
    /// Engine calls in flight (`converge`), and the engine of each.
    pub(super) calls: JoinSet<Reply>,
    pub(super) call_of: HashMap<tokio::task::Id, usize>,
    /// Operator commands; one taken in while the loop waited for engines
    /// is kept in `queued` and runs next.
    pub(super) commands: mpsc::Receiver<CommandRequest>,
    pub(super) queued: Option<CommandRequest>,
    pub(super) commands_closed: bool,
    /// Rollout plans by the commit whose `sluice.toml` holds them.
    pub(super) plans: HashMap<String, Option<RolloutPlan>>,
    pub(super) builds: HashMap<String, Cached>,
    /// The commit being built in the background, and where its build
    /// arrives (sent before the loop is woken, so a wake-up always finds
    /// it).
    pub(super) building: Option<(
        String,
        tokio::sync::oneshot::Receiver<Result<Built, ReconcileError>>,
    )>,
    /// Wakes the loop when a build is done.
    pub(super) build_done: Arc<Notify>,
    pub(super) artifacts: HashMap<String, Arc<Vec<u8>>>,
    pub(super) head: Option<String>,
    pub(super) fetched_ms: Option<u64>,
    pub(super) git_error: Option<String>,
    /// Git's network calls, off the loop.
    pub(super) git: GitCalls,
    /// The fetch in flight.
    pub(super) fetching: Option<GitCall<String>>,
    /// The revert in flight, and the commit it reverts.
    /// `None` from a look for a revert made by hand: still needed.
    pub(super) reverting: Option<(String, GitCall<Option<RevertOutcome>>)>,
    /// The last fetch found no branch on the remote.
    pub(super) branch_missing: bool,
    pub(super) last_fetch: Option<Instant>,
    pub(super) fetch_now: bool,
    /// Fetches that failed in a row (a missing branch is not a failure).
    pub(super) fetch_failures: u32,
    /// The wait before the next fetch: the interval, or longer after
    /// failures ([`fetch_backoff`]).
    pub(super) fetch_wait: Duration,
    pub(super) fetch_backoff: FibonacciBackoff,
    pub(super) observed: Observed,
    pub(super) decision: Option<StageDecision>,
    pub(super) waiting: Option<String>,
    pub(super) error: Option<String>,
    /// Attempts at the pending revert so far.
    pub(super) revert_attempts: u32,
    /// Of which the revert could not be made (not counting an unreachable
    /// remote): [`machine::REVERT_ATTEMPTS`] of them stop the daemon.
    pub(super) revert_failures: u32,
    pub(super) revert_error: Option<String>,
    /// The head last looked at for a revert made by hand, while the
    /// pending revert is stuck.
    pub(super) stuck_checked: Option<String>,
    pub(super) next_revert: Instant,
    /// The waits between attempts at pushing the pending revert.
    pub(super) revert_backoff: FibonacciBackoff,
    /// The state folder's artifacts are to be collected (after a
    /// transition, and at start).
    pub(super) collect_due: bool,
    pub(super) out: Outputs,
}

/// The lease an engine shows, as this daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum Holder {
    /// Not read yet, or the engine did not say.
    #[default]
    Unknown,
    /// No live lease.
    Free,
    /// This daemon's.
    Mine,
    /// Another daemon's.
    Other(String),
}

/// An engine read's answer; `epoch`: the engine's route changes when it
/// started.
pub(super) struct ReadReply {
    pub(super) engine: usize,
    pub(super) epoch: u64,
    pub(super) route: Result<Option<RouteInForce>, EngineError>,
    pub(super) stats: Result<EngineStats, EngineError>,
    pub(super) renewal: Option<Result<LeaseGranted, EngineError>>,
}

/// An engine call's answer.
pub(super) enum Reply {
    /// A read of the route and figures, with the lease's renewal when due.
    Read(Box<ReadReply>),
    /// A route set: its new version.
    Routed {
        engine: usize,
        route: Arc<RouteSpec>,
        result: Result<u64, EngineError>,
    },
    /// Artifacts deleted: each hash and its answer.
    Deleted {
        engine: usize,
        results: Vec<(String, Result<(), EngineError>)>,
    },
    /// An artifact uploaded.
    Uploaded {
        engine: usize,
        result: Result<(), EngineError>,
    },
}

/// What woke the loop.
enum Wake {
    Command(Option<CommandRequest>),
    Engine(Option<Result<(tokio::task::Id, Reply), tokio::task::JoinError>>),
    Hook,
    Other,
}

/// The mirror, even if a thread panicked holding it (it holds no invariant
/// a panic could break: every call reads or writes git objects whole).
pub(super) fn lock(m: &Mutex<Mirror>) -> std::sync::MutexGuard<'_, Mirror> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Runner {
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts the daemon's start made"
    )]
    pub(super) fn new(
        config: Config,
        identity: String,
        folder: FolderLock,
        store: Store,
        state: State,
        mirror: Arc<Mutex<Mirror>>,
        engines: Vec<Arc<dyn EngineClient>>,
        commands: mpsc::Receiver<CommandRequest>,
        out: Outputs,
    ) -> Runner {
        let revert_backoff = revert_backoff(config.interval);
        let (fetch_wait, first_fetch_backoff) = (config.interval, fetch_backoff(config.interval));
        let git = GitCalls::new(mirror.clone(), config.git_timeout);
        Runner {
            engines: engines
                .into_iter()
                .map(|client| EngineView {
                    client,
                    route: None,
                    version: 0,
                    holder: Holder::Unknown,
                    renewed: None,
                    take_over: config.take_over,
                    known: false,
                    stats: None,
                    error: None,
                    down_since: None,
                    reading: false,
                    routing: false,
                    epoch: 0,
                    deleting: false,
                })
                .collect(),
            calls: JoinSet::new(),
            call_of: HashMap::new(),
            commands,
            queued: None,
            commands_closed: false,
            config,
            identity,
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
            git,
            fetching: None,
            reverting: None,
            branch_missing: false,
            last_fetch: None,
            fetch_now: true,
            fetch_failures: 0,
            fetch_wait,
            fetch_backoff: first_fetch_backoff,
            observed: Observed::default(),
            decision: None,
            waiting: None,
            error: None,
            revert_attempts: 0,
            revert_failures: 0,
            revert_error: None,
            stuck_checked: None,
            next_revert: Instant::now(),
            revert_backoff,
            collect_due: true,
            out,
        }
    }

    /// Now, from the configuration's clock.
    pub(super) fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    pub(super) async fn run(
        mut self,
        hook: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ReconcileError> {
        tracing::info!(
            repo = %self.config.repo,
            branch = %self.config.branch,
            engines = self.engines.len(),
            phase = %self.state.label(),
            identity = %self.identity,
            "reconcile daemon started"
        );
        loop {
            if *shutdown.borrow() {
                break;
            }
            let moved = match self.queued.take() {
                Some((c, said, reply)) => {
                    let answer = self.operator(c, said).await;
                    let moved = answer.is_ok();
                    // The operator who reads the status after the answer
                    // sees what the command did.
                    self.publish();
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
            if moved || self.queued.is_some() {
                continue;
            }
            let next = self.next_wake();
            let built = self.build_done.clone();
            let git = self.git.done();
            let listening = !self.commands_closed;
            let calls = !self.calls.is_empty();
            let woke = tokio::select! {
                _ = shutdown.changed() => Wake::Other,
                c = self.commands.recv(), if listening => Wake::Command(c),
                r = self.calls.join_next_with_id(), if calls => Wake::Engine(r),
                () = hook.notified() => Wake::Hook,
                () = built.notified() => Wake::Other,
                () = git.notified() => Wake::Other,
                () = tokio::time::sleep_until(next) => Wake::Other,
            };
            match woke {
                Wake::Command(Some(c)) => self.queued = Some(c),
                Wake::Command(None) => self.commands_closed = true,
                Wake::Engine(Some(r)) => {
                    self.take_reply(r);
                }
                Wake::Hook => self.fetch_now = true,
                Wake::Engine(None) | Wake::Other => {}
            }
        }
        tracing::info!("reconcile daemon stopped");
        Ok(())
    }

    fn next_wake(&self) -> Instant {
        let base = self.last_fetch.unwrap_or_else(Instant::now);
        let mut next = base + self.fetch_wait;
        // Leases are renewed at least every third of their length.
        if let Some(renewed) = self.engines.iter().filter_map(|e| e.renewed).min() {
            next = next.min(renewed + self.renew_every());
        }
        // A stuck revert is not retried: it waits for an operator.
        if self.reverting.is_none()
            && self
                .state
                .reverts
                .first()
                .is_some_and(|r| r.stuck.is_none())
        {
            next = next.min(self.next_revert);
        }
        // A git call past its timeout is given up on time.
        let calls = [
            self.fetching.as_ref().map(|c| c.started),
            self.reverting.as_ref().map(|(_, c)| c.started),
        ];
        for started in calls.into_iter().flatten() {
            next = next.min(started + self.git.timeout());
        }
        next
    }

    /// One pass: fetch when due, read and converge the engines, then at most
    /// one transition. Returns whether a transition was made.
    async fn iterate(&mut self) -> Result<bool, ReconcileError> {
        let due = self.fetch_now
            || self
                .last_fetch
                .is_none_or(|t| t.elapsed() >= self.fetch_wait);
        self.take_replies();
        if self.take_fetch().await {
            // Once a fetch has brought its pack in, before the next.
            self.repack().await;
        }
        if due {
            self.fetch();
        }
        self.observe().await;
        self.claim().await;
        self.converge(false).await;
        self.compute_observed();
        if let Some(why) = self.fenced() {
            // Another daemon holds engines of this fleet: nothing of this
            // daemon's own is decided until its lease lapses.
            self.decision = None;
            self.waiting = Some(why);
            return Ok(false);
        }
        self.collect().await;

        // 1. The stage in flight (rollback triggers first of all).
        let step = self.step(Event::Tick);
        self.decision = step.decision.clone();
        if step.transition.is_some() {
            self.commit(step).await?;
            return Ok(true);
        }
        // 2. The branch gone from the remote, or back.
        if let Some(event) = self.branch_event() {
            let step = self.step(event);
            if step.transition.is_some() {
                self.commit(step).await?;
                return Ok(true);
            }
        }
        // 2b. Fetching failing, or working again.
        if let Some(event) = self.fetch_event() {
            let step = self.step(event);
            if step.transition.is_some() {
                self.commit(step).await?;
                return Ok(true);
            }
        }
        // 3. A revert still to land (pushed off the loop, settled here).
        if !self.state.reverts.is_empty() && self.revert().await? {
            return Ok(true);
        }
        // 4. A new head.
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

    async fn operator(&mut self, c: machine::Command, said: Said) -> Result<String, String> {
        let resume = c == machine::Command::Resume;
        let event = self.operator_event(c)?;
        let mut step = self.step(event);
        if let Some(t) = &mut step.transition {
            t.by = said.by;
            // `resume` carries no reason of its own in the machine.
            if resume && let Some(why) = said.reason {
                t.reason = format!("{}: {why}", t.reason);
            }
        }
        let reply = step.reply.clone();
        if step.transition.is_some()
            && let Err(e) = self.commit(step).await
        {
            return Err(format!("the transition could not be persisted: {e}"));
        }
        reply
    }

    /// The event of an operator command: `promote --through` with nothing
    /// in flight promotes the branch head waiting to be acted on, once it
    /// is built.
    fn operator_event(&mut self, c: machine::Command) -> Result<Event, String> {
        let machine::Command::Promote {
            through: Some(through),
            reason,
        } = &c
        else {
            return Ok(Event::Operator(c));
        };
        let waiting = self
            .head
            .clone()
            .filter(|h| self.state.head.as_deref() != Some(h.as_str()));
        let (None, Some(head)) = (&self.state.rollout, waiting) else {
            return Ok(Event::Operator(c));
        };
        if !self.builds.contains_key(&head) {
            return Err(format!(
                "head {} is still being checked: try again in a moment",
                short::hash(&head)
            ));
        }
        let Event::Head(head) = self.head_event(&head) else {
            return Ok(Event::Operator(c));
        };
        Ok(Event::PromoteHead {
            head,
            through: through.clone(),
            reason: reason.clone().unwrap_or_default(),
        })
    }

    /// The plan the candidate walks: its base commit's, never its own.
    pub(super) fn candidate_plan(&self) -> Option<&RolloutPlan> {
        let r = self.state.rollout.as_ref()?;
        self.plans.get(r.plan_commit())?.as_ref()
    }

    /// What a new head is built against, in the current state.
    pub(super) fn against(&self) -> Against {
        Against {
            base: self.state.stable.as_ref().and_then(|s| s.commit.clone()),
            anchor: self
                .state
                .rewrite
                .as_ref()
                .map(|r| r.to.clone())
                .or_else(|| self.state.head.clone()),
        }
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
        self.collect_due = true;
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
        if let Some(commit) = self
            .state
            .rollout
            .as_ref()
            .map(|r| r.plan_commit().to_string())
        {
            self.ensure_plan(&commit).await;
        }
        for action in step.actions {
            match action {
                Action::SetRoutes => self.converge(true).await,
                Action::Upload { artifact } => self.upload_all(&artifact).await,
                Action::Revert { .. } => {
                    self.revert_attempts = 0;
                    self.revert_failures = 0;
                    self.revert_error = None;
                    self.stuck_checked = None;
                    self.revert_backoff = revert_backoff(self.config.interval);
                    self.next_revert = Instant::now();
                }
            }
        }
        Ok(())
    }
}

/// The longest wait between two fetches after failures (or the interval,
/// when that is longer).
pub(super) const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(60);

/// The waits between fetches after failures: from the interval along the
/// Fibonacci sequence to [`MAX_FETCH_BACKOFF`], so that a refused
/// credential or a remote that is down is not hammered.
pub(super) fn fetch_backoff(interval: Duration) -> FibonacciBackoff {
    FibonacciBuilder::new()
        .with_min_delay(interval)
        .with_max_delay(MAX_FETCH_BACKOFF.max(interval))
        .without_max_times()
        .build()
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
