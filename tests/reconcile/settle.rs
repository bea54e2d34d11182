//! The pure rollout machine's transitions around reverts and the branch
//! (issue 9): what a rollout records of the stable commit it started from,
//! a revert that cannot be made, its settlement by an operator, a
//! force-push, a deleted branch. No I/O; the clock is a number.

use sluice::rollout::machine::{Action, Cause, Command, Event, RevertOutcome, State};

use super::machine::{World, ready, rolling};

/// `ready` with the range since stable and the force-push flag set.
fn head(commit: &str, artifact: &str, commits: &[&str], forced: bool) -> Event {
    let Event::Head(mut h) = ready(commit, artifact) else {
        unreachable!()
    };
    h.commits = commits.iter().map(|c| c.to_string()).collect();
    h.forced = forced;
    Event::Head(h)
}

/// Stable `aaa` (c0), candidate `bbb` (c2, bringing c1 and c2) rolled back
/// by an operator: one revert pending.
fn rolled_back(w: &World) -> State {
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    let (s, _) = w.moves(&s, head("c2", "bbb", &["c1", "c2"], false), "start");
    let r = s.rollout.as_ref().unwrap();
    assert_eq!(r.base.as_deref(), Some("c0"));
    assert_eq!(r.commits, ["c1", "c2"]);
    assert_eq!(r.plan_commit(), "c0");
    let t = s.last.as_ref().unwrap();
    assert!(
        t.reason.contains("with 1 earlier commit(s), c0..c2"),
        "{}",
        t.reason
    );
    assert!(
        t.reason.contains("plan and traces of stable commit c0"),
        "{}",
        t.reason
    );
    let (s, _) = w.moves(&s, Event::Operator(Command::rollback(None)), "rollback");
    let p = &s.reverts[0];
    assert_eq!((p.commit.as_str(), p.base.as_deref()), ("c2", Some("c0")));
    assert_eq!(p.range(), ["c1", "c2"]);
    s
}

fn failed(commit: &str) -> Event {
    Event::RevertFailed {
        commit: commit.into(),
        error: "the revert cannot be made: it conflicts".into(),
    }
}

#[test]
fn a_revert_that_cannot_be_made_stops_pauses_and_waits_for_an_operator() {
    let w = World::new();
    let s = rolled_back(&w);
    let (s, out) = w.moves(&s, failed("c2"), "revert_failed");
    assert!(out.actions.is_empty());
    assert!(s.reverts[0].stuck.as_deref().unwrap().contains("conflicts"));
    let p = s.paused.clone().unwrap();
    assert!(p.hold && p.cause == Cause::Daemon);
    assert!(p.reason.contains("sluice revert skip"), "{}", p.reason);
    // Said once.
    w.stays(&s, failed("c2"));
    // Heads wait, and say how to settle it.
    let why = w.stays(&s, ready("c3", "ccc")).reply.unwrap_err();
    assert!(why.contains("revert skip|done"), "{why}");

    // `resume` tries again from scratch.
    let (s2, out) = w.moves(&s, Event::Operator(Command::Resume), "resume");
    assert!(s2.reverts[0].stuck.is_none() && s2.paused.is_none());
    assert!(out.actions.contains(&Action::Revert {
        commit: "c2".into()
    }));

    // `revert skip` settles it: the pause it held goes, the quarantine
    // stays.
    let (s3, out) = w.moves(
        &s,
        Event::Operator(Command::RevertSkip {
            reason: Some("leave it".into()),
        }),
        "revert_skipped",
    );
    let t = out.transition.unwrap();
    assert_eq!(t.cause, Cause::Operator);
    assert!(t.reason.contains("2 commits c1..c2"), "{}", t.reason);
    assert!(t.reason.contains("leave it"), "{}", t.reason);
    assert!(s3.reverts.is_empty() && s3.paused.is_none());
    assert_eq!(s3.quarantine[0].artifact, "bbb");
    let refused = w.stays(&s3, Event::Operator(Command::RevertSkip { reason: None }));
    assert!(refused.reply.unwrap_err().contains("no revert is pending"));

    // `revert done` too.
    let (s4, out) = w.moves(
        &s,
        Event::Operator(Command::RevertDone { reason: None }),
        "reverted",
    );
    assert!(out.transition.unwrap().reason.contains("made by hand"));
    assert!(s4.reverts.is_empty() && s4.paused.is_none());

    // A revert found made by hand settles it as well.
    let note = RevertOutcome::NotNeeded {
        note: "reverted on the branch by abc1234".into(),
    };
    let (s5, _) = w.moves(
        &s,
        Event::Reverted {
            commit: "c2".into(),
            outcome: note,
        },
        "reverted",
    );
    assert!(s5.reverts.is_empty() && s5.paused.is_none());
}

#[test]
fn a_force_push_pauses_until_an_operator_resumes() {
    let w = World::new();
    let s = rolling(&w);
    let (s, out) = w.moves(&s, head("x1", "xxx", &["x1"], true), "force_push");
    assert!(out.actions.is_empty());
    let r = s.rewrite.clone().unwrap();
    assert_eq!((r.from.as_deref(), r.to.as_str()), (Some("c1"), "x1"));
    assert!(s.paused.as_ref().unwrap().hold);
    // The candidate is not superseded, and the head is not acted on.
    assert_eq!(s.rollout.as_ref().unwrap().commit, "c1");
    assert_eq!(s.head.as_deref(), Some("c1"));
    // Built again against the rewrite, it is no longer forced: it waits.
    assert!(
        w.stays(&s, head("x1", "xxx", &["x1"], false))
            .reply
            .is_err()
    );
    // A rollback meanwhile does not lift the pause.
    let (s2, _) = w.moves(&s, Event::Operator(Command::rollback(None)), "rollback");
    assert!(s2.paused.is_some());
    let (s, _) = w.moves(&s, Event::Operator(Command::Resume), "resume");
    let (s, _) = w.moves(&s, head("x1", "xxx", &["x1"], false), "supersede");
    assert!(s.rewrite.is_none());
    assert_eq!(s.head.as_deref(), Some("x1"));
}

#[test]
fn a_deleted_branch_is_said_once_and_holds_the_pause_until_an_operator() {
    let w = World::new();
    let s = rolling(&w);
    let (s, _) = w.moves(&s, Event::BranchDeleted, "branch_deleted");
    assert!(s.branch_gone.is_some() && s.paused.as_ref().unwrap().hold);
    w.stays(&s, Event::BranchDeleted);
    let (s, _) = w.moves(
        &s,
        Event::BranchRestored { head: "c1".into() },
        "branch_restored",
    );
    assert!(s.branch_gone.is_none());
    w.stays(&s, Event::BranchRestored { head: "c1".into() });
    // The revert landing does not lift it either: only an operator.
    let (s, _) = w.moves(&s, Event::Operator(Command::rollback(None)), "rollback");
    let landed = RevertOutcome::Pushed {
        revert: "r1".into(),
    };
    let (s, _) = w.moves(
        &s,
        Event::Reverted {
            commit: "c1".into(),
            outcome: landed,
        },
        "reverted",
    );
    assert!(s.paused.as_ref().unwrap().hold);
    let (s, _) = w.moves(&s, Event::Operator(Command::Resume), "resume");
    assert!(s.paused.is_none());
}

#[test]
fn a_rollback_of_the_stable_goes_back_to_the_previous_commit() {
    let w = World::new();
    let (s, _) = w.moves(&State::default(), ready("c0", "aaa"), "install");
    let Event::Head(mut h) = ready("c1", "bbb") else {
        unreachable!()
    };
    if let sluice::rollout::machine::Build::Ready(r) = &mut h.build {
        r.plan = None;
    }
    let (s, out) = w.moves(&s, Event::Head(h), "install");
    let reason = out.transition.unwrap().reason;
    assert!(
        reason.contains("the stable commit c0 has no `[rollout]` plan"),
        "{reason}"
    );
    let (s, _) = w.moves(&s, Event::Operator(Command::rollback(None)), "rollback");
    let p = &s.reverts[0];
    assert_eq!((p.commit.as_str(), p.base.as_deref()), ("c1", Some("c0")));
}
