//! Tidy: the architecture ARCHITECTURE.md draws, enforced on the sources.
//!
//! - **Layers.** ARCHITECTURE.md lists the top-level modules in a `layers`
//!   block, top to bottom; a module may import only modules listed below it.
//!   A module missing from the list fails too, so the list stays complete.
//! - **No circles inside a module.** The submodules of one top-level module
//!   (`engine::server`, `engine::http`, …) import each other along a DAG.
//! - **Every source file says what it is** (`//!` first), no file in `src/`
//!   is over 800 lines, and no test is skipped (`#[ignore]`) or expects a
//!   panic (`#[should_panic]`).
//!
//! The checks read the text: a `crate::name` path on a line that is not a
//! comment is an import of `name`, whether in a `use` or written inline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, as (path relative to the root, text).
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root()).unwrap();
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The layers block of ARCHITECTURE.md: module → rank (0 is the bottom).
fn layers() -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let block = text
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has a ```layers block");
    let names: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    let n = names.len();
    let mut out = BTreeMap::new();
    for (i, line) in names.iter().enumerate() {
        // Several modules on one line share a layer: they must not import
        // each other at all.
        for name in line.split_whitespace() {
            let fresh = out.insert(name.to_string(), n - 1 - i).is_none();
            assert!(fresh, "`{name}` is listed twice in the layers block");
        }
    }
    out
}

/// A source file's module path: `src/engine/http.rs` → `["engine", "http"]`.
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.trim_start_matches("src/").trim_end_matches(".rs");
    rel.split('/').map(str::to_string).collect()
}

/// The lines of `text` that are code (comments and doc comments dropped).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let code = l.split("//").next().unwrap_or("");
        (!code.trim().is_empty()).then_some((i + 1, code))
    })
}

/// The identifiers that follow `prefix` on a line (`crate::` → `engine`).
fn after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    line.match_indices(prefix)
        .filter(|(i, _)| {
            // `crate::` inside another path (`$crate::`, `foo_crate::`) is
            // not the crate root.
            line[..*i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'))
        })
        .filter_map(|(i, _)| {
            let rest = &line[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (end > 0).then(|| &rest[..end])
        })
        .collect()
}

/// The imports of one file: (line, path segments after `crate::`).
fn imports(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (n, line) in code_lines(text) {
        for (i, _) in line.match_indices("crate::") {
            let before = line[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let path: Vec<String> = line[i + "crate::".len()..]
                .split("::")
                .map_while(|seg| {
                    let end = seg
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(seg.len());
                    (end > 0).then(|| seg[..end].to_string())
                })
                .collect();
            if !path.is_empty() {
                out.push((n, path));
            }
        }
    }
    out
}

#[test]
fn modules_import_only_layers_below_them() {
    let layers = layers();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (rel, text) in rust_files(&root().join("src")) {
        let path = module_path(&rel);
        let top = path[0].as_str();
        if top == "lib" || top == "main" {
            continue;
        }
        seen.insert(top.to_string());
        let Some(&rank) = layers.get(top) else {
            problems.push(format!(
                "{rel}: module `{top}` is not in ARCHITECTURE.md's layers block"
            ));
            continue;
        };
        for (line, code) in code_lines(&text) {
            if code.contains("crate::{") {
                problems.push(format!(
                    "{rel}:{line}: `crate::{{…}}`: write one `use` per module so the layers can be read"
                ));
            }
        }
        for (line, import) in imports(&text) {
            let other = import[0].as_str();
            if other == top {
                continue;
            }
            match layers.get(other) {
                Some(&r) if r < rank => {}
                Some(_) => problems.push(format!(
                    "{rel}:{line}: `{top}` imports `{other}`, which is not below it"
                )),
                None => problems.push(format!(
                    "{rel}:{line}: `{top}` imports `{other}`, which is not in the layers block"
                )),
            }
        }
    }
    for name in layers.keys() {
        if !seen.contains(name) {
            problems.push(format!(
                "ARCHITECTURE.md's layers block lists `{name}`, which is not a module"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn submodules_import_each_other_without_circles() {
    // top module → submodule → the submodules it imports.
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (rel, text) in rust_files(&root().join("src")) {
        let path = module_path(&rel);
        if path.len() < 2 {
            continue;
        }
        let (top, sub) = (&path[0], &path[1]);
        let edges = graph
            .entry(top.clone())
            .or_default()
            .entry(sub.clone())
            .or_default();
        for (_, import) in imports(&text) {
            if import.len() >= 2 && &import[0] == top && &import[1] != sub {
                edges.insert(import[1].clone());
            }
        }
        // `super::x` from `src/top/sub.rs` names a sibling.
        if path.len() == 2 {
            for (_, line) in code_lines(&text) {
                for name in after(line, "super::") {
                    if name != sub.as_str() && name != "super" {
                        edges.insert(name.to_string());
                    }
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (top, subs) in &graph {
        // Only edges between files of this module count (items of the root
        // module are not a submodule).
        let known: BTreeSet<&String> = subs.keys().collect();
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        fn visit<'a>(
            n: &'a str,
            subs: &'a BTreeMap<String, BTreeSet<String>>,
            known: &BTreeSet<&String>,
            state: &mut BTreeMap<&'a str, u8>,
            stack: &mut Vec<&'a str>,
            out: &mut Vec<String>,
        ) {
            state.insert(n, 1);
            stack.push(n);
            for m in subs.get(n).into_iter().flatten() {
                if !known.contains(m) {
                    continue;
                }
                match state.get(m.as_str()) {
                    Some(1) => {
                        let from = stack.iter().position(|s| *s == m).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[from..].to_vec();
                        cycle.push(m);
                        out.push(cycle.join(" → "));
                    }
                    Some(_) => {}
                    None => visit(m, subs, known, state, stack, out),
                }
            }
            stack.pop();
            state.insert(n, 2);
        }
        let mut cycles = Vec::new();
        for n in subs.keys() {
            if !state.contains_key(n.as_str()) {
                visit(n, subs, &known, &mut state, &mut Vec::new(), &mut cycles);
            }
        }
        problems.extend(cycles.into_iter().map(|c| format!("`{top}`: {c}")));
    }
    assert!(
        problems.is_empty(),
        "submodules import each other in a circle:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_source_file_says_what_it_is_and_stays_small() {
    let mut problems = Vec::new();
    for (rel, text) in rust_files(&root().join("src")) {
        if !text.starts_with("//!") {
            problems.push(format!("{rel}: does not open with a `//!` comment"));
        }
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!("{rel}: {lines} lines (at most {MAX_LINES})"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn no_test_is_skipped_or_expects_a_panic() {
    let mut problems = Vec::new();
    for dir in ["src", "tests", "benches"] {
        for (rel, text) in rust_files(&root().join(dir)) {
            if rel.ends_with("tests/tidy.rs") {
                continue;
            }
            for (n, line) in code_lines(&text) {
                for attr in ["#[ignore", "#[should_panic"] {
                    if line.contains(attr) {
                        problems.push(format!("{rel}:{n}: {attr}]"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn tidy_reads_imports_the_way_rust_writes_them() {
    let text = "use crate::engine::http::router;\n\
                // use crate::cli::run;\n\
                let x = crate::eval::Evaluator::new(); // crate::demo\n\
                macro_rules! m { () => { $crate::api::route } }\n";
    let found: Vec<String> = imports(text)
        .into_iter()
        .map(|(_, p)| p.join("::"))
        .collect();
    assert_eq!(found, ["engine::http::router", "eval::Evaluator::new"]);
    assert_eq!(
        after("use super::{a, b}; super::gate::x", "super::"),
        ["gate"]
    );
    assert_eq!(module_path("src/engine/http.rs"), ["engine", "http"]);
}
