//! The version graph over `requires` (petgraph): unsatisfied requirements,
//! cycles (spelled out), and policies defined twice.

use std::collections::BTreeMap;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::{Code, Finding, Label};
use crate::parse::ast;
use crate::source::SourceFile;

pub(super) fn check_versions(policies: &[(&SourceFile, &ast::Policy)]) -> Vec<Finding> {
    let mut findings = Vec::new();

    // Duplicates: the first file (in path order) keeps the name.
    let mut sorted: Vec<&(&SourceFile, &ast::Policy)> = policies.iter().collect();
    sorted.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut by_name: BTreeMap<&str, (&SourceFile, &ast::Policy)> = BTreeMap::new();
    for &&(file, policy) in &sorted {
        match by_name.get(policy.name.node.as_str()) {
            Some((first_file, first)) => findings.push(
                Finding::new(
                    Code::VersionDuplicate,
                    format!(
                        "policy `{}` is defined twice, in `{}` and `{}`",
                        policy.name.node, first_file.name, file.name
                    ),
                )
                .with_label(
                    Label::new(&file.name, policy.name.span)
                        .with_message("defined again here")
                        .in_rule(&policy.name.node, None),
                )
                .with_label(
                    Label::new(&first_file.name, first.name.span)
                        .with_message("first defined here")
                        .in_rule(&first.name.node, None),
                )
                .with_help(
                    "each policy lives in exactly one file: rename one of them or merge the two",
                ),
            ),
            None => {
                by_name.insert(&policy.name.node, (file, policy));
            }
        }
    }

    // Requirements.
    let mut graph: DiGraph<&str, ()> = DiGraph::new();
    let nodes: BTreeMap<&str, NodeIndex> = by_name
        .keys()
        .map(|name| (*name, graph.add_node(*name)))
        .collect();
    for (name, (file, policy)) in &by_name {
        for req in &policy.requires {
            let target = req.policy.node.as_str();
            let label =
                Label::new(&file.name, req.req.span.join(req.policy.span)).in_rule(*name, None);
            match by_name.get(target) {
                None => {
                    let mut f = Finding::new(
                        Code::VersionUnsatisfied,
                        format!("`{name}` requires `{target} {}` but no policy `{target}` is in the set", req.text),
                    )
                    .with_label(label.with_message("required here"));
                    f.help = Some(
                        match crate::model::schema::closest(target, by_name.keys().copied()) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => {
                                format!("add a policy named `{target}` or remove this requirement")
                            }
                        },
                    );
                    findings.push(f);
                }
                Some((tfile, tpolicy)) => {
                    if !req.req.node.matches(&tpolicy.version.node) {
                        findings.push(
                            Finding::new(
                                Code::VersionUnsatisfied,
                                format!(
                                    "`{name}` requires `{target} {}` but `{target}` is {}",
                                    req.text, tpolicy.version.node
                                ),
                            )
                            .with_label(label.with_message("required here"))
                            .with_label(
                                Label::new(&tfile.name, tpolicy.version.span)
                                    .with_message("this version does not match")
                                    .in_rule(target, None),
                            )
                            .with_help(format!(
                                "change the requirement to accept {} or change `{target}`'s version",
                                tpolicy.version.node
                            )),
                        );
                    }
                    if let (Some(&a), Some(&b)) = (nodes.get(name), nodes.get(target)) {
                        graph.add_edge(a, b, ());
                    }
                }
            }
        }
    }

    // Cycles: every strongly connected component with more than one policy, or
    // a policy that requires itself.
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && scc.first().is_some_and(|&n| graph.contains_edge(n, n));
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let cycle = spell_cycle(&graph, &scc);
        let names: Vec<&str> = cycle
            .iter()
            .filter_map(|n| graph.node_weight(*n).copied())
            .collect();
        let mut f = Finding::new(
            Code::VersionCycle,
            format!(
                "policies require each other in a cycle: {}",
                names.join(" → ")
            ),
        )
        .with_help(
            "a policy cannot depend on itself through others: remove one `requires` of the cycle",
        );
        for pair in names.windows(2) {
            if let &[from, to] = pair
                && let Some((file, policy)) = by_name.get(from)
                && let Some(req) = policy.requires.iter().find(|r| r.policy.node == to)
            {
                f = f.with_label(
                    Label::new(&file.name, req.policy.span.join(req.req.span))
                        .with_message(format!("`{from}` requires `{to}`"))
                        .in_rule(from, None),
                );
            }
        }
        findings.push(f);
    }
    findings
}

/// One cycle through the component, starting at its alphabetically first
/// policy and closing back on it.
fn spell_cycle(graph: &DiGraph<&str, ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let Some(&start) = scc
        .iter()
        .min_by_key(|n| graph.node_weight(**n).copied().unwrap_or(""))
    else {
        return Vec::new();
    };
    // Breadth-first search inside the component for the shortest path back to start.
    let in_scc = |n: NodeIndex| scc.contains(&n);
    let mut prev: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|m| in_scc(*m)).collect();
        next.sort_by_key(|m| graph.node_weight(*m).copied().unwrap_or(""));
        for m in next {
            if m == start {
                let mut path = vec![start];
                let mut cur = n;
                while cur != start {
                    path.push(cur);
                    cur = prev.get(&cur).copied().unwrap_or(start);
                }
                path.push(start);
                let last = path.len() - 1;
                if let Some(middle) = path.get_mut(1..last) {
                    middle.reverse();
                }
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start, start]
}
