//! The rollout state the daemon persists in `state.json` ([`State`]): the
//! stable artifact, the candidate in flight, pauses, pending reverts,
//! quarantine. Its parts are also shown in the daemon's status. Pure data:
//! the rollout machine computes the next state, the daemon's store writes
//! and reads it; nothing here decides anything.
//!
//! The document carries its schema's version ([`STATE_VERSION`]):
//! [`State::from_json`] reads this version and migrates the older ones it
//! knows ([`OLDEST_STATE_VERSION`] on), and refuses any other rather than
//! guessing what it means.
//!
//! Version 2 added what a rollout is gated by and what a rollback reverts
//! (`Rollout::base`, `Rollout::commits`, the same on [`PendingRevert`]), a
//! revert the daemon stopped trying ([`PendingRevert::stuck`]), a rewritten
//! branch history waiting for an operator ([`State::rewrite`]) and a
//! deleted branch ([`State::branch_gone`]). A version 1 document reads as
//! version 2 with none of them: its candidate stays gated by its own plan
//! and its reverts revert the one commit, as version 1 did.

use serde::{Deserialize, Serialize};

use crate::api::audit::{Cause, Notes, Transition};
use crate::api::replay::ReplayTotals;

/// The version of the persisted state document this build reads and writes.
pub const STATE_VERSION: u32 = 2;

/// The oldest version [`State::from_json`] migrates from.
pub const OLDEST_STATE_VERSION: u32 = 1;

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
    /// The stable commit when the rollout started: its `[rollout]` plan and
    /// its traces gate the candidate (a commit cannot set its own rollout),
    /// and a rollback brings the branch back to its tree. `None` when the
    /// stable artifact was adopted from the engines with no commit: the
    /// candidate's own plan gates it, and a rollback reverts its one commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The commits the candidate brings since `base`, oldest first, the
    /// candidate's last (empty: the candidate's commit alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<String>,
}

impl Rollout {
    /// The commit whose `[rollout]` plan gates this candidate.
    pub fn plan_commit(&self) -> &str {
        self.base.as_deref().unwrap_or(&self.commit)
    }
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
    /// Only an operator clears this pause (`sluice resume`, or settling the
    /// revert it waits for): a rewritten history, a deleted branch, a
    /// revert the daemon stopped trying. The rollout's progress (a
    /// rollback, a cancelled candidate) does not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
}

/// A revert commit still to land on the branch: it brings the branch back
/// to `base`'s tree for everything `base..commit` changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRevert {
    /// The offending commit: the candidate (the head of the range).
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
    /// The commit whose tree the branch goes back to (the stable commit the
    /// rollout started from); `None`: the candidate's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Every commit reverted, oldest first (empty: `commit` alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<String>,
    /// Why the daemon stopped trying to make this revert: it waits for an
    /// operator (`sluice revert skip|done`, or `sluice resume` to try
    /// again), and meanwhile only looks for a revert made by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<String>,
}

impl PendingRevert {
    /// The commits reverted, oldest first.
    pub fn range(&self) -> Vec<String> {
        if self.commits.is_empty() {
            vec![self.commit.clone()]
        } else {
            self.commits.clone()
        }
    }
}

/// A head that does not descend from the last head acted on: the branch's
/// history was rewritten (a force-push). It waits for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    /// The last head acted on, no longer on the branch.
    pub from: Option<String>,
    /// The new head.
    pub to: String,
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
    /// The branch history was rewritten: heads that descend from `to` are
    /// acted on once an operator resumed; cleared when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Since when the watched branch is gone from the remote (deleted):
    /// nothing is reverted onto it (never re-created), and the rollout
    /// paused for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_gone: Option<u64>,
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
            rewrite: None,
            branch_gone: None,
        }
    }
}

/// Why a state document cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateReadError {
    #[error(
        "it has schema version {found}, and this build of sluice reads versions \
         {OLDEST_STATE_VERSION} to {STATE_VERSION} only: run the sluice that wrote it, or move \
         the state folder away to start afresh"
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
    /// Reads a state document, migrating one of an older schema version
    /// this build knows and refusing any other.
    pub fn from_json(bytes: &[u8]) -> Result<State, StateReadError> {
        let v: Versioned = serde_json::from_slice(bytes)?;
        match v.version {
            None => Err(StateReadError::NoVersion),
            Some(found) if (OLDEST_STATE_VERSION..=STATE_VERSION).contains(&found) => {
                // Every field added since version 1 has a default that means
                // what version 1 did.
                let mut state: State = serde_json::from_slice(bytes)?;
                state.version = STATE_VERSION;
                Ok(state)
            }
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
