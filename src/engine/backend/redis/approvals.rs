//! Approvals in Redis: the lifecycle of [`crate::engine::approvals`],
//! atomically for a fleet. Asking (`ask.lua`) finds the request's latest
//! approval by fingerprint, lets an approved one through once, or queues a
//! new one under the group's cap; deciding (`decide.lua`) records the
//! decision once. Records are hashes: the approval document as written,
//! and its `expires`, `decision`, `by`, `reason`, `decided`, `consumed`.

use std::collections::HashMap;

use redis::AsyncCommands as _;

use super::{RedisBackend, unavailable};
use crate::api::approvals::{Approval, Decided, Verdict};
use crate::engine::approvals::{ApprovalConfig, Asked, DecideError, NewApproval, new_id};
use crate::engine::backend::Decision;
use crate::eval::state::StateError;

impl RedisBackend {
    pub(super) async fn ask_now(
        &self,
        new: &NewApproval,
        config: &ApprovalConfig,
        now: u64,
    ) -> Result<Asked, StateError> {
        let prefix = self.prefix()?;
        let id = new_id()?;
        let doc = serde_json::to_string(&new.waiting(id.clone()))
            .map_err(|e| StateError::Unavailable(format!("encoding an approval: {e}")))?;
        let answer: Vec<String> = self
            .scripts
            .ask
            .key(format!("{prefix}:f:{}", new.fingerprint))
            .key(format!("{prefix}:q:{}", new.group))
            .key(format!("{prefix}:al"))
            .key(format!("{prefix}:a:{id}"))
            .arg(format!("{prefix}:a:"))
            .arg(&id)
            .arg(doc)
            .arg(now)
            .arg(new.expires)
            .arg(config.max_pending)
            .arg(config.ttl_secs())
            .arg(&new.group)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("asking approval", &e))?;
        let field = |i: usize| answer.get(i).cloned().unwrap_or_default();
        let asked = match answer.first().map(String::as_str) {
            Some("pending") => Asked::Pending {
                id: field(1),
                new: false,
            },
            Some("new") => Asked::Pending {
                id: field(1),
                new: true,
            },
            Some("approved") => Asked::Approved {
                id: field(1),
                by: field(2),
            },
            Some("rejected") => Asked::Rejected {
                id: field(1),
                by: field(2),
                reason: Some(field(3)).filter(|r| !r.is_empty()),
            },
            Some("full") => Asked::QueueFull {
                group: new.group.clone(),
                pending: field(2).parse().unwrap_or(config.max_pending),
            },
            _ => {
                return Err(StateError::Unavailable(format!(
                    "redis answered {answer:?} to an approval request"
                )));
            }
        };
        Ok(asked)
    }

    pub(super) async fn record(
        &self,
        prefix: &str,
        id: &str,
    ) -> Result<Option<Approval>, StateError> {
        let map: HashMap<String, String> = self
            .conn()
            .hgetall(format!("{prefix}:a:{id}"))
            .await
            .map_err(|e| unavailable("reading an approval", &e))?;
        Ok(approval_of(&map))
    }

    pub(super) async fn approvals_now(&self) -> Result<Vec<Approval>, StateError> {
        let prefix = self.prefix()?;
        let all = format!("{prefix}:al");
        let ids: Vec<String> = self
            .conn()
            .zrange(&all, 0, -1)
            .await
            .map_err(|e| unavailable("listing approvals", &e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(format!("{prefix}:a:{id}"));
        }
        let maps: Vec<HashMap<String, String>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("reading approvals", &e))?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, map) in ids.iter().zip(maps) {
            match approval_of(&map) {
                Some(a) => out.push(a),
                None => gone.push(id.clone()),
            }
        }
        if !gone.is_empty() {
            let _: usize = self
                .conn()
                .zrem(&all, gone)
                .await
                .map_err(|e| unavailable("pruning approvals", &e))?;
        }
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    pub(super) async fn decide_now(
        &self,
        d: Decision<'_>,
        config: &ApprovalConfig,
        now: u64,
    ) -> Result<Approval, DecideError> {
        let prefix = self.prefix()?;
        let answer: Vec<String> = self
            .scripts
            .decide
            .key(format!("{prefix}:a:{}", d.id))
            .arg(match d.verdict {
                Verdict::Approve => "approve",
                Verdict::Reject => "reject",
            })
            .arg(d.by)
            .arg(d.reason.unwrap_or(""))
            .arg(now)
            .arg(config.ttl_secs())
            .arg(format!("{prefix}:q:"))
            .arg(d.id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("deciding an approval", &e))?;
        let record = || async {
            self.record(prefix, d.id)
                .await?
                .ok_or_else(|| DecideError::NotFound(d.id.to_string()))
        };
        match answer.first().map(String::as_str) {
            Some("ok") => record().await,
            Some("missing") => Err(DecideError::NotFound(d.id.to_string())),
            Some("expired") => Err(DecideError::Expired(d.id.to_string())),
            Some("decided") => {
                let a = record().await?;
                match a.decided {
                    Some(decided) => Err(DecideError::AlreadyDecided {
                        id: d.id.to_string(),
                        decided,
                    }),
                    None => Err(DecideError::NotFound(d.id.to_string())),
                }
            }
            _ => Err(DecideError::State(StateError::Unavailable(format!(
                "redis answered {answer:?} to a decision"
            )))),
        }
    }
}

/// An approval from its record's fields (`None`: no record, or a broken
/// one).
fn approval_of(map: &HashMap<String, String>) -> Option<Approval> {
    let mut a: Approval = serde_json::from_str(map.get("doc")?).ok()?;
    let num = |f: &str| map.get(f).and_then(|v| v.parse::<u64>().ok());
    a.expires = num("expires").unwrap_or(a.expires);
    a.consumed = num("consumed");
    let decision = match map.get("decision").map(String::as_str) {
        Some("approve") => Some(Verdict::Approve),
        Some("reject") => Some(Verdict::Reject),
        _ => None,
    };
    a.decided = decision.map(|decision| Decided {
        decision,
        by: map.get("by").cloned().unwrap_or_default(),
        reason: map.get("reason").cloned(),
        decided: num("decided").unwrap_or(0),
    });
    Some(a)
}
