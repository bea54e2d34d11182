//! Shadow evaluation: in shadow mode the candidate evaluates each request of
//! its cohort besides stable, off the request path, in dry run (it counts
//! no limit); its figures go to the shadow cohort, the comparison to the
//! stats and the decision log. The candidate reads each counter as it was
//! before the request: stable counted it already (the counters it counted
//! travel with the job and are taken back out), so that the same limit in
//! both never diverges at its max.
//!
//! Requests hand jobs over through a bounded tokio channel with `try_send`:
//! the request path never blocks or awaits it. The queue is bounded in jobs
//! and in bytes ([`QUEUE_BYTES`], each job weighed by its request body):
//! when either is full the job is handed back, dropped and counted. One task on the engine's
//! runtime drains the channel in batches (`recv_many`), so shadow work
//! shares the request threads in proportion instead of starving as a thread
//! of its own on a busy machine. It stops when the engine is gone, or on
//! [`Shadow::close`] once the queued jobs are done.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::api::evaluate::ResponseReason;
use crate::api::route::Cohort;
use crate::engine::backend::StateBackend;
use crate::engine::decision_log::{DecisionLog, EvaluationLine, LogLine, ShadowLine};
use crate::engine::server::state::{Counted, Track, evaluate_with};
use crate::engine::server::{Active, micros};
use crate::engine::stats::Sample;
use crate::eval::request::{Request, RequestError};
use crate::eval::{EvalError, LimitMode, Outcome};
use crate::model::ir::DecisionKind;

/// Jobs the worker takes off the channel at most at once.
const BATCH: usize = 256;

/// The most the queued jobs may weigh, in bytes (a job weighs three times
/// its request body: the JSON, the decoded request, the log line).
pub(super) const QUEUE_BYTES: usize = 64 << 20;

/// One request for the candidate.
pub(super) struct ShadowJob {
    pub(super) route: Arc<Active>,
    pub(super) request: Value,
    /// The request as stable decoded it; the candidate reuses it when both
    /// artifacts have the same schema (the usual case).
    pub(super) decoded: Request,
    pub(super) stable: DecisionKind,
    /// Stable's observed decision, for a request in its observe scope.
    pub(super) stable_observed: Option<DecisionKind>,
    pub(super) now: u64,
    /// The counters stable counted this request in: the candidate's dry run
    /// reads them as they were before it.
    pub(super) counted: Counted,
    /// What the job weighs in the queue, in bytes.
    pub(super) weight: usize,
    pub(super) line: Option<Box<EvaluationLine>>,
}

/// The sending side of the shadow worker, owned by the engine.
#[derive(Debug)]
pub(super) struct Shadow {
    jobs: mpsc::Sender<ShadowJob>,
    /// Jobs dropped because the channel was full or closed, since start.
    dropped: AtomicU64,
    /// What the queued jobs weigh.
    queued: Arc<AtomicUsize>,
    stop: Arc<Notify>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Shadow {
    /// Spawns the worker on `rt` with a channel of `capacity` jobs.
    pub(super) fn start(
        rt: &tokio::runtime::Handle,
        capacity: usize,
        backend: Arc<dyn StateBackend>,
        log: Arc<DecisionLog>,
    ) -> Shadow {
        let (jobs, rx) = mpsc::channel(capacity.max(1));
        let stop = Arc::new(Notify::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = rt.spawn(worker(
            rx,
            Arc::clone(&stop),
            backend,
            log,
            Arc::clone(&queued),
        ));
        Shadow {
            jobs,
            dropped: AtomicU64::new(0),
            queued,
            stop,
            worker: Mutex::new(Some(worker)),
        }
    }

    /// Queues `job` without waiting; hands it back (and counts it dropped)
    /// when the channel is full or closed.
    #[expect(
        clippy::result_large_err,
        reason = "the refused job comes back by value to be logged; boxing it would allocate on the request path"
    )]
    pub(super) fn send(&self, job: ShadowJob) -> Result<(), ShadowJob> {
        let weight = job.weight;
        let fits = self
            .queued
            .fetch_update(Relaxed, Relaxed, |q| {
                (q.saturating_add(weight) <= QUEUE_BYTES).then_some(q + weight)
            })
            .is_ok();
        if !fits {
            self.dropped.fetch_add(1, Relaxed);
            return Err(job);
        }
        self.jobs.try_send(job).map_err(|e| {
            self.queued.fetch_sub(weight, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
            e.into_inner()
        })
    }

    /// Jobs dropped since start.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Refuses further jobs and waits, at most `limit`, for the worker to
    /// finish those queued. Returns whether it did.
    pub(super) async fn close(&self, limit: Duration) -> bool {
        self.stop.notify_one();
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        match worker {
            Some(handle) => tokio::time::timeout(limit, handle).await.is_ok(),
            None => true,
        }
    }
}

/// Drains the channel in batches until every sender is gone (the engine
/// was dropped) or `stop` is notified, then finishes what is queued.
async fn worker(
    mut rx: mpsc::Receiver<ShadowJob>,
    stop: Arc<Notify>,
    backend: Arc<dyn StateBackend>,
    log: Arc<DecisionLog>,
    queued: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut outcome = Outcome::default();
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                for job in batch.drain(..) {
                    queued.fetch_sub(job.weight, Relaxed);
                    shadow_one(job, &*backend, &log, &mut outcome).await;
                }
            }
            () = stop.notified() => {
                rx.close();
                while rx.recv_many(&mut batch, BATCH).await > 0 {
                    for job in batch.drain(..) {
                        queued.fetch_sub(job.weight, Relaxed);
                        shadow_one(job, &*backend, &log, &mut outcome).await;
                    }
                }
                return;
            }
        }
    }
}

/// Why the candidate could not evaluate a request; written to the log.
#[derive(Debug, thiserror::Error)]
enum ShadowError {
    #[error("bad request for the candidate: {0}")]
    Decode(#[source] RequestError),
    #[error(transparent)]
    Eval(#[from] EvalError),
}

async fn shadow_one(
    job: ShadowJob,
    backend: &dyn StateBackend,
    log: &DecisionLog,
    outcome: &mut Outcome,
) {
    let Some(candidate) = &job.route.candidate else {
        return;
    };
    let Some(stats) = job.route.stats.cohort(Cohort::Shadow) else {
        return;
    };
    let ev = &candidate.evaluator;
    let t0 = Instant::now();
    let dry = LimitMode::DryRun;
    let before = || Track::Before(&job.counted);
    let result =
        match evaluate_with(backend, ev, &job.decoded, job.now, dry, outcome, before()).await {
            // Another schema: decode the request for the candidate.
            Err(EvalError::SchemaMismatch) => match ev.decode(&job.request) {
                Ok(req) => evaluate_with(backend, ev, &req, job.now, dry, outcome, before())
                    .await
                    .map_err(ShadowError::from),
                Err(e) => Err(ShadowError::Decode(e)),
            },
            other => other.map_err(ShadowError::from),
        };
    let latency = t0.elapsed();
    let decision = result.as_ref().ok().map(|()| outcome.decision());
    stats.record(Sample {
        decision: decision.unwrap_or(DecisionKind::Allow),
        observed: result.as_ref().ok().and_then(|()| outcome.observed()),
        error: decision.is_none(),
        failsafe: false,
        latency,
    });
    if let Some(d) = decision {
        let observed = result.as_ref().ok().and_then(|()| outcome.observed());
        stats.record_pair((job.stable, job.stable_observed), (d, observed));
    }
    stats.record_agent(
        &ev.artifact().inventory,
        job.request.get("agent").and_then(serde_json::Value::as_str),
    );
    if let Some(mut line) = job.line {
        line.shadow = Some(ShadowLine {
            artifact: candidate.hash().to_string(),
            decision,
            reasons: match decision {
                Some(_) => ev.reasons(outcome).map(ResponseReason::from).collect(),
                None => Vec::new(),
            },
            error: result.err().map(|e| e.to_string()),
            latency_us: micros(latency),
        });
        line.diverged = Some(decision != Some(job.stable));
        if line.request.is_null() {
            line.request = job.request;
        }
        log.send(LogLine::Evaluation(line));
    }
}
