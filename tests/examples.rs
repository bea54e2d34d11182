//! The repositories shipped with sluice: `policies/` (the starter repository,
//! with its agent inventory and observe scope) checks clean and passes its
//! traces, `sluice init`'s starter too, and each folder under `examples/`
//! reports exactly the finding codes its README promises (rendered reports are
//! snapshotted).

use std::path::Path;

use sluice::api::replay::ReplayReport;
use sluice::diagnostic::render_human;
use sluice::eval::Evaluator;
use sluice::eval::state::MemoryLimitStore;
use sluice::pipeline::{Checked, check_repo as check_files};
use sluice::replay;
use sluice::tree::{self, Traces};

fn check_repo(dir: &Path) -> Checked {
    let files = tree::fs::load(dir, Traces::Skip).unwrap();
    check_files(&files.project, &files.policies, &files.agents)
}

fn replay_repo(dir: &Path, checked: &Checked) -> ReplayReport {
    let artifact = checked.artifact(None).unwrap().unwrap();
    let evaluator = Evaluator::new(&artifact).unwrap();
    assert!(checked.project.is_some());
    let traces = tree::fs::load(dir, Traces::Read).unwrap().traces;
    assert!(!traces.is_empty());
    let mut report = ReplayReport::default();
    for file in &traces {
        let (cases, invalid) = replay::parse_traces(file);
        assert!(invalid.is_empty(), "{}: {invalid:?}", file.name);
        replay::run(&evaluator, &cases, &MemoryLimitStore::new(), &mut report);
    }
    report
}

#[test]
fn starter_repository_checks_clean_and_passes_its_traces() {
    let dir = Path::new("policies");
    let checked = check_repo(dir);
    assert!(
        checked.findings.is_empty(),
        "{}",
        render_human(&checked.findings, &checked.sources, false, 100)
    );
    assert!(checked.files >= 8);
    // The inventory and the observe scope are read, so their checks
    // (`inventory::*`, `governance::observes_security`) ran and found nothing.
    assert!(checked.inventory.agents.len() >= 10);
    assert!(checked.inventory.agent("approvals-desk").is_some());
    let project = checked.project.as_ref().unwrap();
    assert!(!project.governance.is_empty());
    let report = replay_repo(dir, &checked);
    assert!(report.cases >= 60);
    let failures: Vec<_> = report.failures().collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn clean_example_checks_clean_and_passes_its_traces() {
    let dir = Path::new("examples/clean");
    let checked = check_repo(dir);
    assert!(checked.findings.is_empty());
    assert!(replay_repo(dir, &checked).is_clean());
}

/// Each example folder and the codes it must report, in report order.
const EXPECTED: &[(&str, &[&str])] = &[
    ("syntax-error", &["parse::syntax", "parse::syntax"]),
    (
        "type-error",
        &[
            "type::bad_regex",
            "type::bad_regex",
            "type::mismatch",
            "type::unknown_field",
            "type::mismatch",
            "type::duplicate_name",
        ],
    ),
    ("bad-toml", &["schema::invalid", "schema::invalid"]),
    (
        "version-unsatisfied",
        &["version::unsatisfied", "version::unsatisfied"],
    ),
    ("version-cycle", &["version::cycle"]),
    ("version-duplicate", &["version::duplicate"]),
    ("conflict-overridden-allow", &["conflict::overridden_allow"]),
    ("conflict-shadowed", &["conflict::shadowed"]),
    (
        "conflict-dead-rule",
        &[
            "conflict::dead_rule",
            "conflict::dead_rule",
            "conflict::dead_rule",
        ],
    ),
    ("conflict-modify", &["conflict::modify"]),
    (
        "conflict-approval-deadlock",
        &["conflict::approval_deadlock"],
    ),
];

#[test]
fn examples_report_what_their_readme_says() {
    for (name, codes) in EXPECTED {
        let dir = Path::new("examples").join(name);
        let checked = check_repo(&dir);
        let got: Vec<&str> = checked.findings.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(&got, codes, "examples/{name}");
        let rendered = render_human(&checked.findings, &checked.sources, false, 100);
        insta::with_settings!({snapshot_path => "../snapshots/examples", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(name.to_string(), rendered);
        });
    }
}
