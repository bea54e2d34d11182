//! The approval graph (petgraph): which `require_approval … via "tool"`
//! rules wait on which others.
//!
//! A rule `R` that requires approval via tool `T` has an edge to every rule
//! `S` (a `deny`, or a `require_approval … via`) that matches the approval
//! request — the request `R` stopped, with `tool` replaced by `T` — for some
//! request that `R` stops and nothing denies outright. The solver confirms
//! each edge; this module only reads the confirmed edges:
//! - an edge into a `deny` means `R` can never be approved;
//! - a cycle (a strongly connected component with more than one rule, or a
//!   rule with an edge to itself) means the approvals wait on each other.
//!
//! Pure: no solver, no I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use petgraph::graphmap::DiGraphMap;

/// The approval graph; a fixed hasher keeps iteration deterministic.
type Graph = DiGraphMap<usize, (), BuildHasherDefault<DefaultHasher>>;

/// A deadlock found in the confirmed edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deadlock {
    /// `approver`'s approval tool is denied by `deniers` (edge order).
    Denied {
        approver: usize,
        deniers: Vec<usize>,
    },
    /// A cycle, in order: each waits on the next, the last on the first.
    Cycle(Vec<usize>),
}

/// Deadlocks among confirmed `edges` (`from`, `to`, `to` is a deny), in a
/// deterministic order: denied approvers by rule, then cycles by their
/// smallest rule.
pub fn deadlocks(edges: &[(usize, usize, bool)]) -> Vec<Deadlock> {
    let mut out = Vec::new();
    let mut denied: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut graph = Graph::default();
    for (from, to, deny) in edges {
        if *deny {
            let v = denied.entry(*from).or_default();
            if !v.contains(to) {
                v.push(*to);
            }
        } else {
            graph.add_edge(*from, *to, ());
        }
    }
    for (approver, deniers) in denied {
        out.push(Deadlock::Denied { approver, deniers });
    }
    let mut cycles = Vec::new();
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let members: BTreeSet<usize> = scc.iter().copied().collect();
        let Some(&start) = members.first() else {
            continue;
        };
        if members.len() == 1 && !graph.contains_edge(start, start) {
            continue;
        }
        if let Some(cycle) = cycle_through(&graph, &members, start) {
            cycles.push(cycle);
        }
    }
    cycles.sort();
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
            if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(m) {
                e.insert(n);
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
    fn self_loop_and_cycle_and_denied() {
        let d = deadlocks(&[(1, 1, false), (2, 3, false), (3, 2, false), (4, 9, true)]);
        assert_eq!(
            d,
            vec![
                Deadlock::Denied {
                    approver: 4,
                    deniers: vec![9]
                },
                Deadlock::Cycle(vec![1]),
                Deadlock::Cycle(vec![2, 3]),
            ]
        );
    }

    #[test]
    fn chain_is_not_a_cycle() {
        assert!(deadlocks(&[(1, 2, false), (2, 3, false)]).is_empty());
    }
}
