//! Fencing (SPEC §6 "Fencing and liveness", wire in [`crate::api::lease`]):
//! the owner's lease, checked and renewed under the same mutex that
//! serializes route changes, so a route is never changed by anyone but the
//! lease holder, over the version it read.
//!
//! A lease lapses when the engine's clock passes its expiry: the engine
//! then drops the candidate and serves stable alone (the dead-man switch),
//! and only after that may another owner take it. The lapse is applied by
//! [`watch`] every 100 ms and before any claim or renewal is judged, so a
//! claim never sees an expired lease still in force.
//!
//! The mutex is async and held across a whole route change (migrations on
//! a shared state backend are awaited), so readers of the lease
//! ([`Engine::lease`], `GET /v1/route`) never take it: every change of the
//! lease, made under the mutex, is published to a copy they read without
//! waiting behind a route change.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;
use tokio::sync::MutexGuard;

use crate::api::lease::{
    LeaseGranted, LeaseRequest, MAX_LEASE_MS, MIN_LEASE_MS, RouteRequest, valid_owner,
};
use crate::api::route::{LeaseInForce, RouteSpec};
use crate::engine::decision_log::{EventLine, LogLine};
use crate::engine::error::{FenceError, RouteChangeError};
use crate::engine::server::{Engine, RouteChange};

/// How often the watch task looks for a lapsed lease.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The owner's lease.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    owner: String,
    lease_ms: u64,
    /// Milliseconds since the epoch, on the engine's clock.
    expires_ms: u64,
}

/// What the route-change mutex guards: the lease, when one is held.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    lease: Option<Lease>,
}

/// The lease as readers see it: a copy of the fence's, set only under the
/// fence.
pub(crate) type Shown = arc_swap::ArcSwapOption<Lease>;

impl Lease {
    fn in_force(&self, now_ms: u64) -> LeaseInForce {
        LeaseInForce {
            owner: self.owner.clone(),
            lease_ms: self.lease_ms,
            expires_in_ms: self.expires_ms.saturating_sub(now_ms),
        }
    }
}

impl Engine {
    /// The route-change mutex, held across a whole route change with its
    /// awaited state migrations (a panic or a cancelled change while
    /// holding it leaves nothing half-done: the route is swapped in one
    /// store).
    pub(super) async fn fence(&self) -> MutexGuard<'_, Fence> {
        self.route_change.lock().await
    }

    fn version(&self) -> u64 {
        self.route.load().as_ref().map_or(0, |r| r.version)
    }

    /// The lease in force, if one is held and live.
    /// Read without the fence: it does not wait behind a route change.
    pub fn lease(&self) -> Option<LeaseInForce> {
        let now = self.now_ms();
        self.lease_shown
            .load()
            .as_deref()
            .filter(|l| now < l.expires_ms)
            .map(|l| l.in_force(now))
    }

    /// Sets the fence's lease and publishes it to readers.
    fn hold(&self, fence: &mut Fence, lease: Option<Lease>) {
        self.lease_shown.store(lease.clone().map(Arc::new));
        fence.lease = lease;
    }

    /// `PUT /v1/route`: puts `req.route` in force when no other owner holds a
    /// live lease and `req.expect` is the version in force; the caller then
    /// holds the lease for `req.lease_ms`.
    pub async fn claim_route(&self, req: RouteRequest) -> Result<RouteChange, RouteChangeError> {
        if !valid_owner(&req.owner) {
            return Err(FenceError::BadOwner.into());
        }
        let mut fence = self.fence().await;
        self.lapse_locked(&mut fence).await?;
        let version = self.version();
        let now = self.now_ms();
        if let Some(l) = &fence.lease
            && l.owner != req.owner
        {
            return Err(FenceError::Held {
                owner: l.owner.clone(),
                expires_in_ms: l.expires_ms.saturating_sub(now),
                version,
            }
            .into());
        }
        if req.expect != version {
            return Err(FenceError::Version {
                expected: req.expect,
                current: version,
                owner: fence.lease.as_ref().map(|l| l.owner.clone()),
            }
            .into());
        }
        let mut change = self.apply_route(req.route).await?;
        let lease = self.grant(&mut fence, req.owner, req.lease_ms);
        change.lease = Some(lease);
        Ok(change)
    }

    /// `POST /v1/lease`: renews the caller's lease or takes a free one (any
    /// with `force`), leaving the route as it is.
    pub async fn renew_lease(&self, req: LeaseRequest) -> Result<LeaseGranted, RouteChangeError> {
        if !valid_owner(&req.owner) {
            return Err(FenceError::BadOwner.into());
        }
        let mut fence = self.fence().await;
        self.lapse_locked(&mut fence).await?;
        let now = self.now_ms();
        if let Some(l) = &fence.lease
            && l.owner != req.owner
        {
            if !req.force {
                return Err(FenceError::Held {
                    owner: l.owner.clone(),
                    expires_in_ms: l.expires_ms.saturating_sub(now),
                    version: self.version(),
                }
                .into());
            }
            tracing::warn!(from = %l.owner, to = %req.owner, "lease taken over by force");
            self.log_lease("taken_over", &l.owner, Some(&req.owner));
        }
        if fence.lease.is_none() {
            self.log_lease("taken", &req.owner, None);
        }
        let lease = self.grant(&mut fence, req.owner, req.lease_ms);
        Ok(LeaseGranted {
            lease,
            version: self.version(),
        })
    }

    fn grant(&self, fence: &mut Fence, owner: String, lease_ms: u64) -> LeaseInForce {
        let lease_ms = lease_ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS);
        let now = self.now_ms();
        let lease = Lease {
            owner,
            lease_ms,
            expires_ms: now.saturating_add(lease_ms),
        };
        let shown = lease.in_force(now);
        self.hold(fence, Some(lease));
        shown
    }

    /// Applies a lapsed lease: drops the candidate (stable alone) and frees
    /// the engine. Returns whether a lease lapsed.
    pub async fn lapse_lease(&self) -> Result<bool, RouteChangeError> {
        let mut fence = self.fence().await;
        self.lapse_locked(&mut fence).await
    }

    /// The lapse, under the fence. When dropping the candidate fails, the
    /// expired lease stays (nobody may take the engine) and the next call
    /// tries again.
    async fn lapse_locked(&self, fence: &mut Fence) -> Result<bool, RouteChangeError> {
        let Some(lease) = &fence.lease else {
            return Ok(false);
        };
        if self.now_ms() < lease.expires_ms {
            return Ok(false);
        }
        let owner = lease.owner.clone();
        if let Some(active) = self.route.load_full()
            && active.spec.candidate.is_some()
        {
            let stable = RouteSpec::stable(active.spec.stable.clone());
            let change = self.apply_route(stable).await?;
            tracing::warn!(
                owner = %owner,
                version = change.version,
                "lease lapsed: candidate dropped, serving stable alone"
            );
        } else {
            tracing::warn!(owner = %owner, "lease lapsed");
        }
        self.log_lease("lapsed", &owner, None);
        self.hold(fence, None);
        Ok(true)
    }

    fn log_lease(&self, event: &str, owner: &str, to: Option<&str>) {
        self.log.send(LogLine::Route(EventLine::now(json!({
            "lease": event,
            "owner": owner,
            "to": to,
        }))));
    }
}

/// Every [`WATCH_EVERY`]: applies a lapsed lease, until the engine is gone.
pub(super) async fn watch(engine: Weak<Engine>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if let Err(e) = engine.lapse_lease().await {
            tracing::error!(error = %e, "the lapsed lease's candidate could not be dropped; retrying");
        }
    }
}
