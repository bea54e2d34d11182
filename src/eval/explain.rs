//! Why a request got its decision: every rule and limit of the set, whether
//! it matched, and for one that did not, the first atom of its condition
//! that was false with the value it saw. What `sluice explain` prints and
//! what `sluice eval` uses to say which rule came closest when none matched.
//!
//! Whether a check matched is the evaluator's own answer (the compiled
//! condition, read without the tool index); the reason it did not is read
//! from the condition as written (the artifact's IR), atom by atom, in the
//! author's order. Pure apart from the limit store, which is only read.

use std::fmt::Write as _;

use crate::eval::request::{FieldValue, Request};
use crate::eval::state::{LimitKey, LimitStore, Window};
use crate::eval::{CheckKind, EvalError, Evaluator, LimitMode};
use crate::model::ir::{CmpOp, DecisionKind, Expr, Literal, Term};
use crate::model::schema::Schema;

/// The explanation of one evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    pub decision: DecisionKind,
    /// No rule or limit contributed: the decision is the project default.
    pub default: bool,
    /// Every rule and limit, policies by name, then declaration order.
    pub checks: Vec<CheckExplained>,
    /// The fields the decision's modifications changed, with their new
    /// values, in the order applied (empty unless the decision is `modify`
    /// or `require_approval`).
    pub modified: Vec<ModifiedValue>,
}

/// One rule or limit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckExplained {
    pub policy: String,
    pub rule: String,
    /// `rule` or `limit`.
    pub kind: &'static str,
    /// What it contributes when it matches (a limit: when it is exceeded).
    pub effect: DecisionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The condition held.
    pub matched: bool,
    /// The rule or exceeded limit contributes to the decision.
    pub contributes: bool,
    /// Why the condition did not hold: the first false atom and the value it
    /// saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
    /// A top-level conjunct that reads only `tool` is false: the check is
    /// about other tools.
    pub other_tool: bool,
    /// Of the condition's top-level conjuncts, how many held.
    pub held: usize,
    pub conjuncts: usize,
    /// A limit whose condition held: its count in the current window, or
    /// why it does not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// A field changed by the decision's modifications.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModifiedValue {
    pub field: String,
    pub value: serde_json::Value,
    /// `policy.rule` that changed it.
    pub by: String,
    pub code: String,
}

impl Explanation {
    /// For a default decision, the rule that came closest to matching: of
    /// the rules and limits about the request's tool, the one with the
    /// largest share of its conjuncts true (first in order on a tie);
    /// `None` when none is about the tool or none has a conjunct true.
    pub fn closest(&self) -> Option<&CheckExplained> {
        let mut best: Option<&CheckExplained> = None;
        for c in self
            .checks
            .iter()
            .filter(|c| !c.matched && !c.other_tool && c.held > 0)
        {
            let better =
                best.is_none_or(|b| c.held * b.conjuncts.max(1) > b.held * c.conjuncts.max(1));
            if better {
                best = Some(c);
            }
        }
        best
    }
}

impl Evaluator {
    /// Explains the evaluation of `req` at `now`: limits are read from
    /// `limits`, never counted (an explanation changes no state).
    pub fn explain(
        &self,
        req: &Request,
        now: u64,
        limits: &dyn LimitStore,
    ) -> Result<Explanation, EvalError> {
        let outcome = self.evaluate_scan(req, now, limits, LimitMode::DryRun)?;
        let schema = self.schema();
        let mut checks = Vec::with_capacity(self.checks.len());
        let mut memo = crate::eval::compiled::Memo::default();
        memo.begin(self.memo_len);
        for (i, check) in self.checks.iter().enumerate() {
            let matched = check.cond.eval(req, false, &mut memo);
            let contributes = u32::try_from(i).is_ok_and(|i| outcome.hits.contains(&i));
            let parts = conjuncts(&check.when);
            let held = parts
                .iter()
                .filter(|e| why_not(e, req, schema).is_none())
                .count();
            let other_tool = parts.iter().any(|e| {
                let mut fields = Vec::new();
                expr_fields(e, &mut fields);
                fields == [crate::eval::TOOL_FIELD] && why_not(e, req, schema).is_some()
            });
            let why = if matched {
                None
            } else {
                Some(
                    why_not(&check.when, req, schema)
                        .unwrap_or_else(|| "the condition is false".to_string()),
                )
            };
            let limit = match (&check.limit, matched) {
                (Some(spec), true) => {
                    let mut key = String::new();
                    Some(if spec.key_into(req, &mut key) {
                        let window = Window::containing(now, spec.window_secs);
                        let count = limits.count(
                            LimitKey {
                                limit: &spec.id,
                                key: &key,
                            },
                            window,
                        )?;
                        format!(
                            "{count} of {} counted for {key} in this window of {}s: {}",
                            spec.max,
                            spec.window_secs,
                            if count < spec.max {
                                "not exceeded"
                            } else {
                                "exceeded"
                            }
                        )
                    } else {
                        "does not apply: the request lacks a field it counts by".to_string()
                    })
                }
                _ => None,
            };
            checks.push(CheckExplained {
                policy: check.policy.name.clone(),
                rule: check.name.clone(),
                kind: match check.kind {
                    CheckKind::Rule => "rule",
                    CheckKind::Limit => "limit",
                },
                effect: check.effect.kind(),
                code: check.effect.code_text().map(|(c, _)| c.to_string()),
                matched,
                contributes,
                why_not: why,
                other_tool,
                held: if matched { parts.len() } else { held },
                conjuncts: parts.len(),
                limit,
            });
        }
        let decision = outcome.decision();
        let modified = match decision {
            DecisionKind::Modify | DecisionKind::RequireApproval => {
                let m = self.apply_modifications(req, &outcome);
                m.applied
                    .iter()
                    .map(|a| ModifiedValue {
                        field: a.field.to_string(),
                        value: m
                            .request
                            .get_path(schema, a.field)
                            .map_or(serde_json::Value::Null, FieldValue::to_json),
                        by: format!("{}.{}", a.policy, a.rule),
                        code: a.code.to_string(),
                    })
                    .collect()
            }
            DecisionKind::Allow | DecisionKind::Deny => Vec::new(),
        };
        Ok(Explanation {
            decision,
            default: outcome.is_default(),
            checks,
            modified,
        })
    }
}

/// The top-level conjuncts of a condition.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::And(parts) => parts.iter().flat_map(conjuncts).collect(),
        Expr::Const(true) => Vec::new(),
        _ => vec![e],
    }
}

/// `None` when `e` holds for `req`; otherwise the first false atom, written
/// as in a policy, with the value it saw.
pub fn why_not(e: &Expr, req: &Request, schema: &Schema) -> Option<String> {
    match e {
        Expr::Const(true) => None,
        Expr::Const(false) => Some("the condition is `false`".to_string()),
        Expr::And(parts) => parts.iter().find_map(|p| why_not(p, req, schema)),
        Expr::Or(parts) => {
            let reasons: Vec<String> = parts
                .iter()
                .map(|p| why_not(p, req, schema))
                .collect::<Option<Vec<_>>>()?;
            Some(format!(
                "none of the alternatives holds: {}",
                reasons.join("; ")
            ))
        }
        Expr::Not(inner) => match why_not(inner, req, schema) {
            Some(_) => None,
            None => {
                let mut fields = Vec::new();
                expr_fields(inner, &mut fields);
                let seen: Vec<String> = fields
                    .iter()
                    .filter_map(|f| {
                        req.get_path(schema, f)
                            .map(|v| format!("`{f}` is {}", v.to_json()))
                    })
                    .collect();
                Some(if seen.is_empty() {
                    format!("`{}` is false", text(e))
                } else {
                    format!("`{}` is false: {}", text(e), seen.join(", "))
                })
            }
        },
        _ => {
            let fields = atom_fields(e);
            for f in &fields {
                if !matches!(e, Expr::Has(_)) && req.get_path(schema, f).is_none() {
                    return Some(format!("`{}` is false: `{f}` is absent", text(e)));
                }
            }
            if atom_holds(e, req, schema) {
                None
            } else {
                let seen: Vec<String> = fields
                    .iter()
                    .filter_map(|f| {
                        req.get_path(schema, f)
                            .map(|v| format!("`{f}` is {}", v.to_json()))
                    })
                    .collect();
                Some(if seen.is_empty() {
                    format!("`{}` is false", text(e))
                } else {
                    format!("`{}` is false: {}", text(e), seen.join(", "))
                })
            }
        }
    }
}

/// Every field a condition reads, once each, in order.
fn expr_fields<'e>(e: &'e Expr, out: &mut Vec<&'e str>) {
    match e {
        Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|p| expr_fields(p, out)),
        Expr::Not(inner) => expr_fields(inner, out),
        _ => {
            for f in atom_fields(e) {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
    }
}

/// The fields an atom reads.
fn atom_fields(e: &Expr) -> Vec<&str> {
    match e {
        Expr::Has(f) | Expr::Truthy(f) => vec![f],
        Expr::Cmp { lhs, rhs, .. } => [lhs.field(), rhs.field()].into_iter().flatten().collect(),
        Expr::In { lhs, .. } => lhs.field().into_iter().collect(),
        Expr::Contains { field, .. }
        | Expr::SetContains { field, .. }
        | Expr::StartsWith { field, .. }
        | Expr::EndsWith { field, .. }
        | Expr::Matches { field, .. } => vec![field],
        Expr::Const(_) | Expr::And(_) | Expr::Or(_) | Expr::Not(_) => Vec::new(),
    }
}

/// A term's value: a literal, a field's value, or a length.
fn term(t: &Term, req: &Request, schema: &Schema) -> Option<Literal> {
    match t {
        Term::Lit(l) => Some(l.clone()),
        Term::Field(f) => match req.get_path(schema, f)? {
            FieldValue::Int(i) => Some(Literal::Int(*i)),
            FieldValue::Str(s) => Some(Literal::Str(s.clone())),
            FieldValue::Bool(b) => Some(Literal::Bool(*b)),
            FieldValue::Set(_) => None,
        },
        Term::Len(f) => match req.get_path(schema, f)? {
            FieldValue::Str(s) => i64::try_from(s.chars().count()).ok().map(Literal::Int),
            FieldValue::Set(v) => i64::try_from(v.len()).ok().map(Literal::Int),
            FieldValue::Int(_) | FieldValue::Bool(_) => None,
        },
    }
}

fn string<'r>(req: &'r Request, schema: &Schema, f: &str) -> Option<&'r str> {
    match req.get_path(schema, f)? {
        FieldValue::Str(s) => Some(s),
        _ => None,
    }
}

/// Whether an atom (not `and`, `or`, `not`) holds.
fn atom_holds(e: &Expr, req: &Request, schema: &Schema) -> bool {
    match e {
        Expr::Has(f) => req.get_path(schema, f).is_some(),
        Expr::Truthy(f) => matches!(req.get_path(schema, f), Some(FieldValue::Bool(true))),
        Expr::Cmp { op, lhs, rhs, .. } => {
            let (Some(l), Some(r)) = (term(lhs, req, schema), term(rhs, req, schema)) else {
                return false;
            };
            match op {
                CmpOp::Eq => l == r,
                CmpOp::Ne => l != r,
                CmpOp::Lt => l < r,
                CmpOp::Le => l <= r,
                CmpOp::Gt => l > r,
                CmpOp::Ge => l >= r,
            }
        }
        Expr::In { lhs, values } => term(lhs, req, schema).is_some_and(|v| values.contains(&v)),
        Expr::Contains { field, value } => {
            string(req, schema, field).is_some_and(|s| s.contains(value.as_str()))
        }
        Expr::SetContains { field, value } => matches!(
            req.get_path(schema, field),
            Some(FieldValue::Set(v)) if v.iter().any(|x| x == value)
        ),
        Expr::StartsWith { field, value } => {
            string(req, schema, field).is_some_and(|s| s.starts_with(value.as_str()))
        }
        Expr::EndsWith { field, value } => {
            string(req, schema, field).is_some_and(|s| s.ends_with(value.as_str()))
        }
        Expr::Matches { field, pattern } => string(req, schema, field)
            .is_some_and(|s| regex::Regex::new(pattern).is_ok_and(|re| re.is_match(s))),
        Expr::Const(b) => *b,
        Expr::And(_) | Expr::Or(_) | Expr::Not(_) => why_not(e, req, schema).is_none(),
    }
}

fn lit(l: &Literal) -> String {
    match l {
        Literal::Int(i) => i.to_string(),
        Literal::Str(s) => serde_json::Value::String(s.clone()).to_string(),
        Literal::Bool(b) => b.to_string(),
    }
}

fn term_text(t: &Term) -> String {
    match t {
        Term::Field(f) => f.clone(),
        Term::Len(f) => format!("len({f})"),
        Term::Lit(l) => lit(l),
    }
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A condition written as in a policy.
pub fn text(e: &Expr) -> String {
    let mut out = String::new();
    let _ = match e {
        Expr::Const(b) => write!(out, "{b}"),
        Expr::And(parts) => write!(
            out,
            "{}",
            parts.iter().map(paren).collect::<Vec<_>>().join(" and ")
        ),
        Expr::Or(parts) => write!(
            out,
            "{}",
            parts.iter().map(paren).collect::<Vec<_>>().join(" or ")
        ),
        Expr::Not(inner) => match inner.as_ref() {
            Expr::Has(_) | Expr::Truthy(_) => write!(out, "not {}", text(inner)),
            _ => write!(out, "not ({})", text(inner)),
        },
        Expr::Has(f) => write!(out, "has({f})"),
        Expr::Truthy(f) => write!(out, "{f}"),
        Expr::Cmp { op, lhs, rhs, .. } => {
            write!(out, "{} {} {}", term_text(lhs), op.as_str(), term_text(rhs))
        }
        Expr::In { lhs, values } => write!(
            out,
            "{} in [{}]",
            term_text(lhs),
            values.iter().map(lit).collect::<Vec<_>>().join(", ")
        ),
        Expr::Contains { field, value } | Expr::SetContains { field, value } => {
            write!(out, "{field} contains {}", quoted(value))
        }
        Expr::StartsWith { field, value } => write!(out, "{field} starts_with {}", quoted(value)),
        Expr::EndsWith { field, value } => write!(out, "{field} ends_with {}", quoted(value)),
        Expr::Matches { field, pattern } => write!(out, "{field} matches {}", quoted(pattern)),
    };
    out
}

fn paren(e: &Expr) -> String {
    match e {
        Expr::And(_) | Expr::Or(_) => format!("({})", text(e)),
        _ => text(e),
    }
}

/// A rule or limit, named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct CheckName {
    pub policy: String,
    pub rule: String,
    /// `rule` or `limit`.
    pub kind: &'static str,
}

impl Evaluator {
    /// Every rule and limit, in the fixed order.
    pub fn check_names(&self) -> Vec<CheckName> {
        self.checks
            .iter()
            .map(|c| CheckName {
                policy: c.policy.name.clone(),
                rule: c.name.clone(),
                kind: match c.kind {
                    CheckKind::Rule => "rule",
                    CheckKind::Limit => "limit",
                },
            })
            .collect()
    }

    /// Which rules and limits have a condition that holds for `req`
    /// (whatever their effect and a limit's count), by position in
    /// [`Self::check_names`].
    pub fn conditions_held(&self, req: &Request) -> Vec<bool> {
        let mut memo = crate::eval::compiled::Memo::default();
        memo.begin(self.memo_len);
        self.checks
            .iter()
            .map(|c| c.cond.eval(req, false, &mut memo))
            .collect()
    }
}
