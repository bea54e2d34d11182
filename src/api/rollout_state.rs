//! The rollout state the daemon persists in `state.json` ([`State`]): the
//! stable artifact, the candidate in flight, pauses, pending reverts,
//! quarantine. Its parts are also shown in the daemon's status. Pure data:
//! the rollout machine computes the next state, the daemon's store writes
//! and reads it; nothing here decides anything.
//!
//! The document carries its schema's version ([`STATE_VERSION`]):
//! [`State::from_json`] refuses a file of another version rather than
//! guessing what it means.

use serde::{Deserialize, Serialize};

use crate::api::audit::{Cause, Notes, Transition};
use crate::api::replay::ReplayTotals;

/// The version of the persisted state document this build reads and writes.
pub const STATE_VERSION: u32 = 1;

/// An artifact in force, and the commit it was built from (`None` when it
/// was adopted from the engines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub commit: Option<String>,
    pub artifact: String,
    pub since_ms: u64,
}

/// The candidate in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub commit: String,
    /// The commit's summary line.
    pub summary: String,
    pub artifact: String,
    pub started_ms: u64,
    /// Index into the plan's stages.
    pub stage: usize,
    pub stage_name: String,
    pub stage_started_ms: u64,
    /// When an operator last resumed this stage: `max_duration` counts from
    /// here rather than from the start of the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_ms: Option<u64>,
    pub replay: ReplayTotals,
    /// What the build found beside the gates (decision-log flips by rule,
    /// state-check warnings), shown by `sluice status`.
    #[serde(default, skip_serializing_if = "Notes::is_empty")]
    pub notes: Notes,
}

/// Why the daemon holds still.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paused {
    pub reason: String,
    pub cause: Cause,
    pub since_ms: u64,
    /// The engines whose silence paused the rollout: such a pause ends by
    /// itself once every engine answers and is on the route again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<String>,
}

/// A revert commit still to land on the branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRevert {
    /// The offending commit.
    pub commit: String,
    pub summary: String,
    pub artifact: String,
    /// The phase it was rolled back from.
    pub stage: String,
    pub cause: Cause,
    pub trigger: String,
    /// The figures behind the rollback, as text for the commit message.
    pub figures: String,
    pub since_ms: u64,
}

/// A commit that was rolled back: neither it nor its artifact is rolled out
/// again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub commit: String,
    pub artifact: String,
    pub reason: String,
    pub since_ms: u64,
}

/// The last commit that was refused, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    pub commit: String,
    /// The commit's artifact, when it was built (a quarantined one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    pub reason: String,
    pub since_ms: u64,
}

/// Everything the daemon must remember across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The schema's version: [`STATE_VERSION`].
    pub version: u32,
    /// The number of transitions so far; the `seq` of the last audit line.
    pub seq: u64,
    /// The last branch head acted on.
    pub head: Option<String>,
    pub stable: Option<Release>,
    /// The stable before the last promotion: the operator's rollback target
    /// when nothing is in flight.
    pub previous: Option<Release>,
    pub rollout: Option<Rollout>,
    pub paused: Option<Paused>,
    pub reverts: Vec<PendingRevert>,
    pub quarantine: Vec<Quarantined>,
    pub refused: Option<Refused>,
    /// The last transition, so that its audit line is written even if the
    /// daemon dies between persisting the state and appending the line.
    pub last: Option<Transition>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            seq: 0,
            head: None,
            stable: None,
            previous: None,
            rollout: None,
            paused: None,
            reverts: Vec::new(),
            quarantine: Vec::new(),
            refused: None,
            last: None,
        }
    }
}

/// Why a state document cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateReadError {
    #[error(
        "it has schema version {found}, and this build of sluice reads version {STATE_VERSION} \
         only: run the sluice that wrote it, or move the state folder away to start afresh"
    )]
    Version { found: u32 },
    #[error("it has no schema version (`version`): it was not written by sluice reconcile")]
    NoVersion,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Only the version, read before the rest.
#[derive(Deserialize)]
struct Versioned {
    #[serde(default)]
    version: Option<u32>,
}

impl State {
    /// Reads a state document, refusing one of another schema version.
    pub fn from_json(bytes: &[u8]) -> Result<State, StateReadError> {
        let v: Versioned = serde_json::from_slice(bytes)?;
        match v.version {
            None => Err(StateReadError::NoVersion),
            Some(STATE_VERSION) => Ok(serde_json::from_slice(bytes)?),
            Some(found) => Err(StateReadError::Version { found }),
        }
    }

    /// The phase: `empty`, `stable`, or the candidate's stage name.
    pub fn phase(&self) -> String {
        match (&self.stable, &self.rollout) {
            (None, _) => "empty".to_string(),
            (Some(_), None) => "stable".to_string(),
            (Some(_), Some(r)) => r.stage_name.clone(),
        }
    }

    /// The phase, marked when paused.
    pub fn label(&self) -> String {
        if self.paused.is_some() {
            format!("{} (paused)", self.phase())
        } else {
            self.phase()
        }
    }

    /// The quarantine entry of a commit or an artifact.
    pub fn quarantined(&self, commit: &str, artifact: Option<&str>) -> Option<&Quarantined> {
        self.quarantine
            .iter()
            .find(|q| q.commit == commit || artifact.is_some_and(|a| a == q.artifact))
    }
}
