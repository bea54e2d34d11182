//! The repositories shipped with sluice: `policies/` (the starter repository)
//! checks clean and passes its traces, and each folder under `examples/`
//! reports exactly the finding codes its README promises (rendered reports are
//! snapshotted).

use std::path::Path;

use sluice::api::replay::ReplayReport;
use sluice::diagnostic::render_human;
use sluice::eval::Evaluator;
use sluice::eval::state::MemoryLimitStore;
use sluice::pipeline::{Checked, check_sources};
use sluice::replay;
use sluice::repo;

fn check_repo(dir: &Path) -> Checked {
    let files = repo::load(dir).unwrap();
    check_sources(&files.project, &files.policies)
}

fn replay_repo(dir: &Path, checked: &Checked) -> ReplayReport {
    let artifact = checked.artifact(None).unwrap().unwrap();
    let evaluator = Evaluator::new(&artifact).unwrap();
    let traces = repo::load_traces(dir, &checked.project.as_ref().unwrap().traces).unwrap();
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
