//! Checker tests: type errors per fixture (snapshotted), and whole-set
//! version checks over several files.

use crate::project::field;
use sluice::check::check;
use sluice::diagnostic::{Finding, Sources, render_human};
use sluice::model::ir::Type;
use sluice::model::schema::Schema;
use sluice::parse::parse_policy;
use sluice::source::SourceFile;

pub fn test_schema() -> Schema {
    Schema::new(vec![
        field("tool", Type::Str, false),
        field("agent", Type::Str, false),
        field("org", Type::Str, false),
        field("session", Type::Str, false),
        field("args.amount", Type::Int, false),
        field("args.country", Type::Str, false),
        field("args.recipients", Type::StrSet, false),
        field("args.body", Type::Str, true),
        field("args.urgent", Type::Bool, true),
    ])
}

/// Parses and checks a set of (file name, text); returns the findings and the
/// sources for rendering.
pub fn check_set(files: &[(&str, &str)]) -> (Vec<Finding>, Sources, bool) {
    let mut sources = Sources::new();
    let mut parsed = Vec::new();
    let mut findings = Vec::new();
    for (name, text) in files {
        let file = SourceFile::new(*name, *text);
        sources.add(file.clone());
        match parse_policy(&file) {
            Ok(p) => parsed.push((file, p)),
            Err(mut e) => findings.append(&mut e),
        }
    }
    let schema = test_schema();
    let out = check(&parsed, &schema);
    findings.extend(out.findings);
    let has_set = out.checked.is_some();
    (findings, sources, has_set)
}

fn codes(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn ok_fixtures_check_clean() {
    insta::glob!("data/check/ok/*.policy", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (findings, sources, has_set) = check_set(&[("ok.policy", &text)]);
        assert!(
            findings.is_empty(),
            "{}",
            render_human(&findings, &sources, false, 100)
        );
        assert!(has_set);
    });
}

#[test]
fn err_fixtures_snapshot() {
    insta::with_settings!({snapshot_path => "../snapshots/check", prepend_module_to_snapshot => false}, {
        insta::glob!("data/check/err/*.policy", |path| {
            let text = std::fs::read_to_string(path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let (findings, sources, has_set) = check_set(&[(&name, &text)]);
            assert!(!findings.is_empty());
            assert!(!has_set, "no IR when there are errors");
            insta::assert_snapshot!(render_human(&findings, &sources, false, 100));
        });
    });
}

/// Warnings of the checker: the set still type-checks.
#[test]
fn warn_fixtures_snapshot() {
    insta::with_settings!({snapshot_path => "../snapshots/check", prepend_module_to_snapshot => false}, {
        insta::glob!("data/check/warn/*.policy", |path| {
            let text = std::fs::read_to_string(path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let (findings, sources, has_set) = check_set(&[(&name, &text)]);
            assert!(!findings.is_empty());
            assert!(findings.iter().all(|f| !f.is_error()));
            assert!(has_set, "warnings leave the set checked");
            insta::assert_snapshot!(render_human(&findings, &sources, false, 100));
        });
    });
}

#[test]
fn every_type_error_of_a_file_is_reported() {
    let text =
        std::fs::read_to_string("tests/data/check/err/0006_several_mismatches.policy").unwrap();
    let (findings, _, _) = check_set(&[("a.policy", &text)]);
    assert_eq!(
        codes(&findings),
        ["type::mismatch", "type::mismatch", "type::mismatch"]
    );
}

#[test]
fn a_syntax_error_does_not_hide_other_files() {
    let (findings, _, has_set) = check_set(&[
        (
            "a.policy",
            "policy a version 1.0.0 { rule r { when tool = \"x\" allow } }",
        ),
        (
            "b.policy",
            "policy b version 1.0.0 { rule r { when nope == 1 allow } }",
        ),
        (
            "c.policy",
            "policy c version 1.0.0 { rule r { when tool == \"x\" allow ",
        ),
    ]);
    assert_eq!(
        codes(&findings),
        ["parse::syntax", "parse::syntax", "type::unknown_field"]
    );
    let files: Vec<&str> = findings.iter().map(|f| f.labels[0].file.as_str()).collect();
    assert_eq!(files, ["a.policy", "c.policy", "b.policy"]);
    assert!(!has_set);
}

const CORE: &str = "policy core version 1.7.0 { rule r { when tool == \"x\" allow } }";

#[test]
fn version_unsatisfied_by_range_and_by_absence() {
    let (findings, sources, _) = check_set(&[
        ("core.policy", CORE),
        (
            "pay.policy",
            "policy pay version 1.0.0 {\n  requires core ^2.0\n  requires coer ^1\n}",
        ),
    ]);
    assert_eq!(
        codes(&findings),
        ["version::unsatisfied", "version::unsatisfied"]
    );
    let out = render_human(&findings, &sources, false, 100);
    assert!(
        out.contains("requires `core ^2.0` but `core` is 1.7.0"),
        "{out}"
    );
    assert!(out.contains("did you mean `core`?"), "{out}");
}

#[test]
fn version_satisfied_is_clean() {
    let (findings, _, has_set) = check_set(&[
        ("core.policy", CORE),
        (
            "pay.policy",
            "policy pay version 1.0.0 { requires core >=1.2, <2.0 }",
        ),
    ]);
    assert!(findings.is_empty(), "{findings:?}");
    assert!(has_set);
}

#[test]
fn version_cycle_is_spelled_out() {
    let (findings, sources, _) = check_set(&[
        ("a.policy", "policy a version 1.0.0 { requires b ^1 }"),
        ("b.policy", "policy b version 1.0.0 { requires c ^1 }"),
        ("c.policy", "policy c version 1.0.0 { requires a ^1 }"),
        ("d.policy", "policy d version 1.0.0 { requires d ^1 }"),
    ]);
    assert_eq!(codes(&findings), ["version::cycle", "version::cycle"]);
    let msgs: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        msgs.contains(&"policies require each other in a cycle: a → b → c → a"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"policies require each other in a cycle: d → d"),
        "{msgs:?}"
    );
    assert_eq!(findings.iter().map(|f| f.labels.len()).sum::<usize>(), 4);
    insta::with_settings!({snapshot_path => "../snapshots/check", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(render_human(&findings, &sources, false, 100));
    });
}

#[test]
fn version_duplicate_names_both_files() {
    let (findings, _, has_set) = check_set(&[
        ("x/one.policy", "policy pay version 1.0.0 { }"),
        ("y/two.policy", "policy pay version 1.1.0 { }"),
    ]);
    assert_eq!(codes(&findings), ["version::duplicate"]);
    let files: Vec<&str> = findings[0].labels.iter().map(|l| l.file.as_str()).collect();
    assert_eq!(files, ["y/two.policy", "x/one.policy"]);
    assert!(!has_set);
}
