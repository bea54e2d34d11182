//! The running engine: artifacts held, the route in force, state, breakers,
//! stats, the shadow worker and the decision log — everything the HTTP
//! layer ([`crate::engine::http`]) calls. No HTTP here except the error type
//! the handlers answer with, and [`serve`].
//!
//! **Hot swap.** The route is one [`ArcSwapOption`]: a request loads it once
//! and finishes on that snapshot (its evaluators and its stats); a route
//! change builds a new snapshot and stores it, never waiting for requests
//! and never making one fail. Route changes are serialized by a mutex held
//! only by admins.
//!
//! **Failsafe.** When an artifact's breaker is open (or an evaluation
//! fails), the request is not evaluated against state. The policies it falls
//! under are found by a dry run against [`Saturated`] — conditions only, no
//! limit store, no counting: the part of evaluation that cannot fail. Then:
//! if any of them is `security` or `compliance`, the decision is `deny` with
//! code `FAILSAFE` (one reason per such policy); else, if any is
//! `operational`, `allow` with `audit: true`; if none matches, the project
//! default, with `audit: true` (and code `FAILSAFE` when it is a deny).
//! Failsafe decisions never queue approvals and never count limits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::evaluate::{EvalResponse, ResponseReason};
use crate::api::route::{Cohort, Matcher, Mode, RouteSpec};
use crate::api::state::{LiveState, PendingApproval};
use crate::compile::artifact::{Artifact, ArtifactError};
use crate::engine::approvals::{DecideError, NewApproval, Verdict};
use crate::engine::backend::{FaultInjector, FaultyStore, Saturated, StateBackend};
use crate::engine::breaker::{Admit, Breaker, BreakerConfig, BreakerState, Transition};
use crate::engine::decision_log::{DecisionLog, EvaluationLine, EventLine, LogLine, ShadowLine};
use crate::engine::http::ApiError;
use crate::engine::migrate::{Migration, OverrideStore, limits_in_force, plan_limits};
use crate::engine::queue::{BatchQueue, POLL_BUSY, POLL_IDLE};
use crate::engine::stats::{RouteStats, Sample};
use crate::eval::request::Request;
use crate::eval::response::ResponseContext;
use crate::eval::state::LimitStore as _;
use crate::eval::{EvalError, Evaluator, LimitMode, Outcome};
use crate::model::ir::{DecisionKind, Effect, Tier};

/// The limit store evaluations use: the backend's, behind the fault
/// injector and the `next_window` graces.
pub type Limits = OverrideStore<FaultyStore>;

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The admin bearer token.
    pub admin_token: String,
    /// The largest request body accepted, in bytes (413 above).
    pub max_body: usize,
    /// The largest artifact upload accepted, in bytes (413 above).
    pub max_artifact_body: usize,
    pub breaker: BreakerConfig,
    /// Shadow evaluations waiting at most; more are dropped and counted.
    pub shadow_queue: usize,
}

impl EngineConfig {
    pub fn new(admin_token: impl Into<String>) -> EngineConfig {
        EngineConfig {
            admin_token: admin_token.into(),
            max_body: 1 << 20,
            max_artifact_body: 64 << 20,
            breaker: BreakerConfig::default(),
            shadow_queue: 4096,
        }
    }
}

/// An artifact the engine holds.
#[derive(Debug)]
pub struct Held {
    pub evaluator: Evaluator,
    pub breaker: Breaker,
    /// Seconds since the epoch.
    pub uploaded: u64,
}

impl Held {
    pub fn hash(&self) -> &str {
        self.evaluator.hash()
    }
}

/// The route in force, with what it needs to route and the figures
/// recorded under it.
#[derive(Debug)]
pub struct Active {
    /// Counts route changes since start (1 for the first route).
    pub version: u64,
    pub spec: RouteSpec,
    /// Seconds since the epoch.
    pub since: u64,
    pub stable: Arc<Held>,
    pub candidate: Option<Arc<Held>>,
    matcher: Matcher,
    pub stats: RouteStats,
}

impl Active {
    /// The cohort that enforces `request`, and whether it is in the
    /// candidate cohort at all (shadow mode evaluates it besides).
    fn route(&self, request: &Value) -> (Cohort, bool) {
        if self.candidate.is_none() || !self.matcher.in_cohort(request) {
            return (Cohort::Stable, false);
        }
        match self.spec.mode {
            Some(Mode::Split) => (Cohort::Candidate, true),
            _ => (Cohort::Stable, true),
        }
    }

    fn held(&self, cohort: Cohort) -> &Arc<Held> {
        match (cohort, &self.candidate) {
            (Cohort::Candidate, Some(c)) => c,
            _ => &self.stable,
        }
    }

    fn split_candidate(&self) -> Option<&Artifact> {
        match self.spec.mode {
            Some(Mode::Split) => self.candidate.as_ref().map(|c| c.evaluator.artifact()),
            _ => None,
        }
    }

    fn enforcing(&self) -> BTreeSet<String> {
        self.spec.enforcing().map(str::to_string).collect()
    }
}

/// What `PUT /v1/route` answers.
#[derive(Debug, Clone, Serialize)]
pub struct RouteChange {
    pub version: u64,
    pub route: RouteSpec,
    /// The state migrations the change applied.
    pub migrations: Vec<Migration>,
}

/// What `PUT /v1/artifacts/{hash}` answers.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactSummary {
    pub hash: String,
    pub project: String,
    pub policies: usize,
    pub rules: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    pub uploaded: u64,
    /// `stable` or `candidate` when the route names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routed: Option<&'static str>,
    pub breaker: BreakerState,
}

struct ShadowJob {
    route: Arc<Active>,
    request: Value,
    /// The request as stable decoded it; the candidate reuses it when both
    /// artifacts have the same schema (the usual case).
    decoded: Request,
    stable: DecisionKind,
    now: u64,
    line: Option<Box<EvaluationLine>>,
}

/// The engine. Shared by every handler as `Arc<Engine>`.
pub struct Engine {
    config: EngineConfig,
    artifacts: RwLock<BTreeMap<String, Arc<Held>>>,
    route: ArcSwapOption<Active>,
    route_change: Mutex<()>,
    backend: Arc<dyn StateBackend>,
    limits: Arc<Limits>,
    log: Arc<DecisionLog>,
    shadow: Arc<BatchQueue<ShadowJob>>,
    shadow_dropped: AtomicU64,
    faults: Arc<FaultInjector>,
    seq: AtomicU64,
    boot: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &"…")
            .field("route", &self.route.load().as_ref().map(|r| r.version))
            .finish_non_exhaustive()
    }
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The engine cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("the engine must be started inside a tokio runtime")]
    NoRuntime,
    #[error("an admin token is required: pass --admin-token or set SLUICE_ADMIN_TOKEN")]
    NoToken,
}

impl Engine {
    /// Starts an engine: spawns the shadow worker and the housekeeping task
    /// on the current tokio runtime.
    pub fn start(
        config: EngineConfig,
        backend: Arc<dyn StateBackend>,
        log: DecisionLog,
    ) -> Result<Arc<Engine>, StartError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        if config.admin_token.is_empty() {
            return Err(StartError::NoToken);
        }
        let faults = Arc::new(FaultInjector::default());
        let limits = Arc::new(OverrideStore::new(FaultyStore::new(
            Arc::clone(&backend),
            Arc::clone(&faults),
        )));
        let log = Arc::new(log);
        let shadow = Arc::new(BatchQueue::new(config.shadow_queue));
        rt.spawn(shadow_worker(
            Arc::clone(&shadow),
            Arc::clone(&limits),
            Arc::clone(&log),
        ));
        let engine = Arc::new(Engine {
            config,
            artifacts: RwLock::new(BTreeMap::new()),
            route: ArcSwapOption::empty(),
            route_change: Mutex::new(()),
            backend,
            limits,
            log,
            shadow,
            shadow_dropped: AtomicU64::new(0),
            faults,
            seq: AtomicU64::new(0),
            boot: epoch_secs(SystemTime::now()),
        });
        rt.spawn(housekeeping(Arc::downgrade(&engine)));
        Ok(engine)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The fault injector (tests).
    #[doc(hidden)]
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// Holds the shadow worker back (or lets it go on): a test hook.
    #[doc(hidden)]
    pub fn hold_shadow(&self, on: bool) {
        self.shadow.hold(on);
    }

    /// The wall clock the engine counts limits with, in seconds since the
    /// epoch.
    pub fn now_secs(&self) -> u64 {
        epoch_secs(SystemTime::now()).saturating_add_signed(self.faults.clock_offset())
    }

    /// The route in force.
    pub fn route(&self) -> Option<Arc<Active>> {
        self.route.load_full()
    }

    fn held(&self, hash: &str) -> Option<Arc<Held>> {
        let map = self.artifacts.read().unwrap_or_else(|e| e.into_inner());
        map.get(hash).cloned()
    }

    // -----------------------------------------------------------------------
    // Evaluation.

    /// Evaluates one request body; returns the response document's bytes.
    pub fn evaluate(&self, body: &[u8], request_id: Option<&str>) -> Result<Vec<u8>, ApiError> {
        let started = Instant::now();
        let json: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the request is not valid JSON: {e}")))?;
        let guard = self.route.load();
        let Some(route) = guard.as_ref() else {
            return Err(ApiError::Unavailable(
                "no route: upload an artifact (PUT /v1/artifacts/{hash}) and set a route (PUT /v1/route)"
                    .to_string(),
            ));
        };
        let (cohort, in_cohort) = route.route(&json);
        let held = route.held(cohort);
        let ev = &held.evaluator;
        let req = ev
            .decode(&json)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let now = self.now_secs();
        let stage = route.spec.stage.as_deref();

        let (admit, transition) = held.breaker.admit(Instant::now());
        self.log_transition(held.hash(), transition);
        let mut error = None;
        let mut approval_id = None;
        let mut outcome = None;
        if admit != Admit::Failsafe {
            let t0 = Instant::now();
            let result = ev
                .evaluate(&req, now, &*self.limits)
                .map_err(|e| e.to_string());
            let result = result.and_then(|o| {
                if o.decision() == DecisionKind::RequireApproval {
                    approval_id = Some(self.enqueue(ev, &o, &json, now)?);
                }
                Ok(o)
            });
            let t = held
                .breaker
                .record(Instant::now(), admit, result.is_ok(), t0.elapsed());
            self.log_transition(held.hash(), t);
            match result {
                Ok(o) => outcome = Some(o),
                Err(e) => error = Some(e),
            }
        }
        let cx = ResponseContext {
            approval_id: approval_id.as_deref(),
            cohort: Some(cohort.as_str()),
            stage,
            audit: false,
        };
        let response = match &outcome {
            Some(o) => ev.respond(&req, o, &cx),
            None => failsafe(ev, &req, now, &cx),
        };
        let bytes = serde_json::to_vec(&response)
            .map_err(|e| ApiError::Internal(format!("rendering the response: {e}")))?;
        let latency = started.elapsed();
        if let Some(stats) = route.stats.cohort(cohort) {
            stats.record(Sample {
                decision: response.decision,
                error: error.is_some(),
                failsafe: outcome.is_none(),
                latency,
            });
        }

        let shadowed = in_cohort && route.spec.mode == Some(Mode::Shadow);
        if !self.log.enabled() && !shadowed {
            return Ok(bytes);
        }
        let line = self.log.enabled().then(|| {
            Box::new(EvaluationLine {
                time: SystemTime::now(),
                request_id: request_id.map_or_else(|| self.next_request_id(), str::to_string),
                session: json
                    .get("session")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                artifact: response.artifact.clone(),
                cohort,
                stage: stage.map(str::to_string),
                decision: response.decision,
                approval_id: response.approval_id.clone(),
                failsafe: outcome.is_none(),
                audit: response.audit,
                reasons: response.reasons,
                error,
                shadow: None,
                diverged: None,
                latency_us: micros(latency),
                request: Value::Null,
            })
        });
        if shadowed {
            let job = ShadowJob {
                route: Arc::clone(route),
                request: json,
                decoded: req,
                stable: response.decision,
                now,
                line,
            };
            if let Err(job) = self.shadow.push(job) {
                self.shadow_dropped.fetch_add(1, Relaxed);
                route.stats.shadow_dropped.fetch_add(1, Relaxed);
                // The evaluation is still logged, without its shadow side.
                if let Some(mut line) = job.line {
                    line.request = job.request;
                    self.log.send(LogLine::Evaluation(line));
                }
            }
        } else if let Some(mut line) = line {
            line.request = json;
            self.log.send(LogLine::Evaluation(line));
        }
        Ok(bytes)
    }

    /// A request id for the log: the engine's start time and a sequence.
    pub fn next_request_id(&self) -> String {
        format!("{:x}-{}", self.boot, self.seq.fetch_add(1, Relaxed) + 1)
    }

    /// Queues the request under the first `require_approval` reason.
    fn enqueue(
        &self,
        ev: &Evaluator,
        outcome: &Outcome,
        request: &Value,
        now: u64,
    ) -> Result<String, String> {
        let Some(reason) = ev
            .reasons(outcome)
            .find(|r| r.decision() == DecisionKind::RequireApproval)
        else {
            return Err("no require_approval reason".to_string());
        };
        let (group, via) = match reason.effect {
            Effect::RequireApproval { group, via, .. } => (group.clone(), via.clone()),
            _ => (String::new(), None),
        };
        self.backend
            .approvals()
            .enqueue(NewApproval {
                policy: reason.policy.to_string(),
                rule: reason.rule.to_string(),
                group,
                via,
                created: now,
                request: request.clone(),
            })
            .map_err(|e| e.to_string())
    }

    fn log_transition(&self, artifact: &str, t: Option<Transition>) {
        let Some(t) = t else { return };
        tracing::warn!(
            artifact,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = %t.reason,
            "circuit breaker"
        );
        self.log.send(LogLine::Breaker(EventLine::now(json!({
            "artifact": artifact,
            "from": t.from,
            "to": t.to,
            "reason": t.reason,
        }))));
    }

    // -----------------------------------------------------------------------
    // Artifacts.

    /// Accepts an artifact upload: the body must verify and hash to `hash`.
    /// Returns whether it is new, and its summary.
    pub fn put_artifact(
        &self,
        hash: &str,
        body: &[u8],
    ) -> Result<(bool, ArtifactSummary), ApiError> {
        let artifact = Artifact::from_bytes(body).map_err(|e| match e {
            ArtifactError::Decode { .. } => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Unprocessable(e.to_string()),
        })?;
        if artifact.hash != hash {
            return Err(ApiError::Unprocessable(format!(
                "the artifact's hash `{}` differs from `{hash}` in the path",
                artifact.hash
            )));
        }
        if let Some(held) = self.held(hash) {
            return Ok((false, self.summary(&held)));
        }
        let evaluator = Evaluator::new(&artifact)
            .map_err(|e| ApiError::Unprocessable(format!("the artifact cannot be loaded: {e}")))?;
        let held = Arc::new(Held {
            evaluator,
            breaker: Breaker::new(self.config.breaker, Instant::now()),
            uploaded: self.now_secs(),
        });
        let mut map = self.artifacts.write().unwrap_or_else(|e| e.into_inner());
        let held = Arc::clone(map.entry(hash.to_string()).or_insert(held));
        drop(map);
        tracing::info!(artifact = hash, "artifact accepted");
        Ok((true, self.summary(&held)))
    }

    fn summary(&self, held: &Held) -> ArtifactSummary {
        let a = held.evaluator.artifact();
        let route = self.route.load();
        let routed = route.as_ref().and_then(|r| {
            if r.spec.stable == a.hash {
                Some("stable")
            } else if r.spec.candidate.as_deref() == Some(a.hash.as_str()) {
                Some("candidate")
            } else {
                None
            }
        });
        ArtifactSummary {
            hash: a.hash.clone(),
            project: a.project.clone(),
            policies: a.policies.len(),
            rules: held.evaluator.len(),
            source_commit: a.source_commit.clone(),
            uploaded: held.uploaded,
            routed,
            breaker: held.breaker.state(),
        }
    }

    /// The summary of one artifact held.
    pub fn artifact(&self, hash: &str) -> Option<ArtifactSummary> {
        self.held(hash).map(|h| self.summary(&h))
    }

    /// Every artifact held, by hash.
    pub fn artifacts(&self) -> Vec<ArtifactSummary> {
        let held: Vec<Arc<Held>> = {
            let map = self.artifacts.read().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        held.iter().map(|h| self.summary(h)).collect()
    }

    // -----------------------------------------------------------------------
    // Routing and migrations.

    /// Sets the route; applies the state migrations the change implies.
    pub fn set_route(&self, spec: RouteSpec) -> Result<RouteChange, ApiError> {
        let spec = spec
            .normalize()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let _serial = self.route_change.lock().unwrap_or_else(|e| e.into_inner());
        let missing = |role: &str, hash: &str| {
            ApiError::Conflict(format!(
                "the {role} artifact `{hash}` is not held by this engine: upload it first (PUT /v1/artifacts/{hash})"
            ))
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
                        return Err(ApiError::BadRequest(format!(
                            "`{what}` names `{f}`, which is not a field of artifact `{}`",
                            held.hash()
                        )));
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
                let counters = self
                    .limits
                    .entries()
                    .map_err(|e| ApiError::Internal(format!("reading counters: {e}")))?;
                let plan = plan_limits(&before, &after, &counters, &self.limits.overrides(), now);
                for limit in &plan.drop {
                    self.limits
                        .remove_limit(limit)
                        .map_err(|e| ApiError::Internal(format!("dropping counters: {e}")))?;
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
        })
    }

    /// Resolves waiting requests whose rule the new route no longer has, or
    /// no longer covers them.
    fn migrate_approvals(&self, route: &Active, now: u64) -> Result<Vec<Migration>, ApiError> {
        let store = self.backend.approvals();
        let pending = store
            .pending()
            .map_err(|e| ApiError::Internal(format!("reading approvals: {e}")))?;
        let mut out = Vec::new();
        for p in pending {
            let (cohort, _) = route.route(&p.request);
            let Some(reason) = uncovered(&route.held(cohort).evaluator, &p, now) else {
                continue;
            };
            match store.decide(&p.id, Verdict::Reject, "sluice", Some(reason), now) {
                Ok(_) | Err(DecideError::NotFound(_) | DecideError::AlreadyDecided(_)) => {}
                Err(e) => return Err(ApiError::Internal(e.to_string())),
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

    // -----------------------------------------------------------------------
    // Approvals, state, stats.

    /// Approves or rejects a waiting request.
    pub fn decide(
        &self,
        id: &str,
        decision: Verdict,
        by: &str,
        reason: Option<&str>,
    ) -> Result<crate::engine::approvals::ApprovalRecord, ApiError> {
        let record = self
            .backend
            .approvals()
            .decide(id, decision, by, reason, self.now_secs())
            .map_err(|e| match e {
                DecideError::NotFound(_) => ApiError::NotFound(e.to_string()),
                DecideError::AlreadyDecided(_) => ApiError::Conflict(e.to_string()),
                DecideError::State(_) => ApiError::Internal(e.to_string()),
            })?;
        self.log.send(LogLine::Approval(EventLine::now(json!({
            "id": record.id,
            "decision": record.decision,
            "by": record.by,
            "reason": record.reason,
            "policy": record.policy,
            "rule": record.rule,
        }))));
        Ok(record)
    }

    /// The live state: current-window counters and waiting requests.
    pub fn live_state(&self) -> Result<LiveState, ApiError> {
        let now = self.now_secs();
        let counters = self
            .limits
            .entries()
            .map_err(|e| ApiError::Internal(format!("reading counters: {e}")))?
            .into_iter()
            .filter(|c| c.window.end() > now)
            .collect();
        let approvals: Vec<PendingApproval> = self
            .backend
            .approvals()
            .pending()
            .map_err(|e| ApiError::Internal(format!("reading approvals: {e}")))?;
        Ok(LiveState {
            artifact: self.route.load().as_ref().map(|r| r.spec.stable.clone()),
            time: now,
            counters,
            approvals,
        })
    }

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
            "shadow_dropped_total": self.shadow_dropped.load(Relaxed),
            "decision_log": {"written": self.log.written(), "dropped": self.log.dropped()},
            "breakers": self.artifacts().iter().map(|a| json!({
                "artifact": a.hash, "state": a.breaker,
            })).collect::<Vec<_>>(),
        })
    }

    /// The `GET /metrics` text.
    pub fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(4096);
        let route = self.route.load_full();
        if let Some(r) = &route {
            crate::engine::stats::write_prometheus(
                &mut out,
                &r.stats.reports(r.spec.stage.as_deref()),
            );
        }
        let stage = route
            .as_ref()
            .and_then(|r| r.spec.stage.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP sluice_route_version Route changes since the engine started.\n# TYPE sluice_route_version gauge\nsluice_route_version{{stage=\"{}\"}} {}",
            crate::engine::stats::label(&stage),
            route.as_ref().map_or(0, |r| r.version)
        );
        let _ = writeln!(
            out,
            "# HELP sluice_shadow_dropped_total Shadow evaluations dropped because the queue was full.\n# TYPE sluice_shadow_dropped_total counter\nsluice_shadow_dropped_total {}",
            self.shadow_dropped.load(Relaxed)
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
                    crate::engine::stats::label(&a.hash),
                    s.as_str(),
                    u8::from(a.breaker == s)
                );
            }
        }
        out
    }

    /// Waits for queued shadow evaluations, then writes out and closes the
    /// decision log. Called once the server has stopped taking requests.
    pub async fn shutdown(&self) {
        self.shadow.close();
        if !self.shadow.drained(Duration::from_secs(10)).await {
            tracing::warn!("shadow evaluations still queued at shutdown");
        }
        self.log.close().await;
    }
}

/// Why a waiting request is no longer covered by `ev` (`None`: it is).
fn uncovered(ev: &Evaluator, p: &PendingApproval, now: u64) -> Option<&'static str> {
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

/// The tier failsafe for `req` (see the module doc).
pub fn failsafe(ev: &Evaluator, req: &Request, now: u64, cx: &ResponseContext<'_>) -> EvalResponse {
    let mut probe = Outcome::default();
    // Saturated never fails; on a schema mismatch nothing matches.
    let _ = ev.evaluate_into(req, now, &Saturated, LimitMode::DryRun, &mut probe);
    let mut closed: Vec<(String, String, Tier)> = Vec::new();
    let mut open: Vec<(String, String, Tier)> = Vec::new();
    for r in ev.reasons(&probe) {
        let list = match r.tier {
            Tier::Security | Tier::Compliance => &mut closed,
            Tier::Operational => &mut open,
        };
        if !list.iter().any(|(p, _, _)| p == r.policy) {
            list.push((r.policy.to_string(), r.version.to_string(), r.tier));
        }
    }
    let reason = |(policy, version, tier): (String, String, Tier), effect: DecisionKind| {
        let (code, text) = match effect {
            DecisionKind::Deny => (
                Some("FAILSAFE".to_string()),
                format!(
                    "the engine cannot evaluate this request now: {} policy `{policy}` fails closed",
                    tier.as_str()
                ),
            ),
            _ => (
                None,
                format!(
                    "the engine cannot evaluate this request now: {} policy `{policy}` fails open",
                    tier.as_str()
                ),
            ),
        };
        ResponseReason {
            policy,
            version,
            rule: "failsafe".to_string(),
            effect,
            code,
            text: Some(text),
            group: None,
            via: None,
            limit: false,
        }
    };
    let (decision, reasons, audit) = if !closed.is_empty() {
        let rs = closed
            .into_iter()
            .map(|p| reason(p, DecisionKind::Deny))
            .collect();
        (DecisionKind::Deny, rs, false)
    } else if !open.is_empty() {
        let rs = open
            .into_iter()
            .map(|p| reason(p, DecisionKind::Allow))
            .collect();
        (DecisionKind::Allow, rs, true)
    } else {
        let default = ev.artifact().default;
        let rs = if default == DecisionKind::Deny {
            vec![ResponseReason {
                policy: String::new(),
                version: String::new(),
                rule: "failsafe".to_string(),
                effect: DecisionKind::Deny,
                code: Some("FAILSAFE".to_string()),
                text: Some(
                    "the engine cannot evaluate this request now: no policy matches and the project default is deny"
                        .to_string(),
                ),
                group: None,
                via: None,
                limit: false,
            }]
        } else {
            Vec::new()
        };
        (default, rs, true)
    };
    EvalResponse {
        decision,
        approval_id: None,
        reasons,
        artifact: ev.hash().to_string(),
        cohort: cx.cohort.map(str::to_string),
        stage: cx.stage.map(str::to_string),
        audit,
        modifications: Vec::new(),
        request: None,
    }
}

/// Evaluates queued shadow jobs: the candidate in dry run (no counting),
/// its figures in the shadow cohort, the comparison, and the log line.
///
/// A task on the engine's runtime, so shadow work shares the request
/// threads in proportion instead of starving as a thread of its own on a
/// busy machine; it polls the queue (see [`BatchQueue`]) and stops when the
/// engine is gone or the queue is closed and drained.
async fn shadow_worker(
    queue: Arc<BatchQueue<ShadowJob>>,
    limits: Arc<Limits>,
    log: Arc<DecisionLog>,
) {
    let mut batch = Vec::new();
    let mut outcome = Outcome::default();
    loop {
        queue.take(&mut batch);
        let n = batch.len();
        if n > 0 {
            for job in batch.drain(..) {
                shadow_one(job, &limits, &log, &mut outcome);
            }
            queue.done(n);
        } else if queue.is_closed() || Arc::strong_count(&queue) == 1 {
            // The engine holds the other reference.
            return;
        }
        tokio::time::sleep(if n > 0 { POLL_BUSY } else { POLL_IDLE }).await;
    }
}

fn shadow_one(job: ShadowJob, limits: &Limits, log: &DecisionLog, outcome: &mut Outcome) {
    let Some(candidate) = &job.route.candidate else {
        return;
    };
    let Some(stats) = job.route.stats.cohort(Cohort::Shadow) else {
        return;
    };
    let ev = &candidate.evaluator;
    let t0 = Instant::now();
    let result = match ev.evaluate_into(&job.decoded, job.now, limits, LimitMode::DryRun, outcome) {
        // Another schema: decode the request for the candidate.
        Err(EvalError::SchemaMismatch) => ev
            .decode(&job.request)
            .map_err(|e| format!("bad request for the candidate: {e}"))
            .and_then(|req| {
                ev.evaluate_into(&req, job.now, limits, LimitMode::DryRun, outcome)
                    .map_err(|e| e.to_string())
            }),
        other => other.map_err(|e| e.to_string()),
    };
    let latency = t0.elapsed();
    let decision = result.as_ref().ok().map(|()| outcome.decision());
    stats.record(Sample {
        decision: decision.unwrap_or(DecisionKind::Allow),
        error: decision.is_none(),
        failsafe: false,
        latency,
    });
    if let Some(d) = decision {
        stats.record_pair(job.stable, d);
    }
    if let Some(mut line) = job.line {
        line.shadow = Some(ShadowLine {
            artifact: candidate.hash().to_string(),
            decision,
            reasons: match decision {
                Some(_) => ev.reasons(outcome).map(ResponseReason::from).collect(),
                None => Vec::new(),
            },
            error: result.err(),
            latency_us: micros(latency),
        });
        line.diverged = Some(decision != Some(job.stable));
        line.request = job.request;
        log.send(LogLine::Evaluation(line));
    }
}

/// Every 10 seconds: forgets counters of ended windows and expired graces.
async fn housekeeping(engine: std::sync::Weak<Engine>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let now = engine.now_secs();
        engine.backend.expire(now);
        engine.limits.apply(&Default::default(), now);
    }
}

/// Serves `engine` on `listener` until `shutdown` completes, then lets
/// requests in flight finish, waits for queued shadow evaluations and
/// closes the decision log.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let app = crate::engine::http::router(Arc::clone(&engine));
    // Decisions are small and latency-bound: no Nagle delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    engine.shutdown().await;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
