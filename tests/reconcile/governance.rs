//! Governance (issue 15, SPEC §9) under the reconcile daemon: an observe
//! scope moved to enforce is a commit like any other, rolled out stage by
//! stage, audited, and seen in shadow as the divergence it is.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::api::evaluate::EvalResponse;
use sluice::api::gate::Gate;
use sluice::model::ir::DecisionKind;
use sluice::reconcile::Daemon;

use super::fixture::{self, BAD, Engine, Repo, TOML, Traffic, audit, events, wait_for};

/// How long any one wait may take (a loaded machine builds slowly).
const LIMIT: Duration = Duration::from_secs(40);

/// The scope's trace cases while it is observed: agent-0's search is
/// answered `allow` (trace replay judges the answer), agent-1's is denied.
const OBSERVED_TRACES: &str = r#"{"request": {"tool": "search", "agent": "agent-0", "session": "s", "args": {}}, "expect": "allow"}
{"request": {"tool": "search", "agent": "agent-1", "session": "s", "args": {}}, "expect": "deny", "code": "NO_SEARCH"}
"#;

/// The same once the scope is enforced.
const ENFORCED_TRACES: &str = r#"{"request": {"tool": "search", "agent": "agent-0", "session": "s", "args": {}}, "expect": "deny", "code": "NO_SEARCH"}
{"request": {"tool": "search", "agent": "agent-1", "session": "s", "args": {}}, "expect": "deny", "code": "NO_SEARCH"}
"#;

/// `sluice.toml` with the fixture's compressed stages, gates loose enough
/// for a change meant to deny more: enforcing agent-0's searches moves about
/// 1/15 of the traffic from allow to deny, which a 0.05 divergence or a 0.1
/// deny-rate delta would hold for long (their intervals straddle the limit).
fn plan() -> String {
    let loose = TOML
        .replace("max_divergence = 0.05", "max_divergence = 0.5")
        .replace("max_deny_rate_delta = 0.1", "max_deny_rate_delta = 0.5");
    assert!(loose.contains("max_divergence = 0.5") && loose.contains("max_deny_rate_delta = 0.5"));
    loose
}

/// One request to an engine's `/v1/evaluate`.
async fn evaluate(engine: &Engine, agent: &str) -> EvalResponse {
    let body = json!({
        "tool": "search", "agent": agent, "session": "s-governance", "args": {},
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/evaluate", engine.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_moved_from_observe_to_enforce_is_rolled_out_stage_by_stage() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    // The stable commit: search is denied, but agent-0 is observed.
    let observing = format!(
        "{}\n[governance]\nobserve = {{ agent = [\"agent-0\"] }}\n",
        plan()
    );
    let s0 = repo.commit(
        "Block search, observing agent-0",
        &[
            ("sluice.toml", Some(&observing)),
            ("policies/search.policy", Some(BAD)),
            ("traces/governance.jsonl", Some(OBSERVED_TRACES)),
        ],
    );
    let engines = fixture::engines(2).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        4,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let daemon = Daemon::start(fixture::config(&repo, &state, &engines))
        .await
        .unwrap();
    let a0 = wait_for("the observing commit installed", LIMIT, || {
        let s = daemon.status();
        let st = s.stable?;
        (st.commit.as_deref() == Some(s0.as_str()) && s.engines.iter().all(|e| e.on_route))
            .then_some(st.artifact)
    })
    .await;
    for e in &engines {
        let r = evaluate(e, "agent-0").await;
        assert_eq!(
            (r.decision, r.observed, r.audit, r.artifact.as_str()),
            (
                DecisionKind::Allow,
                Some(DecisionKind::Deny),
                true,
                a0.as_str()
            )
        );
        assert_eq!(r.reasons[0].code.as_deref(), Some("NO_SEARCH"));
        let r = evaluate(e, "agent-1").await;
        assert_eq!((r.decision, r.observed), (DecisionKind::Deny, None));
    }

    // The scope moved to enforce: `[governance]` deleted, and the scope's
    // trace now expects the deny.
    let c1 = repo.commit(
        "Enforce the search block on agent-0",
        &[
            ("sluice.toml", Some(&plan())),
            ("traces/governance.jsonl", Some(ENFORCED_TRACES)),
        ],
    );
    daemon.trigger_fetch();
    let a1 = wait_for("the enforcing commit promoted", LIMIT, || {
        let s = daemon.status();
        let st = s.stable?;
        (st.commit.as_deref() == Some(c1.as_str()) && s.engines.iter().all(|e| e.on_route))
            .then_some(st.artifact)
    })
    .await;
    assert_ne!(a1, a0, "the scope is part of the artifact's hash");

    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    assert_eq!(
        events(&lines),
        [
            "install:empty>stable",
            "start:stable>replay",
            "advance:replay>shadow",
            "advance:shadow>canary",
            "advance:canary>full",
            "complete:full>stable",
        ]
    );
    for t in &lines[1..] {
        assert_eq!(t.commit.as_deref(), Some(c1.as_str()), "{t:?}");
    }
    // Replayed under the stable commit's traces as well as its own: the
    // stable commit's case that expected agent-0's search allowed is now a
    // false positive (not catastrophic: the gate is `max_catastrophic = 0`).
    let replay = lines[1].figures.replay.expect("the replay figures");
    assert_eq!(
        (
            replay.cases,
            replay.passed,
            replay.catastrophic,
            replay.false_positives
        ),
        (6, 5, 0, 1),
        "{replay:?}"
    );
    // Shadow: stable answered agent-0's searches `allow` (observed), the
    // candidate denies them: that, and only that, diverges.
    let shadow = lines[3]
        .figures
        .observed
        .clone()
        .expect("the shadow figures");
    assert!(shadow.compared >= 100, "{shadow:?}");
    assert!(shadow.diverged > 0, "{shadow:?}");
    assert!(shadow.diverged * 4 < shadow.compared, "{shadow:?}");
    assert!(
        shadow.candidate.denies > shadow.stable.denies && shadow.stable.denies > 0,
        "{shadow:?}"
    );
    let gates = lines[3].figures.gates.as_ref().unwrap();
    let divergence = &gates[0];
    assert_eq!(divergence.gate, Gate::MaxDivergence);
    assert!(divergence.estimate > 0.0, "{divergence:?}");

    // Every engine now denies what it only observed before.
    for e in &engines {
        let r = e.route().expect("a route");
        assert_eq!((r.stable.as_str(), r.candidate), (a1.as_str(), None));
        let r = evaluate(e, "agent-0").await;
        assert_eq!(
            (r.decision, r.observed, r.artifact.as_str()),
            (DecisionKind::Deny, None, a1.as_str())
        );
        assert_eq!(r.reasons[0].code.as_deref(), Some("NO_SEARCH"));
        let v: Value = serde_json::to_value(&r).unwrap();
        assert!(v.get("observed").is_none(), "{v}");
    }
    daemon.stop().await.unwrap();
}

/// search denied to every agent but agent-0: inside agent-0's observe scope
/// the policies now allow what they denied, and nothing else changes.
const SPARE_AGENT_0: &str = r#"policy search version 1.1.0 {
  rule no_search {
    when tool == "search" and agent != "agent-0"
    deny NO_SEARCH "No search"
  }
}
"#;

/// A candidate that answers every request as stable does but changes what
/// the policies decide inside the observe scope: the shadow stage counts
/// those requests as diverging (what enforcement would answer differs), so
/// a tight `max_divergence` holds it — it is rolled back at shadow, where
/// comparing answers alone would have let it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_sees_a_candidate_change_what_an_observed_scope_would_get() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    // agent-0's searches are about 1/15 of the traffic: past a 0.02 gate.
    let tight = TOML.replace("max_divergence = 0.05", "max_divergence = 0.02");
    assert!(tight.contains("max_divergence = 0.02"));
    let observing = format!("{tight}\n[governance]\nobserve = {{ agent = [\"agent-0\"] }}\n");
    let s0 = repo.commit(
        "Block search, observing agent-0",
        &[
            ("sluice.toml", Some(&observing)),
            ("policies/search.policy", Some(BAD)),
            ("traces/governance.jsonl", Some(OBSERVED_TRACES)),
        ],
    );
    let engines = fixture::engines(2).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        4,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let daemon = Daemon::start(fixture::config(&repo, &state, &engines))
        .await
        .unwrap();
    wait_for("the observing commit installed", LIMIT, || {
        let s = daemon.status();
        (s.stable?.commit.as_deref() == Some(s0.as_str()) && s.engines.iter().all(|e| e.on_route))
            .then_some(())
    })
    .await;

    let c1 = repo.commit(
        "Let agent-0 search",
        &[("policies/search.policy", Some(SPARE_AGENT_0))],
    );
    daemon.trigger_fetch();
    wait_for("the candidate rolled back", LIMIT, || {
        let s = daemon.status();
        s.quarantine.iter().any(|q| q.commit == c1).then_some(())
    })
    .await;
    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    let mine: Vec<_> = lines
        .iter()
        .filter(|t| t.commit.as_deref() == Some(c1.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        events(&mine)[..3],
        [
            "start:stable>replay",
            "advance:replay>shadow",
            "rollback:shadow>stable"
        ]
    );
    assert!(
        mine[2].reason.contains("gate max_divergence"),
        "{}",
        mine[2].reason
    );
    // The answers never differed: every request got from the candidate what
    // it got from stable (agent-0's searches `allow` on both sides), so the
    // candidate denies no more than stable (fewer only by the shadow
    // evaluations still queued); the divergence is the observed scope's.
    let shadow = mine[2]
        .figures
        .observed
        .clone()
        .expect("the shadow figures");
    assert!(shadow.diverged > 0, "{shadow:?}");
    assert!(
        shadow.candidate.denies <= shadow.stable.denies,
        "{shadow:?}"
    );
    daemon.stop().await.unwrap();
}
