//! A condition's [`Summary`]: an over-approximation, field by field, of the
//! requests it can match (string values, int ranges, set members,
//! presence). Two summaries that do not intersect prove two conditions
//! exclusive; an empty one proves a condition dead. Never asks the solver.

use std::collections::{BTreeMap, BTreeSet};

use super::domain::{
    Strs, Values, exact, int_values, intersect_values, union_values, values_empty,
};
use crate::analyze::cond::read_fields;
use crate::model::ir::{CmpOp, Expr, Literal, Term, Type};
use crate::model::schema::Schema;

/// One field of a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDom {
    /// The field may be absent.
    pub absent: bool,
    /// The field may be present (with a value in `values`).
    pub present: bool,
    pub values: Values,
}

impl FieldDom {
    fn present(values: Values) -> FieldDom {
        FieldDom {
            absent: false,
            present: true,
            values,
        }
    }

    /// Absent, or present with a value in `values`.
    fn if_present(values: Values) -> FieldDom {
        FieldDom {
            absent: true,
            present: true,
            values,
        }
    }

    fn is_empty(&self, optional: bool) -> bool {
        (!optional || !self.absent) && (!self.present || values_empty(&self.values))
    }

    fn intersect(&self, o: &FieldDom) -> FieldDom {
        FieldDom {
            absent: self.absent && o.absent,
            present: self.present && o.present,
            values: intersect_values(&self.values, &o.values),
        }
    }

    fn union(&self, o: &FieldDom) -> FieldDom {
        let values = match (self.present, o.present) {
            (false, _) => o.values.clone(),
            (_, false) => self.values.clone(),
            _ => union_values(&self.values, &o.values),
        };
        FieldDom {
            absent: self.absent || o.absent,
            present: self.present || o.present,
            values,
        }
    }
}

/// An over-approximation of the requests a condition matches; `None` when
/// there are none. Fields not in the map are unconstrained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary(pub Option<BTreeMap<String, FieldDom>>);

impl Summary {
    fn top() -> Summary {
        Summary(Some(BTreeMap::new()))
    }

    fn bottom() -> Summary {
        Summary(None)
    }

    fn field(path: &str, dom: FieldDom) -> Summary {
        Summary(Some(BTreeMap::from([(path.to_string(), dom)])))
    }

    /// No request at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The requests both may match.
    pub fn intersect(&self, other: &Summary, schema: &Schema) -> Summary {
        let (Some(a), Some(b)) = (&self.0, &other.0) else {
            return Summary::bottom();
        };
        let mut out = a.clone();
        for (k, dom) in b {
            let merged = match out.get(k) {
                Some(d) => d.intersect(dom),
                None => dom.clone(),
            };
            let optional = schema.get(k).is_some_and(|f| f.optional);
            if merged.is_empty(optional) {
                return Summary::bottom();
            }
            out.insert(k.clone(), merged);
        }
        Summary(Some(out))
    }

    /// The requests either may match.
    pub fn union(&self, other: &Summary) -> Summary {
        match (&self.0, &other.0) {
            (None, _) => other.clone(),
            (_, None) => self.clone(),
            (Some(a), Some(b)) => Summary(Some(
                a.iter()
                    .filter_map(|(k, d)| b.get(k).map(|e| (k.clone(), d.union(e))))
                    .collect(),
            )),
        }
    }

    /// The two may match a common request (without building the
    /// intersection: only fields constrained by both can clash).
    pub fn overlaps(&self, other: &Summary, schema: &Schema) -> bool {
        let (Some(a), Some(b)) = (&self.0, &other.0) else {
            return false;
        };
        let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        small.iter().all(|(k, d)| match large.get(k) {
            None => true,
            Some(e) => {
                let optional = schema.get(k).is_some_and(|f| f.optional);
                !d.intersect(e).is_empty(optional)
            }
        })
    }

    /// This summary without `field`.
    pub fn without(&self, field: &str) -> Summary {
        Summary(self.0.as_ref().map(|m| {
            let mut m = m.clone();
            m.remove(field);
            m
        }))
    }

    /// What the summary allows `tool` (or another string field) to be.
    pub fn strs(&self, field: &str) -> Option<Strs> {
        let map = self.0.as_ref()?;
        Some(match map.get(field).map(|d| &d.values) {
            Some(Values::Strs(s)) => s.clone(),
            _ => Strs::any(),
        })
    }
}

/// The summary of the requests `e` may match (`positive`) or may not match.
pub fn summarize(e: &Expr, positive: bool, schema: &Schema) -> Summary {
    match e {
        Expr::Const(b) => {
            if *b == positive {
                Summary::top()
            } else {
                Summary::bottom()
            }
        }
        Expr::Not(x) => summarize(x, !positive, schema),
        Expr::And(xs) | Expr::Or(xs) => {
            let conj = matches!(e, Expr::And(_)) == positive;
            let parts = xs.iter().map(|x| summarize(x, positive, schema));
            if conj {
                parts.fold(Summary::top(), |acc, s| acc.intersect(&s, schema))
            } else {
                parts.fold(Summary::bottom(), |acc, s| acc.union(&s))
            }
        }
        Expr::Has(f) => {
            let dom = FieldDom {
                absent: !positive,
                present: positive,
                values: Values::Any,
            };
            if dom.is_empty(schema.get(f).is_some_and(|d| d.optional)) {
                Summary::bottom()
            } else {
                Summary::field(f, dom)
            }
        }
        atom => atom_summary(atom, positive, schema),
    }
}

fn atom_summary(e: &Expr, positive: bool, schema: &Schema) -> Summary {
    // The value domain when the atom holds (`t`) and when it fails on a
    // present value (`f`); `None` is "any".
    let (field, t, f): (Option<&str>, Option<Values>, Option<Values>) = match e {
        Expr::Cmp { op, lhs, rhs, ty } => {
            let (field, lit, op) = match (lhs, rhs) {
                (Term::Field(f), Term::Lit(l)) => (Some(f.as_str()), Some(l), *op),
                (Term::Lit(l), Term::Field(f)) => (Some(f.as_str()), Some(l), op.flipped()),
                _ => (None, None, *op),
            };
            match (field, lit, ty) {
                (Some(field), Some(Literal::Int(v)), Type::Int) => (
                    Some(field),
                    int_values(op, *v),
                    int_values(op.negated(), *v),
                ),
                (Some(field), Some(Literal::Str(s)), Type::Str) => {
                    let one = || Some(Values::Strs(exact([s.clone()])));
                    let not_one = || {
                        Some(Values::Strs(Strs::excluding(
                            BTreeSet::from([s.clone()]),
                            BTreeSet::new(),
                        )))
                    };
                    match op {
                        CmpOp::Eq => (Some(field), one(), not_one()),
                        CmpOp::Ne => (Some(field), not_one(), one()),
                        _ => (Some(field), None, None),
                    }
                }
                _ => (None, None, None),
            }
        }
        Expr::In {
            lhs: Term::Field(field),
            values,
        } => {
            let strs: BTreeSet<String> = values
                .iter()
                .filter_map(|v| match v {
                    Literal::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            let ints: BTreeSet<i64> = values
                .iter()
                .filter_map(|v| match v {
                    Literal::Int(i) => Some(*i),
                    _ => None,
                })
                .collect();
            let (t, f) = match schema.type_of(field) {
                Some(Type::Str) => (
                    Some(Values::Strs(exact(strs.clone()))),
                    Some(Values::Strs(Strs::excluding(strs, BTreeSet::new()))),
                ),
                Some(Type::Int) => (Some(Values::Ints(ints)), None),
                _ => (None, None),
            };
            (Some(field.as_str()), t, f)
        }
        Expr::SetContains { field, value } => {
            let one = || BTreeSet::from([value.clone()]);
            (
                Some(field.as_str()),
                Some(Values::Members {
                    must: one(),
                    must_not: BTreeSet::new(),
                }),
                Some(Values::Members {
                    must: BTreeSet::new(),
                    must_not: one(),
                }),
            )
        }
        Expr::EndsWith { field, value } => (
            Some(field.as_str()),
            Some(Values::Strs(Strs::Some {
                exact: BTreeSet::new(),
                prefixes: BTreeSet::new(),
                suffixes: BTreeSet::from([value.clone()]),
            })),
            None,
        ),
        Expr::StartsWith { field, value } => (
            Some(field.as_str()),
            Some(Values::Strs(Strs::Some {
                exact: BTreeSet::new(),
                prefixes: BTreeSet::from([value.clone()]),
                suffixes: BTreeSet::new(),
            })),
            Some(Values::Strs(Strs::excluding(
                BTreeSet::new(),
                BTreeSet::from([value.clone()]),
            ))),
        ),
        _ => (None, None, None),
    };
    let reads = read_fields(e);
    let mut map = BTreeMap::new();
    for r in reads {
        let values = if Some(r) == field {
            if positive { t.clone() } else { f.clone() }
        } else {
            None
        };
        let values = values.unwrap_or(Values::Any);
        let dom = if positive {
            FieldDom::present(values)
        } else {
            FieldDom::if_present(values)
        };
        let optional = schema.get(r).is_some_and(|d| d.optional);
        if dom.is_empty(optional) {
            return Summary::bottom();
        }
        map.insert(r.to_string(), dom);
    }
    Summary(Some(map))
}
