//! The engines' side of the loop: every engine's route, lease and figures
//! read in parallel (leases renewed on the way, `lease`), engines moved onto
//! the route the state asks for (uploading the artifacts they lack), and the
//! fleet's observation for the stage decision.
//!
//! Every engine call is a task of its own with its own timeout
//! (`--engine-timeout`), kept in the loop's set of calls in flight. The
//! loop waits for the calls of a pass only while they are worth waiting
//! for: reads for at most [`READ_WAIT`], route changes for at most
//! [`ROUTE_WAIT`], and never once an operator command is waiting. A call
//! that takes longer (a hung engine) goes on by itself; its answer is taken
//! in whenever it comes, and wakes the loop. An engine with a call in
//! flight gets no other call of the same kind, and a read that started
//! before a route change is not taken for the engine's state. So a sick
//! engine never delays the others: a rollback reaches every healthy engine
//! at once. Engine failures do not stop the loop: they show in status and
//! are retried on the next pass.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::Id;
use tokio::time::Instant;

use super::client::{EngineClient, EngineError};
use super::lease::note_failure;
use super::observe;
use super::runner::{EngineView, Holder, ReadReply, Reply, Runner};
use crate::api::lease::{Conflict, LeaseGranted, RouteRequest};
use crate::api::route::{RouteInForce, RouteSpec};
use crate::api::stats::EngineStats;
use crate::model::short;
use crate::rollout::machine::{self, Fleet, Observed};

/// How long a pass waits for the engines' reads before it decides with
/// what it has (an engine that has not answered keeps its last view).
pub(super) const READ_WAIT: Duration = Duration::from_millis(100);

/// How long a route change waits for the engines' answers before the loop
/// goes on (the calls themselves go on up to `--engine-timeout`).
pub(super) const ROUTE_WAIT: Duration = Duration::from_millis(500);

/// What woke a wait for engine calls.
enum Woke {
    Command(Option<super::api::CommandRequest>),
    Reply(Option<Result<(Id, Reply), tokio::task::JoinError>>),
    Late,
}

impl Runner {
    /// Reads every engine's route, lease and figures, in parallel, and
    /// renews the leases this daemon holds that are due. An engine whose
    /// last read or route change is still in flight is not read again.
    pub(super) async fn observe(&mut self) {
        let every = self.renew_every();
        let req = self.lease_request(false);
        let mut ids = HashSet::new();
        for (i, e) in self.engines.iter_mut().enumerate() {
            if e.reading || e.routing {
                continue;
            }
            e.reading = true;
            let client = e.client.clone();
            let due = e.renewed.is_none_or(|t| t.elapsed() >= every);
            let epoch = e.epoch;
            let req = req.clone();
            let handle = self.calls.spawn(async move {
                let (route, stats) = tokio::join!(client.get_route(), client.stats());
                let mine = matches!(&route, Ok(Some(r))
                    if r.lease.as_ref().is_some_and(|l| l.owner == req.owner));
                let renewal = if mine && due {
                    Some(client.renew_lease(&req).await)
                } else {
                    None
                };
                Reply::Read(Box::new(ReadReply {
                    engine: i,
                    epoch,
                    route,
                    stats,
                    renewal,
                }))
            });
            self.call_of.insert(handle.id(), i);
            ids.insert(handle.id());
        }
        self.wait_calls(ids, READ_WAIT).await;
    }

    /// Waits for the engine calls `ids` for at most `wait`, taking in every
    /// answer that comes meanwhile (of these calls or earlier ones). Stops
    /// at once when an operator command comes (it is kept for the loop).
    pub(super) async fn wait_calls(&mut self, mut ids: HashSet<Id>, wait: Duration) {
        let until = Instant::now() + wait;
        while !ids.is_empty() && self.queued.is_none() {
            let listening = !self.commands_closed;
            let woke = tokio::select! {
                biased;
                c = self.commands.recv(), if listening => Woke::Command(c),
                r = self.calls.join_next_with_id() => Woke::Reply(r),
                () = tokio::time::sleep_until(until) => Woke::Late,
            };
            match woke {
                Woke::Command(Some(c)) => self.queued = Some(c),
                Woke::Command(None) => self.commands_closed = true,
                Woke::Reply(Some(r)) => {
                    if let Some(id) = self.take_reply(r) {
                        ids.remove(&id);
                    }
                }
                Woke::Reply(None) | Woke::Late => return,
            }
        }
    }

    /// Takes in the answers of engine calls that came since the last look,
    /// without waiting.
    pub(super) fn take_replies(&mut self) {
        while let Some(r) = self.calls.try_join_next_with_id() {
            self.take_reply(r);
        }
    }

    /// Takes in one call's answer; returns the call's id.
    pub(super) fn take_reply(
        &mut self,
        r: Result<(Id, Reply), tokio::task::JoinError>,
    ) -> Option<Id> {
        match r {
            Ok((id, reply)) => {
                self.call_of.remove(&id);
                self.apply(reply);
                Some(id)
            }
            Err(e) => {
                // A call that panicked or was cancelled: its engine may be
                // called again.
                let id = e.id();
                if let Some(i) = self.call_of.remove(&id)
                    && let Some(view) = self.engines.get_mut(i)
                {
                    view.reading = false;
                    view.routing = false;
                    view.deleting = false;
                }
                Some(id)
            }
        }
    }

    fn apply(&mut self, reply: Reply) {
        let now = self.now_ms();
        match reply {
            Reply::Read(r) => {
                let ReadReply {
                    engine,
                    epoch,
                    route,
                    stats,
                    renewal,
                } = *r;
                self.apply_read(engine, epoch, route, stats, renewal);
            }
            Reply::Routed {
                engine,
                route,
                result,
            } => {
                let Some(view) = self.engines.get_mut(engine) else {
                    return;
                };
                view.routing = false;
                match result {
                    Ok(version) => {
                        view.route = Some((*route).clone());
                        view.version = version;
                        view.holder = Holder::Mine;
                        view.renewed = Some(Instant::now());
                        view.known = true;
                        view.error = None;
                        view.down_since = None;
                        // Figures of the old route do not count for the new one.
                        view.stats = None;
                    }
                    Err(e) => {
                        tracing::warn!(engine = view.client.name(), error = %e, "setting the route failed");
                        if matches!(e, EngineError::Unreachable { .. }) {
                            // Read again before it is set again.
                            view.known = false;
                            view.stats = None;
                            view.down_since.get_or_insert(now);
                        }
                        note_failure(view, &e);
                    }
                }
            }
            Reply::Deleted { engine, results } => {
                let Some(view) = self.engines.get_mut(engine) else {
                    return;
                };
                view.deleting = false;
                for (hash, r) in results {
                    match r {
                        Ok(()) => {
                            tracing::debug!(engine = view.client.name(), artifact = %short::hash(&hash), "artifact deleted");
                        }
                        Err(e) => {
                            tracing::debug!(engine = view.client.name(), artifact = %short::hash(&hash), error = %e, "artifact not deleted");
                        }
                    }
                }
            }
            Reply::Uploaded { engine, result } => {
                if let (Err(e), Some(view)) = (result, self.engines.get(engine)) {
                    tracing::warn!(engine = view.client.name(), error = %e, "upload failed; retried when the route is set");
                }
            }
        }
    }

    fn apply_read(
        &mut self,
        i: usize,
        epoch: u64,
        route: Result<Option<RouteInForce>, EngineError>,
        stats: Result<EngineStats, EngineError>,
        renewal: Option<Result<LeaseGranted, EngineError>>,
    ) {
        let now = self.now_ms();
        let holder = match &route {
            Ok(Some(r)) => self.holder_of(r.lease.as_ref().map(|l| l.owner.as_str())),
            _ => Holder::Unknown,
        };
        let Some(view) = self.engines.get_mut(i) else {
            return;
        };
        view.reading = false;
        if view.epoch != epoch {
            // The route was changed since this read started: what it saw
            // is older than what the change answered.
            if let Some(Ok(_)) = renewal {
                view.renewed = Some(Instant::now());
            }
            return;
        }
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

    /// Uploads an artifact to every engine, in parallel; waits for the
    /// answers as a route change does.
    pub(super) async fn upload_all(&mut self, hash: &str) {
        let Some(bytes) = self.artifact(hash).await else {
            tracing::warn!(artifact = %short::hash(hash), "artifact not stored: cannot upload it");
            return;
        };
        let mut ids = HashSet::new();
        for (i, e) in self.engines.iter().enumerate() {
            let client = e.client.clone();
            let bytes = bytes.clone();
            let hash = hash.to_string();
            let handle = self.calls.spawn(async move {
                let result = client.upload(&hash, &bytes).await;
                Reply::Uploaded { engine: i, result }
            });
            ids.insert(handle.id());
        }
        self.wait_calls(ids, ROUTE_WAIT).await;
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
        let mut ids = HashSet::new();
        let owner = self.identity.clone();
        let lease_ms = self.lease_ms();
        for (i, e) in self.engines.iter_mut().enumerate() {
            let mine = e.holder == Holder::Mine;
            let on = e.known
                && mine
                && e.route
                    .as_ref()
                    .is_some_and(|r| machine::same_route(r, &desired));
            let other = matches!(e.holder, Holder::Other(_));
            if e.routing || on || other || (fenced && !mine) || (!all && !e.known) {
                continue;
            }
            e.routing = true;
            // A read in flight saw the route before this change.
            e.epoch += 1;
            let client = e.client.clone();
            let req = RouteRequest {
                owner: owner.clone(),
                expect: e.version,
                lease_ms,
                route: (*desired).clone(),
            };
            let needed = needed.clone();
            let route = desired.clone();
            let handle = self.calls.spawn(async move {
                let result = set_route(client.as_ref(), req, &needed).await;
                Reply::Routed {
                    engine: i,
                    route,
                    result,
                }
            });
            self.call_of.insert(handle.id(), i);
            ids.insert(handle.id());
        }
        self.wait_calls(ids, ROUTE_WAIT).await;
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
