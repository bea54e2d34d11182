//! Artifact tests: the hash verifies, tampering is caught, and the same IR
//! gives byte-identical bytes whatever order the policies come in.

use serde_json::{Value, json};
use sluice::compile::artifact::{Artifact, ArtifactError, FORMAT_VERSION};
use sluice::eval::Evaluator;
use sluice::eval::state::MemoryLimitStore;
use sluice::model::ir::{DecisionKind, PolicySet};

use crate::eval::{
    allow, and, approve, cmp, deny, has, is_in, limit, matches, modify, pol, pol_limits, redact_re,
    req, rule, schema, tool, yes,
};

fn policies() -> Vec<sluice::model::ir::Policy> {
    vec![
        pol(
            "payments",
            vec![
                rule(
                    "block",
                    and([
                        tool("payments.transfer"),
                        is_in("args.country", ["KP", "IR"]),
                    ]),
                    deny("SANCTIONED"),
                ),
                rule(
                    "large",
                    and([tool("payments.transfer"), cmp("args.amount", ">", 1000)]),
                    approve("APPROVAL_REQUIRED"),
                ),
                rule(
                    "small",
                    and([tool("payments.transfer"), cmp("args.amount", "<=", 1000)]),
                    allow(),
                ),
            ],
        ),
        pol(
            "mail",
            vec![rule(
                "redact",
                and([
                    tool("email.send"),
                    has("args.body"),
                    matches("args.body", "[0-9]{3}"),
                ]),
                modify("args.body", redact_re("args.body", "[0-9]{3}"), "PII"),
            )],
        ),
        pol_limits(
            "rate",
            vec![],
            vec![limit(
                "per_agent",
                yes(),
                100,
                86_400,
                &["agent"],
                deny("RATE_LIMITED"),
            )],
        ),
    ]
}

fn build(policies: Vec<sluice::model::ir::Policy>, commit: Option<&str>) -> Artifact {
    Artifact::new(
        "acme",
        DecisionKind::Deny,
        schema(),
        PolicySet { policies },
        commit.map(str::to_string),
    )
    .unwrap()
}

#[track_caller]
fn check_rejected(bytes: &[u8], expect: &str) {
    let err = Artifact::from_bytes(bytes).unwrap_err();
    assert!(err.to_string().contains(expect), "{err}");
}

#[test]
fn round_trip_verifies() {
    let a = build(policies(), Some("abc123"));
    assert_eq!(a.format_version, FORMAT_VERSION);
    assert_eq!(a.hash.len(), 64);
    assert!(a.hash.bytes().all(|b| b.is_ascii_hexdigit()));
    a.verify().unwrap();
    let bytes = a.to_bytes().unwrap();
    let back = Artifact::from_bytes(&bytes).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.to_bytes().unwrap(), bytes);
    assert_eq!(sluice::model::short::hash(&a.hash), &a.hash[..12]);
}

#[test]
fn policies_are_sorted_and_bytes_identical_in_any_order() {
    let a = build(policies(), None);
    let names: Vec<_> = a.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mail", "payments", "rate"]);
    let mut reversed = policies();
    reversed.reverse();
    let mut rotated = policies();
    rotated.rotate_left(1);
    for shuffled in [reversed, rotated] {
        assert_eq!(
            build(shuffled, None).to_bytes().unwrap(),
            a.to_bytes().unwrap()
        );
    }
}

#[test]
fn source_commit_is_not_part_of_the_hash() {
    let a = build(policies(), Some("1111"));
    let b = build(policies(), Some("2222"));
    let c = build(policies(), None);
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash, c.hash);
    assert_ne!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    let v: Value = serde_json::from_slice(&c.to_bytes().unwrap()).unwrap();
    assert!(v.get("source_commit").is_none());
}

#[test]
fn content_changes_change_the_hash() {
    let base = build(policies(), None).hash;
    let mut p = policies();
    p[0].version = "1.0.1".to_string();
    assert_ne!(build(p, None).hash, base);
    let mut p = policies();
    p[0].rules.swap(0, 1);
    assert_ne!(build(p, None).hash, base);
    let other_default = Artifact::new(
        "acme",
        DecisionKind::Allow,
        schema(),
        PolicySet {
            policies: policies(),
        },
        None,
    )
    .unwrap();
    assert_ne!(other_default.hash, base);
    let other_project = Artifact::new(
        "other",
        DecisionKind::Deny,
        schema(),
        PolicySet {
            policies: policies(),
        },
        None,
    )
    .unwrap();
    assert_ne!(other_project.hash, base);
}

/// Edits the artifact's JSON and re-encodes it without fixing the hash.
fn tampered(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let a = build(policies(), Some("abc"));
    let mut v: Value = serde_json::from_slice(&a.to_bytes().unwrap()).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
#[rustfmt::skip]
fn tampering_is_detected() {
    check_rejected(&tampered(|v| v["default"] = json!("allow")), "artifact hash does not verify");
    check_rejected(&tampered(|v| v["policies"][1]["rules"][0]["effect"] = json!("allow")), "artifact hash does not verify");
    check_rejected(&tampered(|v| v["policies"][1]["version"] = json!("9.9.9")), "artifact hash does not verify");
    check_rejected(&tampered(|v| v["schema"]["fields"][0]["optional"] = json!(true)), "artifact hash does not verify");
    check_rejected(&tampered(|v| v["hash"] = json!("00")), "expected `00`");
    check_rejected(&tampered(|v| v["format_version"] = json!(99)), "format 99 is not supported");
    check_rejected(&tampered(|v| v["extra"] = json!(1)), "unknown field `extra`");
    check_rejected(b"{not json", "artifact is not valid");
    // The commit is provenance: changing it keeps a valid artifact.
    let a = Artifact::from_bytes(&tampered(|v| v["source_commit"] = json!("def"))).unwrap();
    assert_eq!(a.source_commit.as_deref(), Some("def"));
}

#[test]
fn hash_mismatch_reports_expected_and_actual() {
    let a = build(policies(), None);
    let mut bad = a.clone();
    bad.project = "evil".to_string();
    match bad.verify() {
        Err(ArtifactError::HashMismatch { expected, actual }) => {
            assert_eq!(expected, a.hash);
            assert_eq!(actual, bad.compute_hash().unwrap());
            assert_ne!(actual, expected);
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
}

#[test]
fn an_accepted_artifact_evaluates() {
    let a = Artifact::from_bytes(&build(policies(), None).to_bytes().unwrap()).unwrap();
    let ev = Evaluator::new(&a).unwrap();
    assert_eq!(ev.hash(), a.hash);
    let store = MemoryLimitStore::new();
    let decide = |request: Value| {
        ev.evaluate(&ev.decode(&request).unwrap(), 0, &store)
            .unwrap()
            .decision()
    };
    assert_eq!(
        decide(req("payments.transfer", json!({"args": {"country": "IR"}}))),
        DecisionKind::Deny
    );
    assert_eq!(
        decide(req("payments.transfer", json!({"args": {"amount": 5000}}))),
        DecisionKind::RequireApproval
    );
    assert_eq!(
        decide(req("payments.transfer", json!({}))),
        DecisionKind::Allow
    );
    assert_eq!(
        decide(req("email.send", json!({"args": {"body": "call 555"}}))),
        DecisionKind::Modify
    );
    assert_eq!(decide(req("other", json!({}))), DecisionKind::Deny);
}
