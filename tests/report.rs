//! The pull-request check around the analysis: SARIF and GitHub renderings,
//! `--base` against real git repositories (working tree in a sub-folder, bare
//! clone, merge commit), version bumps, every `state::` finding from a
//! `--state` file, and `--engine` against a small HTTP server.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use sluice::diagnostic::github::{annotation, escape_data, escape_property, summary_markdown};
use sluice::diagnostic::sarif::to_sarif;
use sluice::diagnostic::{Code, Finding, Label, Sources, Summary, identity};
use sluice::review::base::{anchor, label};
use sluice::source::{SourceFile, Span};
use sluice::tree::git::GitRepo;

use crate::cli::{CORE, TOML, write_repo};

// ---------------------------------------------------------------------------
// Helpers

const PAY: &str = r#"policy pay version 1.0.0 {
  rule sanctioned {
    when tool == "pay" and args.country in ["KP", "IR"]
    deny SANCTIONED "blocked"
  }
  rule big {
    when tool == "pay" and args.amount > 1000
    require_approval "finance" via "approvals.request" BIG "needs approval"
  }
  limit per_agent {
    when tool == "pay"
    max 100 per 1h by agent
    exceed deny RATE_LIMITED "too many"
  }
}
"#;

/// 2026-01-01T00:00:00Z, and a time 100 s into that hour.
const HOUR: u64 = 1_767_225_600;
const NOW: u64 = HOUR + 100;

fn sluice(dir: &Path, args: &[&str]) -> Output {
    sluice_env(dir, args, &[])
}

fn sluice_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("--repo")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("SLUICE_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

/// (code, message) of each finding of a `--format json` report.
fn codes(doc: &Value) -> Vec<(String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Stages every file of the working tree (deletions too) and commits it on
/// HEAD. Returns the commit's hash.
fn commit_all(repo: &git2::Repository, message: &str) -> String {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig =
        git2::Signature::new("t", "t@example.com", &git2::Time::new(1_767_225_600, 0)).unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

/// A git repository whose policy repository is the sub-folder `policy/`,
/// with one commit of `files` (paths relative to `policy/`).
fn git_repo(files: &[(&str, &str)]) -> (tempfile::TempDir, git2::Repository, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let policy = dir.path().join("policy");
    write_repo(&policy, files);
    write_repo(dir.path(), &[("README.md", "not policies\n")]);
    let first = commit_all(&repo, "first");
    (dir, repo, first)
}

fn base_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("sluice.toml", TOML),
        ("policies/pay.policy", PAY),
        ("policies/core.policy", CORE),
    ]
}

// ---------------------------------------------------------------------------
// SARIF

fn sarif_validator() -> jsonschema::Validator {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report/sarif-schema-2.1.0.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Formats are checked too: every `uri` must be a URI reference.
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

#[track_caller]
fn assert_valid_sarif(doc: &Value) {
    let validator = sarif_validator();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF schema violations: {errors:#?}");
}

/// Findings in several files: several labels, a witness, a warning, a label
/// in a file the report does not hold, and a finding without labels.
fn hand_findings() -> (Vec<Finding>, Sources) {
    let mut sources = Sources::new();
    let pay = SourceFile::new("policies/pay.policy", PAY);
    let core = SourceFile::new("policies/core.policy", CORE);
    let weird = SourceFile::new("policies/odd name:é.policy", "policy é version 1.0.0 {}\n");
    sources.add(pay.clone());
    sources.add(core.clone());
    sources.add(weird);
    let at = |f: &SourceFile, needle: &str| {
        let start = f.text.find(needle).unwrap();
        Span::new(start, start + needle.len())
    };
    let mut decisions = BTreeMap::new();
    decisions.insert("pay.big".to_string(), "require_approval".to_string());
    decisions.insert("core.no_root".to_string(), "deny".to_string());
    decisions.insert("final".to_string(), "deny".to_string());
    let mut conflict = Finding::new(
        Code::ConflictOverriddenAllow,
        "allow pay.big never takes effect when agent is `root`, 50% of: a \"quoted\" case",
    )
    .with_help("narrow it")
    .with_label(
        Label::new("policies/pay.policy", at(&pay, "big"))
            .with_message("this rule")
            .in_rule("pay", Some("big".into())),
    )
    .with_label(
        Label::new("policies/core.policy", at(&core, "no_root"))
            .with_message("denies it")
            .in_rule("core", Some("no_root".into())),
    );
    conflict.witness = Some(json!({"tool": "pay", "agent": "root", "args": {"amount": 1001}}));
    conflict.witness_decisions = Some(decisions);
    let multi_line = Finding::new(Code::TypeMismatch, "spans\nlines").with_label(Label::new(
        "policies/pay.policy",
        Span::new(at(&pay, "rule big").start, at(&pay, "needs approval").end),
    ));
    let odd = Finding::new(Code::VersionNotBumped, "policy `é` changed")
        .with_label(Label::new("policies/odd name:é.policy", Span::new(7, 9)).in_rule("é", None))
        .with_label(Label::new("policies/missing.policy", Span::new(0, 3)));
    let bare = Finding::new(Code::StateLimitRemoved, "no place at all");
    (vec![conflict, multi_line, odd, bare], sources)
}

#[test]
fn sarif_of_hand_built_findings_validates_against_the_schema() {
    let (findings, sources) = hand_findings();
    let doc = to_sarif(&findings, &sources, "infra/policy");
    assert_valid_sarif(&doc);
    assert_eq!(doc["version"], "2.1.0");
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "sluice");
    let rules: Vec<&str> = driver["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "conflict::overridden_allow",
            "state::limit_removed",
            "type::mismatch",
            "version::not_bumped"
        ]
    );
    for r in driver["rules"].as_array().unwrap() {
        assert!(!r["help"]["text"].as_str().unwrap().is_empty(), "{r}");
    }
    let results = runs[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let conflict = &results[0];
    assert_eq!(conflict["level"], "warning");
    assert_eq!(conflict["ruleId"], "conflict::overridden_allow");
    assert_eq!(conflict["ruleIndex"], 0);
    assert!(
        conflict["message"]["text"]
            .as_str()
            .unwrap()
            .ends_with("\nhelp: narrow it")
    );
    // The first label is the result's location, the others are related.
    assert_eq!(conflict["locations"].as_array().unwrap().len(), 1);
    let locs = conflict["relatedLocations"].as_array().unwrap();
    assert_eq!(locs.len(), 1);
    assert_eq!(locs[0]["id"], 1);
    let loc = &locs[0]["physicalLocation"];
    assert_eq!(
        loc["artifactLocation"]["uri"],
        "infra/policy/policies/core.policy"
    );
    assert_eq!(
        loc["region"],
        json!({"startLine": 3, "startColumn": 8, "endLine": 3, "endColumn": 15})
    );
    assert_eq!(
        locs[0]["logicalLocations"][0]["fullyQualifiedName"],
        "core.no_root"
    );
    assert_eq!(conflict["properties"]["witness"]["agent"], "root");
    assert_eq!(conflict["properties"]["witness_decisions"]["final"], "deny");
    // A region over several lines.
    let region = &results[1]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        region,
        &json!({"startLine": 6, "startColumn": 3, "endLine": 8, "endColumn": 75})
    );
    // Characters a URI cannot hold are encoded; an unknown file has no region.
    let odd = results[2]["locations"].as_array().unwrap();
    assert_eq!(
        odd[0]["physicalLocation"]["artifactLocation"]["uri"],
        "infra/policy/policies/odd%20name%3A%C3%A9.policy"
    );
    assert_eq!(odd[0]["physicalLocation"]["region"]["startColumn"], 8);
    let odd_related = results[2]["relatedLocations"].as_array().unwrap();
    assert!(odd_related[0]["physicalLocation"].get("region").is_none());
    assert_eq!(results[3]["locations"], json!([]));
    // Fingerprints follow the finding's identity, not its lines.
    let fp = |r: &Value| r["partialFingerprints"]["sluiceFinding/v1"].clone();
    assert_ne!(fp(&results[0]), fp(&results[1]));
    assert_eq!(fp(&results[0]).as_str().unwrap().len(), 64);
}

#[test]
fn sarif_of_a_policy_repository_in_a_subfolder_validates() {
    let (dir, _repo, _) = git_repo(&base_files());
    let policy = dir.path().join("policy");
    write_repo(
        &policy,
        &[
            (
                "policies/a.policy",
                "policy a version 1.0.0 { rule r { when tool = \"x\" allow } }",
            ),
            (
                "policies/b.policy",
                "policy b version 1.0.0 {\n  rule r { when args.amont > 1 allow }\n  rule s { when agent > 1 allow }\n}\n",
            ),
        ],
    );
    let o = sluice(&policy, &["check", "--format", "sarif"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = json_out(&o);
    assert_valid_sarif(&doc);
    let results = doc["runs"][0]["results"].as_array().unwrap();
    let got: Vec<(&str, &str, u64)> = results
        .iter()
        .map(|r| {
            let loc = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap(),
                loc["artifactLocation"]["uri"].as_str().unwrap(),
                loc["region"]["startLine"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("parse::syntax", "policy/policies/a.policy", 1),
            ("type::unknown_field", "policy/policies/b.policy", 2),
            ("type::mismatch", "policy/policies/b.policy", 3),
        ]
    );
}

#[test]
fn sarif_outside_git_uses_paths_relative_to_the_policy_repository() {
    let dir = tempfile::tempdir().unwrap();
    let files = base_files();
    write_repo(dir.path(), &files);
    write_repo(
        dir.path(),
        &[(
            "policies/x.policy",
            "policy x version 1.0.0 { rule r { when nope == 1 allow } }",
        )],
    );
    let o = sluice(dir.path(), &["check", "--format", "sarif"]);
    assert_eq!(o.status.code(), Some(1));
    let doc = json_out(&o);
    assert_valid_sarif(&doc);
    assert_eq!(
        doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "policies/x.policy"
    );
}

// ---------------------------------------------------------------------------
// GitHub

#[test]
fn github_escapes_data_and_properties() {
    assert_eq!(escape_data("50% a:b,c\r\nd"), "50%25 a:b,c%0D%0Ad");
    assert_eq!(escape_property("50% a:b,c\r\nd"), "50%25 a%3Ab%2Cc%0D%0Ad");
    let (findings, sources) = hand_findings();
    let line = annotation(&findings[0], &sources, "infra/policy");
    assert_eq!(
        line,
        "::warning file=infra/policy/policies/pay.policy,line=6,col=8,endLine=6,endColumn=10,\
         title=conflict%3A%3Aoverridden_allow::allow pay.big never takes effect when agent is \
         `root`, 50%25 of: a \"quoted\" case%0Aalso: infra/policy/policies/core.policy:3:8 \
         (denies it)%0Ahelp: narrow it%0Awitness: {\"tool\":\"pay\",\"agent\":\"root\",\"args\":{\"amount\":1001}}"
    );
    // A file name with `:` and `,` is escaped as a property.
    let odd = annotation(&findings[2], &sources, "");
    assert!(
        odd.starts_with("::error file=policies/odd name%3Aé.policy,line=1,col=8,endLine=1,endColumn=8,title=version%3A%3Anot_bumped::"),
        "{odd}"
    );
    // Without a location, only the title.
    assert_eq!(
        annotation(&findings[3], &sources, ""),
        "::error title=state%3A%3Alimit_removed::no place at all"
    );
    // Nothing unescaped can end the command early.
    for f in &findings {
        let line = annotation(f, &sources, "");
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    }
}

#[test]
fn github_summary_lists_findings_with_witnesses_in_details() {
    let (findings, sources) = hand_findings();
    let summary = Summary {
        errors: 3,
        warnings: 1,
        policies: 2,
        rules: 4,
        seconds: 0.5,
        ..Summary::default()
    };
    let md = summary_markdown(
        &findings,
        &sources,
        &summary,
        "infra/policy",
        true,
        Some("compared with base abc"),
    );
    insta::with_settings!({snapshot_path => "../snapshots/report", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("github_summary", md);
    });
    assert!(md.contains("<details><summary><code>conflict::overridden_allow</code>"));
    assert!(md.contains("| `final` | deny |"));
    // Cells hold no raw line break or pipe.
    assert!(md.contains("spans<br>lines"));
}

#[test]
fn github_format_annotates_and_appends_the_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &base_files());
    let narrowed = PAY.replace("args.amount > 1000", "args.amount > 5000");
    write_repo(dir.path(), &[("policies/pay.policy", &narrowed)]);
    let state = dir.path().join("state.json");
    std::fs::write(
        &state,
        json!({"time": NOW, "approvals": [approval("ap-1", "big", 2000)]}).to_string(),
    )
    .unwrap();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let o = sluice_env(
        dir.path(),
        &[
            "check",
            "--format",
            "github",
            "--state",
            state.to_str().unwrap(),
        ],
        &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with(
            "::error file=policies/pay.policy,line=6,col=8,endLine=6,endColumn=10,title=state%3A%3Apending_approvals::"
        ),
        "{out}"
    );
    assert!(
        out.contains("check failed: 1 error(s), 0 warning(s)"),
        "{out}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("earlier step\n### sluice check failed"),
        "{md}"
    );
    assert!(
        md.contains("| ❌ error | `state::pending_approvals` |"),
        "{md}"
    );
    assert!(md.contains("<details>"), "{md}");
    assert!(md.contains("\"amount\": 2000"), "{md}");
}

// ---------------------------------------------------------------------------
// --base

#[test]
fn introduced_matches_findings_by_identity_not_lines() {
    let label_at = |start| {
        Label::new("policies/a.policy", Span::new(start, start + 3)).in_rule("a", Some("r".into()))
    };
    let warn = |start| {
        Finding::new(Code::ConflictDeadRule, "rule a.r is dead").with_label(label_at(start))
    };
    let shadowed =
        |msg: &str, start| Finding::new(Code::ConflictShadowed, msg).with_label(label_at(start));
    let base = vec![
        warn(10),
        Finding::new(Code::TypeMismatch, "old error").with_label(label_at(40)),
        shadowed("allow a.r never takes effect", 60),
    ];
    let head = vec![
        // Same warning, moved down by an edit above it: not new.
        warn(120),
        // Same code and place, another message: new.
        Finding::new(Code::ConflictDeadRule, "rule a.r is dead twice").with_label(label_at(120)),
        // A second identical warning where the base had one: new.
        warn(200),
        // Old or new, every finding is shown, labelled: an old error too
        // (a set with an error does not compile, whoever introduced it).
        Finding::new(Code::TypeMismatch, "old error").with_label(label_at(90)),
        shadowed("allow a.r never takes effect", 150),
        shadowed("allow a.r never takes effect, again", 160),
    ];
    let labelled: Vec<(&str, usize, Option<bool>)> = label(&base, head.clone())
        .iter()
        .map(|f| (f.code.as_str(), f.labels[0].span.start, f.introduced))
        .collect();
    assert_eq!(
        labelled,
        [
            ("conflict::dead_rule", 120, Some(false)),
            ("conflict::dead_rule", 120, Some(true)),
            ("conflict::dead_rule", 200, Some(true)),
            ("type::mismatch", 90, Some(false)),
            ("conflict::shadowed", 150, Some(false)),
            ("conflict::shadowed", 160, Some(true))
        ]
    );
    assert_eq!(identity(&head[0]), identity(&base[0]));
    // Another rule is another finding.
    let other = Finding::new(Code::ConflictDeadRule, "rule a.r is dead").with_label(
        Label::new("policies/a.policy", Span::new(10, 13)).in_rule("a", Some("s".into())),
    );
    assert_ne!(identity(&other), identity(&base[0]));
}

/// A new finding is shown on the changed rule it involves (the diff's
/// lines), whatever its labels' order; its identity does not change.
#[test]
fn a_new_finding_is_anchored_on_the_changed_rule() {
    let on = |rule: &str, start| {
        Label::new("policies/a.policy", Span::new(start, start + 3))
            .in_rule("a", Some(rule.to_string()))
    };
    let finding = || {
        Finding::new(Code::ConflictShadowed, "allow `a.ok` never takes effect")
            .with_label(on("ok", 10))
            .with_label(on("other", 20))
            .with_label(on("block", 30))
    };
    let changed: std::collections::BTreeSet<String> = ["a.block".to_string()].into();
    let first = |f: &Finding| f.labels[0].rule.clone().unwrap();
    let mut new = finding();
    new.introduced = Some(true);
    let before = identity(&new);
    anchor(&mut new, &changed);
    assert_eq!(first(&new), "block");
    assert_eq!(new.labels[1].rule.as_deref(), Some("ok"));
    assert_eq!(identity(&new), before);
    // An old finding, or one outside a comparison, stays as it was.
    for introduced in [Some(false), None] {
        let mut f = finding();
        f.introduced = introduced;
        anchor(&mut f, &changed);
        assert_eq!(first(&f), "ok");
    }
    // Already on a changed rule: unchanged.
    let mut f = finding();
    f.introduced = Some(true);
    anchor(&mut f, &["a.ok".to_string(), "a.block".to_string()].into());
    assert_eq!(first(&f), "ok");
}

#[test]
fn git_source_reads_what_the_disk_loader_reads() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    let policy = dir.path().join("policy");
    let mut files = base_files();
    files.extend([
        ("a/b/deep.policy", "policy deep version 1.0.0 {}\n"),
        (".hidden/h.policy", "policy h version 1.0.0 {}\n"),
        ("target/t.policy", "policy t version 1.0.0 {}\n"),
        ("node_modules/n.policy", "policy n version 1.0.0 {}\n"),
        ("nested/sluice.toml", TOML),
        ("nested/x.policy", "policy x version 1.0.0 {}\n"),
        ("notes.txt", "not a policy"),
        ("policies/.dot.policy", "policy dot version 1.0.0 {}\n"),
    ]);
    write_repo(&policy, &files);
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        policy.join("policies/core.policy"),
        policy.join("link.policy"),
    )
    .unwrap();
    let rev = commit_all(&repo, "all");
    let disk = sluice::tree::fs::load(&policy, sluice::tree::Traces::Skip).unwrap();
    let git = GitRepo::open(&policy).unwrap();
    assert_eq!(git.prefix(), "policy");
    let at = git.load(&rev).unwrap();
    assert_eq!(at.commit, rev);
    assert_eq!(at.sources.project, disk.project);
    assert_eq!(at.sources.policies, disk.policies);
    let names: Vec<&str> = at
        .sources
        .policies
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "a/b/deep.policy",
            "policies/.dot.policy",
            "policies/core.policy",
            "policies/pay.policy"
        ]
    );
    // Unknown revisions and revisions without the policy repository are
    // clear errors.
    let err = git.load("no-such-branch").unwrap_err().to_string();
    assert!(
        err.contains("revision `no-such-branch` is not in the repository"),
        "{err}"
    );
    let tree = format!("{rev}^{{tree}}");
    let err = git.load(&tree).unwrap_err().to_string();
    assert!(err.contains("names no commit"), "{err}");
    // A policy file that is not text at that revision.
    std::fs::write(policy.join("policies/bin.policy"), [0xff, 0xfe, 0x00]).unwrap();
    let bad = commit_all(&repo, "binary");
    let err = git.load(&bad).unwrap_err().to_string();
    assert!(err.contains("`policies/bin.policy` at revision"), "{err}");
    assert!(err.contains("is not valid UTF-8 text"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let other = git2::Repository::init(empty.path()).unwrap();
    write_repo(empty.path(), &[("README.md", "x")]);
    let rev = commit_all(&other, "no policies");
    let err = GitRepo::open(empty.path())
        .unwrap()
        .load(&rev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no `sluice.toml`"), "{err}");
    let not_git = tempfile::tempdir().unwrap();
    assert!(GitRepo::open(not_git.path()).is_err());
}

#[test]
fn base_reports_version_not_bumped_and_regressed() {
    let (dir, repo, _) = git_repo(&base_files());
    let policy = dir.path().join("policy");
    // Unchanged version with new content; a version that goes down.
    let pay = PAY.replace("max 100", "max 50");
    let core = CORE.replace("1.2.0", "1.1.9");
    write_repo(
        &policy,
        &[
            ("policies/pay.policy", &pay),
            ("policies/core.policy", &core),
        ],
    );
    let o = sluice(&policy, &["check", "--base", "HEAD", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = json_out(&o);
    assert_eq!(
        codes(&doc),
        [
            (
                "version::regressed".to_string(),
                "policy `core` goes from version 1.2.0 down to 1.1.9".to_string()
            ),
            (
                "version::not_bumped".to_string(),
                "policy `pay` changed (limit `per_agent` changed) but its version is still 1.0.0"
                    .to_string()
            ),
        ]
    );
    let f = &doc["findings"][1];
    assert_eq!(f["locations"][0]["line"], 1);
    assert_eq!(f["locations"][0]["column"], 20);
    assert_eq!(f["locations"][1]["rule"], "per_agent");
    assert!(f["help"].as_str().unwrap().contains("`1.0.1` for a fix"));
    assert!(
        doc["findings"][0]["help"]
            .as_str()
            .unwrap()
            .contains("above 1.2.0")
    );
    // Bumping both clears the check.
    write_repo(
        &policy,
        &[
            ("policies/pay.policy", &pay.replace("1.0.0", "1.1.0")),
            ("policies/core.policy", CORE),
        ],
    );
    let o = sluice(&policy, &["check", "--base", "HEAD"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    drop(repo);
}

#[test]
fn base_ignores_layout_comments_and_moves() {
    let (dir, repo, _) = git_repo(&base_files());
    let policy = dir.path().join("policy");
    std::fs::remove_file(policy.join("policies/pay.policy")).unwrap();
    let messy = format!(
        "// payments\n{}",
        PAY.replace("  rule big {", "\n\n  // big ones\n  rule   big {")
            .replace("max 100 per 1h", "max 100   per 60m")
            // The default tier, written out.
            .replace("version 1.0.0 {", "version 1.0.0 {\n  tier operational")
    );
    write_repo(&policy, &[("moved/elsewhere/pay.policy", &messy)]);
    write_repo(
        &policy,
        &[(
            "policies/core.policy",
            &CORE.replace("tier security", "tier security // why"),
        )],
    );
    commit_all(&repo, "second");
    let o = sluice(&policy, &["check", "--base", "HEAD~1", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(codes(&json_out(&o)), []);
    // A changed effect is a change.
    write_repo(
        &policy,
        &[(
            "moved/elsewhere/pay.policy",
            &messy.replace("\"blocked\"", "\"blocked!\""),
        )],
    );
    let o = sluice(&policy, &["check", "--base", "HEAD~1", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        codes(&json_out(&o))[0].1,
        "policy `pay` changed (rule `sanctioned` changed) but its version is still 1.0.0"
    );
}

#[test]
fn base_reports_every_error_at_head_and_only_new_warnings() {
    // An error the base already had is still reported (errors always are),
    // in its new place.
    let mut files = base_files();
    let broken = "policy broken version 1.0.0 {\n  rule r { when nope == 1 allow }\n}\n";
    files.push(("policies/broken.policy", broken));
    let (dir, _repo, _) = git_repo(&files);
    let policy = dir.path().join("policy");
    write_repo(
        &policy,
        &[("policies/broken.policy", &format!("\n\n{broken}"))],
    );
    let o = sluice(&policy, &["check", "--base", "HEAD", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let doc = json_out(&o);
    assert_eq!(codes(&doc).len(), 1);
    assert_eq!(doc["findings"][0]["code"], "type::unknown_field");
    assert_eq!(doc["findings"][0]["locations"][0]["line"], 4);
    assert!(stderr(&o).contains("compared with base"), "{}", stderr(&o));
}

/// The conflict analysis of a change looks where the change can matter, and
/// every error of the head is still reported: a conflict error the base
/// already had is shown (the set does not compile), an old warning is not,
/// a new conflict is.
#[test]
fn base_reports_old_conflict_errors_and_the_conflicts_a_change_adds() {
    let legacy = "policy legacy version 1.0.0 {\n  rule kp_ok {\n    when tool == \"pay\" and args.country == \"KP\"\n    allow\n  }\n}\n";
    let mut files = base_files();
    files.push(("policies/legacy.policy", legacy));
    let (dir, repo, _) = git_repo(&files);
    let policy = dir.path().join("policy");
    let o = sluice(&policy, &["check", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let old = codes(&json_out(&o));
    assert_eq!(old[0].0, "conflict::shadowed");

    // An unrelated change: the old conflict error is still reported.
    let core = CORE
        .replace("1.2.0", "1.3.0")
        .replace("agent == \"root\"", "agent in [\"root\", \"admin\"]");
    write_repo(&policy, &[("policies/core.policy", &core)]);
    let o = sluice(&policy, &["check", "--base", "HEAD", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // What the change does to decisions aside (the root rule changed).
    let conflicts: Vec<(String, String)> = codes(&json_out(&o))
        .into_iter()
        .filter(|(c, _)| !c.starts_with("change::"))
        .collect();
    assert_eq!(conflicts, old);
    assert!(
        stderr(&o).contains("conflict analysis of the change: 1 rule(s) and limit(s) changed"),
        "{}",
        stderr(&o)
    );

    // A change that adds a conflict: that one is reported.
    let core = core.replace(
        "  rule no_root",
        "  rule root_pays {\n    when agent == \"admin\" and tool == \"pay\"\n    allow\n  }\n  rule no_root",
    );
    write_repo(&policy, &[("policies/core.policy", &core)]);
    let o = sluice(&policy, &["check", "--base", "HEAD", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = json_out(&o);
    let new = (
        "conflict::shadowed".to_string(),
        "allow `core.root_pays` never takes effect: every request it matches is overridden by `core.no_root`".to_string(),
    );
    let got: Vec<(String, String)> = codes(&doc)
        .into_iter()
        .filter(|(c, _)| !c.starts_with("change::"))
        .collect();
    assert_eq!(got.len(), old.len() + 1, "{got:#?}");
    assert!(got.contains(&new), "{got:#?}");
    assert!(old.iter().all(|f| got.contains(f)), "{got:#?}");
    drop(repo);
}

#[test]
fn base_from_a_bare_clone_and_a_merge_commit() {
    let (dir, repo, first) = git_repo(&base_files());
    let policy = dir.path().join("policy");
    // A side branch and a merge commit on the main line.
    let head_commit = repo
        .find_commit(git2::Oid::from_str(&first).unwrap())
        .unwrap();
    repo.branch("side", &head_commit, false).unwrap();
    write_repo(
        &policy,
        &[("policies/core.policy", &CORE.replace("1.2.0", "1.3.0"))],
    );
    let second = commit_all(&repo, "main: bump core");
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let tree = repo
        .find_commit(git2::Oid::from_str(&second).unwrap())
        .unwrap()
        .tree()
        .unwrap();
    let side_tip = {
        let blob = repo.blob(b"side notes\n").unwrap();
        let mut b = repo
            .treebuilder(Some(&head_commit.tree().unwrap()))
            .unwrap();
        b.insert("SIDE.md", blob, 0o100_644).unwrap();
        let t = repo.find_tree(b.write().unwrap()).unwrap();
        repo.commit(
            Some("refs/heads/side"),
            &sig,
            &sig,
            "side",
            &t,
            &[&head_commit],
        )
        .unwrap()
    };
    let merge = {
        let ours = repo
            .find_commit(git2::Oid::from_str(&second).unwrap())
            .unwrap();
        let theirs = repo.find_commit(side_tip).unwrap();
        repo.commit(
            Some("HEAD"),
            &sig,
            &sig,
            "merge side",
            &tree,
            &[&ours, &theirs],
        )
        .unwrap()
        .to_string()
    };
    // The change under review, on top of the merge: a regressed core.
    write_repo(
        &policy,
        &[("policies/core.policy", &CORE.replace("1.2.0", "1.0.0"))],
    );
    let o = sluice(&policy, &["check", "--base", &merge, "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        codes(&json_out(&o))[0].1,
        "policy `core` goes from version 1.3.0 down to 1.0.0"
    );
    let head = commit_all(&repo, "regress core");

    // A bare clone of a repository whose policy repository is the top level.
    let top = tempfile::tempdir().unwrap();
    let top_repo = git2::Repository::init(top.path()).unwrap();
    write_repo(top.path(), &base_files());
    let a = commit_all(&top_repo, "a");
    write_repo(
        top.path(),
        &[("policies/pay.policy", &PAY.replace("max 100", "max 7"))],
    );
    let b = commit_all(&top_repo, "b");
    let bare_dir = tempfile::tempdir().unwrap();
    let bare_path = bare_dir.path().join("clone.git");
    git2::build::RepoBuilder::new()
        .bare(true)
        .clone(top.path().to_str().unwrap(), &bare_path)
        .unwrap();
    let o = sluice(
        &bare_path,
        &["check", "--base", &a, "--head", &b, "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(codes(&json_out(&o))[0].0, "version::not_bumped");
    let o = sluice(&bare_path, &["check", "--base", &a, "--head", &a]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A bare repository has no working tree to check without `--head`.
    let o = sluice(&bare_path, &["check", "--base", &a]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no sluice.toml"), "{}", stderr(&o));
    drop(head);
}

#[test]
fn base_errors_are_clear() {
    let (dir, _repo, _) = git_repo(&base_files());
    let policy = dir.path().join("policy");
    let o = sluice(&policy, &["check", "--base", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("revision `nope` is not in the repository"),
        "{}",
        stderr(&o)
    );
    let outside = tempfile::tempdir().unwrap();
    write_repo(outside.path(), &base_files());
    let o = sluice(outside.path(), &["check", "--base", "HEAD"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not inside a git repository"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn base_without_a_policy_repository_makes_everything_new() {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    write_repo(dir.path(), &[("README.md", "x")]);
    commit_all(&repo, "before policies");
    let policy = dir.path().join("policy");
    write_repo(&policy, &base_files());
    let o = sluice(&policy, &["check", "--base", "HEAD"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("every finding is new"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------
// Live state

fn counter(limit: &str, key: &str, secs: u64, count: u64) -> Value {
    json!({"limit": limit, "key": key, "window": {"start": NOW - NOW % secs, "secs": secs}, "count": count})
}

fn approval(id: &str, rule: &str, amount: i64) -> Value {
    json!({"id": id, "policy": "pay", "rule": rule, "group": "finance",
           "via": "approvals.request", "created": NOW - 50,
           "request": {"tool": "pay", "agent": "bot", "session": "s", "args": {"amount": amount}}})
}

/// Writes the repository with `pay` replaced by `pay_text` and the state
/// file, then runs `check --format json --state` with `extra` flags.
fn state_check(pay_text: &str, state: Value, extra: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &base_files());
    write_repo(dir.path(), &[("policies/pay.policy", pay_text)]);
    let path = dir.path().join("state.json");
    std::fs::write(&path, state.to_string()).unwrap();
    let mut args = vec![
        "check",
        "--format",
        "json",
        "--state",
        path.to_str().unwrap(),
    ];
    args.extend(extra);
    let o = sluice(dir.path(), &args);
    let doc = json_out(&o);
    (o, doc)
}

#[test]
fn state_limit_decrease_counts_keys_and_excess() {
    let lowered = PAY.replace("max 100", "max 30");
    let state = json!({"time": NOW, "counters": [
        counter("pay.per_agent", "[\"a\"]", 3600, 97),
        counter("pay.per_agent", "[\"b\"]", 3600, 45),
        counter("pay.per_agent", "[\"c\"]", 3600, 12),
        // A window that has ended is not live.
        {"limit": "pay.per_agent", "key": "[\"old\"]", "window": {"start": HOUR - 3600, "secs": 3600}, "count": 99},
    ]});
    let (o, doc) = state_check(&lowered, state.clone(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        codes(&doc),
        [(
            "state::limit_decrease".to_string(),
            "limit `pay.per_agent` has `max 30`, below live counters: 2 keys are above it, by up to 67 (key `[\"a\"]` at 97), 82 over in all".to_string()
        )]
    );
    let f = &doc["findings"][0];
    assert_eq!(f["severity"], "error");
    assert_eq!(f["locations"][0]["line"], 12);
    assert_eq!(f["locations"][0]["column"], 9);
    assert!(
        f["help"]
            .as_str()
            .unwrap()
            .contains("on_decrease next_window")
    );
    // Declaring the migration clears it.
    let declared = lowered.replace(
        "exceed deny RATE_LIMITED \"too many\"",
        "exceed deny RATE_LIMITED \"too many\"\n    on_decrease freeze",
    );
    let (o, doc) = state_check(&declared, state.clone(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(codes(&doc), []);
    // A max still above every live count is fine.
    let (o, _) = state_check(&PAY.replace("max 100", "max 97"), state, &[]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn state_window_change_is_a_warning() {
    let longer = PAY.replace("per 1h", "per 1d");
    let state = json!({"time": NOW, "counters": [counter("pay.per_agent", "[\"a\"]", 3600, 5)]});
    let (o, doc) = state_check(&longer, state.clone(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        codes(&doc),
        [(
            "state::window_change".to_string(),
            "limit `pay.per_agent` changes its window from 1h to 1d: its live counters are reset (1 key, 5 requests counted)".to_string()
        )]
    );
    assert_eq!(doc["findings"][0]["severity"], "warning");
    assert_eq!(doc["findings"][0]["locations"][0]["column"], 17);
    let (o, _) = state_check(&longer, state, &["--deny-warnings"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn state_limit_removed() {
    let without = PAY.replace(
        "  limit per_agent {\n    when tool == \"pay\"\n    max 100 per 1h by agent\n    exceed deny RATE_LIMITED \"too many\"\n  }\n",
        "",
    );
    assert_ne!(without, PAY);
    let state = json!({"time": NOW, "counters": [
        counter("pay.per_agent", "[\"a\"]", 3600, 5),
        counter("pay.per_agent", "[\"b\"]", 3600, 2),
        // A policy that is gone altogether points at sluice.toml.
        counter("gone.lim", "[\"a\"]", 60, 1),
        // Zero counts are not live state.
        counter("gone.zero", "[\"a\"]", 60, 0),
    ]});
    let (o, doc) = state_check(&without, state, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let got = codes(&doc);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0].1,
        "limit `pay.per_agent` is removed while it has live counters: 2 keys, 7 requests counted in the current window"
    );
    assert_eq!(
        doc["findings"][0]["locations"][0]["file"],
        "policies/pay.policy"
    );
    assert_eq!(got[1].0, "state::limit_removed");
    assert_eq!(doc["findings"][1]["locations"][0]["file"], "sluice.toml");
}

#[test]
fn state_pending_approvals_are_evaluated_against_head() {
    // The rule is narrowed from > 1000 to > 5000: the request for 2000 no
    // longer needs approval from it, the one for 9000 still does.
    let narrowed = PAY.replace("args.amount > 1000", "args.amount > 5000");
    let state = json!({"time": NOW, "approvals": [
        approval("ap-1", "big", 2000),
        approval("ap-2", "big", 9000),
        approval("ap-3", "big", 3000),
    ]});
    let (o, doc) = state_check(&narrowed, state.clone(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        codes(&doc),
        [(
            "state::pending_approvals".to_string(),
            "`pay.big` no longer requires approval for 2 of the 3 waiting requests in its queue (group `finance`): at head they get 2 allow".to_string()
        )]
    );
    let f = &doc["findings"][0];
    assert_eq!(f["witness"]["args"]["amount"], 2000);
    assert_eq!(f["witness_decisions"]["final"], "allow");
    assert_eq!(f["locations"][0]["rule"], "big");
    assert!(f["help"].as_str().unwrap().contains("(ap-1, ap-3)"));
    // Unchanged rule: nothing to say.
    let (o, doc) = state_check(PAY, state.clone(), &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(codes(&doc), []);
    // A rule that becomes a deny resolves them too, with the decision named.
    let denied = PAY.replace(
        "require_approval \"finance\" via \"approvals.request\" BIG \"needs approval\"",
        "deny BIG \"no\"",
    );
    let (_, doc) = state_check(&denied, state.clone(), &[]);
    assert!(
        codes(&doc)[0].1.ends_with("at head they get 3 deny"),
        "{doc}"
    );
    // A removed rule resolves every waiting request.
    let removed = PAY.replace(
        "  rule big {\n    when tool == \"pay\" and args.amount > 1000\n    require_approval \"finance\" via \"approvals.request\" BIG \"needs approval\"\n  }\n",
        "",
    );
    assert_ne!(removed, PAY);
    let (o, doc) = state_check(&removed, state, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        codes(&doc)[0].1,
        "`pay.big` is removed while 3 requests wait in its approval queue (group `finance`): the change would resolve them"
    );
    assert_eq!(doc["findings"][0]["locations"][0]["line"], 1);
}

#[test]
fn state_with_base_reports_only_what_the_change_does() {
    // At base the limit already had max 30: live counts above it are not
    // this change's doing. The approval rule is unchanged since base too.
    let at_base = PAY.replace("max 100", "max 30").replace("> 1000", "> 5000");
    let mut files = base_files();
    files.retain(|(n, _)| *n != "policies/pay.policy");
    files.push(("policies/pay.policy", &at_base));
    let (dir, _repo, _) = git_repo(&files);
    let policy = dir.path().join("policy");
    let state = json!({"time": NOW,
        "counters": [counter("pay.per_agent", "[\"a\"]", 3600, 97), counter("pay.stale", "[\"a\"]", 3600, 3)],
        "approvals": [approval("ap-1", "big", 2000)]});
    let path = dir.path().join("state.json");
    std::fs::write(&path, state.to_string()).unwrap();
    let o = sluice(
        &policy,
        &[
            "check",
            "--base",
            "HEAD",
            "--state",
            path.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(codes(&json_out(&o)), []);
    // Lowering it further in the change is reported.
    write_repo(
        &policy,
        &[(
            "policies/pay.policy",
            &at_base
                .replace("max 30", "max 20")
                .replace("1.0.0", "1.0.1"),
        )],
    );
    let o = sluice(
        &policy,
        &[
            "check",
            "--base",
            "HEAD",
            "--state",
            path.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        codes(&json_out(&o))[0]
            .1
            .starts_with("limit `pay.per_agent` lowers `max` from 30 to 20")
    );
}

#[test]
fn state_file_garbage_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &base_files());
    let path = dir.path().join("state.json");
    for garbage in ["not json", "{\"counters\": 3}", "{\"surprise\": true}"] {
        std::fs::write(&path, garbage).unwrap();
        let o = sluice(dir.path(), &["check", "--state", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{garbage}");
        assert!(
            stderr(&o).contains("is not a live-state document"),
            "{}",
            stderr(&o)
        );
    }
    let o = sluice(dir.path(), &["check", "--state", "/no/such/file.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("reading `/no/such/file.json`"),
        "{}",
        stderr(&o)
    );
    let o = sluice(
        dir.path(),
        &["check", "--state", "x", "--engine", "http://127.0.0.1:1"],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn deny_warnings_fails_every_format() {
    let longer = PAY.replace("per 1h", "per 1d");
    let state = json!({"time": NOW, "counters": [counter("pay.per_agent", "[\"a\"]", 3600, 5)]});
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &base_files());
    write_repo(dir.path(), &[("policies/pay.policy", &longer)]);
    let path = dir.path().join("state.json");
    std::fs::write(&path, state.to_string()).unwrap();
    for format in ["human", "json", "sarif", "github"] {
        let args = [
            "check",
            "--format",
            format,
            "--state",
            path.to_str().unwrap(),
        ];
        let o = sluice(dir.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{format}: {}", stderr(&o));
        let mut strict = args.to_vec();
        strict.push("--deny-warnings");
        let o = sluice(dir.path(), &strict);
        assert_eq!(o.status.code(), Some(1), "{format}");
        if format == "sarif" {
            assert_valid_sarif(&json_out(&o));
        }
        if format == "github" {
            assert!(
                stdout(&o).starts_with("::warning file=policies/pay.policy,line=12,"),
                "{}",
                stdout(&o)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// --engine

/// Serves `GET /v1/state` on 127.0.0.1:0 from a thread of its own: `body`
/// to requests bearing `token`, 401 to others. Returns the base URL.
fn engine(token: &'static str, body: String) -> String {
    counting_engine(token, body).0
}

/// The same, with the number of requests served so far.
fn counting_engine(
    token: &'static str,
    body: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode};
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/state",
                axum::routing::get(move |headers: HeaderMap| {
                    let body = body.clone();
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if auth == format!("Bearer {token}") {
                            (StatusCode::OK, body)
                        } else {
                            (StatusCode::UNAUTHORIZED, "unauthorized".to_string())
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), served)
}

#[test]
fn one_check_reads_the_engines_state_once() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &base_files());
    let state = json!({"time": NOW, "counters": []});
    let (url, served) = counting_engine("t", state.to_string());
    for format in ["human", "json", "sarif", "github"] {
        let before = served.load(std::sync::atomic::Ordering::SeqCst);
        let o = sluice(
            dir.path(),
            &[
                "check",
                "--format",
                format,
                "--engine",
                &url,
                "--admin-token",
                "t",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{format}: {}", stderr(&o));
        let after = served.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(after - before, 1, "{format}");
    }
}

#[test]
fn engine_state_is_fetched_with_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &base_files());
    write_repo(
        dir.path(),
        &[("policies/pay.policy", &PAY.replace("max 100", "max 10"))],
    );
    let state = json!({"time": NOW, "counters": [counter("pay.per_agent", "[\"a\"]", 3600, 40)]});
    let url = engine("s3cret", state.to_string());
    // Token from the flag, and from the environment.
    let o = sluice(
        dir.path(),
        &[
            "check",
            "--format",
            "json",
            "--engine",
            &url,
            "--admin-token",
            "s3cret",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(codes(&json_out(&o))[0].0, "state::limit_decrease");
    let o = sluice_env(
        dir.path(),
        &["check", "--format", "json", "--engine", &format!("{url}/")],
        &[("SLUICE_ADMIN_TOKEN", "s3cret")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Wrong or missing token: 401, a usage error that says what to do.
    let o = sluice(
        dir.path(),
        &["check", "--engine", &url, "--admin-token", "wrong"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("refused the request (401 Unauthorized): the admin token is wrong"),
        "{}",
        stderr(&o)
    );
    let o = sluice(dir.path(), &["check", "--engine", &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("pass its admin token with `--admin-token` or SLUICE_ADMIN_TOKEN"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn engine_garbage_and_unreachable_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &base_files());
    let url = engine("t", "<html>not state</html>".to_string());
    let o = sluice(
        dir.path(),
        &["check", "--engine", &url, "--admin-token", "t"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did not answer with a live-state document"),
        "{}",
        stderr(&o)
    );
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let o = sluice(
        dir.path(),
        &["check", "--engine", &format!("http://127.0.0.1:{port}")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot reach the engine at"),
        "{}",
        stderr(&o)
    );
    let o = sluice(dir.path(), &["check", "--engine", "not a url"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a URL"), "{}", stderr(&o));
}
