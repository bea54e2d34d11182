//! End to end: commits pushed with the `git` command line to a bare
//! repository, three engines on loopback under synthetic traffic, the daemon
//! in-process, compressed stages; the operator commands through the binary;
//! what the daemon reads of each engine, counted.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use serde_json::Value;
use sluice::api::lease::{LeaseGranted, LeaseRequest, RouteRequest};
use sluice::api::route::RouteInForce;
use sluice::api::state::LiveState;
use sluice::api::stats::EngineStats;
use sluice::reconcile::client::{BoxFuture, EngineClient, EngineError, HttpEngine};
use sluice::reconcile::{Config, Daemon};

use super::fixture::{
    self, BAD, BROKEN, Engine, GOOD, Repo, TOKEN, Traffic, audit, events, wait_for,
};

fn config(repo: &Repo, state: &Path, engines: &[Engine]) -> Config {
    let urls = engines.iter().map(Engine::url).collect();
    let mut c = Config::new(
        &repo.bare.to_string_lossy(),
        state.to_path_buf(),
        urls,
        TOKEN,
    );
    c.interval = Duration::from_millis(100);
    c.listen = "127.0.0.1:0".parse().ok();
    c
}

#[track_caller]
fn assert_all_on_stable(engines: &[Engine], artifact: &str) {
    for e in engines {
        let r = e.route().expect("a route");
        assert_eq!(r.stable, artifact, "engine {}", e.url());
        assert_eq!(r.candidate, None, "engine {}", e.url());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_change_reaches_full_and_a_bad_one_is_reverted_for_good() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c0 = repo.log()[0].0.clone();
    let engines = fixture::engines(3).await;
    let urls: Vec<String> = engines.iter().map(Engine::url).collect();
    let _traffic = Traffic::start(urls, 6, Duration::from_millis(2));
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();

    // The first clean commit is installed as stable directly.
    let a0 = fixture::artifact_of(&repo, &c0);
    wait_for(
        "the first commit installed",
        Duration::from_secs(10),
        || {
            let s = daemon.status();
            (s.stable?.commit? == c0 && s.engines.iter().all(|e| e.on_route)).then_some(())
        },
    )
    .await;
    assert_all_on_stable(&engines, &a0);

    // A good change walks every stage to stable.
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    let a1 = fixture::artifact_of(&repo, &c1);
    wait_for("the good change promoted", Duration::from_secs(30), || {
        let s = daemon.status();
        (s.stable?.commit? == c1 && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    assert_all_on_stable(&engines, &a1);
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
    let shadow_exit = &lines[3];
    let figures = serde_json::to_value(&shadow_exit.figures).unwrap();
    assert!(figures["gates"][0]["gate"] == "max_divergence");
    assert_eq!(daemon.status().previous.unwrap().artifact, a0);

    // A bad change is rolled back and its commit reverted on the branch.
    let c2 = repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
    daemon.trigger_fetch();
    let revert = wait_for("the bad change reverted", Duration::from_secs(30), || {
        let s = daemon.status();
        let quarantined = s.quarantine.iter().any(|q| q.commit == c2);
        let (sha, subject) = repo.log().into_iter().next()?;
        (quarantined && s.reverts.is_empty() && subject == "Revert \"Block search\"").then_some(sha)
    })
    .await;
    assert_all_on_stable(&engines, &a1);
    let msg = repo.message(&revert);
    assert!(msg.contains(&format!("This reverts commit {c2}.")), "{msg}");
    assert!(msg.contains("stage `shadow`"), "{msg}");
    assert!(msg.contains("Trigger: "), "{msg}");
    assert!(msg.contains("candidate: "), "{msg}");

    // The revert commit brings the branch back to stable: nothing rolls out.
    wait_for("the revert acted on", Duration::from_secs(10), || {
        audit(&state)
            .last()
            .filter(|t| t.commit.as_deref() == Some(revert.as_str()))
            .map(|t| t.event.clone())
    })
    .await;
    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    let tail: Vec<String> = events(&lines).into_iter().skip(6).collect();
    assert_eq!(
        tail,
        [
            "start:stable>replay",
            "advance:replay>shadow",
            "rollback:shadow>stable",
            "reverted:stable>stable",
            "unchanged:stable>stable",
        ]
    );
    let rollback = &lines[8];
    assert_eq!(rollback.cause, sluice::rollout::machine::Cause::Trigger);

    // A restarted daemon does not re-apply it either.
    daemon.stop().await.unwrap();
    let puts: Vec<u64> = engines.iter().map(Engine::route_puts).collect();
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();
    // Six iterations (at the 100 ms interval, what 600 ms gave).
    fixture::iterations(&daemon, 6, Duration::from_secs(10)).await;
    assert_eq!(audit(&state).len(), lines.len());
    assert_all_on_stable(&engines, &a1);
    // Engines already on the right route are left alone.
    assert_eq!(
        engines.iter().map(Engine::route_puts).collect::<Vec<_>>(),
        puts
    );
    let s = daemon.status();
    assert_eq!(s.phase, "stable");
    assert_eq!(s.head.as_deref(), Some(revert.as_str()));

    // A commit that fails its checks is refused and never rolled out.
    let c3 = repo.commit("Broken rule", &[("policies/broken.policy", Some(BROKEN))]);
    daemon.trigger_fetch();
    let refused = wait_for("the broken commit refused", Duration::from_secs(10), || {
        daemon.status().refused.filter(|r| r.commit == c3)
    })
    .await;
    assert!(
        refused.reason.contains("type::unknown_field"),
        "{}",
        refused.reason
    );
    assert_eq!(audit(&state).last().unwrap().event, "refuse");
    assert_all_on_stable(&engines, &a1);
    daemon.stop().await.unwrap();
}

/// Runs the binary with the daemon's address and token.
fn sluice(addr: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--daemon", &format!("http://{addr}")])
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_pause_promote_resume_and_roll_back_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    // Live stages that would wait an hour: only operators move them.
    let slow = fixture::TOML.replace(
        "min_duration = \"200ms\"\nmax_duration = \"60s\"",
        "min_duration = \"1h\"\nmax_duration = \"2h\"",
    );
    repo.commit("Slow stages", &[("sluice.toml", Some(&slow))]);
    let engines = fixture::engines(2).await;
    let urls: Vec<String> = engines.iter().map(Engine::url).collect();
    let _traffic = Traffic::start(urls, 4, Duration::from_millis(3));
    let state = tmp.path().join("state");
    // A decision log from the engines, replayed against each candidate.
    let log = tmp.path().join("decisions.jsonl");
    let line = |tool: &str| {
        serde_json::json!({"kind": "evaluation", "decision": "allow", "reasons": [],
                           "request": {"tool": tool, "agent": "a", "session": "s", "args": {}}})
        .to_string()
    };
    std::fs::write(
        &log,
        [line("shell.exec"), line("shell.exec"), line("search")].join("\n"),
    )
    .unwrap();
    let mut cfg = config(&repo, &state, &engines);
    cfg.decision_log = Some(log);
    let daemon = Daemon::start(cfg).await.unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    wait_for("installed", Duration::from_secs(10), || {
        daemon.status().stable
    })
    .await;

    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    // The git hook, as a forge would call it.
    let hook = reqwest::Client::new()
        .post(format!("http://{addr}/v1/hooks/git"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 202);
    wait_for("shadow", Duration::from_secs(10), || {
        (daemon.status().phase == "shadow").then_some(())
    })
    .await;
    wait_for("figures", Duration::from_secs(10), || {
        daemon.status().candidate?.observed
    })
    .await;

    // Without the token: 401.
    let anon = reqwest::get(format!("http://{addr}/v1/status"))
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    let (code, out, err) = sluice(&addr, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("phase: shadow"), "{out}");
    assert!(out.contains("[shadow]"), "{out}");
    assert!(out.contains("max_divergence"), "{out}");
    assert!(out.contains("time left"), "{out}");
    assert!(out.contains("engines: 2 of 2 on route"), "{out}");
    assert!(out.contains("decision log: 2 of 3 decisions flip"), "{out}");
    assert!(out.contains("2 × allow → deny: shell.no_shell"), "{out}");

    let (code, out, _) = sluice(&addr, &["status", "--format", "json"]);
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["candidate"]["commit"], c1.as_str());
    assert_eq!(doc["candidate"]["gates"][0]["gate"], "max_divergence");
    assert!(doc["candidate"]["samples_left"].is_number());

    let (code, out, err) = sluice(&addr, &["pause", "--reason", "looking at it"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("looking at it"), "{out}");
    let (code, _, err) = sluice(&addr, &["pause"]);
    assert_eq!(code, 1, "a second pause is refused");
    assert!(err.contains("already paused"), "{err}");
    let (_, out, _) = sluice(&addr, &["status"]);
    assert!(out.contains("PAUSED: looking at it"), "{out}");

    let (code, out, err) = sluice(&addr, &["promote"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("skipped"), "{out}");
    wait_for("canary on every engine", Duration::from_secs(5), || {
        let s = daemon.status();
        (s.phase == "canary" && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    // Promote moved it one stage; the operator's pause holds it there.
    let (_, out, _) = sluice(&addr, &["status"]);
    assert!(out.contains("PAUSED: looking at it"), "{out}");
    let (code, _, err) = sluice(&addr, &["resume"]);
    assert_eq!(code, 0, "the pause outlived the promote: {err}");

    let (code, _, err) = sluice(&addr, &["rollback", "--reason", "customer report"]);
    assert_eq!(code, 0, "{err}");
    let stable = daemon.status().stable.unwrap().artifact;
    // The engines are on stable as soon as the command returns.
    assert_all_on_stable(&engines, &stable);
    let revert = wait_for("the revert pushed", Duration::from_secs(10), || {
        let (sha, subject) = repo.log().into_iter().next()?;
        (subject == "Revert \"Block the shell tool\"").then_some(sha)
    })
    .await;
    assert!(repo.message(&revert).contains("operator: customer report"));
    let (code, _, _) = sluice(&addr, &["promote"]);
    assert_eq!(code, 1, "nothing to promote");

    wait_for("the revert acted on", Duration::from_secs(10), || {
        let last = audit(&state).pop()?;
        (last.commit.as_deref() == Some(revert.as_str())).then_some(())
    })
    .await;
    let lines = audit(&state);
    fixture::assert_consistent(&lines);
    assert_eq!(
        events(&lines),
        [
            "install:empty>stable",
            "start:stable>replay",
            "advance:replay>shadow",
            "pause:shadow>shadow (paused)",
            "promote:shadow (paused)>canary (paused)",
            "resume:canary (paused)>canary",
            "rollback:canary>stable",
            "reverted:stable>stable",
            "unchanged:stable>stable",
        ]
    );
    let promote = lines.iter().find(|t| t.event == "promote").unwrap();
    assert_eq!(promote.cause, sluice::rollout::machine::Cause::Operator);
    assert!(promote.reason.contains("skipped"));
    daemon.stop().await.unwrap();
}

/// An engine client that counts the documents the daemon reads.
struct Counting {
    inner: HttpEngine,
    routes: AtomicUsize,
    stats: AtomicUsize,
    live_states: AtomicUsize,
}

impl Counting {
    fn new(url: &str) -> Arc<Counting> {
        Arc::new(Counting {
            inner: HttpEngine::new(url, TOKEN, Duration::from_secs(2)).unwrap(),
            routes: AtomicUsize::new(0),
            stats: AtomicUsize::new(0),
            live_states: AtomicUsize::new(0),
        })
    }

    /// (route reads, stats reads, live-state reads).
    fn reads(&self) -> (usize, usize, usize) {
        (
            self.routes.load(SeqCst),
            self.stats.load(SeqCst),
            self.live_states.load(SeqCst),
        )
    }
}

impl EngineClient for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn upload<'a>(
        &'a self,
        hash: &'a str,
        artifact: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        self.inner.upload(hash, artifact)
    }

    fn set_route<'a>(&'a self, req: &'a RouteRequest) -> BoxFuture<'a, Result<(), EngineError>> {
        self.inner.set_route(req)
    }

    fn get_route(&self) -> BoxFuture<'_, Result<Option<RouteInForce>, EngineError>> {
        self.routes.fetch_add(1, SeqCst);
        self.inner.get_route()
    }

    fn renew_lease<'a>(
        &'a self,
        req: &'a LeaseRequest,
    ) -> BoxFuture<'a, Result<LeaseGranted, EngineError>> {
        self.inner.renew_lease(req)
    }

    fn stats(&self) -> BoxFuture<'_, Result<EngineStats, EngineError>> {
        self.stats.fetch_add(1, SeqCst);
        self.inner.stats()
    }

    fn live_state(&self) -> BoxFuture<'_, Result<Option<LiveState>, EngineError>> {
        self.live_states.fetch_add(1, SeqCst);
        self.inner.live_state()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_engines_live_state_is_read_once_per_commit_and_its_route_once_per_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let engines = fixture::engines(2).await;
    let clients: Vec<Arc<Counting>> = engines.iter().map(|e| Counting::new(&e.url())).collect();
    let state = tmp.path().join("state");
    let mut cfg = config(&repo, &state, &engines);
    cfg.listen = None;
    let daemon = Daemon::start_with(
        cfg,
        clients
            .iter()
            .map(|c| c.clone() as Arc<dyn EngineClient>)
            .collect(),
    )
    .await
    .unwrap();
    wait_for("installed", Duration::from_secs(10), || {
        daemon.status().stable
    })
    .await;
    repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    wait_for("shadow", Duration::from_secs(10), || {
        (daemon.status().phase == "shadow").then_some(())
    })
    .await;
    fixture::iterations(&daemon, 3, Duration::from_secs(5)).await;
    daemon.stop().await.unwrap();
    for (c, e) in clients.iter().zip(&engines) {
        let (routes, stats, live) = c.reads();
        // Two commits built (the first, installed; the second, started):
        // one read of the live state each.
        assert_eq!(live, 2, "engine {}", e.url());
        // Every pass reads the route and the figures once.
        assert_eq!(routes, stats, "engine {}", e.url());
    }
}
