//! The `max_cost_ratio` gate (issue 15) under the reconcile daemon, with
//! engines on loopback and real traffic: a candidate whose inventory gives
//! agent-0 an envelope its real calls are far past is rolled back at the
//! canary (and reverted), one whose envelope holds them advances to full.
//! The envelopes are set far from the traffic's rate on either side, so the
//! outcome does not hang on how fast a loaded machine sends.

use std::time::Duration;

use sluice::api::gate::Gate;
use sluice::reconcile::Daemon;
use sluice::rollout::gate::Verdict;

use super::fixture::{self, Engine, GOOD, Repo, TOML, Traffic, audit, events, wait_for};

/// How long any one wait may take (a loaded machine builds slowly).
const LIMIT: Duration = Duration::from_secs(40);

/// The fixture's plan with the cost gate on its canary: agent-0's calls in
/// the candidate cohort, projected to a day, at most 1.5 times its envelope.
fn plan() -> String {
    let with_gate = TOML.replace(
        "max_deny_rate_delta = 0.1\n",
        "max_deny_rate_delta = 0.1\nmax_cost_ratio = 1.5\n",
    );
    assert!(with_gate.contains("max_cost_ratio = 1.5"));
    with_gate
}

/// agent-0's inventory entry with an envelope of `per_day` calls.
fn agent0(per_day: u64) -> String {
    format!(
        "id = \"agent-0\"\nowner = \"search-team\"\ntools = [\"search\", \"email.send\", \"payments.transfer\"]\ncost = {{ calls_per_day = {per_day} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_past_its_cost_envelope_is_rolled_back_one_within_it_advances() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let s0 = repo.commit(
        "Plan with a cost gate",
        &[
            ("sluice.toml", Some(&plan())),
            ("policies/shell.policy", Some(GOOD)),
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
    wait_for("the first commit installed", LIMIT, || {
        let s = daemon.status();
        (s.stable?.commit.as_deref() == Some(s0.as_str()) && s.engines.iter().all(|e| e.on_route))
            .then_some(())
    })
    .await;

    // agent-0 inventoried at 10 calls a day: it makes hundreds a second.
    let over = repo.commit(
        "Inventory agent-0 at 10 calls a day",
        &[("agents/agent-0.toml", Some(&agent0(10)))],
    );
    daemon.trigger_fetch();
    let revert = wait_for("the over-budget candidate reverted", LIMIT, || {
        let s = daemon.status();
        let quarantined = s.quarantine.iter().any(|q| q.commit == over);
        let (sha, subject) = repo.log().into_iter().next()?;
        (quarantined && s.reverts.is_empty() && subject.starts_with("Revert \"Inventory agent-0"))
            .then_some(sha)
    })
    .await;
    let msg = repo.message(&revert);
    assert!(msg.contains("stage `canary`"), "{msg}");
    assert!(msg.contains("max_cost_ratio of `agent-0`"), "{msg}");
    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    let mine: Vec<_> = lines
        .iter()
        .filter(|t| t.commit.as_deref() == Some(over.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        events(&mine),
        [
            "start:stable>replay",
            "advance:replay>shadow",
            "advance:shadow>canary",
            "rollback:canary>stable",
            "reverted:stable>stable",
        ]
    );
    let rollback = &mine[3];
    assert_eq!(rollback.cause, sluice::rollout::machine::Cause::Trigger);
    assert!(
        rollback.reason.contains("gate max_cost_ratio of `agent-0`"),
        "{}",
        rollback.reason
    );
    // The figures behind it: the engines counted agent-0's calls in the
    // candidate cohort, beside the candidate's envelope.
    let observed = rollback.figures.observed.clone().expect("figures");
    let a0 = observed
        .agents
        .iter()
        .find(|a| a.agent == "agent-0")
        .unwrap_or_else(|| panic!("{observed:?}"));
    assert_eq!(a0.calls_per_day, 10);
    assert!(
        a0.calls > 0 && a0.calls < observed.candidate.requests,
        "{observed:?}"
    );
    let gate = rollback
        .figures
        .gates
        .iter()
        .flatten()
        .find(|g| g.gate == Gate::MaxCostRatio)
        .expect("the cost gate read");
    assert_eq!(gate.verdict, Verdict::Fail);
    assert!(gate.interval.lo > 1.5, "{gate:?}");

    // The same agent at a billion calls a day: within its envelope.
    let within = repo.commit(
        "Inventory agent-0 at a billion calls a day",
        &[("agents/agent-0.toml", Some(&agent0(1_000_000_000)))],
    );
    daemon.trigger_fetch();
    wait_for("the within-budget candidate promoted", LIMIT, || {
        let s = daemon.status();
        (s.stable?.commit.as_deref() == Some(within.as_str())
            && s.engines.iter().all(|e| e.on_route))
        .then_some(())
    })
    .await;
    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    let mine: Vec<_> = lines
        .iter()
        .filter(|t| t.commit.as_deref() == Some(within.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        events(&mine),
        [
            "start:stable>replay",
            "advance:replay>shadow",
            "advance:shadow>canary",
            "advance:canary>full",
            "complete:full>stable",
        ]
    );
    let gate = mine[3]
        .figures
        .gates
        .iter()
        .flatten()
        .find(|g| g.gate == Gate::MaxCostRatio)
        .expect("the cost gate read");
    assert_eq!(gate.verdict, Verdict::Pass);
    assert_eq!(gate.subject.as_deref(), Some("agent-0"));
    assert!(gate.interval.hi <= 1.5 && gate.estimate > 0.0, "{gate:?}");
    daemon.stop().await.unwrap();
}

/// `sluice status` names the agent a cost reading is of.
#[test]
fn status_names_the_agent_of_the_cost_reading() {
    use sluice::api::gate::{GateReading, Interval};
    use sluice::api::status::{CandidateStatus, Status};
    let reading = GateReading {
        gate: Gate::MaxCostRatio,
        limit: 1.2,
        estimate: 1.85,
        interval: Interval { lo: 1.62, hi: 2.11 },
        verdict: Verdict::Fail,
        subject: Some("billing-bot".into()),
    };
    let status = Status {
        candidate: Some(CandidateStatus {
            stage: "canary".into(),
            gates: vec![reading],
            ..CandidateStatus::default()
        }),
        ..Status::default()
    };
    let text = sluice::cli::render_status(&status);
    assert!(text.contains("max_cost_ratio (billing-bot)"), "{text}");
}
