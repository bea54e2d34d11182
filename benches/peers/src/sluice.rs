//! sluice: the generated set parsed, type-checked and compiled as by
//! `sluice compile` (without the conflict analysis), evaluated by
//! `eval::Evaluator`; and, alone, the starter
//! repository `policies/` on its traces.

use std::path::Path;

use sluice::model::ir::DecisionKind;

use crate::Engine;
use crate::generator::{Request, Set};
use crate::load;

pub struct Sluice(load::Sluice);

impl Sluice {
    pub fn new(set: &Set) -> Sluice {
        let texts = set.requests.iter().map(Request::to_json).collect();
        Sluice(load::Sluice::new(&load::generated(set), texts))
    }

    /// The repository at `root` with its trace requests, once each trace has
    /// got its expected decision (evaluated in order, limits counting as in
    /// `sluice test`); and the number of rules and limits. `None` when
    /// `root` is not a policy repository or has no traces.
    pub fn repository(root: &Path) -> Option<(Sluice, usize)> {
        let (artifact, traces) = load::repository(root)?;
        if traces.is_empty() {
            return None;
        }
        let rules = artifact
            .policies
            .iter()
            .map(|p| p.rules.len() + p.limits.len())
            .sum();
        let (texts, expected): (Vec<String>, Vec<DecisionKind>) = traces.into_iter().unzip();
        let mut engine = load::Sluice::new(&artifact, texts);
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(engine.eval(i), *want, "trace {i} of {}", root.display());
        }
        Some((Sluice(engine), rules))
    }

    pub fn len(&self) -> usize {
        self.0.requests.len()
    }
}

impl Engine for Sluice {
    fn name(&self) -> String {
        "sluice".to_string()
    }

    fn eval(&mut self, i: usize) -> bool {
        self.0.eval(i) == DecisionKind::Allow
    }

    fn decode_eval(&mut self, i: usize) -> bool {
        self.0.decode_eval(i) == DecisionKind::Allow
    }
}
