//! Git's network calls off the loop (SPEC §6: "git runs off the rollback
//! path with timeouts of its own"). A fetch or a revert (fetch, commit,
//! push) runs on a thread of its own with its own handle on the mirror, and
//! hands its result back through a channel, then wakes the loop. The loop
//! never waits for it: rollbacks, triggers and operator commands go on
//! while a remote hangs.
//!
//! libgit2 has no timeout of its own on a remote that stops answering in
//! the middle of a call, so the timeout is the loop's: a call that has not
//! answered within `--git-timeout` is given up (its error shows in status)
//! and its thread left to finish on its own, its result dropped. At most
//! [`MAX_RUNNING`] calls run at once; past that, no new call starts until
//! one returns. Plain threads, not tokio's blocking pool: a call stuck on
//! a dead remote must not hold the process up when it stops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::err::ReconcileError;
use super::git::Mirror;

/// Git calls running at once, given-up ones included.
pub(super) const MAX_RUNNING: usize = 3;

/// A git call in flight.
#[derive(Debug)]
pub(super) struct GitCall<T> {
    /// What it does, for messages: `fetching the branch`, `pushing the revert`.
    pub(super) what: &'static str,
    pub(super) started: Instant,
    rx: oneshot::Receiver<Result<T, ReconcileError>>,
}

/// What a call in flight has come to.
#[derive(Debug)]
pub(super) enum Polled<T> {
    /// Still running, within its timeout.
    Running,
    /// Done (an error included).
    Done(Result<T, ReconcileError>),
    /// Past its timeout: given up.
    TimedOut(ReconcileError),
}

/// Where git calls run from: the mirror, the count of calls running and
/// the loop's wake-up.
#[derive(Debug, Clone)]
pub(super) struct GitCalls {
    mirror: Arc<Mutex<Mirror>>,
    running: Arc<AtomicUsize>,
    done: Arc<Notify>,
    timeout: Duration,
}

impl GitCalls {
    pub(super) fn new(mirror: Arc<Mutex<Mirror>>, timeout: Duration) -> GitCalls {
        GitCalls {
            mirror,
            running: Arc::new(AtomicUsize::new(0)),
            done: Arc::new(Notify::new()),
            timeout,
        }
    }

    /// Wakes the loop when a call returns.
    pub(super) fn done(&self) -> Arc<Notify> {
        self.done.clone()
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether another call may start now.
    pub(super) fn can_start(&self) -> bool {
        self.running.load(Ordering::SeqCst) < MAX_RUNNING
    }

    /// Whether no call is running (given-up ones included): nothing else
    /// writes to the mirror's objects and refs.
    pub(super) fn idle(&self) -> bool {
        self.running.load(Ordering::SeqCst) == 0
    }

    /// Why no call may start, when none may.
    pub(super) fn busy(&self) -> String {
        format!(
            "{} git calls are still waiting for the remote: no new one starts until one returns",
            self.running.load(Ordering::SeqCst)
        )
    }

    /// Starts `f` on a thread of its own with its own handle on the mirror.
    pub(super) fn start<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Mirror) -> Result<T, ReconcileError> + Send + 'static,
    ) -> GitCall<T> {
        let (tx, rx) = oneshot::channel();
        let mirror = self.mirror.clone();
        let running = self.running.clone();
        let done = self.done.clone();
        running.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("sluice-git".to_string())
            .spawn(move || {
                // The loop's handle only long enough to open another.
                let handle = mirror
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .handle();
                let out = handle.and_then(|m| f(&m));
                let _ = tx.send(out);
                running.fetch_sub(1, Ordering::SeqCst);
                done.notify_one();
            });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::SeqCst);
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err(ReconcileError::Io {
                what: format!("starting a thread for {what}"),
                source: e,
            }));
            return GitCall {
                what,
                started: Instant::now(),
                rx,
            };
        }
        GitCall {
            what,
            started: Instant::now(),
            rx,
        }
    }

    /// Takes a call's result when it is there; gives the call up past the
    /// timeout.
    pub(super) fn poll<T>(&self, call: &mut Option<GitCall<T>>) -> Option<Polled<T>> {
        let c = call.as_mut()?;
        let polled = match c.rx.try_recv() {
            Ok(out) => Polled::Done(out),
            Err(oneshot::error::TryRecvError::Closed) => Polled::Done(Err(ReconcileError::Git(
                format!("{}: the call stopped before it answered", c.what),
            ))),
            Err(oneshot::error::TryRecvError::Empty) => {
                let waited = c.started.elapsed();
                if waited < self.timeout {
                    return Some(Polled::Running);
                }
                Polled::TimedOut(ReconcileError::Git(format!(
                    "{}: the remote has not answered for {} s (--git-timeout); the daemon goes on without it and tries again",
                    c.what,
                    waited.as_secs_f32().round()
                )))
            }
        };
        *call = None;
        Some(polled)
    }
}
