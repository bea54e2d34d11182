//! Solving: one Z3 solver per thread, reused with push/pop, a deadline on
//! every question. Formulas come from `smt`; nothing here knows about
//! policies.
//!
//! The timeout bounds the wall time of a whole question
//! ([`Session::begin`]): every solver call is given what is left of it as
//! Z3's own `timeout`, the string refinement between calls stops at the
//! same deadline, and a question out of time is `unknown` with a message
//! that names the timeout only — never the reason Z3 gave (`timeout`,
//! `canceled`), which varies from run to run and would make the same open
//! question read differently at two revisions.
//!
//! Z3 terms are bound to the thread that created them (the `z3` crate uses a
//! thread-local context), so a [`Session`] never leaves its thread, and a
//! model is turned into a plain request before the answer is sent anywhere.
//!
//! An `unknown` answer (timeout, resource limit, incompleteness) is an answer
//! of its own: callers report it, never read it as "no conflict".
//!
//! Strings are partly decided outside Z3 (`lang`): [`Session::solve`] and
//! [`Session::covered`] pass each candidate model to a refinement callback,
//! which accepts it or returns clauses that rule it out (lazy SMT).
//!
//! Measured on Z3 4.8.12: a reused solver answers a small query in about
//! 0.3–0.5 ms; a fresh one costs about 10 ms, hence one per thread.

use z3::ast::Bool;
use z3::{Model, Params, SatResult, Solver};

use super::lang::Deadline;

/// The answer to one satisfiability query.
#[derive(Debug)]
pub enum Verdict {
    Sat(Model),
    Unsat,
    /// Not decided within the timeout (or not at all); the reason Z3 gave.
    Unknown(String),
}

/// The answer to a cover query ([`Session::covered`]).
#[derive(Debug)]
pub enum Cover {
    /// Every model of the base satisfies one of the covers; these (indices
    /// into the covers) are enough.
    Covered(Vec<usize>),
    /// Some model of the base satisfies none of the covers.
    NotCovered(Model),
    Unknown(String),
}

/// What a theory outside Z3 says about a model (see `smt::Encoder::refine`).
#[derive(Debug)]
pub enum Step {
    /// The model is consistent.
    Accept,
    /// The model is not: add these clauses and ask again.
    Block(Vec<Bool>),
    Unknown(String),
}

/// A theory check run on each candidate model; `Accept` for queries that
/// need none.
pub type Refine<'a> = dyn FnMut(&Model) -> Step + 'a;

/// Past this many rounds of refinement a query is `unknown`.
const MAX_ROUNDS: usize = 500;

/// A solver with a timeout, reused across queries.
#[derive(Debug)]
pub struct Session {
    solver: Solver,
    timeout_ms: u32,
    /// Z3's own timeout as last set.
    z3_timeout: u32,
    /// The deadline of the question under way.
    deadline: Option<Deadline>,
    queries: u64,
    rounds: u64,
}

impl Session {
    /// A solver whose every question stops after `timeout_ms` milliseconds
    /// of wall time.
    pub fn new(timeout_ms: u32) -> Session {
        let solver = Solver::new();
        let mut params = Params::new();
        params.set_u32("timeout", timeout_ms.max(1));
        solver.set_params(&params);
        Session {
            solver,
            timeout_ms,
            z3_timeout: timeout_ms.max(1),
            deadline: None,
            queries: 0,
            rounds: 0,
        }
    }

    /// Starts a question: every query until the next `begin` shares one
    /// deadline, `timeout_ms` from now, which is returned for the string
    /// refinement to stop at too.
    pub fn begin(&mut self) -> Deadline {
        if self.z3_timeout != self.timeout_ms.max(1) {
            self.set_z3_timeout(self.timeout_ms.max(1));
        }
        let d = Deadline::after(self.timeout_ms.max(1));
        self.deadline = Some(d);
        d
    }

    /// The deadline of the question under way (a new question when none
    /// was begun).
    fn deadline(&mut self) -> Deadline {
        match self.deadline {
            Some(d) => d,
            None => self.begin(),
        }
    }

    fn set_z3_timeout(&mut self, ms: u32) {
        let mut params = Params::new();
        params.set_u32("timeout", ms);
        self.solver.set_params(&params);
        self.z3_timeout = ms;
    }

    /// The timeout of every query.
    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms
    }

    /// The number of queries asked so far.
    pub fn queries(&self) -> u64 {
        self.queries
    }

    /// The number of solver calls so far (a query may take several rounds
    /// of refinement).
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Is the conjunction of `formulas` satisfiable, with every model
    /// passed through `refine` until one is accepted? The accepted model
    /// comes with `Sat`.
    pub fn solve(&mut self, formulas: &[&Bool], refine: &mut Refine<'_>) -> Verdict {
        self.queries += 1;
        self.solver.push();
        for f in formulas {
            self.solver.assert(*f);
        }
        let verdict = self.rounds_of(&[], refine);
        self.solver.pop(1);
        match verdict {
            Round::Sat(m) => Verdict::Sat(m),
            Round::Unsat => Verdict::Unsat,
            Round::Unknown(r) => Verdict::Unknown(r),
        }
    }

    /// Does every model of `base` satisfy one of `covers`? Asks whether
    /// `base ∧ ¬cover₁ ∧ … ∧ ¬coverₙ` is unsatisfiable, each negation behind
    /// an assumption so that the unsat core names covers that suffice.
    pub fn covered(&mut self, base: &[&Bool], covers: &[&Bool], refine: &mut Refine<'_>) -> Cover {
        self.queries += 1;
        self.solver.push();
        for f in base {
            self.solver.assert(*f);
        }
        let guards: Vec<Bool> = (0..covers.len())
            .map(|i| Bool::new_const(format!("cover!{i}")))
            .collect();
        for (g, c) in guards.iter().zip(covers) {
            self.solver.assert(g.implies(c.not()));
        }
        let answer = match self.rounds_of(&guards, refine) {
            Round::Unsat => {
                let mut used = self.minimal_cover(&guards, refine);
                if used.is_empty() {
                    // The base alone is unsatisfiable: every cover "suffices".
                    used = (0..covers.len()).collect();
                }
                Cover::Covered(used)
            }
            Round::Sat(m) => Cover::NotCovered(m),
            Round::Unknown(r) => Cover::Unknown(r),
        };
        self.solver.pop(1);
        answer
    }

    /// The covers that suffice, after an unsatisfiable cover query: every
    /// cover in order, each dropped when the others still cover the base.
    /// Deterministic — it depends on the covers and their order, not on the
    /// unsat core Z3 happened to find (which varies with what the solver
    /// answered before) — so a finding that names them reads the same at
    /// two revisions. A cover whose removal the solver cannot decide stays.
    fn minimal_cover(&mut self, guards: &[Bool], refine: &mut Refine<'_>) -> Vec<usize> {
        let mut kept: Vec<usize> = (0..guards.len()).collect();
        for i in 0..guards.len() {
            let without: Vec<Bool> = kept
                .iter()
                .filter(|k| **k != i)
                .filter_map(|k| guards.get(*k).cloned())
                .collect();
            if matches!(self.rounds_of(&without, refine), Round::Unsat) {
                kept.retain(|k| *k != i);
            }
        }
        kept
    }

    /// Checks (under `assumptions`) until `refine` accepts a model, or the
    /// question's deadline passes.
    fn rounds_of(&mut self, assumptions: &[Bool], refine: &mut Refine<'_>) -> Round {
        let deadline = self.deadline();
        for _ in 0..MAX_ROUNDS {
            let left = deadline.remaining_ms().unwrap_or(self.timeout_ms);
            if left == 0 {
                return Round::Unknown(deadline.reason());
            }
            // Z3's own timeout is lowered only once a question has used a
            // quarter of its time (setting parameters costs more than most
            // queries take), so no call outlives the deadline by more than
            // a quarter of the timeout.
            if left.saturating_add(self.timeout_ms / 4) < self.z3_timeout {
                self.set_z3_timeout(left.max(1));
            }
            self.rounds += 1;
            let result = if assumptions.is_empty() {
                self.solver.check()
            } else {
                self.solver.check_assumptions(assumptions)
            };
            match result {
                SatResult::Unsat => return Round::Unsat,
                SatResult::Unknown => return Round::Unknown(self.reason(deadline)),
                SatResult::Sat => {
                    let Some(model) = self.solver.get_model() else {
                        return Round::Unknown("the solver answered sat without a model".into());
                    };
                    match refine(&model) {
                        Step::Accept => return Round::Sat(model),
                        Step::Unknown(r) => return Round::Unknown(r),
                        Step::Block(clauses) => {
                            for c in &clauses {
                                self.solver.assert(c);
                            }
                        }
                    }
                }
            }
        }
        Round::Unknown(format!(
            "no consistent model after {MAX_ROUNDS} rounds of string refinement"
        ))
    }

    /// The SMT-LIB text of `formulas` as this solver would receive them.
    pub fn smtlib(formulas: &[&Bool]) -> String {
        let s = Solver::new();
        for f in formulas {
            s.assert(*f);
        }
        s.to_string()
    }

    /// Why the solver answered `unknown`: out of time (whatever Z3 calls
    /// it), or the reason it gave.
    fn reason(&self, deadline: Deadline) -> String {
        let out_of_time = |r: &str| {
            [
                "timeout",
                "canceled",
                "cancelled",
                "interrupted",
                "resource",
            ]
            .iter()
            .any(|w| r.contains(w))
        };
        match self.solver.get_reason_unknown() {
            Some(r) if out_of_time(&r) || deadline.passed() => deadline.reason(),
            None if deadline.passed() => deadline.reason(),
            Some(r) => format!("the solver gave up ({r})"),
            None => "the solver gave up".to_string(),
        }
    }
}

enum Round {
    Sat(Model),
    Unsat,
    Unknown(String),
}
