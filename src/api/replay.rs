//! The replay stage's report: every trace case's verdict and the figures the
//! replay gate reads; produced by `replay::run`. Its [`ReplayTotals`] (the
//! figures without the cases) are persisted with the daemon's state, carried
//! in the audit log and shown in its status.

use serde::{Deserialize, Serialize};

use crate::api::evaluate::ResponseReason;
use crate::model::ir::DecisionKind;

/// What one trace case's result means for the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Catastrophic,
    FalsePositive,
    Mismatch,
    BadRequest,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub file: String,
    pub line: usize,
    /// The case's name, when its author gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub verdict: Verdict,
    pub expect: DecisionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The decision it got (absent for a bad request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub got: Option<DecisionKind>,
    pub reasons: Vec<ResponseReason>,
    /// Why the request was refused (bad request) or evaluation failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The figures the replay gate reads, plus every result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub cases: usize,
    pub passed: usize,
    pub catastrophic: usize,
    pub false_positives: usize,
    pub mismatches: usize,
    pub bad_requests: usize,
    /// Cases that expected a permissive decision (the false-positive base).
    pub expected_permissive: usize,
    pub results: Vec<CaseResult>,
}

impl ReplayReport {
    /// The figures without the per-case results.
    pub fn totals(&self) -> ReplayTotals {
        ReplayTotals {
            cases: self.cases,
            passed: self.passed,
            catastrophic: self.catastrophic,
            false_positives: self.false_positives,
            mismatches: self.mismatches,
            bad_requests: self.bad_requests,
            expected_permissive: self.expected_permissive,
        }
    }

    /// False positives over cases that expected a permissive decision.
    pub fn false_positive_rate(&self) -> f64 {
        self.totals().false_positive_rate()
    }

    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| r.verdict != Verdict::Pass)
    }

    pub fn is_clean(&self) -> bool {
        self.passed == self.cases
    }
}

/// A [`ReplayReport`]'s figures without its per-case results: the form the
/// daemon persists in `state.json`, writes in the audit log and shows in its
/// status, and what the replay gates read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayTotals {
    pub cases: usize,
    pub passed: usize,
    pub catastrophic: usize,
    pub false_positives: usize,
    pub mismatches: usize,
    pub bad_requests: usize,
    /// Cases that expected a permissive decision (the false-positive base).
    pub expected_permissive: usize,
}

impl ReplayTotals {
    /// False positives over cases that expected a permissive decision.
    pub fn false_positive_rate(&self) -> f64 {
        if self.expected_permissive == 0 {
            0.0
        } else {
            self.false_positives as f64 / self.expected_permissive as f64
        }
    }
}
