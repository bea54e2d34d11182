//! Fencing on the wire (SPEC §6 "Fencing and liveness"): an engine's route
//! is changed only by the daemon that holds the engine's **lease**.
//!
//! ```json
//! PUT /v1/route    {"owner": "build-7-3f9c2a1b", "expect": 4, "lease_ms": 30000,
//!                   "route": {"stable": "9f2c…", "candidate": "77ab…", "mode": "shadow"}}
//! 200              {"version": 5, "route": {…}, "migrations": [], "lease": {…}}
//! 409              {"error": "this engine is held by daemon `ops-2-…` for 21.4 s more …",
//!                   "conflict": "held", "owner": "ops-2-…", "version": 4, "expires_in_ms": 21400}
//! POST /v1/lease   {"owner": "build-7-3f9c2a1b", "lease_ms": 30000}
//! 200              {"owner": "build-7-3f9c2a1b", "lease_ms": 30000, "expires_in_ms": 30000, "version": 5}
//! ```
//!
//! - `PUT /v1/route` ([`RouteRequest`]) names the caller (`owner`) and the
//!   route version it read (`expect`, 0 when the engine has no route). It is
//!   applied only when no other owner holds a live lease and `expect` is the
//!   version in force; it then (re)takes the lease for `lease_ms`, and the
//!   new route's version is `expect + 1`. Anything else is 409 with a
//!   [`Fenced`] body naming the holder.
//! - `POST /v1/lease` ([`LeaseRequest`]) renews the caller's lease, or
//!   takes a free one, without touching the route; 409 ([`Fenced`]) while
//!   another owner's lease is live. `force: true` takes the lease from
//!   whoever holds it: an operator's takeover (`sluice reconcile
//!   --take-over`).
//! - A lease not renewed within its `lease_ms` **lapses**: the engine drops
//!   the candidate and serves its stable artifact alone (a dead-man switch:
//!   a dead daemon leaves no split running without triggers), and any owner
//!   may then take the engine.
//! - `GET /v1/route` shows the lease in force ([`LeaseInForce`], kept
//!   with the route it is shown with).
//!
//! Pure data: the engine writes and checks these, the daemon sends and
//! reads them.

use serde::{Deserialize, Serialize};

use crate::api::route::{LeaseInForce, RouteSpec};

/// The lease duration when a request names none: 30 s.
pub const DEFAULT_LEASE_MS: u64 = 30_000;

/// The shortest lease an engine takes (shorter ones are raised to it).
pub const MIN_LEASE_MS: u64 = 100;

/// The longest lease an engine takes: one hour.
pub const MAX_LEASE_MS: u64 = 3_600_000;

/// The longest owner name.
pub const MAX_OWNER_LEN: usize = 128;

fn default_lease_ms() -> u64 {
    DEFAULT_LEASE_MS
}

/// `PUT /v1/route`: a route, set by `owner`, over the version it read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// The daemon setting the route (its identity).
    pub owner: String,
    /// The route version the caller read (`GET /v1/route`'s `version`; 0
    /// when the engine had no route).
    pub expect: u64,
    /// How long the lease lasts without renewal, in milliseconds.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    pub route: RouteSpec,
}

/// `POST /v1/lease`: renew (or take a free) lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub owner: String,
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Take the lease even from another live owner (an operator's
    /// takeover).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What `POST /v1/lease` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGranted {
    #[serde(flatten)]
    pub lease: LeaseInForce,
    /// The route version in force (0: no route yet).
    pub version: u64,
}

/// Why a route change or a lease was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conflict {
    /// Another owner holds a live lease.
    Held,
    /// The route changed since the caller read it.
    Version,
    /// The request named no owner (a bare route): the route is not changed.
    NoOwner,
}

/// The 409 answer of fencing: the `{"error"}` every failure carries, plus
/// the holder and the version in force, for the caller to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fenced {
    pub error: String,
    pub conflict: Conflict,
    /// The owner of the live lease, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The route version in force (0: no route).
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// Whether `owner` is a name an engine accepts: 1 to [`MAX_OWNER_LEN`]
/// visible ASCII characters.
pub fn valid_owner(owner: &str) -> bool {
    !owner.is_empty() && owner.len() <= MAX_OWNER_LEN && owner.bytes().all(|b| b.is_ascii_graphic())
}
