//! The daemon's errors. Errors of one engine or of one git operation do not
//! stop the daemon (they show in status and are retried); these stop it.
//! Every variant that wraps an error keeps it as its source.

use std::path::PathBuf;

use super::client::EngineError;
use crate::api::rollout_state::StateReadError;

/// What stops the daemon, or fails one of its operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `state.json` cannot be read back.
    #[error("the state in the state folder cannot be used: `{}`: {source}", path.display())]
    StateFile {
        path: PathBuf,
        #[source]
        source: StateReadError,
    },
    /// A document of the state folder cannot be written or read as JSON.
    #[error("the state in the state folder cannot be used: {what}{source}")]
    Json {
        /// What it was, with a trailing `: ` (or nothing).
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the state in the state folder cannot be used: `{0}` is not an artifact hash")]
    ArtifactHash(String),
    /// A git operation failed.
    #[error("git: {}", .source.message())]
    GitCall {
        #[from]
        source: git2::Error,
    },
    /// The repository is not as the daemon needs it (no such branch, a push
    /// rejected, a revert that conflicts): a refusal with no underlying
    /// error.
    #[error("git: {0}")]
    Git(String),
    /// A revert that cannot be made as things are (it conflicts, it would
    /// revert the first commit or a revert of the daemon's, it does not
    /// check): counted towards the attempts after which the daemon stops
    /// and waits for an operator. Failing to reach the remote is not.
    #[error("the revert cannot be made: {0}")]
    Revert(String),
    /// The remote has no such branch (it was deleted): nothing is fetched
    /// from it and nothing pushed to it.
    #[error("git: the repository has no branch `{branch}`")]
    NoBranch { branch: String },
    #[error("engine `{engine}`: {source}")]
    Engine {
        engine: String,
        #[source]
        source: EngineError,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Another daemon holds the state folder.
    #[error(
        "invalid configuration: the state folder `{}` is in use by another daemon{}",
        dir.display(),
        pid.map(|p| format!(" (process {p})")).unwrap_or_default()
    )]
    InUse { dir: PathBuf, pid: Option<u32> },
    #[error("the control API cannot listen on `{addr}`: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// A task of the daemon panicked or was cancelled.
    #[error("the daemon stopped: {source}")]
    Stopped {
        #[source]
        source: tokio::task::JoinError,
    },
}

impl From<tokio::task::JoinError> for ReconcileError {
    fn from(source: tokio::task::JoinError) -> Self {
        ReconcileError::Stopped { source }
    }
}
