//! The agent inventory: `agents/*.toml`, one agent per file (SPEC §9), read
//! into an [`Inventory`] with every error located in its file
//! (`inventory::invalid`). Pure: text in, inventory out.
//!
//! A file holds `id` (the value of the request field `agent`: letters,
//! digits, `_`, `-`, `.`, unique across the files), `owner`, `tools` (the
//! values of the request field `tool`, at least one, each once), and
//! optionally `data`, `credentials`, `triggers` (lists of names) and
//! `cost = { calls_per_day = N }` (N above 0).

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::read::{Cx, Value, a_type, entries};
use super::syntax_error;
use crate::diagnostic::{Code, Finding};
use crate::model::inventory::{Agent, Cost, Inventory};
use crate::source::SourceFile;

const CODE: Code = Code::InventoryInvalid;
const AGENT_KEYS: [&str; 7] = [
    "id",
    "owner",
    "tools",
    "data",
    "credentials",
    "triggers",
    "cost",
];
const COST_KEYS: [&str; 1] = ["calls_per_day"];

/// Reads every agent file; on error, every finding of every file, in file
/// order and then by position.
pub fn parse_inventory(files: &[SourceFile]) -> Result<Inventory, Vec<Finding>> {
    let mut findings = Vec::new();
    let mut agents: Vec<Agent> = Vec::new();
    // id -> (file, span of its value) of the first file that declared it.
    let mut seen: BTreeMap<String, (usize, Range<usize>)> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        let root = match DeTable::parse(&file.text) {
            Ok(root) => root,
            Err(e) => {
                findings.push(syntax_error(file, &e, CODE));
                continue;
            }
        };
        let mut cx = Cx::with_code(file, CODE);
        let read = read_agent(&mut cx, root.get_ref());
        let mut found = cx.findings;
        found.sort_by_key(|f| f.labels.first().map_or(0, |l| l.span.start));
        findings.append(&mut found);
        let Some((agent, id_span)) = read else {
            continue;
        };
        if let Some((first, first_span)) = seen.get(&agent.id) {
            let cx = Cx::with_code(file, CODE);
            let first_file = files
                .get(*first)
                .map_or_else(String::new, |f| f.name.clone());
            findings.push(
                Finding::new(CODE, format!("agent `{}` is inventoried twice", agent.id))
                    .with_label(cx.label(id_span, "declared again here"))
                    .with_label(
                        crate::diagnostic::Label::new(
                            first_file,
                            crate::source::Span::new(first_span.start, first_span.end),
                        )
                        .with_message("first declared here"),
                    )
                    .with_help("one file per agent: merge the two files or give one another id"),
            );
            continue;
        }
        seen.insert(agent.id.clone(), (i, id_span));
        agents.push(agent);
    }
    if !findings.is_empty() {
        return Err(findings);
    }
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Inventory { agents })
}

/// Reads one agent; `None` after an error. With the agent, the span of its id.
fn read_agent(cx: &mut Cx<'_>, t: &DeTable<'_>) -> Option<(Agent, Range<usize>)> {
    let mut ok = true;
    let mut id = None;
    let mut owner = None;
    let mut tools = None;
    let (mut data, mut credentials, mut triggers) = (Vec::new(), Vec::new(), Vec::new());
    let mut cost = None;
    for (k, v) in entries(t) {
        let good = match k.get_ref().as_ref() {
            "id" => match cx.nonempty_string(v, "`id`", "id = \"invoice-bot\"") {
                Some(s) if valid_id(s) => {
                    id = Some((s.to_owned(), v.span()));
                    true
                }
                Some(s) => {
                    cx.error(
                        v.span(),
                        "not an id",
                        format!("agent id `{s}` has characters other than letters, digits, `_`, `-` and `.`"),
                        "the id is the value of the request field `agent`, like `id = \"invoice-bot\"`",
                    );
                    false
                }
                None => false,
            },
            "owner" => match cx.nonempty_string(v, "`owner`", "owner = \"finance-platform\"") {
                Some(s) => {
                    owner = Some(s.to_owned());
                    true
                }
                None => false,
            },
            "tools" => match names(cx, v, "tools", "tools = [\"payments.transfer\"]") {
                Some(list) if list.is_empty() => {
                    cx.error(
                        v.span(),
                        "no tools",
                        "`tools` is empty",
                        "list the tools the agent calls (the values of the request field `tool`), like `tools = [\"payments.transfer\"]`",
                    );
                    false
                }
                Some(list) => {
                    tools = Some(list);
                    true
                }
                None => false,
            },
            "data" => names(cx, v, "data", "data = [\"pii\", \"payment\"]")
                .map(|l| data = l)
                .is_some(),
            "credentials" => names(
                cx,
                v,
                "credentials",
                "credentials = [\"stripe-restricted-key\"]",
            )
            .map(|l| credentials = l)
            .is_some(),
            "triggers" => names(cx, v, "triggers", "triggers = [\"schedule:daily\"]")
                .map(|l| triggers = l)
                .is_some(),
            "cost" => match read_cost(cx, v) {
                Some(c) => {
                    cost = Some(c);
                    true
                }
                None => false,
            },
            _ => {
                cx.unknown_key(k, "in an agent file", &AGENT_KEYS);
                false
            }
        };
        ok &= good;
    }
    for (key, present, example) in [
        ("id", t.contains_key("id"), "id = \"invoice-bot\""),
        (
            "owner",
            t.contains_key("owner"),
            "owner = \"finance-platform\"",
        ),
        (
            "tools",
            t.contains_key("tools"),
            "tools = [\"payments.transfer\"]",
        ),
    ] {
        if !present {
            cx.error(
                0..0,
                format!("no `{key}`"),
                format!("the agent has no `{key}`"),
                format!("every agent file has `id`, `owner` and `tools`: add `{example}`"),
            );
            ok = false;
        }
    }
    let ((id, id_span), owner, tools) = (id?, owner?, tools?);
    ok.then_some((
        Agent {
            id,
            owner,
            tools,
            data,
            credentials,
            triggers,
            cost,
        },
        id_span,
    ))
}

/// A list of non-empty strings, each once.
fn names(cx: &mut Cx<'_>, v: &Value<'_>, key: &str, example: &str) -> Option<Vec<String>> {
    let DeValue::Array(items) = v.get_ref() else {
        cx.error(
            v.span(),
            "expected an array",
            format!(
                "`{key}` must be an array of strings, not {}",
                a_type(v.get_ref())
            ),
            format!("write it like `{example}`"),
        );
        return None;
    };
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(s) if !s.trim().is_empty() => {
                if out.iter().any(|o| o == s.as_ref()) {
                    cx.error(
                        item.span(),
                        "listed again",
                        format!("`{s}` is listed twice in `{key}`"),
                        "list each name once",
                    );
                    ok = false;
                } else {
                    out.push(s.to_string());
                }
            }
            DeValue::String(_) => {
                cx.error(
                    item.span(),
                    "empty",
                    format!("an empty name in `{key}`"),
                    format!("write it like `{example}`"),
                );
                ok = false;
            }
            other => {
                cx.error(
                    item.span(),
                    "expected a string",
                    format!("`{key}` lists {}, not a string", a_type(other)),
                    format!("write it like `{example}`"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `cost = { calls_per_day = N }`, N above 0.
fn read_cost(cx: &mut Cx<'_>, v: &Value<'_>) -> Option<Cost> {
    let example = "cost = { calls_per_day = 500 }";
    let t = cx.table(v, "`cost`", example)?;
    let mut calls = None;
    let mut ok = true;
    for (k, v) in entries(t) {
        match k.get_ref().as_ref() {
            "calls_per_day" => match cx.count(v, "`calls_per_day` in `cost`", example) {
                Some(0) => {
                    cx.error(
                        v.span(),
                        "zero",
                        "`calls_per_day` in `cost` must be above 0",
                        format!("the calls a day the agent is expected to make, like `{example}`"),
                    );
                    ok = false;
                }
                Some(n) => calls = Some(n),
                None => ok = false,
            },
            _ => {
                cx.unknown_key(k, "in `cost`", &COST_KEYS);
                ok = false;
            }
        }
    }
    if !t.contains_key("calls_per_day") {
        cx.error(
            v.span(),
            "no `calls_per_day`",
            "`cost` has no `calls_per_day`",
            format!("write it like `{example}`"),
        );
        ok = false;
    }
    let calls_per_day = calls?;
    ok.then_some(Cost { calls_per_day })
}

/// Letters, digits, `_`, `-` and `.`.
fn valid_id(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
