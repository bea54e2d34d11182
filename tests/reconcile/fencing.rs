//! Split brain (SPEC §6 "Fencing and liveness"): two daemons, each with its
//! own state folder, on the same three engines. The second is refused while
//! the first holds the fleet (its status says by whom) and moves nothing;
//! once the first is gone and its leases lapse, the second takes the fleet
//! over; the first, restarted with its stale state, cannot pull the fleet
//! back to its old stable.

use std::path::Path;
use std::time::Duration;

use sluice::reconcile::{Config, Daemon};

use super::fixture::{self, Engine, GOOD, Repo, TOKEN, Traffic, audit, wait_for};

const LEASE: Duration = Duration::from_secs(1);

fn config(repo: &Repo, state: &Path, engines: &[Engine]) -> Config {
    let urls = engines.iter().map(Engine::url).collect();
    let mut c = Config::new(
        &repo.bare.to_string_lossy(),
        state.to_path_buf(),
        urls,
        TOKEN,
    );
    c.interval = Duration::from_millis(100);
    c.listen = None;
    c.lease = LEASE;
    c.engine_timeout = Duration::from_millis(500);
    c
}

/// Each engine's (stable, candidate, route version, lease owner).
fn fleet(engines: &[Engine]) -> Vec<(String, Option<String>, u64, Option<String>)> {
    engines
        .iter()
        .map(|e| {
            let r = e.route().unwrap();
            (r.stable, r.candidate, e.route_puts(), e.owner())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_is_refused_and_a_stale_one_cannot_roll_the_fleet_back() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let c0 = repo.log()[0].0.clone();
    let engines = fixture::engines(3).await;
    let _traffic = Traffic::start(
        engines.iter().map(Engine::url).collect(),
        6,
        Duration::from_millis(2),
    );
    let (state_a, state_b) = (tmp.path().join("a"), tmp.path().join("b"));

    // Daemon A installs the first commit and holds the fleet.
    let a = Daemon::start(config(&repo, &state_a, &engines))
        .await
        .unwrap();
    let id_a = a.status().identity;
    assert!(!id_a.is_empty());
    wait_for("A installed", Duration::from_secs(10), || {
        let s = a.status();
        (s.stable?.commit? == c0 && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    let s0 = a.status().stable.unwrap().artifact;
    let held = fleet(&engines);
    assert!(
        held.iter().all(|e| e.3.as_deref() == Some(id_a.as_str())),
        "{held:?}"
    );

    // Daemon B, on the same engines, is refused: it says by whom, and
    // changes nothing (no route set, no transition), pass after pass.
    let b = Daemon::start(config(&repo, &state_b, &engines))
        .await
        .unwrap();
    fixture::iterations(&b, 5, Duration::from_secs(10)).await;
    let sb = b.status();
    assert_ne!(sb.identity, id_a);
    let fenced = sb.fenced.clone().expect("B is fenced");
    assert!(fenced.contains(&id_a), "{fenced}");
    assert!(fenced.contains("3 of 3"), "{fenced}");
    assert!(sb.engines.iter().all(|e| !e.on_route), "{sb:#?}");
    assert!(
        sb.engines
            .iter()
            .all(|e| e.owner.as_deref() == Some(id_a.as_str())),
        "{sb:#?}"
    );
    assert_eq!(sb.phase, "empty");
    assert!(audit(&state_b).is_empty());
    assert_eq!(fleet(&engines), held);
    // A is not disturbed.
    let sa = a.status();
    assert!(sa.fenced.is_none() && sa.engines.iter().all(|e| e.on_route));

    // A stops; once its leases lapse, B takes the fleet over (adopting the
    // stable artifact the engines agree on) and rolls a new commit out.
    a.stop().await.unwrap();
    let stopped = std::time::Instant::now();
    wait_for("B holds the fleet", Duration::from_secs(10), || {
        let s = b.status();
        (s.fenced.is_none() && s.stable.is_some() && s.engines.iter().all(|e| e.on_route))
            .then_some(())
    })
    .await;
    // A renews every third of the lease, so its last renewal may be up to a
    // third of it before it stopped: the lease lapses at least two thirds
    // of it after the stop (less a margin for the renewal in flight).
    assert!(
        stopped.elapsed() >= LEASE * 2 / 3 - Duration::from_millis(100),
        "B took over {:?} after A stopped, before A's lease lapsed",
        stopped.elapsed()
    );
    let id_b = b.status().identity;
    assert_eq!(b.status().stable.unwrap().artifact, s0);
    assert_eq!(audit(&state_b)[0].event, "adopt");
    let c1 = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    b.trigger_fetch();
    wait_for("B promoted the change", Duration::from_secs(30), || {
        let s = b.status();
        (s.stable?.commit? == c1 && s.engines.iter().all(|e| e.on_route)).then_some(())
    })
    .await;
    let s1 = b.status().stable.unwrap().artifact;
    assert_ne!(s1, s0);

    // A restarts on its stale state (stable: the old artifact). It is
    // refused by B's leases: the fleet stays on B's stable, untouched.
    let held = fleet(&engines);
    let lines_a = audit(&state_a).len();
    let a = Daemon::start(config(&repo, &state_a, &engines))
        .await
        .unwrap();
    assert_eq!(a.status().identity, id_a, "the identity is kept");
    fixture::iterations(&a, 8, Duration::from_secs(10)).await;
    let sa = a.status();
    let fenced = sa.fenced.clone().expect("A is fenced");
    assert!(fenced.contains(&id_b), "{fenced}");
    assert_eq!(sa.stable.unwrap().artifact, s0, "A's state is stale");
    assert_eq!(fleet(&engines), held);
    assert!(
        held.iter()
            .all(|e| e.0 == s1 && e.1.is_none() && e.3.as_deref() == Some(id_b.as_str())),
        "{held:?}"
    );
    assert_eq!(audit(&state_a).len(), lines_a, "A made no transition");
    fixture::assert_consistent(&audit(&state_b));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
