//! `sluice demo` (SPEC §7): the whole pipeline on one machine, with no setup.
//!
//! An orchestration stage: it does I/O of every kind and decides nothing
//! itself. It makes a temporary policy repository (a bare git repository,
//! written with git2: no `git` command line needed), starts three engines
//! ([`crate::engine::server`]) on loopback, the reconcile daemon
//! ([`crate::reconcile::Daemon`]) watching the repository, and synthetic
//! agent traffic against the engines; then it pushes two commits:
//!
//! 1. a good change (agents may no longer force-push), which walks every
//!    stage of the plan to `full` and becomes stable;
//! 2. a bad change: the same rule extended to `git push -f` with a regex
//!    whose alternation binds looser than its author thought
//!    (`^git push .*--force|-f` also matches `tail -f`, `--features`,
//!    `--fix`, `--format`…). It passes every check and its own traces, but
//!    the shadow stage sees the candidate deny everyday commands: a gate
//!    fails, the engines go back to stable and the daemon pushes the revert
//!    commit on `main`.
//!
//! The repository's content is embedded (`src/demo/`). Progress goes to a
//! [`Progress`]; [`Console`] renders it with indicatif bars on a terminal and
//! as plain lines elsewhere. [`run`] returns a [`Report`] of facts read back
//! from the repository, the daemon's audit log, the engines and the traffic
//! counters; [`Report::problems`] says what, if anything, did not go as the
//! demo promises.

#![expect(
    clippy::indexing_slicing,
    reason = "indexes still to be replaced by checked access"
)]

use std::collections::VecDeque;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::api::audit::Figures;
use crate::api::gate::{Cohort, GateReading, Observation, Unit, Verdict};
use crate::engine::backend::MemoryBackend;
use crate::engine::decision_log::DecisionLog;
use crate::engine::server::{self, EngineConfig};
use crate::reconcile::api::Status;
use crate::reconcile::{Config, Daemon, ReconcileError};
use crate::rollout::machine::{Cause, Transition};

/// The branch the daemon watches.
pub const BRANCH: &str = "main";
const BRANCH_REF: &str = "refs/heads/main";

/// The bare repository's folder in the demo's folder.
pub const ORIGIN_DIR: &str = "policies.git";
/// A checkout of the branch, made at the end when the folder is kept.
pub const CHECKOUT_DIR: &str = "policies";
/// The daemon's state folder.
pub const STATE_DIR: &str = "state";
/// The report, written when the folder is kept.
pub const SUMMARY_FILE: &str = "summary.json";

/// The `min_duration` and `max_duration` the embedded plan gives its live
/// stages; [`Options::stage_duration`] replaces them.
const PLAN_MIN: &str = "min_duration = \"4s\"";
const PLAN_MAX: &str = "max_duration = \"2m\"";
const PLAN_LIVE_STAGES: usize = 3;

const INITIAL_FILES: &[(&str, &str)] = &[
    ("sluice.toml", include_str!("demo/repo/sluice.toml")),
    (
        "policies/approvals.policy",
        include_str!("demo/repo/policies/approvals.policy"),
    ),
    (
        "policies/core.policy",
        include_str!("demo/repo/policies/core.policy"),
    ),
    (
        "policies/email.policy",
        include_str!("demo/repo/policies/email.policy"),
    ),
    (
        "policies/payments.policy",
        include_str!("demo/repo/policies/payments.policy"),
    ),
    (
        "policies/search.policy",
        include_str!("demo/repo/policies/search.policy"),
    ),
    (
        "policies/shell.policy",
        include_str!("demo/repo/policies/shell.policy"),
    ),
    (
        "traces/email.jsonl",
        include_str!("demo/repo/traces/email.jsonl"),
    ),
    (
        "traces/payments.jsonl",
        include_str!("demo/repo/traces/payments.jsonl"),
    ),
    (
        "traces/search.jsonl",
        include_str!("demo/repo/traces/search.jsonl"),
    ),
    (
        "traces/shell.jsonl",
        include_str!("demo/repo/traces/shell.jsonl"),
    ),
];

const GOOD_FILES: &[(&str, &str)] = &[
    (
        "policies/shell.policy",
        include_str!("demo/good/policies/shell.policy"),
    ),
    (
        "traces/shell.jsonl",
        include_str!("demo/good/traces/shell.jsonl"),
    ),
];

const BAD_FILES: &[(&str, &str)] = &[
    (
        "policies/shell.policy",
        include_str!("demo/bad/policies/shell.policy"),
    ),
    (
        "traces/shell.jsonl",
        include_str!("demo/bad/traces/shell.jsonl"),
    ),
];

const INITIAL_MESSAGE: &str = "Guardrails for the agent fleet\n\n\
Six policies (core, approvals, search, email, payments, shell), their\n\
traces, and a rollout plan with stages of seconds.\n";

const GOOD_MESSAGE: &str = "shell: agents may not force-push\n\n\
A force-push rewrites history that others have pulled. Agents open a\n\
pull request instead.\n";

const BAD_MESSAGE: &str = "shell: catch the short form, git push -f\n\n\
no_force_push only knew --force; -f does the same. Trace added.\n";

/// One commit of the demo: its message and the files it writes.
#[derive(Debug, Clone)]
pub struct DemoCommit {
    pub message: &'static str,
    /// (path, text), written over the previous commit's tree.
    pub files: Vec<(&'static str, String)>,
}

impl DemoCommit {
    /// The message's first line.
    pub fn summary(&self) -> &'static str {
        self.message.lines().next().unwrap_or("")
    }
}

/// The demo's three commits: the initial repository (its plan's live stages
/// lasting at least `stage_duration`), the good change and the bad change.
pub fn commits(stage_duration: Duration) -> [DemoCommit; 3] {
    let files = |list: &[(&'static str, &'static str)]| {
        list.iter()
            .map(|(p, t)| (*p, (*t).to_string()))
            .collect::<Vec<_>>()
    };
    let mut initial = files(INITIAL_FILES);
    for (path, text) in &mut initial {
        if *path == "sluice.toml" {
            *text = plan_with(text, stage_duration);
        }
    }
    [
        DemoCommit {
            message: INITIAL_MESSAGE,
            files: initial,
        },
        DemoCommit {
            message: GOOD_MESSAGE,
            files: files(GOOD_FILES),
        },
        DemoCommit {
            message: BAD_MESSAGE,
            files: files(BAD_FILES),
        },
    ]
}

/// The embedded `sluice.toml` with every live stage's `min_duration` set to
/// `stage` and its `max_duration` to the larger of two minutes and four
/// times `stage`.
fn plan_with(toml: &str, stage: Duration) -> String {
    debug_assert_eq!(toml.matches(PLAN_MIN).count(), PLAN_LIVE_STAGES);
    debug_assert_eq!(toml.matches(PLAN_MAX).count(), PLAN_LIVE_STAGES);
    let max = stage.saturating_mul(4).max(Duration::from_secs(120));
    toml.replace(
        PLAN_MIN,
        &format!(
            "min_duration = \"{}\"",
            humantime::format_duration(round_ms(stage))
        ),
    )
    .replace(
        PLAN_MAX,
        &format!(
            "max_duration = \"{}\"",
            humantime::format_duration(round_ms(max))
        ),
    )
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep the repository, the daemon's state and `summary.json` in this
    /// folder (created; it must be empty) instead of a temporary folder.
    pub keep: Option<PathBuf>,
    /// The least time each live stage (shadow, canary, broad) lasts.
    pub stage_duration: Duration,
    /// How long each phase may take before the demo gives up.
    pub timeout: Duration,
    /// Engines started.
    pub engines: usize,
    /// Concurrent agents sending requests.
    pub workers: usize,
    /// Each agent's pause between two requests.
    pub pause: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keep: None,
            stage_duration: Duration::from_secs(4),
            timeout: Duration::from_secs(180),
            engines: 3,
            workers: 8,
            pause: Duration::from_millis(5),
        }
    }
}

/// Why the demo stopped before its end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the demo's repository: {0}")]
    Git(#[from] git2::Error),
    #[error(transparent)]
    Daemon(#[from] ReconcileError),
    #[error("starting an engine: {0}")]
    Engine(String),
    #[error("--keep `{dir}`: {message}")]
    Keep { dir: String, message: String },
    /// Something the demo does not expect happened (a good change rolled
    /// back, a bad one promoted, a commit refused, the rollout paused).
    #[error("{what}: {message}")]
    Unexpected { what: String, message: String },
    /// A phase did not finish in time.
    #[error("{what}: not done within {} ({state})", humantime::format_duration(*.after))]
    Timeout {
        what: String,
        after: Duration,
        state: String,
    },
}

impl DemoError {
    /// Whether the demo ran but did not go as it should (rather than could
    /// not run at all).
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            DemoError::Unexpected { .. } | DemoError::Timeout { .. }
        )
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

// ---------------------------------------------------------------------------
// Progress

/// Receives the demo's progress as it happens.
pub trait Progress {
    /// A phase begins.
    fn phase(&mut self, title: &str);
    /// Something happened (a transition, a commit pushed, …): one line.
    fn event(&mut self, text: &str);
    /// The live figures, a few times a second.
    fn live(&mut self, view: &LiveView);
    /// The run is over: take down anything drawn.
    fn finish(&mut self);
}

/// The traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrafficFigures {
    /// Requests answered or failed.
    pub requests: u64,
    /// Requests that got no answer or an answer other than 200.
    pub failed: u64,
    pub allow: u64,
    pub modify: u64,
    pub require_approval: u64,
    pub deny: u64,
}

impl TrafficFigures {
    fn share(&self, n: u64) -> f64 {
        let answered = self.requests - self.failed;
        if answered == 0 {
            0.0
        } else {
            n as f64 / answered as f64
        }
    }

    /// `allow 80.1% · modify 2.0% · approval 4.4% · deny 13.5%`.
    pub fn mix(&self) -> String {
        format!(
            "allow {} · modify {} · approval {} · deny {}",
            pct(self.share(self.allow)),
            pct(self.share(self.modify)),
            pct(self.share(self.require_approval)),
            pct(self.share(self.deny)),
        )
    }
}

/// What the live display shows.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    pub traffic: TrafficFigures,
    /// Requests per second, over the last two seconds.
    pub rate: f64,
    /// The stage in flight, if any.
    pub stage: Option<StageView>,
    /// What is waited for, when no stage is in flight.
    pub waiting: String,
}

/// The stage in flight, as the daemon's status shows it.
#[derive(Debug, Clone, Default)]
pub struct StageView {
    pub stage: String,
    /// `replay`, `shadow` or `split`.
    pub kind: String,
    /// 0-based.
    pub index: usize,
    pub count: usize,
    pub in_stage: Duration,
    pub min_duration: Option<Duration>,
    /// Candidate requests seen in this stage.
    pub samples: u64,
    pub min_samples: Option<u64>,
    /// Each gate, formatted.
    pub gates: Vec<String>,
}

/// How [`Console`] shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// indicatif bars for the live figures, events printed above them.
    Live,
    /// Events as lines, and the live figures every two seconds.
    Plain,
    /// Nothing (the caller prints the summary).
    Quiet,
}

/// Progress on standard output: bars on a terminal, plain lines elsewhere.
pub struct Console {
    mode: ConsoleMode,
    multi: Option<indicatif::MultiProgress>,
    traffic: Option<indicatif::ProgressBar>,
    stage: Option<indicatif::ProgressBar>,
    staged: bool,
    last_plain: Option<Instant>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("mode", &self.mode).finish()
    }
}

const PLAIN_EVERY: Duration = Duration::from_secs(2);

impl Console {
    /// `Live` falls back to `Plain` when standard output is not a terminal.
    pub fn new(mode: ConsoleMode) -> Console {
        let mode = if mode == ConsoleMode::Live && !std::io::stdout().is_terminal() {
            ConsoleMode::Plain
        } else {
            mode
        };
        let mut c = Console {
            mode,
            multi: None,
            traffic: None,
            stage: None,
            staged: false,
            last_plain: None,
        };
        if mode == ConsoleMode::Live {
            let multi = indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stdout_with_hz(8),
            );
            let traffic = multi.add(indicatif::ProgressBar::new_spinner());
            traffic.set_style(
                indicatif::ProgressStyle::with_template("   {spinner:.green} {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            traffic.enable_steady_tick(Duration::from_millis(120));
            let stage = multi.add(indicatif::ProgressBar::new(1));
            stage.set_style(idle_style());
            c.multi = Some(multi);
            c.traffic = Some(traffic);
            c.stage = Some(stage);
        }
        c
    }

    /// The mode in force.
    pub fn mode(&self) -> ConsoleMode {
        self.mode
    }

    fn line(&self, text: &str) {
        match (&self.mode, &self.multi) {
            (ConsoleMode::Live, Some(m)) => {
                if m.println(text).is_err() {
                    println!("{text}");
                }
            }
            (ConsoleMode::Quiet, _) => {}
            _ => println!("{text}"),
        }
    }
}

fn idle_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("     {wide_msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

fn stage_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("     {prefix:<12} [{bar:20.cyan/blue}] {wide_msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn traffic_text(v: &LiveView) -> String {
    if v.traffic.requests == 0 {
        return "traffic: not started yet".to_string();
    }
    format!(
        "traffic {:.0} req/s · {} requests · {} failed · {}",
        v.rate,
        indicatif::HumanCount(v.traffic.requests),
        v.traffic.failed,
        v.traffic.mix()
    )
}

fn stage_text(s: &StageView) -> String {
    if s.kind == "replay" {
        return "replaying the traces".to_string();
    }
    let mut parts = vec![format!("{:.1}s", s.in_stage.as_secs_f64())];
    match s.min_samples {
        Some(m) => parts.push(format!(
            "{} of {} samples",
            indicatif::HumanCount(s.samples),
            indicatif::HumanCount(m)
        )),
        None => parts.push(format!("{} samples", indicatif::HumanCount(s.samples))),
    }
    parts.extend(s.gates.iter().cloned());
    parts.join(" · ")
}

impl Progress for Console {
    fn phase(&mut self, title: &str) {
        self.line("");
        self.line(&format!("▶ {title}"));
    }

    fn event(&mut self, text: &str) {
        self.line(&format!("   {text}"));
    }

    fn live(&mut self, v: &LiveView) {
        match self.mode {
            ConsoleMode::Quiet => {}
            ConsoleMode::Live => {
                if let Some(t) = &self.traffic {
                    t.set_message(traffic_text(v));
                }
                let Some(bar) = &self.stage else { return };
                match &v.stage {
                    Some(s) => {
                        if !self.staged {
                            bar.set_style(stage_style());
                            self.staged = true;
                        }
                        let len = s.min_duration.map_or(1, |d| d.as_millis().max(1) as u64);
                        bar.set_length(len);
                        bar.set_position((s.in_stage.as_millis() as u64).min(len));
                        bar.set_prefix(format!("{} {}/{}", s.stage, s.index + 1, s.count));
                        bar.set_message(stage_text(s));
                    }
                    None => {
                        if self.staged {
                            bar.set_style(idle_style());
                            self.staged = false;
                        }
                        bar.set_message(v.waiting.clone());
                    }
                }
            }
            ConsoleMode::Plain => {
                if self.last_plain.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
                    return;
                }
                self.last_plain = Some(Instant::now());
                match &v.stage {
                    Some(s) => self.line(&format!(
                        "     [{} {}/{}] {} | {}",
                        s.stage,
                        s.index + 1,
                        s.count,
                        stage_text(s),
                        traffic_text(v)
                    )),
                    None => self.line(&format!("     {} | {}", v.waiting, traffic_text(v))),
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(t) = self.traffic.take() {
            t.finish_and_clear();
        }
        if let Some(s) = self.stage.take() {
            s.finish_and_clear();
        }
        if let Some(m) = self.multi.take() {
            let _ = m.clear();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}

// ---------------------------------------------------------------------------
// Formatting figures

fn pct(x: f64) -> String {
    if x == 0.0 {
        "0%".to_string()
    } else if x.abs() >= 0.1 {
        format!("{:.1}%", x * 100.0)
    } else {
        format!("{:.2}%", x * 100.0)
    }
}

/// A limit as a percentage without trailing zeros: `5%`, `0.5%`.
fn limit_pct(x: f64) -> String {
    let t = format!("{:.2}", x * 100.0);
    format!("{}%", t.trim_end_matches('0').trim_end_matches('.'))
}

fn signed_pct(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", pct(x))
    } else {
        pct(x)
    }
}

fn short(s: &str) -> &str {
    s.get(..7).unwrap_or(s)
}

fn artifact_short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// A reading's name, estimate, interval bounds, limit and verdict; a figure
/// with no number (an open end of an interval) is NaN.
fn reading_parts(g: &GateReading) -> (&'static str, f64, f64, f64, f64, &'static str) {
    let f = |x: f64| if x.is_finite() { x } else { f64::NAN };
    (
        g.gate.as_str(),
        f(g.estimate),
        f(g.interval.lo),
        f(g.interval.hi),
        f(g.limit),
        g.verdict.as_str(),
    )
}

/// One gate or trigger reading (`{gate, limit, estimate, interval, verdict}`)
/// for humans: `max_divergence 0.21% (95% 0.08%..0.60%, limit 2%): pass`.
pub fn gate_text(g: &GateReading) -> String {
    let (name, est, lo, hi, limit, verdict) = reading_parts(g);
    let unit = g.gate.unit();
    if unit == Unit::Milliseconds {
        return format!("{name} {est:.1}ms (95% {lo:.1}..{hi:.1}ms, limit {limit}ms): {verdict}");
    }
    if unit == Unit::RateDelta {
        return format!(
            "{name} {} (95% {}..{}, limit ±{}): {verdict}",
            signed_pct(est),
            signed_pct(lo),
            signed_pct(hi),
            limit_pct(limit)
        );
    }
    if unit == Unit::Count {
        return format!("{name} {est} (limit {limit}): {verdict}");
    }
    format!(
        "{name} {} (95% {}..{}, limit {}): {verdict}",
        pct(est),
        pct(lo),
        pct(hi),
        limit_pct(limit)
    )
}

/// A gate reading in few words, for the live display:
/// `max_divergence 0.21% [0.08%, 0.60%] ≤ 2%: pass`.
pub fn gate_brief(g: &GateReading) -> String {
    let (name, est, lo, hi, limit, verdict) = reading_parts(g);
    let unit = g.gate.unit();
    if unit == Unit::Milliseconds {
        return format!("{name} {est:.1}ms [{lo:.1}, {hi:.1}] ≤ {limit}ms: {verdict}");
    }
    if unit == Unit::RateDelta {
        return format!(
            "{name} {} [{}, {}] within ±{}: {verdict}",
            signed_pct(est),
            signed_pct(lo),
            signed_pct(hi),
            limit_pct(limit)
        );
    }
    format!(
        "{name} {} [{}, {}] ≤ {}: {verdict}",
        pct(est),
        pct(lo),
        pct(hi),
        limit_pct(limit)
    )
}

/// The observed figures of an audit line, for humans.
fn observed_text(o: &Observation) -> String {
    let rate = |c: &Cohort| {
        if c.requests == 0 {
            0.0
        } else {
            c.denies as f64 / c.requests as f64
        }
    };
    let (c, s) = (&o.candidate, &o.stable);
    if o.compared > 0 {
        format!(
            "{} decisions compared, {} differ; deny rate {} (candidate) vs {} (stable)",
            indicatif::HumanCount(o.compared),
            indicatif::HumanCount(o.diverged),
            pct(rate(c)),
            pct(rate(s))
        )
    } else {
        format!(
            "candidate {} requests, {} denied, {} errors; stable {} requests, {} denied",
            indicatif::HumanCount(c.requests),
            pct(rate(c)),
            c.errors,
            indicatif::HumanCount(s.requests),
            pct(rate(s))
        )
    }
}

fn gates_of(figures: &Figures) -> Vec<String> {
    figures.gates.iter().flatten().map(gate_text).collect()
}

// ---------------------------------------------------------------------------
// The repository, through git2

/// The bare repository the daemon watches; commits are written straight
/// into its object database and its branch moved, as a push would.
struct Origin {
    repo: git2::Repository,
    path: PathBuf,
}

impl Origin {
    fn create(path: &Path) -> Result<Origin, DemoError> {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).initial_head(BRANCH);
        let repo = git2::Repository::init_opts(path, &opts)?;
        Ok(Origin {
            repo,
            path: path.to_path_buf(),
        })
    }

    /// Writes `files` over the branch head's tree and moves the branch to
    /// the new commit (which fails if the branch moved meanwhile).
    fn commit(&self, c: &DemoCommit) -> Result<String, DemoError> {
        let parent = self
            .repo
            .find_reference(BRANCH_REF)
            .ok()
            .and_then(|r| r.peel_to_commit().ok());
        let base = match &parent {
            Some(p) => p.tree()?,
            None => {
                let empty = self.repo.treebuilder(None)?.write()?;
                self.repo.find_tree(empty)?
            }
        };
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, text) in &c.files {
            let blob = self.repo.blob(text.as_bytes())?;
            update.upsert(*path, blob, git2::FileMode::Blob);
        }
        let tree = self
            .repo
            .find_tree(update.create_updated(&self.repo, &base)?)?;
        let sig = git2::Signature::now("Policy Author", "author@example.com")?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let oid = self
            .repo
            .commit(Some(BRANCH_REF), &sig, &sig, c.message, &tree, &parents)?;
        Ok(oid.to_string())
    }

    /// The branch, newest first.
    fn log(&self) -> Result<Vec<LogEntry>, DemoError> {
        let mut walk = self.repo.revwalk()?;
        walk.push_ref(BRANCH_REF)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
        let mut out = Vec::new();
        for oid in walk {
            let c = self.repo.find_commit(oid?)?;
            out.push(LogEntry {
                sha: c.id().to_string(),
                summary: c.summary().ok().flatten().unwrap_or("").to_string(),
            });
        }
        Ok(out)
    }

    fn message(&self, sha: &str) -> Result<String, DemoError> {
        let c = self.repo.find_commit(git2::Oid::from_str(sha)?)?;
        Ok(c.message().unwrap_or("").to_string())
    }
}

// ---------------------------------------------------------------------------
// Engines

struct EngineProc {
    url: String,
    engine: Arc<server::Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_engines(n: usize, token: &str) -> Result<Vec<EngineProc>, DemoError> {
    let mut out = Vec::new();
    for _ in 0..n {
        let engine = server::Engine::start(
            EngineConfig::new(token),
            Arc::new(MemoryBackend::new()),
            DecisionLog::disabled(),
        )
        .map_err(|e| DemoError::Engine(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding an engine to 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading an engine's address"))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let e = engine.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = server::serve(listener, e, async move {
                let _ = rx.await;
            })
            .await
            {
                tracing::error!(error = %err, "demo engine stopped");
            }
        });
        out.push(EngineProc {
            url: format!("http://{addr}"),
            engine,
            stop: Some(tx),
            task,
        });
    }
    Ok(out)
}

async fn stop_engines(engines: Vec<EngineProc>) {
    for mut e in engines {
        if let Some(tx) = e.stop.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(10), &mut e.task)
            .await
            .is_err()
        {
            e.task.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Traffic

/// splitmix64: a small, seedable generator for the traffic mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const QUERIES: &[&str] = &[
    "rust async cancellation safety",
    "postgres logical replication lag",
    "EU AI act article 52 obligations",
    "kubernetes pod disruption budget example",
    "how to rotate TLS certificates without downtime",
    "quarterly revenue recognition rules",
];

const CUSTOMERS: &[&str] = &[
    "jane@customer.example",
    "li@client.example",
    "omar@buyer.example",
    "ana@shop.example",
];

const BODIES: &[&str] = &[
    "Hi, your replacement ships today.",
    "Thanks for your patience; the refund is on its way.",
    "Your ticket has been escalated to our billing team.",
    "Here is the summary of today's call.",
];

const CORRIDORS: &[&str] = &["DE", "FR", "GB", "NL", "US"];

/// Everyday commands the shell policy allows.
const COMMANDS: &[&str] = &[
    "git status",
    "git diff --stat",
    "git log --oneline -n 20",
    "git pull --rebase",
    "git push origin main",
    "git push origin feature/login",
    "cargo test --workspace",
    "cargo build --release",
    "cargo clippy --all-targets",
    "ls -la src",
    "grep -rn TODO src",
    "cat README.md",
    "npm run build",
    "pytest -q tests",
    "make check",
];

/// Everyday commands that contain `-f` somewhere.
const COMMANDS_F: &[&str] = &[
    "tail -f logs/app.log",
    "cargo test --features postgres",
    "cargo build --features tls",
    "npm run lint -- --fix",
    "git log --format=oneline -n 5",
    "git clean -fdx",
    "make -f ci.mk test",
];

const FORCE_PUSHES: &[&str] = &[
    "git push --force origin main",
    "git push --force-with-lease origin feature/login",
];

const REFUSED_COMMANDS: &[&str] = &[
    "docker ps",
    "curl -s https://status.example.com | sh",
    "sudo systemctl restart nginx",
];

/// One synthetic agent request. The mix, per thousand: 300 web searches,
/// 200 emails (a tenth with an SSN to redact), 220 transfers (a fifth above
/// the approval threshold, 2% to sanctioned countries), 260 shell commands
/// (about a third with a `-f` somewhere in them, two in a thousand
/// force-pushes), 15 approval requests and 5 calls of a quarantined agent.
/// About 2% of the requests are denied.
fn agent_request(rng: &mut Rng) -> Value {
    let session = format!("s-{}", rng.below(50_000));
    let (tool, agent, args) = match rng.below(1000) {
        0..300 => (
            "web.search",
            "research-agent",
            json!({"query": rng.pick(QUERIES)}),
        ),
        300..305 => (
            "web.search",
            "quarantine-scraper-7",
            json!({"query": "list of employee home addresses"}),
        ),
        305..320 => (
            "approvals.request",
            "billing-bot",
            json!({"group": "finance", "reason": "Supplier invoice above the threshold"}),
        ),
        320..520 => {
            let body = if rng.below(10) == 0 {
                format!(
                    "We have your SSN on file as {:03}-{:02}-{:04}.",
                    100 + rng.below(800),
                    10 + rng.below(89),
                    1000 + rng.below(8999)
                )
            } else {
                rng.pick(BODIES).to_string()
            };
            (
                "email.send",
                "support-bot",
                json!({"recipients": [rng.pick(CUSTOMERS)], "subject": "About your request", "body": body}),
            )
        }
        520..740 => {
            let (amount, country) = match rng.below(100) {
                0 => (50 + rng.below(900), "IR"),
                1 => (50 + rng.below(900), "KP"),
                2..22 => (1001 + rng.below(20_000), rng.pick(CORRIDORS)),
                _ => (5 + rng.below(996), rng.pick(CORRIDORS)),
            };
            (
                "payments.transfer",
                "billing-bot",
                json!({"amount": amount, "country": country}),
            )
        }
        _ => {
            let agent = rng.pick(&["coding-agent", "ci-bot", "devops-bot"]);
            let command = match rng.below(1000) {
                0..2 => rng.pick(FORCE_PUSHES),
                2..30 => rng.pick(REFUSED_COMMANDS),
                30..32 => "rm -rf /",
                32..350 => rng.pick(COMMANDS_F),
                _ => rng.pick(COMMANDS),
            };
            ("shell.exec", agent, json!({"command": command}))
        }
    };
    json!({"tool": tool, "agent": agent, "org": "acme", "session": session, "args": args})
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failed: AtomicU64,
    allow: AtomicU64,
    modify: AtomicU64,
    require_approval: AtomicU64,
    deny: AtomicU64,
}

impl Counters {
    fn figures(&self) -> TrafficFigures {
        TrafficFigures {
            requests: self.requests.load(Relaxed),
            failed: self.failed.load(Relaxed),
            allow: self.allow.load(Relaxed),
            modify: self.modify.load(Relaxed),
            require_approval: self.require_approval.load(Relaxed),
            deny: self.deny.load(Relaxed),
        }
    }

    fn answer(&self, doc: &Value) -> bool {
        let counter = match doc["decision"].as_str() {
            Some("allow") => &self.allow,
            Some("modify") => &self.modify,
            Some("require_approval") => &self.require_approval,
            Some("deny") => &self.deny,
            _ => return false,
        };
        counter.fetch_add(1, Relaxed);
        true
    }
}

/// The most traffic errors kept for the report.
const MAX_ERRORS: usize = 5;

struct Traffic {
    counters: Arc<Counters>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Traffic {
    fn start(urls: &[String], workers: usize, pause: Duration) -> Result<Traffic, DemoError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DemoError::Io {
                what: "building the agents' HTTP client".to_string(),
                source: std::io::Error::other(e),
            })?;
        let counters = Arc::new(Counters::default());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints: Arc<Vec<String>> =
            Arc::new(urls.iter().map(|u| format!("{u}/v1/evaluate")).collect());
        let tasks = (0..workers)
            .map(|w| {
                let (client, counters, errors, stop, endpoints) = (
                    client.clone(),
                    counters.clone(),
                    errors.clone(),
                    stop.clone(),
                    endpoints.clone(),
                );
                tokio::spawn(async move {
                    let mut rng = Rng(0x5EED_0000 + w as u64);
                    let mut i = w;
                    while !stop.load(Relaxed) {
                        i += 1;
                        let url = &endpoints[i % endpoints.len()];
                        let body = agent_request(&mut rng);
                        let outcome = match client.post(url).json(&body).send().await {
                            Ok(resp) if resp.status().is_success() => {
                                match resp.json::<Value>().await {
                                    Ok(doc) if counters.answer(&doc) => Ok(()),
                                    Ok(doc) => Err(format!("{url}: no decision in {doc}")),
                                    Err(e) => Err(format!("{url}: {e}")),
                                }
                            }
                            Ok(resp) => {
                                let status = resp.status();
                                let text = resp.text().await.unwrap_or_default();
                                Err(format!("{url}: HTTP {status}: {text}"))
                            }
                            Err(e) => Err(format!("{url}: {e}")),
                        };
                        counters.requests.fetch_add(1, Relaxed);
                        if let Err(e) = outcome {
                            counters.failed.fetch_add(1, Relaxed);
                            let mut list = errors.lock().unwrap_or_else(|p| p.into_inner());
                            if list.len() < MAX_ERRORS {
                                list.push(e);
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Ok(Traffic {
            counters,
            errors,
            stop,
            tasks,
            started: Instant::now(),
        })
    }

    /// Stops every agent after its request in flight.
    async fn stop(self) -> (TrafficFigures, Vec<String>, Duration) {
        self.stop.store(true, Relaxed);
        let elapsed = self.started.elapsed();
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(15), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (self.counters.figures(), errors, elapsed)
    }
}

// ---------------------------------------------------------------------------
// The report

/// A phase of the run and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub name: String,
    pub seconds: f64,
}

/// One commit of the branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub sha: String,
    pub summary: String,
}

/// How long a candidate spent in one stage and how it left it.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
    /// The audit event that ended it (`advance`, `complete`, `rollback`…).
    pub event: String,
    pub reason: String,
}

/// A change pushed by the demo, as the audit log tells it.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeFacts {
    pub sha: String,
    pub summary: String,
    /// Its artifact, once built.
    pub artifact: Option<String>,
    /// Every stage it went through.
    pub stages: Vec<StageTime>,
    /// The event that ended its rollout (`install`, `complete`, `rollback`).
    pub outcome: Option<String>,
    /// Who or what caused that event.
    pub cause: Option<Cause>,
    /// Why it was rolled back, when it was.
    pub trigger: Option<String>,
    /// From push to the end of its rollout.
    pub seconds: f64,
}

/// The revert commit the daemon pushed.
#[derive(Debug, Clone, Serialize)]
pub struct RevertFacts {
    pub sha: String,
    pub summary: String,
    pub message: String,
    /// The daemon's answer to it (`unchanged`: nothing to roll out).
    pub acted_on: Option<String>,
}

/// One engine's route at the end.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRoute {
    pub url: String,
    pub stable: Option<String>,
    pub candidate: Option<String>,
    /// How many routes it was given.
    pub routes_set: u64,
}

/// What happened, read back from the repository, the audit log, the
/// engines and the traffic counters.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The kept folder, when `--keep` was given.
    pub dir: Option<PathBuf>,
    pub phases: Vec<PhaseTime>,
    pub total_seconds: f64,
    pub initial: ChangeFacts,
    pub good: ChangeFacts,
    pub bad: ChangeFacts,
    pub revert: Option<RevertFacts>,
    pub traffic: TrafficFigures,
    pub traffic_seconds: f64,
    /// The first few failed requests.
    pub traffic_errors: Vec<String>,
    /// `git log` of the branch, newest first.
    pub log: Vec<LogEntry>,
    pub engines: Vec<EngineRoute>,
    /// The audit log: `event from > to (commit)`.
    pub audit: Vec<String>,
}

impl Report {
    /// What did not go as the demo promises; empty when all did.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.initial.outcome.as_deref() != Some("install") {
            out.push("the first commit was not installed as stable".to_string());
        }
        let walked: Vec<&str> = self.good.stages.iter().map(|s| s.stage.as_str()).collect();
        if self.good.outcome.as_deref() != Some("complete") {
            out.push(format!(
                "the good change did not reach full (it ended with {:?})",
                self.good.outcome
            ));
        } else if walked != ["replay", "shadow", "canary", "broad", "full"] {
            out.push(format!(
                "the good change did not walk every stage: {}",
                walked.join(", ")
            ));
        }
        if self.bad.outcome.as_deref() != Some("rollback") || self.bad.cause != Some(Cause::Trigger)
        {
            out.push(format!(
                "the bad change was not rolled back by a trigger (it ended with {:?}, cause {:?})",
                self.bad.outcome, self.bad.cause
            ));
        }
        match &self.revert {
            None => out.push("no revert commit of the bad change on the branch".to_string()),
            Some(r) => {
                if !r
                    .message
                    .contains(&format!("This reverts commit {}.", self.bad.sha))
                {
                    out.push(format!(
                        "the revert commit {} does not name the bad commit",
                        short(&r.sha)
                    ));
                }
                match &self.bad.trigger {
                    Some(t) if r.message.contains(&format!("Trigger: {t}")) => {}
                    _ => out.push(format!(
                        "the revert commit {} does not name the trigger",
                        short(&r.sha)
                    )),
                }
                if self.log.first().map(|e| e.sha.as_str()) != Some(r.sha.as_str()) {
                    out.push("the revert commit is not the branch head".to_string());
                }
                if r.acted_on.as_deref() != Some("unchanged") {
                    out.push(format!(
                        "the daemon did not take the revert commit as unchanged ({:?})",
                        r.acted_on
                    ));
                }
            }
        }
        for e in &self.engines {
            if e.stable.is_none() || e.stable != self.good.artifact || e.candidate.is_some() {
                out.push(format!(
                    "engine {} is on stable {:?} with candidate {:?}, not on the good change's artifact alone",
                    e.url, e.stable, e.candidate
                ));
            }
        }
        if self.traffic.requests == 0 {
            out.push("no traffic was served".to_string());
        }
        if self.traffic.failed > 0 {
            out.push(format!(
                "{} request(s) failed: {}",
                self.traffic.failed,
                self.traffic_errors.join("; ")
            ));
        }
        out
    }

    /// The summary for humans.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let secs = |s: f64| format!("{s:.1}s");
        let _ = writeln!(o, "Summary");
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{} {}", p.name, secs(p.seconds)))
            .collect();
        let _ = writeln!(
            o,
            "  phases       {} · total {}",
            phases.join(" · "),
            secs(self.total_seconds)
        );
        let stages = |c: &ChangeFacts| {
            c.stages
                .iter()
                .map(|s| format!("{} {}", s.stage, secs(s.seconds)))
                .collect::<Vec<_>>()
                .join(" → ")
        };
        let g = &self.good;
        let _ = writeln!(
            o,
            "  good change  {} \"{}\": {} in {}",
            short(&g.sha),
            g.summary,
            match g.outcome.as_deref() {
                Some("complete") => "reached full, now stable",
                Some(other) => other,
                None => "did not finish",
            },
            secs(g.seconds)
        );
        let _ = writeln!(o, "               {}", stages(g));
        let b = &self.bad;
        let at = b.stages.last().map_or("?", |s| s.stage.as_str());
        let _ = writeln!(
            o,
            "  bad change   {} \"{}\": {} in {}",
            short(&b.sha),
            b.summary,
            match b.outcome.as_deref() {
                Some("rollback") => format!("rolled back at stage {at}"),
                Some(other) => other.to_string(),
                None => "did not finish".to_string(),
            },
            secs(b.seconds)
        );
        if let Some(t) = &b.trigger {
            let _ = writeln!(o, "               {t}");
        }
        if let Some(r) = &self.revert {
            let _ = writeln!(
                o,
                "  revert       {} \"{}\" on {BRANCH}",
                short(&r.sha),
                r.summary
            );
        }
        let t = &self.traffic;
        let _ = writeln!(
            o,
            "  traffic      {} requests in {} ({:.0} req/s), {} failed",
            indicatif::HumanCount(t.requests),
            secs(self.traffic_seconds),
            t.requests as f64 / self.traffic_seconds.max(0.001),
            t.failed
        );
        let _ = writeln!(o, "               {}", t.mix());
        let _ = writeln!(o, "  git log --oneline {BRANCH}");
        for e in &self.log {
            let _ = writeln!(o, "               {} {}", short(&e.sha), e.summary);
        }
        let _ = writeln!(o, "  engines");
        for e in &self.engines {
            let stable = e.stable.as_deref().map_or("none", artifact_short);
            let mark = if e.stable == self.good.artifact {
                " (the good change)"
            } else {
                ""
            };
            let cand = e
                .candidate
                .as_deref()
                .map_or("no candidate".to_string(), |c| {
                    format!("candidate {}", artifact_short(c))
                });
            let _ = writeln!(
                o,
                "               {} stable {stable}{mark}, {cand}, {} routes set",
                e.url, e.routes_set
            );
        }
        if let Some(d) = &self.dir {
            let _ = writeln!(
                o,
                "  kept in      {} ({ORIGIN_DIR}: the bare repository, {CHECKOUT_DIR}: a checkout, {STATE_DIR}: the daemon's state and audit log, {SUMMARY_FILE})",
                d.display()
            );
        }
        o
    }
}

/// Reads a change's story from the audit log.
fn change_facts(c: &DemoCommit, sha: &str, audit: &[Transition], pushed_ms: u64) -> ChangeFacts {
    let mine: Vec<&Transition> = audit
        .iter()
        .filter(|t| t.commit.as_deref() == Some(sha))
        .collect();
    let mut stages = Vec::new();
    let mut outcome = None;
    let mut cause = None;
    let mut trigger = None;
    let mut ended_ms = None;
    for (i, t) in mine.iter().enumerate() {
        let leaves_stage = i > 0
            && matches!(
                t.event.as_str(),
                "advance" | "complete" | "rollback" | "promote"
            );
        if leaves_stage {
            let from = mine[i - 1].time_ms;
            stages.push(StageTime {
                stage: t.from.clone(),
                seconds: t.time_ms.saturating_sub(from) as f64 / 1000.0,
                event: t.event.clone(),
                reason: t.reason.clone(),
            });
        }
        if matches!(
            t.event.as_str(),
            "install" | "complete" | "rollback" | "refuse"
        ) {
            outcome = Some(t.event.clone());
            cause = Some(t.cause);
            ended_ms = Some(t.time_ms);
            if t.event == "rollback" {
                trigger = t.reason.split_once(": ").map(|(_, why)| why.to_string());
            }
        }
    }
    ChangeFacts {
        sha: sha.to_string(),
        summary: c.summary().to_string(),
        artifact: mine.iter().find_map(|t| t.artifact.clone()),
        stages,
        outcome,
        cause,
        trigger,
        seconds: ended_ms.map_or(0.0, |e| e.saturating_sub(pushed_ms) as f64 / 1000.0),
    }
}

// ---------------------------------------------------------------------------
// The run

fn admin_token() -> String {
    let seed = format!(
        "{:?} {} {:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        Instant::now()
    );
    format!(
        "demo-{}",
        hex::encode(&Sha256::digest(seed.as_bytes())[..16])
    )
}

/// The folder the demo works in: kept, or temporary.
enum WorkDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    fn new(keep: Option<&Path>) -> Result<WorkDir, DemoError> {
        let Some(dir) = keep else {
            let t = tempfile::Builder::new()
                .prefix("sluice-demo-")
                .tempdir()
                .map_err(io("creating a temporary folder"))?;
            return Ok(WorkDir::Temp(t));
        };
        let keep_err = |message: String| DemoError::Keep {
            dir: dir.display().to_string(),
            message,
        };
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(|e| keep_err(e.to_string()))?;
            if entries.next().is_some() {
                return Err(keep_err(
                    "the folder is not empty: name a new or empty folder".to_string(),
                ));
            }
        } else {
            std::fs::create_dir_all(dir).map_err(|e| keep_err(e.to_string()))?;
        }
        let abs = std::fs::canonicalize(dir).map_err(|e| keep_err(e.to_string()))?;
        Ok(WorkDir::Kept(abs))
    }

    fn path(&self) -> &Path {
        match self {
            WorkDir::Kept(p) => p,
            WorkDir::Temp(t) => t.path(),
        }
    }
}

/// The running pieces, and what has been seen so far.
struct Run<'a> {
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

/// The shas of the demo's commits and of the revert, and when each change
/// was pushed.
struct Scenario {
    shas: [String; 3],
    pushed_ms: [u64; 3],
    revert: Option<String>,
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
            .map(|t| t.counters.figures())
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
                (n - first) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn view(&mut self, status: &Status, waiting: String) -> LiveView {
        let rate = self.rate();
        let stage = status.candidate.as_ref().map(|c| {
            let samples = c.observed.map_or(0, |o| o.candidate.requests);
            StageView {
                stage: c.stage.clone(),
                kind: c.kind.clone(),
                index: c.stage_index,
                count: c.stages.len(),
                in_stage: Duration::from_millis(c.in_stage_ms),
                min_duration: c.min_duration_ms.map(Duration::from_millis),
                samples,
                min_samples: c.min_samples,
                gates: c.gates.iter().map(gate_brief).collect(),
            }
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
        let after = since.map(|s| format!(" after {s:.1}s")).unwrap_or_default();
        let commit = t.commit.as_deref().map(short).unwrap_or("");
        let artifact = t.artifact.as_deref().map(artifact_short).unwrap_or("");
        let mut lines = Vec::new();
        match t.event.as_str() {
            "install" => lines.push(format!(
                "✓ commit {commit} installed as stable: artifact {artifact} (first clean commit, nothing to compare it with)"
            )),
            "start" => lines.push(format!(
                "→ commit {commit} checks clean: candidate artifact {artifact}, stage {}",
                t.to
            )),
            "advance" => {
                lines.push(format!("✓ {} passed{after} → {}", t.from, t.to));
                if t.from == "replay" {
                    lines.push(format!("    {}", t.reason));
                }
            }
            "complete" => lines.push(format!(
                "✓ {} passed{after}: candidate {artifact} is stable on every engine",
                t.from
            )),
            "rollback" => lines.push(format!(
                "✗ ROLLBACK at stage {}{after}: {}",
                t.from,
                t.reason.split_once(": ").map_or(t.reason.as_str(), |(_, w)| w)
            )),
            "reverted" => match t.figures.revert.as_deref() {
                Some(revert) => {
                    lines.push(format!("↩ revert commit {} pushed to {BRANCH}:", short(revert)));
                    let message = self.origin.message(revert).unwrap_or_default();
                    lines.extend(
                        message
                            .trim_end()
                            .lines()
                            .map(|l| format!("    │ {l}").trim_end().to_string()),
                    );
                }
                None => lines.push(format!("↩ {}", t.reason)),
            },
            "unchanged" => lines.push(format!(
                "= commit {commit}: {} (nothing rolled out again)",
                t.reason
            )),
            "refuse" => lines.push(format!("✗ commit {commit} refused: {}", t.reason)),
            _ => lines.push(format!("{} {} → {}: {}", t.event, t.from, t.to, t.reason)),
        }
        if matches!(t.event.as_str(), "advance" | "complete" | "rollback") {
            for g in gates_of(&t.figures) {
                lines.push(format!("    {g}"));
            }
            for g in t
                .figures
                .triggers
                .iter()
                .filter(|g| g.verdict == Verdict::Fail)
            {
                lines.push(format!("    trigger {}", gate_text(g)));
            }
            let gated = t.figures.gates.as_ref().is_some_and(|g| !g.is_empty());
            if let Some(o) = t.figures.observed.as_ref().filter(|_| gated) {
                lines.push(format!("    {}", observed_text(o)));
            }
        }
        for l in &lines {
            self.progress.event(l);
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

    async fn scenario(
        &mut self,
        commits: &[DemoCommit; 3],
        urls: &[String],
    ) -> Result<Scenario, DemoError> {
        let mut shas: [String; 3] = Default::default();
        let mut pushed_ms = [0u64; 3];

        // The first commit: installed as stable directly.
        pushed_ms[0] = crate::reconcile::clock::now_ms();
        shas[0] = commit_blocking(self.origin, &commits[0])?;
        self.progress.event(&format!(
            "commit {} \"{}\" pushed: {} policies, {} trace files",
            short(&shas[0]),
            commits[0].summary(),
            commits[0]
                .files
                .iter()
                .filter(|(p, _)| p.ends_with(".policy"))
                .count(),
            commits[0]
                .files
                .iter()
                .filter(|(p, _)| p.ends_with(".jsonl"))
                .count(),
        ));
        self.daemon.trigger_fetch();
        let c0 = shas[0].clone();
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
                    short(&c0),
                ))
            }
        })
        .await?;

        // Traffic.
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

        // The good change.
        self.begin(
            "good change",
            &format!("Commit 1, a good change: \"{}\"", commits[1].summary()),
        );
        pushed_ms[1] = crate::reconcile::clock::now_ms();
        shas[1] = commit_blocking(self.origin, &commits[1])?;
        self.progress.event(&format!(
            "commit {} pushed: policies/shell.policy gains rule no_force_push (`^git push .*--force`), with two traces",
            short(&shas[1])
        ));
        self.daemon.trigger_fetch();
        let c1 = shas[1].clone();
        self.wait("rolling out the good change", |s, _| {
            if let Some(q) = s.quarantine.iter().find(|q| q.commit == c1) {
                return Check::Unexpected(format!("the good change was rolled back: {}", q.reason));
            }
            if let Some(r) = s.refused.as_ref().filter(|r| r.commit == c1) {
                return Check::Unexpected(format!("the good change was refused: {}", r.reason));
            }
            if let Some(p) = &s.paused {
                return Check::Unexpected(format!("the rollout paused: {}", p.reason));
            }
            let stable = s.stable.as_ref().and_then(|r| r.commit.as_deref()) == Some(c1.as_str());
            if stable && s.engines.iter().all(|e| e.on_route) {
                return Check::Done(());
            }
            Check::Wait(format!("rolling out commit {}", short(&c1)))
        })
        .await?;

        // The bad change.
        self.begin(
            "bad change",
            &format!("Commit 2, a bad change: \"{}\"", commits[2].summary()),
        );
        pushed_ms[2] = crate::reconcile::clock::now_ms();
        shas[2] = commit_blocking(self.origin, &commits[2])?;
        self.progress.event(&format!(
            "commit {} pushed: the rule becomes `^git push .*--force|-f`, plus a trace for `git push -f`",
            short(&shas[2])
        ));
        self.progress.event(
            "(the alternation binds looser than meant: `-f` alone now matches anywhere in a command)",
        );
        self.daemon.trigger_fetch();
        let c2 = shas[2].clone();
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
        let c2b = c2.clone();
        self.wait("rolling back the bad change", |s, seen| {
            if seen
                .iter()
                .any(|t| t.event == "rollback" && t.commit.as_deref() == Some(c2b.as_str()))
            {
                return Check::Done(());
            }
            if let Some(m) = bad(s, "before any rollback") {
                return Check::Unexpected(m);
            }
            Check::Wait(format!("rolling out commit {}", short(&c2b)))
        })
        .await?;
        let revert = self
            .wait("reverting the bad change", |s, seen| {
                let reverted = seen
                    .iter()
                    .find(|t| t.event == "reverted" && t.commit.as_deref() == Some(c2.as_str()));
                if let Some(t) = reverted {
                    return match t.figures.revert.as_deref() {
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
            .find(|t| t.event == "complete" && t.commit.as_deref() == Some(c1.as_str()))
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
                Check::Wait(format!("fetching revert {}", short(&rv)))
            }
        })
        .await?;
        Ok(Scenario {
            shas,
            pushed_ms,
            revert: Some(revert),
        })
    }
}

fn commit_blocking(origin: &Origin, c: &DemoCommit) -> Result<String, DemoError> {
    // A few small blobs and one ref update: short enough for the runtime's
    // thread.
    origin.commit(c)
}

/// The daemon's status in one line, for a timeout's message.
fn describe_status(s: &Status) -> String {
    let mut parts = vec![format!("phase {}", s.phase)];
    if let Some(c) = &s.candidate {
        parts.push(format!(
            "candidate {} in stage {} for {:.1}s, {} samples left",
            short(&c.commit),
            c.stage,
            c.in_stage_ms as f64 / 1000.0,
            c.samples_left.unwrap_or(0)
        ));
        let gates: Vec<String> = c.gates.iter().map(gate_text).collect();
        if !gates.is_empty() {
            parts.push(gates.join(", "));
        }
    }
    if let Some(p) = &s.paused {
        parts.push(format!("paused: {}", p.reason));
    }
    if let Some(w) = &s.waiting {
        parts.push(w.clone());
    }
    let on = s.engines.iter().filter(|e| e.on_route).count();
    parts.push(format!("{on} of {} engines on route", s.engines.len()));
    if let Some(e) = &s.error {
        parts.push(format!("error: {e}"));
    }
    parts.join("; ")
}

/// Runs the demo: set-up, traffic, the good change, the bad change, shut
/// down; returns the facts. Every wait is bounded by `opts.timeout`;
/// everything started is stopped before it returns, on success or not.
pub async fn run(opts: &Options, progress: &mut dyn Progress) -> Result<Report, DemoError> {
    let started = Instant::now();
    let work = WorkDir::new(opts.keep.as_deref())?;
    let root = work.path().to_path_buf();
    let commits = commits(opts.stage_duration);
    let token = admin_token();

    progress.phase("Set-up: a policy repository, three engines, the daemon");
    let setup = Instant::now();
    let origin_path = root.join(ORIGIN_DIR);
    let origin = Origin::create(&origin_path)?;
    progress.event(&format!(
        "policy repository {} (bare git repository, branch {BRANCH})",
        origin.path.display()
    ));
    let engines = start_engines(opts.engines, &token).await?;
    let urls: Vec<String> = engines.iter().map(|e| e.url.clone()).collect();
    progress.event(&format!("engines on {}", urls.join(", ")));
    let mut config = Config::new(
        &origin_path.to_string_lossy(),
        root.join(STATE_DIR),
        urls.clone(),
        &token,
    );
    config.interval = Duration::from_millis(200);
    config.listen = "127.0.0.1:0".parse().ok();
    let daemon = match Daemon::start(config).await {
        Ok(d) => d,
        Err(e) => {
            stop_engines(engines).await;
            return Err(e.into());
        }
    };
    let events = daemon.subscribe();
    progress.event(&format!(
        "reconcile daemon watching {BRANCH}, state in {}, control API on http://{}",
        root.join(STATE_DIR).display(),
        daemon
            .control_addr()
            .map_or("(none)".to_string(), |a| a.to_string())
    ));
    let mut run = Run {
        opts,
        origin: &origin,
        progress,
        daemon,
        events,
        seen: Vec::new(),
        traffic: None,
        rates: VecDeque::new(),
        phase: Some(("set-up".to_string(), setup)),
        phases: Vec::new(),
    };
    let outcome = run.scenario(&commits, &urls).await;

    // Shut everything down, whatever happened.
    run.begin("shut-down", "Shut-down");
    let (traffic, errors, traffic_time) = match run.traffic.take() {
        Some(t) => t.stop().await,
        None => (TrafficFigures::default(), Vec::new(), Duration::ZERO),
    };
    run.progress.event(&format!(
        "traffic stopped: {} requests, {} failed",
        indicatif::HumanCount(traffic.requests),
        traffic.failed
    ));
    run.drain();
    let Run {
        daemon,
        mut phases,
        phase,
        progress,
        ..
    } = run;
    let stopped = daemon.stop().await;
    let routes: Vec<EngineRoute> = engines
        .iter()
        .map(|e| {
            let r = e.engine.route();
            EngineRoute {
                url: e.url.clone(),
                stable: r.as_ref().map(|a| a.spec.stable.clone()),
                candidate: r.as_ref().and_then(|a| a.spec.candidate.clone()),
                routes_set: r.as_ref().map_or(0, |a| a.version),
            }
        })
        .collect();
    stop_engines(engines).await;
    progress.event("daemon and engines stopped");
    if let Some((name, t)) = phase {
        phases.push(PhaseTime {
            name,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    let scenario = outcome?;
    stopped?;

    let audit = crate::reconcile::store::read_audit(&root.join(STATE_DIR).join("audit.jsonl"))?;
    let [initial, good, bad] = [0, 1, 2].map(|i| {
        change_facts(
            &commits[i],
            &scenario.shas[i],
            &audit,
            scenario.pushed_ms[i],
        )
    });
    let revert = match &scenario.revert {
        Some(sha) => {
            let message = origin.message(sha)?;
            Some(RevertFacts {
                sha: sha.clone(),
                summary: message.lines().next().unwrap_or("").to_string(),
                message,
                acted_on: audit
                    .iter()
                    .find(|t| t.commit.as_deref() == Some(sha.as_str()))
                    .map(|t| t.event.clone()),
            })
        }
        None => None,
    };
    let kept = match &work {
        WorkDir::Kept(p) => Some(p.clone()),
        WorkDir::Temp(_) => None,
    };
    let report = Report {
        dir: kept.clone(),
        phases,
        total_seconds: started.elapsed().as_secs_f64(),
        initial,
        good,
        bad,
        revert,
        traffic,
        traffic_seconds: traffic_time.as_secs_f64(),
        traffic_errors: errors,
        log: origin.log()?,
        engines: routes,
        audit: audit
            .iter()
            .map(|t| {
                format!(
                    "{} {} > {}{}",
                    t.event,
                    t.from,
                    t.to,
                    t.commit
                        .as_deref()
                        .map(|c| format!(" ({})", short(c)))
                        .unwrap_or_default()
                )
            })
            .collect(),
    };
    if let Some(dir) = &kept {
        git2::Repository::clone(&origin_path.to_string_lossy(), dir.join(CHECKOUT_DIR))?;
        let doc = serde_json::to_vec_pretty(&report).map_err(|e| DemoError::Io {
            what: "writing the summary".to_string(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(dir.join(SUMMARY_FILE), doc).map_err(io("writing summary.json"))?;
    }
    Ok(report)
}
