//! The obviously-satisfiable check ([`trivially_sat`]): a condition whose
//! disjunctive normal form has a conjunction of simple, compatible tests
//! needs no solver to be known live. False means "ask the solver", never
//! "unsatisfiable".

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::domain::{Values, int_values, values_empty};
use crate::analyze::cond::read_fields;
use crate::model::ir::{CmpOp, Expr, Literal, Term, Type};
use crate::model::schema::Schema;

/// True when `e` is obviously satisfiable: one of the (at most [`DNF_CAP`])
/// conjunctions of its disjunctive normal form holds simple tests only,
/// each field's tests satisfiable together — ranges on an int or a length,
/// equalities and exclusions on a string, members and a length of a set, a
/// lone string test (a regex only when it can match), presence. False means
/// "ask the solver", not "unsatisfiable".
pub fn trivially_sat(e: &Expr, schema: &Schema) -> bool {
    trivially_sat_with(e, schema, &mut RegexFacts::default())
}

/// [`trivially_sat`] with what is known of the regexes so far (a set
/// repeats its patterns; compiling one per rule would dominate).
pub fn trivially_sat_with(e: &Expr, schema: &Schema, facts: &mut RegexFacts) -> bool {
    dnf(e, true).is_some_and(|terms| terms.iter().any(|t| conjunction_sat(t, schema, facts)))
}

/// Per pattern: can it match some string, and does it match the empty one?
#[derive(Debug, Default)]
pub struct RegexFacts {
    facts: HashMap<String, (bool, bool)>,
}

impl RegexFacts {
    fn get(&mut self, pattern: &str) -> (bool, bool) {
        if let Some(f) = self.facts.get(pattern) {
            return *f;
        }
        let can_match = crate::analyze::lang::can_match(pattern);
        // A pattern that does not compile "matches everything" here, so
        // that nothing is concluded from it.
        let matches_empty = regex::Regex::new(pattern).map_or(true, |r| r.is_match(""));
        self.facts
            .insert(pattern.to_string(), (can_match, matches_empty));
        (can_match, matches_empty)
    }
}

/// Disjunctive normal forms past this many conjunctions are not expanded.
pub const DNF_CAP: usize = 16;

type Literals<'e> = Vec<(&'e Expr, bool)>;

fn dnf(e: &Expr, positive: bool) -> Option<Vec<Literals<'_>>> {
    match e {
        Expr::Const(b) => Some(if *b == positive {
            vec![Vec::new()]
        } else {
            Vec::new()
        }),
        Expr::Not(x) => dnf(x, !positive),
        Expr::And(xs) | Expr::Or(xs) => {
            if matches!(e, Expr::And(_)) == positive {
                let mut acc: Vec<Literals<'_>> = vec![Vec::new()];
                for x in xs {
                    let d = dnf(x, positive)?;
                    let mut next = Vec::with_capacity(acc.len() * d.len());
                    for a in &acc {
                        for b in &d {
                            next.push(a.iter().chain(b).copied().collect());
                        }
                    }
                    if next.len() > DNF_CAP {
                        return None;
                    }
                    acc = next;
                }
                Some(acc)
            } else {
                let mut acc = Vec::new();
                for x in xs {
                    acc.extend(dnf(x, positive)?);
                    if acc.len() > DNF_CAP {
                        return None;
                    }
                }
                Some(acc)
            }
        }
        atom => Some(vec![vec![(atom, positive)]]),
    }
}

fn conjunction_sat(lits: &[(&Expr, bool)], schema: &Schema, facts: &mut RegexFacts) -> bool {
    let mut by_field: BTreeMap<&str, Vec<(&Expr, bool)>> = BTreeMap::new();
    for (atom, positive) in lits {
        let fields = read_fields(atom);
        let [field] = fields.as_slice() else {
            return false;
        };
        by_field.entry(field).or_default().push((atom, *positive));
    }
    by_field
        .iter()
        .all(|(field, atoms)| field_sat(field, atoms, schema, facts))
}

/// Can one value (or absence) of `field` meet all of `atoms`?
fn field_sat(
    field: &str,
    atoms: &[(&Expr, bool)],
    schema: &Schema,
    facts: &mut RegexFacts,
) -> bool {
    let Some(decl) = schema.get(field) else {
        return false;
    };
    let must_be_absent = atoms.iter().any(|(a, p)| matches!(a, Expr::Has(_)) && !*p);
    let must_be_present = atoms.iter().any(|(a, p)| *p && !matches!(a, Expr::Has(_)))
        || atoms.iter().any(|(a, p)| matches!(a, Expr::Has(_)) && *p);
    if must_be_absent {
        // Every atom reading it is negative, hence true when it is absent.
        return decl.optional && !must_be_present;
    }
    let tests: Vec<(&Expr, bool)> = atoms
        .iter()
        .filter(|(a, _)| !matches!(a, Expr::Has(_)))
        .copied()
        .collect();
    if tests.is_empty() || (decl.optional && !must_be_present) {
        return true;
    }
    if let [(atom, positive)] = tests.as_slice() {
        return atom_sat(atom, *positive, schema, facts);
    }
    match decl.ty {
        Type::Int => ints_sat(&tests, |t| matches!(t, Term::Field(_))),
        Type::Str => eq_strings_sat(&tests) || ints_sat(&tests, |t| matches!(t, Term::Len(_))),
        Type::StrSet => set_sat(&tests),
        Type::Bool => bools_sat(&tests),
    }
}

/// Int constraints on one term (`is_term` says which side is the field or
/// its length): ranges, `in` lists and exclusions; lengths start at 0.
fn ints_sat(tests: &[(&Expr, bool)], is_term: impl Fn(&Term) -> bool) -> bool {
    let lengths = tests.iter().any(|(a, _)| {
        matches!(
            a,
            Expr::Cmp {
                lhs: Term::Len(_),
                ..
            } | Expr::Cmp {
                rhs: Term::Len(_),
                ..
            }
        ) || matches!(
            a,
            Expr::In {
                lhs: Term::Len(_),
                ..
            }
        )
    });
    let (mut lo, mut hi) = (if lengths { 0 } else { i64::MIN }, i64::MAX);
    let mut allowed: Option<BTreeSet<i64>> = None;
    let mut excluded: BTreeSet<i64> = BTreeSet::new();
    for (atom, positive) in tests {
        match atom {
            Expr::Cmp { op, lhs, rhs, .. } => {
                let (op, v) = match (lhs, rhs) {
                    (t, Term::Lit(Literal::Int(v))) if is_term(t) => (*op, *v),
                    (Term::Lit(Literal::Int(v)), t) if is_term(t) => (op.flipped(), *v),
                    _ => return false,
                };
                let op = if *positive { op } else { op.negated() };
                match int_values(op, v) {
                    Some(Values::Range(l, h)) => {
                        lo = lo.max(l);
                        hi = hi.min(h);
                    }
                    None => {
                        excluded.insert(v);
                    }
                    Some(_) => return false,
                }
            }
            Expr::In { lhs, values } if is_term(lhs) => {
                let set: BTreeSet<i64> = values
                    .iter()
                    .filter_map(|v| match v {
                        Literal::Int(i) => Some(*i),
                        _ => None,
                    })
                    .collect();
                if *positive {
                    allowed = Some(match allowed {
                        Some(a) => a.intersection(&set).copied().collect(),
                        None => set,
                    });
                } else {
                    excluded.extend(set);
                }
            }
            _ => return false,
        }
    }
    match allowed {
        Some(set) => set
            .iter()
            .any(|v| lo <= *v && *v <= hi && !excluded.contains(v)),
        None => {
            lo <= hi && {
                let span = i128::from(hi) - i128::from(lo) + 1;
                let inside = excluded.iter().filter(|v| lo <= **v && **v <= hi).count();
                span > i128::try_from(inside).unwrap_or(i128::MAX)
            }
        }
    }
}

/// Equality tests on one string: `==`, `!=`, `in` and their negations.
fn eq_strings_sat(tests: &[(&Expr, bool)]) -> bool {
    let mut allowed: Option<BTreeSet<&str>> = None;
    let mut excluded: BTreeSet<&str> = BTreeSet::new();
    for (atom, positive) in tests {
        let (values, eq): (Vec<&str>, bool) = match atom {
            Expr::Cmp { op, lhs, rhs, .. } => {
                let v = match (lhs, rhs) {
                    (Term::Field(_), Term::Lit(Literal::Str(v)))
                    | (Term::Lit(Literal::Str(v)), Term::Field(_)) => v.as_str(),
                    _ => return false,
                };
                match op {
                    CmpOp::Eq => (vec![v], *positive),
                    CmpOp::Ne => (vec![v], !*positive),
                    _ => return false,
                }
            }
            Expr::In {
                lhs: Term::Field(_),
                values,
            } => (
                values
                    .iter()
                    .filter_map(|v| match v {
                        Literal::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect(),
                *positive,
            ),
            _ => return false,
        };
        if eq {
            let set: BTreeSet<&str> = values.into_iter().collect();
            allowed = Some(match allowed {
                Some(a) => a.intersection(&set).copied().collect(),
                None => set,
            });
        } else {
            excluded.extend(values);
        }
    }
    allowed.is_none_or(|a| a.iter().any(|v| !excluded.contains(v)))
}

/// Members and length of one set: the literals it must and must not hold,
/// and a length that fits them.
fn set_sat(tests: &[(&Expr, bool)]) -> bool {
    let mut must: BTreeSet<&str> = BTreeSet::new();
    let mut must_not: BTreeSet<&str> = BTreeSet::new();
    let mut lengths = Vec::new();
    for (atom, positive) in tests {
        match atom {
            Expr::SetContains { value, .. } => {
                if *positive {
                    must.insert(value);
                } else {
                    must_not.insert(value);
                }
            }
            _ => lengths.push((*atom, *positive)),
        }
    }
    if must.iter().any(|v| must_not.contains(v)) {
        return false;
    }
    let at_least = i64::try_from(must.len()).unwrap_or(i64::MAX);
    let floor = Expr::Cmp {
        op: CmpOp::Ge,
        lhs: Term::Len(String::new()),
        rhs: Term::Lit(Literal::Int(at_least)),
        ty: Type::Int,
    };
    lengths.push((&floor, true));
    ints_sat(&lengths, |t| matches!(t, Term::Len(_)))
}

/// Tests of one bool: some value meets them all.
fn bools_sat(tests: &[(&Expr, bool)]) -> bool {
    [true, false].iter().any(|v| {
        tests.iter().all(|(atom, positive)| {
            let holds = match atom {
                Expr::Truthy(_) => Some(*v),
                Expr::Cmp { op, lhs, rhs, .. } => match (lhs, rhs) {
                    (Term::Field(_), Term::Lit(Literal::Bool(b)))
                    | (Term::Lit(Literal::Bool(b)), Term::Field(_)) => match op {
                        CmpOp::Eq => Some(v == b),
                        CmpOp::Ne => Some(v != b),
                        _ => None,
                    },
                    _ => None,
                },
                Expr::In { values, .. } => Some(values.contains(&Literal::Bool(*v))),
                _ => None,
            };
            holds.is_some_and(|h| h == *positive)
        })
    })
}

fn atom_sat(e: &Expr, positive: bool, schema: &Schema, facts: &mut RegexFacts) -> bool {
    match e {
        Expr::Has(f) => positive || schema.get(f).is_some_and(|d| d.optional),
        Expr::Truthy(_) | Expr::SetContains { .. } => true,
        Expr::Cmp { op, lhs, rhs, ty } => {
            let op = if positive { *op } else { op.negated() };
            match (lhs, rhs, ty) {
                (Term::Field(_), Term::Lit(Literal::Int(v)), Type::Int) => {
                    int_values(op, *v).is_none_or(|d| !values_empty(&d))
                }
                (Term::Lit(Literal::Int(v)), Term::Field(_), Type::Int) => {
                    int_values(op.flipped(), *v).is_none_or(|d| !values_empty(&d))
                }
                (Term::Len(_), Term::Lit(_), Type::Int)
                | (Term::Lit(_), Term::Len(_), Type::Int) => {
                    ints_sat(&[(e, positive)], |t| matches!(t, Term::Len(_)))
                }
                (Term::Field(_), Term::Lit(_), Type::Str | Type::Bool)
                | (Term::Lit(_), Term::Field(_), Type::Str | Type::Bool) => true,
                _ => false,
            }
        }
        Expr::In {
            lhs: Term::Field(f),
            values,
        } => match schema.type_of(f) {
            Some(Type::Bool) => {
                let t = values.contains(&Literal::Bool(true));
                let fl = values.contains(&Literal::Bool(false));
                if positive { t || fl } else { !(t && fl) }
            }
            Some(Type::Int | Type::Str) => !positive || !values.is_empty(),
            _ => false,
        },
        Expr::In {
            lhs: Term::Len(_), ..
        } => ints_sat(&[(e, positive)], |t| matches!(t, Term::Len(_))),
        Expr::Contains { value, .. }
        | Expr::StartsWith { value, .. }
        | Expr::EndsWith { value, .. } => positive || !value.is_empty(),
        // A regex some string matches (its search language is not empty);
        // negated, one that does not match the empty string.
        Expr::Matches { pattern, .. } => {
            let (can_match, matches_empty) = facts.get(pattern);
            if positive { can_match } else { !matches_empty }
        }
        _ => false,
    }
}
