//! `sluice check`, `sluice compile` and `sluice fmt`: the commands that read
//! a policy repository and report on it or rewrite it. Parses nothing
//! itself: the check runs in [`crate::review::check`], and this module reads
//! the live state (a file, or an engine through [`HttpEngine`]) and prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::ValueEnum;

use super::Exit;
use super::output::{print_findings, print_notes};
use crate::api::state::LiveState;
use crate::compile::artifact::Artifact;
use crate::diagnostic::{self, Sources, Summary};
use crate::pipeline::{self, Checked};
use crate::reconcile::client::{EngineClient as _, EngineError, HttpEngine};
use crate::replay::change;
use crate::review::check::{self, Request};
use crate::source::SourceFile;
use crate::tree::{self, Traces};

/// Output formats of `sluice check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Diagnostics with source snippets (miette).
    Human,
    /// One JSON document: the findings and a summary.
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
    /// With `--base`: an engine's decision log (JSON lines, as `sluice
    /// engine --decision-log` writes it) whose requests are replayed at both
    /// revisions, beside the head's traces.
    #[arg(long, value_name = "FILE", requires = "base")]
    pub decision_log: Option<PathBuf>,
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

/// The live state a check runs against, named, read before anything is
/// checked so that an unreadable state fails fast (exit 2).
fn read_live_state(args: &CheckArgs) -> anyhow::Result<Option<(String, LiveState)>> {
    if let Some(path) = &args.state {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        let state = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "`{}` is not a live-state document (the body of `GET /v1/state`): {e}",
                path.display()
            )
        })?;
        return Ok(Some((path.display().to_string(), state)));
    }
    match &args.engine {
        Some(url) => {
            let state = fetch_live_state(url, args.admin_token.as_deref())?;
            Ok(Some((url.clone(), state)))
        }
        None => Ok(None),
    }
}

/// `GET {url}/v1/state` with the admin token, through the daemon's engine
/// client.
fn fetch_live_state(url: &str, token: Option<&str>) -> anyhow::Result<LiveState> {
    let endpoint = format!("{}/v1/state", url.trim_end_matches('/'));
    let parsed = reqwest::Url::parse(&endpoint)
        .map_err(|e| anyhow::anyhow!("`--engine {url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!("`--engine {url}` is not an http(s) URL");
    }
    let client = HttpEngine::new(url, token.unwrap_or(""), Duration::from_secs(30))
        .context("starting the HTTP client")?;
    let answer = super::runtime(false)?.block_on(client.live_state());
    match answer {
        Ok(Some(state)) => Ok(state),
        Ok(None) => anyhow::bail!("the engine at `{endpoint}` has no live state to give (404)"),
        Err(EngineError::Unreachable { source } | EngineError::Client { source }) => {
            anyhow::bail!(
                "cannot reach the engine at `{endpoint}`: {}",
                crate::reconcile::client::without_url(&source)
            )
        }
        Err(EngineError::Status { status, message }) => {
            let refused = matches!(status, 401 | 403);
            let status = reqwest::StatusCode::from_u16(status)
                .map_or_else(|_| status.to_string(), |s| s.to_string());
            if refused {
                anyhow::bail!(
                    "the engine at `{endpoint}` refused the request ({status}): {}",
                    if token.is_some() {
                        "the admin token is wrong"
                    } else {
                        "pass its admin token with `--admin-token` or SLUICE_ADMIN_TOKEN"
                    }
                );
            }
            let excerpt: String = message.chars().take(200).collect();
            anyhow::bail!("the engine at `{endpoint}` answered {status}: {excerpt}")
        }
        Err(e @ EngineError::Fenced(_)) => {
            anyhow::bail!("the engine at `{endpoint}` refused the request: {e}")
        }
        Err(EngineError::Decode { source }) => anyhow::bail!(
            "the engine at `{endpoint}` did not answer with a live-state document: {source}"
        ),
    }
}

pub(super) fn cmd_check(repo_dir: &Path, args: &CheckArgs) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let live = read_live_state(args)?;
    let log = match &args.decision_log {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the decision log `{}`", path.display()))?,
        ),
        None => None,
    };
    let report = check::check(&Request {
        dir: repo_dir,
        base: args.base.as_deref(),
        head: args.head.as_deref(),
        live: live.as_ref().map(|(name, state)| (name.as_str(), state)),
        // Paths in these formats are relative to the git repository's root.
        git_paths: matches!(args.format, CheckFormat::Sarif | CheckFormat::Github),
    })?;
    let replay = report.evaluators.as_ref().map(|(base, head)| {
        let cases: Vec<_> = report
            .traces
            .iter()
            .flat_map(|t| crate::replay::parse_traces(t).0)
            .collect();
        let mut sequences = change::of_traces(&cases);
        let mut skipped = 0;
        if let Some(text) = &log {
            let (requests, s) = change::of_log(text);
            sequences.push(requests);
            skipped = s;
        }
        change::compare(base, head, &sequences, skipped)
    });
    let mut notes = report.notes.clone();
    if args.decision_log.is_some() && replay.is_none() {
        notes.push(
            "the decision log is not replayed: the base or the head has no policy set that \
             type-checks, or their request schemas differ"
                .to_string(),
        );
    }
    if let Some((questions, seconds)) = report.decisions {
        notes.push(format!(
            "what the change does to decisions: {questions} solver question(s) in {seconds:.2}s"
        ));
    }
    let (findings, notes, prefix) = (&report.findings, &notes, &report.prefix);
    let (errors, warnings) = Summary::count(findings);
    let base_name = report.base_name.as_deref();
    let summary = Summary {
        errors,
        warnings,
        notes: Summary::notes(findings),
        preexisting: base_name.map(|_| Summary::preexisting(findings)),
        replay,
        policies: report.policies,
        rules: report.rules,
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    };
    // Every error fails the check, old or new: a set with an error does not
    // compile, whoever introduced it. A warning the base already had is
    // shown but does not fail it, even with `--deny-warnings`.
    let new_warnings = findings
        .iter()
        .filter(|f| f.severity == diagnostic::Severity::Warning && !f.preexisting())
        .count();
    let failed = errors > 0 || (args.deny_warnings && new_warnings > 0);
    let old = match (base_name, summary.preexisting) {
        (Some(name), Some(n)) if n > 0 => format!(" ({n} already on {name})"),
        _ => String::new(),
    };
    let verdict = format!(
        "check {}: {errors} error(s), {warnings} warning(s){old} in {} policies, {} rules ({:.2}s)\n",
        if failed { "failed" } else { "ok" },
        summary.policies,
        summary.rules,
        summary.seconds
    );
    // The text renderings say which findings the base already had.
    let tagged = base_name.map(|name| diagnostic::tag_preexisting(findings, name));
    let shown = tagged.as_deref().unwrap_or(findings);
    let mut out = std::io::stdout().lock();
    match args.format {
        CheckFormat::Json | CheckFormat::Sarif => {
            let doc = if args.format == CheckFormat::Json {
                diagnostic::to_json(findings, &report.sources, &summary)
            } else {
                diagnostic::sarif::to_sarif(findings, &report.sources, prefix)
            };
            let mut text = serde_json::to_string_pretty(&doc).context("rendering the report")?;
            text.push('\n');
            out.write_all(text.as_bytes())
                .context("writing the report")?;
            print_notes(notes);
        }
        CheckFormat::Github => {
            let text = diagnostic::github::annotations(shown, &report.sources, prefix);
            out.write_all(text.as_bytes())
                .context("writing the report")?;
            for n in notes {
                writeln!(out, "{n}").context("writing the report")?;
            }
            out.write_all(verdict.as_bytes())
                .context("writing the report")?;
            if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
                let note = (!notes.is_empty()).then(|| notes.join("\n\n"));
                let md = diagnostic::github::summary_markdown(
                    shown,
                    &report.sources,
                    &summary,
                    prefix,
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
            let section = diagnostic::change::human_section(
                findings,
                &report.sources,
                summary.replay.as_ref(),
            );
            let _ = std::io::stderr().write_all(section.as_bytes());
            print_findings(shown, &report.sources);
            print_notes(notes);
            let _ = out.write_all(verdict.as_bytes());
        }
    }
    Ok(if failed { Exit::Findings } else { Exit::Ok })
}

/// Reads, checks and compiles the repository; prints the findings and
/// returns `None` when the set has errors.
pub(super) fn load_artifact(
    repo_dir: &Path,
    commit: Option<String>,
) -> anyhow::Result<Option<(Checked, Artifact)>> {
    let files = tree::fs::load(repo_dir, Traces::Skip)?;
    let checked = pipeline::check_sources(&files.project, &files.policies);
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

/// The artifact that `eval`, `explain` and `test` evaluate with: built from
/// a set that type-checks, also when the conflict analysis reports errors
/// (a warning says so: such a set cannot be compiled for an engine, but its
/// author needs to see what it decides to fix it). Findings go to standard
/// error; `None` when the set has other errors.
pub(super) fn evaluable_artifact(files: &tree::RepoSources) -> anyhow::Result<Option<Artifact>> {
    let mut checked = pipeline::check_unanalysed(&files.project, &files.policies);
    let before_analysis = checked.artifact(None);
    checked.analyze(&crate::analyze::Options::default());
    print_findings(&checked.findings, &checked.sources);
    match before_analysis {
        Some(artifact) => {
            let artifact = artifact.context("building the artifact")?;
            let (errors, _) = Summary::count(&checked.findings);
            if errors > 0 {
                eprintln!(
                    "warning: the policy set has {errors} conflict error(s) (above): evaluating it anyway; `sluice compile` and a rollout refuse it until they are fixed"
                );
            }
            Ok(Some(artifact))
        }
        None => {
            let (errors, _) = Summary::count(&checked.findings);
            eprintln!("the policy set has {errors} error(s): run `sluice check` for details");
            Ok(None)
        }
    }
}

pub(super) fn cmd_compile(
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

pub(super) fn cmd_fmt(repo_dir: &Path, check: bool, files: &[PathBuf]) -> anyhow::Result<Exit> {
    // (path on disk, source named as in diagnostics)
    let mut sources: Vec<(PathBuf, SourceFile)> = Vec::new();
    if files.is_empty() {
        let repo_files = tree::fs::load(repo_dir, Traces::Skip)?;
        for f in repo_files.policies {
            sources.push((repo_dir.join(&f.name), f));
        }
    } else {
        for path in files {
            let f = tree::fs::read_file(Path::new("."), path)?;
            sources.push((path.clone(), f));
        }
    }
    let inputs: Vec<SourceFile> = sources.iter().map(|(_, f)| f.clone()).collect();
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
                    print!("{}", crate::fmt::diff(&file.name, &file.text, &text));
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
