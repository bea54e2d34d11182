//! Stage 1: text → syntax tree. Pure: no I/O.
//!
//! pest parses one `.policy` file; `lower` turns the pest pairs into the
//! spanned [`ast`]. pest stops at the first syntax error, so a file yields
//! either a policy or one `parse::syntax` finding.

pub mod ast;
