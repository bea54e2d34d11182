//! `sluice gateway` with upstream MCP servers written with the official
//! MCP Python SDK (PyPI `mcp`), one over stdio and one over streamable
//! HTTP, driven by the Python SDK's client and by rmcp's client.
//!
//! The Python interpreter: `SLUICE_MCP_PYTHON` (set by `.ci/run`), else a
//! virtual environment created once under the target folder
//! (`python3 -m venv`, `pip install mcp`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    ADMIN_TOKEN, Child, Policies, engine, engine_with, free_port, policies, redis, wait_for_port,
};

pub(crate) fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("SLUICE_MCP_PYTHON") {
            return PathBuf::from(p);
        }
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv");
        let py = venv.join("bin/python");
        let ready = |py: &Path| {
            Command::new(py)
                .args(["-c", "import mcp.server.mcpserver"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ready(&py) {
            let ok = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .unwrap();
            assert!(ok.success(), "python3 -m venv failed");
            let ok = Command::new(&py)
                .args(["-m", "pip", "install", "-q", "mcp"])
                .status()
                .unwrap();
            assert!(ok.success(), "pip install mcp failed");
        }
        py
    })
}

pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/gateway/py")
        .join(name)
}

/// The arguments each upstream tool received, in order.
pub(crate) fn recorded(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) struct Setup {
    pub policies: Policies,
    _children: Vec<Child>,
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The port of the Python upstream on streamable HTTP.
    pub up_port: u16,
    /// The engine's URL, when the gateway decides through one.
    pub engine: Option<String>,
}

/// A Python upstream `http` on streamable HTTP, one `stdio` spoken to over
/// stdio, and the gateway in front of both, deciding by `decide`.
fn setup(decide: impl FnOnce(&Policies) -> (Vec<String>, Option<(Child, String)>)) -> Setup {
    setup_with(decide, &["--agent", "bot", "--org", "acme"])
}

pub(crate) fn setup_with(
    decide: impl FnOnce(&Policies) -> (Vec<String>, Option<(Child, String)>),
    caller: &[&str],
) -> Setup {
    let p = policies();
    let dir = tempfile::tempdir().unwrap();
    let up_port = free_port();
    let up = Command::new(python())
        .arg(script("upstream.py"))
        .arg(dir.path().join("http.jsonl"))
        .args(["http", &up_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Child(up);
    wait_for_port(up_port, "the python upstream");
    let (decide_args, engine) = decide(&p);
    let port = free_port();
    let gw = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gateway", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--upstream",
            &format!("http=http://127.0.0.1:{up_port}/mcp"),
        ])
        .arg("--upstream")
        .arg(format!(
            "stdio={} {} {} stdio",
            python().display(),
            script("upstream.py").display(),
            dir.path().join("stdio.jsonl").display()
        ))
        .args(caller)
        .args(["--upstream-timeout", "2s"])
        .args(&decide_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gw = Child(gw);
    wait_for_port(port, "the gateway");
    let mut children = vec![gw, up];
    let engine_url = engine.map(|(child, url)| {
        children.push(child);
        url
    });
    Setup {
        engine: engine_url,
        policies: p,
        _children: children,
        dir,
        url: format!("http://127.0.0.1:{port}/mcp"),
        up_port,
    }
}

/// Runs the Python client's `steps`; one answer per step.
pub(crate) fn client(url: &str, steps: &Value) -> Vec<Value> {
    let out = Command::new(python())
        .arg(script("client.py"))
        .arg(url)
        .arg(steps.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn text(v: &Value) -> &str {
    v["text"].as_str().unwrap_or_default()
}

pub(crate) fn with_artifact(p: &Policies) -> (Vec<String>, Option<(Child, String)>) {
    (
        vec![
            "--artifact".into(),
            p.artifact.to_string_lossy().into_owned(),
        ],
        None,
    )
}

#[test]
fn python_client_lists_and_each_decision_reaches_the_python_upstreams() {
    let s = setup(with_artifact);
    let answers = client(
        &s.url,
        &json!([
            {"list": true},
            {"call": "http.pay", "args": {"amount": 5, "to": "ann"}},
            {"call": "stdio.write", "args": {"path": "/p", "content": "ssn 123-45-6789 here"}},
            {"call": "stdio.run", "args": {"command": "rm -rf /", "description": "clean"}},
            {"call": "http.pay", "args": {"amount": "lots", "to": "ann"}},
            {"call": "nowhere.pay", "args": {}},
        ]),
    );
    let tools: Vec<&str> = answers[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "http.pay",
        "http.run",
        "http.write",
        "stdio.pay",
        "stdio.write",
        "stdio.hang",
    ] {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }
    // allow: forwarded as sent.
    assert_eq!(
        answers[1],
        json!({"is_error": false, "text": "paid 5 to ann"})
    );
    // modify: the upstream received the modified argument.
    assert_eq!(answers[2]["is_error"], false, "{}", answers[2]);
    // deny: an error result naming the code and the text, not forwarded.
    assert_eq!(answers[3]["is_error"], true);
    assert!(
        text(&answers[3]).contains("NO_RM: recursive deletes are not allowed"),
        "{}",
        answers[3]
    );
    // a declared argument of the wrong type: refused, named.
    assert_eq!(answers[4]["is_error"], true);
    assert!(text(&answers[4]).contains("args.amount"), "{}", answers[4]);
    // an unknown upstream: an MCP error naming the upstreams.
    assert!(
        answers[5]["error"]
            .as_str()
            .unwrap()
            .contains("http, stdio"),
        "{}",
        answers[5]
    );

    assert_eq!(
        recorded(&s.dir.path().join("http.jsonl")),
        vec![json!({"tool": "pay", "args": {"amount": 5, "to": "ann"}})]
    );
    assert_eq!(
        recorded(&s.dir.path().join("stdio.jsonl")),
        vec![json!({"tool": "write", "args": {"path": "/p", "content": "ssn [REDACTED] here"}})]
    );
}

/// Runs the Python client's `steps`; at each `{"wait": true}` step,
/// `at_wait` is given the answers so far, then the client goes on in the
/// same MCP session.
fn client_waiting(url: &str, steps: &Value, mut at_wait: impl FnMut(&[Value])) -> Vec<Value> {
    use std::io::{BufRead as _, Write as _};
    let mut child = Child(
        Command::new(python())
            .arg(script("client.py"))
            .arg(url)
            .arg(steps.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut answers = Vec::new();
    // The client ends by itself (60 s at most), closing its output.
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v.get("waiting").is_some() {
            at_wait(&answers);
            writeln!(stdin, "go").unwrap();
            continue;
        }
        answers.push(v);
    }
    assert!(child.0.wait().unwrap().success(), "the client failed");
    answers
}

/// The approval id an answer names (`approval ap-… is required`).
fn approval_id(answer: &Value) -> String {
    let t = text(answer);
    t.split_whitespace()
        .find(|w| w.starts_with("ap-"))
        .unwrap_or_else(|| panic!("no approval id in {answer}"))
        .to_string()
}

pub(crate) fn with_engine(p: &Policies) -> (Vec<String>, Option<(Child, String)>) {
    let (child, url) = engine(&p.artifact);
    let repo = p.dir.path().to_string_lossy().into_owned();
    (
        vec!["--engine".into(), url.clone(), "--repo".into(), repo],
        Some((child, url)),
    )
}

/// The approval round trip through an engine: the call is held under an
/// approval id (the same id while it waits), an admin approves that id on
/// the engine, the same call in the same MCP session goes through to the
/// upstream — once: made again, it waits for a new approval.
#[test]
fn python_client_call_goes_through_once_approved() {
    let s = setup(with_engine);
    let engine = s.engine.clone().unwrap();
    let http_log = s.dir.path().join("http.jsonl");
    let pay = json!({"call": "http.pay", "args": {"amount": 5000, "to": "bob"}});
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut id = String::new();
    let answers = client_waiting(
        &s.url,
        &json!([pay, pay, {"wait": true}, pay, pay]),
        |held| {
            for a in held {
                assert_eq!(a["is_error"], true, "{a}");
                assert!(
                    text(a).contains("BIG") && text(a).contains("once it is approved"),
                    "{a}"
                );
            }
            id = approval_id(&held[0]);
            assert_eq!(approval_id(&held[1]), id, "one approval while it waits");
            assert!(recorded(&http_log).is_empty(), "nothing forwarded yet");
            let decided = rt.block_on(approve(&engine, &id));
            assert_eq!(decided["request"]["tool"], "http.pay");
            assert_eq!(decided["request"]["agent"], "bot");
            assert_eq!(decided["request"]["args"], json!({"amount": 5000}));
        },
    );
    assert_eq!(
        answers[2],
        json!({"is_error": false, "text": "paid 5000 to bob"})
    );
    assert_eq!(answers[3]["is_error"], true, "{}", answers[3]);
    assert_ne!(approval_id(&answers[3]), id, "approved once, not for good");
    assert_eq!(
        recorded(&http_log),
        vec![json!({"tool": "pay", "args": {"amount": 5000, "to": "bob"}})]
    );
    let state: Value = rt.block_on(async {
        reqwest::get(format!("{engine}/v1/approvals/{id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(state["status"], "approved", "{state}");
    assert!(state["consumed"].is_u64(), "{state}");
}

/// With `--artifact` and a shared state backend, the gateway's approvals
/// are decided through any engine on the same Redis.
#[test]
fn approvals_of_an_in_process_artifact_on_redis_are_decided_by_an_engine() {
    let redis_dir = tempfile::tempdir().unwrap();
    let (redis_child, url) = redis(redis_dir.path());
    let shared = vec!["--state-backend".to_string(), url];
    let s = setup(|p| {
        let (engine, engine_url) = engine_with(&p.artifact, &shared);
        let (mut args, _) = with_artifact(p);
        args.extend(shared.iter().cloned());
        (args, Some((engine, engine_url)))
    });
    let engine = s.engine.clone().unwrap();
    let pay = json!({"call": "stdio.pay", "args": {"amount": 2000, "to": "eve"}});
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answers = client_waiting(&s.url, &json!([pay, {"wait": true}, pay]), |held| {
        let decided = rt.block_on(approve(&engine, &approval_id(&held[0])));
        assert_eq!(decided["request"]["tool"], "stdio.pay");
    });
    assert_eq!(
        answers[1],
        json!({"is_error": false, "text": "paid 2000 to eve"})
    );
    drop(s);
    drop(redis_child);
}

#[test]
fn a_hung_and_a_crashed_upstream_answer_errors_in_time_and_spare_the_other() {
    let s = setup(with_artifact);
    let started = Instant::now();
    let answers = client(
        &s.url,
        &json!([
            {"together": [
                {"call": "stdio.hang"},
                {"call": "http.pay", "args": {"amount": 1, "to": "a"}},
            ]},
            {"call": "http.crash"},
            {"call": "http.pay", "args": {"amount": 2, "to": "c"}},
        ]),
    );
    let took = started.elapsed();
    // The hung upstream holds only its own call: the other upstream's call,
    // made at the same time, is answered first.
    assert_eq!(answers[0]["order"], json!([1, 0]), "{}", answers[0]);
    let together = &answers[0]["together"];
    assert!(
        together[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 2s"),
        "{together}"
    );
    assert_eq!(
        together[1],
        json!({"is_error": false, "text": "paid 1 to a"})
    );
    // The upstream that dies mid-call: an MCP error, and so is the next
    // call to it.
    assert!(answers[1]["error"].is_string(), "{}", answers[1]);
    assert!(
        answers[2]["error"].as_str().unwrap().contains("http"),
        "{}",
        answers[2]
    );
    assert_eq!(
        recorded(&s.dir.path().join("http.jsonl")),
        vec![
            json!({"tool": "pay", "args": {"amount": 1, "to": "a"}}),
            json!({"tool": "crash", "args": {}}),
        ]
    );
    // Bounded failures, not a hung client: each costs at most the 2 s
    // timeout.
    assert!(took < Duration::from_secs(30), "{took:?}");
}

async fn approve(engine: &str, id: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{engine}/v1/approvals/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"decision": "approve", "by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// rmcp's own client, naming the agent and org in headers (the gateway has
/// no --agent/--org): the engine's approval records the request the
/// gateway built, with the MCP session as `session`.
#[test]
fn rmcp_client_with_caller_headers() {
    use rmcp::ServiceExt as _;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let s = setup_with(with_engine, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut headers = std::collections::HashMap::new();
        headers.insert(
            reqwest::header::HeaderName::from_static("x-sluice-agent"),
            reqwest::header::HeaderValue::from_static("header-bot"),
        );
        headers.insert(
            reqwest::header::HeaderName::from_static("x-sluice-org"),
            reqwest::header::HeaderValue::from_static("header-org"),
        );
        let config =
            StreamableHttpClientTransportConfig::with_uri(s.url.as_str()).custom_headers(headers);
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            ().serve(StreamableHttpClientTransport::from_config(config)),
        )
        .await
        .unwrap()
        .unwrap();
        let tools = client.peer().list_all_tools().await.unwrap();
        assert!(tools.iter().any(|t| t.name == "stdio.pay"), "{tools:?}");

        let call = |amount: i64| {
            let mut p = CallToolRequestParams::new("http.pay");
            p.arguments = json!({"amount": amount, "to": "dan"}).as_object().cloned();
            p
        };
        let text_of = |r: &rmcp::model::CallToolResult| -> String {
            r.content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect()
        };
        let allowed =
            tokio::time::timeout(Duration::from_secs(30), client.peer().call_tool(call(7)))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(allowed.is_error, Some(false));
        assert_eq!(text_of(&allowed), "paid 7 to dan");

        let held =
            tokio::time::timeout(Duration::from_secs(30), client.peer().call_tool(call(9000)))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(held.is_error, Some(true));
        let t = text_of(&held);
        let id = t
            .split_whitespace()
            .find(|w| w.starts_with("ap-"))
            .unwrap_or_else(|| panic!("no approval id in {t}"));
        let decided = approve(s.engine.as_deref().unwrap(), id).await;
        assert_eq!(decided["request"]["agent"], "header-bot");
        assert_eq!(decided["request"]["org"], "header-org");
        let session = decided["request"]["session"].as_str().unwrap();
        assert!(
            !session.is_empty() && !session.starts_with("gw-"),
            "{session}"
        );
        let _ = client.cancel().await;
    });
    assert_eq!(
        recorded(&s.dir.path().join("http.jsonl")),
        vec![json!({"tool": "pay", "args": {"amount": 7, "to": "dan"}})]
    );
}

/// Sends one HTTP/1.1 POST of `body` to the gateway's `/mcp` on `conn` and
/// reads one whole response: its head (lowercased) and its body, read to
/// the length the head declares (a response without one fails the test).
fn post_on(conn: &mut std::net::TcpStream, port: u16, body: &Value) -> (String, Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    write!(
        conn,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: tools/call\r\nMcp-Name: http.pay\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).unwrap(), 1, "the connection closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap_or_else(|| panic!("no content-length: {head}"))
        .trim()
        .parse()
        .unwrap();
    let mut answer = vec![0u8; length];
    conn.read_exact(&mut answer).unwrap();
    (head, serde_json::from_slice(&answer).unwrap())
}

/// A call's result is one JSON body with its length, so a client keeps its
/// connection for the next call: an event stream per call cost a TCP
/// connection per call (the client cannot reuse a stream it stops reading),
/// which was most of what the gateway added to a call's latency.
#[test]
fn calls_are_answered_as_json_on_one_kept_connection() {
    let s = setup(with_artifact);
    let port: u16 = s
        .url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for (id, to) in [(1, "ann"), (2, "bob"), (3, "cy")] {
        let call = json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {
                "name": "http.pay", "arguments": {"amount": 5, "to": to},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {}
                }
            }
        });
        let (head, answer) = post_on(&mut conn, port, &call);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("paid 5 to {to}"),
            "{answer}"
        );
    }
    assert_eq!(recorded(&s.dir.path().join("http.jsonl")).len(), 3);
}

/// Loopback TCP connections to or from `port` in TIME-WAIT (closed in the
/// last minute), from /proc/net/tcp.
fn closed_connections(port: u16) -> usize {
    let port = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(3) == Some(&"06")
                && (f.get(1).is_some_and(|a| a.ends_with(&port))
                    || f.get(2).is_some_and(|a| a.ends_with(&port)))
        })
        .count()
}

/// The gateway keeps its connection to an upstream on streamable HTTP from
/// one call to the next: it speaks MCP 2026-07-28 to an upstream that does
/// (rmcp's session-based path dropped each call's event stream before its
/// end, and the connection with it: about one new connection per call,
/// most of the latency the gateway added).
#[test]
fn the_upstream_connection_is_kept_across_calls() {
    let s = setup(with_artifact);
    let calls: Vec<Value> = (0..20)
        .map(|i| json!({"call": "http.pay", "args": {"amount": 5, "to": format!("p{i}")}}))
        .collect();
    let answers = client(&s.url, &Value::Array(calls));
    assert_eq!(answers.len(), 20);
    assert!(
        answers.iter().all(|a| a["is_error"] == false),
        "{answers:?}"
    );
    assert_eq!(recorded(&s.dir.path().join("http.jsonl")).len(), 20);
    let closed = closed_connections(s.up_port);
    assert!(
        closed <= 2,
        "{closed} connections to the upstream closed for 20 calls"
    );
}

/// An upstream that never answers the MCP 2026-07-28 probe (a server that
/// ignores methods it does not know) is still reached: the gateway gives
/// the probe a third of its start bound, then speaks the `initialize`
/// handshake on a new transport.
#[test]
fn an_upstream_that_ignores_the_discovery_probe_is_reached_by_initialize() {
    let p = policies();
    let dir = tempfile::tempdir().unwrap();
    let up_port = free_port();
    let _up = Child(
        Command::new(python())
            .arg(script("upstream.py"))
            .arg(dir.path().join("http.jsonl"))
            .args(["http", &up_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(up_port, "the python upstream");
    let proxy_port = free_port();
    let _proxy = Child(
        Command::new(python())
            .arg(script("nodiscover.py"))
            .arg(proxy_port.to_string())
            .arg(format!("http://127.0.0.1:{up_port}/mcp"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(proxy_port, "the proxy");
    let port = free_port();
    let started = Instant::now();
    let _gw = Child(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["gateway", "--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--upstream",
                &format!("http=http://127.0.0.1:{proxy_port}/mcp"),
            ])
            .args(["--agent", "bot", "--org", "acme"])
            .args(["--upstream-start-timeout", "3s"])
            .args(with_artifact(&p).0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "the gateway");
    // The probe's second, then the handshake: well within the start bound.
    assert!(started.elapsed() < Duration::from_secs(10));
    let answers = client(
        &format!("http://127.0.0.1:{port}/mcp"),
        &json!([{"call": "http.pay", "args": {"amount": 5, "to": "ann"}}]),
    );
    assert_eq!(
        answers[0],
        json!({"is_error": false, "text": "paid 5 to ann"})
    );
}

/// An upstream URL that redirects (`/mcp` to `/mcp/`) stops the gateway at
/// once with a message that says what to give instead.
#[test]
fn an_upstream_that_redirects_is_named_with_a_hint() {
    let p = policies();
    let up_port = free_port();
    let _up = Child(
        Command::new(python())
            .arg(script("redirect.py"))
            .arg(up_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(up_port, "the redirecting server");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gateway", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--upstream", &format!("up=http://127.0.0.1:{up_port}/mcp")])
        .args(["--agent", "bot", "--org", "acme"])
        .args(["--upstream-start-timeout", "5s"])
        .args(with_artifact(&p).0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("307"), "{err}");
    assert!(err.contains("trailing `/`"), "{err}");
}
