//! Gate readings: what a stage decision read from the fleet's figures, as
//! the daemon's status (`GET /v1/status`) and its audit log carry them. Pure
//! data; the statistics that produce them are in `rollout::gate` and
//! `rollout::stage`, which must stay the only producers.
//!
//! JSON has no infinity: serde writes a non-finite number (the open end of
//! an interval that has no data yet) as `null`. Reading, `null` becomes the
//! open end again (`-∞` for a lower bound, `+∞` for an upper one) and an
//! estimate or limit with no number becomes NaN.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::api::stats::AgentCalls;

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(deserialize_with = "lower")]
    pub lo: f64,
    #[serde(deserialize_with = "upper")]
    pub hi: f64,
}

/// What a gate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Wait,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Wait => "wait",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every gate and rollback trigger a stage can read, by its name in
/// `sluice.toml` (which is also its name on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Gate {
    /// Shadow stage: the share of decisions that differ from stable's.
    #[serde(rename = "max_divergence")]
    MaxDivergence,
    #[serde(rename = "max_error_rate")]
    MaxErrorRate,
    /// The candidate's deny rate minus stable's.
    #[serde(rename = "max_deny_rate_delta")]
    MaxDenyRateDelta,
    /// The candidate's p99 latency minus stable's, in milliseconds.
    #[serde(rename = "max_latency_p99_delta_ms")]
    MaxLatencyP99DeltaMs,
    /// Replay stage: trace cases whose result is catastrophic.
    #[serde(rename = "max_catastrophic")]
    MaxCatastrophic,
    /// Replay stage: false positives over cases expected permissive.
    #[serde(rename = "max_false_positive_rate")]
    MaxFalsePositiveRate,
    /// Trigger (`[rollout.rollback]`): the candidate's error rate.
    #[serde(rename = "error_rate")]
    ErrorRate,
    /// Trigger: the candidate's deny rate minus stable's.
    #[serde(rename = "deny_rate_delta")]
    DenyRateDelta,
    /// Trigger: the candidate's p99 latency, in milliseconds.
    #[serde(rename = "latency_p99_ms")]
    LatencyP99Ms,
    /// Live stages: the candidate cohort's calls per inventoried agent,
    /// projected to a day, over the agent's `cost.calls_per_day` (the worst
    /// agent's).
    #[serde(rename = "max_cost_ratio")]
    MaxCostRatio,
}

/// What a gate's figures measure, for showing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A share of requests (0..1).
    Rate,
    /// A difference of two rates (-1..1).
    RateDelta,
    /// Milliseconds.
    Milliseconds,
    /// A count of cases.
    Count,
    /// A multiple of an expected figure (1 = as expected).
    Ratio,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::MaxDivergence => "max_divergence",
            Gate::MaxErrorRate => "max_error_rate",
            Gate::MaxDenyRateDelta => "max_deny_rate_delta",
            Gate::MaxLatencyP99DeltaMs => "max_latency_p99_delta_ms",
            Gate::MaxCatastrophic => "max_catastrophic",
            Gate::MaxFalsePositiveRate => "max_false_positive_rate",
            Gate::ErrorRate => "error_rate",
            Gate::DenyRateDelta => "deny_rate_delta",
            Gate::LatencyP99Ms => "latency_p99_ms",
            Gate::MaxCostRatio => "max_cost_ratio",
        }
    }

    /// What the gate's estimate, interval and limit measure.
    pub fn unit(self) -> Unit {
        match self {
            Gate::MaxLatencyP99DeltaMs | Gate::LatencyP99Ms => Unit::Milliseconds,
            Gate::MaxDenyRateDelta | Gate::DenyRateDelta => Unit::RateDelta,
            Gate::MaxCatastrophic => Unit::Count,
            Gate::MaxCostRatio => Unit::Ratio,
            Gate::MaxDivergence
            | Gate::MaxErrorRate
            | Gate::MaxFalsePositiveRate
            | Gate::ErrorRate => Unit::Rate,
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gate evaluated: its name, the limit, the point estimate and the
/// interval, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReading {
    pub gate: Gate,
    #[serde(deserialize_with = "number")]
    pub limit: f64,
    #[serde(deserialize_with = "number")]
    pub estimate: f64,
    pub interval: Interval,
    pub verdict: Verdict,
    /// What the figures are of, when a gate reads several things and shows
    /// the worst: the agent, for `max_cost_ratio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The outcome of a stage decision, tagged by `step`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Not enough evidence yet.
    Wait,
    /// Every gate passed: go to the next stage (or finish after the last).
    Advance,
    /// A trigger fired or a gate failed.
    Rollback { trigger: String },
    /// Waiting longer than the stage's `max_duration`.
    Pause { reason: String },
}

impl Step {
    /// The step's tag: `wait`, `advance`, `rollback` or `pause`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Step::Wait => "wait",
            Step::Advance => "advance",
            Step::Rollback { .. } => "rollback",
            Step::Pause { .. } => "pause",
        }
    }

    /// Why: the trigger of a rollback, the reason of a pause.
    pub fn why(&self) -> Option<&str> {
        match self {
            Step::Rollback { trigger } => Some(trigger),
            Step::Pause { reason } => Some(reason),
            Step::Wait | Step::Advance => None,
        }
    }
}

/// Requests of one cohort, as counted by the engines since the stage began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    pub requests: u64,
    pub errors: u64,
    pub denies: u64,
    /// The p99 latency in milliseconds: estimate and confidence bounds;
    /// `None` without data.
    pub p99_ms: Option<Quantile>,
}

/// A latency quantile with its confidence interval, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    #[serde(deserialize_with = "number")]
    pub estimate: f64,
    #[serde(deserialize_with = "lower")]
    pub lo: f64,
    #[serde(deserialize_with = "upper")]
    pub hi: f64,
}

/// What the engines measured during a live stage, summed over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The candidate: its enforced cohort (split stages) or its shadow
    /// evaluations (shadow stage).
    pub candidate: Cohort,
    /// Stable, on the same traffic (shadow) or its own cohort (split).
    pub stable: Cohort,
    /// Shadow stage: comparisons made and how many differed.
    pub compared: u64,
    pub diverged: u64,
    /// The candidate cohort's calls per inventoried agent with a cost
    /// envelope (the candidate's inventory), summed over the engines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentCalls>,
}

/// A number that JSON may carry as `null` (a non-finite one written out).
fn or_missing<'de, D: Deserializer<'de>>(d: D, missing: f64) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(missing))
}

fn lower<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    or_missing(d, f64::NEG_INFINITY)
}

fn upper<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    or_missing(d, f64::INFINITY)
}

fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    or_missing(d, f64::NAN)
}

/// What a live stage's gate still waits for, with an estimate: shown by
/// `sluice status` beside the readings, so that "wait" says how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateWait {
    pub gate: Gate,
    /// The requests the gate counts so far (candidate requests; shadow
    /// comparisons for `max_divergence`).
    pub seen: u64,
    /// How many it needs in all for its interval to fall inside the limit
    /// if the rates seen so far hold; `None` when no estimate can be made
    /// (`reason` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<u64>,
    /// How long until then at the rate requests arrived in this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    /// The estimate in a sentence.
    pub reason: String,
}
