//! A fleet on one shared state (SPEC §5 "State backend", "Approvals"):
//! real `sluice engine` processes on a real `redis-server` that each test
//! starts on a free loopback port (`.ci/run` installs it). Exact counting
//! sequentially and under concurrency, window expiry, every limit migration
//! applied once for the fleet, approvals across engines, Redis stopped
//! (SIGSTOP) and killed mid-traffic, and every engine restarted.
//!
//! Every wait is a poll with a deadline; every process is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::compile::artifact::Artifact;
use sluice::pipeline::check_sources;
use sluice::source::SourceFile;

const TOKEN: &str = "fleet-state-token";

const TOML: &str = r#"
[project]
name = "fleet"
default = "allow"

[schema]
tool = "string"
agent = "string"
org = "string"
session = "string"
"args.amount?" = "int"
"#;

/// A limit on `pay` and an approval above 1000 (security), and an
/// operational limit on `mail`.
fn policies(pay_limit: &str) -> Vec<String> {
    vec![
        format!(
            r#"policy pay version 1.0.0 {{
  tier security
  rule big {{
    when tool == "pay" and args.amount > 1000
    require_approval "finance" BIG "needs approval"
  }}
  {pay_limit}
}}
"#
        ),
        r#"policy mail version 1.0.0 {
  tier operational
  limit per_session {
    when tool == "mail"
    max 100000 per 1h by session
    exceed deny MAIL_RATE "too many mails"
  }
}
"#
        .to_string(),
    ]
}

fn limit(max: u64, window: &str, on_decrease: Option<&str>) -> String {
    let od = on_decrease.map_or(String::new(), |o| format!("on_decrease {o}"));
    format!(
        r#"limit per_agent {{
    when tool == "pay"
    max {max} per {window} by agent
    exceed deny RATE_LIMITED "too many"
    {od}
  }}"#
    )
}

fn artifact(pay_limit: &str) -> Artifact {
    let toml = SourceFile::new("sluice.toml", TOML);
    let files: Vec<SourceFile> = policies(pay_limit)
        .iter()
        .enumerate()
        .map(|(i, t)| SourceFile::new(format!("policies/p{i}.policy"), t.as_str()))
        .collect();
    let checked = check_sources(&toml, &files);
    assert!(
        !checked.has_errors(),
        "{:?}",
        checked
            .findings
            .iter()
            .map(|f| &f.message)
            .collect::<Vec<_>>()
    );
    checked.artifact(None).unwrap().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A `redis-server` of the test's own, persisting every write (AOF,
/// fsync always) in its folder so that a SIGKILL loses nothing.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server; .ci/run does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `redis-cli` against this server; its output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A stopped server must run to die.
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.kill();
    }
}

/// A `sluice engine` process on `--state-backend redis://…`.
struct Engine {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Engine {
    fn start(dir: &Path, redis: &str, artifact: &Path, extra: &[&str]) -> Engine {
        let port = free_port();
        let log = dir.join(format!("engine-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["engine", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--state-backend", redis])
            .args(if extra.contains(&"--state-timeout") {
                &[][..]
            } else {
                &["--state-timeout", "100ms"][..]
            })
            .args(["--breaker-open-for", "300ms"])
            .arg("--artifact")
            .arg(artifact)
            .args(extra)
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Engine {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "engine {} not ready: {}",
                self.base,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) {
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the engine did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis, an artifact file and three engines on it.
struct Fleet {
    dir: tempfile::TempDir,
    redis: Redis,
    artifact: PathBuf,
    engines: Vec<Engine>,
    client: reqwest::Client,
}

impl Fleet {
    async fn start(a: &Artifact, extra: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let redis = Redis::start(dir.path());
        let artifact = dir.path().join("artifact.json");
        std::fs::write(&artifact, a.to_bytes().unwrap()).unwrap();
        let mut fleet = Fleet {
            redis,
            artifact,
            engines: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            dir,
        };
        fleet.start_engines(extra).await;
        fleet
    }

    async fn start_engines(&mut self, extra: &[&str]) {
        for _ in 0..3 {
            let e = Engine::start(self.dir.path(), &self.redis.url(), &self.artifact, extra);
            e.wait_ready(&self.client).await;
            self.engines.push(e);
        }
    }

    fn url(&self, i: usize) -> &str {
        &self.engines[i % self.engines.len()].base
    }

    async fn eval(&self, i: usize, req: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/v1/evaluate", self.url(i)))
            .json(req)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn admin(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.url(i)))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Uploads `a` to every engine.
    async fn upload(&self, a: &Artifact) {
        for i in 0..self.engines.len() {
            let r = self
                .client
                .put(format!("{}/v1/artifacts/{}", self.url(i), a.hash))
                .bearer_auth(TOKEN)
                .body(a.to_bytes().unwrap())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    }

    /// Routes engine `i` to stable `hash`, as the daemon does (fenced: an
    /// owner and the version in force); returns the migrations.
    async fn route(&self, i: usize, hash: &str) -> Vec<Value> {
        let (status, now) = self.admin(i, reqwest::Method::GET, "/v1/route", None).await;
        let expect = if status == 200 {
            now["version"].as_u64().unwrap()
        } else {
            0
        };
        let (status, body) = self
            .admin(
                i,
                reqwest::Method::PUT,
                "/v1/route",
                Some(json!({"owner": "fleet-state-test", "expect": expect,
                            "route": {"stable": hash}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["migrations"].as_array().cloned().unwrap_or_default()
    }

    /// The count of `key` of the pay limit in the shared state, read
    /// through engine `i`.
    async fn count(&self, i: usize, agent: &str) -> u64 {
        let (status, state) = self.admin(i, reqwest::Method::GET, "/v1/state", None).await;
        assert_eq!(status, 200, "{state}");
        state["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["limit"] == "pay.per_agent" && c["key"] == format!("[\"{agent}\"]"))
            .map_or(0, |c| c["count"].as_u64().unwrap())
    }
}

fn pay(agent: &str, amount: i64) -> Value {
    json!({"tool": "pay", "agent": agent, "org": "acme", "session": "s-1",
           "args": {"amount": amount}})
}

fn mail(session: &str) -> Value {
    json!({"tool": "mail", "agent": "m", "org": "acme", "session": session})
}

fn is_failsafe(r: &Value) -> bool {
    r["reasons"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|x| x["rule"] == "failsafe"))
        || (r["audit"] == true && r["decision"] == "allow")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_engines_count_one_limit_exactly() {
    let a = artifact(&limit(10, "1h", None));
    // Counting is what is tested, not the failsafe: a timeout that a
    // loaded machine cannot miss (100 ms gave one failsafe in 200 under load).
    let fleet = Fleet::start(&a, &["--state-timeout", "5s"]).await;
    // The measured defect: 30 requests round-robin over three engines.
    let mut allowed = 0;
    for i in 0..30 {
        let (status, r) = fleet.eval(i, &pay("bot", 5)).await;
        assert_eq!(status, 200);
        match r["decision"].as_str().unwrap() {
            "allow" => allowed += 1,
            "deny" => assert_eq!(r["reasons"][0]["code"], "RATE_LIMITED", "{r}"),
            other => panic!("{other}: {r}"),
        }
    }
    assert_eq!(allowed, 10);
    for i in 0..3 {
        assert_eq!(fleet.count(i, "bot").await, 10);
    }
    // The counter expires with its window.
    let key = "fleet:c:pay.per_agent:[\"bot\"]";
    let ttl: i64 = fleet.redis.cli(&["TTL", key]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 3600, "{ttl}");

    // 200 concurrent requests over the three engines, a fresh agent and a
    // limit of 10: exactly 10 let through.
    let fleet = Arc::new(fleet);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let f = Arc::clone(&fleet);
        tasks.push(tokio::spawn(
            async move { f.eval(i, &pay("crowd", 5)).await },
        ));
    }
    let mut decisions = std::collections::BTreeMap::new();
    for t in tasks {
        let (status, r) = t.await.unwrap();
        assert_eq!(status, 200, "{r}");
        assert!(!is_failsafe(&r), "{r}");
        *decisions
            .entry(r["decision"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(decisions.get("allow"), Some(&10), "{decisions:?}");
    assert_eq!(decisions.get("deny"), Some(&190), "{decisions:?}");
    assert_eq!(fleet.count(1, "crowd").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_ends_for_the_whole_fleet() {
    let a = artifact(&limit(3, "2s", None));
    let fleet = Fleet::start(&a, &[]).await;
    // Start at the beginning of a 2-second window, so that the requests
    // below fall in one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        if now.as_secs().is_multiple_of(2) && now.subsec_millis() < 300 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut decisions = Vec::new();
    for i in 0..5 {
        decisions.push(fleet.eval(i, &pay("bot", 5)).await.1["decision"].clone());
    }
    assert_eq!(decisions, ["allow", "allow", "allow", "deny", "deny"]);
    let ttl: i64 = fleet
        .redis
        .cli(&["TTL", "fleet:c:pay.per_agent:[\"bot\"]"])
        .parse()
        .unwrap();
    assert!((1..=2).contains(&ttl), "{ttl}");
    // The next window lets three through again, whichever engine is asked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = fleet.eval(2, &pay("bot", 5)).await.1;
        if r["decision"] == "allow" {
            break;
        }
        assert!(Instant::now() < deadline, "the window did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fleet.eval(0, &pay("bot", 5)).await.1["decision"], "allow");
    assert_eq!(fleet.eval(1, &pay("bot", 5)).await.1["decision"], "allow");
    assert_eq!(fleet.eval(2, &pay("bot", 5)).await.1["decision"], "deny");
}

fn kinds(migrations: &[Value]) -> Vec<String> {
    migrations
        .iter()
        .map(|m| m["migration"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_migration_applies_once_for_the_fleet() {
    let a = artifact(&limit(5, "1h", Some("next_window")));
    let b = artifact(&limit(3, "1h", Some("next_window")));
    let c = artifact(&limit(2, "1h", Some("freeze")));
    let d = artifact(&limit(2, "1d", Some("freeze")));
    let e = artifact("");
    let fleet = Fleet::start(&a, &[]).await;
    for x in [&b, &c, &d, &e] {
        fleet.upload(x).await;
    }
    for i in 0..4 {
        assert_eq!(fleet.eval(i, &pay("x", 5)).await.1["decision"], "allow");
    }
    assert_eq!(fleet.count(0, "x").await, 4);

    // next_window: the first engine migrates, the others find it done; the
    // grace (old max 5) holds on every engine.
    assert_eq!(kinds(&fleet.route(0, &b.hash).await), ["limit_decrease"]);
    for i in 1..3 {
        let m = fleet.route(i, &b.hash).await;
        assert_eq!(kinds(&m), ["applied_elsewhere"], "{m:?}");
    }
    assert_eq!(fleet.eval(2, &pay("x", 5)).await.1["decision"], "allow");
    assert_eq!(fleet.eval(1, &pay("x", 5)).await.1["decision"], "deny");
    assert_eq!(fleet.count(0, "x").await, 5);
    // A new key gets the old max too until the window ends.
    for i in 0..5 {
        assert_eq!(fleet.eval(i, &pay("y", 5)).await.1["decision"], "allow");
    }
    assert_eq!(fleet.eval(0, &pay("y", 5)).await.1["decision"], "deny");

    // freeze: the new max at once, counts kept.
    let m = fleet.route(1, &c.hash).await;
    assert_eq!(kinds(&m), ["limit_decrease"]);
    assert_eq!(m[0]["keys_over"], 2, "{m:?}");
    for i in [0, 2] {
        assert_eq!(kinds(&fleet.route(i, &c.hash).await), ["applied_elsewhere"]);
    }
    for i in 0..2 {
        assert_eq!(fleet.eval(i, &pay("z", 5)).await.1["decision"], "allow");
    }
    assert_eq!(fleet.eval(2, &pay("z", 5)).await.1["decision"], "deny");
    assert_eq!(fleet.eval(0, &pay("x", 5)).await.1["decision"], "deny");

    // Window change: counters reset once. A count made on the new route
    // before the other engines follow is not dropped by them.
    let m = fleet.route(2, &d.hash).await;
    assert_eq!(kinds(&m), ["window_change"]);
    assert_eq!(m[0]["counters_reset"], 3, "{m:?}");
    assert_eq!(fleet.eval(2, &pay("w", 5)).await.1["decision"], "allow");
    for i in [0, 1] {
        assert_eq!(kinds(&fleet.route(i, &d.hash).await), ["applied_elsewhere"]);
    }
    assert_eq!(fleet.count(0, "w").await, 1);
    assert_eq!(fleet.count(0, "x").await, 0);
    assert_eq!(fleet.eval(0, &pay("w", 5)).await.1["decision"], "allow");
    assert_eq!(fleet.eval(1, &pay("w", 5)).await.1["decision"], "deny");

    // Limit removed: counters dropped, once.
    let m = fleet.route(0, &e.hash).await;
    assert_eq!(kinds(&m), ["limit_removed"]);
    assert_eq!(m[0]["counters_dropped"], 1, "{m:?}");
    for i in [1, 2] {
        assert_eq!(kinds(&fleet.route(i, &e.hash).await), ["applied_elsewhere"]);
    }
    assert_eq!(fleet.count(1, "w").await, 0);
    assert_eq!(fleet.redis.cli(&["KEYS", "fleet:c:pay.*"]), "");

    // Back and forth: the route back to `d` migrates again.
    let m = fleet.route(0, &d.hash).await;
    assert!(kinds(&m).is_empty(), "a new limit needs nothing: {m:?}");
    for i in [1, 2] {
        fleet.route(i, &d.hash).await;
    }
    // Engine 1 saw `w` at its max before the limit went: back, in the same
    // window, its counter starts from nothing there too.
    assert_eq!(fleet.eval(1, &pay("w", 5)).await.1["decision"], "allow");
    let m = fleet.route(0, &e.hash).await;
    assert_eq!(kinds(&m), ["limit_removed"], "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_asked_on_one_engine_is_read_on_another_and_decided_on_a_third() {
    let a = artifact(&limit(1000, "1h", None));
    let fleet = Fleet::start(&a, &[]).await;
    let (_, r) = fleet.eval(0, &pay("bot", 5000)).await;
    assert_eq!(r["decision"], "require_approval");
    let id = r["approval_id"].as_str().unwrap().to_string();
    // The same request on the other engines: the same id.
    for i in 1..3 {
        assert_eq!(
            fleet.eval(i, &pay("bot", 5000)).await.1["approval_id"],
            id.as_str()
        );
    }
    // Read on the second, without a token.
    let r = fleet
        .client
        .get(format!("{}/v1/approvals/{id}", fleet.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "pending");
    // Decided on the third.
    let (status, rec) = fleet
        .admin(
            2,
            reqwest::Method::POST,
            &format!("/v1/approvals/{id}"),
            Some(json!({"decision": "approve", "by": "alice"})),
        )
        .await;
    assert_eq!(status, 200, "{rec}");
    let (_, st) = fleet
        .admin(
            0,
            reqwest::Method::GET,
            &format!("/v1/approvals/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (st["status"].as_str(), st["by"].as_str()),
        (Some("approved"), Some("alice"))
    );
    // Consumed once, whatever the concurrency and the engine.
    let fleet = Arc::new(fleet);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let f = Arc::clone(&fleet);
        tasks.push(tokio::spawn(
            async move { f.eval(i, &pay("bot", 5000)).await.1 },
        ));
    }
    let mut approved = 0;
    let mut waiting = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r["decision"].as_str().unwrap() {
            "allow" => {
                assert_eq!(r["reasons"][0]["code"], "APPROVED", "{r}");
                approved += 1;
            }
            "require_approval" => {
                waiting.insert(r["approval_id"].as_str().unwrap().to_string());
            }
            other => panic!("{other}: {r}"),
        }
    }
    assert_eq!(approved, 1);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(!waiting.contains(&id));
    // Rejected on one engine, denied on the others.
    let next = waiting.into_iter().next().unwrap();
    let (status, _) = fleet
        .admin(
            1,
            reqwest::Method::POST,
            &format!("/v1/approvals/{next}"),
            Some(json!({"decision": "reject", "by": "bob"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, r) = fleet.eval(2, &pay("bot", 5000)).await;
    assert_eq!(r["reasons"][0]["code"], "APPROVAL_REJECTED", "{r}");
    // Deciding twice is a conflict, on any engine.
    let (status, _) = fleet
        .admin(
            0,
            reqwest::Method::POST,
            &format!("/v1/approvals/{next}"),
            Some(json!({"decision": "approve", "by": "carol"})),
        )
        .await;
    assert_eq!(status, 409);
    let (_, list) = fleet
        .admin(2, reqwest::Method::GET, "/v1/approvals", None)
        .await;
    assert_eq!(list["approvals"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_cap_holds_for_the_fleet() {
    let a = artifact(&limit(1000, "1h", None));
    let fleet = Fleet::start(&a, &["--max-pending-approvals", "2"]).await;
    for i in 0..2 {
        let r = fleet.eval(i, &pay(&format!("a{i}"), 5000)).await.1;
        assert_eq!(r["decision"], "require_approval");
    }
    let r = fleet.eval(2, &pay("a2", 5000)).await.1;
    assert_eq!(r["reasons"][0]["code"], "APPROVAL_QUEUE_FULL", "{r}");
}

/// Sends `mail` and `pay` requests to the fleet until `stop`, and tallies
/// the responses.
#[derive(Debug, Default)]
struct Tally {
    counted_pay: u64,
    failsafe_pay_deny: u64,
    failsafe_mail_allow: u64,
    other_failsafe: u64,
    errors: Vec<String>,
}

async fn traffic(fleet: Arc<Fleet>, stop: Arc<std::sync::atomic::AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        i += 1;
        let req = if i.is_multiple_of(2) {
            pay("bot", 5)
        } else {
            mail("s-1")
        };
        let r = fleet
            .client
            .post(format!("{}/v1/evaluate", fleet.url(i)))
            .json(&req)
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                tally.errors.push(e.to_string());
                continue;
            }
        };
        if r.status() != 200 {
            tally.errors.push(format!("status {}", r.status()));
            continue;
        }
        let v: Value = r.json().await.unwrap();
        match (
            i.is_multiple_of(2),
            is_failsafe(&v),
            v["decision"].as_str().unwrap(),
        ) {
            (true, false, "allow") => tally.counted_pay += 1,
            (true, true, "deny") => {
                assert_eq!(v["reasons"][0]["code"], "FAILSAFE", "{v}");
                tally.failsafe_pay_deny += 1;
            }
            (false, true, "allow") => {
                assert_eq!(v["audit"], true);
                tally.failsafe_mail_allow += 1;
            }
            (false, false, "allow") => {}
            _ => tally.other_failsafe += 1,
        }
    }
    tally
}

/// Tasks sending traffic, each one request at a time.
const TRAFFIC_TASKS: usize = 4;

/// Runs traffic from [`TRAFFIC_TASKS`] tasks while `during` runs; returns the tally.
async fn with_traffic<F: std::future::Future<Output = ()>>(fleet: &Arc<Fleet>, during: F) -> Tally {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..TRAFFIC_TASKS)
        .map(|_| tokio::spawn(traffic(Arc::clone(fleet), Arc::clone(&stop))))
        .collect();
    during.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.unwrap();
        total.counted_pay += t.counted_pay;
        total.failsafe_pay_deny += t.failsafe_pay_deny;
        total.failsafe_mail_allow += t.failsafe_mail_allow;
        total.other_failsafe += t.other_failsafe;
        total.errors.extend(t.errors);
    }
    total
}

/// Polls until every engine answers `/readyz` with `ready` as given.
async fn readiness_is(fleet: &Fleet, ready: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    'outer: loop {
        assert!(Instant::now() < deadline, "readiness never became {ready}");
        for i in 0..3 {
            let r = fleet
                .client
                .get(format!("{}/readyz", fleet.url(i)))
                .send()
                .await
                .unwrap();
            let want = if ready { 200 } else { 503 };
            if r.status() != want {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'outer;
            }
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["backend"]["kind"], "redis");
            assert_eq!(v["backend"]["up"], ready, "{v}");
        }
        return;
    }
}

/// Waits until the fleet evaluates `pay` against state again on every
/// engine (not the failsafe).
async fn recovered(fleet: &Fleet) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut counted = 0;
    for i in 0..3 {
        loop {
            let (status, r) = fleet.eval(i, &pay("bot", 5)).await;
            assert_eq!(status, 200);
            if !is_failsafe(&r) {
                counted += 1;
                break;
            }
            assert!(Instant::now() < deadline, "engine {i} did not recover: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    counted
}

/// The count in Redis against the requests the fleet answered as counted:
/// never fewer, and more by at most the requests in flight when Redis
/// stopped (one per traffic task): a script Redis ran just before it
/// stopped, whose answer did not arrive within the timeout, counted a
/// request that got the failsafe. Nothing is counted twice (a call is
/// never sent again), and a script that reaches Redis after its deadline
/// counts nothing, however long Redis was away. Returns the count.
fn at_most_in_flight_more(in_redis: u64, answered: u64, tally: &Tally) -> u64 {
    assert!(
        (answered..=answered + TRAFFIC_TASKS as u64).contains(&in_redis),
        "{in_redis} counted in Redis, {answered} answered as counted: {tally:?}"
    );
    in_redis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_then_killed_mid_traffic_fails_safe_and_counts_nothing_twice() {
    let a = artifact(&limit(1_000_000, "1h", None));
    let fleet = Arc::new(Fleet::start(&a, &[]).await);
    let pid = fleet.redis.pid();

    // Stopped (SIGSTOP): calls time out; every answer is the tier
    // failsafe, none a 5xx; scripts that sat in the socket do not count
    // when Redis resumes.
    let stopped = with_traffic(&fleet, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(pid, "-STOP");
        readiness_is(&fleet, false).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        signal(pid, "-CONT");
        readiness_is(&fleet, true).await;
    })
    .await;
    assert!(stopped.errors.is_empty(), "{:?}", stopped.errors);
    assert_eq!(stopped.other_failsafe, 0, "{stopped:?}");
    assert!(stopped.failsafe_pay_deny > 0, "{stopped:?}");
    assert!(stopped.failsafe_mail_allow > 0, "{stopped:?}");
    let counted = stopped.counted_pay + recovered(&fleet).await;
    let mut counted = at_most_in_flight_more(fleet.count(0, "bot").await, counted, &stopped);

    // Killed (SIGKILL) and restarted on the same port: the engines
    // reconnect by themselves; Redis's log kept every count.
    let killed = with_traffic(&fleet, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(fleet.redis.pid(), "-KILL");
        readiness_is(&fleet, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;
    assert!(killed.errors.is_empty(), "{:?}", killed.errors);
    assert_eq!(killed.other_failsafe, 0, "{killed:?}");
    counted += killed.counted_pay;
    // Restart it on the same port and folder (a process of its own: the
    // fleet holds the first one behind an `Arc`).
    let mut again = Redis {
        child: None,
        port: fleet.redis.port,
        dir: fleet.redis.dir.clone(),
    };
    again.spawn();
    readiness_is(&fleet, true).await;
    counted += recovered(&fleet).await;
    let counted = at_most_in_flight_more(fleet.count(1, "bot").await, counted, &killed);
    let resumed = with_traffic(&fleet, tokio::time::sleep(Duration::from_millis(500))).await;
    assert!(resumed.errors.is_empty());
    assert_eq!(
        resumed.failsafe_pay_deny + resumed.failsafe_mail_allow,
        0,
        "{resumed:?}"
    );
    assert_eq!(
        fleet.count(2, "bot").await,
        counted + resumed.counted_pay,
        "{resumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_engine_loses_nothing() {
    let a = artifact(&limit(5, "1h", None));
    let mut fleet = Fleet::start(&a, &[]).await;
    for i in 0..3 {
        assert_eq!(fleet.eval(i, &pay("bot", 5)).await.1["decision"], "allow");
    }
    let (_, r) = fleet.eval(0, &pay("bot", 5000)).await;
    let id = r["approval_id"].as_str().unwrap().to_string();
    for e in std::mem::take(&mut fleet.engines) {
        e.stop();
    }
    fleet.start_engines(&[]).await;
    assert_eq!(fleet.count(0, "bot").await, 4);
    let (_, r) = fleet.eval(1, &pay("bot", 5000)).await;
    assert_eq!(r["approval_id"], id.as_str(), "{r}");
    // That was the fifth counted request: the limit lets no more through.
    assert_eq!(fleet.eval(2, &pay("bot", 5)).await.1["decision"], "deny");
    let (_, state) = fleet
        .admin(0, reqwest::Method::GET, "/v1/state", None)
        .await;
    assert_eq!(state["approvals"][0]["id"], id.as_str(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_check_against_any_engine_reads_the_fleets_counts() {
    let a = artifact(&limit(10, "1h", None));
    let fleet = Fleet::start(&a, &[]).await;
    // Two requests through each engine: six in the shared state, two in
    // what each engine saw.
    for i in 0..6 {
        assert_eq!(fleet.eval(i, &pay("bot", 5)).await.1["decision"], "allow");
    }
    let mut names = std::collections::BTreeSet::new();
    for i in 0..3 {
        let (_, state) = fleet
            .admin(i, reqwest::Method::GET, "/v1/state", None)
            .await;
        names.insert(state["shared"].as_str().unwrap().to_string());
    }
    assert_eq!(names.len(), 1, "{names:?}");
    let name = names.into_iter().next().unwrap();
    assert!(
        name.ends_with("prefix fleet") && name.starts_with("redis://127.0.0.1:"),
        "{name}"
    );

    // A change lowering the max to 3: over it fleet-wide (6), under it in
    // any one engine (2). Asked of the third engine, the check sees six.
    let repo = fleet.dir.path().join("repo");
    std::fs::create_dir_all(repo.join("policies")).unwrap();
    std::fs::write(repo.join("sluice.toml"), TOML).unwrap();
    for (i, text) in policies(&limit(3, "1h", None)).iter().enumerate() {
        std::fs::write(repo.join(format!("policies/p{i}.policy")), text).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--repo")
        .arg(&repo)
        .args(["check", "--format", "json", "--engine", fleet.url(2)])
        .args(["--admin-token", TOKEN])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("state::limit_decrease"), "{stdout}");
    assert!(stdout.contains("by up to 3"), "6 counted, max 3: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_hung_up_is_counted_once_and_in_the_stats() {
    let a = artifact(&limit(1000, "1h", None));
    let fleet = Fleet::start(&a, &["--state-timeout", "5s"]).await;
    // Redis stopped: the scripts wait in the socket while the clients,
    // all at once, give up after a second (time enough for a loaded machine
    // to hand each request to its engine); resumed, Redis counts them, well
    // within the engines' 5 s deadline.
    signal(fleet.redis.pid(), "-STOP");
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..6 {
        let call = impatient
            .post(format!("{}/v1/evaluate", fleet.url(i)))
            .json(&pay("bot", 5))
            .send();
        calls.spawn(call);
    }
    let mut gave_up = 0;
    while let Some(r) = calls.join_next().await {
        gave_up += usize::from(r.unwrap().is_err());
    }
    assert_eq!(gave_up, 6);
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(fleet.redis.pid(), "-CONT");
    // Every engine finished what it had begun: its stats and the shared
    // count agree.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut evaluated = 0;
        for i in 0..3 {
            let (_, stats) = fleet
                .admin(i, reqwest::Method::GET, "/v1/stats", None)
                .await;
            for c in stats["cohorts"].as_array().unwrap() {
                assert_eq!(c["failsafe"], 0, "{stats}");
                evaluated += c["requests"].as_u64().unwrap();
            }
        }
        if evaluated == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "{evaluated} of 6 in the stats");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fleet.count(0, "bot").await, 6);
}
