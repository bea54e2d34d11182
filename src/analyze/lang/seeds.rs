//! Shortcuts to a verdict that the product of unanchored automata would
//! take long to reach: a regex's *seed* (the shortest string it matches as
//! a whole), *candidates* built from the literals and seeds of the tests
//! wanted true (each checked against every test before use), and the
//! *factor form* of a product whose tests are all closed under adding
//! characters on either side (searched through the one true test's core
//! automaton). None is needed for a verdict; each only makes one quicker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::product::{self, Comp, Found};
use super::{Atom, CACHE_ENTRIES, Deadline, Lang, LangError, Table, compiled, valid};

/// The shortest string the regex `pattern` matches as a whole (anchored
/// at both ends), searched once per process: a likely witness for
/// `matches pattern`, whose unanchored automaton can be far larger (a
/// card-number regex: every digit may start a number). `None` when the
/// search finds none or gives up.
pub(super) fn seed(pattern: &str) -> Option<String> {
    static SEEDS: OnceLock<Mutex<HashMap<String, Option<String>>>> = OnceLock::new();
    let seeds = SEEDS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(w) = seeds.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return w.clone();
    }
    let found = (|| {
        let inner = core_of(pattern).ok()?;
        let valid = valid().ok()?;
        let (mut c0, mut c1) = (valid.cache(), inner.cache());
        let mut comps = [
            Comp::new(&valid, &mut c0, true),
            Comp::new(&inner, &mut c1, true),
        ];
        match product::shortest(&mut comps, Deadline::after(SEED_MS)) {
            Found::Sat(w) => Some(w),
            Found::Unsat | Found::Stopped(_) => None,
        }
    })();
    let mut guard = seeds.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() >= CACHE_ENTRIES {
        guard.clear();
    }
    guard.insert(pattern.to_string(), found.clone());
    found
}

/// Ids of [`Memo`](super::Memo) caches for the core of atom `id`: `CORE_IDS + id`.
pub(super) const CORE_IDS: usize = usize::MAX / 2;

/// Tests closed under adding characters on either side (`contains`, a
/// regex without anchors or word boundaries): when the one test wanted
/// true is such a test and so is every test wanted false, a string meets
/// them all iff a string matching the true test's core (its literal, or
/// its regex as a whole) does — the match inside any string that meets
/// them is itself such a string, and the false tests, which would hold for
/// the whole string if they held for a part, hold for no part of it. The
/// core's automaton is far smaller than the unanchored one (a card-number
/// regex's is a few dozen states, the unanchored one millions). Returns
/// the position of the true test in `lits` and its core.
pub(super) fn factor_form(
    table: &Table,
    lits: &[(usize, bool)],
) -> Result<Option<(usize, Arc<Lang>)>, LangError> {
    let mut positive = None;
    for (k, (id, t)) in lits.iter().enumerate() {
        let closed = match table.atoms().get(*id) {
            Some(Atom::Contains(_)) => true,
            Some(Atom::Matches(_)) => table.lang(*id)?.monotone,
            _ => false,
        };
        if !closed {
            return Ok(None);
        }
        if *t {
            if positive.is_some() {
                return Ok(None);
            }
            positive = Some((k, *id));
        }
    }
    let Some((k, id)) = positive else {
        return Ok(None);
    };
    let core = match table.atoms().get(id) {
        Some(Atom::Contains(c)) => compiled(&Atom::Eq(c.clone()))?,
        Some(Atom::Matches(p)) => core_of(p)?,
        _ => return Ok(None),
    };
    Ok(Some((k, core)))
}

/// The automaton of the strings regex `pattern` matches as a whole, once
/// per process.
fn core_of(pattern: &str) -> Result<Arc<Lang>, LangError> {
    static CORES: OnceLock<Mutex<HashMap<String, Arc<Lang>>>> = OnceLock::new();
    let cores = CORES.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(l) = cores.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return Ok(Arc::clone(l));
    }
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| LangError(format!("regex `{pattern}`: {e}")))?;
    let lang = Arc::new(Lang::from_hir(&hir)?);
    let mut guard = cores.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() >= CACHE_ENTRIES {
        guard.clear();
    }
    guard.insert(pattern.to_string(), Arc::clone(&lang));
    Ok(lang)
}

/// How long the search for one regex's [`seed`] may take.
const SEED_MS: u32 = 200;

/// Strings likely to meet the tests `lits` wants true: the literal of an
/// `==`/`in`, or the longest prefix, the substrings and regex seeds, and
/// the longest suffix put together (a few ways). Each is checked against
/// every test before it is used; none is needed for a verdict.
pub(super) fn candidates(table: &Table, lits: &[(usize, bool)]) -> Vec<String> {
    let mut exact: Vec<String> = Vec::new();
    let mut prefix = String::new();
    let mut suffix = String::new();
    let mut middle: Vec<String> = Vec::new();
    for (id, t) in lits {
        if !*t {
            continue;
        }
        match table.atoms().get(*id) {
            Some(Atom::Eq(s)) => exact.push(s.clone()),
            Some(Atom::In(v)) => exact.extend(v.iter().cloned()),
            Some(Atom::Prefix(p)) if p.len() > prefix.len() => prefix.clone_from(p),
            Some(Atom::Suffix(p)) if p.len() > suffix.len() => suffix.clone_from(p),
            Some(Atom::Contains(c)) => middle.push(c.clone()),
            Some(Atom::Matches(p)) => middle.extend(seed(p)),
            _ => {}
        }
    }
    if !exact.is_empty() {
        exact.truncate(64);
        return exact;
    }
    if prefix.is_empty() && suffix.is_empty() && middle.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for sep in ["", " ", "\n"] {
        for rev in [false, true] {
            let mut m = middle.clone();
            if rev {
                m.reverse();
            }
            let body = m.join(sep);
            out.push(format!("{prefix}{body}{suffix}"));
            out.push(format!("{prefix}{sep}{body}{sep}{suffix}"));
        }
    }
    out.dedup();
    out
}
