//! Direct questions about conditions on one thread (tests, tools): a
//! [`Probe`] holds one encoder and one solver and answers "can these hold
//! together?" and "do these cover that?". Also [`step`], which turns the
//! encoder's refinement of a model into a solver step (the worker threads
//! use it too). It plans no jobs and reports no findings.

use std::collections::{BTreeMap, HashMap};

use z3::ast::Bool;

use super::lang;
use super::smt::{EncodeError, Encoded, Encoder, Needs, Plan, Refinement};
use super::solver::{Cover, Session, Step, Verdict};
use crate::eval::request::Request;
use crate::model::ir::Expr;

/// Direct questions about conditions on this thread (tests, tools): one
/// encoder and one solver, reused.
#[derive(Debug)]
pub struct Probe<'p> {
    encoder: Encoder<'p>,
    session: Session,
    memo: lang::Memo,
    cache: HashMap<Expr, Encoded>,
}

/// A probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sat {
    /// Satisfiable, with a witness request.
    Yes(Request),
    No,
    Unknown(String),
}

impl<'p> Probe<'p> {
    pub fn new(plan: &'p Plan, timeout_ms: u32) -> Probe<'p> {
        Probe::with_session(plan, Session::new(timeout_ms))
    }

    /// A probe on an existing solver (a solver's first query is its
    /// costliest: reuse one across plans on a thread).
    pub fn with_session(plan: &'p Plan, session: Session) -> Probe<'p> {
        let encoder = Encoder::new(plan);
        Probe {
            encoder,
            session,
            memo: lang::Memo::default(),
            cache: HashMap::new(),
        }
    }

    /// The solver's figures so far: (queries, solver calls).
    pub fn counts(&self) -> (u64, u64) {
        (self.session.queries(), self.session.rounds())
    }

    /// The solver, for the next probe.
    pub fn into_session(self) -> Session {
        self.session
    }

    /// Can every condition of `conds` hold on one request?
    pub fn satisfiable(&mut self, conds: &[&Expr]) -> Result<Sat, EncodeError> {
        let (formulas, needs) = self.encode_all(conds)?;
        let refs: Vec<&Bool> = formulas.iter().collect();
        let Probe {
            encoder,
            session,
            memo,
            ..
        } = self;
        let deadline = session.begin();
        let mut strings = BTreeMap::new();
        let mut refine =
            |m: &z3::Model| step(encoder.refine(m, &needs, memo, deadline), &mut strings);
        Ok(match session.solve(&refs, &mut refine) {
            Verdict::Sat(m) => match encoder.witness(&m, None, &strings) {
                Ok(r) => Sat::Yes(r),
                Err(e) => Sat::Unknown(format!("no witness: {e}")),
            },
            Verdict::Unsat => Sat::No,
            Verdict::Unknown(r) => Sat::Unknown(r),
        })
    }

    /// Does every request meeting all of `base` meet one of `covers`? `Some`
    /// with the covers that suffice, `None` when not covered.
    pub fn covered(
        &mut self,
        base: &[&Expr],
        covers: &[&Expr],
    ) -> Result<Result<Option<Vec<usize>>, String>, EncodeError> {
        let (mut formulas, mut needs) = self.encode_all(base)?;
        let mut cov = Vec::new();
        for c in covers {
            let e = self.encode(c)?;
            needs.merge(&e.needs);
            cov.push(e.formula);
        }
        formulas.extend(self.encoder.domain(&needs));
        let base: Vec<&Bool> = formulas.iter().collect();
        let cov: Vec<&Bool> = cov.iter().collect();
        let Probe {
            encoder,
            session,
            memo,
            ..
        } = self;
        let deadline = session.begin();
        let mut strings = BTreeMap::new();
        let mut refine =
            |m: &z3::Model| step(encoder.refine(m, &needs, memo, deadline), &mut strings);
        Ok(match session.covered(&base, &cov, &mut refine) {
            Cover::Covered(used) => Ok(Some(used)),
            Cover::NotCovered(_) => Ok(None),
            Cover::Unknown(r) => Err(r),
        })
    }

    /// The SMT-LIB text of the query "all of `conds`" (before any string
    /// refinement).
    pub fn smtlib(&mut self, conds: &[&Expr]) -> Result<String, EncodeError> {
        let (formulas, _) = self.encode_all(conds)?;
        let refs: Vec<&Bool> = formulas.iter().collect();
        Ok(Session::smtlib(&refs))
    }

    fn encode(&mut self, e: &Expr) -> Result<Encoded, EncodeError> {
        if let Some(x) = self.cache.get(e) {
            return Ok(x.clone());
        }
        let x = self.encoder.encode(e, None)?;
        self.cache.insert(e.clone(), x.clone());
        Ok(x)
    }

    fn encode_all(&mut self, conds: &[&Expr]) -> Result<(Vec<Bool>, Needs), EncodeError> {
        let mut needs = Needs::default();
        let mut formulas = Vec::new();
        for c in conds {
            let e = self.encode(c)?;
            needs.merge(&e.needs);
            formulas.push(e.formula);
        }
        formulas.extend(self.encoder.domain(&needs));
        Ok((formulas, needs))
    }
}

/// A refinement as a solver step, keeping the string values of an accepted
/// model.
pub(super) fn step(r: Refinement, strings: &mut BTreeMap<usize, String>) -> Step {
    match r {
        Refinement::Consistent(values) => {
            *strings = values;
            Step::Accept
        }
        Refinement::Block(clauses) => Step::Block(clauses),
        Refinement::Unknown(reason) => Step::Unknown(reason),
    }
}
