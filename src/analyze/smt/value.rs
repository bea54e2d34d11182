//! The values of terms while encoding: fields, lengths, literals and
//! overridden fields as Z3 ints, booleans, strings or codes
//! ([`Value`]), and comparisons between them; Z3 string literals
//! ([`z3_literal`]). Conditions as a whole are `encode`'s.

use z3::ast::{Bool, Int, String as ZStr};

use super::encoder::{Encoder, Vars};
use super::plan::Repr;
use super::{EncodeError, Needs, Override};
use crate::analyze::regex::MAX_CHAR;
use crate::model::ir::{CmpOp, Literal, Term};

/// How the value of a term is read.
pub(super) enum Value {
    Int(Int),
    Bool(Bool),
    Str(ZStr),
    /// A string literal (or an overridden field), kept as text until it
    /// meets the other operand.
    StrLit(String),
    /// A coded string: the code, and the field.
    Code(Int, usize),
}

impl Encoder<'_> {
    /// A Z3 string literal (cached).
    pub(super) fn string(&mut self, s: &str) -> Result<ZStr, EncodeError> {
        if let Some(z) = self.strings.get(s) {
            return z
                .clone()
                .ok_or_else(|| EncodeError::Unrepresentable(s.to_string()));
        }
        let z = z3_literal(s).and_then(|t| t.parse::<ZStr>().ok());
        self.strings.insert(s.to_string(), z.clone());
        z.ok_or_else(|| EncodeError::Unrepresentable(s.to_string()))
    }

    /// The string term of a field read by a string operator.
    pub(super) fn string_term(
        &mut self,
        field: &str,
        over: Option<&Override>,
        needs: &mut Needs,
    ) -> Result<ZStr, EncodeError> {
        match self.value(&Term::Field(field.to_string()), over, needs)? {
            Value::Str(s) => Ok(s),
            Value::StrLit(s) => self.string(&s),
            _ => Err(EncodeError::Type(format!("`{field}` is not a Z3 string"))),
        }
    }

    pub(super) fn value(
        &mut self,
        t: &Term,
        over: Option<&Override>,
        needs: &mut Needs,
    ) -> Result<Value, EncodeError> {
        match t {
            Term::Lit(Literal::Int(i)) => Ok(Value::Int(Int::from_i64(*i))),
            Term::Lit(Literal::Bool(b)) => Ok(Value::Bool(Bool::from_bool(*b))),
            Term::Lit(Literal::Str(s)) => Ok(Value::StrLit(s.clone())),
            Term::Len(f) => {
                let i = self.field(f)?;
                if let Some(o) = over.filter(|o| o.field == i) {
                    let n = o.value.chars().count();
                    return Ok(Value::Int(int_of(n)));
                }
                match self.vars.get(i).map(|v| &v.vars) {
                    Some(Vars::Str(s)) => Ok(Value::Int(s.length())),
                    Some(Vars::Set { len, .. }) => {
                        needs.sets.entry(i).or_default();
                        Ok(Value::Int(len.clone()))
                    }
                    _ => Err(EncodeError::Type(format!(
                        "`len({f})` needs a string or a set"
                    ))),
                }
            }
            Term::Field(f) => {
                let i = self.field(f)?;
                if let Some(o) = over.filter(|o| o.field == i) {
                    return Ok(Value::StrLit(o.value.clone()));
                }
                match self.vars.get(i).map(|v| &v.vars) {
                    Some(Vars::Int(v)) => {
                        needs.ints.insert(i);
                        Ok(Value::Int(v.clone()))
                    }
                    Some(Vars::Bool(v)) => Ok(Value::Bool(v.clone())),
                    Some(Vars::Str(v)) => Ok(Value::Str(v.clone())),
                    Some(Vars::Code(v)) => Ok(Value::Code(v.clone(), i)),
                    Some(Vars::Lang(_) | Vars::Set { .. }) | None => Err(EncodeError::Type(
                        format!("`{f}` cannot be compared as a value"),
                    )),
                }
            }
        }
    }

    pub(super) fn compare(&mut self, op: CmpOp, l: Value, r: Value) -> Result<Bool, EncodeError> {
        let eq_ne = |b: Bool| match op {
            CmpOp::Eq => Ok(b),
            CmpOp::Ne => Ok(b.not()),
            _ => Err(EncodeError::Type("ordering applies to ints only".into())),
        };
        match (l, r) {
            (Value::Int(a), Value::Int(b)) => Ok(match op {
                CmpOp::Eq => a.eq(&b),
                CmpOp::Ne => a.eq(&b).not(),
                CmpOp::Lt => a.lt(&b),
                CmpOp::Le => a.le(&b),
                CmpOp::Gt => a.gt(&b),
                CmpOp::Ge => a.ge(&b),
            }),
            (Value::Bool(a), Value::Bool(b)) => eq_ne(a.eq(&b)),
            (Value::Str(a), Value::Str(b)) => eq_ne(a.eq(&b)),
            (Value::Str(a), Value::StrLit(s)) | (Value::StrLit(s), Value::Str(a)) => {
                let b = self.string(&s)?;
                eq_ne(a.eq(&b))
            }
            (Value::StrLit(a), Value::StrLit(b)) => eq_ne(Bool::from_bool(a == b)),
            (Value::Code(c, f), Value::StrLit(s)) | (Value::StrLit(s), Value::Code(c, f)) => {
                // A literal against a coded field: the literal's code; a
                // literal the plan does not know is a value no code has.
                let Some(Repr::Code(lits)) = self.plan.repr(f) else {
                    return Err(EncodeError::Type("coded field without literals".into()));
                };
                match lits.binary_search(&s) {
                    Ok(k) => eq_ne(c.eq(int_of(k))),
                    Err(_) => eq_ne(Bool::from_bool(false)),
                }
            }
            _ => Err(EncodeError::Type("operands of different types".into())),
        }
    }
}

/// A string for `Z3_mk_string`, which reads `\u{…}` escapes: printable
/// ASCII but `\` as is, the rest escaped. `None` above U+2FFFF.
pub fn z3_literal(s: &str) -> Option<String> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\u{5c}"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= MAX_CHAR => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn int_of(n: usize) -> Int {
    Int::from_i64(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(super) fn clone_value(v: &Value) -> Value {
    match v {
        Value::Int(x) => Value::Int(x.clone()),
        Value::Bool(x) => Value::Bool(x.clone()),
        Value::Str(x) => Value::Str(x.clone()),
        Value::StrLit(x) => Value::StrLit(x.clone()),
        Value::Code(x, f) => Value::Code(x.clone(), *f),
    }
}
