//! The branch's side of the loop: fetching the watched branch (and noticing
//! it gone or back), building a new head in the background (compile,
//! check, replay, against the engines' live state, under the stable
//! commit's plan and traces; the range of commits since stable; whether it
//! rewrote history) and keeping its result until the head is acted on,
//! reading the plan a candidate walks, and landing pending reverts,
//! checked before they are pushed and retried with a growing wait until
//! [`REVERT_ATTEMPTS`] failures in a row stop them for an operator.
//! Fetches, pushes and the look for a revert made by hand run off the loop
//! (`gitcall`), with a timeout; commits are read on tokio's blocking pool.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::build;
use super::err::ReconcileError;
use super::git::{Mirror, Prepared};
use super::gitcall::Polled;
use super::runner::{
    Against, Built, Cached, CachedReady, MAX_FETCH_BACKOFF, MAX_REVERT_BACKOFF, Runner,
    fetch_backoff, lock, revert_backoff,
};
use super::store::Store;
use crate::model::short;
use crate::rollout::machine::{
    Build, Event, Head, REVERT_ATTEMPTS, Ready, RevertOutcome, Step as MachineStep,
};

impl Runner {
    /// Starts fetching the branch, off the loop, unless a fetch or a
    /// revert is in flight (a hook meanwhile fetches once it returns): one
    /// git call at a time, so that a fetch that started before a revert
    /// was pushed never takes the branch back to before it.
    pub(super) fn fetch(&mut self) {
        if self.fetching.is_some() || self.reverting.is_some() || self.revert_waiting() {
            return;
        }
        if !self.git.can_start() {
            self.git_error = Some(self.git.busy());
            return;
        }
        self.fetch_now = false;
        self.last_fetch = Some(Instant::now());
        self.fetching = Some(self.git.start("fetching the branch", |m| m.fetch()));
    }

    /// Whether a pending revert is due to start: fetches give way to it
    /// (it fetches itself), or a remote slower than `--interval` (an ssh
    /// fetch can take seconds) would keep a fetch always in flight and the
    /// revert never started.
    fn revert_waiting(&self) -> bool {
        self.state
            .reverts
            .first()
            .is_some_and(|r| r.stuck.is_none())
            && !self.state.paused.as_ref().is_some_and(|p| p.hold)
            && Instant::now() >= self.next_revert
    }

    /// Takes in the fetch's answer when it is there; gives it up past
    /// `--git-timeout`, saying so in status. Returns whether a fetch
    /// answered.
    pub(super) async fn take_fetch(&mut self) -> bool {
        let mut answered = false;
        match self.git.poll(&mut self.fetching) {
            None | Some(Polled::Running) => {}
            Some(Polled::Done(Ok(head))) => {
                answered = true;
                self.head = Some(head);
                self.fetched_ms = Some(self.now_ms());
                self.git_error = None;
                self.branch_missing = false;
                self.fetch_failures = 0;
                self.fetch_wait = self.config.interval;
                self.fetch_backoff = fetch_backoff(self.config.interval);
            }
            Some(Polled::Done(Err(e @ ReconcileError::NoBranch { .. }))) => {
                if !self.branch_missing {
                    tracing::warn!(error = %e, "the watched branch is gone from the remote");
                }
                self.branch_missing = true;
                self.head = None;
                // The remote answered: not a failure to back off from.
                self.fetch_failures = 0;
                self.fetch_wait = self.config.interval;
                self.fetch_backoff = fetch_backoff(self.config.interval);
                self.git_error = Some(e.to_string());
            }
            Some(Polled::Done(Err(e)) | Polled::TimedOut(e)) => {
                self.fetch_failures += 1;
                self.fetch_wait = self
                    .fetch_backoff
                    .next()
                    .unwrap_or(MAX_FETCH_BACKOFF)
                    .max(self.config.interval);
                if self.git_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(
                        error = %e,
                        failures = self.fetch_failures,
                        next_in_ms = u64::try_from(self.fetch_wait.as_millis()).unwrap_or(u64::MAX),
                        "fetching the branch failed"
                    );
                }
                self.git_error = Some(e.to_string());
                if self.head.is_none() {
                    let mirror = self.mirror.clone();
                    self.head = tokio::task::spawn_blocking(move || lock(&mirror).head())
                        .await
                        .ok()
                        .flatten();
                }
            }
        }
        // The plan of a candidate persisted by an earlier run.
        if let Some(commit) = self
            .state
            .rollout
            .as_ref()
            .map(|r| r.plan_commit().to_string())
        {
            self.ensure_plan(&commit).await;
        }
        answered
    }

    /// The branch event this pass has to give the machine, if any: the
    /// branch gone from the remote (once it had a head acted on: a branch
    /// never seen is a configuration error in status, not a deletion), or
    /// back after it was.
    pub(super) fn branch_event(&self) -> Option<Event> {
        if self.branch_missing && self.state.branch_gone.is_none() && self.state.head.is_some() {
            return Some(Event::BranchDeleted);
        }
        match (&self.head, self.state.branch_gone) {
            (Some(head), Some(_)) if !self.branch_missing && self.git_error.is_none() => {
                Some(Event::BranchRestored { head: head.clone() })
            }
            _ => None,
        }
    }

    /// The fetch event this pass has to give the machine, if any: fetching
    /// failing (said once), or working again.
    pub(super) fn fetch_event(&self) -> Option<Event> {
        match (&self.git_error, self.state.fetch_failing) {
            (Some(error), None) if self.fetch_failures > 0 => Some(Event::FetchFailed {
                error: error.clone(),
            }),
            (None, Some(_)) if self.fetch_failures == 0 && self.fetched_ms.is_some() => {
                Some(Event::FetchRestored)
            }
            _ => None,
        }
    }

    /// Loads a commit's rollout plan from its `sluice.toml`.
    pub(super) async fn ensure_plan(&mut self, commit: &str) {
        if self.plans.contains_key(commit) {
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

    pub(super) fn head_event(&mut self, head: &str) -> Event {
        let Some(cached) = self.builds.get(head).cloned() else {
            return Event::Head(Head {
                commit: head.to_string(),
                summary: String::new(),
                build: Build::Refused {
                    reason: "the commit could not be built".to_string(),
                },
                commits: Vec::new(),
                forced: false,
            });
        };
        let build = match cached.result {
            Ok(r) => {
                let r = *r;
                // The plan is the base's: kept under the base's commit.
                let key = cached
                    .against
                    .base
                    .clone()
                    .unwrap_or_else(|| head.to_string());
                self.plans.insert(key, r.plan.clone());
                Build::Ready(Box::new(Ready {
                    artifact: r.artifact,
                    plan: r.plan,
                    replay: r.replay,
                    notes: r.notes,
                }))
            }
            Err(reason) => Build::Refused { reason },
        };
        Event::Head(Head {
            commit: head.to_string(),
            summary: cached.summary,
            build,
            commits: cached.commits,
            forced: cached.forced,
        })
    }

    /// Starts building `head` in the background unless it is built or being
    /// built; takes in a finished build. Returns whether `head` is built.
    pub(super) async fn poll_build(&mut self, head: &str) -> Result<bool, ReconcileError> {
        if let Some((commit, rx)) = &mut self.building {
            let taken = match rx.try_recv() {
                Ok(built) => Some(built),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    Some(Err(ReconcileError::Git(format!(
                        "the build of {} stopped before it finished",
                        short::hash(commit)
                    ))))
                }
            };
            if let Some(built) = taken
                && let Some((commit, _)) = self.building.take()
            {
                let (cached, bytes) = built?;
                if let Some((hash, bytes)) = bytes {
                    self.artifacts.insert(hash, Arc::new(bytes));
                }
                let keep = [self.head.clone(), self.state.head.clone()];
                self.builds
                    .retain(|k, _| keep.iter().any(|h| h.as_deref() == Some(k.as_str())));
                self.builds.insert(commit, cached);
            }
        }
        let against = self.against();
        match self.builds.get(head) {
            Some(c) if c.against == against => return Ok(true),
            // Built against another stable or another last head: again.
            Some(_) => {
                self.builds.remove(head);
            }
            None => {}
        }
        if self.building.is_none() {
            let live = self.live_states().await;
            let base = self.stable_set().await;
            let mirror = self.mirror.clone();
            let store = self.store.clone();
            let log = self.config.decision_log.clone();
            let done = self.build_done.clone();
            let commit = head.to_string();
            let (tx, rx) = oneshot::channel();
            tokio::task::spawn_blocking(move || {
                let live = build::Live {
                    engines: &live,
                    base: base.as_ref(),
                };
                let out = build_commit(
                    &mirror,
                    &store,
                    &commit,
                    against,
                    log.as_deref(),
                    Some(live),
                );
                // The result first, then the wake-up: a loop woken by it
                // always finds the build.
                let _ = tx.send(out);
                done.notify_one();
            });
            self.building = Some((head.to_string(), rx));
        }
        Ok(false)
    }

    /// The live state of every engine that exposes it, a state several
    /// engines share once.
    pub(super) async fn live_states(&self) -> Vec<(String, crate::api::state::LiveState)> {
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
        crate::review::build::distinct_states(out)
    }

    /// The stable artifact's policy set, from the stored artifact.
    pub(super) async fn stable_set(&mut self) -> Option<crate::model::ir::PolicySet> {
        let hash = self.state.stable.as_ref()?.artifact.clone();
        let bytes = self.artifact(&hash).await?;
        let a = crate::compile::artifact::Artifact::from_bytes(&bytes).ok()?;
        Some(crate::model::ir::PolicySet {
            policies: a.policies,
        })
    }

    /// Lands the first pending revert: made, checked and pushed (or found
    /// not needed) off the loop (`gitcall`), started when its time has come
    /// and settled once git answered. A failure is retried with a growing
    /// wait; after [`REVERT_ATTEMPTS`] reverts that cannot be made (not an
    /// unreachable or hung remote) the daemon stops trying and pauses.
    /// A stuck revert is only looked for on the branch (made by hand), once
    /// per new head. Returns whether a transition was made.
    pub(super) async fn revert(&mut self) -> Result<bool, ReconcileError> {
        let Some(pending) = self.state.reverts.first().cloned() else {
            return Ok(false);
        };
        let Some((commit, _)) = &self.reverting else {
            if self.fetching.is_some() {
                // One git call at a time: after the fetch in flight.
                return Ok(false);
            }
            // A pause only an operator lifts (a deleted or restored
            // branch, a rewritten history) holds the push too: nothing
            // goes to the branch before the operator has looked.
            if pending.stuck.is_none() && self.state.paused.as_ref().is_some_and(|p| p.hold) {
                return Ok(false);
            }
            let p = pending.clone();
            if pending.stuck.is_some() {
                if self.head.is_none() || self.stuck_checked == self.head {
                    return Ok(false);
                }
                if self.git.can_start() {
                    self.stuck_checked = self.head.clone();
                    let call = self
                        .git
                        .start("looking for a revert made by hand", move |m| {
                            Ok(match m.prepare_revert(&p)? {
                                Prepared::NotNeeded { note } => {
                                    Some(RevertOutcome::NotNeeded { note })
                                }
                                Prepared::Commit { .. } => None,
                            })
                        });
                    self.reverting = Some((pending.commit.clone(), call));
                }
                return Ok(false);
            }
            if Instant::now() >= self.next_revert {
                if self.git.can_start() {
                    let call = self.git.start("pushing the revert", move |m| {
                        m.revert(&p, |files| build::build(files, None, None).map(|_| ()))
                            .map(Some)
                    });
                    self.reverting = Some((pending.commit.clone(), call));
                } else {
                    self.revert_error = Some(self.git.busy());
                }
            }
            return Ok(false);
        };
        let commit = commit.clone();
        let mut call = self.reverting.take().map(|(_, c)| c);
        let out = match self.git.poll(&mut call) {
            None | Some(Polled::Running) => {
                self.reverting = call.map(|c| (commit, c));
                return Ok(false);
            }
            Some(Polled::Done(out)) => out,
            Some(Polled::TimedOut(e)) => Err(e),
        };
        if commit != pending.commit {
            // The revert it was for is no longer the first pending one.
            return Ok(false);
        }
        if pending.stuck.is_some() {
            // Only a revert found made by hand settles a stuck one.
            let Ok(Some(outcome)) = out else {
                return Ok(false);
            };
            let step = self.step(Event::Reverted {
                commit: pending.commit.clone(),
                outcome,
            });
            return self.commit_moved(step).await;
        }
        let out = out.and_then(|o| {
            o.ok_or_else(|| ReconcileError::Git("the revert call answered nothing".to_string()))
        });
        match out {
            Ok(outcome) => {
                if let RevertOutcome::Pushed { revert } = &outcome {
                    self.head = Some(revert.clone());
                    self.fetched_ms = Some(self.now_ms());
                    self.git_error = None;
                }
                self.revert_attempts = 0;
                self.revert_failures = 0;
                self.revert_error = None;
                self.revert_backoff = revert_backoff(self.config.interval);
                let step = self.step(Event::Reverted {
                    commit: pending.commit.clone(),
                    outcome,
                });
                self.commit_moved(step).await
            }
            Err(e) => {
                // Only a revert that cannot be made counts: an unreachable
                // remote or a branch that moved is tried again for as long
                // as it takes.
                self.revert_attempts += 1;
                if matches!(e, ReconcileError::Revert(_)) {
                    self.revert_failures += 1;
                }
                let error = e.to_string();
                if self.revert_error.as_deref() != Some(&error) {
                    tracing::warn!(commit = %short::hash(&pending.commit), error = %e, attempts = self.revert_attempts, "the revert did not land");
                }
                self.revert_error = Some(error.clone());
                let wait = self.revert_backoff.next().unwrap_or(MAX_REVERT_BACKOFF);
                self.next_revert = Instant::now() + wait;
                if self.revert_failures < REVERT_ATTEMPTS {
                    return Ok(false);
                }
                let step = self.step(Event::RevertFailed {
                    commit: pending.commit.clone(),
                    error,
                });
                self.commit_moved(step).await
            }
        }
    }

    /// Persists and acts on a step; whether it made a transition.
    async fn commit_moved(&mut self, step: MachineStep) -> Result<bool, ReconcileError> {
        let moved = step.transition.is_some();
        self.commit(step).await?;
        Ok(moved)
    }
}

/// Reads, compiles, checks and replays a commit under the plan and traces
/// of the stable commit it is built against, finds the commits it brings
/// since that one and whether it rewrote history, and stores its artifact
/// (blocking: run on the blocking pool).
fn build_commit(
    mirror: &Mutex<Mirror>,
    store: &Store,
    commit: &str,
    against: Against,
    log_path: Option<&std::path::Path>,
    live: Option<build::Live<'_>>,
) -> Result<Built, ReconcileError> {
    let (read, forced, commits, gate) = {
        let m = lock(mirror);
        let forced = against
            .anchor
            .as_deref()
            .is_some_and(|a| !m.descends(commit, a));
        let commits = m
            .range(against.base.as_deref(), commit)
            .unwrap_or_else(|_| vec![commit.to_string()]);
        let gate = against.base.as_deref().map(|b| m.read_commit(b));
        (m.read_commit(commit), forced, commits, gate)
    };
    let refused = |summary: String, reason: String| Cached {
        summary,
        against: against.clone(),
        commits: commits.clone(),
        forced,
        result: Err(reason),
    };
    let files = match read {
        Ok(f) => f,
        Err(e) => {
            let summary = lock(mirror).summary(commit);
            return Ok((refused(summary, e.to_string()), None));
        }
    };
    let gate_sources = match (&against.base, &gate) {
        (Some(b), Some(Ok(g))) => match &g.sources {
            Ok(s) => Some((b.as_str(), s)),
            Err(e) => {
                let reason = format!(
                    "the plan and traces of stable commit {} cannot be read: {e}",
                    short::hash(b)
                );
                return Ok((refused(files.summary.clone(), reason), None));
            }
        },
        (Some(b), Some(Err(e))) => {
            let reason = format!(
                "the plan and traces of stable commit {} cannot be read: {e}",
                short::hash(b)
            );
            return Ok((refused(files.summary.clone(), reason), None));
        }
        _ => None,
    };
    let gate = gate_sources.map(|(commit, sources)| build::Gate { commit, sources });
    let log = log_path.and_then(|p| std::fs::read_to_string(p).ok());
    match build::build_gated(&files, gate, log.as_deref(), live) {
        Ok(b) => {
            store.save_artifact(&b.artifact.hash, &b.bytes)?;
            let cached = Cached {
                summary: files.summary.clone(),
                against: against.clone(),
                commits: commits.clone(),
                forced,
                result: Ok(Box::new(CachedReady {
                    artifact: b.artifact.hash.clone(),
                    plan: b.plan,
                    replay: b.replay.totals(),
                    notes: b.notes,
                })),
            };
            Ok((cached, Some((b.artifact.hash, b.bytes))))
        }
        Err(reason) => Ok((refused(files.summary.clone(), reason), None)),
    }
}
