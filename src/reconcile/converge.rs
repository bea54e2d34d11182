//! The engines' side of the loop: every engine's route, lease and figures
//! read in parallel (leases renewed on the way, `lease`), engines moved onto
//! the route the state asks for (uploading the artifacts they lack), each
//! with its own task and its own timeout, and the fleet's observation for
//! the stage decision. Engine failures do not stop the loop: they show in status and
//! are retried on the next pass.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{EngineClient, EngineError};
use super::lease::{Holder, note_failure};
use super::observe;
use super::runner::{EngineView, Runner};
use crate::api::lease::{Conflict, RouteRequest};
use crate::api::route::RouteSpec;
use crate::api::stats::EngineStats;
use crate::model::short;
use crate::rollout::machine::{self, Fleet, Observed};

impl Runner {
    /// Reads every engine's route, lease and figures, in parallel, and
    /// renews the leases this daemon holds that are due.
    pub(super) async fn observe(&mut self) {
        let mut set = JoinSet::new();
        let every = self.renew_every();
        for (i, e) in self.engines.iter().enumerate() {
            let client = e.client.clone();
            let due = e.renewed.is_none_or(|t| t.elapsed() >= every);
            let req = self.lease_request(false);
            set.spawn(async move {
                let (route, stats) = tokio::join!(client.get_route(), client.stats());
                let mine = matches!(&route, Ok(Some(r))
                    if r.lease.as_ref().is_some_and(|l| l.owner == req.owner));
                let renewal = if mine && due {
                    Some(client.renew_lease(&req).await)
                } else {
                    None
                };
                (i, route, stats, renewal)
            });
        }
        let now = self.now_ms();
        while let Some(joined) = set.join_next().await {
            let Ok((i, route, stats, renewal)) = joined else {
                continue;
            };
            let holder = match &route {
                Ok(Some(r)) => self.holder_of(r.lease.as_ref().map(|l| l.owner.as_str())),
                _ => Holder::Unknown,
            };
            let Some(view) = self.engines.get_mut(i) else {
                continue;
            };
            match (route, stats) {
                (Ok(route), Ok(stats)) => {
                    view.version = route.as_ref().map_or(0, |r| r.version);
                    view.route = route.map(|r| r.route);
                    view.holder = holder;
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
            match renewal {
                Some(Ok(granted)) => {
                    view.renewed = Some(Instant::now());
                    view.holder = Holder::Mine;
                    if granted.version != view.version {
                        // The lease lapsed and the engine dropped the
                        // candidate in between: read it as routeless so
                        // that it is set again.
                        view.version = granted.version;
                        view.route = None;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(engine = view.client.name(), error = %e, "renewing the lease failed");
                    note_failure(view, &e);
                }
                None => {}
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
    /// `all` also tries engines that did not answer the last read. Engines
    /// another daemon holds are left alone; while fenced, so are free ones.
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
        let fenced = self.fenced().is_some();
        let needed = Arc::new(needed);
        let desired = Arc::new(desired);
        let mut set = JoinSet::new();
        for (i, e) in self.engines.iter().enumerate() {
            let mine = e.holder == Holder::Mine;
            let on = e.known
                && mine
                && e.route
                    .as_ref()
                    .is_some_and(|r| machine::same_route(r, &desired));
            let other = matches!(e.holder, Holder::Other(_));
            if on || other || (fenced && !mine) || (!all && !e.known) {
                continue;
            }
            let client = e.client.clone();
            let req = RouteRequest {
                owner: self.identity.clone(),
                expect: e.version,
                lease_ms: self.lease_ms(),
                route: (*desired).clone(),
            };
            let needed = needed.clone();
            set.spawn(async move {
                let r = set_route(client.as_ref(), req, &needed).await;
                (i, r)
            });
        }
        while let Some(Ok((i, r))) = set.join_next().await {
            let Some(view) = self.engines.get_mut(i) else {
                continue;
            };
            match r {
                Ok(version) => {
                    view.route = Some((*desired).clone());
                    view.version = version;
                    view.holder = Holder::Mine;
                    view.renewed = Some(Instant::now());
                    view.known = true;
                    // Figures of the old route do not count for the new one.
                    view.stats = None;
                }
                Err(e) => {
                    tracing::warn!(engine = view.client.name(), error = %e, "setting the route failed");
                    note_failure(view, &e);
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
        if self
            .engines
            .iter()
            .any(|e| !e.known || matches!(e.holder, Holder::Other(_)))
        {
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

/// Sets one engine's route; returns the route's new version. When the
/// engine lacks an artifact (409), uploads the route's artifacts and tries
/// once more; when the route changed since it was read and nobody else
/// holds the engine (a lapse in between), reads the version again and tries
/// once more. A call that did not get through (a pooled connection the
/// engine had closed) is tried again at once, but not one that timed out:
/// a hung engine costs one timeout, and never delays the others (every
/// engine has its own task).
async fn set_route(
    client: &dyn EngineClient,
    mut req: RouteRequest,
    artifacts: &[(String, Arc<Vec<u8>>)],
) -> Result<u64, EngineError> {
    let once = |req: RouteRequest| async move {
        let first = match client.set_route(&req).await {
            Err(e @ EngineError::Unreachable { .. }) if !e.is_timeout() => {
                client.set_route(&req).await
            }
            other => other,
        };
        match first {
            Err(e) if e.is_missing_artifact() => {
                for (hash, bytes) in artifacts {
                    client.upload(hash, bytes).await?;
                }
                client.set_route(&req).await
            }
            other => other,
        }
        .map(|()| req.expect + 1)
    };
    match once(req.clone()).await {
        Err(EngineError::Fenced(f))
            if f.conflict == Conflict::Version
                && f.owner.as_deref().is_none_or(|o| o == req.owner) =>
        {
            req.expect = f.version;
            once(req).await
        }
        other => other,
    }
}
