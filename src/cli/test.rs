//! `sluice test`: the repository's traces replayed against its compiled set
//! ([`crate::replay`]), failures listed. Reads through [`crate::tree`];
//! decides nothing beyond the exit status.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::output::print_findings;
use super::{Exit, Format};
use crate::api::replay::{ReplayReport, Verdict};
use crate::diagnostic::{self, Sources, Summary};
use crate::eval::Evaluator;
use crate::eval::state::MemoryLimitStore;
use crate::model::ir::DecisionKind;
use crate::pipeline;
use crate::replay;
use crate::tree::{self, Traces};

pub(super) fn cmd_test(repo_dir: &Path, format: Format) -> anyhow::Result<Exit> {
    let files = tree::fs::load(repo_dir, Traces::Read)?;
    let checked = pipeline::check_sources(&files.project, &files.policies);
    print_findings(&checked.findings, &checked.sources);
    let (Some(project), Some(Ok(artifact))) = (checked.project.as_ref(), checked.artifact(None))
    else {
        eprintln!("the policy set has errors: run `sluice check` for details");
        return Ok(Exit::Findings);
    };
    let evaluator = Evaluator::new(&artifact).context("loading the artifact")?;
    let traces = &files.traces;
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
    for file in traces {
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
                "invalid": diagnostic::to_json(&invalid, &sources, &Summary::default())
                    .get("findings")
                    .cloned()
                    .unwrap_or_default(),
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
