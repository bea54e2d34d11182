//! The encoder's state on one thread: the Z3 constants of every field
//! (Z3 terms belong to the thread that made them), the regex memberships
//! parsed once, and what every query adds ([`Encoder::domain`]). Turning
//! conditions into formulas is `encode`'s; reading models is `refine`'s and
//! `model`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use z3::ast::{Bool, Int, String as ZStr};
use z3::{Model, Solver};

use super::plan::{Plan, Repr};
use super::{EncodeError, Needs};
use crate::analyze::regex;

#[derive(Debug)]
pub(super) enum Vars {
    Int(Int),
    Bool(Bool),
    Str(ZStr),
    Code(Int),
    Lang(Vec<Bool>),
    Set { len: Int, members: Vec<Bool> },
}

#[derive(Debug)]
pub(super) struct FieldVars {
    pub(super) has: Option<Bool>,
    pub(super) vars: Vars,
}

/// A regex's membership formulas over the placeholder string.
#[derive(Debug, Clone)]
pub(super) struct Membership {
    pub(super) pos: Bool,
    pub(super) neg: Bool,
}

/// Encodes conditions of one plan. Thread-bound (Z3 terms).
#[derive(Debug)]
pub struct Encoder<'p> {
    pub(super) plan: &'p Plan,
    pub(super) vars: Vec<FieldVars>,
    /// "These two fields hold the same string", per `Plan::pairs`.
    pub(super) eqs: BTreeMap<(usize, usize), Bool>,
    pub(super) placeholder: ZStr,
    pub(super) regexes: HashMap<String, Result<Membership, EncodeError>>,
    /// Z3 string literals made so far (`None`: not representable).
    pub(super) strings: HashMap<String, Option<ZStr>>,
}

/// The name of the string constant regex memberships are parsed over.
const PLACEHOLDER: &str = "re!x";

impl<'p> Encoder<'p> {
    pub fn new(plan: &'p Plan) -> Encoder<'p> {
        let vars = plan
            .fields
            .iter()
            .map(|f| {
                let p = &f.decl.path;
                let vars = match &f.repr {
                    Repr::Int => Vars::Int(Int::new_const(p.as_str())),
                    Repr::Bool => Vars::Bool(Bool::new_const(p.as_str())),
                    Repr::Str => Vars::Str(ZStr::new_const(p.as_str())),
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
        Encoder {
            plan,
            vars,
            eqs,
            placeholder: ZStr::new_const(PLACEHOLDER),
            regexes: HashMap::new(),
            strings: HashMap::new(),
        }
    }

    pub fn plan(&self) -> &'p Plan {
        self.plan
    }

    /// Translates and parses, in one batch, the patterns that fields encoded
    /// as Z3 strings test (the other fields need no Z3 regex).
    pub fn load_patterns<'a>(&mut self, patterns: impl IntoIterator<Item = &'a str>) {
        let mut batch: Vec<(String, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for p in patterns {
            if self.regexes.contains_key(p) || !seen.insert(p.to_string()) {
                continue;
            }
            match regex::search_language(p) {
                Ok(text) => batch.push((p.to_string(), text)),
                Err(e) => {
                    self.regexes.insert(
                        p.to_string(),
                        Err(EncodeError::Regex {
                            pattern: p.to_string(),
                            reason: e.to_string(),
                        }),
                    );
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        match parse_memberships(&batch) {
            Some(ms) => {
                for ((p, _), m) in batch.into_iter().zip(ms) {
                    self.regexes.insert(p, Ok(m));
                }
            }
            // One text did not parse: find it by parsing each alone.
            None => {
                for (p, text) in batch {
                    let m = parse_memberships(&[(p.clone(), text)])
                        .and_then(|mut v| v.pop())
                        .ok_or_else(|| EncodeError::Regex {
                            pattern: p.clone(),
                            reason: "the solver could not parse its translation".into(),
                        });
                    self.regexes.insert(p, m);
                }
            }
        }
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
    /// set's length at least the number of literals it holds.
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
        out
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

/// Parses `(str.in_re x R)` and `(str.in_re x (re.comp R))` for every
/// (pattern, text) in one solver call; `None` when the count comes back
/// wrong (a text did not parse).
fn parse_memberships(batch: &[(String, String)]) -> Option<Vec<Membership>> {
    let mut text = format!("(declare-fun {PLACEHOLDER} () String)\n");
    for (_, re) in batch {
        text.push_str(&format!(
            "(assert (str.in_re {PLACEHOLDER} {re}))\n(assert (str.in_re {PLACEHOLDER} (re.comp {re})))\n"
        ));
    }
    if text.contains('\0') {
        return None;
    }
    let scratch = Solver::new();
    scratch.from_string(text);
    let got = scratch.get_assertions();
    if got.len() != batch.len() * 2 {
        return None;
    }
    let mut it = got.into_iter();
    let mut out = Vec::with_capacity(batch.len());
    while let (Some(pos), Some(neg)) = (it.next(), it.next()) {
        out.push(Membership { pos, neg });
    }
    Some(out)
}
