//! What the engine keeps of a request a caller sent — a decision log line,
//! a waiting approval — bounded in bytes whatever the caller sent. Pure.
//!
//! A string longer than [`MAX_FIELD`] bytes is kept as its first 256
//! bytes, `…`, its length and its SHA-256 (`"abc…[1048576 bytes,
//! sha256:9f2c…]"`); a request still over the caller's bound once its
//! strings are cut (many small fields) is kept as
//! `{"omitted": {"bytes": n, "sha256": "…"}}`.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A string longer than this is cut and hashed.
pub const MAX_FIELD: usize = 1024;

/// What is kept of a string cut.
const KEPT: usize = 256;

/// Cuts the strings of `v` and, when it is still over `max` bytes of
/// compact JSON, replaces it by its length and digest.
pub fn bound(v: &mut Value, max: usize) {
    cut_strings(v);
    if weigh(v) <= max {
        return;
    }
    let Ok(bytes) = serde_json::to_vec(&*v) else {
        *v = serde_json::json!({"omitted": {"unserializable": true}});
        return;
    };
    if bytes.len() > max {
        *v = serde_json::json!({"omitted": {
            "bytes": bytes.len(),
            "sha256": hex::encode(Sha256::digest(&bytes)),
        }});
    }
}

/// An estimate of `v`'s size in memory and as JSON, never below either.
pub fn weigh(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 16,
        Value::String(s) => 16 + s.len(),
        Value::Array(a) => 16 + a.iter().map(weigh).sum::<usize>(),
        Value::Object(o) => {
            16 + o
                .iter()
                .map(|(k, v)| 16 + k.len() + weigh(v))
                .sum::<usize>()
        }
    }
}

/// Cuts every string over [`MAX_FIELD`] bytes (see [`cut`]).
pub fn cut_strings(v: &mut Value) {
    match v {
        Value::String(s) => cut(s),
        Value::Array(a) => a.iter_mut().for_each(cut_strings),
        Value::Object(o) => o.values_mut().for_each(cut_strings),
        _ => {}
    }
}

/// Cuts `s` to its first 256 bytes, its length and its digest when it is
/// over [`MAX_FIELD`] bytes.
pub fn cut(s: &mut String) {
    if s.len() <= MAX_FIELD {
        return;
    }
    let mut end = KEPT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let digest = hex::encode(Sha256::digest(s.as_bytes()));
    let kept = s.get(..end).unwrap_or_default();
    *s = format!("{kept}…[{} bytes, sha256:{digest}]", s.len());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn long_strings_are_cut_and_many_fields_omitted() {
        let mut v = json!({"agent": "a".repeat(1 << 20), "n": 1});
        bound(&mut v, 4096);
        let agent = v["agent"].as_str().unwrap_or_default();
        assert!(agent.starts_with(&"a".repeat(256)), "{agent}");
        assert!(agent.contains("[1048576 bytes, sha256:"), "{agent}");
        assert_eq!(v["n"], 1);
        let mut many = json!({"args": (0..2000).map(|i| format!("v{i}")).collect::<Vec<_>>()});
        bound(&mut many, 4096);
        assert!(
            many["omitted"]["bytes"].as_u64().unwrap_or(0) > 4096,
            "{many}"
        );
    }
}
