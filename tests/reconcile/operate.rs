//! What operators override, end to end (issue 9, items 7, 8 and 10): the
//! daemon in-process on a bare repository pushed to with the `git` command
//! line, engines on loopback, and the operator commands run through the
//! binary as an operator types them.
//!
//! - `rollback --candidate` refuses (409, exit 1) when a newer commit
//!   superseded the one the operator means, and rolls back the one named.
//! - `promote --through` skips stages with a reason in the audit log, and
//!   installs a fix for a bad stable release that the gates, judging it
//!   against that bad release, would roll back.
//! - `unquarantine` lets a commit producing a rolled-back artifact roll out
//!   again.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice::reconcile::{Config, Daemon};

use super::fixture::{self, BAD, Engine, GOOD, Repo, TOKEN, Traffic, audit, wait_for};

/// Another harmless change: blocks a tool the traffic never uses.
const OTHER: &str = r#"policy ftp version 1.0.0 {
  rule no_ftp {
    when tool == "ftp.put"
    deny NO_FTP "No FTP"
  }
}
"#;

fn config(repo: &Repo, state: &Path, engines: &[Engine]) -> Config {
    let urls = engines.iter().map(Engine::url).collect();
    let mut c = Config::new(
        &repo.bare.to_string_lossy(),
        state.to_path_buf(),
        urls,
        TOKEN,
    );
    c.interval = Duration::from_millis(100);
    c.listen = "127.0.0.1:0".parse().ok();
    c
}

/// Live stages that would wait an hour: only operators move them.
fn slow_toml() -> String {
    fixture::TOML.replace(
        "min_duration = \"200ms\"\nmax_duration = \"60s\"",
        "min_duration = \"1h\"\nmax_duration = \"2h\"",
    )
}

/// Runs the binary against the daemon: (exit code, stdout, stderr).
fn sluice(addr: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--daemon", &format!("http://{addr}")])
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_all_on_stable(engines: &[Engine], artifact: &str) {
    for e in engines {
        let r = e.route().expect("a route");
        assert_eq!(r.stable, artifact, "engine {}", e.url());
        assert_eq!(r.candidate, None, "engine {}", e.url());
    }
}

/// Waits until the candidate in flight is `commit`'s, in `phase`, on every
/// engine.
async fn candidate(daemon: &Daemon, commit: &str, phase: &str) {
    wait_for(
        &format!("candidate {commit} at {phase}"),
        Duration::from_secs(15),
        || {
            let s = daemon.status();
            (s.candidate?.commit == commit
                && s.phase == phase
                && s.engines.iter().all(|e| e.on_route))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_naming_a_superseded_candidate_is_refused_and_the_named_one_rolls_back() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.commit("Slow stages", &[("sluice.toml", Some(&slow_toml()))]);
    let engines = fixture::engines(2).await;
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    let stable = wait_for("installed", Duration::from_secs(10), || {
        daemon.status().stable
    })
    .await;

    // The operator looks at c1 in shadow...
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    candidate(&daemon, &c1, "shadow").await;
    // ...and before the command is typed, c2 supersedes it.
    let c2 = repo.commit("Block FTP", &[("policies/ftp.policy", Some(OTHER))]);
    daemon.trigger_fetch();
    candidate(&daemon, &c2, "shadow").await;
    let seen = audit(&state).len();

    let (code, out, err) = sluice(
        &addr,
        &["rollback", "--candidate", &c1[..7], "--reason", "c1 is bad"],
    );
    assert_eq!(code, 1, "refused: {out}{err}");
    assert!(err.contains("rollback refused"), "{err}");
    assert!(err.contains(&format!("not `{}`", &c1[..7])), "{err}");
    assert!(
        err.contains(&c2[..12]),
        "names the candidate in flight: {err}"
    );
    // Nothing moved: c2 still in flight, nothing rolled back or quarantined.
    let s = daemon.status();
    assert_eq!(s.candidate.unwrap().commit, c2);
    assert!(s.quarantine.is_empty());
    assert_eq!(audit(&state).len(), seen);
    for e in &engines {
        assert!(e.route().unwrap().candidate.is_some());
    }

    // Not a hash: a usage error, not a refusal.
    let (code, _, err) = sluice(&addr, &["rollback", "--candidate", "main"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("hexadecimal"), "{err}");

    // Named by its artifact, the candidate in flight is rolled back.
    let a2 = fixture::artifact_of(&repo, &c2);
    let (code, out, err) = sluice(
        &addr,
        &[
            "rollback",
            "--candidate",
            &a2[..12],
            "--reason",
            "c2 is bad",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("c2 is bad"), "{out}");
    assert_all_on_stable(&engines, &stable.artifact);
    let lines = audit(&state);
    let rollback = lines.iter().rfind(|t| t.event == "rollback").unwrap();
    assert_eq!(rollback.commit.as_deref(), Some(c2.as_str()));
    assert_eq!(rollback.artifact.as_deref(), Some(a2.as_str()));
    fixture::assert_consistent(&lines);
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_through_skips_stages_with_a_reason_and_installs_a_fix_for_a_bad_stable() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    // The stable release is bad: it blocks search, a third of the traffic.
    let bad = repo.commit(
        "Block search, slow stages",
        &[
            ("policies/search.policy", Some(BAD)),
            ("sluice.toml", Some(&slow_toml())),
        ],
    );
    let engines = fixture::engines(2).await;
    let urls: Vec<String> = engines.iter().map(Engine::url).collect();
    let _traffic = Traffic::start(urls, 4, Duration::from_millis(3));
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    wait_for("the bad release installed", Duration::from_secs(10), || {
        daemon.status().stable?.commit.filter(|c| *c == bad)
    })
    .await;

    // The fix, judged against the bad release, would trip the deny-rate
    // trigger (a third of the requests change decision): the operator holds
    // the daemon, pushes the fix and promotes it through every stage.
    let (code, _, err) = sluice(&addr, &["pause", "--reason", "fixing the bad release"]);
    assert_eq!(code, 0, "{err}");
    let fix = repo.commit("Unblock search", &[("policies/search.policy", None)]);
    daemon.trigger_fetch();
    wait_for("the fix waiting", Duration::from_secs(10), || {
        let s = daemon.status();
        s.waiting
            .filter(|w| w.contains(&fix[..12]) && w.contains("paused"))
    })
    .await;
    // Without a reason, `--through` is a usage error.
    let (code, _, err) = sluice(&addr, &["promote", "--through", "full"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--reason"), "{err}");
    // A head is promoted through its plan's last stage only.
    let (code, _, err) = sluice(
        &addr,
        &["promote", "--through", "canary", "--reason", "fix"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("last stage, `full`"), "{err}");
    let (code, out, err) = sluice(
        &addr,
        &[
            "promote",
            "--through",
            "full",
            "--reason",
            "INC-42: fix for the bad release",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("INC-42"), "{out}");
    let a_fix = fixture::artifact_of(&repo, &fix);
    assert_all_on_stable(&engines, &a_fix);
    let s = daemon.status();
    assert_eq!(s.stable.unwrap().commit.as_deref(), Some(fix.as_str()));
    assert!(s.quarantine.is_empty());
    // The operator's pause stays until they resume.
    assert!(s.paused.is_some(), "still paused");
    let promote = audit(&state).pop().unwrap();
    assert_eq!(promote.event, "promote");
    assert_eq!(promote.cause, sluice::rollout::machine::Cause::Operator);
    assert!(promote.reason.contains("INC-42"), "{}", promote.reason);
    assert!(
        promote.reason.contains("through `full`"),
        "{}",
        promote.reason
    );
    let (code, _, err) = sluice(&addr, &["resume"]);
    assert_eq!(code, 0, "{err}");

    // A candidate in flight is promoted through the stages named.
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    candidate(&daemon, &c1, "shadow").await;
    let (code, _, err) = sluice(&addr, &["promote", "--through", "nosuch", "--reason", "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no stage `nosuch`"), "{err}");
    let (code, _, err) = sluice(&addr, &["promote", "--through", "replay", "--reason", "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("past `replay`"), "{err}");
    // Through `canary`: on to `full`, which has no gates and completes.
    let (code, _, err) = sluice(
        &addr,
        &[
            "promote",
            "--through",
            "canary",
            "--reason",
            "hotfix window",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let a1 = fixture::artifact_of(&repo, &c1);
    wait_for("c1 stable", Duration::from_secs(15), || {
        let s = daemon.status();
        (s.stable?.artifact == a1 && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    assert_all_on_stable(&engines, &a1);
    let lines = audit(&state);
    let promote = lines.iter().rfind(|t| t.event == "promote").unwrap();
    assert_eq!(
        (promote.from.as_str(), promote.to.as_str()),
        ("shadow", "full")
    );
    assert!(
        promote.reason.contains("shadow, canary") && promote.reason.contains("hotfix window"),
        "{}",
        promote.reason
    );
    assert_eq!(lines.last().unwrap().event, "complete");
    fixture::assert_consistent(&audit(&state));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unquarantined_artifact_rolls_out_again() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.commit("Slow stages", &[("sluice.toml", Some(&slow_toml()))]);
    let engines = fixture::engines(2).await;
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    wait_for("installed", Duration::from_secs(10), || {
        daemon.status().stable
    })
    .await;

    // Rolled back for an infrastructure reason: quarantined, reverted.
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    candidate(&daemon, &c1, "shadow").await;
    let (code, _, err) = sluice(
        &addr,
        &["rollback", "--reason", "engine host lost its network"],
    );
    assert_eq!(code, 0, "{err}");
    let a1 = fixture::artifact_of(&repo, &c1);
    wait_for("the revert acted on", Duration::from_secs(15), || {
        let last = audit(&state).pop()?;
        (daemon.status().reverts.is_empty() && last.event == "unchanged").then_some(())
    })
    .await;
    assert!(daemon.status().quarantine.iter().any(|q| q.artifact == a1));

    // The same change again: its artifact is refused, quarantined.
    let c3 = repo.commit(
        "Block the shell tool, again",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    let refused = wait_for("the same artifact refused", Duration::from_secs(10), || {
        daemon.status().refused.filter(|r| r.commit == c3)
    })
    .await;
    assert!(refused.reason.contains("quarantined"), "{}", refused.reason);

    // Bad input: no reason, not a hash, nothing of that name.
    let (code, _, err) = sluice(&addr, &["unquarantine", &a1[..12]]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = sluice(&addr, &["unquarantine", "zz", "--reason", "x"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = sluice(&addr, &["unquarantine", "0000000", "--reason", "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no quarantined commit or artifact"), "{err}");

    let (code, out, err) = sluice(
        &addr,
        &[
            "unquarantine",
            &a1[..12],
            "--reason",
            "the outage was the network, not the policy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("quarantine lifted"), "{out}");
    // The refused head is acted on again and rolls out.
    candidate(&daemon, &c3, "shadow").await;
    let s = daemon.status();
    assert!(s.quarantine.is_empty());
    assert_eq!(s.candidate.unwrap().artifact, a1);
    let lines = audit(&state);
    let lifted = lines.iter().find(|t| t.event == "unquarantine").unwrap();
    assert_eq!(lifted.cause, sluice::rollout::machine::Cause::Operator);
    assert!(
        lifted.reason.contains("not the policy"),
        "{}",
        lifted.reason
    );
    assert_eq!(lifted.artifact.as_deref(), Some(a1.as_str()));
    fixture::assert_consistent(&lines);
    daemon.stop().await.unwrap();
}
