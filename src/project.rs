//! `sluice.toml`: project settings, request schema and rollout plan, with the
//! location of every error in the TOML file. Pure: text in, config out.
//!
//! [`parse`] reads the spanned TOML tree (`toml::de::DeTable`) by hand rather
//! than through `serde`, so that it reports every problem of the file at once,
//! each as a `schema::invalid` [`Finding`] labelled at the exact key or value:
//! unknown keys (with the closest known key), values of the wrong type or out
//! of range, field paths and types of `[schema]`, and the rules of the rollout
//! plan. A TOML syntax error stops the read and is the only finding.
//!
//! The submodules: `read` (typed accessors over the spanned tree), `fields`
//! (`[schema]`) and `rollout` (`[rollout]`).

mod fields;
mod read;
mod rollout;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};
use toml::de::DeTable;

use crate::compile::ir::{DecisionKind, Literal};
use crate::diagnostic::Finding;
use crate::schema::Schema;
use crate::source::SourceFile;

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
}

/// `[rollout]`: how a candidate artifact goes from replay to full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutPlan {
    /// The request field whose value picks the hash bucket, so that the same
    /// value always lands in the same cohort. A required `string` or `int`
    /// field of the schema.
    pub hash_key: String,
    /// The stages in the order written (and run); at least one. A `replay`
    /// stage, if any, is the first; names are unique.
    pub stages: Vec<Stage>,
    /// `[rollout.rollback]`, checked continuously in every live stage.
    pub rollback: RollbackTriggers,
}

impl RolloutPlan {
    /// The stage of this name.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// What a stage does, decided by its name (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// The stage named `replay`: runs the traces against the candidate, offline.
    Replay,
    /// The stage named `shadow`: the candidate is evaluated beside stable on
    /// all traffic; stable is enforced.
    Shadow,
    /// Any other name: the candidate is enforced on `percent` of the hash
    /// buckets (of the requests that fit `match`).
    Split,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Replay => "replay",
            StageKind::Shadow => "shadow",
            StageKind::Split => "split",
        }
    }

    /// Whether the stage takes live traffic (shadow and split stages).
    pub fn is_live(self) -> bool {
        !matches!(self, StageKind::Replay)
    }
}

/// One `[[rollout.stage]]`.
///
/// Which keys a stage may have depends on its kind: a replay stage has only
/// `max_catastrophic` and `max_false_positive_rate`; a shadow stage has the
/// durations, `min_samples`, `max_divergence` and the live gates; a split
/// stage has `percent` (required), `match`, the durations, `min_samples` and
/// the live gates (`max_error_rate`, `max_deny_rate_delta`,
/// `max_latency_p99_delta_ms`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    /// Share of hash buckets enforced by the candidate, 0 to 100; `Some` on
    /// split stages only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Only requests whose field has one of these values are eligible (split
    /// stages only); empty means every request. Keys are schema fields of type
    /// `int`, `string` or `bool`; values have the field's type; no list is empty.
    #[serde(rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, Vec<Literal>>,
    /// The stage lasts at least this long.
    #[serde(
        serialize_with = "human_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_duration: Option<Duration>,
    /// A stage still waiting for evidence after this long pauses the rollout.
    /// When not written, four times `min_duration` (SPEC §6); `None` only when
    /// neither is written. Never shorter than `min_duration`.
    #[serde(
        serialize_with = "human_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
    /// The stage sees at least this many requests before its gates resolve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    pub gates: Gates,
}

/// The gates of a stage: bounds the candidate's figures must stay within,
/// with statistical confidence, for the stage to advance. Rates are shares
/// within 0..=1.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gates {
    /// Replay: trace cases expected DENY that got ALLOW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_catastrophic: Option<u64>,
    /// Replay: expected ALLOW that got DENY, over all expected ALLOW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_false_positive_rate: Option<f64>,
    /// Shadow: share of requests where candidate and stable decide differently.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_divergence: Option<f64>,
    /// Live stages: share of candidate evaluations that fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Live stages: candidate deny rate minus stable deny rate, absolute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deny_rate_delta: Option<f64>,
    /// Live stages: candidate p99 latency minus stable p99 latency, in
    /// milliseconds, 0 or more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_p99_delta_ms: Option<f64>,
}

/// `[rollout.rollback]`: any of these passed in a live stage rolls back at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RollbackTriggers {
    /// Share of candidate evaluations that fail, within 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Candidate deny rate minus stable deny rate, within 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_rate_delta: Option<f64>,
    /// Candidate p99 latency in milliseconds, above 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
}

const TOP_KEYS: [&str; 3] = ["project", "schema", "rollout"];
const PROJECT_KEYS: [&str; 3] = ["name", "default", "traces"];

/// Parses and validates `sluice.toml`.
///
/// On error, returns every `schema::invalid` finding of the file, in the
/// order of their position; a TOML syntax error is reported alone.
pub fn parse(file: &SourceFile) -> Result<Project, Vec<Finding>> {
    let root = match DeTable::parse(&file.text) {
        Ok(root) => root,
        Err(e) => return Err(vec![syntax_error(file, &e)]),
    };
    let mut cx = Cx::new(file);
    let mut project = None;
    let mut schema = None;
    let mut rollout = None;
    for (k, v) in entries(root.get_ref()) {
        match k.get_ref().as_ref() {
            "project" => project = Some((cx.table(v, "`project`", "[project]"), v.span())),
            "schema" => schema = Some((cx.table(v, "`schema`", "[schema]"), v.span())),
            "rollout" => rollout = Some((cx.table(v, "`rollout`", "[rollout]"), v.span())),
            _ => {
                let help = read::did_you_mean(k.get_ref(), &TOP_KEYS);
                cx.error(
                    k.span(),
                    "unknown key",
                    format!("unknown key `{}` at the top level", k.get_ref()),
                    format!("{help} (sluice.toml has the tables `[project]`, `[schema]` and `[rollout]`)"),
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

    let mut findings = cx.findings;
    // Stable: findings at one place keep the order they were found in.
    findings.sort_by_key(|f| f.labels.first().map_or(0, |l| l.span.start));
    match settings {
        Some((name, default, traces)) if findings.is_empty() => Ok(Project {
            name,
            default,
            traces,
            schema: declared.schema,
            rollout: plan,
        }),
        // INVARIANT: `settings` is `None` only after a finding was reported,
        // so `findings` is never empty here.
        _ => Err(findings),
    }
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
fn syntax_error(file: &SourceFile, e: &toml::de::Error) -> Finding {
    let span = e.span().unwrap_or(0..0);
    let raw = e.message();
    let (what, expected) = match raw.split_once(", expected ") {
        Some((w, x)) if x != "nothing" => (w, Some(x)),
        Some((w, _)) => (w, None),
        None => (raw, None),
    };
    let what = read::lower_first(what);
    let text = file.text.get(span.clone()).unwrap_or_default();
    let (message, help) = if what == "duplicate key" {
        (
            format!("invalid TOML: duplicate key `{text}`"),
            "a key (or table) may be defined only once".to_owned(),
        )
    } else {
        (
            format!("invalid TOML: {what}"),
            match expected {
                Some(x) => format!("expected {x} here"),
                None => "sluice.toml must be valid TOML (see https://toml.io)".to_owned(),
            },
        )
    };
    let label = expected.map_or_else(|| what.clone(), |x| format!("expected {x}"));
    Finding::error(read::CODE, message)
        .with_label(
            crate::diagnostic::Label::new(
                file.name.clone(),
                crate::source::Span::new(span.start, span.end),
            )
            .with_message(label),
        )
        .with_help(help)
}

/// Serializes a duration as humantime text (`"30m"`, `"1h 30m"`).
fn human_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}
