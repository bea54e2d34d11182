//! The commands. With `main`, the only module that prints; errors are typed
//! below this module and become `anyhow` reports here.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::diagnostic::{self, Finding, Sources, Summary};
use crate::pipeline::{self, Checked};
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
#[command(name = "sluice", version, about = "AI-agent safety policies from git to production, with proof")]
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
}

/// Runs one command and returns its exit status. Errors that stop the command
/// (unreadable repository, bad arguments) are printed here.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check { format, deny_warnings } => cmd_check(&cli.repo, format, deny_warnings),
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
fn load_checked(repo_dir: &std::path::Path) -> anyhow::Result<Checked> {
    let files = repo::load(repo_dir)?;
    Ok(pipeline::check_sources(&files.project, &files.policies))
}

#[expect(dead_code, reason = "used by commands that print diagnostics to stdout")]
fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100)
}

/// Prints findings to stderr for humans.
fn print_findings(findings: &[Finding], sources: &Sources) {
    if findings.is_empty() {
        return;
    }
    let text = diagnostic::render_human(findings, sources, stderr_color(), width());
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn cmd_check(repo_dir: &std::path::Path, format: Format, deny_warnings: bool) -> anyhow::Result<Exit> {
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
            std::io::stdout().write_all(out.as_bytes()).context("writing the report")?;
        }
        Format::Human => {
            print_findings(&checked.findings, &checked.sources);
            let verdict = if errors == 0 && (warnings == 0 || !deny_warnings) { "ok" } else { "failed" };
            let line = format!(
                "check {verdict}: {errors} error(s), {warnings} warning(s) in {} policies, {} rules ({:.2}s)\n",
                summary.policies, summary.rules, summary.seconds
            );
            let _ = std::io::stdout().write_all(line.as_bytes());
        }
    }
    Ok(if errors > 0 || (deny_warnings && warnings > 0) { Exit::Findings } else { Exit::Ok })
}
