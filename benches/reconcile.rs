//! Reconcile daemon latencies, run by `scripts/bench-reconcile.sh`.
//!
//! Processes as deployed: `sluice engine` × N (default 10) and `sluice
//! reconcile` (interval 1 s), a bare repository written with the `git`
//! command line. Measured, each several times (medians reported):
//!
//! 1. commit pushed → the candidate in shadow on every engine, polling
//!    only (the 1 s interval) and with `POST /v1/hooks/git` after the push;
//! 2. `POST /v1/rollback` → every engine back on stable, and → the revert
//!    commit on the branch;
//! 3. an automatic rollback (a change that diverges, under traffic): the
//!    audit line's decision time → every engine back on stable.
//!
//! Engines are polled (`GET /v1/route`, all in parallel, every millisecond)
//! from this process. Environment: `SLUICE_BIN` (the `sluice` binary),
//! `SLUICE_ENGINE_BIN` (default: `SLUICE_BIN`), `BENCH_ENGINES` (10),
//! `BENCH_ROUNDS` (5), `BENCH_KEEP` (keep the folder with the logs).

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test or benchmark that cannot go on fails by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const TOKEN: &str = "bench-admin-token-0123";

const TOML: &str = r#"[project]
name = "bench"
default = "allow"

[schema]
tool = "string"
agent = "string"
session = "string"

[rollout]
hash_key = "session"

[[rollout.stage]]
name = "replay"
max_catastrophic = 0

[[rollout.stage]]
name = "shadow"
min_duration = "1h"
max_duration = "2h"
min_samples = 100
max_divergence = 0.05

[[rollout.stage]]
name = "full"
percent = 100
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .unwrap_or_else(|e| panic!("git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Repo {
    bare: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new(root: &Path) -> Repo {
        let bare = root.join("origin.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(root, &["clone", "-q", bare.to_str().unwrap(), "work"]);
        let work = root.join("work");
        git(&work, &["checkout", "-q", "-b", "main"]);
        let r = Repo { bare, work };
        r.commit("Initial policy set", "sluice.toml", TOML);
        r
    }

    fn commit(&self, message: &str, path: &str, text: &str) -> String {
        if !git(&self.work, &["ls-remote", "origin", "main"]).is_empty() {
            git(&self.work, &["fetch", "-q", "origin"]);
            git(&self.work, &["reset", "-q", "--hard", "origin/main"]);
        }
        let p = self.work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn head(&self) -> String {
        git(&self.bare, &["rev-parse", "main"])
    }
}

/// A harmless policy, different each time (a quarantined artifact never
/// rolls out again).
fn harmless(n: usize) -> String {
    format!(
        "policy bench{n} version 1.0.0 {{\n  rule r{n} {{\n    when tool == \"bench.{n}\"\n    deny NO \"no\"\n  }}\n}}\n"
    )
}

/// A policy that blocks a third of the traffic.
fn harmful(n: usize) -> String {
    format!(
        "policy bad{n} version 1.0.0 {{\n  rule r{n} {{\n    when tool == \"search\"\n    deny NO_SEARCH \"no\"\n  }}\n}}\n"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

struct Fleet {
    children: Vec<Child>,
    urls: Vec<String>,
    http: reqwest::Client,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Fleet {
    async fn routes_but(&self, skip: Option<usize>) -> Vec<Option<Value>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, u) in self.urls.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let req = self
                .http
                .get(format!("{u}/v1/route"))
                .bearer_auth(TOKEN)
                .send();
            set.spawn(async move {
                let v = match req.await {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                (i, v.map(|v| v["route"].clone()))
            });
        }
        let mut out = vec![None; self.urls.len()];
        while let Some(Ok((i, v))) = set.join_next().await {
            out[i] = v;
        }
        out
    }

    /// Polls every engine until `f` holds for all; the instant it first did.
    async fn until(&self, limit: Duration, f: impl Fn(&Value) -> bool) -> Instant {
        self.until_but(None, limit, f).await
    }

    /// The same, leaving the engine `skip` out (not even polled).
    async fn until_but(
        &self,
        skip: Option<usize>,
        limit: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Instant {
        let start = Instant::now();
        loop {
            let routes = self.routes_but(skip).await;
            if routes
                .iter()
                .enumerate()
                .all(|(i, r)| Some(i) == skip || r.as_ref().is_some_and(&f))
            {
                return Instant::now();
            }
            assert!(
                start.elapsed() < limit,
                "engines never got there: {routes:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn in_shadow(r: &Value) -> bool {
    r["candidate"].is_string() && r["stage"] == "shadow"
}

fn on_stable(r: &Value) -> bool {
    r["candidate"].is_null() && r["stable"].is_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn status(http: &reqwest::Client, daemon: &str) -> Value {
    match http
        .get(format!("{daemon}/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Waits until the daemon is at rest on stable with the branch head acted on.
async fn settle(http: &reqwest::Client, daemon: &str, repo: &Repo) {
    let start = Instant::now();
    loop {
        let s = status(http, daemon).await;
        let head = repo.head();
        let last_commit = s["last"]["commit"].as_str().unwrap_or("");
        if s["phase"] == "stable"
            && s["reverts"].as_array().is_some_and(Vec::is_empty)
            && s["head"] == head.as_str()
            && last_commit == head
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never settled: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /v1/rollback` → every engine but `skip` on stable (ms).
async fn rollback_but(fleet: &Fleet, daemon: &str, skip: Option<usize>) -> f64 {
    let http = fleet.http.clone();
    let url = format!("{daemon}/v1/rollback");
    let t0 = Instant::now();
    let call = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(TOKEN)
            .json(&json!({"reason": "bench"}))
            .send()
            .await
            .map(|r| r.status())
    });
    let stable = fleet
        .until_but(skip, Duration::from_secs(10), on_stable)
        .await;
    let code = call.await.unwrap().unwrap();
    assert!(code.is_success(), "rollback answered {code}");
    ms(stable - t0)
}

/// A harmless commit pushed and `POST /v1/hooks/git`: → the candidate in
/// shadow on every engine (ms).
async fn hooked_commit(fleet: &Fleet, daemon: &str, repo: &Repo, k: usize) -> f64 {
    repo.commit(
        &format!("Bench change {k}"),
        &format!("policies/b{k}.policy"),
        &harmless(k),
    );
    let t0 = Instant::now();
    fleet
        .http
        .post(format!("{daemon}/v1/hooks/git"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let t = fleet.until(Duration::from_secs(10), in_shadow).await;
    ms(t - t0)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

async fn rollback(fleet: &Fleet, daemon: &str, repo: &Repo) -> (f64, f64) {
    let before = repo.head();
    let http = fleet.http.clone();
    let url = format!("{daemon}/v1/rollback");
    let t0 = Instant::now();
    let call = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(TOKEN)
            .json(&json!({"reason": "bench"}))
            .send()
            .await
            .map(|r| r.status())
    });
    let stable = fleet.until(Duration::from_secs(10), on_stable).await;
    let engines = ms(stable - t0);
    let start = Instant::now();
    loop {
        if repo.head() != before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the revert never landed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let revert = ms(t0.elapsed());
    let code = call.await.unwrap().unwrap();
    assert!(code.is_success(), "rollback answered {code}");
    (engines, revert)
}

fn spawn_traffic(urls: Vec<String>, http: reqwest::Client) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|w| {
            let urls = urls.clone();
            let http = http.clone();
            tokio::spawn(async move {
                let tools = ["search", "email.send", "payments.transfer"];
                let mut i: usize = w * 7919;
                loop {
                    i += 1;
                    let body = json!({"tool": tools[i % 3], "agent": "a", "session": format!("s-{}", i % 9973)});
                    let _ = http
                        .post(format!("{}/v1/evaluate", urls[i % urls.len()]))
                        .json(&body)
                        .send()
                        .await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect()
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let Ok(bin) = std::env::var("SLUICE_BIN") else {
        eprintln!("reconcile bench: set SLUICE_BIN (scripts/bench-reconcile.sh does); skipped");
        return;
    };
    let engine_bin = std::env::var("SLUICE_ENGINE_BIN").unwrap_or_else(|_| bin.clone());
    let n = env_usize("BENCH_ENGINES", 10);
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(
        PathBuf::from(bin),
        PathBuf::from(engine_bin),
        n,
        rounds,
    ));
}

async fn bench(bin: PathBuf, engine_bin: PathBuf, n: usize, rounds: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = |name: &str| std::fs::File::create(logs.join(name)).unwrap();

    let mut children = Vec::new();
    let mut urls = Vec::new();
    for i in 0..n {
        let port = free_port();
        let child = Command::new(&engine_bin)
            .args(["engine", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-token", TOKEN, "--workers", "1"])
            .stdout(Stdio::null())
            .stderr(log(&format!("engine-{i}.log")))
            .spawn()
            .unwrap();
        children.push(child);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut fleet = Fleet {
        children,
        urls: urls.clone(),
        http: http.clone(),
    };
    for u in &urls {
        let start = Instant::now();
        while http.get(format!("{u}/healthz")).send().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "engine {u} did not start"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let control = free_port();
    let daemon_url = format!("http://127.0.0.1:{control}");
    let start_daemon = |interval: &str, log_name: &str| {
        let mut cmd = Command::new(&bin);
        cmd.args(["reconcile", "--repo", repo.bare.to_str().unwrap()])
            .args(["--state-dir", tmp.path().join("state").to_str().unwrap()])
            .args([
                "--interval",
                interval,
                "--listen",
                &format!("127.0.0.1:{control}"),
            ])
            .args(["--admin-token", TOKEN])
            .env("RUST_LOG", "sluice=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log(log_name));
        for u in &urls {
            cmd.args(["--engine", u]);
        }
        cmd.spawn().unwrap()
    };
    fleet.children.push(start_daemon("1s", "daemon.log"));
    fleet.until(Duration::from_secs(30), on_stable).await;
    settle(&http, &daemon_url, &repo).await;
    eprintln!("{n} engines, daemon interval 1s, {rounds} rounds");

    let (mut polled, mut hooked, mut to_stable, mut to_revert) = (vec![], vec![], vec![], vec![]);
    let mut k = 0;
    for round in 0..rounds {
        // Commit → shadow, by polling alone.
        k += 1;
        repo.commit(
            &format!("Bench change {k}"),
            &format!("policies/b{k}.policy"),
            &harmless(k),
        );
        let t0 = Instant::now();
        let t = fleet.until(Duration::from_secs(10), in_shadow).await;
        polled.push(ms(t - t0));
        let (e, r) = rollback(&fleet, &daemon_url, &repo).await;
        to_stable.push(e);
        to_revert.push(r);
        settle(&http, &daemon_url, &repo).await;

        // Commit → shadow, with the hook.
        k += 1;
        repo.commit(
            &format!("Bench change {k}"),
            &format!("policies/b{k}.policy"),
            &harmless(k),
        );
        let t0 = Instant::now();
        http.post(format!("{daemon_url}/v1/hooks/git"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let t = fleet.until(Duration::from_secs(10), in_shadow).await;
        hooked.push(ms(t - t0));
        let (e, r) = rollback(&fleet, &daemon_url, &repo).await;
        to_stable.push(e);
        to_revert.push(r);
        settle(&http, &daemon_url, &repo).await;
        eprintln!(
            "round {}: shadow {:.0} ms (polled), {:.0} ms (hook); stable {:.1} / {:.1} ms; revert {:.0} / {:.0} ms",
            round + 1,
            polled[round],
            hooked[round],
            to_stable[2 * round],
            to_stable[2 * round + 1],
            to_revert[2 * round],
            to_revert[2 * round + 1]
        );
    }

    // Automatic rollbacks under traffic: decision → every engine on stable.
    let traffic = spawn_traffic(urls.clone(), http.clone());
    let mut automatic = Vec::new();
    for _ in 0..rounds.min(3) {
        k += 1;
        repo.commit(
            &format!("Bench harm {k}"),
            &format!("policies/h{k}.policy"),
            &harmful(k),
        );
        http.post(format!("{daemon_url}/v1/hooks/git"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        fleet.until(Duration::from_secs(10), in_shadow).await;
        let t = fleet.until(Duration::from_secs(30), on_stable).await;
        let stable_at = now_ms() - ms(t.elapsed());
        settle(&http, &daemon_url, &repo).await;
        let audit = std::fs::read_to_string(tmp.path().join("state/audit.jsonl")).unwrap();
        let decided = audit
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|t| t["event"] == "rollback")
            .find_map(|t| t["time_ms"].as_f64())
            .unwrap();
        automatic.push(stable_at - decided);
        eprintln!(
            "automatic rollback: every engine on stable {:.1} ms after the decision",
            stable_at - decided
        );
    }
    for t in traffic {
        t.abort();
    }

    // The daemon again at a 20 s interval: hook → candidate; rollback →
    // stable with every engine healthy (the baseline), then with one
    // engine stopped (SIGSTOP) just before.
    let mut old = fleet.children.pop().unwrap();
    let _ = old.kill();
    let _ = old.wait();
    fleet.children.push(start_daemon("20s", "daemon-20s.log"));
    let start = Instant::now();
    while status(&http, &daemon_url).await.is_null() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the daemon did not start again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    settle(&http, &daemon_url, &repo).await;
    let (mut hook20, mut healthy, mut hung) = (vec![], vec![], vec![]);
    for round in 0..rounds.max(5) {
        k += 1;
        hook20.push(hooked_commit(&fleet, &daemon_url, &repo, k).await);
        healthy.push(rollback_but(&fleet, &daemon_url, None).await);
        settle(&http, &daemon_url, &repo).await;

        k += 1;
        hooked_commit(&fleet, &daemon_url, &repo, k).await;
        let sick = round % n;
        signal(&fleet.children[sick], "STOP");
        // Calls to it are in flight when the rollback comes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        hung.push(rollback_but(&fleet, &daemon_url, Some(sick)).await);
        signal(&fleet.children[sick], "CONT");
        fleet.until(Duration::from_secs(30), on_stable).await;
        settle(&http, &daemon_url, &repo).await;
        eprintln!(
            "20 s interval, round {}: hook → shadow {:.0} ms; rollback → stable {:.1} ms (all healthy), {:.1} ms (engine {sick} stopped, the other {} engines)",
            round + 1,
            hook20[round],
            healthy[round],
            hung[round],
            n - 1
        );
    }

    let summary = json!({
        "engines": n,
        "interval_ms": 1000,
        "commit_to_shadow_polled_ms": median(polled.clone()),
        "commit_to_shadow_hook_ms": median(hooked.clone()),
        "rollback_to_stable_ms": median(to_stable.clone()),
        "rollback_to_revert_pushed_ms": median(to_revert.clone()),
        "trigger_to_stable_ms": median(automatic.clone()),
        "interval_20s": {
            "hook_to_shadow_ms": {"median": median(hook20.clone()), "max": max(&hook20)},
            "rollback_to_stable_ms": {"median": median(healthy.clone()), "max": max(&healthy)},
            "rollback_to_stable_one_hung_ms": {"median": median(hung.clone()), "max": max(&hung)},
            "samples": {"hook": hook20, "rollback": healthy, "rollback_one_hung": hung},
        },
        "samples": {
            "polled": polled, "hook": hooked, "stable": to_stable,
            "revert": to_revert, "automatic": automatic,
        },
    });
    println!("{}", serde_json::to_string(&summary).unwrap());
    println!(
        "medians: commit → shadow on all {n} engines {:.0} ms (1 s interval; target < 2000), {:.0} ms with the hook (target < 300); \
         rollback → all on stable {:.1} ms (target < 250), revert pushed {:.0} ms (target < 2000); \
         automatic trigger → all on stable {:.1} ms",
        summary["commit_to_shadow_polled_ms"]
            .as_f64()
            .unwrap_or(f64::NAN),
        summary["commit_to_shadow_hook_ms"]
            .as_f64()
            .unwrap_or(f64::NAN),
        summary["rollback_to_stable_ms"]
            .as_f64()
            .unwrap_or(f64::NAN),
        summary["rollback_to_revert_pushed_ms"]
            .as_f64()
            .unwrap_or(f64::NAN),
        summary["trigger_to_stable_ms"].as_f64().unwrap_or(f64::NAN),
    );
    let i20 = &summary["interval_20s"];
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "20 s interval: hook → shadow on all {n} engines median {:.0} ms, max {:.0} ms (target < 300); \
         rollback → all on stable median {:.1} ms, max {:.1} ms; \
         with one engine stopped (SIGSTOP): the other {} on stable median {:.1} ms, max {:.1} ms (target < 250; {:.2}× the all-healthy median)",
        f(&i20["hook_to_shadow_ms"]["median"]),
        f(&i20["hook_to_shadow_ms"]["max"]),
        f(&i20["rollback_to_stable_ms"]["median"]),
        f(&i20["rollback_to_stable_ms"]["max"]),
        n - 1,
        f(&i20["rollback_to_stable_one_hung_ms"]["median"]),
        f(&i20["rollback_to_stable_one_hung_ms"]["max"]),
        f(&i20["rollback_to_stable_one_hung_ms"]["median"])
            / f(&i20["rollback_to_stable_ms"]["median"]),
    );
    drop(fleet);
    if std::env::var_os("BENCH_KEEP").is_some() {
        let path = tmp.keep();
        eprintln!("kept {} (daemon and engine logs in logs/)", path.display());
    }
}
