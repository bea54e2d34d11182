//! From answers to findings: the solver's answers gathered by kind
//! ([`Outcomes`]), then one finding per conflict, unknown question,
//! unencodable rule and approval deadlock, each with labels on every rule
//! involved and the claim its witness must meet (`witness` replays them).
//! Nothing here asks the solver.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::graph::{self, Deadlock};
use super::plan::{Item, Job, via_of};
use super::run::{Answer, Witnessed};
use super::witness::{Claim, Pending, label, with_witness};
use crate::diagnostic::Finding;
use crate::model::ir::{DecisionKind, Effect, Literal, ModifyValue};

#[derive(Debug, Default)]
pub(super) struct Outcomes {
    /// (allow, other, witness).
    pub(super) overlaps: Vec<(usize, usize, Witnessed)>,
    pub(super) modifies: Vec<(usize, usize, Witnessed)>,
    /// allow → (covering rules, witness).
    pub(super) shadowed: BTreeMap<usize, (Vec<usize>, Witnessed)>,
    /// (from, to, witness).
    pub(super) edges: Vec<(usize, usize, Witnessed)>,
    /// (from, witness): approval requests no rule matches, under a default
    /// of `deny`.
    pub(super) unruled: Vec<(usize, Witnessed)>,
    pub(super) unknown: Vec<(Job, String)>,
    pub(super) unencodable: BTreeMap<usize, String>,
    pub(super) unanswered: usize,
}

impl Outcomes {
    pub(super) fn record(&mut self, job: &Job, answer: Answer, dead: &mut BTreeSet<usize>) {
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
            (Job::Unruled { from, .. }, Answer::Sat(Some(w))) => {
                self.unruled.push((*from, w));
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

pub(super) fn build_findings(
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
                 `not has(...)` says it is absent{}); fix it or remove the {}",
                if it.limit {
                    "; a limit applies only when every field of its `by` is present"
                } else {
                    ""
                },
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
        .with_label(item_label(ia, sets(ia, field, va)))
        .with_label(item_label(ib, sets(ib, field, vb)))
        .with_help(
            "both modifications apply, one after the other in policy-name order, so the result \
             depends on how policies are named; give them the same value, or make their \
             conditions exclusive (the witness is a request both modify)",
        );
        let claim = Claim::Modify {
            a: ia.id.clone(),
            b: ib.id.clone(),
            exceeded: ia.limit || ib.limit,
        };
        with_witness(f, witness, claim, findings);
    }

    deadlock_findings(items, out, findings);
    unruled_findings(items, out, findings);

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
            Job::Unruled { from, .. } => (
                format!(
                    "whether approving `{}` sends a request no rule allows",
                    name(items, *from)
                ),
                vec![*from],
            ),
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
                 analysis handles (regexes of moderate size)",
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
/// What a modification does, for its label (a limit's, once over its
/// count).
fn sets(it: &Item<'_>, field: &str, v: &ModifyValue) -> String {
    if it.limit {
        format!("sets `{field}` to {} once over its limit", describe(v))
    } else {
        format!("sets `{field}` to {}", describe(v))
    }
}

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

/// Approval requests that no rule matches, which the project default
/// (`deny`) denies: one deadlock per approval rule.
fn unruled_findings(items: &[Item<'_>], out: &Outcomes, findings: &mut Vec<Pending>) {
    for (from, w) in &out.unruled {
        let Some(it) = items.get(*from) else { continue };
        let tool = via_of(it.effect).unwrap_or_default();
        let f = Finding::new(
            crate::diagnostic::Code::ConflictApprovalDeadlock,
            format!(
                "approval deadlock: `{}` needs approval via `{tool}`, but no rule allows `{tool}` \
                 for the same requests, so the project default (`deny`) denies it",
                it.id
            ),
        )
        .with_label(item_label(it, format!("asks for approval via `{tool}`")))
        .with_help(format!(
            "the approval cannot be asked for, so the request never goes through; add a rule \
             that allows `{tool}` (for example `when tool == \"{tool}\"` then `allow`) (the \
             witness is the approval request)"
        ));
        let original = w.as_ref().ok().and_then(|w| w.original.clone());
        let claim = Claim::Unruled {
            from: it.id.clone(),
            original: original.unwrap_or(Json::Null),
        };
        with_witness(f, w, claim, findings);
    }
}
