//! Route changes: a new route put in force atomically, with the state
//! migrations the change implies (SPEC §3 `state::`): limit counters
//! carried, reset or frozen, and waiting approvals the new route no longer
//! covers resolved.
//!
//! Planning is [`crate::engine::migrate`]'s (pure); this applies the plan to
//! the engine's stores and logs every migration. Requests in flight are
//! never waited for: they finish on the route they loaded.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::approvals::{Approval, Verdict};
use crate::api::route::LeaseInForce;
use crate::api::route::{Cohort, Matcher, Mode, RouteSpec};
use crate::engine::approvals::DecideError;
use crate::engine::backend::Saturated;
use crate::engine::decision_log::{EventLine, LogLine};
use crate::engine::error::{RouteChangeError, StoreError};
use crate::engine::migrate::{Migration, limits_in_force, plan_limits};
use crate::engine::server::{Active, Engine};
use crate::engine::stats::RouteStats;
use crate::eval::state::LimitStore as _;
use crate::eval::{Evaluator, LimitMode, Outcome};
use crate::model::ir::{DecisionKind, Effect};

/// What `PUT /v1/route` answers.
#[derive(Debug, Clone, Serialize)]
pub struct RouteChange {
    pub version: u64,
    pub route: RouteSpec,
    /// The state migrations the change applied.
    pub migrations: Vec<Migration>,
    /// The caller's lease, renewed by the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseInForce>,
}

impl Engine {
    /// Sets the route without fencing (no owner, no lease): for the
    /// engine's own start (`sluice engine --artifact`) and embedders.
    /// Over HTTP every change is fenced ([`Engine::claim_route`]).
    pub fn set_route(&self, spec: RouteSpec) -> Result<RouteChange, RouteChangeError> {
        let _serial = self.fence();
        self.apply_route(spec)
    }

    /// Puts a route in force and applies the state migrations the change
    /// implies. The caller holds the fence (route changes are serial).
    pub(super) fn apply_route(&self, spec: RouteSpec) -> Result<RouteChange, RouteChangeError> {
        let spec = spec.normalize()?;
        // The route in force sent again: nothing changes (no new version,
        // no stats reset, no migration).
        if let Some(old) = self.route.load_full().as_ref()
            && old.spec == spec
        {
            return Ok(RouteChange {
                version: old.version,
                route: spec,
                migrations: Vec::new(),
                lease: None,
            });
        }
        let missing = |role: &'static str, hash: &str| RouteChangeError::NotHeld {
            role,
            hash: hash.to_string(),
        };
        let stable = self
            .held(&spec.stable)
            .ok_or_else(|| missing("stable", &spec.stable))?;
        let candidate = match &spec.candidate {
            Some(c) => Some(self.held(c).ok_or_else(|| missing("candidate", c))?),
            None => None,
        };
        if let Some(c) = &candidate {
            for held in [&stable, c] {
                let schema = held.evaluator.schema();
                let fields = std::iter::once(spec.hash_key.as_str())
                    .chain(spec.match_.keys().map(String::as_str));
                for f in fields {
                    if schema.get(f).is_none() {
                        let what = if f == spec.hash_key {
                            "hash_key"
                        } else {
                            "match"
                        };
                        return Err(RouteChangeError::UnknownField {
                            what,
                            field: f.to_string(),
                            artifact: held.hash().to_string(),
                        });
                    }
                }
            }
        }
        let now = self.now_secs();
        let old = self.route.load_full();
        let version = old.as_ref().map_or(1, |o| o.version + 1);
        let stats = RouteStats::new(
            &spec.stable,
            candidate.as_ref().zip(spec.mode).map(|(c, m)| {
                (
                    c.hash(),
                    match m {
                        Mode::Shadow => Cohort::Shadow,
                        Mode::Split => Cohort::Candidate,
                    },
                )
            }),
        );
        let new = Arc::new(Active {
            version,
            matcher: Matcher::new(&spec),
            spec: spec.clone(),
            since: now,
            stable,
            candidate,
            stats,
        });

        let mut migrations = Vec::new();
        if let Some(old) = &old {
            let before = limits_in_force(old.stable.evaluator.artifact(), old.split_candidate());
            let after = limits_in_force(new.stable.evaluator.artifact(), new.split_candidate());
            if before != after {
                let counters = self.limits.entries().map_err(StoreError::ReadCounters)?;
                let plan = plan_limits(&before, &after, &counters, &self.limits.overrides(), now);
                for limit in &plan.drop {
                    self.limits
                        .remove_limit(limit)
                        .map_err(StoreError::DropCounters)?;
                }
                self.limits.apply(&plan, now);
                migrations = plan.migrations;
            }
        }
        self.route.store(Some(Arc::clone(&new)));
        if old
            .as_ref()
            .is_some_and(|o| o.enforcing() != new.enforcing())
        {
            migrations.extend(self.migrate_approvals(&new, now)?);
        }

        self.log.send(LogLine::Route(EventLine::now(json!({
            "version": version,
            "route": &spec,
        }))));
        for m in &migrations {
            tracing::info!(migration = ?m, "state migration");
            if let Ok(Value::Object(mut event)) = serde_json::to_value(m) {
                event.insert("route_version".to_string(), json!(version));
                self.log
                    .send(LogLine::Migration(EventLine::now(Value::Object(event))));
            }
        }
        Ok(RouteChange {
            version,
            route: spec,
            migrations,
            lease: None,
        })
    }

    /// Resolves waiting requests whose rule the new route no longer has, or
    /// no longer covers them.
    fn migrate_approvals(&self, route: &Active, now: u64) -> Result<Vec<Migration>, StoreError> {
        let store = self.backend.approvals();
        let pending = store.pending().map_err(StoreError::ReadApprovals)?;
        let mut out = Vec::new();
        for p in pending {
            let (cohort, _) = route.route(&p.request);
            let Some(reason) = uncovered(&route.held(cohort).evaluator, &p, now) else {
                continue;
            };
            match store.decide(&p.id, Verdict::Reject, "sluice", Some(reason), now) {
                Ok(_) | Err(DecideError::NotFound(_) | DecideError::AlreadyDecided { .. }) => {}
                Err(e) => return Err(StoreError::ResolveApproval(e)),
            }
            out.push(Migration::ApprovalResolved {
                id: p.id,
                policy: p.policy,
                rule: p.rule,
                reason: reason.to_string(),
            });
        }
        Ok(out)
    }
}

/// Why a waiting request is no longer covered by `ev` (`None`: it is).
fn uncovered(ev: &Evaluator, p: &Approval, now: u64) -> Option<&'static str> {
    let asks = |e: &Effect| matches!(e, Effect::RequireApproval { .. });
    let exists = ev.artifact().policies.iter().any(|pol| {
        pol.name == p.policy
            && (pol
                .rules
                .iter()
                .any(|r| r.name == p.rule && asks(&r.effect))
                || pol
                    .limits
                    .iter()
                    .any(|l| l.name == p.rule && asks(&l.exceed)))
    });
    if !exists {
        return Some("rule removed");
    }
    let Ok(req) = ev.decode(&p.request) else {
        return Some("rule narrowed");
    };
    let mut out = Outcome::default();
    if ev
        .evaluate_into(&req, now, &Saturated, LimitMode::DryRun, &mut out)
        .is_err()
    {
        return Some("rule narrowed");
    }
    let covered = ev.reasons(&out).any(|r| {
        r.policy == p.policy && r.rule == p.rule && r.decision() == DecisionKind::RequireApproval
    });
    (!covered).then_some("rule narrowed")
}
