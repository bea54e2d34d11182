//! The conflict analysis of a change (`sluice check --base`): only what can
//! differ between two revisions of a set is asked of the solver.
//!
//! A rule or limit *changed* when its `policy.rule` name exists at one
//! revision only, or when its compiled condition, its effect, whether it is a
//! rule or a limit, or its file differ (the file is part of a finding's
//! identity; layout and comments are not part of the IR). Every finding of
//! the analysis is a function of a few rules, its *support*:
//!
//! - `dead_rule`: the rule itself;
//! - an `allow`'s findings (`shadowed`, `overridden_allow`): the allow and
//!   every deny or approval rule that can overlap it (its cover job);
//! - `modify`: the two modifications;
//! - `approval_deadlock`: the approval graph is split into components (by
//!   name, over the edges of both revisions); a component's findings depend
//!   on its edges, and an edge on its two rules and on the denies that guard
//!   it;
//! - `unknown`: the rules of the question left open; `unencodable`: the rule.
//!
//! A finding whose support holds no changed rule is the same finding at both
//! revisions (same answers, same names, same files, same messages), so the
//! pull-request comparison, which keeps what the head has and the base has
//! not, drops it anyway. Only jobs whose support holds a changed rule run,
//! at both revisions, and the comparison of their findings gives exactly
//! what comparing two full analyses gives.
//!
//! When the encoding itself can differ — another schema, another default
//! decision (the witnesses' replay), or a field represented another way —
//! both revisions are analysed in full.
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::unionfind::UnionFind;

use super::diff::{DiffSide, decision_diff};
use super::plan::{Item, Job};
use super::{Answered, Keep, Options, Report, Side};
use crate::diagnostic::Finding;
use crate::eval::Evaluator;
use crate::model::ir::{DecisionKind, PolicySet};
use crate::model::schema::Schema;

/// One revision of a policy set that type-checks.
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    pub set: &'a PolicySet,
    pub schema: &'a Schema,
    pub default: DecisionKind,
    /// An evaluator of `set` already built (the pull-request check builds
    /// one per revision for its replay of traces): witnesses are replayed
    /// on it rather than on one the analysis would build. `None`: the
    /// analysis builds one when a witness needs it, once per revision.
    pub evaluator: Option<&'a Evaluator>,
}

/// The analysis of a change.
#[derive(Debug, Clone)]
pub struct ChangeReport {
    /// The base revision's findings whose support holds a changed rule
    /// (every finding when `incremental` is false).
    pub base: Report,
    /// The same for the head revision.
    pub head: Report,
    /// Every finding of the head revision, when the analysis is incremental
    /// (otherwise `head` has them all): the pull-request check reports every
    /// error of the head. Planned once with `head`.
    pub head_full: Option<Report>,
    /// The rules and limits that changed, as `policy.rule`, sorted.
    pub changed: Vec<String>,
    /// False when both revisions were analysed in full (the schema, the
    /// default decision or the encoding of a field differs).
    pub incremental: bool,
    /// What the change does to decisions; `None` when the two revisions
    /// have different schemas (no request is valid at both by
    /// construction, so none is compared).
    pub decisions: Option<DecisionDiff>,
}

/// What a change does to decisions (`diff`): `change::decision` and
/// `change::widened` findings, each witness replayed at both revisions.
#[derive(Debug, Clone)]
pub struct DecisionDiff {
    pub findings: Vec<Finding>,
    /// Solver questions asked.
    pub questions: u64,
    pub seconds: f64,
}

/// Analyses what can differ between `base` and `head`: comparing
/// `report.head` with `report.base` finding by finding gives what comparing
/// two full analyses gives.
pub fn analyze_change<'a>(base: Revision<'a>, head: Revision<'a>, opts: &Options) -> ChangeReport {
    let b = Side::plan(base.set, base.schema, base.default).with_evaluator(base.evaluator);
    let h = Side::plan(head.set, head.schema, head.default).with_evaluator(head.evaluator);
    let changed = changed(&b.items, &h.items);
    let incremental =
        base.schema == head.schema && base.default == head.default && b.plan.same_encoding(&h.plan);
    let (mut bs, mut hs) = if incremental {
        let (kb, kh) = keep(&b, &h, &changed);
        (b.solve(Some(&kb), opts), h.solve(Some(&kh), opts))
    } else {
        (b.solve(None, opts), h.solve(None, opts))
    };
    let head_full = incremental.then(|| h.report(h.solve(None, opts)));
    if incremental {
        settle_unencodable((&b, &mut bs), (&h, &mut hs), &changed);
    }
    let decisions = (opts.decisions && base.schema == head.schema).then(|| {
        let (findings, stats) = decision_diff(
            &DiffSide {
                set: base.set,
                items: &b.items,
                default: base.default,
                replay: b.replay(),
            },
            &DiffSide {
                set: head.set,
                items: &h.items,
                default: head.default,
                replay: h.replay(),
            },
            head.schema,
            &changed,
            opts.timeout_ms,
        );
        DecisionDiff {
            findings,
            questions: stats.questions,
            seconds: stats.seconds,
        }
    });
    ChangeReport {
        decisions,
        base: b.report(bs),
        head: h.report(hs),
        head_full,
        changed: changed.into_iter().collect(),
        incremental,
    }
}

/// What a rule or limit is to the analysis: its name, condition, effect and
/// file.
fn same(a: &Item<'_>, b: &Item<'_>) -> bool {
    a.limit == b.limit && a.when == b.when && a.effect == b.effect && a.origin.file == b.origin.file
}

/// The `policy.rule` names that changed between the two revisions.
fn changed(base: &[Item<'_>], head: &[Item<'_>]) -> BTreeSet<String> {
    let by_id = |items: &[Item<'_>]| -> HashMap<String, usize> {
        items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.id.clone(), i))
            .collect()
    };
    let (bi, hi) = (by_id(base), by_id(head));
    let mut out = BTreeSet::new();
    for (id, &h) in &hi {
        let unchanged = bi
            .get(id)
            .and_then(|&b| base.get(b))
            .zip(head.get(h))
            .is_some_and(|(b, h)| same(b, h));
        if !unchanged {
            out.insert(id.clone());
        }
    }
    out.extend(bi.into_keys().filter(|id| !hi.contains_key(id)));
    out
}

/// The jobs of each revision whose support holds a changed rule.
fn keep<'s>(b: &Side<'s>, h: &Side<'s>, changed: &BTreeSet<String>) -> (Keep, Keep) {
    let hit = |side: &Side<'_>, i: &usize| {
        side.items
            .get(*i)
            .is_some_and(|it| changed.contains(&it.id))
    };
    fn id<'a>(side: &'a Side<'_>, i: usize) -> &'a str {
        side.items.get(i).map_or("", |it| it.id.as_str())
    }

    // Allows whose findings may differ: the allow, or a rule that can
    // override it, changed — at either revision.
    let mut allows: BTreeSet<&str> = BTreeSet::new();
    for side in [b, h] {
        for (i, it) in side.items.iter().enumerate() {
            if !it.limit && it.kind() == DecisionKind::Allow && hit(side, &i) {
                allows.insert(it.id.as_str());
            }
        }
        for job in &side.jobs {
            if let Job::Shadow { allow, by } = job
                && (hit(side, allow) || by.iter().any(|d| hit(side, d)))
            {
                allows.insert(id(side, *allow));
            }
        }
    }

    // Components of the approval graph, by name over both revisions; a
    // component is redone when one of its edges involves a changed rule.
    let mut nodes: HashMap<&str, usize> = HashMap::new();
    for side in [b, h] {
        for job in &side.jobs {
            if let Job::Edge { from, to, .. } = job {
                for i in [*from, *to] {
                    let n = nodes.len();
                    nodes.entry(id(side, i)).or_insert(n);
                }
            }
        }
    }
    let mut components: UnionFind<usize> = UnionFind::new(nodes.len());
    let node = |side: &Side<'_>, i: usize| nodes.get(id(side, i)).copied();
    for side in [b, h] {
        for job in &side.jobs {
            if let Job::Edge { from, to, .. } = job
                && let (Some(f), Some(t)) = (node(side, *from), node(side, *to))
            {
                components.union(f, t);
            }
        }
    }
    let mut redone: BTreeSet<usize> = BTreeSet::new();
    for side in [b, h] {
        for job in &side.jobs {
            if let Job::Edge { from, to, guard } = job
                && (hit(side, from) || hit(side, to) || guard.iter().any(|g| hit(side, g)))
                && let Some(f) = node(side, *from)
            {
                redone.insert(components.find(f));
            }
        }
    }

    let keep_side = |side: &Side<'_>| Keep {
        jobs: side
            .jobs
            .iter()
            .map(|job| match job {
                Job::Dead(i) => hit(side, i),
                Job::Overlap { allow, .. } | Job::Shadow { allow, .. } => {
                    allows.contains(id(side, *allow))
                }
                Job::Modify { a, b } => hit(side, a) || hit(side, b),
                Job::Edge { from, .. } => {
                    node(side, *from).is_some_and(|f| redone.contains(&components.find(f)))
                }
                Job::Unruled { from, rules, guard } => {
                    hit(side, from) || rules.iter().chain(guard).any(|r| hit(side, r))
                }
            })
            .collect(),
        dead: side.dead.iter().filter(|i| hit(side, i)).copied().collect(),
    };
    (keep_side(b), keep_side(h))
}

/// An unchanged rule encodes the same way at both revisions (the encoding
/// of every field is the same), and a full analysis reports it as
/// unencodable at a revision when any job of that revision involves it. A
/// job that runs finds out; this spreads what it found to the other
/// revision, and to the jobs left out.
fn settle_unencodable<'s>(
    base: (&Side<'s>, &mut Answered),
    head: (&Side<'s>, &mut Answered),
    changed: &BTreeSet<String>,
) {
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for (side, solved) in [(base.0, &*base.1), (head.0, &*head.1)] {
        for (i, e) in &solved.out.unencodable {
            let Some(it) = side.items.get(*i) else {
                continue;
            };
            if changed.contains(&it.id) {
                continue;
            }
            let slot = errors.entry(it.id.clone()).or_insert_with(|| e.clone());
            if e < slot {
                *slot = e.clone();
            }
        }
    }
    if errors.is_empty() {
        return;
    }
    for (side, solved) in [base, head] {
        let involved = side.involved();
        for (i, it) in side.items.iter().enumerate() {
            let Some(e) = errors.get(&it.id) else {
                continue;
            };
            if involved.contains(&i) {
                solved.out.unencodable.insert(i, e.clone());
            } else {
                solved.out.unencodable.remove(&i);
            }
        }
    }
}

impl Side<'_> {
    /// The rules and limits some job involves.
    fn involved(&self) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        for job in &self.jobs {
            match job {
                Job::Dead(i) => {
                    out.insert(*i);
                }
                Job::Overlap { allow: a, other: b } | Job::Modify { a, b } => {
                    out.extend([*a, *b]);
                }
                Job::Shadow { allow, by } => {
                    out.insert(*allow);
                    out.extend(by.iter().copied());
                }
                Job::Edge { from, to, guard } => {
                    out.extend([*from, *to]);
                    out.extend(guard.iter().copied());
                }
                Job::Unruled { from, rules, guard } => {
                    out.insert(*from);
                    out.extend(rules.iter().chain(guard).copied());
                }
            }
        }
        out
    }
}
