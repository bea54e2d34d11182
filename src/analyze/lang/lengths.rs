//! The lengths (in characters) of the strings a product accepts, and a
//! string of a given length.
//!
//! The states a product can be in after exactly `k` characters form a set
//! `S(k)`, and `S(k + 1)` follows from `S(k)` alone, so the sequence of
//! these sets repeats from some point on: `S(m + p) = S(m)`. The lengths it
//! accepts are then the `k < m` whose set holds an accepting state, and the
//! `k ≥ m` whose position in the period does ([`LengthSet`], which Z3 reads
//! as intervals and a remainder). A string of length `n` is built backwards
//! from an accepting state of `S(n)`, each character leading from a state
//! of the set before.

use std::collections::HashMap;

use super::product::{Char, Graph};
use super::{Deadline, Stop};

/// The most sets of states kept while looking for the repetition (in
/// 64-bit words); past it the search gives up.
const MAX_WORDS: usize = 1 << 22;

/// The longest witness string built.
pub const MAX_WITNESS_CHARS: u64 = 2_000_000;

/// A set of lengths: the intervals of `below` (each below `start`), and
/// every `start + r + k·period` for `r` in `residues`, `k ≥ 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthSet {
    below: Vec<(u64, u64)>,
    start: u64,
    period: u64,
    residues: Vec<u64>,
}

impl LengthSet {
    /// Every length but `n`.
    pub fn all_but(n: u64) -> LengthSet {
        LengthSet {
            below: if n == 0 { Vec::new() } else { vec![(0, n - 1)] },
            start: n + 1,
            period: 1,
            residues: vec![0],
        }
    }

    pub fn contains(&self, n: u64) -> bool {
        if n < self.start {
            return self.below.iter().any(|(lo, hi)| *lo <= n && n <= *hi);
        }
        self.period > 0 && self.residues.contains(&((n - self.start) % self.period))
    }

    /// The lengths below the periodic part, as inclusive intervals.
    pub fn intervals(&self) -> &[(u64, u64)] {
        &self.below
    }

    /// From where the lengths repeat, with which period, and which
    /// remainders (of `n - start`) they hold; `None` when no length from
    /// `start` on is in the set. A period of 1 with remainder 0 is "every
    /// length from `start` on".
    pub fn periodic(&self) -> Option<(u64, u64, &[u64])> {
        (!self.residues.is_empty()).then_some((self.start, self.period, self.residues.as_slice()))
    }
}

/// The sets `S(0)`, `S(1)`, … up to the first repetition: `S(k)` for
/// `k ≥ start + period` is `S(start + (k - start) % period)`.
struct Layers {
    sets: Vec<Vec<u64>>,
    start: usize,
    period: usize,
}

impl Layers {
    fn of(&self, k: u64) -> Option<&Vec<u64>> {
        let (m, p) = (self.start as u64, self.period as u64);
        let i = if k < m + p || p == 0 {
            k
        } else {
            m + (k - m) % p
        };
        usize::try_from(i).ok().and_then(|i| self.sets.get(i))
    }
}

fn has(set: &[u64], i: usize) -> bool {
    set.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn accepts(g: &Graph, set: &[u64]) -> bool {
    g.accept.iter().enumerate().any(|(i, a)| *a && has(set, i))
}

fn layers(g: &Graph, deadline: Deadline) -> Result<Layers, Stop> {
    let words = g.len().div_ceil(64).max(1);
    let mut first = vec![0u64; words];
    if let Some(w) = first.get_mut(g.start / 64) {
        *w |= 1 << (g.start % 64);
    }
    let mut seen: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut sets: Vec<Vec<u64>> = Vec::new();
    let mut current = first;
    loop {
        if let Some(&m) = seen.get(&current) {
            return Ok(Layers {
                period: sets.len() - m,
                start: m,
                sets,
            });
        }
        if (sets.len() + 1) * words > MAX_WORDS {
            return Err(Stop::States);
        }
        if sets.len().is_multiple_of(256) && deadline.passed() {
            return Err(Stop::Time);
        }
        let mut next = vec![0u64; words];
        for (i, out) in g.succ.iter().enumerate() {
            if !has(&current, i) {
                continue;
            }
            for (to, _) in out {
                if let Some(w) = next.get_mut(to / 64) {
                    *w |= 1 << (to % 64);
                }
            }
        }
        seen.insert(current.clone(), sets.len());
        sets.push(current);
        current = next;
    }
}

/// The lengths of the strings the product accepts.
pub(super) fn lengths(g: &Graph, deadline: Deadline) -> Result<LengthSet, Stop> {
    let l = layers(g, deadline)?;
    let acc: Vec<bool> = l.sets.iter().map(|s| accepts(g, s)).collect();
    let mut below: Vec<(u64, u64)> = Vec::new();
    for (k, a) in acc.iter().enumerate().take(l.start) {
        if !*a {
            continue;
        }
        let k = k as u64;
        match below.last_mut() {
            Some((_, hi)) if *hi + 1 == k => *hi = k,
            _ => below.push((k, k)),
        }
    }
    let residues: Vec<u64> = (0..l.period)
        .filter(|r| acc.get(l.start + r).copied().unwrap_or(false))
        .map(|r| r as u64)
        .collect();
    Ok(LengthSet {
        below,
        start: l.start as u64,
        period: l.period as u64,
        residues,
    })
}

/// A string of exactly `n` characters that the product accepts (`None`:
/// there is none), built backwards from an accepting state; each step
/// takes the first state of the set before that leads there.
pub(super) fn of_length(g: &Graph, n: u64, deadline: Deadline) -> Result<Option<String>, Stop> {
    let l = layers(g, deadline)?;
    let Some(last) = l.of(n) else {
        return Ok(None);
    };
    let Some(mut at) = g
        .accept
        .iter()
        .enumerate()
        .position(|(i, a)| *a && has(last, i))
    else {
        return Ok(None);
    };
    if n > MAX_WITNESS_CHARS {
        return Err(Stop::States);
    }
    // Who leads to whom, by which character.
    let mut pred: Vec<Vec<(usize, Char)>> = vec![Vec::new(); g.len()];
    for (from, out) in g.succ.iter().enumerate() {
        for (to, ch) in out {
            if let Some(p) = pred.get_mut(*to) {
                p.push((from, *ch));
            }
        }
    }
    let mut chars: Vec<Char> = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for k in (1..=n).rev() {
        if k % 65_536 == 0 && deadline.passed() {
            return Err(Stop::Time);
        }
        let Some(before) = l.of(k - 1) else {
            return Ok(None);
        };
        let Some((from, ch)) = pred
            .get(at)
            .into_iter()
            .flatten()
            .find(|(from, _)| has(before, *from))
        else {
            return Ok(None);
        };
        chars.push(*ch);
        at = *from;
    }
    let mut bytes = Vec::with_capacity(chars.len());
    for (b, len) in chars.iter().rev() {
        bytes.extend(b.iter().take(usize::from(*len)));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}
