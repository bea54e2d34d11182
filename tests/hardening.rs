//! The servers under attack, driven as the field drives them: the built
//! `sluice` binary, raw TCP sockets on loopback, real files, signals.
//! Slow and idle connections, declared bodies over the limit, the decision
//! log under rotation and on a full disk.
//!
//! Every wait is bounded; every process is killed when its test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::engine::{PAY, TOKEN, artifact, pay};

/// A process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `HUP`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Descriptors the process holds open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `sluice engine` on a free loopback port with `args`, waiting
/// until `/healthz` answers.
pub fn engine(args: &[&str]) -> Proc {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["engine", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = request(proc.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            && r.status == 200
        {
            return proc;
        }
        assert!(Instant::now() < deadline, "the engine did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP answer read off a raw socket.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Reads one answer (status line, headers, a `Content-Length` body).
pub fn read_answer(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Connects, with read and write timeouts of 10 s.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `raw` on a new connection and reads the answer.
pub fn request(addr: SocketAddr, raw: &str) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(raw.as_bytes())?;
    read_answer(&mut s)
}

/// Whether the server closed `s` within `within` (a read sees the end).
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn half_sent_headers_do_not_starve_healthz_and_time_out() {
    let engine = engine(&["--header-timeout", "2s"]);
    // 1,100 connections that never finish their request head.
    let mut slow: Vec<TcpStream> = (0..1100)
        .map(|_| {
            let mut s = connect(engine.addr);
            s.write_all(b"POST /v1/evaluate HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // The probe answers while they are all open.
    let probe = request(engine.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(probe.status, 200, "{probe:?}");
    // Each is closed by the engine once the header timeout passes.
    let first = slow.first_mut().unwrap();
    assert!(closed_within(first, Duration::from_secs(10)));
    let last = slow.last_mut().unwrap();
    assert!(closed_within(last, Duration::from_secs(10)));
}

#[test]
fn idle_connections_are_capped_and_closed_without_exhausting_descriptors() {
    let engine = engine(&["--header-timeout", "2s", "--max-connections", "64"]);
    let before = engine.open_fds();
    // 300 connections that send nothing.
    let mut idle = Vec::new();
    for _ in 0..300 {
        let s = connect(engine.addr);
        idle.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let held = engine.open_fds();
    assert!(
        held <= before + 64,
        "{held} descriptors held with 300 connections (before: {before}, cap 64)"
    );
    // A keep-alive connection that answered a request is closed once idle
    // for the header timeout; the waiting ones are served in turn.
    let mut kept = connect(engine.addr);
    drop(idle);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let a = read_answer(&mut kept).unwrap();
    assert_eq!(a.status, 200);
    assert!(closed_within(&mut kept, Duration::from_secs(10)));
}

#[test]
fn a_stalled_body_times_out_and_a_declared_huge_body_is_refused_at_once() {
    let engine = engine(&["--body-timeout", "1s"]);
    // A body that stops after 10 of its 100 bytes.
    let mut s = connect(engine.addr);
    s.write_all(
        b"POST /v1/evaluate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tool\": \"",
    )
    .unwrap();
    let a = read_answer(&mut s).unwrap();
    assert_eq!(a.status, 408, "{a:?}");
    assert_eq!(a.header("connection"), Some("close"));
    assert!(a.json()["error"].as_str().unwrap().contains("1s"), "{a:?}");

    // A declared length over --max-body: 413 before any byte of it is
    // sent, on the public route and on an admin route.
    for path in ["/v1/evaluate", "/v1/route"] {
        let mut s = connect(engine.addr);
        let head = format!(
            "{} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 99999999999\r\n\r\n",
            if path == "/v1/route" { "PUT" } else { "POST" }
        );
        s.write_all(head.as_bytes()).unwrap();
        let a = read_answer(&mut s).unwrap();
        assert_eq!(a.status, 413, "{path}: {a:?}");
        assert!(a.json()["error"].as_str().unwrap().contains("limit"));
        assert!(closed_within(&mut s, Duration::from_secs(5)));
    }
}

// ---------------------------------------------------------------------------
// The decision log.

/// An engine serving the payments artifact as stable, logging to `log`.
fn logging_engine(dir: &Path, log: &Path, extra: &[&str]) -> Proc {
    let a = artifact(&[PAY]);
    let path = dir.join("a.json");
    std::fs::write(&path, a.to_bytes().unwrap()).unwrap();
    let mut args = vec![
        "--artifact",
        path.to_str().unwrap(),
        "--decision-log",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    engine(&args)
}

fn evaluate(addr: SocketAddr, body: &Value) -> Answer {
    let a = request(addr, &post("/v1/evaluate", &body.to_string())).unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    a
}

pub fn stats(addr: SocketAddr) -> Value {
    let a = request(
        addr,
        &format!("GET /v1/stats HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
    )
    .unwrap();
    a.json()
}

pub fn evaluation_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "evaluation")
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_decision_log_reopens_on_sighup_and_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let rotated = dir.path().join("decisions.jsonl.1");
    let mut engine = logging_engine(dir.path(), &log, &[]);
    for i in 0..100 {
        evaluate(engine.addr, &pay(&format!("a{i}"), 5));
    }
    // What logrotate does: rename, then SIGHUP.
    std::fs::rename(&log, &rotated).unwrap();
    engine.signal("HUP");
    wait_until("the new file", || log.exists());
    for i in 100..200 {
        evaluate(engine.addr, &pay(&format!("a{i}"), 5));
    }
    engine.signal("TERM");
    assert_eq!(engine.wait_exit(Duration::from_secs(20)), Some(0));
    let (old, new) = (evaluation_lines(&rotated), evaluation_lines(&log));
    // Lines still queued when the signal came may go to the new file (the
    // engine cannot see a rename): the renamed file holds the first k
    // evaluations in order, the new one the rest in order, each once, and
    // every evaluation made once the new file existed is in it.
    let agents = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l["request"]["agent"].as_str().unwrap().to_string())
            .collect()
    };
    let all: Vec<String> = agents(&old).into_iter().chain(agents(&new)).collect();
    let expected: Vec<String> = (0..200).map(|i| format!("a{i}")).collect();
    assert_eq!(
        all, expected,
        "every evaluation once, in order, across the two files"
    );
    assert!(old.len() <= 100, "{} lines in the renamed file", old.len());
    assert!(new.len() >= 100, "{} lines in the reopened file", new.len());
}

#[test]
fn a_full_disk_counts_every_line_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let engine = logging_engine(dir.path(), Path::new("/dev/full"), &[]);
    for i in 0..20 {
        evaluate(engine.addr, &pay(&format!("a{i}"), 5));
    }
    // The 20 evaluations and the route line written at start.
    wait_until("21 dropped lines", || {
        stats(engine.addr)["decision_log"]["dropped"] == 21
    });
    assert_eq!(stats(engine.addr)["decision_log"]["written"], 0);
    let metrics = request(engine.addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(
        metrics
            .body
            .contains("sluice_decision_log_dropped_total 21"),
        "{}",
        metrics.body
    );
}

#[test]
fn a_large_request_makes_a_small_line() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let engine = logging_engine(dir.path(), &log, &[]);
    let big = "x".repeat(1_000_000);
    let mut body = pay("a", 5);
    body["session"] = json!(big);
    evaluate(engine.addr, &body);
    wait_until("the line", || !evaluation_lines(&log).is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().find(|l| l.contains("\"evaluation\"")).unwrap();
    assert!(line.len() < 4096, "a line of {} bytes", line.len());
    let digest = hex::encode(Sha256::digest(big.as_bytes()));
    assert!(
        line.contains(&format!("[1000000 bytes, sha256:{digest}]")),
        "{line}"
    );
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_stalled_disk_bounds_the_queue_in_bytes_and_sigterm_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stalled");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A reader that never reads: once the pipe's buffer is full, every
    // write blocks, as on a disk that stopped answering.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let mut engine = logging_engine(
        dir.path(),
        &fifo,
        &[
            "--decision-log-queue-bytes",
            "65536",
            "--decision-log-close-timeout",
            "1s",
        ],
    );
    let _reader = reader.join().unwrap();
    // Small lines until the pipe is full and the writer stuck.
    for i in 0..400 {
        evaluate(engine.addr, &pay(&format!("a{i}"), 5));
    }
    let before = rss_kib(engine.pid());
    let big = "y".repeat(500_000);
    for i in 0..300 {
        let mut body = pay(&format!("b{i}"), 5);
        body["session"] = json!(big);
        evaluate(engine.addr, &body);
    }
    let grown = rss_kib(engine.pid()).saturating_sub(before);
    let dropped = stats(engine.addr)["decision_log"]["dropped"]
        .as_u64()
        .unwrap();
    // 300 requests of 500 kB are 150 MB; their lines (the session cut to
    // its first 256 bytes and digest) are over 500 bytes each, so at most
    // 131 fit in the 64 KiB the queue may hold: far fewer lines than the
    // channel's capacity, so the bound that drops them is the one in bytes.
    assert!(dropped >= 150, "{dropped} lines dropped");
    assert!(grown < 24 * 1024, "RSS grew by {grown} KiB");
    engine.signal("TERM");
    assert_eq!(engine.wait_exit(Duration::from_secs(20)), Some(0));
}

// ---------------------------------------------------------------------------
// Requests and artifacts an engine must refuse.

#[test]
fn duplicate_keys_are_a_400_naming_the_field_at_any_depth() {
    let dir = tempfile::tempdir().unwrap();
    let engine = logging_engine(dir.path(), &dir.path().join("d.jsonl"), &[]);
    for (body, field) in [
        (
            r#"{"tool": "pay", "agent": "quarantined", "agent": "payroll-bot", "org": "o", "session": "s"}"#,
            "agent",
        ),
        (
            r#"{"tool": "pay", "agent": "a", "org": "o", "session": "s", "args": {"amount": 5, "amount": 5000}}"#,
            "args.amount",
        ),
    ] {
        let a = request(engine.addr, &post("/v1/evaluate", body)).unwrap();
        assert_eq!(a.status, 400, "{a:?}");
        let error = a.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(&format!("`{field}`")), "{error}");
    }
}

#[test]
fn an_artifact_whose_hash_verifies_but_whose_content_is_invalid_is_a_422() {
    use sluice::compile::artifact::Artifact;

    let engine = engine(&[]);
    let good = serde_json::to_value(artifact(&[PAY])).unwrap();
    type Spoil = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Spoil)> = vec![
        (
            "`default` must be `allow` or `deny`",
            Box::new(|v| v["default"] = json!("require_approval")),
        ),
        (
            "appears twice",
            Box::new(|v| {
                let p = v["policies"][0].clone();
                v["policies"].as_array_mut().unwrap().push(p);
            }),
        ),
        (
            "not a semantic version",
            Box::new(|v| v["policies"][0]["version"] = json!("1.0")),
        ),
        (
            "`set_contains` does not apply to `tool`",
            Box::new(|v| {
                v["policies"][0]["rules"][0]["when"] =
                    json!({"set_contains": {"field": "tool", "value": "pay"}});
            }),
        ),
    ];
    for (reason, spoil) in cases {
        let mut v = good.clone();
        spoil(&mut v);
        let mut a: Artifact = serde_json::from_value(v).unwrap();
        a.hash = a.compute_hash().unwrap();
        let body = String::from_utf8(a.to_bytes().unwrap()).unwrap();
        let raw = format!(
            "PUT /v1/artifacts/{} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            a.hash,
            body.len()
        );
        let answer = request(engine.addr, &raw).unwrap();
        assert_eq!(answer.status, 422, "{reason}: {answer:?}");
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(reason), "{reason}: {error}");
    }
}

/// An artifact must be a JSON object: serde would read its struct from a
/// JSON array of its fields as well.
#[test]
fn an_artifact_that_is_not_a_json_object_is_a_400() {
    let engine = engine(&[]);
    let hash = "0".repeat(64);
    for body in ["[]", " [\"sluice\", 1]", "\"x\"", "7"] {
        let raw = format!(
            "PUT /v1/artifacts/{hash} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = request(engine.addr, &raw).unwrap();
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains("must be a JSON object"), "{body}: {error}");
    }
}

/// Nesting far past the limit is a located `parse::syntax` error from
/// `check` and `fmt`, not a stack overflow.
#[test]
fn pathological_nesting_does_not_abort_check_or_fmt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[project]\nname = \"p\"\ndefault = \"allow\"\n\n[schema]\ntool = \"string\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    for cond in [
        format!("{}tool == \"x\"{}", "(".repeat(936), ")".repeat(936)),
        format!("{}tool == \"x\"", "not ".repeat(2333)),
    ] {
        let file = dir.path().join("policies/deep.policy");
        std::fs::write(
            &file,
            format!("policy deep version 1.0.0 {{\n  rule r {{\n    when {cond}\n    deny D \"d\"\n  }}\n}}\n"),
        )
        .unwrap();
        for args in [vec!["check"], vec!["fmt", "--check"]] {
            let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(&args)
                .arg("--repo")
                .arg(dir.path())
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
            assert!(text.contains("parse::syntax"), "{args:?}: {text}");
            assert!(text.contains("deep.policy:3"), "{args:?}: {text}");
        }
    }
}

/// The small ones: JSON for a path that is not UTF-8, `nosniff` on every
/// answer, an admin route's wrong method answered only after the token,
/// `Connection: close` when a body is left unread, `-0` taken as 0.
#[test]
fn small_answers_are_json_consistent_and_nosniff() {
    let dir = tempfile::tempdir().unwrap();
    let engine = logging_engine(dir.path(), &dir.path().join("d.jsonl"), &[]);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");

    let a = request(
        engine.addr,
        &format!("GET /v1/artifacts/%FF%FE HTTP/1.1\r\nHost: t\r\n{auth}\r\n"),
    )
    .unwrap();
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.json()["error"].is_string());
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));

    // An admin route's wrong method: 401 without the token, 405 with it;
    // a public route's: 405.
    let a = request(engine.addr, "DELETE /v1/route HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(a.status, 401, "{a:?}");
    let a = request(
        engine.addr,
        &format!("DELETE /v1/route HTTP/1.1\r\nHost: t\r\n{auth}\r\n"),
    )
    .unwrap();
    assert_eq!(a.status, 405, "{a:?}");
    assert!(a.json()["error"].is_string());
    let a = request(engine.addr, "GET /v1/evaluate HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(a.status, 405, "{a:?}");

    // Without a body, a 404 keeps the connection; with one left unread,
    // the answer says it closes, and it does.
    let mut s = connect(engine.addr);
    s.write_all(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let a = read_answer(&mut s).unwrap();
    assert_eq!((a.status, a.header("connection")), (404, None));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    s.write_all(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let a = read_answer(&mut s).unwrap();
    assert_eq!((a.status, a.header("connection")), (404, Some("close")));
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    let mut s = connect(engine.addr);
    s.write_all(b"PUT /v1/route HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let a = read_answer(&mut s).unwrap();
    assert_eq!((a.status, a.header("connection")), (401, Some("close")));

    let a = evaluate(
        engine.addr,
        &serde_json::from_str(
            r#"{"tool": "pay", "agent": "a", "org": "o", "session": "s", "args": {"amount": -0}}"#,
        )
        .unwrap(),
    );
    assert_eq!(a.json()["decision"], "allow", "{a:?}");
}
