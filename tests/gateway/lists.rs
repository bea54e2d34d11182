//! What the gateway lists and logs: `tools/list` with `--hide-denied` (per
//! caller, by an artifact and by the policies of `--repo`), `--print-tools`
//! read by `sluice check --upstream-schemas`, and the decision log's line
//! for each gateway call.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::mcp::{Setup, client, python, script, setup_with, text, with_artifact, with_engine};
use super::{Policies, policies};

fn names(answer: &Value) -> Vec<String> {
    answer["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// An intern is denied `stdio.run` outright (a rule on `tool` and `agent`
/// alone): it is not listed; payments above 10 are denied too, but only by
/// their arguments, so `http.pay` stays. Another agent sees every tool.
#[test]
fn hide_denied_leaves_out_what_the_caller_is_denied_outright() {
    let hide = |p: &Policies| {
        let (mut args, engine) = with_artifact(p);
        args.push("--hide-denied".into());
        (args, engine)
    };
    let s: Setup = setup_with(hide, &["--agent", "intern", "--org", "acme"]);
    let answers = client(
        &s.url,
        &json!([
            {"list": true},
            {"call": "stdio.run", "args": {"command": "ls"}},
            {"call": "http.pay", "args": {"amount": 5, "to": "x"}},
        ]),
    );
    let listed = names(&answers[0]);
    assert!(!listed.contains(&"stdio.run".to_string()), "{listed:?}");
    for t in ["http.run", "http.pay", "stdio.pay", "stdio.write"] {
        assert!(
            listed.contains(&t.to_string()),
            "{t} missing from {listed:?}"
        );
    }
    // Hidden is not a way around: called anyway, it is denied.
    assert!(text(&answers[1]).contains("NO_SHELL"), "{}", answers[1]);
    assert_eq!(answers[2]["is_error"], false, "{}", answers[2]);

    let shown = setup_with(hide, &["--agent", "bot", "--org", "acme"]);
    let listed = names(&client(&shown.url, &json!([{"list": true}]))[0]);
    assert!(listed.contains(&"stdio.run".to_string()), "{listed:?}");
}

/// With `--engine`, `--hide-denied` judges by the policies of `--repo`, and
/// the agent comes from the client's header.
#[test]
fn hide_denied_through_an_engine_reads_the_repository() {
    use rmcp::ServiceExt as _;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let s = setup_with(
        |p| {
            let (mut args, engine) = with_engine(p);
            args.push("--hide-denied".into());
            (args, engine)
        },
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = |agent: &'static str| {
        rt.block_on(async {
            let mut headers = std::collections::HashMap::new();
            headers.insert(
                reqwest::header::HeaderName::from_static("x-sluice-agent"),
                reqwest::header::HeaderValue::from_static(agent),
            );
            let config = StreamableHttpClientTransportConfig::with_uri(s.url.as_str())
                .custom_headers(headers);
            let client = tokio::time::timeout(
                Duration::from_secs(30),
                ().serve(StreamableHttpClientTransport::from_config(config)),
            )
            .await
            .unwrap()
            .unwrap();
            let tools =
                tokio::time::timeout(Duration::from_secs(30), client.peer().list_all_tools())
                    .await
                    .unwrap()
                    .unwrap();
            let _ = client.cancel().await;
            tools
                .into_iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>()
        })
    };
    let intern = list("intern");
    assert!(!intern.contains(&"stdio.run".to_string()), "{intern:?}");
    assert!(intern.contains(&"http.run".to_string()), "{intern:?}");
    assert!(list("bot").contains(&"stdio.run".to_string()));
}

/// `sluice gateway --print-tools` writes the tools of the Python upstream;
/// `sluice check --upstream-schemas` warns, at each tool's name, about the
/// arguments the schema does not declare.
#[test]
fn check_warns_about_upstream_arguments_the_schema_lacks() {
    let p = policies();
    let rec = p.dir.path().join("rec.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("gateway")
        .arg("--upstream")
        .arg(format!(
            "stdio={} {} {} stdio",
            python().display(),
            script("upstream.py").display(),
            rec.display()
        ))
        .arg("--artifact")
        .arg(&p.artifact)
        .arg("--print-tools")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tools = p.dir.path().join("tools.json");
    std::fs::write(&tools, &out.stdout).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let check = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--repo")
            .arg(p.dir.path())
            .arg("check")
            .arg("--upstream-schemas")
            .arg(&tools)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = check(&["--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let found: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "schema::upstream_field")
        .collect();
    let messages: Vec<&str> = found
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        vec![
            "tool `stdio.pay` takes `args.to` that the request schema does not declare",
            "tool `stdio.run` takes `args.description` that the request schema does not declare",
            "tool `stdio.write` takes `args.path` that the request schema does not declare",
        ],
        "{doc}"
    );
    for f in &found {
        assert_eq!(f["severity"], "warning");
        let loc = &f["locations"][0];
        let line = loc["line"].as_u64().unwrap() as usize;
        let tool = f["message"].as_str().unwrap().split('`').nth(1).unwrap();
        let written = text.lines().nth(line - 1).unwrap();
        assert!(
            written.contains(&format!("\"{tool}\"")),
            "{loc} → {written}"
        );
        assert!(f["help"].as_str().unwrap().contains("= \"string\""), "{f}");
    }
    // A warning: it fails the check only with --deny-warnings.
    assert_eq!(check(&["--deny-warnings"]).status.code(), Some(1));
    std::fs::write(&tools, "{\"tools\": [\n  {\"name\": 3}]}").unwrap();
    let o = check(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tool 1 has no `name`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every gateway call is a line of the decision log, named by the MCP
/// session and request, with the tags an engine writes.
#[test]
fn each_gateway_call_is_in_the_decision_log() {
    let s = setup_with(
        |p| {
            let (mut args, engine) = with_artifact(p);
            args.push("--decision-log".into());
            args.push(
                p.dir
                    .path()
                    .join("decisions.jsonl")
                    .to_string_lossy()
                    .into_owned(),
            );
            (args, engine)
        },
        &["--agent", "bot", "--org", "acme"],
    );
    let answers = client(
        &s.url,
        &json!([
            {"call": "http.pay", "args": {"amount": 5, "to": "ann"}},
            {"call": "stdio.run", "args": {"command": "rm -rf /"}},
        ]),
    );
    assert_eq!(answers[0]["is_error"], false);
    assert_eq!(answers[1]["is_error"], true);
    let log = s.policies.dir.path().join("decisions.jsonl");
    let hash =
        serde_json::from_str::<Value>(&std::fs::read_to_string(&s.policies.artifact).unwrap())
            .unwrap()["hash"]
            .as_str()
            .unwrap()
            .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &Value| l["kind"] == "evaluation")
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "{lines:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, (tool, decision)) in lines
        .iter()
        .zip([("http.pay", "allow"), ("stdio.run", "deny")])
    {
        assert_eq!(line["request"]["tool"], tool, "{line}");
        assert_eq!(line["request"]["agent"], "bot");
        assert_eq!(line["request"]["org"], "acme");
        assert_eq!(line["decision"], decision);
        assert_eq!(line["artifact"], hash.as_str());
        assert_eq!(line["cohort"], "stable");
        let session = line["session"].as_str().unwrap();
        assert_eq!(line["request"]["session"], session);
        let id = line["request_id"].as_str().unwrap();
        assert!(id.starts_with(&format!("mcp-{session}-")), "{id}");
    }
    assert_ne!(lines[0]["request_id"], lines[1]["request_id"]);
}

/// `sluice gateway --stdio`, started by the Python SDK's client as its
/// server: one client, one session (the gateway's own id).
#[test]
fn gateway_over_stdio_serves_one_client() {
    let p = policies();
    let log = p.dir.path().join("decisions.jsonl");
    let argv: Vec<String> = vec![
        env!("CARGO_BIN_EXE_sluice").to_string(),
        "gateway".into(),
        "--stdio".into(),
        "--upstream".into(),
        format!(
            "stdio={} {} {} stdio",
            python().display(),
            script("upstream.py").display(),
            p.dir.path().join("rec.jsonl").display()
        ),
        "--artifact".into(),
        p.artifact.to_string_lossy().into_owned(),
        "--decision-log".into(),
        log.to_string_lossy().into_owned(),
        "--agent".into(),
        "bot".into(),
        "--org".into(),
        "acme".into(),
    ];
    let answers = client(
        &serde_json::to_string(&argv).unwrap(),
        &json!([
            {"list": true},
            {"call": "stdio.pay", "args": {"amount": 3, "to": "ann"}},
            {"call": "stdio.run", "args": {"command": "rm -rf /"}},
        ]),
    );
    assert!(names(&answers[0]).contains(&"stdio.write".to_string()));
    assert_eq!(
        answers[1],
        json!({"is_error": false, "text": "paid 3 to ann"})
    );
    assert!(text(&answers[2]).contains("NO_RM"), "{}", answers[2]);
    // The client closed the gateway's input: the gateway ended, its
    // decision log written out.
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &Value| l["kind"] == "evaluation")
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "{lines:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let session = lines[0]["session"].as_str().unwrap();
    assert!(session.starts_with("gw-"), "{session}");
    assert_eq!(lines[1]["session"], session);
}
