//! The commands: the `sluice` command line (clap), dispatch to one module
//! per command group, and exit statuses. With `main`, the only module that
//! prints; errors are typed below this module and become `anyhow` reports
//! here. It must not hold a command's logic: reading, checking, building and
//! the pull-request comparison live in the stages (`tree`, `pipeline`,
//! `review`, …), and the engine and the daemon are reached through their
//! clients (`reconcile::client`, `reconcile::control`).

mod check;
mod daemon;
mod demo;
mod engine;
mod eval;
mod gateway;
mod init;
mod output;
mod rollout;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

pub use check::{CheckArgs, CheckFormat};
pub use daemon::ReconcileArgs;
pub use demo::DemoArgs;
pub use engine::EngineArgs;
pub use gateway::{GatewayArgs, HookCommand};
pub use rollout::{DaemonArgs, RevertCommand, render_status};

use crate::reconcile::control::Operation;

/// Exit statuses shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Clean.
    Ok = 0,
    /// Findings of error severity, failing tests, or a refused request.
    Findings = 1,
    /// Usage, I/O or input error.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

// The `sluice` command line (a doc comment here would change `--help`).
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "AI-agent safety policies from git to production, with proof"
)]
pub struct Cli {
    /// The policy repository (the folder holding sluice.toml); by default
    /// the nearest folder holding one, from the current folder upwards.
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of `sluice test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    Human,
    Json,
    /// JUnit XML, for CI test reports.
    Junit,
    /// GitHub workflow annotations: an `::error` on the line of every
    /// failing case (paths relative to the git repository's root).
    Github,
}

/// Output formats of the commands other than `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

// The commands (each variant's doc comment is its help).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a policy repository in the current folder (or `--repo DIR`):
    /// sluice.toml, an example policy, its traces and a pull-request check
    /// for CI. Refuses to overwrite a file.
    Init,
    /// Check the whole policy set: language, types, versions; with `--base`,
    /// what a change introduces; with `--state`/`--engine`, what it does to
    /// live state.
    Check(CheckArgs),
    /// Compile the policy set into an artifact (canonical JSON with its hash).
    Compile {
        /// Write the artifact here instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Record this source commit in the artifact (not part of the hash).
        #[arg(long, value_name = "SHA")]
        commit: Option<String>,
    },
    /// Evaluate one request, or a file of JSON lines in order (limits count
    /// across lines).
    Eval {
        /// A JSON request, or JSON lines; `-` reads standard input.
        #[arg(value_name = "REQUEST.json")]
        request: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The evaluation time in seconds since the epoch (default: now).
        #[arg(long, value_name = "SECONDS")]
        now: Option<u64>,
    },
    /// Explain the decision for one request: every rule and limit, whether it
    /// matched and, when not, the first part of its condition that was false
    /// with the value it saw; the modified values; the final decision.
    Explain {
        /// A JSON request; `-` reads standard input.
        #[arg(value_name = "REQUEST.json")]
        request: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Show every rule and limit, not only those of the request's tool.
        #[arg(long)]
        all: bool,
        /// The evaluation time in seconds since the epoch (default: now).
        #[arg(long, value_name = "SECONDS")]
        now: Option<u64>,
    },
    /// Format policy files canonically (every `*.policy` of the repository,
    /// or the files named).
    Fmt {
        /// Change nothing; print how each file that is not formatted would
        /// change (a unified diff) and exit 1.
        #[arg(long)]
        check: bool,
        /// Policy files to format instead of the whole repository.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run the traces against the compiled set.
    Test {
        #[arg(long, value_enum, default_value_t = TestFormat::Human)]
        format: TestFormat,
        /// Also list the rules and limits no trace case exercises (matched
        /// by none of the cases' requests).
        #[arg(long)]
        coverage: bool,
    },
    /// Print a shell completion script (e.g. `sluice completions bash >
    /// ~/.local/share/bash-completion/completions/sluice`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run a policy engine: an HTTP server that holds artifacts, routes and
    /// evaluates requests. Stops cleanly on SIGINT or SIGTERM.
    Engine(Box<EngineArgs>),
    /// An MCP server in front of upstream MCP servers: their tools, named
    /// NAME.tool, each call decided by the policies before it is forwarded.
    Gateway(Box<GatewayArgs>),
    /// An agent integration's hook command (`sluice hook claude-code`):
    /// one tool call in, the decision out.
    Hook {
        #[command(subcommand)]
        command: HookCommand,
    },
    /// Watch a branch of the repository (`--repo`: a path, a file://,
    /// https:// or ssh:// URL, or git@host:org/repo.git) and roll each new
    /// artifact out to the engines, stage by stage.
    Reconcile(Box<ReconcileArgs>),
    /// The whole pipeline on this machine, with no setup: a temporary policy
    /// repository, three engines on loopback, the reconcile daemon and
    /// synthetic agent traffic; a good change rolls out to full, a bad one is
    /// rolled back and reverted on main. Ends with a summary.
    Demo(DemoArgs),
    /// Show the daemon's rollout: stage, gates with their figures, time and
    /// samples left.
    Status {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Pause the rollout: no stage advances and no new rollout starts
    /// (rollback triggers still fire).
    Pause {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused rollout.
    Resume {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Advance the candidate to its next stage now, skipping the current
    /// stage's gates (the audit log says so). An operator's pause stays.
    Promote {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Skip every stage up to and including this one (the last stage,
        /// e.g. `full`, makes the candidate stable at once; with nothing in
        /// flight, it installs the branch head waiting to roll out).
        #[arg(long, value_name = "STAGE", requires = "reason")]
        through: Option<String>,
        /// Why, for the audit log (required with `--through`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Roll back: every engine to the stable artifact, then a revert commit
    /// of the candidate's commit on the branch.
    Rollback {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Why, for the audit log and the revert commit.
        #[arg(long)]
        reason: Option<String>,
        /// The candidate meant (its commit or artifact, 7 characters or
        /// more): refused when another is in flight by the time the daemon
        /// takes the command. Without it, whatever is in flight then is
        /// rolled back.
        #[arg(long, value_name = "COMMIT|ARTIFACT")]
        candidate: Option<String>,
    },
    /// Lift the quarantine of a rolled-back commit or artifact, so that a
    /// commit producing it may be rolled out again.
    Unquarantine {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// The quarantined commit or artifact (7 characters or more).
        #[arg(value_name = "COMMIT|ARTIFACT")]
        target: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Settle a pending revert the daemon could not make: `skip` leaves the
    /// branch as it is, `done` says it was reverted by hand.
    Revert {
        #[command(subcommand)]
        command: RevertCommand,
    },
}

/// Runs one command and returns its exit status. Errors that stop the command
/// (unreadable repository, bad arguments) are printed here.
pub fn run(cli: Cli) -> ExitCode {
    let explicit = cli.repo.is_some();
    let repo = cli.repo.unwrap_or_else(find_repo);
    let result = match cli.command {
        Command::Init => init::cmd_init(&repo, explicit),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Explain {
            request,
            format,
            all,
            now,
        } => eval::cmd_explain(&repo, &request, format, all, now),
        Command::Check(args) => check::cmd_check(&repo, &args),
        Command::Compile { output, commit } => check::cmd_compile(&repo, output.as_deref(), commit),
        Command::Eval {
            request,
            format,
            now,
        } => eval::cmd_eval(&repo, &request, format, now),
        Command::Test { format, coverage } => test::cmd_test(&repo, format, coverage),
        Command::Fmt { check, files } => check::cmd_fmt(&repo, check, &files),
        Command::Engine(args) => engine::cmd_engine(*args),
        Command::Gateway(args) => gateway::cmd_gateway(&repo, *args),
        Command::Hook { command } => gateway::cmd_hook(&repo, command),
        Command::Reconcile(args) => daemon::cmd_reconcile(&repo, *args),
        Command::Demo(args) => demo::cmd_demo(&args),
        Command::Status { daemon, format } => rollout::cmd_status(&daemon, format),
        Command::Pause { daemon, reason } => {
            rollout::cmd_operator(&daemon, Operation::Pause { reason })
        }
        Command::Resume { daemon, reason } => {
            rollout::cmd_operator(&daemon, Operation::Resume { reason })
        }
        Command::Promote {
            daemon,
            through,
            reason,
        } => rollout::cmd_operator(&daemon, Operation::Promote { through, reason }),
        Command::Rollback {
            daemon,
            reason,
            candidate,
        } => rollout::cmd_operator(&daemon, Operation::Rollback { reason, candidate }),
        Command::Unquarantine {
            daemon,
            target,
            reason,
        } => rollout::cmd_operator(&daemon, Operation::Unquarantine { target, reason }),
        Command::Revert { command } => rollout::cmd_revert(command),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprint!("{}", output::error_text(&e));
            Exit::Usage.into()
        }
    }
}

/// The repository when `--repo` is not given: the nearest folder holding
/// `sluice.toml`, from the current folder upwards (as git finds `.git`);
/// the current folder when there is none (the command then says it is not
/// a policy repository).
fn find_repo() -> PathBuf {
    let here = PathBuf::from(".");
    let Ok(cwd) = std::env::current_dir() else {
        return here;
    };
    for (up, dir) in cwd.ancestors().enumerate() {
        if dir.join(crate::tree::PROJECT_FILE).is_file() {
            return if up == 0 { here } else { dir.to_path_buf() };
        }
    }
    here
}

/// The async runtime a command runs on: several threads for the servers,
/// one for a client's calls.
fn runtime(multi: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().context("starting the async runtime")
}
