//! What the daemon does not wait for (SPEC §6 "Fencing and liveness"): a
//! git hook right after a fresh start rolls the pushed commit out at once,
//! not at the next `--interval` tick.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::reconcile::{Config, Daemon};

use super::fixture::{self, Engine, GOOD, Repo, TOKEN, wait_for};

fn config(repo: &Repo, state: &Path, engines: &[Engine]) -> Config {
    let urls = engines.iter().map(Engine::url).collect();
    let mut c = Config::new(
        &repo.bare.to_string_lossy(),
        state.to_path_buf(),
        urls,
        TOKEN,
    );
    // Nothing happens on the interval's account in these tests.
    c.interval = Duration::from_secs(3600);
    c.listen = None;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_right_after_a_fresh_start_starts_the_rollout_at_once() {
    fixture::logs();
    // Several fresh daemons: a wake-up lost to a race shows in one of them.
    for round in 0..8 {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::new(tmp.path());
        let engines = fixture::engines(3).await;
        let state = tmp.path().join("state");
        let daemon = Daemon::start(config(&repo, &state, &engines))
            .await
            .unwrap();
        // The first commit: fetched and installed at start, without a tick.
        wait_for("installed", Duration::from_secs(10), || {
            let s = daemon.status();
            (s.stable.is_some() && s.engines.iter().all(|e| e.on_route)).then_some(())
        })
        .await;
        repo.commit(
            &format!("Change {round}"),
            &[("policies/shell.policy", Some(GOOD))],
        );
        let pushed = Instant::now();
        daemon.trigger_fetch();
        wait_for(
            "the candidate on every engine",
            Duration::from_secs(5),
            || {
                engines
                    .iter()
                    .all(|e| e.route().is_some_and(|r| r.candidate.is_some()))
                    .then_some(())
            },
        )
        .await;
        eprintln!(
            "round {round}: hook → candidate on 3 engines in {:?}",
            pushed.elapsed()
        );
        daemon.stop().await.unwrap();
    }
}
