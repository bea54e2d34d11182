//! The tool index: per `tool` value, the rules and limits a request with
//! that tool can match, plus those that may match any tool, merged in check
//! order.
//!
//! An over-approximation computed from the conditions at load time: the
//! index may let through a check that does not match, never hold back one
//! that does. It decides what is examined, never what matches.

use std::collections::{BTreeSet, HashMap};

use crate::eval::TOOL_FIELD;
use crate::eval::compiled::str_of;
use crate::eval::request::Request;
use crate::model::ir::{CmpOp, Expr, Literal, Term};

/// An over-approximation of the tool values for which something can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tools {
    Any,
    Only(BTreeSet<String>),
}

impl Tools {
    fn none() -> Tools {
        Tools::Only(BTreeSet::new())
    }

    fn union(self, other: Tools) -> Tools {
        match (self, other) {
            (Tools::Only(mut a), Tools::Only(b)) => {
                a.extend(b);
                Tools::Only(a)
            }
            _ => Tools::Any,
        }
    }

    fn intersect(self, other: Tools) -> Tools {
        match (self, other) {
            (Tools::Any, x) | (x, Tools::Any) => x,
            (Tools::Only(a), Tools::Only(b)) => Tools::Only(a.intersection(&b).cloned().collect()),
        }
    }
}

/// For a condition, the tools for which it may be true and those for which
/// it may be false, assuming the request carries a tool (requests without
/// one are scanned in full).
///
/// `tool == "x"` may be true only for `x` and may be false for any tool;
/// `tool != "x"` the reverse; `not` swaps the two; `and` intersects the
/// may-be-true sets and unites the may-be-false ones, `or` the opposite.
/// Anything else may be either for any tool.
pub(super) fn tools_of(e: &Expr) -> (Tools, Tools) {
    let is_tool = |t: &Term| matches!(t, Term::Field(f) if f == TOOL_FIELD);
    let lit_str = |t: &Term| match t {
        Term::Lit(Literal::Str(s)) => Some(s.clone()),
        _ => None,
    };
    match e {
        Expr::Const(true) => (Tools::Any, Tools::none()),
        Expr::Const(false) => (Tools::none(), Tools::Any),
        Expr::And(xs) => xs
            .iter()
            .map(tools_of)
            .fold((Tools::Any, Tools::none()), |(t, f), (xt, xf)| {
                (t.intersect(xt), f.union(xf))
            }),
        Expr::Or(xs) => xs
            .iter()
            .map(tools_of)
            .fold((Tools::none(), Tools::Any), |(t, f), (xt, xf)| {
                (t.union(xt), f.intersect(xf))
            }),
        Expr::Not(x) => {
            let (t, f) = tools_of(x);
            (f, t)
        }
        Expr::Cmp { op, lhs, rhs, .. } => {
            let value = if is_tool(lhs) {
                lit_str(rhs)
            } else if is_tool(rhs) {
                lit_str(lhs)
            } else {
                None
            };
            let one = |s: String| Tools::Only(BTreeSet::from([s]));
            match (op, value) {
                (CmpOp::Eq, Some(s)) => (one(s), Tools::Any),
                (CmpOp::Ne, Some(s)) => (Tools::Any, one(s)),
                _ => (Tools::Any, Tools::Any),
            }
        }
        Expr::In { lhs, values } if is_tool(lhs) => {
            let set = values
                .iter()
                .filter_map(|v| match v {
                    Literal::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            (Tools::Only(set), Tools::Any)
        }
        _ => (Tools::Any, Tools::Any),
    }
}

#[derive(Debug)]
pub(super) struct ToolIndex {
    /// The slot of `tool`, when the schema has a string field of that name.
    tool: Option<usize>,
    /// Per tool, the checks that can match only some tools (this one among
    /// them), in check order.
    by_tool: HashMap<Box<str>, Box<[u32]>>,
    /// The checks that can match any tool, in check order.
    wildcard: Box<[u32]>,
    /// The number of checks.
    pub(super) len: u32,
}

impl ToolIndex {
    pub(super) fn new(tool: Option<usize>, sets: &[Tools]) -> ToolIndex {
        let mut by_tool: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut wildcard = Vec::new();
        let len = u32::try_from(sets.len()).unwrap_or(u32::MAX);
        for (i, set) in (0..len).zip(sets) {
            match set {
                Tools::Any => wildcard.push(i),
                // INVARIANT: a check is in exactly one of `wildcard` or the
                // `by_tool` lists of its tools; a check whose may-be-true set
                // is empty never matches a request with a tool.
                Tools::Only(names) => {
                    for name in names {
                        by_tool.entry(name.as_str().into()).or_default().push(i);
                    }
                }
            }
        }
        ToolIndex {
            tool,
            by_tool: by_tool.into_iter().map(|(k, v)| (k, v.into())).collect(),
            wildcard: wildcard.into(),
            len,
        }
    }

    pub(super) fn candidates(&self, req: &Request) -> Candidates<'_> {
        match self.tool {
            Some(slot) => self.candidates_for(str_of(req, slot)),
            None => Candidates::All(0..self.len),
        }
    }

    pub(super) fn candidates_for(&self, tool: Option<&str>) -> Candidates<'_> {
        match (self.tool, tool) {
            (Some(_), Some(t)) => Candidates::Merge {
                a: self.by_tool.get(t).map_or(&[][..], |v| &v[..]),
                b: &self.wildcard,
            },
            _ => Candidates::All(0..self.len),
        }
    }
}

/// The checks to examine, in check order.
pub(super) enum Candidates<'a> {
    All(std::ops::Range<u32>),
    /// Two ascending, disjoint lists, merged.
    Merge {
        a: &'a [u32],
        b: &'a [u32],
    },
}

impl Iterator for Candidates<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        match self {
            Candidates::All(r) => r.next(),
            Candidates::Merge { a, b } => {
                let side = match (a.first(), b.first()) {
                    (Some(x), Some(y)) if x < y => a,
                    (Some(_), None) => a,
                    (_, Some(_)) => b,
                    (None, None) => return None,
                };
                let (first, rest) = side.split_first()?;
                *side = rest;
                Some(*first)
            }
        }
    }
}
