//! What the daemon does not wait for (SPEC §6 "Fencing and liveness"): a
//! git hook right after a fresh start rolls the pushed commit out at once,
//! not at the next `--interval` tick.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::reconcile::{Config, Daemon};
use sluice::rollout::machine::Command;

use super::fixture::{self, BAD, Engine, GOOD, Repo, TOKEN, Traffic, wait_for};
use super::githttp::GitHttp;

fn config(repo: &Repo, state: &Path, engines: &[Engine]) -> Config {
    let urls = engines.iter().map(Engine::url).collect();
    let mut c = Config::new(
        &repo.bare.to_string_lossy(),
        state.to_path_buf(),
        urls,
        TOKEN,
    );
    // Nothing happens on the interval's account in these tests.
    c.interval = Duration::from_secs(3600);
    c.listen = None;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_right_after_a_fresh_start_starts_the_rollout_at_once() {
    fixture::logs();
    // Several fresh daemons: a wake-up lost to a race shows in one of them.
    for round in 0..8 {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path());
        let engines = fixture::engines(3).await;
        let state = tmp.path().join("state");
        let daemon = Daemon::start(config(&repo, &state, &engines))
            .await
            .unwrap();
        // The first commit: fetched and installed at start, without a tick.
        wait_for("installed", Duration::from_secs(10), || {
            let s = daemon.status();
            (s.stable.is_some() && s.engines.iter().all(|e| e.on_route)).then_some(())
        })
        .await;
        repo.commit(
            &format!("Change {round}"),
            &[("policies/shell.policy", Some(GOOD))],
        );
        let pushed = Instant::now();
        daemon.trigger_fetch();
        wait_for(
            "the candidate on every engine",
            Duration::from_secs(5),
            || {
                engines
                    .iter()
                    .all(|e| e.route().is_some_and(|r| r.candidate.is_some()))
                    .then_some(())
            },
        )
        .await;
        eprintln!(
            "round {round}: hook → candidate on 3 engines in {:?}",
            pushed.elapsed()
        );
        daemon.stop().await.unwrap();
    }
}

/// A `sluice engine` process of its own, to stop with SIGSTOP.
struct EngineProcess {
    child: std::process::Child,
    url: String,
}

impl EngineProcess {
    async fn start() -> EngineProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["engine", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-token", TOKEN, "--workers", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        fixture::wait_async("the engine process", Duration::from_secs(10), || {
            let req = http.get(format!("{url}/healthz")).send();
            async move { req.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        EngineProcess { child, url }
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// The route in force, over HTTP.
    async fn route(&self) -> Option<serde_json::Value> {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/route", self.url))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        Some(v["route"].clone())
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice.toml` with a shadow stage that never ends on its own.
fn slow_shadow() -> String {
    fixture::TOML.replacen(
        "min_duration = \"200ms\"\nmax_duration = \"60s\"",
        "min_duration = \"1h\"\nmax_duration = \"2h\"",
        1,
    )
}

/// One engine of four stopped (SIGSTOP) in the middle of a rollout: an
/// operator's rollback reaches the three others at once, not after the
/// stopped one's timeout (10 s here, so that waiting for it would show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_does_not_delay_the_rollback_of_the_others() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.commit("Slow shadow", &[("sluice.toml", Some(&slow_shadow()))]);
    let healthy = fixture::engines(3).await;
    let sick = EngineProcess::start().await;
    let state = tmp.path().join("state");
    let mut cfg = config(&repo, &state, &healthy);
    cfg.engines.push(sick.url.clone());
    cfg.interval = Duration::from_millis(100);
    cfg.engine_timeout = Duration::from_secs(10);
    cfg.engine_grace = Duration::from_secs(60);
    let daemon = Daemon::start(cfg).await.unwrap();
    let stable = wait_for("installed", Duration::from_secs(15), || {
        let s = daemon.status();
        s.engines.iter().all(|e| e.on_route).then_some(s.stable?)
    })
    .await;
    repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    wait_for("shadow on every engine", Duration::from_secs(15), || {
        let s = daemon.status();
        (s.phase == "shadow" && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    assert!(sick.route().await.unwrap()["candidate"].is_string());

    sick.signal("STOP");
    // Reads of the stopped engine are in flight when the command comes.
    fixture::iterations(&daemon, 3, Duration::from_secs(30)).await;
    let asked = Instant::now();
    let command = {
        let reason = Some("hung engine test".to_string());
        let d = &daemon;
        async move {
            d.command(Command::Rollback {
                reason,
                candidate: None,
            })
            .await
        }
    };
    let (answer, took) = tokio::join!(command, async {
        wait_for(
            "the healthy engines on stable",
            Duration::from_secs(5),
            || {
                healthy
                    .iter()
                    .all(|e| {
                        e.route()
                            .is_some_and(|r| r.candidate.is_none() && r.stable == stable.artifact)
                    })
                    .then(|| asked.elapsed())
            },
        )
        .await
    });
    answer.unwrap();
    eprintln!("rollback → 3 healthy engines on stable in {took:?}");
    // Still stopped, it shows as unreachable once its call timed out.
    wait_for(
        "the stopped engine unreachable",
        Duration::from_secs(30),
        || {
            let s = daemon.status();
            let e = s.engines.iter().find(|e| e.url == sick.url)?;
            (!e.reachable).then_some(())
        },
    )
    .await;

    // Let go on, it is moved to stable too.
    sick.signal("CONT");
    fixture::wait_async(
        "the sick engine on stable",
        Duration::from_secs(30),
        || async {
            let r = sick.route().await?;
            (r["candidate"].is_null() && r["stable"] == stable.artifact.as_str()).then_some(())
        },
    )
    .await;
    daemon.stop().await.unwrap();
}

/// The git server stopped (SIGSTOP) with a fetch in flight: an operator's
/// rollback and then a trigger's reach every engine at once, status shows
/// the git error, and the reverts land once the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_git_server_does_not_delay_rollbacks() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.commit("Slow shadow", &[("sluice.toml", Some(&slow_shadow()))]);
    let server = GitHttp::start(tmp.path());
    let engines = fixture::engines(3).await;
    let state = tmp.path().join("state");
    let mut cfg = config(&repo, &state, &engines);
    cfg.repo = server.url("origin.git");
    cfg.interval = Duration::from_millis(100);
    // Long enough that a rollback waiting for git would show; short
    // enough that the test sees the git error.
    cfg.git_timeout = Duration::from_secs(5);
    let daemon = Daemon::start(cfg).await.unwrap();
    let stable = wait_for("installed", Duration::from_secs(15), || {
        let s = daemon.status();
        s.engines.iter().all(|e| e.on_route).then_some(s.stable?)
    })
    .await;
    let on_stable = || {
        engines.iter().all(|e| {
            e.route()
                .is_some_and(|r| r.candidate.is_none() && r.stable == stable.artifact)
        })
    };

    // 1. An operator's rollback.
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    wait_for("shadow", Duration::from_secs(15), || {
        let s = daemon.status();
        (s.phase == "shadow" && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    server.stop();
    daemon.trigger_fetch();
    fixture::iterations(&daemon, 3, Duration::from_secs(10)).await;
    let asked = Instant::now();
    let reason = Some("hung git test".to_string());
    daemon
        .command(Command::Rollback {
            reason,
            candidate: None,
        })
        .await
        .unwrap();
    wait_for("every engine on stable", Duration::from_secs(3), || {
        on_stable().then_some(())
    })
    .await;
    eprintln!(
        "rollback → every engine on stable in {:?} with git stopped",
        asked.elapsed()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the rollback waited for git"
    );
    let error = wait_for("the git error in status", Duration::from_secs(20), || {
        daemon.status().git_error
    })
    .await;
    assert!(error.contains("--git-timeout"), "{error}");
    assert_eq!(daemon.status().reverts.len(), 1, "the revert waits for git");
    assert!(repo.log()[0].1.contains("Block the shell tool"));

    server.resume();
    let revert = wait_for("the revert landed", Duration::from_secs(30), || {
        let (sha, subject) = repo.log().into_iter().next()?;
        (subject == "Revert \"Block the shell tool\"").then_some(sha)
    })
    .await;
    assert!(
        repo.message(&revert)
            .contains(&format!("This reverts commit {c1}."))
    );
    wait_for("settled, git answering", Duration::from_secs(30), || {
        let s = daemon.status();
        (s.reverts.is_empty() && s.git_error.is_none() && s.head.as_deref() == Some(&revert))
            .then_some(())
    })
    .await;

    // 2. A trigger: a harmful change, traffic only once git is stopped.
    let c2 = repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
    daemon.trigger_fetch();
    wait_for("shadow", Duration::from_secs(15), || {
        let s = daemon.status();
        (s.phase == "shadow" && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    server.stop();
    daemon.trigger_fetch();
    fixture::iterations(&daemon, 3, Duration::from_secs(10)).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        6,
        Duration::from_millis(2),
    );
    wait_for("the trigger's rollback", Duration::from_secs(20), || {
        on_stable().then_some(())
    })
    .await;
    let rollback = fixture::audit(&state)
        .into_iter()
        .rev()
        .find(|t| t.event == "rollback")
        .unwrap();
    assert_eq!(rollback.cause, sluice::rollout::machine::Cause::Trigger);
    assert_eq!(rollback.commit.as_deref(), Some(c2.as_str()));
    // Git stopped: the revert waits, the branch still ends with c2 (the
    // status follows once the iteration that set the routes ends).
    wait_for(
        "the revert pending in status",
        Duration::from_secs(10),
        || {
            daemon
                .status()
                .reverts
                .iter()
                .any(|r| r.commit == c2)
                .then_some(())
        },
    )
    .await;
    assert_eq!(repo.log()[0].0, c2);
    server.resume();
    let second = wait_for("the second revert landed", Duration::from_secs(30), || {
        let s = daemon.status();
        let (sha, subject) = repo.log().into_iter().next()?;
        (s.reverts.is_empty() && subject.starts_with("Revert")).then_some(sha)
    })
    .await;
    let message = repo.message(&second);
    assert!(
        message.contains(&format!("This reverts commit {c2}.")),
        "{message}"
    );
    fixture::assert_consistent(&fixture::audit(&state));
    daemon.stop().await.unwrap();
}
