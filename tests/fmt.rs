//! Formatter tests: fixture pairs `tests/data/fmt/NAME.in.policy` →
//! `NAME.out.policy`, the round-trip and idempotence properties over every
//! policy file of the repository, and property tests over random policies
//! printed with a messy (but valid) layout full of comments.
//!
//! Set `UPDATE_FMT_FIXTURES=1` to (re)write the `.out.policy` files.

use std::path::{Path, PathBuf};

use sluice::fmt::{format_files, format_parsed, format_policy, format_source, scan_comments};
use sluice::parse::ast::Policy;
use sluice::parse::parse_policy;
use sluice::source::SourceFile;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse(name: &str, text: &str) -> Result<Policy, String> {
    parse_policy(&SourceFile::new(name, text)).map_err(|fs| {
        let msgs: Vec<String> = fs.iter().map(|f| f.message.clone()).collect();
        format!("{name} does not parse: {msgs:?}\n--- text ---\n{text}")
    })
}

fn fmt(name: &str, text: &str) -> Result<String, String> {
    format_source(&SourceFile::new(name, text)).map_err(|fs| {
        let msgs: Vec<String> = fs.iter().map(|f| f.message.clone()).collect();
        format!("{name} does not format: {msgs:?}\n--- text ---\n{text}")
    })
}

/// The syntax tree with every requirement's text in canonical spacing: the
/// one thing formatting may change (the parsed requirement itself must not).
fn canon(mut p: Policy) -> Policy {
    for r in &mut p.requires {
        r.text = sluice::fmt::normalize_requirement(&r.text);
    }
    p
}

fn comment_texts(text: &str) -> Vec<String> {
    scan_comments(text).into_iter().map(|c| c.text).collect()
}

/// The properties every formatted file must have: the output parses to the
/// same tree, formatting it again changes nothing, every comment survives (in
/// order, when `ordered`), and the layout is clean. Returns the output.
fn check_format(name: &str, text: &str, ordered: bool) -> Result<String, String> {
    let before = canon(parse(name, text)?);
    let once = fmt(name, text)?;
    let after = canon(parse(name, &once).map_err(|e| format!("formatted output: {e}"))?);
    if before != after {
        return Err(format!(
            "{name}: the formatted text parses to another tree\n--- input ---\n{text}\n--- output ---\n{once}"
        ));
    }
    let twice = fmt(name, &once)?;
    if twice != once {
        return Err(format!(
            "{name}: formatting is not idempotent\n--- once ---\n{once}\n--- twice ---\n{twice}"
        ));
    }
    let mut want = comment_texts(text);
    let mut got = comment_texts(&once);
    if !ordered {
        want.sort();
        got.sort();
    }
    if want != got {
        return Err(format!(
            "{name}: comments changed\nwant {want:?}\ngot  {got:?}\n--- input ---\n{text}\n--- output ---\n{once}"
        ));
    }
    if !once.ends_with('\n') || once.ends_with("\n\n") {
        return Err(format!("{name}: output must end with exactly one newline"));
    }
    if let Some(l) = once
        .split('\n')
        .find(|l| l.ends_with([' ', '\t', '\r']) || l.starts_with('\t'))
    {
        return Err(format!("{name}: stray whitespace on line {l:?}\n{once}"));
    }
    Ok(once)
}

// ---- fixtures -----------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    root().join("tests/data/fmt")
}

#[test]
fn fixture_pairs() {
    let update = std::env::var_os("UPDATE_FMT_FIXTURES").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.policy"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "fixtures missing");
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(input).unwrap();
        let ordered = !name.contains("reorder");
        let got = match check_format(&name, &text, ordered) {
            Ok(got) => got,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let out_path = input.with_file_name(name.replace(".in.policy", ".out.policy"));
        if update {
            std::fs::write(&out_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out_path)
            .unwrap_or_else(|_| panic!("{} is missing", out_path.display()));
        if got != want {
            failures.push(format!(
                "{name}: output differs from {}\n--- got ---\n{got}\n--- want ---\n{want}",
                out_path.display()
            ));
        }
        // The canonical text is a fixed point.
        if fmt(&name, &want).as_deref() != Ok(want.as_str()) {
            failures.push(format!("{}: not canonical", out_path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- every policy file of the repository ----------------------------------------

/// Every `.policy` file under `policies/`, `examples/` and the parser's and
/// formatter's fixtures (folders that do not exist are skipped).
fn repository_policies() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        "policies",
        "examples",
        "tests/data/parse/ok",
        "tests/data/fmt",
    ] {
        let dir = root().join(dir);
        if !dir.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
            let entry = entry.unwrap();
            if entry.file_type().is_file()
                && entry.path().extension().is_some_and(|e| e == "policy")
            {
                out.push(entry.into_path());
            }
        }
    }
    out
}

#[test]
fn repository_policies_round_trip() {
    let files = repository_policies();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(root())
            .unwrap_or(path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let parses = parse_policy(&SourceFile::new(name.clone(), text.clone())).is_ok();
        let formats = fmt(&name, &text).is_ok();
        assert_eq!(parses, formats, "{name}: parse and fmt disagree");
        if !parses {
            // A deliberately broken example: `sluice check` reports it.
            continue;
        }
        if let Err(e) = check_format(&name, &text, !name.contains("reorder")) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn _unused(_: &Path) {
    let _ = (format_files, format_parsed, format_policy);
}
