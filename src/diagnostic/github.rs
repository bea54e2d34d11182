//! Findings for GitHub Actions (`--format github`): one workflow command per
//! finding, which GitHub shows as an annotation on the pull request's diff,
//! and a Markdown summary for the job's summary page (`$GITHUB_STEP_SUMMARY`).
//!
//! A workflow command is `::error file=F,line=L,col=C,endLine=…,endColumn=…,title=CODE::MESSAGE`
//! (`::warning` for warnings, `::notice` for notes). Its message escapes `%`, `\r` and `\n`; its
//! property values escape `:` and `,` as well, as GitHub requires. The
//! annotation points at the finding's first label; the other labels are named
//! in the message. Pure: findings in, text out.

use std::fmt::Write as _;

use super::{Finding, Label, Severity, Sources, Summary, prefixed};

/// Escapes the message of a workflow command: `%`, `\r`, `\n`.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command: `%`, `\r`, `\n`, `:`, `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One workflow command per finding, each on its own line.
pub fn annotations(findings: &[Finding], sources: &Sources, prefix: &str) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&annotation(f, sources, prefix));
        out.push('\n');
    }
    out
}

/// The workflow command of one finding (without the final newline).
pub fn annotation(f: &Finding, sources: &Sources, prefix: &str) -> String {
    let command = match f.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "notice",
    };
    let mut props: Vec<String> = Vec::new();
    if let Some(first) = f.labels.first() {
        props.push(format!(
            "file={}",
            escape_property(&prefixed(prefix, &first.file))
        ));
        if let Some(r) = sources.region(first) {
            // GitHub's end column is the last character's; SARIF's is the one
            // after it. An empty span marks the one character it starts at.
            let end_column = if r.end_line == r.start_line {
                r.end_column.saturating_sub(1).max(r.start_column)
            } else {
                r.end_column
            };
            props.push(format!("line={}", r.start_line));
            props.push(format!("col={}", r.start_column));
            props.push(format!("endLine={}", r.end_line));
            props.push(format!("endColumn={end_column}"));
        }
    }
    props.push(format!("title={}", escape_property(f.code.as_str())));
    let mut message = f.message.clone();
    for l in f.labels.iter().skip(1) {
        let _ = write!(message, "\nalso: {}", place(l, sources, prefix));
    }
    if let Some(help) = &f.help {
        let _ = write!(message, "\nhelp: {help}");
    }
    if let Some(w) = &f.witness {
        let _ = write!(message, "\nwitness: {w}");
    }
    format!("::{command} {}::{}", props.join(","), escape_data(&message))
}

/// `file:line:column` of a label (relative to the git root; just the file
/// when the report does not hold it), with its message when it has one.
fn place(l: &Label, sources: &Sources, prefix: &str) -> String {
    let mut s = prefixed(prefix, &l.file);
    if let Some(r) = sources.region(l) {
        let _ = write!(s, ":{}:{}", r.start_line, r.start_column);
    }
    if let Some(m) = &l.message {
        let _ = write!(s, " ({m})");
    }
    s
}

/// Text for a Markdown table cell: no line breaks, no raw HTML, no `|`.
fn cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace(['\n', '\r'], "<br>")
}

/// A code fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat(longest.max(2) + 1)
}

/// The Markdown summary of a check: a heading with the verdict, an optional
/// note (what was compared), a table of findings, and for each finding with a
/// witness a `<details>` block holding the request and the decisions it gets.
pub fn summary_markdown(
    findings: &[Finding],
    sources: &Sources,
    summary: &Summary,
    prefix: &str,
    failed: bool,
    note: Option<&str>,
) -> String {
    let mut out = String::new();
    let verdict = if failed { "failed" } else { "passed" };
    let _ = writeln!(out, "### sluice check {verdict}\n");
    let _ = writeln!(
        out,
        "{} error(s), {} warning(s){} in {} policies, {} rules.\n",
        summary.errors,
        summary.warnings,
        if summary.notes > 0 {
            format!(", {} note(s)", summary.notes)
        } else {
            String::new()
        },
        summary.policies,
        summary.rules
    );
    if let Some(note) = note {
        let _ = writeln!(out, "{note}\n");
    }
    out.push_str(&super::change::markdown_section(
        findings,
        sources,
        summary.replay.as_ref(),
        prefix,
    ));
    if findings.is_empty() {
        let _ = writeln!(out, "No findings.");
        return out;
    }
    let _ = writeln!(out, "| | code | where | message |");
    let _ = writeln!(out, "|---|---|---|---|");
    for f in findings {
        let icon = match f.severity {
            Severity::Error => "❌ error",
            Severity::Warning => "⚠️ warning",
            Severity::Note => "ℹ️ note",
        };
        let places: Vec<String> = f
            .labels
            .iter()
            .map(|l| format!("`{}`", cell(&place(l, sources, prefix)).replace('`', "'")))
            .collect();
        let mut message = cell(&f.message);
        if let Some(help) = &f.help {
            let _ = write!(message, "<br>*help:* {}", cell(help));
        }
        let _ = writeln!(
            out,
            "| {icon} | `{}` | {} | {message} |",
            f.code,
            places.join("<br>")
        );
    }
    let witnesses: Vec<&Finding> = findings.iter().filter(|f| f.witness.is_some()).collect();
    if !witnesses.is_empty() {
        let _ = writeln!(out, "\n#### Witnesses\n");
    }
    for f in witnesses {
        let at = f
            .labels
            .first()
            .map(|l| format!(" at {}", place(l, sources, prefix)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<details><summary><code>{}</code>{}</summary>\n",
            f.code,
            cell(&at)
        );
        if let Some(w) = &f.witness {
            let pretty = serde_json::to_string_pretty(w).unwrap_or_default();
            let fence = fence(&pretty);
            let _ = writeln!(
                out,
                "A request that triggers it:\n\n{fence}json\n{pretty}\n{fence}\n"
            );
        }
        if let Some(d) = &f.witness_decisions {
            let _ = writeln!(out, "| rule | decision |\n|---|---|");
            for (k, v) in d {
                let _ = writeln!(out, "| `{}` | {} |", cell(k), cell(v));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "</details>\n");
    }
    out
}
