//! The daemon killed at any instant: it runs as a child process and gets
//! SIGKILL at many moments of two rollouts (a good change to full, then a
//! bad one to its rollback and revert), and is restarted each time. Every
//! run must end in the same state, with a consistent audit log: no stage
//! advanced twice, no rollback lost, one revert commit.
//!
//! Lease handover: the owner killed mid-canary leaves no split running:
//! its engines fall back to stable once its lease lapses, and a second
//! daemon started at once takes the fleet only after that.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixture::{self, BAD, Engine, GOOD, Repo, TOKEN, Traffic, audit, events};

fn spawn(repo: &Repo, state: &Path, engines: &[Engine], log: &Path) -> Child {
    spawn_with(repo, state, engines, log, &[])
}

fn spawn_with(repo: &Repo, state: &Path, engines: &[Engine], log: &Path, extra: &[&str]) -> Child {
    let log = File::options().create(true).append(true).open(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["reconcile", "--repo", repo.bare.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(["--interval", "50ms", "--listen", "127.0.0.1:0"])
        .args(extra)
        .args(["--admin-token", TOKEN])
        .env("RUST_LOG", "sluice=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log);
    for e in engines {
        cmd.args(["--engine", &e.url()]);
    }
    cmd.spawn().unwrap()
}

fn state_json(state: &Path) -> Value {
    std::fs::read(state.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// What a run ends with.
#[derive(Debug)]
struct Outcome {
    events: Vec<String>,
    stable: String,
    quarantined: String,
    /// The transition each kill came after (not compared between runs).
    killed_at: Vec<u64>,
}

const EXPECTED: [&str; 11] = [
    "install:empty>stable",
    "start:stable>replay",
    "advance:replay>shadow",
    "advance:shadow>canary",
    "advance:canary>full",
    "complete:full>stable",
    "start:stable>replay",
    "advance:replay>shadow",
    "rollback:shadow>stable",
    "reverted:stable>stable",
    "unchanged:stable>stable",
];

/// One run: the daemon is killed `delay_ms` (plus a little that varies)
/// after each transition it makes, then restarted, until both rollouts are
/// done; then it runs to the end.
async fn run(delay_ms: u64) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let engines = fixture::engines(3).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        6,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let log = tmp.path().join("daemon.log");
    let mut pushed = 0;
    let mut killed_at = Vec::new();
    // Pushes the good change once the first commit is installed, the bad one
    // once the good one is stable.
    let push = |pushed: &mut usize| {
        let lines = audit(&state);
        let last = lines.last().map(|t| t.event.clone());
        if *pushed == 0 && last.as_deref() == Some("install") {
            repo.commit(
                "Block the shell tool",
                &[("policies/shell.policy", Some(GOOD))],
            );
            *pushed = 1;
        } else if *pushed == 1 && lines.iter().any(|t| t.event == "complete") {
            repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
            *pushed = 2;
        }
    };
    while audit(&state).len() < EXPECTED.len() && killed_at.len() < 20 {
        let before = audit(&state).len();
        let mut child = spawn(&repo, &state, &engines, &log);
        let deadline = Instant::now() + Duration::from_secs(10);
        while audit(&state).len() == before && Instant::now() < deadline {
            push(&mut pushed);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let jitter = (killed_at.len() as u64 * 7) % 20;
        tokio::time::sleep(Duration::from_millis(delay_ms + jitter)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let at = audit(&state).last().map_or(0, |t| t.seq);
        eprintln!(
            "killed {} ms after a transition, at transition {at}",
            delay_ms + jitter
        );
        killed_at.push(at);
    }
    // The last life runs until the end.
    let mut child = spawn(&repo, &state, &engines, &log);
    let start = Instant::now();
    let done = loop {
        push(&mut pushed);
        let lines = audit(&state);
        if lines.len() >= EXPECTED.len() || start.elapsed() > Duration::from_secs(60) {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Nothing more happens once the branch is back on stable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let lines = audit(&state);
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(lines.len(), done.len(), "{daemon_log}");
    fixture::assert_consistent(&lines);

    let s = state_json(&state);
    assert!(s["rollout"].is_null() && s["paused"].is_null(), "{s:#}");
    assert_eq!(s["reverts"], serde_json::json!([]), "{s:#}");
    let reverts = repo
        .log()
        .iter()
        .filter(|(_, subject)| subject == "Revert \"Block search\"")
        .count();
    assert_eq!(reverts, 1, "exactly one revert commit: {:#?}", repo.log());
    let stable = s["stable"]["artifact"].as_str().unwrap().to_string();
    for e in &engines {
        let r = e.route().unwrap();
        assert_eq!(
            (r.stable.as_str(), r.candidate.as_deref()),
            (stable.as_str(), None)
        );
    }
    Outcome {
        events: events(&lines),
        stable,
        quarantined: s["quarantine"][0]["artifact"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        killed_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_moment_the_daemon_resumes_where_it_was() {
    // Three runs: killed at once after each transition (before it is acted
    // on), a little later (mid-action), and later still.
    let mut outcomes = Vec::new();
    for delay_ms in [0, 15, 45] {
        outcomes.push(run(delay_ms).await);
    }
    let expected: Vec<String> = EXPECTED.iter().map(|s| s.to_string()).collect();
    for o in &outcomes {
        assert_eq!(o.events, expected);
    }
    let same = |a: &Outcome, b: &Outcome| {
        (&a.events, &a.stable, &a.quarantined) == (&b.events, &b.stable, &b.quarantined)
    };
    assert!(
        outcomes.windows(2).all(|w| same(&w[0], &w[1])),
        "{outcomes:#?}"
    );
    // The kills fell at different moments of the rollouts.
    let kills: usize = outcomes.iter().map(|o| o.killed_at.len()).sum();
    assert!(kills >= 20, "{outcomes:#?}");
}

/// One engine as the handover test polls it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    at: Instant,
    candidate: bool,
    owner: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_killed_mid_canary_leaves_stable_and_the_fleet_to_another_daemon_after_its_lease()
{
    const LEASE: Duration = Duration::from_secs(1);
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    // A canary that stays: an hour long.
    let toml = fixture::TOML.replacen(
        "percent = 50\nmin_duration = \"200ms\"\nmax_duration = \"60s\"",
        "percent = 50\nmin_duration = \"1h\"\nmax_duration = \"2h\"",
        1,
    );
    assert_ne!(toml, fixture::TOML);
    repo.commit("An hour of canary", &[("sluice.toml", Some(&toml))]);
    let engines = fixture::engines(3).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        6,
        Duration::from_millis(2),
    );
    let (state_a, state_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let log = tmp.path().join("daemons.log");
    let lease = ["--lease", "1s"];
    let mut a = spawn_with(&repo, &state_a, &engines, &log, &lease);
    let start = Instant::now();
    while !audit(&state_a).iter().any(|t| t.event == "install") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "A never installed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let id_a = std::fs::read_to_string(state_a.join("identity"))
        .unwrap()
        .trim()
        .to_string();
    repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    let in_canary = |e: &Engine| {
        e.route()
            .is_some_and(|r| r.candidate.is_some() && r.stage.as_deref() == Some("canary"))
            && e.owner().as_deref() == Some(id_a.as_str())
    };
    while !engines.iter().all(in_canary) {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never in canary: {log}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A dies mid-canary; B starts at once on its own state folder.
    a.kill().unwrap();
    let killed = Instant::now();
    a.wait().unwrap();
    let mut b = spawn_with(&repo, &state_b, &engines, &log, &lease);
    let mut seen: Vec<Vec<Seen>> = vec![Vec::new(); engines.len()];
    // Per engine, the latest moment A's lease was seen to run until: the
    // engine may drop A's canary only after it.
    let mut a_until: Vec<Option<Instant>> = vec![None; engines.len()];
    let id_b = loop {
        for ((e, s), until) in engines.iter().zip(seen.iter_mut()).zip(a_until.iter_mut()) {
            let before = Instant::now();
            if let Some(l) = e.lease().filter(|l| l.owner == id_a) {
                *until = Some(before + Duration::from_millis(l.expires_in_ms));
            }
            let now = Seen {
                at: Instant::now(),
                candidate: e.route().unwrap().candidate.is_some(),
                owner: e.owner(),
            };
            if s.last()
                .is_none_or(|l| (l.candidate, &l.owner) != (now.candidate, &now.owner))
            {
                s.push(now);
            }
        }
        let id_b = std::fs::read_to_string(state_b.join("identity")).unwrap_or_default();
        let id_b = id_b.trim();
        if !id_b.is_empty()
            && !audit(&state_b).is_empty()
            && seen
                .iter()
                .all(|s| s.last().unwrap().owner.as_deref() == Some(id_b))
        {
            break id_b.to_string();
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "B never took over: {seen:#?}\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    };
    b.kill().unwrap();
    b.wait().unwrap();

    for (i, s) in seen.iter().enumerate() {
        // A's canary held while A's lease did, then the engine served
        // stable alone, held by nobody, before B held it.
        let dropped = s
            .iter()
            .position(|x| !x.candidate)
            .unwrap_or_else(|| panic!("engine {i} never dropped the candidate: {s:#?}"));
        let first_b = s
            .iter()
            .position(|x| x.owner.as_deref() == Some(id_b.as_str()))
            .unwrap();
        assert!(dropped <= first_b, "engine {i}: {s:#?}");
        // (A lease past its expiry shows no owner until the engine's watch
        // applies the lapse, within 100 ms.)
        assert!(
            s[..dropped]
                .iter()
                .all(|x| x.candidate && x.owner.as_deref().is_none_or(|o| o == id_a)),
            "engine {i}: {s:#?}"
        );
        // Dropped by the engine's watch (nobody holds it), or by B's claim,
        // which applies the lapse before it takes the lease.
        assert!(
            s[dropped].owner.as_deref().is_none_or(|o| o == id_b),
            "engine {i}: {s:#?}"
        );
        // Never before A's lease ran out (the lease A last renewed, as the
        // engine itself reported it): timing on a loaded machine moves A's
        // last renewal, not this.
        let until = a_until[i].unwrap_or_else(|| panic!("engine {i}: A's lease never seen"));
        assert!(
            s[dropped].at >= until,
            "engine {i} dropped A's canary {:?} before its lease ran out: {s:#?}",
            until - s[dropped].at
        );
        // And then soon: A renewed before it was killed, so its lease ran
        // out within one lease of the kill; the engine's watch applies a
        // lapse within 100 ms (the rest is this loop's own pace when the
        // machine is busy).
        let lapse = s[dropped].at - killed;
        assert!(
            lapse <= LEASE + Duration::from_secs(2),
            "engine {i} lapsed {lapse:?} after the kill: {s:#?}"
        );
    }
    // B's first transition adopts what the engines serve after the lapse:
    // the stable artifact, no candidate.
    let lines = audit(&state_b);
    assert_eq!(lines[0].event, "adopt", "{lines:#?}");
    let stable_a = state_json(&state_a)["stable"]["artifact"].clone();
    assert_eq!(state_json(&state_b)["stable"]["artifact"], stable_a);
}

/// The branch head on the bare repository, read from its ref file as
/// quickly as the daemon's push writes it.
fn origin_head(repo: &Repo) -> Option<String> {
    std::fs::read_to_string(repo.bare.join("refs/heads/main"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// What one run of the revert's kills saw.
struct RevertRun {
    /// A kill fell after the revert was pushed and before it was settled.
    between_push_and_settle: bool,
}

/// Kills the daemon at the three moments of a revert: just after the
/// rollback is persisted (before the revert is made), just as the revert
/// lands on the remote (before the daemon settles it), and just after it is
/// settled; restarts it each time, then lets it run to the end.
async fn revert_run() -> RevertRun {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c0 = repo.log()[0].0.clone();
    let engines = fixture::engines(2).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        4,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let log = tmp.path().join("daemon.log");
    let has = |event: &str| audit(&state).iter().any(|t| t.event == event);
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut child = spawn(&repo, &state, &engines, &log);
    until("the install", &|| has("install"));
    // The bad change and a README, in one push.
    let pushed = repo.commit_many(&[
        ("Block search", &[("policies/search.policy", Some(BAD))]),
        ("Add a README", &[("README.md", Some("# policies\n"))]),
    ]);
    let readme = pushed[1].clone();

    // 1. Killed as soon as the rollback is decided.
    until("the rollback", &|| has("rollback"));
    child.kill().unwrap();
    child.wait().unwrap();
    let pushed_before_restart = origin_head(&repo) != Some(readme.clone());

    // 2. Killed as soon as the revert lands on the remote.
    let mut child = spawn(&repo, &state, &engines, &log);
    if !pushed_before_restart {
        let deadline = Instant::now() + Duration::from_secs(30);
        while origin_head(&repo).as_deref() == Some(readme.as_str()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the revert"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let between_push_and_settle = !has("reverted");
    eprintln!("killed between the push and its settlement: {between_push_and_settle}");

    // 3. Killed as soon as it is settled.
    if !pushed_before_restart {
        child = spawn(&repo, &state, &engines, &log);
    }
    until("the settlement", &|| has("reverted"));
    child.kill().unwrap();
    child.wait().unwrap();

    // The last life runs to the end: the branch is back on stable.
    let mut child = spawn(&repo, &state, &engines, &log);
    until("the revert acted on", &|| has("unchanged"));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();

    let lines = audit(&state);
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    fixture::assert_consistent(&lines);
    assert_eq!(
        events(&lines),
        [
            "install:empty>stable",
            "start:stable>replay",
            "advance:replay>shadow",
            "rollback:shadow>stable",
            "reverted:stable>stable",
            "unchanged:stable>stable",
        ],
        "{daemon_log}"
    );
    // Exactly one revert commit, of both commits, back to c0's files.
    let reverts: Vec<(String, String)> = repo
        .log()
        .into_iter()
        .filter(|(_, subject)| subject.starts_with("Revert"))
        .collect();
    assert_eq!(reverts.len(), 1, "{:#?}", repo.log());
    let msg = repo.message(&reverts[0].0);
    for c in &pushed {
        assert!(msg.contains(&format!("This reverts commit {c}.")), "{msg}");
    }
    assert_eq!(repo.files("main"), repo.files(&c0));
    let s = state_json(&state);
    assert_eq!(s["reverts"], serde_json::json!([]), "{s:#}");
    RevertRun {
        between_push_and_settle,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_around_a_revert_the_daemon_neither_loses_nor_doubles_it() {
    // A kill between the push and its settlement is a race the test wins
    // most of the time; up to four runs to have one.
    let mut hit = false;
    for _ in 0..4 {
        if revert_run().await.between_push_and_settle {
            hit = true;
            break;
        }
    }
    assert!(
        hit,
        "no kill fell between a revert's push and its settlement"
    );
}
