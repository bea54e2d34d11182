//! Conditions into Z3 formulas over one symbolic request, in negation
//! normal form: an atom that reads an absent optional field is false
//! (SPEC §2), string tests of automata-decided fields become their
//! booleans, the rest goes through `value`. No solving here.

use z3::ast::Bool;

use super::encoder::{Encoder, FieldVars, Vars};
use super::plan::Repr;
use super::strings::{StrTest, field_pair, str_test};
use super::value::{Value, clone_value};
use super::{EncodeError, Encoded, Needs, Override};
use crate::analyze::cond::read_fields;
use crate::analyze::lang::Atom;
use crate::model::ir::{CmpOp, Expr, Term};

impl Encoder<'_> {
    /// Encodes a condition (with `over` substituted, when given).
    pub fn encode(&mut self, e: &Expr, over: Option<&Override>) -> Result<Encoded, EncodeError> {
        let mut needs = Needs::default();
        let formula = self.expr(e, true, over, &mut needs)?;
        Ok(Encoded { formula, needs })
    }

    /// The presence condition of the fields an atom reads (`None` when all
    /// are required or overridden).
    fn presence(&self, fields: &[usize], over: Option<&Override>) -> Option<Bool> {
        let has: Vec<&Bool> = fields
            .iter()
            .filter(|f| over.is_none_or(|o| o.field != **f))
            .filter_map(|f| self.vars.get(*f).and_then(|v| v.has.as_ref()))
            .collect();
        match has.len() {
            0 => None,
            1 => has.first().map(|b| (*b).clone()),
            _ => Some(Bool::and(&has)),
        }
    }

    fn expr(
        &mut self,
        e: &Expr,
        positive: bool,
        over: Option<&Override>,
        needs: &mut Needs,
    ) -> Result<Bool, EncodeError> {
        match e {
            Expr::Const(b) => Ok(Bool::from_bool(*b == positive)),
            Expr::And(xs) | Expr::Or(xs) => {
                let parts = xs
                    .iter()
                    .map(|x| self.expr(x, positive, over, needs))
                    .collect::<Result<Vec<_>, _>>()?;
                let conj = matches!(e, Expr::And(_)) == positive;
                Ok(if conj {
                    Bool::and(&parts)
                } else {
                    Bool::or(&parts)
                })
            }
            Expr::Not(x) => self.expr(x, !positive, over, needs),
            Expr::Has(f) => {
                let i = self.field(f)?;
                let has = match self.vars.get(i).and_then(|v| v.has.clone()) {
                    Some(h) if over.is_none_or(|o| o.field != i) => h,
                    _ => Bool::from_bool(true),
                };
                Ok(if positive { has } else { has.not() })
            }
            atom => {
                let fields = read_fields(atom)
                    .into_iter()
                    .map(|f| self.field(f))
                    .collect::<Result<Vec<_>, _>>()?;
                let test = self.atom(atom, positive, over, needs)?;
                Ok(match (self.presence(&fields, over), positive) {
                    (None, _) => test,
                    (Some(p), true) => Bool::and(&[p, test]),
                    (Some(p), false) => Bool::or(&[p.not(), test]),
                })
            }
        }
    }

    /// An atom's test assuming its fields are present, with polarity.
    fn atom(
        &mut self,
        e: &Expr,
        positive: bool,
        over: Option<&Override>,
        needs: &mut Needs,
    ) -> Result<Bool, EncodeError> {
        let pol = |b: Bool| if positive { b } else { b.not() };
        if let (Some((f, g)), Expr::Cmp { op, .. }) = (field_pair(e, &self.plan.schema), e)
            && let Some(b) = self.field_pair(f, g, *op == CmpOp::Eq, over, needs)?
        {
            return Ok(pol(b));
        }
        match str_test(e, &self.plan.schema) {
            Some(StrTest::Const(b)) => return Ok(Bool::from_bool(b == positive)),
            Some(StrTest::Atom {
                field,
                atom,
                negated,
            }) => {
                let i = self.field(field)?;
                let positive = positive != negated;
                if let Some(o) = over.filter(|o| o.field == i) {
                    let holds = atom
                        .holds(&o.value)
                        .map_err(|e| EncodeError::Type(e.to_string()))?;
                    return Ok(Bool::from_bool(holds == positive));
                }
                if let Some(Repr::Lang(_)) = self.plan.repr(i) {
                    let var = self.lang_var(i, &atom, needs)?;
                    return Ok(if positive { var } else { var.not() });
                }
                // Otherwise (a coded or Z3 string field) below.
            }
            None => {}
        }
        match e {
            Expr::Truthy(f) => match self.value(&Term::Field(f.clone()), over, needs)? {
                Value::Bool(b) => Ok(pol(b)),
                _ => Err(EncodeError::Type(format!("`{f}` is not a bool"))),
            },
            Expr::Cmp { op, lhs, rhs, .. } => {
                let op = if positive { *op } else { op.negated() };
                let l = self.value(lhs, over, needs)?;
                let r = self.value(rhs, over, needs)?;
                self.compare(op, l, r)
            }
            Expr::In { lhs, values } => {
                let l = self.value(lhs, over, needs)?;
                let mut eqs = Vec::with_capacity(values.len());
                for v in values {
                    let r = self.value(&Term::Lit(v.clone()), over, needs)?;
                    eqs.push(self.compare(CmpOp::Eq, clone_value(&l), r)?);
                }
                Ok(pol(Bool::or(&eqs)))
            }
            Expr::SetContains { field, value } => {
                let i = self.field(field)?;
                let Some(Repr::Set(lits)) = self.plan.repr(i) else {
                    return Err(EncodeError::Type(format!("`{field}` is not a set")));
                };
                let Ok(k) = lits.binary_search(value) else {
                    return Ok(Bool::from_bool(!positive));
                };
                needs.sets.entry(i).or_default().insert(k);
                match self.vars.get(i) {
                    Some(FieldVars {
                        vars: Vars::Set { members, .. },
                        ..
                    }) => members
                        .get(k)
                        .map(|m| pol(m.clone()))
                        .ok_or_else(|| EncodeError::Type(format!("`{field}`: no slot"))),
                    _ => Err(EncodeError::Type(format!("`{field}` is not a set"))),
                }
            }
            Expr::Contains { field, .. }
            | Expr::StartsWith { field, .. }
            | Expr::EndsWith { field, .. }
            | Expr::Matches { field, .. } => Err(EncodeError::Type(format!(
                "`{field}` is not automata-decided"
            ))),
            Expr::Const(_) | Expr::And(_) | Expr::Or(_) | Expr::Not(_) | Expr::Has(_) => {
                Err(EncodeError::Type("internal: not an atom".to_string()))
            }
        }
    }

    /// `f == g` (or, with `eq` false, `f != g`) between string fields, when
    /// automata decide them; `None` to use the generic comparison.
    fn field_pair(
        &mut self,
        f: &str,
        g: &str,
        eq: bool,
        over: Option<&Override>,
        needs: &mut Needs,
    ) -> Result<Option<Bool>, EncodeError> {
        let (i, j) = (self.field(f)?, self.field(g)?);
        if i == j {
            return Ok(Some(Bool::from_bool(eq)));
        }
        // One side replaced by a literal: a test of the other side.
        if let Some(o) = over.filter(|o| o.field == i || o.field == j) {
            let other = if o.field == i { j } else { i };
            if !matches!(self.plan.repr(other), Some(Repr::Lang(_))) {
                return Ok(None);
            }
            let var = self.lang_var(other, &Atom::Eq(o.value.clone()), needs)?;
            return Ok(Some(if eq { var } else { var.not() }));
        }
        match self.eqs.get(&(i.min(j), i.max(j))) {
            Some(var) => {
                needs.eqs.insert((i.min(j), i.max(j)));
                Ok(Some(if eq { var.clone() } else { var.not() }))
            }
            None => Ok(None),
        }
    }

    /// The boolean of test `atom` on automata-decided field `i`.
    fn lang_var(&self, i: usize, atom: &Atom, needs: &mut Needs) -> Result<Bool, EncodeError> {
        let (Some(Repr::Lang(ids)), Some(Vars::Lang(vars))) =
            (self.plan.repr(i), self.vars.get(i).map(|v| &v.vars))
        else {
            return Err(EncodeError::Type(format!(
                "`{}` is not automata-decided",
                self.path(i)
            )));
        };
        let id = self.plan.atom_ids.get(atom).copied();
        let k = id.and_then(|id| ids.iter().position(|x| *x == id));
        match k.and_then(|k| vars.get(k).map(|v| (k, v.clone()))) {
            Some((k, var)) => {
                // The automaton is built now (once per analysis): a test
                // that has none leaves its rule out of the analysis.
                if let Some(id) = id
                    && let Err(e) = self.plan.table.lang(id)
                {
                    return Err(match atom {
                        Atom::Matches(p) => EncodeError::Regex {
                            pattern: p.clone(),
                            reason: e.to_string(),
                        },
                        _ => EncodeError::Type(e.to_string()),
                    });
                }
                needs.langs.entry(i).or_default().insert(k);
                Ok(var)
            }
            None => Err(EncodeError::Type(format!(
                "`{}`: the test {} is not in the plan",
                self.path(i),
                atom.describe()
            ))),
        }
    }
}
