//! `sluice eval`: one request, or a file of JSON lines in order, evaluated
//! against the repository's compiled set, as the engine would answer (limits
//! count across lines, approvals get local ids). Evaluates with
//! [`Evaluator`]; only reads input and prints.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::{Exit, Format};
use crate::api::evaluate::EvalResponse;
use crate::eval::Evaluator;
use crate::eval::explain::Explanation;
use crate::eval::response::ResponseContext;
use crate::eval::state::MemoryLimitStore;
use crate::model::ir::DecisionKind;
use crate::tree::{self, Traces};

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

/// A decision as `sluice eval` prints it: the decision, every reason, the
/// values the modifications set, and for a default decision the rule that
/// came closest to matching (from `explanation`).
fn print_response_human(
    out: &mut impl Write,
    resp: &EvalResponse,
    explanation: &Explanation,
) -> std::io::Result<()> {
    if resp.reasons.is_empty() {
        writeln!(
            out,
            "{}  (no rule matched: the project default)",
            resp.decision.as_str()
        )?;
        match explanation.closest() {
            Some(c) => writeln!(
                out,
                "  closest: {}.{} ({} {}), {} of {} conditions held; {}",
                c.policy,
                c.rule,
                c.kind,
                c.effect.as_str(),
                c.held,
                c.conjuncts,
                c.why_not.as_deref().unwrap_or("")
            )?,
            None => writeln!(
                out,
                "  no rule or limit about this tool has a part of its condition that holds"
            )?,
        }
    } else {
        writeln!(out, "{}", resp.decision.as_str())?;
    }
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
        let value = resp
            .request
            .as_ref()
            .and_then(|r| m.field.split('.').try_fold(r, |v, k| v.get(k)))
            .map_or_else(|| "(absent)".to_string(), ToString::to_string);
        writeln!(
            out,
            "  modified {} = {value}  ({}.{} {})",
            m.field, m.policy, m.rule, m.code
        )?;
    }
    if let Some(id) = &resp.approval_id {
        writeln!(out, "  approval id: {id}")?;
    }
    Ok(())
}

/// The text of a request argument: a file, or standard input for `-`.
fn read_input(input: &Path) -> anyhow::Result<String> {
    if input == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(input).with_context(|| format!("reading `{}`", input.display()))
    }
}

/// `sluice explain`: one request, every rule and limit with why it matched
/// or not, the modified values and the decision.
pub(super) fn cmd_explain(
    repo_dir: &Path,
    input: &Path,
    format: Format,
    all: bool,
    now: Option<u64>,
) -> anyhow::Result<Exit> {
    let text = read_input(input)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not one JSON request", input.display()))?;
    let files = tree::fs::load(repo_dir, Traces::Skip)?;
    let Some(artifact) = super::check::evaluable_artifact(&files)? else {
        return Ok(Exit::Findings);
    };
    let evaluator = Evaluator::new(&artifact).context("loading the artifact")?;
    let req = evaluator
        .decode(&json)
        .with_context(|| format!("`{}` is not a valid request", input.display()))?;
    let limits = MemoryLimitStore::new();
    let explanation = evaluator.explain(&req, now.unwrap_or_else(now_secs), &limits)?;
    let tool = req
        .get_path(evaluator.schema(), crate::eval::TOOL_FIELD)
        .and_then(|v| match v {
            crate::eval::request::FieldValue::Str(s) => Some(s.clone()),
            _ => None,
        });
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let s = serde_json::to_string_pretty(&explanation).context("rendering")?;
            writeln!(out, "{s}")?;
        }
        Format::Human => {
            // Checks that cannot be about this tool fail on their `tool`
            // atom: listed only with `--all`.
            let mut hidden = 0;
            for c in &explanation.checks {
                let other_tool = c.other_tool;
                if other_tool && !all {
                    hidden += 1;
                    continue;
                }
                let mark = if c.contributes {
                    "✓"
                } else if c.matched {
                    "·"
                } else {
                    "✗"
                };
                let code = c
                    .code
                    .as_deref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{mark} {} {}.{} → {}{code}",
                    c.kind,
                    c.policy,
                    c.rule,
                    c.effect.as_str()
                )?;
                if let Some(w) = &c.why_not {
                    writeln!(out, "    not matched: {w}")?;
                } else if let Some(l) = &c.limit {
                    writeln!(out, "    matched; limit {l}")?;
                } else {
                    writeln!(out, "    matched")?;
                }
            }
            if hidden > 0 {
                writeln!(
                    out,
                    "({hidden} rule(s) and limit(s) for other tools than {} not shown: `--all` shows them)",
                    tool.as_deref()
                        .map_or("this one".to_string(), |t| format!("`{t}`"))
                )?;
            }
            for m in &explanation.modified {
                writeln!(
                    out,
                    "modified {} = {}  ({} {})",
                    m.field, m.value, m.by, m.code
                )?;
            }
            if explanation.default {
                write!(
                    out,
                    "decision: {} (no rule matched: the project default",
                    explanation.decision.as_str()
                )?;
                match explanation.closest() {
                    Some(c) => writeln!(out, "; closest: {}.{})", c.policy, c.rule)?,
                    None => writeln!(out, ")")?,
                }
            } else {
                writeln!(out, "decision: {}", explanation.decision.as_str())?;
            }
        }
    }
    Ok(Exit::Ok)
}

pub(super) fn cmd_eval(
    repo_dir: &Path,
    input: &Path,
    format: Format,
    now: Option<u64>,
) -> anyhow::Result<Exit> {
    let text = read_input(input)?;
    let files = tree::fs::load(repo_dir, Traces::Skip)?;
    let Some(artifact) = super::check::evaluable_artifact(&files)? else {
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
                let explanation = evaluator.explain(&req, now, &MemoryLimitStore::new())?;
                print_response_human(&mut out, &resp, &explanation)
                    .context("writing the response")?
            }
        }
    }
    Ok(status)
}
