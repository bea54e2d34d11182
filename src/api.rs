//! The wire documents: every JSON document an engine, the daemon or the CLI
//! sends or reads, as `Serialize + Deserialize` types. Servers, clients, the
//! CLI and the demo all use these types; nobody builds or reads a wire
//! document by hand. Pure data (plus the routing hash, which is part of the
//! route's contract).
//!
//! - [`approvals`]: a request waiting for approval, and decided
//!   (`POST /v1/approvals/{id}`).
//! - [`audit`]: the daemon's audit lines (`audit.jsonl`) and the figures
//!   and build notes they carry.
//! - [`control`]: the daemon's control commands and their answers, and
//!   the `{"error"}` answer both APIs share.
//! - [`evaluate`]: `POST /v1/evaluate`'s response.
//! - [`gate`]: gate readings, stage steps and the fleet's observation.
//! - [`lease`]: fencing: the owner and version a route change names, the
//!   lease a daemon renews, the 409 a fenced caller gets.
//! - [`replay`]: the replay stage's report and its persisted totals.
//! - [`rollout_state`]: the daemon's persisted rollout state
//!   (`state.json`), versioned.
//! - [`route`]: `PUT` and `GET /v1/route`, cohorts and the stable bucket
//!   hash.
//! - [`state`]: `GET /v1/state`, the live state an engine holds.
//! - [`stats`]: `GET /v1/stats`, an engine's figures per artifact and
//!   cohort, which the rollout gates read.
//! - [`status`]: the daemon's `GET /v1/status`.

pub mod approvals;
pub mod audit;
pub mod control;
pub mod evaluate;
pub mod gate;
pub mod hook;
pub mod lease;
pub mod notify;
pub mod replay;
pub mod rollout_state;
pub mod route;
pub mod state;
pub mod stats;
pub mod status;
