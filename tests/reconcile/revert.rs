//! What a commit may not change about its own rollout, and reverts of the
//! right commits (issue 9, SPEC §6), end to end: commits pushed with the
//! `git` command line to a bare repository (several in one push, a
//! force-push, the branch deleted, the remote gone while the branch moves),
//! engines on loopback, the daemon in-process, operators through the
//! binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice::api::status::Status;
use sluice::reconcile::Daemon;
use sluice::rollout::machine::{Cause, Command as Op};

use super::fixture::{
    self, BAD, BASE, Change, Engine, GOOD, Repo, TOKEN, TOML, TRACES, Traffic, audit, git, wait_for,
};

/// How long any one wait may take (a loaded machine builds slowly).
const LIMIT: Duration = Duration::from_secs(40);

/// Blocks big transfers like the base policy, written otherwise.
const GUARD: &str = r#"// Guards payments.
policy guard version 1.0.0 {
  rule big_transfer {
    when args.amount > 100000 and tool == "payments.transfer"
    deny TOO_BIG "Too big a transfer"
  }
}
"#;

/// A policy that reuses the name `base`.
const LEGACY: &str = r#"// Kept from the old setup.
policy base version 2.0.0 {
  rule no_shell {
    when tool == "shell.exec"
    deny NO_SHELL "No shell"
  }
}
"#;

/// `sluice.toml` whose live stages wait an hour: only operators move them.
fn slow_toml() -> String {
    TOML.replace(
        "min_duration = \"200ms\"\nmax_duration = \"60s\"",
        "min_duration = \"1h\"\nmax_duration = \"2h\"",
    )
}

/// Runs the binary against the daemon's control API.
fn sluice(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let addr = daemon.control_addr().unwrap();
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

/// The audit events from line `from` on.
fn events_since(state: &Path, from: usize) -> Vec<String> {
    audit(state)
        .into_iter()
        .skip(from)
        .map(|t| t.event)
        .collect()
}

/// Waits for the audit log's last line to be about `commit`; returns its
/// event.
async fn last_about(state: &Path, commit: &str) -> String {
    wait_for(&format!("the audit line of {commit}"), LIMIT, || {
        audit(state)
            .pop()
            .filter(|t| t.commit.as_deref() == Some(commit))
            .map(|t| t.event)
    })
    .await
}

/// Waits for an audit line of `event` about `commit`.
async fn until(state: &Path, event: &str, commit: &str) {
    wait_for(&format!("`{event}` of {commit}"), LIMIT, || {
        audit(state)
            .iter()
            .any(|t| t.event == event && t.commit.as_deref() == Some(commit))
            .then_some(())
    })
    .await;
}

/// Subjects of the commits the daemon pushed (its revert commits).
fn daemon_reverts(repo: &Repo) -> Vec<String> {
    git(&repo.bare, &["log", "--format=%an%x09%s", "main"])
        .lines()
        .filter_map(|l| l.strip_prefix("sluice reconcile\t"))
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn assert_on_stable(engines: &[Engine], artifact: &str) {
    for e in engines {
        let r = e.route().expect("a route");
        assert_eq!(
            (r.stable.as_str(), r.candidate.as_deref()),
            (artifact, None),
            "engine {}",
            e.url()
        );
    }
}

async fn installed(daemon: &Daemon, commit: &str) -> String {
    wait_for("the first commit installed", LIMIT, || {
        let s = daemon.status();
        let st = s.stable?;
        (st.commit.as_deref() == Some(commit) && s.engines.iter().all(|e| e.on_route))
            .then_some(st.artifact)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_rolled_out_under_the_plan_and_traces_of_the_stable_commit() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c0 = repo.log()[0].0.clone();
    let engines = fixture::engines(2).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        4,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let daemon = Daemon::start(fixture::config(&repo, &state, &engines))
        .await
        .unwrap();
    let a0 = installed(&daemon, &c0).await;

    // Deletes `[rollout]` and turns the deny of big transfers into an
    // allow: rolled out under c0's plan, c0's traces catch it at replay,
    // and it is refused there (nothing was deployed: nothing reverted).
    let no_rollout = &TOML[..TOML.find("[rollout]").unwrap()];
    let loose = BASE.replace(
        "deny TOO_BIG \"Transfers above 100000 are blocked\"",
        "allow",
    );
    assert_ne!(loose, BASE);
    let loose_gate = TOML.replace("max_catastrophic = 0", "max_catastrophic = 100");
    let escapes: [(&str, Vec<Change<'_>>); 3] = [
        (
            "Drop the rollout plan and allow big transfers",
            vec![
                ("sluice.toml", Some(no_rollout)),
                ("policies/base.policy", Some(&loose)),
            ],
        ),
        // Loosens the replay gate itself.
        (
            "Loosen the replay gate",
            vec![("sluice.toml", Some(&loose_gate))],
        ),
        // Deletes the traces that would catch it.
        ("Delete the traces", vec![("traces/basic.jsonl", None)]),
    ];
    for (message, files) in &escapes {
        let commit = repo.commit(message, files);
        let seen = audit(&state).len();
        daemon.trigger_fetch();
        let refused = wait_for(&format!("commit {message} refused"), LIMIT, || {
            daemon.status().refused.filter(|r| r.commit == commit)
        })
        .await;
        assert!(
            refused.reason.contains("max_catastrophic"),
            "{}",
            refused.reason
        );
        let lines = audit(&state);
        let tail: Vec<&str> = lines[seen..].iter().map(|t| t.event.as_str()).collect();
        assert_eq!(tail, ["start", "refuse"], "{message}");
        let start = &lines[seen];
        assert!(
            start
                .reason
                .contains(&format!("plan and traces of stable commit {}", &c0[..12])),
            "{}",
            start.reason
        );
        let refuse = &lines[seen + 1];
        assert_eq!(refuse.cause, Cause::Trigger);
        assert!(
            refuse.reason.contains("nothing to revert"),
            "{}",
            refuse.reason
        );
        assert_eq!(daemon.status().stable.unwrap().artifact, a0);
        assert_on_stable(&engines, &a0);
    }
    assert!(daemon_reverts(&repo).is_empty(), "{:?}", repo.log());

    // A commit that drops `[rollout]` but is harmless is rolled out under
    // c0's plan, stage by stage, to stable.
    let c4 = repo.commit(
        "Block the shell tool, drop the rollout plan",
        &[
            ("sluice.toml", Some(no_rollout)),
            ("policies/base.policy", Some(BASE)),
            ("traces/basic.jsonl", Some(TRACES)),
            ("policies/shell.policy", Some(GOOD)),
        ],
    );
    let seen = audit(&state).len();
    daemon.trigger_fetch();
    wait_for("c4 promoted", LIMIT, || {
        daemon.status().stable?.commit.filter(|c| *c == c4)
    })
    .await;
    assert_eq!(
        events_since(&state, seen),
        ["start", "advance", "advance", "advance", "complete"]
    );
    // Its new plan (none) applies to the commits after it: installed
    // directly.
    let c5 = repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
    daemon.trigger_fetch();
    assert_eq!(last_about(&state, &c5).await, "install");
    let t = audit(&state).pop().unwrap();
    assert!(
        t.reason.contains(&format!(
            "the stable commit {} has no `[rollout]` plan",
            &c4[..12]
        )),
        "{}",
        t.reason
    );
    fixture::assert_consistent(&audit(&state));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_of_several_commits_is_one_candidate_and_one_revert_of_them_all() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c0 = repo.log()[0].0.clone();
    let engines = fixture::engines(2).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        4,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let daemon = Daemon::start(fixture::config(&repo, &state, &engines))
        .await
        .unwrap();
    let a0 = installed(&daemon, &c0).await;

    // The bad policy and a README, in one push.
    let pushed = repo.commit_many(&[
        ("Block search", &[("policies/search.policy", Some(BAD))]),
        ("Add a README", &[("README.md", Some("# policies\n"))]),
    ]);
    let (bad, readme) = (pushed[0].clone(), pushed[1].clone());
    daemon.trigger_fetch();
    let revert = wait_for("the range reverted", LIMIT, || {
        let s = daemon.status();
        let (sha, subject) = repo.log().into_iter().next()?;
        (s.reverts.is_empty() && subject.starts_with("Revert 2 commits")).then_some(sha)
    })
    .await;
    let lines = audit(&state);
    // The candidate is the head, labelled with the range since stable.
    let start = lines.iter().find(|t| t.event == "start").unwrap();
    assert_eq!(start.commit.as_deref(), Some(readme.as_str()));
    assert!(
        start.reason.contains(&format!(
            "with 1 earlier commit(s), {}..{}",
            &c0[..12],
            &readme[..12]
        )),
        "{}",
        start.reason
    );
    let rollback = lines.iter().find(|t| t.event == "rollback").unwrap();
    assert_eq!(rollback.commit.as_deref(), Some(readme.as_str()));
    // One revert commit naming both, back to c0's tree.
    let msg = repo.message(&revert);
    assert!(
        msg.starts_with(&format!("Revert 2 commits: back to {}", &c0[..7])),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("This reverts commit {bad}.")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("This reverts commit {readme}.")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("Back to the stable commit {c0}.")),
        "{msg}"
    );
    assert_eq!(repo.files(&revert), repo.files(&c0));
    assert_eq!(daemon_reverts(&repo).len(), 1);
    assert_on_stable(&engines, &a0);
    last_about(&state, &revert).await;

    // The next innocent commit is rolled out, not rolled back for them.
    let good = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    let seen = audit(&state).len();
    daemon.trigger_fetch();
    wait_for("the innocent commit promoted", LIMIT, || {
        daemon.status().stable?.commit.filter(|c| *c == good)
    })
    .await;
    assert_eq!(
        events_since(&state, seen),
        ["start", "advance", "advance", "advance", "complete"]
    );
    assert_eq!(daemon_reverts(&repo).len(), 1);
    fixture::assert_consistent(&audit(&state));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_already_accepted_as_unchanged_is_never_reverted_with_a_later_one() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c0 = repo.log()[0].0.clone();
    let engines = fixture::engines(2).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        4,
        Duration::from_millis(2),
    );
    let state = tmp.path().join("state");
    let daemon = Daemon::start(fixture::config(&repo, &state, &engines))
        .await
        .unwrap();
    installed(&daemon, &c0).await;

    // Docs and one more trace: the artifact stays stable's.
    let extra = r#"{"request": {"tool": "shell.exec", "agent": "a", "session": "s", "args": {}}, "expect": "allow"}"#;
    let docs = repo.commit(
        "Docs and an extra trace",
        &[
            ("README.md", Some("# policies\n")),
            ("traces/extra.jsonl", Some(extra)),
        ],
    );
    daemon.trigger_fetch();
    assert_eq!(last_about(&state, &docs).await, "unchanged");
    // It is the stable commit now (the status is published once the
    // iteration that wrote the audit line ends).
    wait_for("the docs commit as the stable one", LIMIT, || {
        daemon
            .status()
            .stable
            .and_then(|s| s.commit)
            .filter(|c| *c == docs)
    })
    .await;

    // A bad change pushed on its own is rolled back: only it is reverted.
    let bad = repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
    daemon.trigger_fetch();
    let revert = wait_for("the bad commit reverted", LIMIT, || {
        let s = daemon.status();
        let (sha, subject) = repo.log().into_iter().next()?;
        (s.reverts.is_empty() && subject == "Revert \"Block search\"").then_some(sha)
    })
    .await;
    let msg = repo.message(&revert);
    assert!(
        msg.contains(&format!("This reverts commit {bad}.")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("Back to the stable commit {docs}.")),
        "{msg}"
    );
    assert_eq!(repo.files(&revert), repo.files(&docs));
    assert!(
        repo.files(&revert)
            .contains(&"traces/extra.jsonl".to_string())
    );
    assert_eq!(daemon_reverts(&repo).len(), 1);
    daemon.stop().await.unwrap();
}

/// The daemon with slow stages, the candidate `files` in shadow.
async fn in_shadow(
    tmp: &Path,
    message: &str,
    files: &[(&str, Option<&str>)],
) -> (Repo, Vec<Engine>, Daemon, String, String) {
    let repo = Repo::new(tmp);
    let s0 = repo.commit("Slow stages", &[("sluice.toml", Some(&slow_toml()))]);
    let engines = fixture::engines(2).await;
    let state = tmp.join("state");
    let daemon = Daemon::start(fixture::config(&repo, &state, &engines))
        .await
        .unwrap();
    let a0 = installed(&daemon, &s0).await;
    let c = repo.commit(message, files);
    daemon.trigger_fetch();
    wait_for("shadow", LIMIT, || {
        let s = daemon.status();
        (s.phase == "shadow" && s.candidate?.commit == c).then_some(())
    })
    .await;
    let _ = a0;
    (repo, engines, daemon, s0, c)
}

/// Rolls back the candidate while the remote is away, and pushes `files`
/// onto the branch meanwhile (the revert is made on top of them).
async fn roll_back_while_the_branch_moves(
    repo: &Repo,
    daemon: &Daemon,
    message: &str,
    files: &[(&str, Option<&str>)],
) -> String {
    let away = repo.bare.with_extension("away");
    std::fs::rename(&repo.bare, &away).unwrap();
    daemon
        .command(Op::Rollback {
            candidate: None,
            reason: Some("customer report".into()),
        })
        .await
        .unwrap();
    let d = repo.commit_via(&away, message, files);
    std::fs::rename(&away, &repo.bare).unwrap();
    daemon.trigger_fetch();
    d
}

async fn stuck(daemon: &Daemon) -> Status {
    wait_for("the revert stopped", LIMIT, || {
        let s = daemon.status();
        s.reverts.first()?.stuck.as_ref()?;
        Some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_that_does_not_check_is_not_pushed_and_one_made_by_hand_settles_it() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, engines, daemon, s0, c1) = in_shadow(
        tmp.path(),
        "Replace the base policy with a guard",
        &[
            ("policies/base.policy", None),
            ("policies/guard.policy", Some(GUARD)),
        ],
    )
    .await;
    let state = tmp.path().join("state");
    let a0 = daemon.status().stable.unwrap().artifact;
    // After the rollback, someone reuses the freed name `base`: reverting
    // c1 on top of that brings `base.policy` back beside `legacy.policy`,
    // two definitions of policy `base`.
    let d = roll_back_while_the_branch_moves(
        &repo,
        &daemon,
        "Add the legacy policy",
        &[("policies/legacy.policy", Some(LEGACY))],
    )
    .await;
    assert_on_stable(&engines, &a0);
    let s = stuck(&daemon).await;
    let why = s.reverts[0].stuck.clone().unwrap();
    assert!(why.contains("does not check"), "{why}");
    assert!(why.contains("version::duplicate"), "{why}");
    let paused = s.paused.unwrap();
    assert!(
        paused.hold && paused.reason.contains("sluice revert skip"),
        "{paused:?}"
    );
    // Nothing was pushed: the branch is where it was.
    assert_eq!(repo.log()[0].0, d);
    assert!(daemon_reverts(&repo).is_empty());
    assert!(audit(&state).iter().any(|t| t.event == "revert_failed"));
    let (code, out, _) = sluice(&daemon, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("STOPPED"), "{out}");
    assert!(out.contains("sluice revert skip"), "{out}");
    // Not retried meanwhile.
    let attempts = s.reverts[0].attempts;
    fixture::iterations(&daemon, 5, LIMIT).await;
    assert_eq!(daemon.status().reverts[0].attempts, attempts);

    // Someone fixes the branch by hand: recognised, settled, nothing pushed.
    let fix = repo.commit(
        "Put the base policy back by hand",
        &[
            ("policies/legacy.policy", None),
            ("policies/guard.policy", None),
            ("policies/base.policy", Some(BASE)),
        ],
    );
    daemon.trigger_fetch();
    assert_eq!(last_about(&state, &fix).await, "unchanged");
    let lines = audit(&state);
    let reverted = lines.iter().rfind(|t| t.event == "reverted").unwrap();
    assert_eq!(reverted.commit.as_deref(), Some(c1.as_str()));
    assert!(reverted.reason.contains("no revert"), "{}", reverted.reason);
    assert!(
        reverted.reason.contains(&format!("those of {}", &s0[..12])),
        "{}",
        reverted.reason
    );
    let s = daemon.status();
    assert!(s.paused.is_none() && s.reverts.is_empty(), "{s:#?}");
    assert!(daemon_reverts(&repo).is_empty());
    fixture::assert_consistent(&lines);
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_that_cannot_be_made_waits_for_revert_skip_or_done_and_never_races_a_hand_made_one()
 {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let refused = BASE.replace("are blocked", "are refused");
    let (repo, engines, daemon, _s0, _c1) = in_shadow(
        tmp.path(),
        "Reword the big transfer message",
        &[("policies/base.policy", Some(&refused))],
    )
    .await;
    let state = tmp.path().join("state");
    let a0 = daemon.status().stable.unwrap().artifact;
    // The same line changed again after the rollback: the revert conflicts.
    let stopped = BASE.replace("are blocked", "are stopped");
    let d = roll_back_while_the_branch_moves(
        &repo,
        &daemon,
        "Reword it again",
        &[("policies/base.policy", Some(&stopped))],
    )
    .await;
    let s = stuck(&daemon).await;
    let why = s.reverts[0].stuck.clone().unwrap();
    assert!(why.contains("conflicts"), "{why}");
    wait_for("the head waiting for it", LIMIT, || {
        let w = daemon.status().waiting?;
        w.contains("revert skip|done").then_some(())
    })
    .await;
    assert_eq!(repo.log()[0].0, d);

    // `sluice revert skip`: the branch is left as it is, the daemon goes on
    // with the head.
    let (code, out, err) = sluice(
        &daemon,
        &["revert", "skip", "--reason", "reworded on purpose"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("skipped"), "{out}");
    let (code, _, err) = sluice(&daemon, &["revert", "skip"]);
    assert_eq!(code, 1, "nothing left to skip");
    assert!(err.contains("no revert is pending"), "{err}");
    until(&state, "start", &d).await;
    let lines = audit(&state);
    let skipped = lines.iter().find(|t| t.event == "revert_skipped").unwrap();
    assert_eq!(skipped.cause, Cause::Operator);
    assert!(skipped.reason.contains("reworded on purpose"));
    assert!(daemon.status().paused.is_none());
    wait_for("shadow again", LIMIT, || {
        (daemon.status().phase == "shadow").then_some(())
    })
    .await;

    // Rolled back again while the remote is away; someone reverts it by
    // hand meanwhile and says so: `sluice revert done`. When the remote is
    // back the daemon pushes nothing.
    let away = repo.bare.with_extension("away");
    std::fs::rename(&repo.bare, &away).unwrap();
    daemon.command(Op::rollback(None)).await.unwrap();
    assert_on_stable(&engines, &a0);
    let by_hand = repo.commit_via(
        &away,
        "Revert by hand",
        &[("policies/base.policy", Some(BASE))],
    );
    let (code, out, err) = sluice(&daemon, &["revert", "done", "--reason", "did it myself"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("made by hand"), "{out}");
    std::fs::rename(&away, &repo.bare).unwrap();
    daemon.trigger_fetch();
    assert_eq!(last_about(&state, &by_hand).await, "unchanged");
    assert!(daemon_reverts(&repo).is_empty(), "{:?}", repo.log());
    let done = audit(&state)
        .into_iter()
        .rfind(|t| t.event == "reverted")
        .unwrap();
    assert_eq!(done.cause, Cause::Operator);
    fixture::assert_consistent(&audit(&state));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_made_by_hand_before_the_daemon_could_push_is_recognised() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _engines, daemon, _s0, c1) = in_shadow(
        tmp.path(),
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    )
    .await;
    let state = tmp.path().join("state");
    // The remote is away when the rollback needs it; meanwhile a person
    // reverts the commit with `git revert` (another tree: a README too).
    let away = repo.bare.with_extension("away");
    std::fs::rename(&repo.bare, &away).unwrap();
    daemon.command(Op::rollback(None)).await.unwrap();
    wait_for("a failed attempt", LIMIT, || {
        (daemon.status().reverts.first()?.attempts >= 1).then_some(())
    })
    .await;
    git(&repo.work, &["fetch", "-q", away.to_str().unwrap(), "main"]);
    git(&repo.work, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    git(&repo.work, &["revert", "--no-edit", &c1]);
    git(
        &repo.work,
        &["push", "-q", away.to_str().unwrap(), "HEAD:main"],
    );
    let by_hand = repo.commit_via(&away, "And a README", &[("README.md", Some("# p\n"))]);
    std::fs::rename(&away, &repo.bare).unwrap();
    daemon.trigger_fetch();
    assert_eq!(last_about(&state, &by_hand).await, "unchanged");
    let reverted = audit(&state)
        .into_iter()
        .rfind(|t| t.event == "reverted")
        .unwrap();
    assert!(
        reverted.reason.contains("reverted on the branch by"),
        "{}",
        reverted.reason
    );
    assert!(daemon_reverts(&repo).is_empty(), "{:?}", repo.log());
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_branch_pauses_and_a_revert_never_re_creates_it() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, engines, daemon, _s0, c1) = in_shadow(
        tmp.path(),
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    )
    .await;
    let state = tmp.path().join("state");
    let a0 = daemon.status().stable.unwrap().artifact;
    git(&repo.bare, &["update-ref", "-d", "refs/heads/main"]);
    daemon.trigger_fetch();
    let paused = wait_for("the pause", LIMIT, || daemon.status().paused).await;
    assert!(paused.reason.contains("deleted"), "{}", paused.reason);
    assert!(paused.hold);
    let s = daemon.status();
    assert!(s.branch_gone.is_some());
    assert!(s.git_error.unwrap().contains("no branch `main`"));
    let (_, out, _) = sluice(&daemon, &["status"]);
    assert!(out.contains("branch GONE"), "{out}");

    // A rollback still reaches every engine; its revert waits for the
    // operator: nothing is pushed, not even tried, while the pause holds.
    daemon.command(Op::rollback(None)).await.unwrap();
    assert_on_stable(&engines, &a0);
    fixture::iterations(&daemon, 5, LIMIT).await;
    assert_eq!(git(&repo.bare, &["for-each-ref", "refs/heads"]), "");
    let r = daemon.status().reverts[0].clone();
    assert_eq!(r.attempts, 0, "{r:?}");
    assert!(r.stuck.is_none(), "not counted as a failure");

    // The branch is back: said so, and still nothing is pushed before the
    // operator resumes.
    git(&repo.bare, &["update-ref", "refs/heads/main", &c1]);
    daemon.trigger_fetch();
    until(&state, "branch_restored", &c1).await;
    fixture::iterations(&daemon, 5, LIMIT).await;
    assert_eq!(repo.log()[0].0, c1);
    let s = daemon.status();
    assert!(s.paused.unwrap().hold);
    assert_eq!(s.reverts.len(), 1);
    daemon.command(Op::Resume).await.unwrap();
    let revert = wait_for("the revert", LIMIT, || {
        let (sha, subject) = repo.log().into_iter().next()?;
        (subject == "Revert \"Block the shell tool\"").then_some(sha)
    })
    .await;
    assert_eq!(last_about(&state, &revert).await, "unchanged");
    // A fetch that ran while the ref was being deleted may fail before the
    // next one sees the branch gone: that is said too, and not what this
    // test is about.
    let events: Vec<String> = events_since(&state, 3)
        .into_iter()
        .filter(|e| !e.starts_with("fetch_"))
        .collect();
    assert_eq!(
        events,
        [
            "branch_deleted",
            "rollback",
            "branch_restored",
            "resume",
            "reverted",
            "unchanged"
        ]
    );
    fixture::assert_consistent(&audit(&state));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_pauses_for_an_operator_instead_of_superseding() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _engines, daemon, s0, c1) = in_shadow(
        tmp.path(),
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    )
    .await;
    let state = tmp.path().join("state");
    let seen = audit(&state).len();
    let forced = repo.force_push(
        &s0,
        "Block search instead",
        &[("policies/search.policy", Some(BAD))],
    );
    daemon.trigger_fetch();
    let paused = wait_for("the pause", LIMIT, || daemon.status().paused).await;
    assert!(paused.reason.contains("rewritten"), "{}", paused.reason);
    let s = daemon.status();
    let rewrite = s.rewrite.unwrap();
    assert_eq!(
        (rewrite.from.as_deref(), rewrite.to.as_str()),
        (Some(c1.as_str()), forced.as_str())
    );
    // The candidate is still c1, in shadow: not superseded.
    assert_eq!(s.candidate.unwrap().commit, c1);
    fixture::iterations(&daemon, 3, LIMIT).await;
    assert_eq!(events_since(&state, seen), ["force_push"]);
    let (_, out, _) = sluice(&daemon, &["status"]);
    assert!(out.contains("history REWRITTEN"), "{out}");

    // The operator resumes: the new head is acted on.
    daemon.command(Op::Resume).await.unwrap();
    until(&state, "supersede", &forced).await;
    let s = wait_for("the status of the supersede", LIMIT, || {
        let s = daemon.status();
        (s.candidate.as_ref()?.commit == forced).then_some(s)
    })
    .await;
    assert!(s.rewrite.is_none() && s.paused.is_none());
    let cand = s.candidate.unwrap();
    assert_eq!(
        (cand.commit.as_str(), cand.base.as_deref()),
        (forced.as_str(), Some(s0.as_str()))
    );
    assert_eq!(cand.commits, std::slice::from_ref(&forced));
    fixture::assert_consistent(&audit(&state));
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_of_a_revert_goes_back_to_stable_without_nesting_reverts() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, engines, daemon, s0, _c1) = in_shadow(
        tmp.path(),
        "Block search",
        &[("policies/search.policy", Some(BAD))],
    )
    .await;
    let state = tmp.path().join("state");
    let a0 = daemon.status().stable.unwrap().artifact;
    // An innocent change lands while the revert waits for the remote: the
    // revert, made on top of it, is itself a new candidate.
    let _d = roll_back_while_the_branch_moves(
        &repo,
        &daemon,
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    )
    .await;
    let revert = wait_for("the revert pushed", LIMIT, || {
        let (sha, subject) = repo.log().into_iter().next()?;
        (subject == "Revert \"Block search\"").then_some(sha)
    })
    .await;
    until(&state, "start", &revert).await;
    wait_for("shadow", LIMIT, || {
        (daemon.status().phase == "shadow").then_some(())
    })
    .await;
    // Rolled back too: the branch goes back to the stable commit's tree
    // (the revert's own change is not brought back), with no
    // `Revert "Revert …"`.
    daemon.command(Op::rollback(None)).await.unwrap();
    assert_on_stable(&engines, &a0);
    let second = wait_for("the second revert", LIMIT, || {
        let (sha, subject) = repo.log().into_iter().next()?;
        subject.starts_with("Revert 3 commits").then_some(sha)
    })
    .await;
    assert_eq!(repo.files(&second), repo.files(&s0));
    assert!(
        repo.log()
            .iter()
            .all(|(_, s)| !s.starts_with("Revert \"Revert")),
        "{:?}",
        repo.log()
    );
    assert_eq!(last_about(&state, &second).await, "unchanged");
    daemon.stop().await.unwrap();
}
