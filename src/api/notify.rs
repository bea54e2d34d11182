//! What the daemon POSTs to each `--notify URL` for an audit event, and
//! what `sluice status` shows of the deliveries. Pure data.
//!
//! ```json
//! {"event": "rollback", "seq": 42, "time": "2026-12-05T13:04:34.120Z",
//!  "commit": "9f2c1e0…", "artifact": "b41c…", "from": "canary", "to": "stable",
//!  "cause": "trigger", "reason": "rolled back at stage `canary`: …",
//!  "figures": {…}, "branch": "main",
//!  "text": "sluice: rollback of 9f2c1e0 (canary → stable, trigger): rolled back at stage `canary`: …"}
//! ```
//!
//! `text` is one line, so that a Slack or Mattermost incoming webhook shows
//! it as it is. With `--notify-secret-file`, the body is signed in
//! `X-Sluice-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

use serde::{Deserialize, Serialize};

use super::audit::{Cause, Figures};

/// The events notified when `--notify-on` is not given.
pub const DEFAULT_EVENTS: &[&str] = &["refuse", "rollback", "reverted", "pause", "complete"];

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: String,
    /// The audit line's sequence number.
    pub seq: u64,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    pub from: String,
    pub to: String,
    pub cause: Cause,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Figures::is_empty")]
    pub figures: Figures,
    /// The watched branch.
    pub branch: String,
    /// The whole notification in one line.
    pub text: String,
}

/// The deliveries so far, in `sluice status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliveries {
    /// Notifications answered 2xx.
    pub delivered: u64,
    /// Notifications given up on after every retry, or dropped because too
    /// many were in flight.
    pub failed: u64,
    /// The last failure: the URL (without credentials), the event and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
