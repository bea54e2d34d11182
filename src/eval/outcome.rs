//! What an evaluation produces: the [`Outcome`] (decision and contributing
//! checks as indices, with reusable buffers), a rendered [`Reason`], and a
//! request with its modifications applied ([`Modified`]).
//!
//! Plain data: rendering reads the evaluator that produced the outcome.

use crate::eval::CheckKind;
use crate::eval::compiled::Memo;
use crate::eval::request::Request;
use crate::model::ir::{DecisionKind, Effect, Tier};

/// The result of one evaluation: the decision and the contributing checks
/// (as indices, rendered on demand by [`Evaluator::reasons`]).
///
/// An outcome belongs to the evaluator that produced it. Reuse one with
/// [`Evaluator::evaluate_into`] to evaluate without allocating.
///
/// [`Evaluator::reasons`]: crate::eval::Evaluator::reasons
/// [`Evaluator::evaluate_into`]: crate::eval::Evaluator::evaluate_into
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The decision the policies reached.
    pub(super) decision: DecisionKind,
    /// The request is in the observe scope: answered `allow`.
    pub(super) observed: bool,
    /// The contributing checks, by index, in check order.
    pub(super) hits: Vec<u32>,
    pub(super) examined: u32,
    /// The counter key being built (reused).
    pub(super) scratch: String,
    pub(super) memo: Memo,
    /// The limits a deferred evaluation left to count, in check order …
    pub(super) pending: Vec<Pending>,
    /// … and their keys, one after another.
    pub(super) keys: String,
}

/// A limit left pending by a deferred evaluation.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) check: u32,
    /// Its key's range in [`Outcome::keys`].
    pub(super) key: std::ops::Range<usize>,
    pub(super) window: crate::eval::state::Window,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            decision: DecisionKind::Allow,
            observed: false,
            hits: Vec::new(),
            examined: 0,
            scratch: String::new(),
            memo: Memo::default(),
            pending: Vec::new(),
            keys: String::new(),
        }
    }
}

impl Outcome {
    /// The decision the request is answered with: the policies' decision,
    /// or `allow` for a request in the artifact's observe scope.
    pub fn decision(&self) -> DecisionKind {
        if self.observed {
            DecisionKind::Allow
        } else {
            self.decision
        }
    }

    /// For a request in the observe scope, the decision the policies reached
    /// (and the answer would be under enforcement); `None` otherwise.
    pub fn observed(&self) -> Option<DecisionKind> {
        self.observed.then_some(self.decision)
    }

    /// The decision the policies reached, observed or enforced.
    pub fn policy_decision(&self) -> DecisionKind {
        self.decision
    }

    /// No rule or limit contributed: the decision is the artifact's default.
    pub fn is_default(&self) -> bool {
        self.hits.is_empty()
    }

    /// How many limits a deferred evaluation left pending
    /// ([`crate::eval::Evaluator::pending`]).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// How many conditions were evaluated (what the tool index let through).
    pub fn examined(&self) -> usize {
        self.examined as usize
    }
}

/// One contribution to a decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason<'a> {
    pub policy: &'a str,
    pub version: &'a str,
    /// The rule or limit name.
    pub rule: &'a str,
    pub kind: CheckKind,
    pub tier: Tier,
    /// The rule's effect, or the limit's `exceed` effect.
    pub effect: &'a Effect,
}

impl Reason<'_> {
    pub fn decision(&self) -> DecisionKind {
        self.effect.kind()
    }

    pub fn code(&self) -> Option<&str> {
        self.effect.code_text().map(|(c, _)| c)
    }

    pub fn text(&self) -> Option<&str> {
        self.effect.code_text().map(|(_, t)| t)
    }
}

/// A request with the modifications of an outcome applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Modified<'a> {
    pub request: Request,
    /// The modifications that changed a field, in the order applied.
    pub applied: Vec<Modification<'a>>,
}

/// One applied modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modification<'a> {
    pub policy: &'a str,
    pub rule: &'a str,
    pub field: &'a str,
    pub code: &'a str,
}
