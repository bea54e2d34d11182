//! Governance (SPEC §9), observe mode: `[governance] observe` read from
//! `sluice.toml` into the artifact and its hash; the evaluator answers a
//! request of the scope `allow` with the policies' decision as `observed`;
//! the engine (the built binary) counts observed decisions apart in
//! `/v1/stats` and `/metrics` and marks them in the decision log; `sluice
//! check` warns when the scope covers a `security`-tier policy.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::compile::artifact::Artifact;
use sluice::diagnostic::render_human;
use sluice::eval::Evaluator;
use sluice::eval::response::ResponseContext;
use sluice::eval::state::MemoryLimitStore;
use sluice::model::ir::{DecisionKind, Literal};
use sluice::pipeline::{Checked, check_sources};
use sluice::project::parse;
use sluice::source::SourceFile;

const FIXTURE: &str = "tests/data/governance/observes_security";

/// The fixture repository, checked (conflict analysis included).
fn fixture() -> Checked {
    fixture_with(None)
}

/// The fixture repository, with `sluice.toml` replaced when given.
fn fixture_with(toml: Option<&str>) -> Checked {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let text = match toml {
        Some(t) => t.to_string(),
        None => std::fs::read_to_string(root.join("sluice.toml")).unwrap(),
    };
    let project = SourceFile::new("sluice.toml", text);
    let mut names: Vec<_> = std::fs::read_dir(root.join("policies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let policies: Vec<SourceFile> = names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join("policies").join(n)).unwrap();
            SourceFile::new(format!("policies/{n}"), text)
        })
        .collect();
    check_sources(&project, &policies)
}

/// The fixture's `sluice.toml` without its `[governance]` table.
fn enforcing_toml() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let text = std::fs::read_to_string(root.join("sluice.toml")).unwrap();
    text.split("# newco").next().unwrap().to_string()
}

fn artifact(c: &Checked) -> Artifact {
    c.artifact(None).expect("a set without errors").unwrap()
}

fn pay(org: &str, amount: i64) -> Value {
    json!({"tool": "pay", "agent": "bot", "org": org, "session": "s-1",
           "args": {"amount": amount}})
}

#[test]
fn observe_is_read_into_the_project() {
    let file = SourceFile::new(
        "sluice.toml",
        "[project]\nname = \"t\"\n[schema]\ntool = \"string\"\norg = \"string\"\n\"args.n?\" = \"int\"\n\
         [governance]\nobserve = { org = [\"newco\", \"oldco\"], args = { n = [1, 2] } }\n",
    );
    let p = parse(&file).unwrap();
    let scope: Vec<(&str, &[Literal])> = p
        .governance
        .observe
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    assert_eq!(
        scope,
        [
            ("args.n", &[Literal::Int(1), Literal::Int(2)][..]),
            (
                "org",
                &[Literal::Str("newco".into()), Literal::Str("oldco".into())][..]
            ),
        ]
    );
    // Without the table nothing is observed.
    let plain = SourceFile::new(
        "sluice.toml",
        "[project]\nname = \"t\"\n[schema]\ntool = \"string\"\n",
    );
    assert!(parse(&plain).unwrap().governance.is_empty());
}

#[test]
fn the_scope_is_part_of_the_artifact_and_its_hash() {
    let observed = artifact(&fixture());
    let enforced = artifact(&fixture_with(Some(&enforcing_toml())));
    assert_ne!(
        observed.hash, enforced.hash,
        "moving a scope changes the hash"
    );
    assert!(enforced.governance.is_empty());
    let bytes = observed.to_bytes().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.contains(r#""governance":{"observe":{"org":[{"str":"newco"}]}}"#),
        "{text}"
    );
    let read = Artifact::from_bytes(&bytes).unwrap();
    assert_eq!(
        (&read.hash, &read.governance),
        (&observed.hash, &observed.governance)
    );
    // Without governance the JSON has no `governance` key: older artifacts
    // keep their hash.
    let plain = String::from_utf8(enforced.to_bytes().unwrap()).unwrap();
    assert!(!plain.contains("governance"), "{plain}");
    // The hash covers the scope: an edited scope does not verify.
    let tampered = text.replace(r#"{"str":"newco"}"#, r#"{"str":"oldco"}"#);
    assert!(Artifact::from_bytes(tampered.as_bytes()).is_err());
}

#[test]
fn the_evaluator_answers_allow_and_reports_the_observed_decision() {
    let a = artifact(&fixture());
    let ev = Evaluator::new(&a).unwrap();
    let store = MemoryLimitStore::new();
    let cx = ResponseContext::default();
    let answer = |req: &Value| {
        let r = ev.decode(req).unwrap();
        let o = ev.evaluate(&r, 1_000, &store).unwrap();
        (o.decision(), o.observed(), ev.respond(&r, &o, &cx))
    };

    // In the scope, denied by a security rule: answered allow, observed deny.
    let (decision, observed, resp) = answer(&pay("newco", 5000));
    assert_eq!(
        (decision, observed),
        (DecisionKind::Allow, Some(DecisionKind::Deny))
    );
    assert_eq!(resp.decision, DecisionKind::Allow);
    assert_eq!(resp.observed, Some(DecisionKind::Deny));
    assert!(resp.audit);
    assert_eq!(resp.reasons.len(), 1, "the policies' reasons are kept");
    assert_eq!(resp.reasons[0].rule, "big_transfer");
    let doc = serde_json::to_value(&resp).unwrap();
    assert_eq!(doc["decision"], "allow");
    assert_eq!(doc["observed"], "deny");
    assert_eq!(doc["audit"], true);

    // Out of the scope the same request is denied, with no `observed`.
    let (decision, observed, resp) = answer(&pay("acme", 5000));
    assert_eq!((decision, observed), (DecisionKind::Deny, None));
    assert!(!resp.audit);
    assert!(
        serde_json::to_value(&resp)
            .unwrap()
            .get("observed")
            .is_none()
    );

    // In the scope and allowed: observed allow, still audited.
    let (decision, observed, resp) = answer(&pay("newco", 5));
    assert_eq!(
        (decision, observed),
        (DecisionKind::Allow, Some(DecisionKind::Allow))
    );
    assert!(resp.audit);

    // An observed `require_approval` queues nothing and modifies nothing:
    // the answer is a plain allow.
    let mail = json!({"tool": "email.send", "agent": "marketing", "org": "newco", "session": "s"});
    let (decision, observed, resp) = answer(&mail);
    assert_eq!(
        (decision, observed),
        (DecisionKind::Allow, Some(DecisionKind::RequireApproval))
    );
    assert!(resp.approval_id.is_none() && resp.modifications.is_empty());

    // Enforcing the scope (a commit without `observe`) denies it again.
    let enforced = Evaluator::new(&artifact(&fixture_with(Some(&enforcing_toml())))).unwrap();
    let r = enforced.decode(&pay("newco", 5000)).unwrap();
    let o = enforced.evaluate(&r, 1_000, &store).unwrap();
    assert_eq!((o.decision(), o.observed()), (DecisionKind::Deny, None));
}

#[test]
fn an_artifact_whose_scope_names_no_field_of_its_schema_does_not_load() {
    let mut a = artifact(&fixture());
    a.governance
        .observe
        .insert("team".into(), vec![Literal::Str("x".into())]);
    let err = Evaluator::new(&a).unwrap_err().to_string();
    assert!(err.contains("`team`"), "{err}");
}

#[test]
fn check_warns_when_the_scope_covers_a_security_policy() {
    let c = fixture();
    assert!(!c.has_errors(), "a warning only");
    let warnings: Vec<_> = c
        .findings
        .iter()
        .filter(|f| f.code.as_str() == "governance::observes_security")
        .collect();
    // `payments.big_transfer` can match a newco request; `acme_treasury` and
    // `shell.acme_shell` name other orgs, and `mail` is operational.
    assert_eq!(warnings.len(), 1, "{:#?}", c.findings);
    let rules: Vec<_> = warnings[0]
        .labels
        .iter()
        .filter_map(|l| l.rule.clone())
        .collect();
    assert_eq!(rules, ["big_transfer"]);
    assert_eq!(warnings[0].labels[0].file, "sluice.toml");
    insta::with_settings!({snapshot_path => "../snapshots/governance", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("observes_security", render_human(&c.findings, &c.sources, false, 100));
    });
    // Without the scope there is nothing to warn about.
    let enforced = fixture_with(Some(&enforcing_toml()));
    assert!(
        !enforced
            .findings
            .iter()
            .any(|f| f.code.as_str() == "governance::observes_security")
    );
}

#[test]
fn the_engine_answers_counts_and_logs_observed_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&fixture());
    let path = dir.path().join("a.json");
    std::fs::write(&path, a.to_bytes().unwrap()).unwrap();
    let log = dir.path().join("decisions.jsonl");
    let mut engine = crate::hardening::engine(&[
        "--artifact",
        path.to_str().unwrap(),
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let client = reqwest::Client::new();
        let base = format!("http://{}", engine.addr);
        let mut answers = Vec::new();
        for req in [pay("newco", 5000), pay("acme", 5000), pay("newco", 5)] {
            let r = client
                .post(format!("{base}/v1/evaluate"))
                .json(&req)
                .send()
                .await
                .unwrap();
            answers.push(r.json::<Value>().await.unwrap());
        }
        let stats: Value = client
            .get(format!("{base}/v1/stats"))
            .bearer_auth(crate::engine::TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (answers, stats, metrics)
    });
    engine.signal("TERM");
    engine.wait_exit(Duration::from_secs(20));
    let (answers, stats, metrics) = result;

    assert_eq!(answers[0]["decision"], "allow", "{answers:#?}");
    assert_eq!(answers[0]["observed"], "deny");
    assert_eq!(answers[0]["audit"], true);
    assert_eq!(answers[1]["decision"], "deny");
    assert!(answers[1].get("observed").is_none());
    assert_eq!(answers[2]["observed"], "allow");

    let cohort = &stats["cohorts"][0];
    assert_eq!(cohort["requests"], 3, "{stats:#}");
    assert_eq!(
        cohort["decisions"],
        json!({"allow": 2, "modify": 0, "require_approval": 0, "deny": 1})
    );
    assert_eq!(
        cohort["observed"],
        json!({"allow": 1, "modify": 0, "require_approval": 0, "deny": 1})
    );

    let labels = format!("artifact=\"{}\",cohort=\"stable\",stage=\"\"", a.hash);
    for (decision, n) in [("deny", 1), ("allow", 1), ("modify", 0)] {
        let line = format!("sluice_observed_total{{{labels},decision=\"{decision}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["kind"] == "evaluation")
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let marks: Vec<(&str, Option<&str>, bool)> = lines
        .iter()
        .map(|l| {
            (
                l["decision"].as_str().unwrap(),
                l["observed"].as_str(),
                l["audit"] == true,
            )
        })
        .collect();
    assert_eq!(
        marks,
        [
            ("allow", Some("deny"), true),
            ("deny", None, false),
            ("allow", Some("allow"), true)
        ]
    );
}

#[test]
fn trace_replay_judges_the_answer_of_the_scope() {
    let trace = SourceFile::new(
        "traces/pay.jsonl",
        concat!(
            r#"{"request": {"tool": "pay", "agent": "bot", "org": "newco", "session": "s", "args": {"amount": 5000}}, "expect": "deny"}"#,
            "\n",
            r#"{"request": {"tool": "pay", "agent": "bot", "org": "acme", "session": "s", "args": {"amount": 5000}}, "expect": "deny"}"#,
            "\n"
        ),
    );
    let (cases, invalid) = sluice::replay::parse_traces(&trace);
    assert!(invalid.is_empty(), "{invalid:?}");
    let run = |c: &Checked| {
        let ev = Evaluator::new(&artifact(c)).unwrap();
        let mut report = sluice::api::replay::ReplayReport::default();
        sluice::replay::run(&ev, &cases, &MemoryLimitStore::new(), &mut report);
        (report.passed, report.catastrophic)
    };
    // Observed, newco's denial is answered allow: the replay gate sees it.
    assert_eq!(run(&fixture()), (1, 1));
    assert_eq!(run(&fixture_with(Some(&enforcing_toml()))), (2, 0));
}

/// The scope's values decide string tests too: a security rule on agents
/// named `quarantine-…`, or whose id breaks the slug pattern, cannot match a
/// scope of one well-formed agent, while a rule on a tool prefix can until
/// the scope pins the tool as well.
#[test]
fn the_scope_values_decide_string_tests_of_security_rules() {
    let policy = SourceFile::new(
        "policies/core.policy",
        r#"policy core version 1.0.0 {
  tier security
  rule quarantined {
    when agent starts_with "quarantine-" and not tool starts_with "approvals."
    deny QUARANTINED "quarantined"
  }
  rule malformed {
    when not agent matches "^[a-z][a-z0-9-]*$"
    deny MALFORMED "not a slug"
  }
  rule tamper {
    when tool starts_with "vault." or tool ends_with ".secrets"
    deny TAMPER "no secrets"
  }
}
"#,
    );
    let check = |observe: &str| {
        let toml = format!(
            "[project]\nname = \"p\"\ndefault = \"allow\"\n\n[schema]\ntool = \"string\"\nagent = \"string\"\n\n[governance]\nobserve = {observe}\n"
        );
        let c = check_sources(
            &SourceFile::new("sluice.toml", toml),
            std::slice::from_ref(&policy),
        );
        assert!(!c.has_errors(), "{:#?}", c.findings);
        let rules: Vec<String> = c
            .findings
            .iter()
            .filter(|f| f.code.as_str() == "governance::observes_security")
            .flat_map(|f| f.labels.iter().filter_map(|l| l.rule.clone()))
            .collect();
        rules
    };
    assert_eq!(check(r#"{ agent = ["crm-bot"] }"#), ["tamper"]);
    assert_eq!(
        check(r#"{ agent = ["crm-bot"], tool = ["crm.update"] }"#),
        Vec::<String>::new()
    );
    // One value the test holds for is enough to be covered.
    assert_eq!(
        check(r#"{ agent = ["crm-bot", "Crm Bot"], tool = ["crm.update"] }"#),
        ["malformed"]
    );
    assert_eq!(
        check(r#"{ agent = ["quarantine-x"], tool = ["approvals.request", "vault.read"] }"#),
        ["quarantined", "tamper"]
    );
    assert_eq!(
        check(r#"{ tool = ["crm.update"] }"#),
        ["quarantined", "malformed"]
    );
}
