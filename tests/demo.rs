//! `sluice demo` (SPEC §7).
//!
//! - The embedded repository: each of its four commits checks with no
//!   finding and passes its own traces; the bad change differs from the good
//!   one on everyday commands only (what the live gates, not the checks,
//!   must catch); the last moves newco's support mail from observe to
//!   enforce.
//! - The binary end to end, with short stages: exit 0, and the outcome read
//!   back from facts — the kept repository (git2), the daemon's audit log,
//!   the artifacts compiled again from the branch, the engines' routes and
//!   the traffic counters of `summary.json`.
//! - A phase that cannot finish in time: a clear error, exit 1, and
//!   everything stopped.
//!
//! Every wait is bounded; nothing asserts on timing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::api::replay::ReplayReport;
use sluice::demo::{self, DemoCommit};
use sluice::eval::Evaluator;
use sluice::eval::state::MemoryLimitStore;
use sluice::model::ir::DecisionKind;
use sluice::pipeline::check_sources;
use sluice::replay;
use sluice::rollout::machine::Cause;
use sluice::source::SourceFile;

/// The repository after each commit: path → text.
fn snapshots(commits: &[DemoCommit]) -> Vec<BTreeMap<String, String>> {
    let mut tree = BTreeMap::new();
    commits
        .iter()
        .map(|c| {
            for (path, text) in &c.files {
                tree.insert(path.to_string(), text.clone());
            }
            tree.clone()
        })
        .collect()
}

fn evaluator(tree: &BTreeMap<String, String>) -> (Evaluator, ReplayReport) {
    let project = SourceFile::new("sluice.toml", tree["sluice.toml"].clone());
    let policies: Vec<SourceFile> = tree
        .iter()
        .filter(|(p, _)| p.ends_with(".policy"))
        .map(|(p, t)| SourceFile::new(p.as_str(), t.clone()))
        .collect();
    let checked = check_sources(&project, &policies);
    assert!(
        checked.findings.is_empty(),
        "{:#?}",
        checked
            .findings
            .iter()
            .map(|f| (f.code, &f.message))
            .collect::<Vec<_>>()
    );
    let artifact = checked.artifact(None).unwrap().unwrap();
    let ev = Evaluator::new(&artifact).unwrap();
    let mut report = ReplayReport::default();
    for (path, text) in tree.iter().filter(|(p, _)| p.starts_with("traces/")) {
        let (cases, invalid) = replay::parse_traces(&SourceFile::new(path.as_str(), text.clone()));
        assert!(invalid.is_empty(), "{path}");
        replay::run(&ev, &cases, &MemoryLimitStore::new(), &mut report);
    }
    (ev, report)
}

fn decide(ev: &Evaluator, command: &str) -> DecisionKind {
    let req = ev
        .decode(
            &json!({"tool": "shell.exec", "agent": "coding-agent", "org": "acme",
                        "session": "s-1", "args": {"command": command}}),
        )
        .unwrap();
    ev.evaluate(&req, 1_767_225_600, &MemoryLimitStore::new())
        .unwrap()
        .decision()
}

#[test]
fn every_commit_checks_clean_and_only_live_traffic_tells_the_bad_change() {
    let commits = demo::commits(Duration::from_secs(4));
    let trees = snapshots(&commits);
    let mut evs = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        let (ev, report) = evaluator(tree);
        assert!(report.cases >= 18, "commit {i}: {} cases", report.cases);
        let failures: Vec<_> = report.failures().collect();
        assert!(failures.is_empty(), "commit {i}: {failures:#?}");
        evs.push(ev);
    }
    // Each commit adds traces for what it changes.
    let cases = |i: usize, f: &str| trees[i][f].lines().count();
    let shell = "traces/shell.jsonl";
    assert!(cases(1, shell) > cases(0, shell) && cases(2, shell) > cases(1, shell));
    assert!(cases(3, "traces/email.jsonl") > cases(2, "traces/email.jsonl"));

    // The third change moves newco's support mail from observe to enforce:
    // the same requests, answered allow with the policies' decision as
    // `observed`, then decided. Its plan is the first commit's.
    let mail = |org: &str, recipients: usize, body: &str| {
        let to: Vec<String> = (0..recipients).map(|i| format!("c{i}@x.example")).collect();
        json!({"tool": "email.send", "agent": "support-bot", "org": org, "session": "s-1",
               "args": {"recipients": to, "subject": "s", "body": body}})
    };
    let answer = |ev: &Evaluator, req: Value| {
        let req = ev.decode(&req).unwrap();
        let d = ev
            .evaluate(&req, 1_767_225_600, &MemoryLimitStore::new())
            .unwrap();
        (d.decision(), d.observed())
    };
    let bulk = mail("newco", 30, "Dear all");
    let ssn = mail("newco", 1, "Your SSN is 123-45-6789.");
    assert_eq!(
        answer(&evs[2], bulk.clone()),
        (DecisionKind::Allow, Some(DecisionKind::Deny))
    );
    assert_eq!(
        answer(&evs[2], ssn.clone()),
        (DecisionKind::Allow, Some(DecisionKind::Modify))
    );
    assert_eq!(answer(&evs[3], bulk), (DecisionKind::Deny, None));
    assert_eq!(answer(&evs[3], ssn), (DecisionKind::Modify, None));
    // acme's mail was never observed.
    assert_eq!(
        answer(&evs[2], mail("acme", 30, "Dear all")),
        (DecisionKind::Deny, None)
    );
    assert!(trees[0]["sluice.toml"].contains("[governance]"));
    assert!(!trees[3]["sluice.toml"].contains("[governance]"));
    assert!(trees[0]["sluice.toml"].starts_with(trees[3]["sluice.toml"].trim_end()));

    let allow = DecisionKind::Allow;
    let deny = DecisionKind::Deny;
    // The good change: force-pushes only.
    for c in [
        "git push --force origin main",
        "git push --force-with-lease origin x",
    ] {
        assert_eq!(decide(&evs[0], c), allow, "{c}");
        assert_eq!(decide(&evs[1], c), deny, "{c}");
    }
    // The bad change denies `git push -f` as meant, and everyday commands
    // that the traces never show.
    assert_eq!(decide(&evs[1], "git push -f origin main"), allow);
    assert_eq!(decide(&evs[2], "git push -f origin main"), deny);
    for c in [
        "tail -f logs/app.log",
        "cargo test --features postgres",
        "npm run lint -- --fix",
        "git log --format=oneline -n 5",
    ] {
        assert_eq!(decide(&evs[1], c), allow, "{c}");
        assert_eq!(decide(&evs[2], c), deny, "{c}");
    }
    for c in [
        "git status",
        "git push origin main",
        "cargo build --release",
    ] {
        assert_eq!(decide(&evs[1], c), allow, "{c}");
        assert_eq!(decide(&evs[2], c), allow, "{c}");
    }
}

#[test]
fn the_stage_duration_replaces_every_live_stage_s_durations() {
    for (d, min, max) in [
        (Duration::from_millis(1500), 1500, 120_000),
        (Duration::from_secs(60), 60_000, 240_000),
    ] {
        let commits = demo::commits(d);
        let toml = &commits[0]
            .files
            .iter()
            .find(|(p, _)| *p == "sluice.toml")
            .unwrap()
            .1;
        let project =
            sluice::project::parse(&SourceFile::new("sluice.toml", toml.clone())).unwrap();
        let plan = project.rollout.unwrap();
        let live: Vec<_> = plan
            .stages
            .iter()
            .filter(|s| ["shadow", "canary", "broad"].contains(&s.name.as_str()))
            .collect();
        assert_eq!(live.len(), 3);
        for s in live {
            assert_eq!(
                s.min_duration,
                Some(Duration::from_millis(min)),
                "{}",
                s.name
            );
            assert_eq!(
                s.max_duration,
                Some(Duration::from_millis(max)),
                "{}",
                s.name
            );
        }
    }
}

/// Runs the binary, killing it after `limit`; (exit code, stdout, stderr).
fn run_demo(args: &[&str], limit: Duration) -> (i32, String, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let (out, err) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the demo did not end within {limit:?}; output so far:\n{}\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    )
}

/// The artifact hash of the branch at `rev`, compiled again here.
fn artifact_at(bare: &Path, rev: &str) -> String {
    let repo = sluice::tree::git::GitRepo::open(bare).unwrap();
    let files = repo.load(rev).unwrap().sources;
    let checked = check_sources(&files.project, &files.policies);
    checked.artifact(None).unwrap().unwrap().hash
}

#[test]
fn the_demo_rolls_out_the_good_change_and_reverts_the_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept");
    let (code, out, err) = run_demo(
        &[
            "--keep",
            dir.to_str().unwrap(),
            "--stage-duration",
            "1s",
            "--timeout",
            "4m",
        ],
        Duration::from_secs(20 * 60),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");

    // Progress was printed line by line (standard output is not a terminal).
    for phase in [
        "▶ Set-up",
        "▶ Agent traffic",
        "▶ Commit 1, a good change",
        "▶ Commit 2, a bad change",
        "▶ Commit 3, from observe to enforce",
        "▶ Shut-down",
        "Summary",
    ] {
        assert!(out.contains(phase), "{phase} missing:\n{out}");
    }
    assert!(out.contains("ROLLBACK at stage shadow"), "{out}");
    // The three engines count limits and keep approvals in one state.
    assert!(
        out.contains("the engines share one state (in this process)"),
        "{out}"
    );

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let sha = |k: &str| summary[k]["sha"].as_str().unwrap().to_string();
    let (c0, c1, c2, c3) = (sha("initial"), sha("good"), sha("bad"), sha("enforce"));

    // The branch, read with git2: the first three commits, the revert, and
    // the enforce change on top.
    let bare = dir.join("policies.git");
    let repo = git2::Repository::open_bare(&bare).unwrap();
    let head = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut chain = Vec::new();
    let mut c = Some(head.clone());
    while let Some(commit) = c {
        chain.push(commit.id().to_string());
        c = commit.parents().next();
    }
    assert_eq!(chain[0], c3);
    let revert = chain[1].clone();
    assert_eq!(
        chain[1..],
        [revert.clone(), c2.clone(), c1.clone(), c0.clone()]
    );
    let message = repo
        .find_commit(git2::Oid::from_str(&revert).unwrap())
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("Revert \"shell: catch the short form"),
        "{message}"
    );
    assert!(
        message.contains(&format!("This reverts commit {c2}.")),
        "{message}"
    );
    assert!(message.contains("stage `shadow`"), "{message}");
    // The revert brings the tree back to the good change's.
    let tree_of = |sha: &str| {
        repo.find_commit(git2::Oid::from_str(sha).unwrap())
            .unwrap()
            .tree_id()
    };
    assert_eq!(tree_of(&revert), tree_of(&c1));

    // The audit log: install, the good change through every stage, the bad
    // change rolled back by a trigger, the revert taken as unchanged.
    let audit =
        sluice::reconcile::store::read_audit(&dir.join("state").join("audit.jsonl")).unwrap();
    let events = |commit: &str| -> Vec<String> {
        audit
            .iter()
            .filter(|t| t.commit.as_deref() == Some(commit))
            .map(|t| format!("{}:{}>{}", t.event, t.from, t.to))
            .collect()
    };
    assert_eq!(events(&c0), ["install:empty>stable"]);
    let every_stage = [
        "start:stable>replay",
        "advance:replay>shadow",
        "advance:shadow>canary",
        "advance:canary>broad",
        "advance:broad>full",
        "complete:full>stable",
    ];
    assert_eq!(events(&c1), every_stage);
    // Enforcing newco is rolled out like any other change.
    assert_eq!(events(&c3), every_stage);
    let bad = events(&c2);
    assert_eq!(bad[..2], ["start:stable>replay", "advance:replay>shadow"]);
    assert_eq!(
        bad[2..],
        ["rollback:shadow>stable", "reverted:stable>stable"]
    );
    assert_eq!(events(&revert), ["unchanged:stable>stable"]);
    let rollback = audit.iter().find(|t| t.event == "rollback").unwrap();
    assert_eq!(rollback.cause, Cause::Trigger);
    let trigger = rollback.reason.split_once(": ").unwrap().1;
    assert!(
        message.contains(&format!("Trigger: {trigger}")),
        "{message}"
    );
    assert!(trigger.contains("past"), "{trigger}");
    assert_eq!(summary["bad"]["trigger"], trigger);

    // The revert brought the good change's artifact back; every engine ends
    // on the enforce change's, compiled again here from the branch, with no
    // candidate.
    let good = artifact_at(&bare, &c1);
    assert_eq!(artifact_at(&bare, &revert), good);
    assert_ne!(artifact_at(&bare, &c2), good);
    assert_eq!(summary["good"]["artifact"], good.as_str());
    let enforced = artifact_at(&bare, &c3);
    assert_ne!(enforced, good);
    assert_eq!(summary["enforce"]["artifact"], enforced.as_str());
    let engines = summary["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 3);
    for e in engines {
        assert_eq!(e["stable"], enforced.as_str(), "{e}");
        assert!(e["candidate"].is_null(), "{e}");
        assert!(e["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    }

    // Traffic was served throughout, and no request failed.
    let t = &summary["traffic"];
    assert!(t["requests"].as_u64().unwrap() > 1000, "{t}");
    assert_eq!(t["failed"], 0, "{}", summary["traffic_errors"]);
    let decided: u64 = ["allow", "modify", "require_approval", "deny"]
        .iter()
        .map(|k| t[*k].as_u64().unwrap())
        .sum();
    assert_eq!(decided, t["requests"].as_u64().unwrap());
    assert!(t["deny"].as_u64().unwrap() > 0 && t["modify"].as_u64().unwrap() > 0);

    // Before the enforce change, newco's support mail was answered allow
    // with what enforcement would do; the shadow stage of the enforce change
    // saw the candidate decide those requests otherwise, and let it through.
    let o = &summary["observed_before_enforce"];
    assert!(o["observed"].as_u64().unwrap() > 0, "{o}");
    assert!(o["observed_deny"].as_u64().unwrap() > 0, "{o}");
    assert!(o["observed_modify"].as_u64().unwrap() > 0, "{o}");
    let shadow = audit
        .iter()
        .find(|t| t.commit.as_deref() == Some(c3.as_str()) && t.from == "shadow")
        .unwrap();
    let divergence = shadow
        .figures
        .gates
        .iter()
        .flatten()
        .find(|g| g.gate.as_str() == "max_divergence")
        .unwrap_or_else(|| panic!("{:#?}", shadow.figures));
    assert!(divergence.estimate > 0.0, "{divergence:?}");
    assert!(
        out.contains("before it, newco's support mail was observed"),
        "{out}"
    );

    // The kept folder has a checkout of the branch as it ends.
    let shell = std::fs::read_to_string(dir.join("policies/policies/shell.policy")).unwrap();
    assert!(shell.contains("version 1.1.0"), "{shell}");
}

#[test]
fn a_phase_that_cannot_finish_in_time_fails_clearly_and_stops_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept");
    let (code, out, err) = run_demo(
        &[
            "--keep",
            dir.to_str().unwrap(),
            "--stage-duration",
            "1h",
            "--timeout",
            "20s",
            "--quiet",
        ],
        Duration::from_secs(10 * 60),
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.is_empty(),
        "--quiet prints nothing but the summary:\n{out}"
    );
    assert!(
        err.contains(
            "the demo did not go as expected: rolling out the good change: not done within 20s"
        ),
        "{err}"
    );
    assert!(err.contains("in stage shadow"), "{err}");
    // The daemon stopped with the candidate still in shadow.
    let audit =
        sluice::reconcile::store::read_audit(&dir.join("state").join("audit.jsonl")).unwrap();
    assert_eq!(audit.last().unwrap().to, "shadow");
}

#[test]
fn keep_refuses_a_folder_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let (code, _, err) = run_demo(
        &["--keep", tmp.path().to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn bad_durations_are_refused_before_anything_starts() {
    for (args, says) in [
        (&["--stage-duration", "abc"][..], "invalid value 'abc'"),
        (
            &["--stage-duration", "0s"][..],
            "--stage-duration must be above zero",
        ),
        (&["--timeout", "0s"][..], "--timeout must be above zero"),
        (
            &["--state-backend", "mysql://db"][..],
            "--state-backend must be `memory`, `redis://",
        ),
    ] {
        let (code, out, err) = run_demo(args, Duration::from_secs(60));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} started something:\n{out}");
    }
}
