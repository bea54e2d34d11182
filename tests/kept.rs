//! What the engine keeps and tags (SPEC §5 "What a caller can cost", the
//! decision log): the shadow candidate reads limits as they were before
//! the request, what a `modify` redacts is kept nowhere in clear, every
//! decision-log line names its stage, policy versions and route version.
//! In process, through the router.

use serde_json::{Value, json};

use crate::engine::{
    PAY, admin, artifact, config, eval, eventually, set_route, state, stats_of, with_stable,
};

/// A limit of five per agent, the same in both artifacts of a shadow
/// route (the candidate differs by a rule that never matches).
const FIVE: &str = r#"policy five version 1.0.0 {
  tier operational
  limit per_agent { when tool == "pay" max 5 per 1h by agent exceed deny FIVE "five" }
}
"#;

const FIVE_AND_MORE: &str = r#"policy more version 1.0.0 {
  tier operational
  rule never { when tool == "never" deny NEVER "never" }
}
"#;

fn req(agent: &str) -> Value {
    json!({"tool": "pay", "agent": agent, "org": "acme", "session": "s-1",
           "args": {"amount": 5, "country": "DE"}})
}

#[tokio::test]
async fn the_candidate_reads_limits_as_they_were_before_the_request() {
    let a = artifact(&[FIVE]);
    let b = artifact(&[FIVE, FIVE_AND_MORE]);
    let (engine, app, _sink) = with_stable(config(), &[&a, &b]).await;
    let r = set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "shadow"}),
    )
    .await;
    assert_eq!(r.status, axum::http::StatusCode::OK, "{}", r.text());
    // Past the limit, for two agents: 5 allowed, the rest denied, each.
    let mut decisions = Vec::new();
    for n in 0..16 {
        let agent = if n % 2 == 0 { "a" } else { "b" };
        decisions.push(eval(&app, req(agent)).await.json()["decision"].clone());
    }
    assert_eq!(decisions.iter().filter(|d| **d == "allow").count(), 10);
    eventually("shadow comparisons", || {
        stats_of(&engine)["cohorts"][1]["shadow"]["compared"] == 16
    })
    .await;
    let stats = stats_of(&engine);
    let shadow = &stats["cohorts"][1]["shadow"];
    assert_eq!(shadow["diverged"], 0, "{shadow}");
    assert_eq!(stats["cohorts"][1]["decisions"]["deny"], 6, "{stats}");
}

/// Redacts an SSN-like number in `args.country` (the schema's one free
/// string), and denies a sanctioned country besides.
const PII: &str = r#"policy pii version 2.1.0 {
  tier compliance
  rule ssn {
    when tool == "pay" and args.country matches "[0-9]{3}-[0-9]{2}-[0-9]{4}"
    modify args.country = redact(args.country, "[0-9]{3}-[0-9]{2}-[0-9]{4}") PII "SSN redacted"
  }
}
"#;

#[tokio::test]
async fn what_a_modify_redacts_is_neither_logged_nor_kept_in_clear() {
    let a = artifact(&[PAY, PII]);
    let (_e, app, sink) = with_stable(config(), &[&a]).await;
    let secret = "ssn 123-45-6789";
    let pay = |agent: &str, amount: i64| {
        json!({"tool": "pay", "agent": agent, "org": "acme", "session": "s-1",
               "args": {"amount": amount, "country": secret}})
    };
    // Modified, and waiting for approval (kept in the state): never in
    // clear.
    let r = eval(&app, pay("a", 5)).await.json();
    assert_eq!(r["decision"], "modify", "{r}");
    assert_eq!(r["request"]["args"]["country"], "ssn [REDACTED]");
    let r = eval(&app, pay("b", 5000)).await.json();
    assert_eq!(r["decision"], "require_approval", "{r}");
    let live = admin(&app, "GET", "/v1/state", Value::Null).await;
    let text = live.text();
    assert!(!text.contains("123-45-6789"), "{text}");
    assert!(text.contains("ssn [REDACTED]"), "{text}");
    let list = admin(&app, "GET", "/v1/approvals", Value::Null)
        .await
        .text();
    assert!(!list.contains("123-45-6789"), "{list}");
    assert_eq!(state(&app).await.approvals.len(), 1);
    eventually("two lines", || sink.of_kind("evaluation").len() == 2).await;
    for line in sink.of_kind("evaluation") {
        let text = line.to_string();
        assert!(!text.contains("123-45-6789"), "{text}");
        assert_eq!(
            line["request"]["args"]["country"], "ssn [REDACTED]",
            "{text}"
        );
    }
}

#[tokio::test]
async fn every_line_names_its_stage_policy_versions_and_route_version() {
    let a = artifact(&[PAY, PII]);
    let b = artifact(&[PAY, PII, FIVE_AND_MORE]);
    let (_e, app, sink) = with_stable(config(), &[&a, &b]).await;
    // No rollout in flight: `stable`, a default decision included.
    let r = eval(&app, req("a")).await.json();
    assert_eq!(r["decision"], "allow");
    assert!(r["reasons"].as_array().unwrap().is_empty(), "{r}");
    eventually("a line", || sink.of_kind("evaluation").len() == 1).await;
    let line = &sink.of_kind("evaluation")[0];
    assert_eq!(line["stage"], "stable", "{line}");
    assert_eq!(line["route_version"], 1, "{line}");
    assert_eq!(
        line["policies"],
        json!({"pay": "1.0.0", "pii": "2.1.0"}),
        "{line}"
    );
    // A request no policy looks at still names the route and stage.
    eval(
        &app,
        json!({"tool": "other", "agent": "a", "org": "o", "session": "s"}),
    )
    .await;
    // A rollout: the route's stage, a new route version.
    set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "percent": 100.0,
               "stage": "canary"}),
    )
    .await;
    eval(&app, req("a")).await;
    // A rollout without a stage named: its mode.
    set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "shadow"}),
    )
    .await;
    eval(&app, req("a")).await;
    eventually("four lines", || sink.of_kind("evaluation").len() == 4).await;
    let lines = sink.of_kind("evaluation");
    assert_eq!(lines[1]["stage"], "stable");
    assert_eq!(lines[1]["route_version"], 1);
    assert_eq!(lines[1]["policies"], json!({}));
    assert_eq!(lines[2]["stage"], "canary");
    assert_eq!(lines[2]["route_version"], 2);
    assert_eq!(lines[2]["cohort"], "candidate");
    assert_eq!(lines[3]["stage"], "shadow");
    assert_eq!(lines[3]["route_version"], 3);
    for l in &lines {
        assert!(l["artifact"].is_string() && l["cohort"].is_string(), "{l}");
    }
}
