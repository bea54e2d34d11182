//! The daemon's figures, formatted for people: a transition's figures
//! (`revert`, `gates`, `triggers`, `observed`), a candidate's observed
//! figures and its gate and trigger readings, all typed documents of
//! `api::audit` and `api::gate`. A figure with no number (the open end of
//! an interval) shows as NaN, as it did when these were read from JSON.
//!
//! It formats only: it does no I/O and decides nothing about the run.

use crate::api::audit::Figures;
use crate::api::gate::{GateReading, Observation, Unit, Verdict};

// ---------------------------------------------------------------------------
// Percentages and hashes

pub(super) fn pct(x: f64) -> String {
    if x == 0.0 {
        "0%".to_string()
    } else if x.abs() >= 0.1 {
        format!("{:.1}%", x * 100.0)
    } else {
        format!("{:.2}%", x * 100.0)
    }
}

/// A limit as a percentage without trailing zeros: `5%`, `0.5%`.
fn limit_pct(x: f64) -> String {
    let t = format!("{:.2}", x * 100.0);
    format!("{}%", t.trim_end_matches('0').trim_end_matches('.'))
}

fn signed_pct(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", pct(x))
    } else {
        pct(x)
    }
}

// ---------------------------------------------------------------------------
// Gate and trigger readings

/// A reading's name, estimate, interval bounds, limit and verdict; a figure
/// with no number (an open end of an interval) is NaN.
fn reading_parts(g: &GateReading) -> (&'static str, f64, f64, f64, f64, &'static str) {
    let f = |x: f64| if x.is_finite() { x } else { f64::NAN };
    (
        g.gate.as_str(),
        f(g.estimate),
        f(g.interval.lo),
        f(g.interval.hi),
        f(g.limit),
        g.verdict.as_str(),
    )
}

/// ` of `agent``, for a reading that names what it is of.
fn of_subject(g: &GateReading) -> String {
    g.subject
        .as_deref()
        .map(|s| format!(" of `{s}`"))
        .unwrap_or_default()
}

/// One gate or trigger reading (`{gate, limit, estimate, interval, verdict}`)
/// for humans: `max_divergence 0.21% (95% 0.08%..0.60%, limit 2%): pass`.
pub fn gate_text(g: &GateReading) -> String {
    let (name, est, lo, hi, limit, verdict) = reading_parts(g);
    let unit = g.gate.unit();
    if unit == Unit::Milliseconds {
        return format!("{name} {est:.1}ms (95% {lo:.1}..{hi:.1}ms, limit {limit}ms): {verdict}");
    }
    if unit == Unit::RateDelta {
        return format!(
            "{name} {} (95% {}..{}, limit ±{}): {verdict}",
            signed_pct(est),
            signed_pct(lo),
            signed_pct(hi),
            limit_pct(limit)
        );
    }
    if unit == Unit::Count {
        return format!("{name} {est} (limit {limit}): {verdict}");
    }
    if unit == Unit::Ratio {
        return format!(
            "{name}{} {est:.2}× (95% {lo:.2}..{hi:.2}×, limit {limit}×): {verdict}",
            of_subject(g)
        );
    }
    format!(
        "{name} {} (95% {}..{}, limit {}): {verdict}",
        pct(est),
        pct(lo),
        pct(hi),
        limit_pct(limit)
    )
}

/// A gate reading in few words, for the live display:
/// `max_divergence 0.21% [0.08%, 0.60%] ≤ 2%: pass`.
pub fn gate_brief(g: &GateReading) -> String {
    let (name, est, lo, hi, limit, verdict) = reading_parts(g);
    let unit = g.gate.unit();
    if unit == Unit::Milliseconds {
        return format!("{name} {est:.1}ms [{lo:.1}, {hi:.1}] ≤ {limit}ms: {verdict}");
    }
    if unit == Unit::Ratio {
        return format!(
            "{name}{} {est:.2}× [{lo:.2}, {hi:.2}] ≤ {limit}×: {verdict}",
            of_subject(g)
        );
    }
    if unit == Unit::RateDelta {
        return format!(
            "{name} {} [{}, {}] within ±{}: {verdict}",
            signed_pct(est),
            signed_pct(lo),
            signed_pct(hi),
            limit_pct(limit)
        );
    }
    format!(
        "{name} {} [{}, {}] ≤ {}: {verdict}",
        pct(est),
        pct(lo),
        pct(hi),
        limit_pct(limit)
    )
}

// ---------------------------------------------------------------------------
// A transition's figures and a candidate's observed figures

/// The revert commit a `reverted` transition's figures name.
pub(super) fn revert_commit(figures: &Figures) -> Option<&str> {
    figures.revert.as_deref()
}

/// Whether a transition's figures carry at least one gate reading.
pub(super) fn has_gates(figures: &Figures) -> bool {
    figures.gates.as_ref().is_some_and(|g| !g.is_empty())
}

/// Every gate reading of a transition's figures, for humans.
pub(super) fn gates_of(figures: &Figures) -> Vec<String> {
    figures.gates.iter().flatten().map(gate_text).collect()
}

/// The failed trigger readings of a transition's figures, for humans.
pub(super) fn failed_triggers(figures: &Figures) -> Vec<String> {
    figures
        .triggers
        .iter()
        .filter(|g| g.verdict == Verdict::Fail)
        .map(gate_text)
        .collect()
}

/// The candidate's requests in a candidate's observed figures.
pub(super) fn candidate_requests(observed: &Observation) -> u64 {
    observed.candidate.requests
}

/// The observed figures of a transition, for humans; `None` when it has
/// none.
pub(super) fn observed_of(figures: &Figures) -> Option<String> {
    let o = figures.observed.as_ref()?;
    let deny_rate = |requests: u64, denies: u64| {
        if requests == 0 {
            0.0
        } else {
            denies as f64 / requests as f64
        }
    };
    let (c, s) = (&o.candidate, &o.stable);
    if o.compared > 0 {
        Some(format!(
            "{} decisions compared, {} differ; deny rate {} (candidate) vs {} (stable)",
            indicatif::HumanCount(o.compared),
            indicatif::HumanCount(o.diverged),
            pct(deny_rate(c.requests, c.denies)),
            pct(deny_rate(s.requests, s.denies))
        ))
    } else {
        Some(format!(
            "candidate {} requests, {} denied, {} errors; stable {} requests, {} denied",
            indicatif::HumanCount(c.requests),
            pct(deny_rate(c.requests, c.denies)),
            c.errors,
            indicatif::HumanCount(s.requests),
            pct(deny_rate(s.requests, s.denies))
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reading(v: serde_json::Value) -> GateReading {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_reading_reads_through_missing_fields() {
        let g = reading(
            json!({"gate": "max_divergence", "estimate": 0.0021, "limit": 0.02,
                               "interval": {"lo": 0.0008, "hi": 0.006}, "verdict": "pass"}),
        );
        assert_eq!(
            gate_text(&g),
            "max_divergence 0.21% (95% 0.08%..0.60%, limit 2%): pass"
        );
        assert_eq!(
            gate_brief(&g),
            "max_divergence 0.21% [0.08%, 0.60%] ≤ 2%: pass"
        );
        // Figures with no number (`null` on the wire) show as NaN.
        let open = reading(
            json!({"gate": "max_divergence", "estimate": null, "limit": null,
                                  "interval": {"lo": null, "hi": null}, "verdict": "wait"}),
        );
        assert_eq!(
            gate_text(&open),
            "max_divergence NaN% (95% NaN%..NaN%, limit NaN%): wait"
        );
    }

    #[test]
    fn a_transition_s_figures_are_read_with_defaults() {
        let f: Figures = serde_json::from_value(json!({"revert": "abc", "gates": [], "triggers": [
            {"gate": "max_catastrophic", "estimate": 3.0, "limit": 0.0,
             "interval": {"lo": 3.0, "hi": 3.0}, "verdict": "fail"},
            {"gate": "max_catastrophic", "estimate": 0.0, "limit": 0.0,
             "interval": {"lo": 0.0, "hi": 0.0}, "verdict": "pass"}],
            "observed": {"candidate": {"requests": 10, "errors": 0, "denies": 5, "p99_ms": null},
                         "stable": {"requests": 0, "errors": 0, "denies": 0, "p99_ms": null},
                         "compared": 0, "diverged": 0}}))
        .unwrap();
        assert_eq!(revert_commit(&f), Some("abc"));
        assert!(!has_gates(&f));
        assert_eq!(failed_triggers(&f), ["max_catastrophic 3 (limit 0): fail"]);
        assert_eq!(
            observed_of(&f).as_deref(),
            Some("candidate 10 requests, 50.0% denied, 0 errors; stable 0 requests, 0% denied")
        );
        assert_eq!(observed_of(&Figures::default()), None);
        assert_eq!(candidate_requests(&f.observed.unwrap()), 10);
        assert_eq!(candidate_requests(&Observation::default()), 0);
    }
}
