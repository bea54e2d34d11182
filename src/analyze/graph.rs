//! The approval graph (petgraph): which `require_approval … via "tool"`
//! rules wait on which others.
//!
//! A rule `R` that requires approval via tool `T` has an edge to every rule
//! `S` — a `deny` or a `require_approval` — that matches the approval
//! request (the request `R` stopped, with `tool` replaced by `T`) for some
//! request that `R` stops and nothing denies outright. The solver confirms
//! each edge; this module only reads the confirmed edges (SPEC §3: the tool
//! that grants approval itself needs approval, or is denied, for the same
//! requests):
//! - rules on a cycle (a strongly connected component with more than one
//!   rule, or a rule with an edge to itself) wait on each other: one
//!   deadlock per cycle, spelled out — the shortest cycle through the
//!   component's first rule, then through the first rule not on a cycle
//!   yet, until every rule of the component is on one;
//! - any other rule with an edge is blocked by the rules its edges reach.
//!
//! Pure: no solver, no I/O.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::BuildHasherDefault;

use petgraph::graphmap::DiGraphMap;

/// The approval graph; a fixed hasher keeps iteration deterministic.
type Graph = DiGraphMap<usize, (), BuildHasherDefault<DefaultHasher>>;

/// A deadlock found in the confirmed edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deadlock {
    /// `approver`'s approval request is denied by `deniers` and needs the
    /// approval of `approvers` (edge order, either may be empty).
    Blocked {
        approver: usize,
        deniers: Vec<usize>,
        approvers: Vec<usize>,
    },
    /// A cycle, in order: each waits on the next, the last on the first.
    Cycle(Vec<usize>),
}

/// Deadlocks among confirmed `edges` (`from`, `to`, `to` is a deny), in a
/// deterministic order: blocked rules by rule, then cycles by their smallest
/// rule.
pub fn deadlocks(edges: &[(usize, usize, bool)]) -> Vec<Deadlock> {
    let mut graph = Graph::default();
    let mut targets: BTreeMap<usize, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (from, to, deny) in edges {
        let (deniers, approvers) = targets.entry(*from).or_default();
        let list = if *deny { deniers } else { approvers };
        if !list.contains(to) {
            list.push(*to);
        }
        if !*deny {
            graph.add_edge(*from, *to, ());
        }
    }
    let mut cycles = Vec::new();
    let mut on_cycle = BTreeSet::new();
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let members: BTreeSet<usize> = scc.iter().copied().collect();
        let Some(&start) = members.first() else {
            continue;
        };
        if members.len() == 1 && !graph.contains_edge(start, start) {
            continue;
        }
        // The shortest cycle through the first rule, then through the first
        // rule no cycle so far passes through, …: every rule of the
        // component is on a cycle that is spelled out (a rule waiting on
        // itself beside a longer cycle is a deadlock of its own).
        let mut covered: BTreeSet<usize> = BTreeSet::new();
        for &m in &members {
            if covered.contains(&m) {
                continue;
            }
            if let Some(cycle) = cycle_through(&graph, &members, m) {
                covered.extend(cycle.iter().copied());
                cycles.push(cycle);
            }
        }
        on_cycle.extend(members);
    }
    cycles.sort();
    let mut out: Vec<Deadlock> = targets
        .into_iter()
        .filter(|(approver, _)| !on_cycle.contains(approver))
        .map(|(approver, (deniers, approvers))| Deadlock::Blocked {
            approver,
            deniers,
            approvers,
        })
        .collect();
    out.extend(cycles.into_iter().map(Deadlock::Cycle));
    out
}

/// The shortest cycle through `start` within `members` (breadth first,
/// successors in ascending order).
fn cycle_through(graph: &Graph, members: &BTreeSet<usize>, start: usize) -> Option<Vec<usize>> {
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<usize> = graph.neighbors(n).collect();
        next.sort_unstable();
        for m in next {
            if !members.contains(&m) {
                continue;
            }
            if m == start {
                let mut path = vec![n];
                let mut cur = n;
                while cur != start {
                    cur = *parent.get(&cur)?;
                    path.push(cur);
                }
                path.reverse();
                return Some(path);
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = parent.entry(m) {
                slot.insert(n);
                queue.push_back(m);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_and_blocked_rules() {
        let d = deadlocks(&[
            (1, 1, false),
            (2, 3, false),
            (3, 2, false),
            (4, 9, true),
            (5, 2, false),
        ]);
        assert_eq!(
            d,
            vec![
                Deadlock::Blocked {
                    approver: 4,
                    deniers: vec![9],
                    approvers: vec![]
                },
                Deadlock::Blocked {
                    approver: 5,
                    deniers: vec![],
                    approvers: vec![2]
                },
                Deadlock::Cycle(vec![1]),
                Deadlock::Cycle(vec![2, 3]),
            ]
        );
    }

    /// A rule waiting on itself inside a larger component is spelled out
    /// too, not hidden behind the component's first cycle.
    #[test]
    fn every_rule_of_a_component_is_on_a_reported_cycle() {
        let d = deadlocks(&[
            (1, 1, false),
            (1, 2, false),
            (2, 1, false),
            (2, 3, false),
            (3, 3, false),
            (3, 2, false),
        ]);
        assert_eq!(
            d,
            vec![
                Deadlock::Cycle(vec![1]),
                Deadlock::Cycle(vec![2, 1]),
                Deadlock::Cycle(vec![3])
            ]
        );
    }

    #[test]
    fn an_approval_of_the_approval_tool_blocks() {
        assert_eq!(
            deadlocks(&[(1, 2, false)]),
            vec![Deadlock::Blocked {
                approver: 1,
                deniers: vec![],
                approvers: vec![2]
            }]
        );
    }
}
