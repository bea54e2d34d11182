//! Planning: the rules and limits of a set as items (with their condition
//! summaries), and every solver job the analysis asks — dead checks, allows
//! against what overrides them, modification pairs, approval edges —
//! paired through the tool index and pruned by the summaries. Nothing here
//! encodes or solves.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::Stats;
use super::index::{RegexFacts, Strs, Summary, ToolIndex, summarize, trivially_sat_with};
use crate::model::ir::{DecisionKind, Effect, Expr, ModifyValue, Origin, PolicySet};
use crate::model::schema::Schema;

/// The field rules are indexed by, and that `via` replaces.
pub(super) const TOOL: &str = "tool";

/// A rule or a limit of the set.
#[derive(Debug)]
pub(super) struct Item<'s> {
    pub(super) policy: usize,
    pub(super) policy_name: &'s str,
    pub(super) name: &'s str,
    /// `policy.rule`.
    pub(super) id: String,
    pub(super) limit: bool,
    /// The condition under which it applies: a limit's `when`, and every
    /// optional field of its `by` present (a limit whose key is missing
    /// does not apply).
    pub(super) when: Cow<'s, Expr>,
    pub(super) effect: &'s Effect,
    pub(super) origin: &'s Origin,
    pub(super) summary: Summary,
}

impl Item<'_> {
    pub(super) fn what(&self) -> &'static str {
        if self.limit { "limit" } else { "rule" }
    }

    pub(super) fn kind(&self) -> DecisionKind {
        self.effect.kind()
    }
}

pub(super) fn items<'s>(set: &'s PolicySet, schema: &Schema) -> Vec<Item<'s>> {
    let mut out = Vec::new();
    for (pi, p) in set.policies.iter().enumerate() {
        let rules = p
            .rules
            .iter()
            .map(|r| (&r.name, Cow::Borrowed(&r.when), &r.effect, &r.origin, false));
        let limits = p.limits.iter().map(|l| {
            let keyed: Vec<Expr> =
                l.by.iter()
                    .filter(|f| schema.get(f).is_some_and(|d| d.optional))
                    .map(|f| Expr::Has(f.clone()))
                    .collect();
            let when = if keyed.is_empty() {
                Cow::Borrowed(&l.when)
            } else {
                Cow::Owned(Expr::And(
                    std::iter::once(l.when.clone()).chain(keyed).collect(),
                ))
            };
            (&l.name, when, &l.exceed, &l.origin, true)
        });
        for (name, when, effect, origin, limit) in rules.chain(limits) {
            let summary = summarize(&when, true, schema);
            out.push(Item {
                policy: pi,
                policy_name: &p.name,
                name,
                id: format!("{}.{}", p.name, name),
                limit,
                when,
                effect,
                origin,
                summary,
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

pub(super) fn via_of(e: &Effect) -> Option<&str> {
    match e {
        Effect::RequireApproval { via: Some(v), .. } => Some(v),
        _ => None,
    }
}

/// One solver task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Job {
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
    /// Under a project default of `deny`: does approving `from` send a
    /// request (via its tool) that none of `rules` matches, for a request
    /// that none of `guard` denies? The default then denies it.
    Unruled {
        from: usize,
        rules: Vec<usize>,
        guard: Vec<usize>,
    },
}

pub(super) fn plan_jobs(
    items: &[Item<'_>],
    schema: &Schema,
    with_tool: bool,
    default_denies: bool,
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
        } else if trivially_sat_with(&it.when, schema, &mut facts) {
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
        // A limit's `exceed modify` too: past its count, it modifies.
        if let Effect::Modify { field, .. } = it.effect
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
                    !it.limit
                        && matches!(
                            it.kind(),
                            DecisionKind::Deny | DecisionKind::RequireApproval
                        )
                })
            })
            .filter(live)
            .collect();
        let target_index = index_of(&targets);
        // Under a default of deny: the rules an approval request may match,
        // by tool (a rule with no tool domain is kept aside: it may match
        // any tool).
        let (rule_index, untooled) = if default_denies {
            let rules: Vec<usize> = (0..items.len())
                .filter(|i| item(*i).is_some_and(|x| !x.limit))
                .filter(live)
                .collect();
            let untooled: Vec<usize> = rules
                .iter()
                .copied()
                .filter(|i| tool_doms.get(*i).is_some_and(Option::is_none))
                .collect();
            (index_of(&rules), untooled)
        } else {
            (ToolIndex::default(), Vec::new())
        };
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
            if default_denies {
                // Every rule that can match the approval request: when none
                // does, the default denies it.
                let mut near = rule_index.admitting(via);
                near.extend(untooled.iter().copied());
                let rules: Vec<usize> = near
                    .into_iter()
                    .filter(|i| {
                        item(*i).is_some_and(|x| {
                            x.summary.strs(TOOL).is_none_or(|d| d.admits(via))
                                && rest.overlaps(&x.summary.without(TOOL), schema)
                        })
                    })
                    .collect();
                jobs.push(Job::Unruled {
                    from: r,
                    rules,
                    guard: guard.clone(),
                });
            }
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
