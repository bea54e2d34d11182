//! The rollout state machine: one candidate artifact at a time goes from a
//! new commit through the stages of `[rollout]` to stable, or back. Pure:
//! an event and what was observed go in; the next state, at most one
//! [`Transition`] (one audit line) and the [`Action`]s to take come out. No
//! I/O and no clock: the caller passes the time.
//!
//! The daemon (`reconcile`) persists the state *before* acting on it, and
//! every action can be derived again from the state (the route every engine
//! must be on is [`desired_route`]; a pending revert is in
//! [`State::reverts`]), so a daemon killed at any instant resumes where it
//! was.
//!
//! Phases: `empty` (no stable artifact yet) → `stable` (a stable artifact,
//! nothing in flight) → one phase per stage of the candidate's plan → back to
//! `stable`, either promoted (`complete`) or rolled back (`rollback`). Pause
//! is orthogonal: a paused daemon takes no step forward (no advance, no new
//! rollout) but rollback triggers and failing gates still roll back.
//!
//! | event | from | to | cause |
//! |---|---|---|---|
//! | `install` | empty | stable | first clean commit, engines hold nothing (or no plan) |
//! | `adopt` | empty | stable | the engines already agree on a stable artifact |
//! | `refuse` | any | same | the commit fails its checks, or is quarantined |
//! | `unchanged` | any | same | the commit's artifact is stable's or the candidate's |
//! | `start` | stable | first stage | a commit with a new artifact |
//! | `supersede` | stage | first stage | a newer commit replaces the candidate |
//! | `cancel` | stage | stable | the branch went back to stable's artifact |
//! | `advance` | stage | next stage | every gate passed |
//! | `complete` | last stage | stable | every gate passed: the candidate is stable |
//! | `promote` | stage | next stage or stable | operator: the gates are skipped (`--through`: every stage up to the one named) |
//! | `promote` | stable | stable | operator: the waiting head installed through its last stage |
//! | `rollback` | stage or stable | stable | trigger, failed gate, or operator (`--candidate`: only that one) |
//! | `pause` / `resume` | any | same (paused) | operator, `max_duration`, engines unreachable |
//! | `resume` | paused | same | the engines whose silence paused it answer again |
//! | `unquarantine` | any | same | operator: a commit or artifact may be rolled out again |
//! | `reverted` | any | same | the revert commit landed on the branch, was not needed, or an operator made it by hand |
//! | `revert_failed` | any | same (paused) | the revert could not be made after [`REVERT_ATTEMPTS`] attempts |
//! | `revert_skipped` | any | same | operator: the branch is left as it is |
//! | `force_push` | any | same (paused) | the new head does not descend from the last one acted on |
//! | `branch_deleted` / `branch_restored` | any | same (paused) | the watched branch left or came back |
//!
//! **What a commit may not change about its own rollout** (SPEC §6): the
//! plan a candidate walks ([`Ctx::plan`], [`Ready::plan`]) and the traces
//! its replay ran are the stable commit's, never the candidate's; the
//! rollout records that commit as its `base`, and a rollback reverts every
//! commit from `base` to the candidate. Only the first commit (no stable
//! yet) is installed directly, or any commit when the stable commit has no
//! `[rollout]` at all. A replay stage that fails refuses the commit
//! (nothing was deployed: nothing is reverted).
//!
//! - `head`: a new head of the branch (`install`, `adopt`, `refuse`,
//!   `unchanged`, `start`, `supersede`, `cancel`).
//! - `step`: the stage in flight (`advance`, `complete`, `rollback`,
//!   `pause`), operator commands.
//! - `operator`: what operators override: a promotion through several
//!   stages (or of the waiting head), a rollback that names its candidate,
//!   a lifted quarantine.
//! - `settle`: pending reverts settled (landed, failed, skipped, done by
//!   hand) and the branch leaving or coming back.
//! - `route`: the route every engine must be on.
//! - `figures`: the figures of a stage decision, for the audit line and
//!   for a revert commit's message.
//!
//! The persisted state ([`State`] and its parts) and the audit line
//! ([`Transition`]) are wire types of `api::rollout_state` and `api::audit`,
//! re-exported here where the machine produces them.

mod figures;
mod head;
mod operator;
mod route;
mod settle;
mod step;

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::figures::{current_decision, figures, figures_text};
pub use self::route::{desired_route, same_route};
use super::stage::{Observation, StageDecision};
pub use crate::api::audit::{Cause, Figures, Notes, Transition};
use crate::api::replay::ReplayTotals;
pub use crate::api::rollout_state::{
    Paused, PendingRevert, Quarantined, Refused, Release, Rewrite, Rollout, STATE_VERSION, State,
};
use crate::model::plan::RolloutPlan;

/// How many times the daemon tries to make a revert (with a growing wait
/// between attempts) before it stops, pauses and waits for an operator.
pub const REVERT_ATTEMPTS: u32 = 3;

/// What the daemon must do after persisting a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Upload this artifact to every engine.
    Upload { artifact: String },
    /// Move every engine to [`desired_route`], in parallel, now.
    SetRoutes,
    /// Make and push the revert commit of this commit (its pending revert,
    /// afresh: attempts counted from zero).
    Revert { commit: String },
}

/// A commit, compiled and checked.
#[derive(Debug, Clone)]
pub enum Build {
    /// Checked clean; the artifact is ready (and stored by the caller).
    Ready(Box<Ready>),
    /// The commit fails its checks: never rolled out.
    Refused { reason: String },
}

#[derive(Debug, Clone)]
pub struct Ready {
    pub artifact: String,
    /// The `[rollout]` that gates the commit: the stable commit's (the
    /// commit's own only when the stable artifact has no commit); `None`
    /// installs the artifact directly.
    pub plan: Option<RolloutPlan>,
    /// The traces that gate the commit (the stable commit's, and the
    /// commit's own) run against its artifact.
    pub replay: ReplayTotals,
    /// What the build found beside the gates (e.g. decision-log flips), for
    /// the audit line and status.
    pub notes: Notes,
}

/// A new head of the branch.
#[derive(Debug, Clone)]
pub struct Head {
    pub commit: String,
    pub summary: String,
    pub build: Build,
    /// The commits the head brings since the stable commit, oldest first,
    /// the head last (empty when unknown: the head alone).
    pub commits: Vec<String>,
    /// The head does not descend from the last head acted on (nor from an
    /// accepted rewrite): the branch's history was rewritten.
    pub forced: bool,
}

/// An operator command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Pause {
        #[serde(default)]
        reason: Option<String>,
    },
    Resume,
    /// Skip the current stage's gates; with `through`, every stage up to
    /// and including the one named (the candidate is stable when it is the
    /// last), which needs a `reason` for the audit log.
    Promote {
        #[serde(default)]
        through: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Roll back; with `candidate` (a commit or an artifact, or a prefix of
    /// one), only when that is what would be rolled back.
    Rollback {
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        candidate: Option<String>,
    },
    /// Lift the quarantine of a commit or an artifact (or a prefix of one).
    Unquarantine {
        target: String,
        reason: String,
    },
    /// Settle the pending revert without reverting: the branch is left as
    /// it is (the rolled-back artifact stays quarantined).
    RevertSkip {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Settle the pending revert as made by hand.
    RevertDone {
        #[serde(default)]
        reason: Option<String>,
    },
}

impl Command {
    /// `promote` of the current stage alone.
    pub fn promote() -> Command {
        Command::Promote {
            through: None,
            reason: None,
        }
    }

    /// `rollback` of whatever is in flight.
    pub fn rollback(reason: Option<String>) -> Command {
        Command::Rollback {
            reason,
            candidate: None,
        }
    }
}

/// How a pending revert was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertOutcome {
    /// The revert commit was pushed.
    Pushed { revert: String },
    /// Nothing to push: the branch no longer has the commit's change.
    NotNeeded { note: String },
}

/// An event for the machine.
#[derive(Debug, Clone)]
pub enum Event {
    /// Judge the stage in flight on what was observed.
    Tick,
    /// The branch has a head not yet acted on.
    Head(Head),
    Operator(Command),
    /// An operator promotes the branch head, not rolled out yet, through
    /// the stage `through`: installed as stable at once.
    PromoteHead {
        head: Head,
        through: String,
        reason: String,
    },
    Reverted {
        commit: String,
        outcome: RevertOutcome,
    },
    /// The pending revert of `commit` could not be made, [`REVERT_ATTEMPTS`]
    /// times in a row.
    RevertFailed {
        commit: String,
        error: String,
    },
    /// The watched branch is not on the remote any more.
    BranchDeleted,
    /// The watched branch is on the remote again, at `head`.
    BranchRestored {
        head: String,
    },
}

/// What the engines hold as stable, before the daemon installs anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fleet {
    /// Not every engine answered.
    Unknown,
    /// No engine has a route.
    Empty,
    /// Every engine is on this stable artifact.
    Stable(String),
    /// The engines disagree.
    Mixed,
}

/// What the engines measured, summed over the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The figures of the engines on the desired route (all of them when
    /// `complete`).
    pub figures: Option<Observation>,
    /// Every engine answered and is on the desired route.
    pub complete: bool,
    /// Engines that do not answer, and for how long the first has not.
    pub unreachable: Vec<String>,
    pub unreachable_ms: u64,
}

/// The context of one step.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub now_ms: u64,
    /// The plan the candidate in flight walks: its base commit's
    /// ([`Rollout::plan_commit`]), never the candidate's own.
    pub plan: Option<&'a RolloutPlan>,
    pub observed: &'a Observed,
    pub fleet: Fleet,
    /// How long engines may be unreachable in a live stage before it pauses.
    pub engine_grace_ms: u64,
}

/// The outcome of one step.
#[derive(Debug, Clone)]
pub struct Step {
    pub state: State,
    /// `None` when nothing changed.
    pub transition: Option<Transition>,
    pub actions: Vec<Action>,
    /// The stage decision read on this step, for status.
    pub decision: Option<StageDecision>,
    /// The answer to an operator (or why an event was held).
    pub reply: Result<String, String>,
}

impl Step {
    fn none(state: &State, decision: Option<StageDecision>) -> Step {
        Step {
            state: state.clone(),
            transition: None,
            actions: Vec::new(),
            decision,
            reply: Ok(String::new()),
        }
    }

    fn refuse(state: &State, why: impl Into<String>) -> Step {
        Step {
            reply: Err(why.into()),
            ..Step::none(state, None)
        }
    }
}

/// Runs one event through the machine.
pub fn step(state: &State, ctx: &Ctx<'_>, event: Event) -> Step {
    match event {
        Event::Tick => step::tick(state, ctx),
        Event::Head(h) => head::head(state, ctx, h),
        Event::Operator(c) => step::operator(state, ctx, c),
        Event::PromoteHead {
            head,
            through,
            reason,
        } => operator::promote_head(state, ctx, head, &through, &reason),
        Event::Reverted { commit, outcome } => settle::reverted(state, ctx, &commit, outcome),
        Event::RevertFailed { commit, error } => settle::failed(state, ctx, &commit, error),
        Event::BranchDeleted => settle::branch_deleted(state, ctx),
        Event::BranchRestored { head } => settle::branch_restored(state, ctx, &head),
    }
}

/// A transition being made: the new state and the audit fields.
struct Change {
    event: &'static str,
    cause: Cause,
    reason: String,
    commit: Option<String>,
    artifact: Option<String>,
    figures: Figures,
}

/// Makes the transition from `old` to `new`: numbers it, writes its audit
/// line into the new state and answers with its reason.
fn commit_step(
    old: &State,
    mut new: State,
    ctx: &Ctx<'_>,
    c: Change,
    actions: Vec<Action>,
    decision: Option<StageDecision>,
) -> Step {
    new.seq = old.seq + 1;
    let t = Transition {
        seq: new.seq,
        time: rfc3339(ctx.now_ms),
        time_ms: ctx.now_ms,
        event: c.event.to_string(),
        from: old.label(),
        to: new.label(),
        commit: c.commit,
        artifact: c.artifact,
        cause: c.cause,
        reason: c.reason.clone(),
        figures: c.figures,
        by: None,
    };
    new.last = Some(t.clone());
    Step {
        state: new,
        transition: Some(t),
        actions,
        decision,
        reply: Ok(c.reason),
    }
}

/// Clears a pause the daemon made, unless it waits for an operator
/// whatever happens ([`Paused::hold`]).
fn clear_daemon_pause(new: &mut State) {
    if new
        .paused
        .as_ref()
        .is_some_and(|p| p.cause != Cause::Operator && !p.hold)
    {
        new.paused = None;
    }
}

/// Makes `commit`'s `artifact` the stable one; the stable it replaces
/// becomes the previous (the operator's rollback target) and nothing is in
/// flight any more.
fn promote_to_stable(new: &mut State, commit: &str, artifact: &str, now_ms: u64) {
    new.previous = new.stable.take();
    new.stable = Some(Release {
        commit: Some(commit.to_string()),
        artifact: artifact.to_string(),
        since_ms: now_ms,
    });
    new.rollout = None;
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}
