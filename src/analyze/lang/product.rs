//! The product of several automata, searched byte by byte: the shortest
//! string on which each automaton's verdict is the one wanted
//! ([`shortest`]), or every state of the product that such strings can
//! pass through, with the characters between them ([`graph`], for the
//! lengths the product accepts). The first component is always the
//! language of every string, which keeps the search to valid UTF-8 and
//! tells where a character ends.
//!
//! States are built lazily, in the thread's caches; a search whose caches
//! fill up (its states would be forgotten) stops with [`Stop::States`].

use std::collections::{HashMap, HashSet, VecDeque};

use regex_automata::Anchored;
use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::start;

use super::{Deadline, Lang, MAX_STATES, Stop};

/// One automaton of a product, with the thread's cache of its states and
/// the verdict wanted.
pub(super) struct Comp<'a> {
    dfa: &'a DFA,
    cache: &'a mut Cache,
    want: bool,
    /// Once accepted, every extension is accepted too.
    monotone: bool,
    clears: usize,
}

impl<'a> Comp<'a> {
    pub(super) fn new(lang: &'a Lang, cache: &'a mut Cache, want: bool) -> Comp<'a> {
        let clears = cache.clear_count();
        Comp {
            dfa: &lang.dfa,
            cache,
            want,
            monotone: lang.monotone,
            clears,
        }
    }

    /// A cache that was cleared forgot states the search still holds.
    fn intact(&self) -> Result<(), Stop> {
        if self.cache.clear_count() == self.clears {
            Ok(())
        } else {
            Err(Stop::States)
        }
    }

    fn start(&mut self) -> Result<LazyStateID, Stop> {
        let id = self
            .dfa
            .start_state(self.cache, &start::Config::new().anchored(Anchored::Yes))
            .map_err(|_| Stop::States)?;
        self.intact()?;
        Ok(id)
    }

    fn next(&mut self, id: LazyStateID, b: u8) -> Result<LazyStateID, Stop> {
        let next = self
            .dfa
            .next_state(self.cache, id, b)
            .map_err(|_| Stop::States)?;
        self.intact()?;
        if next.is_quit() {
            return Err(Stop::States);
        }
        Ok(next)
    }

    /// Does the automaton accept the string that led to `id`?
    fn accepting(&mut self, id: LazyStateID) -> Result<bool, Stop> {
        let end = self
            .dfa
            .next_eoi_state(self.cache, id)
            .map_err(|_| Stop::States)?;
        self.intact()?;
        Ok(end.is_match())
    }

    /// The verdict wanted.
    pub(super) fn wants(&self) -> bool {
        self.want
    }

    /// Does the automaton accept `bytes`? (`None`: it gave up.)
    pub(super) fn accepts(&mut self, bytes: &[u8]) -> Option<bool> {
        let mut id = self.start().ok()?;
        for b in bytes {
            id = self.next(id, *b).ok()?;
            if id.is_dead() {
                return Some(false);
            }
        }
        self.accepting(id).ok()
    }
}

/// Every byte, in the order searches try them: lowercase letters, digits,
/// uppercase letters, other printable ASCII, then the rest (witnesses are
/// read by people).
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

/// One byte per class of the common refinement of every automaton's byte
/// classes, in [`byte_order`].
fn representatives(comps: &[Comp<'_>]) -> Vec<u8> {
    let mut reps = Vec::new();
    let mut seen: HashMap<Vec<u8>, ()> = HashMap::new();
    for b in byte_order() {
        let sig: Vec<u8> = comps.iter().map(|c| c.dfa.byte_classes().get(b)).collect();
        if seen.insert(sig, ()).is_none() {
            reps.push(b);
        }
    }
    reps
}

/// The outcome of [`shortest`].
pub(super) enum Found {
    Sat(String),
    Unsat,
    Stopped(Stop),
}

/// A product state: one automaton state per component; `None` for a
/// component that must accept and, being monotone, has accepted for good
/// (states that differ only there are one state: this keeps the product of
/// an unanchored regex small once it has matched).
type State = Vec<Option<LazyStateID>>;

/// The states reached so far, breadth first: each with its parent and the
/// byte that led to it.
struct Explored {
    nodes: Vec<(State, usize, u8)>,
    index: HashMap<State, usize>,
}

impl Explored {
    fn new(start: State) -> Explored {
        Explored {
            nodes: vec![(start.clone(), usize::MAX, 0)],
            index: HashMap::from([(start, 0)]),
        }
    }

    /// The string that leads to node `n`.
    fn path(&self, mut n: usize) -> String {
        let mut bytes = Vec::new();
        while let Some((_, parent, b)) = self.nodes.get(n) {
            if *parent == usize::MAX {
                break;
            }
            bytes.push(*b);
            n = *parent;
        }
        bytes.reverse();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn start_state(comps: &mut [Comp<'_>]) -> Result<State, Stop> {
    comps.iter_mut().map(|c| c.start().map(Some)).collect()
}

/// Does every component give its wanted verdict on the string that led to
/// `state`?
fn accepted(comps: &mut [Comp<'_>], state: &State) -> Result<bool, Stop> {
    for (c, id) in comps.iter_mut().zip(state) {
        let Some(id) = id else { continue };
        if c.accepting(*id)? != c.want {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The state after byte `b`, or `None` when a component can no longer
/// give its wanted verdict (one that must accept is dead; a monotone one
/// that must not accept has accepted).
fn step(comps: &mut [Comp<'_>], state: &State, b: u8) -> Result<Option<State>, Stop> {
    let mut next = Vec::with_capacity(state.len());
    for (c, id) in comps.iter_mut().zip(state) {
        let Some(id) = id else {
            next.push(None);
            continue;
        };
        let s = c.next(*id, b)?;
        if c.want && s.is_dead() {
            return Ok(None);
        }
        if c.monotone && c.accepting(s)? {
            if !c.want {
                return Ok(None);
            }
            next.push(None);
            continue;
        }
        next.push(Some(s));
    }
    Ok(Some(next))
}

/// How often (in states) a search looks at the clock.
const CLOCK_EVERY: usize = 1024;

/// The shortest string (in bytes) on which every component gives its
/// wanted verdict.
pub(super) fn shortest(comps: &mut [Comp<'_>], deadline: Deadline) -> Found {
    match shortest_inner(comps, deadline) {
        Ok(f) => f,
        Err(s) => Found::Stopped(s),
    }
}

fn shortest_inner(comps: &mut [Comp<'_>], deadline: Deadline) -> Result<Found, Stop> {
    let reps = representatives(comps);
    let mut seen = Explored::new(start_state(comps)?);
    let mut queue = VecDeque::from([0usize]);
    while let Some(n) = queue.pop_front() {
        if n % CLOCK_EVERY == 0 && deadline.passed() {
            return Err(Stop::Time);
        }
        let Some((state, _, _)) = seen.nodes.get(n) else {
            break;
        };
        let state = state.clone();
        if accepted(comps, &state)? {
            return Ok(Found::Sat(seen.path(n)));
        }
        for &b in &reps {
            let Some(next) = step(comps, &state, b)? else {
                continue;
            };
            if seen.index.contains_key(&next) {
                continue;
            }
            if seen.nodes.len() >= MAX_STATES {
                return Err(Stop::States);
            }
            let id = seen.nodes.len();
            seen.index.insert(next.clone(), id);
            queue.push_back(id);
            seen.nodes.push((next, n, b));
        }
    }
    Ok(Found::Unsat)
}

/// The bytes of one character (up to four).
pub(super) type Char = ([u8; 4], u8);

/// The product as a graph of characters: its states at the end of a
/// character (the start among them), which of them accept, and the
/// characters from each to the next.
#[derive(Debug, Clone)]
pub(super) struct Graph {
    pub(super) start: usize,
    pub(super) accept: Vec<bool>,
    /// For each state, the states one character away, each with a
    /// character that leads there (the first in byte order).
    pub(super) succ: Vec<Vec<(usize, Char)>>,
}

impl Graph {
    pub(super) fn len(&self) -> usize {
        self.accept.len()
    }
}

/// Every product state the strings can pass through (where no component
/// that must accept is dead), as a [`Graph`] of characters.
pub(super) fn graph(comps: &mut [Comp<'_>], deadline: Deadline) -> Result<Graph, Stop> {
    graph_within(comps, deadline, usize::MAX)
}

/// [`graph`] of the states within `max_bytes` bytes of the start (breadth
/// first): exact for every string of at most `max_bytes / 4` characters.
pub(super) fn graph_within(
    comps: &mut [Comp<'_>],
    deadline: Deadline,
    max_bytes: usize,
) -> Result<Graph, Stop> {
    let reps = representatives(comps);
    let mut seen = Explored::new(start_state(comps)?);
    let mut edges: Vec<Vec<(u8, usize)>> = vec![Vec::new()];
    let mut depth: Vec<usize> = vec![0];
    let mut n = 0;
    while let Some((state, _, _)) = seen.nodes.get(n) {
        if n % CLOCK_EVERY == 0 && deadline.passed() {
            return Err(Stop::Time);
        }
        let d = depth.get(n).copied().unwrap_or(0);
        if d >= max_bytes {
            n += 1;
            continue;
        }
        let state = state.clone();
        let mut out = Vec::new();
        for &b in &reps {
            let Some(next) = step(comps, &state, b)? else {
                continue;
            };
            let id = match seen.index.get(&next) {
                Some(id) => *id,
                None => {
                    if seen.nodes.len() >= MAX_STATES {
                        return Err(Stop::States);
                    }
                    let id = seen.nodes.len();
                    seen.index.insert(next.clone(), id);
                    seen.nodes.push((next, n, b));
                    edges.push(Vec::new());
                    depth.push(d + 1);
                    id
                }
            };
            out.push((b, id));
        }
        if let Some(slot) = edges.get_mut(n) {
            *slot = out;
        }
        n += 1;
    }
    // A state ends a character when the first component (every valid
    // string) accepts there.
    let mut boundary = vec![usize::MAX; seen.nodes.len()];
    let mut accept = Vec::new();
    let mut count = 0;
    for (i, (state, _, _)) in seen.nodes.iter().enumerate() {
        let Some((first, Some(id))) = comps.first_mut().zip(state.first()) else {
            continue;
        };
        if first.accepting(*id)? {
            if let Some(slot) = boundary.get_mut(i) {
                *slot = count;
            }
            count += 1;
            accept.push(accepted(comps, state)?);
        }
    }
    let mut succ: Vec<Vec<(usize, Char)>> = vec![Vec::new(); count];
    for (i, &b) in boundary.iter().enumerate() {
        if b == usize::MAX {
            continue;
        }
        let mut out: Vec<(usize, Char)> = Vec::new();
        // Characters are at most four bytes long: follow bytes through
        // states inside a character, shorter characters first.
        let mut queue: VecDeque<(usize, Char)> = VecDeque::from([(i, ([0; 4], 0))]);
        let mut inside: HashSet<usize> = HashSet::new();
        while let Some((at, (bytes, len))) = queue.pop_front() {
            if len >= 4 {
                continue;
            }
            for &(byte, to) in edges.get(at).into_iter().flatten() {
                let mut next = bytes;
                if let Some(slot) = next.get_mut(usize::from(len)) {
                    *slot = byte;
                }
                let ch = (next, len + 1);
                match boundary.get(to) {
                    Some(&k) if k != usize::MAX => {
                        if !out.iter().any(|(t, _)| *t == k) {
                            out.push((k, ch));
                        }
                    }
                    // One way into a state inside a character is enough:
                    // every way out of it completes the character alike.
                    _ => {
                        if inside.insert(to) {
                            queue.push_back((to, ch));
                        }
                    }
                }
            }
        }
        out.sort_by_key(|a| a.0);
        if let Some(slot) = succ.get_mut(b) {
            *slot = out;
        }
    }
    Ok(Graph {
        start: boundary.first().copied().unwrap_or(0),
        accept,
        succ,
    })
}
