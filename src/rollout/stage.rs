//! One stage's decision from what the engines measured: roll back, advance,
//! wait, or pause for an operator. Pure.
//!
//! Order of precedence, evaluated on every reconcile:
//! 1. **Rollback triggers** (`[rollout.rollback]`, every live stage): a
//!    trigger fires when the *lower* confidence bound is past it, so noise
//!    alone does not roll back — and only on [`MIN_FAIL_SAMPLES`] candidate
//!    requests or more.
//! 2. **Gates** that fail (the candidate is clearly worse) roll back exactly
//!    like a trigger, once the stage has its `min_samples` candidate
//!    requests (and at least [`MIN_FAIL_SAMPLES`]).
//! 3. Before `min_duration` has passed and `min_samples` candidate requests
//!    have been seen, the stage waits whatever the gates say.
//!
//! Why the sample floors: the daemon reads the figures on every reconcile,
//! from the first request of a stage on. A 95% interval is 95% for one look;
//! read again and again while the counts are tiny, the chance that some
//! early look is "clearly worse" by luck adds up (one denied request among
//! the first three of a canary, with stable denying 2%, puts the lower bound
//! of the deny-rate delta near 0.19). Waiting for a floor of samples before
//! a verdict may be `fail` keeps the early, wide intervals from rolling back
//! a good candidate; a `pass` already needs `min_samples`.
//! 4. Every gate passes: advance.
//! 5. Still waiting after `max_duration`: pause for an operator.
//!
//! What the engines measured ([`Observation`]) and the decision's step
//! ([`Step`]) are wire types of `api::gate`, re-exported here.

use std::time::Duration;

use super::gate::{self, GateReading, Interval, Verdict, Z95};
use crate::api::gate::Gate;
pub use crate::api::gate::{Cohort, Observation, Quantile, Step};
use crate::api::replay::ReplayTotals;
use crate::model::plan::{RollbackTriggers, Stage, StageKind};

/// The decision and the figures behind it (shown by `sluice status`).
#[derive(Debug, Clone, PartialEq)]
pub struct StageDecision {
    pub step: Step,
    pub readings: Vec<GateReading>,
    /// Triggers read (they roll back on `fail`; `pass`/`wait` are fine).
    pub triggers: Vec<GateReading>,
    /// Candidate requests still needed before the gates can resolve.
    pub samples_left: u64,
    /// Time still needed before the gates can resolve.
    pub time_left: Duration,
}

fn rate(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

fn reading(
    gate: Gate,
    limit: f64,
    estimate: f64,
    interval: Interval,
    verdict: Verdict,
) -> GateReading {
    GateReading {
        gate,
        limit,
        estimate,
        interval,
        verdict,
        subject: None,
    }
}

/// The seconds of the day `cost.calls_per_day` counts.
const DAY_SECS: f64 = 86_400.0;

/// `max_cost_ratio`: every inventoried agent with a cost envelope whose
/// calls the candidate cohort saw in this stage, its calls projected to a
/// day over its `calls_per_day`.
///
/// An agent's calls in the cohort over `elapsed` are what its envelope
/// allows for that time at the cohort's `share` of the agent's traffic
/// (the stage's `percent`, or all of it in shadow) when the ratio is 1:
/// `ratio = calls / (share · elapsed/1 day · calls_per_day)`, with the
/// Poisson score interval of the count scaled alike. It fails when some
/// agent's lower bound is over `limit`, passes when every agent read has
/// its upper bound at or under it, and waits otherwise — also when no
/// agent was read (no inventoried agent with an envelope called in the
/// cohort, or no time has passed). The reading shown is the worst agent's,
/// named as its `subject`: the failing one with the highest lower bound,
/// else the one with the highest upper bound.
fn cost_reading(limit: f64, share: f64, elapsed: Duration, obs: &Observation) -> GateReading {
    let days = elapsed.as_secs_f64() / DAY_SECS;
    let read: Vec<GateReading> = obs
        .agents
        .iter()
        .filter(|a| a.calls > 0)
        .filter_map(|a| {
            let expected = share * days * a.calls_per_day as f64;
            if !(expected > 0.0 && expected.is_finite()) {
                return None;
            }
            let iv = gate::poisson(a.calls, Z95);
            let iv = Interval {
                lo: iv.lo / expected,
                hi: iv.hi / expected,
            };
            let mut r = reading(
                Gate::MaxCostRatio,
                limit,
                a.calls as f64 / expected,
                iv,
                gate::at_most(limit, iv),
            );
            r.subject = Some(a.agent.clone());
            Some(r)
        })
        .collect();
    let failing = read
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .max_by(|a, b| a.interval.lo.total_cmp(&b.interval.lo));
    let worst = failing.or_else(|| {
        read.iter()
            .max_by(|a, b| a.interval.hi.total_cmp(&b.interval.hi))
    });
    match worst {
        Some(r) => r.clone(),
        None => reading(
            Gate::MaxCostRatio,
            limit,
            0.0,
            Interval {
                lo: 0.0,
                hi: f64::INFINITY,
            },
            Verdict::Wait,
        ),
    }
}

/// The candidate cohort's share of the traffic it may see: all of it in
/// shadow, the stage's `percent` of the hash buckets in a split stage.
fn cohort_share(stage: &Stage) -> f64 {
    match stage.kind {
        StageKind::Split => f64::from(stage.percent.unwrap_or(0)) / 100.0,
        StageKind::Shadow | StageKind::Replay => 1.0,
    }
}

/// A rate of `k` in `n` that must stay at most `limit` (Wilson interval).
fn rate_reading(gate: Gate, limit: f64, k: u64, n: u64) -> GateReading {
    let iv = gate::wilson(k, n, Z95);
    reading(gate, limit, rate(k, n), iv, gate::at_most(limit, iv))
}

/// The candidate's deny rate minus stable's, within `limit` either way
/// (Newcombe's hybrid score interval).
fn deny_delta_reading(gate: Gate, limit: f64, obs: &Observation) -> GateReading {
    let (c, s) = (obs.candidate, obs.stable);
    let estimate = rate(c.denies, c.requests) - rate(s.denies, s.requests);
    let iv = gate::newcombe_diff(c.denies, c.requests, s.denies, s.requests, Z95);
    reading(gate, limit, estimate, iv, gate::within(limit, iv))
}

/// A latency figure that must stay at most `limit`; without data the
/// interval is `unknown`, so the reading waits.
fn latency_reading(
    gate: Gate,
    limit: f64,
    figure: Option<(f64, Interval)>,
    unknown: Interval,
) -> GateReading {
    let (estimate, iv) = figure.unwrap_or((0.0, unknown));
    reading(gate, limit, estimate, iv, gate::at_most(limit, iv))
}

/// The candidate's p99 minus stable's, with the widest difference the two
/// intervals allow.
fn latency_delta(obs: &Observation) -> Option<(f64, Interval)> {
    let (c, s) = (obs.candidate.p99_ms?, obs.stable.p99_ms?);
    Some((
        c.estimate - s.estimate,
        Interval {
            lo: c.lo - s.hi,
            hi: c.hi - s.lo,
        },
    ))
}

/// The rollback triggers read against an observation.
pub fn triggers(t: &RollbackTriggers, obs: &Observation) -> Vec<GateReading> {
    let c = obs.candidate;
    let p99 = c
        .p99_ms
        .map(|q| (q.estimate, Interval { lo: q.lo, hi: q.hi }));
    [
        t.error_rate
            .map(|limit| rate_reading(Gate::ErrorRate, limit, c.errors, c.requests)),
        t.deny_rate_delta
            .map(|limit| deny_delta_reading(Gate::DenyRateDelta, limit, obs)),
        t.latency_p99_ms.map(|limit| {
            let unknown = Interval {
                lo: 0.0,
                hi: f64::INFINITY,
            };
            latency_reading(Gate::LatencyP99Ms, limit, p99, unknown)
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The gates of a live stage read against an observation, `elapsed` into
/// the stage.
pub fn gates(stage: &Stage, elapsed: Duration, obs: &Observation) -> Vec<GateReading> {
    let g = &stage.gates;
    let c = obs.candidate;
    [
        g.max_divergence
            .map(|limit| rate_reading(Gate::MaxDivergence, limit, obs.diverged, obs.compared)),
        g.max_error_rate
            .map(|limit| rate_reading(Gate::MaxErrorRate, limit, c.errors, c.requests)),
        g.max_deny_rate_delta
            .map(|limit| deny_delta_reading(Gate::MaxDenyRateDelta, limit, obs)),
        g.max_latency_p99_delta_ms.map(|limit| {
            let unknown = Interval {
                lo: f64::NEG_INFINITY,
                hi: f64::INFINITY,
            };
            latency_reading(
                Gate::MaxLatencyP99DeltaMs,
                limit,
                latency_delta(obs),
                unknown,
            )
        }),
        g.max_cost_ratio
            .map(|limit| cost_reading(limit, cohort_share(stage), elapsed, obs)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The fewest candidate requests on which a rollback trigger may fire or a
/// gate may fail (see the module doc).
pub const MIN_FAIL_SAMPLES: u64 = 30;

/// Readings on too few samples to fail say `wait` instead.
fn hold_back(readings: &mut [GateReading], samples: u64, floor: u64) {
    if samples < floor {
        for r in readings.iter_mut().filter(|r| r.verdict == Verdict::Fail) {
            r.verdict = Verdict::Wait;
        }
    }
}

/// Decides a live stage (shadow or split) after `elapsed` in it.
pub fn decide(
    stage: &Stage,
    rollback: &RollbackTriggers,
    elapsed: Duration,
    obs: &Observation,
) -> StageDecision {
    let samples = obs.candidate.requests;
    let mut triggers = triggers(rollback, obs);
    hold_back(&mut triggers, samples, MIN_FAIL_SAMPLES);
    let mut readings = gates(stage, elapsed, obs);
    let gate_floor = stage.min_samples.unwrap_or(0).max(MIN_FAIL_SAMPLES);
    hold_back(&mut readings, samples, gate_floor);
    let samples_left = stage
        .min_samples
        .unwrap_or(0)
        .saturating_sub(obs.candidate.requests);
    let time_left = stage
        .min_duration
        .unwrap_or_default()
        .saturating_sub(elapsed);
    let make = |step| StageDecision {
        step,
        readings: readings.clone(),
        triggers: triggers.clone(),
        samples_left,
        time_left,
    };
    if let Some(t) = triggers.iter().find(|t| t.verdict == Verdict::Fail) {
        return make(Step::Rollback {
            trigger: describe("trigger", t),
        });
    }
    if let Some(g) = readings.iter().find(|g| g.verdict == Verdict::Fail) {
        return make(Step::Rollback {
            trigger: describe("gate", g),
        });
    }
    let ready = samples_left == 0 && time_left.is_zero();
    if ready && gate::combine(readings.iter().map(|g| g.verdict)) == Verdict::Pass {
        return make(Step::Advance);
    }
    if let Some(max) = stage.max_duration
        && elapsed >= max
    {
        let waiting: Vec<&str> = if ready {
            readings
                .iter()
                .filter(|g| g.verdict == Verdict::Wait)
                .map(|g| g.gate.as_str())
                .collect()
        } else {
            vec!["min_samples"]
        };
        return make(Step::Pause {
            reason: format!(
                "stage `{}` still waiting after {} (on {})",
                stage.name,
                humantime::format_duration(max),
                waiting.join(", ")
            ),
        });
    }
    make(Step::Wait)
}

fn describe(kind: &str, g: &GateReading) -> String {
    format!(
        "{kind} {}{} = {:.4} (95% interval {:.4}..{:.4}) past {}",
        g.gate,
        g.subject
            .as_deref()
            .map(|s| format!(" of `{s}`"))
            .unwrap_or_default(),
        g.estimate,
        g.interval.lo,
        g.interval.hi,
        g.limit
    )
}

/// Decides the offline replay stage from a replay's totals: it passes or
/// fails at once (there is nothing to wait for).
pub fn decide_replay(stage: &Stage, report: &ReplayTotals) -> StageDecision {
    let mut readings = Vec::new();
    let exact = |v: f64| Interval { lo: v, hi: v };
    if let Some(max) = stage.gates.max_catastrophic {
        let n = report.catastrophic as f64;
        let verdict = if report.catastrophic as u64 <= max {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        readings.push(reading(
            Gate::MaxCatastrophic,
            max as f64,
            n,
            exact(n),
            verdict,
        ));
    }
    if let Some(max) = stage.gates.max_false_positive_rate {
        let r = report.false_positive_rate();
        let verdict = if r <= max {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        readings.push(reading(
            Gate::MaxFalsePositiveRate,
            max,
            r,
            exact(r),
            verdict,
        ));
    }
    let step = match readings.iter().find(|g| g.verdict == Verdict::Fail) {
        Some(g) => Step::Rollback {
            trigger: describe("gate", g),
        },
        None => Step::Advance,
    };
    StageDecision {
        step,
        readings,
        triggers: Vec::new(),
        samples_left: 0,
        time_left: Duration::ZERO,
    }
}

/// Whether a stage runs offline, beside stable, or enforced on a share.
pub fn is_offline(stage: &Stage) -> bool {
    stage.kind == StageKind::Replay
}
