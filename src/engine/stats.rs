//! Per artifact and cohort figures since the route last changed, for
//! `GET /v1/stats` (what the rollout gates read) and `GET /metrics`.
//!
//! A route owns its [`RouteStats`]: a route change starts fresh figures, and
//! a request records into the stats of the route it started on. Counters are
//! atomics; each latency histogram (hdrhistogram, microseconds, three
//! significant digits) sits behind its own mutex, held for one record.
//! In Prometheus terms the counters reset when the route changes, which
//! `rate()` and `increase()` handle as a counter reset.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::api::route::Cohort;
use crate::model::ir::DecisionKind;

const KINDS: [DecisionKind; 4] = [
    DecisionKind::Allow,
    DecisionKind::Modify,
    DecisionKind::RequireApproval,
    DecisionKind::Deny,
];

fn kind_index(k: DecisionKind) -> usize {
    match k {
        DecisionKind::Allow => 0,
        DecisionKind::Modify => 1,
        DecisionKind::RequireApproval => 2,
        DecisionKind::Deny => 3,
    }
}

/// The figures of one artifact in one cohort.
#[derive(Debug)]
pub struct CohortStats {
    pub artifact: String,
    pub cohort: Cohort,
    requests: AtomicU64,
    errors: AtomicU64,
    failsafe: AtomicU64,
    decisions: [AtomicU64; 4],
    /// `None` only if the histogram could not be built (it always can for
    /// these bounds).
    latency: Mutex<Option<Histogram<u64>>>,
    /// Shadow comparisons: `[stable][candidate]` decision counts.
    pairs: [[AtomicU64; 4]; 4],
}

/// What one evaluation contributes.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub decision: DecisionKind,
    /// The evaluation failed (the decision is the failsafe).
    pub error: bool,
    /// The decision is the tier failsafe (open circuit or error).
    pub failsafe: bool,
    pub latency: Duration,
}

impl CohortStats {
    pub fn new(artifact: &str, cohort: Cohort) -> CohortStats {
        CohortStats {
            artifact: artifact.to_string(),
            cohort,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            failsafe: AtomicU64::new(0),
            decisions: Default::default(),
            // 1 µs to one hour, three significant digits.
            latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()),
            pairs: Default::default(),
        }
    }

    /// Records one evaluation.
    pub fn record(&self, s: Sample) {
        self.requests.fetch_add(1, Relaxed);
        if s.error {
            self.errors.fetch_add(1, Relaxed);
        }
        if s.failsafe {
            self.failsafe.fetch_add(1, Relaxed);
        }
        if let Some(c) = self.decisions.get(kind_index(s.decision)) {
            c.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(s.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = h.as_mut() {
            h.saturating_record(micros);
        }
    }

    /// Records a shadow comparison of the stable decision with this
    /// (candidate) artifact's.
    pub fn record_pair(&self, stable: DecisionKind, candidate: DecisionKind) {
        if let Some(c) = self
            .pairs
            .get(kind_index(stable))
            .and_then(|row| row.get(kind_index(candidate)))
        {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The figures as reported.
    pub fn report(&self, stage: Option<&str>) -> CohortReport {
        let requests = self.requests.load(Relaxed);
        let errors = self.errors.load(Relaxed);
        let count = |k: DecisionKind| {
            self.decisions
                .get(kind_index(k))
                .map_or(0, |c| c.load(Relaxed))
        };
        let decisions = Decisions {
            allow: count(DecisionKind::Allow),
            modify: count(DecisionKind::Modify),
            require_approval: count(DecisionKind::RequireApproval),
            deny: count(DecisionKind::Deny),
        };
        let guard = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let latency_ms = match guard.as_ref().filter(|h| !h.is_empty()) {
            Some(h) => Latency {
                p50: h.value_at_quantile(0.5) as f64 / 1000.0,
                p95: h.value_at_quantile(0.95) as f64 / 1000.0,
                p99: h.value_at_quantile(0.99) as f64 / 1000.0,
                max: h.max() as f64 / 1000.0,
                mean: h.mean() / 1000.0,
            },
            None => Latency::default(),
        };
        let histogram = guard
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(latency_buckets);
        drop(guard);
        let shadow = (self.cohort == Cohort::Shadow).then(|| {
            let mut compared = 0;
            let mut diverged = 0;
            let mut pairs = Vec::new();
            for (si, row) in self.pairs.iter().enumerate() {
                for (ci, c) in row.iter().enumerate() {
                    let n = c.load(Relaxed);
                    compared += n;
                    if si != ci && n > 0 {
                        diverged += n;
                        if let (Some(s), Some(k)) = (KINDS.get(si), KINDS.get(ci)) {
                            pairs.push(Divergence {
                                stable: *s,
                                candidate: *k,
                                count: n,
                            });
                        }
                    }
                }
            }
            ShadowReport {
                compared,
                diverged,
                divergence: ratio(diverged, compared),
                pairs,
            }
        });
        CohortReport {
            artifact: self.artifact.clone(),
            cohort: self.cohort,
            stage: stage.map(str::to_string),
            requests,
            errors,
            failsafe: self.failsafe.load(Relaxed),
            error_rate: ratio(errors, requests),
            deny_rate: ratio(decisions.deny, requests),
            decisions,
            latency_ms,
            histogram,
            shadow,
        }
    }
}

/// The first latency bucket ends at 10 µs; each next one is 5% wider.
/// Every engine uses the same bounds, so a fleet's buckets add up.
const BUCKET_FIRST_US: u64 = 10;
const BUCKET_GROWTH: f64 = 1.05;

/// The non-empty latency buckets: `(upper bound in ms, count)`, ascending.
/// Enough for exact quantile bounds across engines at 5% resolution, in a
/// few hundred entries at most (10 µs to an hour).
fn latency_buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    h.iter_log(BUCKET_FIRST_US, BUCKET_GROWTH)
        .filter(|v| v.count_since_last_iteration() > 0)
        .map(|v| {
            (
                v.value_iterated_to() as f64 / 1000.0,
                v.count_since_last_iteration(),
            )
        })
        .collect()
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// One cohort's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortReport {
    pub artifact: String,
    pub cohort: Cohort,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub requests: u64,
    /// Evaluations that failed (they got the failsafe decision).
    pub errors: u64,
    /// Decisions that were the tier failsafe (open circuit or error).
    pub failsafe: u64,
    pub error_rate: f64,
    pub deny_rate: f64,
    pub decisions: Decisions,
    pub latency_ms: Latency,
    /// The latency histogram as `[upper bound in ms, count]` buckets
    /// (non-empty ones, ascending; the same bounds on every engine), for
    /// quantiles across a fleet. Absent before the first request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<(f64, u64)>>,
    /// Shadow cohort only: the candidate's decisions against stable's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decisions {
    pub allow: u64,
    pub modify: u64,
    pub require_approval: u64,
    pub deny: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    /// Requests evaluated by both.
    pub compared: u64,
    /// Requests where the decisions differ.
    pub diverged: u64,
    /// `diverged / compared`.
    pub divergence: f64,
    /// Every (stable → candidate) pair that occurred, with its count.
    pub pairs: Vec<Divergence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub stable: DecisionKind,
    pub candidate: DecisionKind,
    pub count: u64,
}

/// The figures of one route.
#[derive(Debug)]
pub struct RouteStats {
    pub stable: CohortStats,
    /// The candidate in split mode, or its shadow evaluations.
    pub candidate: Option<CohortStats>,
    /// Shadow evaluations dropped because the queue was full.
    pub shadow_dropped: AtomicU64,
}

impl RouteStats {
    pub fn new(stable: &str, candidate: Option<(&str, Cohort)>) -> RouteStats {
        RouteStats {
            stable: CohortStats::new(stable, Cohort::Stable),
            candidate: candidate.map(|(a, c)| CohortStats::new(a, c)),
            shadow_dropped: AtomicU64::new(0),
        }
    }

    pub fn cohort(&self, cohort: Cohort) -> Option<&CohortStats> {
        match cohort {
            Cohort::Stable => Some(&self.stable),
            _ => self.candidate.as_ref().filter(|c| c.cohort == cohort),
        }
    }

    pub fn reports(&self, stage: Option<&str>) -> Vec<CohortReport> {
        std::iter::once(&self.stable)
            .chain(self.candidate.as_ref())
            .map(|c| c.report(stage))
            .collect()
    }
}

/// Escapes a Prometheus label value.
pub fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A counter family: its name, its help line and how to read it.
type Counter = (&'static str, &'static str, fn(&CohortReport) -> u64);

/// Writes cohort figures as Prometheus text (exposition format 0.0.4).
pub fn write_prometheus(out: &mut String, reports: &[CohortReport]) {
    let labels = |r: &CohortReport| {
        format!(
            "artifact=\"{}\",cohort=\"{}\",stage=\"{}\"",
            label(&r.artifact),
            r.cohort.as_str(),
            label(r.stage.as_deref().unwrap_or(""))
        )
    };
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    let counters: [Counter; 3] = [
        (
            "sluice_requests_total",
            "Evaluations since the route last changed.",
            |r| r.requests,
        ),
        (
            "sluice_errors_total",
            "Evaluations that failed since the route last changed.",
            |r| r.errors,
        ),
        (
            "sluice_failsafe_total",
            "Decisions that were the tier failsafe since the route last changed.",
            |r| r.failsafe,
        ),
    ];
    for (name, help, value) in counters {
        family(out, name, "counter", help);
        for r in reports {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(r), value(r));
        }
    }
    family(
        out,
        "sluice_decisions_total",
        "counter",
        "Decisions by kind since the route last changed.",
    );
    for r in reports {
        let d = &r.decisions;
        for (k, n) in [
            ("allow", d.allow),
            ("modify", d.modify),
            ("require_approval", d.require_approval),
            ("deny", d.deny),
        ] {
            let _ = writeln!(
                out,
                "sluice_decisions_total{{{},decision=\"{k}\"}} {n}",
                labels(r)
            );
        }
    }
    family(
        out,
        "sluice_latency_seconds",
        "summary",
        "Evaluation latency since the route last changed.",
    );
    for r in reports {
        let l = &r.latency_ms;
        for (q, v) in [("0.5", l.p50), ("0.95", l.p95), ("0.99", l.p99)] {
            let _ = writeln!(
                out,
                "sluice_latency_seconds{{{},quantile=\"{q}\"}} {}",
                labels(r),
                v / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "sluice_latency_seconds_sum{{{}}} {}",
            labels(r),
            l.mean / 1000.0 * r.requests as f64
        );
        let _ = writeln!(
            out,
            "sluice_latency_seconds_count{{{}}} {}",
            labels(r),
            r.requests
        );
    }
    family(
        out,
        "sluice_shadow_divergences_total",
        "counter",
        "Shadow evaluations whose decision differs from stable's, by pair.",
    );
    for r in reports {
        if let Some(s) = &r.shadow {
            for p in &s.pairs {
                let _ = writeln!(
                    out,
                    "sluice_shadow_divergences_total{{{},stable=\"{}\",candidate=\"{}\"}} {}",
                    labels(r),
                    p.stable.as_str(),
                    p.candidate.as_str(),
                    p.count
                );
            }
        }
    }
    family(
        out,
        "sluice_shadow_compared_total",
        "counter",
        "Shadow evaluations compared with stable.",
    );
    for r in reports {
        if let Some(s) = &r.shadow {
            let _ = writeln!(
                out,
                "sluice_shadow_compared_total{{{}}} {}",
                labels(r),
                s.compared
            );
        }
    }
}
