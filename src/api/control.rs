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

/// The body of `POST /v1/pause`, `/v1/rollback`, `/v1/revert/skip` and
/// `/v1/revert/done`: why, optionally.
/// An empty body means the same as `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
