//! `sluice demo` (SPEC §7): the whole pipeline on one machine, with no setup.
//!
//! An orchestration stage: it does I/O of every kind and decides nothing
//! itself. It makes a temporary policy repository (a bare git repository,
//! written with git2: no `git` command line needed), starts three engines
//! ([`crate::engine::server`]) on loopback, the reconcile daemon
//! ([`crate::reconcile::Daemon`]) watching the repository, and synthetic
//! agent traffic against the engines; then it pushes three commits:
//!
//! 1. a good change (agents may no longer force-push), which walks every
//!    stage of the plan to `full` and becomes stable;
//! 2. a bad change: the same rule extended to `git push -f` with a regex
//!    whose alternation binds looser than its author thought
//!    (`^git push .*--force|-f` also matches `tail -f`, `--features`,
//!    `--fix`, `--format`…). It passes every check and its own traces, but
//!    the shadow stage sees the candidate deny everyday commands: a gate
//!    fails, the engines go back to stable and the daemon pushes the revert
//!    commit on `main`;
//! 3. a governance change: the first commit observes newco's support mail
//!    (`[governance] observe`: answered `allow`, the policies' decision
//!    logged as `observed`); the third removes the scope, and enforcement
//!    walks every stage to `full` like any other change, its gates reading
//!    what enforcing changes.
//!
//! The repository's content is embedded (`src/demo/`). Progress goes to a
//! [`Progress`]; [`Console`] renders it with indicatif bars on a terminal and
//! as plain lines elsewhere. [`run`] returns a [`Report`] of facts read back
//! from the repository, the daemon's audit log, the engines and the traffic
//! counters; [`Report::problems`] says what, if anything, did not go as the
//! demo promises.
//!
//! This file holds the options, the errors and [`run`], which sets up,
//! plays the script and gathers the facts. The pieces:
//!
//! - `origin`: the embedded repository, its four commits, and the bare
//!   repository written with git2;
//! - `fleet`: the engines on loopback and the daemon;
//! - `traffic`: the synthetic agents and their counters;
//! - `scenario`: the script, its waits on the daemon and the shut-down;
//! - `console`: the [`Progress`] trait, its [`Console`], and the words for
//!   each transition;
//! - `figures`: every read of the daemon's untyped figures (gate readings,
//!   observed figures, a transition's `figures`), and their formatting;
//! - `report`: the [`Report`] and its judgement.

mod console;
mod facts;
mod figures;
mod fleet;
mod origin;
mod report;
mod scenario;
mod traffic;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use console::{Console, ConsoleMode, LiveView, Progress, StageView};
pub use facts::{EngineRoute, LogEntry, PhaseTime};
pub use figures::{gate_brief, gate_text};
pub use origin::{DemoCommit, commits};
pub use report::{ChangeFacts, Report, RevertFacts, StageTime};
pub use traffic::TrafficFigures;

use crate::engine::backend::redis::RedisSetupError;
use crate::engine::server::StartError;
use crate::reconcile::ReconcileError;
use fleet::{admin_token, start_daemon, start_engines, stop_engines};
use origin::Origin;
use report::{audit_lines, change_facts, revert_facts};
use scenario::Run;

/// The branch the daemon watches.
pub const BRANCH: &str = "main";

/// The bare repository's folder in the demo's folder.
pub const ORIGIN_DIR: &str = "policies.git";
/// A checkout of the branch, made at the end when the folder is kept.
pub const CHECKOUT_DIR: &str = "policies";
/// The daemon's state folder.
pub const STATE_DIR: &str = "state";
/// The report, written when the folder is kept.
pub const SUMMARY_FILE: &str = "summary.json";

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
    /// The engines' shared state: `None` for one state in this process;
    /// else a Redis URL (`redis://…`, `rediss://…`).
    pub state_backend: Option<String>,
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
            state_backend: None,
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
    Engine(#[source] StartError),
    #[error("the engines' state backend: {0}")]
    State(#[source] RedisSetupError),
    #[error("--keep `{dir}`: the folder is not empty: name a new or empty folder")]
    KeepNotEmpty { dir: String },
    #[error("--keep `{dir}`: {source}")]
    Keep {
        dir: String,
        #[source]
        source: std::io::Error,
    },
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
        let keep_err = |source: std::io::Error| DemoError::Keep {
            dir: dir.display().to_string(),
            source,
        };
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(keep_err)?;
            if entries.next().is_some() {
                return Err(DemoError::KeepNotEmpty {
                    dir: dir.display().to_string(),
                });
            }
        } else {
            std::fs::create_dir_all(dir).map_err(keep_err)?;
        }
        let abs = std::fs::canonicalize(dir).map_err(keep_err)?;
        Ok(WorkDir::Kept(abs))
    }

    fn path(&self) -> &Path {
        match self {
            WorkDir::Kept(p) => p,
            WorkDir::Temp(t) => t.path(),
        }
    }
}

/// Runs the demo: set-up, traffic, the good change, the bad change, the
/// enforce change, shut down; returns the facts. Every wait is bounded by `opts.timeout`;
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
    let state = root.join(STATE_DIR);
    let origin = Origin::create(&origin_path)?;
    progress.event(&format!(
        "policy repository {} (bare git repository, branch {BRANCH})",
        origin.path.display()
    ));
    let (backend, shared) = fleet::shared_state(opts.state_backend.as_deref(), &token)?;
    let engines = start_engines(opts.engines, &token, &backend).await?;
    let urls: Vec<String> = engines.iter().map(|e| e.url.clone()).collect();
    progress.event(&format!("engines on {}", urls.join(", ")));
    progress.event(&format!(
        "the engines share one state ({shared}): limits count and approvals wait fleet-wide"
    ));
    let daemon = match start_daemon(&origin_path, &state, &urls, &token).await {
        Ok(d) => d,
        Err(e) => {
            stop_engines(engines).await;
            return Err(e.into());
        }
    };
    progress.event(&format!(
        "reconcile daemon watching {BRANCH}, state in {}, control API on http://{}",
        state.display(),
        daemon
            .control_addr()
            .map_or("(none)".to_string(), |a| a.to_string())
    ));
    let mut run = Run::new(opts, &origin, progress, daemon, setup);
    let outcome = run.scenario(&commits, &urls).await;
    let down = run.shut_down(engines).await;
    let scenario = outcome?;
    down.daemon?;

    let audit = crate::reconcile::store::read_audit(&state.join("audit.jsonl"))?;
    let [c0, c1, c2, c3] = &commits;
    let revert = revert_facts(&scenario.revert, origin.message(&scenario.revert)?, &audit);
    let kept = match &work {
        WorkDir::Kept(p) => Some(p.clone()),
        WorkDir::Temp(_) => None,
    };
    let report = Report {
        dir: kept.clone(),
        phases: down.phases,
        total_seconds: started.elapsed().as_secs_f64(),
        initial: change_facts(c0, &scenario.initial, &audit),
        good: change_facts(c1, &scenario.good, &audit),
        bad: change_facts(c2, &scenario.bad, &audit),
        revert: Some(revert),
        enforce: change_facts(c3, &scenario.enforce, &audit),
        observed_before_enforce: scenario.before_enforce,
        traffic: down.traffic.figures,
        traffic_seconds: down.traffic.elapsed.as_secs_f64(),
        traffic_errors: down.traffic.errors,
        log: origin.log()?,
        engines: down.routes,
        audit: audit_lines(&audit),
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
