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

/// How deep a condition may nest (parentheses and `not`): every artifact
/// that `compile` writes must load in the engine, whose JSON reader stops at
/// 128 levels, and the parser's stack must hold. One limit, checked while
/// lowering (`lower`) and, before pest runs, by a scan of the text that
/// keeps a pathological file from overflowing the parser's stack.
pub const MAX_NESTING: usize = 32;

/// The `parse::syntax` finding of a condition nested deeper than
/// [`MAX_NESTING`], at `span`.
fn too_deep(file: &SourceFile, span: crate::source::Span) -> Finding {
    syntax_finding(
        file,
        span,
        format!("conditions nest at most {MAX_NESTING} deep (parentheses and `not`)"),
        Some(
            "split the condition: `and`/`or` chains need no parentheses, and `not not x` is `x`"
                .to_string(),
        ),
    )
}

/// Where the text first nests deeper than [`MAX_NESTING`]: open
/// parentheses plus the `not`s in a row before an operand (strings and
/// comments skipped). Counts no more than the grammar does, so whatever it
/// lets through is judged exactly while lowering.
fn scan_nesting(text: &str) -> Option<crate::source::Span> {
    let bytes = text.as_bytes();
    let (mut depth, mut nots, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                nots = 0;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                nots = 0;
            }
            b'{' | b'}' => {
                depth = 0;
                nots = 0;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                {
                    i += 1;
                }
                if text.get(start..i) == Some("not") {
                    nots += 1;
                    if depth + nots > MAX_NESTING {
                        return Some(crate::source::Span::new(start, i));
                    }
                } else {
                    nots = 0;
                }
                continue;
            }
            _ => {}
        }
        if depth + nots > MAX_NESTING {
            return Some(crate::source::Span::new(i, i + 1));
        }
        i += 1;
    }
    None
}

/// Parses one policy file.
pub fn parse_policy(file: &SourceFile) -> Result<ast::Policy, Vec<Finding>> {
    if let Some(span) = scan_nesting(&file.text) {
        return Err(vec![too_deep(file, span)]);
    }
    let pairs = grammar::PolicyParser::parse(grammar::Rule::file, &file.text)
        .map_err(|e| vec![err::from_pest(file, &e)])?;
    lower::lower_file(file, pairs)
}

/// Parses a standalone condition (used by tests and tools).
pub fn parse_expr(file: &SourceFile) -> Result<ast::Expr, Vec<Finding>> {
    if let Some(span) = scan_nesting(&file.text) {
        return Err(vec![too_deep(file, span)]);
    }
    let pairs = grammar::PolicyParser::parse(grammar::Rule::expr_only, &file.text)
        .map_err(|e| vec![err::from_pest(file, &e)])?;
    lower::lower_expr_only(file, pairs)
}
