//! Where agents plug in (issue 16, SPEC §8).
//!
//! - `hook`: `sluice hook claude-code`, the real binary fed real
//!   `PreToolUse` events on standard input, deciding through an artifact
//!   and through an engine process.
//! - `mcp`: `sluice gateway` in front of upstream MCP servers written with
//!   the official Python SDK (stdio and streamable HTTP), driven by the
//!   Python SDK's client and by rmcp's client; the approval round trip.
//! - `lists`: `tools/list` with `--hide-denied`, `--print-tools` read by
//!   `sluice check --upstream-schemas`, the decision log of gateway calls.
//!
//! The fixture writes one policy repository and compiles it with the
//! binary: a deny, a modify, an approval, and allow by default.

mod hook;
mod lists;
mod mcp;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) const TOML: &str = r#"
[project]
name = "gw"
default = "allow"

[schema]
tool = "string"
agent = "string"
org = "string"
session = "string"
"args.command?" = "string"
"args.content?" = "string"
"args.amount?" = "int"
"#;

pub(crate) const GUARD: &str = r#"policy guard version 1.0.0 {
  rule no_rm {
    when args.command contains "rm -rf"
    deny NO_RM "recursive deletes are not allowed"
  }
  rule redact_ssn {
    when args.content matches "[0-9]{3}-[0-9]{2}-[0-9]{4}"
    modify args.content = redact(args.content, "[0-9]{3}-[0-9]{2}-[0-9]{4}") PII_REDACTED "SSN-like number removed"
  }
  rule interns_no_shell {
    when agent == "intern" and tool == "stdio.run"
    deny NO_SHELL "interns may not run commands"
  }
  rule interns_small_payments {
    when agent == "intern" and args.amount > 10
    deny INTERN_LIMIT "interns pay 10 at most"
  }
  rule big_payment {
    when args.amount > 1000
    require_approval "finance" BIG "payments above 1000 need finance approval"
  }
}
"#;

/// A compiled policy repository: the folder and the artifact file.
pub(crate) struct Policies {
    pub dir: tempfile::TempDir,
    pub artifact: PathBuf,
}

pub(crate) fn policies() -> Policies {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.toml"), TOML).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/guard.policy"), GUARD).unwrap();
    let artifact = dir.path().join("artifact.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--repo")
        .arg(dir.path())
        .args(["compile", "-o"])
        .arg(&artifact)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Policies { dir, artifact }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub(crate) struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts TCP connections on `port`.
pub(crate) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `sluice engine --artifact` on a free port.
pub(crate) fn engine(artifact: &Path) -> (Child, String) {
    engine_with(artifact, &[])
}

/// `sluice engine --artifact` with `extra` flags on a free port.
pub(crate) fn engine_with(artifact: &Path, extra: &[String]) -> (Child, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["engine", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--artifact")
        .arg(artifact)
        .args(extra)
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(child);
    wait_for_port(port, "the engine");
    (child, format!("http://127.0.0.1:{port}"))
}

/// A `redis-server` of the test's own on a free port, nothing persisted.
pub(crate) fn redis(dir: &Path) -> (Child, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(child);
    wait_for_port(port, "redis-server");
    (child, format!("redis://127.0.0.1:{port}"))
}

pub(crate) const ADMIN_TOKEN: &str = "gateway-test-admin-token";
