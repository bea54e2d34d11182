//! `sluice status` says what a waiting stage waits for (issue 9): with its
//! `min_samples` met and its time up, a stage whose gate needs thousands of
//! requests showed "samples left 0; time left 0s; decision: wait". Now
//! each waiting gate says how many requests it needs at the rates seen and
//! about how long that takes. The daemon in-process, engines on loopback
//! under traffic, the binary as the operator runs it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice::reconcile::{Config, Daemon};

use super::fixture::{self, Engine, GOOD, Repo, TOKEN, Traffic, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_how_many_requests_a_waiting_gate_needs() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    // A shadow gate of 0.001 on 50 samples: it needs 3838 comparisons.
    let toml = fixture::TOML
        .replacen("min_samples = 100", "min_samples = 50", 1)
        .replacen("max_divergence = 0.05", "max_divergence = 0.001", 1);
    repo.commit("Strict shadow", &[("sluice.toml", Some(&toml))]);
    let engines = fixture::engines(2).await;
    let urls: Vec<String> = engines.iter().map(Engine::url).collect();
    let _traffic = Traffic::start(urls.clone(), 2, Duration::from_millis(5));
    let state = tmp.path().join("state");
    let mut cfg = Config::new(&repo.bare.to_string_lossy(), state.clone(), urls, TOKEN);
    cfg.interval = Duration::from_millis(100);
    cfg.listen = "127.0.0.1:0".parse().ok();
    let daemon = Daemon::start(cfg).await.unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    wait_for("installed", Duration::from_secs(10), || {
        daemon.status().stable
    })
    .await;
    repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    // Past its floors (samples and time), the stage still waits.
    wait_for("the floors met", Duration::from_secs(15), || {
        let c = daemon.status().candidate?;
        (c.stage == "shadow" && c.samples_left == Some(0) && c.time_left_ms == Some(0))
            .then_some(())
    })
    .await;

    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--daemon", &format!("http://{addr}")])
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains("decision: wait"), "{text}");
    assert!(text.contains("waiting on:"), "{text}");
    // No shadow decision differs: exactly the flawless count.
    assert!(
        text.contains("max_divergence: needs ~3838 comparisons"),
        "{text}"
    );
    assert!(text.contains("/s"), "a time estimate: {text}");

    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "status",
            "--format",
            "json",
            "--daemon",
            &format!("http://{addr}"),
        ])
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let wait = &doc["candidate"]["waits"][0];
    assert_eq!(wait["gate"], "max_divergence");
    assert_eq!(wait["needed"], 3838);
    assert!(wait["seen"].as_u64().unwrap() >= 50);
    assert!(wait["eta_ms"].as_u64().unwrap() > 0);
    daemon.stop().await.unwrap();
}
