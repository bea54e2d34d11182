//! A commit, compiled and checked: the artifact, its rollout plan, the
//! replay of its traces and, when the daemon is given a decision log, that
//! traffic replayed against the candidate. Pure: sources in, figures out.
//!
//! A commit is refused (never rolled out) when `sluice.toml` is missing,
//! the set has errors, a trace line is invalid, or — given the engines'
//! live state — the change has `state::` errors against it (a limit lowered
//! below live counters, pending approvals a change would resolve: SPEC §3),
//! compared with the stable artifact's set; the reason names the first
//! findings with their file and line.
//!
//! **What gates a commit.** A commit is gated by the plan and the traces of
//! the stable commit it replaces ([`Gate`], SPEC §6): the plan returned is
//! the gate's `[rollout]` (`None`: installed directly), and the replay runs
//! the gate's trace files and the commit's own (a file the same at both is
//! run once). A commit cannot loosen its own gates, delete the traces that
//! would catch it, or remove its own rollout. Without a gate (the first
//! commit, or a stable artifact with no commit) the commit's own plan and
//! traces are used.
//!
//! **Decision-log replay.** Every `evaluation` line of the engine's decision
//! log (SPEC §5) is evaluated against the candidate in log order (limit
//! counters shared, at the line's time) and its decision compared with the
//! logged one. A flip is attributed to the rule that made the candidate's
//! decision (`policy.rule`), or, when the candidate's decision came from no
//! rule of its severity, to the rule that made the logged decision, marked
//! `(no longer decides)`, or to `(default)`. Flips are reported by rule in
//! the `start` audit line and in status; they inform, they do not gate.

use std::collections::BTreeMap;

use serde_json::Value;

use super::git::CommitFiles;
use crate::api::audit::{Flip, LogReplay, Notes, StateChecks};
use crate::api::evaluate::ResponseReason;
use crate::api::replay::ReplayReport;
use crate::compile::artifact::Artifact;
use crate::diagnostic::Finding;
use crate::eval::Evaluator;
use crate::eval::response::ResponseContext;
use crate::eval::state::MemoryLimitStore;
use crate::model::ir::DecisionKind;
use crate::model::plan::RolloutPlan;
use crate::pipeline;
use crate::replay::{self, DEFAULT_TIME};
use crate::review;
pub use crate::review::build::Live;
use crate::tree::RepoSources;

/// The most decision-log lines replayed (the last ones are kept).
pub const MAX_LOG_LINES: usize = 100_000;

/// The most kinds of flips reported (the most frequent).
pub const MAX_FLIPS: usize = 50;

/// A commit that checked clean.
#[derive(Debug)]
pub struct Built {
    pub artifact: Artifact,
    pub bytes: Vec<u8>,
    pub plan: Option<RolloutPlan>,
    pub replay: ReplayReport,
    /// Figures for the audit log and status: trace files, state checks,
    /// decision-log flips.
    pub notes: Notes,
}

fn located(f: &Finding, files: &RepoSources) -> String {
    let place = f.labels.first().map(|l| {
        let line = std::iter::once(&files.project)
            .chain(&files.policies)
            .chain(&files.agents)
            .chain(&files.traces)
            .find(|s| s.name == l.file)
            .map_or(0, |s| s.line_col(l.span.start).0);
        format!(" ({}:{line})", l.file)
    });
    format!("{} {}{}", f.code, f.message, place.unwrap_or_default())
}

fn summarize(findings: &[&Finding], files: &RepoSources) -> String {
    let mut parts: Vec<String> = findings.iter().take(3).map(|f| located(f, files)).collect();
    if findings.len() > 3 {
        parts.push(format!("and {} more", findings.len() - 3));
    }
    format!("{} error(s): {}", findings.len(), parts.join("; "))
}

/// An error and its causes on one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        next = cause.source();
    }
    s
}

/// The commit whose plan and traces gate a build: the stable commit.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    pub commit: &'a str,
    pub sources: &'a RepoSources,
}

/// Reads a gate's plan; `Err` is why it cannot be read.
fn gate_plan(gate: &Gate<'_>) -> Result<Option<RolloutPlan>, String> {
    crate::project::parse(&gate.sources.project)
        .map(|p| p.rollout)
        .map_err(|findings| {
            let refs: Vec<&Finding> = findings.iter().collect();
            format!(
                "the `[rollout]` of stable commit {} cannot be read: {}",
                crate::model::short::hash(gate.commit),
                summarize(&refs, gate.sources)
            )
        })
}

/// Compiles and checks a commit under its own plan and traces; `Err` is the
/// reason it is refused.
pub fn build(
    files: &CommitFiles,
    decision_log: Option<&str>,
    live: Option<Live<'_>>,
) -> Result<Built, String> {
    build_gated(files, None, decision_log, live)
}

/// Compiles and checks a commit under the plan and traces of `gate` (its
/// own without one); `Err` is the reason it is refused.
pub fn build_gated(
    files: &CommitFiles,
    gate: Option<Gate<'_>>,
    decision_log: Option<&str>,
    live: Option<Live<'_>>,
) -> Result<Built, String> {
    let sources = files.sources.as_ref().map_err(|e| with_causes(e))?;
    let checked = pipeline::check_repo(&sources.project, &sources.policies, &sources.agents);
    let errors: Vec<&Finding> = checked.findings.iter().filter(|f| f.is_error()).collect();
    if !errors.is_empty() {
        return Err(summarize(&errors, sources));
    }
    let built = review::build::build(&checked, Some(files.commit.clone()), live)
        .map_err(|e| with_causes(&e))?;
    let (Some(project), Some(built)) = (checked.project.as_ref(), built) else {
        return Err("the policy set did not check".to_string());
    };
    let bytes = built
        .artifact
        .to_bytes()
        .map_err(|e| format!("serializing the artifact: {e}"))?;
    let plan = match &gate {
        Some(g) => gate_plan(g)?,
        None => project.rollout.clone(),
    };
    // The gate's trace files, then the commit's own that differ.
    let gate_traces = gate
        .map(|g| g.sources.traces.as_slice())
        .unwrap_or_default();
    let own = sources.traces.iter().filter(|t| {
        !gate_traces
            .iter()
            .any(|g| g.name == t.name && g.text == t.text)
    });
    let traces: Vec<&crate::source::SourceFile> = gate_traces.iter().chain(own).collect();
    let mut report = ReplayReport::default();
    let mut invalid = Vec::new();
    for file in traces.iter().copied() {
        let (cases, mut bad) = replay::parse_traces(file);
        invalid.append(&mut bad);
        let limits = MemoryLimitStore::new();
        replay::run(&built.evaluator, &cases, &limits, &mut report);
    }
    if !invalid.is_empty() {
        let refs: Vec<&Finding> = invalid.iter().collect();
        return Err(format!("invalid traces: {}", summarize(&refs, sources)));
    }
    let mut notes = Notes {
        trace_files: Some(traces.len()),
        ..Notes::default()
    };
    if live.is_some() {
        let mut warnings = Vec::new();
        for engine in &built.live {
            let errors: Vec<&Finding> = engine.findings.iter().filter(|f| f.is_error()).collect();
            if !errors.is_empty() {
                return Err(format!(
                    "against the live state of engine {}: {}",
                    engine.engine,
                    summarize(&errors, sources)
                ));
            }
            warnings.extend(
                engine
                    .findings
                    .iter()
                    .map(|f| format!("{}: {}", engine.engine, located(f, sources))),
            );
        }
        notes.state_checks = Some(StateChecks {
            engines: built.live.len(),
            warnings,
        });
    }
    notes.decision_log = decision_log.map(|log| replay_log(&built.evaluator, log));
    Ok(Built {
        artifact: built.artifact,
        bytes,
        plan,
        replay: report,
        notes,
    })
}

fn rule_of(reasons: &[ResponseReason], effect: DecisionKind) -> Option<String> {
    reasons
        .iter()
        .find(|r| r.effect == effect)
        .map(|r| format!("{}.{}", r.policy, r.rule))
}

/// Replays decision-log lines against a candidate.
pub fn replay_log(evaluator: &Evaluator, log: &str) -> LogReplay {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    let limits = MemoryLimitStore::new();
    let mut out = LogReplay::default();
    let mut flips: BTreeMap<(String, DecisionKind, DecisionKind), u64> = BTreeMap::new();
    for line in lines.get(start..).unwrap_or_default() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            out.skipped += 1;
            continue;
        };
        let is_eval = v
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(|k| k == "evaluation");
        let logged = v
            .get("decision")
            .cloned()
            .and_then(|d| serde_json::from_value::<DecisionKind>(d).ok());
        let (true, Some(logged), Some(request)) = (is_eval, logged, v.get("request")) else {
            out.skipped += 1;
            continue;
        };
        let now = v
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(DEFAULT_TIME, |d| d.as_secs());
        let Ok(req) = evaluator.decode(request) else {
            out.skipped += 1;
            continue;
        };
        let Ok(outcome) = evaluator.evaluate(&req, now, &limits) else {
            out.skipped += 1;
            continue;
        };
        out.evaluated += 1;
        let resp = evaluator.respond(&req, &outcome, &ResponseContext::default());
        if resp.decision == logged {
            continue;
        }
        out.flipped += 1;
        let old_reasons: Vec<ResponseReason> = v
            .get("reasons")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default();
        let rule = rule_of(&resp.reasons, resp.decision)
            .or_else(|| rule_of(&old_reasons, logged).map(|r| format!("{r} (no longer decides)")))
            .unwrap_or_else(|| "(default)".to_string());
        *flips.entry((rule, logged, resp.decision)).or_default() += 1;
    }
    out.flips = flips
        .into_iter()
        .map(|((rule, from, to), count)| Flip {
            rule,
            from,
            to,
            count,
        })
        .collect();
    out.flips
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
    out
}
