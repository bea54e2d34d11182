//! The engines' side of the loop: every engine's route and figures read in
//! parallel, engines moved onto the route the state asks for (uploading
//! the artifacts they lack), and the fleet's observation for the stage
//! decision. Engine failures do not stop the loop: they show in status and
//! are retried on the next pass.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::client::{EngineClient, EngineError};
use super::observe;
use super::runner::{EngineView, Runner};
use crate::api::route::RouteSpec;
use crate::api::stats::EngineStats;
use crate::model::short;
use crate::rollout::machine::{self, Fleet, Observed};

impl Runner {
    /// Reads every engine's route and figures, in parallel.
    pub(super) async fn observe(&mut self) {
        let mut set = JoinSet::new();
        for (i, e) in self.engines.iter().enumerate() {
            let client = e.client.clone();
            set.spawn(async move {
                let (route, stats) = tokio::join!(client.get_route(), client.stats());
                (i, route, stats)
            });
        }
        let now = self.now_ms();
        while let Some(joined) = set.join_next().await {
            let Ok((i, route, stats)) = joined else {
                continue;
            };
            let Some(view) = self.engines.get_mut(i) else {
                continue;
            };
            match (route, stats) {
                (Ok(route), Ok(stats)) => {
                    view.route = route;
                    view.known = true;
                    view.stats = Some(stats);
                    view.error = None;
                    view.down_since = None;
                }
                (Err(e), _) | (_, Err(e)) => {
                    if view.error.is_none() {
                        tracing::warn!(engine = view.client.name(), error = %e, "engine unreachable");
                    }
                    view.known = false;
                    view.stats = None;
                    view.error = Some(e.to_string());
                    view.down_since.get_or_insert(now);
                }
            }
        }
    }

    pub(super) fn desired(&self) -> Option<RouteSpec> {
        machine::desired_route(&self.state, self.candidate_plan())
    }

    pub(super) async fn artifact(&mut self, hash: &str) -> Option<Arc<Vec<u8>>> {
        if let Some(a) = self.artifacts.get(hash) {
            return Some(a.clone());
        }
        let store = self.store.clone();
        let h = hash.to_string();
        let bytes = tokio::task::spawn_blocking(move || store.load_artifact(&h))
            .await
            .ok()?
            .ok()?;
        let bytes = Arc::new(bytes);
        self.artifacts.insert(hash.to_string(), bytes.clone());
        Some(bytes)
    }

    pub(super) async fn upload_all(&mut self, hash: &str) {
        let Some(bytes) = self.artifact(hash).await else {
            tracing::warn!(artifact = %short::hash(hash), "artifact not stored: cannot upload it");
            return;
        };
        let mut set = JoinSet::new();
        for e in &self.engines {
            let client = e.client.clone();
            let bytes = bytes.clone();
            let hash = hash.to_string();
            set.spawn(async move {
                let r = client.upload(&hash, &bytes).await;
                (client.name().to_string(), r)
            });
        }
        while let Some(Ok((name, r))) = set.join_next().await {
            if let Err(e) = r {
                tracing::warn!(engine = %name, error = %e, "upload failed; retried when the route is set");
            }
        }
    }

    /// Moves every engine that is not on the desired route onto it, in
    /// parallel; an engine missing an artifact gets it uploaded first.
    /// `all` also tries engines that did not answer the last read.
    pub(super) async fn converge(&mut self, all: bool) {
        let Some(desired) = self.desired() else {
            return;
        };
        let mut hashes = vec![desired.stable.clone()];
        hashes.extend(desired.candidate.clone());
        let mut needed = Vec::new();
        for h in &hashes {
            if let Some(b) = self.artifact(h).await {
                needed.push((h.clone(), b));
            }
        }
        let needed = Arc::new(needed);
        let desired = Arc::new(desired);
        let mut set = JoinSet::new();
        for (i, e) in self.engines.iter().enumerate() {
            let on = e.known
                && e.route
                    .as_ref()
                    .is_some_and(|r| machine::same_route(r, &desired));
            if on || (!all && !e.known) {
                continue;
            }
            let client = e.client.clone();
            let desired = desired.clone();
            let needed = needed.clone();
            set.spawn(async move {
                let r = set_route(client.as_ref(), &desired, &needed).await;
                (i, r)
            });
        }
        while let Some(Ok((i, r))) = set.join_next().await {
            let Some(view) = self.engines.get_mut(i) else {
                continue;
            };
            match r {
                Ok(()) => {
                    view.route = Some((*desired).clone());
                    view.known = true;
                    // Figures of the old route do not count for the new one.
                    view.stats = None;
                }
                Err(e) => {
                    tracing::warn!(engine = view.client.name(), error = %e, "setting the route failed");
                    view.error = Some(e.to_string());
                }
            }
        }
    }

    pub(super) fn compute_observed(&mut self) {
        let now = self.now_ms();
        let desired = self.desired();
        let unreachable: Vec<&EngineView> = self.engines.iter().filter(|e| !e.known).collect();
        let unreachable_ms = unreachable
            .iter()
            .filter_map(|e| e.down_since)
            .min()
            .map_or(0, |t| now.saturating_sub(t));
        let names = unreachable
            .iter()
            .map(|e| e.client.name().to_string())
            .collect();
        let Some(desired) = desired else {
            self.observed = Observed {
                figures: None,
                complete: false,
                unreachable: names,
                unreachable_ms,
            };
            return;
        };
        let on: Vec<&EngineStats> = self
            .engines
            .iter()
            .filter(|e| {
                e.known
                    && e.route
                        .as_ref()
                        .is_some_and(|r| machine::same_route(r, &desired))
            })
            .filter_map(|e| e.stats.as_ref())
            .filter(|s| observe::stats_match(s, &desired))
            .collect();
        let complete = on.len() == self.engines.len();
        let figures =
            (desired.candidate.is_some() && !on.is_empty()).then(|| observe::sum(&desired, &on));
        self.observed = Observed {
            figures,
            complete,
            unreachable: names,
            unreachable_ms,
        };
    }

    pub(super) fn fleet(&self) -> Fleet {
        if self.engines.iter().any(|e| !e.known) {
            return Fleet::Unknown;
        }
        let stables: Vec<&str> = self
            .engines
            .iter()
            .filter_map(|e| e.route.as_ref().map(|r| r.stable.as_str()))
            .collect();
        match stables.first() {
            None => Fleet::Empty,
            Some(first)
                if stables.len() == self.engines.len() && stables.iter().all(|s| s == first) =>
            {
                Fleet::Stable((*first).to_string())
            }
            Some(_) => Fleet::Mixed,
        }
    }
}

/// Sets one engine's route; when the engine lacks an artifact (409), uploads
/// the route's artifacts and tries once more. A call that did not get
/// through (a pooled connection the engine had closed) is tried again at
/// once: a rollback must not wait for the next pass.
async fn set_route(
    client: &dyn EngineClient,
    route: &RouteSpec,
    artifacts: &[(String, Arc<Vec<u8>>)],
) -> Result<(), EngineError> {
    let first = match client.set_route(route).await {
        Err(EngineError::Unreachable { .. }) => client.set_route(route).await,
        other => other,
    };
    match first {
        Err(e) if e.is_missing_artifact() => {
            for (hash, bytes) in artifacts {
                client.upload(hash, bytes).await?;
            }
            client.set_route(route).await
        }
        other => other,
    }
}
