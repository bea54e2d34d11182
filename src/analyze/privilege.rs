//! `inventory::excess_privilege` (SPEC §9): a request by an inventoried
//! agent for a tool outside its inventory that the set lets through
//! (`allow` or `modify`). The solver is asked for a request with
//! `agent == A`, a `tool` none of A's tools, and no blocking rule (`deny`,
//! `require_approval`) matching: under a permissive default that is the
//! whole question; under `deny`, it is asked once per permissive rule
//! (`allow`, `modify`) with that rule's condition too. Every witness is
//! replayed through the evaluator, and only one the whole set lets through
//! is reported: one finding per agent, on its first such witness.
//!
//! Permissive rules that cannot meet such a request are skipped without the
//! solver: a top-level conjunct `tool == …`/`tool in […]` within A's tools,
//! or `agent == B` for another agent. Limits are left out (their `exceed`
//! applies only past a count). Pure: Z3 in-process, no I/O.

use crate::diagnostic::{Code, Finding, Label};
use crate::model::inventory::{Agent, Inventory};
use crate::model::ir::{CmpOp, DecisionKind, Effect, Expr, Literal, PolicySet, Term, Type};
use crate::model::schema::Schema;
use crate::source::{SourceFile, Span};

use super::probe::{Probe, Sat};
use super::smt::Plan;
use super::witness::Replay;

const TOOL: &str = "tool";
const AGENT: &str = "agent";

/// Every `inventory::excess_privilege` of the set; nothing without an
/// inventory, or without string fields `tool` and `agent` in the schema.
pub fn excess_privilege(
    set: &PolicySet,
    schema: &Schema,
    default: DecisionKind,
    inventory: &Inventory,
    agent_files: &[SourceFile],
    timeout_ms: u32,
) -> Vec<Finding> {
    let string_field = |p: &str| schema.get(p).is_some_and(|f| f.ty == Type::Str);
    if inventory.is_empty() || !string_field(TOOL) || !string_field(AGENT) {
        return Vec::new();
    }
    let Ok(replay) = Replay::new(set, schema, default) else {
        return Vec::new();
    };
    let rules: Vec<(&str, &crate::model::ir::Rule)> = set
        .policies
        .iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p.name.as_str(), r)))
        .collect();
    let permissive =
        |r: &crate::model::ir::Rule| matches!(r.effect, Effect::Allow | Effect::Modify { .. });
    // No blocking rule (deny, require_approval) matches.
    let unblocked = Expr::Not(Box::new(Expr::Or(
        rules
            .iter()
            .filter(|(_, r)| !permissive(r))
            .map(|(_, r)| r.when.clone())
            .collect(),
    )));
    // Per agent, the questions: with a permissive default, one (nothing
    // blocks); else one per permissive rule that may reach the agent.
    let questions: Vec<(usize, Expr)> = inventory
        .agents
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            let outside = outside(a);
            if lets_through(default) {
                vec![(i, Expr::And(vec![outside, unblocked.clone()]))]
            } else {
                rules
                    .iter()
                    .filter(|(_, r)| permissive(r) && may_reach(&r.when, a))
                    .map(|(_, r)| {
                        (
                            i,
                            Expr::And(vec![r.when.clone(), outside.clone(), unblocked.clone()]),
                        )
                    })
                    .collect()
            }
        })
        .collect();
    let plan = Plan::new(schema, questions.iter().map(|q| &q.1), &[]);
    let mut probe = Probe::new(&plan, timeout_ms);
    let mut out = Vec::new();
    for (i, agent) in inventory.agents.iter().enumerate() {
        let mut found = None;
        for (_, q) in questions.iter().filter(|q| q.0 == i) {
            let Ok(Sat::Yes(req)) = probe.satisfiable(&[q]) else {
                continue;
            };
            let json = req.to_json(schema);
            if let Ok(run) = replay.run(&json)
                && lets_through(run.decision)
            {
                // The permissive rule that lets it through, if any.
                let label = rules
                    .iter()
                    .find(|(p, r)| permissive(r) && run.matches(&format!("{p}.{}", r.name)))
                    .map(|(p, r)| {
                        Label::new(r.origin.file.clone(), r.origin.span)
                            .with_message("lets it through")
                            .in_rule((*p).to_string(), Some(r.name.clone()))
                    });
                found = Some((json, run.decision, label));
                break;
            }
        }
        let Some((witness, decision, rule)) = found else {
            continue;
        };
        let tool = witness
            .get(TOOL)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let by = if rule.is_some() {
            "a rule"
        } else {
            "the project default"
        };
        let mut finding = Finding::new(
            Code::InventoryExcessPrivilege,
            format!(
                "agent `{}` can call `{tool}`, a tool outside its inventory: {by} answers `{}`",
                agent.id,
                decision.as_str()
            ),
        );
        if let Some(label) = rule {
            finding = finding.with_label(label);
        }
        if let Some((file, span)) = agent_id_span(agent_files, &agent.id) {
            finding = finding.with_label(
                Label::new(file, span).with_message("its inventory does not list the tool"),
            );
        }
        finding.witness = Some(witness);
        finding.witness_decisions = Some(
            [("final".to_string(), decision.as_str().to_string())]
                .into_iter()
                .collect(),
        );
        out.push(finding.with_help(format!(
            "narrow the rule to the agents that list the tool (`agent in [...]`), deny `{}`'s other tools, \
             or add `{tool}` to its `tools` if it is meant to call it",
            agent.id
        )));
    }
    out
}

fn lets_through(d: DecisionKind) -> bool {
    matches!(d, DecisionKind::Allow | DecisionKind::Modify)
}

/// `agent == A and not (tool in A's tools)`.
fn outside(a: &Agent) -> Expr {
    Expr::And(vec![
        Expr::Cmp {
            op: CmpOp::Eq,
            lhs: Term::Field(AGENT.to_string()),
            rhs: Term::Lit(Literal::Str(a.id.clone())),
            ty: Type::Str,
        },
        Expr::Not(Box::new(Expr::In {
            lhs: Term::Field(TOOL.to_string()),
            values: a.tools.iter().map(|t| Literal::Str(t.clone())).collect(),
        })),
    ])
}

/// Whether `when` may hold for agent `a` calling a tool outside its
/// inventory, as its top-level conjuncts show (`true` when unsure).
fn may_reach(when: &Expr, a: &Agent) -> bool {
    let conjuncts: Vec<&Expr> = match when {
        Expr::And(xs) => xs.iter().collect(),
        other => vec![other],
    };
    !conjuncts.iter().any(|c| {
        let (field, values) = match c {
            Expr::Cmp {
                op: CmpOp::Eq,
                lhs: Term::Field(f),
                rhs: Term::Lit(Literal::Str(v)),
                ..
            } => (f.as_str(), vec![v.as_str()]),
            Expr::In {
                lhs: Term::Field(f),
                values,
            } => (
                f.as_str(),
                values
                    .iter()
                    .filter_map(|l| match l {
                        Literal::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => return false,
        };
        match field {
            TOOL => values.iter().all(|v| a.tools.iter().any(|t| t == v)),
            AGENT => !values.contains(&a.id.as_str()),
            _ => false,
        }
    })
}

/// The file and span of `id = "…"`'s value of agent `id`.
fn agent_id_span(files: &[SourceFile], id: &str) -> Option<(String, Span)> {
    let quoted = format!("\"{id}\"");
    files.iter().find_map(|f| {
        let at = f.text.find("id")?;
        let start = at + f.text.get(at..)?.find(&quoted)?;
        let line_start = f.text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
        let key = f.text.get(line_start..start)?.trim_start();
        key.starts_with("id")
            .then(|| (f.name.clone(), Span::new(start, start + quoted.len())))
    })
}
