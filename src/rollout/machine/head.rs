//! A new head of the branch: installed or adopted as the first stable,
//! refused, recognized as unchanged, or started (superseding or cancelling
//! the candidate in flight). Pure, like the whole machine.

use super::{
    Action, Build, Cause, Change, Ctx, Figures, Fleet, Head, Refused, Release, Rollout, State,
    Step, commit_step, promote_to_stable,
};
use crate::model::short;

pub(super) fn head(state: &State, ctx: &Ctx<'_>, h: Head) -> Step {
    if state.head.as_deref() == Some(h.commit.as_str()) {
        return Step::none(state, None);
    }
    if let Some(r) = state.reverts.first() {
        return Step::refuse(
            state,
            format!(
                "head {} waits: the revert of {} has not landed yet",
                short::hash(&h.commit),
                short::hash(&r.commit)
            ),
        );
    }
    if let Some(p) = &state.paused {
        return Step::refuse(
            state,
            format!(
                "head {} waits: paused ({})",
                short::hash(&h.commit),
                p.reason
            ),
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
            short::hash(&q.commit),
            short::hash(&q.artifact)
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
        figures: Figures {
            notes: ready.notes.clone(),
            ..Figures::default()
        },
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
                    short::hash(&ready.artifact)
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
                let reason = format!(
                    "the engines already run artifact {} as stable",
                    short::hash(a)
                );
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
                    short::hash(a)
                );
                let mut c = change("adopt", Cause::Daemon, reason);
                c.commit = None;
                c.artifact = Some(a.clone());
                c.figures = Figures::default();
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
                    short::hash(&h.commit),
                    short::hash(&r.artifact),
                    short::hash(&r.commit)
                );
                let c = change("cancel", Cause::Daemon, reason);
                commit_step(state, new, ctx, c, vec![Action::SetRoutes], None)
            }
            None => {
                let reason = format!(
                    "artifact {} is already stable: no rollout needed",
                    short::hash(&ready.artifact)
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
            short::hash(&ready.artifact),
            short::hash(&r.commit)
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
        promote_to_stable(&mut new, &h.commit, &ready.artifact, ctx.now_ms);
        let reason = format!(
            "no `[rollout]` plan: artifact {} installed as stable directly",
            short::hash(&ready.artifact)
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
        replay: ready.replay,
        notes: ready.notes.clone(),
    });
    let (event, reason) = match &state.rollout {
        Some(old) => (
            "supersede",
            format!(
                "commit {} supersedes candidate {} (commit {}) at stage `{}`",
                short::hash(&h.commit),
                short::hash(&old.artifact),
                short::hash(&old.commit),
                old.stage_name
            ),
        ),
        None => (
            "start",
            format!(
                "commit {} ({}): rollout of artifact {} starts",
                short::hash(&h.commit),
                h.summary,
                short::hash(&ready.artifact)
            ),
        ),
    };
    let mut c = change(event, Cause::Daemon, reason);
    c.figures.replay = Some(ready.replay);
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
        artifact: artifact.clone(),
        reason: reason.clone(),
        since_ms: ctx.now_ms,
    });
    let change = Change {
        event: "refuse",
        cause: Cause::Daemon,
        reason: format!("commit {} refused: {reason}", short::hash(commit)),
        commit: Some(commit.to_string()),
        artifact,
        figures: Figures::default(),
    };
    commit_step(old, new, ctx, change, Vec::new(), None)
}
