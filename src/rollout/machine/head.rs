//! A new head of the branch: installed or adopted as the first stable,
//! refused, recognized as unchanged, or started (superseding or cancelling
//! the candidate in flight) under the stable commit's plan; a head that
//! rewrote the branch's history waits for an operator. Pure, like the whole
//! machine.

use super::{
    Action, Build, Cause, Change, Ctx, Figures, Fleet, Head, Paused, Refused, Release, Rewrite,
    Rollout, State, Step, clear_daemon_pause, commit_step, promote_to_stable,
};
use crate::model::short;

pub(super) fn head(state: &State, ctx: &Ctx<'_>, h: Head) -> Step {
    if state.head.as_deref() == Some(h.commit.as_str()) {
        return Step::none(state, None);
    }
    if let Some(r) = state.reverts.first() {
        let why = match &r.stuck {
            Some(_) => "could not be made: settle it with `sluice revert skip|done`",
            None => "has not landed yet",
        };
        return Step::refuse(
            state,
            format!(
                "head {} waits: the revert of {} {why}",
                short::hash(&h.commit),
                short::hash(&r.commit)
            ),
        );
    }
    if h.forced {
        return rewrite(state, ctx, &h);
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
    new.rewrite = None;
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
        // The head's policies are stable's: it becomes the stable commit,
        // so that a later rollback never reverts the commits up to it (a
        // README, a trace, a hand-made revert).
        if let Some(s) = &mut new.stable {
            s.commit = Some(h.commit.clone());
        }
        return match &state.rollout {
            Some(r) => {
                new.rollout = None;
                clear_daemon_pause(&mut new);
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
                    "artifact {} is already stable: no rollout needed; commit {} is the stable commit",
                    short::hash(&ready.artifact),
                    short::hash(&h.commit)
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
    let base = stable.commit.clone();
    let Some(first) = ready.plan.as_ref().and_then(|p| p.stages.first()) else {
        promote_to_stable(&mut new, &h.commit, &ready.artifact, ctx.now_ms);
        let whose = match &base {
            Some(b) => format!("the stable commit {} has", short::hash(b)),
            None => "the commit has".to_string(),
        };
        let reason = format!(
            "{whose} no `[rollout]` plan: artifact {} installed as stable directly",
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
        base: base.clone(),
        commits: h.commits.clone(),
    });
    let what = commits_text(&h.commit, &h.summary, &h.commits, base.as_deref());
    let (event, reason) = match &state.rollout {
        Some(old) => (
            "supersede",
            format!(
                "{what} supersedes candidate {} (commit {}) at stage `{}`",
                short::hash(&old.artifact),
                short::hash(&old.commit),
                old.stage_name
            ),
        ),
        None => (
            "start",
            format!(
                "{what}: rollout of artifact {} starts",
                short::hash(&ready.artifact)
            ),
        ),
    };
    let reason = match &base {
        Some(b) => format!(
            "{reason}, under the plan and traces of stable commit {}",
            short::hash(b)
        ),
        None => format!("{reason}, under its own plan (the stable artifact has no commit)"),
    };
    let mut c = change(event, Cause::Daemon, reason);
    c.figures.replay = Some(ready.replay);
    commit_step(state, new, ctx, c, vec![upload, Action::SetRoutes], None)
}

/// How a rollout names what it rolls out: the head and its summary, and the
/// range since the stable commit when it holds more than the head.
fn commits_text(commit: &str, summary: &str, commits: &[String], base: Option<&str>) -> String {
    let head = format!("commit {} ({summary})", short::hash(commit));
    match (commits.len(), base) {
        (n, Some(b)) if n > 1 => format!(
            "{head} with {} earlier commit(s), {}..{}",
            n - 1,
            short::hash(b),
            short::hash(commit)
        ),
        _ => head,
    }
}

/// A head that does not descend from the last head acted on: recorded,
/// and the daemon pauses until an operator resumes (then the head is acted
/// on like any other).
fn rewrite(state: &State, ctx: &Ctx<'_>, h: &Head) -> Step {
    let mut new = state.clone();
    let from = state
        .rewrite
        .as_ref()
        .map(|r| r.to.clone())
        .or_else(|| state.head.clone());
    new.rewrite = Some(Rewrite {
        from: from.clone(),
        to: h.commit.clone(),
        since_ms: ctx.now_ms,
    });
    let was = from.as_deref().map(short::hash).unwrap_or("none");
    let reason = format!(
        "the branch's history was rewritten (force-push): head {} does not descend from {was}, \
         the last head acted on; `sluice resume` acts on the new head, `sluice rollback` rolls \
         the candidate back",
        short::hash(&h.commit)
    );
    new.paused = Some(Paused {
        reason: reason.clone(),
        cause: Cause::Daemon,
        since_ms: ctx.now_ms,
        hold: true,
        engines: Vec::new(),
    });
    let change = Change {
        event: "force_push",
        cause: Cause::Daemon,
        reason: format!("paused: {reason}"),
        commit: Some(h.commit.clone()),
        artifact: None,
        figures: Figures::default(),
    };
    commit_step(state, new, ctx, change, Vec::new(), None)
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
