//! "What this change does": the findings of what a change does to decisions
//! (`change::decision`, `change::widened`) and the replay of requests at
//! both revisions, summed up for the top of a pull-request report — as text
//! for humans and as Markdown for the GitHub step summary. Pure.

use std::fmt::Write as _;

use super::{Finding, ReplaySummary, Sources, prefixed};

/// Whether a finding says what a change does to decisions.
pub fn is_change(f: &Finding) -> bool {
    f.code.family() == "change"
}

/// `file:line` of a finding's first label (relative to `prefix`), or empty.
fn at(f: &Finding, sources: &Sources, prefix: &str) -> String {
    f.labels.first().map_or_else(String::new, |l| {
        let (line, _) = sources.line_col(l);
        format!("{}:{line}", prefixed(prefix, &l.file))
    })
}

/// The rule a change finding is about (`policy.rule`), from its label.
fn rule(f: &Finding) -> String {
    f.labels
        .first()
        .and_then(|l| Some(format!("{}.{}", l.policy.as_deref()?, l.rule.as_deref()?)))
        .unwrap_or_default()
}

fn transition(f: &Finding) -> String {
    f.witness_decisions
        .as_ref()
        .and_then(|d| Some(format!("{} → {}", d.get("base")?, d.get("head")?)))
        .unwrap_or_default()
}

/// The plain-text section; empty when there is nothing to say (no change
/// finding and no replay).
pub fn human_section(
    findings: &[Finding],
    sources: &Sources,
    replay: Option<&ReplaySummary>,
) -> String {
    let changes: Vec<&Finding> = findings.iter().filter(|f| is_change(f)).collect();
    if changes.is_empty() && replay.is_none() {
        return String::new();
    }
    let mut out = String::from("What this change does\n");
    if changes.is_empty() {
        out.push_str("  no request's final decision changes\n");
    }
    for f in &changes {
        let mark = if f.code == super::Code::ChangeWidened {
            "widened"
        } else {
            "changed"
        };
        let _ = writeln!(
            out,
            "  {mark:<8} {:<32} {:<24} {}",
            rule(f),
            transition(f),
            at(f, sources, "")
        );
        if let Some(w) = &f.witness {
            let _ = writeln!(out, "           e.g. {w}");
        }
    }
    if let Some(r) = replay {
        let _ = writeln!(
            out,
            "  replayed {} request(s) at both revisions: {} changed decision{}",
            r.requests,
            r.changed,
            if r.skipped > 0 {
                format!(" ({} skipped)", r.skipped)
            } else {
                String::new()
            }
        );
        for (t, n) in &r.by_transition {
            let _ = writeln!(out, "    {t}: {n}");
        }
        for e in &r.examples {
            let _ = writeln!(
                out,
                "    {} ({} → {}): {}",
                e.source, e.base, e.head, e.request
            );
        }
    }
    out.push('\n');
    out
}

/// Text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// The Markdown section of the step summary: a table of what the change
/// does to decisions, and the replay's figures.
pub fn markdown_section(
    findings: &[Finding],
    sources: &Sources,
    replay: Option<&ReplaySummary>,
    prefix: &str,
) -> String {
    let changes: Vec<&Finding> = findings.iter().filter(|f| is_change(f)).collect();
    if changes.is_empty() && replay.is_none() {
        return String::new();
    }
    let mut out = String::from("#### What this change does\n\n");
    if changes.is_empty() {
        out.push_str("No request's final decision changes.\n\n");
    } else {
        out.push_str("| | rule | base → head | where | example request |\n|---|---|---|---|---|\n");
        for f in &changes {
            let mark = if f.code == super::Code::ChangeWidened {
                "⚠️ widened"
            } else {
                "ℹ️ changed"
            };
            let example = f
                .witness
                .as_ref()
                .map(|w| format!("`{}`", cell(&w.to_string()).replace('`', "'")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {mark} | `{}` | {} | `{}` | {example} |",
                cell(&rule(f)),
                cell(&transition(f)),
                cell(&at(f, sources, prefix))
            );
        }
        out.push('\n');
    }
    if let Some(r) = replay {
        let _ = writeln!(
            out,
            "Replayed {} request(s) at both revisions: {} changed decision ({} skipped).\n",
            r.requests, r.changed, r.skipped
        );
        if !r.by_transition.is_empty() {
            out.push_str("| base → head | requests |\n|---|---|\n");
            for (t, n) in &r.by_transition {
                let _ = writeln!(out, "| {} | {n} |", cell(t));
            }
            out.push('\n');
        }
    }
    out
}
