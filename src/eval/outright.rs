//! The deny rules that hold whatever a request's arguments: given the
//! values of some fields (the gateway knows `tool`, `agent` and `org`
//! before a call is made), a `deny` rule whose condition is already true
//! denies every request with those values — `deny` is the most severe
//! decision, so no other rule can lift it.
//!
//! Conditions are evaluated in three values (Kleene): an atom that reads a
//! field whose value is not given is unknown, and `and`, `or`, `not`
//! propagate it; only a condition that is true is counted. Conservative:
//! a request denied only through a field not given, by a limit, or by the
//! artifact's default is not found here. Pure.

use std::collections::BTreeMap;

use crate::compile::artifact::Artifact;
use crate::model::ir::{CmpOp, Effect, Expr, Literal, Term};

/// The fields whose values are known, by path (every other field may hold
/// anything, or be absent).
pub type Known<'a> = BTreeMap<&'a str, &'a str>;

/// The first `deny` rule, as (policy, rule), whose condition holds for
/// every request carrying the `known` values, whatever its other fields.
pub fn denied_outright<'a>(
    artifact: &'a Artifact,
    known: &Known<'_>,
) -> Option<(&'a str, &'a str)> {
    artifact.policies.iter().find_map(|p| {
        p.rules
            .iter()
            .find(|r| {
                matches!(r.effect, Effect::Deny { .. }) && holds(&r.when, known) == Some(true)
            })
            .map(|r| (p.name.as_str(), r.name.as_str()))
    })
}

/// The condition's value, `None` when it depends on a field not known.
fn holds(e: &Expr, k: &Known<'_>) -> Option<bool> {
    let text = |field: &str| k.get(field).copied();
    match e {
        Expr::Const(b) => Some(*b),
        Expr::And(xs) => {
            let mut all = Some(true);
            for x in xs {
                match holds(x, k) {
                    Some(false) => return Some(false),
                    None => all = None,
                    Some(true) => {}
                }
            }
            all
        }
        Expr::Or(xs) => {
            let mut any = Some(false);
            for x in xs {
                match holds(x, k) {
                    Some(true) => return Some(true),
                    None => any = None,
                    Some(false) => {}
                }
            }
            any
        }
        Expr::Not(x) => holds(x, k).map(|b| !b),
        Expr::Has(f) => text(f).map(|_| true),
        // Known values are strings: a bool or a set is never known.
        Expr::Truthy(_) | Expr::SetContains { .. } => None,
        Expr::Cmp { op, lhs, rhs, .. } => compare(*op, &value(lhs, k)?, &value(rhs, k)?),
        Expr::In { lhs, values } => {
            let v = value(lhs, k)?;
            Some(
                values
                    .iter()
                    .any(|l| compare(CmpOp::Eq, &v, l) == Some(true)),
            )
        }
        Expr::Contains { field, value } => text(field).map(|s| s.contains(value.as_str())),
        Expr::StartsWith { field, value } => text(field).map(|s| s.starts_with(value.as_str())),
        Expr::EndsWith { field, value } => text(field).map(|s| s.ends_with(value.as_str())),
        Expr::Matches { field, pattern } => {
            let s = text(field)?;
            regex::Regex::new(pattern).ok().map(|r| r.is_match(s))
        }
    }
}

/// A term's value, `None` when it reads a field not known.
fn value(t: &Term, k: &Known<'_>) -> Option<Literal> {
    match t {
        Term::Lit(l) => Some(l.clone()),
        Term::Field(f) => k.get(f.as_str()).map(|s| Literal::Str((*s).to_string())),
        Term::Len(f) => k
            .get(f.as_str())
            .and_then(|s| i64::try_from(s.chars().count()).ok())
            .map(Literal::Int),
    }
}

/// `a op b`; `None` for operands of different types (not a comparison the
/// checker lets through, so never counted).
fn compare(op: CmpOp, a: &Literal, b: &Literal) -> Option<bool> {
    let ord = match (a, b) {
        (Literal::Int(x), Literal::Int(y)) => x.cmp(y),
        (Literal::Str(x), Literal::Str(y)) => x.cmp(y),
        (Literal::Bool(x), Literal::Bool(y)) => x.cmp(y),
        _ => return None,
    };
    Some(match op {
        CmpOp::Eq => ord.is_eq(),
        CmpOp::Ne => ord.is_ne(),
        CmpOp::Lt => ord.is_lt(),
        CmpOp::Le => ord.is_le(),
        CmpOp::Gt => ord.is_gt(),
        CmpOp::Ge => ord.is_ge(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(f: &str) -> Term {
        Term::Field(f.to_string())
    }

    fn eq(f: &str, v: &str) -> Expr {
        Expr::Cmp {
            op: CmpOp::Eq,
            lhs: field(f),
            rhs: Term::Lit(Literal::Str(v.to_string())),
            ty: crate::model::ir::Type::Str,
        }
    }

    #[test]
    fn known_fields_decide_and_unknown_ones_stay_unknown() {
        let k: Known<'_> = [("tool", "shell.run"), ("agent", "intern")].into();
        let tool = eq("tool", "shell.run");
        let agent = eq("agent", "intern");
        let amount = Expr::Has("args.amount".into());
        assert_eq!(
            holds(&Expr::And(vec![tool.clone(), agent.clone()]), &k),
            Some(true)
        );
        assert_eq!(
            holds(&Expr::And(vec![tool.clone(), amount.clone()]), &k),
            None
        );
        // Unknown or true is true; unknown and false is false.
        assert_eq!(
            holds(&Expr::Or(vec![amount.clone(), agent.clone()]), &k),
            Some(true)
        );
        assert_eq!(
            holds(&Expr::And(vec![amount.clone(), eq("agent", "boss")]), &k),
            Some(false)
        );
        assert_eq!(holds(&Expr::Not(Box::new(amount)), &k), None);
        assert_eq!(
            holds(
                &Expr::Not(Box::new(Expr::StartsWith {
                    field: "tool".into(),
                    value: "files.".into()
                })),
                &k
            ),
            Some(true)
        );
        assert_eq!(
            holds(
                &Expr::In {
                    lhs: field("agent"),
                    values: vec![Literal::Str("a".into()), Literal::Str("intern".into())]
                },
                &k
            ),
            Some(true)
        );
        assert_eq!(
            holds(
                &Expr::Matches {
                    field: "tool".into(),
                    pattern: "^shell\\.".into()
                },
                &k
            ),
            Some(true)
        );
        assert_eq!(
            holds(
                &Expr::Cmp {
                    op: CmpOp::Gt,
                    lhs: Term::Len("agent".into()),
                    rhs: Term::Lit(Literal::Int(3)),
                    ty: crate::model::ir::Type::Int
                },
                &k
            ),
            Some(true)
        );
        assert_eq!(holds(&Expr::Truthy("args.force".into()), &k), None);
    }
}
