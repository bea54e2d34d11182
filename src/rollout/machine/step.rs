//! The stage in flight and operator commands: the transitions `advance`,
//! `complete`, `promote`, `rollback`, `pause` and `resume`, and `refuse`
//! for a candidate whose replay fails (nothing was deployed, so nothing is
//! reverted). Pure, like the whole machine.

use std::time::Duration;

use super::{
    Action, Cause, Change, Command, Ctx, Figures, Paused, PendingRevert, Quarantined, Refused,
    Release, Rollout, State, Step, clear_daemon_pause, commit_step, current_decision, figures,
    figures_text, operator, promote_to_stable, settle,
};
use crate::api::gate::Verdict;
use crate::model::plan::StageKind;
use crate::model::short;
use crate::rollout::stage::{StageDecision, Step as StageStep};

pub(super) fn tick(state: &State, ctx: &Ctx<'_>) -> Step {
    let (Some(r), Some(plan)) = (&state.rollout, ctx.plan) else {
        return Step::none(state, None);
    };
    if let Some(p) = &state.paused
        && !p.engines.is_empty()
        && ctx.observed.complete
        && ctx.observed.unreachable.is_empty()
    {
        return engines_back(state, ctx, p);
    }
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
        StageStep::Rollback { trigger } if st.kind == StageKind::Replay => {
            let trigger = trigger.clone();
            refuse_replay(state, ctx, r, trigger, figs, d)
        }
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
            let next = r.stage + 1;
            advance(state, ctx, Cause::Daemon, reason, figs, Some(d), next)
        }
        StageStep::Advance if ctx.observed.complete => {
            let reason = format!("every gate of stage `{}` passed", st.name);
            let next = r.stage + 1;
            advance(state, ctx, Cause::Daemon, reason, figs, Some(d), next)
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

/// A candidate whose replay fails never reached an engine: it is refused
/// like a commit that does not check, and nothing is reverted.
fn refuse_replay(
    state: &State,
    ctx: &Ctx<'_>,
    r: &Rollout,
    trigger: String,
    figures: Figures,
    d: StageDecision,
) -> Step {
    let mut new = state.clone();
    new.rollout = None;
    clear_daemon_pause(&mut new);
    let reason = format!("replay failed: {trigger}");
    new.refused = Some(Refused {
        commit: r.commit.clone(),
        artifact: Some(r.artifact.clone()),
        reason: reason.clone(),
        since_ms: ctx.now_ms,
    });
    let change = Change {
        event: "refuse",
        cause: Cause::Trigger,
        reason: format!(
            "commit {} refused at stage `{}` (nothing was deployed: nothing to revert): {reason}",
            short::hash(&r.commit),
            r.stage_name
        ),
        commit: Some(r.commit.clone()),
        artifact: Some(r.artifact.clone()),
        figures,
    };
    commit_step(state, new, ctx, change, vec![Action::SetRoutes], Some(d))
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
        let mut step = pause(state, ctx, Cause::Daemon, reason, figs, d);
        if let Some(p) = &mut step.state.paused {
            p.engines.clone_from(&o.unreachable);
        }
        return step;
    }
    Step::none(state, d)
}

/// The engines whose silence paused the rollout all answer again, on the
/// route: the pause ends by itself, and `max_duration` counts afresh.
fn engines_back(state: &State, ctx: &Ctx<'_>, p: &Paused) -> Step {
    let mut new = state.clone();
    new.paused = None;
    if let Some(r) = &mut new.rollout {
        r.resumed_ms = Some(ctx.now_ms);
    }
    let (commit, artifact) = candidate_ids(state);
    let change = Change {
        event: "resume",
        cause: Cause::Daemon,
        reason: format!(
            "engine(s) {} answer again: the rollout goes on (was paused: {})",
            p.engines.join(", "),
            p.reason
        ),
        commit,
        artifact,
        figures: figures(None, ctx.observed.figures.as_ref()),
    };
    commit_step(state, new, ctx, change, vec![Action::SetRoutes], None)
}

fn pause(
    state: &State,
    ctx: &Ctx<'_>,
    cause: Cause,
    reason: String,
    figures: Figures,
    d: Option<StageDecision>,
) -> Step {
    let mut new = state.clone();
    new.paused = Some(Paused {
        reason: reason.clone(),
        cause,
        since_ms: ctx.now_ms,
        engines: Vec::new(),
        hold: false,
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

/// Moves the candidate to stage `next` of its plan, or makes it stable when
/// there is no such stage. A pause of the daemon's own ends; an operator's
/// pause stays (an operator promoting a paused rollout moves it one step,
/// and it holds there until `resume`).
pub(super) fn advance(
    state: &State,
    ctx: &Ctx<'_>,
    cause: Cause,
    reason: String,
    figures: Figures,
    d: Option<StageDecision>,
    next: usize,
) -> Step {
    let (Some(r), Some(plan)) = (&state.rollout, ctx.plan) else {
        return Step::refuse(state, "no rollout in flight");
    };
    let mut new = state.clone();
    if new
        .paused
        .as_ref()
        .is_some_and(|p| p.cause != Cause::Operator)
    {
        new.paused = None;
    }
    let reason = match &new.paused {
        Some(p) => format!(
            "{reason}; still paused by an operator ({}): `sluice resume` lets it go on",
            p.reason
        ),
        None => reason,
    };
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
            let c = change("advance", reason);
            commit_step(state, new, ctx, c, vec![Action::SetRoutes], d)
        }
        None => {
            promote_to_stable(&mut new, &r.commit, &r.artifact, ctx.now_ms);
            let reason = format!("{reason}; candidate {} is stable", short::hash(&r.artifact));
            let c = change("complete", reason);
            commit_step(state, new, ctx, c, vec![Action::SetRoutes], d)
        }
    }
}

fn rollback(
    state: &State,
    ctx: &Ctx<'_>,
    cause: Cause,
    trigger: String,
    figures: Figures,
    d: Option<StageDecision>,
) -> Step {
    let obs = ctx.observed.figures.as_ref();
    let mut new = state.clone();
    clear_daemon_pause(&mut new);
    let (commit, summary, artifact, stage, base, commits) = match (&state.rollout, &state.stable) {
        (Some(r), _) => {
            new.rollout = None;
            (
                r.commit.clone(),
                r.summary.clone(),
                r.artifact.clone(),
                r.stage_name.clone(),
                r.base.clone(),
                r.commits.clone(),
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
            // Back to the previous stable commit's tree; the commits in
            // between are found on the branch when the revert is made.
            let base = new.stable.as_ref().and_then(|p| p.commit.clone());
            (
                c.clone(),
                String::new(),
                artifact.clone(),
                "stable".into(),
                base,
                Vec::new(),
            )
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
        base,
        commits,
        stuck: None,
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

pub(super) fn operator(state: &State, ctx: &Ctx<'_>, c: Command) -> Step {
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
            let mut actions = vec![Action::SetRoutes];
            let mut also = String::new();
            // A revert the daemon stopped trying is tried afresh.
            for r in new.reverts.iter_mut().filter(|r| r.stuck.is_some()) {
                r.stuck = None;
                also = format!("; the revert of {} is tried again", short::hash(&r.commit));
                actions.push(Action::Revert {
                    commit: r.commit.clone(),
                });
            }
            let (commit, artifact) = candidate_ids(state);
            let change = Change {
                event: "resume",
                cause: Cause::Operator,
                reason: format!("resumed by an operator (was paused: {}){also}", p.reason),
                commit,
                artifact,
                figures: figs,
            };
            commit_step(state, new, ctx, change, actions, d)
        }
        Command::Promote {
            through: Some(through),
            reason,
        } => operator::promote_through(state, ctx, &through, reason.as_deref(), figs, d),
        Command::Promote {
            through: None,
            reason,
        } => {
            let Some(r) = &state.rollout else {
                return Step::refuse(state, "no rollout in flight: nothing to promote");
            };
            let waiting: Vec<String> = match &d {
                Some(d) => d
                    .readings
                    .iter()
                    .filter(|g| g.verdict != Verdict::Pass)
                    .map(|g| format!("{} ({:?})", g.gate, g.verdict).to_lowercase())
                    .collect(),
                None => vec!["no figures yet".to_string()],
            };
            let skipped = if waiting.is_empty() {
                "every gate already passed".to_string()
            } else {
                format!("skipped: {}", waiting.join(", "))
            };
            let mut reason_text = format!(
                "promoted by an operator: gates of stage `{}` skipped ({skipped})",
                r.stage_name
            );
            if let Some(why) = reason.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
                reason_text = format!("{reason_text}: {why}");
            }
            let next = r.stage + 1;
            advance(state, ctx, Cause::Operator, reason_text, figs, d, next)
        }
        Command::Unquarantine { target, reason } => {
            operator::unquarantine(state, ctx, &target, &reason)
        }
        Command::Rollback { reason, candidate } => {
            if let Some(given) = &candidate
                && let Err(why) = operator::names_what_rolls_back(state, given)
            {
                return Step::refuse(state, why);
            }
            let trigger = format!(
                "operator: {}",
                reason.unwrap_or_else(|| "rollback requested".to_string())
            );
            rollback(state, ctx, Cause::Operator, trigger, figs, d)
        }
        Command::RevertSkip { reason } => settle::by_operator(state, ctx, false, reason),
        Command::RevertDone { reason } => settle::by_operator(state, ctx, true, reason),
    }
}
