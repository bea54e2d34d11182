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
//! | `promote` | stage | next stage or stable | operator: the gates are skipped |
//! | `rollback` | stage or stable | stable | trigger, failed gate, or operator |
//! | `pause` / `resume` | any | same (paused) | operator, `max_duration`, engines unreachable |
//! | `reverted` | any | same | the revert commit landed on the branch |

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::stage::{self, Observation, StageDecision, Step as StageStep};
use crate::api::replay::ReplayReport;
use crate::api::route::{Mode, RouteSpec};
use crate::model::ir::Literal;
use crate::model::plan::{RolloutPlan, StageKind};

/// The version of the persisted state document.
pub const STATE_VERSION: u32 = 1;

/// Who or what caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The daemon's own progress: a new commit, gates that passed, a pause
    /// for lack of evidence.
    Daemon,
    /// A rollback trigger fired or a gate failed.
    Trigger,
    /// An operator command.
    Operator,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Daemon => "daemon",
            Cause::Trigger => "trigger",
            Cause::Operator => "operator",
        }
    }
}

/// An artifact in force, and the commit it was built from (`None` when it
/// was adopted from the engines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub commit: Option<String>,
    pub artifact: String,
    pub since_ms: u64,
}

/// The replay figures of a candidate (what the replay gates read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplaySummary {
    pub cases: usize,
    pub passed: usize,
    pub catastrophic: usize,
    pub false_positives: usize,
    pub mismatches: usize,
    pub bad_requests: usize,
    pub expected_permissive: usize,
}

impl ReplaySummary {
    pub fn of(r: &ReplayReport) -> ReplaySummary {
        ReplaySummary {
            cases: r.cases,
            passed: r.passed,
            catastrophic: r.catastrophic,
            false_positives: r.false_positives,
            mismatches: r.mismatches,
            bad_requests: r.bad_requests,
            expected_permissive: r.expected_permissive,
        }
    }

    /// A report with these figures and no per-case results.
    pub fn to_report(&self) -> ReplayReport {
        ReplayReport {
            cases: self.cases,
            passed: self.passed,
            catastrophic: self.catastrophic,
            false_positives: self.false_positives,
            mismatches: self.mismatches,
            bad_requests: self.bad_requests,
            expected_permissive: self.expected_permissive,
            results: Vec::new(),
        }
    }
}

/// The candidate in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub commit: String,
    /// The commit's summary line.
    pub summary: String,
    pub artifact: String,
    pub started_ms: u64,
    /// Index into the plan's stages.
    pub stage: usize,
    pub stage_name: String,
    pub stage_started_ms: u64,
    /// When an operator last resumed this stage: `max_duration` counts from
    /// here rather than from the start of the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_ms: Option<u64>,
    pub replay: ReplaySummary,
    /// What the build found beside the gates (decision-log flips by rule,
    /// state-check warnings), shown by `sluice status`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub notes: Value,
}

/// Why the daemon holds still.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paused {
    pub reason: String,
    pub cause: Cause,
    pub since_ms: u64,
}

/// A revert commit still to land on the branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRevert {
    /// The offending commit.
    pub commit: String,
    pub summary: String,
    pub artifact: String,
    /// The phase it was rolled back from.
    pub stage: String,
    pub cause: Cause,
    pub trigger: String,
    /// The figures behind the rollback, as text for the commit message.
    pub figures: String,
    pub since_ms: u64,
}

/// A commit that was rolled back: neither it nor its artifact is rolled out
/// again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub commit: String,
    pub artifact: String,
    pub reason: String,
    pub since_ms: u64,
}

/// The last commit that was refused, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    pub commit: String,
    pub reason: String,
    pub since_ms: u64,
}

/// Everything the daemon must remember across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The number of transitions so far; the `seq` of the last audit line.
    pub seq: u64,
    /// The last branch head acted on.
    pub head: Option<String>,
    pub stable: Option<Release>,
    /// The stable before the last promotion: the operator's rollback target
    /// when nothing is in flight.
    pub previous: Option<Release>,
    pub rollout: Option<Rollout>,
    pub paused: Option<Paused>,
    pub reverts: Vec<PendingRevert>,
    pub quarantine: Vec<Quarantined>,
    pub refused: Option<Refused>,
    /// The last transition, so that its audit line is written even if the
    /// daemon dies between persisting the state and appending the line.
    pub last: Option<Transition>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            seq: 0,
            head: None,
            stable: None,
            previous: None,
            rollout: None,
            paused: None,
            reverts: Vec::new(),
            quarantine: Vec::new(),
            refused: None,
            last: None,
        }
    }
}

impl State {
    /// The phase: `empty`, `stable`, or the candidate's stage name.
    pub fn phase(&self) -> String {
        match (&self.stable, &self.rollout) {
            (None, _) => "empty".to_string(),
            (Some(_), None) => "stable".to_string(),
            (Some(_), Some(r)) => r.stage_name.clone(),
        }
    }

    /// The phase, marked when paused.
    pub fn label(&self) -> String {
        if self.paused.is_some() {
            format!("{} (paused)", self.phase())
        } else {
            self.phase()
        }
    }

    /// The quarantine entry of a commit or an artifact.
    pub fn quarantined(&self, commit: &str, artifact: Option<&str>) -> Option<&Quarantined> {
        self.quarantine
            .iter()
            .find(|q| q.commit == commit || artifact.is_some_and(|a| a == q.artifact))
    }
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub seq: u64,
    /// RFC 3339, milliseconds.
    pub time: String,
    pub time_ms: u64,
    pub event: String,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    pub cause: Cause,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub figures: Value,
}

/// What the daemon must do after persisting a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Upload this artifact to every engine.
    Upload { artifact: String },
    /// Move every engine to [`desired_route`], in parallel, now.
    SetRoutes,
    /// Make and push the revert commit of this commit.
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
    /// The commit's `[rollout]`; `None` installs the artifact directly.
    pub plan: Option<RolloutPlan>,
    pub replay: ReplaySummary,
    /// Extra figures for the audit line (e.g. decision-log flips).
    pub notes: Value,
}

/// A new head of the branch.
#[derive(Debug, Clone)]
pub struct Head {
    pub commit: String,
    pub summary: String,
    pub build: Build,
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
    Promote,
    Rollback {
        #[serde(default)]
        reason: Option<String>,
    },
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
    Reverted {
        commit: String,
        outcome: RevertOutcome,
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
    /// The candidate's plan (from its commit's `sluice.toml`).
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

/// A transition being made: the new state and the audit fields.
struct Change {
    event: &'static str,
    cause: Cause,
    reason: String,
    commit: Option<String>,
    artifact: Option<String>,
    figures: Value,
}

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

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// Runs one event through the machine.
pub fn step(state: &State, ctx: &Ctx<'_>, event: Event) -> Step {
    match event {
        Event::Tick => tick(state, ctx),
        Event::Head(h) => head(state, ctx, h),
        Event::Operator(c) => operator(state, ctx, c),
        Event::Reverted { commit, outcome } => reverted(state, ctx, &commit, outcome),
    }
}

/// Reads the stage in flight against the observation, without deciding
/// anything: `None` outside a rollout or without figures.
pub fn current_decision(state: &State, ctx: &Ctx<'_>) -> Option<StageDecision> {
    let r = state.rollout.as_ref()?;
    let plan = ctx.plan?;
    let st = plan.stages.get(r.stage)?;
    if st.kind == StageKind::Replay {
        return Some(stage::decide_replay(st, &r.replay.to_report()));
    }
    let obs = ctx.observed.figures.as_ref()?;
    let elapsed = Duration::from_millis(ctx.now_ms.saturating_sub(r.stage_started_ms));
    Some(stage::decide(st, &plan.rollback, elapsed, obs))
}

/// The figures of a decision, for audit lines.
pub fn figures(decision: Option<&StageDecision>, obs: Option<&Observation>) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(d) = decision {
        out.insert("gates".into(), json!(d.readings));
        if !d.triggers.is_empty() {
            out.insert("triggers".into(), json!(d.triggers));
        }
        out.insert("samples_left".into(), json!(d.samples_left));
        out.insert(
            "time_left_ms".into(),
            json!(u64::try_from(d.time_left.as_millis()).unwrap_or(u64::MAX)),
        );
    }
    if let Some(o) = obs {
        out.insert("observed".into(), json!(o));
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

fn tick(state: &State, ctx: &Ctx<'_>) -> Step {
    let (Some(r), Some(plan)) = (&state.rollout, ctx.plan) else {
        return Step::none(state, None);
    };
    let Some(st) = plan.stages.get(r.stage) else {
        return Step::none(state, None);
    };
    let paused = state.paused.is_some();
    let obs = ctx.observed.figures.as_ref();
    let Some(d) = current_decision(state, ctx) else {
        return unreachable_pause(state, ctx, None);
    };
    let figs = figures(Some(&d), obs);
    match &d.step {
        StageStep::Rollback { trigger } => {
            let trigger = trigger.clone();
            rollback(state, ctx, Cause::Trigger, trigger, figs, Some(d))
        }
        StageStep::Advance if paused => Step::none(state, Some(d)),
        StageStep::Advance if st.kind == StageKind::Replay => {
            let reason = format!(
                "replay passed: {} of {} trace cases, {} catastrophic, {} false positive(s)",
                r.replay.passed, r.replay.cases, r.replay.catastrophic, r.replay.false_positives
            );
            advance(state, ctx, Cause::Daemon, "advance", reason, figs, Some(d))
        }
        StageStep::Advance if ctx.observed.complete => {
            let reason = format!("every gate of stage `{}` passed", st.name);
            advance(state, ctx, Cause::Daemon, "advance", reason, figs, Some(d))
        }
        StageStep::Pause { reason } if !paused => {
            let max = st.max_duration.unwrap_or_default();
            let since_resume = r
                .resumed_ms
                .map(|t| Duration::from_millis(ctx.now_ms.saturating_sub(t)));
            if since_resume.is_some_and(|e| e < max) {
                return Step::none(state, Some(d));
            }
            let reason = reason.clone();
            pause(state, ctx, Cause::Daemon, reason, figs, Some(d))
        }
        _ => unreachable_pause(state, ctx, Some(d)),
    }
}

/// A live stage whose engines do not all answer cannot be judged: after the
/// grace period it pauses for an operator. It never advances meanwhile.
fn unreachable_pause(state: &State, ctx: &Ctx<'_>, d: Option<StageDecision>) -> Step {
    let o = ctx.observed;
    let live = state
        .rollout
        .as_ref()
        .zip(ctx.plan)
        .and_then(|(r, p)| p.stages.get(r.stage))
        .is_some_and(|s| s.kind.is_live());
    if live
        && state.paused.is_none()
        && !o.complete
        && !o.unreachable.is_empty()
        && o.unreachable_ms >= ctx.engine_grace_ms
    {
        let reason = format!(
            "engine(s) {} unreachable for {}: the stage cannot be judged",
            o.unreachable.join(", "),
            humantime::format_duration(Duration::from_millis(o.unreachable_ms / 100 * 100))
        );
        let figs = figures(d.as_ref(), o.figures.as_ref());
        return pause(state, ctx, Cause::Daemon, reason, figs, d);
    }
    Step::none(state, d)
}

fn pause(
    state: &State,
    ctx: &Ctx<'_>,
    cause: Cause,
    reason: String,
    figures: Value,
    d: Option<StageDecision>,
) -> Step {
    let mut new = state.clone();
    new.paused = Some(Paused {
        reason: reason.clone(),
        cause,
        since_ms: ctx.now_ms,
    });
    let (commit, artifact) = candidate_ids(state);
    let change = Change {
        event: "pause",
        cause,
        reason: format!("paused: {reason}"),
        commit,
        artifact,
        figures,
    };
    commit_step(state, new, ctx, change, Vec::new(), d)
}

fn candidate_ids(state: &State) -> (Option<String>, Option<String>) {
    match &state.rollout {
        Some(r) => (Some(r.commit.clone()), Some(r.artifact.clone())),
        None => (None, None),
    }
}

fn advance(
    state: &State,
    ctx: &Ctx<'_>,
    cause: Cause,
    event: &'static str,
    reason: String,
    figures: Value,
    d: Option<StageDecision>,
) -> Step {
    let (Some(r), Some(plan)) = (&state.rollout, ctx.plan) else {
        return Step::refuse(state, "no rollout in flight");
    };
    let mut new = state.clone();
    if cause == Cause::Operator
        || new
            .paused
            .as_ref()
            .is_some_and(|p| p.cause != Cause::Operator)
    {
        new.paused = None;
    }
    let next = r.stage + 1;
    let change = |event: &'static str, reason: String| Change {
        event: if cause == Cause::Operator {
            "promote"
        } else {
            event
        },
        cause,
        reason,
        commit: Some(r.commit.clone()),
        artifact: Some(r.artifact.clone()),
        figures: figures.clone(),
    };
    match plan.stages.get(next) {
        Some(st) => {
            new.rollout = Some(Rollout {
                stage: next,
                stage_name: st.name.clone(),
                stage_started_ms: ctx.now_ms,
                resumed_ms: None,
                ..r.clone()
            });
            let c = change(event, reason);
            commit_step(state, new, ctx, c, vec![Action::SetRoutes], d)
        }
        None => {
            new.previous = new.stable.take();
            new.stable = Some(Release {
                commit: Some(r.commit.clone()),
                artifact: r.artifact.clone(),
                since_ms: ctx.now_ms,
            });
            new.rollout = None;
            let reason = format!("{reason}; candidate {} is stable", short(&r.artifact));
            let c = change("complete", reason);
            commit_step(state, new, ctx, c, vec![Action::SetRoutes], d)
        }
    }
}

/// Renders the figures of an observation as text for a commit message.
pub fn figures_text(d: Option<&StageDecision>, obs: Option<&Observation>) -> String {
    let mut lines = Vec::new();
    if let Some(o) = obs {
        let c = &o.candidate;
        let s = &o.stable;
        lines.push(format!(
            "candidate: {} requests, {} errors, {} denied; stable: {} requests, {} errors, {} denied",
            c.requests, c.errors, c.denies, s.requests, s.errors, s.denies
        ));
        if o.compared > 0 {
            lines.push(format!(
                "shadow: {} of {} decisions differ",
                o.diverged, o.compared
            ));
        }
    }
    if let Some(d) = d {
        for g in d.triggers.iter().chain(&d.readings) {
            let verdict = match g.verdict {
                super::gate::Verdict::Pass => "pass",
                super::gate::Verdict::Fail => "fail",
                super::gate::Verdict::Wait => "wait",
            };
            lines.push(format!(
                "{} = {:.4} (95% interval {:.4}..{:.4}, limit {}): {verdict}",
                g.gate, g.estimate, g.interval.lo, g.interval.hi, g.limit
            ));
        }
    }
    lines.join("\n")
}

fn rollback(
    state: &State,
    ctx: &Ctx<'_>,
    cause: Cause,
    trigger: String,
    figures: Value,
    d: Option<StageDecision>,
) -> Step {
    let obs = ctx.observed.figures.as_ref();
    let mut new = state.clone();
    if new
        .paused
        .as_ref()
        .is_some_and(|p| p.cause != Cause::Operator)
    {
        new.paused = None;
    }
    let (commit, summary, artifact, stage) = match (&state.rollout, &state.stable) {
        (Some(r), _) => {
            new.rollout = None;
            (
                r.commit.clone(),
                r.summary.clone(),
                r.artifact.clone(),
                r.stage_name.clone(),
            )
        }
        (
            None,
            Some(Release {
                commit: Some(c),
                artifact,
                ..
            }),
        ) if state.previous.is_some() => {
            new.stable = new.previous.take();
            (c.clone(), String::new(), artifact.clone(), "stable".into())
        }
        _ => {
            return Step::refuse(
                state,
                "nothing to roll back: no rollout in flight and no previous stable artifact",
            );
        }
    };
    let reason = format!("rolled back at stage `{stage}`: {trigger}");
    new.reverts.push(PendingRevert {
        commit: commit.clone(),
        summary,
        artifact: artifact.clone(),
        stage,
        cause,
        trigger,
        figures: figures_text(d.as_ref(), obs),
        since_ms: ctx.now_ms,
    });
    if new.quarantined(&commit, None).is_none() {
        new.quarantine.push(Quarantined {
            commit: commit.clone(),
            artifact: artifact.clone(),
            reason: reason.clone(),
            since_ms: ctx.now_ms,
        });
    }
    let change = Change {
        event: "rollback",
        cause,
        reason,
        commit: Some(commit.clone()),
        artifact: Some(artifact),
        figures,
    };
    commit_step(
        state,
        new,
        ctx,
        change,
        vec![Action::SetRoutes, Action::Revert { commit }],
        d,
    )
}

fn head(state: &State, ctx: &Ctx<'_>, h: Head) -> Step {
    if state.head.as_deref() == Some(h.commit.as_str()) {
        return Step::none(state, None);
    }
    if let Some(r) = state.reverts.first() {
        return Step::refuse(
            state,
            format!(
                "head {} waits: the revert of {} has not landed yet",
                short(&h.commit),
                short(&r.commit)
            ),
        );
    }
    if let Some(p) = &state.paused {
        return Step::refuse(
            state,
            format!("head {} waits: paused ({})", short(&h.commit), p.reason),
        );
    }
    let mut new = state.clone();
    new.head = Some(h.commit.clone());
    let ready = match h.build {
        Build::Refused { reason } => return refuse(state, new, ctx, &h.commit, None, reason),
        Build::Ready(ready) => ready,
    };
    if let Some(q) = state.quarantined(&h.commit, Some(&ready.artifact)) {
        let reason = format!(
            "quarantined: {} (commit {}, artifact {})",
            q.reason,
            short(&q.commit),
            short(&q.artifact)
        );
        return refuse(
            state,
            new,
            ctx,
            &h.commit,
            Some(ready.artifact.clone()),
            reason,
        );
    }
    new.refused = None;
    let change = |event: &'static str, cause: Cause, reason: String| Change {
        event,
        cause,
        reason,
        commit: Some(h.commit.clone()),
        artifact: Some(ready.artifact.clone()),
        figures: ready.notes.clone(),
    };
    let Some(stable) = &state.stable else {
        let release = |commit: Option<String>, artifact: &str| Release {
            commit,
            artifact: artifact.to_string(),
            since_ms: ctx.now_ms,
        };
        return match &ctx.fleet {
            Fleet::Unknown => Step::refuse(
                state,
                "waiting for every engine to answer before installing a first stable artifact",
            ),
            Fleet::Mixed => Step::refuse(
                state,
                "the engines are on different stable artifacts: set one route on every engine \
                 (PUT /v1/route) before starting the daemon",
            ),
            Fleet::Empty => {
                new.stable = Some(release(Some(h.commit.clone()), &ready.artifact));
                let reason = format!(
                    "first clean commit: artifact {} installed as stable directly",
                    short(&ready.artifact)
                );
                let c = change("install", Cause::Daemon, reason);
                let actions = vec![
                    Action::Upload {
                        artifact: ready.artifact.clone(),
                    },
                    Action::SetRoutes,
                ];
                commit_step(state, new, ctx, c, actions, None)
            }
            Fleet::Stable(a) if *a == ready.artifact => {
                new.stable = Some(release(Some(h.commit.clone()), a));
                let reason = format!("the engines already run artifact {} as stable", short(a));
                commit_step(
                    state,
                    new,
                    ctx,
                    change("adopt", Cause::Daemon, reason),
                    vec![],
                    None,
                )
            }
            Fleet::Stable(a) => {
                // Adopt the engines' stable first; the head is rolled out
                // against it on the next step.
                new.head = state.head.clone();
                new.stable = Some(release(None, a));
                let reason = format!(
                    "the engines run artifact {} as stable: adopted as the rollback target",
                    short(a)
                );
                let mut c = change("adopt", Cause::Daemon, reason);
                c.commit = None;
                c.artifact = Some(a.clone());
                c.figures = Value::Null;
                commit_step(state, new, ctx, c, vec![], None)
            }
        };
    };
    if ready.artifact == stable.artifact {
        return match &state.rollout {
            Some(r) => {
                new.rollout = None;
                if new
                    .paused
                    .as_ref()
                    .is_some_and(|p| p.cause != Cause::Operator)
                {
                    new.paused = None;
                }
                let reason = format!(
                    "commit {} brings the branch back to the stable artifact: candidate {} (commit {}) cancelled",
                    short(&h.commit),
                    short(&r.artifact),
                    short(&r.commit)
                );
                let c = change("cancel", Cause::Daemon, reason);
                commit_step(state, new, ctx, c, vec![Action::SetRoutes], None)
            }
            None => {
                let reason = format!(
                    "artifact {} is already stable: no rollout needed",
                    short(&ready.artifact)
                );
                commit_step(
                    state,
                    new,
                    ctx,
                    change("unchanged", Cause::Daemon, reason),
                    vec![],
                    None,
                )
            }
        };
    }
    if let Some(r) = state
        .rollout
        .as_ref()
        .filter(|r| r.artifact == ready.artifact)
    {
        let reason = format!(
            "artifact {} is the candidate's (commit {}): the rollout continues",
            short(&ready.artifact),
            short(&r.commit)
        );
        return commit_step(
            state,
            new,
            ctx,
            change("unchanged", Cause::Daemon, reason),
            vec![],
            None,
        );
    }
    let upload = Action::Upload {
        artifact: ready.artifact.clone(),
    };
    let Some(first) = ready.plan.as_ref().and_then(|p| p.stages.first()) else {
        new.previous = new.stable.take();
        new.stable = Some(Release {
            commit: Some(h.commit.clone()),
            artifact: ready.artifact.clone(),
            since_ms: ctx.now_ms,
        });
        new.rollout = None;
        let reason = format!(
            "no `[rollout]` plan: artifact {} installed as stable directly",
            short(&ready.artifact)
        );
        let c = change("install", Cause::Daemon, reason);
        return commit_step(state, new, ctx, c, vec![upload, Action::SetRoutes], None);
    };
    new.rollout = Some(Rollout {
        commit: h.commit.clone(),
        summary: h.summary.clone(),
        artifact: ready.artifact.clone(),
        started_ms: ctx.now_ms,
        stage: 0,
        stage_name: first.name.clone(),
        stage_started_ms: ctx.now_ms,
        resumed_ms: None,
        replay: ready.replay.clone(),
        notes: ready.notes.clone(),
    });
    let (event, reason) = match &state.rollout {
        Some(old) => (
            "supersede",
            format!(
                "commit {} supersedes candidate {} (commit {}) at stage `{}`",
                short(&h.commit),
                short(&old.artifact),
                short(&old.commit),
                old.stage_name
            ),
        ),
        None => (
            "start",
            format!(
                "commit {} ({}): rollout of artifact {} starts",
                short(&h.commit),
                h.summary,
                short(&ready.artifact)
            ),
        ),
    };
    let mut figs = match ready.notes.clone() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    figs.insert("replay".into(), json!(ready.replay));
    let mut c = change(event, Cause::Daemon, reason);
    c.figures = Value::Object(figs);
    commit_step(state, new, ctx, c, vec![upload, Action::SetRoutes], None)
}

fn refuse(
    old: &State,
    mut new: State,
    ctx: &Ctx<'_>,
    commit: &str,
    artifact: Option<String>,
    reason: String,
) -> Step {
    new.refused = Some(Refused {
        commit: commit.to_string(),
        reason: reason.clone(),
        since_ms: ctx.now_ms,
    });
    let change = Change {
        event: "refuse",
        cause: Cause::Daemon,
        reason: format!("commit {} refused: {reason}", short(commit)),
        commit: Some(commit.to_string()),
        artifact,
        figures: Value::Null,
    };
    commit_step(old, new, ctx, change, Vec::new(), None)
}

fn operator(state: &State, ctx: &Ctx<'_>, c: Command) -> Step {
    let d = current_decision(state, ctx);
    let figs = figures(d.as_ref(), ctx.observed.figures.as_ref());
    match c {
        Command::Pause { reason } => {
            if let Some(p) = &state.paused {
                return Step::refuse(state, format!("already paused: {}", p.reason));
            }
            let reason = reason.unwrap_or_else(|| "paused by an operator".to_string());
            pause(state, ctx, Cause::Operator, reason, figs, d)
        }
        Command::Resume => {
            let Some(p) = &state.paused else {
                return Step::refuse(state, "not paused");
            };
            let mut new = state.clone();
            new.paused = None;
            if let Some(r) = &mut new.rollout {
                r.resumed_ms = Some(ctx.now_ms);
            }
            let (commit, artifact) = candidate_ids(state);
            let change = Change {
                event: "resume",
                cause: Cause::Operator,
                reason: format!("resumed by an operator (was paused: {})", p.reason),
                commit,
                artifact,
                figures: figs,
            };
            commit_step(state, new, ctx, change, vec![Action::SetRoutes], d)
        }
        Command::Promote => {
            let Some(r) = &state.rollout else {
                return Step::refuse(state, "no rollout in flight: nothing to promote");
            };
            let waiting: Vec<String> = match &d {
                Some(d) => d
                    .readings
                    .iter()
                    .filter(|g| g.verdict != super::gate::Verdict::Pass)
                    .map(|g| format!("{} ({:?})", g.gate, g.verdict).to_lowercase())
                    .collect(),
                None => vec!["no figures yet".to_string()],
            };
            let skipped = if waiting.is_empty() {
                "every gate already passed".to_string()
            } else {
                format!("skipped: {}", waiting.join(", "))
            };
            let reason = format!(
                "promoted by an operator: gates of stage `{}` skipped ({skipped})",
                r.stage_name
            );
            advance(state, ctx, Cause::Operator, "promote", reason, figs, d)
        }
        Command::Rollback { reason } => {
            let trigger = format!(
                "operator: {}",
                reason.unwrap_or_else(|| "rollback requested".to_string())
            );
            rollback(state, ctx, Cause::Operator, trigger, figs, d)
        }
    }
}

fn reverted(state: &State, ctx: &Ctx<'_>, commit: &str, outcome: RevertOutcome) -> Step {
    let Some(pos) = state.reverts.iter().position(|r| r.commit == commit) else {
        return Step::none(state, None);
    };
    let mut new = state.clone();
    let pending = new.reverts.remove(pos);
    let (reason, figs) = match &outcome {
        RevertOutcome::Pushed { revert } => (
            format!(
                "revert commit {} of {} pushed",
                short(revert),
                short(&pending.commit)
            ),
            json!({ "revert": revert }),
        ),
        RevertOutcome::NotNeeded { note } => (
            format!("no revert of {} needed: {note}", short(&pending.commit)),
            Value::Null,
        ),
    };
    let change = Change {
        event: "reverted",
        cause: pending.cause,
        reason,
        commit: Some(pending.commit.clone()),
        artifact: Some(pending.artifact.clone()),
        figures: figs,
    };
    commit_step(state, new, ctx, change, Vec::new(), None)
}

/// Whether an engine on `observed` is on `desired`, both read as the engine
/// normalizes them (defaults filled in); without a candidate only the stable
/// artifact and the stage matter. A route the engine would refuse is on
/// nothing.
pub fn same_route(observed: &RouteSpec, desired: &RouteSpec) -> bool {
    let (Ok(a), Ok(b)) = (observed.clone().normalize(), desired.clone().normalize()) else {
        return false;
    };
    if a.candidate.is_none() && b.candidate.is_none() {
        return a.stable == b.stable && a.stage == b.stage;
    }
    a == b
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Int(i) => json!(i),
        Literal::Str(s) => json!(s),
        Literal::Bool(b) => json!(b),
    }
}

/// The route every engine must be on in this state; `None` before a stable
/// artifact exists. `plan` is the candidate's.
pub fn desired_route(state: &State, plan: Option<&RolloutPlan>) -> Option<RouteSpec> {
    let stable = state.stable.as_ref()?;
    let base = RouteSpec::stable(&stable.artifact);
    let (Some(r), Some(plan)) = (&state.rollout, plan) else {
        return Some(base);
    };
    let Some(st) = plan.stages.get(r.stage) else {
        return Some(base);
    };
    let mode = match st.kind {
        StageKind::Replay => return Some(base),
        StageKind::Shadow => Mode::Shadow,
        StageKind::Split => Mode::Split,
    };
    Some(RouteSpec {
        candidate: Some(r.artifact.clone()),
        mode: Some(mode),
        percent: Some(match mode {
            Mode::Shadow => 100.0,
            Mode::Split => f64::from(st.percent.unwrap_or(0)),
        }),
        match_: st
            .matches
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(literal).collect()))
            .collect(),
        hash_key: plan.hash_key.clone(),
        stage: Some(st.name.clone()),
        ..base
    })
}
