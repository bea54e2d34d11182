//! The reconcile daemon (`sluice reconcile`, SPEC §6): watches a branch of
//! a git repository and drives a fleet of engines through the rollout of
//! each new artifact, stage by stage, rolling back (and reverting the
//! commit) when the evidence says so.
//!
//! The loop is level-triggered, in the manner of a Kubernetes controller:
//! every iteration reads the desired state (the branch head, through
//! [`git`]) and the observed state (every engine's route and figures,
//! through [`client`]), moves engines that are not on the route the state
//! asks for, and takes **at most one** transition of the pure state machine
//! ([`crate::rollout::machine`]). A transition is persisted ([`store`])
//! *before* anything acts on it; after one the loop runs again at once,
//! otherwise it waits for the interval, a git hook or an operator command.
//!
//! The daemon:
//! - [`daemon`]: [`Daemon::start`] sets it up (state folder, mirror, control
//!   API) and returns a handle; [`run`] runs it until a shutdown future
//!   completes.
//! - `runner`: the loop itself: one iteration, one step of the machine,
//!   persisting a transition and acting on it.
//! - `converge`: the engines' side: reading every engine, moving engines
//!   onto the desired route, the fleet's observation.
//! - `branch`: the branch's side: fetching, building new heads in the
//!   background, landing reverts.
//! - `publish`: the status document, once per iteration.
//! - `gitcall`: git's network calls (fetch, push) on threads of their own,
//!   with a timeout, never awaited by the loop.
//! - `collect`: what the loop keeps and nothing more: the git mirror
//!   repacked, artifacts in the state folder, in memory and on every engine
//!   cut to those the state may still need.
//!
//! Its parts:
//! - [`git`]: the bare mirror (fetch, read a commit's tree, revert + push).
//! - [`remote`]: what `--repo` names, the credentials and trust it is
//!   reached with, and the one redaction of what is shown of it.
//! - [`build`]: compile, check and replay a commit.
//! - [`client`]: [`client::EngineClient`] and its HTTP implementation.
//! - [`observe`]: the fleet's figures summed into one observation.
//! - [`store`]: `state.json`, `audit.jsonl`, stored artifacts.
//! - [`lease`]: the daemon's identity and the leases it holds on its
//!   engines (fencing).
//! - [`lock`]: one daemon per state folder (an OS file lock).
//! - [`clock`]: where the daemon reads the time.
//! - [`api`]: the control API for `status`, `pause`, `resume`, `promote`,
//!   `rollback`, `unquarantine`, `revert skip|done` and git hooks.

pub mod access;
pub mod api;
mod branch;
pub mod build;
pub mod client;
pub mod clock;
mod collect;
pub mod control;
mod converge;
pub mod daemon;
pub mod err;
pub mod git;
mod gitcall;
pub mod lease;
pub mod lock;
pub mod metrics;
pub mod notify;
pub mod observe;
mod publish;
pub mod remote;
mod runner;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, SystemClock};
pub use daemon::{Daemon, run};
pub use err::ReconcileError;

/// The default address of the control API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7474";

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repository: a path, a `file://`, `http(s)://` or ssh URL
    /// (`remote`).
    pub repo: String,
    /// The credentials and trust the repository is reached with.
    pub git_auth: remote::GitAuth,
    pub branch: String,
    /// The engines' base URLs.
    pub engines: Vec<String>,
    /// The engines' admin token, also admitted by the control API.
    pub admin_token: String,
    /// The control API's operator token (commands, the hook, status).
    pub operator_token: Option<String>,
    /// The control API's read-only token (status).
    pub read_token: Option<String>,
    /// The secret of forges' webhook deliveries.
    pub webhook_secret: Option<String>,
    /// Where audit events are notified; `None` notifies nobody.
    pub notify: Option<notify::NotifyConfig>,
    pub state_dir: PathBuf,
    /// How often the branch is fetched and the engines read.
    pub interval: Duration,
    /// The control API's address; `None` serves none.
    pub listen: Option<SocketAddr>,
    /// What a connection to the control API may cost: timeouts and the
    /// connection cap.
    pub http: crate::engine::guard::HttpLimits,
    /// An engine decision log to replay against each candidate.
    pub decision_log: Option<PathBuf>,
    /// How long engines may be unreachable in a live stage before it pauses.
    pub engine_grace: Duration,
    /// How long one engine call may take.
    pub engine_timeout: Duration,
    /// How long an engine's lease lasts without renewal (`--lease`): past
    /// it, the engine drops the candidate and may be taken by another
    /// daemon. Renewed every third of it.
    pub lease: Duration,
    /// How long a git network call (fetch, revert push) may go unanswered
    /// before it is given up and shown as an error (`--git-timeout`). The
    /// loop never waits for git: this only bounds how long a hung remote
    /// goes unreported and holds up the next call.
    pub git_timeout: Duration,
    /// Take every engine's lease by force at start (`--take-over`), from a
    /// daemon that is gone or must give the fleet up.
    pub take_over: bool,
    /// Where the daemon reads the time: stage durations, grace periods,
    /// the times of audit lines.
    pub clock: Arc<dyn Clock>,
}

impl Config {
    /// A configuration with the defaults: branch `main`, a 1 s interval,
    /// the control API on [`DEFAULT_LISTEN`], a 10 s grace for unreachable
    /// engines, a 2 s timeout per engine call, a 30 s lease, a 30 s git
    /// timeout and the system's clock.
    pub fn new(repo: &str, state_dir: PathBuf, engines: Vec<String>, admin_token: &str) -> Config {
        Config {
            repo: repo.to_string(),
            git_auth: remote::GitAuth::default(),
            branch: "main".to_string(),
            engines,
            admin_token: admin_token.to_string(),
            operator_token: None,
            read_token: None,
            webhook_secret: None,
            notify: None,
            state_dir,
            interval: Duration::from_secs(1),
            listen: DEFAULT_LISTEN.parse().ok(),
            http: crate::engine::guard::HttpLimits::default(),
            decision_log: None,
            engine_grace: Duration::from_secs(10),
            engine_timeout: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            git_timeout: Duration::from_secs(30),
            take_over: false,
            clock: Arc::new(SystemClock),
        }
    }
}
