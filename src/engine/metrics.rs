//! `GET /metrics`: the engine's figures in the Prometheus text format
//! (version 0.0.4), encoded by `prometheus-client` from one [`Scrape`], a
//! snapshot read when the scrape comes.
//!
//! The families, each labelled `artifact`, `cohort` and `stage` unless said:
//!
//! | family | type | extra labels |
//! |---|---|---|
//! | `sluice_requests_total` | counter | |
//! | `sluice_errors_total` | counter | |
//! | `sluice_failsafe_total` | counter | |
//! | `sluice_decisions_total` | counter | `decision` |
//! | `sluice_observed_total` | counter | `decision` (the policies' decision of a request in the observe scope, answered `allow`) |
//! | `sluice_latency_seconds` | histogram (`_bucket`, `_sum`, `_count`) | `le` |
//! | `sluice_shadow_divergences_total` | counter | `stable`, `candidate` |
//! | `sluice_shadow_compared_total` | counter | |
//! | `sluice_route_version` | gauge | `stage` only |
//! | `sluice_shadow_dropped_total` | counter | none |
//! | `sluice_decision_log_dropped_total` | counter | none |
//! | `sluice_limit_keys_refused_total` | counter | none |
//! | `sluice_breaker_state` | gauge | `artifact`, `state` only |
//! | `sluice_agent_calls_today` | gauge | `agent` only: an inventoried agent's calls this UTC day |
//! | `sluice_agent_calls_per_day` | gauge | `agent` only: its cost envelope (agents with one) |
//!
//! The cohort families are written only once a route is in force, and
//! count since the route last changed. Encoding reads the snapshot only: it
//! changes no figure and takes no lock of the request path.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::api::stats::{AgentFigures, BreakerFigure, BreakerState, CohortFigures, Decisions};
use crate::engine::stats::LatencyBuckets;
use crate::model::ir::DecisionKind;

/// The `Content-Type` of [`Scrape::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Everything one scrape shows, read once.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The route's cohorts (empty before the first route), each with its
    /// latency in Prometheus buckets.
    pub cohorts: Vec<(CohortFigures, LatencyBuckets)>,
    /// Route changes since start (0 before the first route).
    pub route_version: u64,
    /// The route's stage (empty when it names none).
    pub stage: String,
    /// Shadow evaluations dropped since start.
    pub shadow_dropped: u64,
    /// Decision log lines dropped since start.
    pub decision_log_dropped: u64,
    /// Requests refused for a new limit key at the cap, since start.
    pub limit_keys_refused: u64,
    /// Every artifact held, with its breaker's state.
    pub breakers: Vec<BreakerFigure>,
    /// The stable artifact's inventoried agents, with their calls today.
    pub agents: Vec<AgentFigures>,
}

impl Scrape {
    /// The Prometheus text.
    pub fn encode(self) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// The labels of one cohort's series.
fn cohort_labels(c: &CohortFigures) -> [(&'static str, &str); 3] {
    [
        ("artifact", c.artifact.as_str()),
        ("cohort", c.cohort.as_str()),
        ("stage", c.stage.as_deref().unwrap_or("")),
    ]
}

/// A counter family of the cohorts: its name (without `_total`, which the
/// encoder adds), its help line and how to read it.
type CohortCounter = (&'static str, &'static str, fn(&CohortFigures) -> u64);

const COHORT_COUNTERS: [CohortCounter; 3] = [
    (
        "sluice_requests",
        "Evaluations since the route last changed.",
        |c| c.requests,
    ),
    (
        "sluice_errors",
        "Evaluations that failed since the route last changed.",
        |c| c.errors,
    ),
    (
        "sluice_failsafe",
        "Decisions that were the tier failsafe since the route last changed.",
        |c| c.failsafe,
    ),
];

/// A counter family of the cohorts by decision: its name, its help line
/// and which of the cohort's decision counts it reads.
type DecisionCounter = (&'static str, &'static str, fn(&CohortFigures) -> &Decisions);

const DECISION_COUNTERS: [DecisionCounter; 2] = [
    (
        "sluice_decisions",
        "Decisions by kind since the route last changed.",
        |c| &c.decisions,
    ),
    (
        "sluice_observed",
        "Requests in the observe scope (answered allow) by the decision the policies reached, since the route last changed.",
        |c| &c.observed,
    ),
];

const DECISIONS: [DecisionKind; 4] = [
    DecisionKind::Allow,
    DecisionKind::Modify,
    DecisionKind::RequireApproval,
    DecisionKind::Deny,
];

impl Scrape {
    fn encode_cohorts(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        for (name, help, value) in COHORT_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (c, _) in &self.cohorts {
                ConstCounter::new(value(c)).encode(family.encode_family(&cohort_labels(c))?)?;
            }
        }

        for (name, help, decisions) in DECISION_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (c, _) in &self.cohorts {
                for kind in DECISIONS {
                    let labels = (cohort_labels(c), [("decision", kind.as_str())]);
                    ConstCounter::new(decisions(c).of(kind))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "sluice_latency_seconds",
            "Evaluation latency since the route last changed.",
            None,
            MetricType::Histogram,
        )?;
        for (c, latency) in &self.cohorts {
            family
                .encode_family(&cohort_labels(c))?
                .encode_histogram::<NoLabelSet>(
                    latency.sum_seconds,
                    latency.count,
                    &latency.buckets,
                    None,
                )?;
        }

        let mut family = encoder.encode_descriptor(
            "sluice_shadow_divergences",
            "Shadow evaluations whose decision differs from stable's, by pair.",
            None,
            MetricType::Counter,
        )?;
        for (c, _) in &self.cohorts {
            for p in c.shadow.iter().flat_map(|s| &s.pairs) {
                let labels = (
                    cohort_labels(c),
                    [
                        ("stable", p.stable.as_str()),
                        ("candidate", p.candidate.as_str()),
                    ],
                );
                ConstCounter::new(p.count).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "sluice_shadow_compared",
            "Shadow evaluations compared with stable.",
            None,
            MetricType::Counter,
        )?;
        for (c, _) in &self.cohorts {
            if let Some(s) = &c.shadow {
                ConstCounter::new(s.compared).encode(family.encode_family(&cohort_labels(c))?)?;
            }
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        if !self.cohorts.is_empty() {
            self.encode_cohorts(&mut encoder)?;
        }

        let mut family = encoder.encode_descriptor(
            "sluice_route_version",
            "Route changes since the engine started.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.route_version)
            .encode(family.encode_family(&[("stage", self.stage.as_str())])?)?;

        ConstCounter::new(self.shadow_dropped).encode(encoder.encode_descriptor(
            "sluice_shadow_dropped",
            "Shadow evaluations dropped because the queue was full.",
            None,
            MetricType::Counter,
        )?)?;

        ConstCounter::new(self.decision_log_dropped).encode(encoder.encode_descriptor(
            "sluice_decision_log_dropped",
            "Decision log lines dropped because the queue was full.",
            None,
            MetricType::Counter,
        )?)?;

        ConstCounter::new(self.limit_keys_refused).encode(encoder.encode_descriptor(
            "sluice_limit_keys_refused",
            "Requests refused because their limit key would have been new in a limit at --max-limit-keys.",
            None,
            MetricType::Counter,
        )?)?;

        let mut family = encoder.encode_descriptor(
            "sluice_breaker_state",
            "Circuit breaker state per artifact (1 for the current state).",
            None,
            MetricType::Gauge,
        )?;
        for b in &self.breakers {
            for state in BreakerState::ALL {
                let labels = [("artifact", b.artifact.as_str()), ("state", state.as_str())];
                ConstGauge::new(i64::from(b.state == state))
                    .encode(family.encode_family(&labels)?)?;
            }
        }

        if !self.agents.is_empty() {
            let mut family = encoder.encode_descriptor(
                "sluice_agent_calls_today",
                "An inventoried agent's calls this UTC day.",
                None,
                MetricType::Gauge,
            )?;
            for a in &self.agents {
                let calls = i64::try_from(a.calls).unwrap_or(i64::MAX);
                ConstGauge::new(calls)
                    .encode(family.encode_family(&[("agent", a.agent.as_str())])?)?;
            }
            let mut family = encoder.encode_descriptor(
                "sluice_agent_calls_per_day",
                "An inventoried agent's cost envelope: the calls a day it is expected to make.",
                None,
                MetricType::Gauge,
            )?;
            for a in &self.agents {
                if let Some(e) = a.calls_per_day {
                    let e = i64::try_from(e).unwrap_or(i64::MAX);
                    ConstGauge::new(e)
                        .encode(family.encode_family(&[("agent", a.agent.as_str())])?)?;
                }
            }
        }
        Ok(())
    }
}
