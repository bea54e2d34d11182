//! Compiled modifications: what a `modify` effect writes into a copy of the
//! request (a literal, a redaction, a truncation, a lowercasing).
//!
//! Applied only on demand ([`super::Evaluator::apply_modifications`]), after
//! the decision; a modification never changes which rules match.

use regex::Regex;

use crate::eval::REDACTED;
use crate::eval::request::{FieldValue, Request};

#[derive(Debug)]
pub(super) struct Modify {
    pub(super) target: usize,
    pub(super) field: String,
    pub(super) op: ModOp,
}

#[derive(Debug)]
pub(super) enum ModOp {
    Literal(FieldValue),
    Redact { src: usize },
    RedactPattern { src: usize, re: Regex },
    Truncate { src: usize, len: usize },
    Lowercase { src: usize },
}

impl Modify {
    /// The new value of the target field, or `None` to leave the request as
    /// it is (target or source absent).
    pub(super) fn apply(&self, req: &Request) -> Option<FieldValue> {
        req.get(self.target)?;
        match &self.op {
            ModOp::Literal(v) => Some(v.clone()),
            ModOp::Redact { src } => map_str(req.get(*src)?, |_| REDACTED.to_string()),
            ModOp::RedactPattern { src, re } => map_str(req.get(*src)?, |s| {
                re.replace_all(s, regex::NoExpand(REDACTED)).into_owned()
            }),
            ModOp::Truncate { src, len } => {
                map_str(req.get(*src)?, |s| match s.char_indices().nth(*len) {
                    Some((end, _)) => s.get(..end).unwrap_or(s).to_string(),
                    None => s.to_string(),
                })
            }
            ModOp::Lowercase { src } => map_str(req.get(*src)?, str::to_lowercase),
        }
    }
}

/// Applies a string transform to a string, or to each element of a set.
fn map_str(v: &FieldValue, f: impl Fn(&str) -> String) -> Option<FieldValue> {
    match v {
        FieldValue::Str(s) => Some(FieldValue::Str(f(s))),
        FieldValue::Set(items) => Some(FieldValue::set(items.iter().map(|s| f(s)))),
        _ => None,
    }
}
