//! The demo's script: push the first commit and wait until it is installed,
//! start the traffic, push the good change and wait until it is stable,
//! push the bad change and wait until it is rolled back and reverted, push
//! the change that moves newco from observe to enforce and wait until it is
//! stable, then shut everything down.
//!
//! [`Run`] holds the running pieces and what has been seen so far. Every
//! wait watches the daemon's status and its transitions, tells the
//! [`Progress`] what happens, and is bounded by the phase timeout; an
//! outcome the demo does not promise (a good change rolled back, a bad one
//! promoted, a commit refused, the rollout paused) ends the wait with an
//! error. The script judges each phase as it goes; the facts of the whole
//! run are read back afterwards by [`super::report`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::console::{LiveView, Progress, StageView, describe_status, transition_lines};
use super::facts::{EngineRoute, PhaseTime, Pushed};
use super::figures::{candidate_requests, gate_brief, revert_commit};
use super::fleet::{EngineProc, stop_engines};
use super::origin::{DemoCommit, Origin};
use super::traffic::{Traffic, TrafficEnd, TrafficFigures};
use super::{DemoError, Options};
use crate::model::short;
use crate::reconcile::api::Status;
use crate::reconcile::{Daemon, ReconcileError};
use crate::rollout::machine::Transition;

/// The running pieces, and what has been seen so far.
pub(super) struct Run<'a> {
    opts: &'a Options,
    origin: &'a Origin,
    progress: &'a mut dyn Progress,
    daemon: Daemon,
    events: broadcast::Receiver<Transition>,
    seen: Vec<Transition>,
    traffic: Option<Traffic>,
    rates: VecDeque<(Instant, u64)>,
    phase: Option<(String, Instant)>,
    phases: Vec<PhaseTime>,
}

/// What a check of the daemon's status says.
enum Check<T> {
    Done(T),
    Wait(String),
    Unexpected(String),
}

/// The demo's four commits as pushed, the revert the daemon pushed, and
/// the traffic's figures when the enforce change was pushed.
pub(super) struct Scenario {
    pub(super) initial: Pushed,
    pub(super) good: Pushed,
    pub(super) bad: Pushed,
    pub(super) revert: String,
    pub(super) enforce: Pushed,
    pub(super) before_enforce: TrafficFigures,
}

/// What shutting down leaves: the daemon's own verdict on its stop, each
/// engine's last route, the traffic's figures and every phase's time.
pub(super) struct ShutDown {
    pub(super) daemon: Result<(), ReconcileError>,
    pub(super) routes: Vec<EngineRoute>,
    pub(super) traffic: TrafficEnd,
    pub(super) phases: Vec<PhaseTime>,
}

impl<'a> Run<'a> {
    /// The run once set up: the daemon started, set-up begun at `setup`.
    pub(super) fn new(
        opts: &'a Options,
        origin: &'a Origin,
        progress: &'a mut dyn Progress,
        daemon: Daemon,
        setup: Instant,
    ) -> Run<'a> {
        let events = daemon.subscribe();
        Run {
            opts,
            origin,
            progress,
            daemon,
            events,
            seen: Vec::new(),
            traffic: None,
            rates: VecDeque::new(),
            phase: Some(("set-up".to_string(), setup)),
            phases: Vec::new(),
        }
    }
}

impl Run<'_> {
    fn begin(&mut self, name: &str, title: &str) {
        self.end_phase();
        self.progress.phase(title);
        self.phase = Some((name.to_string(), Instant::now()));
    }

    fn end_phase(&mut self) {
        if let Some((name, t)) = self.phase.take() {
            self.phases.push(PhaseTime {
                name,
                seconds: t.elapsed().as_secs_f64(),
            });
        }
    }

    fn figures(&self) -> TrafficFigures {
        self.traffic
            .as_ref()
            .map(Traffic::figures)
            .unwrap_or_default()
    }

    fn rate(&mut self) -> f64 {
        let now = Instant::now();
        let n = self.figures().requests;
        self.rates.push_back((now, n));
        while self
            .rates
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(2))
        {
            self.rates.pop_front();
        }
        match self.rates.front() {
            Some((t, first)) if now.duration_since(*t) >= Duration::from_millis(200) => {
                n.saturating_sub(*first) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn view(&mut self, status: &Status, waiting: String) -> LiveView {
        let rate = self.rate();
        let stage = status.candidate.as_ref().map(|c| StageView {
            stage: c.stage.clone(),
            kind: c.kind.clone(),
            index: c.stage_index,
            count: c.stages.len(),
            in_stage: Duration::from_millis(c.in_stage_ms),
            min_duration: c.min_duration_ms.map(Duration::from_millis),
            samples: c.observed.as_ref().map_or(0, candidate_requests),
            min_samples: c.min_samples,
            gates: c.gates.iter().map(gate_brief).collect(),
        });
        LiveView {
            traffic: self.figures(),
            rate,
            stage,
            waiting,
        }
    }

    /// Shows a transition as it happens.
    fn on_transition(&mut self, t: Transition) {
        let since = self
            .seen
            .iter()
            .rev()
            .find(|p| p.commit == t.commit && t.commit.is_some())
            .map(|p| t.time_ms.saturating_sub(p.time_ms) as f64 / 1000.0);
        let revert_message = revert_commit(&t.figures)
            .filter(|_| t.event == "reverted")
            .map(|sha| self.origin.message(sha).unwrap_or_default());
        for l in transition_lines(&t, since, revert_message.as_deref()) {
            self.progress.event(&l);
        }
        self.seen.push(t);
    }

    fn drain(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(t) => self.on_transition(t),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.progress
                        .event(&format!("({n} transitions not shown: see the audit log)"));
                }
                Err(_) => break,
            }
        }
    }

    /// Waits, showing progress, until `check` is done; bounded by the
    /// phase timeout.
    async fn wait<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&Status, &[Transition]) -> Check<T>,
    ) -> Result<T, DemoError> {
        let deadline = Instant::now() + self.opts.timeout;
        loop {
            self.drain();
            let status = self.daemon.status();
            let waiting = match check(&status, &self.seen) {
                Check::Done(v) => return Ok(v),
                Check::Unexpected(message) => {
                    return Err(DemoError::Unexpected {
                        what: what.to_string(),
                        message,
                    });
                }
                Check::Wait(w) => w,
            };
            if self.daemon.is_finished() {
                return Err(DemoError::Unexpected {
                    what: what.to_string(),
                    message: format!(
                        "the daemon stopped{}",
                        status
                            .error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout {
                    what: what.to_string(),
                    after: self.opts.timeout,
                    state: describe_status(&status),
                });
            }
            // A status older than the last transition shown would show a
            // stage already left.
            let status_seq = status.last.as_ref().map_or(0, |t| t.seq);
            if self.seen.last().is_none_or(|t| t.seq <= status_seq) {
                let view = self.view(&status, waiting);
                self.progress.live(&view);
            }
            if let Ok(Ok(t)) =
                tokio::time::timeout(Duration::from_millis(100), self.events.recv()).await
            {
                self.on_transition(t);
            }
        }
    }

    /// Writes `c` on the branch, as a push would, and tells the daemon.
    fn push(&mut self, c: &DemoCommit) -> Result<Pushed, DemoError> {
        let at_ms = crate::reconcile::clock::now_ms();
        let sha = self.origin.commit(c)?;
        Ok(Pushed { sha, at_ms })
    }

    /// The whole script; see the module's comment.
    pub(super) async fn scenario(
        &mut self,
        commits: &[DemoCommit; 4],
        urls: &[String],
    ) -> Result<Scenario, DemoError> {
        let [first, good, bad, enforce] = commits;
        let initial = self.install(first).await?;
        self.start_traffic(urls).await?;
        self.begin(
            "good change",
            &format!("Commit 1, a good change: \"{}\"", good.summary()),
        );
        let good = self
            .roll_out(
                good,
                "the good change",
                "policies/shell.policy gains rule no_force_push (`^git push .*--force`), with two traces",
            )
            .await?;
        let (bad, revert) = self.roll_back_bad(bad, &good).await?;
        self.begin(
            "enforce change",
            &format!(
                "Commit 3, from observe to enforce: \"{}\"",
                enforce.summary()
            ),
        );
        let before_enforce = self.figures();
        self.progress.event(&format!(
            "so far newco's support mail was {}",
            before_enforce.observed_text()
        ));
        let enforce = self
            .roll_out(
                enforce,
                "the enforce change",
                "sluice.toml loses its [governance] observe scope; traces/email.jsonl expects newco's bulk mail denied and its SSNs redacted",
            )
            .await?;
        Ok(Scenario {
            initial,
            good,
            bad,
            revert,
            enforce,
            before_enforce,
        })
    }

    /// The first commit: installed as stable directly.
    async fn install(&mut self, c: &DemoCommit) -> Result<Pushed, DemoError> {
        let pushed = self.push(c)?;
        let count = |ext: &str| c.files.iter().filter(|(p, _)| p.ends_with(ext)).count();
        self.progress.event(&format!(
            "commit {} \"{}\" pushed: {} policies, {} trace files",
            short::commit(&pushed.sha),
            c.summary(),
            count(".policy"),
            count(".jsonl"),
        ));
        self.daemon.trigger_fetch();
        let c0 = pushed.sha.clone();
        let n = self.opts.engines;
        self.wait("installing the first commit", |s, _| {
            if let Some(r) = s.refused.as_ref().filter(|r| r.commit == c0) {
                return Check::Unexpected(format!("the first commit was refused: {}", r.reason));
            }
            let installed =
                s.stable.as_ref().and_then(|r| r.commit.as_deref()) == Some(c0.as_str());
            let on = s.engines.iter().filter(|e| e.on_route).count();
            if installed && on == n {
                Check::Done(())
            } else {
                Check::Wait(format!(
                    "checking and installing commit {}; {on} of {n} engines on route",
                    short::commit(&c0),
                ))
            }
        })
        .await?;
        Ok(pushed)
    }

    /// The agents start and warm up for a second and a half.
    async fn start_traffic(&mut self, urls: &[String]) -> Result<(), DemoError> {
        self.begin("traffic", "Agent traffic");
        let traffic = Traffic::start(urls, self.opts.workers, self.opts.pause)?;
        self.traffic = Some(traffic);
        self.progress.event(&format!(
            "{} agents send requests to the {} engines in turn: web searches, emails, transfers, shell commands",
            self.opts.workers,
            urls.len()
        ));
        let warm = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < warm {
            let status = self.daemon.status();
            let view = self.view(&status, "warming up".to_string());
            self.progress.live(&view);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let f = self.figures();
        let rate = self.rate();
        self.progress.event(&format!(
            "{:.0} req/s, {} failed; {}",
            rate,
            f.failed,
            f.mix()
        ));
        self.progress.event(&format!(
            "newco's support mail is observed (sluice.toml, [governance]): answered allow, {}",
            f.observed_text()
        ));
        Ok(())
    }

    /// A change that walks every stage and becomes stable (`what` names it
    /// in errors, `pushed` says what it changes).
    async fn roll_out(
        &mut self,
        c: &DemoCommit,
        what: &str,
        pushed: &str,
    ) -> Result<Pushed, DemoError> {
        let push = self.push(c)?;
        self.progress.event(&format!(
            "commit {} pushed: {pushed}",
            short::commit(&push.sha)
        ));
        self.daemon.trigger_fetch();
        let sha = push.sha.clone();
        self.wait(&format!("rolling out {what}"), |s, _| {
            if let Some(q) = s.quarantine.iter().find(|q| q.commit == sha) {
                return Check::Unexpected(format!("{what} was rolled back: {}", q.reason));
            }
            if let Some(r) = s.refused.as_ref().filter(|r| r.commit == sha) {
                return Check::Unexpected(format!("{what} was refused: {}", r.reason));
            }
            if let Some(p) = &s.paused {
                return Check::Unexpected(format!("the rollout paused: {}", p.reason));
            }
            let stable = s.stable.as_ref().and_then(|r| r.commit.as_deref()) == Some(sha.as_str());
            if stable && s.engines.iter().all(|e| e.on_route) {
                return Check::Done(());
            }
            Check::Wait(format!("rolling out commit {}", short::commit(&sha)))
        })
        .await?;
        Ok(push)
    }

    /// The bad change is rolled back by a trigger, the daemon pushes its
    /// revert, and the fleet ends on the good change again. Returns the bad
    /// change as pushed and the revert commit's sha.
    async fn roll_back_bad(
        &mut self,
        c: &DemoCommit,
        good: &Pushed,
    ) -> Result<(Pushed, String), DemoError> {
        self.begin(
            "bad change",
            &format!("Commit 2, a bad change: \"{}\"", c.summary()),
        );
        let pushed = self.push(c)?;
        self.progress.event(&format!(
            "commit {} pushed: the rule becomes `^git push .*--force|-f`, plus a trace for `git push -f`",
            short::commit(&pushed.sha)
        ));
        self.progress.event(
            "(the alternation binds looser than meant: `-f` alone now matches anywhere in a command)",
        );
        self.daemon.trigger_fetch();
        let c2 = pushed.sha.clone();
        let bad = |s: &Status, what: &str| -> Option<String> {
            if s.stable.as_ref().and_then(|r| r.commit.as_deref()) == Some(c2.as_str()) {
                return Some(format!("the bad change was promoted to stable ({what})"));
            }
            if let Some(r) = s.refused.as_ref().filter(|r| r.commit == c2) {
                return Some(format!(
                    "the bad change was refused by the checks: {}",
                    r.reason
                ));
            }
            if let Some(p) = &s.paused {
                return Some(format!("the rollout paused: {}", p.reason));
            }
            None
        };
        self.wait("rolling back the bad change", |s, seen| {
            if seen
                .iter()
                .any(|t| t.event == "rollback" && t.commit.as_deref() == Some(c2.as_str()))
            {
                return Check::Done(());
            }
            if let Some(m) = bad(s, "before any rollback") {
                return Check::Unexpected(m);
            }
            Check::Wait(format!("rolling out commit {}", short::commit(&c2)))
        })
        .await?;
        let revert = self
            .wait("reverting the bad change", |s, seen| {
                let reverted = seen
                    .iter()
                    .find(|t| t.event == "reverted" && t.commit.as_deref() == Some(c2.as_str()));
                if let Some(t) = reverted {
                    return match revert_commit(&t.figures) {
                        Some(r) => Check::Done(r.to_string()),
                        None => Check::Unexpected(format!("no revert commit: {}", t.reason)),
                    };
                }
                match s.reverts.first() {
                    Some(r) if r.last_error.is_some() => Check::Wait(format!(
                        "pushing the revert (attempt {}: {})",
                        r.attempts,
                        r.last_error.as_deref().unwrap_or("")
                    )),
                    _ => Check::Wait("pushing the revert commit".to_string()),
                }
            })
            .await?;
        let good_artifact = self
            .seen
            .iter()
            .find(|t| t.event == "complete" && t.commit.as_deref() == Some(good.sha.as_str()))
            .and_then(|t| t.artifact.clone());
        let rv = revert.clone();
        self.wait("taking in the revert commit", |s, seen| {
            let acted = seen
                .iter()
                .any(|t| t.commit.as_deref() == Some(rv.as_str()));
            let on_good = s.stable.as_ref().map(|r| &r.artifact) == good_artifact.as_ref()
                && s.engines.iter().all(|e| e.on_route);
            if acted && on_good {
                Check::Done(())
            } else {
                Check::Wait(format!("fetching revert {}", short::commit(&rv)))
            }
        })
        .await?;
        Ok((pushed, revert))
    }

    /// Shuts everything down, whatever happened: the traffic, the daemon,
    /// then the engines (their routes read first).
    pub(super) async fn shut_down(mut self, engines: Vec<EngineProc>) -> ShutDown {
        self.begin("shut-down", "Shut-down");
        let traffic = match self.traffic.take() {
            Some(t) => t.stop().await,
            None => TrafficEnd::default(),
        };
        self.progress.event(&format!(
            "traffic stopped: {} requests, {} failed",
            indicatif::HumanCount(traffic.figures.requests),
            traffic.figures.failed
        ));
        self.drain();
        let Run {
            daemon,
            mut phases,
            phase,
            progress,
            ..
        } = self;
        let stopped = daemon.stop().await;
        let routes: Vec<EngineRoute> = engines.iter().map(EngineProc::route).collect();
        stop_engines(engines).await;
        progress.event("daemon and engines stopped");
        if let Some((name, t)) = phase {
            phases.push(PhaseTime {
                name,
                seconds: t.elapsed().as_secs_f64(),
            });
        }
        ShutDown {
            daemon: stopped,
            routes,
            traffic,
            phases,
        }
    }
}
