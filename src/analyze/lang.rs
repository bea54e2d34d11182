//! String constraints decided with automata: the theory of string values
//! for the conflict analysis, next to Z3's integers and booleans.
//!
//! Z3 4.8.12's string solvers are too slow and too fragile for policy
//! conditions (a model for `s matches "sk_live_[A-Za-z0-9]{8,}"` timed out
//! after 5 s, `len(s) > 1100` next to an int ran past every timeout, and
//! they know no character above U+2FFFF), so no string ever reaches Z3.
//! Each test of one string field against a literal (`==`, `in`,
//! `starts_with`, `ends_with`, `contains`, `matches`) is an [`Atom`]: Z3
//! sees it as a plain boolean, and a string's length as a plain integer.
//! This module decides whether the atoms a Z3 model sets true and false for
//! one field can hold together — at the length the model gives, when it
//! gives one — by a search of the product of their automata
//! (`regex-automata`'s lazy DFAs: full Unicode, exact `is_match`
//! semantics, states built only as the search reaches them, so a
//! card-number regex whose full DFA would not fit is searched all the
//! same), and returns the shortest such string as the witness value, a
//! small inconsistent subset for Z3 to rule out, or the lengths the subset
//! allows (lazy SMT).
//!
//! Submodules: `product` (the search of a product, and its whole graph)
//! < `lengths` (the lengths a product accepts, and a string of a given
//! length). Pure: no solver, no I/O. Every automaton is built at most once
//! per process ([`Table`] shares them between threads); the states a search
//! reaches live in each thread's [`Memo`].

mod lengths;
mod product;
mod seeds;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use regex_automata::MatchKind;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, Repetition};

pub use self::lengths::LengthSet;
use self::product::{Comp, Found};
use self::seeds::{CORE_IDS, candidates, factor_form, seed};

/// Tests of one string and the truth each is wanted with: (atom id, truth).
pub type Lits = Vec<(usize, bool)>;

/// Lengths up to this many characters are searched one at a time
/// ([`Memo::field`]).
const SHORT: u64 = 16;

/// Product searches past this many states give up (`Unknown`).
pub const MAX_STATES: usize = 200_000;

/// The memory one automaton may use for the states a thread's searches
/// build; a search that needs more gives up (`Unknown`).
const CACHE_BYTES: usize = 64 << 20;

/// The size the automaton of one test may have (its NFA); a larger one is
/// not analysed (`analyze::unencodable`).
const NFA_BYTES: usize = 8 << 20;

/// A test of one string value against literals. Its language is the set of
/// values for which the test holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// `== lit`.
    Eq(String),
    /// `in [lits]` (sorted, deduplicated, at least two).
    In(Vec<String>),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// `matches pattern`: an unanchored search, as `Regex::is_match`.
    Matches(String),
}

impl Atom {
    /// The atom as the policy would say it, for messages.
    pub fn describe(&self) -> String {
        match self {
            Atom::Eq(s) => format!("== {s:?}"),
            Atom::In(v) => format!("in {v:?}"),
            Atom::Prefix(s) => format!("starts_with {s:?}"),
            Atom::Suffix(s) => format!("ends_with {s:?}"),
            Atom::Contains(s) => format!("contains {s:?}"),
            Atom::Matches(s) => format!("matches {s:?}"),
        }
    }

    /// Whether the test holds for `s` (computed directly, as the evaluator
    /// does).
    pub fn holds(&self, s: &str) -> Result<bool, LangError> {
        Ok(match self {
            Atom::Eq(l) => s == l,
            Atom::In(v) => v.iter().any(|x| x == s),
            Atom::Prefix(p) => s.starts_with(p.as_str()),
            Atom::Suffix(p) => s.ends_with(p.as_str()),
            Atom::Contains(p) => s.contains(p.as_str()),
            Atom::Matches(p) => regex::Regex::new(p)
                .map_err(|e| LangError(format!("regex `{p}`: {e}")))?
                .is_match(s),
        })
    }

    fn hir(&self) -> Result<Hir, LangError> {
        let lit = |s: &str| Hir::literal(s.as_bytes());
        Ok(match self {
            Atom::Eq(s) => lit(s),
            Atom::In(v) => Hir::alternation(v.iter().map(|s| lit(s)).collect()),
            Atom::Prefix(s) => Hir::concat(vec![lit(s), any_star()]),
            Atom::Suffix(s) => Hir::concat(vec![any_star(), lit(s)]),
            Atom::Contains(s) => Hir::concat(vec![any_star(), lit(s), any_star()]),
            Atom::Matches(p) => {
                let inner = regex_syntax::Parser::new()
                    .parse(p)
                    .map_err(|e| LangError(format!("regex `{p}`: {e}")))?;
                Hir::concat(vec![any_star(), inner, any_star()])
            }
        })
    }
}

fn any_star() -> Hir {
    let any = Hir::class(Class::Unicode(ClassUnicode::new([ClassUnicodeRange::new(
        '\0',
        char::MAX,
    )])));
    Hir::repetition(Repetition {
        min: 0,
        max: None,
        greedy: true,
        sub: Box::new(any),
    })
}

/// Why an atom has no automaton.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LangError(String);

/// The language of an atom: a lazy DFA matching exactly the strings for
/// which the atom holds (anchored at both ends). Shared by every thread;
/// the states a thread reaches live in its own [`Cache`].
#[derive(Debug)]
pub struct Lang {
    dfa: DFA,
    /// A string it accepts, every extension of it accepts too (`starts_with`,
    /// `contains`, a regex without anchors or word boundaries).
    monotone: bool,
}

impl Lang {
    pub fn new(atom: &Atom) -> Result<Lang, LangError> {
        let hir = atom.hir()?;
        let monotone = match atom {
            Atom::Prefix(_) | Atom::Contains(_) => true,
            Atom::Matches(_) => hir.properties().look_set().is_empty(),
            Atom::Eq(_) | Atom::In(_) | Atom::Suffix(_) => false,
        };
        let mut lang = Lang::from_hir(&hir)?;
        lang.monotone = monotone;
        Ok(lang)
    }

    /// Every string (valid UTF-8).
    pub fn everything() -> Result<Lang, LangError> {
        Lang::from_hir(&any_star())
    }

    fn from_hir(hir: &Hir) -> Result<Lang, LangError> {
        let err = |e: &dyn std::fmt::Display| LangError(e.to_string());
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .which_captures(thompson::WhichCaptures::None)
                    .nfa_size_limit(Some(NFA_BYTES)),
            )
            .build_from_hir(hir)
            .map_err(|e| err(&e))?;
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(CACHE_BYTES)
                    .skip_cache_capacity_check(true),
            )
            .build_from_nfa(nfa)
            .map_err(|e| err(&e))?;
        Ok(Lang {
            dfa,
            monotone: false,
        })
    }

    fn cache(&self) -> Cache {
        self.dfa.create_cache()
    }

    /// Does the atom hold for `s`? (`None`: the automaton gave up.)
    pub fn accepts(&self, s: &str) -> Option<bool> {
        let mut cache = self.cache();
        let mut comp = Comp::new(self, &mut cache, true);
        comp.accepts(s.as_bytes())
    }
}

/// When a search must stop: a wall-clock deadline, and how long the whole
/// question was given (for the message).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    ms: u32,
}

impl Deadline {
    /// `ms` milliseconds from now.
    pub fn after(ms: u32) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(std::time::Duration::from_millis(u64::from(ms))),
            ms,
        }
    }

    /// No deadline.
    pub fn none() -> Deadline {
        Deadline { at: None, ms: 0 }
    }

    pub fn passed(&self) -> bool {
        self.at.is_some_and(|t| Instant::now() >= t)
    }

    /// What is left, in milliseconds (`None` without a deadline).
    pub fn remaining_ms(&self) -> Option<u32> {
        let at = self.at?;
        let left = at.saturating_duration_since(Instant::now()).as_millis();
        Some(u32::try_from(left).unwrap_or(u32::MAX))
    }

    /// The message of a question stopped by this deadline. It names the
    /// timeout only, never what the solver said (`timeout`, `canceled`…),
    /// so that the same open question reads the same in every run.
    pub fn reason(&self) -> String {
        format!("no answer within {} ms", self.ms)
    }
}

/// Why a search stopped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// More product states than [`MAX_STATES`], or than an automaton's
    /// cache holds.
    States,
    /// The deadline passed.
    Time,
}

/// Whether atoms with given truth values can hold together for one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// They can; the shortest such string (of the length asked for, when
    /// one was).
    Sat(String),
    Unsat,
    Unknown(Stop),
}

/// Compiled automata are kept for the life of the process (a daemon checks
/// every commit, mostly with the same regexes), up to this many.
const CACHE_ENTRIES: usize = 4096;

/// Compiles `atom`, or takes it from the process-wide cache.
fn compiled(atom: &Atom) -> Result<Arc<Lang>, LangError> {
    static CACHE: OnceLock<Mutex<HashMap<Atom, Arc<Lang>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(l) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(atom) {
        return Ok(Arc::clone(l));
    }
    // Compiled outside the lock: two threads may compile the same atom once
    // each, which is harmless.
    let lang = Arc::new(Lang::new(atom)?);
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() >= CACHE_ENTRIES {
        guard.clear();
    }
    guard.insert(atom.clone(), Arc::clone(&lang));
    Ok(lang)
}

/// The language of every string, built once per process.
fn valid() -> Result<Arc<Lang>, LangError> {
    static VALID: OnceLock<Result<Arc<Lang>, LangError>> = OnceLock::new();
    VALID
        .get_or_init(|| Lang::everything().map(Arc::new))
        .clone()
}

/// Can `pattern` match some string? `false` when it cannot, or when the
/// search gives up (callers treat `false` as "ask the solver").
pub fn can_match(pattern: &str) -> bool {
    let Ok(lang) = compiled(&Atom::Matches(pattern.to_string())) else {
        return false;
    };
    if seed(pattern).is_some_and(|w| lang.accepts(&w) == Some(true)) {
        return true;
    }
    let mut memo = Memo::default();
    matches!(
        memo.search(&[(&lang, usize::MAX - 1, true)], None, Deadline::none()),
        Check::Sat(_)
    )
}

/// The atoms of an analysis with their automata, compiled on first use and
/// shared by every thread.
#[derive(Debug, Default)]
pub struct Table {
    atoms: Vec<Atom>,
    langs: Vec<OnceLock<Result<Arc<Lang>, LangError>>>,
}

impl Table {
    /// A table of `atoms` (ids are positions).
    pub fn new(atoms: Vec<Atom>) -> Table {
        let langs = atoms.iter().map(|_| OnceLock::new()).collect();
        Table { atoms, langs }
    }

    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }

    /// The automaton of atom `id`, compiled now if it is the first use.
    pub fn lang(&self, id: usize) -> Result<&Arc<Lang>, LangError> {
        let (Some(atom), Some(cell)) = (self.atoms.get(id), self.langs.get(id)) else {
            return Err(LangError(format!("no atom {id}")));
        };
        cell.get_or_init(|| compiled(atom))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// One thread's searches: the automata states it has built (a cache per
/// automaton) and the verdicts so far.
#[derive(Debug, Default)]
pub struct Memo {
    /// By atom id; `usize::MAX` is the language of every string, other
    /// large ids the strings a search must avoid.
    caches: HashMap<usize, (Arc<Lang>, Cache)>,
    results: HashMap<(Lits, Option<u64>), Check>,
    lengths: HashMap<Vec<(usize, bool)>, Result<LengthSet, Stop>>,
}

/// The verdict on one field's atoms, with an inconsistent subset when
/// there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldCheck {
    Sat(String),
    /// These (atom, truth) pairs cannot hold together.
    Unsat(Vec<(usize, bool)>),
    /// These pairs can hold together, but only at these lengths, and the
    /// length asked for is not one of them.
    Lengths(Vec<(usize, bool)>, LengthSet),
    Unknown(String),
}

/// The id of the automaton of every string in a [`Memo`].
const VALID_ID: usize = usize::MAX;

impl Memo {
    /// Decides `lits` (atom ids, wanted truth), at exactly `len` characters
    /// when given; when they conflict, shrinks them to a subset that still
    /// conflicts. `what` names the field, for messages.
    pub fn field(
        &mut self,
        table: &Table,
        lits: &[(usize, bool)],
        len: Option<u64>,
        deadline: Deadline,
        what: &str,
    ) -> FieldCheck {
        let mut lits = lits.to_vec();
        lits.sort_unstable();
        lits.dedup();
        // One test both true and false.
        if let Some(w) = lits.windows(2).find(|w| matches!(w, [a, b] if a.0 == b.0)) {
            return FieldCheck::Unsat(w.to_vec());
        }
        let unknown = |stop: Stop| FieldCheck::Unknown(stop_reason(stop, deadline, what));
        match self.decide(table, &lits, None, deadline) {
            Err(e) => return FieldCheck::Unknown(e.to_string()),
            Ok(Check::Unknown(s)) => return unknown(s),
            Ok(Check::Sat(w)) => {
                let Some(n) = len else {
                    return FieldCheck::Sat(w);
                };
                if u64::try_from(w.chars().count()).ok() == Some(n) {
                    return FieldCheck::Sat(w);
                }
                if let Some(w) = self.padded(table, &lits, &w, n) {
                    return FieldCheck::Sat(w);
                }
                // A short length: the strings of exactly that length are
                // searched alone (every length at once can take far
                // longer); none rules out that length only.
                if n <= SHORT {
                    return match self.short(table, &lits, n, deadline) {
                        Err(e) => FieldCheck::Unknown(e.to_string()),
                        Ok(Ok(Some(w))) => FieldCheck::Sat(w),
                        Ok(Ok(None)) => FieldCheck::Lengths(lits, LengthSet::all_but(n)),
                        Ok(Err(s)) => unknown(s),
                    };
                }
                return match self.at_length(table, &lits, n, deadline) {
                    Err(e) => FieldCheck::Unknown(e.to_string()),
                    Ok(Ok(Some(w))) => FieldCheck::Sat(w),
                    Ok(Err(s)) => unknown(s),
                    Ok(Ok(None)) => match self.length_core(table, lits, n, deadline) {
                        Err(e) => FieldCheck::Unknown(e.to_string()),
                        Ok(Ok((core, set))) => FieldCheck::Lengths(core, set),
                        Ok(Err(s)) => unknown(s),
                    },
                };
            }
            Ok(Check::Unsat) => {}
        }
        let mut core = lits;
        let mut i = 0;
        while i < core.len() && core.len() > 1 {
            let mut without = core.clone();
            without.remove(i);
            if matches!(
                self.decide(table, &without, None, deadline),
                Ok(Check::Unsat)
            ) {
                core = without;
            } else {
                i += 1;
            }
        }
        FieldCheck::Unsat(core)
    }

    /// Searches for a string meeting `lits` (atom ids of `table`, wanted
    /// truth), of exactly `len` characters when given, that is none of
    /// `avoid`.
    pub fn check_avoiding(
        &mut self,
        table: &Table,
        lits: &[(usize, bool)],
        avoid: &[String],
        len: Option<u64>,
        deadline: Deadline,
    ) -> Result<Check, LangError> {
        let mut langs: Vec<(Arc<Lang>, usize, bool)> = Vec::new();
        for (i, t) in lits {
            langs.push((Arc::clone(table.lang(*i)?), *i, *t));
        }
        for (k, w) in avoid.iter().enumerate() {
            // Ids past every atom's and below `VALID_ID`: fresh caches.
            let id = VALID_ID - 2 - k;
            let lang = compiled(&Atom::Eq(w.clone()))?;
            self.caches.remove(&id);
            langs.push((lang, id, false));
        }
        let refs: Vec<(&Arc<Lang>, usize, bool)> =
            langs.iter().map(|(l, i, t)| (l, *i, *t)).collect();
        Ok(match len {
            None => self.search(&refs, None, deadline),
            Some(n) => match self.graph_of(&refs, deadline) {
                Err(s) => Check::Unknown(s),
                Ok(g) => match lengths::of_length(&g, n, deadline) {
                    Err(s) => Check::Unknown(s),
                    Ok(Some(w)) => Check::Sat(w),
                    Ok(None) => Check::Unsat,
                },
            },
        })
    }

    /// The lengths at which `lits` can hold together.
    pub fn lengths(
        &mut self,
        table: &Table,
        lits: &[(usize, bool)],
        deadline: Deadline,
    ) -> Result<Result<LengthSet, Stop>, LangError> {
        if let Some(r) = self.lengths.get(lits) {
            return Ok(r.clone());
        }
        let langs = langs_of(table, lits)?;
        let refs: Vec<(&Arc<Lang>, usize, bool)> =
            langs.iter().map(|(l, i, t)| (l, *i, *t)).collect();
        let r = self
            .graph_of(&refs, deadline)
            .and_then(|g| lengths::lengths(&g, deadline));
        if r != Err(Stop::Time) {
            self.lengths.insert(lits.to_vec(), r.clone());
        }
        Ok(r)
    }

    /// `w` (which meets `lits`) padded to exactly `n` characters, after it
    /// or before it, when that still meets `lits` — most lengths asked for
    /// are "long enough", and the automata of every length can be far
    /// larger than the search for one string.
    fn padded(&mut self, table: &Table, lits: &[(usize, bool)], w: &str, n: u64) -> Option<String> {
        let have = u64::try_from(w.chars().count()).ok()?;
        if n <= have || n > lengths::MAX_WITNESS_CHARS {
            return None;
        }
        let k = usize::try_from(n - have).ok()?;
        let mut cands = Vec::new();
        for fill in ['a', ' ', '0', '.'] {
            let pad: String = std::iter::repeat_n(fill, k).collect();
            cands.push(format!("{w}{pad}"));
            cands.push(format!("{pad}{w}"));
        }
        let langs = langs_of(table, lits).ok()?;
        let refs: Vec<(&Arc<Lang>, usize, bool)> =
            langs.iter().map(|(l, i, t)| (l, *i, *t)).collect();
        self.first_of(&refs, &cands).ok().flatten()
    }

    /// A string meeting `lits` of exactly `n` characters, `n` at most
    /// [`SHORT`], searched among the strings of at most `n` characters.
    fn short(
        &mut self,
        table: &Table,
        lits: &[(usize, bool)],
        n: u64,
        deadline: Deadline,
    ) -> Result<Result<Option<String>, Stop>, LangError> {
        let langs = langs_of(table, lits)?;
        let refs: Vec<(&Arc<Lang>, usize, bool)> =
            langs.iter().map(|(l, i, t)| (l, *i, *t)).collect();
        let bytes = usize::try_from(n.saturating_mul(4)).unwrap_or(usize::MAX);
        Ok(self
            .with_comps(&refs, |comps| product::graph_within(comps, deadline, bytes))
            .and_then(|g| g)
            .and_then(|g| lengths::of_length(&g, n, deadline)))
    }

    /// A string meeting `lits` of exactly `n` characters (`None`: there is
    /// none).
    fn at_length(
        &mut self,
        table: &Table,
        lits: &[(usize, bool)],
        n: u64,
        deadline: Deadline,
    ) -> Result<Result<Option<String>, Stop>, LangError> {
        match self.lengths(table, lits, deadline)? {
            Err(s) => return Ok(Err(s)),
            Ok(set) if !set.contains(n) => return Ok(Ok(None)),
            Ok(_) => {}
        }
        let key = (lits.to_vec(), Some(n));
        if let Some(Check::Sat(w)) = self.results.get(&key) {
            return Ok(Ok(Some(w.clone())));
        }
        let langs = langs_of(table, lits)?;
        let refs: Vec<(&Arc<Lang>, usize, bool)> =
            langs.iter().map(|(l, i, t)| (l, *i, *t)).collect();
        let found = self
            .graph_of(&refs, deadline)
            .and_then(|g| lengths::of_length(&g, n, deadline));
        if let Ok(Some(w)) = &found {
            self.results.insert(key, Check::Sat(w.clone()));
        }
        Ok(found)
    }

    /// A subset of `lits` that still excludes length `n`, with the lengths
    /// it allows.
    fn length_core(
        &mut self,
        table: &Table,
        lits: Vec<(usize, bool)>,
        n: u64,
        deadline: Deadline,
    ) -> Result<Result<(Lits, LengthSet), Stop>, LangError> {
        let mut core = lits;
        let mut set = match self.lengths(table, &core, deadline)? {
            Ok(s) => s,
            Err(s) => return Ok(Err(s)),
        };
        let mut i = 0;
        while i < core.len() && core.len() > 1 {
            let mut without = core.clone();
            without.remove(i);
            match self.lengths(table, &without, deadline)? {
                Ok(s) if !s.contains(n) => {
                    core = without;
                    set = s;
                }
                _ => i += 1,
            }
        }
        Ok(Ok((core, set)))
    }

    fn decide(
        &mut self,
        table: &Table,
        lits: &[(usize, bool)],
        len: Option<u64>,
        deadline: Deadline,
    ) -> Result<Check, LangError> {
        let key = (lits.to_vec(), len);
        if let Some(c) = self.results.get(&key) {
            return Ok(c.clone());
        }
        let langs = langs_of(table, lits)?;
        let refs: Vec<(&Arc<Lang>, usize, bool)> =
            langs.iter().map(|(l, i, t)| (l, *i, *t)).collect();
        let c = match (len, self.first_of(&refs, &candidates(table, lits))) {
            (None, Ok(Some(w))) => Check::Sat(w),
            (None, _) => match factor_form(table, lits)? {
                Some((at, core)) => {
                    let mut refs = refs;
                    if let Some(slot) = refs.get_mut(at) {
                        *slot = (&core, CORE_IDS + slot.1, true);
                    }
                    self.search(&refs, None, deadline)
                }
                None => self.search(&refs, None, deadline),
            },
            _ => self.search(&refs, len, deadline),
        };
        if c != Check::Unknown(Stop::Time) {
            self.results.insert(key, c.clone());
        }
        Ok(c)
    }

    /// The first of `candidates` that every component of `langs` gives its
    /// wanted verdict.
    fn first_of(
        &mut self,
        langs: &[(&Arc<Lang>, usize, bool)],
        candidates: &[String],
    ) -> Result<Option<String>, Stop> {
        if candidates.is_empty() {
            return Ok(None);
        }
        self.with_comps(langs, |comps| {
            candidates
                .iter()
                .find(|w| {
                    comps
                        .iter_mut()
                        .all(|c| c.accepts(w.as_bytes()) == Some(c.wants()))
                })
                .cloned()
        })
    }

    /// Runs `f` on the components of `langs` (each with this thread's
    /// cache) after the language of every string.
    fn with_comps<T>(
        &mut self,
        langs: &[(&Arc<Lang>, usize, bool)],
        f: impl FnOnce(&mut [Comp<'_>]) -> T,
    ) -> Result<T, Stop> {
        let valid = valid().map_err(|_| Stop::States)?;
        let mut taken: Vec<(Arc<Lang>, Cache, usize, bool)> = Vec::with_capacity(langs.len() + 1);
        for (lang, id, want) in
            std::iter::once((&valid, VALID_ID, true)).chain(langs.iter().copied())
        {
            let (l, cache) = match self.caches.remove(&id) {
                Some((l, c)) if Arc::ptr_eq(&l, lang) => (l, c),
                _ => (Arc::clone(lang), lang.cache()),
            };
            taken.push((l, cache, id, want));
        }
        let result = {
            let mut comps: Vec<Comp<'_>> = taken
                .iter_mut()
                .map(|(l, c, _, want)| Comp::new(l, c, *want))
                .collect();
            f(&mut comps)
        };
        for (l, c, id, _) in taken {
            self.caches.insert(id, (l, c));
        }
        Ok(result)
    }

    /// The shortest string meeting `langs` (valid UTF-8).
    fn search(
        &mut self,
        langs: &[(&Arc<Lang>, usize, bool)],
        len: Option<u64>,
        deadline: Deadline,
    ) -> Check {
        if let Some(n) = len {
            return match self
                .graph_of(langs, deadline)
                .and_then(|g| lengths::of_length(&g, n, deadline))
            {
                Ok(Some(w)) => Check::Sat(w),
                Ok(None) => Check::Unsat,
                Err(s) => Check::Unknown(s),
            };
        }
        match self.with_comps(langs, |comps| product::shortest(comps, deadline)) {
            Ok(Found::Sat(w)) => Check::Sat(w),
            Ok(Found::Unsat) => Check::Unsat,
            Ok(Found::Stopped(s)) | Err(s) => Check::Unknown(s),
        }
    }

    fn graph_of(
        &mut self,
        langs: &[(&Arc<Lang>, usize, bool)],
        deadline: Deadline,
    ) -> Result<product::Graph, Stop> {
        self.with_comps(langs, |comps| product::graph(comps, deadline))?
    }
}

fn langs_of(
    table: &Table,
    lits: &[(usize, bool)],
) -> Result<Vec<(Arc<Lang>, usize, bool)>, LangError> {
    lits.iter()
        .map(|(i, t)| table.lang(*i).map(|l| (Arc::clone(l), *i, *t)))
        .collect()
}

/// The message of a search that stopped, naming the field.
pub fn stop_reason(stop: Stop, deadline: Deadline, what: &str) -> String {
    match stop {
        Stop::Time => deadline.reason(),
        Stop::States => format!(
            "combining the string tests on `{what}` needs more than {MAX_STATES} automaton states"
        ),
    }
}

#[cfg(test)]
mod tests;
