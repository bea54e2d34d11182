//! The commands. With `main`, the only module that prints; errors are typed
//! below this module and become `anyhow` reports here.

#![expect(
    clippy::indexing_slicing,
    reason = "indexes still to be replaced by checked access"
)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::analyze;
use crate::api::evaluate::EvalResponse;
use crate::api::replay::{ReplayReport, Verdict};
use crate::api::state::LiveState;
use crate::compile::artifact::Artifact;
use crate::diagnostic::{self, Finding, Sources, Summary};
use crate::eval::Evaluator;
use crate::eval::response::ResponseContext;
use crate::eval::state::MemoryLimitStore;
use crate::gitsrc::{GitRepo, GitSrcError};
use crate::model::ir::DecisionKind;
use crate::pipeline::{self, Checked};
use crate::replay;
use crate::repo;
use crate::review;

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

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "AI-agent safety policies from git to production, with proof"
)]
pub struct Cli {
    /// The policy repository (the folder holding sluice.toml).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// Output formats of `sluice check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Diagnostics with source snippets (miette).
    Human,
    /// One JSON document (SPEC §3).
    Json,
    /// A SARIF 2.1.0 log, for code scanning.
    Sarif,
    /// GitHub workflow annotations, and a Markdown summary appended to
    /// `$GITHUB_STEP_SUMMARY` when it is set.
    Github,
}

/// The flags of `sluice check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
    /// Fail on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
    /// The pull-request check: compare with this git revision and report
    /// what the change introduces, plus every error.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Check this git revision instead of the working tree (e.g. in a bare
    /// repository).
    #[arg(long, value_name = "REV")]
    pub head: Option<String>,
    /// Check against an engine's live state saved in FILE (the document of
    /// `GET /v1/state`).
    #[arg(long, value_name = "FILE", conflicts_with = "engine")]
    pub state: Option<PathBuf>,
    /// Check against the live state of the engine at URL (`GET URL/v1/state`).
    #[arg(long, value_name = "URL")]
    pub engine: Option<String>,
    /// The engine's admin token, for `--engine`.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Format policy files canonically (every `*.policy` of the repository,
    /// or the files named).
    Fmt {
        /// Change nothing; list the files that are not formatted and exit 1.
        #[arg(long)]
        check: bool,
        /// Policy files to format instead of the whole repository.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run the traces against the compiled set.
    Test {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run a policy engine: an HTTP server that holds artifacts, routes and
    /// evaluates requests (SPEC §5). Stops cleanly on SIGINT or SIGTERM.
    Engine(Box<EngineArgs>),
    /// Watch a branch of the repository (`--repo`: a path or file:// URL) and
    /// roll each new artifact out to the engines, stage by stage.
    Reconcile(ReconcileArgs),
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
    },
    /// Advance the candidate to its next stage now, skipping the current
    /// stage's gates (the audit log says so).
    Promote {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Roll back: every engine to the stable artifact, then a revert commit
    /// of the candidate's commit on the branch.
    Rollback {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Why, for the audit log and the revert commit.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Runs one command and returns its exit status. Errors that stop the command
/// (unreadable repository, bad arguments) are printed here.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check(args) => cmd_check(&cli.repo, &args),
        Command::Compile { output, commit } => cmd_compile(&cli.repo, output.as_deref(), commit),
        Command::Eval {
            request,
            format,
            now,
        } => cmd_eval(&cli.repo, &request, format, now),
        Command::Test { format } => cmd_test(&cli.repo, format),
        Command::Fmt { check, files } => cmd_fmt(&cli.repo, check, &files),
        Command::Engine(args) => cmd_engine(*args),
        Command::Reconcile(args) => cmd_reconcile(&cli.repo, args),
        Command::Demo(args) => cmd_demo(&args),
        Command::Status { daemon, format } => cmd_status(&daemon, format),
        Command::Pause { daemon, reason } => cmd_operator(&daemon, "pause", reason),
        Command::Resume { daemon } => cmd_operator(&daemon, "resume", None),
        Command::Promote { daemon } => cmd_operator(&daemon, "promote", None),
        Command::Rollback { daemon, reason } => cmd_operator(&daemon, "rollback", reason),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Usage.into()
        }
    }
}

/// Reads and checks the repository.
fn load_checked(repo_dir: &Path) -> anyhow::Result<Checked> {
    let files = repo::load(repo_dir)?;
    Ok(pipeline::check_sources(&files.project, &files.policies))
}

/// Reads, checks and compiles the repository; prints the findings and
/// returns `None` when the set has errors.
fn load_artifact(
    repo_dir: &Path,
    commit: Option<String>,
) -> anyhow::Result<Option<(Checked, Artifact)>> {
    let checked = load_checked(repo_dir)?;
    print_findings(&checked.findings, &checked.sources);
    match checked.artifact(commit) {
        Some(artifact) => {
            let artifact = artifact.context("building the artifact")?;
            Ok(Some((checked, artifact)))
        }
        None => {
            let (errors, _) = Summary::count(&checked.findings);
            eprintln!("the policy set has {errors} error(s): run `sluice check` for details");
            Ok(None)
        }
    }
}

#[expect(
    dead_code,
    reason = "used by commands that print diagnostics to stdout"
)]
fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// Prints findings to stderr for humans.
fn print_findings(findings: &[Finding], sources: &Sources) {
    if findings.is_empty() {
        return;
    }
    let text = diagnostic::render_human(findings, sources, stderr_color(), width());
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The live state a check runs against, read before anything is checked so
/// that an unreadable state fails fast (exit 2).
fn read_live_state(args: &CheckArgs) -> anyhow::Result<Option<LiveState>> {
    if let Some(path) = &args.state {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        let state = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "`{}` is not a live-state document (the body of `GET /v1/state`): {e}",
                path.display()
            )
        })?;
        return Ok(Some(state));
    }
    match &args.engine {
        Some(url) => fetch_live_state(url, args.admin_token.as_deref()).map(Some),
        None => Ok(None),
    }
}

/// An error and its causes on one line.
fn causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        next = cause.source();
    }
    s
}

/// `GET {url}/v1/state` with the admin token.
fn fetch_live_state(url: &str, token: Option<&str>) -> anyhow::Result<LiveState> {
    let endpoint = format!("{}/v1/state", url.trim_end_matches('/'));
    let parsed = reqwest::Url::parse(&endpoint)
        .map_err(|e| anyhow::anyhow!("`--engine {url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!("`--engine {url}` is not an http(s) URL");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("starting the HTTP client")?;
        let mut request = client.get(parsed);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::anyhow!("cannot reach the engine at `{endpoint}`: {}", causes(&e))
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            anyhow::bail!(
                "the engine at `{endpoint}` refused the request ({status}): {}",
                if token.is_some() {
                    "the admin token is wrong"
                } else {
                    "pass its admin token with `--admin-token` or SLUICE_ADMIN_TOKEN"
                }
            );
        }
        let body = response
            .text()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer of `{endpoint}`: {}", causes(&e)))?;
        if !status.is_success() {
            let excerpt: String = body.chars().take(200).collect();
            anyhow::bail!("the engine at `{endpoint}` answered {status}: {excerpt}");
        }
        serde_json::from_str(&body).map_err(|e| {
            anyhow::anyhow!(
                "the engine at `{endpoint}` did not answer with a live-state document: {e}"
            )
        })
    })
}

/// The base revision checked (without the conflict analysis, which
/// `review::pull_request` runs on both revisions; the files it shares with
/// `head` are not parsed again), or `None` when it has no policy repository
/// (the change adds it: every finding is new).
fn check_base(
    git: &GitRepo,
    rev: &str,
    head: &Checked,
) -> anyhow::Result<Option<(String, Checked)>> {
    match git.load(rev) {
        Ok(files) => Ok(Some((
            files.commit.clone(),
            pipeline::check_unanalysed_sharing(&files.project, &files.policies, head),
        ))),
        Err(GitSrcError::NoProject { path, .. }) => {
            eprintln!("note: the base revision `{rev}` has no `{path}`: every finding is new");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_check(repo_dir: &Path, args: &CheckArgs) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let live = read_live_state(args)?;
    let needs_git = args.base.is_some() || args.head.is_some();
    let git = if needs_git {
        Some(GitRepo::open(repo_dir)?)
    } else if matches!(args.format, CheckFormat::Sarif | CheckFormat::Github) {
        // Paths in these formats are relative to the git repository's root.
        GitRepo::open(repo_dir).ok()
    } else {
        None
    };
    let prefix = git.as_ref().map_or("", |g| g.prefix()).to_string();
    let mut checked = match (&git, &args.head) {
        (Some(git), Some(rev)) => {
            let files = git.load(rev)?;
            pipeline::check_unanalysed(&files.project, &files.policies)
        }
        _ => {
            let files = repo::load(repo_dir)?;
            pipeline::check_unanalysed(&files.project, &files.policies)
        }
    };
    let mut base = match (&git, &args.base) {
        (Some(git), Some(rev)) => Some(check_base(git, rev, &checked)?),
        _ => None,
    };
    let mut notes = Vec::new();
    let opts = analyze::Options::default();
    let mut findings = match &mut base {
        Some(Some((commit, base))) => {
            let pr = review::pull_request(base, &mut checked, &opts);
            notes.extend(analysis_note(&pr.analysis));
            let short: String = commit.chars().take(12).collect();
            notes.push(format!(
                "compared with base {short}: {} finding(s) that the base already had are not shown",
                pr.hidden
            ));
            pr.findings
        }
        _ => {
            checked.analyze(&opts);
            std::mem::take(&mut checked.findings)
        }
    };
    if let Some(state) = &live {
        match (checked.set.as_ref(), checked.artifact(None)) {
            (Some(set), Some(artifact)) => {
                let artifact = artifact.context("building the artifact")?;
                let evaluator = Evaluator::new(&artifact).context("loading the artifact")?;
                let base_set = base.as_ref().and_then(|b| b.as_ref()?.1.set.as_ref());
                if args.base.is_some() && base_set.is_none() {
                    notes.push(
                        "the base revision has no policy set that checks clean: state checks compare with the live state alone"
                            .to_string(),
                    );
                }
                findings.extend(review::live::check_live(&review::live::LiveInputs {
                    state,
                    head: set,
                    head_parsed: &checked.parsed,
                    evaluator: &evaluator,
                    base: base_set,
                    project_file: crate::repo::PROJECT_FILE,
                }));
            }
            _ => notes
                .push("state checks skipped: the policy set has errors to fix first".to_string()),
        }
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let (errors, warnings) = Summary::count(&findings);
    let summary = Summary {
        errors,
        warnings,
        policies: checked.files,
        rules: checked.rule_count(),
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    };
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    let verdict = format!(
        "check {}: {errors} error(s), {warnings} warning(s) in {} policies, {} rules ({:.2}s)\n",
        if failed { "failed" } else { "ok" },
        summary.policies,
        summary.rules,
        summary.seconds
    );
    let mut out = std::io::stdout().lock();
    match args.format {
        CheckFormat::Json | CheckFormat::Sarif => {
            let doc = if args.format == CheckFormat::Json {
                diagnostic::to_json(&findings, &checked.sources, &summary)
            } else {
                diagnostic::sarif::to_sarif(&findings, &checked.sources, &prefix)
            };
            let mut text = serde_json::to_string_pretty(&doc).context("rendering the report")?;
            text.push('\n');
            out.write_all(text.as_bytes())
                .context("writing the report")?;
            print_notes(&notes);
        }
        CheckFormat::Github => {
            let text = diagnostic::github::annotations(&findings, &checked.sources, &prefix);
            out.write_all(text.as_bytes())
                .context("writing the report")?;
            for n in &notes {
                writeln!(out, "{n}").context("writing the report")?;
            }
            out.write_all(verdict.as_bytes())
                .context("writing the report")?;
            if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
                let note = (!notes.is_empty()).then(|| notes.join("\n\n"));
                let md = diagnostic::github::summary_markdown(
                    &findings,
                    &checked.sources,
                    &summary,
                    &prefix,
                    failed,
                    note.as_deref(),
                );
                let path = PathBuf::from(path);
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening `{}`", path.display()))?;
                file.write_all(md.as_bytes())
                    .with_context(|| format!("writing `{}`", path.display()))?;
            }
        }
        CheckFormat::Human => {
            print_findings(&findings, &checked.sources);
            print_notes(&notes);
            let _ = out.write_all(verdict.as_bytes());
        }
    }
    Ok(if failed { Exit::Findings } else { Exit::Ok })
}

/// What the conflict analysis of a change looked at, for the notes.
fn analysis_note(a: &review::ChangeAnalysis) -> Option<String> {
    let run = |s: &analyze::Stats| s.jobs - s.unchanged;
    match a {
        review::ChangeAnalysis::None | review::ChangeAnalysis::Full { .. } => None,
        review::ChangeAnalysis::Incremental {
            changed,
            base,
            head,
        } => Some(format!(
            "conflict analysis of the change: {} rule(s) and limit(s) changed; head analysed in \
             full ({} solver job(s)), base only where the change can matter ({} of {} job(s))",
            changed.len(),
            run(head),
            run(base),
            base.jobs
        )),
        review::ChangeAnalysis::Both { .. } => Some(
            "conflict analysis of the change: the schema, the default decision or the encoding \
             of a field changed, so both revisions were analysed in full"
                .to_string(),
        ),
    }
}

fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("note: {n}");
    }
}

fn cmd_compile(
    repo_dir: &Path,
    output: Option<&Path>,
    commit: Option<String>,
) -> anyhow::Result<Exit> {
    let Some((_, artifact)) = load_artifact(repo_dir, commit)? else {
        return Ok(Exit::Findings);
    };
    let bytes = artifact.to_bytes().context("serializing the artifact")?;
    match output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .with_context(|| format!("writing `{}`", path.display()))?;
            eprintln!(
                "compiled {} policies into {} (sha256 {})",
                artifact.policies.len(),
                path.display(),
                artifact.hash
            );
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .context("writing the artifact")?,
    }
    Ok(Exit::Ok)
}

/// The requests of an eval input: one JSON document, or JSON lines. Each item
/// is (line number, parsed JSON or the parse error).
fn eval_inputs(text: &str) -> Vec<(usize, Result<serde_json::Value, String>)> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        return vec![(1, Ok(v))];
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            (
                i + 1,
                serde_json::from_str(l).map_err(|e| format!("not valid JSON: {e}")),
            )
        })
        .collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn print_response_human(out: &mut impl Write, resp: &EvalResponse) -> std::io::Result<()> {
    let default = if resp.reasons.is_empty() {
        "  (no rule matched: project default)"
    } else {
        ""
    };
    writeln!(out, "{}{default}", resp.decision.as_str())?;
    for r in &resp.reasons {
        let code = r.code.as_deref().unwrap_or("");
        let text = r
            .text
            .as_deref()
            .map(|t| format!("  {t}"))
            .unwrap_or_default();
        let rule = format!("{}.{}", r.policy, r.rule);
        writeln!(out, "  {:<40} {:<17} {code}{text}", rule, r.effect.as_str())?;
    }
    for m in &resp.modifications {
        writeln!(
            out,
            "  modified {} ({}.{} {})",
            m.field, m.policy, m.rule, m.code
        )?;
    }
    if let Some(id) = &resp.approval_id {
        writeln!(out, "  approval id: {id}")?;
    }
    Ok(())
}

fn cmd_eval(
    repo_dir: &Path,
    input: &Path,
    format: Format,
    now: Option<u64>,
) -> anyhow::Result<Exit> {
    let text = if input == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(input).with_context(|| format!("reading `{}`", input.display()))?
    };
    let Some((_, artifact)) = load_artifact(repo_dir, None)? else {
        return Ok(Exit::Findings);
    };
    let evaluator = Evaluator::new(&artifact).context("loading the artifact")?;
    let limits = MemoryLimitStore::new();
    let now = now.unwrap_or_else(now_secs);
    let name = input.display().to_string();
    let mut status = Exit::Ok;
    let mut approvals = 0u64;
    let mut out = std::io::stdout().lock();
    for (line, json) in eval_inputs(&text) {
        let req = json.and_then(|j| evaluator.decode(&j).map_err(|e| e.to_string()));
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {name}:{line}: bad request: {e}");
                status = Exit::Usage;
                continue;
            }
        };
        let outcome = match evaluator.evaluate(&req, now, &limits) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {name}:{line}: {e}");
                status = Exit::Usage;
                continue;
            }
        };
        let id = (outcome.decision() == DecisionKind::RequireApproval).then(|| {
            approvals += 1;
            format!("ap-{approvals}")
        });
        let cx = ResponseContext {
            approval_id: id.as_deref(),
            ..ResponseContext::default()
        };
        let resp = evaluator.respond(&req, &outcome, &cx);
        match format {
            Format::Json => {
                let s = serde_json::to_string(&resp).context("rendering the response")?;
                writeln!(out, "{s}").context("writing the response")?;
            }
            Format::Human => {
                print_response_human(&mut out, &resp).context("writing the response")?
            }
        }
    }
    Ok(status)
}

fn cmd_test(repo_dir: &Path, format: Format) -> anyhow::Result<Exit> {
    let files = repo::load(repo_dir)?;
    let checked = pipeline::check_sources(&files.project, &files.policies);
    print_findings(&checked.findings, &checked.sources);
    let (Some(project), Some(Ok(artifact))) = (checked.project.as_ref(), checked.artifact(None))
    else {
        eprintln!("the policy set has errors: run `sluice check` for details");
        return Ok(Exit::Findings);
    };
    let evaluator = Evaluator::new(&artifact).context("loading the artifact")?;
    let traces = repo::load_traces(&files.root, &project.traces)?;
    if traces.is_empty() {
        eprintln!(
            "no traces: add JSON-lines files under `{}/`",
            project.traces
        );
        return Ok(Exit::Usage);
    }
    let mut report = ReplayReport::default();
    let mut invalid = Vec::new();
    let mut sources = Sources::new();
    for file in &traces {
        sources.add(file.clone());
        let (cases, mut bad) = replay::parse_traces(file);
        invalid.append(&mut bad);
        // Counters are shared by the cases of one file, in order.
        let limits = MemoryLimitStore::new();
        replay::run(&evaluator, &cases, &limits, &mut report);
    }
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "report": report,
                "invalid": diagnostic::to_json(&invalid, &sources, &Summary::default())["findings"],
            });
            let s = serde_json::to_string_pretty(&doc).context("rendering the report")?;
            println!("{s}");
        }
        Format::Human => {
            print_findings(&invalid, &sources);
            let mut out = std::io::stdout().lock();
            for r in report.failures() {
                let what = match r.verdict {
                    Verdict::Catastrophic => "CATASTROPHIC",
                    Verdict::FalsePositive => "false positive",
                    Verdict::Mismatch => "mismatch",
                    Verdict::BadRequest => "bad request",
                    Verdict::Pass => "pass",
                };
                let code = r
                    .code
                    .as_deref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default();
                let got = r.got.map_or("nothing", DecisionKind::as_str);
                let _ = writeln!(
                    out,
                    "{}:{}: {what}: expected {}{code}, got {got}",
                    r.file,
                    r.line,
                    r.expect.as_str()
                );
                if let Some(e) = &r.error {
                    let _ = writeln!(out, "    {e}");
                }
                for reason in &r.reasons {
                    let code = reason.code.as_deref().unwrap_or("");
                    let _ = writeln!(
                        out,
                        "    {}.{} {} {code}",
                        reason.policy,
                        reason.rule,
                        reason.effect.as_str()
                    );
                }
            }
            let _ = writeln!(
                out,
                "test {}: {} cases, {} passed, {} catastrophic, {} false positives ({:.1}% of {} expected permissive), {} mismatches, {} bad requests, {} invalid lines",
                if report.is_clean() && invalid.is_empty() {
                    "ok"
                } else {
                    "failed"
                },
                report.cases,
                report.passed,
                report.catastrophic,
                report.false_positives,
                report.false_positive_rate() * 100.0,
                report.expected_permissive,
                report.mismatches,
                report.bad_requests,
                invalid.len(),
            );
        }
    }
    Ok(if !invalid.is_empty() {
        Exit::Usage
    } else if report.is_clean() {
        Exit::Ok
    } else {
        Exit::Findings
    })
}

fn cmd_fmt(repo_dir: &Path, check: bool, files: &[PathBuf]) -> anyhow::Result<Exit> {
    // (path on disk, source named as in diagnostics)
    let mut sources: Vec<(PathBuf, crate::source::SourceFile)> = Vec::new();
    if files.is_empty() {
        let repo_files = repo::load(repo_dir)?;
        for f in repo_files.policies {
            sources.push((repo_files.root.join(&f.name), f));
        }
    } else {
        for path in files {
            let f = repo::read_source(Path::new("."), path)?;
            sources.push((path.clone(), f));
        }
    }
    let inputs: Vec<crate::source::SourceFile> = sources.iter().map(|(_, f)| f.clone()).collect();
    let results = crate::fmt::format_files(&inputs);
    let mut all = Sources::new();
    let mut findings = Vec::new();
    let mut changed = 0;
    for ((path, file), result) in sources.iter().zip(results) {
        match result.result {
            Err(mut e) => {
                all.add(file.clone());
                findings.append(&mut e);
            }
            Ok(text) if result.changed => {
                changed += 1;
                if check {
                    println!("{}", file.name);
                } else {
                    std::fs::write(path, text)
                        .with_context(|| format!("writing `{}`", path.display()))?;
                    eprintln!("formatted {}", file.name);
                }
            }
            Ok(_) => {}
        }
    }
    print_findings(&findings, &all);
    if !findings.is_empty() {
        return Ok(Exit::Findings);
    }
    if check && changed > 0 {
        eprintln!("{changed} file(s) are not formatted: run `sluice fmt`");
        return Ok(Exit::Findings);
    }
    Ok(Exit::Ok)
}

/// The flags of `sluice engine`.
#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:7400", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The bearer token admin routes require.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// Append one JSON line per evaluation (and per state change) here.
    #[arg(long, value_name = "FILE")]
    pub decision_log: Option<PathBuf>,
    /// Load this artifact at start and route all traffic to it as stable.
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,
    /// The largest request body accepted (larger ones get 413).
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// The largest artifact upload accepted.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub max_artifact_body: usize,
    /// Shadow evaluations that may wait; more are dropped and counted.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub shadow_queue: usize,
    /// Breaker: the sliding window outcomes are counted over.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub breaker_window: std::time::Duration,
    /// Breaker: outcomes the window needs before it may open.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub breaker_min_requests: u64,
    /// Breaker: the share of failed evaluations that opens it.
    #[arg(long, default_value_t = 0.5, value_name = "RATE")]
    pub breaker_error_rate: f64,
    /// Breaker: an evaluation at least this long is slow.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub breaker_slow_call: std::time::Duration,
    /// Breaker: the share of slow evaluations that opens it.
    #[arg(long, default_value_t = 0.5, value_name = "RATE")]
    pub breaker_slow_rate: f64,
    /// Breaker: how long it stays open before probing.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub breaker_open_for: std::time::Duration,
    /// Breaker: successful probes that close it again.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub breaker_probes: u32,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

fn cmd_engine(args: EngineArgs) -> anyhow::Result<Exit> {
    use crate::api::route::RouteSpec;
    use crate::engine::backend::MemoryBackend;
    use crate::engine::breaker::BreakerConfig;
    use crate::engine::decision_log::DecisionLog;
    use crate::engine::server::{self, Engine, EngineConfig};

    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let token = args
        .admin_token
        .filter(|t| !t.is_empty())
        .context("an admin token is required: pass --admin-token or set SLUICE_ADMIN_TOKEN")?;
    for (name, rate) in [
        ("--breaker-error-rate", args.breaker_error_rate),
        ("--breaker-slow-rate", args.breaker_slow_rate),
    ] {
        anyhow::ensure!(
            rate > 0.0 && rate <= 1.0,
            "{name} must be above 0 and at most 1, got {rate}"
        );
    }
    let config = EngineConfig {
        admin_token: token,
        max_body: args.max_body,
        max_artifact_body: args.max_artifact_body,
        shadow_queue: args.shadow_queue,
        breaker: BreakerConfig {
            window: args.breaker_window,
            min_requests: args.breaker_min_requests,
            error_rate: args.breaker_error_rate,
            slow_call: args.breaker_slow_call,
            slow_rate: args.breaker_slow_rate,
            open_for: args.breaker_open_for,
            probes: args.breaker_probes,
            ..BreakerConfig::default()
        },
    };
    let artifact = match &args.artifact {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?)
        }
        None => None,
    };
    let log = match &args.decision_log {
        Some(path) => DecisionLog::open(path)
            .with_context(|| format!("opening the decision log `{}`", path.display()))?,
        None => DecisionLog::disabled(),
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let engine = Engine::start(config, std::sync::Arc::new(MemoryBackend::new()), log)?;
        if let Some(bytes) = artifact {
            let hash = crate::compile::artifact::Artifact::from_bytes(&bytes)
                .context("reading --artifact")?
                .hash;
            engine
                .put_artifact(&hash, &bytes)
                .map_err(|e| anyhow::anyhow!("loading --artifact: {e}"))?;
            engine
                .set_route(RouteSpec::stable(hash.clone()))
                .map_err(|e| anyhow::anyhow!("routing --artifact: {e}"))?;
            tracing::info!(artifact = %hash, "routed as stable");
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%addr, "sluice engine listening");
        server::serve(listener, engine, server::shutdown_signal())
            .await
            .context("serving")?;
        tracing::info!("sluice engine stopped");
        anyhow::Ok(Exit::Ok)
    })
}

/// `sluice reconcile`'s options (the repository is the global `--repo`).
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The branch to watch.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// An engine's base URL; repeat for every engine of the fleet.
    #[arg(long = "engine", value_name = "URL", required = true)]
    pub engines: Vec<String>,
    /// The engines' admin token, also required by the control API.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Where the rollout state, the audit log, artifacts and the git mirror
    /// are kept.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// How often the branch is fetched and the engines read.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// The control API's address (status, pause, resume, promote, rollback,
    /// POST /v1/hooks/git).
    #[arg(long, default_value = crate::reconcile::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// An engine decision log (JSON lines) to replay against each candidate,
    /// reporting decision flips by rule.
    #[arg(long, value_name = "FILE")]
    pub decision_log: Option<PathBuf>,
    /// How long engines may be unreachable during a live stage before the
    /// rollout pauses.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub engine_grace: std::time::Duration,
    /// How long one engine call may take.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub engine_timeout: std::time::Duration,
}

/// `sluice demo`'s options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the policy repository, the daemon's state and summary.json in
    /// DIR (created; it must be empty) instead of a temporary folder.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Print the summary only.
    #[arg(long, conflicts_with = "plain")]
    pub quiet: bool,
    /// Line-by-line progress even on a terminal (what a pipe or a log gets
    /// anyway).
    #[arg(long)]
    pub plain: bool,
    /// The least time each live stage (shadow, canary, broad) lasts.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stage_duration: std::time::Duration,
    /// How long each phase may take before the demo gives up.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: std::time::Duration,
}

fn cmd_demo(args: &DemoArgs) -> anyhow::Result<Exit> {
    use crate::demo::{Console, ConsoleMode, Options, Progress as _};

    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    anyhow::ensure!(
        !args.stage_duration.is_zero(),
        "--stage-duration must be above zero"
    );
    anyhow::ensure!(!args.timeout.is_zero(), "--timeout must be above zero");
    let opts = Options {
        keep: args.keep.clone(),
        stage_duration: args.stage_duration,
        timeout: args.timeout,
        ..Options::default()
    };
    let mode = if args.quiet {
        ConsoleMode::Quiet
    } else if args.plain {
        ConsoleMode::Plain
    } else {
        ConsoleMode::Live
    };
    let mut console = Console::new(mode);
    let rt = runtime(true)?;
    let result = rt.block_on(async {
        tokio::select! {
            r = crate::demo::run(&opts, &mut console) => Some(r),
            () = shutdown_signal() => None,
        }
    });
    console.finish();
    drop(rt);
    match result {
        None => {
            eprintln!("interrupted: everything the demo started is stopped");
            Ok(Exit::Findings)
        }
        Some(Ok(report)) => {
            println!();
            print!("{}", report.render());
            let problems = report.problems();
            if problems.is_empty() {
                println!(
                    "\nThe good change is stable on every engine; the bad one was rolled back and reverted on main."
                );
                Ok(Exit::Ok)
            } else {
                for p in &problems {
                    eprintln!("error: {p}");
                }
                Ok(Exit::Findings)
            }
        }
        Some(Err(e)) if e.is_outcome() => {
            eprintln!("error: the demo did not go as expected: {e}");
            Ok(Exit::Findings)
        }
        Some(Err(e)) => Err(e.into()),
    }
}

/// How the operator commands reach the daemon.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's control API.
    #[arg(long, env = "SLUICE_DAEMON", default_value = "http://127.0.0.1:7474")]
    pub daemon: String,
    /// The admin token the daemon was started with.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
}

fn runtime(multi: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().context("starting the async runtime")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn cmd_reconcile(repo: &Path, args: ReconcileArgs) -> anyhow::Result<Exit> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = crate::reconcile::Config::new(
        &repo.to_string_lossy(),
        args.state_dir,
        args.engines,
        &args.admin_token,
    );
    config.branch = args.branch;
    config.interval = args.interval;
    config.listen = Some(args.listen);
    config.decision_log = args.decision_log;
    config.engine_grace = args.engine_grace;
    config.engine_timeout = args.engine_timeout;
    let rt = runtime(true)?;
    rt.block_on(crate::reconcile::run(config, shutdown_signal()))?;
    Ok(Exit::Ok)
}

/// Calls the daemon's control API; `Ok(Err(..))` is a refusal (409).
fn call_daemon(
    d: &DaemonArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<Result<serde_json::Value, String>> {
    let rt = runtime(false)?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let url = format!("{}{path}", d.daemon.trim_end_matches('/'));
        let mut req = client.request(method, &url).bearer_auth(&d.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the daemon at {}", d.daemon))?;
        let status = resp.status();
        let doc: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        let message = || {
            doc.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no message")
                .to_string()
        };
        if status.is_success() {
            Ok(Ok(doc))
        } else if status == reqwest::StatusCode::CONFLICT {
            Ok(Err(message()))
        } else {
            anyhow::bail!("the daemon answered {status}: {}", message())
        }
    })
}

fn cmd_operator(d: &DaemonArgs, what: &str, reason: Option<String>) -> anyhow::Result<Exit> {
    let body = reason.map(|r| serde_json::json!({ "reason": r }));
    match call_daemon(d, reqwest::Method::POST, &format!("/v1/{what}"), body)? {
        Ok(doc) => {
            let msg = doc
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("done");
            println!("{msg}");
            Ok(Exit::Ok)
        }
        Err(why) => {
            eprintln!("{what} refused: {why}");
            Ok(Exit::Findings)
        }
    }
}

fn cmd_status(d: &DaemonArgs, format: Format) -> anyhow::Result<Exit> {
    let doc = match call_daemon(d, reqwest::Method::GET, "/v1/status", None)? {
        Ok(doc) => doc,
        Err(why) => anyhow::bail!("status refused: {why}"),
    };
    match format {
        Format::Json => {
            let s = serde_json::to_string_pretty(&doc).context("rendering the status")?;
            println!("{s}");
        }
        Format::Human => {
            let status: crate::reconcile::api::Status =
                serde_json::from_value(doc).context("reading the daemon's status")?;
            print!("{}", render_status(&status));
        }
    }
    Ok(Exit::Ok)
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

fn ms_text(ms: u64) -> String {
    let d = std::time::Duration::from_millis(ms / 100 * 100);
    humantime::format_duration(d).to_string()
}

/// A figure of a gate reading; one with no number (JSON `null`, an open
/// end of an interval) shows as `-`.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "-".to_string()
    }
}

/// `sluice status` for humans.
pub fn render_status(s: &crate::reconcile::api::Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let head = s.head.as_deref().map_or("unknown", short);
    let _ = writeln!(o, "branch {} of {} at {head}", s.branch, s.repo);
    if let Some(e) = &s.git_error {
        let _ = writeln!(o, "  git: {e}");
    }
    let _ = write!(o, "phase: {}", s.phase);
    if let Some(p) = &s.paused {
        let _ = write!(o, " (PAUSED: {})", p.reason);
    }
    o.push('\n');
    if let Some(st) = &s.stable {
        let commit = st.commit.as_deref().map_or("adopted", short);
        let _ = writeln!(o, "stable:    {} (commit {commit})", short(&st.artifact));
    }
    if let Some(c) = &s.candidate {
        let _ = writeln!(
            o,
            "candidate: {} (commit {} \"{}\")",
            short(&c.artifact),
            short(&c.commit),
            c.summary
        );
        let path: Vec<String> = c
            .stages
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == c.stage_index {
                    format!("[{n}]")
                } else {
                    n.clone()
                }
            })
            .collect();
        let _ = writeln!(
            o,
            "  stage {} of {}: {}",
            c.stage_index + 1,
            c.stages.len(),
            path.join(" → ")
        );
        let mut line = format!("  in stage {}", ms_text(c.in_stage_ms));
        if let Some(m) = c.min_duration_ms {
            let _ = write!(line, ", min {}", ms_text(m));
        }
        if let Some(m) = c.max_duration_ms {
            let _ = write!(line, ", max {}", ms_text(m));
        }
        if let Some(t) = c.time_left_ms {
            let _ = write!(line, "; time left {}", ms_text(t));
        }
        if let Some(n) = c.samples_left {
            let _ = write!(line, "; samples left {n}");
            if let Some(m) = c.min_samples {
                let _ = write!(line, " (of {m})");
            }
        }
        let _ = writeln!(o, "{line}");
        if let Some(step) = &c.step {
            let what = step.as_str();
            let why = step.why().map(|r| format!(": {r}")).unwrap_or_default();
            let _ = writeln!(o, "  decision: {what}{why}");
        }
        if !c.gates.is_empty() || !c.triggers.is_empty() {
            let _ = writeln!(
                o,
                "  {:<9} {:<26} {:>10}  {:<23} {:>8}  verdict",
                "", "gate", "estimate", "95% interval", "limit"
            );
            for (kind, list) in [("gate", &c.gates), ("trigger", &c.triggers)] {
                for g in list {
                    let _ = writeln!(
                        o,
                        "  {:<9} {:<26} {:>10}  {:<23} {:>8}  {}",
                        kind,
                        g.gate.as_str(),
                        num(g.estimate),
                        format!("[{}, {}]", num(g.interval.lo), num(g.interval.hi)),
                        num(g.limit),
                        g.verdict.as_str(),
                    );
                }
            }
        }
        let r = &c.replay;
        let _ = writeln!(
            o,
            "  replay: {} of {} trace cases passed, {} catastrophic, {} false positive(s)",
            r.passed, r.cases, r.catastrophic, r.false_positives
        );
        let notes = c.notes.clone().unwrap_or_default();
        if let Some(log) = &notes.decision_log {
            let _ = writeln!(
                o,
                "  decision log: {} of {} decisions flip",
                log.flipped, log.evaluated
            );
            for f in log.flips.iter().take(10) {
                let _ = writeln!(
                    o,
                    "    {} × {} → {}: {}",
                    f.count,
                    f.from.as_str(),
                    f.to.as_str(),
                    f.rule
                );
            }
        }
        for w in notes.state_checks.iter().flat_map(|s| &s.warnings) {
            let _ = writeln!(o, "  state: {w}");
        }
    }
    let on = s.engines.iter().filter(|e| e.on_route).count();
    let _ = writeln!(o, "engines: {on} of {} on route", s.engines.len());
    for e in &s.engines {
        let what = if !e.reachable {
            format!("unreachable: {}", e.error.as_deref().unwrap_or("no answer"))
        } else if e.on_route {
            "on route".to_string()
        } else {
            "moving to the route".to_string()
        };
        let _ = writeln!(o, "  {} {what}", e.url);
    }
    for r in &s.reverts {
        let _ = writeln!(
            o,
            "revert pending: commit {} (stage {}: {}), {} attempt(s){}",
            short(&r.commit),
            r.stage,
            r.trigger,
            r.attempts,
            r.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
    }
    for q in &s.quarantine {
        let _ = writeln!(o, "quarantined: commit {} ({})", short(&q.commit), q.reason);
    }
    if let Some(r) = &s.refused {
        let _ = writeln!(o, "refused: commit {}: {}", short(&r.commit), r.reason);
    }
    if let Some(w) = &s.waiting {
        let _ = writeln!(o, "waiting: {w}");
    }
    if let Some(e) = &s.error {
        let _ = writeln!(o, "error: {e}");
    }
    if let Some(t) = &s.last {
        let _ = writeln!(
            o,
            "last: #{} {} {} → {} ({}, {}): {}",
            t.seq,
            t.event,
            t.from,
            t.to,
            t.cause.as_str(),
            t.time,
            t.reason
        );
    }
    o
}
