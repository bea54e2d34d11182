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
//!
//! Submodules, each using only those before it: `domain` (what one field's
//! value may be, and the algebra of those domains) < `summary` (a
//! condition's [`Summary`]) and `trivial` (the obviously-satisfiable
//! check); the [`ToolIndex`] is here. Nothing here encodes or solves, and
//! `smt` is never used: what both read off a condition lives in `cond`.

mod domain;
mod summary;
mod trivial;

use std::collections::{BTreeMap, BTreeSet};

pub use self::domain::{Strs, Values};
pub use self::summary::{FieldDom, Summary, summarize};
pub use self::trivial::{DNF_CAP, RegexFacts, trivially_sat, trivially_sat_with};

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
                Some(Strs::Some { suffixes, .. }) if !suffixes.is_empty() => ix.any.push(i),
                Some(Strs::Some {
                    exact, prefixes, ..
                }) => {
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
            Strs::Some { suffixes, .. } if !suffixes.is_empty() => {
                out.extend(self.exact.values().flatten().copied());
                out.extend(self.prefixes.values().flatten().copied());
            }
            Strs::Some {
                exact, prefixes, ..
            } => {
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
    use crate::model::ir::{CmpOp, Expr, FieldDecl, Literal, Term, Type};
    use crate::model::schema::Schema;

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
