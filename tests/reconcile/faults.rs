//! Faults: an engine that goes down in the middle of a stage, and a git
//! remote that is gone when a rollback needs to push its revert.

use std::sync::Arc;
use std::time::Duration;

use sluice::reconcile::{Config, Daemon};
use sluice::rollout::machine::Command;

use super::fixture::{self, Engine, GOOD, Repo, SkewClock, TOKEN, Traffic, audit, wait_for};

fn config(repo: &Repo, state: &std::path::Path, engines: &[Engine]) -> Config {
    let urls = engines.iter().map(Engine::url).collect();
    let mut c = Config::new(
        &repo.bare.to_string_lossy(),
        state.to_path_buf(),
        urls,
        TOKEN,
    );
    c.interval = Duration::from_millis(100);
    c.listen = None;
    c.engine_grace = Duration::from_millis(600);
    c.engine_timeout = Duration::from_millis(500);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_down_mid_stage_pauses_the_rollout_until_it_answers_again() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    // A shadow stage of one second: it would pass during the outage.
    let toml = fixture::TOML.replacen("min_duration = \"200ms\"", "min_duration = \"1s\"", 1);
    repo.commit("Longer shadow", &[("sluice.toml", Some(&toml))]);
    let mut engines = fixture::engines(3).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        6,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let clock = Arc::new(SkewClock::default());
    let mut cfg = config(&repo, &state, &engines);
    cfg.clock = clock.clone();
    let daemon = Daemon::start(cfg).await.unwrap();
    wait_for("installed", Duration::from_secs(10), || {
        daemon.status().stable
    })
    .await;
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    wait_for("shadow", Duration::from_secs(10), || {
        let s = daemon.status();
        (s.phase == "shadow" && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    let seen = audit(&state).len();
    engines[1].stop().await;

    let paused = wait_for("the pause", Duration::from_secs(10), || {
        daemon.status().paused
    })
    .await;
    assert!(paused.reason.contains("unreachable"), "{}", paused.reason);
    assert!(
        paused.reason.contains(&engines[1].url()),
        "{}",
        paused.reason
    );
    // Well past the stage's minimum duration (the daemon's clock moved
    // on, and it ran since): still in shadow, paused.
    clock.advance(Duration::from_millis(1500));
    fixture::iterations(&daemon, 3, Duration::from_secs(10)).await;
    let s = daemon.status();
    assert_eq!(s.phase, "shadow");
    assert!(!s.engines[1].reachable);
    let after: Vec<String> = audit(&state)[seen..]
        .iter()
        .map(|t| t.event.clone())
        .collect();
    assert_eq!(after, ["pause"]);

    // The engine comes back empty: it gets the artifacts and the route again.
    engines[1].start_again().await;
    wait_for(
        "the engine back on the route",
        Duration::from_secs(10),
        || {
            let s = daemon.status();
            s.engines.iter().all(|e| e.on_route).then_some(())
        },
    )
    .await;
    assert_eq!(engines[1].route().unwrap().stage.as_deref(), Some("shadow"));
    // The pause was the engine's: it ends by itself, and the rollout goes
    // on to full with no operator.
    wait_for("the change promoted", Duration::from_secs(30), || {
        daemon.status().stable?.commit.filter(|c| *c == c1)
    })
    .await;
    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    let resume = &lines[seen + 1];
    assert_eq!(resume.event, "resume", "{:#?}", &lines[seen..]);
    assert_eq!(resume.cause, sluice::rollout::machine::Cause::Daemon);
    assert!(
        resume.reason.contains(&engines[1].url()),
        "{}",
        resume.reason
    );
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_git_remote_a_rollback_still_reaches_every_engine_and_the_revert_lands_later() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let slow = fixture::TOML.replacen(
        "min_duration = \"200ms\"\nmax_duration = \"60s\"",
        "min_duration = \"1h\"\nmax_duration = \"2h\"",
        1,
    );
    repo.commit("Slow shadow", &[("sluice.toml", Some(&slow))]);
    let engines = fixture::engines(3).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        6,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();
    let stable = wait_for("installed", Duration::from_secs(10), || {
        daemon.status().stable
    })
    .await;
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    wait_for("shadow", Duration::from_secs(10), || {
        let s = daemon.status();
        (s.phase == "shadow" && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;

    // The remote goes away.
    let away = tmp.path().join("away.git");
    std::fs::rename(&repo.bare, &away).unwrap();
    let reason = Some("remote down test".to_string());
    daemon.command(Command::rollback(reason)).await.unwrap();
    // Every engine is on stable as soon as the command returns.
    for e in &engines {
        let r = e.route().unwrap();
        assert_eq!(
            (r.stable.as_str(), r.candidate.as_deref()),
            (stable.artifact.as_str(), None)
        );
    }
    let failing = wait_for("a failed push", Duration::from_secs(10), || {
        let s = daemon.status();
        let r = s.reverts.first()?;
        (r.attempts >= 2).then(|| r.last_error.clone().unwrap_or_default())
    })
    .await;
    assert!(!failing.is_empty());
    assert!(!audit(&state).iter().any(|t| t.event == "reverted"));

    // Meanwhile the branch moves on, then the remote is back.
    let moved = repo.commit_via(
        &away,
        "Add a README",
        &[("README.md", Some("# policies\n"))],
    );
    std::fs::rename(&away, &repo.bare).unwrap();
    let revert = wait_for("the revert landed", Duration::from_secs(15), || {
        let (sha, subject) = repo.log().into_iter().next()?;
        (subject == "Revert \"Block the shell tool\"").then_some(sha)
    })
    .await;
    // Re-based on the new head.
    assert_eq!(
        fixture::git(&repo.bare, &["rev-parse", &format!("{revert}^")]),
        moved
    );
    assert!(
        repo.message(&revert)
            .contains(&format!("This reverts commit {c1}."))
    );
    wait_for("the revert settled", Duration::from_secs(10), || {
        let s = daemon.status();
        (s.reverts.is_empty() && s.head.as_deref() == Some(revert.as_str())).then_some(())
    })
    .await;
    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    assert!(lines.iter().any(|t| t.event == "reverted"));
    for e in &engines {
        assert_eq!(e.route().unwrap().candidate, None);
    }
    daemon.stop().await.unwrap();
}
