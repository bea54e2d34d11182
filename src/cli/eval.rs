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
use crate::eval::response::ResponseContext;
use crate::eval::state::MemoryLimitStore;
use crate::model::ir::DecisionKind;

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

pub(super) fn cmd_eval(
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
    let Some((_, artifact)) = super::check::load_artifact(repo_dir, None)? else {
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
