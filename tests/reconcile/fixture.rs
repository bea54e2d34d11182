//! Shared fixtures: a policy repository in a bare git repository driven by
//! the real `git` command line, engines on loopback, a traffic generator,
//! and bounded waits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice::compile::artifact::Artifact;
use sluice::compile::ir::DecisionKind;
use sluice::engine::eval::Evaluator;
use sluice::engine::state::MemoryLimitStore;
use sluice::rollout::machine::{Mode, Route};

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
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", url, "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
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
    let files = sluice::repo::load(&dir).unwrap();
    let checked = sluice::pipeline::check_sources(&files.project, &files.policies);
    let hash = checked.artifact(None).unwrap().unwrap().hash;
    git(
        &repo.work,
        &["worktree", "remove", "--force", dir.to_str().unwrap()],
    );
    hash
}

// ---------------------------------------------------------------------------
// An engine on loopback that implements the admin API of SPEC §5 over the
// real evaluator: artifacts, routes (shadow and split by sha256 buckets of
// the hash key), figures per cohort since the route changed, evaluation.

#[derive(Default)]
struct Counts {
    requests: u64,
    errors: u64,
    decisions: [u64; 4],
    compared: u64,
    diverged: u64,
    latencies_us: Vec<u64>,
}

impl Counts {
    fn record(&mut self, d: DecisionKind, us: u64) {
        self.requests += 1;
        let i = match d {
            DecisionKind::Allow => 0,
            DecisionKind::Modify => 1,
            DecisionKind::RequireApproval => 2,
            DecisionKind::Deny => 3,
        };
        self.decisions[i] += 1;
        self.latencies_us.push(us);
    }

    fn report(&self, artifact: &str, cohort: &str, stage: &Option<String>) -> Value {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        let q = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                let i = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
                l[i] as f64 / 1000.0
            }
        };
        let mut doc = json!({
            "artifact": artifact, "cohort": cohort, "stage": stage,
            "requests": self.requests, "errors": self.errors,
            "decisions": {"allow": self.decisions[0], "modify": self.decisions[1],
                          "require_approval": self.decisions[2], "deny": self.decisions[3]},
            "latency_ms": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99),
                           "max": l.last().map_or(0.0, |v| *v as f64 / 1000.0)},
        });
        if cohort == "shadow" {
            doc["shadow"] = json!({"compared": self.compared, "diverged": self.diverged});
        }
        doc
    }
}

struct Active {
    version: u64,
    route: Route,
    stable: Arc<Evaluator>,
    candidate: Option<Arc<Evaluator>>,
    stable_counts: Counts,
    candidate_counts: Counts,
}

#[derive(Default)]
struct Inner {
    artifacts: HashMap<String, Arc<Evaluator>>,
    route: Option<Active>,
    versions: u64,
}

#[derive(Clone, Default)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    limits: Arc<MemoryLimitStore>,
    route_puts: Arc<AtomicU64>,
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn err(status: StatusCode, m: &str) -> Response {
    (status, axum::Json(json!({"error": m}))).into_response()
}

fn bucket(v: &Value) -> Option<u32> {
    let bytes = match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Number(n) => n.to_string().into_bytes(),
        _ => return None,
    };
    let d = Sha256::digest(&bytes);
    let mut head = [0u8; 8];
    head.copy_from_slice(&d[..8]);
    Some((u64::from_be_bytes(head) % 10_000) as u32)
}

fn in_cohort(route: &Route, req: &Value) -> bool {
    let percent = route.percent.unwrap_or(match route.mode {
        Some(Mode::Shadow) => 100.0,
        _ => 0.0,
    });
    let threshold = (percent * 100.0).round() as u32;
    let fits = route.matches.iter().all(|(field, allowed)| {
        let v = field.split('.').try_fold(req, |v, k| v.get(k));
        v.is_some_and(|v| allowed.contains(v))
    });
    fits && req
        .get(&route.hash_key)
        .and_then(bucket)
        .is_some_and(|b| b < threshold)
}

async fn put_artifact(
    State(s): State<Shared>,
    UrlPath(hash): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "token");
    }
    let Ok(artifact) = Artifact::from_bytes(&body) else {
        return err(StatusCode::BAD_REQUEST, "not an artifact");
    };
    if artifact.hash != hash || artifact.verify().is_err() {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "hash");
    }
    let ev = Arc::new(Evaluator::new(&artifact).unwrap());
    s.inner.lock().unwrap().artifacts.insert(hash, ev);
    StatusCode::CREATED.into_response()
}

async fn put_route(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "token");
    }
    let Ok(route) = serde_json::from_slice::<Route>(&body) else {
        return err(StatusCode::BAD_REQUEST, "not a route");
    };
    let mut inner = s.inner.lock().unwrap();
    let Some(stable) = inner.artifacts.get(&route.stable).cloned() else {
        return err(StatusCode::CONFLICT, "stable artifact not held");
    };
    let candidate = match &route.candidate {
        Some(c) => match inner.artifacts.get(c) {
            Some(e) => Some(e.clone()),
            None => return err(StatusCode::CONFLICT, "candidate artifact not held"),
        },
        None => None,
    };
    inner.versions += 1;
    let version = inner.versions;
    inner.route = Some(Active {
        version,
        route,
        stable,
        candidate,
        stable_counts: Counts::default(),
        candidate_counts: Counts::default(),
    });
    s.route_puts.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({"version": version})).into_response()
}

async fn get_route(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "token");
    }
    let inner = s.inner.lock().unwrap();
    match &inner.route {
        Some(a) => axum::Json(json!({"version": a.version, "route": a.route})).into_response(),
        None => err(StatusCode::NOT_FOUND, "no route"),
    }
}

async fn get_stats(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return err(StatusCode::UNAUTHORIZED, "token");
    }
    let inner = s.inner.lock().unwrap();
    let Some(a) = &inner.route else {
        return axum::Json(json!({"route": null, "cohorts": []})).into_response();
    };
    let r = &a.route;
    let mut cohorts = vec![a.stable_counts.report(&r.stable, "stable", &r.stage)];
    if let (Some(c), Some(mode)) = (&r.candidate, r.mode) {
        let cohort = if mode == Mode::Shadow {
            "shadow"
        } else {
            "candidate"
        };
        cohorts.push(a.candidate_counts.report(c, cohort, &r.stage));
    }
    axum::Json(json!({
        "route": {"version": a.version, "stable": r.stable, "candidate": r.candidate,
                  "mode": r.mode, "percent": r.percent, "stage": r.stage},
        "cohorts": cohorts,
    }))
    .into_response()
}

async fn evaluate(State(s): State<Shared>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "json");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut inner = s.inner.lock().unwrap();
    let Some(a) = inner.route.as_mut() else {
        return err(StatusCode::SERVICE_UNAVAILABLE, "no route");
    };
    let run = |ev: &Evaluator| -> Option<(DecisionKind, u64)> {
        let t = Instant::now();
        let r = ev.decode(&req).ok()?;
        let o = ev.evaluate(&r, now, s.limits.as_ref()).ok()?;
        Some((o.decision(), t.elapsed().as_micros() as u64))
    };
    let Some((stable_d, us)) = run(&a.stable) else {
        return err(StatusCode::BAD_REQUEST, "bad request");
    };
    let member = a.candidate.is_some() && in_cohort(&a.route, &req);
    let mut decision = stable_d;
    let mut cohort = "stable";
    match (a.route.mode, member, a.candidate.clone()) {
        (Some(Mode::Shadow), true, Some(c)) => {
            a.stable_counts.record(stable_d, us);
            if let Some((d, us)) = run(&c) {
                a.candidate_counts.record(d, us);
                a.candidate_counts.compared += 1;
                if d != stable_d {
                    a.candidate_counts.diverged += 1;
                }
            }
        }
        (Some(Mode::Split), true, Some(c)) => match run(&c) {
            Some((d, us)) => {
                a.candidate_counts.record(d, us);
                decision = d;
                cohort = "candidate";
            }
            None => a.candidate_counts.errors += 1,
        },
        _ => a.stable_counts.record(stable_d, us),
    }
    axum::Json(json!({"decision": decision, "cohort": cohort})).into_response()
}

fn router(s: Shared) -> Router {
    Router::new()
        .route("/v1/artifacts/{hash}", put(put_artifact))
        .route("/v1/route", put(put_route).get(get_route))
        .route("/v1/stats", get(get_stats))
        .route("/v1/evaluate", post(evaluate))
        .with_state(s)
}

/// An engine on loopback; `stop` takes it down (connections refused) and
/// `start_again` brings it back on the same port, empty, as a restarted
/// engine process would be.
pub struct Engine {
    pub addr: SocketAddr,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Engine {
    pub async fn start() -> Engine {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut e = Engine {
            addr,
            shared: Shared::default(),
            stop: None,
            task: None,
        };
        e.serve(listener);
        e
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(self.shared.clone());
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
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
        self.shared = Shared::default();
        let listener = wait_async("the engine's port", Duration::from_secs(5), || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.serve(listener);
    }

    /// The route in force, read directly.
    pub fn route(&self) -> Option<Route> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .route
            .as_ref()
            .map(|a| a.route.clone())
    }

    /// How many routes were set on this engine.
    pub fn route_puts(&self) -> u64 {
        self.shared.route_puts.load(Ordering::Relaxed)
    }
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
                    loop {
                        i += 1;
                        let url = &urls[(i as usize) % urls.len()];
                        let tool = tools[(i as usize / urls.len()) % tools.len()];
                        let body = json!({
                            "tool": tool, "agent": format!("agent-{}", i % 5),
                            "session": format!("s-{}", i.wrapping_mul(2654435761) % 100_000),
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
