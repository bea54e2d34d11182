//! Encoding: IR conditions into Z3 formulas over one symbolic request, and
//! back from a Z3 model to a concrete request. No solving happens here (see
//! `solver`; string values are decided in `lang`).
//!
//! A [`Plan`] fixes, for the whole analysis, how each schema field is
//! represented; an [`Encoder`] (one per thread: Z3 terms belong to the thread
//! that made them) holds the Z3 constants and turns conditions into formulas.
//!
//! Representation of a request:
//! - `int` → an integer constant, bounded to `i64` in every query that reads it.
//! - `bool` → a boolean constant.
//! - `string` read only by `==`, `!=` and `in` against literals (typically
//!   `tool`, `agent`, `org`) → an integer *code*: code `i` is the `i`-th
//!   literal of that field in the whole set, any other code is a string no
//!   rule mentions. Exact, and cheap for Z3.
//! - `string` read only by tests against literals (`starts_with`,
//!   `ends_with`, `contains`, `matches`, `len(s) op N` too) → one boolean per
//!   distinct test ([`lang::Atom`]). Whether the tests a model sets true and
//!   false can hold together for one string is decided by automata
//!   ([`Encoder::refine`]); when they cannot, Z3 gets a clause that rules
//!   that combination out, and is asked again (lazy SMT).
//!   A string compared with another string field (`a == b`, `a != b`) is
//!   decided the same way: the comparison is one more boolean, fields that
//!   the model makes equal share one value, and fields it makes different
//!   get different values.
//! - any other `string` (its `len` compared with a field or another `len`,
//!   or a length beyond [`lang::MAX_LEN`], and every string compared with
//!   it) → a Z3 string; `matches` becomes a regex membership (translated by
//!   `regex`, parsed by Z3: on 4.8.12 that is the only way to reach
//!   `re.allchar` and non-ASCII ranges).
//! - `set<string>` → one boolean per literal the set's rules test with
//!   `contains` ("the set holds this literal") and an integer length; a
//!   query that reads the set asserts `len ≥ Σ members`. The other elements
//!   of a witness set are distinct strings no rule mentions, so the encoding
//!   is exact for `contains "lit"` and `len`.
//! - an optional field → a presence boolean `has!field`. SPEC §2: an atom that
//!   reads an absent field is false, so a positive atom is `has ∧ test` and a
//!   negated one `¬has ∨ ¬test` (conditions are put in negation normal form
//!   on the way).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use z3::ast::{Ast, Bool, Int, String as ZStr};
use z3::{Model, Solver};

use crate::analyze::index::read_fields;
use crate::analyze::lang::{self, Atom, Table};
use crate::analyze::regex::{self, MAX_CHAR};
use crate::eval::request::{FieldValue, Request};
use crate::model::ir::{CmpOp, Expr, FieldDecl, Literal, Term, Type};
use crate::model::schema::Schema;

/// Why a condition could not be encoded. The rule is then left out of the
/// analysis and reported (`analyze::unencodable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("field `{0}` is not in the schema")]
    UnknownField(String),
    #[error("`{0}` holds a character above U+2FFFF, beyond the solver's strings")]
    Unrepresentable(String),
    #[error("regex `{pattern}`: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("{0}")]
    Type(String),
}

/// How one schema field is represented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr {
    Int,
    Bool,
    /// A Z3 string.
    Str,
    /// A string read only by equality: an integer code into `literals`
    /// (sorted); codes outside `0..literals.len()` are other strings.
    Code(Vec<String>),
    /// A string decided by automata: its tests, as ids into the plan's
    /// language table (one Z3 boolean each).
    Lang(Vec<usize>),
    /// A set of strings: a membership flag per literal (sorted) and a length.
    Set(Vec<String>),
}

/// One field's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPlan {
    pub decl: FieldDecl,
    pub repr: Repr,
}

/// How every field of the schema is represented, decided once for the whole
/// policy set (every thread encodes the same way), with the automata of
/// every string test. Shared by the worker threads.
#[derive(Debug)]
pub struct Plan {
    schema: Schema,
    fields: Vec<FieldPlan>,
    by_path: HashMap<String, usize>,
    /// Every string test of an automata-decided field, by id.
    table: Table,
    atom_ids: HashMap<Atom, usize>,
    /// The regexes that fields encoded as Z3 strings test.
    patterns: Vec<String>,
    /// Pairs of automata-decided fields compared with each other (sorted
    /// positions).
    pairs: BTreeSet<(usize, usize)>,
}

#[derive(Default)]
struct Usage {
    /// `len` compared with something else than a literal.
    general: bool,
    /// Read by something else than `==`/`!=`/`in` literals.
    not_code: bool,
    literals: BTreeSet<String>,
    atoms: BTreeSet<Atom>,
    /// String fields compared with this one.
    partners: BTreeSet<String>,
}

/// A unary test of a string field, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrTest<'e> {
    Const(bool),
    Atom {
        field: &'e str,
        atom: Atom,
        negated: bool,
    },
}

impl Plan {
    /// A plan for conditions `exprs` over `schema`. `extra` names string
    /// literals a field may be compared with outside conditions (the `via`
    /// tools of approvals, substituted for `tool`).
    pub fn new<'e>(
        schema: &Schema,
        exprs: impl IntoIterator<Item = &'e Expr>,
        extra: &[(String, String)],
    ) -> Plan {
        let mut usage: HashMap<String, Usage> = HashMap::new();
        for e in exprs {
            collect_usage(e, schema, &mut usage);
        }
        for (field, lit) in extra {
            let u = usage.entry(field.clone()).or_default();
            u.literals.insert(lit.clone());
            // A field compared with this one may meet the literal too.
            let partners: Vec<String> = u.partners.iter().cloned().collect();
            for p in partners {
                usage
                    .entry(p)
                    .or_default()
                    .atoms
                    .insert(Atom::Eq(lit.clone()));
            }
        }
        // Lengths too long for an automaton need Z3's strings; fields
        // compared with each other share a representation.
        for u in usage.values_mut() {
            if u.atoms.iter().any(too_long) {
                u.general = true;
            }
        }
        let mut general: BTreeSet<String> = usage
            .iter()
            .filter(|(_, u)| u.general)
            .map(|(f, _)| f.clone())
            .collect();
        let mut todo: Vec<String> = general.iter().cloned().collect();
        while let Some(f) = todo.pop() {
            let partners: Vec<String> = usage
                .get(&f)
                .map(|u| u.partners.iter().cloned().collect())
                .unwrap_or_default();
            for p in partners {
                if general.insert(p.clone()) {
                    todo.push(p);
                }
            }
        }
        for f in &general {
            if let Some(u) = usage.get_mut(f) {
                u.general = true;
            }
        }
        let partner_names: Vec<(String, String)> = usage
            .iter()
            .flat_map(|(f, u)| u.partners.iter().map(move |p| (f.clone(), p.clone())))
            .collect();
        let mut atoms: Vec<Atom> = Vec::new();
        let mut atom_ids: HashMap<Atom, usize> = HashMap::new();
        let mut fields = Vec::new();
        let mut patterns = BTreeSet::new();
        for decl in &schema.fields {
            let u = usage.remove(&decl.path).unwrap_or_default();
            let matches: Vec<String> = u
                .atoms
                .iter()
                .filter_map(|a| match a {
                    Atom::Matches(p) => Some(p.clone()),
                    _ => None,
                })
                .collect();
            let repr = match decl.ty {
                Type::Int => Repr::Int,
                Type::Bool => Repr::Bool,
                Type::StrSet => Repr::Set(u.literals.into_iter().collect()),
                Type::Str if u.general => Repr::Str,
                Type::Str if !u.not_code => Repr::Code(u.literals.into_iter().collect()),
                Type::Str => {
                    let mut ids = Vec::new();
                    for atom in &u.atoms {
                        let next = atoms.len();
                        let id = *atom_ids.entry(atom.clone()).or_insert(next);
                        if id == next {
                            atoms.push(atom.clone());
                        }
                        ids.push(id);
                    }
                    Repr::Lang(ids)
                }
            };
            if repr == Repr::Str {
                patterns.extend(matches);
            }
            fields.push(FieldPlan {
                decl: decl.clone(),
                repr,
            });
        }
        let by_path = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.decl.path.clone(), i))
            .collect();
        Plan {
            schema: schema.clone(),
            fields,
            by_path,
            table: Table::new(atoms),
            atom_ids,
            patterns: patterns.into_iter().collect(),
            pairs: BTreeSet::new(),
        }
        .with_pairs(&partner_names)
    }

    fn with_pairs(mut self, names: &[(String, String)]) -> Plan {
        for (a, b) in names {
            let (Some(i), Some(j)) = (self.index(a), self.index(b)) else {
                continue;
            };
            let both_lang = [i, j]
                .iter()
                .all(|k| matches!(self.repr(*k), Some(Repr::Lang(_))));
            if both_lang && i != j {
                self.pairs.insert((i.min(j), i.max(j)));
            }
        }
        self
    }

    /// The regexes that fields encoded as Z3 strings test (to parse once per
    /// thread, [`Encoder::load_patterns`]).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn fields(&self) -> &[FieldPlan] {
        &self.fields
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The position of a field.
    pub fn index(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    /// The string tests of automata-decided fields, by id.
    pub fn atoms(&self) -> &[Atom] {
        self.table.atoms()
    }

    /// The string tests with their automata.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Do both plans represent every field the same way (the same kind of
    /// representation, the same pairs of compared fields)? Then a condition
    /// encodes, or fails to, the same way under both, whatever literals and
    /// string tests the other conditions bring.
    pub fn same_encoding(&self, other: &Plan) -> bool {
        self.fields.len() == other.fields.len()
            && self.fields.iter().zip(&other.fields).all(|(a, b)| {
                a.decl == b.decl
                    && std::mem::discriminant(&a.repr) == std::mem::discriminant(&b.repr)
            })
            && self.pairs == other.pairs
    }

    fn repr(&self, i: usize) -> Option<&Repr> {
        self.fields.get(i).map(|f| &f.repr)
    }
}

fn too_long(a: &Atom) -> bool {
    match a {
        Atom::Len { lo, hi } => *lo > lang::MAX_LEN || hi.is_some_and(|h| h > lang::MAX_LEN),
        Atom::LenIn(v) => v.iter().any(|n| *n > lang::MAX_LEN),
        _ => false,
    }
}

/// The normalised string test `e` is, when it tests one string field
/// against literals.
pub(crate) fn str_test<'e>(e: &'e Expr, schema: &Schema) -> Option<StrTest<'e>> {
    let is_str = |f: &str| schema.type_of(f) == Some(Type::Str);
    let atom = |field: &'e str, atom: Atom, negated: bool| StrTest::Atom {
        field,
        atom,
        negated,
    };
    match e {
        Expr::Cmp { op, lhs, rhs, .. } => {
            let (l, r, op) = match (lhs, rhs) {
                (Term::Lit(_), Term::Field(_) | Term::Len(_)) => (rhs, lhs, flip(*op)),
                _ => (lhs, rhs, *op),
            };
            match (l, r, op) {
                (Term::Field(f), Term::Lit(Literal::Str(s)), CmpOp::Eq | CmpOp::Ne)
                    if is_str(f) =>
                {
                    Some(atom(f, Atom::Eq(s.clone()), op == CmpOp::Ne))
                }
                (Term::Len(f), Term::Lit(Literal::Int(k)), op) if is_str(f) => {
                    Some(len_test(f, op, *k))
                }
                _ => None,
            }
        }
        Expr::In {
            lhs: Term::Field(f),
            values,
        } if is_str(f) => {
            let mut v: Vec<String> = values
                .iter()
                .filter_map(|l| match l {
                    Literal::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            v.sort();
            v.dedup();
            Some(match v.len() {
                0 => StrTest::Const(false),
                1 => atom(f, Atom::Eq(v.swap_remove(0)), false),
                _ => atom(f, Atom::In(v), false),
            })
        }
        Expr::In {
            lhs: Term::Len(f),
            values,
        } if is_str(f) => {
            let mut v: Vec<u64> = values
                .iter()
                .filter_map(|l| match l {
                    Literal::Int(i) => u64::try_from(*i).ok(),
                    _ => None,
                })
                .collect();
            v.sort_unstable();
            v.dedup();
            Some(if v.is_empty() {
                StrTest::Const(false)
            } else {
                atom(f, Atom::LenIn(v), false)
            })
        }
        Expr::StartsWith { field, value } if is_str(field) => {
            Some(atom(field, Atom::Prefix(value.clone()), false))
        }
        Expr::EndsWith { field, value } if is_str(field) => {
            Some(atom(field, Atom::Suffix(value.clone()), false))
        }
        Expr::Contains { field, value } if is_str(field) => {
            Some(atom(field, Atom::Contains(value.clone()), false))
        }
        Expr::Matches { field, pattern } if is_str(field) => {
            Some(atom(field, Atom::Matches(pattern.clone()), false))
        }
        _ => None,
    }
}

/// `len(f) op k` as a length range (or a constant).
fn len_test(f: &str, op: CmpOp, k: i64) -> StrTest<'_> {
    let range = |lo: i64, hi: Option<i64>| -> StrTest<'_> {
        let lo = u64::try_from(lo.max(0)).unwrap_or(0);
        match hi {
            Some(h) if h < 0 || u64::try_from(h).is_ok_and(|h| h < lo) => StrTest::Const(false),
            None if lo == 0 => StrTest::Const(true),
            _ => StrTest::Atom {
                field: f,
                atom: Atom::Len {
                    lo,
                    hi: hi.and_then(|h| u64::try_from(h).ok()),
                },
                negated: false,
            },
        }
    };
    fn negate(t: StrTest<'_>) -> StrTest<'_> {
        match t {
            StrTest::Const(b) => StrTest::Const(!b),
            StrTest::Atom {
                field,
                atom,
                negated,
            } => StrTest::Atom {
                field,
                atom,
                negated: !negated,
            },
        }
    }
    match op {
        CmpOp::Eq => range(k, Some(k)),
        CmpOp::Ne => negate(range(k, Some(k))),
        CmpOp::Lt => range(0, Some(k.saturating_sub(1))),
        CmpOp::Le => range(0, Some(k)),
        CmpOp::Gt => range(k.saturating_add(1), None),
        CmpOp::Ge => range(k, None),
    }
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

fn collect_usage(e: &Expr, schema: &Schema, usage: &mut HashMap<String, Usage>) {
    match e {
        Expr::Const(_) | Expr::Has(_) | Expr::Truthy(_) => return,
        Expr::And(xs) | Expr::Or(xs) => {
            xs.iter().for_each(|x| collect_usage(x, schema, usage));
            return;
        }
        Expr::Not(x) => {
            collect_usage(x, schema, usage);
            return;
        }
        Expr::SetContains { field, value } => {
            usage
                .entry(field.clone())
                .or_default()
                .literals
                .insert(value.clone());
            return;
        }
        _ => {}
    }
    match str_test(e, schema) {
        Some(StrTest::Atom { field, atom, .. }) => {
            let u = usage.entry(field.to_string()).or_default();
            match &atom {
                Atom::Eq(s) => {
                    u.literals.insert(s.clone());
                }
                Atom::In(v) => u.literals.extend(v.iter().cloned()),
                _ => u.not_code = true,
            }
            u.atoms.insert(atom);
        }
        // A constant test (`s in []`, `len(s) < 0`) needs nothing.
        Some(StrTest::Const(_)) => {}
        None => {
            if let Some((f, g)) = field_pair(e, schema) {
                for (a, b) in [(f, g), (g, f)] {
                    let u = usage.entry(a.to_string()).or_default();
                    u.not_code = true;
                    u.partners.insert(b.to_string());
                }
                return;
            }
            // Anything else on a string field (`len` against a non-literal)
            // needs Z3's strings.
            for f in read_fields(e) {
                if schema.type_of(f) == Some(Type::Str) {
                    let u = usage.entry(f.to_string()).or_default();
                    u.general = true;
                    u.not_code = true;
                }
            }
        }
    }
}

/// `a == b` or `a != b` between two string fields (the fields, sorted).
pub(crate) fn field_pair<'e>(e: &'e Expr, schema: &Schema) -> Option<(&'e str, &'e str)> {
    match e {
        Expr::Cmp {
            op: CmpOp::Eq | CmpOp::Ne,
            lhs: Term::Field(a),
            rhs: Term::Field(b),
            ..
        } if schema.type_of(a) == Some(Type::Str) && schema.type_of(b) == Some(Type::Str) => {
            Some(if a <= b { (a, b) } else { (b, a) })
        }
        _ => None,
    }
}

/// A field replaced by a string literal while encoding (the approval request
/// of a `require_approval … via "tool"`: the same request with another tool).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Override {
    pub field: usize,
    pub value: String,
}

/// What a formula reads, for the constraints a query must add
/// ([`Encoder::domain`]) and the string tests to check ([`Encoder::refine`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    ints: BTreeSet<usize>,
    /// Set fields read, with the literals tested.
    sets: BTreeMap<usize, BTreeSet<usize>>,
    /// Automata-decided string fields read, with the tests (positions in
    /// the field's `Repr::Lang` list).
    langs: BTreeMap<usize, BTreeSet<usize>>,
    /// Comparisons between automata-decided fields (`Plan::pairs`).
    eqs: BTreeSet<(usize, usize)>,
}

impl Needs {
    pub fn merge(&mut self, other: &Needs) {
        self.ints.extend(other.ints.iter().copied());
        for (f, lits) in &other.sets {
            self.sets
                .entry(*f)
                .or_default()
                .extend(lits.iter().copied());
        }
        for (f, tests) in &other.langs {
            self.langs
                .entry(*f)
                .or_default()
                .extend(tests.iter().copied());
        }
        self.eqs.extend(other.eqs.iter().copied());
    }
}

/// An encoded condition.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub formula: Bool,
    pub needs: Needs,
}

/// The outcome of checking a model's string tests ([`Encoder::refine`]).
#[derive(Debug)]
pub enum Refinement {
    /// Every string field's tests hold together: these are its values.
    Consistent(BTreeMap<usize, String>),
    /// Clauses that rule out the model's inconsistent combinations.
    Block(Vec<Bool>),
    Unknown(String),
}

#[derive(Debug)]
enum Vars {
    Int(Int),
    Bool(Bool),
    Str(ZStr),
    Code(Int),
    Lang(Vec<Bool>),
    Set { len: Int, members: Vec<Bool> },
}

#[derive(Debug)]
struct FieldVars {
    has: Option<Bool>,
    vars: Vars,
}

/// A regex's membership formulas over the placeholder string.
#[derive(Debug, Clone)]
struct Membership {
    pos: Bool,
    neg: Bool,
}

/// Encodes conditions of one plan. Thread-bound (Z3 terms).
#[derive(Debug)]
pub struct Encoder<'p> {
    plan: &'p Plan,
    vars: Vec<FieldVars>,
    /// "These two fields hold the same string", per `Plan::pairs`.
    eqs: BTreeMap<(usize, usize), Bool>,
    placeholder: ZStr,
    regexes: HashMap<String, Result<Membership, EncodeError>>,
    strings: HashMap<String, Option<ZStr>>,
}

/// The name of the string constant regex memberships are parsed over.
const PLACEHOLDER: &str = "re!x";

/// How the value of a term is read.
enum Value {
    Int(Int),
    Bool(Bool),
    Str(ZStr),
    /// A string literal (or an overridden field), kept as text until it
    /// meets the other operand.
    StrLit(String),
    /// A coded string: the code, and the field.
    Code(Int, usize),
}

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

    /// Encodes a condition (with `over` substituted, when given).
    pub fn encode(&mut self, e: &Expr, over: Option<&Override>) -> Result<Encoded, EncodeError> {
        let mut needs = Needs::default();
        let formula = self.expr(e, true, over, &mut needs)?;
        Ok(Encoded { formula, needs })
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

    /// Checks the string tests a model sets, with automata (`memo`
    /// remembers verdicts): fields the model makes equal form one class and
    /// must hold one string meeting all their tests; classes the model makes
    /// different must hold different strings. A field replaced by an
    /// `Override` has constant tests and no entry in `needs`.
    pub fn refine(&self, model: &Model, needs: &Needs, memo: &mut lang::Memo) -> Refinement {
        let value = |b: &Bool| model.eval(b, true).and_then(|x| x.as_bool()) == Some(true);
        // The tests of each present field: (atom id, truth, its boolean).
        let mut tests: BTreeMap<usize, Vec<(usize, bool, Bool)>> = BTreeMap::new();
        for (f, ks) in &needs.langs {
            if !self.is_present(model, *f) {
                continue;
            }
            let (Some(Repr::Lang(ids)), Some(Vars::Lang(vars))) =
                (self.plan.repr(*f), self.vars.get(*f).map(|v| &v.vars))
            else {
                continue;
            };
            let entry = tests.entry(*f).or_default();
            for k in ks {
                if let (Some(id), Some(var)) = (ids.get(*k), vars.get(*k)) {
                    entry.push((*id, value(var), var.clone()));
                }
            }
        }
        // Equalities between present fields.
        let mut classes = Classes::default();
        let mut same = Vec::new();
        let mut differ = Vec::new();
        for pair in &needs.eqs {
            let (a, b) = *pair;
            let Some(var) = self.eqs.get(pair) else {
                continue;
            };
            if !self.is_present(model, a) || !self.is_present(model, b) {
                continue;
            }
            tests.entry(a).or_default();
            tests.entry(b).or_default();
            if value(var) {
                classes.union(a, b);
                same.push((a, b, var.clone()));
            } else {
                differ.push((a, b, var.clone()));
            }
        }
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for f in tests.keys() {
            members.entry(classes.find(*f)).or_default().push(*f);
        }
        // "Not all of this as the model has it": the tests and equalities of
        // some classes.
        let blame = |roots: &[usize], classes: &mut Classes| -> Vec<Bool> {
            let mut out = Vec::new();
            for r in roots {
                for f in members.get(r).into_iter().flatten() {
                    for (_, truth, var) in tests.get(f).into_iter().flatten() {
                        out.push(if *truth { var.not() } else { var.clone() });
                    }
                }
            }
            for (a, _, var) in &same {
                if roots.contains(&classes.find(*a)) {
                    out.push(var.not());
                }
            }
            out
        };
        let mut block = Vec::new();
        let mut strings: BTreeMap<usize, String> = BTreeMap::new();
        let mut lits_of: BTreeMap<usize, Vec<(usize, bool)>> = BTreeMap::new();
        for (root, fs) in &members {
            let lits: Vec<(usize, bool)> = fs
                .iter()
                .flat_map(|f| tests.get(f).into_iter().flatten())
                .map(|(id, t, _)| (*id, *t))
                .collect();
            match memo.field(&self.plan.table, &lits) {
                lang::FieldCheck::Sat(w) => {
                    strings.insert(*root, w);
                }
                lang::FieldCheck::Unknown(why) => {
                    return Refinement::Unknown(format!(
                        "the string tests on `{}` could not be decided: {why}",
                        self.path(*root)
                    ));
                }
                lang::FieldCheck::Unsat(core) => {
                    // The core's tests (one boolean each) and the class's
                    // equalities.
                    let mut clause = Vec::new();
                    for (id, t) in &core {
                        let var = fs
                            .iter()
                            .find_map(|f| tests.get(f)?.iter().find(|(i, v, _)| i == id && v == t));
                        if let Some((_, t, var)) = var {
                            clause.push(if *t { var.not() } else { var.clone() });
                        }
                    }
                    for (a, _, var) in &same {
                        if classes.find(*a) == *root {
                            clause.push(var.not());
                        }
                    }
                    block.push(Bool::or(&clause));
                }
            }
            lits_of.insert(*root, lits);
        }
        // Fields the model says differ but makes equal.
        for (a, b, var) in &differ {
            let (ra, rb) = (classes.find(*a), classes.find(*b));
            if ra == rb {
                let mut clause = blame(&[ra], &mut classes);
                clause.push(var.clone());
                block.push(Bool::or(&clause));
            }
        }
        if !block.is_empty() {
            return Refinement::Block(block);
        }
        // Different strings for classes that must differ.
        let edges: BTreeSet<(usize, usize)> = differ
            .iter()
            .map(|(a, b, _)| {
                let (ra, rb) = (classes.find(*a), classes.find(*b));
                (ra.min(rb), ra.max(rb))
            })
            .collect();
        if edges
            .iter()
            .any(|(a, b)| strings.contains_key(a) && strings.get(a) == strings.get(b))
        {
            match distinct(&self.plan.table, &lits_of, &edges) {
                Distinct::Found(chosen) => strings.extend(chosen),
                Distinct::Unknown => {
                    return Refinement::Unknown(
                        "too many string fields must differ from each other".into(),
                    );
                }
                Distinct::Impossible(roots) => {
                    let mut clause = blame(&roots, &mut classes);
                    for (a, b, var) in &differ {
                        if roots.contains(&classes.find(*a)) && roots.contains(&classes.find(*b)) {
                            clause.push(var.clone());
                        }
                    }
                    return Refinement::Block(vec![Bool::or(&clause)]);
                }
            }
        }
        let mut values = BTreeMap::new();
        for (root, fs) in &members {
            if let Some(w) = strings.get(root) {
                for f in fs {
                    values.insert(*f, w.clone());
                }
            }
        }
        Refinement::Consistent(values)
    }

    fn is_present(&self, model: &Model, f: usize) -> bool {
        match self.vars.get(f).and_then(|v| v.has.as_ref()) {
            None => true,
            Some(h) => model.eval(h, true).and_then(|b| b.as_bool()) == Some(true),
        }
    }

    fn path(&self, f: usize) -> &str {
        self.plan.fields.get(f).map_or("", |p| p.decl.path.as_str())
    }

    fn field(&self, path: &str) -> Result<usize, EncodeError> {
        self.plan
            .index(path)
            .ok_or_else(|| EncodeError::UnknownField(path.to_string()))
    }

    /// A Z3 string literal (cached).
    fn string(&mut self, s: &str) -> Result<ZStr, EncodeError> {
        if let Some(z) = self.strings.get(s) {
            return z
                .clone()
                .ok_or_else(|| EncodeError::Unrepresentable(s.to_string()));
        }
        let z = z3_literal(s).and_then(|t| t.parse::<ZStr>().ok());
        self.strings.insert(s.to_string(), z.clone());
        z.ok_or_else(|| EncodeError::Unrepresentable(s.to_string()))
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
        if let (Some((f, g)), Expr::Cmp { op, .. }) = (field_pair(e, &self.plan.schema), e) {
            if let Some(b) = self.field_pair(f, g, *op == CmpOp::Eq, over, needs)? {
                return Ok(pol(b));
            }
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
                let op = if positive { *op } else { negate(*op) };
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
            Expr::Contains { field, value }
            | Expr::StartsWith { field, value }
            | Expr::EndsWith { field, value } => {
                let s = self.string_term(field, over, needs)?;
                let lit = self.string(value)?;
                let holds = match e {
                    Expr::Contains { .. } => s.contains(&lit),
                    Expr::StartsWith { .. } => lit.prefix(&s),
                    _ => lit.suffix(&s),
                };
                Ok(pol(holds))
            }
            Expr::Matches { field, pattern } => {
                let s = self.string_term(field, over, needs)?;
                if !self.regexes.contains_key(pattern) {
                    self.load_patterns([pattern.as_str()]);
                }
                let m = match self.regexes.get(pattern) {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(e.clone()),
                    None => {
                        return Err(EncodeError::Regex {
                            pattern: pattern.clone(),
                            reason: "not loaded".into(),
                        });
                    }
                };
                let f = if positive { &m.pos } else { &m.neg };
                Ok(f.substitute(&[(&self.placeholder, &s)]))
            }
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

    /// The string term of a field read by a string operator.
    fn string_term(
        &mut self,
        field: &str,
        over: Option<&Override>,
        needs: &mut Needs,
    ) -> Result<ZStr, EncodeError> {
        match self.value(&Term::Field(field.to_string()), over, needs)? {
            Value::Str(s) => Ok(s),
            Value::StrLit(s) => self.string(&s),
            _ => Err(EncodeError::Type(format!("`{field}` is not a Z3 string"))),
        }
    }

    fn value(
        &mut self,
        t: &Term,
        over: Option<&Override>,
        needs: &mut Needs,
    ) -> Result<Value, EncodeError> {
        match t {
            Term::Lit(Literal::Int(i)) => Ok(Value::Int(Int::from_i64(*i))),
            Term::Lit(Literal::Bool(b)) => Ok(Value::Bool(Bool::from_bool(*b))),
            Term::Lit(Literal::Str(s)) => Ok(Value::StrLit(s.clone())),
            Term::Len(f) => {
                let i = self.field(f)?;
                if let Some(o) = over.filter(|o| o.field == i) {
                    let n = o.value.chars().count();
                    return Ok(Value::Int(int_of(n)));
                }
                match self.vars.get(i).map(|v| &v.vars) {
                    Some(Vars::Str(s)) => Ok(Value::Int(s.length())),
                    Some(Vars::Set { len, .. }) => {
                        needs.sets.entry(i).or_default();
                        Ok(Value::Int(len.clone()))
                    }
                    _ => Err(EncodeError::Type(format!(
                        "`len({f})` needs a string or a set"
                    ))),
                }
            }
            Term::Field(f) => {
                let i = self.field(f)?;
                if let Some(o) = over.filter(|o| o.field == i) {
                    return Ok(Value::StrLit(o.value.clone()));
                }
                match self.vars.get(i).map(|v| &v.vars) {
                    Some(Vars::Int(v)) => {
                        needs.ints.insert(i);
                        Ok(Value::Int(v.clone()))
                    }
                    Some(Vars::Bool(v)) => Ok(Value::Bool(v.clone())),
                    Some(Vars::Str(v)) => Ok(Value::Str(v.clone())),
                    Some(Vars::Code(v)) => Ok(Value::Code(v.clone(), i)),
                    Some(Vars::Lang(_) | Vars::Set { .. }) | None => Err(EncodeError::Type(
                        format!("`{f}` cannot be compared as a value"),
                    )),
                }
            }
        }
    }

    fn compare(&mut self, op: CmpOp, l: Value, r: Value) -> Result<Bool, EncodeError> {
        let eq_ne = |b: Bool| match op {
            CmpOp::Eq => Ok(b),
            CmpOp::Ne => Ok(b.not()),
            _ => Err(EncodeError::Type("ordering applies to ints only".into())),
        };
        match (l, r) {
            (Value::Int(a), Value::Int(b)) => Ok(match op {
                CmpOp::Eq => a.eq(&b),
                CmpOp::Ne => a.eq(&b).not(),
                CmpOp::Lt => a.lt(&b),
                CmpOp::Le => a.le(&b),
                CmpOp::Gt => a.gt(&b),
                CmpOp::Ge => a.ge(&b),
            }),
            (Value::Bool(a), Value::Bool(b)) => eq_ne(a.eq(&b)),
            (Value::Str(a), Value::Str(b)) => eq_ne(a.eq(&b)),
            (Value::Str(a), Value::StrLit(s)) | (Value::StrLit(s), Value::Str(a)) => {
                let b = self.string(&s)?;
                eq_ne(a.eq(&b))
            }
            (Value::StrLit(a), Value::StrLit(b)) => eq_ne(Bool::from_bool(a == b)),
            (Value::Code(c, f), Value::StrLit(s)) | (Value::StrLit(s), Value::Code(c, f)) => {
                // A literal against a coded field: the literal's code; a
                // literal the plan does not know is a value no code has.
                let Some(Repr::Code(lits)) = self.plan.repr(f) else {
                    return Err(EncodeError::Type("coded field without literals".into()));
                };
                match lits.binary_search(&s) {
                    Ok(k) => eq_ne(c.eq(int_of(k))),
                    Err(_) => eq_ne(Bool::from_bool(false)),
                }
            }
            _ => Err(EncodeError::Type("operands of different types".into())),
        }
    }

    /// The request a model describes: every required field, the optional
    /// ones the model makes present, values from the model (`strings` for
    /// automata-decided fields, from [`Encoder::refine`]) and defaults for
    /// what the model leaves open. `over` replaces a field as in encoding.
    pub fn witness(
        &self,
        model: &Model,
        over: Option<&Override>,
        strings: &BTreeMap<usize, String>,
    ) -> Result<Request, String> {
        let schema = &self.plan.schema;
        let mut req = Request::empty(schema);
        for (i, (plan, vars)) in self.plan.fields.iter().zip(&self.vars).enumerate() {
            let path = &plan.decl.path;
            if let Some(o) = over.filter(|o| o.field == i) {
                req.set(schema, path, Some(FieldValue::Str(o.value.clone())))
                    .map_err(|e| e.to_string())?;
                continue;
            }
            if !self.is_present(model, i) {
                continue;
            }
            let value = match (&vars.vars, &plan.repr) {
                (Vars::Int(v), _) => FieldValue::Int(
                    model
                        .eval(v, true)
                        .and_then(|x| x.as_i64())
                        .ok_or_else(|| format!("`{path}`: the model's integer does not fit i64"))?,
                ),
                (Vars::Bool(v), _) => FieldValue::Bool(
                    model
                        .eval(v, true)
                        .and_then(|x| x.as_bool())
                        .unwrap_or(false),
                ),
                (Vars::Str(v), _) => FieldValue::Str(model_string(model, v)?),
                (Vars::Lang(_), _) => FieldValue::Str(strings.get(&i).cloned().unwrap_or_default()),
                (Vars::Code(v), Repr::Code(lits)) => {
                    let code = model.eval(v, true).and_then(|x| x.as_i64()).unwrap_or(-1);
                    match usize::try_from(code).ok().and_then(|c| lits.get(c)) {
                        Some(s) => FieldValue::Str(s.clone()),
                        None => FieldValue::Str(fresh(lits, "other", 0)),
                    }
                }
                (Vars::Set { len, members }, Repr::Set(lits)) => {
                    let mut items: Vec<String> = lits
                        .iter()
                        .zip(members)
                        .filter(|(_, m)| {
                            model.eval(*m, true).and_then(|b| b.as_bool()) == Some(true)
                        })
                        .map(|(l, _)| l.clone())
                        .collect();
                    let n = model.eval(len, true).and_then(|x| x.as_i64()).unwrap_or(0);
                    let n = usize::try_from(n).unwrap_or(0);
                    if n > 100_000 {
                        return Err(format!("`{path}`: the model's set has {n} elements"));
                    }
                    let mut k = 0;
                    while items.len() < n {
                        k += 1;
                        items.push(fresh(lits, "item", k));
                    }
                    FieldValue::set(items)
                }
                _ => return Err(format!("`{path}`: inconsistent representation")),
            };
            req.set(schema, path, Some(value))
                .map_err(|e| e.to_string())?;
        }
        Ok(req)
    }
}

/// `{base}` or `{base}-{k}`, the first that is not among `taken` (sorted).
fn fresh(taken: &[String], base: &str, start: usize) -> String {
    let mut k = start;
    loop {
        let s = if k == 0 {
            base.to_string()
        } else {
            format!("{base}-{k}")
        };
        if taken.binary_search(&s).is_err() {
            return s;
        }
        k += 1;
    }
}

/// A string from the model. Z3 4.8.12 prints characters outside printable
/// ASCII as `\u{…}` but leaves `\` itself alone, so a value holding a
/// backslash is read one character at a time.
fn model_string(model: &Model, v: &ZStr) -> Result<String, String> {
    let whole = model
        .eval(v, true)
        .and_then(|s| s.as_string())
        .ok_or("the model has no value for a string")?;
    if !whole.contains('\\') {
        return Ok(whole);
    }
    let len = model
        .eval(&v.length(), true)
        .and_then(|n| n.as_i64())
        .ok_or("the model has no length for a string")?;
    let mut out = String::new();
    for i in 0..len {
        let c = model
            .eval(&v.at(Int::from_i64(i)), true)
            .and_then(|s| s.as_string())
            .ok_or("the model has no character")?;
        out.push(decode_char(&c).ok_or_else(|| format!("cannot read character `{c}`"))?);
    }
    Ok(out)
}

/// One character as Z3 prints it: itself, or `\u{hex}`.
fn decode_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => {
            let hex = s.strip_prefix("\\u{")?.strip_suffix('}')?;
            char::from_u32(u32::from_str_radix(hex, 16).ok()?)
        }
    }
}

/// A string for `Z3_mk_string`, which reads `\u{…}` escapes: printable
/// ASCII but `\` as is, the rest escaped. `None` above U+2FFFF.
pub fn z3_literal(s: &str) -> Option<String> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\u{5c}"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= MAX_CHAR => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            _ => return None,
        }
    }
    Some(out)
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

pub(crate) fn negate(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Eq => CmpOp::Ne,
        CmpOp::Ne => CmpOp::Eq,
        CmpOp::Lt => CmpOp::Ge,
        CmpOp::Le => CmpOp::Gt,
        CmpOp::Gt => CmpOp::Le,
        CmpOp::Ge => CmpOp::Lt,
    }
}

fn int_of(n: usize) -> Int {
    Int::from_i64(i64::try_from(n).unwrap_or(i64::MAX))
}

fn clone_value(v: &Value) -> Value {
    match v {
        Value::Int(x) => Value::Int(x.clone()),
        Value::Bool(x) => Value::Bool(x.clone()),
        Value::Str(x) => Value::Str(x.clone()),
        Value::StrLit(x) => Value::StrLit(x.clone()),
        Value::Code(x, f) => Value::Code(x.clone(), *f),
    }
}

/// Union-find over field positions.
#[derive(Debug, Default)]
struct Classes {
    parent: BTreeMap<usize, usize>,
}

impl Classes {
    fn find(&mut self, x: usize) -> usize {
        let mut root = x;
        while let Some(&p) = self.parent.get(&root) {
            if p == root {
                break;
            }
            root = p;
        }
        self.parent.insert(x, root);
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(ra.max(rb), ra.min(rb));
        }
    }
}

enum Distinct {
    /// A string per class, pairwise different along the edges.
    Found(BTreeMap<usize, String>),
    /// These classes cannot all differ as required.
    Impossible(Vec<usize>),
    Unknown,
}

/// Past this many automata searches, choosing distinct strings gives up.
const MAX_DISTINCT_SEARCHES: usize = 256;

/// Chooses strings for the classes on `edges` (each meeting its tests,
/// `lits_of`) so that the two ends of every edge differ: depth first, each
/// class trying strings that avoid its assigned neighbours and its earlier
/// tries, jumping back to the latest neighbour when none is left. A class
/// with more strings than neighbours always finds one, so the search only
/// backtracks over classes with few strings.
fn distinct(
    table: &Table,
    lits_of: &BTreeMap<usize, Vec<(usize, bool)>>,
    edges: &BTreeSet<(usize, usize)>,
) -> Distinct {
    let nodes: Vec<usize> = edges
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let neighbours = |n: usize| -> Vec<usize> {
        edges
            .iter()
            .filter_map(|(a, b)| {
                if *a == n {
                    Some(*b)
                } else if *b == n {
                    Some(*a)
                } else {
                    None
                }
            })
            .collect()
    };
    let mut assigned: BTreeMap<usize, String> = BTreeMap::new();
    let mut tried: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    let mut searches = 0;
    let mut i = 0;
    while i < nodes.len() {
        let Some(&node) = nodes.get(i) else { break };
        let mut avoid: Vec<String> = neighbours(node)
            .iter()
            .filter_map(|m| assigned.get(m).cloned())
            .collect();
        avoid.extend(tried.get(i).into_iter().flatten().cloned());
        searches += 1;
        if searches > MAX_DISTINCT_SEARCHES {
            return Distinct::Unknown;
        }
        let lits = lits_of.get(&node).cloned().unwrap_or_default();
        match lang::check_avoiding(table, &lits, &avoid) {
            Ok(lang::Check::Sat(w)) => {
                if let Some(t) = tried.get_mut(i) {
                    t.push(w.clone());
                }
                assigned.insert(node, w);
                i += 1;
            }
            Ok(lang::Check::Unsat) => {
                // Jump back to the latest neighbour assigned before this
                // class (only neighbours constrain it); the classes in
                // between start over.
                let earlier = neighbours(node)
                    .into_iter()
                    .filter_map(|m| nodes.iter().position(|x| *x == m))
                    .filter(|p| *p < i)
                    .max();
                let Some(back) = earlier else {
                    return Distinct::Impossible(nodes);
                };
                for k in back + 1..=i {
                    if let Some(t) = tried.get_mut(k) {
                        t.clear();
                    }
                    if let Some(n) = nodes.get(k) {
                        assigned.remove(n);
                    }
                }
                if let Some(n) = nodes.get(back) {
                    assigned.remove(n);
                }
                i = back;
            }
            Ok(lang::Check::Unknown) | Err(_) => return Distinct::Unknown,
        }
    }
    Distinct::Found(assigned)
}
