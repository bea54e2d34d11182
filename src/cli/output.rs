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
    let text = diagnostic::render_human_linked(findings, sources, stderr_color(), width());
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Prints notes to stderr, one line each.
pub(super) fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("note: {n}");
    }
}

/// An error that stopped a command, as printed: `error: ` and the chain of
/// causes (each said once: a cause whose text its parent already holds is
/// not repeated; I/O errors in words, without the OS's number), then the
/// help of every cause that has one (the hint of a shallow clone, of a
/// folder outside git, of an unknown request field).
pub(super) fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut helps: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => io_text(io),
            None => cause.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        if let Some(help) = diagnostic_help(cause)
            && !helps.contains(&help)
        {
            helps.push(help);
        }
    }
    let mut out = format!("error: {}\n", parts.join(": "));
    for h in helps {
        out.push_str(&format!("help: {h}\n"));
    }
    out
}

/// The help of an error that is one of sluice's diagnostics.
fn diagnostic_help(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    use crate::review::check::CheckError;
    use miette::Diagnostic as _;
    let help = if let Some(d) = cause.downcast_ref::<crate::tree::TreeError>() {
        d.help()
    } else if let Some(CheckError::Tree(d)) = cause.downcast_ref::<CheckError>() {
        // Transparent: the tree error is not a cause of its own.
        d.help()
    } else if let Some(d) = cause.downcast_ref::<crate::eval::request::RequestError>() {
        d.help()
    } else if let Some(d) = cause.downcast_ref::<crate::eval::EvalError>() {
        d.help()
    } else if let Some(d) = cause.downcast_ref::<crate::eval::LoadError>() {
        d.help()
    } else {
        None
    };
    help.map(|h| h.to_string())
}

/// An I/O error in words.
fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file or folder".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::IsADirectory => "it is a folder, not a file".to_string(),
        _ => e.to_string(),
    }
}
