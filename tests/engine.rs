//! The engine server (SPEC §5): every route and error status through
//! `router().oneshot(…)`; routing determinism across engine instances;
//! shadow evaluation; hot swap under load on a real socket; graceful
//! shutdown; every `state::` migration; the circuit breaker through its
//! three states with both failsafes; the decision log; the `engine` command.
//!
//! Network tests use loopback only, with bounded loops and timeouts.

use std::io::Write;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sluice::api::route::{Cohort, RouteSpec, bucket, bucket_of};
use sluice::api::state::LiveState;
use sluice::api::stats::EngineStats;
use sluice::compile::artifact::Artifact;
use sluice::engine::backend::{LocalBackend, MemoryBackend, StateBackend};
use sluice::engine::breaker::BreakerConfig;
use sluice::engine::clock::{Clock, SystemClock};
use sluice::engine::decision_log::DecisionLog;
use sluice::engine::http::router;
use sluice::engine::serve::serve;
use sluice::engine::server::{Engine, EngineConfig};
use sluice::eval::state::{
    CounterEntry, LimitKey, LimitStore, MemoryLimitStore, StateError, Window,
};
use sluice::pipeline::check_sources;
use sluice::source::SourceFile;
use tower::ServiceExt;

pub const TOKEN: &str = "s3cret-token-0123";

const TOML: &str = r#"
[project]
name = "t"
default = "allow"

[schema]
tool = "string"
agent = "string"
org = "string"
session = "string"
"args.amount?" = "int"
"args.country?" = "string"
"#;

/// Security policy: sanctions deny, approval above 1000, a per-agent limit.
pub const PAY: &str = r#"policy pay version 1.0.0 {
  tier security
  rule sanctioned {
    when tool == "pay" and args.country in ["KP", "IR"]
    deny SANCTIONED "blocked"
  }
  rule big {
    when tool == "pay" and args.amount > 1000
    require_approval "finance" via "approvals.request" BIG "needs approval"
  }
  limit per_agent {
    when tool == "pay"
    max 1000 per 1h by agent
    exceed deny RATE_LIMITED "too many"
  }
}
"#;

/// Operational policy with a limit on `email`.
const MAIL: &str = r#"policy mail version 1.0.0 {
  tier operational
  rule spam { when tool == "email" and agent == "spammer" deny SPAM "spam" }
  limit per_session {
    when tool == "email"
    max 1000 per 1h by session
    exceed deny MAIL_RATE "too many mails"
  }
}
"#;

// ---------------------------------------------------------------------------
// Helpers.

pub fn artifact(policies: &[&str]) -> Artifact {
    artifact_with(TOML, policies)
}

fn artifact_with(toml: &str, policies: &[&str]) -> Artifact {
    let toml = SourceFile::new("sluice.toml", toml);
    let files: Vec<SourceFile> = policies
        .iter()
        .enumerate()
        .map(|(i, t)| SourceFile::new(format!("policies/p{i}.policy"), *t))
        .collect();
    let checked = check_sources(&toml, &files);
    assert!(
        !checked.has_errors(),
        "{:#?}",
        checked
            .findings
            .iter()
            .map(|f| &f.message)
            .collect::<Vec<_>>()
    );
    checked.artifact(None).unwrap().unwrap()
}

/// A decision-log sink the test can read.
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn lines(&self) -> Vec<Value> {
        let buf = self.0.lock().unwrap();
        String::from_utf8_lossy(&buf)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["kind"] == kind)
            .collect()
    }
}

pub fn config() -> EngineConfig {
    EngineConfig::new(TOKEN)
}

fn start(config: EngineConfig) -> (Arc<Engine>, Sink) {
    start_on(config, Arc::new(MemoryBackend::new()))
}

fn start_on(config: EngineConfig, backend: Arc<dyn StateBackend>) -> (Arc<Engine>, Sink) {
    let sink = Sink::default();
    let log = DecisionLog::to_writer(Box::new(sink.clone())).unwrap();
    let engine = Engine::start(config, backend, log).unwrap();
    (engine, sink)
}

/// The engine's `GET /v1/stats` document as JSON.
pub fn stats_of(engine: &Engine) -> Value {
    serde_json::to_value(engine.stats()).unwrap()
}

// ---------------------------------------------------------------------------
// Faults, injected through the engine's public seams: the state backend
// and the clock a caller passes.

/// Switches shared by a [`FaultyBackend`] and a test clock.
#[derive(Debug, Default)]
struct Faults {
    fail: AtomicBool,
    delay_us: AtomicU64,
    clock_offset: AtomicI64,
}

impl Faults {
    /// Makes every counting, reading or dropping limit-store call fail (or
    /// not).
    fn fail_store(&self, on: bool) {
        self.fail.store(on, Ordering::Relaxed);
    }

    /// Makes every counting or reading limit-store call take `d` longer.
    fn delay_store(&self, d: Duration) {
        self.delay_us.store(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Moves the engine's clock by `secs`.
    fn advance_clock(&self, secs: i64) {
        self.clock_offset.fetch_add(secs, Ordering::Relaxed);
    }

    fn check(&self) -> Result<(), StateError> {
        let delay = self.delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        if self.fail.load(Ordering::Relaxed) {
            return Err(StateError::Unavailable("injected fault".to_string()));
        }
        Ok(())
    }
}

/// The system clock moved by the faults' offset.
#[derive(Debug)]
struct TestClock(Arc<Faults>);

impl Clock for TestClock {
    fn now_secs(&self) -> u64 {
        SystemClock
            .now_secs()
            .saturating_add_signed(self.0.clock_offset.load(Ordering::Relaxed))
    }
}

/// Memory limits whose counting and reading calls obey the faults.
#[derive(Debug)]
struct FaultyLimits {
    store: MemoryLimitStore,
    faults: Arc<Faults>,
}

impl LimitStore for FaultyLimits {
    fn try_acquire(&self, key: LimitKey<'_>, window: Window, max: u64) -> Result<bool, StateError> {
        self.faults.check()?;
        self.store.try_acquire(key, window, max)
    }

    fn count(&self, key: LimitKey<'_>, window: Window) -> Result<u64, StateError> {
        self.faults.check()?;
        self.store.count(key, window)
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        self.store.entries()
    }

    fn put(&self, entry: &CounterEntry) -> Result<(), StateError> {
        self.store.put(entry)
    }

    fn remove_limit(&self, limit: &str) -> Result<usize, StateError> {
        self.faults.check()?;
        self.store.remove_limit(limit)
    }

    fn expire(&self, now: u64) {
        self.store.expire(now);
    }
}

/// An in-memory backend whose limit store fails or stalls on demand.
type FaultyBackend = LocalBackend<FaultyLimits>;

/// An engine on a [`FaultyBackend`] and a [`TestClock`], with their
/// switches.
pub struct Harness {
    engine: Arc<Engine>,
    faults: Arc<Faults>,
}

impl Harness {
    fn faults(&self) -> &Faults {
        &self.faults
    }
}

impl Deref for Harness {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

fn start_faulty(mut config: EngineConfig) -> (Harness, Sink) {
    let faults = Arc::new(Faults::default());
    config.clock = Arc::new(TestClock(Arc::clone(&faults)));
    let backend: FaultyBackend = LocalBackend::with_limits(FaultyLimits {
        store: MemoryLimitStore::new(),
        faults: Arc::clone(&faults),
    });
    let (engine, sink) = start_on(config, Arc::new(backend));
    (Harness { engine, faults }, sink)
}

pub struct Resp {
    pub status: StatusCode,
    headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub async fn send(
    app: &Router,
    method: &str,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn admin(app: &Router, method: &str, path: &str, body: Value) -> Resp {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    send(app, method, path, bytes, Some(TOKEN)).await
}

pub async fn eval(app: &Router, req: Value) -> Resp {
    send(
        app,
        "POST",
        "/v1/evaluate",
        serde_json::to_vec(&req).unwrap(),
        None,
    )
    .await
}

async fn upload(app: &Router, a: &Artifact) -> Resp {
    send(
        app,
        "PUT",
        &format!("/v1/artifacts/{}", a.hash),
        a.to_bytes().unwrap(),
        Some(TOKEN),
    )
    .await
}

/// The owner the tests' route changes name.
pub const OWNER: &str = "test-daemon";

/// Sets a route as [`OWNER`], over the version in force (fencing: the
/// request names its owner and the version it read).
pub async fn set_route(app: &Router, route: Value) -> Resp {
    let got = admin(app, "GET", "/v1/route", Value::Null).await;
    let expect = if got.status == StatusCode::OK {
        got.json()["version"].as_u64().unwrap()
    } else {
        0
    };
    let body = json!({"owner": OWNER, "expect": expect, "route": route});
    admin(app, "PUT", "/v1/route", body).await
}

/// An engine (on a faulty backend, every fault off) with `artifacts`
/// uploaded and the first routed as stable.
pub async fn with_stable(config: EngineConfig, artifacts: &[&Artifact]) -> (Harness, Router, Sink) {
    let (engine, sink) = start_faulty(config);
    let app = router(Arc::clone(&engine.engine));
    for a in artifacts {
        assert_eq!(upload(&app, a).await.status, StatusCode::CREATED);
    }
    let r = set_route(&app, json!({"stable": artifacts[0].hash})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    (engine, app, sink)
}

pub fn pay(agent: &str, amount: i64) -> Value {
    json!({"tool": "pay", "agent": agent, "org": "acme", "session": "s-1",
           "args": {"amount": amount, "country": "DE"}})
}

pub async fn state(app: &Router) -> LiveState {
    let r = admin(app, "GET", "/v1/state", Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
    serde_json::from_slice(&r.body).unwrap()
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Routes and statuses.

#[tokio::test]
async fn healthz_and_metrics_need_no_token() {
    let a = artifact(&[PAY]);
    let (_e, app, _) = with_stable(config(), &[&a]).await;
    let r = send(&app, "GET", "/healthz", vec![], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
    eval(&app, pay("bot", 5)).await;
    let r = send(&app, "GET", "/metrics", vec![], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text();
    let labels = format!("artifact=\"{}\",cohort=\"stable\",stage=\"\"", a.hash);
    assert!(
        text.contains(&format!("sluice_requests_total{{{labels}}} 1")),
        "{text}"
    );
    assert!(text.contains(&format!(
        "sluice_decisions_total{{{labels},decision=\"allow\"}} 1"
    )));
    for family in ["requests", "errors", "failsafe"] {
        let name = format!("sluice_{family}_total");
        assert!(text.contains(&format!("# TYPE {name} counter\n")), "{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{text}");
    }
    assert!(text.contains(&format!("sluice_errors_total{{{labels}}} 0")));
    assert!(text.contains(&format!("sluice_failsafe_total{{{labels}}} 0")));
    assert!(text.contains("sluice_latency_seconds_bucket{"));
    assert!(text.contains(&format!(
        "sluice_breaker_state{{artifact=\"{}\",state=\"closed\"}} 1",
        a.hash
    )));
}

#[tokio::test]
async fn admin_routes_need_the_token() {
    let a = artifact(&[PAY]);
    let (_e, app, _) = with_stable(config(), &[&a]).await;
    let routes = [
        ("PUT", format!("/v1/artifacts/{}", a.hash)),
        ("GET", "/v1/artifacts".to_string()),
        ("GET", format!("/v1/artifacts/{}", a.hash)),
        ("PUT", "/v1/route".to_string()),
        ("GET", "/v1/route".to_string()),
        ("POST", "/v1/lease".to_string()),
        ("GET", "/v1/stats".to_string()),
        ("GET", "/v1/state".to_string()),
        ("GET", "/v1/approvals".to_string()),
        ("POST", "/v1/approvals/ap-1".to_string()),
    ];
    for (method, path) in &routes {
        for token in [
            None,
            Some("wrong"),
            Some("s3cret-token-but-longer"),
            Some(""),
        ] {
            let r = send(&app, method, path, b"{}".to_vec(), token).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert!(r.error().contains("admin token"), "{}", r.error());
            assert_eq!(r.headers["www-authenticate"], "Bearer");
        }
    }
    let r = admin(&app, "GET", "/v1/artifacts", Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn artifacts_upload_verify_and_list() {
    let a = artifact(&[PAY]);
    let (_e, sink) = start(config());
    let app = router(_e);
    assert_eq!(upload(&app, &a).await.status, StatusCode::CREATED);
    let again = upload(&app, &a).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["hash"], a.hash);
    assert_eq!(again.json()["policies"], 1);

    // Tampered content: the hash no longer verifies.
    let mut tampered = a.clone();
    tampered.project = "other".to_string();
    let bytes = serde_json::to_vec(&tampered).unwrap();
    let r = send(
        &app,
        "PUT",
        &format!("/v1/artifacts/{}", a.hash),
        bytes,
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("hash does not verify"), "{}", r.error());

    // A valid artifact under another hash in the path.
    let r = send(
        &app,
        "PUT",
        "/v1/artifacts/abc123",
        a.to_bytes().unwrap(),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("differs from `abc123`"), "{}", r.error());

    // Not an artifact at all.
    let r = send(
        &app,
        "PUT",
        "/v1/artifacts/abc",
        b"{\"x\":".to_vec(),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("artifact is not valid"), "{}", r.error());

    let one = admin(
        &app,
        "GET",
        &format!("/v1/artifacts/{}", a.hash),
        Value::Null,
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["project"], "t");
    assert_eq!(one.json()["rules"], 3);
    let r = admin(&app, "GET", "/v1/artifacts/feedbeef", Value::Null).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("`feedbeef`"), "{}", r.error());

    let list = admin(&app, "GET", "/v1/artifacts", Value::Null)
        .await
        .json();
    let hashes: Vec<&str> = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes, vec![a.hash.as_str()]);
    drop(sink);
}

#[tokio::test]
async fn an_artifact_off_the_route_is_deleted_with_its_series() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, MAIL]);
    let c = artifact(&[MAIL]);
    let (engine, app, _sink) = with_stable(config(), &[&a, &b, &c]).await;
    let r = set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "shadow", "percent": 100,
               "hash_key": "session"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let breaker_series = |text: &str, hash: &str| {
        text.lines()
            .filter(|l| l.starts_with("sluice_breaker_state{") && l.contains(hash))
            .count()
    };
    let metrics = send(&app, "GET", "/metrics", Vec::new(), None).await.text();
    assert_eq!(breaker_series(&metrics, &c.hash), 3);

    // Without the token: 401. On the route, as stable or candidate: 409.
    let path = |h: &str| format!("/v1/artifacts/{h}");
    let r = send(&app, "DELETE", &path(&c.hash), Vec::new(), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for (h, role) in [(&a.hash, "stable"), (&b.hash, "candidate")] {
        let r = admin(&app, "DELETE", &path(h), Value::Null).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert!(r.error().contains(role), "{}", r.error());
    }
    // Off the route: deleted, with its breaker series; then unknown.
    let r = admin(&app, "DELETE", &path(&c.hash), Value::Null).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = admin(&app, "DELETE", &path(&c.hash), Value::Null).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains(&c.hash), "{}", r.error());
    let metrics = send(&app, "GET", "/metrics", Vec::new(), None).await.text();
    assert_eq!(breaker_series(&metrics, &c.hash), 0);
    assert_eq!(breaker_series(&metrics, &a.hash), 3);
    let held: Vec<String> = engine.artifacts().into_iter().map(|s| s.hash).collect();
    assert_eq!(held.len(), 2);
    assert!(!held.contains(&c.hash));
    let stats = stats_of(&engine);
    assert!(
        !stats["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["artifact"] == c.hash.as_str())
    );
    // A route naming it is refused until it is uploaded again.
    let r = set_route(&app, json!({"stable": c.hash})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(upload(&app, &c).await.status, StatusCode::CREATED);
    // Once the route moves off the old candidate, it can go too.
    let r = set_route(&app, json!({"stable": a.hash})).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = admin(&app, "DELETE", &path(&b.hash), Value::Null).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
}

#[tokio::test]
async fn the_identical_route_sent_again_changes_nothing() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, MAIL]);
    let (engine, app, _) = with_stable(config(), &[&a, &b]).await;
    let route = json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "percent": 50});
    let r = set_route(&app, route.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let version = r.json()["version"].as_u64().unwrap();
    for i in 0..10 {
        eval(&app, pay(&format!("bot{i}"), 5)).await;
    }
    let requests = |s: &Value| -> u64 {
        s["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["requests"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(requests(&stats_of(&engine)), 10);
    let r = set_route(&app, route).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["version"].as_u64(),
        Some(version),
        "no new version"
    );
    assert_eq!(requests(&stats_of(&engine)), 10, "stats kept");
    let got = admin(&app, "GET", "/v1/route", Value::Null).await;
    assert_eq!(got.json()["version"].as_u64(), Some(version));
}

#[tokio::test]
async fn route_errors_and_get() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, MAIL]);
    let (engine, _) = start(config());
    let app = router(engine);
    let r = admin(&app, "GET", "/v1/route", Value::Null).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = eval(&app, pay("bot", 1)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.error().contains("no route"));
    upload(&app, &a).await;

    let r = set_route(&app, json!({"stable": "feedbeef"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("`feedbeef`"), "{}", r.error());
    let r = set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "split"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("candidate artifact"), "{}", r.error());
    upload(&app, &b).await;

    let bad = [
        (json!({"stable": a.hash, "candidate": b.hash}), "`mode`"),
        (
            json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "percent": 150}),
            "`percent`",
        ),
        (
            json!({"stable": a.hash, "candidate": b.hash, "mode": "canary"}),
            "unknown variant `canary`",
        ),
        (
            json!({"stable": a.hash, "percent": 5}),
            "`percent` needs a `candidate`",
        ),
        (
            json!({"stable": a.hash, "colour": "red"}),
            "unknown field `colour`",
        ),
        (json!({"candidate": b.hash}), "missing field `stable`"),
        (
            json!({"stable": a.hash, "candidate": a.hash, "mode": "split"}),
            "`candidate` is the stable",
        ),
        (
            json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "hash_key": "nope"}),
            "`hash_key` names `nope`",
        ),
        (
            json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "match": {"org": []}}),
            "`match.org`",
        ),
        (
            json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "match": {"team": ["x"]}}),
            "`match` names `team`",
        ),
    ];
    for (body, needle) in bad {
        let r = set_route(&app, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(r.error().contains(needle), "{body}: {}", r.error());
    }
    let r = send(&app, "PUT", "/v1/route", b"not json".to_vec(), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let route = json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "percent": 12.5,
                       "match": {"org": ["acme"]}, "hash_key": "session", "stage": "canary"});
    let r = set_route(&app, route.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    let got = admin(&app, "GET", "/v1/route", Value::Null).await.json();
    assert_eq!(got["route"], route);
    assert_eq!(got["version"], 1);
}

/// Fencing (SPEC §6): only the lease holder changes the route, over the
/// version it read; a lease not renewed lapses on the engine's clock, the
/// candidate is dropped, and only then may another owner take the engine;
/// a forced takeover moves the lease.
#[tokio::test]
async fn only_the_lease_holder_changes_the_route_and_a_lapsed_lease_drops_the_candidate() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, MAIL]);
    let (h, _sink) = start_faulty(config());
    let app = router(Arc::clone(&h.engine));
    upload(&app, &a).await;
    upload(&app, &b).await;
    let put = |owner: &str, expect: u64, route: Value| {
        let body = json!({"owner": owner, "expect": expect, "lease_ms": 30_000, "route": route});
        let app = app.clone();
        async move { admin(&app, "PUT", "/v1/route", body).await }
    };
    let lease = |owner: &str, force: bool| {
        let body = json!({"owner": owner, "lease_ms": 30_000, "force": force});
        let app = app.clone();
        async move { admin(&app, "POST", "/v1/lease", body).await }
    };
    let route_now = || {
        let app = app.clone();
        async move { admin(&app, "GET", "/v1/route", Value::Null).await.json() }
    };
    let advance = |secs: i64| {
        h.faults().clock_offset.fetch_add(secs, Ordering::SeqCst);
    };
    let canary = json!({"stable": a.hash, "candidate": b.hash, "mode": "split",
                        "percent": 50.0, "stage": "canary"});

    // A bare route names no owner: refused, nothing set.
    let r = admin(&app, "PUT", "/v1/route", json!({"stable": a.hash})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["conflict"], "no_owner");
    assert!(r.error().contains("owner"), "{}", r.error());
    assert_eq!(
        admin(&app, "GET", "/v1/route", Value::Null).await.status,
        StatusCode::NOT_FOUND
    );
    // An owner that is not a name: 400.
    let r = put("", 0, json!({"stable": a.hash})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // The first owner takes the engine with its first route.
    let r = put("daemon-a", 0, json!({"stable": a.hash})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["lease"]["owner"], "daemon-a");
    assert_eq!(route_now().await["lease"]["owner"], "daemon-a");

    // Another owner is refused by name, by route and by lease; nothing moves.
    let r = put("daemon-b", 1, json!({"stable": b.hash})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let body = r.json();
    assert_eq!(body["conflict"], "held");
    assert_eq!(body["owner"], "daemon-a");
    assert_eq!(body["version"], 1);
    assert!(
        r.error().contains("held by daemon `daemon-a`"),
        "{}",
        r.error()
    );
    let r = lease("daemon-b", false).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["owner"], "daemon-a");
    assert_eq!(route_now().await["route"]["stable"], a.hash.as_str());
    assert_eq!(route_now().await["version"], 1);

    // The holder over a version it did not read: refused.
    let r = put("daemon-a", 0, canary.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["conflict"], "version");
    assert_eq!(r.json()["version"], 1);
    // Over the version in force: a canary.
    let r = put("daemon-a", 1, canary.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 2);

    // Renewed within the lease, it holds past the first lease's end.
    advance(20);
    let r = lease("daemon-a", false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    assert_eq!(r.json()["expires_in_ms"], 30_000);
    advance(20);
    assert!(!h.lapse_lease().await.unwrap());
    assert_eq!(route_now().await["route"]["candidate"], b.hash.as_str());
    assert_eq!(route_now().await["lease"]["expires_in_ms"], 10_000);

    // Not renewed: the engine's own watch drops the candidate (stable
    // alone, a new version) and frees the engine.
    advance(11);
    let start = Instant::now();
    let lapsed = loop {
        let got = route_now().await;
        if got["route"]["candidate"].is_null() {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never lapsed: {got}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        lapsed["route"],
        json!({"stable": a.hash, "hash_key": "session"})
    );
    assert_eq!(lapsed["version"], 3);
    assert!(lapsed["lease"].is_null(), "{lapsed}");
    let r = eval(&app, pay("bot", 5)).await;
    assert_eq!(r.json()["cohort"], "stable");

    // Now another owner may take it, over the version it reads.
    let r = put("daemon-b", 3, json!({"stable": b.hash})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = put("daemon-a", 4, json!({"stable": a.hash})).await;
    assert_eq!(r.json()["owner"], "daemon-b");

    // An operator's takeover moves the lease at once.
    let r = lease("operator", true).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["owner"], "operator");
    let r = put("daemon-b", 4, json!({"stable": a.hash})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["owner"], "operator");
}

#[tokio::test]
async fn evaluate_answers_and_rejects_bad_requests() {
    let a = artifact(&[PAY]);
    let mut cfg = config();
    cfg.max_body = 512;
    let (_e, app, _) = with_stable(cfg, &[&a]).await;

    let r = eval(&app, pay("bot", 5)).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["decision"], "allow");
    assert_eq!(body["artifact"], a.hash);
    assert_eq!(body["cohort"], "stable");
    assert_eq!(body["audit"], false);

    let mut req = pay("bot", 5);
    req["args"]["country"] = json!("KP");
    let body = eval(&app, req).await.json();
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["reasons"][0]["code"], "SANCTIONED");
    assert_eq!(body["reasons"][0]["policy"], "pay");
    assert_eq!(body["reasons"][0]["version"], "1.0.0");

    let bad = [
        (
            json!({"tool": "pay", "agent": "b", "org": "o"}),
            "`session`",
        ),
        (
            json!({"tool": 7, "agent": "b", "org": "o", "session": "s"}),
            "field `tool` must be a string",
        ),
        (
            json!({"tool": "pay", "agent": "b", "org": "o", "session": "s", "args": {"amont": 1}}),
            "`args.amont`",
        ),
        (json!([1, 2]), "must be a JSON object"),
    ];
    for (req, needle) in bad {
        let r = eval(&app, req.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{req}");
        assert!(r.error().contains(needle), "{req}: {}", r.error());
    }
    let r = send(&app, "POST", "/v1/evaluate", b"{\"tool\":".to_vec(), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("not valid JSON"), "{}", r.error());

    let mut big = pay("bot", 5);
    big["args"]["country"] = json!("x".repeat(600));
    let r = eval(&app, big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("over the limit"), "{}", r.error());

    // Bad requests are not counted.
    let stats = admin(&app, "GET", "/v1/stats", Value::Null).await.json();
    assert_eq!(stats["cohorts"][0]["requests"], 2);
    assert_eq!(stats["cohorts"][0]["decisions"]["deny"], 1);
    assert_eq!(stats["cohorts"][0]["deny_rate"], 0.5);
    // The latency buckets, `[upper bound in ms, count]`, count the same two.
    let buckets = stats["cohorts"][0]["histogram"].as_array().unwrap();
    let counted: u64 = buckets.iter().map(|b| b[1].as_u64().unwrap()).sum();
    assert_eq!(counted, 2, "{buckets:?}");
    assert!(buckets.iter().all(|b| b[0].as_f64().unwrap() > 0.0));
    // The sanctioned request was denied by a rule: it counts against no
    // limit.
    assert!(state(&app).await.counters.iter().all(|c| c.count == 1));

    let r = send(&app, "GET", "/v1/nothing", vec![], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].is_string());
    let r = send(&app, "GET", "/v1/evaluate", vec![], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.json()["error"].is_string());
}

#[tokio::test]
async fn approvals_queue_decide_and_conflict() {
    let a = artifact(&[PAY]);
    let (_e, app, sink) = with_stable(config(), &[&a]).await;
    let r = eval(&app, pay("bot", 2500)).await.json();
    assert_eq!(r["decision"], "require_approval");
    let first = r["approval_id"].as_str().unwrap().to_string();
    assert!(first.starts_with("ap-") && first.len() == 29, "{first}");
    assert_eq!(r["reasons"][0]["group"], "finance");
    let r = eval(&app, pay("bot", 3000)).await.json();
    let second = r["approval_id"].as_str().unwrap().to_string();
    assert_ne!(first, second);

    let live = state(&app).await;
    assert_eq!(live.artifact.as_deref(), Some(a.hash.as_str()));
    assert_eq!(live.approvals.len(), 2);
    let p = &live.approvals[0];
    assert_eq!(
        (p.id.as_str(), p.policy.as_str(), p.rule.as_str()),
        (first.as_str(), "pay", "big")
    );
    assert_eq!(p.group, "finance");
    assert_eq!(p.via.as_deref(), Some("approvals.request"));
    assert_eq!(p.request, pay("bot", 2500));
    assert_eq!(live.counters.len(), 1);
    assert_eq!(live.counters[0].limit, "pay.per_agent");
    assert_eq!(live.counters[0].key, "[\"bot\"]");
    assert_eq!(live.counters[0].count, 2);

    let r = admin(
        &app,
        "POST",
        &format!("/v1/approvals/{first}"),
        json!({"decision": "approve", "by": "alice"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let rec = r.json();
    assert_eq!(rec["decision"], "approve");
    assert_eq!(rec["by"], "alice");
    assert_eq!(rec["request"], pay("bot", 2500));

    let r = admin(
        &app,
        "POST",
        &format!("/v1/approvals/{first}"),
        json!({"decision": "reject", "by": "bob"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("approved by `alice`"), "{}", r.error());
    let r = admin(
        &app,
        "POST",
        "/v1/approvals/ap-99",
        json!({"decision": "reject", "by": "bob"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("ap-99"));
    for body in [
        json!({"decision": "maybe", "by": "bob"}),
        json!({"decision": "reject"}),
        json!({"decision": "reject", "by": " "}),
    ] {
        let r = admin(
            &app,
            "POST",
            &format!("/v1/approvals/{second}"),
            body.clone(),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let r = admin(
        &app,
        "POST",
        &format!("/v1/approvals/{second}"),
        json!({"decision": "reject", "by": "bob", "reason": "no"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(state(&app).await.approvals.is_empty());
    eventually("approval lines", || sink.of_kind("approval").len() == 2).await;
    let lines = sink.of_kind("approval");
    assert_eq!(lines[0]["by"], "alice");
    assert_eq!(lines[1]["reason"], "no");
}

/// `GET /v1/approvals/{id}` without a token: the id is the capability.
async fn approval_status(app: &Router, id: &str) -> Value {
    let r = send(app, "GET", &format!("/v1/approvals/{id}"), vec![], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn an_approval_is_a_lifecycle_asked_decided_and_used_once() {
    let a = artifact(&[PAY]);
    let (_e, app, sink) = with_stable(config(), &[&a]).await;
    // The same request asked again while it waits keeps its id.
    let r = eval(&app, pay("bot", 2500)).await.json();
    let id = r["approval_id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let again = eval(&app, pay("bot", 2500)).await.json();
        assert_eq!(again["decision"], "require_approval");
        assert_eq!(again["approval_id"], id.as_str());
    }
    // Key order and unrelated fields do not make another request.
    let reordered = json!({"args": {"country": "DE", "amount": 2500}, "session": "s-1",
                           "org": "acme", "agent": "bot", "tool": "pay"});
    assert_eq!(
        eval(&app, reordered).await.json()["approval_id"],
        id.as_str()
    );
    assert_eq!(state(&app).await.approvals.len(), 1);

    let st = approval_status(&app, &id).await;
    assert_eq!(st["status"], "pending");
    assert!(st.get("request").is_none(), "{st}");
    assert!(st["expires"].as_u64().unwrap() >= st["created"].as_u64().unwrap() + 24 * 3600);
    let r = send(
        &app,
        "GET",
        "/v1/approvals/ap-00000000000000000000000000",
        vec![],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = admin(
        &app,
        "POST",
        &format!("/v1/approvals/{id}"),
        json!({"decision": "approve", "by": "alice", "reason": "ok"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let st = approval_status(&app, &id).await;
    assert_eq!(st["status"], "approved");
    assert_eq!(st["by"], "alice");
    assert!(st.get("consumed").is_none());

    // Approved: let through once, with reason APPROVED.
    let r = eval(&app, pay("bot", 2500)).await.json();
    assert_eq!(r["decision"], "allow", "{r}");
    assert_eq!(r["approval_id"], id.as_str());
    assert_eq!(r["reasons"][0]["code"], "APPROVED");
    assert_eq!(r["reasons"][0]["rule"], "big");
    assert!(approval_status(&app, &id).await["consumed"].is_u64());
    // Once: the next one waits for a new approval.
    let r = eval(&app, pay("bot", 2500)).await.json();
    assert_eq!(r["decision"], "require_approval");
    let next = r["approval_id"].as_str().unwrap().to_string();
    assert_ne!(next, id);

    // Rejected: denied APPROVAL_REJECTED, as long as the rejection is kept.
    let r = admin(
        &app,
        "POST",
        &format!("/v1/approvals/{next}"),
        json!({"decision": "reject", "by": "bob", "reason": "too much"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for _ in 0..2 {
        let r = eval(&app, pay("bot", 2500)).await.json();
        assert_eq!(r["decision"], "deny", "{r}");
        assert_eq!(r["reasons"][0]["code"], "APPROVAL_REJECTED");
        assert!(
            r["reasons"][0]["text"]
                .as_str()
                .unwrap()
                .contains("too much")
        );
    }
    let st = approval_status(&app, &next).await;
    assert_eq!(
        (st["status"].as_str(), st["by"].as_str()),
        (Some("rejected"), Some("bob"))
    );

    // The admin list has them all, requests included.
    let r = admin(&app, "GET", "/v1/approvals", Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let statuses: Vec<&str> = list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["approved", "rejected"]);
    assert_eq!(list["approvals"][0]["request"], pay("bot", 2500));
    let r = send(&app, "GET", "/v1/approvals", vec![], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    eventually("the consumption is logged", || {
        sink.of_kind("approval")
            .iter()
            .any(|l| l["event"] == "consumed" && l["approved_by"] == "alice")
    })
    .await;
}

#[tokio::test]
async fn approvals_expire_and_queues_are_capped_per_group() {
    let a = artifact(&[PAY]);
    let mut cfg = config();
    cfg.approvals.ttl = Duration::from_secs(600);
    cfg.approvals.max_pending = 2;
    let (engine, app, _) = with_stable(cfg, &[&a]).await;
    let r1 = eval(&app, pay("a1", 2500)).await.json();
    let r2 = eval(&app, pay("a2", 2500)).await.json();
    assert_eq!(r2["decision"], "require_approval");
    // The group is full: denied, nothing queued.
    let r = eval(&app, pay("a3", 2500)).await.json();
    assert_eq!(r["decision"], "deny", "{r}");
    assert_eq!(r["reasons"][0]["code"], "APPROVAL_QUEUE_FULL");
    assert!(r.get("approval_id").is_none());
    assert_eq!(state(&app).await.approvals.len(), 2);
    // A waiting request asked again still gets its id.
    assert_eq!(
        eval(&app, pay("a1", 2500)).await.json()["approval_id"],
        r1["approval_id"]
    );

    // Past the TTL: expired, cannot be decided, and the request waits anew.
    engine.faults().advance_clock(601);
    let id = r1["approval_id"].as_str().unwrap();
    assert_eq!(approval_status(&app, id).await["status"], "expired");
    let r = admin(
        &app,
        "POST",
        &format!("/v1/approvals/{id}"),
        json!({"decision": "approve", "by": "alice"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("expired"), "{}", r.error());
    assert!(state(&app).await.approvals.is_empty());
    let r = eval(&app, pay("a1", 2500)).await.json();
    assert_eq!(r["decision"], "require_approval");
    assert_ne!(r["approval_id"], r1["approval_id"]);
    // A decided approval is kept one more TTL, then forgotten.
    engine.faults().advance_clock(1201);
    let r = send(&app, "GET", &format!("/v1/approvals/{id}"), vec![], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn decision_log_lines_carry_the_evaluation() {
    let a = artifact(&[PAY]);
    let (_e, app, sink) = with_stable(config(), &[&a]).await;
    set_route(&app, json!({"stable": a.hash, "stage": "full"})).await;
    let req = Request::builder()
        .method("POST")
        .uri("/v1/evaluate")
        .header("x-request-id", "req-42")
        .body(Body::from(serde_json::to_vec(&pay("bot", 5)).unwrap()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-42");
    eval(&app, pay("bot", 7)).await;
    eventually("evaluation lines", || sink.of_kind("evaluation").len() == 2).await;
    let lines = sink.of_kind("evaluation");
    let l = &lines[0];
    assert_eq!(l["request_id"], "req-42");
    assert_eq!(l["session"], "s-1");
    assert_eq!(l["artifact"], a.hash);
    assert_eq!(l["cohort"], "stable");
    assert_eq!(l["stage"], "full");
    assert_eq!(l["decision"], "allow");
    assert_eq!(l["request"], pay("bot", 5));
    assert!(l["latency_us"].is_u64());
    assert!(l["time"].as_str().unwrap().ends_with('Z'));
    assert!(l["reasons"].is_array());
    assert!(lines[1]["request_id"].as_str().unwrap().contains('-'));
    assert_eq!(sink.of_kind("route").len(), 2);
}

// ---------------------------------------------------------------------------
// Routing.

#[test]
fn bucket_hash_is_pinned() {
    // u64 big-endian of sha256's first eight bytes, modulo 10,000; computed
    // independently of this crate.
    assert_eq!(bucket(b"s-91"), 9572);
    assert_eq!(bucket_of(&json!("s-1")), Some(2642));
    assert_eq!(
        bucket_of(&json!(["b", "a", "a"])),
        bucket_of(&json!(["a", "b"]))
    );
    assert_eq!(bucket_of(&json!(null)), None);
}

async fn cohorts_of(engine: &Engine, sessions: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sessions {
        let req = json!({"tool": "email", "agent": "a", "org": "acme", "session": s});
        let bytes = engine
            .evaluate(&serde_json::to_vec(&req).unwrap(), None, None)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        out.push(v["cohort"].as_str().unwrap().to_string());
    }
    out
}

#[tokio::test]
async fn two_engines_agree_on_cohorts_and_percent_only_grows_the_candidate() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, MAIL]);
    let sessions: Vec<String> = (0..10_000).map(|i| format!("session-{i}")).collect();
    let mut results = Vec::new();
    for _ in 0..2 {
        let (engine, _) = start(config());
        engine
            .put_artifact(&a.hash, &a.to_bytes().unwrap())
            .unwrap();
        engine
            .put_artifact(&b.hash, &b.to_bytes().unwrap())
            .unwrap();
        let mut per_percent = Vec::new();
        for percent in [5.0, 20.0, 50.5] {
            let mut spec = RouteSpec::stable(a.hash.clone());
            spec.candidate = Some(b.hash.clone());
            spec.mode = Some(sluice::api::route::Mode::Split);
            spec.percent = Some(percent);
            engine.set_route(spec).await.unwrap();
            per_percent.push(cohorts_of(&engine, &sessions).await);
        }
        results.push(per_percent);
    }
    assert_eq!(results[0], results[1], "two engines disagree");
    let runs = &results[0];
    for (i, percent) in [5.0, 20.0, 50.5].iter().enumerate() {
        let n = runs[i].iter().filter(|c| *c == "candidate").count() as f64;
        let share = n / 100.0;
        assert!((share - percent).abs() < 1.5, "{percent}%: {share}%");
    }
    for w in runs.windows(2) {
        for (before, after) in w[0].iter().zip(&w[1]) {
            assert!(
                !(before == "candidate" && after == "stable"),
                "a session moved back to stable"
            );
        }
    }
}

#[tokio::test]
async fn match_limits_the_candidate_cohort() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, MAIL]);
    let (_e, app, _) = with_stable(config(), &[&a, &b]).await;
    let r = set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "split",
        "percent": 100, "match": {"org": ["internal"]}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for (org, cohort, artifact) in [
        ("internal", "candidate", &b.hash),
        ("acme", "stable", &a.hash),
    ] {
        let r = eval(
            &app,
            json!({"tool": "email", "agent": "x", "org": org, "session": "s"}),
        )
        .await
        .json();
        assert_eq!(r["cohort"], cohort);
        assert_eq!(&r["artifact"], artifact);
    }
}

// ---------------------------------------------------------------------------
// Shadow.

/// A candidate that denies what stable allows, and counts a limit of 1.
const STRICT: &str = r#"policy strict version 1.0.0 {
  tier operational
  rule no_pay { when tool == "pay" and args.amount > 100 deny STRICT "strict" }
  limit one { when tool == "pay" max 1 per 1h by agent exceed deny ONE "only one" }
}
"#;

#[tokio::test]
async fn shadow_answers_stable_counts_divergence_and_counts_no_limits() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, STRICT]);
    let (engine, app, sink) = with_stable(config(), &[&a, &b]).await;
    let r = set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "shadow", "stage": "shadow"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["route"]["percent"], 100.0);
    for amount in [5, 500, 600, 50] {
        let r = eval(&app, pay("bot", amount)).await.json();
        assert_eq!(r["decision"], "allow", "stable's decision");
        assert_eq!(r["artifact"], a.hash);
        assert_eq!(r["cohort"], "stable");
        assert_eq!(r["stage"], "shadow");
    }
    eventually("shadow comparisons", || {
        stats_of(&engine)["cohorts"][1]["shadow"]["compared"] == 4
    })
    .await;
    let stats = admin(&app, "GET", "/v1/stats", Value::Null).await.json();
    let shadow = &stats["cohorts"][1];
    assert_eq!(shadow["cohort"], "shadow");
    assert_eq!(shadow["artifact"], b.hash);
    assert_eq!(shadow["requests"], 4);
    // 500 and 600 exceed 100; the limit of one is read, never counted, so
    // it never trips either.
    assert_eq!(shadow["shadow"]["diverged"], 2);
    assert_eq!(shadow["shadow"]["divergence"], 0.5);
    assert_eq!(
        shadow["shadow"]["pairs"],
        json!([{"stable": "allow", "candidate": "deny", "count": 2}])
    );
    assert_eq!(stats["cohorts"][0]["requests"], 4);
    let live = state(&app).await;
    assert!(
        live.counters.iter().all(|c| c.limit != "strict.one"),
        "{:?}",
        live.counters
    );

    eventually("shadow lines", || sink.of_kind("evaluation").len() == 4).await;
    let lines = sink.of_kind("evaluation");
    let diverged: Vec<&Value> = lines.iter().filter(|l| l["diverged"] == true).collect();
    assert_eq!(diverged.len(), 2);
    assert_eq!(diverged[0]["decision"], "allow");
    assert_eq!(diverged[0]["shadow"]["decision"], "deny");
    assert_eq!(diverged[0]["shadow"]["artifact"], b.hash);
    assert_eq!(diverged[0]["shadow"]["reasons"][0]["code"], "STRICT");
    let text = send(&app, "GET", "/metrics", vec![], None).await.text();
    assert!(text.contains("sluice_shadow_divergences_total{"), "{text}");
    assert!(
        text.contains("stable=\"allow\",candidate=\"deny\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn the_stats_document_reads_back_as_the_api_type() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, STRICT]);
    let (engine, app, _sink) = with_stable(config(), &[&a, &b]).await;
    set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "shadow", "stage": "shadow"}),
    )
    .await;
    for amount in [5, 500, 600, 50, 2500] {
        eval(&app, pay("bot", amount)).await;
    }
    eventually("shadow comparisons", || {
        stats_of(&engine)["cohorts"][1]["shadow"]["compared"] == 5
    })
    .await;
    let r = admin(&app, "GET", "/v1/stats", Value::Null).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc: EngineStats = serde_json::from_slice(&r.body).unwrap();
    // Every part is there: the route, both cohorts with buckets and the
    // shadow comparison, the breakers.
    assert_eq!(doc.route.as_ref().unwrap().stage.as_deref(), Some("shadow"));
    assert_eq!(doc.cohorts.len(), 2);
    assert_eq!(doc.cohorts[1].cohort, Cohort::Shadow);
    assert!(doc.cohorts.iter().all(|c| c.histogram.is_some()));
    assert_eq!(doc.cohorts[1].shadow.as_ref().unwrap().diverged, 3);
    assert_eq!(doc.breakers.len(), 2);
    // Written again, it is the same JSON: names, nesting, numbers and the
    // order of the fields.
    let wire: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), wire);
    assert_eq!(
        serde_json::to_string(&doc).unwrap(),
        serde_json::to_string(&wire).unwrap()
    );
    // Before the first route: no route, no cohorts.
    let (empty, _) = start(config());
    let wire = serde_json::to_value(empty.stats()).unwrap();
    assert_eq!(wire["route"], Value::Null);
    assert_eq!(wire["cohorts"], json!([]));
    let doc: EngineStats = serde_json::from_value(wire.clone()).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), wire);
}

#[tokio::test]
async fn the_latency_histogram_counts_every_evaluation_exactly() {
    let a = artifact(&[PAY]);
    let (_e, app, sink) = with_stable(config(), &[&a]).await;
    for amount in 1..=20 {
        eval(&app, pay("bot", amount)).await;
    }
    eventually("evaluation lines", || {
        sink.of_kind("evaluation").len() == 20
    })
    .await;
    let r = send(&app, "GET", "/metrics", vec![], None).await;
    let text = r.text();
    let labels = format!("artifact=\"{}\",cohort=\"stable\",stage=\"\"", a.hash);
    assert!(
        text.contains("# TYPE sluice_latency_seconds histogram\n"),
        "{text}"
    );
    let sample = |name: &str| -> f64 {
        let prefix = format!("{name}{{{labels}}} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert_eq!(sample("sluice_latency_seconds_count"), 20.0);
    // The buckets are cumulative and end with every evaluation in `+Inf`.
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("sluice_latency_seconds_bucket{{{labels},le=")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.len() > 2, "{text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(text.contains(&format!(
        "sluice_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 20"
    )));
    // The sum is the sum of the latencies the decision log reports, which
    // it truncates to whole microseconds.
    let logged: u64 = sink
        .of_kind("evaluation")
        .iter()
        .map(|l| l["latency_us"].as_u64().unwrap())
        .sum();
    let sum_us = sample("sluice_latency_seconds_sum") * 1e6;
    assert!(
        logged as f64 <= sum_us + 1e-3 && sum_us < (logged + 20) as f64 + 1e-3,
        "sum {sum_us} µs, logged {logged} µs"
    );
}

#[tokio::test]
async fn a_full_shadow_queue_drops_and_counts() {
    let a = artifact(&[PAY]);
    let b = artifact(&[PAY, STRICT]);
    let mut cfg = config();
    cfg.shadow_queue = 4;
    let (engine, app, sink) = with_stable(cfg, &[&a, &b]).await;
    set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "shadow"}),
    )
    .await;
    let body = serde_json::to_vec(&pay("bot", 5)).unwrap();
    // The queue fills: on this single-threaded runtime the worker cannot
    // run until the test awaits.
    for _ in 0..10 {
        engine.evaluate(&body, None, None).await.unwrap();
    }
    let stats = stats_of(&engine);
    assert_eq!(stats["shadow_dropped"], 6);
    eventually("queued shadows", || {
        stats_of(&engine)["cohorts"][1]["requests"] == 4
    })
    .await;
    // Every evaluation is logged, with or without its shadow side.
    eventually("all lines", || sink.of_kind("evaluation").len() == 10).await;
    let with_shadow = sink
        .of_kind("evaluation")
        .iter()
        .filter(|l| l["shadow"].is_object())
        .count();
    assert_eq!(with_shadow, 4);
}

// ---------------------------------------------------------------------------
// Real sockets: concurrency, hot swap, graceful shutdown.

async fn listen(
    engine: Arc<Engine>,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, engine, Default::default(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_count_limits_exactly() {
    const LIMITED: &str = r#"policy cap version 1.0.0 {
      tier security
      limit per_agent { when tool == "pay" max 100 per 1h by agent exceed deny CAP "cap" }
    }"#;
    let a = artifact(&[LIMITED]);
    let (engine, _) = start(config());
    engine
        .put_artifact(&a.hash, &a.to_bytes().unwrap())
        .unwrap();
    engine
        .set_route(RouteSpec::stable(a.hash.clone()))
        .await
        .unwrap();
    let (base, stop, task) = listen(Arc::clone(&engine)).await;
    let client = reqwest::Client::new();
    let allowed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, base, allowed) = (client.clone(), base.clone(), Arc::clone(&allowed));
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let r = client
                    .post(format!("{base}/v1/evaluate"))
                    .json(&pay("bot", 5))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                if v["decision"] == "allow" {
                    allowed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 100);
    let stats = stats_of(&engine);
    assert_eq!(stats["cohorts"][0]["requests"], 400);
    assert_eq!(stats["cohorts"][0]["decisions"]["deny"], 300);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_fails_no_request() {
    // Three artifacts that differ only in a rule's text; routes cycle
    // through them, every other one a 50% split.
    let arts: Vec<Artifact> = (0..3)
        .map(|i| {
            artifact(&[&format!(
                "policy p version 1.0.0 {{ rule r {{ when tool == \"x\" deny X \"variant {i}\" }} }}"
            )])
        })
        .collect();
    let hashes: Vec<String> = arts.iter().map(|a| a.hash.clone()).collect();
    // The artifacts route k may answer with.
    let routed = move |k: u64| -> Vec<String> {
        let k = k as usize;
        let stable = hashes[k % 3].clone();
        if k % 2 == 1 {
            vec![stable, hashes[(k + 1) % 3].clone()]
        } else {
            vec![stable]
        }
    };
    let routed_for_body = routed.clone();
    let route_body = move |k: u64| -> Value {
        let r = routed_for_body(k);
        match r.as_slice() {
            [s] => json!({"stable": s}),
            [s, c] => json!({"stable": s, "candidate": c, "mode": "split", "percent": 50}),
            _ => unreachable!(),
        }
    };
    let (engine, _) = start(config());
    for a in &arts {
        engine
            .put_artifact(&a.hash, &a.to_bytes().unwrap())
            .unwrap();
    }
    engine
        .set_route(serde_json::from_value(route_body(0)).unwrap())
        .await
        .unwrap();
    let (base, stop, task) = listen(Arc::clone(&engine)).await;
    let client = reqwest::Client::new();
    // Flips started and completed: route k is in force after k completions.
    let started = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    const FLIPS: u64 = 1_000;

    let flipper = {
        let (client, base, started, completed) = (
            client.clone(),
            base.clone(),
            Arc::clone(&started),
            Arc::clone(&completed),
        );
        tokio::spawn(async move {
            for k in 1..=FLIPS {
                started.store(k, Ordering::SeqCst);
                let r = client
                    .put(format!("{base}/v1/route"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"owner": OWNER, "expect": k, "route": route_body(k)}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                completed.store(k, Ordering::SeqCst);
            }
        })
    };
    let mut clients = Vec::new();
    for c in 0..6 {
        let (client, base, started, completed, done) = (
            client.clone(),
            base.clone(),
            Arc::clone(&started),
            Arc::clone(&completed),
            Arc::clone(&done),
        );
        let routed = routed.clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                let lo = completed.load(Ordering::SeqCst);
                let r = client
                    .post(format!("{base}/v1/evaluate"))
                    .json(&json!({"tool": "x", "agent": "a", "org": "o", "session": format!("c{c}-{n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "request failed during a swap");
                let v: Value = r.json().await.unwrap();
                let hi = started.load(Ordering::SeqCst);
                let art = v["artifact"].as_str().unwrap().to_string();
                assert!(
                    (lo..=hi).any(|k| routed(k).contains(&art)),
                    "answered by {art}, routed between flips {lo} and {hi}"
                );
                n += 1;
            }
            n
        }));
    }
    flipper.await.unwrap();
    done.store(true, Ordering::SeqCst);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert!(total > 0);
    assert_eq!(engine.route().unwrap().version, FLIPS + 1);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = artifact(&[PAY]);
    let (engine, sink) = start(config());
    engine
        .put_artifact(&a.hash, &a.to_bytes().unwrap())
        .unwrap();
    engine
        .set_route(RouteSpec::stable(a.hash.clone()))
        .await
        .unwrap();
    let (base, stop, task) = listen(Arc::clone(&engine)).await;
    let addr = base.trim_start_matches("http://").to_string();
    let body = serde_json::to_vec(&pay("bot", 5)).unwrap();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/evaluate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(10);
    conn.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Shut down while the request's body is still arriving.
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !task.is_finished(),
        "the server stopped with a request in flight"
    );
    conn.write_all(rest).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"decision\":\"allow\""), "{text}");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    // The decision log was written out before serve returned.
    assert_eq!(sink.of_kind("evaluation").len(), 1);
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

// ---------------------------------------------------------------------------
// State migrations.

fn limit_policy(max: u64, window: &str, on_decrease: Option<&str>) -> String {
    let od = on_decrease
        .map(|o| format!("on_decrease {o}"))
        .unwrap_or_default();
    format!(
        r#"policy lim version 1.0.0 {{
  tier security
  limit per_agent {{
    when tool == "pay"
    max {max} per {window} by agent
    exceed deny RATE_LIMITED "too many"
    {od}
  }}
}}"#
    )
}

async fn decisions(app: &Router, agent: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = eval(app, pay(agent, 5)).await.json();
        out.push(r["decision"].as_str().unwrap().to_string());
    }
    out
}

fn allow_deny(allow: usize, deny: usize) -> Vec<String> {
    std::iter::repeat_n("allow".to_string(), allow)
        .chain(std::iter::repeat_n("deny".to_string(), deny))
        .collect()
}

/// Starts at the beginning of an hour so the tests' windows do not end
/// while they run.
fn align_to_hour(engine: &Harness) {
    let now = engine.now_secs();
    engine
        .faults()
        .advance_clock((3600 - now % 3600) as i64 + 1);
}

#[tokio::test]
async fn limit_decrease_next_window_keeps_the_old_max_until_the_window_ends() {
    let a = artifact(&[&limit_policy(5, "1h", None)]);
    let b = artifact(&[&limit_policy(2, "1h", Some("next_window"))]);
    let (engine, app, sink) = with_stable(config(), &[&a, &b]).await;
    align_to_hour(&engine);
    assert_eq!(decisions(&app, "bot", 4).await, allow_deny(4, 0));
    assert_eq!(decisions(&app, "low", 1).await, allow_deny(1, 0));
    let r = set_route(&app, json!({"stable": b.hash})).await.json();
    let m = &r["migrations"][0];
    assert_eq!(m["migration"], "limit_decrease");
    assert_eq!(m["limit"], "lim.per_agent");
    assert_eq!(
        (m["old_max"].as_u64(), m["new_max"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(m["on_decrease"], "next_window");
    assert_eq!(m["keys_over"], 1);
    // The old max stays in force for every key until the window ends.
    assert_eq!(decisions(&app, "bot", 2).await, allow_deny(1, 1));
    assert_eq!(decisions(&app, "low", 5).await, allow_deny(4, 1));
    // Next window: the new max.
    engine.faults().advance_clock(3600);
    assert_eq!(decisions(&app, "bot", 3).await, allow_deny(2, 1));
    eventually("migration line", || !sink.of_kind("migration").is_empty()).await;
    let line = &sink.of_kind("migration")[0];
    assert_eq!(line["migration"], "limit_decrease");
    assert_eq!(line["route_version"], 2);
}

#[tokio::test]
async fn limit_decrease_freeze_refuses_keys_over_the_new_max() {
    for on_decrease in [Some("freeze"), None] {
        let a = artifact(&[&limit_policy(5, "1h", None)]);
        let b = artifact(&[&limit_policy(2, "1h", on_decrease)]);
        let (engine, app, _) = with_stable(config(), &[&a, &b]).await;
        align_to_hour(&engine);
        assert_eq!(decisions(&app, "bot", 4).await, allow_deny(4, 0));
        assert_eq!(decisions(&app, "low", 1).await, allow_deny(1, 0));
        let r = set_route(&app, json!({"stable": b.hash})).await.json();
        let m = &r["migrations"][0];
        assert_eq!(m["migration"], "limit_decrease", "{on_decrease:?}");
        assert_eq!(m["keys_over"], 1);
        assert!(m["effect"].as_str().unwrap().contains("refused"));
        // Over the new max: refused at once, and its count stays.
        assert_eq!(decisions(&app, "bot", 2).await, allow_deny(0, 2));
        assert_eq!(decisions(&app, "low", 2).await, allow_deny(1, 1));
        let live = state(&app).await;
        let bot = live.counters.iter().find(|c| c.key == "[\"bot\"]").unwrap();
        assert_eq!(bot.count, 4);
        engine.faults().advance_clock(3600);
        assert_eq!(decisions(&app, "bot", 3).await, allow_deny(2, 1));
    }
}

#[tokio::test]
async fn window_change_resets_counters() {
    let a = artifact(&[&limit_policy(3, "1h", None)]);
    let b = artifact(&[&limit_policy(3, "1d", None)]);
    let (engine, app, sink) = with_stable(config(), &[&a, &b]).await;
    align_to_hour(&engine);
    assert_eq!(decisions(&app, "bot", 4).await, allow_deny(3, 1));
    let r = set_route(&app, json!({"stable": b.hash})).await.json();
    assert_eq!(
        r["migrations"],
        json!([{"migration": "window_change", "limit": "lim.per_agent",
                "old_secs": 3600, "new_secs": 86400, "counters_reset": 1}])
    );
    assert!(state(&app).await.counters.is_empty());
    assert_eq!(decisions(&app, "bot", 4).await, allow_deny(3, 1));
    eventually("migration line", || sink.of_kind("migration").len() == 1).await;
    assert_eq!(sink.of_kind("migration")[0]["counters_reset"], 1);
}

#[tokio::test]
async fn a_migration_that_failed_half_way_is_applied_when_the_route_is_set_again() {
    let a = artifact(&[&limit_policy(3, "1h", None), PAY]);
    let b = artifact(&[PAY]);
    let (engine, app, _) = with_stable(config(), &[&a, &b]).await;
    align_to_hour(&engine);
    decisions(&app, "bot", 2).await;
    // The migration is claimed, then the store fails: 503, the route stays.
    engine.faults().fail_store(true);
    let r = set_route(&app, json!({"stable": b.hash})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.error().contains("injected fault"), "{}", r.error());
    engine.faults().fail_store(false);
    // Set again, the same engine applies it (its own claim does not say
    // "applied elsewhere").
    let r = set_route(&app, json!({"stable": b.hash})).await.json();
    assert_eq!(
        r["migrations"],
        json!([{"migration": "limit_removed", "limit": "lim.per_agent", "counters_dropped": 1}])
    );
}

#[tokio::test]
async fn removed_limit_drops_counters() {
    let a = artifact(&[&limit_policy(3, "1h", None), PAY]);
    let b = artifact(&[PAY]);
    let (engine, app, sink) = with_stable(config(), &[&a, &b]).await;
    align_to_hour(&engine);
    decisions(&app, "bot", 2).await;
    assert_eq!(state(&app).await.counters.len(), 2);
    let r = set_route(&app, json!({"stable": b.hash})).await.json();
    assert_eq!(
        r["migrations"],
        json!([{"migration": "limit_removed", "limit": "lim.per_agent", "counters_dropped": 1}])
    );
    let live = state(&app).await;
    assert_eq!(live.counters.len(), 1);
    assert_eq!(live.counters[0].limit, "pay.per_agent");
    assert_eq!(
        live.counters[0].count, 2,
        "the other limit's counters carry over"
    );
    eventually("migration line", || sink.of_kind("migration").len() == 1).await;
    // A raised max or an unchanged limit needs no migration.
    let c = artifact(&[&limit_policy(30, "1h", None), PAY]);
    upload(&app, &c).await;
    let r = set_route(&app, json!({"stable": c.hash})).await.json();
    assert_eq!(r["migrations"], json!([]));
}

const NARROW: &str = r#"policy pay version 1.1.0 {
  tier security
  rule big {
    when tool == "pay" and args.amount > 5000
    require_approval "finance" via "approvals.request" BIG "needs approval"
  }
}
"#;

#[tokio::test]
async fn removed_and_narrowed_approval_rules_resolve_waiting_requests() {
    let a = artifact(&[PAY]);
    let narrowed = artifact(&[NARROW]);
    let removed = artifact(&[MAIL]);
    let (_e, app, sink) = with_stable(config(), &[&a, &narrowed, &removed]).await;
    let mut ids = Vec::new();
    for amount in [2000, 6000, 7000] {
        let r = eval(&app, pay("bot", amount)).await.json();
        ids.push(r["approval_id"].as_str().unwrap().to_string());
    }
    assert_eq!(state(&app).await.approvals.len(), 3);
    let r = set_route(&app, json!({"stable": narrowed.hash}))
        .await
        .json();
    let resolved: Vec<&Value> = r["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["migration"] == "approval_resolved")
        .collect();
    assert_eq!(
        resolved,
        vec![
            &json!({"migration": "approval_resolved", "id": ids[0], "policy": "pay",
                     "rule": "big", "reason": "rule narrowed"})
        ]
    );
    let waiting: Vec<String> = state(&app)
        .await
        .approvals
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(waiting, ids[1..]);

    let r = set_route(&app, json!({"stable": removed.hash}))
        .await
        .json();
    let reasons: Vec<(&str, &str)> = r["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["migration"] == "approval_resolved")
        .map(|m| (m["id"].as_str().unwrap(), m["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (ids[1].as_str(), "rule removed"),
            (ids[2].as_str(), "rule removed")
        ]
    );
    assert!(state(&app).await.approvals.is_empty());
    // A resolved request was rejected by the engine: deciding it again is
    // a conflict.
    let r = admin(
        &app,
        "POST",
        &format!("/v1/approvals/{}", ids[1]),
        json!({"decision": "approve", "by": "alice"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("rejected by `sluice`"), "{}", r.error());
    eventually("migration lines", || {
        sink.of_kind("migration")
            .iter()
            .filter(|m| m["migration"] == "approval_resolved")
            .count()
            == 3
    })
    .await;
}

#[tokio::test]
async fn split_candidate_limits_migrate_on_activation() {
    let a = artifact(&[&limit_policy(5, "1h", None)]);
    let b = artifact(&[&limit_policy(3, "1d", None)]);
    let (engine, app, _) = with_stable(config(), &[&a, &b]).await;
    align_to_hour(&engine);
    decisions(&app, "bot", 2).await;
    // Shadow does not activate the candidate: nothing migrates.
    let r = set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "shadow"}),
    )
    .await
    .json();
    assert_eq!(r["migrations"], json!([]));
    // Enforcing it on a split does.
    let r = set_route(
        &app,
        json!({"stable": a.hash, "candidate": b.hash, "mode": "split", "percent": 10}),
    )
    .await
    .json();
    assert_eq!(r["migrations"][0]["migration"], "window_change");
}

// ---------------------------------------------------------------------------
// Circuit breaker.

const OPS: &str = r#"policy ops version 2.0.0 {
  tier operational
  limit per_session { when tool == "email" max 1000 per 1h by session exceed deny MAIL "mail" }
}
"#;

const COMPLIANCE: &str = r#"policy gdpr version 1.0.0 {
  tier compliance
  rule export { when tool == "export" and args.country == "US" deny GDPR "no export" }
}
"#;

fn breaker_config() -> EngineConfig {
    let mut cfg = config();
    cfg.breaker = BreakerConfig {
        min_requests: 4,
        error_rate: 0.5,
        slow_call: Duration::from_millis(40),
        slow_rate: 0.5,
        open_for: Duration::from_millis(300),
        probes: 2,
        ..BreakerConfig::default()
    };
    cfg
}

fn breaker_state(engine: &Engine) -> String {
    stats_of(engine)["breakers"][0]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn req(tool: &str, country: &str) -> Value {
    json!({"tool": tool, "agent": "bot", "org": "acme", "session": "s-1", "args": {"amount": 5, "country": country}})
}

#[tokio::test]
async fn breaker_opens_on_errors_fails_safe_probes_and_closes() {
    let a = artifact(&[PAY, OPS, COMPLIANCE]);
    let (engine, app, sink) = with_stable(breaker_config(), &[&a]).await;
    engine.faults().fail_store(true);
    // Closed: an evaluation that fails gets the failsafe too.
    for _ in 0..4 {
        let r = eval(&app, req("pay", "DE")).await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["reasons"][0]["code"], "FAILSAFE");
    }
    assert_eq!(breaker_state(&engine), "open");
    engine.faults().fail_store(false);

    // Open: security fails closed, operational fails open with audit,
    // compliance fails closed, and nothing is evaluated.
    let v = eval(&app, req("pay", "DE")).await.json();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reasons"][0]["policy"], "pay");
    assert_eq!(v["reasons"][0]["code"], "FAILSAFE");
    assert_eq!(v["audit"], false);
    let v = eval(&app, req("email", "DE")).await.json();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["audit"], true);
    assert_eq!(v["reasons"][0]["policy"], "ops");
    let v = eval(&app, req("export", "US")).await.json();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reasons"][0]["policy"], "gdpr");
    let v = eval(&app, req("export", "FR")).await.json();
    assert_eq!(
        v["decision"], "allow",
        "no policy matches: the project default"
    );
    assert_eq!(v["audit"], true);
    assert!(
        state(&app).await.counters.is_empty(),
        "failsafe counts nothing"
    );
    let stats = stats_of(&engine);
    assert_eq!(stats["cohorts"][0]["errors"], 4);
    assert_eq!(stats["cohorts"][0]["failsafe"], 8);
    let text = send(&app, "GET", "/metrics", vec![], None).await.text();
    assert!(text.contains("state=\"open\"} 1"), "{text}");

    // Half-open after open_for: probes are evaluated.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let v = eval(&app, req("pay", "DE")).await.json();
    assert_eq!(v["decision"], "allow", "a probe is evaluated");
    assert_eq!(breaker_state(&engine), "half_open");
    let v = eval(&app, req("pay", "DE")).await.json();
    assert_eq!(v["decision"], "allow");
    assert_eq!(breaker_state(&engine), "closed");
    let v = eval(&app, req("email", "DE")).await.json();
    assert_eq!(v["audit"], false);

    eventually("breaker lines", || sink.of_kind("breaker").len() == 3).await;
    let states: Vec<(String, String)> = sink
        .of_kind("breaker")
        .iter()
        .map(|l| {
            (
                l["from"].as_str().unwrap().into(),
                l["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("closed".into(), "open".into()),
            ("open".into(), "half_open".into()),
            ("half_open".into(), "closed".into())
        ]
    );
    let failsafe_lines = sink
        .of_kind("evaluation")
        .iter()
        .filter(|l| l["failsafe"] == true)
        .count();
    assert_eq!(failsafe_lines, 8);
}

#[tokio::test]
async fn breaker_opens_on_latency_and_a_failed_probe_reopens_it() {
    let a = artifact(&[PAY, OPS]);
    let (engine, app, _) = with_stable(breaker_config(), &[&a]).await;
    engine.faults().delay_store(Duration::from_millis(50));
    for _ in 0..4 {
        // Slow but successful: answered by the evaluator.
        let v = eval(&app, req("pay", "DE")).await.json();
        assert_eq!(v["decision"], "allow");
    }
    assert_eq!(breaker_state(&engine), "open");
    let v = eval(&app, req("email", "DE")).await.json();
    assert_eq!(
        (v["decision"].as_str(), v["audit"].as_bool()),
        (Some("allow"), Some(true))
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    engine.faults().delay_store(Duration::ZERO);
    engine.faults().fail_store(true);
    let v = eval(&app, req("pay", "DE")).await.json();
    assert_eq!(v["reasons"][0]["code"], "FAILSAFE");
    assert_eq!(
        breaker_state(&engine),
        "open",
        "a failed probe opens it again"
    );
    engine.faults().fail_store(false);
    tokio::time::sleep(Duration::from_millis(350)).await;
    decisions(&app, "bot", 2).await;
    assert_eq!(breaker_state(&engine), "closed");
}

// ---------------------------------------------------------------------------
// The command.

#[test]
fn engine_command_needs_a_token() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["engine", "--listen", "127.0.0.1:0"])
        .env_remove("SLUICE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token is required"));
}

#[test]
fn engine_command_refuses_tokens_it_could_never_admit() {
    for (token, says) in [
        ("tiny-token", "at least 16"),
        ("ünïcode-token-0123456", "printable ASCII"),
        ("a token with blanks inside", "printable ASCII"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["engine", "--listen", "127.0.0.1:0"])
            .env("SLUICE_ADMIN_TOKEN", token)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{token}: {err}");
        assert!(err.contains(says), "{token}: {err}");
        assert!(!err.contains(token), "{err}");
    }
}

#[test]
fn a_token_from_a_secret_file_and_a_lowercase_scheme_are_admitted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // As `$(cat secret-file)` would not strip it: a trailing newline.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["engine", "--listen", &format!("127.0.0.1:{port}")])
        .env("SLUICE_ADMIN_TOKEN", format!("{TOKEN}\n"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let codes = rt.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/v1/stats");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if client.get(&url).send().await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the engine did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut codes = Vec::new();
        for auth in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("Bearer {TOKEN}x"),
        ] {
            let r = client
                .get(&url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            codes.push(r.status().as_u16());
        }
        codes
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(codes, [200, 200, 401]);
}

#[test]
fn engine_command_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&[PAY]);
    let path = dir.path().join("a.json");
    std::fs::write(&path, a.to_bytes().unwrap()).unwrap();
    let log = dir.path().join("decisions.jsonl");
    // Find a free loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["engine", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--artifact")
        .arg(&path)
        .arg("--decision-log")
        .arg(&log)
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "the engine did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = client
            .post(format!("{base}/v1/evaluate"))
            .json(&pay("bot", 5))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["decision"].as_str().unwrap_or_default().to_string()
    });
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the engine did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(result, "allow");
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"kind\":\"evaluation\"")),
        "{text}"
    );
}
