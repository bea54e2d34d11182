//! The string tests of a condition, normalised: a test of one string field
//! against literals ([`StrTest`], an [`Atom`] of `lang` with a polarity),
//! and the comparison of two string fields. A string's length is not a
//! test: it is an integer of its own (`len(s) op k` is compared as ints).
//! Syntax only: no Z3 here.

use crate::analyze::lang::Atom;
use crate::model::ir::{CmpOp, Expr, Literal, Term, Type};
use crate::model::schema::Schema;

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
                (Term::Lit(_), Term::Field(_) | Term::Len(_)) => (rhs, lhs, op.flipped()),
                _ => (lhs, rhs, *op),
            };
            match (l, r, op) {
                (Term::Field(f), Term::Lit(Literal::Str(s)), CmpOp::Eq | CmpOp::Ne)
                    if is_str(f) =>
                {
                    Some(atom(f, Atom::Eq(s.clone()), op == CmpOp::Ne))
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
