//! Stage 5: the whole-set conflict analysis (SPEC §3, "emergent conflicts"),
//! run on a set that type-checks. Pure: no I/O; Z3 runs in-process.
//!
//! Findings, each with labels on every rule involved:
//! - `conflict::overridden_allow` (warning): an `allow` overlaps a `deny` or
//!   `require_approval` of another policy.
//! - `conflict::shadowed` (error): every request an `allow` matches is denied
//!   or sent for approval by other rules (it then gets no
//!   `overridden_allow` of its own).
//! - `conflict::dead_rule` (warning): a rule or limit no valid request meets.
//! - `conflict::modify` (error): rules of different policies modify one field
//!   with different values and can fire on one request (with the field
//!   present).
//! - `conflict::approval_deadlock` (error): approving a request needs a tool
//!   call that is itself denied or made to wait for approval, for the same
//!   requests (one finding per blocked rule; a cycle is spelled out once).
//! - `analyze::unknown` (warning): a query the solver could not decide in
//!   time — never read as "no conflict".
//! - `analyze::unencodable` (warning): a rule left out (a regex whose
//!   automaton is too large to build).
//! - `analyze::witness_mismatch` (error): a witness that the evaluator does
//!   not reproduce — a bug in the analysis, reported rather than dropped.
//! - `analyze::internal` (error): a worker thread stopped; the analysis is
//!   incomplete.
//!
//! How (see ARCHITECTURE.md): `index` summarises each condition and indexes
//! rules by `tool`, so only rules whose tools can overlap are paired and
//! most pairs (and most conditions) are settled without the solver; `smt`
//! encodes conditions; `solver` asks Z3, one solver per thread, a deadline
//! on the wall time of every question, and `lang` decides the string tests
//! of each candidate model with automata; the queries of the whole set run on `Options::threads`
//! plain threads; every witness is replayed through `eval`
//! (`witness`); `graph` finds approval cycles.
//!
//! [`analyze_change`] (`change`) analyses two revisions of a set for the
//! pull-request check: only the jobs whose answers can differ between them,
//! those that involve a rule whose meaning changed; and (`diff`) for each
//! changed rule the requests whose final decision differs between them
//! (`change::decision`, a note; `change::widened`, a warning, when what was
//! denied or sent for approval goes through).
//!
//! Findings depend on rule names, never on where a rule sits in its file:
//! rules are ordered by policy and name, the covers a `shadowed` finding
//! names are a deterministic minimal set, and every unencodable rule of a
//! job is reported — so a finding reads the same at two revisions when its
//! rules did not change.
//!
//! The submodules form a DAG; each may use only those before it (bottom →
//! top), plus the root's plain types (`Options`, `Stats`, `Report`):
//! - `lang`: string tests decided by automata (every string: Z3 sees only
//!   booleans and integers);
//! - `graph`: approval cycles (no other submodule);
//! - `cond`: what a condition's syntax says (the fields an atom reads, the
//!   comparison operators flipped and negated), shared by `index` and `smt`;
//! - `index`: per-condition summaries, the tool index, the obviously
//!   satisfiable check;
//! - `smt`: the encoding of conditions into Z3, and of models back into
//!   requests;
//! - `solver`: Z3 sessions (knows only formulas);
//! - `probe`: one-thread questions on conditions ([`Probe`]);
//! - `plan`: rules and limits as items, and the solver jobs;
//! - `run`: the worker threads and their answers;
//! - `witness`: the replay of witnesses through `eval`, and what each
//!   finding's witness must show;
//! - `findings`: answers into findings;
//! - the root: a planned side (`Side`: plan, solve, report) and
//!   [`analyze`];
//! - `diff`: what a change does to decisions (`change::decision`,
//!   `change::widened`), on two revisions' items;
//! - `change`: the analysis of a change, on two planned sides.

mod change;
mod cond;
mod diff;
mod findings;
pub mod graph;
pub mod index;
pub mod lang;
mod plan;
mod probe;
mod run;
pub mod smt;
pub mod solver;
mod witness;

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use crate::diagnostic::Finding;
use crate::eval::Evaluator;
use crate::model::ir::{DecisionKind, PolicySet, Type};
use crate::model::schema::Schema;

pub use self::change::{ChangeReport, DecisionDiff, Revision, analyze_change};
pub use self::diff::widens;
use self::findings::{Outcomes, build_findings};
use self::plan::{Item, Job, TOOL, items, plan_jobs, via_of};
pub use self::probe::{Probe, Sat};
use self::run::{PARALLEL_FROM, Shared, run_all};
use self::smt::Plan;
use self::witness::{Pending, Replay, verify};

/// How the analysis runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The timeout of every solver query, in milliseconds.
    pub timeout_ms: u32,
    /// Worker threads (each with its own Z3 context and solver).
    pub threads: usize,
    /// For a change ([`analyze_change`]): whether to find what it does to
    /// decisions (`change::decision`, `change::widened`).
    pub decisions: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 2_000,
            threads: 2,
            decisions: true,
        }
    }
}

/// Figures about one analysis run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Rules and limits analysed.
    pub rules: usize,
    /// Conditions decided without the solver (obviously satisfiable, or
    /// empty by their summary).
    pub decided_syntactically: usize,
    /// Pairs the tool index proposed.
    pub pairs: usize,
    /// Of those, pairs whose summaries do not intersect.
    pub pruned: usize,
    /// Solver queries asked.
    pub queries: u64,
    /// Queries without an answer.
    pub unknown: usize,
    /// Solver jobs planned (dead checks, pairs, covers, approval edges).
    pub jobs: usize,
    /// Of those, jobs left out by an incremental analysis: nothing they
    /// depend on changed ([`analyze_change`]).
    pub unchanged: usize,
    /// Threads used.
    pub threads: usize,
    /// Seconds spent planning (summaries, index, pairs), solving, and
    /// replaying witnesses; `seconds` is the total.
    pub plan_seconds: f64,
    pub solve_seconds: f64,
    pub replay_seconds: f64,
    pub seconds: f64,
}

/// The findings of an analysis, sorted by file and position, and its figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub stats: Stats,
}

/// Analyses a type-checked policy set: every emergent conflict of SPEC §3,
/// each SMT-found one with a witness request replayed through the evaluator
/// (`default` is the project's default decision, for that replay).
pub fn analyze(set: &PolicySet, schema: &Schema, default: DecisionKind, opts: &Options) -> Report {
    let side = Side::plan(set, schema, default);
    let solved = side.solve(None, opts);
    side.report(solved)
}

/// conditions are encoded, and every solver job.
struct Side<'s> {
    set: &'s PolicySet,
    schema: &'s Schema,
    default: DecisionKind,
    /// An evaluator of `set` the caller built, to replay witnesses on.
    evaluator: Option<&'s Evaluator>,
    /// The replay of witnesses, built once, when a first witness needs it.
    replay: OnceCell<Result<Replay<'s>, String>>,
    items: Vec<Item<'s>>,
    tool: Option<String>,
    plan: Plan,
    jobs: Vec<Job>,
    /// Rules and limits empty by their summary (no solver needed).
    dead: BTreeSet<usize>,
    stats: Stats,
}

/// Which of a side's jobs and syntactically dead rules to keep (an
/// incremental analysis, [`change`]); everything when absent.
#[derive(Debug, Clone, Default)]
struct Keep {
    jobs: Vec<bool>,
    dead: BTreeSet<usize>,
}

/// A side's answers, before they become findings.
struct Answered {
    out: Outcomes,
    dead: BTreeSet<usize>,
    crashed: bool,
    stats: Stats,
}

impl<'s> Side<'s> {
    fn plan(set: &'s PolicySet, schema: &'s Schema, default: DecisionKind) -> Side<'s> {
        let started = Instant::now();
        let items = items(set, schema);
        let mut stats = Stats {
            rules: items.len(),
            ..Stats::default()
        };
        let tool = schema
            .get(TOOL)
            .filter(|f| f.ty == Type::Str)
            .map(|_| TOOL.to_string());
        let via: Vec<(String, String)> = match &tool {
            Some(t) => items
                .iter()
                .filter_map(|i| via_of(i.effect).map(|v| (t.clone(), v.to_string())))
                .collect(),
            None => Vec::new(),
        };
        let plan = Plan::new(schema, items.iter().map(|i| i.when.as_ref()), &via);
        let mut dead: BTreeSet<usize> = BTreeSet::new();
        let jobs = plan_jobs(
            &items,
            schema,
            tool.is_some(),
            default == DecisionKind::Deny,
            &mut dead,
            &mut stats,
        );
        stats.jobs = jobs.len();
        stats.plan_seconds = started.elapsed().as_secs_f64();
        Side {
            set,
            schema,
            default,
            evaluator: None,
            replay: OnceCell::new(),
            items,
            tool,
            plan,
            jobs,
            dead,
            stats,
        }
    }

    /// Replays witnesses on `evaluator` (built for the same set) rather
    /// than on one of its own.
    fn with_evaluator(mut self, evaluator: Option<&'s Evaluator>) -> Side<'s> {
        self.evaluator = evaluator;
        self
    }

    /// The replay of this side's witnesses: the evaluator given, or one
    /// built on first use.
    fn replay(&self) -> &Result<Replay<'s>, String> {
        self.replay.get_or_init(|| match self.evaluator {
            Some(e) => Ok(Replay::shared(e)),
            None => Replay::new(self.set, self.schema, self.default),
        })
    }

    /// Runs the jobs `keep` selects (all without it) on `opts.threads`
    /// threads.
    fn solve(&self, keep: Option<&Keep>, opts: &Options) -> Answered {
        let mut stats = self.stats.clone();
        let selected: Vec<&Job> = match keep {
            None => self.jobs.iter().collect(),
            Some(k) => self
                .jobs
                .iter()
                .zip(&k.jobs)
                .filter(|(_, keep)| **keep)
                .map(|(j, _)| j)
                .collect(),
        };
        stats.unchanged = self.jobs.len() - selected.len();
        let threads = if selected.len() < PARALLEL_FROM {
            1
        } else {
            opts.threads.max(1)
        };
        stats.threads = threads;
        let shared = Shared {
            items: &self.items,
            plan: &self.plan,
            tool: self.tool.as_deref().and_then(|t| self.plan.index(t)),
            timeout_ms: opts.timeout_ms,
        };
        let solving = Instant::now();
        let (answers, queries, crashed) = run_all(&shared, &selected, threads);
        stats.queries = queries;
        stats.solve_seconds = solving.elapsed().as_secs_f64();
        let mut dead = match keep {
            None => self.dead.clone(),
            Some(k) => self.dead.intersection(&k.dead).copied().collect(),
        };
        let mut out = Outcomes::default();
        for (job, answer) in selected.into_iter().zip(answers) {
            match answer {
                Some(a) => out.record(job, a, &mut dead),
                None => out.unanswered += 1,
            }
        }
        stats.unknown = out.unknown.len();
        Answered {
            out,
            dead,
            crashed,
            stats,
        }
    }

    /// The findings of the answers, every witness replayed.
    fn report(&self, solved: Answered) -> Report {
        let Answered {
            out,
            dead,
            crashed,
            mut stats,
        } = solved;
        let replaying = Instant::now();
        let mut pending = Vec::new();
        if crashed {
            pending.push(Pending::plain(
                Finding::new(
                    crate::diagnostic::Code::AnalyzeInternal,
                    "internal error: a worker of the conflict analysis stopped; the analysis is incomplete",
                )
                .with_help("this is a bug in sluice's analysis — please report it with the policy set"),
            ));
        }
        build_findings(&self.items, &out, &dead, &mut pending);
        // The evaluator is built only when there is a witness to replay.
        let replay = if pending.iter().any(|p| p.claim.is_some()) {
            Some(self.replay())
        } else {
            None
        };
        let mut findings = match replay {
            None => pending.into_iter().map(|p| p.finding).collect(),
            Some(Ok(r)) => verify(pending, r),
            Some(Err(e)) => {
                let mut f: Vec<Finding> = pending.into_iter().map(|p| p.finding).collect();
                f.push(
                    Finding::new(
                        crate::diagnostic::Code::AnalyzeWitnessMismatch,
                        format!("internal error: the witnesses cannot be replayed: {e}"),
                    )
                    .with_help(
                        "this is a bug in sluice's analysis — please report it with the policy set",
                    ),
                );
                f
            }
        };
        findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        stats.replay_seconds = replaying.elapsed().as_secs_f64();
        stats.seconds = stats.plan_seconds + stats.solve_seconds + stats.replay_seconds;
        Report { findings, stats }
    }
}
