//! What a caller can cost and whose quota it spends (SPEC §5 "What a
//! caller can cost", "Agent identity"), driven against the built `sluice
//! engine`: the resident memory of a real process (read from
//! `/proc/PID/status`) flooded with 1 MiB agent names and approvals, on
//! the memory and the Redis backend; the cap on a limit's keys; agent
//! keys; denied requests that count against no limit.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};

use crate::engine::{PAY, TOKEN, artifact};
use crate::fleet_state::Redis;
use crate::hardening::{Answer, Proc, engine, request, rss_kib, stats};

fn serve_pay(dir: &Path, extra: &[&str]) -> Proc {
    let path = dir.join("a.json");
    std::fs::write(&path, artifact(&[PAY]).to_bytes().unwrap()).unwrap();
    let mut args = vec!["--artifact", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    engine(&args)
}

fn evaluate(addr: SocketAddr, body: &Value, key: Option<&str>) -> Answer {
    let body = body.to_string();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let raw = format!(
        "POST /v1/evaluate HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(addr, &raw).unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
    )
    .unwrap()
}

/// A transfer needing approval, by an agent whose name is 1 MiB long and
/// different for every `n`.
fn huge(n: usize) -> Value {
    let mut agent = format!("{n:08}-");
    agent.push_str(&"x".repeat((1 << 20) - agent.len()));
    json!({"tool": "pay", "agent": agent, "org": "acme", "session": "s-1",
           "args": {"amount": 5000, "country": "DE"}})
}

/// Floods `engine` with `n` requests of distinct 1 MiB agent names (each a
/// new limit key and a new approval), after a warm-up; returns the growth
/// of its resident memory in KiB.
fn flood(engine: &Proc, n: usize) -> u64 {
    for i in 0..10 {
        assert_eq!(evaluate(engine.addr, &huge(i), None).status, 200);
    }
    let before = rss_kib(engine.pid());
    for i in 10..10 + n {
        let a = evaluate(engine.addr, &huge(i), None);
        assert_eq!(a.status, 200, "{a:?}");
    }
    let grown = rss_kib(engine.pid()).saturating_sub(before);
    eprintln!("RSS {before} KiB, +{grown} KiB over {n} requests of 1 MiB");
    grown
}

/// What `GET /v1/state` holds after a flood: every counter key short, at
/// most `cap` approvals, each with its agent cut.
fn check_state(engine: &Proc, cap: usize) {
    let state = get(engine.addr, "/v1/state");
    assert_eq!(state.status, 200);
    assert!(state.body.len() < 4 << 20, "{} bytes", state.body.len());
    let state = state.json();
    let counters = state["counters"].as_array().unwrap();
    assert!(counters.len() >= 60, "{}", counters.len());
    for c in counters {
        let key = c["key"].as_str().unwrap();
        assert!(key.len() <= 71 && key.starts_with("sha256:"), "{key}");
    }
    let approvals = state["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), cap);
    let agent = approvals[0]["request"]["agent"].as_str().unwrap();
    assert!(
        agent.contains("…[1048576 bytes, sha256:"),
        "{}",
        &agent[..300]
    );
    // Past the cap, nothing more is queued.
    let a = evaluate(engine.addr, &huge(999_999), None).json();
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["reasons"][0]["code"], "APPROVAL_QUEUE_FULL", "{a}");
}

#[test]
fn one_mib_agent_names_and_approvals_leave_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = serve_pay(
        dir.path(),
        &[
            "--max-body",
            "2000000",
            "--max-pending-approvals",
            "30",
            // A debug build takes long over a megabyte: no breaker here.
            "--breaker-slow-call",
            "60s",
        ],
    );
    // 60 MiB of agent names: kept as limit keys and in approvals they
    // would be 90 MiB (60 keys, 30 approvals).
    let grown = flood(&engine, 60);
    assert!(
        grown < 24 << 10,
        "RSS grew by {grown} KiB over 60 requests of 1 MiB"
    );
    check_state(&engine, 30);
}

#[test]
fn one_mib_agent_names_leave_the_engine_and_redis_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let used = || -> u64 {
        let info = redis.cli(&["INFO", "memory"]);
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let url = redis.url();
    let engine = serve_pay(
        dir.path(),
        &[
            "--max-body",
            "2000000",
            "--max-pending-approvals",
            "30",
            "--state-backend",
            &url,
            "--state-prefix",
            "t",
            "--breaker-slow-call",
            "60s",
        ],
    );
    let redis_before = used();
    let grown = flood(&engine, 60);
    let redis_grown = used().saturating_sub(redis_before);
    eprintln!("Redis used_memory +{redis_grown} bytes");
    assert!(grown < 24 << 10, "engine RSS grew by {grown} KiB");
    assert!(
        redis_grown < 8 << 20,
        "Redis grew by {redis_grown} bytes over 60 requests of 1 MiB"
    );
    check_state(&engine, 30);
}

#[test]
fn a_limit_at_its_key_cap_refuses_new_keys_as_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = serve_pay(dir.path(), &["--max-limit-keys", "3"]);
    key_cap(&engine);
    let redis = Redis::start(dir.path());
    let url = redis.url();
    let engine = serve_pay(
        dir.path(),
        &[
            "--max-limit-keys",
            "3",
            "--state-backend",
            &url,
            "--state-prefix",
            "t",
        ],
    );
    key_cap(&engine);
}

/// Three keys of `pay.per_agent` counted, the fourth refused.
fn key_cap(engine: &Proc) {
    let pay = |agent: &str| {
        json!({"tool": "pay", "agent": agent, "org": "acme", "session": "s-1",
               "args": {"amount": 5, "country": "DE"}})
    };
    for agent in ["a", "b", "c"] {
        assert_eq!(
            evaluate(engine.addr, &pay(agent), None).json()["decision"],
            "allow"
        );
    }
    let refused = evaluate(engine.addr, &pay("d"), None).json();
    assert_eq!(refused["decision"], "deny", "{refused}");
    assert_eq!(refused["reasons"][0]["code"], "RATE_LIMITED", "{refused}");
    // Keys already counted go on.
    assert_eq!(
        evaluate(engine.addr, &pay("a"), None).json()["decision"],
        "allow"
    );
    assert_eq!(stats(engine.addr)["limit_keys_refused"], 1);
    let metrics = request(engine.addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(
        metrics.body.contains("sluice_limit_keys_refused_total 1"),
        "{}",
        metrics.body
    );
}

const KEY_A: &str = "k-payroll-0123456789";
const KEY_B: &str = "k-mallory-9876543210";

#[test]
fn with_agent_keys_a_caller_spends_only_its_own_agents_quota() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("agents.toml");
    std::fs::write(
        &keys,
        format!("payroll-bot = \"{KEY_A}\"\nmallory = \"{KEY_B}\"\n"),
    )
    .unwrap();
    let limit = dir.path().join("a.json");
    let five = r#"policy pay version 1.0.0 {
  tier security
  rule sanctioned { when tool == "pay" and args.country in ["KP"] deny SANCTIONED "blocked" }
  limit per_agent { when tool == "pay" max 2 per 1h by agent exceed deny RATE_LIMITED "too many" }
}
"#;
    std::fs::write(&limit, artifact(&[five]).to_bytes().unwrap()).unwrap();
    let engine = engine(&[
        "--artifact",
        limit.to_str().unwrap(),
        "--agent-keys",
        keys.to_str().unwrap(),
    ]);
    let pay = |agent: &str, country: &str| {
        json!({"tool": "pay", "agent": agent, "org": "acme", "session": "s-1",
               "args": {"amount": 5, "country": country}})
    };
    // No key, an unknown key: 401; another agent's name: 403.
    let a = evaluate(engine.addr, &pay("payroll-bot", "DE"), None);
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.json()["error"].as_str().unwrap().contains("agent key"));
    let a = evaluate(
        engine.addr,
        &pay("payroll-bot", "DE"),
        Some("k-unknown-0000000000"),
    );
    assert_eq!(a.status, 401, "{a:?}");
    let a = evaluate(engine.addr, &pay("payroll-bot", "DE"), Some(KEY_B));
    assert_eq!(a.status, 403, "{a:?}");
    let error = a.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("`mallory`") && !error.contains(KEY_B),
        "{error}"
    );
    // Requests a rule denies count against no limit: ten sanctioned
    // transfers leave payroll-bot's two.
    for _ in 0..10 {
        let a = evaluate(engine.addr, &pay("payroll-bot", "KP"), Some(KEY_A)).json();
        assert_eq!(a["decision"], "deny");
        assert_eq!(a["reasons"][0]["code"], "SANCTIONED", "{a}");
    }
    for expected in ["allow", "allow", "deny"] {
        let a = evaluate(engine.addr, &pay("payroll-bot", "DE"), Some(KEY_A)).json();
        assert_eq!(a["decision"], expected, "{a}");
    }
    // Over its limit, a sanctioned request shows both reasons, counting
    // nothing.
    let a = evaluate(engine.addr, &pay("payroll-bot", "KP"), Some(KEY_A)).json();
    let codes: Vec<&str> = a["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["SANCTIONED", "RATE_LIMITED"], "{a}");
    let state = get(engine.addr, "/v1/state").json();
    assert_eq!(state["counters"][0]["count"], 2, "{state}");
    // A bad keys file stops the engine at start, naming the agent.
    std::fs::write(&keys, "payroll-bot = \"short\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["engine", "--listen", "127.0.0.1:0", "--agent-keys"])
        .arg(&keys)
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("payroll-bot") && stderr.contains("16"),
        "{stderr}"
    );
}
