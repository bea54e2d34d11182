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
//! - `analyze::unencodable` (warning): a rule left out (a string beyond the
//!   solver's characters, a regex too large to translate).
//! - `analyze::witness_mismatch` (error): a witness that the evaluator does
//!   not reproduce — a bug in the analysis, reported rather than dropped.
//! - `analyze::internal` (error): a worker thread stopped; the analysis is
//!   incomplete.
//!
//! How (see ARCHITECTURE.md): `index` summarises each condition and indexes
//! rules by `tool`, so only rules whose tools can overlap are paired and
//! most pairs (and most conditions) are settled without the solver; `smt`
//! encodes conditions; `solver` asks Z3, one solver per thread, a timeout on
//! every query, and `lang` decides the string tests of each candidate model
//! with automata; the queries of the whole set run on `Options::threads`
//! plain threads; every witness is replayed through `eval`
//! (`finding`); `graph` finds approval cycles.
//!
//! [`analyze_change`] (`change`) analyses two revisions of a set for the
//! pull-request check: only the jobs whose answers can differ between them,
//! those that involve a rule whose meaning changed.
//!
//! Findings depend on rule names, never on where a rule sits in its file:
//! rules are ordered by policy and name, the covers a `shadowed` finding
//! names are a deterministic minimal set, and every unencodable rule of a
//! job is reported — so a finding reads the same at two revisions when its
//! rules did not change.

mod change;
mod finding;
pub mod graph;
pub mod index;
pub mod lang;
pub mod regex;
pub mod smt;
pub mod solver;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value as Json;
use z3::ast::Bool;

use crate::diagnostic::Finding;
use crate::eval::request::Request;
use crate::model::ir::{DecisionKind, Effect, Expr, Literal, ModifyValue, Origin, PolicySet, Type};
use crate::model::schema::Schema;

pub use self::change::{ChangeReport, Revision, analyze_change};
use self::finding::{Replay, Run, label};
use self::graph::Deadlock;
use self::index::{RegexFacts, Strs, Summary, ToolIndex, summarize, trivially_sat_with};
use self::smt::{EncodeError, Encoded, Encoder, Needs, Override, Plan, Refinement};
use self::solver::{Cover, Session, Step, Verdict};

/// The field rules are indexed by, and that `via` replaces.
const TOOL: &str = "tool";

/// Below this many queries, one thread is faster than two (a solver's first
/// query costs about 10 ms).
const PARALLEL_FROM: usize = 64;

/// How the analysis runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The timeout of every solver query, in milliseconds.
    pub timeout_ms: u32,
    /// Worker threads (each with its own Z3 context and solver).
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 2_000,
            threads: 2,
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
    let side = Side::plan(set, schema);
    let solved = side.solve(None, opts);
    side.report(solved, default)
}

/// One policy set planned for the analysis: its rules and limits, how
/// conditions are encoded, and every solver job.
struct Side<'s> {
    set: &'s PolicySet,
    schema: &'s Schema,
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
    fn plan(set: &'s PolicySet, schema: &'s Schema) -> Side<'s> {
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
        let plan = Plan::new(schema, items.iter().map(|i| i.when), &via);
        let mut dead: BTreeSet<usize> = BTreeSet::new();
        let jobs = plan_jobs(&items, schema, tool.is_some(), &mut dead, &mut stats);
        stats.jobs = jobs.len();
        stats.plan_seconds = started.elapsed().as_secs_f64();
        Side {
            set,
            schema,
            items,
            tool,
            plan,
            jobs,
            dead,
            stats,
        }
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
    fn report(&self, solved: Answered, default: DecisionKind) -> Report {
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
            Some(Replay::new(self.set, self.schema, default))
        } else {
            None
        };
        let mut findings = match &replay {
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
        let mut encoder = Encoder::new(plan);
        encoder.load_patterns(plan.patterns().iter().map(String::as_str));
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
        let mut strings = BTreeMap::new();
        let mut refine = |m: &z3::Model| step(encoder.refine(m, &needs, memo), &mut strings);
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
        let mut strings = BTreeMap::new();
        let mut refine = |m: &z3::Model| step(encoder.refine(m, &needs, memo), &mut strings);
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
fn step(r: Refinement, strings: &mut BTreeMap<usize, String>) -> Step {
    match r {
        Refinement::Consistent(values) => {
            *strings = values;
            Step::Accept
        }
        Refinement::Block(clauses) => Step::Block(clauses),
        Refinement::Unknown(reason) => Step::Unknown(reason),
    }
}

// ---------------------------------------------------------------------------
// Items and jobs.

/// A rule or a limit of the set.
#[derive(Debug)]
struct Item<'s> {
    policy: usize,
    policy_name: &'s str,
    name: &'s str,
    /// `policy.rule`.
    id: String,
    limit: bool,
    when: &'s Expr,
    effect: &'s Effect,
    origin: &'s Origin,
    summary: Summary,
}

impl Item<'_> {
    fn what(&self) -> &'static str {
        if self.limit { "limit" } else { "rule" }
    }

    fn kind(&self) -> DecisionKind {
        self.effect.kind()
    }
}

fn items<'s>(set: &'s PolicySet, schema: &Schema) -> Vec<Item<'s>> {
    let mut out = Vec::new();
    for (pi, p) in set.policies.iter().enumerate() {
        let rules = p
            .rules
            .iter()
            .map(|r| (&r.name, &r.when, &r.effect, &r.origin, false));
        let limits = p
            .limits
            .iter()
            .map(|l| (&l.name, &l.when, &l.exceed, &l.origin, true));
        for (name, when, effect, origin, limit) in rules.chain(limits) {
            out.push(Item {
                policy: pi,
                policy_name: &p.name,
                name,
                id: format!("{}.{}", p.name, name),
                limit,
                when,
                effect,
                origin,
                summary: summarize(when, true, schema),
            });
        }
    }
    // By name within each policy (policies are sorted by name): whatever
    // depends on the order of rules — the covers a finding names, the order
    // a deadlock is spelled in — then depends on names, not on where a rule
    // sits in its file, so it reads the same at two revisions.
    out.sort_by(|a, b| (a.policy, a.name).cmp(&(b.policy, b.name)));
    out
}

fn via_of(e: &Effect) -> Option<&str> {
    match e {
        Effect::RequireApproval { via: Some(v), .. } => Some(v),
        _ => None,
    }
}

/// One solver task.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    /// Can the rule match anything?
    Dead(usize),
    /// Can the allow and the other policy's deny/approval match together?
    Overlap { allow: usize, other: usize },
    /// Can two modifications of one field fire together?
    Modify { a: usize, b: usize },
    /// Is every request of the allow overridden by one of `by`?
    Shadow { allow: usize, by: Vec<usize> },
    /// Does approving `from` (via its tool) hit `to` (a deny or an
    /// approval), for a request that none of `guard` denies?
    Edge {
        from: usize,
        to: usize,
        guard: Vec<usize>,
    },
}

fn plan_jobs(
    items: &[Item<'_>],
    schema: &Schema,
    with_tool: bool,
    dead: &mut BTreeSet<usize>,
    stats: &mut Stats,
) -> Vec<Job> {
    let mut jobs = Vec::new();
    let tool_doms: Vec<Option<Strs>> = items.iter().map(|i| i.summary.strs(TOOL)).collect();
    let live = |i: &usize| items.get(*i).is_some_and(|it| !it.summary.is_empty());
    let index_of = |ids: &[usize]| {
        ToolIndex::new(
            ids.iter()
                .map(|i| (*i, tool_doms.get(*i).and_then(Option::as_ref))),
        )
    };
    let item = |i: usize| items.get(i);

    // Dead rules and limits.
    let mut facts = RegexFacts::default();
    for (i, it) in items.iter().enumerate() {
        if it.summary.is_empty() {
            dead.insert(i);
            stats.decided_syntactically += 1;
        } else if trivially_sat_with(it.when, schema, &mut facts) {
            stats.decided_syntactically += 1;
        } else {
            jobs.push(Job::Dead(i));
        }
    }

    // Allows against what overrides them.
    let stoppers: Vec<usize> = (0..items.len())
        .filter(|i| {
            item(*i).is_some_and(|it| {
                !it.limit
                    && matches!(
                        it.kind(),
                        DecisionKind::Deny | DecisionKind::RequireApproval
                    )
            })
        })
        .filter(live)
        .collect();
    let stop_index = index_of(&stoppers);
    for (a, it) in items.iter().enumerate() {
        if it.limit || it.kind() != DecisionKind::Allow || it.summary.is_empty() {
            continue;
        }
        let Some(Some(dom)) = tool_doms.get(a) else {
            continue;
        };
        let mut by = Vec::new();
        for d in stop_index.candidates(dom) {
            let Some(other) = item(d) else { continue };
            stats.pairs += 1;
            if !it.summary.overlaps(&other.summary, schema) {
                stats.pruned += 1;
                continue;
            }
            by.push(d);
            if other.policy != it.policy {
                jobs.push(Job::Overlap { allow: a, other: d });
            }
        }
        if !by.is_empty() {
            jobs.push(Job::Shadow { allow: a, by });
        }
    }

    // Modifications of one field by different policies.
    let mut by_field: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        if let (false, Effect::Modify { field, .. }) = (it.limit, it.effect)
            && !it.summary.is_empty()
        {
            by_field.entry(field.as_str()).or_default().push(i);
        }
    }
    for group in by_field.values() {
        let ix = index_of(group);
        for &a in group {
            let (Some(ia), Some(Some(dom))) = (item(a), tool_doms.get(a)) else {
                continue;
            };
            for b in ix.candidates(dom).into_iter().filter(|b| *b > a) {
                let Some(ib) = item(b) else { continue };
                if ib.policy == ia.policy || modify_value(ia.effect) == modify_value(ib.effect) {
                    continue;
                }
                stats.pairs += 1;
                if !ia.summary.overlaps(&ib.summary, schema) {
                    stats.pruned += 1;
                    continue;
                }
                jobs.push(Job::Modify { a, b });
            }
        }
    }

    // Approval edges.
    if with_tool {
        let targets: Vec<usize> = (0..items.len())
            .filter(|i| {
                item(*i).is_some_and(|it| {
                    !it.limit && (it.kind() == DecisionKind::Deny || via_of(it.effect).is_some())
                })
            })
            .filter(live)
            .collect();
        let target_index = index_of(&targets);
        for (r, it) in items.iter().enumerate() {
            let Some(via) = via_of(it.effect) else {
                continue;
            };
            if it.limit || it.summary.is_empty() {
                continue;
            }
            let Some(Some(dom)) = tool_doms.get(r) else {
                continue;
            };
            let guard: Vec<usize> = stop_index
                .candidates(dom)
                .into_iter()
                .filter(|d| {
                    item(*d).is_some_and(|x| {
                        x.kind() == DecisionKind::Deny && x.summary.overlaps(&it.summary, schema)
                    })
                })
                .collect();
            let rest = it.summary.without(TOOL);
            for s in target_index.admitting(via) {
                let Some(other) = item(s) else { continue };
                stats.pairs += 1;
                if !other.summary.strs(TOOL).is_some_and(|d| d.admits(via)) {
                    stats.pruned += 1;
                    continue;
                }
                if !rest.overlaps(&other.summary.without(TOOL), schema) {
                    stats.pruned += 1;
                    continue;
                }
                jobs.push(Job::Edge {
                    from: r,
                    to: s,
                    guard: guard.clone(),
                });
            }
        }
    }
    jobs
}

fn modify_value(e: &Effect) -> Option<&ModifyValue> {
    match e {
        Effect::Modify { value, .. } => Some(value),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Running the jobs.

/// What every worker reads.
struct Shared<'a> {
    items: &'a [Item<'a>],
    plan: &'a Plan,
    /// The position of `tool` in the plan.
    tool: Option<usize>,
    timeout_ms: u32,
}

/// A witness: the request, and for an approval edge the request that
/// needed the approval.
#[derive(Debug, Clone)]
struct Witness {
    request: Json,
    original: Option<Json>,
}

/// A witness as answers carry it (boxed: answers are moved around a lot).
type Witnessed = Result<Box<Witness>, String>;

/// A job's answer, made of plain data (models stay on their thread).
#[derive(Debug, Clone)]
enum Answer {
    Sat(Option<Witnessed>),
    Unsat,
    Covered {
        by: Vec<usize>,
        witness: Witnessed,
    },
    NotCovered,
    Unknown(String),
    /// Rules of the job whose conditions cannot be encoded (every one of
    /// them, so that which rules are reported does not depend on the order
    /// they were tried in).
    Unencodable(Vec<(usize, String)>),
}

/// Runs every job on `threads` threads; answers in job order (`None` for a
/// job a crashed worker took), the number of queries, and whether a worker
/// crashed.
fn run_all(shared: &Shared<'_>, jobs: &[&Job], threads: usize) -> (Vec<Option<Answer>>, u64, bool) {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Answer)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let mut queries = 0;
    let mut crashed = false;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| worker(shared, jobs, &next, &results)))
            .collect();
        for h in handles {
            match h.join() {
                Ok(q) => queries += q,
                Err(_) => crashed = true,
            }
        }
    });
    let mut answers: Vec<Option<Answer>> = vec![None; jobs.len()];
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    for (i, a) in results {
        if let Some(slot) = answers.get_mut(i) {
            *slot = Some(a);
        }
    }
    (answers, queries, crashed)
}

/// One thread: its own encoder and solver; takes jobs until none is left.
fn worker(
    shared: &Shared<'_>,
    jobs: &[&Job],
    next: &AtomicUsize,
    results: &Mutex<Vec<(usize, Answer)>>,
) -> u64 {
    let mut w = Worker {
        shared,
        encoder: Encoder::new(shared.plan),
        session: Session::new(shared.timeout_ms),
        memo: lang::Memo::default(),
        cache: HashMap::new(),
    };
    w.encoder
        .load_patterns(shared.plan.patterns().iter().map(String::as_str));
    let mut local = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else { break };
        let answer = w.run(job).unwrap_or_else(|a| a);
        local.push((i, answer));
    }
    let mut guard = results.lock().unwrap_or_else(|e| e.into_inner());
    guard.extend(local);
    w.session.queries()
}

struct Worker<'a> {
    shared: &'a Shared<'a>,
    encoder: Encoder<'a>,
    session: Session,
    memo: lang::Memo,
    cache: HashMap<(usize, Option<Override>), Result<Encoded, EncodeError>>,
}

/// A solved query: the model with the values of automata-decided strings.
enum Solved {
    Sat(z3::Model, BTreeMap<usize, String>),
    Unsat,
    Unknown(String),
}

impl Worker<'_> {
    fn encoded(&mut self, i: usize, over: Option<&Override>) -> Result<Encoded, Answer> {
        let ([e], _) = first::<1>(self.encoded_all(&[(i, over)])?)?;
        Ok(e)
    }

    /// The conditions of `wanted`, in order; when some cannot be encoded,
    /// all of those (not only the first).
    fn encoded_all(
        &mut self,
        wanted: &[(usize, Option<&Override>)],
    ) -> Result<Vec<Encoded>, Answer> {
        let mut out = Vec::with_capacity(wanted.len());
        let mut failed = Vec::new();
        for (i, over) in wanted {
            let key = (*i, over.cloned());
            let e = match self.cache.get(&key) {
                Some(e) => e.clone(),
                None => {
                    let Some(item) = self.shared.items.get(*i) else {
                        return Err(Answer::Unknown("internal: no such rule".into()));
                    };
                    let e = self.encoder.encode(item.when, *over);
                    self.cache.insert(key, e.clone());
                    e
                }
            };
            match e {
                Ok(e) => out.push(e),
                Err(e) => failed.push((*i, e.to_string())),
            }
        }
        if failed.is_empty() {
            Ok(out)
        } else {
            Err(Answer::Unencodable(failed))
        }
    }

    fn present(&self, field: &str) -> Result<Bool, Answer> {
        self.encoder
            .present(field)
            .map_err(|e| Answer::Unknown(e.to_string()))
    }

    fn witness(
        &self,
        model: &z3::Model,
        over: Option<&Override>,
        strings: &BTreeMap<usize, String>,
    ) -> Result<Json, String> {
        let schema = self.shared.plan.schema();
        self.encoder
            .witness(model, over, strings)
            .map(|r| r.to_json(schema))
    }

    fn solve(&mut self, parts: &[&Encoded], extra: &[Bool]) -> Solved {
        let mut needs = Needs::default();
        for p in parts {
            needs.merge(&p.needs);
        }
        let domain = self.encoder.domain(&needs);
        let mut formulas: Vec<&Bool> = parts.iter().map(|p| &p.formula).collect();
        formulas.extend(extra.iter());
        formulas.extend(domain.iter());
        let Worker {
            encoder,
            session,
            memo,
            ..
        } = self;
        let mut strings = BTreeMap::new();
        let mut refine = |m: &z3::Model| step(encoder.refine(m, &needs, memo), &mut strings);
        match session.solve(&formulas, &mut refine) {
            Verdict::Sat(m) => Solved::Sat(m, strings),
            Verdict::Unsat => Solved::Unsat,
            Verdict::Unknown(r) => Solved::Unknown(r),
        }
    }

    fn run(&mut self, job: &Job) -> Result<Answer, Answer> {
        let plain = |request| {
            Box::new(Witness {
                request,
                original: None,
            })
        };
        Ok(match job {
            Job::Dead(i) => {
                let e = self.encoded(*i, None)?;
                match self.solve(&[&e], &[]) {
                    Solved::Sat(..) => Answer::Sat(None),
                    Solved::Unsat => Answer::Unsat,
                    Solved::Unknown(r) => Answer::Unknown(r),
                }
            }
            Job::Overlap { allow: a, other: b } | Job::Modify { a, b } => {
                let [ea, eb] = first::<2>(self.encoded_all(&[(*a, None), (*b, None)])?)?.0;
                let mut extra = Vec::new();
                if let Job::Modify { .. } = job {
                    for i in [*a, *b] {
                        let Some(it) = self.shared.items.get(i) else {
                            continue;
                        };
                        for f in modify_fields(it.effect) {
                            extra.push(self.present(f)?);
                        }
                    }
                }
                match self.solve(&[&ea, &eb], &extra) {
                    Solved::Sat(m, strings) => {
                        Answer::Sat(Some(self.witness(&m, None, &strings).map(plain)))
                    }
                    Solved::Unsat => Answer::Unsat,
                    Solved::Unknown(r) => Answer::Unknown(r),
                }
            }
            Job::Shadow { allow, by } => {
                let wanted: Vec<(usize, Option<&Override>)> = std::iter::once(*allow)
                    .chain(by.iter().copied())
                    .map(|i| (i, None))
                    .collect();
                let ([ea], covers) = first::<1>(self.encoded_all(&wanted)?)?;
                let mut needs = ea.needs.clone();
                for c in &covers {
                    needs.merge(&c.needs);
                }
                let domain = self.encoder.domain(&needs);
                let mut base: Vec<&Bool> = vec![&ea.formula];
                base.extend(domain.iter());
                let cov: Vec<&Bool> = covers.iter().map(|c| &c.formula).collect();
                let covered = {
                    let Worker {
                        encoder,
                        session,
                        memo,
                        ..
                    } = &mut *self;
                    let mut strings = BTreeMap::new();
                    let mut refine =
                        |m: &z3::Model| step(encoder.refine(m, &needs, memo), &mut strings);
                    match session.covered(&base, &cov, &mut refine) {
                        Cover::NotCovered(_) => None,
                        Cover::Unknown(r) => return Ok(Answer::Unknown(r)),
                        Cover::Covered(used) => Some(used),
                    }
                };
                match covered {
                    None => Answer::NotCovered,
                    Some(used) => {
                        let by: Vec<usize> =
                            used.iter().filter_map(|u| by.get(*u).copied()).collect();
                        match self.solve(&[&ea], &[]) {
                            Solved::Sat(m, strings) => Answer::Covered {
                                by,
                                witness: self.witness(&m, None, &strings).map(plain),
                            },
                            Solved::Unsat => Answer::Unsat,
                            Solved::Unknown(r) => Answer::Unknown(r),
                        }
                    }
                }
            }
            Job::Edge { from, to, guard } => {
                let Some(via) = self
                    .shared
                    .items
                    .get(*from)
                    .and_then(|it| via_of(it.effect))
                else {
                    return Ok(Answer::Unsat);
                };
                let Some(tool) = self.shared.tool else {
                    return Ok(Answer::Unsat);
                };
                let over = Override {
                    field: tool,
                    value: via.to_string(),
                };
                let wanted: Vec<(usize, Option<&Override>)> = [(*from, None), (*to, Some(&over))]
                    .into_iter()
                    .chain(guard.iter().map(|g| (*g, None)))
                    .collect();
                let ([ef, et], guards) = first::<2>(self.encoded_all(&wanted)?)?;
                let mut needs = Needs::default();
                for g in &guards {
                    needs.merge(&g.needs);
                }
                let any_denies: Vec<Bool> = guards.iter().map(|g| g.formula.clone()).collect();
                let guard_part = Encoded {
                    formula: Bool::or(&any_denies).not(),
                    needs,
                };
                match self.solve(&[&ef, &et, &guard_part], &[]) {
                    Solved::Sat(m, strings) => {
                        let w = self.witness(&m, Some(&over), &strings).and_then(|request| {
                            Ok(Box::new(Witness {
                                request,
                                original: Some(self.witness(&m, None, &strings)?),
                            }))
                        });
                        Answer::Sat(Some(w))
                    }
                    Solved::Unsat => Answer::Unsat,
                    Solved::Unknown(r) => Answer::Unknown(r),
                }
            }
        })
    }
}

/// The first `N` of `all` (as an array) and the rest.
fn first<const N: usize>(mut all: Vec<Encoded>) -> Result<([Encoded; N], Vec<Encoded>), Answer> {
    if all.len() < N {
        return Err(Answer::Unknown(
            "internal: a condition was not encoded".into(),
        ));
    }
    let rest = all.split_off(N);
    let head: [Encoded; N] = all
        .try_into()
        .map_err(|_| Answer::Unknown("internal: a condition was not encoded".into()))?;
    Ok((head, rest))
}

/// The fields a modification reads or writes (they must be present for it
/// to change anything).
fn modify_fields(e: &Effect) -> Vec<&str> {
    let Effect::Modify { field, value, .. } = e else {
        return Vec::new();
    };
    let mut out = vec![field.as_str()];
    match value {
        ModifyValue::Literal(_) => {}
        ModifyValue::Redact { field }
        | ModifyValue::RedactPattern { field, .. }
        | ModifyValue::Truncate { field, .. }
        | ModifyValue::Lowercase { field } => out.push(field),
    }
    out
}

// ---------------------------------------------------------------------------
// From answers to findings.

#[derive(Debug, Default)]
struct Outcomes {
    /// (allow, other, witness).
    overlaps: Vec<(usize, usize, Witnessed)>,
    modifies: Vec<(usize, usize, Witnessed)>,
    /// allow → (covering rules, witness).
    shadowed: BTreeMap<usize, (Vec<usize>, Witnessed)>,
    /// (from, to, witness).
    edges: Vec<(usize, usize, Witnessed)>,
    unknown: Vec<(Job, String)>,
    unencodable: BTreeMap<usize, String>,
    unanswered: usize,
}

impl Outcomes {
    fn record(&mut self, job: &Job, answer: Answer, dead: &mut BTreeSet<usize>) {
        match (job, answer) {
            (_, Answer::Unknown(r)) => self.unknown.push((job.clone(), r)),
            (_, Answer::Unencodable(failed)) => {
                for (item, error) in failed {
                    self.unencodable(item, error);
                }
            }
            (Job::Dead(i), Answer::Unsat) => {
                dead.insert(*i);
            }
            (Job::Overlap { allow, other }, Answer::Sat(Some(w))) => {
                self.overlaps.push((*allow, *other, w));
            }
            (Job::Modify { a, b }, Answer::Sat(Some(w))) => self.modifies.push((*a, *b, w)),
            (Job::Shadow { allow, .. }, Answer::Covered { by, witness }) => {
                self.shadowed.insert(*allow, (by, witness));
            }
            (Job::Edge { from, to, .. }, Answer::Sat(Some(w))) => {
                self.edges.push((*from, *to, w));
            }
            _ => {}
        }
    }
}

impl Outcomes {
    /// Records that `item` cannot be encoded; of several reasons, the
    /// smallest is kept (whatever order the jobs ran in).
    fn unencodable(&mut self, item: usize, error: String) {
        match self.unencodable.entry(item) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(error);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if error < *o.get() {
                    o.insert(error);
                }
            }
        }
    }
}

fn name(items: &[Item<'_>], i: usize) -> String {
    items.get(i).map_or_else(String::new, |it| it.id.clone())
}

fn item_label(it: &Item<'_>, message: impl Into<String>) -> crate::diagnostic::Label {
    label(it.origin, it.policy_name, it.name, message)
}

/// A finding with a witness whose decisions are still to be filled in by
/// replay: what it claims, to check against the evaluator.
#[derive(Debug, Clone)]
enum Claim {
    /// `allow` matches, `other` matches, the decision is not allow.
    Overridden { allow: String, others: Vec<String> },
    /// Both modify.
    Modify { a: String, b: String },
    /// `from` matches `original` without a deny; `to` matches the approval
    /// request, which is denied or needs approval.
    Deadlock {
        from: String,
        to: String,
        original: Json,
    },
}

/// A finding on its way out, with what its witness must show.
#[derive(Debug)]
struct Pending {
    finding: Finding,
    claim: Option<Claim>,
}

impl Pending {
    fn plain(finding: Finding) -> Pending {
        Pending {
            finding,
            claim: None,
        }
    }
}

fn with_witness(mut f: Finding, witness: &Witnessed, claim: Claim, out: &mut Vec<Pending>) {
    match witness {
        Ok(w) => {
            f.witness = Some(w.request.clone());
            out.push(Pending {
                finding: f,
                claim: Some(claim),
            });
        }
        Err(e) => out.push(Pending::plain(finding::mismatch(
            &f,
            &format!("no witness could be read from the model: {e}"),
        ))),
    }
}

fn build_findings(
    items: &[Item<'_>],
    out: &Outcomes,
    dead: &BTreeSet<usize>,
    findings: &mut Vec<Pending>,
) {
    for &i in dead {
        let Some(it) = items.get(i) else { continue };
        findings.push(Pending::plain(
            Finding::new(
                crate::diagnostic::Code::ConflictDeadRule,
                format!("{} `{}` matches no valid request", it.what(), it.id),
            )
            .with_label(item_label(it, "its condition can never hold"))
            .with_help(format!(
                "the condition contradicts itself (for example `x > 5 and x < 3`, a value outside \
                 every `in` list it is also tested against, or an optional field read where \
                 `not has(...)` says it is absent); fix it or remove the {}",
                it.what()
            )),
        ));
    }

    for (&a, (by, witness)) in &out.shadowed {
        if dead.contains(&a) {
            continue;
        }
        let Some(it) = items.get(a) else { continue };
        let names: Vec<String> = by
            .iter()
            .map(|d| format!("`{}`", name(items, *d)))
            .collect();
        let mut f = Finding::new(
            crate::diagnostic::Code::ConflictShadowed,
            format!(
                "allow `{}` never takes effect: every request it matches is overridden by {}",
                it.id,
                names.join(", ")
            ),
        )
        .with_label(item_label(it, "this allow never decides anything"))
        .with_help(
            "a deny or require_approval outranks an allow, and these rules match every request \
             the allow matches; remove the allow, or narrow the rules that override it \
             (the witness is one of its requests)",
        );
        for d in by {
            if let Some(o) = items.get(*d) {
                f = f.with_label(item_label(
                    o,
                    format!("{} that covers it", o.kind().as_str()),
                ));
            }
        }
        let claim = Claim::Overridden {
            allow: it.id.clone(),
            others: by.iter().map(|d| name(items, *d)).collect(),
        };
        with_witness(f, witness, claim, findings);
    }

    for (a, d, witness) in &out.overlaps {
        if out.shadowed.contains_key(a) || dead.contains(a) {
            continue;
        }
        let (Some(ia), Some(id)) = (items.get(*a), items.get(*d)) else {
            continue;
        };
        let kind = id.kind().as_str();
        let f = Finding::new(
            crate::diagnostic::Code::ConflictOverriddenAllow,
            format!(
                "allow `{}` never takes effect on the requests it shares with {kind} `{}`",
                ia.id, id.id
            ),
        )
        .with_label(item_label(ia, "this allow is overridden…"))
        .with_label(item_label(id, format!("…by this {kind}")))
        .with_help(format!(
            "on a request both match, the most severe decision wins ({kind} over allow); if that \
             is intended, narrow the allow so that it leaves those requests out, otherwise narrow \
             the {kind} (the witness is a request both match)"
        ));
        let claim = Claim::Overridden {
            allow: ia.id.clone(),
            others: vec![id.id.clone()],
        };
        with_witness(f, witness, claim, findings);
    }

    for (a, b, witness) in &out.modifies {
        let (Some(ia), Some(ib)) = (items.get(*a), items.get(*b)) else {
            continue;
        };
        let (
            Effect::Modify {
                field, value: va, ..
            },
            Effect::Modify { value: vb, .. },
        ) = (ia.effect, ib.effect)
        else {
            continue;
        };
        let f = Finding::new(
            crate::diagnostic::Code::ConflictModify,
            format!(
                "`{}` and `{}` both modify `{field}`, with different values, on the same requests",
                ia.id, ib.id
            ),
        )
        .with_label(item_label(
            ia,
            format!("sets `{field}` to {}", describe(va)),
        ))
        .with_label(item_label(
            ib,
            format!("sets `{field}` to {}", describe(vb)),
        ))
        .with_help(
            "both modifications apply, one after the other in policy-name order, so the result \
             depends on how policies are named; give them the same value, or make their \
             conditions exclusive (the witness is a request both modify)",
        );
        let claim = Claim::Modify {
            a: ia.id.clone(),
            b: ib.id.clone(),
        };
        with_witness(f, witness, claim, findings);
    }

    deadlock_findings(items, out, findings);

    for (job, reason) in &out.unknown {
        let (what, involved) = match job {
            Job::Dead(i) => (
                format!("whether `{}` can match any request", name(items, *i)),
                vec![*i],
            ),
            Job::Overlap { allow: a, other: b } | Job::Modify { a, b } => (
                format!(
                    "whether `{}` and `{}` can match one request",
                    name(items, *a),
                    name(items, *b)
                ),
                vec![*a, *b],
            ),
            Job::Shadow { allow, by } => {
                let mut v = vec![*allow];
                v.extend(by.iter().copied());
                (
                    format!(
                        "whether every request `{}` matches is overridden",
                        name(items, *allow)
                    ),
                    v,
                )
            }
            Job::Edge { from, to, .. } => (
                format!(
                    "whether approving `{}` runs into `{}`",
                    name(items, *from),
                    name(items, *to)
                ),
                vec![*from, *to],
            ),
        };
        let mut f = Finding::new(
            crate::diagnostic::Code::AnalyzeUnknown,
            format!("the solver could not decide {what}: {reason}"),
        )
        .with_help(
            "this question is left open, so a conflict may hide here; simplify the conditions \
             (a regex next to negated string tests is the usual cause) or raise the solver timeout",
        );
        for i in involved {
            if let Some(it) = items.get(i) {
                f = f.with_label(item_label(it, "involved"));
            }
        }
        findings.push(Pending::plain(f));
    }

    for (i, error) in &out.unencodable {
        let Some(it) = items.get(*i) else { continue };
        findings.push(Pending::plain(
            Finding::new(
                crate::diagnostic::Code::AnalyzeUnencodable,
                format!(
                    "{} `{}` is left out of the conflict analysis: {error}",
                    it.what(),
                    it.id
                ),
            )
            .with_label(item_label(it, "not analysed"))
            .with_help(
                "conflicts involving it are not looked for; rewrite the condition within what the \
                 solver handles (characters up to U+2FFFF, regexes of moderate size)",
            ),
        ));
    }
    if out.unanswered > 0 {
        findings.push(Pending::plain(
            Finding::new(
                crate::diagnostic::Code::AnalyzeInternal,
                format!(
                    "internal error: {} solver question(s) got no answer",
                    out.unanswered
                ),
            )
            .with_help("this is a bug in sluice's analysis — please report it with the policy set"),
        ));
    }
}

fn deadlock_findings(items: &[Item<'_>], out: &Outcomes, findings: &mut Vec<Pending>) {
    let is_deny = |i: usize| {
        items
            .get(i)
            .is_some_and(|it| it.kind() == DecisionKind::Deny)
    };
    let edges: Vec<(usize, usize, bool)> = out
        .edges
        .iter()
        .map(|(f, t, _)| (*f, *t, is_deny(*t)))
        .collect();
    let witness_of = |from: usize, to: usize| {
        out.edges
            .iter()
            .find(|(f, t, _)| *f == from && *t == to)
            .map(|(_, _, w)| w.clone())
    };
    let via = |i: usize| {
        items
            .get(i)
            .and_then(|it| via_of(it.effect))
            .unwrap_or_default()
            .to_string()
    };
    for d in graph::deadlocks(&edges) {
        match d {
            Deadlock::Blocked {
                approver,
                deniers,
                approvers,
            } => {
                let Some(it) = items.get(approver) else {
                    continue;
                };
                let tool = via(approver);
                let names = |v: &[usize]| {
                    v.iter()
                        .map(|d| format!("`{}`", name(items, *d)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let what = match (deniers.is_empty(), approvers.is_empty()) {
                    (false, true) => format!("{} denies `{tool}`", names(&deniers)),
                    (true, false) => {
                        format!("`{tool}` itself needs approval ({})", names(&approvers))
                    }
                    _ => format!(
                        "{} denies `{tool}` and {} makes it wait for approval",
                        names(&deniers),
                        names(&approvers)
                    ),
                };
                let mut f = Finding::new(
                    crate::diagnostic::Code::ConflictApprovalDeadlock,
                    format!(
                        "approval deadlock: `{}` needs approval via `{tool}`, but {what} for the \
                         same requests",
                        it.id
                    ),
                )
                .with_label(item_label(it, format!("asks for approval via `{tool}`")))
                .with_help(format!(
                    "the approval cannot be asked for, so the request never goes through; keep \
                     `{tool}` free of denials and approvals (for example `and tool != \"{tool}\"` \
                     in those rules), or route the approval through another tool (the witness is \
                     the approval request)"
                ));
                for d in &deniers {
                    if let Some(o) = items.get(*d) {
                        f = f.with_label(item_label(o, format!("denies `{tool}`")));
                    }
                }
                for a in &approvers {
                    if let Some(o) = items.get(*a) {
                        f = f
                            .with_label(item_label(o, format!("makes `{tool}` wait for approval")));
                    }
                }
                let Some(first) = deniers.first().or(approvers.first()) else {
                    continue;
                };
                let Some(w) = witness_of(approver, *first) else {
                    continue;
                };
                let original = w.as_ref().ok().and_then(|w| w.original.clone());
                let claim = Claim::Deadlock {
                    from: it.id.clone(),
                    to: name(items, *first),
                    original: original.unwrap_or(Json::Null),
                };
                with_witness(f, &w, claim, findings);
            }
            Deadlock::Cycle(cycle) => {
                let Some(&start) = cycle.first() else {
                    continue;
                };
                let mut chain = Vec::new();
                for &c in &cycle {
                    chain.push(format!("`{}` → via `{}`", name(items, c), via(c)));
                }
                chain.push(format!("`{}`", name(items, start)));
                let mut f = Finding::new(
                    crate::diagnostic::Code::ConflictApprovalDeadlock,
                    format!(
                        "approval deadlock: {} (each approval request itself needs an approval \
                         that can only be asked for through this cycle)",
                        chain.join(" → ")
                    ),
                )
                .with_help(
                    "no request caught by these rules can ever be approved; exempt the approval \
                     tools from these rules, for example with `and not tool starts_with \
                     \"approvals.\"` (the witness is the first approval request of the cycle)",
                );
                for &c in &cycle {
                    if let Some(it) = items.get(c) {
                        f = f
                            .with_label(item_label(it, format!("needs approval via `{}`", via(c))));
                    }
                }
                let second = cycle.get(1).copied().unwrap_or(start);
                let Some(w) = witness_of(start, second) else {
                    continue;
                };
                let original = w.as_ref().ok().and_then(|w| w.original.clone());
                let claim = Claim::Deadlock {
                    from: name(items, start),
                    to: name(items, second),
                    original: original.unwrap_or(Json::Null),
                };
                with_witness(f, &w, claim, findings);
            }
        }
    }
}

/// A modification's value, as written.
fn describe(v: &ModifyValue) -> String {
    match v {
        ModifyValue::Literal(Literal::Int(i)) => i.to_string(),
        ModifyValue::Literal(Literal::Bool(b)) => b.to_string(),
        ModifyValue::Literal(Literal::Str(s)) => format!("{s:?}"),
        ModifyValue::Redact { field } => format!("`redact({field})`"),
        ModifyValue::RedactPattern { field, pattern } => {
            format!("`redact({field}, {pattern:?})`")
        }
        ModifyValue::Truncate { field, len } => format!("`truncate({field}, {len})`"),
        ModifyValue::Lowercase { field } => format!("`lowercase({field})`"),
    }
}

/// Replays every witness and fills in the decisions; a witness that does not
/// do what its finding claims turns the finding into a mismatch.
fn verify(pending: Vec<Pending>, replay: &Replay) -> Vec<Finding> {
    let mut out = Vec::with_capacity(pending.len());
    for Pending { mut finding, claim } in pending {
        let (Some(claim), Some(w)) = (claim, finding.witness.clone()) else {
            out.push(finding);
            continue;
        };
        let run = match replay.run(&w) {
            Ok(r) => r,
            Err(e) => {
                out.push(finding::mismatch(&finding, &e));
                continue;
            }
        };
        let ids: Vec<&str> = match &claim {
            Claim::Overridden { allow, others } => std::iter::once(allow.as_str())
                .chain(others.iter().map(String::as_str))
                .collect(),
            Claim::Modify { a, b } => vec![a, b],
            Claim::Deadlock { to, .. } => vec![to],
        };
        finding.witness_decisions = Some(run.decisions(ids));
        match check_claim(&claim, &run, replay) {
            Some(why) => out.push(finding::mismatch(&finding, &why)),
            None => out.push(finding),
        }
    }
    out
}

/// What is wrong with a replay, if anything.
fn check_claim(claim: &Claim, run: &Run, replay: &Replay) -> Option<String> {
    match claim {
        Claim::Overridden { allow, others } => {
            if !run.matches(allow) {
                return Some(format!("`{allow}` does not match it"));
            }
            if run.decision == DecisionKind::Allow {
                return Some("the evaluator allows it".into());
            }
            if !others.iter().any(|o| run.matches(o)) {
                return Some(format!("none of {} matches it", others.join(", ")));
            }
            None
        }
        Claim::Modify { a, b } => [a, b]
            .into_iter()
            .find(|x| !run.matches(x))
            .map(|x| format!("`{x}` does not match it")),
        Claim::Deadlock { from, to, original } => {
            if !run.matches(to) {
                return Some(format!("`{to}` does not match the approval request"));
            }
            if !matches!(
                run.decision,
                DecisionKind::Deny | DecisionKind::RequireApproval
            ) {
                return Some("the approval request goes through".into());
            }
            match replay.run(original) {
                Ok(o) if !o.matches(from) => {
                    Some(format!("`{from}` does not match the original request"))
                }
                Ok(o) if o.decision == DecisionKind::Deny => {
                    Some("the original request is denied outright".into())
                }
                Ok(_) => None,
                Err(e) => Some(format!("the original request: {e}")),
            }
        }
    }
}
