//! `[governance]` of `sluice.toml`: the observe scope (SPEC §9), read into a
//! [`Governance`]. Pure: no I/O.
//!
//! `observe = { field = [values…] }` is a `match` of request fields, read
//! and validated as a rollout stage's `match` is: every key a declared
//! `int`, `string` or `bool` field, every value of the field's type, no list
//! empty. An empty `observe = {}` is refused: it would read as "observe
//! every request", which a typo should never turn enforcement off for.

use toml::de::DeTable;

use super::fields::Declared;
use super::read::{Cx, entries};
use super::rollout::read_match;
use crate::model::governance::Governance;

const GOVERNANCE_KEYS: [&str; 1] = ["observe"];

/// Reads `[governance]`; `None` after reporting an error.
pub(super) fn read(cx: &mut Cx<'_>, t: &DeTable<'_>, declared: &Declared) -> Option<Governance> {
    let mut governance = Some(Governance::default());
    for (k, v) in entries(t) {
        match k.get_ref().as_ref() {
            "observe" => match read_match(cx, k, v, "in `[governance]`", declared) {
                Some(scope) if scope.is_empty() => {
                    cx.error(
                        v.span(),
                        "no fields",
                        "`observe` in `[governance]` names no field",
                        "name the requests to observe, like `observe = { org = [\"newco\"] }`; \
                         to enforce every request, remove `observe`",
                    );
                    governance = None;
                }
                Some(scope) => {
                    if let Some(g) = governance.as_mut() {
                        g.observe = scope;
                    }
                }
                None => governance = None,
            },
            _ => {
                cx.unknown_key(k, "in `[governance]`", &GOVERNANCE_KEYS);
                governance = None;
            }
        }
    }
    governance
}

/// The span of every `max_cost_ratio` key of `[[rollout.stage]]` in
/// `text`, with its stage's name (for `plan::cost_without_envelope`).
pub fn cost_gate_spans(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    use toml::de::DeValue;
    let Ok(root) = DeTable::parse(text) else {
        return Vec::new();
    };
    let Some(DeValue::Table(rollout)) = root.get_ref().get("rollout").map(|r| r.get_ref()) else {
        return Vec::new();
    };
    let Some(DeValue::Array(stages)) = rollout.get("stage").map(|s| s.get_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stage in stages {
        let DeValue::Table(t) = stage.get_ref() else {
            continue;
        };
        let Some((key, _)) = t.get_key_value("max_cost_ratio") else {
            continue;
        };
        let name = match t.get("name").map(|n| n.get_ref()) {
            Some(DeValue::String(n)) => n.to_string(),
            _ => String::new(),
        };
        out.push((name, key.span()));
    }
    out
}

/// The span of the `observe` value of `[governance]` in `sluice.toml`, for
/// findings about the scope; `None` when the file has none (or does not
/// read as TOML).
pub fn observe_span(text: &str) -> Option<std::ops::Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let governance = root.get_ref().get("governance")?;
    match governance.get_ref() {
        toml::de::DeValue::Table(t) => t.get("observe").map(toml::Spanned::span),
        _ => None,
    }
}
