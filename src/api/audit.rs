//! The audit log's lines (`audit.jsonl`, one [`Transition`] per line) and
//! what they carry: the [`Figures`] behind a transition and the [`Notes`] a
//! commit's build left. The same lines go out as the daemon's events and are
//! kept as `State::last` in `state.json`. Pure data: the rollout machine
//! writes them, the daemon persists them, the CLI and the demo read them.

use serde::{Deserialize, Serialize};

use crate::api::gate::{GateReading, Observation};
use crate::api::replay::ReplayTotals;
use crate::model::ir::DecisionKind;

/// Who or what caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The daemon's own progress: a new commit, gates that passed, a pause
    /// for lack of evidence.
    Daemon,
    /// A rollback trigger fired or a gate failed.
    Trigger,
    /// An operator command.
    Operator,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Daemon => "daemon",
            Cause::Trigger => "trigger",
            Cause::Operator => "operator",
        }
    }
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub seq: u64,
    /// RFC 3339, milliseconds.
    pub time: String,
    pub time_ms: u64,
    pub event: String,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    pub cause: Cause,
    pub reason: String,
    /// Who gave the operator command (`sluice … --as NAME`), when it was
    /// named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Left out of the line when there are none.
    #[serde(default, skip_serializing_if = "Figures::is_empty")]
    pub figures: Figures,
}

/// The figures behind a transition. Which fields are there depends on the
/// event: a stage decision's readings (`advance`, `complete`, `rollback`,
/// `pause`, operator commands), the build's notes and the replay figures
/// (`start`, `supersede`, …), the revert commit (`reverted`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Every gate of the stage, when a decision was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Vec<GateReading>>,
    /// The rollback triggers read, when there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<GateReading>,
    /// Candidate requests still needed before the gates can resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_left: Option<u64>,
    /// Time still needed before the gates can resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_left_ms: Option<u64>,
    /// The fleet's summed figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observation>,
    /// What the commit's build found beside the gates.
    #[serde(flatten)]
    pub notes: Notes,
    /// The candidate's replay figures (`start`, `supersede`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayTotals>,
    /// The revert commit pushed (`reverted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<String>,
}

impl Figures {
    pub fn is_empty(&self) -> bool {
        *self == Figures::default()
    }
}

/// What a commit's build found beside the gates: shown by `sluice status`
/// and in the `start` audit line; they inform, they do not gate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notes {
    /// How many trace files were replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_files: Option<usize>,
    /// The `state::` checks against the engines' live state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_checks: Option<StateChecks>,
    /// The engines' decision log replayed against the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_log: Option<LogReplay>,
}

impl Notes {
    pub fn is_empty(&self) -> bool {
        *self == Notes::default()
    }
}

/// The `state::` checks of a commit against the engines' live state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChecks {
    /// How many engines' live state the commit was checked against.
    pub engines: usize,
    /// Warnings, each `<engine>: <finding>`.
    pub warnings: Vec<String>,
}

/// A decision log replayed against a candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogReplay {
    pub evaluated: u64,
    pub flipped: u64,
    /// Lines that are not evaluations, or whose request the candidate's
    /// schema refuses.
    pub skipped: u64,
    pub flips: Vec<Flip>,
}

/// One kind of decision flip, by rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flip {
    pub rule: String,
    pub from: DecisionKind,
    pub to: DecisionKind,
    pub count: u64,
}
