//! Growth (issue 9, item 11): the daemon as a child process rolls out many
//! commits, one fetch each, to three engines on loopback; what it holds must
//! stay bounded. Read from outside, as an operator would: the process's open
//! file descriptors (`/proc/<pid>/fd`), its git mirror's packs, the
//! artifacts in its state folder, the artifacts every engine holds
//! (`GET /v1/artifacts`) and the series of every engine's `/metrics`.
//!
//! Before the fix, every fetch left one more pack open for good (18 → 225
//! descriptors over 400 commits in the field; here 26 → 61 over 40
//! commits, 41 packs), and the state folder and every engine kept every
//! artifact ever built (41 each, 123 breaker series per engine). The
//! daemon runs under `ulimit -n 64`, as the field's did under 80, so a leak
//! also shows as a daemon that stops fetching.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixture::{self, Engine, Repo, TOKEN, wait_async};

/// Replay, then straight to full: a commit completes in a few passes.
const FAST: &str = r#"[project]
name = "fleet"
default = "allow"

[schema]
tool = "string"
agent = "string"
session = "string"
"args.amount?" = "int"

[rollout]
hash_key = "session"

[[rollout.stage]]
name = "replay"
max_catastrophic = 0

[[rollout.stage]]
name = "full"
percent = 100
"#;

/// How many commits are rolled out, one after the other.
const COMMITS: usize = 60;

/// The daemon's limit of open descriptors.
const FD_LIMIT: usize = 64;

fn policy(i: usize) -> String {
    format!(
        "policy cap version 1.0.{i} {{\n  rule cap {{\n    when tool == \"payments.transfer\" and args.amount > {}\n    deny CAP \"Over the cap\"\n  }}\n}}\n",
        1_000_000 + i
    )
}

fn spawn(repo: &Repo, state: &Path, engines: &[Engine], log: &Path) -> Child {
    let log = File::create(log).unwrap();
    // Under a descriptor limit, as in the field (`exec` keeps the pid): a
    // daemon leaking one per fetch stops fetching well before the end.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("ulimit -n {FD_LIMIT} && exec \"$@\""), "sh"])
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(["reconcile", "--repo", repo.bare.to_str().unwrap()])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(["--interval", "100ms", "--listen", "127.0.0.1:0"])
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

fn stable_commit(state: &Path) -> Option<String> {
    let bytes = std::fs::read(state.join("state.json")).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["stable"]["commit"].as_str().map(str::to_string)
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn count_files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
        .unwrap_or(0)
}

/// (artifacts held, breaker series in `/metrics`, all series) of an engine.
async fn engine_figures(http: &reqwest::Client, e: &Engine) -> (usize, usize, usize) {
    let held: Value = http
        .get(format!("{}/v1/artifacts", e.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let metrics = http
        .get(format!("{}/metrics", e.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let breakers = series
        .iter()
        .filter(|l| l.starts_with("sluice_breaker_state{"))
        .count();
    (
        held["artifacts"].as_array().unwrap().len(),
        breakers,
        series.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_commits_leave_descriptors_packs_artifacts_and_series_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.commit(
        "Fast plan",
        &[
            ("sluice.toml", Some(FAST)),
            ("policies/cap.policy", Some(&policy(0))),
        ],
    );
    let engines = fixture::engines(3).await;
    let state = tmp.path().join("state");
    let log = tmp.path().join("daemon.log");
    let mut child = spawn(&repo, &state, &engines, &log);
    let pid = child.id();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut warm = (0, 0);
    let mut peak_fds = 0;
    for i in 1..=COMMITS {
        let sha = repo.commit(
            &format!("Cap {i}"),
            &[("policies/cap.policy", Some(&policy(i)))],
        );
        // The forge's hook: fetch now (one fetch, one pack, per commit).
        if let Ok(addr) = std::fs::read_to_string(state.join("control.addr")) {
            let _ = http
                .post(format!("http://{addr}/v1/hooks/git"))
                .bearer_auth(TOKEN)
                .send()
                .await;
        }
        let limit = Duration::from_secs(15);
        let start = Instant::now();
        while stable_commit(&state).as_deref() != Some(sha.as_str()) {
            assert!(
                start.elapsed() < limit,
                "commit {i} not stable after {limit:?}:\n{}",
                daemon_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak_fds = peak_fds.max(fds(pid));
        if i == 5 {
            warm = (fds(pid), rss_kib(pid));
        }
    }
    let end = (fds(pid), rss_kib(pid));
    let packs = count_files(&state.join("git/objects/pack"), "pack");
    let stored = count_files(&state.join("artifacts"), "json");
    let mut figures = Vec::new();
    for e in &engines {
        figures.push(engine_figures(&http, e).await);
    }
    eprintln!(
        "after {COMMITS} commits in {:?}: fds {} at commit 5, {} at the end (peak {peak_fds}); \
         RSS {} KiB at commit 5, {} KiB at the end; {packs} pack(s); {stored} stored artifact(s); \
         engines (held, breaker series, series): {figures:?}",
        started.elapsed(),
        warm.0,
        end.0,
        warm.1,
        end.1
    );
    // The engines' artifacts and the state folder's are collected once
    // every engine is on the route: give it a few passes.
    let held = wait_async("engines collected", Duration::from_secs(10), || async {
        let mut worst = 0;
        for e in &engines {
            worst = worst.max(engine_figures(&http, e).await.0);
        }
        let stored = count_files(&state.join("artifacts"), "json");
        (worst <= 3 && stored <= 2).then_some(worst)
    })
    .await;
    let mut figures = Vec::new();
    for e in &engines {
        figures.push(engine_figures(&http, e).await);
    }
    let stored = count_files(&state.join("artifacts"), "json");
    eprintln!("settled: {stored} stored artifact(s); engines: {figures:?}");
    child.kill().unwrap();
    child.wait().unwrap();

    // Descriptors: one per pack grew without end; now bounded by repacking.
    assert!(
        peak_fds <= warm.0 + 12,
        "descriptors grew from {} to {peak_fds}",
        warm.0
    );
    assert!(packs <= 9, "{packs} packs in the mirror");
    // Stable and previous (no candidate, nothing quarantined).
    assert!(stored <= 2, "{stored} artifacts in the state folder");
    assert!(held <= 3);
    for (held, breakers, series) in figures {
        assert!(held <= 3, "an engine holds {held} artifacts");
        // Three states per artifact held.
        assert!(breakers <= 9, "{breakers} breaker series");
        assert!(series <= 80, "{series} series in /metrics");
    }
}
