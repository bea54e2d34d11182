//! Route changes: a new route put in force atomically, with the state
//! migrations the change implies (SPEC §3 `state::`): limit counters
//! carried, reset or frozen, and waiting approvals the new route no longer
//! covers resolved.
//!
//! Planning is [`crate::engine::migrate`]'s (pure); this applies the plan to
//! the engine's state backend and logs every migration. Requests in flight
//! are never waited for: they finish on the route they loaded.
//!
//! **Once per fleet.** Engines that share a backend each get the same route
//! change from the daemon. The limit migration is claimed in the backend
//! under the digests of the limits in force before and after
//! ([`crate::engine::migrate::limits_digest`]): the first engine applies it
//! (drops counters, sets next_window graces, which live in the backend and
//! so hold for every engine); the others record that it was applied
//! (`applied_elsewhere`) and change nothing, so counts made in between on
//! the new route are never dropped twice. Waiting approvals a change no
//! longer covers are rejected by whichever engine gets there first: a
//! decision is recorded once.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::approvals::{Approval, Verdict};
use crate::api::route::LeaseInForce;
use crate::api::route::{Cohort, Matcher, Mode, RouteSpec};
use crate::engine::approvals::DecideError;
use crate::engine::backend::{Decision, Saturated};
use crate::engine::decision_log::{EventLine, LogLine};
use crate::engine::error::{RouteChangeError, StoreError};
use crate::engine::migrate::{Migration, limits_digest, limits_in_force, plan_limits};
use crate::engine::server::{Active, Engine};
use crate::engine::stats::RouteStats;
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
    pub async fn set_route(&self, spec: RouteSpec) -> Result<RouteChange, RouteChangeError> {
        let _serial = self.fence().await;
        self.apply_route(spec).await
    }

    /// Puts a route in force and applies the state migrations the change
    /// implies. The caller holds the fence (route changes are serial, and
    /// the fence stays held across the awaited migrations).
    pub(super) async fn apply_route(
        &self,
        spec: RouteSpec,
    ) -> Result<RouteChange, RouteChangeError> {
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

        self.backend
            .bind_project(&new.stable.evaluator.artifact().project);
        let mut migrations = Vec::new();
        let mut limits_moved = false;
        if let Some(old) = &old {
            let before = limits_in_force(old.stable.evaluator.artifact(), old.split_candidate());
            let after = limits_in_force(new.stable.evaluator.artifact(), new.split_candidate());
            if before != after {
                limits_moved = true;
                let (from, to) = (limits_digest(&before), limits_digest(&after));
                let claim = self
                    .backend
                    .claim_migration(&from, &to, &self.id, now)
                    .await
                    .map_err(StoreError::ClaimMigration)?;
                // Claimed by this engine already: an earlier attempt that
                // failed half-way (the claim outlives it); applied again.
                let claim = claim.filter(|by| *by != self.id);
                match claim {
                    None => {
                        let counters = self
                            .backend
                            .entries()
                            .await
                            .map_err(StoreError::ReadCounters)?;
                        let graces = self
                            .backend
                            .graces()
                            .await
                            .map_err(StoreError::ReadCounters)?;
                        let plan = plan_limits(&before, &after, &counters, &graces, now);
                        self.backend
                            .apply_plan(&plan, now)
                            .await
                            .map_err(StoreError::DropCounters)?;
                        migrations = plan.migrations;
                    }
                    Some(by) => migrations.push(Migration::AppliedElsewhere { from, to, by }),
                }
            }
        }
        self.route.store(Some(Arc::clone(&new)));
        if limits_moved {
            // After the swap, so that what requests on the old route
            // noted goes too.
            self.backend.limits_changed();
        }
        if old
            .as_ref()
            .is_some_and(|o| o.enforcing() != new.enforcing())
        {
            migrations.extend(self.migrate_approvals(&new, now).await?);
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
    async fn migrate_approvals(
        &self,
        route: &Active,
        now: u64,
    ) -> Result<Vec<Migration>, StoreError> {
        let all = self
            .backend
            .approvals(now)
            .await
            .map_err(StoreError::ReadApprovals)?;
        let mut out = Vec::new();
        for p in all
            .into_iter()
            .filter(|a| a.is_pending() && (a.expires == 0 || a.expires > now))
        {
            let (cohort, _) = route.route(&p.request);
            let Some(reason) = uncovered(&route.held(cohort).evaluator, &p, now) else {
                continue;
            };
            let d = Decision {
                id: &p.id,
                verdict: Verdict::Reject,
                by: "sluice",
                reason: Some(reason),
            };
            match self.backend.decide(d, &self.config.approvals, now).await {
                Ok(_)
                | Err(
                    DecideError::NotFound(_)
                    | DecideError::AlreadyDecided { .. }
                    | DecideError::Expired(_),
                ) => {}
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
