//! The README's quick start, run as written: its `sh` block under
//! "## Quick start" is executed line by line by `sh -e` in a new temporary
//! folder, with the built `sluice` first on `PATH`. Every command must
//! succeed, and the block must stay a quick start (at most 10 commands).

use std::path::Path;
use std::process::Command;

/// The first `sh` code block after the heading `## Quick start`.
fn quick_start(readme: &str) -> String {
    let after = readme
        .split_once("\n## Quick start\n")
        .expect("the README has a `## Quick start` section")
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("the quick start has an `sh` block")
        .1;
    block
        .split_once("\n```")
        .expect("the block is closed")
        .0
        .to_string()
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let script = quick_start(&readme);
    let commands = script
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    assert!(commands <= 10, "the quick start has {commands} commands");
    assert!(script.contains("sluice init"), "{script}");
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg("-ex")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("GIT_AUTHOR_NAME", "Policy Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Policy Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the quick start failed:\n{text}");
    // What each step must have shown.
    for expected in [
        "created sluice.toml",
        "check ok",
        "7 of 7 rules and limits exercised",
        "decision: require_approval",
        "payments.large_transfer",
    ] {
        assert!(text.contains(expected), "`{expected}` not shown:\n{text}");
    }
    let policy =
        std::fs::read_to_string(dir.path().join("my-policies/policies/payments.policy")).unwrap();
    assert!(policy.contains("max 50 per 1d"), "{policy}");
}
