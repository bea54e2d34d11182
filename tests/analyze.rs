//! Conflict analysis tests: one fixture repository per finding code
//! (snapshotted report) and negative fixtures that must stay clean, SMT-LIB
//! snapshots of the encoding, solver verdicts against brute-force
//! evaluation over a small domain (proptest), and the planted conflicts of
//! the benchmark generator.

use std::path::Path;

use sluice::analyze::smt::Plan;
use sluice::analyze::{self, Options, Probe, Sat};
use sluice::diagnostic::{Finding, Sources, render_human};
use sluice::pipeline::{self, Checked};

/// Checks the fixture repository at `dir` (the whole pipeline, analysis
/// included).
fn check_repo(dir: &Path) -> Checked {
    let files = sluice::repo::load(dir).unwrap();
    pipeline::check_sources(&files.project, &files.policies)
}

fn codes(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.code).collect()
}

fn fixture_dirs(kind: &str) -> Vec<std::path::PathBuf> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/analyze")
        .join(kind);
    let mut dirs: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn render(findings: &[Finding], sources: &Sources) -> String {
    render_human(findings, sources, false, 100)
}

#[test]
fn err_fixtures_snapshot() {
    let dirs = fixture_dirs("err");
    assert!(dirs.len() >= 7);
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let checked = check_repo(&dir);
        assert!(!checked.findings.is_empty(), "{name}: no finding");
        let expected = name.trim_end_matches("_cycle").trim_end_matches("_denied");
        assert!(
            checked.findings.iter().all(|f| f.code.ends_with(expected)),
            "{name}: {:?}\n{}",
            codes(&checked.findings),
            render(&checked.findings, &checked.sources)
        );
        for f in &checked.findings {
            assert!(!f.labels.is_empty(), "{name}: {} has no label", f.code);
            assert!(
                f.labels
                    .iter()
                    .all(|l| l.policy.is_some() && l.rule.is_some())
            );
            assert!(f.help.is_some());
        }
        insta::with_settings!({snapshot_path => "../snapshots/analyze", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(name.clone(), render(&checked.findings, &checked.sources));
        });
    }
}

#[test]
fn ok_fixtures_stay_clean() {
    let dirs = fixture_dirs("ok");
    assert!(dirs.len() >= 7);
    for dir in dirs {
        let checked = check_repo(&dir);
        assert!(
            checked.findings.is_empty(),
            "{}:\n{}",
            dir.display(),
            render(&checked.findings, &checked.sources)
        );
        assert!(checked.set.is_some());
    }
}

/// The typed set and project of a fixture repository that type-checks.
fn load_set(dir: &Path) -> (sluice::project::Project, sluice::compile::ir::PolicySet) {
    let files = sluice::repo::load(dir).unwrap();
    let project = sluice::project::parse(&files.project).unwrap();
    let parsed: Vec<_> = files
        .policies
        .iter()
        .map(|f| (f.clone(), sluice::parse::parse_policy(f).unwrap()))
        .collect();
    let out = sluice::check::check(&parsed, &project.schema);
    (project, out.set.unwrap())
}

fn data(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/analyze")
        .join(rel)
}

#[test]
fn smtlib_of_each_representation() {
    let (project, set) = load_set(&data("smt/encoding"));
    let rules: Vec<_> = set.policies.iter().flat_map(|p| &p.rules).collect();
    let plan = Plan::new(&project.schema, rules.iter().map(|r| &r.when), &[]);
    let mut probe = Probe::new(&plan, 5_000);
    for r in &rules {
        let text = probe.smtlib(&[&r.when]).unwrap();
        insta::with_settings!({snapshot_path => "../snapshots/analyze", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("smtlib_{}", r.name), text);
        });
        // The solver agrees that each is satisfiable, and the witness
        // matches the rule in the real evaluator.
        let Sat::Yes(req) = probe.satisfiable(&[&r.when]).unwrap() else {
            panic!("{} should be satisfiable", r.name);
        };
        let json = req.to_json(&project.schema);
        assert!(
            matches_rule(&project, &set, &json, &r.name),
            "{}: {json}",
            r.name
        );
    }
}

/// Does rule `rule` (of any policy) match `request` in the evaluator?
fn matches_rule(
    project: &sluice::project::Project,
    set: &sluice::compile::ir::PolicySet,
    request: &serde_json::Value,
    rule: &str,
) -> bool {
    let artifact = sluice::compile::artifact::Artifact::new(
        "t",
        project.default,
        project.schema.clone(),
        set.clone(),
        None,
    )
    .unwrap();
    let ev = sluice::engine::eval::Evaluator::new(&artifact).unwrap();
    let req = ev.decode(request).unwrap();
    let out = ev
        .evaluate_dry_run(&req, 0, &sluice::engine::state::MemoryLimitStore::new())
        .unwrap();
    ev.reasons(&out).any(|r| r.rule == rule)
}

#[test]
fn an_undecided_query_is_reported_not_dropped() {
    let (project, set) = load_set(&data("unknown"));
    let opts = Options {
        timeout_ms: 200,
        threads: 1,
    };
    let report = analyze::analyze(&set, &project.schema, project.default, &opts);
    assert_eq!(
        codes(&report.findings),
        ["analyze::unknown"],
        "{:?}",
        report.findings
    );
    let f = &report.findings[0];
    assert!(f.message.contains("`hard.keys_in_echoes`"), "{}", f.message);
    assert!(f.message.contains("200 ms"), "{}", f.message);
    assert_eq!(report.stats.unknown, 1);
}
