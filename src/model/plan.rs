//! The rollout plan: `[rollout]` of `sluice.toml`, as `project` reads and
//! validates it and `rollout` runs it. Pure data.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::model::ir::Literal;

/// `[rollout]`: how a candidate artifact goes from replay to full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutPlan {
    /// The request field whose value picks the hash bucket, so that the same
    /// value always lands in the same cohort. A required `string` or `int`
    /// field of the schema.
    pub hash_key: String,
    /// The stages in the order written (and run); at least one. A `replay`
    /// stage, if any, is the first; names are unique.
    pub stages: Vec<Stage>,
    /// `[rollout.rollback]`, checked continuously in every live stage.
    pub rollback: RollbackTriggers,
}

impl RolloutPlan {
    /// The stage of this name.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// What a stage does, decided by its name (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// The stage named `replay`: runs the traces against the candidate, offline.
    Replay,
    /// The stage named `shadow`: the candidate is evaluated beside stable on
    /// all traffic; stable is enforced.
    Shadow,
    /// Any other name: the candidate is enforced on `percent` of the hash
    /// buckets (of the requests that fit `match`).
    Split,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Replay => "replay",
            StageKind::Shadow => "shadow",
            StageKind::Split => "split",
        }
    }

    /// Whether the stage takes live traffic (shadow and split stages).
    pub fn is_live(self) -> bool {
        !matches!(self, StageKind::Replay)
    }
}

/// One `[[rollout.stage]]`.
///
/// Which keys a stage may have depends on its kind: a replay stage has only
/// `max_catastrophic` and `max_false_positive_rate`; a shadow stage has the
/// durations, `min_samples`, `max_divergence` and the live gates; a split
/// stage has `percent` (required), `match`, the durations, `min_samples` and
/// the live gates (`max_error_rate`, `max_deny_rate_delta`,
/// `max_latency_p99_delta_ms`, `max_cost_ratio`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    /// Share of hash buckets enforced by the candidate, 0 to 100; `Some` on
    /// split stages only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Only requests whose field has one of these values are eligible (split
    /// stages only); empty means every request. Keys are schema fields of type
    /// `int`, `string` or `bool`; values have the field's type; no list is empty.
    #[serde(rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, Vec<Literal>>,
    /// The stage lasts at least this long.
    #[serde(
        serialize_with = "human_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_duration: Option<Duration>,
    /// A stage still waiting for evidence after this long pauses the rollout.
    /// When not written, four times `min_duration` (SPEC §6); `None` only when
    /// neither is written. Never shorter than `min_duration`.
    #[serde(
        serialize_with = "human_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
    /// The stage sees at least this many requests before its gates resolve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    pub gates: Gates,
}

/// The gates of a stage: bounds the candidate's figures must stay within,
/// with statistical confidence, for the stage to advance. Rates are shares
/// within 0..=1.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gates {
    /// Replay: trace cases expected DENY that got ALLOW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_catastrophic: Option<u64>,
    /// Replay: expected ALLOW that got DENY, over all expected ALLOW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_false_positive_rate: Option<f64>,
    /// Shadow: share of requests where candidate and stable decide differently.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_divergence: Option<f64>,
    /// Live stages: share of candidate evaluations that fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Live stages: candidate deny rate minus stable deny rate, absolute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deny_rate_delta: Option<f64>,
    /// Live stages: candidate p99 latency minus stable p99 latency, in
    /// milliseconds, 0 or more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_p99_delta_ms: Option<f64>,
    /// Live stages: the candidate cohort's calls per inventoried agent over
    /// the stage, projected to a day at the cohort's share of traffic, over
    /// the agent's `cost.calls_per_day`; above 0 (`1.2`: within 20% over the
    /// estimate). See `rollout::stage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_ratio: Option<f64>,
}

/// The normal quantile of the 95% two-sided confidence every gate is judged
/// at (SPEC §6): each bound of an interval is a 97.5% one-sided bound.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The fewest requests on which a gate "this rate stays at most `limit`"
/// can pass at all: even with no event (no error, no divergence, no
/// difference in deny rate against a stable cohort known exactly), the
/// upper 95% Wilson bound of 0 in `n`, `z²/(n+z²)`, is at most `limit` only
/// from `n = z²(1−limit)/limit` on. `None` when no count is enough (a limit
/// of 0). The same bound decides the gates (`rollout::gate`).
pub fn fewest_samples_to_pass(limit: f64) -> Option<u64> {
    if limit >= 1.0 {
        return Some(0);
    }
    if limit.is_nan() || limit <= 0.0 {
        return None;
    }
    let z2 = Z95 * Z95;
    let n = (z2 * (1.0 - limit) / limit).ceil();
    // The bound at `n` is the limit up to rounding: step past it.
    let mut n = n.max(0.0) as u64;
    while z2 / (n as f64 + z2) > limit {
        n += 1;
    }
    Some(n)
}

impl Stage {
    /// The rate gates of this stage, each with its limit and the fewest
    /// requests on which it can pass at all ([`fewest_samples_to_pass`]).
    pub fn rate_gates_power(&self) -> Vec<(&'static str, f64, Option<u64>)> {
        let g = &self.gates;
        [
            ("max_divergence", g.max_divergence),
            ("max_error_rate", g.max_error_rate),
            ("max_deny_rate_delta", g.max_deny_rate_delta),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.map(|l| (name, l, fewest_samples_to_pass(l))))
        .collect()
    }
}

/// `[rollout.rollback]`: any of these passed in a live stage rolls back at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RollbackTriggers {
    /// Share of candidate evaluations that fail, within 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Candidate deny rate minus stable deny rate, within 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_rate_delta: Option<f64>,
    /// Candidate p99 latency in milliseconds, above 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
}

fn human_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}
