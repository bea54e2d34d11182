//! Messages of the `sluice` binary that reach a user outside a finding:
//! errors that stop a command, with their help, and what `fmt --check`
//! prints. Each is a snapshot of what the binary prints, with the temporary
//! folder's path replaced by `[DIR]`.

use std::path::Path;
use std::process::{Command, Output};

use crate::cli::{CORE, TOML, write_repo};

fn sluice_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(cwd)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// Standard error and standard output, the temporary folder's path as `[DIR]`.
fn shown(o: &Output, dir: &Path) -> String {
    let text = format!(
        "exit {}\n--- stderr\n{}--- stdout\n{}",
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let real = dir.canonicalize().unwrap();
    text.replace(&real.display().to_string(), "[DIR]")
        .replace(&dir.display().to_string(), "[DIR]")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Policy Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Policy Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_repo(
        dir.path(),
        &[("sluice.toml", TOML), ("policies/core.policy", CORE)],
    );
    dir
}

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../snapshots/messages", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

#[test]
fn base_outside_git_says_what_to_do() {
    let dir = repo();
    let o = sluice_in(dir.path(), &["check", "--base", "HEAD"]);
    assert_eq!(o.status.code(), Some(2));
    snapshot!("base_outside_git", shown(&o, dir.path()));
}

#[test]
fn base_missing_from_a_shallow_clone_says_how_to_fetch_it() {
    let origin = repo();
    git(origin.path(), &["init", "-q", "-b", "main"]);
    git(origin.path(), &["add", "-A"]);
    git(origin.path(), &["commit", "-q", "-m", "one"]);
    write_repo(
        origin.path(),
        &[("policies/core2.policy", "policy core2 version 1.0.0 { }\n")],
    );
    git(origin.path(), &["add", "-A"]);
    git(origin.path(), &["commit", "-q", "-m", "two"]);
    let clone = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.path().display());
    git(clone.path(), &["clone", "-q", "--depth", "1", &url, "c"]);
    let c = clone.path().join("c");
    let o = sluice_in(&c, &["check", "--base", "HEAD~1"]);
    assert_eq!(o.status.code(), Some(2));
    snapshot!("base_missing_from_shallow_clone", shown(&o, clone.path()));
}

#[test]
fn fmt_of_a_missing_file_says_so_once() {
    let dir = repo();
    let o = sluice_in(dir.path(), &["fmt", "missing.policy"]);
    assert_eq!(o.status.code(), Some(2));
    let text = shown(&o, dir.path());
    assert_eq!(text.matches("no such file").count(), 1, "{text}");
    snapshot!("fmt_missing_file", text);
}

#[test]
fn fmt_check_prints_the_diff() {
    let dir = repo();
    write_repo(
        dir.path(),
        &[(
            "policies/core.policy",
            "policy core version 1.2.0 {\n  tier security\n  rule no_root { when agent==\"root\" deny ROOT \"no root agent\" }\n}\n",
        )],
    );
    let o = sluice_in(dir.path(), &["fmt", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    snapshot!("fmt_check_diff", shown(&o, dir.path()));
}
