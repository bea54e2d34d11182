//! The engine's state operations on its [`StateBackend`]: counting a
//! request's limits (synchronously in a local store, or in one awaited
//! call to a shared one), asking and deciding approvals, and reading the
//! live state and the backend's readiness.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::approvals::{Approval, ApprovalList, ApprovalState, Verdict};
use crate::api::state::{LiveState, Readiness};
use crate::engine::approvals::{Asked, DecideError, NewApproval, fingerprint};
use crate::engine::backend::{Decision, StateBackend};
use crate::engine::bound::bound;
use crate::engine::decision_log::{EventLine, LogLine};
use crate::engine::error::StoreError;
use crate::engine::server::{Engine, Unevaluated};
use crate::eval::request::Request;
use crate::eval::state::{CounterEntry, LimitCall, LimitKey, LimitStore, StateError, Window};
use crate::eval::{EvalError, Evaluator, LimitMode, Outcome, counts_limits};
use crate::model::ir::{DecisionKind, Effect};

/// How long the readiness probe waits for the backend.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest request a waiting approval keeps, in bytes of JSON (see
/// [`crate::engine::bound`]): a full queue of them stays small.
pub const MAX_APPROVAL_REQUEST: usize = 16 << 10;

/// The counters one request was counted in: (limit, key, window).
#[derive(Debug, Default)]
pub(super) struct Counted(Vec<(String, String, Window)>);

impl Counted {
    fn took(&self, key: LimitKey<'_>, window: Window) -> bool {
        self.0
            .iter()
            .any(|(l, k, w)| l == key.limit && k == key.key && *w == window)
    }
}

/// What an evaluation notes of the counters besides counting.
pub(super) enum Track<'a> {
    Off,
    /// Counting: note the counters counted.
    Record(&'a mut Counted),
    /// A dry run: read the counters as they were before these were counted.
    Before(&'a Counted),
}

/// A local store seen through a [`Track`]: counting notes what it counted,
/// reading takes back what the request itself counted.
struct Tracked<'a> {
    inner: &'a dyn LimitStore,
    record: Option<Mutex<&'a mut Counted>>,
    before: Option<&'a Counted>,
}

impl LimitStore for Tracked<'_> {
    fn try_acquire(&self, key: LimitKey<'_>, window: Window, max: u64) -> Result<bool, StateError> {
        let ok = self.inner.try_acquire(key, window, max)?;
        if ok && let Some(record) = &self.record {
            let mut counted = record.lock().unwrap_or_else(|e| e.into_inner());
            counted
                .0
                .push((key.limit.to_string(), key.key.to_string(), window));
        }
        Ok(ok)
    }

    fn count(&self, key: LimitKey<'_>, window: Window) -> Result<u64, StateError> {
        let n = self.inner.count(key, window)?;
        Ok(match self.before {
            Some(b) if b.took(key, window) => n.saturating_sub(1),
            _ => n,
        })
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        self.inner.entries()
    }

    fn put(&self, entry: &CounterEntry) -> Result<(), StateError> {
        self.inner.put(entry)
    }

    fn remove_limit(&self, limit: &str) -> Result<usize, StateError> {
        self.inner.remove_limit(limit)
    }
}

/// Evaluates `req` into `out` against `backend`'s limits: counting them
/// (`Count`; not when the rules deny the request, see
/// [`counts_limits`]) or reading them (`DryRun`), noting or taking back
/// counters as `track` says. A local backend is asked synchronously; any
/// other in one awaited call for every limit the request hits.
pub(super) async fn evaluate_with(
    backend: &dyn StateBackend,
    ev: &Evaluator,
    req: &Request,
    now: u64,
    mode: LimitMode,
    out: &mut Outcome,
    track: Track<'_>,
) -> Result<(), EvalError> {
    if let Some(store) = backend.local() {
        return match track {
            Track::Off => ev.evaluate_into(req, now, store, mode, out),
            Track::Record(counted) => {
                let tracked = Tracked {
                    inner: store,
                    record: Some(Mutex::new(counted)),
                    before: None,
                };
                ev.evaluate_into(req, now, &tracked, mode, out)
            }
            Track::Before(counted) => {
                let tracked = Tracked {
                    inner: store,
                    record: None,
                    before: Some(counted),
                };
                ev.evaluate_into(req, now, &tracked, mode, out)
            }
        };
    }
    ev.evaluate_deferred(req, now, out)?;
    if out.pending_len() == 0 {
        return Ok(());
    }
    let calls: Vec<LimitCall<'_>> = ev.pending(out).collect();
    let within = if mode == LimitMode::Count && counts_limits(out.decision()) {
        let within = backend.acquire(&calls, now).await?;
        if let Track::Record(counted) = track {
            for (c, _) in calls.iter().zip(&within).filter(|(_, ok)| **ok) {
                counted
                    .0
                    .push((c.key.limit.to_string(), c.key.key.to_string(), c.window));
            }
        }
        within
    } else {
        let counts = backend.counts(&calls).await?;
        calls
            .iter()
            .zip(counts)
            .map(|(c, n)| {
                let n = match &track {
                    Track::Before(b) if b.took(c.key, c.window) => n.saturating_sub(1),
                    _ => n,
                };
                n < c.max
            })
            .collect()
    };
    drop(calls);
    ev.settle(out, &within)
}

impl Engine {
    /// Evaluates a request against state: its limits counted, and approval
    /// asked when the outcome needs it.
    /// `counted`, when given, notes the counters counted.
    pub(super) async fn evaluate_state(
        &self,
        ev: &Evaluator,
        req: &Request,
        json: &Value,
        now: u64,
        counted: Option<&mut Counted>,
    ) -> Result<(Outcome, Option<Asked>), Unevaluated> {
        let mut out = Outcome::default();
        let track = counted.map_or(Track::Off, Track::Record);
        let count = LimitMode::Count;
        evaluate_with(&*self.backend, ev, req, now, count, &mut out, track).await?;
        let asked = if out.decision() == DecisionKind::RequireApproval {
            Some(self.ask(ev, &out, req, json, now).await?)
        } else {
            None
        };
        Ok((out, asked))
    }

    /// Asks approval for the request under its first `require_approval`
    /// reason. The approval keeps the request as modified (what a `modify`
    /// redacts is not kept), its large fields cut
    /// ([`MAX_APPROVAL_REQUEST`]); the fingerprint is the request's as
    /// received.
    async fn ask(
        &self,
        ev: &Evaluator,
        outcome: &Outcome,
        req: &Request,
        request: &Value,
        now: u64,
    ) -> Result<Asked, Unevaluated> {
        let Some(reason) = ev
            .reasons(outcome)
            .find(|r| r.decision() == DecisionKind::RequireApproval)
        else {
            return Err(Unevaluated::NoApprovalReason);
        };
        let (group, via) = match reason.effect {
            Effect::RequireApproval { group, via, .. } => (group.clone(), via.clone()),
            _ => (String::new(), None),
        };
        let config = &self.config.approvals;
        let mut kept = ev
            .kept_request(req, outcome)
            .unwrap_or_else(|| request.clone());
        bound(&mut kept, MAX_APPROVAL_REQUEST);
        let new = NewApproval {
            policy: reason.policy.to_string(),
            rule: reason.rule.to_string(),
            group,
            via,
            created: now,
            expires: now.saturating_add(config.ttl_secs()),
            fingerprint: fingerprint(request),
            request: kept,
        };
        let asked = self
            .backend
            .ask(&new, config, now)
            .await
            .map_err(Unevaluated::Enqueue)?;
        if let Asked::Approved { id, by } = &asked {
            self.log.send(LogLine::Approval(EventLine::now(json!({
                "id": id,
                "event": "consumed",
                "approved_by": by,
                "policy": new.policy,
                "rule": new.rule,
            }))));
        }
        Ok(asked)
    }

    /// Approves or rejects a waiting request.
    pub async fn decide(
        &self,
        id: &str,
        decision: Verdict,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Approval, DecideError> {
        let d = Decision {
            id,
            verdict: decision,
            by,
            reason,
        };
        let record = self
            .backend
            .decide(d, &self.config.approvals, self.now_secs())
            .await?;
        let decided = record.decided.as_ref();
        self.log.send(LogLine::Approval(EventLine::now(json!({
            "id": record.id,
            "decision": decided.map(|d| d.decision),
            "by": decided.map(|d| &d.by),
            "reason": decided.and_then(|d| d.reason.as_ref()),
            "policy": record.policy,
            "rule": record.rule,
        }))));
        Ok(record)
    }

    /// Where approval `id` stands (`GET /v1/approvals/{id}`), without its
    /// request.
    pub async fn approval(&self, id: &str) -> Result<Option<ApprovalState>, StoreError> {
        let now = self.now_secs();
        let a = self
            .backend
            .approval(id, now)
            .await
            .map_err(StoreError::ReadApprovals)?;
        Ok(a.map(|a| a.state(now, false)))
    }

    /// Every approval kept, with its request (`GET /v1/approvals`).
    pub async fn approvals(&self) -> Result<ApprovalList, StoreError> {
        let now = self.now_secs();
        let all = self
            .backend
            .approvals(now)
            .await
            .map_err(StoreError::ReadApprovals)?;
        Ok(ApprovalList {
            time: now,
            approvals: all.iter().map(|a| a.state(now, true)).collect(),
        })
    }

    /// The live state: current-window counters and waiting requests.
    pub async fn live_state(&self) -> Result<LiveState, StoreError> {
        let now = self.now_secs();
        let counters = self
            .backend
            .entries()
            .await
            .map_err(StoreError::ReadCounters)?
            .into_iter()
            .filter(|c| c.window.end() > now)
            .collect();
        let approvals: Vec<Approval> = self
            .backend
            .approvals(now)
            .await
            .map_err(StoreError::ReadApprovals)?
            .into_iter()
            .filter(|a| a.is_pending() && (a.expires == 0 || a.expires > now))
            .collect();
        Ok(LiveState {
            artifact: self.route.load().as_ref().map(|r| r.spec.stable.clone()),
            time: now,
            counters,
            approvals,
            shared: self.backend.shared_name(),
        })
    }

    /// Whether the engine is ready: a route and a backend that answers.
    pub async fn readiness(&self) -> Readiness {
        let mut backend = self.backend.status();
        match tokio::time::timeout(PROBE_TIMEOUT, self.backend.health()).await {
            Ok(Ok(())) => backend.up = true,
            Ok(Err(e)) => {
                backend.up = false;
                backend.error = Some(e.to_string());
            }
            Err(_) => {
                backend.up = false;
                backend.error = Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()));
            }
        }
        let route = self.route.load().is_some();
        Readiness {
            ready: route && backend.up,
            route,
            backend,
        }
    }
}
