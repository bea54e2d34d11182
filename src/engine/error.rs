//! The errors of the engine's operations, as the domain sees them: what
//! went wrong, with the error underneath as the source.
//!
//! No HTTP here. [`crate::engine::http`] maps each variant to a status and
//! an `{"error": …}` body; the messages below are those bodies.

use crate::api::route::RouteError;
use crate::compile::artifact::ArtifactError;
use crate::engine::approvals::DecideError;
use crate::eval::LoadError;
use crate::eval::request::RequestError;
use crate::eval::state::StateError;

/// A request body the engine cannot answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvaluateError {
    #[error("the request is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error(
        "no route: upload an artifact (PUT /v1/artifacts/{{hash}}) and set a route (PUT /v1/route)"
    )]
    NoRoute,
    /// The request names another agent than the caller's key (`--agent-keys`).
    #[error(
        "the key sent is agent `{0}`'s: the request's `agent` must be `{0}` (no caller may speak for another agent)"
    )]
    NotYourAgent(String),
    /// The request does not fit the routed artifact's schema.
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("rendering the response: {0}")]
    Render(#[source] serde_json::Error),
    /// The evaluation task did not finish (it panicked).
    #[error("the evaluation did not finish: {0}")]
    Interrupted(#[source] tokio::task::JoinError),
}

/// An artifact upload the engine refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The body is not an artifact, or its hash does not verify.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("the artifact's hash `{found}` differs from `{path}` in the path")]
    HashMismatch { found: String, path: String },
    #[error("the artifact cannot be loaded: {0}")]
    Load(#[source] LoadError),
}

/// An artifact the engine does not delete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteError {
    #[error("no artifact `{0}` is held by this engine")]
    NotHeld(String),
    #[error(
        "artifact `{hash}` is the route's {role}: set a route without it (PUT /v1/route) before deleting it"
    )]
    Routed { role: &'static str, hash: String },
}

/// A route the engine cannot put in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteChangeError {
    /// The route document does not make sense.
    #[error(transparent)]
    Spec(#[from] RouteError),
    #[error(
        "the {role} artifact `{hash}` is not held by this engine: upload it first (PUT /v1/artifacts/{hash})"
    )]
    NotHeld { role: &'static str, hash: String },
    /// `hash_key` or a `match` key is not a field of a routed artifact.
    #[error("`{what}` names `{field}`, which is not a field of artifact `{artifact}`")]
    UnknownField {
        what: &'static str,
        field: String,
        artifact: String,
    },
    /// The state migrations could not be applied.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller does not hold the engine (SPEC §6 fencing).
    #[error(transparent)]
    Fenced(#[from] FenceError),
}

/// A route change or lease refused by fencing ([`crate::api::lease`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FenceError {
    #[error(
        "this engine is held by daemon `{owner}` for {} more: only it changes the route until its lease lapses (or an operator takes the fleet over with `sluice reconcile --take-over`)",
        seconds(*expires_in_ms)
    )]
    Held {
        owner: String,
        expires_in_ms: u64,
        version: u64,
    },
    #[error(
        "the route changed since it was read: version {current} is in force, not {expected}; read it again (GET /v1/route)"
    )]
    Version {
        expected: u64,
        current: u64,
        owner: Option<String>,
    },
    #[error(
        "PUT /v1/route takes {{\"owner\", \"expect\", \"lease_ms\", \"route\"}}: a route that names no owner and no expected version is not applied (SPEC §6, fencing)"
    )]
    NoOwner { version: u64 },
    #[error("`owner` must be 1 to 128 visible ASCII characters")]
    BadOwner,
}

fn seconds(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

/// The state backend failed while the engine read or migrated state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("reading counters: {0}")]
    ReadCounters(#[source] StateError),
    #[error("dropping counters: {0}")]
    DropCounters(#[source] StateError),
    #[error("reading approvals: {0}")]
    ReadApprovals(#[source] StateError),
    #[error("claiming a state migration: {0}")]
    ClaimMigration(#[source] StateError),
    /// A waiting request the route change no longer covers could not be
    /// resolved.
    #[error(transparent)]
    ResolveApproval(DecideError),
}
