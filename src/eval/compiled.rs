//! Compiled conditions: a rule's `when` resolved to schema slots, its
//! conjuncts ordered cheapest first, evaluated against a [`Request`] with
//! regex results memoized per evaluation.
//!
//! The hot path of every evaluation. Nothing here allocates, fails or
//! touches state: a condition reads the request and the memo only. Building
//! (type checks, slots, regex compilation) is the `build` module's.

use regex::Regex;

use crate::eval::request::{FieldValue, Request};
use crate::model::ir::CmpOp;

/// A rule's condition as a conjunction, cheapest conjuncts first.
#[derive(Debug)]
pub(super) struct Condition {
    pub(super) conjuncts: Box<[Cond]>,
    /// How many leading conjuncts are `tool == lit` or `tool in [lits]`.
    //
    // INVARIANT: a check reached through `ToolIndex::by_tool` for tool `t`
    // has `t` in its may-be-true set, which lies within the set of every one
    // of these atoms: they are all true and need not be evaluated.
    pub(super) tool_prefix: usize,
}

impl Condition {
    #[inline]
    pub(super) fn eval(&self, req: &Request, indexed: bool, memo: &mut Memo) -> bool {
        let skip = if indexed { self.tool_prefix } else { 0 };
        self.conjuncts
            .get(skip..)
            .unwrap_or_default()
            .iter()
            .all(|c| c.eval(req, memo))
    }
}

#[derive(Debug)]
pub(super) enum Cond {
    Const(bool),
    And(Box<[Cond]>),
    Or(Box<[Cond]>),
    Not(Box<Cond>),
    Has(usize),
    Truthy(usize),
    /// An `int` field against a literal.
    IntCmp {
        field: usize,
        op: CmpOp,
        value: i64,
    },
    /// A `string` field `==` (or, with `eq` false, `!=`) a literal.
    StrEq {
        field: usize,
        value: Box<str>,
        eq: bool,
    },
    Cmp {
        op: CmpOp,
        lhs: Operand,
        rhs: Operand,
    },
    In {
        lhs: Operand,
        values: InSet,
    },
    Contains {
        field: usize,
        needle: Box<str>,
    },
    SetContains {
        field: usize,
        value: Box<str>,
    },
    StartsWith {
        field: usize,
        prefix: Box<str>,
    },
    EndsWith {
        field: usize,
        suffix: Box<str>,
    },
    Matches {
        field: usize,
        re: Regex,
        /// The memo slot of this (pattern, field) search.
        slot: usize,
    },
}

/// Regex results within one evaluation: many rules often search one field
/// for one pattern (PII, secrets), and the search runs once.
#[derive(Debug, Clone, Default)]
pub(super) struct Memo {
    /// The current evaluation's stamp; never 0.
    generation: u32,
    /// Per slot: the stamp of the evaluation that stored the result, and it.
    results: Vec<(u32, bool)>,
}

impl Memo {
    /// Starts an evaluation: every stored result becomes stale.
    pub(super) fn begin(&mut self, len: usize) {
        if self.results.len() != len {
            self.results.clear();
            self.results.resize(len, (0, false));
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.results.iter_mut().for_each(|r| r.0 = 0);
            self.generation = 1;
        }
    }

    #[inline]
    fn get_or_insert(&mut self, slot: usize, search: impl FnOnce() -> bool) -> bool {
        let generation = self.generation;
        match self.results.get_mut(slot) {
            Some((stamp, value)) if *stamp == generation => *value,
            Some(entry) => {
                let value = search();
                *entry = (generation, value);
                value
            }
            None => search(),
        }
    }
}

#[derive(Debug)]
pub(super) enum Operand {
    Field(usize),
    Len(usize),
    Lit(Lit),
}

#[derive(Debug)]
pub(super) enum Lit {
    Int(i64),
    Str(Box<str>),
    Bool(bool),
}

/// Sorted, deduplicated values of an `in` list.
#[derive(Debug)]
pub(super) enum InSet {
    Int(Box<[i64]>),
    Str(Box<[Box<str>]>),
    Bool { t: bool, f: bool },
}

#[derive(Clone, Copy)]
enum Val<'a> {
    Int(i64),
    Str(&'a str),
    Bool(bool),
    Set(&'a [String]),
}

impl<'a> Val<'a> {
    fn of(v: &'a FieldValue) -> Val<'a> {
        match v {
            FieldValue::Int(i) => Val::Int(*i),
            FieldValue::Str(s) => Val::Str(s),
            FieldValue::Bool(b) => Val::Bool(*b),
            FieldValue::Set(s) => Val::Set(s),
        }
    }
}

pub(super) fn str_of(req: &Request, field: usize) -> Option<&str> {
    match req.get(field) {
        Some(FieldValue::Str(s)) => Some(s),
        _ => None,
    }
}

fn count_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Up to this many values, an `in` list is searched linearly.
const LINEAR: usize = 8;

impl Cond {
    /// A rough evaluation cost, to order conjuncts and disjuncts.
    fn cost(&self) -> u32 {
        match self {
            Cond::Const(_) | Cond::Has(_) | Cond::Truthy(_) => 0,
            Cond::IntCmp { .. } => 1,
            Cond::StrEq { .. } => 2,
            Cond::Cmp { .. } | Cond::In { .. } => 3,
            Cond::SetContains { .. } | Cond::StartsWith { .. } | Cond::EndsWith { .. } => 4,
            Cond::Contains { .. } => 6,
            Cond::Matches { .. } => 50,
            Cond::Not(x) => x.cost(),
            Cond::And(xs) | Cond::Or(xs) => xs.iter().map(Cond::cost).fold(0, u32::saturating_add),
        }
    }

    /// `tool == lit` or `tool in [lits]`, for the tool at slot `tool`.
    pub(super) fn is_tool_atom(&self, tool: usize) -> bool {
        match self {
            Cond::StrEq { field, eq, .. } => *field == tool && *eq,
            Cond::In {
                lhs: Operand::Field(field),
                values: InSet::Str(_),
            } => *field == tool,
            _ => false,
        }
    }
}

/// Orders conditions cheapest first (the order of a pure conjunction or
/// disjunction does not change its value).
pub(super) fn by_cost(mut xs: Vec<Cond>) -> Box<[Cond]> {
    xs.sort_by_key(Cond::cost);
    xs.into()
}

impl Operand {
    #[inline]
    fn resolve<'a>(&'a self, req: &'a Request) -> Option<Val<'a>> {
        match self {
            Operand::Field(i) => req.get(*i).map(Val::of),
            Operand::Len(i) => match req.get(*i)? {
                FieldValue::Str(s) => Some(Val::Int(count_i64(s.chars().count()))),
                FieldValue::Set(v) => Some(Val::Int(count_i64(v.len()))),
                _ => None,
            },
            Operand::Lit(Lit::Int(i)) => Some(Val::Int(*i)),
            Operand::Lit(Lit::Str(s)) => Some(Val::Str(s)),
            Operand::Lit(Lit::Bool(b)) => Some(Val::Bool(*b)),
        }
    }
}

impl Cond {
    fn eval(&self, req: &Request, memo: &mut Memo) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::And(xs) => xs.iter().all(|x| x.eval(req, memo)),
            Cond::Or(xs) => xs.iter().any(|x| x.eval(req, memo)),
            Cond::Not(x) => !x.eval(req, memo),
            Cond::Has(i) => req.get(*i).is_some(),
            Cond::Truthy(i) => matches!(req.get(*i), Some(FieldValue::Bool(true))),
            Cond::IntCmp { field, op, value } => match req.get(*field) {
                Some(FieldValue::Int(i)) => match op {
                    CmpOp::Eq => i == value,
                    CmpOp::Ne => i != value,
                    CmpOp::Lt => i < value,
                    CmpOp::Le => i <= value,
                    CmpOp::Gt => i > value,
                    CmpOp::Ge => i >= value,
                },
                _ => false,
            },
            Cond::StrEq { field, value, eq } => match req.get(*field) {
                Some(FieldValue::Str(s)) => (s.as_str() == &**value) == *eq,
                _ => false,
            },
            Cond::Cmp { op, lhs, rhs } => {
                let (Some(l), Some(r)) = (lhs.resolve(req), rhs.resolve(req)) else {
                    return false;
                };
                let ord = match (l, r) {
                    (Val::Int(a), Val::Int(b)) => a.cmp(&b),
                    (Val::Str(a), Val::Str(b)) => a.cmp(b),
                    (Val::Bool(a), Val::Bool(b)) => a.cmp(&b),
                    (Val::Set(a), Val::Set(b)) => {
                        return match op {
                            CmpOp::Eq => a == b,
                            CmpOp::Ne => a != b,
                            _ => false,
                        };
                    }
                    _ => return false,
                };
                match op {
                    CmpOp::Eq => ord.is_eq(),
                    CmpOp::Ne => ord.is_ne(),
                    CmpOp::Lt => ord.is_lt(),
                    CmpOp::Le => ord.is_le(),
                    CmpOp::Gt => ord.is_gt(),
                    CmpOp::Ge => ord.is_ge(),
                }
            }
            Cond::In { lhs, values } => match (lhs.resolve(req), values) {
                (Some(Val::Int(i)), InSet::Int(vs)) => {
                    if vs.len() <= LINEAR {
                        vs.contains(&i)
                    } else {
                        vs.binary_search(&i).is_ok()
                    }
                }
                (Some(Val::Str(s)), InSet::Str(vs)) => {
                    if vs.len() <= LINEAR {
                        vs.iter().any(|v| **v == *s)
                    } else {
                        vs.binary_search_by(|v| (**v).cmp(s)).is_ok()
                    }
                }
                (Some(Val::Bool(b)), InSet::Bool { t, f }) => {
                    if b {
                        *t
                    } else {
                        *f
                    }
                }
                _ => false,
            },
            Cond::Contains { field, needle } => {
                str_of(req, *field).is_some_and(|s| s.contains(&**needle))
            }
            Cond::SetContains { field, value } => match req.get(*field) {
                Some(FieldValue::Set(items)) => {
                    items.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
                }
                _ => false,
            },
            Cond::StartsWith { field, prefix } => {
                str_of(req, *field).is_some_and(|s| s.starts_with(&**prefix))
            }
            Cond::EndsWith { field, suffix } => {
                str_of(req, *field).is_some_and(|s| s.ends_with(&**suffix))
            }
            Cond::Matches { field, re, slot } => {
                str_of(req, *field).is_some_and(|s| memo.get_or_insert(*slot, || re.is_match(s)))
            }
        }
    }
}
