//! Approvals on the wire: a request waiting for a human decision, as
//! `GET /v1/state` lists it, and the same approval once decided, as
//! `POST /v1/approvals/{id}` answers it. One type, [`Approval`], for both:
//! its [`Decided`] part is `None` while the request waits.
//!
//! ```json
//! {"id": "ap-17", "policy": "payments", "rule": "large_transfer",
//!  "group": "finance", "via": "approvals.request", "created": 1767229000,
//!  "request": {"tool": "payments.transfer", "…": "…"}}
//! {"id": "ap-17", "decision": "approve", "by": "alice", "decided": 1767229100,
//!  "policy": "payments", "…": "…"}
//! ```
//!
//! An approval lives through `pending` → `approved` | `rejected`, or
//! `expired` when nobody decided within the engine's `--approval-ttl`
//! ([`ApprovalStatus`]). `GET /v1/approvals/{id}` answers an
//! [`ApprovalState`] (the id is the capability: no token, and no request
//! in the answer); `GET /v1/approvals` (admin) lists them all, requests
//! included ([`ApprovalList`]).
//!
//! Pure data: the engine's approval store keeps them, `sluice check` reads
//! the waiting ones; nothing here decides or evaluates.

use serde::{Deserialize, Serialize};

/// An approval, waiting or decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub id: String,
    /// Who decided, how and when; `None` while the request waits. Its
    /// fields sit beside the others in the document.
    #[serde(flatten)]
    pub decided: Option<Decided>,
    /// The policy and rule (or limit) that asked for approval.
    pub policy: String,
    pub rule: String,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// When an undecided approval expires (seconds since the epoch; 0:
    /// never, as written by engines before approvals expired).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires: u64,
    /// When an approved request was let through (it is, once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed: Option<u64>,
    /// The request as received.
    pub request: serde_json::Value,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Approval {
    /// Whether the request still waits for a decision (expired or not).
    pub fn is_pending(&self) -> bool {
        self.decided.is_none()
    }

    /// Where the approval stands at `now`.
    pub fn status(&self, now: u64) -> ApprovalStatus {
        match &self.decided {
            Some(d) => match d.decision {
                Verdict::Approve => ApprovalStatus::Approved,
                Verdict::Reject => ApprovalStatus::Rejected,
            },
            None if self.expires != 0 && self.expires <= now => ApprovalStatus::Expired,
            None => ApprovalStatus::Pending,
        }
    }

    /// The approval as `GET /v1/approvals/{id}` answers it at `now`: with
    /// the request when `with_request`.
    pub fn state(&self, now: u64, with_request: bool) -> ApprovalState {
        ApprovalState {
            id: self.id.clone(),
            status: self.status(now),
            decided: self.decided.clone(),
            policy: self.policy.clone(),
            rule: self.rule.clone(),
            group: self.group.clone(),
            via: self.via.clone(),
            created: self.created,
            expires: self.expires,
            consumed: self.consumed,
            request: with_request.then(|| self.request.clone()),
        }
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
        }
    }
}

/// `GET /v1/approvals/{id}`: where one approval stands and who decided.
///
/// ```json
/// {"id": "ap-01JF…", "status": "approved", "decision": "approve", "by": "alice",
///  "decided": 1767229100, "policy": "payments", "rule": "large_transfer",
///  "group": "finance", "created": 1767229000, "expires": 1767315400}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalState {
    pub id: String,
    pub status: ApprovalStatus,
    #[serde(flatten)]
    pub decided: Option<Decided>,
    pub policy: String,
    pub rule: String,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub created: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires: u64,
    /// When the approved request was let through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed: Option<u64>,
    /// The request (admin listings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
}

/// `GET /v1/approvals` (admin): every approval the state backend still
/// keeps, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalList {
    /// When the list was read (seconds since the epoch).
    pub time: u64,
    pub approvals: Vec<ApprovalState>,
}

/// How an approval was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub decision: Verdict,
    /// Who decided: the admin's name, or `sluice` for a migration.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds since the epoch.
    pub decided: u64,
}

/// An admin's answer to a waiting request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    /// The verdict as a past participle: `approved`, `rejected`.
    pub fn past(self) -> &'static str {
        match self {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        }
    }
}

/// The body of `POST /v1/approvals/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    pub decision: Verdict,
    /// Who decides; must not be blank.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn waiting() -> serde_json::Value {
        json!({"id": "ap-1", "policy": "pay", "rule": "big", "group": "finance",
               "created": 5, "request": {"tool": "pay"}})
    }

    #[test]
    fn a_waiting_approval_has_no_decision_fields() -> Result<(), serde_json::Error> {
        let a: Approval = serde_json::from_value(waiting())?;
        assert!(a.is_pending());
        assert_eq!(serde_json::to_value(&a)?, waiting());
        Ok(())
    }

    #[test]
    fn a_decided_approval_keeps_its_fields_flat_and_in_order() -> Result<(), serde_json::Error> {
        let mut a: Approval = serde_json::from_value(waiting())?;
        a.decided = Some(Decided {
            decision: Verdict::Reject,
            by: "alice".into(),
            reason: Some("no".into()),
            decided: 9,
        });
        let text = serde_json::to_string(&a)?;
        assert_eq!(
            text,
            r#"{"id":"ap-1","decision":"reject","by":"alice","reason":"no","decided":9,"policy":"pay","rule":"big","group":"finance","created":5,"request":{"tool":"pay"}}"#
        );
        assert_eq!(serde_json::from_str::<Approval>(&text)?, a);
        Ok(())
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = waiting();
        if let Some(o) = v.as_object_mut() {
            o.insert("color".into(), json!("red"));
        }
        assert!(serde_json::from_value::<Approval>(v).is_err());
    }
}
