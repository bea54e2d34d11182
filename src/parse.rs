//! Stage 1: text → syntax tree. Pure: no I/O.
//!
//! pest parses one `.policy` file; `lower` turns the pest pairs into the
//! spanned [`ast`]. pest stops at the first syntax error, so a file yields
//! either a policy or its findings: one `parse::syntax` for a grammar error,
//! or every lowering error (bad names, escapes, versions) of a file that
//! matches the grammar.

pub mod ast;
mod err;
mod grammar;
mod lower;

use pest::Parser as _;

use crate::diagnostic::Finding;
use crate::source::SourceFile;

pub use err::syntax_finding;

/// Parses one policy file.
pub fn parse_policy(file: &SourceFile) -> Result<ast::Policy, Vec<Finding>> {
    let pairs = grammar::PolicyParser::parse(grammar::Rule::file, &file.text)
        .map_err(|e| vec![err::from_pest(file, &e)])?;
    lower::lower_file(file, pairs)
}

/// Parses a standalone condition (used by tests and tools).
pub fn parse_expr(file: &SourceFile) -> Result<ast::Expr, Vec<Finding>> {
    let pairs = grammar::PolicyParser::parse(grammar::Rule::expr_only, &file.text)
        .map_err(|e| vec![err::from_pest(file, &e)])?;
    lower::lower_expr_only(file, pairs)
}
