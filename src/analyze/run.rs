//! Running the jobs: plain worker threads, each with its own encoder and
//! Z3 solver (Z3 terms stay on the thread that made them), taking jobs
//! until none is left; every answer is plain data (a witness request, not a
//! model). Nothing here decides what an answer means as a finding.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value as Json;
use z3::ast::Bool;

use super::lang;
use super::plan::{Item, Job, via_of};
use super::probe::step;
use super::smt::{EncodeError, Encoded, Encoder, Needs, Override, Plan};
use super::solver::{Cover, Session, Verdict};
use crate::model::ir::{Effect, ModifyValue};

/// Below this many queries, one thread is faster than two (a solver's first
/// query costs about 10 ms).
pub(super) const PARALLEL_FROM: usize = 64;

/// What every worker reads.
pub(super) struct Shared<'a> {
    pub(super) items: &'a [Item<'a>],
    pub(super) plan: &'a Plan,
    /// The position of `tool` in the plan.
    pub(super) tool: Option<usize>,
    pub(super) timeout_ms: u32,
}

/// A witness: the request, and for an approval edge the request that
/// needed the approval.
#[derive(Debug, Clone)]
pub(super) struct Witness {
    pub(super) request: Json,
    pub(super) original: Option<Json>,
}

/// A witness as answers carry it (boxed: answers are moved around a lot).
pub(super) type Witnessed = Result<Box<Witness>, String>;

/// A job's answer, made of plain data (models stay on their thread).
#[derive(Debug, Clone)]
pub(super) enum Answer {
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
pub(super) fn run_all(
    shared: &Shared<'_>,
    jobs: &[&Job],
    threads: usize,
) -> (Vec<Option<Answer>>, u64, bool) {
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
        deadline: lang::Deadline::none(),
    };
    let mut local = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(i) else { break };
        w.deadline = w.session.begin();
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
    /// The deadline of the job under way.
    deadline: lang::Deadline,
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
                    let e = self.encoder.encode(&item.when, *over);
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
            deadline,
            ..
        } = self;
        let deadline = *deadline;
        let mut strings = BTreeMap::new();
        let mut refine =
            |m: &z3::Model| step(encoder.refine(m, &needs, memo, deadline), &mut strings);
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
                        deadline,
                        ..
                    } = &mut *self;
                    let deadline = *deadline;
                    let mut strings = BTreeMap::new();
                    let mut refine = |m: &z3::Model| {
                        step(encoder.refine(m, &needs, memo, deadline), &mut strings)
                    };
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
            Job::Unruled { from, rules, guard } => {
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
                let wanted: Vec<(usize, Option<&Override>)> = std::iter::once((*from, None))
                    .chain(rules.iter().map(|r| (*r, Some(&over))))
                    .chain(guard.iter().map(|g| (*g, None)))
                    .collect();
                let ([ef], rest) = first::<1>(self.encoded_all(&wanted)?)?;
                let mut needs = Needs::default();
                for e in &rest {
                    needs.merge(&e.needs);
                }
                let none: Vec<Bool> = rest.iter().map(|e| e.formula.not()).collect();
                let none_part = Encoded {
                    formula: Bool::and(&none),
                    needs,
                };
                match self.solve(&[&ef, &none_part], &[]) {
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
