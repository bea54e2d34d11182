//! What every command prints the same way: findings for humans (miette, to
//! stderr, colored on a terminal) and notes. Renders only what it is given.

use std::io::{IsTerminal, Write};

use crate::diagnostic::{self, Finding, Sources};

fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// Prints findings to stderr for humans.
pub(super) fn print_findings(findings: &[Finding], sources: &Sources) {
    if findings.is_empty() {
        return;
    }
    let text = diagnostic::render_human(findings, sources, stderr_color(), width());
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Prints notes to stderr, one line each.
pub(super) fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("note: {n}");
    }
}
