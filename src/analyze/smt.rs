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
//! - any other `string` (read by `starts_with`, `ends_with`, `contains`,
//!   `matches`, compared with another string field, or its `len` read) →
//!   one boolean per distinct test against a literal
//!   ([`lang::Atom`](crate::analyze::lang::Atom)), and an integer
//!   `len!field` when its length is read. Whether the tests a model sets
//!   true and false can hold together for one string of the model's
//!   length is decided by automata ([`Encoder::refine`]); when they cannot,
//!   Z3 gets a clause that rules that combination out (or that confines
//!   the length to the lengths those tests allow), and is asked again (lazy
//!   SMT). A string compared with another string field (`a == b`, `a != b`)
//!   is decided the same way: the comparison is one more boolean, fields
//!   that the model makes equal share one value (and one length), and
//!   fields it makes different get different values. No string is ever a
//!   Z3 string: every character, U+E0000 included, is decided exactly.
//! - `set<string>` → one boolean per literal the set's rules test with
//!   `contains` ("the set holds this literal") and an integer length; a
//!   query that reads the set asserts `len ≥ Σ members`. The other elements
//!   of a witness set are distinct strings no rule mentions, so the encoding
//!   is exact for `contains "lit"` and `len`.
//! - an optional field → a presence boolean `has!field`. SPEC §2: an atom that
//!   reads an absent field is false, so a positive atom is `has ∧ test` and a
//!   negated one `¬has ∨ ¬test` (conditions are put in negation normal form
//!   on the way).
//!
//! Submodules, each using only those before it (and the types of this
//! root: [`EncodeError`], [`Override`], [`Needs`], [`Encoded`],
//! [`Refinement`]): `strings` (a condition's string tests, normalised) <
//! `plan` ([`Plan`]: each field's representation) < `encoder` ([`Encoder`]:
//! the Z3 constants of one thread) < `value` (terms and comparisons) <
//! `encode` (conditions into formulas) < `refine` (a model's string tests
//! checked by automata) and `model` (a model back into a request). `index`
//! is never used: what both read off a condition lives in `cond`.

mod encode;
mod encoder;
mod model;
mod plan;
mod refine;
mod strings;
mod value;

use std::collections::{BTreeMap, BTreeSet};

use z3::ast::Bool;

pub use self::encoder::Encoder;
pub use self::plan::{FieldPlan, Plan, Repr};

/// Why a condition could not be encoded. The rule is then left out of the
/// analysis and reported (`analyze::unencodable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("field `{0}` is not in the schema")]
    UnknownField(String),
    #[error("regex `{pattern}`: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("{0}")]
    Type(String),
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
    /// Automata-decided fields whose length is read.
    lens: BTreeSet<usize>,
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
        self.lens.extend(other.lens.iter().copied());
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
