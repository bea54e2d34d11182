//! The plain facts the demo's pieces hand each other (a commit pushed, an
//! engine's route, a phase's time): data only, so every other piece of the
//! demo may use them and none has to import another for them.

use serde::Serialize;

/// A phase of the run and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub name: String,
    pub seconds: f64,
}

/// One commit of the branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub sha: String,
    pub summary: String,
}

/// One engine's route at the end.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRoute {
    pub url: String,
    pub stable: Option<String>,
    pub candidate: Option<String>,
    /// How many routes it was given.
    pub routes_set: u64,
}

/// A commit the demo pushed, and when (milliseconds since the epoch).
#[derive(Debug, Clone)]
pub struct Pushed {
    pub sha: String,
    pub at_ms: u64,
}
