//! Replay: trace cases (a request and the decision it must get) run against
//! an evaluator, classified the way rollout gates read them. Pure apart from
//! the limit store the caller passes.
//!
//! A trace file is JSON lines: `{"name": "sanctioned country", "request":
//! {…}, "expect": "deny", "code": "SANCTIONED", "time": 1767225600}`
//! (`name`, `code`, `time` and `expect_args` optional). Cases of a file are
//! evaluated in order with shared limit counters, at `time` when given
//! (seconds since the epoch), else at a fixed instant, so a replay is
//! deterministic. `expect_args` asserts the request's `args` after the
//! decision's modifications: each key (a path below `args`, `body` or
//! `payment.memo`) must hold the value given (`null`: absent).
//!
//! Classification:
//! - **catastrophic**: a blocking decision was expected (`deny`,
//!   `require_approval`) and a permissive one came (`allow`, `modify`): the
//!   action would have gone through unchecked;
//! - **false positive**: a permissive decision was expected and a blocking
//!   one came;
//! - **mismatch**: any other difference (`deny` vs `require_approval`,
//!   `allow` vs `modify`, or no reason with the final decision carries the
//!   expected code);
//! - **bad request**: the request does not fit the schema.

pub mod change;

use crate::api::evaluate::ResponseReason;
use crate::api::replay::{CaseResult, ReplayReport, Verdict};
use crate::diagnostic::{Code, Finding, Label};
use crate::eval::Evaluator;
use crate::eval::explain::CheckName;
use crate::eval::response::ResponseContext;
use crate::eval::state::LimitStore;
use crate::model::ir::DecisionKind;
use crate::source::{SourceFile, Span};

/// The instant cases without `time` are evaluated at (2026-01-01T00:00:00Z).
pub const DEFAULT_TIME: u64 = 1_767_225_600;

#[derive(Debug, Clone, PartialEq)]
pub struct TraceCase {
    /// File and 1-based line of the case.
    pub file: String,
    pub line: usize,
    /// What the case is about, as its author named it.
    pub name: Option<String>,
    pub request: serde_json::Value,
    pub expect: DecisionKind,
    pub code: Option<String>,
    pub time: Option<u64>,
    /// Values the request's `args` must hold after the modifications.
    pub expect_args: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    name: Option<String>,
    request: serde_json::Value,
    expect: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    time: Option<u64>,
    #[serde(default)]
    expect_args: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Parses a trace file. Every malformed line is a `trace::invalid` finding at
/// that line; the other lines are still returned.
pub fn parse_traces(file: &SourceFile) -> (Vec<TraceCase>, Vec<Finding>) {
    let mut cases = Vec::new();
    let mut findings = Vec::new();
    let mut offset = 0;
    for (i, line) in file.text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        if content.trim().is_empty() || content.trim_start().starts_with("//") {
            continue;
        }
        let span = Span::new(start, start + content.len());
        let bad = |message: String, help: &str| {
            Finding::new(Code::TraceInvalid, message)
                .with_label(Label::new(&file.name, span))
                .with_help(help.to_string())
        };
        let raw: RawCase = match serde_json::from_str(content) {
            Ok(r) => r,
            Err(e) => {
                findings.push(bad(
                    format!("line {} is not a trace case: {e}", i + 1),
                    "a case is {\"name\": \"optional\", \"request\": {…}, \"expect\": \"deny\", \"code\": \"OPTIONAL\", \"expect_args\": {\"optional\": …}}",
                ));
                continue;
            }
        };
        let Some(expect) = DecisionKind::parse(&raw.expect) else {
            findings.push(bad(
                format!("unknown expected decision `{}`", raw.expect),
                "expect one of `allow`, `deny`, `require_approval`, `modify`",
            ));
            continue;
        };
        cases.push(TraceCase {
            file: file.name.clone(),
            line: i + 1,
            name: raw.name,
            request: raw.request,
            expect,
            code: raw.code,
            time: raw.time,
            expect_args: raw.expect_args,
        });
    }
    (cases, findings)
}

fn blocking(d: DecisionKind) -> bool {
    matches!(d, DecisionKind::Deny | DecisionKind::RequireApproval)
}

/// Classifies one result.
pub fn classify(
    expect: DecisionKind,
    code: Option<&str>,
    got: DecisionKind,
    reasons: &[ResponseReason],
) -> Verdict {
    if expect == got {
        // The expected code must come from a reason that made the decision.
        let code_ok = code.is_none_or(|c| {
            reasons
                .iter()
                .any(|r| r.effect == got && r.code.as_deref() == Some(c))
        });
        return if code_ok {
            Verdict::Pass
        } else {
            Verdict::Mismatch
        };
    }
    match (blocking(expect), blocking(got)) {
        (true, false) => Verdict::Catastrophic,
        (false, true) => Verdict::FalsePositive,
        _ => Verdict::Mismatch,
    }
}

/// Runs cases in order. The caller gives one limit store per independent
/// sequence of cases (e.g. per trace file).
pub fn run(
    evaluator: &Evaluator,
    cases: &[TraceCase],
    limits: &dyn LimitStore,
    report: &mut ReplayReport,
) {
    for case in cases {
        report.cases += 1;
        if !blocking(case.expect) {
            report.expected_permissive += 1;
        }
        let mut result = CaseResult {
            file: case.file.clone(),
            line: case.line,
            name: case.name.clone(),
            verdict: Verdict::BadRequest,
            expect: case.expect,
            code: case.code.clone(),
            got: None,
            reasons: Vec::new(),
            error: None,
        };
        let outcome = evaluator
            .decode(&case.request)
            .map_err(|e| e.to_string())
            .and_then(|req| {
                let now = case.time.unwrap_or(DEFAULT_TIME);
                let outcome = evaluator
                    .evaluate(&req, now, limits)
                    .map_err(|e| e.to_string())?;
                Ok(evaluator.respond(&req, &outcome, &ResponseContext::default()))
            });
        match outcome {
            Ok(resp) => {
                result.verdict = classify(
                    case.expect,
                    case.code.as_deref(),
                    resp.decision,
                    &resp.reasons,
                );
                if result.verdict == Verdict::Pass
                    && let Some(expected) = &case.expect_args
                {
                    let args = resp.request.as_ref().unwrap_or(&case.request).get("args");
                    if let Some(e) = args_mismatch(expected, args) {
                        result.verdict = Verdict::Mismatch;
                        result.error = Some(e);
                    }
                }
                result.got = Some(resp.decision);
                result.reasons = resp.reasons;
            }
            Err(e) => result.error = Some(e),
        }
        match result.verdict {
            Verdict::Pass => report.passed += 1,
            Verdict::Catastrophic => report.catastrophic += 1,
            Verdict::FalsePositive => report.false_positives += 1,
            Verdict::Mismatch => report.mismatches += 1,
            Verdict::BadRequest => report.bad_requests += 1,
        }
        report.results.push(result);
    }
}

/// The first `expect_args` assertion the request's `args` (after the
/// modifications) does not meet, in words.
fn args_mismatch(
    expected: &serde_json::Map<String, serde_json::Value>,
    args: Option<&serde_json::Value>,
) -> Option<String> {
    for (key, want) in expected {
        let got = args.and_then(|a| key.split('.').try_fold(a, |v, k| v.get(k)));
        let ok = match got {
            Some(g) => g == want,
            None => want.is_null(),
        };
        if !ok {
            let got = got.map_or_else(|| "absent".to_string(), ToString::to_string);
            return Some(format!("args.{key} is {got}, expected {want}"));
        }
    }
    None
}

/// Trace coverage: the rules and limits whose condition no case's request
/// satisfies (a case exercises a check when the check's condition holds for
/// its request, whatever the decision), with the number of checks.
pub fn coverage(evaluator: &Evaluator, cases: &[TraceCase]) -> (Vec<CheckName>, usize) {
    let names = evaluator.check_names();
    let mut hit = vec![false; names.len()];
    for case in cases {
        let Ok(req) = evaluator.decode(&case.request) else {
            continue;
        };
        for (h, held) in hit.iter_mut().zip(evaluator.conditions_held(&req)) {
            *h |= held;
        }
    }
    let total = names.len();
    let missed = names
        .into_iter()
        .zip(hit)
        .filter(|(_, h)| !h)
        .map(|(n, _)| n)
        .collect();
    (missed, total)
}
