//! The plan of an analysis: how each schema field is represented in Z3
//! (an int, a bool, a coded string, tests decided by automata with a
//! length when it is read, set members), decided once for the whole set
//! from how its conditions read each field, with the automata table of
//! every string test. No Z3 terms here (they belong to the encoder's
//! thread).

use std::collections::{BTreeSet, HashMap};

use super::strings::{StrTest, field_pair, str_test};
use crate::analyze::lang::{Atom, Table};
use crate::model::ir::{Expr, FieldDecl, Term, Type};
use crate::model::schema::Schema;

/// How one schema field is represented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr {
    Int,
    Bool,
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
    pub(super) schema: Schema,
    pub(super) fields: Vec<FieldPlan>,
    by_path: HashMap<String, usize>,
    /// Every string test of an automata-decided field, by id.
    pub(super) table: Table,
    pub(super) atom_ids: HashMap<Atom, usize>,
    /// Automata-decided fields whose length is read (an integer of its
    /// own, checked against the automata with the tests).
    pub(super) lens: BTreeSet<usize>,
    /// Pairs of automata-decided fields compared with each other (sorted
    /// positions).
    pub(super) pairs: BTreeSet<(usize, usize)>,
}

#[derive(Default)]
struct Usage {
    /// Its length is read.
    len: bool,
    /// Read by something else than `==`/`!=`/`in` literals.
    not_code: bool,
    literals: BTreeSet<String>,
    atoms: BTreeSet<Atom>,
    /// String fields compared with this one.
    partners: BTreeSet<String>,
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
        let partner_names: Vec<(String, String)> = usage
            .iter()
            .flat_map(|(f, u)| u.partners.iter().map(move |p| (f.clone(), p.clone())))
            .collect();
        let mut atoms: Vec<Atom> = Vec::new();
        let mut atom_ids: HashMap<Atom, usize> = HashMap::new();
        let mut fields = Vec::new();
        let mut lens = BTreeSet::new();
        for decl in &schema.fields {
            let u = usage.remove(&decl.path).unwrap_or_default();
            if u.len && decl.ty == Type::Str {
                lens.insert(fields.len());
            }
            let repr = match decl.ty {
                Type::Int => Repr::Int,
                Type::Bool => Repr::Bool,
                Type::StrSet => Repr::Set(u.literals.into_iter().collect()),
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
            lens,
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
            && self.lens == other.lens
    }

    pub(super) fn repr(&self, i: usize) -> Option<&Repr> {
        self.fields.get(i).map(|f| &f.repr)
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
            // Anything else on a string field reads its length.
            for f in read_lens(e) {
                if schema.type_of(f) == Some(Type::Str) {
                    let u = usage.entry(f.to_string()).or_default();
                    u.len = true;
                    u.not_code = true;
                }
            }
        }
    }
}

/// The fields whose length an atom reads.
fn read_lens(e: &Expr) -> Vec<&str> {
    fn len(t: &Term) -> Option<&str> {
        match t {
            Term::Len(f) => Some(f),
            _ => None,
        }
    }
    match e {
        Expr::Cmp { lhs, rhs, .. } => [lhs, rhs].into_iter().filter_map(len).collect(),
        Expr::In { lhs, .. } => len(lhs).into_iter().collect(),
        _ => Vec::new(),
    }
}
