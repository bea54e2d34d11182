//! The encoder's state on one thread: the Z3 constants of every field
//! (Z3 terms belong to the thread that made them) and what every query
//! adds ([`Encoder::domain`]). Turning conditions into formulas is
//! `encode`'s; reading models is `refine`'s and `model`'s.

use std::collections::BTreeMap;

use z3::Model;
use z3::ast::{Bool, Int};

use super::plan::{Plan, Repr};
use super::{EncodeError, Needs};

#[derive(Debug)]
pub(super) enum Vars {
    Int(Int),
    Bool(Bool),
    Code(Int),
    Lang(Vec<Bool>),
    Set { len: Int, members: Vec<Bool> },
}

#[derive(Debug)]
pub(super) struct FieldVars {
    pub(super) has: Option<Bool>,
    pub(super) vars: Vars,
    /// The length of an automata-decided string whose length is read.
    pub(super) len: Option<Int>,
}

/// Encodes conditions of one plan. Thread-bound (Z3 terms).
#[derive(Debug)]
pub struct Encoder<'p> {
    pub(super) plan: &'p Plan,
    pub(super) vars: Vec<FieldVars>,
    /// "These two fields hold the same string", per `Plan::pairs`.
    pub(super) eqs: BTreeMap<(usize, usize), Bool>,
}

impl<'p> Encoder<'p> {
    pub fn new(plan: &'p Plan) -> Encoder<'p> {
        let vars = plan
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let p = &f.decl.path;
                let vars = match &f.repr {
                    Repr::Int => Vars::Int(Int::new_const(p.as_str())),
                    Repr::Bool => Vars::Bool(Bool::new_const(p.as_str())),
                    Repr::Code(_) => Vars::Code(Int::new_const(format!("code!{p}"))),
                    Repr::Lang(ids) => Vars::Lang(
                        ids.iter()
                            .map(|id| Bool::new_const(format!("test!{p}!{id}")))
                            .collect(),
                    ),
                    Repr::Set(lits) => Vars::Set {
                        len: Int::new_const(format!("len!{p}")),
                        members: (0..lits.len())
                            .map(|i| Bool::new_const(format!("in!{p}!{i}")))
                            .collect(),
                    },
                };
                FieldVars {
                    has: f.decl.optional.then(|| Bool::new_const(format!("has!{p}"))),
                    vars,
                    len: plan
                        .lens
                        .contains(&i)
                        .then(|| Int::new_const(format!("len!{p}"))),
                }
            })
            .collect();
        let eqs = plan
            .pairs
            .iter()
            .map(|&(a, b)| {
                let name = |k: usize| plan.fields.get(k).map_or("", |f| f.decl.path.as_str());
                (
                    (a, b),
                    Bool::new_const(format!("eq!{}!{}", name(a), name(b))),
                )
            })
            .collect();
        Encoder { plan, vars, eqs }
    }

    pub fn plan(&self) -> &'p Plan {
        self.plan
    }

    /// "The optional field is present" (true for a required field).
    pub fn present(&self, path: &str) -> Result<Bool, EncodeError> {
        let i = self.field(path)?;
        Ok(self
            .vars
            .get(i)
            .and_then(|v| v.has.clone())
            .unwrap_or_else(|| Bool::from_bool(true)))
    }

    /// The constraints every query over `needs` adds: ints within `i64`, a
    /// set's length at least the number of literals it holds, a string's
    /// length not negative (and the same as the length of a string it is
    /// equal to).
    pub fn domain(&self, needs: &Needs) -> Vec<Bool> {
        let mut out = Vec::new();
        for i in &needs.ints {
            if let Some(FieldVars {
                vars: Vars::Int(v), ..
            }) = self.vars.get(*i)
            {
                out.push(v.ge(Int::from_i64(i64::MIN)));
                out.push(v.le(Int::from_i64(i64::MAX)));
            }
        }
        for (f, lits) in &needs.sets {
            if let Some(FieldVars {
                vars: Vars::Set { len, members },
                ..
            }) = self.vars.get(*f)
            {
                let one = Int::from_i64(1);
                let zero = Int::from_i64(0);
                let counted: Vec<Int> = lits
                    .iter()
                    .filter_map(|l| members.get(*l))
                    .map(|m| m.ite(&one, &zero))
                    .collect();
                out.push(if counted.is_empty() {
                    len.ge(&zero)
                } else {
                    len.ge(Int::add(&counted))
                });
            }
        }
        for f in &needs.lens {
            if let Some(len) = self.len_var(*f) {
                out.push(len.ge(Int::from_i64(0)));
            }
        }
        for pair in &needs.eqs {
            let (a, b) = *pair;
            if let (Some(la), Some(lb), Some(eq)) =
                (self.len_var(a), self.len_var(b), self.eqs.get(pair))
                && needs.lens.contains(&a)
                && needs.lens.contains(&b)
            {
                out.push(eq.implies(la.eq(lb)));
            }
        }
        out
    }

    /// The length of string field `f`, when its length is read.
    pub(super) fn len_var(&self, f: usize) -> Option<&Int> {
        self.vars.get(f).and_then(|v| v.len.as_ref())
    }

    pub(super) fn is_present(&self, model: &Model, f: usize) -> bool {
        match self.vars.get(f).and_then(|v| v.has.as_ref()) {
            None => true,
            Some(h) => model.eval(h, true).and_then(|b| b.as_bool()) == Some(true),
        }
    }

    pub(super) fn path(&self, f: usize) -> &str {
        self.plan.fields.get(f).map_or("", |p| p.decl.path.as_str())
    }

    pub(super) fn field(&self, path: &str) -> Result<usize, EncodeError> {
        self.plan
            .index(path)
            .ok_or_else(|| EncodeError::UnknownField(path.to_string()))
    }
}
