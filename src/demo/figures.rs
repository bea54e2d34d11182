//! The daemon's figures, read and formatted for people.
//!
//! The daemon hands the demo untyped JSON: a transition's `figures`
//! (`revert`, `gates`, `triggers`, `observed`), a candidate's `observed`
//! figures and its gate and trigger readings (`{gate, limit, estimate,
//! interval {lo, hi}, verdict}`). Every read of that JSON is in this module,
//! behind small functions, so that the day those documents are typed only
//! this module changes. It reads with `.get()` chains and falls back to a
//! neutral value (zero, `?`, nothing) where a figure is missing.
//!
//! It formats only: it does no I/O and decides nothing about the run.

use serde_json::Value;

/// The value at `path` in `v`, if every key on the way is there.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

/// A count at `path`, zero when it is missing.
fn count(v: &Value, path: &[&str]) -> u64 {
    at(v, path).and_then(Value::as_u64).unwrap_or(0)
}

/// A number at `path`, NaN when it is missing.
fn number(v: &Value, path: &[&str]) -> f64 {
    at(v, path).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// A string at `path`, `?` when it is missing.
fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("?")
}

/// The readings in the array at `key` of a transition's figures.
fn readings<'a>(figures: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    figures
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

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

/// A commit's sha abbreviated as `git log --oneline` does.
pub(super) fn short(s: &str) -> &str {
    s.get(..7).unwrap_or(s)
}

/// An artifact's hash abbreviated to 12 characters.
pub(super) fn artifact_short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

// ---------------------------------------------------------------------------
// Gate and trigger readings

/// A reading's name, estimate, interval bounds, limit and verdict.
fn reading_parts(g: &Value) -> (&str, f64, f64, f64, f64, &str) {
    (
        text(g, &["gate"]),
        number(g, &["estimate"]),
        number(g, &["interval", "lo"]),
        number(g, &["interval", "hi"]),
        number(g, &["limit"]),
        text(g, &["verdict"]),
    )
}

/// One gate or trigger reading (`{gate, limit, estimate, interval, verdict}`)
/// for humans: `max_divergence 0.21% (95% 0.08%..0.60%, limit 2%): pass`.
pub fn gate_text(g: &Value) -> String {
    let (name, est, lo, hi, limit, verdict) = reading_parts(g);
    if name.contains("latency") {
        return format!("{name} {est:.1}ms (95% {lo:.1}..{hi:.1}ms, limit {limit}ms): {verdict}");
    }
    if name.contains("delta") {
        return format!(
            "{name} {} (95% {}..{}, limit ±{}): {verdict}",
            signed_pct(est),
            signed_pct(lo),
            signed_pct(hi),
            limit_pct(limit)
        );
    }
    if name.contains("catastrophic") {
        return format!("{name} {est} (limit {limit}): {verdict}");
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
pub fn gate_brief(g: &Value) -> String {
    let (name, est, lo, hi, limit, verdict) = reading_parts(g);
    if name.contains("latency") {
        return format!("{name} {est:.1}ms [{lo:.1}, {hi:.1}] ≤ {limit}ms: {verdict}");
    }
    if name.contains("delta") {
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
pub(super) fn revert_commit(figures: &Value) -> Option<&str> {
    figures.get("revert").and_then(Value::as_str)
}

/// Whether a transition's figures carry at least one gate reading.
pub(super) fn has_gates(figures: &Value) -> bool {
    readings(figures, "gates").next().is_some()
}

/// Every gate reading of a transition's figures, for humans.
pub(super) fn gates_of(figures: &Value) -> Vec<String> {
    readings(figures, "gates").map(gate_text).collect()
}

/// The failed trigger readings of a transition's figures, for humans.
pub(super) fn failed_triggers(figures: &Value) -> Vec<String> {
    readings(figures, "triggers")
        .filter(|g| text(g, &["verdict"]) == "fail")
        .map(gate_text)
        .collect()
}

/// The candidate's requests in a candidate's observed figures (zero when
/// none are counted yet).
pub(super) fn candidate_requests(observed: &Value) -> u64 {
    count(observed, &["candidate", "requests"])
}

/// The observed figures of a transition, for humans; `None` when it has
/// none.
pub(super) fn observed_of(figures: &Value) -> Option<String> {
    let o = figures.get("observed").filter(|o| o.is_object())?;
    let deny_rate = |side: &str| {
        let r = count(o, &[side, "requests"]);
        if r == 0 {
            0.0
        } else {
            count(o, &[side, "denies"]) as f64 / r as f64
        }
    };
    let compared = count(o, &["compared"]);
    if compared > 0 {
        Some(format!(
            "{} decisions compared, {} differ; deny rate {} (candidate) vs {} (stable)",
            indicatif::HumanCount(compared),
            indicatif::HumanCount(count(o, &["diverged"])),
            pct(deny_rate("candidate")),
            pct(deny_rate("stable"))
        ))
    } else {
        Some(format!(
            "candidate {} requests, {} denied, {} errors; stable {} requests, {} denied",
            indicatif::HumanCount(count(o, &["candidate", "requests"])),
            pct(deny_rate("candidate")),
            count(o, &["candidate", "errors"]),
            indicatif::HumanCount(count(o, &["stable", "requests"])),
            pct(deny_rate("stable"))
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_reading_reads_through_missing_fields() {
        let g = json!({"gate": "max_divergence", "estimate": 0.0021, "limit": 0.02,
                       "interval": {"lo": 0.0008, "hi": 0.006}, "verdict": "pass"});
        assert_eq!(
            gate_text(&g),
            "max_divergence 0.21% (95% 0.08%..0.60%, limit 2%): pass"
        );
        assert_eq!(
            gate_brief(&g),
            "max_divergence 0.21% [0.08%, 0.60%] ≤ 2%: pass"
        );
        assert_eq!(
            gate_text(&json!({})),
            "? NaN% (95% NaN%..NaN%, limit NaN%): ?"
        );
    }

    #[test]
    fn a_transition_s_figures_are_read_with_defaults() {
        let f = json!({"revert": "abc", "gates": [], "triggers": [
            {"gate": "catastrophic", "estimate": 3, "limit": 0, "verdict": "fail"},
            {"gate": "catastrophic", "estimate": 0, "limit": 0, "verdict": "pass"}],
            "observed": {"candidate": {"requests": 10, "denies": 5}}});
        assert_eq!(revert_commit(&f), Some("abc"));
        assert!(!has_gates(&f));
        assert_eq!(failed_triggers(&f), ["catastrophic 3 (limit 0): fail"]);
        assert_eq!(
            observed_of(&f).as_deref(),
            Some("candidate 10 requests, 50.0% denied, 0 errors; stable 0 requests, 0% denied")
        );
        assert_eq!(observed_of(&json!(null)), None);
        assert_eq!(
            candidate_requests(&json!({"candidate": {"requests": 7}})),
            7
        );
        assert_eq!(candidate_requests(&json!(null)), 0);
    }
}
