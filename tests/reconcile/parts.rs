//! The daemon's parts, each on its own: the durable store, the fleet's
//! figures, a commit's build, the git mirror.

use serde_json::{Value, json};
use sluice::api::route::{Cohort, Mode, RouteSpec};
use sluice::api::stats::{CohortFigures, EngineStats, StatsRoute};
use sluice::reconcile::build;
use sluice::reconcile::git::{Mirror, revert_message};
use sluice::reconcile::lock::FolderLock;
use sluice::reconcile::observe;
use sluice::reconcile::store::{Store, read_audit};
use sluice::rollout::machine::{Cause, Figures, PendingRevert, RevertOutcome, State, Transition};

use super::fixture::{self, BAD, BROKEN, GOOD, Repo, git};

fn transition(seq: u64, from: &str, to: &str) -> Transition {
    Transition {
        seq,
        time: String::new(),
        time_ms: 0,
        event: "advance".into(),
        from: from.into(),
        to: to.into(),
        commit: None,
        artifact: None,
        cause: Cause::Daemon,
        reason: String::new(),
        by: None,
        figures: Figures::default(),
    }
}

#[test]
fn the_state_is_written_atomically_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = Store::open(dir.path()).unwrap();
    assert_eq!(state, State::default());
    let s = State {
        seq: 7,
        head: Some("abc".into()),
        ..State::default()
    };
    store.save_state(&s).unwrap();
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let (_, back) = Store::open(dir.path()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn the_audit_log_gets_the_line_a_crash_lost_and_loses_a_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    store.append_audit(&transition(1, "a", "b")).unwrap();
    store.append_audit(&transition(2, "b", "c")).unwrap();
    // The state of transition 3 was persisted; its line was torn half-way.
    let s = State {
        seq: 3,
        last: Some(transition(3, "c", "d")),
        ..State::default()
    };
    store.save_state(&s).unwrap();
    let mut text = std::fs::read_to_string(store.audit_path()).unwrap();
    text.push_str("{\"seq\": 3, \"ti");
    std::fs::write(store.audit_path(), text).unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let lines = store.read_audit().unwrap();
    assert_eq!(lines.iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 2, 3]);
    fixture::assert_consistent(&lines);
    // Opening again adds nothing.
    let (store, _) = Store::open(dir.path()).unwrap();
    assert_eq!(store.read_audit().unwrap().len(), 3);
    assert_eq!(
        read_audit(&dir.path().join("nothing.jsonl")).unwrap(),
        vec![]
    );
}

#[test]
fn artifacts_are_stored_by_hash_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    store.save_artifact("ab12", b"{}").unwrap();
    assert_eq!(store.load_artifact("ab12").unwrap(), b"{}");
    assert!(store.save_artifact("../etc/passwd", b"x").is_err());
}

fn cohort(artifact: &str, name: &str, requests: u64, deny: u64, p99: f64) -> CohortFigures {
    serde_json::from_value(json!({
        "artifact": artifact, "cohort": name, "stage": "canary",
        "requests": requests, "errors": 1,
        "decisions": {"allow": requests - deny, "deny": deny},
        "latency_ms": {"p50": 0.1, "p95": 0.2, "p99": p99, "max": 9.0},
        "shadow": if name == "shadow" { json!({"compared": requests, "diverged": deny}) } else { Value::Null },
    }))
    .unwrap()
}

fn stats(stage: &str, cohorts: Vec<CohortFigures>) -> EngineStats {
    EngineStats {
        route: Some(StatsRoute {
            stable: "s".into(),
            candidate: Some("c".into()),
            stage: Some(stage.into()),
            ..StatsRoute::default()
        }),
        cohorts,
        ..EngineStats::default()
    }
}

#[test]
fn the_fleet_figures_are_summed() {
    let mut route = RouteSpec::stable("s");
    route.candidate = Some("c".into());
    route.mode = Some(Mode::Split);
    route.percent = Some(5.0);
    route.stage = Some("canary".into());
    let a = stats(
        "canary",
        vec![
            cohort("s", "stable", 1000, 10, 1.0),
            cohort("c", "candidate", 100, 5, 2.0),
        ],
    );
    let b = stats(
        "canary",
        vec![
            cohort("s", "stable", 3000, 30, 3.0),
            cohort("c", "candidate", 300, 6, 4.0),
        ],
    );
    assert!(observe::stats_match(&a, &route));
    let obs = observe::sum(&route, &[&a, &b]);
    assert_eq!(
        (
            obs.candidate.requests,
            obs.candidate.errors,
            obs.candidate.denies
        ),
        (400, 2, 11)
    );
    assert_eq!((obs.stable.requests, obs.stable.denies), (4000, 40));
    // p99 without histograms: the weighted mean, bounded by the engines'.
    let p = obs.candidate.p99_ms.unwrap();
    assert!((p.estimate - 3.5).abs() < 1e-9, "{p:?}");
    assert_eq!((p.lo, p.hi), (2.0, 4.0));
    // Shadow figures come from the shadow cohort.
    route.mode = Some(Mode::Shadow);
    let sh = stats(
        "canary",
        vec![
            cohort("s", "stable", 500, 0, 1.0),
            cohort("c", "shadow", 500, 25, 1.0),
        ],
    );
    let obs = observe::sum(&route, &[&sh]);
    assert_eq!((obs.compared, obs.diverged), (500, 25));
    // Figures of another stage are not this route's.
    route.stage = Some("broad".into());
    assert!(!observe::stats_match(&a, &route));
}

#[test]
fn histograms_give_p99_bounds_across_engines() {
    let mut route = RouteSpec::stable("s");
    route.candidate = Some("c".into());
    route.mode = Some(Mode::Split);
    route.stage = Some("canary".into());
    let mut c1 = cohort("c", "candidate", 1000, 0, 0.0);
    let mut c2 = cohort("c", "candidate", 1000, 0, 0.0);
    // 2000 samples: 1950 at 1 ms, 30 at 5 ms, 20 at 50 ms.
    c1.histogram = Some(vec![(1.0, 975), (5.0, 15), (50.0, 10)]);
    c2.histogram = Some(vec![(1.0, 975), (5.0, 15), (50.0, 10)]);
    let a = stats("canary", vec![c1]);
    let b = stats("canary", vec![c2]);
    let p = observe::sum(&route, &[&a, &b]).candidate.p99_ms.unwrap();
    // Rank 1980 is the last 5 ms sample; the bounds reach one bucket
    // either side.
    assert_eq!(p.estimate, 5.0);
    assert!(p.lo <= 5.0 && p.hi >= 5.0, "{p:?}");
}

fn files_of(repo: &Repo, dir: &std::path::Path, sha: &str) -> sluice::reconcile::git::CommitFiles {
    let m = Mirror::open(dir, &repo.bare.to_string_lossy(), "main").unwrap();
    m.fetch().unwrap();
    m.read_commit(sha).unwrap()
}

#[test]
fn a_commit_is_read_from_its_tree_like_a_working_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let sha = repo.commit(
        "layout",
        &[
            ("policies/deep/shell.policy", Some(GOOD)),
            (".hidden/x.policy", Some(BROKEN)),
            ("target/x.policy", Some(BROKEN)),
            ("nested/sluice.toml", Some(fixture::TOML)),
            ("nested/x.policy", Some(BROKEN)),
        ],
    );
    let files = files_of(&repo, &tmp.path().join("mirror"), &sha);
    let sources = files.sources.as_ref().unwrap();
    let names: Vec<&str> = sources.policies.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["policies/base.policy", "policies/deep/shell.policy"]
    );
    assert_eq!(sources.traces.len(), 1);
    assert_eq!(files.summary, "layout");
    let built = build::build(&files, None, None).unwrap();
    assert_eq!(built.artifact.source_commit.as_deref(), Some(sha.as_str()));
    assert_eq!(built.artifact.hash, fixture::artifact_of(&repo, &sha));
    assert_eq!((built.replay.cases, built.replay.passed), (2, 2));
    assert!(built.plan.is_some());
}

#[test]
fn a_commit_with_errors_is_refused_with_its_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let sha = repo.commit("broken", &[("policies/broken.policy", Some(BROKEN))]);
    let files = files_of(&repo, &tmp.path().join("mirror"), &sha);
    let why = build::build(&files, None, None).unwrap_err();
    assert!(why.contains("type::unknown_field"), "{why}");
    assert!(why.contains("policies/broken.policy:3"), "{why}");
    let sha = repo.commit(
        "no project",
        &[("sluice.toml", None), ("policies/broken.policy", None)],
    );
    let files = files_of(&repo, &tmp.path().join("mirror"), &sha);
    assert!(
        build::build(&files, None, None)
            .unwrap_err()
            .contains("sluice.toml")
    );
}

#[test]
fn a_decision_log_is_replayed_and_flips_reported_by_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let sha = repo.commit("bad", &[("policies/search.policy", Some(BAD))]);
    let files = files_of(&repo, &tmp.path().join("mirror"), &sha);
    let line = |tool: &str, decision: &str| {
        json!({"kind": "evaluation", "time": "2026-01-01T00:00:00.000Z", "decision": decision,
               "reasons": [], "request": {"tool": tool, "agent": "a", "session": "s", "args": {}}})
        .to_string()
    };
    let log = [
        line("search", "allow"),
        line("search", "allow"),
        line("email.send", "allow"),
        json!({"kind": "route", "time": "2026-01-01T00:00:00.000Z"}).to_string(),
        line("email.send", "deny"),
    ]
    .join("\n");
    let built = build::build(&files, Some(&log), None).unwrap();
    let notes = serde_json::to_value(&built.notes).unwrap();
    let report = &notes["decision_log"];
    assert_eq!(report["evaluated"], 4);
    assert_eq!(report["flipped"], 3);
    assert_eq!(report["skipped"], 1);
    assert_eq!(
        report["flips"],
        json!([
            {"rule": "search.no_search", "from": "allow", "to": "deny", "count": 2},
            {"rule": "(default)", "from": "deny", "to": "allow", "count": 1},
        ])
    );
}

fn pending(commit: &str) -> PendingRevert {
    PendingRevert {
        commit: commit.into(),
        summary: String::new(),
        artifact: "abc".into(),
        stage: "canary".into(),
        cause: Cause::Trigger,
        trigger: "trigger deny_rate_delta = 0.4 past 0.3".into(),
        figures: "candidate: 100 requests".into(),
        since_ms: 0,
        base: None,
        commits: Vec::new(),
        stuck: None,
    }
}

/// The check the daemon makes of a revert before it pushes it.
fn checked(files: &sluice::reconcile::git::CommitFiles) -> Result<(), String> {
    build::build(files, None, None).map(|_| ())
}

#[test]
fn the_mirror_reverts_on_top_of_the_current_head_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let bad = repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
    // The branch moved on after the bad commit.
    let later = repo.commit("Add shell policy", &[("policies/shell.policy", Some(GOOD))]);
    let m = Mirror::open(
        &tmp.path().join("mirror"),
        &repo.bare.to_string_lossy(),
        "main",
    )
    .unwrap();
    let out = m.revert(&pending(&bad), checked).unwrap();
    let RevertOutcome::Pushed { revert } = out else {
        panic!("{out:?}")
    };
    let log = repo.log();
    assert_eq!(
        log[0],
        (revert.clone(), "Revert \"Block search\"".to_string())
    );
    assert_eq!(log[1].0, later);
    let msg = repo.message(&revert);
    assert!(
        msg.contains(&format!("This reverts commit {bad}.")),
        "{msg}"
    );
    assert!(msg.contains("stage `canary`"), "{msg}");
    assert!(msg.contains("Trigger: trigger deny_rate_delta"), "{msg}");
    assert!(msg.contains("candidate: 100 requests"), "{msg}");
    // The revert keeps the later change and removes the bad one.
    let tree = git(&repo.bare, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(tree.contains("policies/shell.policy") && !tree.contains("search.policy"));
    // A second attempt (an answer lost in a crash) pushes nothing.
    assert!(matches!(
        m.revert(&pending(&bad), checked).unwrap(),
        RevertOutcome::NotNeeded { .. }
    ));
    assert_eq!(repo.log().len(), log.len());
    assert_eq!(
        revert_message(&[(bad.clone(), "x".into())], &pending(&bad))
            .lines()
            .next(),
        Some("Revert \"x\"")
    );
}

#[test]
fn the_mirror_repacks_and_keeps_every_commit_the_state_names() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let mut m = Mirror::open(
        &tmp.path().join("mirror"),
        &repo.bare.to_string_lossy(),
        "main",
    )
    .unwrap();
    m.fetch().unwrap();
    // A commit the branch then loses to a force-push: the state may still
    // name it (a quarantined candidate, say).
    let lost = repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
    m.fetch().unwrap();
    git(&repo.work, &["reset", "-q", "--hard", "HEAD~1"]);
    git(
        &repo.work,
        &["commit", "-q", "--allow-empty", "-m", "Rewritten"],
    );
    git(
        &repo.work,
        &[
            "push",
            "-q",
            "--force",
            repo.bare.to_str().unwrap(),
            "HEAD:main",
        ],
    );
    // One pack per fetch.
    for i in 0..sluice::reconcile::git::MAX_PACKS {
        repo.commit(
            &format!("Note {i}"),
            &[("NOTES.md", Some(&format!("{i}\n")))],
        );
        m.fetch().unwrap();
    }
    let before = m.pack_count();
    assert!(before > sluice::reconcile::git::MAX_PACKS, "{before} packs");
    assert!(m.repack_if_needed(std::slice::from_ref(&lost)).unwrap());
    assert_eq!(m.pack_count(), 1);
    assert!(!m.repack_if_needed(&[]).unwrap(), "one pack: nothing to do");
    // Everything still reads: the head, the commit off the branch, and a
    // revert is made and pushed on top of the head.
    let head = m.head().unwrap();
    assert!(m.read_commit(&head).unwrap().sources.is_ok());
    let files = m.read_commit(&lost).unwrap();
    assert!(
        files
            .sources
            .unwrap()
            .policies
            .iter()
            .any(|p| p.name == "policies/search.policy")
    );
    let bad = repo.commit(
        "Block search again",
        &[("policies/search.policy", Some(BAD))],
    );
    assert!(matches!(
        m.revert(&pending(&bad), checked).unwrap(),
        RevertOutcome::Pushed { .. }
    ));
    assert_eq!(repo.log()[0].1, "Revert \"Block search again\"");
}

#[test]
fn a_revert_without_the_remote_fails_and_lands_once_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let bad = repo.commit("Block search", &[("policies/search.policy", Some(BAD))]);
    let m = Mirror::open(
        &tmp.path().join("mirror"),
        &repo.bare.to_string_lossy(),
        "main",
    )
    .unwrap();
    m.fetch().unwrap();
    let away = tmp.path().join("away.git");
    std::fs::rename(&repo.bare, &away).unwrap();
    assert!(m.revert(&pending(&bad), checked).is_err());
    std::fs::rename(&away, &repo.bare).unwrap();
    assert!(matches!(
        m.revert(&pending(&bad), checked).unwrap(),
        RevertOutcome::Pushed { .. }
    ));
}

const LIMITS: &str = r#"policy limits version 1.0.0 {
  limit per_agent {
    when tool == "search"
    max 100 per 1h by agent
    exceed deny RATE_LIMITED "Too many searches"
  }
}
"#;

#[test]
fn a_change_with_state_errors_against_the_live_engines_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c1 = repo.commit(
        "Limit searches",
        &[("policies/limits.policy", Some(LIMITS))],
    );
    let lowered = LIMITS.replace("max 100", "max 10");
    let c2 = repo.commit(
        "Lower the limit",
        &[("policies/limits.policy", Some(&lowered))],
    );
    let mirror = tmp.path().join("mirror");
    let base = build::build(&files_of(&repo, &mirror, &c1), None, None).unwrap();
    let base_set = sluice::model::ir::PolicySet {
        policies: base.artifact.policies.clone(),
    };
    let now = 1_767_225_600 + 100;
    let state: sluice::api::state::LiveState = serde_json::from_value(json!({
        "time": now,
        "counters": [{"limit": "limits.per_agent", "key": "[\"a\"]",
                      "window": {"start": now - now % 3600, "secs": 3600}, "count": 50}],
    }))
    .unwrap();
    let engines = [("http://e1".to_string(), state)];
    let live = build::Live {
        engines: &engines,
        base: Some(&base_set),
    };
    let why = build::build(&files_of(&repo, &mirror, &c2), None, Some(live)).unwrap_err();
    assert!(why.contains("http://e1"), "{why}");
    assert!(why.contains("state::limit_decrease"), "{why}");
    // Declaring how counters migrate makes it acceptable.
    let declared = lowered.replace(
        "exceed deny RATE_LIMITED \"Too many searches\"",
        "exceed deny RATE_LIMITED \"Too many searches\"\n    on_decrease next_window",
    );
    let c3 = repo.commit(
        "Lower the limit, next window",
        &[("policies/limits.policy", Some(&declared))],
    );
    let built = build::build(&files_of(&repo, &mirror, &c3), None, Some(live)).unwrap();
    let notes = serde_json::to_value(&built.notes).unwrap();
    assert_eq!(notes["state_checks"]["engines"], 1);
}

#[test]
fn a_state_engines_share_is_checked_once_under_all_their_names() {
    use sluice::review::build::distinct_states;
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c1 = repo.commit(
        "Limit searches",
        &[("policies/limits.policy", Some(LIMITS))],
    );
    let lowered = LIMITS.replace("max 100", "max 10");
    let c2 = repo.commit(
        "Lower the limit",
        &[("policies/limits.policy", Some(&lowered))],
    );
    let mirror = tmp.path().join("mirror");
    let base = build::build(&files_of(&repo, &mirror, &c1), None, None).unwrap();
    let base_set = sluice::model::ir::PolicySet {
        policies: base.artifact.policies.clone(),
    };
    let now = 1_767_225_600 + 100;
    let state = |count: u64, shared: Option<&str>| -> sluice::api::state::LiveState {
        serde_json::from_value(json!({
            "time": now,
            "counters": [{"limit": "limits.per_agent", "key": "[\"a\"]",
                          "window": {"start": now - now % 3600, "secs": 3600}, "count": count}],
            "shared": shared,
        }))
        .unwrap()
    };
    let shared = "redis://10.0.0.5:6379, prefix fleet";
    let engines = distinct_states(vec![
        ("http://e1".to_string(), state(50, Some(shared))),
        ("http://e2".to_string(), state(50, Some(shared))),
        ("http://e3".to_string(), state(5, None)),
        ("http://e4".to_string(), state(50, Some(shared))),
    ]);
    let names: Vec<&str> = engines.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "http://e1 (state `redis://10.0.0.5:6379, prefix fleet`, shared with http://e2, http://e4)",
            "http://e3"
        ]
    );
    let live = build::Live {
        engines: &engines,
        base: Some(&base_set),
    };
    let why = build::build(&files_of(&repo, &mirror, &c2), None, Some(live)).unwrap_err();
    assert!(why.contains("http://e1 (state `redis://"), "{why}");
    assert!(why.contains("shared with http://e2, http://e4"), "{why}");
    // Engines of their own are each theirs.
    let own = distinct_states(vec![
        ("http://e1".to_string(), state(1, None)),
        ("http://e2".to_string(), state(1, None)),
    ]);
    assert_eq!(own.len(), 2);
}

fn artifact(policies: &[(&str, &str)]) -> sluice::compile::artifact::Artifact {
    use sluice::source::SourceFile;
    let files: Vec<SourceFile> = policies
        .iter()
        .map(|(n, t)| SourceFile::new(*n, *t))
        .collect();
    let checked =
        sluice::pipeline::check_sources(&SourceFile::new("sluice.toml", fixture::TOML), &files);
    checked.artifact(None).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_stats_read_as_the_gates_need_them() {
    use sluice::engine::backend::MemoryBackend;
    use sluice::engine::decision_log::DecisionLog;
    use sluice::engine::server::{Engine, EngineConfig};
    use std::sync::Arc;

    let engine = Engine::start(
        EngineConfig::new(fixture::TOKEN),
        Arc::new(MemoryBackend::new()),
        DecisionLog::disabled(),
    )
    .unwrap();
    let stable = artifact(&[("policies/base.policy", fixture::BASE)]);
    let cand = artifact(&[
        ("policies/base.policy", fixture::BASE),
        ("policies/search.policy", BAD),
    ]);
    for a in [&stable, &cand] {
        engine
            .put_artifact(&a.hash, &a.to_bytes().unwrap())
            .unwrap();
    }
    let mut route = RouteSpec::stable(stable.hash.clone());
    route.candidate = Some(cand.hash.clone());
    route.mode = Some(Mode::Shadow);
    route.percent = Some(100.0);
    route.stage = Some("shadow".into());
    engine.set_route(route.clone()).await.unwrap();
    for i in 0..30 {
        let tool = ["search", "email.send", "payments.transfer"][i % 3];
        let body = json!({"tool": tool, "agent": "a", "session": format!("s-{i}"), "args": {}});
        engine
            .evaluate(body.to_string().as_bytes(), None, None)
            .await
            .unwrap();
    }
    // Shadow evaluations run off the response path: wait for them.
    let stats = fixture::wait_for(
        "the shadow evaluations",
        std::time::Duration::from_secs(5),
        || {
            // Through JSON, as the daemon reads it.
            let s: EngineStats =
                serde_json::from_slice(&serde_json::to_vec(&engine.stats()).unwrap()).unwrap();
            let done = s
                .cohorts
                .iter()
                .any(|c| c.shadow.as_ref().is_some_and(|sh| sh.compared == 30));
            done.then_some(s)
        },
    )
    .await;
    assert!(observe::stats_match(&stats, &route));
    let obs = observe::sum(&route, &[&stats, &stats]);
    assert_eq!((obs.stable.requests, obs.stable.denies), (60, 0));
    assert_eq!((obs.candidate.requests, obs.candidate.denies), (60, 20));
    assert_eq!((obs.compared, obs.diverged), (60, 20));
    // Every cohort has its latency buckets: ascending bounds, counts adding
    // up to its requests, so the fleet's p99 is read from merged buckets
    // (the two engines here give the same p99 as one).
    for c in &stats.cohorts {
        let h = c.histogram.as_ref().expect("latency buckets");
        assert_eq!(h.iter().map(|b| b.1).sum::<u64>(), c.requests, "{c:?}");
        assert!(h.windows(2).all(|w| w[0].0 < w[1].0), "{h:?}");
        assert!(h.iter().all(|b| b.1 > 0), "{h:?}");
    }
    let one = observe::sum(&route, &[&stats]);
    let p99 = obs.candidate.p99_ms.unwrap();
    assert_eq!(Some(p99.estimate), one.candidate.p99_ms.map(|q| q.estimate));
    assert!(p99.lo <= p99.estimate && p99.estimate <= p99.hi, "{p99:?}");
    let cand = stats
        .cohorts
        .iter()
        .find(|c| c.cohort == Cohort::Shadow)
        .unwrap();
    let top = cand.histogram.as_ref().unwrap().last().unwrap().0;
    assert!(p99.hi <= top, "{p99:?} above the highest bucket {top}");
    // The route the engine reports is the one set, as the daemon compares it.
    let now = engine.route().unwrap().spec.clone();
    assert!(sluice::rollout::machine::same_route(&now, &route));
}

#[test]
fn one_daemon_per_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = Store::open(dir.path()).unwrap();
    let held = FolderLock::acquire(dir.path()).unwrap();
    // Claimed again by the same process (a restart in-process): fine.
    drop(held);
    FolderLock::acquire(dir.path()).unwrap();
    // A pid file left behind naming live processes that are no daemon
    // (init; this test): the lock is free, so the folder is too.
    let pidfile = dir.path().join("daemon.pid");
    for pid in [1, std::process::id()] {
        std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
        drop(FolderLock::acquire(dir.path()).unwrap());
    }
    // A repository to watch (a daemon whose repository cannot be reached
    // does not start at all).
    let origin = tempfile::tempdir().unwrap();
    super::fixture::git(origin.path(), &["init", "-q", "--bare", "-b", "main"]);
    let daemon = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["reconcile", "--repo"])
            .arg(origin.path())
            .arg("--state-dir")
            .arg(dir.path())
            .args([
                "--engine",
                "http://127.0.0.1:9",
                "--admin-token",
                super::fixture::TOKEN,
            ])
            .args(["--listen", "127.0.0.1:0", "--interval", "1s"])
            .stdout(std::process::Stdio::null());
        cmd
    };
    // The daemon binary starts on that folder, the pid file naming this
    // live test process; then it holds the folder.
    std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
    let mut other = daemon()
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = other.id().to_string();
    let start = std::time::Instant::now();
    let holder = || std::fs::read_to_string(dir.path().join("daemon.pid")).unwrap_or_default();
    while holder().trim() != pid {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the other daemon never took the folder"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = FolderLock::acquire(dir.path()).unwrap_err().to_string();
    assert!(err.contains("in use by another daemon"), "{err}");
    assert!(err.contains(&format!("(process {pid})")), "{err}");
    // A second daemon binary on the folder stops at once and says why.
    let second = daemon().output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another daemon"), "{stderr}");
    assert!(stderr.contains(&format!("(process {pid})")), "{stderr}");
    other.kill().unwrap();
    other.wait().unwrap();
    // Once it is gone (killed, never cleaned up), the folder is free.
    FolderLock::acquire(dir.path()).unwrap();
}

/// Audit lines and a state as the daemon wrote them before their figures
/// were typed (an interval with no upper end written as `null`): they read,
/// and write back the same.
#[test]
fn audit_lines_and_state_of_earlier_daemons_read_and_write_back_the_same() {
    let line = |seq: u64, event: &str, figures: Option<Value>| {
        let mut v = json!({
            "seq": seq, "time": "2026-01-01T00:00:01.000Z", "time_ms": 1_767_225_601_000u64,
            "event": event, "from": "shadow", "to": "stable", "commit": "c1", "artifact": "bbb",
            "cause": "trigger", "reason": "why",
        });
        if let Some(f) = figures {
            v["figures"] = f;
        }
        v
    };
    let replay = json!({"cases": 2, "passed": 2, "catastrophic": 0, "false_positives": 0,
                        "mismatches": 0, "bad_requests": 0, "expected_permissive": 1});
    let notes = json!({
        "trace_files": 1,
        "state_checks": {"engines": 2, "warnings": ["http://e1: state::x a warning"]},
        "decision_log": {"evaluated": 4, "flipped": 3, "skipped": 1, "flips": [
            {"rule": "search.no_search", "from": "allow", "to": "deny", "count": 2}]},
    });
    let mut start = notes.clone();
    start["replay"] = replay.clone();
    let decision = json!({
        "gates": [{"gate": "max_divergence", "limit": 0.05, "estimate": 0.2,
                   "interval": {"lo": 0.18, "hi": 0.22}, "verdict": "fail"}],
        "triggers": [{"gate": "latency_p99_ms", "limit": 50.0, "estimate": 0.0,
                      "interval": {"lo": 0.0, "hi": null}, "verdict": "wait"}],
        "samples_left": 0,
        "time_left_ms": 120,
        "observed": {
            "candidate": {"requests": 2000, "errors": 0, "denies": 400, "p99_ms": null},
            "stable": {"requests": 2000, "errors": 1, "denies": 0,
                       "p99_ms": {"estimate": 1.0, "lo": 0.5, "hi": 2.0}},
            "compared": 2000, "diverged": 400,
        },
    });
    let lines = [
        line(2, "start", Some(start)),
        line(3, "rollback", Some(decision)),
        line(4, "reverted", Some(json!({"revert": "r1"}))),
        line(5, "refuse", None),
    ];
    for l in &lines {
        let t: Transition = serde_json::from_value(l.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&t).unwrap(), l);
    }
    let state = json!({
        "version": 1, "seq": 3, "head": "c1",
        "stable": {"commit": "c0", "artifact": "aaa", "since_ms": 1},
        "previous": null,
        "rollout": {"commit": "c1", "summary": "x", "artifact": "bbb", "started_ms": 2,
                    "stage": 1, "stage_name": "shadow", "stage_started_ms": 3,
                    "replay": replay, "notes": notes},
        "paused": null, "reverts": [], "quarantine": [], "refused": null,
        "last": lines[1],
    });
    // A version 1 document (before bases, ranges and stuck reverts) is
    // migrated: the same document at version 2, its candidate still gated
    // by its own plan.
    let s = State::from_json(state.to_string().as_bytes()).unwrap();
    let mut migrated = state.clone();
    migrated["version"] = json!(2);
    assert_eq!(serde_json::to_value(&s).unwrap(), migrated);
    assert_eq!(s.rollout.as_ref().unwrap().plan_commit(), "c1");
    let again = State::from_json(migrated.to_string().as_bytes()).unwrap();
    assert_eq!(again, s);
}

#[test]
fn a_state_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    store.save_state(&State::default()).unwrap();
    let path = dir.path().join("state.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["version"] = json!(3);
    std::fs::write(&path, doc.to_string()).unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("state.json"), "{err}");
    assert!(err.contains("schema version 3"), "{err}");
    assert!(err.contains("reads versions 1 to 2 only"), "{err}");
    doc.as_object_mut().unwrap().remove("version");
    std::fs::write(&path, doc.to_string()).unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no schema version"), "{err}");
}
