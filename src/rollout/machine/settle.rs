//! Pending reverts settled, and the watched branch leaving or coming back:
//! the transitions `reverted` (pushed, not needed, or made by hand),
//! `revert_failed` (the daemon stops trying and pauses), `revert_skipped`
//! (an operator leaves the branch as it is), `branch_deleted` and
//! `branch_restored`. Pure, like the whole machine.

use super::{
    Cause, Change, Ctx, Figures, Paused, RevertOutcome, State, Step, clear_daemon_pause,
    commit_step,
};
use crate::model::short;

/// The pending revert of `commit` landed, or was found not needed.
pub(super) fn reverted(state: &State, ctx: &Ctx<'_>, commit: &str, outcome: RevertOutcome) -> Step {
    let Some(pos) = state.reverts.iter().position(|r| r.commit == commit) else {
        return Step::none(state, None);
    };
    let mut new = state.clone();
    let pending = new.reverts.remove(pos);
    settled(&mut new, pending.stuck.is_some());
    let (reason, figs) = match &outcome {
        RevertOutcome::Pushed { revert } => (
            format!(
                "revert commit {} of {} pushed",
                short::hash(revert),
                range_text(&pending.range())
            ),
            Figures {
                revert: Some(revert.clone()),
                ..Figures::default()
            },
        ),
        RevertOutcome::NotNeeded { note } => (
            format!(
                "no revert of {} needed: {note}",
                range_text(&pending.range())
            ),
            Figures::default(),
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

/// The pending revert of `commit` could not be made, attempt after
/// attempt: the daemon stops trying, pauses and says why.
pub(super) fn failed(state: &State, ctx: &Ctx<'_>, commit: &str, error: String) -> Step {
    let Some(pos) = state
        .reverts
        .iter()
        .position(|r| r.commit == commit && r.stuck.is_none())
    else {
        return Step::none(state, None);
    };
    let mut new = state.clone();
    let Some(pending) = new.reverts.get_mut(pos) else {
        return Step::none(state, None);
    };
    pending.stuck = Some(error.clone());
    let (commit, artifact) = (pending.commit.clone(), pending.artifact.clone());
    let reason = format!(
        "the revert of {} could not be made after {} attempts: {error}; settle it with \
         `sluice revert skip` (leave the branch as it is) or `sluice revert done` (reverted by \
         hand), or `sluice resume` to try again",
        short::hash(&commit),
        super::REVERT_ATTEMPTS
    );
    new.paused = Some(Paused {
        reason: reason.clone(),
        cause: Cause::Daemon,
        since_ms: ctx.now_ms,
        hold: true,
        engines: Vec::new(),
    });
    let change = Change {
        event: "revert_failed",
        cause: Cause::Daemon,
        reason: format!("paused: {reason}"),
        commit: Some(commit),
        artifact: Some(artifact),
        figures: Figures::default(),
    };
    commit_step(state, new, ctx, change, Vec::new(), None)
}

/// `sluice revert skip|done`: the first pending revert settled by an
/// operator, without the daemon pushing anything.
pub(super) fn by_operator(
    state: &State,
    ctx: &Ctx<'_>,
    done: bool,
    reason: Option<String>,
) -> Step {
    let Some(pending) = state.reverts.first() else {
        return Step::refuse(state, "no revert is pending: nothing to settle");
    };
    let mut new = state.clone();
    new.reverts.remove(0);
    settled(&mut new, pending.stuck.is_some());
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    let range = range_text(&pending.range());
    let (event, reason) = if done {
        (
            "reverted",
            format!("the revert of {range} was made by hand, says an operator{why}"),
        )
    } else {
        (
            "revert_skipped",
            format!(
                "the revert of {range} skipped by an operator{why}: the branch is left as it is \
                 (artifact {} stays quarantined)",
                short::hash(&pending.artifact)
            ),
        )
    };
    let change = Change {
        event,
        cause: Cause::Operator,
        reason,
        commit: Some(pending.commit.clone()),
        artifact: Some(pending.artifact.clone()),
        figures: Figures::default(),
    };
    commit_step(state, new, ctx, change, Vec::new(), None)
}

/// The watched branch is gone from the remote: said once, and the daemon
/// pauses for an operator. Nothing is pushed to the branch meanwhile (a
/// revert never re-creates it).
pub(super) fn branch_deleted(state: &State, ctx: &Ctx<'_>) -> Step {
    if state.branch_gone.is_some() {
        return Step::none(state, None);
    }
    let mut new = state.clone();
    new.branch_gone = Some(ctx.now_ms);
    let reason = "the watched branch was deleted on the remote: nothing is rolled out or \
                  reverted until it is back and an operator resumes"
        .to_string();
    new.paused = Some(Paused {
        reason: reason.clone(),
        cause: Cause::Daemon,
        since_ms: ctx.now_ms,
        hold: true,
        engines: Vec::new(),
    });
    let change = Change {
        event: "branch_deleted",
        cause: Cause::Daemon,
        reason: format!("paused: {reason}"),
        commit: state.head.clone(),
        artifact: None,
        figures: Figures::default(),
    };
    commit_step(state, new, ctx, change, Vec::new(), None)
}

/// The watched branch is back: said once; the pause stays for an operator.
pub(super) fn branch_restored(state: &State, ctx: &Ctx<'_>, head: &str) -> Step {
    if state.branch_gone.is_none() {
        return Step::none(state, None);
    }
    let mut new = state.clone();
    new.branch_gone = None;
    let still = if new.paused.is_some() {
        "; `sluice resume` to act on it"
    } else {
        ""
    };
    let change = Change {
        event: "branch_restored",
        cause: Cause::Daemon,
        reason: format!(
            "the watched branch is back on the remote at {}{still}",
            short::hash(head)
        ),
        commit: Some(head.to_string()),
        artifact: None,
        figures: Figures::default(),
    };
    commit_step(state, new, ctx, change, Vec::new(), None)
}

/// The pause after a revert is settled: one the daemon made clears, and a
/// held one too when it waited for this revert (it was stuck).
fn settled(new: &mut State, was_stuck: bool) {
    if was_stuck
        && new
            .paused
            .as_ref()
            .is_some_and(|p| p.cause != Cause::Operator)
    {
        new.paused = None;
    }
    clear_daemon_pause(new);
}

/// A range of commits in a sentence: `1a2b3c4d5e6f`, or
/// `3 commits 1a2b3c4d5e6f..9f8e7d6c5b4a`.
fn range_text(commits: &[String]) -> String {
    match commits {
        [one] => short::hash(one).to_string(),
        [first, .., last] => format!(
            "{} commits {}..{}",
            commits.len(),
            short::hash(first),
            short::hash(last)
        ),
        [] => "nothing".to_string(),
    }
}
