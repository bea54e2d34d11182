//! Lowering: a checked set's syntax trees → the IR of `model::ir`.
//!
//! The input has passed `check`, so every field it reads is declared and
//! every operator fits its operands; lowering reports nothing and must not
//! check anything. It flattens nested `and`/`or`, drops parentheses, resolves
//! each comparison's operand type and each `contains` (string or set) from
//! the schema, and keeps every rule's and limit's origin (file and span)
//! beside the data. Pure.

use crate::check::{Checked, CheckedPolicy};
use crate::model::ir::{self, Type};
use crate::model::schema::Schema;
use crate::parse::ast::{self, ExprKind, TermKind};
use crate::source::{SourceFile, Span};

/// The IR of a checked set, its policies sorted by name.
pub fn lower(checked: &Checked<'_>) -> ir::PolicySet {
    ir::PolicySet {
        policies: checked.policies().iter().map(lower_policy).collect(),
    }
}

/// The IR of one checked policy.
pub fn lower_policy(checked: &CheckedPolicy<'_>) -> ir::Policy {
    let (file, policy) = (checked.file(), checked.ast());
    let l = Lowerer {
        file,
        schema: checked.schema(),
    };
    let mut rules = Vec::new();
    let mut limits = Vec::new();
    for item in &policy.items {
        match item {
            ast::Item::Rule(r) => rules.push(ir::Rule {
                name: r.name.node.clone(),
                when: l.when(r.when.as_ref()),
                effect: effect(&r.effect.node),
                origin: l.origin(r.name.span),
            }),
            ast::Item::Limit(lim) => limits.push(ir::Limit {
                name: lim.name.node.clone(),
                when: l.when(lim.when.as_ref()),
                max: lim.max.node,
                window_secs: lim.window.node.seconds(),
                by: lim.by.iter().map(|b| b.node.0.clone()).collect(),
                exceed: effect(&lim.exceed.node),
                on_decrease: lim.on_decrease.as_ref().map(|o| o.node),
                origin: l.origin(lim.name.span),
            }),
        }
    }
    ir::Policy {
        name: policy.name.node.clone(),
        version: policy.version.node.to_string(),
        tier: policy.tier.as_ref().map(|t| t.node).unwrap_or_default(),
        requires: policy
            .requires
            .iter()
            .map(|r| ir::Requirement {
                policy: r.policy.node.clone(),
                req: r.req.node.to_string(),
            })
            .collect(),
        rules,
        limits,
        origin: l.origin(policy.name.span),
    }
}

struct Lowerer<'a> {
    file: &'a SourceFile,
    schema: &'a Schema,
}

impl Lowerer<'_> {
    fn origin(&self, span: Span) -> ir::Origin {
        ir::Origin {
            file: self.file.name.clone(),
            span,
        }
    }

    /// A rule's condition; no `when` matches every request.
    fn when(&self, e: Option<&ast::Expr>) -> ir::Expr {
        e.map_or(ir::Expr::Const(true), |e| self.expr(e))
    }

    /// The type of a term's value, as the checker resolved it.
    fn term_type(&self, t: &ast::Term) -> Option<Type> {
        match &t.node {
            TermKind::Field(p) => self.schema.type_of(p.as_str()),
            TermKind::Len(_) => Some(Type::Int),
            TermKind::Lit(l) => Some(l.ty()),
        }
    }

    fn expr(&self, e: &ast::Expr) -> ir::Expr {
        match &e.node {
            ExprKind::Or(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    match self.expr(p) {
                        ir::Expr::Or(inner) => out.extend(inner),
                        x => out.push(x),
                    }
                }
                ir::Expr::Or(out)
            }
            ExprKind::And(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    match self.expr(p) {
                        ir::Expr::And(inner) => out.extend(inner),
                        x => out.push(x),
                    }
                }
                ir::Expr::And(out)
            }
            ExprKind::Not(inner) => ir::Expr::Not(Box::new(self.expr(inner))),
            ExprKind::Paren(inner) => self.expr(inner),
            ExprKind::Has(p) => ir::Expr::Has(p.node.0.clone()),
            // A bool condition: `true`/`false`, or a bool field.
            ExprKind::Term(t) => match term(t) {
                ir::Term::Lit(ir::Literal::Bool(b)) => ir::Expr::Const(b),
                other => ir::Expr::Truthy(other.field().unwrap_or_default().to_string()),
            },
            ExprKind::Cmp { op, lhs, rhs } => {
                // Both sides have the same type; `len(…)` compares ints.
                let ty = match (self.term_type(lhs), self.term_type(rhs)) {
                    (Some(lt), Some(_)) => lt,
                    _ => Type::Int,
                };
                ir::Expr::Cmp {
                    op: *op,
                    lhs: term(lhs),
                    rhs: term(rhs),
                    ty,
                }
            }
            ExprKind::In { lhs, list } => ir::Expr::In {
                lhs: term(lhs),
                values: list.iter().map(|v| literal(&v.node)).collect(),
            },
            ExprKind::Str { op, lhs, rhs } => self.str_op(*op, lhs, rhs),
        }
    }

    fn str_op(&self, op: ast::StrOp, lhs: &ast::Term, rhs: &ast::Term) -> ir::Expr {
        let (field, lty) = match &lhs.node {
            TermKind::Field(p) => (p.0.clone(), self.schema.type_of(p.as_str())),
            TermKind::Len(_) => (String::new(), Some(Type::Int)),
            TermKind::Lit(_) => (String::new(), None),
        };
        let value = match &rhs.node {
            TermKind::Lit(ast::Literal::Str(s)) => s.clone(),
            _ => String::new(),
        };
        match (op, lty) {
            (ast::StrOp::Contains, Some(Type::StrSet)) => ir::Expr::SetContains { field, value },
            (_, Some(Type::Str) | None) => match op {
                ast::StrOp::Contains => ir::Expr::Contains { field, value },
                ast::StrOp::StartsWith => ir::Expr::StartsWith { field, value },
                ast::StrOp::EndsWith => ir::Expr::EndsWith { field, value },
                ast::StrOp::Matches => ir::Expr::Matches {
                    field,
                    pattern: value,
                },
            },
            // The checker refuses a string operator on anything else.
            (_, Some(_)) => ir::Expr::Const(false),
        }
    }
}

fn term(t: &ast::Term) -> ir::Term {
    match &t.node {
        TermKind::Field(p) => ir::Term::Field(p.0.clone()),
        TermKind::Len(p) => ir::Term::Len(p.node.0.clone()),
        TermKind::Lit(l) => ir::Term::Lit(literal(l)),
    }
}

fn literal(l: &ast::Literal) -> ir::Literal {
    match l {
        ast::Literal::Int(n) => ir::Literal::Int(*n),
        ast::Literal::Str(s) => ir::Literal::Str(s.clone()),
        ast::Literal::Bool(b) => ir::Literal::Bool(*b),
    }
}

fn effect(e: &ast::Effect) -> ir::Effect {
    match e {
        ast::Effect::Allow => ir::Effect::Allow,
        ast::Effect::Deny { code, text } => ir::Effect::Deny {
            code: code.node.clone(),
            text: text.node.clone(),
        },
        ast::Effect::RequireApproval {
            group,
            via,
            code,
            text,
        } => ir::Effect::RequireApproval {
            group: group.node.clone(),
            via: via.as_ref().map(|v| v.node.clone()),
            code: code.node.clone(),
            text: text.node.clone(),
        },
        ast::Effect::Modify {
            field,
            value,
            code,
            text,
        } => ir::Effect::Modify {
            field: field.node.0.clone(),
            value: modify_value(&value.node),
            code: code.node.clone(),
            text: text.node.clone(),
        },
    }
}

fn modify_value(v: &ast::ModifyValue) -> ir::ModifyValue {
    match v {
        ast::ModifyValue::Literal(l) => ir::ModifyValue::Literal(literal(l)),
        ast::ModifyValue::Redact(p) => ir::ModifyValue::Redact {
            field: p.node.0.clone(),
        },
        ast::ModifyValue::RedactPattern(p, pat) => ir::ModifyValue::RedactPattern {
            field: p.node.0.clone(),
            pattern: pat.node.clone(),
        },
        ast::ModifyValue::Truncate(p, n) => ir::ModifyValue::Truncate {
            field: p.node.0.clone(),
            len: n.node,
        },
        ast::ModifyValue::Lowercase(p) => ir::ModifyValue::Lowercase {
            field: p.node.0.clone(),
        },
    }
}
