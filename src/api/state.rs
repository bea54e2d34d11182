//! The live state of an engine: the document `GET /v1/state` returns and
//! `sluice check --state FILE` reads for the `state::` findings.
//!
//! ```json
//! {"artifact": "9f2c…",
//!  "time": 1767225600,
//!  "counters": [{"limit": "payments.transfers_per_agent", "key": "[\"billing-bot\"]",
//!                "window": {"start": 1767225600, "secs": 86400}, "count": 97}],
//!  "approvals": [{"id": "ap-17", "policy": "payments", "rule": "large_transfer",
//!                 "group": "finance", "via": "approvals.request", "created": 1767229000,
//!                 "request": {"tool": "payments.transfer", "…": "…"}}]}
//! ```
//!
//! `counters` are the limit counters of the current windows (limits are
//! qualified `policy.limit`; keys are the JSON array of the `by` values);
//! `approvals` are the requests waiting in approval queues, with the request
//! that is waiting so a check can tell whether a changed rule still covers it.
//! `shared` names a state several engines share (`"redis://10.0.0.5:6379,
//! prefix payments"`); absent, the state is the engine's own.

use serde::{Deserialize, Serialize};

use crate::api::approvals::Approval;

/// An engine's live state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveState {
    /// The stable artifact's hash, when the engine has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// When the state was read, in seconds since the epoch.
    #[serde(default)]
    pub time: u64,
    #[serde(default)]
    pub counters: Vec<CounterEntry>,
    /// The requests waiting in approval queues, oldest first (never a
    /// decided one).
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// The state's name when several engines may share it (a state
    /// backend's location and key prefix): engines that answer the same
    /// name answer the same state, which is checked once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
}

/// A fixed counting window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// Seconds since the epoch, a multiple of `secs`.
    pub start: u64,
    pub secs: u64,
}

impl Window {
    /// The window of `secs` seconds that holds `now` (a zero length is read
    /// as one second).
    pub fn containing(now: u64, secs: u64) -> Window {
        let secs = secs.max(1);
        Window {
            start: now - now % secs,
            secs,
        }
    }

    /// The first second after the window.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.secs)
    }
}

/// One live counter, as listed for state checks and migrations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CounterEntry {
    pub limit: String,
    pub key: String,
    pub window: Window,
    pub count: u64,
}

/// `GET /readyz`: whether the engine can answer evaluations from its own
/// state — a route is set and the state backend answers. 200 when ready,
/// 503 otherwise, with the same document.
///
/// ```json
/// {"ready": true, "route": true,
///  "backend": {"kind": "redis", "location": "redis://10.0.0.5:6379/0",
///              "shared": true, "up": true}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    pub ready: bool,
    /// A route is in force.
    pub route: bool,
    pub backend: BackendStatus,
}

/// The state backend as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendStatus {
    /// `memory` or `redis`.
    pub kind: String,
    /// Where the state lives: `this process`, or the server's address
    /// (never a password).
    pub location: String,
    /// Other engines may share it.
    pub shared: bool,
    /// It answered the readiness probe.
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
