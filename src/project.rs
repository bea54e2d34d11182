//! `sluice.toml`: project settings, request schema and rollout plan, with the
//! location of every error in the TOML file. Pure: text in, config out.
//!
//! [`parse`] reads the spanned TOML tree (`toml::de::DeTable`) by hand rather
//! than through `serde`, so that it reports every problem of the file at once,
//! each as a `schema::invalid` [`Finding`] labelled at the exact key or value:
//! unknown keys (with the closest known key), values of the wrong type or out
//! of range, field paths and types of `[schema]`, and the rules of the rollout
//! plan. A TOML syntax error stops the read and is the only finding. A plan
//! that reads but whose gate cannot pass on its stage's `min_samples` is a
//! `plan::underpowered` warning ([`parse_reporting`]).
//!
//! The submodules: `read` (typed accessors over the spanned tree), `fields`
//! (`[schema]`), `rollout` (`[rollout]`) and `governance` (`[governance]`);
//! `inventory` reads the agent inventory, `agents/*.toml`
//! ([`parse_inventory`]), with the same accessors.

mod fields;
mod governance;
mod inventory;
mod read;
mod rollout;

use serde::Serialize;
use toml::de::DeTable;

use crate::diagnostic::Finding;
use crate::model::governance::Governance;
use crate::model::ir::DecisionKind;
use crate::model::plan::RolloutPlan;
use crate::model::schema::Schema;
use crate::source::SourceFile;

pub use governance::{cost_gate_spans, observe_span};
pub use inventory::parse_inventory;
use read::{Cx, entries};

/// The folder of replay traces when `[project] traces` is not given.
pub const DEFAULT_TRACES: &str = "traces";

/// A parsed and validated `sluice.toml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// `[project] name`.
    pub name: String,
    /// The decision when no rule matches: `Allow` or `Deny`, never another
    /// kind. `[project] default` may be left out: the project then fails
    /// closed, with `Deny`.
    pub default: DecisionKind,
    /// The folder of replay traces, relative to the repository root
    /// (`[project] traces`, [`DEFAULT_TRACES`] when not given).
    pub traces: String,
    /// The request fields `[schema]` declares.
    pub schema: Schema,
    /// The rollout plan, when `[rollout]` is present.
    pub rollout: Option<RolloutPlan>,
    /// `[governance]`: the observe scope (empty when the table is absent).
    #[serde(skip_serializing_if = "Governance::is_empty")]
    pub governance: Governance,
}

const TOP_KEYS: [&str; 4] = ["project", "schema", "rollout", "governance"];
const PROJECT_KEYS: [&str; 3] = ["name", "default", "traces"];

/// Parses and validates `sluice.toml`.
///
/// On error, returns every `schema::invalid` finding of the file, in the
/// order of their position; a TOML syntax error is reported alone.
/// Warnings are left out: [`parse_reporting`] gives them.
pub fn parse(file: &SourceFile) -> Result<Project, Vec<Finding>> {
    parse_reporting(file).0
}

/// [`parse`], and the warnings about a file that reads (`plan::underpowered`:
/// a stage whose gate cannot pass on its `min_samples`), in the order of
/// their position.
pub fn parse_reporting(file: &SourceFile) -> (Result<Project, Vec<Finding>>, Vec<Finding>) {
    let root = match DeTable::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return (Err(vec![syntax_error(file, &e, read::CODE)]), Vec::new()),
    };
    let mut cx = Cx::new(file);
    let mut project = None;
    let mut schema = None;
    let mut rollout = None;
    let mut governance = None;
    for (k, v) in entries(root.get_ref()) {
        match k.get_ref().as_ref() {
            "project" => project = Some((cx.table(v, "`project`", "[project]"), v.span())),
            "schema" => schema = Some((cx.table(v, "`schema`", "[schema]"), v.span())),
            "rollout" => rollout = Some((cx.table(v, "`rollout`", "[rollout]"), v.span())),
            "governance" => {
                governance = Some(cx.table(v, "`governance`", "[governance]"));
            }
            _ => {
                let help = read::did_you_mean(k.get_ref(), &TOP_KEYS);
                cx.error(
                    k.span(),
                    "unknown key",
                    format!("unknown key `{}` at the top level", k.get_ref()),
                    format!("{help} (sluice.toml has the tables `[project]`, `[schema]`, `[rollout]` and `[governance]`)"),
                );
            }
        }
    }

    let settings = match project {
        Some((Some(t), span)) => read_project(&mut cx, t, span),
        Some((None, _)) => None,
        None => {
            cx.error(
                0..0,
                "no `[project]` here",
                "missing table `[project]`",
                "start the file with `[project]` and `name = \"…\"`",
            );
            None
        }
    };
    let declared = match &schema {
        Some((Some(t), span)) => fields::read(&mut cx, Some(t), span.clone()),
        // The wrong type was reported: read nothing more.
        Some((None, _)) => fields::Declared {
            schema: Schema::default(),
            broken: Default::default(),
        },
        None => fields::read(&mut cx, None, 0..0),
    };
    let plan = match rollout {
        Some((Some(t), span)) => rollout::read(&mut cx, t, span, &declared),
        _ => None,
    };
    let governance = match governance {
        Some(Some(t)) => governance::read(&mut cx, t, &declared),
        Some(None) => None,
        None => Some(Governance::default()),
    };

    let mut findings = cx.findings;
    let mut warnings = cx.warnings;
    // Stable: findings at one place keep the order they were found in.
    findings.sort_by_key(|f| f.labels.first().map_or(0, |l| l.span.start));
    warnings.sort_by_key(|f| f.labels.first().map_or(0, |l| l.span.start));
    let project = match settings {
        Some((name, default, traces)) if findings.is_empty() => Ok(Project {
            name,
            default,
            traces,
            schema: declared.schema,
            rollout: plan,
            governance: governance.unwrap_or_default(),
        }),
        // INVARIANT: `settings` is `None` only after a finding was reported,
        // so `findings` is never empty here (and `governance` is `None` only
        // after one too).
        _ => Err(findings),
    };
    (project, warnings)
}

/// Reads `[project]`: name, default decision and traces folder.
fn read_project(
    cx: &mut Cx<'_>,
    t: &DeTable<'_>,
    header: std::ops::Range<usize>,
) -> Option<(String, DecisionKind, String)> {
    let mut name = None;
    let mut default = Some(DecisionKind::Deny);
    let mut traces = Some(DEFAULT_TRACES.to_owned());
    for (k, v) in entries(t) {
        match k.get_ref().as_ref() {
            "name" => {
                name = cx.nonempty_string(v, "`name` in `[project]`", "name = \"acme-agents\"");
            }
            "default" => {
                default = cx.string(v, "`default` in `[project]`", "default = \"deny\"").and_then(
                    |s| match s {
                        "allow" => Some(DecisionKind::Allow),
                        "deny" => Some(DecisionKind::Deny),
                        other => {
                            cx.error(
                                v.span(),
                                "not `allow` or `deny`",
                                format!("`default` in `[project]` must be `allow` or `deny`, found `{other}`"),
                                "the decision when no rule matches is `\"allow\"` or `\"deny\"`",
                            );
                            None
                        }
                    },
                );
            }
            "traces" => {
                traces = cx
                    .nonempty_string(v, "`traces` in `[project]`", "traces = \"traces\"")
                    .map(str::to_owned);
            }
            _ => cx.unknown_key(k, "in `[project]`", &PROJECT_KEYS),
        }
    }
    let name = name.map(str::to_owned);
    if !t.contains_key("name") {
        cx.error(
            header,
            "no `name`",
            "`[project]` has no `name`",
            "name the project, like `name = \"acme-agents\"`",
        );
    }
    Some((name?, default?, traces?))
}

/// The one finding of a TOML syntax error.
fn syntax_error(file: &SourceFile, e: &toml::de::Error, code: crate::diagnostic::Code) -> Finding {
    let span = e.span().unwrap_or(0..0);
    let raw = e.message();
    let (what, expected) = match raw.split_once(", expected ") {
        Some((w, x)) if x != "nothing" => (w, Some(x)),
        Some((w, _)) => (w, None),
        None => (raw, None),
    };
    let what = read::lower_first(what);
    let text = file.text.get(span.clone()).unwrap_or_default();
    let (message, help) = if let Some((key, word)) = unquoted_value(&file.text, span.start) {
        (
            format!("invalid TOML: the value `{word}` is not quoted"),
            format!("TOML strings are double-quoted: write `{key} = \"{word}\"`"),
        )
    } else if what == "duplicate key" {
        (
            format!("invalid TOML: duplicate key `{text}`"),
            "a key (or table) may be defined only once".to_owned(),
        )
    } else {
        (
            format!("invalid TOML: {what}"),
            match expected {
                Some(x) => format!("expected {x} here"),
                None => format!("{} must be valid TOML (see https://toml.io)", file.name),
            },
        )
    };
    let label = if unquoted_value(&file.text, span.start).is_some() {
        "not quoted".to_owned()
    } else {
        expected.map_or_else(|| what.clone(), |x| format!("expected {x}"))
    };
    Finding::new(code, message)
        .with_label(
            crate::diagnostic::Label::new(
                file.name.clone(),
                crate::source::Span::new(span.start, span.end),
            )
            .with_message(label),
        )
        .with_help(help)
}

/// A bare word where a TOML value should be (`"args.amount?" = int`,
/// `default = allow`): the key as written and the word, when the error at
/// `pos` sits on such a value. TOML reads a bare word as a number or a
/// boolean and says so (`invalid float, expected inf`), which misleads.
fn unquoted_value(text: &str, pos: usize) -> Option<(&str, &str)> {
    let line_start = text.get(..pos)?.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text.get(pos..)?.find('\n').map_or(text.len(), |i| pos + i);
    let line = text.get(line_start..line_end)?;
    let (key, value) = line.split_once('=')?;
    let value = value.split('#').next().unwrap_or_default().trim();
    let key = key.trim();
    let bare = !value.is_empty()
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-<>.".contains(c))
        && !matches!(value, "true" | "false" | "inf" | "nan");
    let on_value = pos >= line_start + line.find('=')?;
    (bare && on_value && !key.is_empty() && !key.starts_with('[')).then_some((key, value))
}
