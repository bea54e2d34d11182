//! The checks of the agent inventory (`agents/*.toml`, SPEC §9) against the
//! policy set, on the syntax trees (every name is located where it is
//! written). Pure: no I/O, no solver (the tool index of `eval` decides
//! which rules a tool can reach). Without an inventory none applies.
//!
//! - `inventory::unknown_tool`: a rule compares `tool` with a name no agent
//!   declares (`tool == "shel.exec"`, `tool in [...]`, `tool != ...`), or
//!   sends its approvals `via` such a tool: a typo, or a rule for a tool
//!   nothing calls.
//! - `inventory::unknown_agent`: a rule compares `agent` with an id the
//!   inventory lacks.
//! - `inventory::uncovered_tool` ([`uncovered_tools`]): an inventoried tool
//!   that no rule or limit can match, so only the project default decides
//!   it; with a witness replayed through the evaluator.
//!
//! The first two: one finding per name and place, with the closest known
//! name as help.

use crate::diagnostic::{Code, Finding, Label};
use crate::model::inventory::Inventory;
use crate::model::schema::closest;
use crate::parse::ast::{self, ExprKind, Literal, TermKind};
use crate::source::{SourceFile, Span};

/// The field whose values the inventory's `tools` are.
const TOOL: &str = "tool";
/// The field whose values the inventory's `id`s are.
const AGENT: &str = "agent";

/// Every `inventory::unknown_tool` and `inventory::unknown_agent` of the
/// set; nothing when the inventory is empty.
pub fn check(parsed: &[(SourceFile, ast::Policy)], inventory: &Inventory) -> Vec<Finding> {
    if inventory.is_empty() {
        return Vec::new();
    }
    let tools = inventory.tools();
    let agents: Vec<&str> = inventory.agents.iter().map(|a| a.id.as_str()).collect();
    let mut out = Vec::new();
    for (file, policy) in parsed {
        for item in &policy.items {
            let (when, effect) = match item {
                ast::Item::Rule(r) => (r.when.as_ref(), &r.effect),
                ast::Item::Limit(l) => (l.when.as_ref(), &l.exceed),
            };
            let mut named = Vec::new();
            if let Some(e) = when {
                names(e, &mut named);
            }
            if let ast::Effect::RequireApproval { via: Some(via), .. } = &effect.node {
                named.push((TOOL, via.node.clone(), via.span));
            }
            let place = |span: Span, what: &str| {
                Label::new(file.name.clone(), span)
                    .with_message(what.to_string())
                    .in_rule(policy.name.node.clone(), Some(item.name().node.clone()))
            };
            for (field, value, span) in named {
                if field == TOOL && !inventory.declares_tool(&value) {
                    let near = closest(&value, tools.iter().copied());
                    out.push(
                        Finding::new(
                            Code::InventoryUnknownTool,
                            format!("no inventoried agent declares the tool `{value}`"),
                        )
                        .with_label(place(span, "not in any agent's `tools`"))
                        .with_help(match near {
                            Some(c) => format!(
                                "did you mean `{c}`? otherwise add `{value}` to the `tools` of the agent that calls it (agents/*.toml)"
                            ),
                            None => format!(
                                "add `{value}` to the `tools` of the agent that calls it (agents/*.toml), or remove the rule if nothing calls it"
                            ),
                        }),
                    );
                }
                if field == AGENT && inventory.agent(&value).is_none() {
                    let near = closest(&value, agents.iter().copied());
                    out.push(
                        Finding::new(
                            Code::InventoryUnknownAgent,
                            format!("the agent `{value}` is not in the inventory"),
                        )
                        .with_label(place(span, "no agents/*.toml has this id"))
                        .with_help(match near {
                            Some(c) => format!(
                                "did you mean `{c}`? otherwise inventory the agent in `agents/{value}.toml`"
                            ),
                            None => format!("inventory the agent in `agents/{value}.toml`"),
                        }),
                    );
                }
            }
        }
    }
    out
}

/// The (field, string, span of the string) of every comparison of `tool`
/// or `agent` with a string literal in `e`.
fn names(e: &ast::Expr, out: &mut Vec<(&'static str, String, Span)>) {
    let field_of = |t: &ast::Term| match &t.node {
        TermKind::Field(p) if p.as_str() == TOOL => Some(TOOL),
        TermKind::Field(p) if p.as_str() == AGENT => Some(AGENT),
        _ => None,
    };
    match &e.node {
        ExprKind::Or(items) | ExprKind::And(items) => {
            for i in items {
                names(i, out);
            }
        }
        ExprKind::Not(inner) | ExprKind::Paren(inner) => names(inner, out),
        ExprKind::Cmp { lhs, rhs, .. } => {
            for (f, lit) in [(lhs, rhs), (rhs, lhs)] {
                if let (Some(field), TermKind::Lit(Literal::Str(s))) = (field_of(f), &lit.node) {
                    out.push((field, s.clone(), lit.span));
                }
            }
        }
        ExprKind::In { lhs, list } => {
            if let Some(field) = field_of(lhs) {
                for item in list {
                    if let Literal::Str(s) = &item.node {
                        out.push((field, s.clone(), item.span));
                    }
                }
            }
        }
        ExprKind::Str { .. } | ExprKind::Has(_) | ExprKind::Term(_) => {}
    }
}

/// `inventory::uncovered_tool`: every inventoried tool that no rule or limit
/// of the set can match (the evaluator's tool index examines nothing for
/// it), so only the project default decides its calls. Each finding carries
/// a witness, a request for the tool by an agent that declares it, replayed
/// through the evaluator to show the default decision. Labelled at the tool
/// in each agent file that lists it.
pub fn uncovered_tools(
    set: &crate::model::ir::PolicySet,
    schema: &crate::model::schema::Schema,
    default: crate::model::ir::DecisionKind,
    inventory: &Inventory,
    agent_files: &[SourceFile],
) -> Vec<Finding> {
    use crate::compile::artifact::{Artifact, FORMAT_VERSION};
    use crate::eval::Evaluator;
    use crate::eval::state::MemoryLimitStore;

    if inventory.is_empty() {
        return Vec::new();
    }
    let artifact = Artifact {
        format_version: FORMAT_VERSION,
        project: "inventory".to_string(),
        default,
        schema: schema.clone(),
        policies: set.policies.clone(),
        governance: Default::default(),
        inventory: Default::default(),
        source_commit: None,
        hash: String::new(),
    };
    let Ok(ev) = Evaluator::new(&artifact) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for tool in inventory.tools() {
        if ev.candidate_count(Some(tool)) > 0 {
            continue;
        }
        let agent = inventory
            .agents
            .iter()
            .find(|a| a.tools.iter().any(|t| t == tool))
            .map_or("", |a| a.id.as_str());
        let witness = witness_request(schema, tool, agent);
        // The witness, replayed: no rule or limit contributes.
        let replayed = ev
            .decode(&witness)
            .ok()
            .and_then(|r| ev.evaluate_dry_run(&r, 0, &MemoryLimitStore::new()).ok());
        let Some(outcome) = replayed.filter(|o| o.is_default()) else {
            continue;
        };
        let mut finding = Finding::new(
            Code::InventoryUncoveredTool,
            format!(
                "no rule or limit decides the inventoried tool `{tool}`: every call gets the project default (`{}`)",
                outcome.decision().as_str()
            ),
        );
        for file in agent_files {
            if let Some(span) = quoted(&file.text, tool) {
                finding = finding.with_label(
                    Label::new(file.name.clone(), span)
                        .with_message("decided only by the project default"),
                );
            }
        }
        finding.witness = Some(witness);
        finding.witness_decisions = Some(
            [("final".to_string(), outcome.decision().as_str().to_string())]
                .into_iter()
                .collect(),
        );
        out.push(finding.with_help(format!(
            "write the rules for `{tool}` (`when tool == \"{tool}\" …`), so its calls are decided on purpose, \
             or remove it from the agents that list it"
        )));
    }
    out
}

/// A request for `tool` by `agent`: every required field of the schema with
/// a placeholder of its type (`agent` and `tool` with theirs).
fn witness_request(
    schema: &crate::model::schema::Schema,
    tool: &str,
    agent: &str,
) -> serde_json::Value {
    use crate::model::ir::Type;
    use serde_json::{Map, Value, json};
    let mut root = Map::new();
    for f in schema.fields.iter().filter(|f| !f.optional) {
        let value = match (f.path.as_str(), f.ty) {
            (TOOL, Type::Str) => json!(tool),
            (AGENT, Type::Str) => json!(agent),
            (_, Type::Str) => json!("x"),
            (_, Type::Int) => json!(0),
            (_, Type::Bool) => json!(false),
            (_, Type::StrSet) => json!([]),
        };
        let parts: Vec<&str> = f.path.split('.').collect();
        put(&mut root, &parts, value);
    }
    Value::Object(root)
}

/// Sets the value at a dotted path, making the objects on the way.
fn put(
    map: &mut serde_json::Map<String, serde_json::Value>,
    path: &[&str],
    value: serde_json::Value,
) {
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let next = map
                .entry((*first).to_string())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(inner) = next {
                put(inner, rest, value);
            }
        }
    }
}

/// The span of `"value"` (or `'value'`) in a TOML text.
fn quoted(text: &str, value: &str) -> Option<Span> {
    [format!("\"{value}\""), format!("'{value}'")]
        .iter()
        .find_map(|q| text.find(q.as_str()).map(|i| Span::new(i, i + q.len())))
}
