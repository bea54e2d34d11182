//! `sluice hook claude-code`: the binary with real `PreToolUse` events on
//! standard input, its output read as Claude Code reads it.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use super::{Policies, engine, policies};

fn event(tool: &str, input: Value) -> Value {
    json!({
        "session_id": "c0ffee-1",
        "transcript_path": "/tmp/transcript.jsonl",
        "cwd": "/home/dev/project",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": input,
    })
}

fn hook(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["hook", "claude-code", "--agent", "claude", "--org", "acme"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// The hook's answer: exit 0 and its `hookSpecificOutput`.
fn answer(args: &[&str], ev: &Value) -> Value {
    let out = hook(args, ev.to_string().as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hookSpecificOutput"]["hookEventName"], "PreToolUse");
    v["hookSpecificOutput"].clone()
}

fn artifact_args(p: &Policies) -> Vec<String> {
    vec![
        "--artifact".into(),
        p.artifact.to_string_lossy().into_owned(),
    ]
}

fn each_decision(args: &[&str]) {
    // allow: nothing matches, the project default.
    let a = answer(args, &event("Read", json!({"file_path": "/etc/hosts"})));
    assert_eq!(a["permissionDecision"], "allow", "{a}");
    assert!(a.get("updatedInput").is_none(), "{a}");

    // deny, naming the code and the text.
    let a = answer(
        args,
        &event(
            "Bash",
            json!({"command": "rm -rf /", "description": "clean"}),
        ),
    );
    assert_eq!(a["permissionDecision"], "deny", "{a}");
    let reason = a["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains("NO_RM") && reason.contains("recursive deletes are not allowed"),
        "{reason}"
    );

    // modify: allowed, with the modified input; undeclared fields kept.
    let a = answer(
        args,
        &event(
            "Write",
            json!({"file_path": "/tmp/x", "content": "ssn 123-45-6789 ok"}),
        ),
    );
    assert_eq!(a["permissionDecision"], "allow", "{a}");
    assert_eq!(
        a["updatedInput"],
        json!({"file_path": "/tmp/x", "content": "ssn [REDACTED] ok"})
    );
    assert!(
        a["permissionDecisionReason"]
            .as_str()
            .unwrap()
            .contains("PII_REDACTED")
    );

    // require_approval: ask, naming the approval id.
    let a = answer(
        args,
        &event("mcp__pay__send", json!({"amount": 5000, "to": "x"})),
    );
    assert_eq!(a["permissionDecision"], "ask", "{a}");
    let reason = a["permissionDecisionReason"].as_str().unwrap();
    assert!(reason.contains("ap-") && reason.contains("BIG"), "{reason}");
}

#[test]
fn hook_with_an_artifact_answers_each_decision() {
    let p = policies();
    let args = artifact_args(&p);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    each_decision(&args);
}

#[test]
fn hook_through_an_engine_answers_each_decision() {
    let p = policies();
    let (_engine, url) = engine(&p.artifact);
    let repo = p.dir.path().to_string_lossy().into_owned();
    each_decision(&["--engine", &url, "--repo", &repo]);
}

/// Anything the hook cannot decide exits 2, which Claude Code treats as a
/// blocking error: the tool call does not run (fail closed).
#[test]
fn hook_fails_closed_with_exit_2_and_a_message() {
    let p = policies();
    let args = artifact_args(&p);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not valid JSON"),
        (
            json!({"session_id": "s", "hook_event_name": "PostToolUse", "tool_name": "Bash"})
                .to_string()
                .into_bytes(),
            "PreToolUse",
        ),
        (
            // A declared argument of the wrong type: the request is refused.
            event("pay", json!({"amount": "lots"}))
                .to_string()
                .into_bytes(),
            "args.amount",
        ),
    ];
    for (input, says) in cases {
        let out = hook(&args, &input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(out.stdout.is_empty());
        assert!(err.contains(says), "{says}: {err}");
    }
    // An engine nobody listens on.
    let port = super::free_port();
    let repo = p.dir.path().to_string_lossy().into_owned();
    let out = hook(
        &[
            "--engine",
            &format!("http://127.0.0.1:{port}"),
            "--repo",
            &repo,
        ],
        event("Bash", json!({"command": "ls"}))
            .to_string()
            .as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("gave no decision"), "{err}");
    // --engine without a policy repository for the schema.
    let empty = tempfile::tempdir().unwrap();
    let out = hook(
        &[
            "--engine",
            "http://127.0.0.1:1",
            "--repo",
            &empty.path().to_string_lossy(),
        ],
        event("Bash", json!({"command": "ls"}))
            .to_string()
            .as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sluice.toml"), "{err}");
}
