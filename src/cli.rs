//! The commands. With `main`, the only module that prints; errors are typed
//! below this module and become `anyhow` reports here.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::compile::artifact::Artifact;
use crate::compile::ir::DecisionKind;
use crate::diagnostic::{self, Finding, Sources, Summary};
use crate::engine::eval::Evaluator;
use crate::engine::response::{EvalResponse, ResponseContext};
use crate::engine::state::MemoryLimitStore;
use crate::pipeline::{self, Checked};
use crate::replay::{self, ReplayReport, Verdict};
use crate::repo;

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the whole policy set: language, types, versions.
    Check {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Fail on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
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
    /// Run the traces against the compiled set.
    Test {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

/// Runs one command and returns its exit status. Errors that stop the command
/// (unreadable repository, bad arguments) are printed here.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check {
            format,
            deny_warnings,
        } => cmd_check(&cli.repo, format, deny_warnings),
        Command::Compile { output, commit } => cmd_compile(&cli.repo, output.as_deref(), commit),
        Command::Eval {
            request,
            format,
            now,
        } => cmd_eval(&cli.repo, &request, format, now),
        Command::Test { format } => cmd_test(&cli.repo, format),
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

fn cmd_check(repo_dir: &Path, format: Format, deny_warnings: bool) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let checked = load_checked(repo_dir)?;
    let (errors, warnings) = Summary::count(&checked.findings);
    let summary = Summary {
        errors,
        warnings,
        policies: checked.files,
        rules: checked.rule_count(),
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    };
    match format {
        Format::Json => {
            let doc = diagnostic::to_json(&checked.findings, &checked.sources, &summary);
            let mut out = serde_json::to_string_pretty(&doc).context("rendering the report")?;
            out.push('\n');
            std::io::stdout()
                .write_all(out.as_bytes())
                .context("writing the report")?;
        }
        Format::Human => {
            print_findings(&checked.findings, &checked.sources);
            let verdict = if errors == 0 && (warnings == 0 || !deny_warnings) {
                "ok"
            } else {
                "failed"
            };
            let line = format!(
                "check {verdict}: {errors} error(s), {warnings} warning(s) in {} policies, {} rules ({:.2}s)\n",
                summary.policies, summary.rules, summary.seconds
            );
            let _ = std::io::stdout().write_all(line.as_bytes());
        }
    }
    Ok(if errors > 0 || (deny_warnings && warnings > 0) {
        Exit::Findings
    } else {
        Exit::Ok
    })
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
