//! Cheap syntactic reasoning that keeps most pairs away from the solver.
//!
//! A [`Summary`] over-approximates the requests a condition can match, field
//! by field: which values a string can take (finite sets and prefixes, from
//! `==`, `in` and `starts_with`), the range of an int, and whether an
//! optional field is present. When two summaries do not intersect, the two
//! conditions cannot hold together and no query is needed; when a summary is
//! empty, the condition is dead without asking.
//!
//! [`ToolIndex`] indexes rules by what their summary pins `tool` to (exact
//! names, prefixes, or anything), like the evaluator's tool index, so a rule
//! is paired only with rules whose tools can overlap.
//!
//! [`trivially_sat`] recognises conditions that are obviously satisfiable
//! (a conjunction of simple tests on distinct fields), which is most rules.
//!
//! Everything here must be *sound*: a summary may contain requests the
//! condition does not match, never the reverse.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::ir::{CmpOp, Expr, Literal, Term, Type};
use crate::model::schema::Schema;

/// What a string field's value may be, when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strs {
    /// Anything but `not_exact` and what starts with one of `not_prefixes`
    /// (from `!=`, `not … in`, `not … starts_with`).
    Any {
        not_exact: BTreeSet<String>,
        not_prefixes: BTreeSet<String>,
    },
    /// One of `exact`, or anything starting with one of `prefixes`.
    Some {
        exact: BTreeSet<String>,
        prefixes: BTreeSet<String>,
    },
}

impl Strs {
    /// Any string.
    pub fn any() -> Strs {
        Strs::Any {
            not_exact: BTreeSet::new(),
            not_prefixes: BTreeSet::new(),
        }
    }

    fn excluding(not_exact: BTreeSet<String>, not_prefixes: BTreeSet<String>) -> Strs {
        Strs::Any {
            not_exact,
            not_prefixes,
        }
    }
}

/// What a field's value may be, when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values {
    Any,
    Strs(Strs),
    /// An inclusive range (empty when `lo > hi`).
    Range(i64, i64),
    Ints(BTreeSet<i64>),
    /// A set holding every literal of `must` and none of `must_not`.
    Members {
        must: BTreeSet<String>,
        must_not: BTreeSet<String>,
    },
}

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
                (Term::Lit(l), Term::Field(f)) => (Some(f.as_str()), Some(l), flip(*op)),
                _ => (None, None, *op),
            };
            match (field, lit, ty) {
                (Some(field), Some(Literal::Int(v)), Type::Int) => (
                    Some(field),
                    int_values(op, *v),
                    int_values(crate::analyze::smt::negate(op), *v),
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
        Expr::StartsWith { field, value } => (
            Some(field.as_str()),
            Some(Values::Strs(Strs::Some {
                exact: BTreeSet::new(),
                prefixes: BTreeSet::from([value.clone()]),
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

fn exact(values: impl IntoIterator<Item = String>) -> Strs {
    Strs::Some {
        exact: values.into_iter().collect(),
        prefixes: BTreeSet::new(),
    }
}

fn int_values(op: CmpOp, v: i64) -> Option<Values> {
    Some(match op {
        CmpOp::Eq => Values::Range(v, v),
        CmpOp::Ne => return None,
        CmpOp::Lt => match v.checked_sub(1) {
            Some(h) => Values::Range(i64::MIN, h),
            None => Values::Range(1, 0),
        },
        CmpOp::Le => Values::Range(i64::MIN, v),
        CmpOp::Gt => match v.checked_add(1) {
            Some(l) => Values::Range(l, i64::MAX),
            None => Values::Range(1, 0),
        },
        CmpOp::Ge => Values::Range(v, i64::MAX),
    })
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

fn values_empty(v: &Values) -> bool {
    match v {
        Values::Any => false,
        Values::Strs(Strs::Any { .. }) => false,
        Values::Strs(Strs::Some { exact, prefixes }) => exact.is_empty() && prefixes.is_empty(),
        Values::Range(lo, hi) => lo > hi,
        Values::Ints(s) => s.is_empty(),
        Values::Members { must, must_not } => must.iter().any(|m| must_not.contains(m)),
    }
}

fn intersect_values(a: &Values, b: &Values) -> Values {
    match (a, b) {
        (Values::Any, x) | (x, Values::Any) => x.clone(),
        (Values::Strs(x), Values::Strs(y)) => Values::Strs(intersect_strs(x, y)),
        (Values::Range(a1, a2), Values::Range(b1, b2)) => Values::Range(*a1.max(b1), *a2.min(b2)),
        (Values::Ints(s), Values::Range(lo, hi)) | (Values::Range(lo, hi), Values::Ints(s)) => {
            Values::Ints(s.iter().filter(|v| lo <= *v && *v <= hi).copied().collect())
        }
        (Values::Ints(s), Values::Ints(t)) => Values::Ints(s.intersection(t).copied().collect()),
        (
            Values::Members {
                must: m1,
                must_not: n1,
            },
            Values::Members {
                must: m2,
                must_not: n2,
            },
        ) => Values::Members {
            must: m1.union(m2).cloned().collect(),
            must_not: n1.union(n2).cloned().collect(),
        },
        // Kinds that cannot meet on one field: keep either (sound).
        (x, _) => x.clone(),
    }
}

fn union_values(a: &Values, b: &Values) -> Values {
    match (a, b) {
        (Values::Any, _) | (_, Values::Any) => Values::Any,
        (Values::Strs(x), Values::Strs(y)) => Values::Strs(union_strs(x, y)),
        (Values::Ints(s), Values::Ints(t)) => Values::Ints(s.union(t).copied().collect()),
        (
            Values::Members {
                must: m1,
                must_not: n1,
            },
            Values::Members {
                must: m2,
                must_not: n2,
            },
        ) => Values::Members {
            must: m1.intersection(m2).cloned().collect(),
            must_not: n1.intersection(n2).cloned().collect(),
        },
        (x, y) if values_empty(x) => y.clone(),
        (x, y) if values_empty(y) => x.clone(),
        (x, y) => match (hull(x), hull(y)) {
            (Some((a1, a2)), Some((b1, b2))) => Values::Range(a1.min(b1), a2.max(b2)),
            _ => Values::Any,
        },
    }
}

/// The smallest range holding a non-empty int domain.
fn hull(v: &Values) -> Option<(i64, i64)> {
    match v {
        Values::Range(lo, hi) if lo <= hi => Some((*lo, *hi)),
        Values::Ints(s) => Some((*s.first()?, *s.last()?)),
        _ => None,
    }
}

fn intersect_strs(a: &Strs, b: &Strs) -> Strs {
    match (a, b) {
        (
            Strs::Any {
                not_exact: e1,
                not_prefixes: p1,
            },
            Strs::Any {
                not_exact: e2,
                not_prefixes: p2,
            },
        ) => Strs::excluding(
            e1.union(e2).cloned().collect(),
            p1.union(p2).cloned().collect(),
        ),
        (
            Strs::Any {
                not_exact,
                not_prefixes,
            },
            Strs::Some { exact, prefixes },
        )
        | (
            Strs::Some { exact, prefixes },
            Strs::Any {
                not_exact,
                not_prefixes,
            },
        ) => {
            let excluded_by_prefix =
                |s: &str| not_prefixes.iter().any(|q| s.starts_with(q.as_str()));
            Strs::Some {
                exact: exact
                    .iter()
                    .filter(|s| !not_exact.contains(*s) && !excluded_by_prefix(s))
                    .cloned()
                    .collect(),
                // A prefix under an excluded prefix names only excluded
                // strings.
                prefixes: prefixes
                    .iter()
                    .filter(|p| !excluded_by_prefix(p))
                    .cloned()
                    .collect(),
            }
        }
        (
            Strs::Some {
                exact: ae,
                prefixes: ap,
            },
            Strs::Some {
                exact: be,
                prefixes: bp,
            },
        ) => {
            let mut exact: BTreeSet<String> = ae.intersection(be).cloned().collect();
            exact.extend(
                ae.iter()
                    .filter(|s| bp.iter().any(|p| s.starts_with(p.as_str())))
                    .cloned(),
            );
            exact.extend(
                be.iter()
                    .filter(|s| ap.iter().any(|p| s.starts_with(p.as_str())))
                    .cloned(),
            );
            let mut prefixes = BTreeSet::new();
            for x in ap {
                for y in bp {
                    if x.starts_with(y.as_str()) {
                        prefixes.insert(x.clone());
                    } else if y.starts_with(x.as_str()) {
                        prefixes.insert(y.clone());
                    }
                }
            }
            Strs::Some { exact, prefixes }
        }
    }
}

fn union_strs(a: &Strs, b: &Strs) -> Strs {
    match (a, b) {
        (
            Strs::Some {
                exact: ae,
                prefixes: ap,
            },
            Strs::Some {
                exact: be,
                prefixes: bp,
            },
        ) => Strs::Some {
            exact: ae.union(be).cloned().collect(),
            prefixes: ap.union(bp).cloned().collect(),
        },
        // Excluded by both (keeping less is sound).
        (
            Strs::Any {
                not_exact: e1,
                not_prefixes: p1,
            },
            Strs::Any {
                not_exact: e2,
                not_prefixes: p2,
            },
        ) => Strs::excluding(
            e1.intersection(e2).cloned().collect(),
            p1.intersection(p2).cloned().collect(),
        ),
        // Excluded, and not let in by the other side.
        (
            Strs::Any {
                not_exact,
                not_prefixes,
            },
            Strs::Some { exact, prefixes },
        )
        | (
            Strs::Some { exact, prefixes },
            Strs::Any {
                not_exact,
                not_prefixes,
            },
        ) => {
            let admits =
                |s: &str| exact.contains(s) || prefixes.iter().any(|p| s.starts_with(p.as_str()));
            Strs::excluding(
                not_exact.iter().filter(|v| !admits(v)).cloned().collect(),
                not_prefixes
                    .iter()
                    .filter(|q| {
                        !exact.iter().any(|s| s.starts_with(q.as_str()))
                            && !prefixes
                                .iter()
                                .any(|p| p.starts_with(q.as_str()) || q.starts_with(p.as_str()))
                    })
                    .cloned()
                    .collect(),
            )
        }
    }
}

impl Strs {
    /// Whether `value` is in the domain.
    pub fn admits(&self, value: &str) -> bool {
        match self {
            Strs::Any {
                not_exact,
                not_prefixes,
            } => {
                !not_exact.contains(value)
                    && !not_prefixes.iter().any(|p| value.starts_with(p.as_str()))
            }
            Strs::Some { exact, prefixes } => {
                exact.contains(value) || prefixes.iter().any(|p| value.starts_with(p.as_str()))
            }
        }
    }
}

/// The fields an atom reads.
pub(super) fn read_fields(e: &Expr) -> Vec<&str> {
    match e {
        Expr::Truthy(f)
        | Expr::Has(f)
        | Expr::Contains { field: f, .. }
        | Expr::SetContains { field: f, .. }
        | Expr::StartsWith { field: f, .. }
        | Expr::EndsWith { field: f, .. }
        | Expr::Matches { field: f, .. } => vec![f],
        Expr::Cmp { lhs, rhs, .. } => [lhs, rhs].into_iter().filter_map(Term::field).collect(),
        Expr::In { lhs, .. } => lhs.field().into_iter().collect(),
        Expr::Const(_) | Expr::And(_) | Expr::Or(_) | Expr::Not(_) => Vec::new(),
    }
}

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
        let can_match =
            crate::analyze::regex::search_language(pattern).is_ok_and(|t| t != "re.none");
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
                    (Term::Lit(Literal::Int(v)), t) if is_term(t) => (flip(*op), *v),
                    _ => return false,
                };
                let op = if *positive {
                    op
                } else {
                    crate::analyze::smt::negate(op)
                };
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
            let op = if positive {
                *op
            } else {
                crate::analyze::smt::negate(*op)
            };
            match (lhs, rhs, ty) {
                (Term::Field(_), Term::Lit(Literal::Int(v)), Type::Int) => {
                    int_values(op, *v).is_none_or(|d| !values_empty(&d))
                }
                (Term::Lit(Literal::Int(v)), Term::Field(_), Type::Int) => {
                    int_values(flip(op), *v).is_none_or(|d| !values_empty(&d))
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

/// Items indexed by what their summary allows `tool` to be.
#[derive(Debug, Default)]
pub struct ToolIndex {
    exact: BTreeMap<String, Vec<usize>>,
    prefixes: BTreeMap<String, Vec<usize>>,
    any: Vec<usize>,
}

impl ToolIndex {
    /// Indexes `(item, tool domain)` pairs; an item with an empty summary
    /// (`None`) is left out: it matches nothing.
    pub fn new<'a>(items: impl IntoIterator<Item = (usize, Option<&'a Strs>)>) -> ToolIndex {
        let mut ix = ToolIndex::default();
        for (i, dom) in items {
            match dom {
                None => {}
                Some(Strs::Any { .. }) => ix.any.push(i),
                Some(Strs::Some { exact, prefixes }) => {
                    for t in exact {
                        ix.exact.entry(t.clone()).or_default().push(i);
                    }
                    for p in prefixes {
                        ix.prefixes.entry(p.clone()).or_default().push(i);
                    }
                }
            }
        }
        ix
    }

    /// Items that may match a request whose tool is in `dom`.
    pub fn candidates(&self, dom: &Strs) -> BTreeSet<usize> {
        let mut out: BTreeSet<usize> = self.any.iter().copied().collect();
        match dom {
            Strs::Any { .. } => {
                out.extend(self.exact.values().flatten().copied());
                out.extend(self.prefixes.values().flatten().copied());
            }
            Strs::Some { exact, prefixes } => {
                for t in exact {
                    out.extend(self.admitting_only(t));
                }
                for p in prefixes {
                    // Exact names and longer prefixes under `p`…
                    for (_, v) in self
                        .exact
                        .range(p.clone()..)
                        .take_while(|(k, _)| k.starts_with(p.as_str()))
                    {
                        out.extend(v.iter().copied());
                    }
                    for (_, v) in self
                        .prefixes
                        .range(p.clone()..)
                        .take_while(|(k, _)| k.starts_with(p.as_str()))
                    {
                        out.extend(v.iter().copied());
                    }
                    // …and shorter prefixes of `p`.
                    out.extend(self.prefixes_of(p));
                }
            }
        }
        out
    }

    /// Items that may match a request whose tool is exactly `tool`.
    pub fn admitting(&self, tool: &str) -> BTreeSet<usize> {
        let mut out: BTreeSet<usize> = self.any.iter().copied().collect();
        out.extend(self.admitting_only(tool));
        out
    }

    fn admitting_only(&self, tool: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.exact.get(tool).cloned().unwrap_or_default();
        out.extend(self.prefixes_of(tool));
        out
    }

    /// Items with a prefix that `s` starts with.
    fn prefixes_of(&self, s: &str) -> Vec<usize> {
        let mut out = Vec::new();
        for (k, _) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
            if let Some(v) = s.get(..k).and_then(|p| self.prefixes.get(p)) {
                out.extend(v.iter().copied());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ir::FieldDecl;

    fn schema() -> Schema {
        let f = |path: &str, ty, optional| FieldDecl {
            path: path.into(),
            ty,
            optional,
        };
        Schema::new(vec![
            f("tool", Type::Str, false),
            f("n", Type::Int, false),
            f("body", Type::Str, true),
        ])
    }

    fn cmp(field: &str, op: CmpOp, lit: Literal) -> Expr {
        let ty = match lit {
            Literal::Int(_) => Type::Int,
            Literal::Str(_) => Type::Str,
            Literal::Bool(_) => Type::Bool,
        };
        Expr::Cmp {
            op,
            lhs: Term::Field(field.into()),
            rhs: Term::Lit(lit),
            ty,
        }
    }

    #[test]
    fn boundaries_are_disjoint() {
        let s = schema();
        let a = summarize(&cmp("n", CmpOp::Ge, Literal::Int(1000)), true, &s);
        let b = summarize(&cmp("n", CmpOp::Lt, Literal::Int(1000)), true, &s);
        let c = summarize(&cmp("n", CmpOp::Le, Literal::Int(1000)), true, &s);
        assert!(!a.overlaps(&b, &s));
        assert!(a.overlaps(&c, &s));
    }

    #[test]
    fn absent_and_present_are_disjoint() {
        let s = schema();
        let absent = summarize(&Expr::Not(Box::new(Expr::Has("body".into()))), true, &s);
        let reads = summarize(
            &Expr::Contains {
                field: "body".into(),
                value: "x".into(),
            },
            true,
            &s,
        );
        let negated = summarize(
            &Expr::Not(Box::new(Expr::Contains {
                field: "body".into(),
                value: "x".into(),
            })),
            true,
            &s,
        );
        assert!(!absent.overlaps(&reads, &s));
        assert!(absent.overlaps(&negated, &s));
    }

    #[test]
    fn tool_prefixes_index() {
        let s = schema();
        let a = summarize(
            &Expr::StartsWith {
                field: "tool".into(),
                value: "pay.".into(),
            },
            true,
            &s,
        );
        let b = summarize(
            &cmp("tool", CmpOp::Eq, Literal::Str("pay.x".into())),
            true,
            &s,
        );
        let c = summarize(
            &cmp("tool", CmpOp::Eq, Literal::Str("mail".into())),
            true,
            &s,
        );
        assert!(a.overlaps(&b, &s));
        assert!(!a.overlaps(&c, &s));
        let doms = [a.strs("tool"), b.strs("tool"), c.strs("tool")];
        let ix = ToolIndex::new(doms.iter().enumerate().map(|(i, d)| (i, d.as_ref())));
        assert_eq!(ix.admitting("pay.x"), BTreeSet::from([0, 1]));
        let Some(da) = &doms[0] else { return };
        assert_eq!(ix.candidates(da), BTreeSet::from([0, 1]));
    }

    #[test]
    fn trivial_conjunctions() {
        let s = schema();
        let e = Expr::And(vec![
            cmp("tool", CmpOp::Eq, Literal::Str("a".into())),
            cmp("n", CmpOp::Gt, Literal::Int(3)),
        ]);
        assert!(trivially_sat(&e, &s));
        let range = |lo: i64, hi: i64| {
            Expr::And(vec![
                cmp("n", CmpOp::Gt, Literal::Int(lo)),
                cmp("n", CmpOp::Lt, Literal::Int(hi)),
            ])
        };
        assert!(trivially_sat(&range(3, 9), &s));
        assert!(!trivially_sat(&range(3, 4), &s));
        assert!(!trivially_sat(
            &cmp("n", CmpOp::Gt, Literal::Int(i64::MAX)),
            &s
        ));
        // `(not has(body) or n < 1)`: one disjunct suffices.
        let either = Expr::Or(vec![
            Expr::Not(Box::new(Expr::Has("body".into()))),
            cmp("n", CmpOp::Lt, Literal::Int(1)),
        ]);
        assert!(trivially_sat(&Expr::And(vec![range(3, 9), either]), &s));
        // Two kinds of string tests on one field: the solver decides.
        let two = Expr::And(vec![
            Expr::StartsWith {
                field: "body".into(),
                value: "a".into(),
            },
            Expr::EndsWith {
                field: "body".into(),
                value: "b".into(),
            },
        ]);
        assert!(!trivially_sat(&two, &s));
    }
}
