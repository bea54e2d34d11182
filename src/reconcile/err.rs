//! The daemon's errors. Errors of one engine or of one git operation do not
//! stop the daemon (they show in status and are retried); these stop it.

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
    #[error("the state in the state folder cannot be used: {0}")]
    State(String),
    #[error("git: {0}")]
    Git(String),
    #[error("engine `{engine}`: {message}")]
    Engine { engine: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the control API cannot listen on `{addr}`: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon stopped: {0}")]
    Stopped(String),
}

impl From<git2::Error> for ReconcileError {
    fn from(e: git2::Error) -> Self {
        ReconcileError::Git(e.message().to_string())
    }
}
