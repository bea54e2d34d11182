//! Building an evaluator: every field of a rule resolved to its schema slot,
//! operand types checked, regexes compiled once, conditions and
//! modifications turned into their compiled forms.
//!
//! Runs once per artifact load, never per request; every failure is a
//! [`LoadError`] naming the policy and rule. Nothing here evaluates.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::Regex;

use crate::eval::LoadError;
use crate::eval::compiled::{Cond, Condition, InSet, Lit, Operand, by_cost};
use crate::eval::modify::{ModOp, Modify};
use crate::eval::request::{FieldValue, field_index};
use crate::model::ir::{CmpOp, Effect, Expr, Literal, ModifyValue, Term, Type};
use crate::model::schema::Schema;

/// Regexes compiled while building: one per pattern, one memo slot per
/// (pattern, field).
#[derive(Debug, Default)]
pub(super) struct Regexes {
    by_pattern: HashMap<String, Regex>,
    pub(super) slots: HashMap<(String, usize), usize>,
}

pub(super) struct Ctx<'a> {
    pub(super) schema: &'a Schema,
    pub(super) policy: &'a str,
    pub(super) rule: &'a str,
    /// Compiled regexes by pattern, shared by every rule (a `Regex` clone
    /// shares the compiled program).
    pub(super) regexes: &'a RefCell<Regexes>,
}

impl Ctx<'_> {
    pub(super) fn field(&self, path: &str) -> Result<(usize, Type), LoadError> {
        field_index(self.schema, path)
            .and_then(|i| self.schema.fields.get(i).map(|f| (i, f.ty)))
            .ok_or_else(|| LoadError::UnknownField {
                policy: self.policy.to_string(),
                rule: self.rule.to_string(),
                field: path.to_string(),
            })
    }

    fn mismatch(&self, message: String) -> LoadError {
        LoadError::TypeMismatch {
            policy: self.policy.to_string(),
            rule: self.rule.to_string(),
            message,
        }
    }

    fn field_of(
        &self,
        path: &str,
        allowed: &[Type],
        what: &str,
    ) -> Result<(usize, Type), LoadError> {
        let (i, ty) = self.field(path)?;
        if allowed.contains(&ty) {
            Ok((i, ty))
        } else {
            Err(self.mismatch(format!(
                "`{what}` does not apply to `{path}` of type {}",
                ty.as_str()
            )))
        }
    }

    fn regex(&self, pattern: &str) -> Result<Regex, LoadError> {
        if let Some(re) = self.regexes.borrow().by_pattern.get(pattern) {
            return Ok(re.clone());
        }
        let re = Regex::new(pattern).map_err(|e| LoadError::BadRegex {
            policy: self.policy.to_string(),
            rule: self.rule.to_string(),
            pattern: pattern.to_string(),
            message: e.to_string(),
        })?;
        self.regexes
            .borrow_mut()
            .by_pattern
            .insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    /// A rule's condition: its top-level conjunction flattened, tool atoms
    /// first (when `tool` is the indexed slot), then the rest cheapest first.
    pub(super) fn condition(&self, e: &Expr, tool: Option<usize>) -> Result<Condition, LoadError> {
        fn flatten<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
            match e {
                Expr::And(xs) => xs.iter().for_each(|x| flatten(x, out)),
                other => out.push(other),
            }
        }
        let mut parts = Vec::new();
        flatten(e, &mut parts);
        let compiled = parts
            .into_iter()
            .map(|x| self.expr(x))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut conjuncts, rest): (Vec<Cond>, Vec<Cond>) = compiled
            .into_iter()
            .partition(|c| tool.is_some_and(|t| c.is_tool_atom(t)));
        let tool_prefix = conjuncts.len();
        conjuncts.extend(by_cost(rest));
        Ok(Condition {
            conjuncts: conjuncts.into(),
            tool_prefix,
        })
    }

    fn operand(&self, term: &Term) -> Result<(Operand, Type), LoadError> {
        Ok(match term {
            Term::Field(f) => {
                let (i, ty) = self.field(f)?;
                (Operand::Field(i), ty)
            }
            Term::Len(f) => {
                let (i, _) = self.field_of(f, &[Type::Str, Type::StrSet], "len")?;
                (Operand::Len(i), Type::Int)
            }
            Term::Lit(Literal::Int(i)) => (Operand::Lit(Lit::Int(*i)), Type::Int),
            Term::Lit(Literal::Str(s)) => (Operand::Lit(Lit::Str(s.as_str().into())), Type::Str),
            Term::Lit(Literal::Bool(b)) => (Operand::Lit(Lit::Bool(*b)), Type::Bool),
        })
    }

    fn exprs(&self, xs: &[Expr]) -> Result<Vec<Cond>, LoadError> {
        xs.iter().map(|x| self.expr(x)).collect()
    }

    fn expr(&self, e: &Expr) -> Result<Cond, LoadError> {
        Ok(match e {
            Expr::Const(b) => Cond::Const(*b),
            Expr::And(xs) => Cond::And(by_cost(self.exprs(xs)?)),
            Expr::Or(xs) => Cond::Or(by_cost(self.exprs(xs)?)),
            Expr::Not(x) => Cond::Not(Box::new(self.expr(x)?)),
            Expr::Has(f) => Cond::Has(self.field(f)?.0),
            Expr::Truthy(f) => Cond::Truthy(self.field_of(f, &[Type::Bool], "truthy")?.0),
            Expr::Cmp { op, lhs, rhs, .. } => {
                let (l, lt) = self.operand(lhs)?;
                let (r, rt) = self.operand(rhs)?;
                let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
                if lt != rt || (ordering && lt == Type::StrSet) {
                    return Err(self.mismatch(format!(
                        "`{}` cannot compare {} with {}",
                        op.as_str(),
                        lt.as_str(),
                        rt.as_str()
                    )));
                }
                match (l, r) {
                    (Operand::Field(field), Operand::Lit(Lit::Int(value))) => Cond::IntCmp {
                        field,
                        op: *op,
                        value,
                    },
                    (Operand::Lit(Lit::Int(value)), Operand::Field(field)) => Cond::IntCmp {
                        field,
                        op: op.flipped(),
                        value,
                    },
                    (Operand::Field(field), Operand::Lit(Lit::Str(value)))
                    | (Operand::Lit(Lit::Str(value)), Operand::Field(field))
                        if matches!(op, CmpOp::Eq | CmpOp::Ne) =>
                    {
                        Cond::StrEq {
                            field,
                            value,
                            eq: *op == CmpOp::Eq,
                        }
                    }
                    (lhs, rhs) => Cond::Cmp { op: *op, lhs, rhs },
                }
            }
            Expr::In { lhs, values } => {
                let (l, ty) = self.operand(lhs)?;
                Cond::In {
                    lhs: l,
                    values: self.in_set(ty, values)?,
                }
            }
            // `contains` reads a string as a substring test and a
            // set<string> as membership; `set_contains` is membership only.
            Expr::Contains { field, value } => {
                match self.field_of(field, &[Type::Str, Type::StrSet], "contains")? {
                    (i, Type::StrSet) => Cond::SetContains {
                        field: i,
                        value: value.as_str().into(),
                    },
                    (i, _) => Cond::Contains {
                        field: i,
                        needle: value.as_str().into(),
                    },
                }
            }
            Expr::SetContains { field, value } => Cond::SetContains {
                field: self.field_of(field, &[Type::StrSet], "set_contains")?.0,
                value: value.as_str().into(),
            },
            Expr::StartsWith { field, value } => Cond::StartsWith {
                field: self.field_of(field, &[Type::Str], "starts_with")?.0,
                prefix: value.as_str().into(),
            },
            Expr::EndsWith { field, value } => Cond::EndsWith {
                field: self.field_of(field, &[Type::Str], "ends_with")?.0,
                suffix: value.as_str().into(),
            },
            Expr::Matches { field, pattern } => {
                let field = self.field_of(field, &[Type::Str], "matches")?.0;
                let re = self.regex(pattern)?;
                let mut regexes = self.regexes.borrow_mut();
                let next = regexes.slots.len();
                let slot = *regexes
                    .slots
                    .entry((pattern.clone(), field))
                    .or_insert(next);
                Cond::Matches { field, re, slot }
            }
        })
    }

    fn in_set(&self, ty: Type, values: &[Literal]) -> Result<InSet, LoadError> {
        let bad = |v: &Literal| {
            self.mismatch(format!(
                "`in` list value {v:?} does not have type {}",
                ty.as_str()
            ))
        };
        Ok(match ty {
            Type::Int => {
                let mut out = Vec::with_capacity(values.len());
                for v in values {
                    let Literal::Int(i) = v else {
                        return Err(bad(v));
                    };
                    out.push(*i);
                }
                out.sort_unstable();
                out.dedup();
                InSet::Int(out.into())
            }
            Type::Str => {
                let mut out: Vec<Box<str>> = Vec::with_capacity(values.len());
                for v in values {
                    let Literal::Str(s) = v else {
                        return Err(bad(v));
                    };
                    out.push(s.as_str().into());
                }
                out.sort_unstable();
                out.dedup();
                InSet::Str(out.into())
            }
            Type::Bool => {
                let (mut t, mut f) = (false, false);
                for v in values {
                    match v {
                        Literal::Bool(true) => t = true,
                        Literal::Bool(false) => f = true,
                        other => return Err(bad(other)),
                    }
                }
                InSet::Bool { t, f }
            }
            Type::StrSet => {
                return Err(self.mismatch("`in` does not apply to a set<string>".to_string()));
            }
        })
    }

    pub(super) fn modify(&self, effect: &Effect) -> Result<Option<Modify>, LoadError> {
        let Effect::Modify { field, value, .. } = effect else {
            return Ok(None);
        };
        let (target, ty) = self.field(field)?;
        let source = |src: &str, what: &str| -> Result<usize, LoadError> {
            let (i, sty) = self.field_of(src, &[Type::Str, Type::StrSet], what)?;
            if sty == ty {
                Ok(i)
            } else {
                Err(self.mismatch(format!(
                    "`{what}({src})` of type {} cannot be assigned to `{field}` of type {}",
                    sty.as_str(),
                    ty.as_str()
                )))
            }
        };
        let op = match value {
            ModifyValue::Literal(lit) => {
                let v = match lit {
                    Literal::Int(i) => FieldValue::Int(*i),
                    Literal::Str(s) => FieldValue::Str(s.clone()),
                    Literal::Bool(b) => FieldValue::Bool(*b),
                };
                if v.ty() != ty {
                    return Err(self.mismatch(format!(
                        "a {} cannot be assigned to `{field}` of type {}",
                        v.ty().as_str(),
                        ty.as_str()
                    )));
                }
                ModOp::Literal(v)
            }
            ModifyValue::Redact { field: src } => ModOp::Redact {
                src: source(src, "redact")?,
            },
            ModifyValue::RedactPattern {
                field: src,
                pattern,
            } => ModOp::RedactPattern {
                src: source(src, "redact")?,
                re: self.regex(pattern)?,
            },
            ModifyValue::Truncate { field: src, len } => ModOp::Truncate {
                src: source(src, "truncate")?,
                len: usize::try_from(*len).unwrap_or(usize::MAX),
            },
            ModifyValue::Lowercase { field: src } => ModOp::Lowercase {
                src: source(src, "lowercase")?,
            },
        };
        Ok(Some(Modify {
            target,
            field: field.clone(),
            op,
        }))
    }
}
