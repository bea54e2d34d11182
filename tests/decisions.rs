//! What a change does to decisions (`check --base`): the refund example
//! through the real binary on a real git repository, in all four formats;
//! the replay of traces and of a decision log at both revisions; and the
//! decision diff against brute force on small domains.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::cli::write_repo;

const TOML: &str = r#"
[project]
name = "shop"
default = "deny"

[schema]
tool = "string"
agent = "string"
"args.amount" = "int"
"#;

const BASE: &str = r#"policy refunds version 1.0.0 {
  rule negative {
    when tool == "refund" and args.amount < 0
    deny NEGATIVE "refunds are positive"
  }
  rule small {
    when tool == "refund" and args.amount <= 1000
    allow
  }
  rule large {
    when tool == "refund" and args.amount > 1000
    require_approval "finance" LARGE "large refunds need finance"
  }
}
"#;

/// The change under review: the guard now only stops amounts below -1000,
/// so a refund of -500 goes through.
const HEAD: &str = r#"policy refunds version 1.1.0 {
  rule negative {
    when tool == "refund" and args.amount < -1000
    deny NEGATIVE "refunds are positive"
  }
  rule small {
    when tool == "refund" and args.amount <= 1000
    allow
  }
  rule large {
    when tool == "refund" and args.amount > 1000
    require_approval "finance" LARGE "large refunds need finance"
  }
}
"#;

const TRACES: &str = r#"{"request": {"tool": "refund", "agent": "a", "args": {"amount": -500}}, "expect": "deny"}
{"request": {"tool": "refund", "agent": "a", "args": {"amount": 20}}, "expect": "allow"}
{"request": {"tool": "refund", "agent": "a", "args": {"amount": -5000}}, "expect": "deny"}
"#;

const LOG: &str = r#"{"kind": "evaluation", "time": "2026-01-01T00:00:00.000Z", "decision": "deny", "request": {"tool": "refund", "agent": "b", "args": {"amount": -1}}}
{"kind": "route", "time": "2026-01-01T00:00:01.000Z", "event": {}}
{"kind": "evaluation", "time": "2026-01-01T00:00:02.000Z", "decision": "allow", "request": {"tool": "refund", "agent": "b", "args": {"amount": 3}}}
not json
"#;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A repository whose `main` has the base and whose working tree has the
/// head (the traces are the head's).
fn refund_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    write_repo(
        dir.path(),
        &[("sluice.toml", TOML), ("policies/refunds.policy", BASE)],
    );
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "base"]);
    write_repo(
        dir.path(),
        &[
            ("policies/refunds.policy", HEAD),
            ("traces/refunds.jsonl", TRACES),
            ("decisions.log", LOG),
        ],
    );
    dir
}

fn sluice(dir: &Path, args: &[&str], summary: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("--repo")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("SLUICE_ADMIN_TOKEN");
    match summary {
        Some(p) => cmd.env("GITHUB_STEP_SUMMARY", p),
        None => cmd.env_remove("GITHUB_STEP_SUMMARY"),
    };
    cmd.output().unwrap()
}

/// The report with the run's own figures (seconds, the temporary folder,
/// the base commit) replaced.
fn stable(text: &str, dir: &Path) -> String {
    let seconds = regex::Regex::new(r"[0-9]+\.[0-9]+s\b").unwrap();
    let commit = regex::Regex::new(r"base [0-9a-f]{12}").unwrap();
    let seconds_json = regex::Regex::new(r#""seconds": [0-9.e-]+"#).unwrap();
    let text = text
        .replace(&dir.display().to_string(), "[repo]")
        .replace(env!("CARGO_MANIFEST_DIR"), "[sluice]");
    let text = seconds.replace_all(&text, "[t]s");
    let text = commit.replace_all(&text, "base [commit]");
    seconds_json
        .replace_all(&text, r#""seconds": "[t]""#)
        .into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[test]
fn the_refund_change_is_widened_with_a_witness_at_both_revisions() {
    let dir = refund_repo();
    let out = sluice(
        dir.path(),
        &[
            "check",
            "--base",
            "main",
            "--format",
            "json",
            "--decision-log",
        ],
        None,
    );
    // `--decision-log` needs its file.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let log = dir.path().join("decisions.log");
    let out = sluice(
        dir.path(),
        &[
            "check",
            "--base",
            "main",
            "--format",
            "json",
            "--decision-log",
            log.to_str().unwrap(),
        ],
        None,
    );
    let doc = json(&out);
    let changes: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with("change::"))
        .collect();
    assert_eq!(changes.len(), 1, "{doc:#}");
    let f = changes[0];
    assert_eq!(f["code"], "change::widened");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["witness_decisions"]["base"], "deny");
    assert_eq!(f["witness_decisions"]["head"], "allow");
    let amount = f["witness"]["args"]["amount"].as_i64().unwrap();
    assert!((-1000..0).contains(&amount), "{amount}");
    assert_eq!(f["witness"]["tool"], "refund");
    assert_eq!(f["locations"][0]["rule"], "negative");
    assert_eq!(f["locations"][0]["line"], 2);
    // Replay: the traces' -500 and the log's -1 went from deny to allow.
    let replay = &doc["summary"]["replay"];
    assert_eq!(replay["requests"], 5, "{replay:#}");
    assert_eq!(replay["changed"], 2);
    assert_eq!(replay["skipped"], 2);
    assert_eq!(replay["by_transition"]["deny→allow"], 2);
    assert_eq!(replay["examples"][0]["source"], "traces/refunds.jsonl:1");
    assert_eq!(replay["examples"][1]["source"], "decision log line 1");
    // A warning, not an error: the check passes without --deny-warnings.
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn what_a_change_does_in_every_format() {
    let dir = refund_repo();
    let summary = dir.path().join("summary.md");
    let mut shown = String::new();
    for format in ["human", "json", "sarif", "github"] {
        let out = sluice(
            dir.path(),
            &["check", "--base", "main", "--format", format],
            Some(&summary),
        );
        if format == "human" {
            // The human report opens with what the change does.
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.starts_with("What this change does\n"), "{err}");
        }
        shown.push_str(&format!(
            "==== {format} (exit {:?})\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    shown.push_str("==== step summary\n");
    shown.push_str(&std::fs::read_to_string(&summary).unwrap());
    let shown = stable(&shown, dir.path());
    insta::with_settings!({snapshot_path => "../snapshots/decisions", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("refund_every_format", shown);
    });
}

// ---------------------------------------------------------------------------
// Findings the base already had: labelled, not dropped

const PAY: &str = r#"policy pay version 1.0.0 {
  rule small {
    when tool == "refund" and args.amount < 100
    allow
  }
}
"#;

const RISK: &str = r#"policy risk version 1.0.0 {
  rule mallory {
    when tool == "refund" and agent == "mallory"
    deny MALLORY "mallory may not refund"
  }
}
"#;

/// The change: a new deny that overrides `pay.small` above 50.
const RISK_HEAD: &str = r#"policy risk version 1.1.0 {
  rule mallory {
    when tool == "refund" and agent == "mallory"
    deny MALLORY "mallory may not refund"
  }
  rule big {
    when tool == "refund" and args.amount > 50
    deny BIG "refunds above 50 need a review"
  }
}
"#;

/// An allow `risk.mallory` shadows: a conflict error, at both revisions.
const LEGACY: &str = r#"policy legacy version 1.0.0 {
  rule mallory_tip {
    when tool == "refund" and agent == "mallory" and args.amount < 5
    allow
  }
}
"#;

/// `main` holds the base (with `legacy` when `old_error`); the branch
/// `change` holds the head, checked out.
fn labelled_repo(old_error: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    let mut files = vec![
        ("sluice.toml", TOML),
        ("policies/pay.policy", PAY),
        ("policies/risk.policy", RISK),
    ];
    if old_error {
        files.push(("policies/legacy.policy", LEGACY));
    }
    write_repo(dir.path(), &files);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "base"]);
    git(dir.path(), &["checkout", "-qb", "change"]);
    write_repo(dir.path(), &[("policies/risk.policy", RISK_HEAD)]);
    git(dir.path(), &["commit", "-qam", "a deny above 50"]);
    dir
}

#[test]
fn findings_the_base_had_are_labelled_in_every_format() {
    let dir = labelled_repo(true);
    let summary = dir.path().join("summary.md");
    let out = sluice(
        dir.path(),
        &["check", "--base", "HEAD~1", "--format", "json"],
        None,
    );
    // The old conflict error still fails the check: the set it leaves does
    // not compile, whoever introduced the error.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc = json(&out);
    let by_code = |code: &str| -> Vec<&Value> {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == code)
            .collect()
    };
    let shadowed = by_code("conflict::shadowed");
    assert_eq!(shadowed.len(), 1, "{doc:#}");
    assert_eq!(shadowed[0]["introduced"], false);
    let overridden = by_code("conflict::overridden_allow");
    assert_eq!(overridden.len(), 2, "{doc:#}");
    let (old, new): (Vec<&Value>, Vec<&Value>) =
        overridden.iter().partition(|f| f["introduced"] == false);
    assert_eq!((old.len(), new.len()), (1, 1), "{doc:#}");
    assert_eq!(new[0]["introduced"], true);
    // The new conflict sits on the rule the change added, not on the
    // unchanged allow it overrides.
    assert_eq!(new[0]["locations"][0]["rule"], "big", "{doc:#}");
    assert_eq!(new[0]["locations"][1]["rule"], "small", "{doc:#}");
    assert_eq!(old[0]["locations"][0]["rule"], "small", "{doc:#}");
    // What the change does, and the version check it passes: introduced.
    let change = by_code("change::decision");
    assert_eq!(change.len(), 1, "{doc:#}");
    assert_eq!(change[0]["introduced"], true);
    assert_eq!(doc["summary"]["preexisting"], 2, "{doc:#}");

    let mut shown = String::new();
    for format in ["human", "json", "sarif", "github"] {
        let out = sluice(
            dir.path(),
            &["check", "--base", "main", "--format", format],
            Some(&summary),
        );
        shown.push_str(&format!(
            "==== {format} (exit {:?})\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        if format == "sarif" {
            let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
            let states: Vec<&str> = sarif["runs"][0]["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["baselineState"].as_str().unwrap())
                .collect();
            assert_eq!(
                states.iter().filter(|s| **s == "unchanged").count(),
                2,
                "{states:?}"
            );
            assert!(states.iter().all(|s| ["new", "unchanged"].contains(s)));
        }
    }
    shown.push_str("==== step summary\n");
    shown.push_str(&std::fs::read_to_string(&summary).unwrap());
    let shown = stable(&shown, dir.path());
    assert!(
        shown.contains("[already on main] allow `legacy.mallory_tip`"),
        "{shown}"
    );
    insta::with_settings!({snapshot_path => "../snapshots/decisions", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("preexisting_every_format", shown);
    });
}

/// `--deny-warnings` fails on the warnings a change introduces, not on
/// those the base already had; without a base every warning counts.
#[test]
fn deny_warnings_counts_only_what_the_change_introduced() {
    let dir = labelled_repo(false);
    let code = |args: &[&str]| sluice(dir.path(), args, None).status.code();
    // The change adds an overridden allow: a warning of its own.
    assert_eq!(
        code(&["check", "--base", "HEAD~1", "--deny-warnings"]),
        Some(1)
    );
    assert_eq!(code(&["check", "--base", "HEAD~1"]), Some(0));
    // Against itself, both warnings are old: shown, labelled, not failing.
    let out = sluice(
        dir.path(),
        &[
            "check",
            "--base",
            "HEAD",
            "--deny-warnings",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc = json(&out);
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{doc:#}");
    assert!(findings.iter().all(|f| f["introduced"] == false), "{doc:#}");
    // The base is named by the branch whose tip it is.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("labelled \"already on change\""), "{err}");
    // Without a base there is nothing to compare with: every warning fails.
    assert_eq!(code(&["check", "--deny-warnings"]), Some(1));
    let plain = json(&sluice(dir.path(), &["check", "--format", "json"], None));
    assert!(
        plain["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f.get("introduced").is_none()),
        "{plain:#}"
    );
}

// ---------------------------------------------------------------------------
// The decision diff against brute force

mod brute {
    use std::collections::BTreeSet;

    use serde_json::json;
    use sluice::analyze::{Options, Revision, analyze_change};
    use sluice::compile::artifact::{Artifact, FORMAT_VERSION};
    use sluice::eval::Evaluator;
    use sluice::eval::state::MemoryLimitStore;
    use sluice::pipeline::{Checked, check_unanalysed};
    use sluice::source::SourceFile;

    const TOML: &str = r#"
[project]
name = "d"
default = "DEFAULT"

[schema]
tool = "string"
"args.amount" = "int"
"args.urgent?" = "bool"
"#;

    /// A small deterministic generator (no seed file to keep).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// A condition over a small domain: `tool` among a, b; amounts compared
    /// with -2..=2; `urgent` tested or its presence.
    fn cond(g: &mut Lcg) -> String {
        let atom = |g: &mut Lcg| -> String {
            match g.below(4) {
                0 => format!("tool == \"{}\"", ["a", "b"][g.below(2) as usize]),
                1 => format!(
                    "args.amount {} {}",
                    ["<", "<=", ">", ">=", "==", "!="][g.below(6) as usize],
                    g.below(5) as i64 - 2
                ),
                2 => "args.urgent == true".to_string(),
                _ => "has(args.urgent)".to_string(),
            }
        };
        let mut parts = vec![atom(g)];
        for _ in 0..g.below(3) {
            let a = atom(g);
            parts.push(if g.below(3) == 0 {
                format!("not {a}")
            } else {
                a
            });
        }
        let op = if g.below(3) == 0 { " or " } else { " and " };
        parts.join(op)
    }

    fn effect(g: &mut Lcg, i: usize) -> String {
        match g.below(4) {
            0 => "allow".to_string(),
            1 => format!("deny D{i} \"no\""),
            2 => format!("require_approval \"ops\" A{i} \"wait\""),
            _ => format!("modify args.amount = 0 M{i} \"zero\""),
        }
    }

    fn checked(default: &str, rules: &[(String, String)]) -> Checked {
        let project = SourceFile::new("sluice.toml", TOML.replace("DEFAULT", default));
        let mut text = String::from("policy p version 1.0.0 {\n");
        for (i, (when, effect)) in rules.iter().enumerate() {
            text.push_str(&format!(
                "  rule r{i} {{\n    when {when}\n    {effect}\n  }}\n"
            ));
        }
        text.push_str("}\n");
        let c = check_unanalysed(&project, &[SourceFile::new("policies/p.policy", text)]);
        assert!(c.set.is_some(), "{:?}", c.findings);
        c
    }

    fn evaluator(c: &Checked) -> Evaluator {
        let p = c.project.as_ref().unwrap();
        Evaluator::new(&Artifact {
            format_version: FORMAT_VERSION,
            project: "d".into(),
            default: p.default,
            schema: p.schema.clone(),
            policies: c.set.as_ref().unwrap().policies.clone(),
            source_commit: None,
            hash: String::new(),
        })
        .unwrap()
    }

    /// Every request of the domain: each class of the generated conditions
    /// has one.
    fn requests() -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for tool in ["a", "b", "c"] {
            for amount in -3..=3 {
                for urgent in [None, Some(true), Some(false)] {
                    let mut args = json!({"amount": amount});
                    if let Some(u) = urgent {
                        args["urgent"] = json!(u);
                    }
                    out.push(json!({"tool": tool, "args": args}));
                }
            }
        }
        out
    }

    /// (rule, base decision, head decision) for every changed rule and every
    /// request it matches at either revision whose decision differs.
    fn expected(
        base: &Evaluator,
        head: &Evaluator,
        changed: &[String],
    ) -> BTreeSet<(String, String, String)> {
        let store = MemoryLimitStore::new();
        let mut out = BTreeSet::new();
        for r in requests() {
            let run = |e: &Evaluator| {
                let req = e.decode(&r).unwrap();
                let o = e.evaluate_dry_run(&req, 0, &store).unwrap();
                let matched: BTreeSet<String> = e
                    .reasons(&o)
                    .map(|x| format!("{}.{}", x.policy, x.rule))
                    .collect();
                (o.decision(), matched)
            };
            let ((db, mb), (dh, mh)) = (run(base), run(head));
            if db == dh {
                continue;
            }
            for c in changed {
                if mb.contains(c) || mh.contains(c) {
                    out.insert((c.clone(), db.as_str().into(), dh.as_str().into()));
                }
            }
        }
        out
    }

    #[test]
    fn the_decision_diff_finds_every_class_and_only_real_ones() {
        let mut g = Lcg(0x5eed);
        let mut reported_total = 0;
        for case in 0..60 {
            let n = 2 + g.below(4) as usize;
            let base: Vec<(String, String)> =
                (0..n).map(|i| (cond(&mut g), effect(&mut g, i))).collect();
            let mut head = base.clone();
            let target = g.below(n as u64) as usize;
            match g.below(3) {
                0 => head[target].0 = cond(&mut g),
                1 => head[target].1 = effect(&mut g, target + 100),
                _ => {
                    head[target] = (cond(&mut g), effect(&mut g, target + 200));
                }
            }
            let defaults = if g.below(4) == 0 {
                ("allow", "allow")
            } else {
                ("deny", "deny")
            };
            let (b, h) = (checked(defaults.0, &base), checked(defaults.1, &head));
            fn rev(c: &Checked) -> Revision<'_> {
                Revision {
                    set: c.set.as_ref().unwrap(),
                    schema: &c.project.as_ref().unwrap().schema,
                    default: c.project.as_ref().unwrap().default,
                    evaluator: None,
                }
            }
            let report = analyze_change(rev(&b), rev(&h), &Options::default());
            let diff = report.decisions.expect("same schema");
            let mut got = BTreeSet::new();
            for f in &diff.findings {
                assert!(
                    matches!(f.code.as_str(), "change::decision" | "change::widened"),
                    "case {case}: {f:#?}\nbase {base:#?}\nhead {head:#?}"
                );
                let rule = f.labels[0].rule.clone().unwrap();
                let d = f.witness_decisions.as_ref().unwrap();
                got.insert((format!("p.{rule}"), d["base"].clone(), d["head"].clone()));
            }
            let want = expected(&evaluator(&b), &evaluator(&h), &report.changed);
            assert_eq!(got, want, "case {case}\nbase {base:#?}\nhead {head:#?}");
            reported_total += got.len();
        }
        // The generator does make changes that change decisions.
        assert!(reported_total > 20, "{reported_total}");
    }

    // -----------------------------------------------------------------------
    // The whole analysis (`analyze()`: planning, the tool index, pair
    // pruning, covers, `conflict::modify`, approval deadlocks) against brute
    // force over the same complete domain.

    /// A policy file of `rules` (`r{i}` named by their index in the whole
    /// set).
    fn policy_text(name: &str, rules: &[(usize, &(String, String))]) -> String {
        let mut text = format!("policy {name} version 1.0.0 {{\n");
        for (i, (when, effect)) in rules {
            text.push_str(&format!(
                "  rule r{i} {{\n    when {when}\n    {effect}\n  }}\n"
            ));
        }
        text.push_str("}\n");
        text
    }

    /// An effect of the whole-analysis test: decisions, approvals through a
    /// tool of the domain, and modifications of one field to two values.
    fn any_effect(g: &mut Lcg, i: usize) -> String {
        match g.below(6) {
            0 | 1 => "allow".to_string(),
            2 => format!("deny D{i} \"no\""),
            3 => format!(
                "require_approval \"ops\" via \"{}\" A{i} \"wait\"",
                ["a", "b", "c"][g.below(3) as usize]
            ),
            4 => format!("require_approval \"ops\" A{i} \"wait\""),
            _ => format!("modify args.amount = {} M{i} \"set\"", g.below(2)),
        }
    }

    /// Whether rule `when` matches each request of the domain, as the real
    /// evaluator decides it (a one-rule set: allow on a match, else deny).
    fn matches(when: &str, reqs: &[serde_json::Value]) -> Vec<bool> {
        let c = checked("deny", &[(when.to_string(), "allow".to_string())]);
        let e = evaluator(&c);
        let store = MemoryLimitStore::new();
        reqs.iter()
            .map(|r| {
                let req = e.decode(r).unwrap();
                e.evaluate_dry_run(&req, 0, &store).unwrap().decision()
                    == sluice::model::ir::DecisionKind::Allow
            })
            .collect()
    }

    #[test]
    fn the_whole_analysis_matches_brute_force() {
        use sluice::analyze::analyze;
        let mut g = Lcg(0xa11_5e7);
        let reqs = requests();
        // The approval request of a request: its tool replaced by `via`.
        let index_of = |r: &serde_json::Value| reqs.iter().position(|x| x == r).unwrap();
        let mut kinds: BTreeSet<String> = BTreeSet::new();
        for case in 0..80 {
            let n = 2 + g.below(5) as usize;
            let rules: Vec<(String, String)> = (0..n)
                .map(|i| (cond(&mut g), any_effect(&mut g, i)))
                .collect();
            let owner: Vec<usize> = (0..n).map(|_| g.below(2) as usize).collect();
            let default = if g.below(3) == 0 { "allow" } else { "deny" };
            let project = SourceFile::new("sluice.toml", TOML.replace("DEFAULT", default));
            let files: Vec<SourceFile> = (0..2)
                .map(|p| {
                    let mine: Vec<(usize, &(String, String))> = rules
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| owner[*i] == p)
                        .collect();
                    SourceFile::new(
                        format!("policies/p{p}.policy"),
                        policy_text(&format!("p{p}"), &mine),
                    )
                })
                .collect();
            let c = check_unanalysed(&project, &files);
            let (set, proj) = (c.set.as_ref().unwrap(), c.project.as_ref().unwrap());
            let report = analyze(set, &proj.schema, proj.default, &Options::default());

            let id = |i: usize| format!("p{}.r{i}", owner[i]);
            let m: Vec<Vec<bool>> = rules.iter().map(|(w, _)| matches(w, &reqs)).collect();
            let is = |i: usize, what: &str| rules[i].1.starts_with(what);
            let stopper = |i: usize| is(i, "deny") || is(i, "require_approval");
            let dead = |i: usize| !m[i].iter().any(|x| *x);
            let shadowed = |a: usize| {
                (0..reqs.len())
                    .filter(|r| m[a][*r])
                    .all(|r| (0..n).any(|d| d != a && stopper(d) && m[d][r]))
            };
            let mut want: BTreeSet<String> = BTreeSet::new();
            for i in 0..n {
                if dead(i) {
                    want.insert(format!("dead {}", id(i)));
                    continue;
                }
                if is(i, "allow") {
                    if shadowed(i) {
                        want.insert(format!("shadowed {}", id(i)));
                        continue;
                    }
                    for d in (0..n).filter(|d| stopper(*d) && owner[*d] != owner[i]) {
                        if (0..reqs.len()).any(|r| m[i][r] && m[d][r]) {
                            want.insert(format!("overridden {} {}", id(i), id(d)));
                        }
                    }
                }
                for b in (i + 1..n).filter(|b| owner[*b] != owner[i]) {
                    if is(i, "modify") && is(b, "modify") && rules[i].1 != rules[b].1 {
                        let value = |e: &str| e.split(" M").next().unwrap().to_string();
                        if value(&rules[i].1) != value(&rules[b].1)
                            && (0..reqs.len()).any(|r| m[i][r] && m[b][r])
                        {
                            want.insert(format!("modify {} {}", id(i), id(b)));
                        }
                    }
                }
            }
            // Approvals: `r` is blocked when a request it makes wait (and no
            // deny stops first) has an approval request that a deny or an
            // approval matches, or, under a default of deny, no rule does.
            let mut blocked: BTreeSet<String> = BTreeSet::new();
            for (i, (_, effect)) in rules.iter().enumerate() {
                let Some(via) = effect.split("via \"").nth(1).map(|v| &v[..1]) else {
                    continue;
                };
                for r in (0..reqs.len()).filter(|r| m[i][*r]) {
                    if (0..n).any(|d| is(d, "deny") && m[d][r]) {
                        continue;
                    }
                    let mut approval = reqs[r].clone();
                    approval["tool"] = serde_json::json!(via);
                    let q = index_of(&approval);
                    let stopped = (0..n).any(|s| stopper(s) && m[s][q]);
                    let unruled = default == "deny" && !(0..n).any(|x| m[x][q]);
                    if stopped || unruled {
                        blocked.insert(id(i));
                    }
                }
            }

            let mut got: BTreeSet<String> = BTreeSet::new();
            let mut deadlocked_first: BTreeSet<String> = BTreeSet::new();
            let mut deadlocked_all: BTreeSet<String> = BTreeSet::new();
            let rule = |l: &sluice::diagnostic::Label| {
                format!("{}.{}", l.policy.clone().unwrap(), l.rule.clone().unwrap())
            };
            for f in &report.findings {
                kinds.insert(f.code.as_str().to_string());
                let labels: Vec<String> = f.labels.iter().map(rule).collect();
                match f.code.as_str() {
                    "conflict::dead_rule" => got.insert(format!("dead {}", labels[0])),
                    "conflict::shadowed" => got.insert(format!("shadowed {}", labels[0])),
                    "conflict::overridden_allow" => {
                        got.insert(format!("overridden {} {}", labels[0], labels[1]))
                    }
                    "conflict::modify" => {
                        let mut pair = [labels[0].clone(), labels[1].clone()];
                        pair.sort_by_key(|x| x[4..].parse::<usize>().unwrap());
                        got.insert(format!("modify {} {}", pair[0], pair[1]))
                    }
                    "conflict::approval_deadlock" => {
                        deadlocked_first.insert(labels[0].clone());
                        deadlocked_all.extend(labels);
                        true
                    }
                    other => panic!(
                        "case {case}: {other}: {}\nrules {rules:#?} owners {owner:?}",
                        f.message
                    ),
                };
            }
            assert_eq!(
                got, want,
                "case {case} (default {default})\nrules {rules:#?}\nowners {owner:?}"
            );
            // Every deadlock names a blocked approval first, and every
            // blocked approval is named by one.
            assert!(
                deadlocked_first.is_subset(&blocked) && blocked.is_subset(&deadlocked_all),
                "case {case} (default {default}): reported {deadlocked_first:?} of \
                 {deadlocked_all:?}, blocked {blocked:?}\nrules {rules:#?}\nowners {owner:?}"
            );
        }
        // The generator reaches every kind of finding.
        for code in [
            "conflict::dead_rule",
            "conflict::shadowed",
            "conflict::overridden_allow",
            "conflict::modify",
            "conflict::approval_deadlock",
        ] {
            assert!(kinds.contains(code), "{code} never found: {kinds:?}");
        }
    }
}
