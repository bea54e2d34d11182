//! The daemon's status document: what `GET /v1/status` answers, what
//! `sluice status` shows and what `Daemon::status` gives an embedder. Pure
//! data: the daemon fills it in once per iteration; readers never re-parse
//! it by hand.

use serde::{Deserialize, Serialize};

use crate::api::audit::{Notes, Transition};
use crate::api::gate::{GateReading, GateWait, Observation, Step};
use crate::api::replay::ReplayTotals;
use crate::api::rollout_state::{Paused, Quarantined, Refused, Release, Rewrite};
use crate::api::route::RouteSpec;

/// What `GET /v1/status` answers and `sluice status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// This daemon's identity: the owner its engine leases name.
    #[serde(default)]
    pub identity: String,
    /// Set while another daemon holds engines of this fleet: who holds
    /// which, and that this daemon changes nothing meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<String>,
    pub repo: String,
    pub branch: String,
    /// The branch head as last fetched.
    pub head: Option<String>,
    /// When the branch was last fetched (RFC 3339).
    pub fetched: Option<String>,
    /// The last fetch's error, if it failed.
    pub git_error: Option<String>,
    /// `empty`, `stable`, or the candidate's stage.
    pub phase: String,
    pub paused: Option<Paused>,
    pub stable: Option<Release>,
    pub previous: Option<Release>,
    pub candidate: Option<CandidateStatus>,
    pub engines: Vec<EngineStatus>,
    pub reverts: Vec<RevertStatus>,
    pub quarantine: Vec<Quarantined>,
    pub refused: Option<Refused>,
    /// Why the head is not acted on yet, when it is not.
    pub waiting: Option<String>,
    /// The last transition.
    pub last: Option<Transition>,
    /// The last error of the loop itself (persisting the state, …).
    pub error: Option<String>,
    /// A rewritten branch history waiting for an operator.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// Since when (RFC 3339) the watched branch is gone from the remote.
    #[serde(default)]
    pub branch_gone: Option<String>,
    /// The notifications' deliveries, when `--notify` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<crate::api::notify::Deliveries>,
}

/// The candidate in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateStatus {
    pub commit: String,
    pub summary: String,
    pub artifact: String,
    pub stage: String,
    /// 0-based index into `stages`.
    pub stage_index: usize,
    pub stages: Vec<String>,
    /// `replay`, `shadow` or `split`.
    pub kind: String,
    pub percent: Option<u32>,
    pub in_stage_ms: u64,
    pub min_duration_ms: Option<u64>,
    pub max_duration_ms: Option<u64>,
    pub min_samples: Option<u64>,
    /// The last decision: `wait`, `advance`, `rollback` or `pause`, with
    /// its reason.
    pub step: Option<Step>,
    /// Every gate of the stage.
    pub gates: Vec<GateReading>,
    /// The rollback triggers.
    pub triggers: Vec<GateReading>,
    pub samples_left: Option<u64>,
    pub time_left_ms: Option<u64>,
    /// What each gate that does not pass yet waits for, with an estimate.
    #[serde(default)]
    pub waits: Vec<GateWait>,
    /// The fleet's summed figures.
    pub observed: Option<Observation>,
    pub replay: ReplayTotals,
    /// Decision-log flips by rule, state-check warnings; `null` when the
    /// build left none.
    #[serde(default)]
    pub notes: Option<Notes>,
    /// The stable commit whose plan and traces gate the candidate, and
    /// that a rollback goes back to (`null`: the candidate's own).
    #[serde(default)]
    pub base: Option<String>,
    /// The commits the candidate brings since `base`, oldest first.
    #[serde(default)]
    pub commits: Vec<String>,
}

/// One engine as last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub url: String,
    pub reachable: bool,
    /// On the route the state asks for, and held by this daemon.
    pub on_route: bool,
    pub route: Option<RouteSpec>,
    /// The daemon holding the engine's lease, as last read (`null`: free or
    /// unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub error: Option<String>,
}

/// A revert still to land.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RevertStatus {
    pub commit: String,
    pub stage: String,
    pub trigger: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Every commit reverted, oldest first (empty: `commit` alone).
    #[serde(default)]
    pub commits: Vec<String>,
    /// Why the daemon stopped trying: it waits for `sluice revert
    /// skip|done` (or `sluice resume` to try again).
    #[serde(default)]
    pub stuck: Option<String>,
}
