//! Approval queues: requests that got `require_approval` wait here, under ids
//! `ap-1`, `ap-2`, …, until an admin approves or rejects them
//! (`POST /v1/approvals/{id}`) or a state migration resolves them.
//!
//! The queue belongs to the rule that asked (policy and rule name), not to an
//! artifact, so it carries over an artifact swap. It sits behind the
//! [`ApprovalStore`] trait: in memory here, a shared backend later. Deciding
//! records who decided and when; it re-evaluates nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use crate::api::approvals::{Approval, Decided, Verdict};
use crate::eval::state::StateError;

/// How many decided approvals are remembered (for lookups and to answer a
/// second decision with 409).
const DECIDED_KEPT: usize = 10_000;

/// A request to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    pub policy: String,
    pub rule: String,
    pub group: String,
    pub via: Option<String>,
    pub created: u64,
    pub request: serde_json::Value,
}

/// Why an approval could not be decided.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    #[error("no approval `{0}`")]
    NotFound(String),
    #[error("approval `{id}` was already decided: {} by `{}`", .decided.decision.past(), .decided.by)]
    AlreadyDecided { id: String, decided: Decided },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Where approval queues live.
pub trait ApprovalStore: Send + Sync {
    /// Queues a request; returns its id.
    fn enqueue(&self, new: NewApproval) -> Result<String, StateError>;

    /// Every waiting request, oldest first.
    fn pending(&self) -> Result<Vec<Approval>, StateError>;

    /// Approves or rejects a waiting request; returns it decided.
    fn decide(
        &self,
        id: &str,
        decision: Verdict,
        by: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<Approval, DecideError>;
}

#[derive(Debug, Default)]
struct Queues {
    next: u64,
    /// By number, so oldest first.
    pending: BTreeMap<u64, Approval>,
    decided: HashMap<String, Approval>,
    decided_order: VecDeque<String>,
}

/// Approval queues in memory.
#[derive(Debug, Default)]
pub struct MemoryApprovalStore {
    inner: Mutex<Queues>,
}

impl MemoryApprovalStore {
    pub fn new() -> Self {
        MemoryApprovalStore::default()
    }
}

fn number(id: &str) -> Option<u64> {
    id.strip_prefix("ap-")?.parse().ok()
}

impl ApprovalStore for MemoryApprovalStore {
    fn enqueue(&self, new: NewApproval) -> Result<String, StateError> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.next += 1;
        let n = q.next;
        let id = format!("ap-{n}");
        q.pending.insert(
            n,
            Approval {
                id: id.clone(),
                decided: None,
                policy: new.policy,
                rule: new.rule,
                group: new.group,
                via: new.via,
                created: new.created,
                request: new.request,
            },
        );
        Ok(id)
    }

    fn pending(&self) -> Result<Vec<Approval>, StateError> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(q.pending.values().cloned().collect())
    }

    fn decide(
        &self,
        id: &str,
        decision: Verdict,
        by: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<Approval, DecideError> {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(decided) = q.decided.get(id).and_then(|a| a.decided.clone()) {
            return Err(DecideError::AlreadyDecided {
                id: id.to_string(),
                decided,
            });
        }
        let Some(waiting) = number(id).and_then(|n| q.pending.remove(&n)) else {
            return Err(DecideError::NotFound(id.to_string()));
        };
        let record = Approval {
            decided: Some(Decided {
                decision,
                by: by.to_string(),
                reason: reason.map(str::to_string),
                decided: now,
            }),
            ..waiting
        };
        q.decided.insert(record.id.clone(), record.clone());
        q.decided_order.push_back(record.id.clone());
        while q.decided_order.len() > DECIDED_KEPT {
            if let Some(old) = q.decided_order.pop_front() {
                q.decided.remove(&old);
            }
        }
        Ok(record)
    }
}
