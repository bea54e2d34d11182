//! Requests replayed against both revisions of a change (SPEC §3, "What a
//! change does to decisions"): the head's trace cases and, when given, the
//! evaluations of an engine's decision log (its format:
//! `engine::decision_log`; lines that are not evaluations are skipped).
//!
//! Each source is a sequence of its own (a trace file, the log), evaluated
//! in order at each revision with that revision's own limit counters, at
//! the case's or the line's time, so that a limit changed by the change
//! shows as the requests it now stops or lets through. A request that one
//! revision's schema refuses is skipped and counted. Pure: texts in,
//! figures out.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{DEFAULT_TIME, TraceCase};
use crate::diagnostic::{ReplayExample, ReplaySummary};
use crate::eval::Evaluator;
use crate::eval::state::MemoryLimitStore;
use crate::model::ir::DecisionKind;

/// How many changed requests a summary shows.
pub const EXAMPLES: usize = 10;

/// Lines of a decision log read at most (the last ones are kept).
pub const MAX_LOG_LINES: usize = 100_000;

/// One request to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// `traces/x.jsonl:3`, or `decision log line 17`.
    pub source: String,
    pub request: serde_json::Value,
    pub time: u64,
}

/// The requests of trace cases, one sequence per file.
pub fn of_traces(cases: &[TraceCase]) -> Vec<Vec<Replayed>> {
    let mut by_file: BTreeMap<&str, Vec<Replayed>> = BTreeMap::new();
    for c in cases {
        by_file.entry(&c.file).or_default().push(Replayed {
            source: format!("{}:{}", c.file, c.line),
            request: c.request.clone(),
            time: c.time.unwrap_or(DEFAULT_TIME),
        });
    }
    by_file.into_values().collect()
}

/// What this replay reads of a decision-log line.
#[derive(Deserialize)]
struct LogLine {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    request: Option<serde_json::Value>,
}

/// The evaluations of a decision log (the last [`MAX_LOG_LINES`] lines), and
/// how many lines were skipped (not JSON, not an evaluation, no request).
pub fn of_log(text: &str) -> (Vec<Replayed>, usize) {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    let mut skipped = start;
    let mut out = Vec::new();
    for (i, line) in lines.into_iter().skip(start) {
        let Ok(l) = serde_json::from_str::<LogLine>(line) else {
            skipped += 1;
            continue;
        };
        let (true, Some(request)) = (
            l.kind.as_deref().is_none_or(|k| k == "evaluation"),
            l.request,
        ) else {
            skipped += 1;
            continue;
        };
        let time = l
            .time
            .and_then(|t| humantime::parse_rfc3339_weak(&t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(DEFAULT_TIME, |d| d.as_secs());
        out.push(Replayed {
            source: format!("decision log line {}", i + 1),
            request,
            time,
        });
    }
    (out, skipped)
}

/// The transition's key in `by_transition`: `deny→allow`.
pub fn transition(from: DecisionKind, to: DecisionKind) -> String {
    format!("{}→{}", from.as_str(), to.as_str())
}

/// Replays every sequence at both revisions. `skipped` starts the count of
/// requests left out (log lines already skipped).
pub fn compare(
    base: &Evaluator,
    head: &Evaluator,
    sequences: &[Vec<Replayed>],
    skipped: usize,
) -> ReplaySummary {
    let mut out = ReplaySummary {
        skipped,
        ..ReplaySummary::default()
    };
    let mut firsts = Vec::new();
    let mut rest = Vec::new();
    for seq in sequences {
        let (bl, hl) = (MemoryLimitStore::new(), MemoryLimitStore::new());
        for r in seq {
            let decide = |ev: &Evaluator, store: &MemoryLimitStore| {
                let req = ev.decode(&r.request).ok()?;
                ev.evaluate(&req, r.time, store).ok().map(|o| o.decision())
            };
            let (Some(b), Some(h)) = (decide(base, &bl), decide(head, &hl)) else {
                out.skipped += 1;
                continue;
            };
            out.requests += 1;
            if b == h {
                continue;
            }
            out.changed += 1;
            let key = transition(b, h);
            let n = out.by_transition.entry(key).or_default();
            *n += 1;
            let example = ReplayExample {
                source: r.source.clone(),
                request: r.request.clone(),
                base: b.as_str().to_string(),
                head: h.as_str().to_string(),
            };
            if *n == 1 {
                firsts.push(example);
            } else if rest.len() < EXAMPLES {
                rest.push(example);
            }
        }
    }
    out.examples = firsts.into_iter().chain(rest).take(EXAMPLES).collect();
    out
}
