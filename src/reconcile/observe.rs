//! The fleet's figures: every engine's `GET /v1/stats` summed into one
//! [`Observation`] for the stage decision. Pure.
//!
//! Counts (requests, errors, denies, shadow comparisons, an inventoried
//! agent's calls in the candidate cohort) add up exactly. A shadow
//! comparison diverges when the answers differ, or when they agree but
//! what enforcement would answer differs (an observe scope on either side:
//! `observed_diverged`), so `max_divergence` sees a candidate that changes
//! what the policies decide inside an observe scope.
//! A p99 latency does not: the engines' latency histograms (`histogram` in
//! each cohort of `GET /v1/stats`, buckets with the same bounds on every
//! engine) are merged and the p99 with its 95% bounds is read at the ranks
//! [`gate::quantile_bounds`] gives. When an engine reports no buckets (an
//! older build), the fleet's p99 is approximated: the request-weighted mean
//! of the engines' p99s, bounded below by the smallest and above by the
//! largest (an engine with fewer than 100 requests in the cohort
//! contributes its maximum instead, its p99 being no better known).

use std::collections::BTreeMap;

use crate::api::gate::{AgentCalls, Cohort, Observation, Quantile};
use crate::api::route::{self, Mode, RouteSpec};
use crate::api::stats::{CohortFigures, EngineStats};
use crate::rollout::gate::{self, Z95};

/// Whether an engine's figures belong to the route `desired`.
pub fn stats_match(stats: &EngineStats, desired: &RouteSpec) -> bool {
    stats.route.as_ref().is_some_and(|r| {
        r.stable == desired.stable && r.candidate == desired.candidate && r.stage == desired.stage
    })
}

/// Sums the figures of the engines (each already on `desired`).
pub fn sum(desired: &RouteSpec, engines: &[&EngineStats]) -> Observation {
    let candidate_cohort = match desired.mode {
        Some(Mode::Shadow) => route::Cohort::Shadow,
        _ => route::Cohort::Candidate,
    };
    let pick = |cohort: route::Cohort, artifact: Option<&str>| -> Vec<&CohortFigures> {
        engines
            .iter()
            .flat_map(|s| s.cohorts.iter())
            .filter(|c| c.cohort == cohort && Some(c.artifact.as_str()) == artifact)
            .collect()
    };
    let cand = pick(candidate_cohort, desired.candidate.as_deref());
    let stable = pick(route::Cohort::Stable, Some(desired.stable.as_str()));
    let (compared, diverged) = cand
        .iter()
        .filter_map(|c| c.shadow.as_ref())
        .fold((0, 0), |(a, b), s| {
            (a + s.compared, b + s.diverged + s.observed_diverged)
        });
    Observation {
        candidate: cohort(&cand),
        stable: cohort(&stable),
        compared,
        diverged,
        agents: agent_calls(&cand),
    }
}

/// The cohort's calls per inventoried agent, summed over the engines, by
/// id. Every part is the same artifact, so an agent's envelope is the same
/// in each; the first one read is kept.
fn agent_calls(parts: &[&CohortFigures]) -> Vec<AgentCalls> {
    let mut by_agent: BTreeMap<&str, AgentCalls> = BTreeMap::new();
    for a in parts.iter().flat_map(|c| c.agents.iter()) {
        by_agent
            .entry(a.agent.as_str())
            .and_modify(|e| e.calls = e.calls.saturating_add(a.calls))
            .or_insert_with(|| a.clone());
    }
    by_agent.into_values().collect()
}

fn cohort(parts: &[&CohortFigures]) -> Cohort {
    Cohort {
        requests: parts.iter().map(|c| c.requests).sum(),
        errors: parts.iter().map(|c| c.errors).sum(),
        denies: parts.iter().map(|c| c.decisions.deny).sum(),
        p99_ms: p99(parts),
    }
}

fn p99(parts: &[&CohortFigures]) -> Option<Quantile> {
    let parts: Vec<&&CohortFigures> = parts.iter().filter(|c| c.requests > 0).collect();
    if parts.is_empty() {
        return None;
    }
    if parts.iter().all(|c| c.histogram.is_some()) {
        let mut buckets: Vec<(f64, u64)> = parts
            .iter()
            .filter_map(|c| c.histogram.as_ref())
            .flatten()
            .copied()
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n: u64 = buckets.iter().map(|b| b.1).sum();
        if n > 0 {
            let (lo_q, hi_q) = gate::quantile_bounds(n, 0.99, Z95);
            let at = |q: f64| {
                let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
                let mut seen = 0;
                for (upper, count) in &buckets {
                    seen += count;
                    if seen >= rank {
                        return *upper;
                    }
                }
                buckets.last().map_or(0.0, |b| b.0)
            };
            return Some(Quantile {
                estimate: at(0.99),
                lo: at(lo_q),
                hi: at(hi_q),
            });
        }
    }
    let n: u64 = parts.iter().map(|c| c.requests).sum();
    let estimate = parts
        .iter()
        .map(|c| c.latency_ms.p99 * c.requests as f64)
        .sum::<f64>()
        / n as f64;
    let lo = parts
        .iter()
        .map(|c| c.latency_ms.p99)
        .fold(f64::INFINITY, f64::min);
    let hi = parts
        .iter()
        .map(|c| {
            if c.requests < 100 {
                c.latency_ms.max.max(c.latency_ms.p99)
            } else {
                c.latency_ms.p99
            }
        })
        .fold(0.0, f64::max);
    Some(Quantile { estimate, lo, hi })
}
