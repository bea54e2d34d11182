//! The daemon's `GET /metrics` (Prometheus text, encoded by
//! `prometheus-client`) and `GET /readyz`.
//!
//! | family | type | labels | from |
//! |---|---|---|---|
//! | `sluice_daemon_transitions_total` | counter | `event` | every audit event since start (rollouts by outcome: `complete`, `rollback`, `refuse`, `cancel`, `supersede`) |
//! | `sluice_daemon_stage_seconds` | histogram | `stage` | time spent in a phase, observed when the rollout leaves it |
//! | `sluice_daemon_gate_estimate` / `_gate_limit` | gauge | `gate` | the candidate's last stage decision |
//! | `sluice_daemon_fetch_age_seconds` | gauge | | time since the last successful fetch |
//! | `sluice_daemon_fetch_failing` | gauge | | 1 while the last fetch failed |
//! | `sluice_daemon_engines` | gauge | `state` (`on_route`, `off_route`, `unreachable`) | the engines as last seen |
//! | `sluice_daemon_reverts_pending` | gauge | | reverts not landed yet |
//! | `sluice_daemon_paused` | gauge | | 1 while paused |
//! | `sluice_daemon_notifications_total` | counter | `outcome` (`delivered`, `failed`) | deliveries, with `--notify` |
//!
//! The counters are fed by the loop's event broadcast; the gauges are read
//! from the status document when the scrape comes. Encoding reads; it never
//! waits on the loop.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::api::audit::Transition;
use crate::api::status::Status;

/// The upper bounds of the stage-duration buckets, in seconds.
const STAGE_BUCKETS: [f64; 10] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// Seconds spent in one phase, bucketed.
#[derive(Debug, Clone, Default)]
struct Durations {
    count: u64,
    sum: f64,
    /// Cumulative counts per [`STAGE_BUCKETS`] bound.
    buckets: [u64; STAGE_BUCKETS.len()],
}

impl Durations {
    fn observe(&mut self, secs: f64) {
        self.count += 1;
        self.sum += secs;
        for (b, bound) in self.buckets.iter_mut().zip(STAGE_BUCKETS) {
            if secs <= bound {
                *b += 1;
            }
        }
    }
}

/// What the event broadcast has told so far.
#[derive(Debug, Default)]
struct Counts {
    events: BTreeMap<String, u64>,
    stages: BTreeMap<String, Durations>,
    /// The phase the last transition went to, and since when (ms).
    phase: Option<(String, u64)>,
}

/// The daemon's figures since start.
#[derive(Debug, Default)]
pub struct Tally(Mutex<Counts>);

impl Tally {
    /// Counts one audit event.
    pub fn record(&self, t: &Transition) {
        let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *c.events.entry(t.event.clone()).or_default() += 1;
        if t.from != t.to {
            if let Some((phase, since)) = c.phase.take()
                && phase == t.from
            {
                let secs = t.time_ms.saturating_sub(since) as f64 / 1000.0;
                c.stages.entry(phase).or_default().observe(secs);
            }
            c.phase = Some((t.to.clone(), t.time_ms));
        } else if c.phase.is_none() {
            c.phase = Some((t.to.clone(), t.time_ms));
        }
    }

    /// Counts the events of `events` until it closes or `shutdown`.
    pub async fn follow(
        self: Arc<Tally>,
        mut events: broadcast::Receiver<Transition>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                t = events.recv() => match t {
                    Ok(t) => self.record(&t),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// The Prometheus text of the tally and of `status`.
    pub fn encode(&self, status: &Status) -> Result<String, fmt::Error> {
        let counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let scrape = Scrape {
            events: counts.events.clone(),
            stages: counts.stages.clone(),
            status: status.clone(),
        };
        drop(counts);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::with_capacity(2048);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

#[derive(Debug)]
struct Scrape {
    events: BTreeMap<String, u64>,
    stages: BTreeMap<String, Durations>,
    status: Status,
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// Seconds since `rfc3339`, when it reads.
fn age(rfc3339: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(rfc3339).ok()?;
    Some(
        SystemTime::now()
            .duration_since(t)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64(),
    )
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let mut family = e.encode_descriptor(
            "sluice_daemon_transitions",
            "Audit events since the daemon started, by event.",
            None,
            MetricType::Counter,
        )?;
        for (event, n) in &self.events {
            ConstCounter::new(*n).encode(family.encode_family(&[("event", event.as_str())])?)?;
        }

        let mut family = e.encode_descriptor(
            "sluice_daemon_stage_seconds",
            "Time spent in a phase, observed when the rollout leaves it.",
            None,
            MetricType::Histogram,
        )?;
        for (stage, d) in &self.stages {
            let buckets: Vec<(f64, u64)> = STAGE_BUCKETS
                .iter()
                .zip(d.buckets)
                .map(|(b, n)| (*b, n))
                .collect();
            family
                .encode_family(&[("stage", stage.as_str())])?
                .encode_histogram::<NoLabelSet>(d.sum, d.count, &buckets, None)?;
        }

        let gates = self
            .status
            .candidate
            .as_ref()
            .map(|c| c.gates.as_slice())
            .unwrap_or_default();
        for (name, help, value) in [
            (
                "sluice_daemon_gate_estimate",
                "The candidate's last reading of each gate of its stage.",
                (|g: &crate::api::gate::GateReading| g.estimate) as fn(&_) -> f64,
            ),
            (
                "sluice_daemon_gate_limit",
                "The limit of each gate of the candidate's stage.",
                |g: &crate::api::gate::GateReading| g.limit,
            ),
        ] {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for g in gates {
                ConstGauge::new(value(g))
                    .encode(family.encode_family(&[("gate", g.gate.as_str())])?)?;
            }
        }

        if let Some(a) = self.status.fetched.as_deref().and_then(age) {
            gauge(
                &mut e,
                "sluice_daemon_fetch_age_seconds",
                "Seconds since the branch was last fetched.",
                a,
            )?;
        }
        gauge(
            &mut e,
            "sluice_daemon_fetch_failing",
            "1 while the last fetch of the branch failed.",
            f64::from(u8::from(self.status.git_error.is_some())),
        )?;
        let mut family = e.encode_descriptor(
            "sluice_daemon_engines",
            "The engines as last seen, by state.",
            None,
            MetricType::Gauge,
        )?;
        let engines = &self.status.engines;
        for (state, n) in [
            (
                "on_route",
                engines.iter().filter(|x| x.reachable && x.on_route).count(),
            ),
            (
                "off_route",
                engines
                    .iter()
                    .filter(|x| x.reachable && !x.on_route)
                    .count(),
            ),
            (
                "unreachable",
                engines.iter().filter(|x| !x.reachable).count(),
            ),
        ] {
            ConstGauge::new(n as f64).encode(family.encode_family(&[("state", state)])?)?;
        }
        gauge(
            &mut e,
            "sluice_daemon_reverts_pending",
            "Reverts not landed on the branch yet.",
            self.status.reverts.len() as f64,
        )?;
        gauge(
            &mut e,
            "sluice_daemon_paused",
            "1 while the rollout is paused.",
            f64::from(u8::from(self.status.paused.is_some())),
        )?;
        if let Some(n) = &self.status.notifications {
            let mut family = e.encode_descriptor(
                "sluice_daemon_notifications",
                "Notifications by outcome.",
                None,
                MetricType::Counter,
            )?;
            for (outcome, v) in [("delivered", n.delivered), ("failed", n.failed)] {
                ConstCounter::new(v).encode(family.encode_family(&[("outcome", outcome)])?)?;
            }
        }
        Ok(())
    }
}

/// `GET /readyz`: whether the daemon can do its job now, and if not why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// What is wrong, one sentence each; empty when ready.
    pub problems: Vec<String>,
}

/// Readiness from the status: the branch fetched within `stale` and the
/// last fetch good, every engine answering, no revert stopped for an
/// operator.
pub fn readiness(status: &Status, stale: Duration) -> Readiness {
    let mut problems = Vec::new();
    match status.fetched.as_deref().and_then(age) {
        None => problems.push("the branch has not been fetched yet".to_string()),
        Some(a) if a > stale.as_secs_f64() => problems.push(format!(
            "the branch was last fetched {a:.0}s ago (more than {}s)",
            stale.as_secs()
        )),
        Some(_) => {}
    }
    if let Some(e) = &status.git_error {
        problems.push(format!("fetching fails: {e}"));
    }
    if status.engines.is_empty() {
        problems.push("no engine has been read yet".to_string());
    }
    for e in status.engines.iter().filter(|e| !e.reachable) {
        problems.push(format!("engine {} does not answer", e.url));
    }
    for r in &status.reverts {
        if let Some(why) = &r.stuck {
            problems.push(format!(
                "the revert of {} is stopped: {why}",
                crate::model::short::commit(&r.commit)
            ));
        }
    }
    Readiness {
        ready: problems.is_empty(),
        problems,
    }
}
