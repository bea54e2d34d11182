//! Shared fixtures: a policy repository in a bare git repository driven by
//! the real `git` command line, engines on loopback, a traffic generator,
//! and bounded waits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng as _};
use serde_json::json;
use sluice::api::route::RouteSpec;
use sluice::engine::backend::MemoryBackend;
use sluice::engine::decision_log::DecisionLog;
use sluice::engine::server::{self, EngineConfig};

pub const TOKEN: &str = "test-admin-token";

/// `sluice.toml` with compressed stages: replay, shadow, a 50% canary, full.
pub const TOML: &str = r#"[project]
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
name = "shadow"
min_duration = "200ms"
max_duration = "60s"
min_samples = 100
max_divergence = 0.05

[[rollout.stage]]
name = "canary"
percent = 50
min_duration = "200ms"
max_duration = "60s"
min_samples = 80
max_error_rate = 0.05
max_deny_rate_delta = 0.1

[[rollout.stage]]
name = "full"
percent = 100

[rollout.rollback]
error_rate = 0.2
deny_rate_delta = 0.3
"#;

pub const BASE: &str = r#"policy base version 1.0.0 {
  rule too_big {
    when tool == "payments.transfer" and args.amount > 100000
    deny TOO_BIG "Transfers above 100000 are blocked"
  }
}
"#;

pub const TRACES: &str = r#"{"request": {"tool": "payments.transfer", "agent": "a", "session": "s", "args": {"amount": 200000}}, "expect": "deny", "code": "TOO_BIG"}
{"request": {"tool": "email.send", "agent": "a", "session": "s", "args": {}}, "expect": "allow"}
"#;

/// A harmless change: blocks a tool the traffic never uses.
pub const GOOD: &str = r#"policy shell version 1.0.0 {
  rule no_shell {
    when tool == "shell.exec"
    deny NO_SHELL "No shell"
  }
}
"#;

/// A harmful change: blocks `search`, a third of the traffic.
pub const BAD: &str = r#"policy search version 1.0.0 {
  rule no_search {
    when tool == "search"
    deny NO_SEARCH "No search"
  }
}
"#;

/// A change that does not check.
pub const BROKEN: &str = r#"policy broken version 1.0.0 {
  rule r {
    when nosuchfield == "x"
    deny X "x"
  }
}
"#;

/// Logs of the daemon, shown with a failing test's output.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sluice=info")),
        )
        .with_test_writer()
        .try_init();
}

/// The daemon's clock in a test: the system's, plus however far the test
/// moved it forward. A test that would wait for the daemon's time to pass
/// (a stage's minimum duration) moves it instead.
#[derive(Debug, Default)]
pub struct SkewClock {
    ahead_ms: AtomicU64,
}

impl SkewClock {
    pub fn advance(&self, by: Duration) {
        self.ahead_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl sluice::reconcile::Clock for SkewClock {
    fn now_ms(&self) -> u64 {
        sluice::reconcile::clock::now_ms() + self.ahead_ms.load(Ordering::SeqCst)
    }
}

/// Waits for `n` more iterations of a daemon (it publishes its status once
/// per iteration), for at most `limit`.
pub async fn iterations(daemon: &sluice::reconcile::Daemon, n: usize, limit: Duration) {
    let mut status = daemon.watch_status();
    status.borrow_and_update();
    for i in 0..n {
        tokio::time::timeout(limit, status.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for iteration {i}"))
            .unwrap();
    }
}

/// Polls `f` every 20 ms until it gives `Some`, for at most `limit`.
pub async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The same, for conditions that need to await.
pub async fn wait_async<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// git, through its command line

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Policy Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Policy Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file written (`Some`) or removed (`None`) by a commit.
pub type Change<'a> = (&'a str, Option<&'a str>);

/// A bare repository (`origin.git`) and a clone to commit from.
pub struct Repo {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Repo {
    /// A repository whose first commit has `sluice.toml`, the base policy
    /// and the traces.
    pub fn new(root: &Path) -> Repo {
        let bare = root.join("origin.git");
        let work = root.join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(root, &["clone", "-q", bare.to_str().unwrap(), "work"]);
        git(&work, &["checkout", "-q", "-b", "main"]);
        let repo = Repo { bare, work };
        repo.commit(
            "Initial policy set",
            &[
                ("sluice.toml", Some(TOML)),
                ("policies/base.policy", Some(BASE)),
                ("traces/basic.jsonl", Some(TRACES)),
            ],
        );
        repo
    }

    /// Writes (or, with `None`, removes) files on top of the branch as it is
    /// on the remote, commits and pushes; returns the commit.
    pub fn commit(&self, message: &str, files: &[(&str, Option<&str>)]) -> String {
        self.commit_via(&self.bare, message, files)
    }

    /// The same, through the remote at `remote` (the bare repository moved
    /// elsewhere).
    pub fn commit_via(
        &self,
        remote: &Path,
        message: &str,
        files: &[(&str, Option<&str>)],
    ) -> String {
        let url = remote.to_str().unwrap();
        if !git(&self.work, &["ls-remote", url, "main"]).is_empty() {
            git(&self.work, &["fetch", "-q", url, "main"]);
            git(&self.work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        }
        self.write(files);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", url, "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Several commits on top of the branch as it is on the remote, pushed
    /// together (one fetch brings them all); returns them, oldest first.
    pub fn commit_many(&self, commits: &[(&str, &[Change<'_>])]) -> Vec<String> {
        let url = self.bare.to_str().unwrap();
        git(&self.work, &["fetch", "-q", url, "main"]);
        git(&self.work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
        let mut out = Vec::new();
        for (message, files) in commits {
            self.write(files);
            git(&self.work, &["add", "-A"]);
            git(&self.work, &["commit", "-q", "-m", message]);
            out.push(git(&self.work, &["rev-parse", "HEAD"]));
        }
        git(&self.work, &["push", "-q", url, "HEAD:main"]);
        out
    }

    /// A commit on top of `parent` (not the branch head), force-pushed to
    /// the branch: its history is rewritten.
    pub fn force_push(
        &self,
        parent: &str,
        message: &str,
        files: &[(&str, Option<&str>)],
    ) -> String {
        let url = self.bare.to_str().unwrap();
        git(&self.work, &["fetch", "-q", url, "main"]);
        git(&self.work, &["reset", "-q", "--hard", parent]);
        self.write(files);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "--force", url, "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn write(&self, files: &[(&str, Option<&str>)]) {
        for (path, text) in files {
            let p = self.work.join(path);
            match text {
                Some(t) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, t).unwrap();
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }

    /// The files of a commit on the remote, sorted.
    pub fn files(&self, rev: &str) -> Vec<String> {
        git(&self.bare, &["ls-tree", "-r", "--name-only", rev])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The branch on the remote, newest first: (sha, subject).
    pub fn log(&self) -> Vec<(String, String)> {
        git(&self.bare, &["log", "--format=%H%x09%s", "main"])
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The full message of a commit.
    pub fn message(&self, sha: &str) -> String {
        git(&self.bare, &["log", "-1", "--format=%B", sha])
    }
}

/// The artifact hash `sluice compile` gives for the work tree at `sha`.
pub fn artifact_of(repo: &Repo, sha: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tree");
    git(
        &repo.work,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            dir.to_str().unwrap(),
            sha,
        ],
    );
    let files = sluice::tree::fs::load(&dir, sluice::tree::Traces::Skip).unwrap();
    let checked = sluice::pipeline::check_sources(&files.project, &files.policies);
    let hash = checked.artifact(None).unwrap().unwrap().hash;
    git(
        &repo.work,
        &["worktree", "remove", "--force", dir.to_str().unwrap()],
    );
    hash
}

// ---------------------------------------------------------------------------
// The real engine (`sluice::engine::server`) on loopback.

/// An engine on loopback; `stop` takes it down (connections refused) and
/// `start_again` brings it back on the same port, empty, as a restarted
/// engine process would be.
pub struct Engine {
    pub addr: SocketAddr,
    engine: Arc<server::Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn new_engine() -> Arc<server::Engine> {
    server::Engine::start(
        EngineConfig::new(TOKEN),
        Arc::new(MemoryBackend::new()),
        DecisionLog::disabled(),
    )
    .unwrap()
}

impl Engine {
    pub async fn start() -> Engine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut e = Engine {
            addr,
            engine: new_engine(),
            stop: None,
            task: None,
        };
        e.serve(listener);
        e
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let engine = self.engine.clone();
        self.task = Some(tokio::spawn(async move {
            let _ = sluice::engine::serve::serve(listener, engine, async move {
                let _ = rx.await;
            })
            .await;
        }));
        self.stop = Some(tx);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    pub async fn start_again(&mut self) {
        self.engine = new_engine();
        let listener = wait_async("the engine's port", Duration::from_secs(5), || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.serve(listener);
    }

    /// The route in force, read directly.
    pub fn route(&self) -> Option<RouteSpec> {
        self.engine.route().map(|a| a.spec.clone())
    }

    /// How many routes were set on this engine (the route's version).
    pub fn route_puts(&self) -> u64 {
        self.engine.route().map_or(0, |a| a.version)
    }

    /// The daemon holding this engine's lease, read directly.
    pub fn owner(&self) -> Option<String> {
        self.engine.lease().map(|l| l.owner)
    }

    /// The lease in force on this engine, read directly.
    pub fn lease(&self) -> Option<sluice::api::route::LeaseInForce> {
        self.engine.lease()
    }
}

/// The daemon's configuration for tests: `repo`'s bare repository, the
/// `engines`, the admin token, a 100 ms interval and the control API on a
/// free loopback port.
pub fn config(repo: &Repo, state: &Path, engines: &[Engine]) -> sluice::reconcile::Config {
    let urls = engines.iter().map(Engine::url).collect();
    let mut c = sluice::reconcile::Config::new(
        &repo.bare.to_string_lossy(),
        state.to_path_buf(),
        urls,
        TOKEN,
    );
    c.interval = Duration::from_millis(100);
    c.listen = "127.0.0.1:0".parse().ok();
    c
}

/// Several engines.
pub async fn engines(n: usize) -> Vec<Engine> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Engine::start().await);
    }
    out
}

// ---------------------------------------------------------------------------
// Traffic: workers that send agent requests to the engines in turn.

pub struct Traffic {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// `workers` concurrent senders, each pausing `pause` between requests.
    pub fn start(urls: Vec<String>, workers: usize, pause: Duration) -> Traffic {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let tools = ["search", "email.send", "payments.transfer"];
        let tasks = (0..workers)
            .map(|w| {
                let urls = urls.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let mut i: u64 = w as u64 * 7919;
                    let mut sessions = Xoshiro256PlusPlus::seed_from_u64(w as u64);
                    loop {
                        i += 1;
                        let url = &urls[(i as usize) % urls.len()];
                        let tool = tools[(i as usize / urls.len()) % tools.len()];
                        let session = sessions.random_range(0..100_000u32);
                        let body = json!({
                            "tool": tool, "agent": format!("agent-{}", i % 5),
                            "session": format!("s-{session}"),
                            "args": {"amount": (i % 1000) as i64},
                        });
                        let _ = client
                            .post(format!("{url}/v1/evaluate"))
                            .json(&body)
                            .send()
                            .await;
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Traffic { tasks }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reads the audit log of a state folder: (event, from, to, commit).
pub fn audit(state_dir: &Path) -> Vec<sluice::rollout::machine::Transition> {
    sluice::reconcile::store::read_audit(&state_dir.join("audit.jsonl")).unwrap()
}

/// Checks an audit log's invariants: `seq` runs 1, 2, 3… and each line
/// starts where the previous one ended.
#[track_caller]
pub fn assert_consistent(lines: &[sluice::rollout::machine::Transition]) {
    for (i, t) in lines.iter().enumerate() {
        assert_eq!(t.seq, i as u64 + 1, "seq of line {i}: {lines:#?}");
        if i > 0 {
            assert_eq!(
                lines[i - 1].to,
                t.from,
                "line {} does not start where line {} ended",
                i + 1,
                i
            );
        }
    }
}

/// The events of an audit log, with their phases: `event:from>to`.
pub fn events(lines: &[sluice::rollout::machine::Transition]) -> Vec<String> {
    lines
        .iter()
        .map(|t| format!("{}:{}>{}", t.event, t.from, t.to))
        .collect()
}
