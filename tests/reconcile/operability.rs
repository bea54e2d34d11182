//! What an operator's monitoring reads of the daemon: `/readyz` (ready,
//! then not once an engine stops answering), `/metrics` (events by kind,
//! engines by state, the pause), and log lines as JSON or as plain text
//! without colour codes when standard error is not a terminal.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice::reconcile::Daemon;
use sluice::rollout::machine::Command as Op;

use super::fixture::{self, Repo, TOKEN, wait_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_follow_the_fleet() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let mut engines = fixture::engines(2).await;
    let mut c = fixture::config(&repo, &tmp.path().join("state"), &engines);
    c.engine_timeout = Duration::from_millis(500);
    let daemon = Daemon::start(c).await.unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{addr}{path}"));
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    // Ready once the branch is fetched; installed a build later.
    let ready = wait_async("ready and installed", Duration::from_secs(20), || async {
        let (code, body) = get("/readyz").await;
        (code == 200 && daemon.status().stable.is_some()).then_some(body)
    })
    .await;
    let r: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(r["ready"], true);
    assert_eq!(r["problems"], serde_json::json!([]));
    // Ready says the branch and the engines answer, not that the first
    // commit is installed: wait for it, or the pause below may come first.
    fixture::wait_for("installed", Duration::from_secs(20), || {
        daemon.status().stable
    })
    .await;

    daemon
        .command(Op::Pause {
            reason: Some("metrics".into()),
        })
        .await
        .unwrap();
    let text = wait_async(
        "the metrics after the pause",
        Duration::from_secs(10),
        || async {
            let (code, text) = get("/metrics").await;
            assert_eq!(code, 200);
            // The counters follow the audit events on a task of their
            // own: under load they may trail the status by a moment.
            (text.contains("sluice_daemon_paused 1")
                && text.contains("sluice_daemon_transitions_total{event=\"pause\"} 1"))
            .then_some(text)
        },
    )
    .await;
    for line in [
        "sluice_daemon_transitions_total{event=\"install\"} 1",
        "sluice_daemon_transitions_total{event=\"pause\"} 1",
        "sluice_daemon_engines{state=\"on_route\"} 2",
        "sluice_daemon_engines{state=\"unreachable\"} 0",
        "sluice_daemon_fetch_failing 0",
        "sluice_daemon_reverts_pending 0",
        "# TYPE sluice_daemon_stage_seconds histogram",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert!(text.contains("sluice_daemon_fetch_age_seconds "), "{text}");

    // An engine stops answering: not ready, and the metrics say which.
    engines[1].stop().await;
    let body = wait_async("not ready", Duration::from_secs(20), || async {
        let (code, body) = get("/readyz").await;
        (code == 503).then_some(body)
    })
    .await;
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["ready"], false);
    let problems = r["problems"].to_string();
    assert!(
        problems.contains(&format!("engine {} does not answer", engines[1].url())),
        "{problems}"
    );
    let (_, text) = get("/metrics").await;
    assert!(
        text.contains("sluice_daemon_engines{state=\"unreachable\"} 1"),
        "{text}"
    );
    // Neither needs a token; the status still does.
    let (code, _) = get("/v1/status").await;
    assert_eq!(code, 401);
    daemon.stop().await.unwrap();
}

/// The daemon's first log lines with `--log-format FORMAT`, standard error
/// a pipe.
fn first_lines(format: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["reconcile", "--repo", repo.bare.to_str().unwrap()])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .args(["--engine", "http://127.0.0.1:9", "--admin-token", TOKEN])
        .args(["--listen", "127.0.0.1:0", "--log-format", format])
        .env("RUST_LOG", "sluice=info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    while lines.len() < 2 {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lines
}

#[test]
fn log_lines_are_json_or_plain_text() {
    let json = first_lines("json");
    assert!(!json.is_empty());
    for line in &json {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(json[0].contains("reconcile daemon started"), "{json:?}");
    let text = first_lines("text");
    assert!(!text.is_empty());
    for line in &text {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
    }
    assert!(text[0].contains("reconcile daemon started"), "{text:?}");
}

/// The control API under the same bounds as the engine: half-sent heads
/// do not starve `/healthz`, a stalled body times out, a declared body
/// over the limit is refused before it is read.
#[test]
fn the_control_api_survives_slow_connections() {
    use std::io::Write;

    use crate::hardening::{Proc, closed_within, connect, read_answer, request};

    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["reconcile", "--repo", repo.bare.to_str().unwrap()])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .args(["--engine", "http://127.0.0.1:9", "--admin-token", TOKEN])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--header-timeout", "2s", "--body-timeout", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Proc {
        child,
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while request(daemon.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut slow: Vec<_> = (0..1100)
        .map(|_| {
            let mut s = connect(daemon.addr);
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let probe = request(daemon.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(probe.status, 200, "{probe:?}");
    assert!(closed_within(
        slow.last_mut().unwrap(),
        Duration::from_secs(10)
    ));
    drop(slow);

    let mut s = connect(daemon.addr);
    let head = format!(
        "POST /v1/pause HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 50\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).unwrap();
    let a = read_answer(&mut s).unwrap();
    assert_eq!(a.status, 408, "{a:?}");
    assert!(a.json()["error"].is_string());

    for path in ["/v1/pause", "/v1/hooks/git"] {
        let mut s = connect(daemon.addr);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 99999999999\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let a = read_answer(&mut s).unwrap();
        assert_eq!(a.status, 413, "{path}: {a:?}");
        assert!(a.json()["error"].is_string());
    }
}

/// A real daemon serves the OpenAPI document of its control API at
/// `/openapi.json`, without a token, as JSON with `nosniff`.
#[test]
fn a_real_daemon_serves_its_openapi_document() {
    use crate::hardening::{Proc, request};

    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["reconcile", "--repo", repo.bare.to_str().unwrap()])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .args(["--engine", "http://127.0.0.1:9", "--admin-token", TOKEN])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Proc {
        child,
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let get = "GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let a = loop {
        if let Ok(a) = request(daemon.addr, get) {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi-daemon.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(a.json(), doc);
    assert_eq!(doc["info"]["title"], "sluice reconcile daemon");
}
