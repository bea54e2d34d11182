//! Findings as a SARIF 2.1.0 log, for code scanning (`--format sarif`).
//!
//! One run whose tool driver is `sluice`, with one `rules` entry per finding
//! code present (description and help from [`Code::about`]) and one result
//! per finding: its level (`error`, `warning`, `note`), message (with the
//! finding's own help), its location — the first label — and the other
//! labels in `relatedLocations` (each file relative to the git repository's
//! root, and the region it covers), a logical location `policy.rule` when the label has one,
//! a fingerprint of the finding's [`super::identity`] (so code scanning tracks
//! an alert across commits that move lines), and the witness request with the
//! decisions it gets in the result's `properties`. In a pull-request check
//! each result has a `baselineState`: `new` when the change introduced it,
//! `unchanged` when the base revision already had it.
//!
//! Columns count Unicode code points (`columnKind: unicodeCodePoints`), as the
//! other renderings do. Pure: findings in, JSON value out.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Code, Finding, Label, Severity, Sources, identity, prefixed};

/// The `$schema` a SARIF 2.1.0 log names.
pub const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The name of the fingerprint sluice puts in each result's
/// `partialFingerprints`.
pub const FINGERPRINT: &str = "sluiceFinding/v1";

/// The SARIF log of `findings`. `prefix` is the policy repository's folder
/// inside the git repository (empty when they are the same), so that every
/// `uri` is relative to the git repository's root.
pub fn to_sarif(findings: &[Finding], sources: &Sources, prefix: &str) -> Value {
    // One rule per code, sorted by its text; results refer to them by index.
    let mut codes: BTreeMap<&str, (Code, Severity)> = BTreeMap::new();
    for f in findings {
        codes.entry(f.code.as_str()).or_insert((f.code, f.severity));
    }
    let index: BTreeMap<&str, usize> = codes.keys().enumerate().map(|(i, c)| (*c, i)).collect();
    let rules: Vec<Value> = codes
        .values()
        .map(|&(code, severity)| rule(code, severity))
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| result(f, index.get(f.code.as_str()).copied(), sources, prefix))
        .collect();
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sluice",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn rule(code: Code, severity: Severity) -> Value {
    let (description, help) = code.about().unwrap_or(("A sluice finding.", ""));
    let mut rule = json!({
        "id": code,
        "shortDescription": {"text": description},
        "fullDescription": {"text": description},
        "helpUri": code.doc_url(),
        "defaultConfiguration": {"level": level(severity)},
        "properties": {"tags": ["sluice", code.family()]},
    });
    if !help.is_empty()
        && let Some(obj) = rule.as_object_mut()
    {
        obj.insert("help".into(), json!({"text": help, "markdown": help}));
    }
    rule
}

fn result(f: &Finding, rule_index: Option<usize>, sources: &Sources, prefix: &str) -> Value {
    let mut text = f.message.clone();
    if let Some(help) = &f.help {
        text.push_str("\nhelp: ");
        text.push_str(help);
    }
    let mut r = Map::new();
    r.insert("ruleId".into(), json!(f.code));
    if let Some(i) = rule_index {
        r.insert("ruleIndex".into(), json!(i));
    }
    r.insert("level".into(), json!(level(f.severity)));
    r.insert("message".into(), json!({ "text": text }));
    // The first label is where the result is; the others are related
    // places (SARIF reads `locations[1..]` as the same result elsewhere).
    let mut labels = f.labels.iter();
    let locations: Vec<Value> = labels
        .next()
        .map(|l| location(l, sources, prefix))
        .into_iter()
        .collect();
    r.insert("locations".into(), Value::Array(locations));
    let related: Vec<Value> = labels
        .enumerate()
        .map(|(i, l)| {
            let mut loc = location(l, sources, prefix);
            if let Some(o) = loc.as_object_mut() {
                o.insert("id".into(), json!(i + 1));
            }
            loc
        })
        .collect();
    if !related.is_empty() {
        r.insert("relatedLocations".into(), Value::Array(related));
    }
    // With `--base`: whether the base revision had it too.
    if let Some(introduced) = f.introduced {
        let state = if introduced { "new" } else { "unchanged" };
        r.insert("baselineState".into(), json!(state));
    }
    let digest = Sha256::digest(identity(f).as_bytes());
    r.insert(
        "partialFingerprints".into(),
        json!({ FINGERPRINT: hex::encode(digest) }),
    );
    let mut props = Map::new();
    if let Some(w) = &f.witness {
        props.insert("witness".into(), w.clone());
    }
    if let Some(d) = &f.witness_decisions {
        props.insert("witness_decisions".into(), json!(d));
    }
    if !props.is_empty() {
        r.insert("properties".into(), Value::Object(props));
    }
    Value::Object(r)
}

fn location(l: &Label, sources: &Sources, prefix: &str) -> Value {
    let mut physical = Map::new();
    physical.insert(
        "artifactLocation".into(),
        json!({ "uri": uri(&prefixed(prefix, &l.file)) }),
    );
    if let Some(region) = sources.region(l) {
        physical.insert(
            "region".into(),
            json!({
                "startLine": region.start_line,
                "startColumn": region.start_column,
                "endLine": region.end_line,
                "endColumn": region.end_column,
            }),
        );
    }
    let mut loc = Map::new();
    loc.insert("physicalLocation".into(), Value::Object(physical));
    if let Some(m) = &l.message {
        loc.insert("message".into(), json!({ "text": m }));
    }
    if let Some(policy) = &l.policy {
        let (name, qualified, kind) = match &l.rule {
            Some(rule) => (rule.clone(), format!("{policy}.{rule}"), "member"),
            None => (policy.clone(), policy.clone(), "module"),
        };
        loc.insert(
            "logicalLocations".into(),
            json!([{ "name": name, "fullyQualifiedName": qualified, "kind": kind }]),
        );
    }
    Value::Object(loc)
}

/// A relative path as a URI reference: `/` kept, unreserved characters kept,
/// everything else percent-encoded (so a `:` or a space cannot turn the path
/// into a scheme or an invalid reference).
pub fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
