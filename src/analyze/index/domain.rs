//! What one field's value may be ([`Values`], [`Strs`] for strings), and the
//! algebra of those domains: intersection, union, emptiness. Every
//! operation over-approximates (sound for pruning); nothing here reads a
//! condition.

use std::collections::BTreeSet;

use crate::model::ir::CmpOp;

/// What a string field's value may be, when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strs {
    /// Anything but `not_exact` and what starts with one of `not_prefixes`
    /// (from `!=`, `not … in`, `not … starts_with`).
    Any {
        not_exact: BTreeSet<String>,
        not_prefixes: BTreeSet<String>,
    },
    /// One of `exact`, or anything starting with one of `prefixes`, or
    /// anything ending with one of `suffixes`.
    Some {
        exact: BTreeSet<String>,
        prefixes: BTreeSet<String>,
        suffixes: BTreeSet<String>,
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

    pub(super) fn excluding(not_exact: BTreeSet<String>, not_prefixes: BTreeSet<String>) -> Strs {
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

pub(super) fn exact(values: impl IntoIterator<Item = String>) -> Strs {
    Strs::Some {
        exact: values.into_iter().collect(),
        prefixes: BTreeSet::new(),
        suffixes: BTreeSet::new(),
    }
}

pub(super) fn int_values(op: CmpOp, v: i64) -> Option<Values> {
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

pub(super) fn values_empty(v: &Values) -> bool {
    match v {
        Values::Any => false,
        Values::Strs(Strs::Any { .. }) => false,
        Values::Strs(Strs::Some {
            exact,
            prefixes,
            suffixes,
        }) => exact.is_empty() && prefixes.is_empty() && suffixes.is_empty(),
        Values::Range(lo, hi) => lo > hi,
        Values::Ints(s) => s.is_empty(),
        Values::Members { must, must_not } => must.iter().any(|m| must_not.contains(m)),
    }
}

pub(super) fn intersect_values(a: &Values, b: &Values) -> Values {
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

pub(super) fn union_values(a: &Values, b: &Values) -> Values {
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
            Strs::Some {
                exact,
                prefixes,
                suffixes,
            },
        )
        | (
            Strs::Some {
                exact,
                prefixes,
                suffixes,
            },
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
                // Some string ending with a suffix escapes any exclusion.
                suffixes: suffixes.clone(),
            }
        }
        (
            Strs::Some {
                exact: ae,
                prefixes: ap,
                suffixes: asu,
            },
            Strs::Some {
                exact: be,
                prefixes: bp,
                suffixes: bsu,
            },
        ) => {
            let mut exact: BTreeSet<String> = ae.intersection(be).cloned().collect();
            let admitted = |s: &str, ps: &BTreeSet<String>, ss: &BTreeSet<String>| {
                ps.iter().any(|p| s.starts_with(p.as_str()))
                    || ss.iter().any(|x| s.ends_with(x.as_str()))
            };
            exact.extend(ae.iter().filter(|s| admitted(s, bp, bsu)).cloned());
            exact.extend(be.iter().filter(|s| admitted(s, ap, asu)).cloned());
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
            let mut suffixes = BTreeSet::new();
            for x in asu {
                for y in bsu {
                    if x.ends_with(y.as_str()) {
                        suffixes.insert(x.clone());
                    } else if y.ends_with(x.as_str()) {
                        suffixes.insert(y.clone());
                    }
                }
            }
            // A prefix meets any suffix (`p` then `s`): the prefix stands
            // for both (an over-approximation).
            if !asu.is_empty() {
                prefixes.extend(bp.iter().cloned());
            }
            if !bsu.is_empty() {
                prefixes.extend(ap.iter().cloned());
            }
            Strs::Some {
                exact,
                prefixes,
                suffixes,
            }
        }
    }
}

fn union_strs(a: &Strs, b: &Strs) -> Strs {
    match (a, b) {
        (
            Strs::Some {
                exact: ae,
                prefixes: ap,
                suffixes: asu,
            },
            Strs::Some {
                exact: be,
                prefixes: bp,
                suffixes: bsu,
            },
        ) => Strs::Some {
            exact: ae.union(be).cloned().collect(),
            prefixes: ap.union(bp).cloned().collect(),
            suffixes: asu.union(bsu).cloned().collect(),
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
            some @ Strs::Some {
                exact,
                prefixes,
                suffixes,
            },
        )
        | (
            some @ Strs::Some {
                exact,
                prefixes,
                suffixes,
            },
            Strs::Any {
                not_exact,
                not_prefixes,
            },
        ) => {
            Strs::excluding(
                not_exact
                    .iter()
                    .filter(|v| !some.admits(v))
                    .cloned()
                    .collect(),
                not_prefixes
                    .iter()
                    .filter(|q| {
                        // Some string under `q` ends with any suffix.
                        suffixes.is_empty()
                            && !exact.iter().any(|s| s.starts_with(q.as_str()))
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
            Strs::Some {
                exact,
                prefixes,
                suffixes,
            } => {
                exact.contains(value)
                    || prefixes.iter().any(|p| value.starts_with(p.as_str()))
                    || suffixes.iter().any(|x| value.ends_with(x.as_str()))
            }
        }
    }
}
