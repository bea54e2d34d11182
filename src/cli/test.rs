//! `sluice test`: the repository's traces replayed against its compiled set
//! ([`crate::replay`]), failures listed (human, JSON or JUnit XML), and with
//! `--coverage` the rules and limits no case exercises. Reads through
//! [`crate::tree`]; decides nothing beyond the exit status.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::output::print_findings;
use super::{Exit, TestFormat};
use crate::api::replay::{CaseResult, ReplayReport, Verdict};
use crate::diagnostic::{self, Sources, Summary};
use crate::eval::Evaluator;
use crate::eval::explain::CheckName;
use crate::eval::state::MemoryLimitStore;
use crate::model::ir::DecisionKind;
use crate::replay::{self, TraceCase};
use crate::tree::{self, Traces};

pub(super) fn cmd_test(
    repo_dir: &Path,
    format: TestFormat,
    coverage: bool,
) -> anyhow::Result<Exit> {
    let files = tree::fs::load(repo_dir, Traces::Read)?;
    let Some(artifact) = super::check::evaluable_artifact(&files)? else {
        return Ok(Exit::Findings);
    };
    let project = crate::project::parse(&files.project).ok();
    let traces_dir = project.as_ref().map_or("traces", |p| p.traces.as_str());
    for name in &files.not_traces {
        eprintln!(
            "warning: `{name}` is not a trace file and was not replayed: trace files are JSON lines named `*.jsonl`"
        );
    }
    let evaluator = Evaluator::new(&artifact).context("loading the artifact")?;
    let traces = &files.traces;
    if traces.is_empty() {
        eprintln!("no traces: add JSON-lines files (`*.jsonl`) under `{traces_dir}/`");
        return Ok(Exit::Usage);
    }
    let mut report = ReplayReport::default();
    let mut invalid = Vec::new();
    let mut sources = Sources::new();
    let mut all_cases: Vec<TraceCase> = Vec::new();
    for file in traces {
        sources.add(file.clone());
        let (cases, mut bad) = replay::parse_traces(file);
        invalid.append(&mut bad);
        // Counters are shared by the cases of one file, in order.
        let limits = MemoryLimitStore::new();
        replay::run(&evaluator, &cases, &limits, &mut report);
        all_cases.extend(cases);
    }
    let missed = coverage.then(|| replay::coverage(&evaluator, &all_cases));
    match format {
        TestFormat::Json => {
            let mut doc = serde_json::json!({
                "report": report,
                "invalid": diagnostic::to_json(&invalid, &sources, &Summary::default())
                    .get("findings")
                    .cloned()
                    .unwrap_or_default(),
            });
            if let (Some((missed, total)), Some(o)) = (&missed, doc.as_object_mut()) {
                o.insert(
                    "coverage".to_string(),
                    serde_json::json!({"checks": total, "not_exercised": missed}),
                );
            }
            let s = serde_json::to_string_pretty(&doc).context("rendering the report")?;
            println!("{s}");
        }
        TestFormat::Junit => {
            print_findings(&invalid, &sources);
            let mut out = std::io::stdout().lock();
            out.write_all(junit(&report, &traces_names(traces)).as_bytes())
                .context("writing the report")?;
            if let Some((missed, total)) = &missed {
                print_coverage(&mut std::io::stderr().lock(), missed, *total)?;
            }
        }
        TestFormat::Github => {
            let prefix = crate::tree::git::GitRepo::open(repo_dir)
                .map(|g| g.prefix().to_string())
                .unwrap_or_default();
            let mut out = std::io::stdout().lock();
            out.write_all(diagnostic::github::annotations(&invalid, &sources, &prefix).as_bytes())
                .context("writing the report")?;
            for r in report.failures() {
                let title = if r.verdict == Verdict::Catastrophic {
                    "trace catastrophic"
                } else {
                    "trace failed"
                };
                writeln!(
                    out,
                    "::error file={},line={},title={}::{}",
                    diagnostic::github::escape_property(&diagnostic::prefixed(&prefix, &r.file)),
                    r.line,
                    title,
                    diagnostic::github::escape_data(&failure_line(r))
                )?;
            }
            writeln!(
                out,
                "test {}: {} cases, {} passed",
                if report.is_clean() && invalid.is_empty() {
                    "ok"
                } else {
                    "failed"
                },
                report.cases,
                report.passed
            )?;
        }
        TestFormat::Human => {
            print_findings(&invalid, &sources);
            let mut out = std::io::stdout().lock();
            for r in report.failures() {
                print_failure(&mut out, r)?;
            }
            if let Some((missed, total)) = &missed {
                print_coverage(&mut out, missed, *total)?;
            }
            writeln!(
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
            )?;
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

fn traces_names(traces: &[crate::source::SourceFile]) -> Vec<String> {
    traces.iter().map(|t| t.name.clone()).collect()
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Catastrophic => "CATASTROPHIC",
        Verdict::FalsePositive => "false positive",
        Verdict::Mismatch => "mismatch",
        Verdict::BadRequest => "bad request",
        Verdict::Pass => "pass",
    }
}

/// The one-line summary of a failed case.
fn failure_line(r: &CaseResult) -> String {
    let code = r
        .code
        .as_deref()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let got = r.got.map_or("nothing", DecisionKind::as_str);
    let name = r
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    match (&r.error, r.got) {
        // The decision was right; an `expect_args` assertion was not.
        (Some(e), Some(got)) if got == r.expect => format!(
            "{}:{}{name}: {}: got {}{code} as expected, but {e}",
            r.file,
            r.line,
            verdict_text(r.verdict),
            got.as_str()
        ),
        _ => format!(
            "{}:{}{name}: {}: expected {}{code}, got {got}",
            r.file,
            r.line,
            verdict_text(r.verdict),
            r.expect.as_str()
        ),
    }
}

fn print_failure(out: &mut impl Write, r: &CaseResult) -> std::io::Result<()> {
    writeln!(out, "{}", failure_line(r))?;
    if let Some(e) = &r.error
        && r.got != Some(r.expect)
    {
        writeln!(out, "    {e}")?;
    }
    for reason in &r.reasons {
        let code = reason.code.as_deref().unwrap_or("");
        writeln!(
            out,
            "    {}.{} {} {code}",
            reason.policy,
            reason.rule,
            reason.effect.as_str()
        )?;
    }
    Ok(())
}

fn print_coverage(out: &mut impl Write, missed: &[CheckName], total: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "coverage: {} of {total} rules and limits exercised by a trace case",
        total - missed.len()
    )?;
    for m in missed {
        writeln!(out, "  not exercised: {} {}.{}", m.kind, m.policy, m.rule)?;
    }
    Ok(())
}

/// Text escaped for an XML attribute or element.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {
                out.push_str(&format!("&#x{:x};", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The report as JUnit XML: one `testsuite` per trace file, one `testcase`
/// per case (named by its `name`, else `line N`), a `failure` for every case
/// that did not pass.
fn junit(report: &ReplayReport, files: &[String]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = report.failures().count();
    out.push_str(&format!(
        "<testsuites name=\"sluice test\" tests=\"{}\" failures=\"{failures}\">\n",
        report.cases
    ));
    for file in files {
        let cases: Vec<&CaseResult> = report.results.iter().filter(|r| &r.file == file).collect();
        let failed = cases.iter().filter(|r| r.verdict != Verdict::Pass).count();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
            xml(file),
            cases.len()
        ));
        for r in cases {
            let name = r.name.clone().unwrap_or_else(|| format!("line {}", r.line));
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(file),
                xml(&name)
            ));
            if r.verdict == Verdict::Pass {
                out.push_str("/>\n");
                continue;
            }
            let mut body = Vec::new();
            let _ = print_failure(&mut body, r);
            out.push_str(&format!(
                ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
                xml(verdict_text(r.verdict)),
                xml(&failure_line(r)),
                xml(&String::from_utf8_lossy(&body))
            ));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
