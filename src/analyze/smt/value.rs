//! The values of terms while encoding: fields, lengths, literals and
//! overridden fields as Z3 ints, booleans or codes ([`Value`]), and
//! comparisons between them. Conditions as a whole are `encode`'s; no
//! string is ever a Z3 string (`lang` decides them).

use z3::ast::{Bool, Int};

use super::encoder::{Encoder, Vars};
use super::plan::Repr;
use super::{EncodeError, Needs, Override};
use crate::model::ir::{CmpOp, Literal, Term};

/// How the value of a term is read.
pub(super) enum Value {
    Int(Int),
    Bool(Bool),
    /// A string literal (or an overridden field), kept as text until it
    /// meets the other operand.
    StrLit(String),
    /// A coded string: the code, and the field.
    Code(Int, usize),
}

impl Encoder<'_> {
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
                if let Some(len) = self.len_var(i) {
                    needs.lens.insert(i);
                    return Ok(Value::Int(len.clone()));
                }
                match self.vars.get(i).map(|v| &v.vars) {
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

fn int_of(n: usize) -> Int {
    Int::from_i64(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(super) fn clone_value(v: &Value) -> Value {
    match v {
        Value::Int(x) => Value::Int(x.clone()),
        Value::Bool(x) => Value::Bool(x.clone()),
        Value::StrLit(x) => Value::StrLit(x.clone()),
        Value::Code(x, f) => Value::Code(x.clone(), *f),
    }
}
