//! sluice: the generated set through the same pipeline as `sluice compile`,
//! evaluated by `engine::eval::Evaluator`.

use sluice::compile::ir::DecisionKind;

use crate::Engine;
use crate::generator::{Request, Set};
use crate::load;

pub struct Sluice(load::Sluice);

impl Sluice {
    pub fn new(set: &Set) -> Sluice {
        let texts = set.requests.iter().map(Request::to_json).collect();
        Sluice(load::Sluice::new(&load::generated(set), texts))
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
