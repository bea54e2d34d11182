//! The engine's state operations on its [`StateBackend`]: counting a
//! request's limits (synchronously in a local store, or in one awaited
//! call to a shared one), asking and deciding approvals, and reading the
//! live state and the backend's readiness.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::approvals::{Approval, ApprovalList, ApprovalState, Verdict};
use crate::api::state::{LiveState, Readiness};
use crate::engine::approvals::{Asked, DecideError, NewApproval, fingerprint};
use crate::engine::backend::{Decision, StateBackend};
use crate::engine::decision_log::{EventLine, LogLine};
use crate::engine::error::StoreError;
use crate::engine::server::{Engine, Unevaluated};
use crate::eval::request::Request;
use crate::eval::state::LimitCall;
use crate::eval::{EvalError, Evaluator, LimitMode, Outcome};
use crate::model::ir::{DecisionKind, Effect};

/// How long the readiness probe waits for the backend.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Evaluates `req` into `out` against `backend`'s limits: counting them
/// (`Count`) or reading them (`DryRun`). A local backend is asked
/// synchronously; any other in one awaited call for every limit the
/// request hits.
pub(super) async fn evaluate_with(
    backend: &dyn StateBackend,
    ev: &Evaluator,
    req: &Request,
    now: u64,
    mode: LimitMode,
    out: &mut Outcome,
) -> Result<(), EvalError> {
    if let Some(store) = backend.local() {
        return ev.evaluate_into(req, now, store, mode, out);
    }
    ev.evaluate_deferred(req, now, out)?;
    if out.pending_len() == 0 {
        return Ok(());
    }
    let calls: Vec<LimitCall<'_>> = ev.pending(out).collect();
    let within = match mode {
        LimitMode::Count => backend.acquire(&calls, now).await?,
        LimitMode::DryRun => {
            let counts = backend.counts(&calls).await?;
            calls.iter().zip(counts).map(|(c, n)| n < c.max).collect()
        }
    };
    drop(calls);
    ev.settle(out, &within)
}

impl Engine {
    /// Evaluates a request against state: its limits counted, and approval
    /// asked when the outcome needs it.
    pub(super) async fn evaluate_state(
        &self,
        ev: &Evaluator,
        req: &Request,
        json: &Value,
        now: u64,
    ) -> Result<(Outcome, Option<Asked>), Unevaluated> {
        let mut out = Outcome::default();
        evaluate_with(&*self.backend, ev, req, now, LimitMode::Count, &mut out).await?;
        let asked = if out.decision() == DecisionKind::RequireApproval {
            Some(self.ask(ev, &out, json, now).await?)
        } else {
            None
        };
        Ok((out, asked))
    }

    /// Asks approval for the request under its first `require_approval`
    /// reason.
    async fn ask(
        &self,
        ev: &Evaluator,
        outcome: &Outcome,
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
        let new = NewApproval {
            policy: reason.policy.to_string(),
            rule: reason.rule.to_string(),
            group,
            via,
            created: now,
            expires: now.saturating_add(config.ttl_secs()),
            fingerprint: fingerprint(request),
            request: request.clone(),
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
