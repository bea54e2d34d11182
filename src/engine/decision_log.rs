//! The decision log: one JSON line per evaluation, plus a line for every
//! state migration, breaker transition, route change and approval decision,
//! so traffic can be replayed and every change audited.
//!
//! Lines go through a bounded tokio channel (`try_send`) to a writer thread
//! that takes them in batches (`blocking_recv_many`); a request never waits
//! for the disk nor for the channel. When the channel is full the line is
//! dropped and counted (`decision_log.dropped` in `/v1/stats`,
//! `sluice_decision_log_dropped_total` in `/metrics`). Lines are serialized
//! on the writer thread and flushed after every batch.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use serde::{Serialize, Serializer};
use tokio::sync::mpsc;

use crate::api::evaluate::ResponseReason;
use crate::api::route::Cohort;
use crate::model::ir::DecisionKind;

/// The channel's capacity, in lines.
pub const CAPACITY: usize = 16_384;

/// Lines the writer takes off the channel at most at once (one flush each).
const BATCH: usize = 1024;

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

/// What the writer thread receives.
enum Message {
    Line(LogLine),
    /// Write out what is queued and stop.
    Close,
}

/// The log's sending side. Disabled (every call a no-op) without a file.
#[derive(Debug)]
pub struct DecisionLog {
    lines: Option<mpsc::Sender<Message>>,
    /// Set by [`DecisionLog::close`]: later lines are dropped.
    closed: AtomicBool,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Line(_) => f.write_str("Line"),
            Message::Close => f.write_str("Close"),
        }
    }
}

impl DecisionLog {
    /// A log that writes nothing.
    pub fn disabled() -> DecisionLog {
        DecisionLog {
            lines: None,
            closed: AtomicBool::new(false),
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
        let (lines, rx) = mpsc::channel(CAPACITY);
        let written = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&written);
        let writer = std::thread::Builder::new()
            .name("sluice-decision-log".to_string())
            .spawn(move || write_lines(rx, out, &count))?;
        Ok(DecisionLog {
            lines: Some(lines),
            closed: AtomicBool::new(false),
            writer: std::sync::Mutex::new(Some(writer)),
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Whether lines are written at all (callers skip building them if not).
    pub fn enabled(&self) -> bool {
        self.lines.is_some()
    }

    /// Queues a line without waiting; drops and counts it when the channel
    /// is full or the log closed.
    pub fn send(&self, line: LogLine) {
        if let Some(lines) = &self.lines
            && (self.closed.load(Ordering::Acquire) || lines.try_send(Message::Line(line)).is_err())
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the channel was full (or the log closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Writes out every queued line and stops the writer. Later lines are
    /// dropped.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(lines) = &self.lines {
            // Waits for room behind the queued lines; fails only when the
            // writer is gone already.
            let _ = lines.send(Message::Close).await;
        }
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// The writer thread: batches off the channel, one flush per batch, until
/// [`Message::Close`] (then what is still queued) or until the log is
/// dropped.
fn write_lines(mut rx: mpsc::Receiver<Message>, out: Box<dyn Write + Send>, written: &AtomicU64) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut failed = false;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.blocking_recv_many(&mut batch, BATCH) > 0 {
        for message in batch.drain(..) {
            let Message::Line(line) = message else {
                // Lines sent before the log closed are still written.
                rx.close();
                continue;
            };
            let ok = serde_json::to_writer(&mut out, &line).is_ok() && out.write_all(b"\n").is_ok();
            if ok {
                written.fetch_add(1, Ordering::Relaxed);
            } else if !failed {
                failed = true;
                tracing::error!("decision log: a line could not be written");
            }
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;

    /// A writer that blocks until its gate opens.
    #[derive(Clone, Default)]
    struct Gated(Arc<(Mutex<bool>, Condvar)>);

    impl Gated {
        fn open(&self) {
            *self.0.0.lock().unwrap() = true;
            self.0.1.notify_all();
        }
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut open = self.0.0.lock().unwrap();
            while !*open {
                open = self.0.1.wait(open).unwrap();
            }
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.write(&[]).map(|_| ())
        }
    }

    fn line() -> LogLine {
        LogLine::Route(EventLine::now(serde_json::json!({"version": 1})))
    }

    #[tokio::test]
    async fn full_and_closed_logs_drop_and_count_lines() {
        let gate = Gated::default();
        let log = DecisionLog::to_writer(Box::new(gate.clone())).unwrap();
        // The writer holds at most one batch while the gate is shut; the
        // channel takes CAPACITY more, and the rest is dropped.
        let total = CAPACITY + 2 * BATCH;
        for _ in 0..total {
            log.send(line());
        }
        assert!(log.dropped() >= BATCH as u64, "{}", log.dropped());
        gate.open();
        log.close().await;
        assert_eq!(log.written() + log.dropped(), total as u64);
        // Closed: a line is dropped and counted.
        log.send(line());
        assert_eq!(log.written() + log.dropped(), total as u64 + 1);
    }
}
