//! A limit as the evaluator counts it: its counter id, its `by` slots, its
//! max and window, and the counter key of a request.
//!
//! The key is a compact JSON array of the `by` values, written into a
//! reused buffer; a key over [`MAX_KEY`] bytes (a caller may send a
//! megabyte as an agent name) is kept as `sha256:` and the hex digest of
//! that array instead, so that no counter key a caller makes holds more
//! than 71 bytes. Counting itself is the
//! [`crate::eval::state::LimitStore`]'s; nothing here touches a store.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::eval::request::{FieldValue, Request};

/// The longest counter key kept as written; longer ones are hashed.
pub const MAX_KEY: usize = 64;

/// A limit of one policy, resolved to slots.
#[derive(Debug)]
pub(super) struct LimitSpec {
    /// `policy.limit`.
    pub(super) id: String,
    pub(super) by: Vec<usize>,
    pub(super) max: u64,
    pub(super) window_secs: u64,
}

impl LimitSpec {
    /// Writes the counter key (a compact JSON array of the `by` values, or
    /// its digest when over [`MAX_KEY`] bytes) into `buf`; false when a
    /// `by` field is absent (the limit does not apply).
    pub(super) fn key_into(&self, req: &Request, buf: &mut String) -> bool {
        buf.clear();
        buf.push('[');
        for (n, i) in self.by.iter().enumerate() {
            let Some(v) = req.get(*i) else { return false };
            if n > 0 {
                buf.push(',');
            }
            write_json(buf, v);
        }
        buf.push(']');
        if buf.len() > MAX_KEY {
            let digest = Sha256::digest(buf.as_bytes());
            buf.clear();
            buf.push_str("sha256:");
            for b in digest {
                let _ = write!(buf, "{b:02x}");
            }
        }
        true
    }
}

fn write_json(buf: &mut String, v: &FieldValue) {
    match v {
        FieldValue::Int(i) => {
            let _ = write!(buf, "{i}");
        }
        FieldValue::Bool(b) => buf.push_str(if *b { "true" } else { "false" }),
        FieldValue::Str(s) => write_json_str(buf, s),
        FieldValue::Set(items) => {
            buf.push('[');
            for (n, s) in items.iter().enumerate() {
                if n > 0 {
                    buf.push(',');
                }
                write_json_str(buf, s);
            }
            buf.push(']');
        }
    }
}

fn write_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", u32::from(c));
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}
