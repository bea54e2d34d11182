//! The running engine: artifacts held, the route in force, state, breakers,
//! stats, the shadow worker and the decision log — everything the HTTP
//! layer ([`crate::engine::http`]) calls. No HTTP here: operations fail with
//! the domain errors of [`crate::engine::error`], which the HTTP layer maps
//! to statuses.
//!
//! **Hot swap.** The route is one [`ArcSwapOption`]: a request loads it once
//! and finishes on that snapshot (its evaluators and its stats); a route
//! change builds a new snapshot and stores it, never waiting for requests
//! and never making one fail. Route changes are serialized by a mutex held
//! only by admins.
//!
//! **Failsafe.** When an artifact's breaker is open (or an evaluation
//! fails), the request gets the tier failsafe ([`crate::engine::failsafe`])
//! instead: never evaluated against state, never queued for approval.
//!
//! **State.** Limits and approvals live in the [`StateBackend`] the engine
//! is started with: in this process (evaluation counts synchronously, as
//! it always did) or shared by a fleet (one awaited call per request for
//! every limit it hits). An evaluation whose state cannot be read or
//! counted is answered by the tier failsafe and counts as an error for the
//! breaker.
//!
//! **Fencing.** Over HTTP a route is changed only by the daemon holding the
//! engine's lease ([`Engine::claim_route`], [`Engine::renew_lease`]); a
//! lease not renewed in time lapses and the engine drops the candidate by
//! itself ([`Engine::lapse_lease`], run by a watch task every 100 ms). The
//! lease lives under the route-change lock, an async mutex held across the
//! whole change (state migrations on a shared backend are awaited).
//!
//! Inside: `shadow` evaluates the candidate off the request path, `routes`
//! changes the route and migrates state ([`Engine::set_route`]), `lease`
//! fences route changes, `state` counts, asks and decides approvals and
//! reads the live state, `report` writes the stats and metrics documents.

mod lease;
mod report;
mod routes;
mod shadow;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::route::{Cohort, Matcher, Mode, RouteSpec};
use crate::api::stats::BreakerState;
use crate::compile::artifact::Artifact;
use crate::engine::agents::AgentKeys;
use crate::engine::approvals::{ApprovalConfig, settle_response};
use crate::engine::backend::{Saturated, StateBackend};
use crate::engine::breaker::{Admit, Breaker, BreakerConfig, Transition};
use crate::engine::clock::{Clock, SystemClock, epoch_secs};
use crate::engine::decision_log::{DecisionLog, EvaluationLine, EventLine, LogLine};
use crate::engine::error::{DeleteError, EvaluateError, UploadError};
use crate::engine::failsafe::failsafe;
use crate::engine::stats::{RouteStats, Sample};
use crate::eval::response::ResponseContext;
use crate::eval::state::StateError;
use crate::eval::{EvalError, Evaluator};

pub use crate::engine::server::routes::RouteChange;

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
    /// The time limits are counted in (the system clock by default).
    pub clock: Arc<dyn Clock>,
    /// Approval lifetimes and queue caps.
    pub approvals: ApprovalConfig,
    /// Agent identity (`--agent-keys`): when set, an evaluation must come
    /// with the key of the agent it names.
    pub agent_keys: Option<Arc<AgentKeys>>,
}

impl EngineConfig {
    pub fn new(admin_token: impl Into<String>) -> EngineConfig {
        EngineConfig {
            admin_token: admin_token.into(),
            max_body: 1 << 20,
            max_artifact_body: 64 << 20,
            breaker: BreakerConfig::default(),
            shadow_queue: 4096,
            clock: Arc::new(SystemClock),
            approvals: ApprovalConfig::default(),
            agent_keys: None,
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

    /// The stage a decision is tagged with: the route's, else `stable`
    /// when no rollout is in flight (no candidate), else the mode
    /// (`shadow`, `split`).
    pub fn stage_tag(&self) -> &str {
        match (&self.spec.stage, &self.candidate, self.spec.mode) {
            (Some(stage), _, _) => stage,
            (None, None, _) => "stable",
            (None, Some(_), Some(Mode::Split)) => "split",
            (None, Some(_), _) => "shadow",
        }
    }

    fn enforcing(&self) -> BTreeSet<String> {
        self.spec.enforcing().map(str::to_string).collect()
    }
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

/// The engine. Shared by every handler as `Arc<Engine>`.
pub struct Engine {
    config: EngineConfig,
    artifacts: RwLock<BTreeMap<String, Arc<Held>>>,
    route: ArcSwapOption<Active>,
    /// Serializes route changes (held across the awaited migrations) and
    /// holds the owner's lease.
    route_change: tokio::sync::Mutex<lease::Fence>,
    /// The lease in the fence, for readers that must not wait on it.
    lease_shown: lease::Shown,
    /// This engine, as migration claims name it.
    id: String,
    backend: Arc<dyn StateBackend>,
    log: Arc<DecisionLog>,
    shadow: shadow::Shadow,
    seq: AtomicU64,
    boot: u64,
    /// Inventoried agents' calls per day.
    agent_calls: crate::engine::cost::AgentCalls,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &"…")
            .field("route", &self.route.load().as_ref().map(|r| r.version))
            .finish_non_exhaustive()
    }
}

/// Engines started in this process (their ids tell them apart).
static STARTED: AtomicU64 = AtomicU64::new(0);

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

/// Why a request was not evaluated against state (the failsafe answers
/// instead); written to the decision log.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unevaluated {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("no require_approval reason")]
    NoApprovalReason,
    /// The approval could not be queued.
    #[error(transparent)]
    Enqueue(StateError),
}

impl Engine {
    /// Starts an engine on `backend`: spawns the shadow worker and the
    /// housekeeping task on the current tokio runtime.
    pub fn start(
        config: EngineConfig,
        backend: Arc<dyn StateBackend>,
        log: DecisionLog,
    ) -> Result<Arc<Engine>, StartError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        if config.admin_token.is_empty() {
            return Err(StartError::NoToken);
        }
        let boot = epoch_secs(SystemTime::now());
        let log = Arc::new(log);
        let shadow = shadow::Shadow::start(
            &rt,
            config.shadow_queue,
            Arc::clone(&backend),
            Arc::clone(&log),
        );
        let engine = Arc::new(Engine {
            config,
            artifacts: RwLock::new(BTreeMap::new()),
            route: ArcSwapOption::empty(),
            route_change: tokio::sync::Mutex::new(lease::Fence::default()),
            lease_shown: lease::Shown::empty(),
            id: format!(
                "engine-{}-{boot:x}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Relaxed)
            ),
            backend,
            log,
            shadow,
            seq: AtomicU64::new(0),
            boot,
            agent_calls: crate::engine::cost::AgentCalls::default(),
        });
        rt.spawn(housekeeping(Arc::downgrade(&engine)));
        rt.spawn(lease::watch(Arc::downgrade(&engine)));
        Ok(engine)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The time the engine counts limits in, in seconds since the epoch
    /// (the configured [`Clock`]).
    pub fn now_secs(&self) -> u64 {
        self.config.clock.now_secs()
    }

    /// Milliseconds since the epoch (the configured [`Clock`]): leases
    /// lapse by it.
    pub fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
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

    /// [`Engine::evaluate`], finished even when the caller stops waiting (a
    /// client that hangs up): a request a shared backend counted is always
    /// in the stats and the decision log. A local backend's evaluation
    /// never stops half-way (it does not wait) and runs in place.
    pub async fn evaluate_to_end<B>(
        self: &Arc<Self>,
        body: B,
        request_id: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Vec<u8>, EvaluateError>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        if self.backend.local().is_some() {
            return self.evaluate(body.as_ref(), request_id, agent).await;
        }
        let engine = Arc::clone(self);
        let id = request_id.map(str::to_string);
        let agent = agent.map(str::to_string);
        tokio::spawn(async move {
            engine
                .evaluate(body.as_ref(), id.as_deref(), agent.as_deref())
                .await
        })
        .await
        .map_err(EvaluateError::Interrupted)?
    }

    /// Evaluates one request body; returns the response document's bytes.
    /// `agent`: the agent the caller's key speaks for (`--agent-keys`),
    /// which the request must name.
    pub async fn evaluate(
        &self,
        body: &[u8],
        request_id: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Vec<u8>, EvaluateError> {
        let started = Instant::now();
        let json: Value = serde_json::from_slice(body).map_err(EvaluateError::Json)?;
        if let Some(agent) = agent
            && json.get("agent").and_then(Value::as_str) != Some(agent)
        {
            return Err(EvaluateError::NotYourAgent(agent.to_string()));
        }
        let Some(route) = self.route.load_full() else {
            return Err(EvaluateError::NoRoute);
        };
        let (cohort, in_cohort) = route.route(&json);
        let held = route.held(cohort);
        let ev = &held.evaluator;
        let req = ev.decode(&json)?;
        let now = self.now_secs();
        let stage = route.spec.stage.as_deref();
        let shadowed = in_cohort && route.spec.mode == Some(Mode::Shadow);

        let (admit, transition) = held.breaker.admit(Instant::now());
        self.log_transition(held.hash(), transition);
        let mut error = None;
        let mut outcome = None;
        let mut counted = state::Counted::default();
        if admit != Admit::Failsafe {
            let t0 = Instant::now();
            let track = shadowed.then_some(&mut counted);
            let result = self.evaluate_state(ev, &req, &json, now, track).await;
            let t = held
                .breaker
                .record(Instant::now(), admit, result.is_ok(), t0.elapsed());
            self.log_transition(held.hash(), t);
            match result {
                Ok(o) => outcome = Some(o),
                Err(e) => error = Some(e.to_string()),
            }
        }
        let cx = ResponseContext {
            approval_id: None,
            cohort: Some(cohort.as_str()),
            stage,
            audit: false,
        };
        let response = match &outcome {
            Some((o, asked)) => {
                let mut r = ev.respond(&req, o, &cx);
                if let Some(asked) = asked {
                    settle_response(&mut r, asked);
                }
                r
            }
            None => failsafe(ev, &req, now, &cx),
        };
        let bytes = serde_json::to_vec(&response).map_err(EvaluateError::Render)?;
        let latency = started.elapsed();
        if let Some(stats) = route.stats.cohort(cohort) {
            stats.record(Sample {
                decision: response.decision,
                observed: response.observed,
                error: error.is_some(),
                failsafe: outcome.is_none(),
                latency,
            });
            stats.record_agent(
                &ev.artifact().inventory,
                json.get("agent").and_then(Value::as_str),
            );
        }
        self.agent_calls.record(
            &ev.artifact().inventory,
            json.get("agent").and_then(Value::as_str),
            now,
        );

        if !self.log.enabled() && !shadowed {
            return Ok(bytes);
        }
        let line = self.log.enabled().then(|| {
            // What a modify redacts is never logged in clear: the request
            // with every modification that applies (the failsafe's too).
            let kept = match &outcome {
                Some((o, _)) => ev.kept_request(&req, o),
                None => ev
                    .evaluate_dry_run(&req, now, &Saturated)
                    .ok()
                    .and_then(|o| ev.kept_request(&req, &o)),
            };
            Box::new(EvaluationLine {
                time: SystemTime::now(),
                request_id: request_id.map_or_else(|| self.next_request_id(), str::to_string),
                session: json
                    .get("session")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                artifact: response.artifact.clone(),
                cohort,
                stage: route.stage_tag().to_string(),
                route_version: route.version,
                policies: ev
                    .versions_for(&req)
                    .into_iter()
                    .map(|(p, v)| (p.to_string(), v.to_string()))
                    .collect(),
                decision: response.decision,
                observed: response.observed,
                approval_id: response.approval_id.clone(),
                failsafe: outcome.is_none(),
                audit: response.audit,
                reasons: response.reasons,
                error,
                shadow: None,
                diverged: None,
                latency_us: micros(latency),
                // `null`: the request as received, filled in below.
                request: kept.unwrap_or(Value::Null),
            })
        });
        if shadowed {
            let job = shadow::ShadowJob {
                route: Arc::clone(&route),
                request: json,
                decoded: req,
                stable: response.decision,
                stable_observed: response.observed,
                now,
                counted,
                weight: 3 * body.len() + 1024,
                line,
            };
            if let Err(job) = self.shadow.send(job) {
                route.stats.shadow_dropped.fetch_add(1, Relaxed);
                // The evaluation is still logged, without its shadow side.
                if let Some(mut line) = job.line {
                    if line.request.is_null() {
                        line.request = job.request;
                    }
                    self.log.send(LogLine::Evaluation(line));
                }
            }
        } else if let Some(mut line) = line {
            if line.request.is_null() {
                line.request = json;
            }
            self.log.send(LogLine::Evaluation(line));
        }
        Ok(bytes)
    }

    /// A request id for the log: the engine's start time and a sequence.
    pub fn next_request_id(&self) -> String {
        format!("{:x}-{}", self.boot, self.seq.fetch_add(1, Relaxed) + 1)
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
    ) -> Result<(bool, ArtifactSummary), UploadError> {
        let artifact = Artifact::from_bytes(body)?;
        if artifact.hash != hash {
            return Err(UploadError::HashMismatch {
                found: artifact.hash,
                path: hash.to_string(),
            });
        }
        if let Some(held) = self.held(hash) {
            return Ok((false, self.summary(&held)));
        }
        let evaluator = Evaluator::new(&artifact).map_err(UploadError::Load)?;
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

    /// Deletes an artifact the route does not name: its evaluator, its
    /// breaker (and so its `/metrics` series) go with it. Serialized with
    /// route changes, so that no route can be put in force on an artifact
    /// being deleted.
    pub async fn delete_artifact(&self, hash: &str) -> Result<(), DeleteError> {
        let _serial = self.fence().await;
        if let Some(route) = self.route.load().as_ref() {
            let role = if route.spec.stable == hash {
                Some("stable")
            } else if route.spec.candidate.as_deref() == Some(hash) {
                Some("candidate")
            } else {
                None
            };
            if let Some(role) = role {
                return Err(DeleteError::Routed {
                    role,
                    hash: hash.to_string(),
                });
            }
        }
        let mut map = self.artifacts.write().unwrap_or_else(|e| e.into_inner());
        if map.remove(hash).is_none() {
            return Err(DeleteError::NotHeld(hash.to_string()));
        }
        drop(map);
        tracing::info!(artifact = hash, "artifact deleted");
        Ok(())
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

    /// Waits for queued shadow evaluations, then writes out and closes the
    /// decision log. Called once the server has stopped taking requests.
    pub async fn shutdown(&self) {
        if !self.shadow.close(Duration::from_secs(10)).await {
            tracing::warn!("shadow evaluations still queued at shutdown");
        }
        self.log.close().await;
    }
}

/// Every 10 seconds: the backend forgets counters of ended windows,
/// expired graces and approvals past their time.
async fn housekeeping(engine: std::sync::Weak<Engine>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let now = engine.now_secs();
        if let Err(e) = engine.backend.expire(now).await {
            tracing::warn!(error = %e, "state housekeeping");
        }
    }
}
