//! The decision log: one JSON line per evaluation, plus a line for every
//! state migration, breaker transition, route change and approval decision,
//! so traffic can be replayed and every change audited.
//!
//! A line is serialized where it is sent (one buffer per line: the writer
//! thread frees one allocation, not the line's dozens, which across threads
//! is what made the log expensive) and goes through a bounded tokio channel
//! (`try_send`) to a writer thread that takes lines in batches
//! (`blocking_recv_many`, lines gathering for 2 ms after a small
//! batch), one `write` per batch; a request never waits
//! for the disk nor for the channel. The queue is bounded twice: in lines
//! ([`CAPACITY`]) and in bytes (at most [`DEFAULT_QUEUE_BYTES`] unless
//! configured), so a stalled disk holds a bounded amount of memory. A line
//! that does not fit, or that could not be written (a full disk, an I/O
//! error: the whole batch is counted), is dropped and counted
//! (`decision_log.dropped` in `/v1/stats`, `sluice_decision_log_dropped_total`
//! in `/metrics`).
//!
//! **Large fields.** A string of the request longer than [`MAX_FIELD`]
//! bytes is written as its first 256 bytes, `…`, its length and its
//! SHA-256 (`"abc…[1048576 bytes, sha256:9f2c…]"`); a request still over
//! [`MAX_REQUEST`] bytes once its strings are cut is written as
//! `{"omitted": {"bytes": n, "sha256": "…"}}`. A 1 MiB body never makes a
//! 1 MiB line.
//!
//! **Rotation.** [`Reopen::request`] (the engine calls it on `SIGHUP`, what
//! logrotate sends) makes the writer reopen the file by its path before
//! the next batch: a renamed file gets no more lines, the new one gets
//! the rest, and none is lost.
//!
//! **Shutdown.** [`DecisionLog::close`] writes out what is queued but waits
//! at most the close timeout (a disk that does not answer cannot hold the
//! process up); lines still queued then are counted as dropped.
//!
//! Every line has `kind` (`evaluation`, `migration`, `breaker`, `route`,
//! `approval`) and `time` (RFC 3339, milliseconds). An evaluation line:
//!
//! ```json
//! {"kind": "evaluation", "time": "2026-01-01T00:00:00.000Z", "request_id": "r-…",
//!  "session": "s-91", "artifact": "9f2c…", "cohort": "stable", "stage": "shadow",
//!  "route_version": 3, "policies": {"payments": "1.4.0"}, "decision": "deny", "reasons": [{"policy": "payments", "…": "…"}],
//!  "shadow": {"artifact": "77ab…", "decision": "allow", "reasons": […]},
//!  "diverged": true, "latency_us": 41, "request": {"tool": "…"}}
//! ```
//!
//! A request in the observe scope of `[governance]` is marked with
//! `"observed": "<the policies' decision>"` beside `"decision": "allow"`
//! and `"audit": true`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use tokio::sync::{mpsc, oneshot};

use crate::api::evaluate::ResponseReason;
use crate::api::route::Cohort;
use crate::engine::bound::{bound, cut};
use crate::model::ir::DecisionKind;

/// The channel's capacity, in lines.
pub const CAPACITY: usize = 16_384;

/// The default bound on queued lines, in bytes.
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;

/// The default time [`DecisionLog::close`] waits for the writer.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::engine::bound::MAX_FIELD;

/// A request longer than this once its strings are cut is replaced by its
/// length and digest.
pub const MAX_REQUEST: usize = 64 << 10;

/// Lines the writer takes off the channel at most at once (one write each).
const BATCH: usize = 1024;

/// How long the writer lets lines gather after a batch smaller than
/// [`BATCH`] before it takes the next: without it, a busy engine wakes the
/// writer thread for nearly every line, and the wake-ups (a futex call on
/// the request's side, a context switch on the writer's) cost more than
/// writing the line.
const GATHER: Duration = Duration::from_millis(2);

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
    /// The rollout stage: the route's, else `stable` when no rollout is in
    /// flight, else the mode (`shadow`, `split`).
    pub stage: String,
    /// The route's version (route changes since the engine started).
    pub route_version: u64,
    /// The versions of the policies the request was evaluated against
    /// (those of its tool), by name — a default decision's too.
    pub policies: std::collections::BTreeMap<String, String>,
    pub decision: DecisionKind,
    /// The request is in the observe scope of `[governance]`: the decision
    /// the policies reached (`decision` is `allow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<DecisionKind>,
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
    /// The request with every modification that applied (what a `modify`
    /// redacts is never logged in clear), large fields cut.
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
    /// A serialized line, its newline included.
    Line(Vec<u8>),
    /// Reopen the file (the flag is set; this only wakes the writer).
    Reopen,
    /// Write out what is queued and stop.
    Close,
}

/// What the sending side and the writer share.
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    /// Bytes of the lines queued.
    queued: AtomicUsize,
    /// Set by [`Reopen::request`], cleared by the writer when it reopens.
    reopen: AtomicBool,
}

/// Where lines go: a file reopened by its path on request, or any writer.
enum Sink {
    File { path: PathBuf, file: std::fs::File },
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    fn write_batch(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::File { file, .. } => file.write_all(bytes).and_then(|()| file.flush()),
            Sink::Writer(w) => w.write_all(bytes).and_then(|()| w.flush()),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File { path, file } = self {
            match append(path) {
                Ok(f) => {
                    *file = f;
                    tracing::info!(path = %path.display(), "decision log reopened");
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "decision log: reopening failed; still writing the file open before");
                }
            }
        }
    }
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The log's sending side. Disabled (every call a no-op) without a file.
#[derive(Debug)]
pub struct DecisionLog {
    lines: Option<mpsc::Sender<Message>>,
    /// Set by [`DecisionLog::close`]: later lines are dropped.
    closed: AtomicBool,
    /// Completes when the writer thread has finished (never awaited by a
    /// join a runtime would have to wait for on its way down).
    finished: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
    shared: Arc<Shared>,
    max_bytes: usize,
    close_timeout: Duration,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Line(..) => f.write_str("Line"),
            Message::Reopen => f.write_str("Reopen"),
            Message::Close => f.write_str("Close"),
        }
    }
}

/// Asks the writer to reopen the log's file by its path (for logrotate).
/// Cheap to clone; a no-op for a disabled log or one writing elsewhere.
#[derive(Debug, Clone)]
pub struct Reopen {
    shared: Arc<Shared>,
    lines: Option<mpsc::Sender<Message>>,
}

impl Reopen {
    /// Reopens before the next batch is written.
    pub fn request(&self) {
        self.shared.reopen.store(true, Ordering::Release);
        if let Some(lines) = &self.lines {
            // When the channel is full the writer is busy: it sees the
            // flag before its next batch anyway.
            let _ = lines.try_send(Message::Reopen);
        }
    }
}

impl DecisionLog {
    /// A log that writes nothing.
    pub fn disabled() -> DecisionLog {
        DecisionLog {
            lines: None,
            closed: AtomicBool::new(false),
            finished: std::sync::Mutex::new(None),
            shared: Arc::default(),
            max_bytes: DEFAULT_QUEUE_BYTES,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        }
    }

    /// Appends to `path` (created if missing) from a writer thread; the
    /// file is reopened by its path on [`Reopen::request`].
    pub fn open(path: &Path) -> std::io::Result<DecisionLog> {
        let file = append(path)?;
        DecisionLog::start(Sink::File {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes lines to any writer from a writer thread.
    pub fn to_writer(out: Box<dyn Write + Send>) -> std::io::Result<DecisionLog> {
        DecisionLog::start(Sink::Writer(out))
    }

    fn start(sink: Sink) -> std::io::Result<DecisionLog> {
        let (lines, rx) = mpsc::channel(CAPACITY);
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("sluice-decision-log".to_string())
            .spawn(move || {
                write_lines(rx, sink, &theirs);
                let _ = done.send(());
            })?;
        Ok(DecisionLog {
            lines: Some(lines),
            closed: AtomicBool::new(false),
            finished: std::sync::Mutex::new(Some(finished)),
            shared,
            max_bytes: DEFAULT_QUEUE_BYTES,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
        })
    }

    /// Bounds the queue to `bytes` (at least one line fits).
    #[must_use]
    pub fn with_queue_bytes(mut self, bytes: usize) -> DecisionLog {
        self.max_bytes = bytes;
        self
    }

    /// How long [`DecisionLog::close`] waits for queued lines.
    #[must_use]
    pub fn with_close_timeout(mut self, timeout: Duration) -> DecisionLog {
        self.close_timeout = timeout;
        self
    }

    /// The handle that reopens the file.
    pub fn reopener(&self) -> Reopen {
        Reopen {
            shared: Arc::clone(&self.shared),
            lines: self.lines.clone(),
        }
    }

    /// Whether lines are written at all (callers skip building them if not).
    pub fn enabled(&self) -> bool {
        self.lines.is_some()
    }

    /// Serializes a line and queues it without waiting; drops and counts
    /// it when the queue is full (in lines or in bytes) or the log closed.
    pub fn send(&self, line: LogLine) {
        let Some(lines) = &self.lines else {
            return;
        };
        if self.closed.load(Ordering::Acquire) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut bytes = Vec::with_capacity(512);
        if encode(line, &mut bytes).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let weight = bytes.len();
        let queued = self.shared.queued.fetch_add(weight, Ordering::AcqRel);
        let fits = queued == 0 || queued.saturating_add(weight) <= self.max_bytes;
        if !fits || lines.try_send(Message::Line(bytes)).is_err() {
            self.shared.queued.fetch_sub(weight, Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped: the queue was full, the log closed, or writing failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Writes out every queued line and stops the writer, waiting at most
    /// the close timeout; lines still queued then are counted as dropped.
    /// Later lines are dropped.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + self.close_timeout;
        let mut done = true;
        if let Some(lines) = &self.lines {
            // Waits for room behind the queued lines; fails only when the
            // writer is gone already.
            done = tokio::time::timeout_at(deadline, lines.send(Message::Close))
                .await
                .is_ok();
        }
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if done && let Some(finished) = finished {
            done = tokio::time::timeout_at(deadline, finished).await.is_ok();
        }
        if !done && let Some(lines) = &self.lines {
            let queued = lines.max_capacity() - lines.capacity();
            self.shared
                .dropped
                .fetch_add(u64::try_from(queued).unwrap_or(u64::MAX), Ordering::Relaxed);
            tracing::error!(
                queued,
                timeout = %humantime::format_duration(self.close_timeout),
                "decision log: the writer did not finish in time; queued lines are lost"
            );
        }
    }
}

/// Appends `line` and a newline to `buf`, its large fields cut
/// ([`crate::engine::bound`]).
fn encode(mut line: LogLine, buf: &mut Vec<u8>) -> serde_json::Result<()> {
    if let LogLine::Evaluation(e) = &mut line {
        if let Some(session) = &mut e.session {
            cut(session);
        }
        bound(&mut e.request, MAX_REQUEST);
    }
    serde_json::to_writer(&mut *buf, &line)?;
    buf.push(b'\n');
    Ok(())
}

/// The writer thread: batches off the channel, one write per batch, until
/// [`Message::Close`] (then what is still queued) or until the log is
/// dropped. A batch that cannot be written counts as dropped; the next one
/// starts on a new line, so a torn line never swallows the next.
fn write_lines(mut rx: mpsc::Receiver<Message>, mut sink: Sink, shared: &Shared) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut batch = Vec::with_capacity(BATCH);
    let mut torn = false;
    while rx.blocking_recv_many(&mut batch, BATCH) > 0 {
        if shared.reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
            torn = false;
        }
        if torn {
            buf.push(b'\n');
        }
        let (mut lines, mut weight, mut bad) = (0u64, 0usize, 0u64);
        for message in batch.drain(..) {
            match message {
                Message::Line(line) => {
                    weight += line.len();
                    buf.extend_from_slice(&line);
                    lines += 1;
                }
                Message::Reopen => {}
                // Lines sent before the log closed are still written.
                Message::Close => rx.close(),
            }
        }
        if !buf.is_empty() {
            match sink.write_batch(&buf) {
                Ok(()) => {
                    shared.written.fetch_add(lines, Ordering::Relaxed);
                    torn = false;
                }
                Err(e) => {
                    if !torn {
                        tracing::error!(error = %e, "decision log: lines could not be written");
                    }
                    bad += lines;
                    torn = true;
                }
            }
        }
        shared.dropped.fetch_add(bad, Ordering::Relaxed);
        shared.queued.fetch_sub(weight, Ordering::AcqRel);
        buf.clear();
        if lines < BATCH as u64 && !rx.is_closed() {
            std::thread::sleep(GATHER);
        }
    }
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
