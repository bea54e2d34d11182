//! The decision log: one JSON line per evaluation, plus a line for every
//! state migration, breaker transition, route change and approval decision,
//! so traffic can be replayed and every change audited.
//!
//! Lines go through a bounded queue ([`BatchQueue`]) to a writer thread; a
//! request never waits for the disk. When the queue is full the line is
//! dropped and counted (`decision_log.dropped` in `/v1/stats`,
//! `sluice_decision_log_dropped_total` in `/metrics`). Lines are serialized
//! on the writer thread and flushed after every batch (a few milliseconds).
//!
//! Every line has `kind` (`evaluation`, `migration`, `breaker`, `route`,
//! `approval`) and `time` (RFC 3339, milliseconds). An evaluation line:
//!
//! ```json
//! {"kind": "evaluation", "time": "2026-01-01T00:00:00.000Z", "request_id": "r-…",
//!  "session": "s-91", "artifact": "9f2c…", "cohort": "stable", "stage": "shadow",
//!  "decision": "deny", "reasons": [{"policy": "payments", "…": "…"}],
//!  "shadow": {"artifact": "77ab…", "decision": "allow", "reasons": […]},
//!  "diverged": true, "latency_us": 41, "request": {"tool": "…"}}
//! ```

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::api::evaluate::ResponseReason;
use crate::api::route::Cohort;
use crate::engine::queue::{BatchQueue, consume};
use crate::model::ir::DecisionKind;

/// The queue's capacity, in lines.
pub const CAPACITY: usize = 16_384;

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// One line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogLine {
    Evaluation(Box<EvaluationLine>),
    /// A state migration applied on a route change.
    Migration(EventLine),
    /// A circuit breaker changed state.
    Breaker(EventLine),
    /// The route changed.
    Route(EventLine),
    /// An approval was decided.
    Approval(EventLine),
}

/// Anything but an evaluation: the time and the event's own fields.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    #[serde(flatten)]
    pub event: serde_json::Value,
}

impl EventLine {
    pub fn now(event: serde_json::Value) -> EventLine {
        EventLine {
            time: SystemTime::now(),
            event,
        }
    }
}

/// One evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationLine {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub artifact: String,
    pub cohort: Cohort,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub decision: DecisionKind,
    pub reasons: Vec<ResponseReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The decision is the tier failsafe.
    #[serde(skip_serializing_if = "is_false")]
    pub failsafe: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub audit: bool,
    /// Why the evaluation failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The candidate's decision in shadow mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged: Option<bool>,
    pub latency_us: u64,
    /// The request as received.
    pub request: serde_json::Value,
}

/// The shadow (candidate) side of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowLine {
    pub artifact: String,
    /// `None` when the candidate could not evaluate the request.
    pub decision: Option<DecisionKind>,
    pub reasons: Vec<ResponseReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_us: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The log's sending side. Disabled (every call a no-op) without a file.
#[derive(Debug)]
pub struct DecisionLog {
    queue: Option<Arc<BatchQueue<LogLine>>>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
}

impl DecisionLog {
    /// A log that writes nothing.
    pub fn disabled() -> DecisionLog {
        DecisionLog {
            queue: None,
            writer: std::sync::Mutex::new(None),
            dropped: AtomicU64::new(0),
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Appends to `path` (created if missing) from a writer thread.
    pub fn open(path: &Path) -> std::io::Result<DecisionLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        DecisionLog::to_writer(Box::new(file))
    }

    /// Writes lines to any writer from a writer thread.
    pub fn to_writer(out: Box<dyn Write + Send>) -> std::io::Result<DecisionLog> {
        let queue = Arc::new(BatchQueue::new(CAPACITY));
        let written = Arc::new(AtomicU64::new(0));
        let (q, count) = (Arc::clone(&queue), Arc::clone(&written));
        let writer = std::thread::Builder::new()
            .name("sluice-decision-log".to_string())
            .spawn(move || write_lines(&q, out, &count))?;
        Ok(DecisionLog {
            queue: Some(queue),
            writer: std::sync::Mutex::new(Some(writer)),
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Whether lines are written at all (callers skip building them if not).
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a line; drops and counts it when the queue is full.
    pub fn send(&self, line: LogLine) {
        if let Some(q) = &self.queue
            && q.push(line).is_err()
        {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Lines dropped because the queue was full (or the log closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Writes out every queued line and stops the writer. Later lines are
    /// dropped.
    pub async fn close(&self) {
        if let Some(q) = &self.queue {
            q.close();
        }
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

fn write_lines(queue: &Arc<BatchQueue<LogLine>>, out: Box<dyn Write + Send>, written: &AtomicU64) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut failed = false;
    // The log's owner holds the other reference; without it, stop.
    let alive = || Arc::strong_count(queue) > 1;
    consume(queue, alive, |batch| {
        for line in batch.drain(..) {
            let ok = serde_json::to_writer(&mut out, &line).is_ok() && out.write_all(b"\n").is_ok();
            if ok {
                written.fetch_add(1, Relaxed);
            } else if !failed {
                failed = true;
                tracing::error!("decision log: a line could not be written");
            }
        }
        let _ = out.flush();
    });
    let _ = out.flush();
}
