//! String constraints decided with automata: the theory of string values
//! for the conflict analysis, next to Z3's integers and booleans.
//!
//! Z3 4.8.12's string solvers are too slow and too fragile for policy
//! conditions: building a model for `s matches "sk_live_[A-Za-z0-9]{8,}"`
//! timed out after 5 s, `len(s) > 78` took 0.6–1.2 s, and a regex next to
//! its own complement came back `unknown`. So each test of one string field
//! against a literal (`==`, `in`, `starts_with`, `ends_with`, `contains`,
//! `matches`, `len(s) op N`) is an [`Atom`]: Z3 sees it as a plain boolean,
//! and this module decides whether the atoms a Z3 model sets true and false
//! for one field can hold together — by a breadth-first search of the
//! product of their DFAs (`regex-automata`, full Unicode, exact `is_match`
//! semantics) — and returns the shortest such string as the witness value,
//! or a small inconsistent subset for Z3 to rule out (lazy SMT).
//!
//! Pure: no solver, no I/O. Every language is compiled at most once per
//! analysis, on first use ([`Table`]), and shared by the worker threads: a
//! regex such as `AKIA[A-Z0-9]{16}` searched anywhere determinises into a
//! 2 MB DFA (about 0.2 s), which a rule that is only checked for being
//! satisfiable on its own never needs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, Repetition};

/// Lengths above this are not compiled to automata (the field is then
/// encoded with Z3's strings instead).
pub const MAX_LEN: u64 = 1024;

/// Product searches past this many states give up (`Unknown`).
pub const MAX_STATES: usize = 200_000;

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
    /// `lo <= len <= hi` in characters (`hi` `None`: unbounded).
    Len {
        lo: u64,
        hi: Option<u64>,
    },
    /// `len in [lens]` (sorted).
    LenIn(Vec<u64>),
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
            Atom::Len { lo, hi: Some(h) } => format!("len in {lo}..={h}"),
            Atom::Len { lo, hi: None } => format!("len >= {lo}"),
            Atom::LenIn(v) => format!("len in {v:?}"),
        }
    }

    /// Whether the test holds for `s` (computed directly, as the evaluator
    /// does).
    pub fn holds(&self, s: &str) -> Result<bool, LangError> {
        let n = u64::try_from(s.chars().count()).unwrap_or(u64::MAX);
        Ok(match self {
            Atom::Eq(l) => s == l,
            Atom::In(v) => v.iter().any(|x| x == s),
            Atom::Prefix(p) => s.starts_with(p.as_str()),
            Atom::Suffix(p) => s.ends_with(p.as_str()),
            Atom::Contains(p) => s.contains(p.as_str()),
            Atom::Matches(p) => regex::Regex::new(p)
                .map_err(|e| LangError(format!("regex `{p}`: {e}")))?
                .is_match(s),
            Atom::Len { lo, hi } => n >= *lo && hi.is_none_or(|h| n <= h),
            Atom::LenIn(v) => v.contains(&n),
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
            Atom::Len { lo, hi } => repeat_any(*lo, *hi)?,
            Atom::LenIn(v) => Hir::alternation(
                v.iter()
                    .map(|n| repeat_any(*n, Some(*n)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        })
    }
}

fn any() -> Hir {
    Hir::class(Class::Unicode(ClassUnicode::new([ClassUnicodeRange::new(
        '\0',
        char::MAX,
    )])))
}

fn any_star() -> Hir {
    Hir::repetition(Repetition {
        min: 0,
        max: None,
        greedy: true,
        sub: Box::new(any()),
    })
}

fn repeat_any(lo: u64, hi: Option<u64>) -> Result<Hir, LangError> {
    let too_long = || LangError(format!("lengths beyond {MAX_LEN} are not compiled"));
    if lo > MAX_LEN || hi.is_some_and(|h| h > MAX_LEN) {
        return Err(too_long());
    }
    let min = u32::try_from(lo).map_err(|_| too_long())?;
    let max = hi.map(u32::try_from).transpose().map_err(|_| too_long())?;
    Ok(Hir::repetition(Repetition {
        min,
        max,
        greedy: true,
        sub: Box::new(any()),
    }))
}

/// Why an atom has no automaton.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LangError(String);

/// The language of an atom: a DFA matching exactly the strings for which
/// the atom holds (anchored at both ends).
#[derive(Debug, Clone)]
pub struct Lang {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl Lang {
    pub fn new(atom: &Atom) -> Result<Lang, LangError> {
        Lang::from_hir(&atom.hir()?)
    }

    /// Every string.
    pub fn everything() -> Result<Lang, LangError> {
        Lang::from_hir(&any_star())
    }

    fn from_hir(hir: &Hir) -> Result<Lang, LangError> {
        let err = |e: &dyn std::fmt::Display| LangError(e.to_string());
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().which_captures(thompson::WhichCaptures::None))
            .build_from_hir(hir)
            .map_err(|e| err(&e))?;
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(16 << 20))
                    .determinize_size_limit(Some(16 << 20)),
            )
            .build_from_nfa(&nfa)
            .map_err(|e| err(&e))?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| err(&e))?;
        Ok(Lang { dfa, start })
    }

    /// Does the atom hold for `s`?
    pub fn accepts(&self, s: &str) -> bool {
        let mut id = self.start;
        for b in s.bytes() {
            id = self.dfa.next_state(id, b);
            if self.dfa.is_dead_state(id) {
                return false;
            }
        }
        self.dfa.is_match_state(self.dfa.next_eoi_state(id))
    }
}

/// Whether atoms with given truth values can hold together for one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// They can; the shortest such string.
    Sat(String),
    Unsat,
    /// The product search outgrew [`MAX_STATES`].
    Unknown,
}

/// Searches the product of `lits` (language, wanted truth) for the shortest
/// string on which each language's membership is as wanted. `valid` is the
/// language of all strings, which keeps the search to valid UTF-8.
pub fn check(lits: &[(&Lang, bool)], valid: &Lang) -> Check {
    let mut all: Vec<(&Lang, bool)> = Vec::with_capacity(lits.len() + 1);
    all.push((valid, true));
    all.extend(lits.iter().copied());
    // One representative byte per class of the common refinement of every
    // DFA's byte classes, readable ones first (witnesses are read by people).
    let mut reps: Vec<u8> = Vec::new();
    let mut seen: HashMap<Vec<u8>, ()> = HashMap::new();
    for b in byte_order() {
        let sig: Vec<u8> = all
            .iter()
            .map(|(l, _)| l.dfa.byte_classes().get(b))
            .collect();
        if seen.insert(sig, ()).is_none() {
            reps.push(b);
        }
    }
    let start: Vec<StateID> = all.iter().map(|(l, _)| l.start).collect();
    // Visited product states: parent index and the byte that led here.
    let mut nodes: Vec<(Vec<StateID>, usize, u8)> = vec![(start.clone(), usize::MAX, 0)];
    let mut index: HashMap<Vec<StateID>, usize> = HashMap::from([(start, 0)]);
    let mut queue = VecDeque::from([0usize]);
    while let Some(n) = queue.pop_front() {
        let Some((state, _, _)) = nodes.get(n) else {
            break;
        };
        let state = state.clone();
        let accepted = all
            .iter()
            .zip(&state)
            .all(|((l, want), id)| l.dfa.is_match_state(l.dfa.next_eoi_state(*id)) == *want);
        if accepted {
            return Check::Sat(path(&nodes, n));
        }
        for &b in &reps {
            let mut next = Vec::with_capacity(state.len());
            let mut dead = false;
            for ((l, want), id) in all.iter().zip(&state) {
                let s = l.dfa.next_state(*id, b);
                if *want && l.dfa.is_dead_state(s) {
                    dead = true;
                    break;
                }
                next.push(s);
            }
            if dead || index.contains_key(&next) {
                continue;
            }
            if nodes.len() >= MAX_STATES {
                return Check::Unknown;
            }
            index.insert(next.clone(), nodes.len());
            queue.push_back(nodes.len());
            nodes.push((next, n, b));
        }
    }
    Check::Unsat
}

/// Every byte, in the order the search tries them: lowercase letters,
/// digits, uppercase letters, other printable ASCII, then the rest.
fn byte_order() -> impl Iterator<Item = u8> {
    (b'a'..=b'z')
        .chain(b'0'..=b'9')
        .chain(b'A'..=b'Z')
        .chain(b' '..=b'/')
        .chain(b':'..=b'@')
        .chain(b'['..=b'`')
        .chain(b'{'..=b'~')
        .chain(0x7f..=0xff)
        .chain(0..b' ')
}

fn path(nodes: &[(Vec<StateID>, usize, u8)], mut n: usize) -> String {
    let mut bytes = Vec::new();
    while let Some((_, parent, b)) = nodes.get(n) {
        if *parent == usize::MAX {
            break;
        }
        bytes.push(*b);
        n = *parent;
    }
    bytes.reverse();
    String::from_utf8_lossy(&bytes).into_owned()
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

/// The atoms of an analysis with their automata, compiled on first use and
/// shared by every thread.
#[derive(Debug, Default)]
pub struct Table {
    atoms: Vec<Atom>,
    langs: Vec<OnceLock<Result<Arc<Lang>, LangError>>>,
    valid: OnceLock<Result<Lang, LangError>>,
}

impl Table {
    /// A table of `atoms` (ids are positions).
    pub fn new(atoms: Vec<Atom>) -> Table {
        let langs = atoms.iter().map(|_| OnceLock::new()).collect();
        Table {
            atoms,
            langs,
            valid: OnceLock::new(),
        }
    }

    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }

    /// The automaton of atom `id`, compiled now if it is the first use.
    pub fn lang(&self, id: usize) -> Result<&Lang, LangError> {
        let (Some(atom), Some(cell)) = (self.atoms.get(id), self.langs.get(id)) else {
            return Err(LangError(format!("no atom {id}")));
        };
        cell.get_or_init(|| compiled(atom))
            .as_ref()
            .map(|l| &**l)
            .map_err(Clone::clone)
    }

    fn valid(&self) -> Result<&Lang, LangError> {
        self.valid
            .get_or_init(Lang::everything)
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Searches for a string meeting `lits` (atom ids of `table`, wanted truth)
/// that is none of `avoid`.
pub fn check_avoiding(
    table: &Table,
    lits: &[(usize, bool)],
    avoid: &[String],
) -> Result<Check, LangError> {
    let others: Vec<Lang> = avoid
        .iter()
        .map(|w| Lang::new(&Atom::Eq(w.clone())))
        .collect::<Result<_, _>>()?;
    let mut refs = lits
        .iter()
        .map(|(i, t)| table.lang(*i).map(|l| (l, *t)))
        .collect::<Result<Vec<_>, _>>()?;
    refs.extend(others.iter().map(|l| (l, false)));
    Ok(check(&refs, table.valid()?))
}

/// Per-thread memo of [`check`] over the atoms of a [`Table`].
#[derive(Debug, Default)]
pub struct Memo {
    results: HashMap<Vec<(usize, bool)>, Check>,
}

/// The verdict on one field's atoms, with an inconsistent subset when
/// there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldCheck {
    Sat(String),
    /// These (atom, truth) pairs cannot hold together.
    Unsat(Vec<(usize, bool)>),
    Unknown(String),
}

impl Memo {
    /// Decides `lits` (atom ids, wanted truth); when they conflict, shrinks
    /// them to a subset that still conflicts.
    pub fn field(&mut self, table: &Table, lits: &[(usize, bool)]) -> FieldCheck {
        let mut lits = lits.to_vec();
        lits.sort_unstable();
        lits.dedup();
        // One test both true and false.
        if let Some(w) = lits.windows(2).find(|w| matches!(w, [a, b] if a.0 == b.0)) {
            return FieldCheck::Unsat(w.to_vec());
        }
        match self.decide(table, &lits) {
            Ok(Check::Sat(s)) => return FieldCheck::Sat(s),
            Ok(Check::Unknown) => {
                return FieldCheck::Unknown(format!(
                    "combining the string tests took more than {MAX_STATES} automaton states"
                ));
            }
            Err(e) => return FieldCheck::Unknown(e.to_string()),
            Ok(Check::Unsat) => {}
        }
        let mut core = lits;
        let mut i = 0;
        while i < core.len() && core.len() > 1 {
            let mut without = core.clone();
            without.remove(i);
            if matches!(self.decide(table, &without), Ok(Check::Unsat)) {
                core = without;
            } else {
                i += 1;
            }
        }
        FieldCheck::Unsat(core)
    }

    fn decide(&mut self, table: &Table, lits: &[(usize, bool)]) -> Result<Check, LangError> {
        if let Some(c) = self.results.get(lits) {
            return Ok(c.clone());
        }
        let refs = lits
            .iter()
            .map(|(i, t)| table.lang(*i).map(|l| (l, *t)))
            .collect::<Result<Vec<_>, _>>()?;
        let c = check(&refs, table.valid()?);
        self.results.insert(lits.to_vec(), c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(a: Atom) -> Lang {
        match Lang::new(&a) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_search_tries_every_byte_once() {
        let mut seen = [false; 256];
        for b in byte_order() {
            assert!(!seen[usize::from(b)], "byte {b} twice");
            seen[usize::from(b)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn search_semantics_and_anchors() {
        let l = lang(Atom::Matches("x|^y".into()));
        assert!(l.accepts("axb"));
        assert!(l.accepts("yb"));
        assert!(!l.accepts("ay"));
        let l = lang(Atom::Matches("^a$".into()));
        assert!(l.accepts("a"));
        assert!(!l.accepts("ba"));
    }

    #[test]
    fn products() {
        let Ok(valid) = Lang::everything() else {
            return;
        };
        let slug = lang(Atom::Matches("^[a-z][a-z0-9-]*$".into()));
        let bots = lang(Atom::In(vec!["billing-bot".into(), "payroll-bot".into()]));
        assert_eq!(
            check(&[(&bots, true), (&slug, false)], &valid),
            Check::Unsat
        );
        let long = lang(Atom::Len { lo: 79, hi: None });
        let Check::Sat(s) = check(&[(&long, true)], &valid) else {
            panic!("len 79 is satisfiable");
        };
        assert_eq!(s.chars().count(), 79);
        let key = lang(Atom::Matches("sk_live_[A-Za-z0-9]{8,}".into()));
        let Check::Sat(s) = check(&[(&key, true)], &valid) else {
            panic!("satisfiable");
        };
        assert!(key.accepts(&s), "{s}");
    }
}
