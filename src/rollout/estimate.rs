//! What a live stage's gates still wait for, and an estimate of how long,
//! for `sluice status`: a gate that waits with its stage's `min_samples`
//! met waits for evidence, and "wait" alone does not say that it may need
//! thousands more requests. Pure: no clock (the caller passes how long the
//! stage has run) and no effect on any decision.
//!
//! The estimate assumes the rates seen so far hold: a rate gate needs the
//! count at which the Wilson upper bound of that rate falls to its limit; a
//! deny-rate delta the count at which Newcombe's interval of the observed
//! difference falls inside `±limit`, the stable cohort growing in the
//! proportion seen. A rate already at or past its limit has no such count.
//! Latency gates get no estimate. The time is the count still missing at
//! the rate requests arrived in this stage.

use std::time::Duration;

use super::gate::{self, GateReading, Verdict, Z95};
use crate::api::gate::{Gate, GateWait, Observation};

/// The most requests an estimate looks for.
const MAX_ESTIMATE: u64 = 1_000_000_000_000;

/// The smallest count in `lo..=MAX_ESTIMATE` for which `passes` holds,
/// `passes` being false below some count and true from it on.
fn smallest(lo: u64, passes: impl Fn(u64) -> bool) -> Option<u64> {
    let mut hi = lo.max(1);
    while !passes(hi) {
        if hi >= MAX_ESTIMATE {
            return None;
        }
        hi = hi.saturating_mul(2).min(MAX_ESTIMATE);
    }
    let mut lo = lo.max(1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if passes(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(hi)
}

fn scaled(rate: f64, n: u64) -> u64 {
    (rate * n as f64).round() as u64
}

/// The count at which a rate `k/n` stays under `limit` with confidence.
fn rate_needs(limit: f64, k: u64, n: u64) -> Result<u64, f64> {
    let p = if n == 0 { 0.0 } else { k as f64 / n as f64 };
    if p >= limit {
        return Err(p);
    }
    smallest(n, |m| {
        gate::at_most(limit, gate::wilson(scaled(p, m), m, Z95)) == Verdict::Pass
    })
    .ok_or(p)
}

/// The candidate count at which the deny-rate difference stays within
/// `±limit` with confidence.
fn delta_needs(limit: f64, obs: &Observation) -> Result<u64, f64> {
    let (c, s) = (obs.candidate, obs.stable);
    let rate = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let (p1, p2) = (rate(c.denies, c.requests), rate(s.denies, s.requests));
    if (p1 - p2).abs() >= limit {
        return Err(p1 - p2);
    }
    let ratio = if c.requests > 0 && s.requests > 0 {
        s.requests as f64 / c.requests as f64
    } else {
        1.0
    };
    smallest(c.requests, |m| {
        let m2 = ((ratio * m as f64).round() as u64).max(1);
        let iv = gate::newcombe_diff(scaled(p1, m), m, scaled(p2, m2), m2, Z95);
        gate::within(limit, iv) == Verdict::Pass
    })
    .ok_or(p1 - p2)
}

fn eta(seen: u64, needed: u64, elapsed: Duration) -> Option<(u64, f64)> {
    let secs = elapsed.as_secs_f64();
    if seen == 0 || secs <= 0.0 {
        return None;
    }
    let per_s = seen as f64 / secs;
    let left = needed.saturating_sub(seen) as f64 / per_s;
    Some(((left * 1000.0).min(u64::MAX as f64) as u64, per_s))
}

/// What every gate of a live stage that does not pass yet waits for,
/// after `elapsed` in the stage.
pub fn waits(readings: &[GateReading], obs: &Observation, elapsed: Duration) -> Vec<GateWait> {
    let c = obs.candidate;
    readings
        .iter()
        .filter(|r| r.verdict == Verdict::Wait)
        .map(|r| {
            let (seen, needs, what) = match r.gate {
                Gate::MaxDivergence => (
                    obs.compared,
                    Some(rate_needs(r.limit, obs.diverged, obs.compared)),
                    "comparisons",
                ),
                Gate::MaxErrorRate | Gate::ErrorRate => (
                    c.requests,
                    Some(rate_needs(r.limit, c.errors, c.requests)),
                    "candidate requests",
                ),
                Gate::MaxDenyRateDelta | Gate::DenyRateDelta => (
                    c.requests,
                    Some(delta_needs(r.limit, obs)),
                    "candidate requests",
                ),
                _ => (c.requests, None, "candidate requests"),
            };
            match needs {
                Some(Ok(needed)) => {
                    let timing = eta(seen, needed, elapsed);
                    let mut reason =
                        format!("needs ~{needed} {what} at the rates seen so far ({seen} seen)");
                    if let Some((ms, per_s)) = timing {
                        let d = Duration::from_millis(ms / 1000 * 1000);
                        reason.push_str(&format!(
                            ", about {} more at {per_s:.1}/s",
                            humantime::format_duration(d)
                        ));
                    }
                    GateWait {
                        gate: r.gate,
                        seen,
                        needed: Some(needed),
                        eta_ms: timing.map(|t| t.0),
                        reason,
                    }
                }
                Some(Err(at)) => GateWait {
                    gate: r.gate,
                    seen,
                    needed: None,
                    eta_ms: None,
                    reason: format!(
                        "at {at:.4} so far, not inside its limit {}: at these rates it does not \
                         pass, however long it waits ({seen} {what} seen)",
                        r.limit
                    ),
                },
                None => GateWait {
                    gate: r.gate,
                    seen,
                    needed: None,
                    eta_ms: None,
                    reason: format!(
                        "waits for its interval to narrow; no estimate ({seen} {what} seen)"
                    ),
                },
            }
        })
        .collect()
}
