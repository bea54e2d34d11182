//! The engine's figures as documents: `GET /v1/stats` (JSON) and
//! `GET /metrics` (Prometheus text), read from the route's stats, the
//! shadow and decision-log counters and the breakers.
//!
//! Read-only: writing a report changes no figure.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Value, json};

use crate::engine::breaker::BreakerState;
use crate::engine::server::Engine;
use crate::engine::stats::{label, write_prometheus};

impl Engine {
    /// The `GET /v1/stats` document.
    pub fn stats(&self) -> Value {
        let route = self.route.load_full();
        let cohorts = route
            .as_ref()
            .map(|r| r.stats.reports(r.spec.stage.as_deref()))
            .unwrap_or_default();
        json!({
            "route": route.as_ref().map(|r| json!({
                "version": r.version,
                "since": r.since,
                "stable": r.spec.stable,
                "candidate": r.spec.candidate,
                "mode": r.spec.mode,
                "percent": r.spec.percent,
                "stage": r.spec.stage,
            })),
            "cohorts": cohorts,
            "shadow_dropped": route.as_ref().map_or(0, |r| r.stats.shadow_dropped.load(Relaxed)),
            "shadow_dropped_total": self.shadow.dropped(),
            "decision_log": {"written": self.log.written(), "dropped": self.log.dropped()},
            "breakers": self.artifacts().iter().map(|a| json!({
                "artifact": a.hash, "state": a.breaker,
            })).collect::<Vec<_>>(),
        })
    }

    /// The `GET /metrics` text.
    pub fn metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        let route = self.route.load_full();
        if let Some(r) = &route {
            write_prometheus(&mut out, &r.stats.reports(r.spec.stage.as_deref()));
        }
        let stage = route
            .as_ref()
            .and_then(|r| r.spec.stage.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP sluice_route_version Route changes since the engine started.\n# TYPE sluice_route_version gauge\nsluice_route_version{{stage=\"{}\"}} {}",
            label(&stage),
            route.as_ref().map_or(0, |r| r.version)
        );
        let _ = writeln!(
            out,
            "# HELP sluice_shadow_dropped_total Shadow evaluations dropped because the queue was full.\n# TYPE sluice_shadow_dropped_total counter\nsluice_shadow_dropped_total {}",
            self.shadow.dropped()
        );
        let _ = writeln!(
            out,
            "# HELP sluice_decision_log_dropped_total Decision log lines dropped because the queue was full.\n# TYPE sluice_decision_log_dropped_total counter\nsluice_decision_log_dropped_total {}",
            self.log.dropped()
        );
        let _ = writeln!(
            out,
            "# HELP sluice_breaker_state Circuit breaker state per artifact (1 for the current state).\n# TYPE sluice_breaker_state gauge"
        );
        for a in self.artifacts() {
            for s in [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen,
            ] {
                let _ = writeln!(
                    out,
                    "sluice_breaker_state{{artifact=\"{}\",state=\"{}\"}} {}",
                    label(&a.hash),
                    s.as_str(),
                    u8::from(a.breaker == s)
                );
            }
        }
        out
    }
}
