//! What the analysis reads off a condition's syntax, shared by `index`
//! and `smt` (which must not import each other): the fields an atom reads
//! (operators with their operands swapped or their outcome negated are
//! [`CmpOp::flipped`](crate::model::ir::CmpOp::flipped) and
//! [`CmpOp::negated`](crate::model::ir::CmpOp::negated)). Pure functions of
//! the IR; nothing here summarises or encodes.

use crate::model::ir::{Expr, Term};

/// The fields an atom reads.
pub(crate) fn read_fields(e: &Expr) -> Vec<&str> {
    match e {
        Expr::Truthy(f)
        | Expr::Has(f)
        | Expr::Contains { field: f, .. }
        | Expr::SetContains { field: f, .. }
        | Expr::StartsWith { field: f, .. }
        | Expr::EndsWith { field: f, .. }
        | Expr::Matches { field: f, .. } => vec![f],
        Expr::Cmp { lhs, rhs, .. } => [lhs, rhs].into_iter().filter_map(Term::field).collect(),
        Expr::In { lhs, .. } => lhs.field().into_iter().collect(),
        Expr::Const(_) | Expr::And(_) | Expr::Or(_) | Expr::Not(_) => Vec::new(),
    }
}
