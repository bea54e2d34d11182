//! `GET /v1/stats`: an engine's figures per artifact and cohort since the
//! route last changed, as the engine writes them and the daemon reads them
//! for the rollout gates. Pure data: building the figures is the engine's
//! (`engine::stats`), summing a fleet's is the daemon's
//! (`reconcile::observe`).
//!
//! ```json
//! {"route": {"version": 3, "since": 1767225600, "stable": "9f2c…",
//!            "candidate": "41ab…", "mode": "shadow", "percent": 100.0,
//!            "stage": "shadow"},
//!  "cohorts": [{"artifact": "9f2c…", "cohort": "stable", "stage": "shadow",
//!               "requests": 4, "errors": 0, "failsafe": 0,
//!               "error_rate": 0.0, "deny_rate": 0.0,
//!               "decisions": {"allow": 4, "modify": 0, "require_approval": 0, "deny": 0},
//!               "observed": {"allow": 0, "modify": 0, "require_approval": 0, "deny": 0},
//!               "latency_ms": {"p50": 0.031, "p95": 0.052, "p99": 0.052, "max": 0.052, "mean": 0.036},
//!               "histogram": [[0.0315, 2], [0.0525, 2]],
//!               "agents": [{"agent": "invoice-bot", "calls": 3, "calls_per_day": 400}]}],
//!  "shadow_dropped": 0, "shadow_dropped_total": 0, "limit_keys_refused": 0,
//!  "decision_log": {"written": 0, "dropped": 0},
//!  "breakers": [{"artifact": "9f2c…", "state": "closed"}],
//!  "agents": [{"agent": "invoice-bot", "day_start": 1767225600, "calls": 120,
//!              "calls_per_day": 400, "cost_ratio": 0.3}]}
//! ```
//!
//! Reading is lenient where an older engine may say less (missing counts
//! read as zero, missing buckets as `None`); writing always says everything.
//! Optional parts are left out rather than written as `null`, except the
//! route's own fields, which are always present.

use serde::{Deserialize, Serialize};

use crate::api::route::{Cohort, Mode};
use crate::model::ir::DecisionKind;

/// `GET /v1/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// The route the figures belong to; `null` before the first route.
    #[serde(default)]
    pub route: Option<StatsRoute>,
    /// Stable's figures first, then the candidate's (split or shadow).
    #[serde(default)]
    pub cohorts: Vec<CohortFigures>,
    /// Shadow evaluations of this route dropped because the queue was full.
    #[serde(default)]
    pub shadow_dropped: u64,
    /// Shadow evaluations dropped since the engine started.
    #[serde(default)]
    pub shadow_dropped_total: u64,
    /// Requests refused since start because their limit key would have
    /// been new in a limit holding `--max-limit-keys` keys.
    #[serde(default)]
    pub limit_keys_refused: u64,
    #[serde(default)]
    pub decision_log: DecisionLogFigures,
    /// Every artifact held, by hash, with its circuit breaker's state.
    #[serde(default)]
    pub breakers: Vec<BreakerFigure>,
    /// The agents of the stable artifact's inventory (`agents/*.toml`):
    /// their calls today against their cost envelope. Absent without an
    /// inventory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentFigures>,
}

/// One inventoried agent's calls today against its cost envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentFigures {
    /// The agent's id.
    pub agent: String,
    /// The start of the UTC day counted, in seconds since the epoch.
    #[serde(default)]
    pub day_start: u64,
    /// Its calls evaluated by this engine that day.
    #[serde(default)]
    pub calls: u64,
    /// Its envelope, `cost.calls_per_day`, when the inventory gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_day: Option<u64>,
    /// `calls / calls_per_day`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_ratio: Option<f64>,
}

/// The route the figures belong to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsRoute {
    /// Counts route changes since the engine started (1 for the first).
    #[serde(default)]
    pub version: u64,
    /// When the route was set, in seconds since the epoch.
    #[serde(default)]
    pub since: u64,
    pub stable: String,
    #[serde(default)]
    pub candidate: Option<String>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub stage: Option<String>,
}

/// The figures of one artifact in one cohort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortFigures {
    pub artifact: String,
    pub cohort: Cohort,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default)]
    pub requests: u64,
    /// Evaluations that failed (they got the failsafe decision).
    #[serde(default)]
    pub errors: u64,
    /// Decisions that were the tier failsafe (open circuit or error).
    #[serde(default)]
    pub failsafe: u64,
    /// `errors / requests` (0 without requests).
    #[serde(default)]
    pub error_rate: f64,
    /// `decisions.deny / requests` (0 without requests).
    #[serde(default)]
    pub deny_rate: f64,
    #[serde(default)]
    pub decisions: Decisions,
    /// The requests in the observe scope of `[governance]`, by the decision
    /// the policies reached (each is also an `allow` in `decisions`): what
    /// enforcing the scope would answer.
    #[serde(default)]
    pub observed: Decisions,
    #[serde(default)]
    pub latency_ms: Latency,
    /// The latency histogram as `[upper bound in ms, count]` buckets
    /// (non-empty ones, ascending; the same bounds on every engine), for
    /// exact quantile bounds across a fleet. Absent before the first
    /// request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<(f64, u64)>>,
    /// Shadow cohort only: the candidate's decisions against stable's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowFigures>,
    /// The calls in this cohort of each agent of this artifact's inventory
    /// that has a cost envelope (`cost.calls_per_day`), since the route was
    /// set, sorted by id; an agent with no call is left out. For the
    /// `max_cost_ratio` gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentCalls>,
}

/// One inventoried agent's calls in a cohort, beside its envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCalls {
    pub agent: String,
    #[serde(default)]
    pub calls: u64,
    /// Its `cost.calls_per_day`, above 0.
    pub calls_per_day: u64,
}

/// Decisions by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Decisions {
    pub allow: u64,
    pub modify: u64,
    pub require_approval: u64,
    pub deny: u64,
}

impl Decisions {
    /// The count of one kind.
    pub fn of(&self, kind: DecisionKind) -> u64 {
        match kind {
            DecisionKind::Allow => self.allow,
            DecisionKind::Modify => self.modify,
            DecisionKind::RequireApproval => self.require_approval,
            DecisionKind::Deny => self.deny,
        }
    }
}

/// Latency figures in milliseconds, all zero before the first request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Shadow comparisons of the candidate's decisions with stable's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowFigures {
    /// Requests evaluated by both.
    pub compared: u64,
    /// Requests where the decisions differ.
    pub diverged: u64,
    /// `diverged / compared` (0 without comparisons).
    pub divergence: f64,
    /// Every (stable → candidate) pair that occurred and differs, with its
    /// count.
    pub pairs: Vec<Divergence>,
    /// Requests both answered alike whose decision under enforcement
    /// differs: in an observe scope (`[governance]`) of either side, the
    /// policies' decision (`observed`) stands for the answer. Not in
    /// `diverged`; the daemon's `max_divergence` counts both.
    pub observed_diverged: u64,
}

/// How often stable decided one way and the candidate another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    pub stable: DecisionKind,
    pub candidate: DecisionKind,
    pub count: u64,
}

/// The decision log's lines since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionLogFigures {
    pub written: u64,
    /// Lines dropped because the queue was full.
    pub dropped: u64,
}

/// One artifact's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerFigure {
    pub artifact: String,
    pub state: BreakerState,
}

/// A circuit breaker's state, as `GET /v1/stats`, `GET /v1/artifacts` and
/// the decision log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests are evaluated.
    Closed,
    /// Requests get the tier failsafe, unevaluated.
    Open,
    /// A few probes are evaluated; their outcome closes or reopens it.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in this order.
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}
