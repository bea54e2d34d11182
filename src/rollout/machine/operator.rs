//! What operators override: a promotion through several stages (the
//! candidate in flight, or the branch head not rolled out yet), a rollback
//! that names the candidate it means, and a lifted quarantine. Each is one
//! transition with the operator's reason in its audit line. Pure, like the
//! whole machine.
//!
//! A commit or an artifact is named by its full hash or a prefix of it
//! (the control API refuses prefixes shorter than 7 characters).

use super::step::advance;
use super::{
    Action, Build, Cause, Change, Ctx, Figures, Head, Quarantined, State, Step, commit_step,
    promote_to_stable,
};
use crate::api::gate::Verdict;
use crate::model::short;
use crate::rollout::stage::StageDecision;

/// Whether `given` names `id`: the whole of it or a prefix, in any case.
pub fn names(id: &str, given: &str) -> bool {
    let given = given.trim();
    !given.is_empty()
        && id
            .get(..given.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(given))
}

/// An operator's reason, trimmed; `None` when there is none.
fn reason_of(reason: Option<&str>) -> Option<&str> {
    reason.map(str::trim).filter(|r| !r.is_empty())
}

/// Checks that `given` names what a rollback would roll back now (the
/// candidate in flight or, with none, the stable release); `Err` says what
/// it is instead. With nothing to roll back, the rollback's own refusal
/// says so.
pub(super) fn names_what_rolls_back(state: &State, given: &str) -> Result<(), String> {
    let target = match (&state.rollout, &state.stable) {
        (Some(r), _) => Some(("the candidate", Some(r.commit.as_str()), &r.artifact)),
        (None, Some(s)) if state.previous.is_some() => Some((
            "nothing is in flight; the stable release",
            s.commit.as_deref(),
            &s.artifact,
        )),
        _ => None,
    };
    let Some((what, commit, artifact)) = target else {
        return Ok(());
    };
    if commit.is_some_and(|c| names(c, given)) || names(artifact, given) {
        return Ok(());
    }
    Err(format!(
        "{what} is artifact {} (commit {}), not `{}`: nothing rolled back; \
         run `sluice status` and name what you mean",
        short::hash(artifact),
        commit.map_or("unknown", short::hash),
        given.trim()
    ))
}

/// `promote --through STAGE` of the candidate in flight: every stage from
/// the current one up to and including `through` is skipped; the candidate
/// goes to the stage after it, or becomes stable when `through` is the
/// last.
pub(super) fn promote_through(
    state: &State,
    ctx: &Ctx<'_>,
    through: &str,
    reason: Option<&str>,
    figs: Figures,
    d: Option<StageDecision>,
) -> Step {
    let Some(why) = reason_of(reason) else {
        return Step::refuse(
            state,
            "`promote --through` overrides gates: give the reason for the audit log (`--reason`)",
        );
    };
    let Some(r) = &state.rollout else {
        return Step::refuse(
            state,
            "no rollout in flight and no new head waiting: nothing to promote",
        );
    };
    let Some(plan) = ctx.plan else {
        return Step::refuse(
            state,
            "the candidate's rollout plan is not read yet: try again in a moment",
        );
    };
    let Some(to) = plan.stages.iter().position(|s| s.name == through) else {
        let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        return Step::refuse(
            state,
            format!(
                "the candidate's plan has no stage `{through}` (its stages: {})",
                names.join(", ")
            ),
        );
    };
    if to < r.stage {
        return Step::refuse(
            state,
            format!(
                "the candidate is at stage `{}`, past `{through}` already",
                r.stage_name
            ),
        );
    }
    let skipped: Vec<&str> = plan
        .stages
        .get(r.stage..=to)
        .unwrap_or_default()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let open: Vec<String> = d
        .iter()
        .flat_map(|d| d.readings.iter().chain(&d.triggers))
        .filter(|g| g.verdict != Verdict::Pass)
        .map(|g| format!("{} {}", g.gate, g.verdict))
        .collect();
    let gates = if open.is_empty() {
        String::new()
    } else {
        format!(
            "; gates of `{}` overridden: {}",
            r.stage_name,
            open.join(", ")
        )
    };
    let text = format!(
        "promoted by an operator through `{through}` (stage(s) {} skipped{gates}): {why}",
        skipped.join(", ")
    );
    advance(state, ctx, Cause::Operator, text, figs, d, to + 1)
}

/// `promote --through STAGE` of the branch head when nothing is in flight
/// (typically a fix for a bad stable release, pushed while the daemon was
/// paused): the head is installed as stable at once. `through` must be the
/// last stage of the head's plan: the head skips every stage.
pub(super) fn promote_head(
    state: &State,
    ctx: &Ctx<'_>,
    head: Head,
    through: &str,
    reason: &str,
) -> Step {
    let Some(why) = reason_of(Some(reason)) else {
        return Step::refuse(
            state,
            "`promote --through` overrides gates: give the reason for the audit log (`--reason`)",
        );
    };
    if state.rollout.is_some() {
        return Step::refuse(state, "a rollout is in flight: promote that one");
    }
    if let Some(r) = state.reverts.first() {
        return Step::refuse(
            state,
            format!(
                "the revert of {} has not landed yet: the head waits for it",
                short::hash(&r.commit)
            ),
        );
    }
    let Some(stable) = &state.stable else {
        return Step::refuse(
            state,
            "no stable artifact yet: the first clean commit is installed directly",
        );
    };
    let ready = match head.build {
        Build::Refused { reason } => {
            return Step::refuse(
                state,
                format!(
                    "head {} does not check, it cannot be promoted: {reason}",
                    short::hash(&head.commit)
                ),
            );
        }
        Build::Ready(r) => r,
    };
    if let Some(q) = state.quarantined(&head.commit, Some(&ready.artifact)) {
        return Step::refuse(
            state,
            format!(
                "head {} is quarantined ({}): `sluice unquarantine` it first",
                short::hash(&head.commit),
                q.reason
            ),
        );
    }
    if ready.artifact == stable.artifact {
        return Step::refuse(
            state,
            format!(
                "head {} builds the stable artifact {}: nothing to promote",
                short::hash(&head.commit),
                short::hash(&ready.artifact)
            ),
        );
    }
    if let Some(last) = ready.plan.as_ref().and_then(|p| p.stages.last())
        && last.name != through
    {
        return Step::refuse(
            state,
            format!(
                "head {} is not rolled out yet: it can be promoted only through its plan's \
                 last stage, `{}`",
                short::hash(&head.commit),
                last.name
            ),
        );
    }
    let mut new = state.clone();
    new.head = Some(head.commit.clone());
    new.refused = None;
    if new
        .paused
        .as_ref()
        .is_some_and(|p| p.cause != Cause::Operator)
    {
        new.paused = None;
    }
    promote_to_stable(&mut new, &head.commit, &ready.artifact, ctx.now_ms);
    let mut text = format!(
        "head {} ({}) promoted by an operator through `{through}`: artifact {} installed as \
         stable without a rollout: {why}",
        short::hash(&head.commit),
        head.summary,
        short::hash(&ready.artifact)
    );
    if let Some(p) = &new.paused {
        text = format!(
            "{text}; still paused by an operator ({}): `sluice resume` lets new commits roll out",
            p.reason
        );
    }
    let change = Change {
        event: "promote",
        cause: Cause::Operator,
        reason: text,
        commit: Some(head.commit.clone()),
        artifact: Some(ready.artifact.clone()),
        figures: Figures {
            notes: ready.notes.clone(),
            replay: Some(ready.replay),
            ..Figures::default()
        },
    };
    let actions = vec![
        Action::Upload {
            artifact: ready.artifact.clone(),
        },
        Action::SetRoutes,
    ];
    commit_step(state, new, ctx, change, actions, None)
}

/// `unquarantine COMMIT|ARTIFACT`: every quarantine entry whose commit or
/// artifact `target` names is lifted. When the branch head was refused for
/// one of them, it is acted on again (the daemon forgets that it saw it).
pub(super) fn unquarantine(state: &State, ctx: &Ctx<'_>, target: &str, reason: &str) -> Step {
    let Some(why) = reason_of(Some(reason)) else {
        return Step::refuse(
            state,
            "lifting a quarantine needs the reason for the audit log (`--reason`)",
        );
    };
    let (lifted, kept): (Vec<Quarantined>, Vec<Quarantined>) = state
        .quarantine
        .iter()
        .cloned()
        .partition(|q| names(&q.commit, target) || names(&q.artifact, target));
    let Some(first) = lifted.first() else {
        let list: Vec<String> = state
            .quarantine
            .iter()
            .map(|q| {
                format!(
                    "commit {} / artifact {}",
                    short::hash(&q.commit),
                    short::hash(&q.artifact)
                )
            })
            .collect();
        let known = if list.is_empty() {
            "nothing is quarantined".to_string()
        } else {
            format!("quarantined: {}", list.join("; "))
        };
        return Step::refuse(
            state,
            format!(
                "no quarantined commit or artifact is `{}` ({known})",
                target.trim()
            ),
        );
    };
    let mut new = state.clone();
    new.quarantine = kept;
    let mut text = format!(
        "quarantine lifted by an operator for {}: {why}",
        lifted
            .iter()
            .map(|q| format!(
                "commit {} (artifact {})",
                short::hash(&q.commit),
                short::hash(&q.artifact)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let refused_for_it = state.refused.as_ref().is_some_and(|r| {
        state.head.as_deref() == Some(r.commit.as_str())
            && lifted
                .iter()
                .any(|q| q.commit == r.commit || r.artifact.as_deref() == Some(q.artifact.as_str()))
    });
    if refused_for_it {
        new.head = None;
        new.refused = None;
        if let Some(h) = &state.head {
            text = format!("{text}; head {} is acted on again", short::hash(h));
        }
    }
    let change = Change {
        event: "unquarantine",
        cause: Cause::Operator,
        reason: text,
        commit: Some(first.commit.clone()),
        artifact: Some(first.artifact.clone()),
        figures: Figures::default(),
    };
    commit_step(state, new, ctx, change, Vec::new(), None)
}
