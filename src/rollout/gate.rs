//! Gate statistics: every gate resolves to **pass** (the confidence bound is
//! inside the gate), **fail** (the opposite bound is outside it: the candidate
//! is clearly worse) or **wait** (not enough evidence yet).
//!
//! Methods, all at 95% two-sided confidence (`z = 1.959964`), so each bound is
//! a 97.5% one-sided bound:
//! - a rate (error rate, shadow divergence): the **Wilson score interval**;
//! - a difference of two rates (candidate deny rate − stable deny rate): the
//!   **Newcombe hybrid score interval** (Newcombe 1998, method 10), built from
//!   the two Wilson intervals;
//! - a count of calls over a stretch of time (an agent's calls against its
//!   cost envelope): the **Poisson score interval**;
//! - a p99 latency: the distribution-free interval of a quantile from order
//!   statistics, ranks `n·q ± z·√(n·q·(1−q))` (normal approximation of the
//!   binomial), read from the latency histogram; a p99 difference bounds as
//!   `[cand_lo − stable_hi, cand_hi − stable_lo]`.
//!
//! No data gives the widest interval (`[0, 1]` for a rate), so a gate with
//! too little data waits; it never passes by default.
//!
//! The readings themselves ([`GateReading`], [`Interval`], [`Verdict`]) are
//! wire types of `api::gate`, re-exported here.

pub use crate::api::gate::{GateReading, Interval, Verdict};
/// The normal quantile for 95% two-sided confidence (the plan's, so that
/// `sluice check` judges what a plan can pass by the same number).
pub use crate::model::plan::Z95;

/// The Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64, z: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let n_f = n as f64;
    let p = (k.min(n)) as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / denom;
    let half = z * ((p * (1.0 - p) / n_f) + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
    }
}

/// The score interval of the mean of a Poisson count `k` (events in a
/// fixed exposure): the `λ` with `(k − λ)² ≤ z²·λ`, that is
/// `k + z²/2 ± z·√(k + z²/4)`. With no event it is `[0, z²]`: a quiet
/// stretch bounds the rate from above, never at 0.
pub fn poisson(k: u64, z: f64) -> Interval {
    let k = k as f64;
    let z2 = z * z;
    let centre = k + z2 / 2.0;
    let half = z * (k + z2 / 4.0).sqrt();
    Interval {
        lo: (centre - half).max(0.0),
        hi: centre + half,
    }
}

/// The Newcombe hybrid score interval of `k1/n1 − k2/n2`.
pub fn newcombe_diff(k1: u64, n1: u64, k2: u64, n2: u64, z: f64) -> Interval {
    let p1 = if n1 == 0 {
        0.0
    } else {
        k1.min(n1) as f64 / n1 as f64
    };
    let p2 = if n2 == 0 {
        0.0
    } else {
        k2.min(n2) as f64 / n2 as f64
    };
    let w1 = wilson(k1, n1, z);
    let w2 = wilson(k2, n2, z);
    let d = p1 - p2;
    let lo = d - ((p1 - w1.lo).powi(2) + (w2.hi - p2).powi(2)).sqrt();
    let hi = d + ((w1.hi - p1).powi(2) + (p2 - w2.lo).powi(2)).sqrt();
    Interval {
        lo: lo.max(-1.0),
        hi: hi.min(1.0),
    }
}

/// The quantiles whose values bound quantile `q` of `n` samples: read the
/// histogram at these two quantiles to get the interval of the `q` quantile.
pub fn quantile_bounds(n: u64, q: f64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let half = z * (n_f * q * (1.0 - q)).sqrt();
    let lo_rank = (n_f * q - half).floor().max(0.0);
    let hi_rank = (n_f * q + half).ceil().min(n_f);
    (lo_rank / n_f, hi_rank / n_f)
}

/// A one-sided gate "the value stays at or under `limit`": pass when the
/// upper bound is under it, fail when the lower bound is over it.
pub fn at_most(limit: f64, interval: Interval) -> Verdict {
    if interval.hi <= limit {
        Verdict::Pass
    } else if interval.lo > limit {
        Verdict::Fail
    } else {
        Verdict::Wait
    }
}

/// A two-sided gate "the difference stays within `±limit`": pass when the
/// whole interval is inside, fail when it lies wholly outside on one side.
pub fn within(limit: f64, interval: Interval) -> Verdict {
    if interval.lo >= -limit && interval.hi <= limit {
        Verdict::Pass
    } else if interval.lo > limit || interval.hi < -limit {
        Verdict::Fail
    } else {
        Verdict::Wait
    }
}

/// Combines the verdicts of a stage's gates: any fail fails, else any wait
/// waits, else pass.
pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut out = Verdict::Pass;
    for v in verdicts {
        match v {
            Verdict::Fail => return Verdict::Fail,
            Verdict::Wait => out = Verdict::Wait,
            Verdict::Pass => {}
        }
    }
    out
}
