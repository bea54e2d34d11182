//! The branch's side of the loop: fetching the watched branch, building a
//! new head in the background (compile, check, replay, against the engines'
//! live state) and keeping its result until the head is acted on, reading a
//! candidate's rollout plan, and landing pending reverts, retried with a
//! growing wait. Git runs on tokio's blocking pool, never on the loop.

use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::build;
use super::err::ReconcileError;
use super::git::Mirror;
use super::runner::{Built, Cached, CachedReady, MAX_REVERT_BACKOFF, Runner, lock, revert_backoff};
use super::store::Store;
use crate::model::short;
use crate::rollout::machine::{Build, Event, Head, Ready, RevertOutcome};

impl Runner {
    pub(super) async fn fetch(&mut self) {
        self.fetch_now = false;
        self.last_fetch = Some(Instant::now());
        let mirror = self.mirror.clone();
        let out = tokio::task::spawn_blocking(move || lock(&mirror).fetch()).await;
        match out {
            Ok(Ok(head)) => {
                self.head = Some(head);
                self.fetched_ms = Some(self.now_ms());
                self.git_error = None;
            }
            Ok(Err(e)) => {
                if self.git_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(error = %e, "fetching the branch failed");
                }
                self.git_error = Some(e.to_string());
                if self.head.is_none() {
                    self.head = lock(&self.mirror).head();
                }
            }
            Err(e) => self.git_error = Some(e.to_string()),
        }
        // The plan of a candidate persisted by an earlier run.
        if let Some(r) = &self.state.rollout {
            self.ensure_plan(&r.commit.clone()).await;
        }
    }

    /// Loads a commit's rollout plan from its `sluice.toml`.
    pub(super) async fn ensure_plan(&mut self, commit: &str) {
        if self.plans.contains_key(commit) {
            return;
        }
        if let Some(Cached::Ready(r)) = self.builds.get(commit) {
            self.plans.insert(commit.to_string(), r.plan.clone());
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
        let cached = self.builds.get(head).cloned();
        let (summary, build) = match cached {
            Some(Cached::Ready(r)) => {
                let r = *r;
                self.plans.insert(head.to_string(), r.plan.clone());
                (
                    r.summary,
                    Build::Ready(Box::new(Ready {
                        artifact: r.artifact,
                        plan: r.plan,
                        replay: r.replay,
                        notes: r.notes,
                    })),
                )
            }
            Some(Cached::Refused { reason, summary }) => (summary, Build::Refused { reason }),
            None => (
                String::new(),
                Build::Refused {
                    reason: "the commit could not be built".to_string(),
                },
            ),
        };
        Event::Head(Head {
            commit: head.to_string(),
            summary,
            build,
        })
    }

    /// Starts building `head` in the background unless it is built or being
    /// built; takes in a finished build. Returns whether `head` is built.
    pub(super) async fn poll_build(&mut self, head: &str) -> Result<bool, ReconcileError> {
        if self.building.as_ref().is_some_and(|(_, h)| h.is_finished())
            && let Some((commit, handle)) = self.building.take()
        {
            let (cached, bytes) = handle.await??;
            if let Some((hash, bytes)) = bytes {
                self.artifacts.insert(hash, Arc::new(bytes));
            }
            let keep = [self.head.clone(), self.state.head.clone()];
            self.builds
                .retain(|k, _| keep.iter().any(|h| h.as_deref() == Some(k.as_str())));
            self.builds.insert(commit, cached);
        }
        if self.builds.contains_key(head) {
            return Ok(true);
        }
        if self.building.is_none() {
            let live = self.live_states().await;
            let base = self.stable_set().await;
            let mirror = self.mirror.clone();
            let store = self.store.clone();
            let log = self.config.decision_log.clone();
            let done = self.build_done.clone();
            let commit = head.to_string();
            let handle = tokio::task::spawn_blocking(move || {
                let live = build::Live {
                    engines: &live,
                    base: base.as_ref(),
                };
                let out = build_commit(&mirror, &store, &commit, log.as_deref(), Some(live));
                done.notify_one();
                out
            });
            self.building = Some((head.to_string(), handle));
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

    pub(super) async fn revert(&mut self) -> Result<bool, ReconcileError> {
        let Some(pending) = self.state.reverts.first().cloned() else {
            return Ok(false);
        };
        let mirror = self.mirror.clone();
        let p = pending.clone();
        let out = tokio::task::spawn_blocking(move || lock(&mirror).revert(&p)).await?;
        match out {
            Ok(outcome) => {
                if let RevertOutcome::Pushed { revert } = &outcome {
                    self.head = Some(revert.clone());
                    self.fetched_ms = Some(self.now_ms());
                    self.git_error = None;
                }
                self.revert_attempts = 0;
                self.revert_error = None;
                self.revert_backoff = revert_backoff(self.config.interval);
                let step = self.step(Event::Reverted {
                    commit: pending.commit.clone(),
                    outcome,
                });
                let moved = step.transition.is_some();
                self.commit(step).await?;
                Ok(moved)
            }
            Err(e) => {
                self.revert_attempts += 1;
                if self.revert_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!(commit = %short::hash(&pending.commit), error = %e, "the revert did not land; retrying");
                }
                self.revert_error = Some(e.to_string());
                let wait = self.revert_backoff.next().unwrap_or(MAX_REVERT_BACKOFF);
                self.next_revert = Instant::now() + wait;
                Ok(false)
            }
        }
    }
}

/// Reads, compiles, checks and replays a commit, and stores its artifact
/// (blocking: run on the blocking pool).
fn build_commit(
    mirror: &Mutex<Mirror>,
    store: &Store,
    commit: &str,
    log_path: Option<&std::path::Path>,
    live: Option<build::Live<'_>>,
) -> Result<Built, ReconcileError> {
    let read = lock(mirror).read_commit(commit);
    let files = match read {
        Ok(f) => f,
        Err(e) => {
            let summary = lock(mirror).summary(commit);
            let reason = e.to_string();
            return Ok((Cached::Refused { reason, summary }, None));
        }
    };
    let log = log_path.and_then(|p| std::fs::read_to_string(p).ok());
    match build::build(&files, log.as_deref(), live) {
        Ok(b) => {
            store.save_artifact(&b.artifact.hash, &b.bytes)?;
            let cached = Cached::Ready(Box::new(CachedReady {
                artifact: b.artifact.hash.clone(),
                plan: b.plan,
                replay: b.replay.totals(),
                notes: b.notes,
                summary: files.summary.clone(),
            }));
            Ok((cached, Some((b.artifact.hash, b.bytes))))
        }
        Err(reason) => Ok((
            Cached::Refused {
                reason,
                summary: files.summary.clone(),
            },
            None,
        )),
    }
}
