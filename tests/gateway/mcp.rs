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

use super::{ADMIN_TOKEN, Child, Policies, engine, free_port, policies, wait_for_port};

fn python() -> &'static Path {
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

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/gateway/py")
        .join(name)
}

/// The arguments each upstream tool received, in order.
fn recorded(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct Setup {
    _policies: Policies,
    _children: Vec<Child>,
    dir: tempfile::TempDir,
    url: String,
    /// The engine's URL, when the gateway decides through one.
    engine: Option<String>,
}

/// A Python upstream `http` on streamable HTTP, one `stdio` spoken to over
/// stdio, and the gateway in front of both, deciding by `decide`.
fn setup(decide: impl FnOnce(&Policies) -> (Vec<String>, Option<(Child, String)>)) -> Setup {
    setup_with(decide, &["--agent", "bot", "--org", "acme"])
}

fn setup_with(
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
        _policies: p,
        _children: children,
        dir,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

/// Runs the Python client's `steps`; one answer per step.
fn client(url: &str, steps: &Value) -> Vec<Value> {
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

fn text(v: &Value) -> &str {
    v["text"].as_str().unwrap_or_default()
}

fn with_artifact(p: &Policies) -> (Vec<String>, Option<(Child, String)>) {
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

/// The approval round trip through an engine: the call is answered with
/// the approval id, and the id is the one the engine's approvals API
/// decides.
#[test]
fn python_client_gets_the_approval_id_the_engine_decides() {
    let s = setup(|p| {
        let (child, url) = engine(&p.artifact);
        let repo = p.dir.path().to_string_lossy().into_owned();
        (
            vec!["--engine".into(), url.clone(), "--repo".into(), repo],
            Some((child, url)),
        )
    });
    let answers = client(
        &s.url,
        &json!([{"call": "http.pay", "args": {"amount": 5000, "to": "bob"}}]),
    );
    assert_eq!(answers[0]["is_error"], true, "{}", answers[0]);
    let t = text(&answers[0]);
    assert!(
        t.contains("BIG") && t.contains("once it is approved"),
        "{t}"
    );
    let id = t
        .split_whitespace()
        .find_map(|w| w.strip_prefix("approval "))
        .map(str::to_string)
        .or_else(|| {
            t.split_whitespace()
                .find(|w| w.starts_with("ap-"))
                .map(str::to_string)
        })
        .unwrap();
    assert!(recorded(&s.dir.path().join("http.jsonl")).is_empty());
    // The id is the engine's: its approvals API decides it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let decided: Value = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/v1/approvals/{id}",
                s.engine.as_deref().unwrap()
            ))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"decision": "approve", "by": "alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    });
    assert_eq!(decided["id"], id.as_str());
    assert_eq!(decided["decision"], "approve");
    assert_eq!(decided["request"]["tool"], "http.pay");
    assert_eq!(decided["request"]["agent"], "bot");
    assert_eq!(decided["request"]["args"], json!({"amount": 5000}));
}

#[test]
fn a_hung_and_a_crashed_upstream_answer_errors_in_time_and_spare_the_other() {
    let s = setup(with_artifact);
    let started = Instant::now();
    let answers = client(
        &s.url,
        &json!([
            {"call": "stdio.hang"},
            {"call": "http.pay", "args": {"amount": 1, "to": "a"}},
            {"call": "stdio.crash"},
            {"call": "stdio.pay", "args": {"amount": 1, "to": "b"}},
            {"call": "http.pay", "args": {"amount": 2, "to": "c"}},
        ]),
    );
    let took = started.elapsed();
    assert!(
        answers[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 2s"),
        "{}",
        answers[0]
    );
    assert_eq!(answers[1]["is_error"], false, "{}", answers[1]);
    assert!(answers[2]["error"].is_string(), "{}", answers[2]);
    assert!(
        answers[3]["error"].as_str().unwrap().contains("stdio"),
        "{}",
        answers[3]
    );
    assert_eq!(
        answers[4],
        json!({"is_error": false, "text": "paid 2 to c"})
    );
    // Two bounded failures, not a hung client: the hang costs the 2 s
    // timeout, the crash is seen when the pipe closes.
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

    let s = setup_with(
        |p| {
            let (child, url) = engine(&p.artifact);
            let repo = p.dir.path().to_string_lossy().into_owned();
            (
                vec!["--engine".into(), url.clone(), "--repo".into(), repo],
                Some((child, url)),
            )
        },
        &[],
    );
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
