//! The checks of the agent inventory (`agents/*.toml`, SPEC §9) against the
//! policy set, on the syntax trees (every name is located where it is
//! written). Pure: no I/O, no solver. Without an inventory none applies.
//!
//! - `inventory::unknown_tool`: a rule compares `tool` with a name no agent
//!   declares (`tool == "shel.exec"`, `tool in [...]`, `tool != ...`), or
//!   sends its approvals `via` such a tool: a typo, or a rule for a tool
//!   nothing calls.
//! - `inventory::unknown_agent`: a rule compares `agent` with an id the
//!   inventory lacks.
//!
//! One finding per name and place, with the closest known name as help.

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
