//! A policy author's commands, through the `sluice` binary: `init`, the
//! upward search for `sluice.toml`, completions, `explain`, `eval`'s human
//! output, and the trace features of `test` (named cases, `expect_args`,
//! `--coverage`, `--format junit`, files that are not traces).

use std::path::Path;
use std::process::{Command, Output};

use crate::cli::write_repo;

fn sluice_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(cwd)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../snapshots/authoring", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

/// A repository started by `sluice init` in a new temporary folder.
fn init_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = sluice_in(dir.path(), &["init"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    dir
}

#[test]
fn init_writes_a_repository_that_checks_and_tests_clean() {
    let dir = init_repo();
    for f in [
        "sluice.toml",
        "policies/payments.policy",
        "policies/refunds.policy",
        "policies/approvals.policy",
        "agents/billing-bot.toml",
        "agents/support-bot.toml",
        "traces/payments.jsonl",
        ".github/workflows/sluice.yml",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    // No finding at all: the inventory's checks and the observe scope's
    // (no security rule in it) find nothing to say.
    let o = sluice_in(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("0 error(s), 0 warning(s) in 3 policies"),
        "{}{}",
        out(&o),
        err(&o)
    );
    let o = sluice_in(dir.path(), &["test", "--coverage"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("7 of 7 rules and limits exercised"),
        "{}",
        out(&o)
    );
    let o = sluice_in(dir.path(), &["fmt", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
}

#[test]
fn init_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), &[("traces/payments.jsonl", "mine\n")]);
    let o = sluice_in(dir.path(), &["init"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("`traces/payments.jsonl`"), "{}", err(&o));
    assert!(!dir.path().join("sluice.toml").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("traces/payments.jsonl")).unwrap(),
        "mine\n"
    );
}

#[test]
fn init_inside_a_repository_refuses_unless_asked() {
    let dir = init_repo();
    let sub = dir.path().join("team");
    std::fs::create_dir_all(&sub).unwrap();
    let o = sluice_in(&sub, &["init"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("already inside the policy repository"),
        "{}",
        err(&o)
    );
    assert!(!sub.join("sluice.toml").exists());
    let o = sluice_in(&sub, &["init", "--repo", "."]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(sub.join("sluice.toml").is_file());
}

#[test]
fn commands_find_sluice_toml_in_a_folder_above() {
    let dir = init_repo();
    let deep = dir.path().join("policies/more/deeper");
    std::fs::create_dir_all(&deep).unwrap();
    let o = sluice_in(&deep, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("in 3 policies, 7 rules"), "{}", out(&o));
    let o = sluice_in(&deep, &["test"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // Outside any repository: the current folder, which is not one.
    let outside = tempfile::tempdir().unwrap();
    let o = sluice_in(outside.path(), &["check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("has no sluice.toml"), "{}", err(&o));
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = sluice_in(dir.path(), &["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", err(&o));
        for word in ["explain", "init", "coverage"] {
            assert!(out(&o).contains(word), "{shell} completion lacks {word}");
        }
    }
}

fn request(dir: &Path, name: &str, json: &str) -> String {
    std::fs::write(dir.join(name), json).unwrap();
    name.to_string()
}

#[test]
fn explain_says_which_atom_failed_with_the_value_it_saw() {
    let dir = init_repo();
    let r = request(
        dir.path(),
        "r.json",
        r#"{"tool": "payments.transfer", "agent": "a", "session": "s", "args": {"amount": 500, "country": "DE"}}"#,
    );
    let o = sluice_in(dir.path(), &["explain", &r, "--now", "1767225600"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    snapshot!("explain_default", out(&o));
    let r = request(
        dir.path(),
        "big.json",
        r#"{"tool": "payments.transfer", "agent": "a", "session": "s", "args": {"amount": 5000}}"#,
    );
    let o = sluice_in(dir.path(), &["explain", &r, "--now", "1767225600"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    snapshot!("explain_matched", out(&o));
    let o = sluice_in(dir.path(), &["explain", &r, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["decision"], "require_approval");
    let checks = doc["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 7);
    let check = |rule: &str| {
        checks
            .iter()
            .find(|c| c["rule"] == rule)
            .unwrap_or_else(|| panic!("no check of {rule}: {checks:#?}"))
    };
    assert_eq!(
        check("sanctioned_countries")["why_not"],
        "`args.country in [\"KP\", \"IR\", \"SY\"]` is false: `args.country` is absent"
    );
    assert_eq!(check("large_transfer")["contributes"], true);
}

#[test]
fn explain_shows_modified_values_and_hides_other_tools() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(
        dir.path(),
        &[
            (
                "sluice.toml",
                "[project]\nname = \"t\"\ndefault = \"allow\"\n[schema]\ntool = \"string\"\n\"args.body?\" = \"string\"\n\"args.url?\" = \"string\"\n",
            ),
            (
                "mail.policy",
                "policy mail version 1.0.0 {\n  rule pii {\n    when tool == \"email.send\" and args.body matches \"[0-9]{3}-[0-9]{2}-[0-9]{4}\"\n    modify args.body = redact(args.body, \"[0-9]{3}-[0-9]{2}-[0-9]{4}\") PII \"redacted\"\n  }\n  rule no_http {\n    when tool == \"web.fetch\" and not (args.url starts_with \"https://\")\n    deny PLAIN \"https only\"\n  }\n}\n",
            ),
        ],
    );
    let r = request(
        dir.path(),
        "m.json",
        r#"{"tool": "email.send", "args": {"body": "SSN 123-45-6789"}}"#,
    );
    let o = sluice_in(dir.path(), &["explain", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    snapshot!("explain_modify", out(&o));
    let o = sluice_in(dir.path(), &["explain", &r, "--all"]);
    assert!(
        out(&o).contains("✗ rule mail.no_http → deny PLAIN\n    not matched: `tool == \"web.fetch\"` is false: `tool` is \"email.send\""),
        "{}",
        out(&o)
    );
    let o = sluice_in(dir.path(), &["eval", &r]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    snapshot!("eval_modify", out(&o));
    let r = request(
        dir.path(),
        "w.json",
        r#"{"tool": "web.fetch", "args": {"url": "https://example.com"}}"#,
    );
    let o = sluice_in(dir.path(), &["eval", &r]);
    snapshot!("eval_default_closest", out(&o));
}

/// A set whose two rules conflict (`conflict::shadowed`): still evaluated
/// by `eval`, `explain` and `test`, with a warning; refused by `compile`.
#[test]
fn a_set_with_conflict_errors_can_still_be_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(
        dir.path(),
        &[
            (
                "sluice.toml",
                "[project]\nname = \"t\"\ndefault = \"allow\"\n[schema]\ntool = \"string\"\n",
            ),
            (
                "a.policy",
                "policy a version 1.0.0 {\n  tier security\n  rule block { when tool == \"x\" deny BLOCKED \"no\" }\n}\n",
            ),
            (
                "b.policy",
                "policy b version 1.0.0 {\n  rule let_x { when tool == \"x\" allow }\n}\n",
            ),
            (
                "traces/t.jsonl",
                "{\"request\": {\"tool\": \"x\"}, \"expect\": \"deny\"}\n",
            ),
        ],
    );
    let check = sluice_in(dir.path(), &["check"]);
    assert_eq!(
        check.status.code(),
        Some(1),
        "the set must have an error: {}",
        err(&check)
    );
    assert!(err(&check).contains("conflict::"), "{}", err(&check));
    let r = request(dir.path(), "x.json", r#"{"tool": "x"}"#);
    for args in [
        vec!["eval", r.as_str()],
        vec!["explain", r.as_str()],
        vec!["test"],
    ] {
        let o = sluice_in(dir.path(), &args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", err(&o));
        assert!(
            err(&o).contains("warning: the policy set has 1 conflict error(s)"),
            "{args:?}: {}",
            err(&o)
        );
        assert!(out(&o).contains("deny") || args[0] == "test", "{}", out(&o));
    }
    let o = sluice_in(dir.path(), &["compile"]);
    assert_eq!(o.status.code(), Some(1));
}

const PAY_TOML: &str = "[project]\nname = \"t\"\ndefault = \"allow\"\n[schema]\ntool = \"string\"\nagent = \"string\"\n\"args.amount?\" = \"int\"\n\"args.note?\" = \"string\"\n";

const PAY: &str = "policy pay version 1.0.0 {\n  rule big {\n    when tool == \"pay\" and args.amount > 1000\n    deny BIG \"too big\"\n  }\n  rule note {\n    when tool == \"pay\" and has(args.note)\n    modify args.note = lowercase(args.note) NOTE \"lowercased\"\n  }\n  rule never_tested {\n    when tool == \"refund\"\n    deny REFUND \"no refunds\"\n  }\n  limit per_agent {\n    when tool == \"pay\"\n    max 5 per 1h by agent\n    exceed deny RATE \"slow down\"\n  }\n}\n";

fn traces_repo(traces: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_repo(
        dir.path(),
        &[
            ("sluice.toml", PAY_TOML),
            ("pay.policy", PAY),
            ("traces/pay.jsonl", traces),
        ],
    );
    dir
}

#[test]
fn named_cases_and_expect_args_are_checked() {
    let dir = traces_repo(concat!(
        r#"{"name": "a note is lowercased", "request": {"tool": "pay", "agent": "a", "args": {"amount": 5, "note": "Rent"}}, "expect": "modify", "expect_args": {"note": "rent", "amount": 5}}"#,
        "\n",
        r#"{"name": "the note keeps its case", "request": {"tool": "pay", "agent": "a", "args": {"amount": 5, "note": "Rent"}}, "expect": "modify", "expect_args": {"note": "Rent"}}"#,
        "\n",
        r#"{"request": {"tool": "pay", "agent": "a", "args": {"amount": 5}}, "expect": "allow", "expect_args": {"note": null}}"#,
        "\n",
    ));
    let o = sluice_in(dir.path(), &["test"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    snapshot!("test_expect_args", out(&o));
    let o = sluice_in(dir.path(), &["test", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let results = doc["report"]["results"].as_array().unwrap();
    assert_eq!(results[0]["name"], "a note is lowercased");
    assert_eq!(results[0]["verdict"], "pass");
    assert_eq!(results[1]["verdict"], "mismatch");
    assert_eq!(
        results[1]["error"],
        "args.note is \"rent\", expected \"Rent\""
    );
    assert_eq!(results[2]["verdict"], "pass");
    assert!(results[2].get("name").is_none());
}

#[test]
fn coverage_lists_what_no_case_exercises() {
    let dir = traces_repo(concat!(
        r#"{"request": {"tool": "pay", "agent": "a", "args": {"amount": 5000}}, "expect": "deny", "code": "BIG"}"#,
        "\n"
    ));
    let o = sluice_in(dir.path(), &["test", "--coverage"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    snapshot!("test_coverage", out(&o));
    let o = sluice_in(dir.path(), &["test", "--coverage", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(doc["coverage"]["checks"], 4);
    let missed: Vec<&str> = doc["coverage"]["not_exercised"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["rule"].as_str().unwrap())
        .collect();
    assert_eq!(missed, ["note", "never_tested"]);
}

#[test]
fn junit_output_has_a_testcase_per_case_and_failures() {
    let dir = traces_repo(concat!(
        r#"{"name": "big <transfer> & more", "request": {"tool": "pay", "agent": "a", "args": {"amount": 5000}}, "expect": "deny"}"#,
        "\n",
        r#"{"request": {"tool": "pay", "agent": "a", "args": {"amount": 5000}}, "expect": "allow"}"#,
        "\n",
    ));
    let o = sluice_in(dir.path(), &["test", "--format", "junit"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    snapshot!("test_junit", out(&o));
}

#[test]
fn files_under_traces_that_are_not_jsonl_are_reported() {
    let dir = traces_repo(concat!(
        r#"{"request": {"tool": "pay", "agent": "a", "args": {"amount": 5}}, "expect": "allow"}"#,
        "\n"
    ));
    write_repo(
        dir.path(),
        &[
            ("traces/more.json", "{}\n"),
            ("traces/old/cases.txt", "x\n"),
        ],
    );
    let o = sluice_in(dir.path(), &["test"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        err(&o).contains("warning: `traces/more.json` is not a trace file and was not replayed"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("`traces/old/cases.txt`"), "{}", err(&o));
}

/// The reason `explain` gives is read from the condition as written; whether
/// a rule matched is the evaluator's. On every trace request of the example
/// repository (59 rules and limits), the two agree for every check: a check
/// the evaluator matched has no false atom, and one it did not has one.
#[test]
fn explain_agrees_with_the_evaluator_on_the_example_repository() {
    use sluice::eval::explain::why_not;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let files = sluice::tree::fs::load(&root, sluice::tree::Traces::Read).unwrap();
    let checked = sluice::pipeline::check_sources(&files.project, &files.policies);
    let artifact = checked.artifact(None).unwrap().unwrap();
    let evaluator = sluice::eval::Evaluator::new(&artifact).unwrap();
    let mut policies: Vec<_> = artifact.policies.iter().collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let conditions: Vec<_> = policies
        .iter()
        .flat_map(|p| {
            p.rules
                .iter()
                .map(|r| &r.when)
                .chain(p.limits.iter().map(|l| &l.when))
        })
        .collect();
    let store = sluice::eval::state::MemoryLimitStore::new();
    let (mut requests, mut matched) = (0, 0);
    for file in &files.traces {
        let (cases, bad) = sluice::replay::parse_traces(file);
        assert!(bad.is_empty());
        for case in cases {
            let Ok(req) = evaluator.decode(&case.request) else {
                continue;
            };
            requests += 1;
            let e = evaluator.explain(&req, 1_767_225_600, &store).unwrap();
            assert_eq!(e.checks.len(), conditions.len());
            for (c, when) in e.checks.iter().zip(&conditions) {
                let reason = why_not(when, &req, evaluator.schema());
                assert_eq!(
                    c.matched,
                    reason.is_none(),
                    "{}:{} {}.{}: {reason:?}",
                    case.file,
                    case.line,
                    c.policy,
                    c.rule
                );
                assert_eq!(c.why_not.is_some(), !c.matched);
                matched += usize::from(c.matched);
            }
        }
    }
    assert!(
        requests > 100 && matched > 100,
        "{requests} requests, {matched} matches"
    );
}

/// Every finding code has its entry in the catalogue `docs/codes.md`, under
/// the anchor SARIF's `helpUri` points to, and says its severity.
#[test]
fn every_code_has_an_entry_in_the_catalogue() {
    use sluice::diagnostic::{Code, Severity};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/codes.md")).unwrap();
    for code in Code::ALL {
        let severity = match code.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let entry = format!(
            "<a id=\"{}\"></a>\n### `{}` ({severity})",
            code.anchor(),
            code.as_str()
        );
        assert!(doc.contains(&entry), "docs/codes.md lacks `{entry}`");
        assert!(
            code.doc_url()
                .ends_with(&format!("/codes.md#{}", code.anchor()))
        );
    }
}

#[test]
fn sarif_rules_link_to_the_catalogue() {
    let dir = init_repo();
    write_repo(
        dir.path(),
        &[(
            "policies/bad.policy",
            "policy bad version 1.0.0 {\n  rule r { when args.nothing == 1 deny X \"x\" }\n}\n",
        )],
    );
    let o = sluice_in(dir.path(), &["check", "--format", "sarif"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let rules = doc["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert!(!rules.is_empty());
    for r in rules {
        let id = r["id"].as_str().unwrap();
        let uri = r["helpUri"].as_str().unwrap();
        assert!(
            uri.ends_with(&format!("/codes.md#{}", id.replace("::", "-"))),
            "{uri}"
        );
    }
    let o = sluice_in(dir.path(), &["check", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let f = &doc["findings"][0];
    assert_eq!(f["code"], "type::unknown_field");
    assert!(
        f["help_uri"]
            .as_str()
            .unwrap()
            .ends_with("/codes.md#type-unknown_field"),
        "{f}"
    );
}

/// The JSON schema of sluice.toml accepts every sluice.toml the project
/// ships (the starter of `sluice init`, the example repositories that check
/// clean) and refuses the slips authors make.
#[test]
fn the_json_schema_of_sluice_toml_fits_the_shipped_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/sluice.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let as_json = |text: &str| -> serde_json::Value {
        let v: toml::Value = toml::from_str(text).unwrap();
        serde_json::to_value(v).unwrap()
    };
    let mut files = vec![
        root.join("policies/sluice.toml"),
        root.join("src/cli/starter/sluice.toml"),
        root.join("src/demo/repo/sluice.toml"),
    ];
    files.push(root.join("examples/clean/sluice.toml"));
    files.push(root.join("tests/data/governance/observes_security/sluice.toml"));
    for f in &files {
        let doc = as_json(&std::fs::read_to_string(f).unwrap());
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
    }
    for bad in [
        "[project]\nname = \"t\"\ndefault = \"maybe\"\n[schema]\ntool = \"string\"\n",
        "[project]\nname = \"t\"\n[schema]\n\"args.amount?\" = \"integer\"\n",
        "[project]\nname = \"t\"\ndefualt = \"deny\"\n[schema]\ntool = \"string\"\n",
        "[project]\nname = \"t\"\n[schema]\ntool = \"string\"\n[rollout]\nhash_key = \"tool\"\n[[rollout.stage]]\nname = \"canary\"\npercent = 150\n",
        "[project]\nname = \"t\"\n[schema]\ntool = \"string\"\n[governance]\nobserve = {}\n",
        "[project]\nname = \"t\"\n[schema]\ntool = \"string\"\n[governance]\nobserve = { org = [] }\n",
        "[project]\nname = \"t\"\n[schema]\ntool = \"string\"\n[governance]\nmode = \"observe\"\n",
    ] {
        assert!(!validator.is_valid(&as_json(bad)), "accepted:\n{bad}");
    }
}
