//! The engine's figures as documents: `GET /v1/stats`
//! ([`EngineStats`]) and `GET /metrics` (a [`Scrape`]), read from the
//! route's stats, the shadow and decision-log counters and the breakers.
//!
//! Read-only: writing a report changes no figure.

use std::sync::atomic::Ordering::Relaxed;

use crate::api::stats::{BreakerFigure, DecisionLogFigures, EngineStats, StatsRoute};
use crate::engine::metrics::Scrape;
use crate::engine::server::Engine;

impl Engine {
    /// The `GET /v1/stats` document.
    pub fn stats(&self) -> EngineStats {
        let route = self.route.load_full();
        EngineStats {
            route: route.as_ref().map(|r| StatsRoute {
                version: r.version,
                since: r.since,
                stable: r.spec.stable.clone(),
                candidate: r.spec.candidate.clone(),
                mode: r.spec.mode,
                percent: r.spec.percent,
                stage: r.spec.stage.clone(),
            }),
            cohorts: route
                .as_ref()
                .map(|r| r.stats.reports(r.spec.stage.as_deref()))
                .unwrap_or_default(),
            shadow_dropped: route
                .as_ref()
                .map_or(0, |r| r.stats.shadow_dropped.load(Relaxed)),
            shadow_dropped_total: self.shadow.dropped(),
            limit_keys_refused: self.keys_refused(),
            decision_log: DecisionLogFigures {
                written: self.log.written(),
                dropped: self.log.dropped(),
            },
            breakers: self.breakers(),
            agents: self.agent_figures(route.as_deref()),
        }
    }

    /// The stable artifact's inventoried agents with their calls today.
    fn agent_figures(
        &self,
        route: Option<&crate::engine::server::Active>,
    ) -> Vec<crate::api::stats::AgentFigures> {
        match route {
            Some(r) => self
                .agent_calls
                .report(&r.stable.evaluator.artifact().inventory, self.now_secs()),
            None => Vec::new(),
        }
    }

    /// What `GET /metrics` shows, read now.
    pub fn scrape(&self) -> Scrape {
        let route = self.route.load_full();
        Scrape {
            cohorts: route
                .as_ref()
                .map(|r| {
                    let stage = r.spec.stage.as_deref();
                    r.stats
                        .cohorts()
                        .map(|c| (c.report(stage), c.prometheus_latency()))
                        .collect()
                })
                .unwrap_or_default(),
            route_version: route.as_ref().map_or(0, |r| r.version),
            stage: route
                .as_ref()
                .and_then(|r| r.spec.stage.clone())
                .unwrap_or_default(),
            shadow_dropped: self.shadow.dropped(),
            decision_log_dropped: self.log.dropped(),
            limit_keys_refused: self.keys_refused(),
            breakers: self.breakers(),
            agents: self.agent_figures(route.as_deref()),
        }
    }

    fn keys_refused(&self) -> u64 {
        self.backend.keys_refused()
    }

    fn breakers(&self) -> Vec<BreakerFigure> {
        self.artifacts()
            .into_iter()
            .map(|a| BreakerFigure {
                artifact: a.hash,
                state: a.breaker,
            })
            .collect()
    }
}
