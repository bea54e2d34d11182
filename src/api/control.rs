//! The daemon's control API on the wire (its `POST` commands, SPEC §6): the
//! body a command may carry and the two answers every command gets, a
//! [`Message`] when it is done and a [`Failure`] when it is refused or
//! fails. The engine's admin API answers its errors with the same
//! [`Failure`] document. Pure data: the daemon's router writes these, the
//! daemon's control client and the CLI read them; nothing here runs a
//! command.
//!
//! ```json
//! POST /v1/pause     {"reason": "holding for the release"}
//! 200                {"message": "paused at canary"}
//! 409                {"error": "already paused"}
//! ```

use serde::{Deserialize, Serialize};

/// The longest `by` kept (the daemon's audit log, an engine's approvals).
pub const MAX_BY: usize = 200;

/// The longest `reason` kept (the daemon's audit log and `state.json`, an
/// engine's approvals).
pub const MAX_REASON: usize = 2000;

/// Whether `by` names someone as both servers keep it: 1 to [`MAX_BY`]
/// bytes, not blank, no control characters.
pub fn valid_by(by: &str) -> bool {
    !by.trim().is_empty() && by.len() <= MAX_BY && !by.chars().any(char::is_control)
}

/// The body of the commands: why, and what the command is about. Every
/// field is optional on the wire; the daemon refuses (400) a field its
/// command does not take, or one it needs that is missing. An empty body
/// means the same as `{}`.
///
/// ```json
/// POST /v1/rollback      {"reason": "customer report", "candidate": "9f2c1e0"}
/// POST /v1/promote       {"through": "full", "reason": "fix for the bad stable"}
/// POST /v1/revert/skip   {"reason": "the branch was fixed by hand"}
/// POST /v1/unquarantine  {"target": "9f2c1e0", "reason": "the outage was the network"}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `rollback`: the commit or artifact (a prefix of 7 characters or
    /// more) the operator means to roll back; 409 when it is not what is
    /// in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// `promote`: the stage to promote through (the last one makes the
    /// candidate stable); needs `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
    /// `unquarantine`: the commit or artifact to lift the quarantine of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Every command: who gives it (`sluice … --as NAME`), for the audit
    /// log's `by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `{"message": "…"}`: a command done, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

/// `{"error": "…"}`: a request refused or failed, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub error: String,
}
