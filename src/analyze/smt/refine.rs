//! The lazy string theory: the string tests a Z3 model sets are checked
//! with automata (`lang`), at the length the model gives a string whose
//! length is read; fields the model makes equal share one string, fields
//! it makes different get different strings, and an impossible combination
//! comes back as clauses that rule it out (or that confine the length to
//! what the tests allow). Nothing here builds a condition's formula.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::unionfind::UnionFind;
use z3::Model;
use z3::ast::{Bool, Int};

use super::encoder::{Encoder, Vars};
use super::plan::Repr;
use super::{Needs, Refinement};
use crate::analyze::lang::{self, Deadline, LengthSet, Memo, Table};

/// A class's tests and the length the model gives it.
type Wanted = (lang::Lits, Option<u64>);

impl Encoder<'_> {
    /// Checks the string tests a model sets, with automata (`memo`
    /// remembers verdicts), each string at the length the model gives it
    /// when its length is read: fields the model makes equal form one class
    /// and must hold one string meeting all their tests; classes the model
    /// makes different must hold different strings. A field replaced by an
    /// `Override` has constant tests and no entry in `needs`. The automata
    /// stop at `deadline`.
    pub fn refine(
        &self,
        model: &Model,
        needs: &Needs,
        memo: &mut Memo,
        deadline: Deadline,
    ) -> Refinement {
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
        // A string read only through its length still needs a value.
        for f in &needs.lens {
            if self.is_present(model, *f) {
                tests.entry(*f).or_default();
            }
        }
        // Equalities between present fields; the fields the model makes
        // equal form classes.
        let size = needs
            .eqs
            .iter()
            .map(|&(a, b)| a.max(b) + 1)
            .max()
            .unwrap_or(0);
        let mut classes: UnionFind<usize> = UnionFind::new(size);
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
                // Both positions are below `size`.
                let _ = classes.try_union(a, b);
                same.push((a, b, var.clone()));
            } else {
                differ.push((a, b, var.clone()));
            }
        }
        let smallest = smallest_members(&classes);
        let find = |f: usize| smallest.get(f).copied().unwrap_or(f);
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for f in tests.keys() {
            members.entry(find(*f)).or_default().push(*f);
        }
        // "Not all of this as the model has it": the tests and equalities of
        // some classes.
        let blame = |roots: &[usize]| -> Vec<Bool> {
            let mut out = Vec::new();
            for r in roots {
                for f in members.get(r).into_iter().flatten() {
                    for (_, truth, var) in tests.get(f).into_iter().flatten() {
                        out.push(if *truth { var.not() } else { var.clone() });
                    }
                }
            }
            for (a, _, var) in &same {
                if roots.contains(&find(*a)) {
                    out.push(var.not());
                }
            }
            out
        };
        // The length the model gives each class (its members' lengths are
        // equal when they are read: `Encoder::domain`).
        let length_of = |fs: &[usize]| -> Option<(u64, Int)> {
            fs.iter().find_map(|f| {
                if !needs.lens.contains(f) {
                    return None;
                }
                let var = self.len_var(*f)?;
                let n = model.eval(var, true).and_then(|x| x.as_i64())?;
                Some((u64::try_from(n).unwrap_or(0), var.clone()))
            })
        };
        let mut block = Vec::new();
        let mut strings: BTreeMap<usize, String> = BTreeMap::new();
        let mut lits_of: BTreeMap<usize, Wanted> = BTreeMap::new();
        let mut length_vars: BTreeMap<usize, (u64, Int)> = BTreeMap::new();
        for (root, fs) in &members {
            let lits: Vec<(usize, bool)> = fs
                .iter()
                .flat_map(|f| tests.get(f).into_iter().flatten())
                .map(|(id, t, _)| (*id, *t))
                .collect();
            let length = length_of(fs);
            let n = length.as_ref().map(|(n, _)| *n);
            // The core's tests (one boolean each) and the class's
            // equalities: "not all of this as the model has it".
            let against = |core: &[(usize, bool)]| {
                let mut clause = Vec::new();
                for (id, t) in core {
                    let var = fs
                        .iter()
                        .find_map(|f| tests.get(f)?.iter().find(|(i, v, _)| i == id && v == t));
                    if let Some((_, t, var)) = var {
                        clause.push(if *t { var.not() } else { var.clone() });
                    }
                }
                for (a, _, var) in &same {
                    if find(*a) == *root {
                        clause.push(var.not());
                    }
                }
                clause
            };
            match memo.field(&self.plan.table, &lits, n, deadline, self.path(*root)) {
                lang::FieldCheck::Sat(w) => {
                    strings.insert(*root, w);
                }
                lang::FieldCheck::Unknown(why) => return Refinement::Unknown(why),
                lang::FieldCheck::Unsat(core) => block.push(Bool::or(&against(&core))),
                lang::FieldCheck::Lengths(core, set) => {
                    let mut clause = against(&core);
                    if let Some((_, var)) = &length {
                        clause.push(length_in(&set, var));
                    }
                    block.push(Bool::or(&clause));
                }
            }
            lits_of.insert(*root, (lits, n));
            if let Some(l) = length {
                length_vars.insert(*root, l);
            }
        }
        // Fields the model says differ but makes equal.
        for (a, b, var) in &differ {
            let (ra, rb) = (find(*a), find(*b));
            if ra == rb {
                let mut clause = blame(&[ra]);
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
                let (ra, rb) = (find(*a), find(*b));
                (ra.min(rb), ra.max(rb))
            })
            .collect();
        if edges
            .iter()
            .any(|(a, b)| strings.contains_key(a) && strings.get(a) == strings.get(b))
        {
            match distinct(&self.plan.table, memo, &lits_of, &edges, deadline) {
                Distinct::Found(chosen) => strings.extend(chosen),
                Distinct::Unknown(why) => return Refinement::Unknown(why),
                Distinct::Impossible(roots) => {
                    let mut clause = blame(&roots);
                    // Other lengths may leave room for different strings.
                    for r in &roots {
                        if let Some((n, var)) = length_vars.get(r) {
                            clause.push(var.eq(Int::from_u64(*n)).not());
                        }
                    }
                    for (a, b, var) in &differ {
                        if roots.contains(&find(*a)) && roots.contains(&find(*b)) {
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
}

/// Each element's class named by its smallest element (a field position):
/// whatever follows the order of classes — which field an unknown names,
/// the order strings are chosen in — then follows the order of fields.
fn smallest_members(classes: &UnionFind<usize>) -> Vec<usize> {
    let mut least: Vec<usize> = (0..classes.len()).collect();
    for x in 0..classes.len() {
        if let Some(slot) = classes.try_find(x).and_then(|r| least.get_mut(r)) {
            *slot = (*slot).min(x);
        }
    }
    (0..classes.len())
        .map(|x| {
            classes
                .try_find(x)
                .and_then(|r| least.get(r).copied())
                .unwrap_or(x)
        })
        .collect()
}

enum Distinct {
    /// A string per class, pairwise different along the edges.
    Found(BTreeMap<usize, String>),
    /// These classes cannot all differ as required.
    Impossible(Vec<usize>),
    Unknown(String),
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
    memo: &mut Memo,
    lits_of: &BTreeMap<usize, Wanted>,
    edges: &BTreeSet<(usize, usize)>,
    deadline: Deadline,
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
            return Distinct::Unknown("too many string fields must differ from each other".into());
        }
        let (lits, len) = lits_of.get(&node).cloned().unwrap_or_default();
        match memo.check_avoiding(table, &lits, &avoid, len, deadline) {
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
            Ok(lang::Check::Unknown(stop)) => {
                return Distinct::Unknown(lang::stop_reason(stop, deadline, "fields that differ"));
            }
            Err(e) => return Distinct::Unknown(e.to_string()),
        }
    }
    Distinct::Found(assigned)
}

/// "The length is one of `set`", for Z3.
fn length_in(set: &LengthSet, len: &Int) -> Bool {
    let mut parts = Vec::new();
    for &(lo, hi) in set.intervals() {
        parts.push(if lo == hi {
            len.eq(Int::from_u64(lo))
        } else {
            Bool::and(&[len.ge(Int::from_u64(lo)), len.le(Int::from_u64(hi))])
        });
    }
    if let Some((start, period, residues)) = set.periodic() {
        let from = len.ge(Int::from_u64(start));
        if period <= 1 {
            parts.push(from);
        } else {
            let offset = Int::sub(&[len.clone(), Int::from_u64(start)]);
            let rem = offset.modulo(Int::from_u64(period));
            let any: Vec<Bool> = residues.iter().map(|r| rem.eq(Int::from_u64(*r))).collect();
            parts.push(Bool::and(&[from, Bool::or(&any)]));
        }
    }
    Bool::or(&parts)
}
