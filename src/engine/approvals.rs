//! The approval lifecycle (SPEC §5 "Approvals"), the same whichever state
//! backend keeps it:
//!
//! - A request that gets `require_approval` is **asked**: its fingerprint
//!   ([`fingerprint`]: the canonical JSON of its tool, agent, org, session
//!   and args) names it. While an approval of the same fingerprint waits,
//!   the same request gets the same id ([`Asked::Pending`]). Ids are
//!   ULID-like ([`new_id`]: the time in milliseconds and 80 random bits
//!   from the operating system), unique across engines and restarts and
//!   not guessable — the id is the capability `GET /v1/approvals/{id}`
//!   asks for.
//! - An admin approves or rejects it (`POST /v1/approvals/{id}`). Approved,
//!   the same request is let through **once** ([`Asked::Approved`], reason
//!   code `APPROVED`); asked again after that, it waits for a new approval.
//!   Rejected, the same request is denied (`APPROVAL_REJECTED`) as long as
//!   the rejection is kept.
//! - Undecided for `--approval-ttl` (24 h by default), it expires: it can
//!   no longer be decided, and the same request asked again waits under a
//!   new id. A decided or expired approval is kept one more TTL, so that
//!   its status can be read, then forgotten.
//! - At most `--max-pending-approvals` wait per group; past it a request is
//!   denied (`APPROVAL_QUEUE_FULL`) and nothing is queued.
//!
//! The approval belongs to the rule that asked (policy and rule name), not
//! to an artifact, so it carries over an artifact swap. [`MemoryApprovals`]
//! keeps the lifecycle in this process; the Redis backend keeps the same
//! lifecycle in Redis, atomically, for a fleet. [`settle_response`] turns
//! what asking answered into the evaluate response.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::TryRng as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::approvals::{Approval, ApprovalStatus, Decided, Verdict};
use crate::api::evaluate::EvalResponse;
use crate::eval::state::StateError;
use crate::model::ir::DecisionKind;

/// The reason code of a request let through by its approval.
pub const APPROVED: &str = "APPROVED";
/// The reason code of a request whose approval was rejected.
pub const APPROVAL_REJECTED: &str = "APPROVAL_REJECTED";
/// The reason code of a request refused because its group's queue is full.
pub const APPROVAL_QUEUE_FULL: &str = "APPROVAL_QUEUE_FULL";

/// How long approvals live and how many may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalConfig {
    /// How long an approval may wait for a decision; decided and expired
    /// approvals are kept as long again.
    pub ttl: Duration,
    /// Approvals that may wait at once in one group.
    pub max_pending: usize,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig {
            ttl: Duration::from_secs(24 * 3600),
            max_pending: 1000,
        }
    }
}

impl ApprovalConfig {
    /// The TTL in whole seconds (at least one).
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }
}

/// A request to ask approval for.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    pub policy: String,
    pub rule: String,
    pub group: String,
    pub via: Option<String>,
    pub created: u64,
    /// When it expires undecided.
    pub expires: u64,
    pub request: Value,
    /// [`fingerprint`] of `request`.
    pub fingerprint: String,
}

impl NewApproval {
    /// The waiting approval `id` of this request.
    pub fn waiting(&self, id: String) -> Approval {
        Approval {
            id,
            decided: None,
            policy: self.policy.clone(),
            rule: self.rule.clone(),
            group: self.group.clone(),
            via: self.via.clone(),
            created: self.created,
            expires: self.expires,
            consumed: None,
            request: self.request.clone(),
        }
    }
}

/// What asking approval for a request answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// The request waits under `id`; `new` when this ask queued it.
    Pending { id: String, new: bool },
    /// Approved by `by`: this request is let through, and the approval is
    /// used up.
    Approved { id: String, by: String },
    /// Rejected by `by`.
    Rejected {
        id: String,
        by: String,
        reason: Option<String>,
    },
    /// `group` has `pending` approvals waiting already: nothing queued.
    QueueFull { group: String, pending: usize },
}

impl Asked {
    /// The approval id the response names.
    pub fn id(&self) -> Option<&str> {
        match self {
            Asked::Pending { id, .. } | Asked::Approved { id, .. } | Asked::Rejected { id, .. } => {
                Some(id)
            }
            Asked::QueueFull { .. } => None,
        }
    }
}

/// Why an approval could not be decided.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    #[error("no approval `{0}`")]
    NotFound(String),
    #[error("approval `{id}` was already decided: {} by `{}`", .decided.decision.past(), .decided.by)]
    AlreadyDecided { id: String, decided: Decided },
    #[error("approval `{0}` expired undecided: the request must be asked again")]
    Expired(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The fingerprint of a request: the hex SHA-256 of the canonical JSON
/// (keys sorted, compact) of `{"agent", "args", "org", "session", "tool"}`
/// as received; an absent field is `null`.
pub fn fingerprint(request: &Value) -> String {
    let mut text = String::from("{");
    for (n, field) in ["agent", "args", "org", "session", "tool"]
        .iter()
        .enumerate()
    {
        if n > 0 {
            text.push(',');
        }
        let _ = write!(text, "\"{field}\":");
        canonical(request.get(field).unwrap_or(&Value::Null), &mut text);
    }
    text.push('}');
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Compact JSON with object keys sorted.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (n, (k, v)) in sorted.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, v) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Crockford's base 32, as ULIDs write it.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The last id made in this process, as a number.
static LAST_ID: Mutex<u128> = Mutex::new(0);

/// A new approval id: `ap-` and a ULID (26 characters: 48 bits of
/// milliseconds since the epoch, then 80 random bits from the operating
/// system). Sorts by creation time — within one millisecond of one
/// process too: the next id is then the last plus one, as monotonic ULIDs
/// are; unique across engines and restarts.
pub fn new_id() -> Result<String, StateError> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut random = [0u8; 10];
    rand::rngs::SysRng
        .try_fill_bytes(&mut random)
        .map_err(|e| StateError::Unavailable(format!("no randomness for an approval id: {e}")))?;
    let mut value: u128 = (millis & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    {
        let mut last = LAST_ID.lock().unwrap_or_else(|e| e.into_inner());
        if value >> 80 == *last >> 80 && value <= *last {
            value = *last + 1;
        }
        *last = value;
    }
    let mut id = String::with_capacity(29);
    id.push_str("ap-");
    for i in (0..26).rev() {
        let digit = ((value >> (5 * i)) & 31) as usize;
        id.push(char::from(CROCKFORD.get(digit).copied().unwrap_or(b'0')));
    }
    Ok(id)
}

/// Turns the evaluate response of a `require_approval` outcome into the
/// answer for what asking found: still `require_approval` with the id
/// while it waits; approved, the approval reasons become `allow` with code
/// `APPROVED` and the decision is what the other reasons make of it
/// (`modify` or `allow`); rejected or refused for a full queue, they become
/// `deny` (`APPROVAL_REJECTED`, `APPROVAL_QUEUE_FULL`) and nothing of the
/// request goes through.
pub fn settle_response(resp: &mut EvalResponse, asked: &Asked) {
    resp.approval_id = asked.id().map(str::to_string);
    let (effect, code, text) = match asked {
        Asked::Pending { .. } => return,
        Asked::Approved { id, by } => (
            DecisionKind::Allow,
            APPROVED,
            format!("approved by `{by}` (approval {id}); let through once"),
        ),
        Asked::Rejected { id, by, reason } => (
            DecisionKind::Deny,
            APPROVAL_REJECTED,
            match reason {
                Some(r) => format!("rejected by `{by}` (approval {id}): {r}"),
                None => format!("rejected by `{by}` (approval {id})"),
            },
        ),
        Asked::QueueFull { group, pending } => (
            DecisionKind::Deny,
            APPROVAL_QUEUE_FULL,
            format!(
                "the approval queue of group `{group}` is full ({pending} waiting); try again later"
            ),
        ),
    };
    for r in &mut resp.reasons {
        if r.effect == DecisionKind::RequireApproval {
            r.effect = effect;
            r.code = Some(code.to_string());
            r.text = Some(text.clone());
        }
    }
    resp.decision = match effect {
        DecisionKind::Deny => DecisionKind::Deny,
        _ if resp
            .reasons
            .iter()
            .any(|r| r.effect == DecisionKind::Modify) =>
        {
            DecisionKind::Modify
        }
        _ => DecisionKind::Allow,
    };
    if resp.decision != DecisionKind::Modify {
        resp.modifications.clear();
        resp.request = None;
    }
}

/// Approvals forgotten at most, decided or expired, beyond those their
/// TTL keeps (a bound on memory whatever the TTL).
const KEPT_MAX: usize = 100_000;

#[derive(Debug)]
struct Record {
    approval: Approval,
    /// When the record is forgotten.
    forget: u64,
}

#[derive(Debug, Default)]
struct Book {
    records: HashMap<String, Record>,
    /// Fingerprint → the id of its latest approval.
    latest: HashMap<String, String>,
}

impl Book {
    fn pending_in(&self, group: &str, now: u64) -> usize {
        self.records
            .values()
            .filter(|r| {
                r.approval.group == group && r.approval.status(now) == ApprovalStatus::Pending
            })
            .count()
    }

    fn forget(&mut self, now: u64) {
        self.records.retain(|_, r| r.forget > now);
        if self.records.len() > KEPT_MAX {
            let mut done: Vec<(u64, String)> = self
                .records
                .iter()
                .filter(|(_, r)| r.approval.status(now) != ApprovalStatus::Pending)
                .map(|(id, r)| (r.approval.created, id.clone()))
                .collect();
            done.sort();
            let excess = self.records.len() - KEPT_MAX;
            for (_, id) in done.into_iter().take(excess) {
                self.records.remove(&id);
            }
        }
        let records = &self.records;
        self.latest.retain(|_, id| records.contains_key(id));
    }
}

/// The approval lifecycle in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryApprovals {
    book: Mutex<Book>,
}

impl MemoryApprovals {
    pub fn new() -> Self {
        MemoryApprovals::default()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A poisoned lock only means another thread panicked mid-update;
        // the records are still consistent enough to serve.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks approval for `new` (see the module doc).
    pub fn ask(
        &self,
        new: &NewApproval,
        config: &ApprovalConfig,
        now: u64,
    ) -> Result<Asked, StateError> {
        let keep = config.ttl_secs();
        let mut book = self.book();
        if let Some(id) = book.latest.get(&new.fingerprint).cloned()
            && let Some(record) = book.records.get_mut(&id)
        {
            let a = &mut record.approval;
            match &a.decided {
                None if a.expires > now => return Ok(Asked::Pending { id, new: false }),
                None => {}
                Some(d) if d.decision == Verdict::Approve && a.consumed.is_none() => {
                    a.consumed = Some(now);
                    return Ok(Asked::Approved {
                        id,
                        by: d.by.clone(),
                    });
                }
                Some(d) if d.decision == Verdict::Reject => {
                    return Ok(Asked::Rejected {
                        id,
                        by: d.by.clone(),
                        reason: d.reason.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        book.forget(now);
        let pending = book.pending_in(&new.group, now);
        if pending >= config.max_pending {
            return Ok(Asked::QueueFull {
                group: new.group.clone(),
                pending,
            });
        }
        let id = new_id()?;
        book.latest.insert(new.fingerprint.clone(), id.clone());
        book.records.insert(
            id.clone(),
            Record {
                approval: new.waiting(id.clone()),
                forget: new.expires.saturating_add(keep),
            },
        );
        Ok(Asked::Pending { id, new: true })
    }

    /// The approval `id`, if it is kept.
    pub fn get(&self, id: &str, now: u64) -> Option<Approval> {
        let book = self.book();
        book.records
            .get(id)
            .filter(|r| r.forget > now)
            .map(|r| r.approval.clone())
    }

    /// Every approval kept, oldest first.
    pub fn all(&self, now: u64) -> Vec<Approval> {
        let mut book = self.book();
        book.forget(now);
        let mut out: Vec<Approval> = book.records.values().map(|r| r.approval.clone()).collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        out
    }

    /// Approves or rejects a waiting approval.
    pub fn decide(
        &self,
        id: &str,
        decision: Verdict,
        by: &str,
        reason: Option<&str>,
        config: &ApprovalConfig,
        now: u64,
    ) -> Result<Approval, DecideError> {
        let mut book = self.book();
        let Some(record) = book.records.get_mut(id).filter(|r| r.forget > now) else {
            return Err(DecideError::NotFound(id.to_string()));
        };
        if let Some(decided) = &record.approval.decided {
            return Err(DecideError::AlreadyDecided {
                id: id.to_string(),
                decided: decided.clone(),
            });
        }
        if record.approval.expires <= now {
            return Err(DecideError::Expired(id.to_string()));
        }
        record.approval.decided = Some(Decided {
            decision,
            by: by.to_string(),
            reason: reason.map(str::to_string),
            decided: now,
        });
        record.forget = now.saturating_add(config.ttl_secs());
        Ok(record.approval.clone())
    }

    /// Forgets what its TTL no longer keeps.
    pub fn expire(&self, now: u64) {
        self.book().forget(now);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_fingerprint_ignores_key_order_and_other_fields() {
        let a = json!({"tool": "pay", "agent": "a", "org": "o", "session": "s",
                       "args": {"amount": 5, "country": "DE"}, "extra": 1});
        let b = json!({"args": {"country": "DE", "amount": 5}, "session": "s",
                       "org": "o", "agent": "a", "tool": "pay"});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = json!({"args": {"country": "DE", "amount": 6}, "session": "s",
                       "org": "o", "agent": "a", "tool": "pay"});
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn ids_are_ulids_in_creation_order() -> Result<(), StateError> {
        let a = new_id()?;
        std::thread::sleep(Duration::from_millis(2));
        let b = new_id()?;
        assert_eq!(a.len(), 29);
        assert!(a.starts_with("ap-"));
        assert!(a < b, "{a} {b}");
        assert!(a.bytes().skip(3).all(|c| CROCKFORD.contains(&c)), "{a}");
        Ok(())
    }
}
