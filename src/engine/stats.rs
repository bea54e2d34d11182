//! Per artifact and cohort figures since the route last changed, for
//! `GET /v1/stats` (what the rollout gates read, as
//! [`crate::api::stats::CohortFigures`]) and `GET /metrics`
//! ([`crate::engine::metrics`]).
//!
//! A route owns its [`RouteStats`]: a route change starts fresh figures, and
//! a request records into the stats of the route it started on. A cohort's
//! counters, shadow pairs and hdrhistogram (microseconds, three significant
//! digits; its quantiles and 5% buckets are what `/v1/stats` reports) sit
//! behind one mutex held for one record, so a report is one consistent
//! snapshot: the histogram's counts add up to the requests, and a shadow
//! comparison is never counted before its evaluation. Each latency also goes
//! to [`PrometheusLatency`], fixed Prometheus buckets of atomics with an
//! exact sum. The calls of each agent of the cohort artifact's inventory
//! that has a cost envelope are counted per cohort too, for the rollout's
//! `max_cost_ratio` gate. In Prometheus terms the counters reset when the route
//! changes, which `rate()` and `increase()` handle as a counter reset.
//!
//! Nothing here writes a document; this module only counts and reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::api::route::Cohort;
use crate::api::stats::{AgentCalls, CohortFigures, Decisions, Divergence, Latency, ShadowFigures};
use crate::model::inventory::Inventory;
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
    counts: Mutex<Counts>,
    /// The same latencies in Prometheus buckets, lock free.
    prometheus: PrometheusLatency,
}

/// What one cohort has counted, read and written as one.
#[derive(Debug)]
struct Counts {
    requests: u64,
    errors: u64,
    failsafe: u64,
    decisions: [u64; 4],
    /// The policies' decisions of the requests in the observe scope (each
    /// also counted as an `allow` in `decisions`).
    observed: [u64; 4],
    /// `None` only if the histogram could not be built (it always can for
    /// these bounds).
    latency: Option<Histogram<u64>>,
    /// Shadow comparisons: `[stable][candidate]` decision counts.
    pairs: [[u64; 4]; 4],
    /// Shadow comparisons answered alike whose enforced decisions differ.
    observed_diverged: u64,
    /// Calls per agent of the artifact's inventory with a cost envelope:
    /// (calls, `calls_per_day`). At most one entry per inventoried agent.
    agents: BTreeMap<String, (u64, u64)>,
}

/// What one evaluation contributes.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The decision answered.
    pub decision: DecisionKind,
    /// For a request in the observe scope, the decision the policies reached.
    pub observed: Option<DecisionKind>,
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
            counts: Mutex::new(Counts {
                requests: 0,
                errors: 0,
                failsafe: 0,
                decisions: [0; 4],
                observed: [0; 4],
                // 1 µs to one hour, three significant digits.
                latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).ok(),
                pairs: [[0; 4]; 4],
                observed_diverged: 0,
                agents: BTreeMap::new(),
            }),
            prometheus: PrometheusLatency::default(),
        }
    }

    /// Records one evaluation.
    pub fn record(&self, s: Sample) {
        self.prometheus.observe(s.latency);
        let micros = u64::try_from(s.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut c = self.lock();
        c.requests += 1;
        c.errors += u64::from(s.error);
        c.failsafe += u64::from(s.failsafe);
        if let Some(n) = c.decisions.get_mut(kind_index(s.decision)) {
            *n += 1;
        }
        if let Some(n) = s.observed.and_then(|k| c.observed.get_mut(kind_index(k))) {
            *n += 1;
        }
        if let Some(h) = c.latency.as_mut() {
            h.saturating_record(micros);
        }
    }

    /// Counts a call by `agent` in this cohort, when the inventory of the
    /// artifact that evaluated it (this cohort's) has it with a cost
    /// envelope: only inventoried agents are counted, so the map holds at
    /// most one entry per agent of the inventory.
    pub fn record_agent(&self, inventory: &Inventory, agent: Option<&str>) {
        let Some((id, envelope)) = agent
            .and_then(|a| inventory.agent(a))
            .and_then(|a| a.cost.map(|c| (a.id.as_str(), c.calls_per_day)))
        else {
            return;
        };
        let mut c = self.lock();
        match c.agents.get_mut(id) {
            Some(entry) => entry.0 = entry.0.saturating_add(1),
            None => {
                c.agents.insert(id.to_string(), (1, envelope));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a shadow comparison of the stable decision with this
    /// (candidate) artifact's, each answered decision with its observed one
    /// (the policies' decision of a request in an observe scope): the pair
    /// of answers is counted, and when the answers agree but the decisions
    /// enforcement would answer (the observed one where there is one)
    /// differ, so is that.
    pub fn record_pair(
        &self,
        (stable, stable_observed): (DecisionKind, Option<DecisionKind>),
        (candidate, candidate_observed): (DecisionKind, Option<DecisionKind>),
    ) {
        let mut c = self.lock();
        if let Some(n) = c
            .pairs
            .get_mut(kind_index(stable))
            .and_then(|row| row.get_mut(kind_index(candidate)))
        {
            *n += 1;
        }
        if stable == candidate
            && stable_observed.unwrap_or(stable) != candidate_observed.unwrap_or(candidate)
        {
            c.observed_diverged += 1;
        }
    }

    /// The latency as Prometheus exposes it.
    pub fn prometheus_latency(&self) -> LatencyBuckets {
        self.prometheus.read()
    }

    /// The figures as reported.
    pub fn report(&self, stage: Option<&str>) -> CohortFigures {
        let c = self.lock();
        let (requests, errors) = (c.requests, c.errors);
        let count = |k: DecisionKind| c.decisions.get(kind_index(k)).copied().unwrap_or(0);
        let decisions = Decisions {
            allow: count(DecisionKind::Allow),
            modify: count(DecisionKind::Modify),
            require_approval: count(DecisionKind::RequireApproval),
            deny: count(DecisionKind::Deny),
        };
        let seen = |k: DecisionKind| c.observed.get(kind_index(k)).copied().unwrap_or(0);
        let observed = Decisions {
            allow: seen(DecisionKind::Allow),
            modify: seen(DecisionKind::Modify),
            require_approval: seen(DecisionKind::RequireApproval),
            deny: seen(DecisionKind::Deny),
        };
        let latency_ms = match c.latency.as_ref().filter(|h| !h.is_empty()) {
            Some(h) => Latency {
                p50: h.value_at_quantile(0.5) as f64 / 1000.0,
                p95: h.value_at_quantile(0.95) as f64 / 1000.0,
                p99: h.value_at_quantile(0.99) as f64 / 1000.0,
                max: h.max() as f64 / 1000.0,
                mean: h.mean() / 1000.0,
            },
            None => Latency::default(),
        };
        let histogram = c
            .latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(latency_buckets);
        let shadow = (self.cohort == Cohort::Shadow).then(|| {
            let mut compared = 0;
            let mut diverged = 0;
            let mut pairs = Vec::new();
            for (si, row) in c.pairs.iter().enumerate() {
                for (ci, &n) in row.iter().enumerate() {
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
            ShadowFigures {
                compared,
                diverged,
                divergence: ratio(diverged, compared),
                pairs,
                observed_diverged: c.observed_diverged,
            }
        });
        CohortFigures {
            artifact: self.artifact.clone(),
            cohort: self.cohort,
            stage: stage.map(str::to_string),
            requests,
            errors,
            failsafe: c.failsafe,
            error_rate: ratio(errors, requests),
            deny_rate: ratio(decisions.deny, requests),
            decisions,
            observed,
            latency_ms,
            histogram,
            shadow,
            agents: c
                .agents
                .iter()
                .map(|(agent, &(calls, calls_per_day))| AgentCalls {
                    agent: agent.clone(),
                    calls,
                    calls_per_day,
                })
                .collect(),
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

/// The upper bounds of the Prometheus latency buckets, in nanoseconds:
/// 5 µs to 1 s in 1-2.5-5 steps (a `+Inf` bucket follows).
const PROMETHEUS_BOUNDS_NS: [u64; 17] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// A latency histogram for Prometheus: fixed buckets, each an atomic
/// counter, and the exact sum of the observed latencies in nanoseconds.
/// Observing is lock free (two relaxed atomic additions); a reader may see
/// an observation in a bucket before it is in the sum, never a torn count.
#[derive(Debug, Default)]
pub struct PrometheusLatency {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; PROMETHEUS_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl PrometheusLatency {
    pub fn observe(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = PROMETHEUS_BOUNDS_NS.partition_point(|&b| b < ns);
        if let Some(c) = self.counts.get(bucket) {
            c.fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    pub fn read(&self) -> LatencyBuckets {
        let bounds = PROMETHEUS_BOUNDS_NS
            .iter()
            .map(|&ns| ns as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.counts)
            .map(|(le, c)| (le, c.load(Relaxed)))
            .collect();
        LatencyBuckets {
            count: buckets.iter().map(|b| b.1).sum(),
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

/// A Prometheus latency histogram as read: what `_bucket`, `_sum` and
/// `_count` show.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBuckets {
    /// `(upper bound in seconds, observations)` per bucket, not
    /// cumulative, ascending; the last bound is `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observed latencies, in seconds.
    pub sum_seconds: f64,
    /// The observations (the buckets' total).
    pub count: u64,
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
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

    /// Stable, then the candidate if any.
    pub fn cohorts(&self) -> impl Iterator<Item = &CohortStats> {
        std::iter::once(&self.stable).chain(self.candidate.as_ref())
    }

    pub fn reports(&self, stage: Option<&str>) -> Vec<CohortFigures> {
        self.cohorts().map(|c| c.report(stage)).collect()
    }
}
