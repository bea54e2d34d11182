//! The pure rollout state machine: events in, state, transition and actions
//! out. No I/O; the clock is a number.

use serde_json::Value;
use sluice::api::replay::ReplayTotals;
use sluice::api::route::{Mode, RouteSpec};
use sluice::model::plan::RolloutPlan;
use sluice::rollout::machine::{
    Action, Build, Cause, Command, Ctx, Event, Figures, Fleet, Head, Notes, Observed, Ready,
    RevertOutcome, State, Step, desired_route, same_route, step,
};
use sluice::rollout::stage::{Cohort, Observation};
use sluice::source::SourceFile;

/// A document as it is written out (to the audit log, to status).
fn json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}

fn plan(toml: &str) -> RolloutPlan {
    let p = sluice::project::parse(&SourceFile::new("sluice.toml", toml)).unwrap();
    p.rollout.unwrap()
}

fn default_plan() -> RolloutPlan {
    plan(super::fixture::TOML)
}

/// The clock and what the engines show, for one step.
pub(super) struct World {
    pub(super) now: u64,
    pub(super) plan: RolloutPlan,
    pub(super) observed: Observed,
    pub(super) fleet: Fleet,
}

impl World {
    pub(super) fn new() -> World {
        World {
            now: 1_000_000,
            plan: default_plan(),
            observed: Observed::default(),
            fleet: Fleet::Empty,
        }
    }

    pub(super) fn run(&self, s: &State, e: Event) -> Step {
        let ctx = Ctx {
            now_ms: self.now,
            plan: Some(&self.plan),
            observed: &self.observed,
            fleet: self.fleet.clone(),
            engine_grace_ms: 1_000,
        };
        step(s, &ctx, e)
    }

    /// Runs an event that must make a transition; returns the new state.
    #[track_caller]
    pub(super) fn moves(&self, s: &State, e: Event, event: &str) -> (State, Step) {
        let out = self.run(s, e);
        let t = out
            .transition
            .as_ref()
            .unwrap_or_else(|| panic!("expected `{event}`, got no transition ({:?})", out.reply));
        assert_eq!(t.event, event, "{t:#?}");
        assert_eq!(t.seq, s.seq + 1);
        assert_eq!(t.from, s.label());
        assert_eq!(t.to, out.state.label());
        assert_eq!(out.state.last.as_ref(), Some(t));
        (out.state.clone(), out)
    }

    #[track_caller]
    pub(super) fn stays(&self, s: &State, e: Event) -> Step {
        let out = self.run(s, e);
        assert!(out.transition.is_none(), "{:#?}", out.transition);
        assert_eq!(&out.state, s);
        out
    }
}

pub(super) fn ready(commit: &str, artifact: &str) -> Event {
    Event::Head(Head {
        commit: commit.into(),
        summary: format!("commit {commit}"),
        build: Build::Ready(Box::new(Ready {
            artifact: artifact.into(),
            plan: Some(default_plan()),
            replay: ReplayTotals {
                cases: 2,
                passed: 2,
                expected_permissive: 1,
                ..ReplayTotals::default()
            },
            notes: Notes::default(),
        })),
        commits: Vec::new(),
        forced: false,
    })
}

fn figures(cand: (u64, u64, u64), stable: (u64, u64, u64), diverged: u64) -> Observed {
    let c = |(requests, errors, denies)| Cohort {
        requests,
        errors,
        denies,
        p99_ms: None,
    };
    Observed {
        figures: Some(Observation {
            candidate: c(cand),
            stable: c(stable),
            compared: cand.0,
            diverged,
            agents: Vec::new(),
        }),
        complete: true,
        unreachable: Vec::new(),
        unreachable_ms: 0,
    }
}

fn good() -> Observed {
    figures((2000, 0, 0), (2000, 0, 0), 0)
}

/// A state with stable `aaa` (commit c0) and candidate `bbb` (commit c1)
/// at the replay stage.
pub(super) fn rolling(w: &World) -> State {
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    let (s, _) = w.moves(&s, ready("c1", "bbb"), "start");
    s
}

#[test]
fn first_clean_commit_is_installed_directly() {
    let w = World::new();
    let (s, out) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    assert_eq!(s.phase(), "stable");
    assert_eq!(s.stable.as_ref().unwrap().artifact, "aaa");
    assert_eq!(s.head.as_deref(), Some("c0"));
    assert_eq!(
        out.actions,
        vec![
            Action::Upload {
                artifact: "aaa".into()
            },
            Action::SetRoutes
        ]
    );
    let route = desired_route(&s, None).unwrap();
    assert_eq!(route.stable, "aaa");
    assert!(route.candidate.is_none());
}

#[test]
fn without_every_engine_nothing_is_installed() {
    let mut w = World::new();
    w.fleet = Fleet::Unknown;
    let out = w.stays(&State::default(), ready("c0", "aaa"));
    assert!(out.reply.is_err());
    w.fleet = Fleet::Mixed;
    assert!(
        w.stays(&State::default(), ready("c0", "aaa"))
            .reply
            .is_err()
    );
}

#[test]
fn engines_already_on_a_stable_artifact_are_adopted() {
    let mut w = World::new();
    w.fleet = Fleet::Stable("aaa".into());
    let (s, out) = w.moves(&State::default(), ready("c0", "aaa"), "adopt");
    assert!(out.actions.is_empty());
    assert_eq!(s.stable.as_ref().unwrap().commit.as_deref(), Some("c0"));
    // Another artifact on the engines: adopted first, then rolled out against.
    w.fleet = Fleet::Stable("zzz".into());
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "adopt");
    assert_eq!(s.stable.as_ref().unwrap().artifact, "zzz");
    assert_eq!(s.head, None);
    let (s, _) = w.moves(&s, ready("c0", "aaa"), "start");
    assert_eq!(s.rollout.as_ref().unwrap().artifact, "aaa");
}

#[test]
fn a_commit_that_fails_its_checks_is_refused() {
    let w = World::new();
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    let e = Event::Head(Head {
        commit: "c1".into(),
        summary: "broken".into(),
        build: Build::Refused {
            reason: "1 error(s): type::unknown_field".into(),
        },
        commits: Vec::new(),
        forced: false,
    });
    let (s2, out) = w.moves(&s, e, "refuse");
    assert!(out.actions.is_empty());
    assert_eq!(s2.refused.as_ref().unwrap().commit, "c1");
    assert_eq!(s2.head.as_deref(), Some("c1"));
    assert_eq!(s2.stable, s.stable);
    assert!(s2.rollout.is_none());
    assert!(out.transition.unwrap().reason.contains("unknown_field"));
}

#[test]
fn a_good_change_walks_every_stage_to_stable() {
    let mut w = World::new();
    let s = rolling(&w);
    assert_eq!(s.phase(), "replay");
    // Replay: engines stay on stable.
    let r = desired_route(&s, Some(&w.plan)).unwrap();
    assert!(r.candidate.is_none());
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    assert_eq!(s.phase(), "shadow");
    let r = desired_route(&s, Some(&w.plan)).unwrap();
    assert_eq!(r.mode, Some(Mode::Shadow));
    assert_eq!(r.candidate.as_deref(), Some("bbb"));
    assert_eq!(r.stage.as_deref(), Some("shadow"));
    assert_eq!(r.hash_key, "session");

    // Not long enough in the stage: wait, whatever the figures.
    w.observed = good();
    w.now += 100;
    let out = w.stays(&s, Event::Tick);
    assert!(out.decision.unwrap().time_left.as_millis() > 0);
    // Long enough but too few samples: wait.
    w.now += 200;
    w.observed = figures((50, 0, 0), (50, 0, 0), 0);
    let out = w.stays(&s, Event::Tick);
    assert_eq!(out.decision.unwrap().samples_left, 50);
    // Enough: advance to the canary.
    w.observed = good();
    let (s, out) = w.moves(&s, Event::Tick, "advance");
    assert_eq!(out.actions, vec![Action::SetRoutes]);
    assert_eq!(out.transition.as_ref().unwrap().cause, Cause::Daemon);
    let r = desired_route(&s, Some(&w.plan)).unwrap();
    assert_eq!((r.mode, r.percent), (Some(Mode::Split), Some(50.0)));
    // Figures of the old stage do not advance the new one: its clock restarted.
    w.stays(&s, Event::Tick);
    w.now += 300;
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    assert_eq!(s.phase(), "full");
    let (s, out) = w.moves(&s, Event::Tick, "complete");
    assert_eq!(s.phase(), "stable");
    assert_eq!(s.stable.as_ref().unwrap().artifact, "bbb");
    assert_eq!(s.previous.as_ref().unwrap().artifact, "aaa");
    assert_eq!(out.actions, vec![Action::SetRoutes]);
    assert_eq!(desired_route(&s, Some(&w.plan)).unwrap().stable, "bbb");
}

#[test]
fn a_failing_replay_refuses_the_commit_and_reverts_nothing() {
    let w = World::new();
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    let Event::Head(mut h) = ready("c1", "bbb") else {
        unreachable!()
    };
    if let Build::Ready(r) = &mut h.build {
        r.replay.catastrophic = 1;
        r.replay.passed = 1;
    }
    let (s, _) = w.moves(&s, Event::Head(h), "start");
    // Nothing was deployed: the commit is refused, no revert is pushed.
    let (s, out) = w.moves(&s, Event::Tick, "refuse");
    assert_eq!(out.transition.as_ref().unwrap().cause, Cause::Trigger);
    let reason = out.transition.unwrap().reason;
    assert!(reason.contains("max_catastrophic"), "{reason}");
    assert!(reason.contains("nothing to revert"), "{reason}");
    assert!(s.reverts.is_empty());
    assert!(s.rollout.is_none());
    assert_eq!(s.refused.as_ref().unwrap().commit, "c1");
    assert_eq!(out.actions, vec![Action::SetRoutes]);
    assert_eq!(s.stable.as_ref().unwrap().artifact, "aaa");
}

#[test]
fn a_trigger_rolls_back_and_quarantines() {
    let mut w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    // Candidate denies 40% more than stable: the trigger's lower bound is
    // past 0.3 long before the stage's minimum duration.
    w.observed = figures((1000, 0, 450), (1000, 0, 10), 440);
    let (s, out) = w.moves(&s, Event::Tick, "rollback");
    let t = out.transition.unwrap();
    assert_eq!(t.cause, Cause::Trigger);
    assert_eq!((t.from.as_str(), t.to.as_str()), ("shadow", "stable"));
    assert!(t.reason.contains("deny_rate_delta"), "{}", t.reason);
    assert!(json(&t.figures)["triggers"].is_array());
    assert_eq!(
        out.actions,
        vec![
            Action::SetRoutes,
            Action::Revert {
                commit: "c1".into()
            }
        ]
    );
    assert_eq!(desired_route(&s, Some(&w.plan)).unwrap().candidate, None);
    assert_eq!(s.reverts[0].stage, "shadow");
    assert!(s.reverts[0].figures.contains("candidate: 1000 requests"));
    assert!(s.quarantined("c1", None).is_some());
    assert!(s.quarantined("other", Some("bbb")).is_some());
}

#[test]
fn a_failing_gate_rolls_back_like_a_trigger() {
    let mut w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    // 20% divergence: the gate (0.05) fails; the trigger (0.3) does not.
    w.observed = figures((2000, 0, 400), (2000, 0, 0), 400);
    w.now += 10;
    let (_, out) = w.moves(&s, Event::Tick, "rollback");
    let t = out.transition.unwrap();
    assert!(t.reason.contains("gate max_divergence"), "{}", t.reason);
}

#[test]
fn an_incomplete_fleet_never_advances_and_pauses_after_the_grace() {
    let mut w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    w.now += 10_000;
    w.observed = good();
    w.observed.complete = false;
    w.observed.unreachable = vec!["http://e2".into()];
    w.observed.unreachable_ms = 500;
    w.stays(&s, Event::Tick);
    w.observed.unreachable_ms = 1_500;
    let (s, out) = w.moves(&s, Event::Tick, "pause");
    assert!(out.transition.unwrap().reason.contains("http://e2"));
    assert!(s.paused.is_some());
    assert_eq!(s.phase(), "shadow");
    assert_eq!(s.paused.as_ref().unwrap().engines, ["http://e2"]);
    // Paused: passing gates do not advance while an engine is away.
    let mut away = good();
    away.complete = false;
    away.unreachable = vec!["http://e2".into()];
    away.unreachable_ms = 5_000;
    w.observed = away.clone();
    w.stays(&s, Event::Tick);
    // Triggers still roll back; a pause of the daemon's own ends with the
    // rollout.
    w.observed = figures((1000, 0, 450), (1000, 0, 10), 440);
    w.observed.complete = false;
    w.observed.unreachable = away.unreachable.clone();
    let (rolled, _) = w.moves(&s, Event::Tick, "rollback");
    assert!(rolled.paused.is_none());
    // Every engine back on the route: the pause ends by itself...
    w.observed = good();
    let (s, out) = w.moves(&s, Event::Tick, "resume");
    let t = out.transition.unwrap();
    assert_eq!(t.cause, Cause::Daemon);
    assert!(t.reason.contains("http://e2"), "{}", t.reason);
    assert!(s.paused.is_none());
    // ...and the stage goes on.
    w.moves(&s, Event::Tick, "advance");
    // An operator's pause does not end by itself.
    let pause = Event::Operator(Command::Pause { reason: None });
    let (s, _) = w.moves(&s, pause, "pause");
    w.stays(&s, Event::Tick);
}

#[test]
fn operator_pause_resume_promote_rollback() {
    let mut w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    let pause = Event::Operator(Command::Pause {
        reason: Some("investigating".into()),
    });
    let (s, out) = w.moves(&s, pause.clone(), "pause");
    assert_eq!(out.transition.as_ref().unwrap().cause, Cause::Operator);
    assert_eq!(out.transition.unwrap().to, "shadow (paused)");
    assert!(w.stays(&s, pause).reply.is_err());
    w.observed = good();
    w.now += 1_000;
    w.stays(&s, Event::Tick);
    // A new head waits while paused.
    assert!(w.stays(&s, ready("c2", "ccc")).reply.is_err());
    let (s, _) = w.moves(&s, Event::Operator(Command::Resume), "resume");
    assert!(w.stays(&s, Event::Operator(Command::Resume)).reply.is_err());
    // Promote skips the gates and says so.
    w.observed = figures((10, 0, 0), (10, 0, 0), 0);
    let (s, out) = w.moves(&s, Event::Operator(Command::promote()), "promote");
    let t = out.transition.unwrap();
    assert_eq!(t.cause, Cause::Operator);
    assert!(t.reason.contains("skipped"), "{}", t.reason);
    assert!(t.reason.contains("max_divergence"), "{}", t.reason);
    assert_eq!(s.phase(), "canary");
    let rb = Event::Operator(Command::rollback(None));
    let (s, out) = w.moves(&s, rb.clone(), "rollback");
    assert_eq!(out.transition.unwrap().cause, Cause::Operator);
    assert_eq!(s.reverts[0].cause, Cause::Operator);
    // Nothing in flight and no previous stable: nothing to roll back.
    assert!(w.stays(&s, rb).reply.is_err());
    assert!(
        w.stays(&s, Event::Operator(Command::promote()))
            .reply
            .is_err()
    );
}

#[test]
fn promote_at_the_last_stage_makes_the_candidate_stable() {
    let mut w = World::new();
    let mut s = rolling(&w);
    for _ in 0..3 {
        s = w
            .moves(&s, Event::Operator(Command::promote()), "promote")
            .0;
    }
    assert_eq!(s.phase(), "full");
    w.observed = Observed::default();
    let (s, out) = w.moves(&s, Event::Operator(Command::promote()), "promote");
    assert_eq!(s.phase(), "stable");
    assert_eq!(s.stable.as_ref().unwrap().artifact, "bbb");
    assert!(out.transition.unwrap().reason.contains("no figures yet"));
    // With nothing in flight, a rollback goes back to the previous stable
    // and reverts the promoted commit.
    let (s, out) = w.moves(&s, Event::Operator(Command::rollback(None)), "rollback");
    assert_eq!(s.stable.as_ref().unwrap().artifact, "aaa");
    assert!(s.previous.is_none());
    assert_eq!(
        out.actions,
        vec![
            Action::SetRoutes,
            Action::Revert {
                commit: "c1".into()
            }
        ]
    );
}

#[test]
fn heads_wait_for_a_pending_revert_and_quarantine_holds() {
    let mut w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    w.observed = figures((1000, 0, 450), (1000, 0, 10), 440);
    let (s, _) = w.moves(&s, Event::Tick, "rollback");
    // A new head waits for the revert.
    let out = w.stays(&s, ready("c2", "ccc"));
    assert!(out.reply.unwrap_err().contains("revert"));
    let landed = Event::Reverted {
        commit: "c1".into(),
        outcome: RevertOutcome::Pushed {
            revert: "r1".into(),
        },
    };
    let (s, out) = w.moves(&s, landed.clone(), "reverted");
    assert_eq!(json(&out.transition.unwrap().figures)["revert"], "r1");
    assert!(s.reverts.is_empty());
    // Settled once only.
    w.stays(&s, landed);
    // The revert commit brings the branch back to stable's artifact.
    let (s, _) = w.moves(&s, ready("r1", "aaa"), "unchanged");
    // The offending commit or its artifact never roll out again.
    let (s, out) = w.moves(&s, ready("c1", "bbb"), "refuse");
    assert!(out.transition.unwrap().reason.contains("quarantined"));
    let (s, _) = w.moves(&s, ready("c9", "bbb"), "refuse");
    assert!(s.rollout.is_none());
}

#[test]
fn newer_commits_supersede_cancel_or_continue() {
    let w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    // Same artifact as the candidate (a README change): continues.
    let (s, _) = w.moves(&s, ready("c1b", "bbb"), "unchanged");
    assert_eq!(s.phase(), "shadow");
    assert_eq!(s.rollout.as_ref().unwrap().commit, "c1");
    // A new artifact supersedes, from the first stage.
    let (s, out) = w.moves(&s, ready("c2", "ccc"), "supersede");
    assert_eq!(s.phase(), "replay");
    assert_eq!(s.rollout.as_ref().unwrap().artifact, "ccc");
    assert!(out.actions.contains(&Action::Upload {
        artifact: "ccc".into()
    }));
    assert!(s.quarantine.is_empty());
    // Back to stable's artifact: cancelled, no revert.
    let (s, out) = w.moves(&s, ready("c3", "aaa"), "cancel");
    assert_eq!(s.phase(), "stable");
    assert!(s.reverts.is_empty());
    assert_eq!(out.actions, vec![Action::SetRoutes]);
    // Stable's artifact with nothing in flight: nothing to do.
    w.moves(&s, ready("c4", "aaa"), "unchanged");
}

#[test]
fn max_duration_pauses_and_resume_restarts_its_clock() {
    let mut w = World::new();
    w.plan = plan(&super::fixture::TOML.replace(
        "max_duration = \"60s\"\nmin_samples = 100",
        "max_duration = \"1s\"\nmin_samples = 100",
    ));
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    // Too little evidence to pass: the gate waits.
    w.observed = figures((150, 0, 0), (150, 0, 0), 6);
    w.now += 900;
    w.stays(&s, Event::Tick);
    w.now += 200;
    let (s, out) = w.moves(&s, Event::Tick, "pause");
    assert_eq!(out.transition.unwrap().cause, Cause::Daemon);
    w.now += 5_000;
    let (s, _) = w.moves(&s, Event::Operator(Command::Resume), "resume");
    w.now += 500;
    w.stays(&s, Event::Tick);
    w.now += 600;
    w.moves(&s, Event::Tick, "pause");
}

#[test]
fn no_plan_installs_directly() {
    let w = World::new();
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    let e = Event::Head(Head {
        commit: "c1".into(),
        summary: String::new(),
        build: Build::Ready(Box::new(Ready {
            artifact: "bbb".into(),
            plan: None,
            replay: ReplayTotals::default(),
            notes: Notes::default(),
        })),
        commits: Vec::new(),
        forced: false,
    });
    let (s, _) = w.moves(&s, e, "install");
    assert_eq!(s.stable.as_ref().unwrap().artifact, "bbb");
    assert_eq!(s.previous.as_ref().unwrap().artifact, "aaa");
}

#[test]
fn a_seen_head_is_not_acted_on_twice() {
    let w = World::new();
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    w.stays(&s, ready("c0", "aaa"));
}

#[test]
fn the_state_round_trips_through_json() {
    let mut w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    w.observed = figures((1000, 0, 450), (1000, 0, 10), 440);
    let (s, _) = w.moves(&s, Event::Tick, "rollback");
    let text = serde_json::to_string(&s).unwrap();
    let mut back: State = serde_json::from_str(&text).unwrap();
    // Floats in the figures may lose their last bit through JSON.
    let mut s = s;
    for st in [&mut s, &mut back] {
        if let Some(t) = &mut st.last {
            t.figures = Figures::default();
        }
    }
    assert_eq!(back, s);
}

#[test]
fn desired_routes_are_routes_the_engine_takes() {
    let mut w = World::new();
    w.plan = plan(&super::fixture::TOML.replace(
        "percent = 50\n",
        "percent = 50\nmatch = { agent = [\"a\", \"b\"] }\n",
    ));
    let mut s = rolling(&w);
    let mut seen = Vec::new();
    loop {
        let r = desired_route(&s, Some(&w.plan)).unwrap();
        // Through JSON, as `PUT /v1/route` takes it (unknown fields refused).
        let back: RouteSpec = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        let normalized = back.clone().normalize().unwrap();
        assert!(same_route(&normalized, &r), "{r:?}");
        seen.push((r.stage.clone(), r.percent, r.match_.len()));
        if s.phase() == "stable" {
            break;
        }
        s = w
            .moves(&s, Event::Operator(Command::promote()), "promote")
            .0;
    }
    assert_eq!(
        seen,
        [
            (None, None, 0),
            (Some("shadow".into()), Some(100.0), 0),
            (Some("canary".into()), Some(50.0), 1),
            (Some("full".into()), Some(100.0), 0),
            (None, None, 0),
        ]
    );
    // A route with another candidate or stage is not the same.
    let mut other = desired_route(&rolling(&w), Some(&w.plan)).unwrap();
    other.stage = Some("x".into());
    assert!(!same_route(
        &other,
        &desired_route(&rolling(&w), Some(&w.plan)).unwrap()
    ));
}

#[test]
fn operator_overrides_name_what_they_mean() {
    let mut w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::Tick, "advance");
    w.observed = good();
    // A rollback naming another candidate is refused; the candidate's
    // commit or a prefix of its artifact rolls it back.
    let rb = |c: &str| {
        Event::Operator(Command::Rollback {
            reason: None,
            candidate: Some(c.into()),
        })
    };
    let why = w.stays(&s, rb("c9")).reply.unwrap_err();
    assert!(why.contains("not `c9`") && why.contains("bbb"), "{why}");
    w.moves(&s, rb("c1"), "rollback");
    let (rolled, _) = w.moves(&s, rb("BB"), "rollback");
    // With nothing in flight, the name is the stable release's.
    let (stable, _) = w.moves(&s, Event::Operator(Command::promote()), "promote");
    let mut stable = stable;
    for _ in 0..2 {
        stable = w
            .moves(&stable, Event::Operator(Command::promote()), "promote")
            .0;
    }
    assert_eq!(stable.phase(), "stable");
    assert!(w.stays(&stable, rb("aaa")).reply.is_err());
    w.moves(&stable, rb("bbb"), "rollback");

    // Promote through a stage: a reason is needed, the stage must be ahead.
    let through = |stage: &str, reason: Option<&str>| {
        Event::Operator(Command::Promote {
            through: Some(stage.into()),
            reason: reason.map(str::to_string),
        })
    };
    assert!(
        w.stays(&s, through("canary", None))
            .reply
            .unwrap_err()
            .contains("reason")
    );
    assert!(w.stays(&s, through("nosuch", Some("r"))).reply.is_err());
    assert!(
        w.stays(&s, through("replay", Some("r")))
            .reply
            .unwrap_err()
            .contains("past")
    );
    let (full, out) = w.moves(&s, through("canary", Some("INC-1")), "promote");
    assert_eq!(full.phase(), "full");
    let reason = out.transition.unwrap().reason;
    assert!(
        reason.contains("shadow, canary") && reason.contains("INC-1"),
        "{reason}"
    );
    let (done, _) = w.moves(&s, through("full", Some("INC-1")), "promote");
    assert_eq!(done.stable.as_ref().unwrap().artifact, "bbb");

    // An operator's pause outlives a promote.
    let pause = Event::Operator(Command::Pause { reason: None });
    let (paused, _) = w.moves(&s, pause, "pause");
    let (moved, out) = w.moves(&paused, Event::Operator(Command::promote()), "promote");
    assert!(moved.paused.is_some());
    assert_eq!(moved.label(), "canary (paused)");
    assert!(out.reply.unwrap().contains("sluice resume"));

    // The same artifact again is refused while quarantined; lifted, the
    // head that was refused is acted on again.
    let revert = Event::Reverted {
        commit: "c1".into(),
        outcome: RevertOutcome::NotNeeded {
            note: "gone".into(),
        },
    };
    let (rolled, _) = w.moves(&rolled, revert, "reverted");
    let (refused, _) = w.moves(&rolled, ready("c2", "bbb"), "refuse");
    assert_eq!(
        refused.refused.as_ref().unwrap().artifact.as_deref(),
        Some("bbb")
    );
    let lift = |t: &str, r: &str| {
        Event::Operator(Command::Unquarantine {
            target: t.into(),
            reason: r.into(),
        })
    };
    assert!(w.stays(&refused, lift("bbb", " ")).reply.is_err());
    assert!(w.stays(&refused, lift("zzz", "r")).reply.is_err());
    let (lifted, _) = w.moves(&refused, lift("bbb", "network outage"), "unquarantine");
    assert!(lifted.quarantine.is_empty());
    assert_eq!(lifted.head, None);
    w.moves(&lifted, ready("c2", "bbb"), "start");
}
