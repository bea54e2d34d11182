//! What the loop keeps, and nothing more (SPEC §6: the daemon "keeps only
//! the artifacts it may still need"): the git mirror repacked past a few
//! packs, the artifacts in the state folder and in memory cut to those the
//! state names, and the artifacts every engine holds cut to those a route
//! or a rollback may need. Level-triggered like the rest of the loop: what
//! is there and not needed is deleted on a later pass if not on this one.
//!
//! | where | kept |
//! |---|---|
//! | `artifacts/` and memory | stable, previous, candidate, quarantined, pending reverts', builds not acted on yet |
//! | every engine | stable, previous, candidate |
//! | rollout plans in memory | the commits the state names, builds not acted on yet |

use std::collections::BTreeSet;

use super::runner::{Reply, Runner, lock};

impl Runner {
    /// The commits the state names: their trees and plans may still be read.
    fn state_commits(&self) -> BTreeSet<String> {
        let s = &self.state;
        let mut out = BTreeSet::new();
        out.extend(s.stable.as_ref().and_then(|r| r.commit.clone()));
        out.extend(s.previous.as_ref().and_then(|r| r.commit.clone()));
        if let Some(r) = &s.rollout {
            out.insert(r.commit.clone());
            out.extend(r.base.clone());
        }
        out.extend(s.head.clone());
        for r in &s.reverts {
            out.insert(r.commit.clone());
            out.extend(r.base.clone());
            out.extend(r.commits.iter().cloned());
        }
        out.extend(s.quarantine.iter().map(|q| q.commit.clone()));
        out.extend(s.refused.as_ref().map(|r| r.commit.clone()));
        if let Some(w) = &s.rewrite {
            out.insert(w.to.clone());
            out.extend(w.from.clone());
        }
        out
    }

    /// The artifacts an engine may be asked to serve: the route's, and the
    /// previous stable release (the target of an operator's rollback).
    fn engines_need(&self) -> BTreeSet<String> {
        let s = &self.state;
        let mut out = BTreeSet::new();
        out.extend(s.stable.as_ref().map(|r| r.artifact.clone()));
        out.extend(s.previous.as_ref().map(|r| r.artifact.clone()));
        out.extend(s.rollout.as_ref().map(|r| r.artifact.clone()));
        out
    }

    /// The artifacts kept in the state folder and in memory.
    fn daemon_keeps(&self) -> BTreeSet<String> {
        let mut out = self.engines_need();
        out.extend(self.state.quarantine.iter().map(|q| q.artifact.clone()));
        out.extend(self.state.reverts.iter().map(|r| r.artifact.clone()));
        out.extend(
            self.builds
                .values()
                .filter_map(|b| b.result.as_ref().ok().map(|r| r.artifact.clone())),
        );
        out
    }

    /// Repacks the mirror once it holds more than
    /// [`super::git::MAX_PACKS`] packs.
    pub(super) async fn repack(&mut self) {
        // Never under a fetch or a push in flight: a pack it writes and
        // the refs it moves would be cut apart.
        if !self.git.idle() {
            return;
        }
        let keep: Vec<String> = self.state_commits().into_iter().collect();
        let mirror = self.mirror.clone();
        let out = tokio::task::spawn_blocking(move || lock(&mirror).repack_if_needed(&keep)).await;
        match out {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "repacking the git mirror failed"),
            Err(e) => tracing::warn!(error = %e, "repacking the git mirror failed"),
        }
    }

    /// Drops what is no longer needed: in memory on every pass, in the
    /// state folder after a transition, on the engines once every engine is
    /// on the route the state asks for.
    pub(super) async fn collect(&mut self) {
        let keep = self.daemon_keeps();
        self.artifacts.retain(|k, _| keep.contains(k));
        let commits = self.state_commits();
        let builds: BTreeSet<String> = self.builds.keys().cloned().collect();
        self.plans
            .retain(|k, _| commits.contains(k) || builds.contains(k));

        // A build in flight stores its artifact before the loop knows it.
        if self.collect_due && self.building.is_none() {
            let store = self.store.clone();
            let keep = keep.clone();
            match tokio::task::spawn_blocking(move || store.retain_artifacts(&keep)).await {
                Ok(Ok(n)) => {
                    self.collect_due = false;
                    if n > 0 {
                        tracing::debug!(deleted = n, "stored artifacts collected");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "collecting stored artifacts failed"),
                Err(e) => tracing::warn!(error = %e, "collecting stored artifacts failed"),
            }
        }

        if !self.observed.complete {
            return;
        }
        // Deleted by calls of their own (`converge`): the loop does not
        // wait for them, and an engine gets no more while some are in flight.
        let needed = self.engines_need();
        for (i, e) in self.engines.iter_mut().enumerate() {
            if !e.known || e.deleting {
                continue;
            }
            let Some(stats) = &e.stats else { continue };
            let hashes: Vec<String> = stats
                .breakers
                .iter()
                .filter(|b| !needed.contains(&b.artifact))
                .map(|b| b.artifact.clone())
                .collect();
            if hashes.is_empty() {
                continue;
            }
            e.deleting = true;
            let client = e.client.clone();
            let handle = self.calls.spawn(async move {
                let mut results = Vec::new();
                for hash in hashes {
                    let r = client.delete_artifact(&hash).await;
                    results.push((hash, r));
                }
                Reply::Deleted { engine: i, results }
            });
            self.call_of.insert(handle.id(), i);
        }
    }
}
