//! The `sluice` binary end to end: exit codes, output formats, determinism.
//! Each test writes its own policy repository into a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

use sluice::pipeline::check_sources;
use sluice::source::SourceFile;

/// A project with the schema the CLI and report tests share.
pub(crate) const TOML: &str = r#"
[project]
name = "t"
default = "allow"

[schema]
tool = "string"
agent = "string"
session = "string"
"args.amount?" = "int"
"args.country?" = "string"
"#;

const PAY: &str = r#"policy pay version 1.0.0 {
  requires core ^1.0
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
    max 2 per 1h by agent
    exceed deny RATE_LIMITED "too many"
  }
}
"#;

pub(crate) const CORE: &str = r#"policy core version 1.2.0 {
  tier security
  rule no_root { when agent == "root" deny ROOT "no root agent" }
}
"#;

pub fn write_repo(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--repo")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn good_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_repo(
        dir.path(),
        &[
            ("sluice.toml", TOML),
            ("policies/pay.policy", PAY),
            ("policies/core.policy", CORE),
        ],
    );
    dir
}

#[test]
fn check_clean_exits_zero() {
    let dir = good_repo();
    let o = sluice(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("check ok: 0 error(s), 0 warning(s) in 2 policies, 4 rules"));
}

#[test]
fn check_reports_every_file_and_exits_one() {
    let dir = good_repo();
    write_repo(
        dir.path(),
        &[
            (
                "policies/a.policy",
                "policy a version 1.0.0 { rule r { when tool = \"x\" allow } }",
            ),
            (
                "policies/b.policy",
                "policy b version 1.0.0 { rule r { when args.amont > 1 allow } }",
            ),
        ],
    );
    let o = sluice(dir.path(), &["check", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    let summary: Vec<(String, String, u64, u64)> = findings
        .iter()
        .map(|f| {
            let loc = &f["locations"][0];
            (
                f["code"].as_str().unwrap().to_string(),
                loc["file"].as_str().unwrap().to_string(),
                loc["line"].as_u64().unwrap(),
                loc["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "parse::syntax".to_string(),
                "policies/a.policy".to_string(),
                1,
                45
            ),
            (
                "type::unknown_field".to_string(),
                "policies/b.policy".to_string(),
                1,
                40
            ),
        ]
    );
    assert_eq!(findings[1]["help"], "did you mean `args.amount`?");
    assert_eq!(findings[1]["severity"], "error");
    assert_eq!(findings[1]["locations"][0]["policy"], "b");
    assert_eq!(findings[1]["locations"][0]["rule"], "r");
    assert_eq!(doc["summary"]["errors"], 2);
    assert_eq!(doc["summary"]["policies"], 4);
    // For humans, every finding's help ends with its catalogue entry, in
    // plain text (no terminal here, so no hyperlinks).
    let o = sluice(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for (code, anchor) in [
        ("parse::syntax", "parse-syntax"),
        ("type::unknown_field", "type-unknown_field"),
    ] {
        let url = format!("{}/codes.md#{anchor}", sluice::diagnostic::DOCS_URL);
        assert!(err.contains(code), "{err}");
        assert!(err.contains(&format!("see {url}")), "no {url} in:\n{err}");
    }
    assert!(err.contains("did you mean `args.amount`?"), "{err}");
}

#[test]
fn check_outside_a_repository_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = sluice(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no sluice.toml"), "{}", stderr(&o));
}

#[test]
fn broken_toml_is_located_and_policies_still_parsed() {
    let dir = good_repo();
    write_repo(
        dir.path(),
        &[
            (
                "sluice.toml",
                "[project]\nname = \"t\"\ndefault = \"maybe\"\n[schema]\ntool = \"string\"\n",
            ),
            (
                "policies/c.policy",
                "policy c version 1.0.0 { rule r { when tool == allow } }",
            ),
        ],
    );
    let o = sluice(dir.path(), &["check", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let codes: Vec<(&str, &str)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap(),
                f["locations"][0]["file"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("parse::syntax", "policies/c.policy"),
            ("schema::invalid", "sluice.toml")
        ]
    );
}

#[test]
fn artifact_is_byte_identical_whatever_the_file_order() {
    // In memory: the same sources in two orders.
    let toml = SourceFile::new("sluice.toml", TOML);
    let a = SourceFile::new("policies/pay.policy", PAY);
    let b = SourceFile::new("policies/core.policy", CORE);
    let one = check_sources(&toml, &[a.clone(), b.clone()])
        .artifact(None)
        .unwrap()
        .unwrap();
    let two = check_sources(&toml, &[b, a])
        .artifact(None)
        .unwrap()
        .unwrap();
    assert_eq!(one.to_bytes().unwrap(), two.to_bytes().unwrap());

    // On disk: files created in opposite orders, in different folders.
    let d1 = tempfile::tempdir().unwrap();
    write_repo(
        d1.path(),
        &[
            ("sluice.toml", TOML),
            ("p/pay.policy", PAY),
            ("p/core.policy", CORE),
        ],
    );
    let d2 = tempfile::tempdir().unwrap();
    write_repo(
        d2.path(),
        &[
            ("x/core.policy", CORE),
            ("y/z/pay.policy", PAY),
            ("sluice.toml", TOML),
        ],
    );
    let o1 = sluice(d1.path(), &["compile"]);
    let o2 = sluice(d2.path(), &["compile"]);
    assert_eq!(o1.status.code(), Some(0), "{}", stderr(&o1));
    assert!(!o1.stdout.is_empty());
    assert_eq!(o1.stdout, o2.stdout);

    // Reformatting changes nothing either.
    let d3 = tempfile::tempdir().unwrap();
    let spaced = PAY.replace("  ", "        ").replace('\n', "\n\n// note\n");
    write_repo(
        d3.path(),
        &[
            ("sluice.toml", TOML),
            ("pay.policy", &spaced),
            ("core.policy", CORE),
        ],
    );
    assert_eq!(sluice(d3.path(), &["compile"]).stdout, o1.stdout);
}

#[test]
fn compile_writes_a_verifiable_artifact() {
    let dir = good_repo();
    let out = dir.path().join("artifact.json");
    let o = sluice(
        dir.path(),
        &["compile", "-o", out.to_str().unwrap(), "--commit", "abc123"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let artifact = sluice::compile::artifact::Artifact::from_bytes(&bytes).unwrap();
    assert_eq!(artifact.source_commit.as_deref(), Some("abc123"));
    assert!(stderr(&o).contains(&artifact.hash));
}

#[test]
fn compile_refuses_a_set_with_errors() {
    let dir = good_repo();
    write_repo(
        dir.path(),
        &[("policies/core.policy", "policy core version 0.9.0 { }")],
    );
    let o = sluice(dir.path(), &["compile"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("version::unsatisfied"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn eval_json_lines_counts_limits_and_survives_a_bad_line() {
    let dir = good_repo();
    let req = |amount: &str| {
        format!(r#"{{"tool":"pay","agent":"a","session":"s","args":{{"amount":{amount}}}}}"#)
    };
    let lines = [
        req("5"),
        req("\"5\""),
        req("5000"),
        req("5"),
        "{not json".to_string(),
    ]
    .join("\n");
    std::fs::write(dir.path().join("reqs.jsonl"), lines).unwrap();
    let path = dir.path().join("reqs.jsonl");
    let o = sluice(
        dir.path(),
        &[
            "eval",
            "--format",
            "json",
            "--now",
            "3600",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("reqs.jsonl:2: bad request: field `args.amount` must be an integer"),
        "{err}"
    );
    assert!(
        err.contains("reqs.jsonl:5: bad request: not valid JSON"),
        "{err}"
    );
    let decisions: Vec<(String, Option<String>)> = stdout(&o)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let codes: Vec<&str> = v["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["code"].as_str())
                .collect();
            (
                v["decision"].as_str().unwrap().to_string(),
                codes.first().map(|c| c.to_string()),
            )
        })
        .collect();
    // Limit of 2 per hour: the third valid request is refused and not counted.
    assert_eq!(
        decisions,
        [
            ("allow".to_string(), None),
            ("require_approval".to_string(), Some("BIG".to_string())),
            ("deny".to_string(), Some("RATE_LIMITED".to_string())),
        ]
    );
}

#[test]
fn eval_single_pretty_request() {
    let dir = good_repo();
    let req = "{\n  \"tool\": \"pay\",\n  \"agent\": \"root\",\n  \"session\": \"s\",\n  \"args\": {\"country\": \"KP\"}\n}\n";
    std::fs::write(dir.path().join("r.json"), req).unwrap();
    let path = dir.path().join("r.json");
    let o = sluice(dir.path(), &["eval", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("deny\n"), "{out}");
    assert!(
        out.contains("core.no_root") && out.contains("pay.sanctioned"),
        "{out}"
    );
}

#[test]
fn test_command_classifies_misses() {
    let dir = good_repo();
    let case = |amount: i64, country: &str, expect: &str, code: &str| {
        format!(
            r#"{{"request":{{"tool":"pay","agent":"a{amount}","session":"s","args":{{"amount":{amount},"country":"{country}"}}}},"expect":"{expect}","code":{code}}}"#
        )
    };
    let good = [
        case(10, "DE", "allow", "null"),
        case(10, "KP", "deny", "\"SANCTIONED\""),
        case(2000, "DE", "require_approval", "\"BIG\""),
    ]
    .join("\n");
    write_repo(dir.path(), &[("traces/good.jsonl", &good)]);
    let o = sluice(dir.path(), &["test"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("test ok: 3 cases, 3 passed"),
        "{}",
        stdout(&o)
    );

    let bad = [
        case(10, "DE", "deny", "null"),      // catastrophic
        case(10, "KP", "allow", "null"),     // false positive
        case(2000, "KP", "deny", "\"BIG\""), // right decision, wrong code
        "{\"request\": {}, \"expect\": \"perhaps\"}".to_string(),
    ]
    .join("\n");
    write_repo(dir.path(), &[("traces/bad.jsonl", &bad)]);
    let o = sluice(dir.path(), &["test", "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an invalid trace line is an input error"
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &doc["report"];
    assert_eq!(
        (r["cases"].as_u64(), r["passed"].as_u64()),
        (Some(6), Some(3))
    );
    assert_eq!(r["catastrophic"], 1);
    assert_eq!(r["false_positives"], 1);
    assert_eq!(r["mismatches"], 1);
    assert_eq!(doc["invalid"][0]["code"], "trace::invalid");
    assert_eq!(doc["invalid"][0]["locations"][0]["line"], 4);

    // As the GitHub action runs it: each failing case an annotation on its
    // trace line, the invalid line one too.
    let o = sluice(dir.path(), &["test", "--format", "github"]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    let annotations: Vec<&str> = out.lines().filter(|l| l.starts_with("::")).collect();
    assert!(
        annotations
            .iter()
            .any(|l| l
                .starts_with("::error file=traces/bad.jsonl,line=1,title=trace catastrophic::")),
        "{out}"
    );
    for line in [2, 3] {
        assert!(
            annotations.iter().any(|l| l.starts_with(&format!(
                "::error file=traces/bad.jsonl,line={line},title=trace failed::"
            ))),
            "{out}"
        );
    }
    assert!(
        annotations
            .iter()
            .any(|l| l.starts_with("::error file=traces/bad.jsonl,line=4,")
                && l.contains("title=trace%3A%3Ainvalid")),
        "{out}"
    );
    assert!(out.contains("test failed: 6 cases, 3 passed"), "{out}");
}

#[test]
fn fmt_check_then_write() {
    let dir = good_repo();
    assert_eq!(sluice(dir.path(), &["fmt"]).status.code(), Some(0));
    let messy = "policy   core version 1.2.0 {\n tier security\n  rule no_root { when agent == \"root\"\n deny ROOT \"no root agent\" } // trailing\n}";
    write_repo(dir.path(), &[("policies/core.policy", messy)]);
    let o = sluice(dir.path(), &["fmt", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("--- policies/core.policy\n+++ policies/core.policy (formatted)\n"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("policies/core.policy")).unwrap(),
        messy
    );

    let o = sluice(dir.path(), &["fmt"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let formatted = std::fs::read_to_string(dir.path().join("policies/core.policy")).unwrap();
    assert!(formatted.contains("// trailing"), "{formatted}");
    assert_eq!(
        sluice(dir.path(), &["fmt", "--check"]).status.code(),
        Some(0)
    );

    write_repo(
        dir.path(),
        &[("policies/bad.policy", "policy bad version 1 {}")],
    );
    let o = sluice(dir.path(), &["fmt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("parse::syntax"), "{}", stderr(&o));
}

/// A plan whose canary gate cannot pass on its `min_samples` (SPEC §1's
/// example numbers: `max_error_rate = 0.001` on 500 requests).
const UNDERPOWERED: &str = r#"
[rollout]
hash_key = "session"

[[rollout.stage]]
name = "shadow"
min_samples = 1000
max_divergence = 0.02

[[rollout.stage]]
name = "canary"
percent = 5
min_samples = 500
max_error_rate = 0.001
max_deny_rate_delta = 0.02

[[rollout.stage]]
name = "zero"
percent = 10
min_samples = 100000
max_error_rate = 0

[[rollout.stage]]
name = "full"
percent = 100
"#;

#[test]
fn check_warns_of_a_plan_whose_gate_cannot_pass_on_its_min_samples() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{TOML}{UNDERPOWERED}");
    write_repo(
        dir.path(),
        &[("sluice.toml", &toml), ("policies/core.policy", CORE)],
    );
    let o = sluice(dir.path(), &["check", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "a warning: {}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let found: Vec<&serde_json::Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "plan::underpowered")
        .collect();
    // The canary's error-rate gate and the zero limit; the shadow's
    // divergence (189 needed of 1000) and the canary's deny delta (189 of
    // 500) can pass.
    assert_eq!(found.len(), 2, "{found:#?}");
    let canary = found[0];
    assert_eq!(canary["severity"], "warning");
    let message = canary["message"].as_str().unwrap();
    assert!(message.contains("stage `canary`"), "{message}");
    assert!(message.contains("3838 requests"), "{message}");
    assert_eq!(canary["locations"][0]["file"], "sluice.toml");
    let zero = found[1]["message"].as_str().unwrap();
    assert!(zero.contains("can never pass"), "{zero}");
    // A warning: `--deny-warnings` fails the check.
    let o = sluice(dir.path(), &["check", "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("plan::underpowered"), "{all}");
}

#[test]
fn the_starter_plan_can_pass_its_own_gates() {
    let starter = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let o = sluice(&starter, &["check", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let underpowered: Vec<_> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "plan::underpowered")
        .collect();
    assert!(underpowered.is_empty(), "{underpowered:#?}");
}
