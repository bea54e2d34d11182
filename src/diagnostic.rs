//! Findings: the one report shape shared by every check (language errors,
//! version graph, conflict analysis, live state), and their renderings.
//!
//! A [`Finding`] carries a stable code, a severity, a message, help text, the
//! labelled spans it concerns (possibly in several files), and for conflicts a
//! witness request with the decisions it really gets. Stages produce findings;
//! only `cli` prints them.
//!
//! Renderings: [`render_human`] (miette), [`to_json`] (SPEC §3), [`sarif`]
//! (SARIF 2.1.0 for code scanning) and [`github`] (workflow annotations and a
//! Markdown step summary). All of them are pure: text in, text out.

pub mod github;
pub mod sarif;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::source::{SourceFile, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A place a finding points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Path of the file, relative to the repository root.
    pub file: String,
    pub span: Span,
    /// What this place is, shown under the underline (optional).
    pub message: Option<String>,
    pub policy: Option<String>,
    pub rule: Option<String>,
}

impl Label {
    pub fn new(file: impl Into<String>, span: Span) -> Self {
        Label {
            file: file.into(),
            span,
            message: None,
            policy: None,
            rule: None,
        }
    }

    pub fn with_message(mut self, m: impl Into<String>) -> Self {
        self.message = Some(m.into());
        self
    }

    pub fn in_rule(mut self, policy: impl Into<String>, rule: Option<String>) -> Self {
        self.policy = Some(policy.into());
        self.rule = rule;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Stable code, e.g. `type::unknown_field`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
    pub labels: Vec<Label>,
    /// A concrete request that triggers the finding (conflicts found by the solver).
    pub witness: Option<serde_json::Value>,
    /// What the real evaluator decides for the witness: `policy.rule` -> effect,
    /// and `final` -> the combined decision.
    pub witness_decisions: Option<BTreeMap<String, String>>,
}

impl Finding {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Finding {
            code,
            severity: Severity::Error,
            message: message.into(),
            help: None,
            labels: Vec::new(),
            witness: None,
            witness_decisions: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, label: Label) -> Self {
        self.labels.push(label);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A finding of the conflict analysis (`conflict::*`, `analyze::*`).
    pub fn from_analysis(&self) -> bool {
        self.code.starts_with("conflict::") || self.code.starts_with("analyze::")
    }

    /// Ordering key: file, position, code. Reports are sorted by it so output
    /// does not depend on the order files were read.
    pub fn sort_key(&self) -> (String, usize, &'static str, String) {
        let (file, start) = self
            .labels
            .first()
            .map_or((String::new(), 0), |l| (l.file.clone(), l.span.start));
        (file, start, self.code, self.message.clone())
    }
}

/// What a finding code means, for reports that describe their rules (SARIF):
/// `(code, one-line description, help)`. Every code sluice reports is here.
pub const CODES: &[(&str, &str, &str)] = &[
    (
        "parse::syntax",
        "A policy file does not parse.",
        "Fix the syntax at the marked place; the message says what was expected there.",
    ),
    (
        "type::unknown_field",
        "A policy reads a field the request schema does not declare.",
        "Use a field declared in `[schema]` of sluice.toml, or declare it there.",
    ),
    (
        "type::mismatch",
        "An operator does not fit the types of its operands.",
        "Compare values of the field's declared type; the message names both types.",
    ),
    (
        "type::bad_regex",
        "A regex does not compile, or uses what the conflict analysis cannot encode.",
        "Write the pattern in the `regex` crate's syntax without word boundaries or line anchors.",
    ),
    (
        "type::duplicate_name",
        "Two rules or limits of one policy share a name.",
        "Rule and limit names are unique within a policy: rename one of them.",
    ),
    (
        "schema::invalid",
        "sluice.toml is invalid.",
        "Fix the marked setting; the message says what is allowed there.",
    ),
    (
        "version::unsatisfied",
        "A `requires` names a policy that is absent or at a version that does not match.",
        "Change the requirement, or the required policy's version.",
    ),
    (
        "version::cycle",
        "Policies require each other in a cycle.",
        "Break the cycle: one of the `requires` in it must go.",
    ),
    (
        "version::duplicate",
        "Two files define the same policy.",
        "Each policy lives in exactly one file: rename one or merge the two.",
    ),
    (
        "version::not_bumped",
        "A policy's content changed since the base revision but its version did not.",
        "Raise the version: patch for a fix, minor for new behaviour, major for a breaking change.",
    ),
    (
        "version::regressed",
        "A policy's version went down since the base revision.",
        "Versions only go up: set a version above the base revision's.",
    ),
    (
        "conflict::overridden_allow",
        "An explicit allow overlaps a deny or require_approval of another policy: there it never takes effect.",
        "Narrow the allow so it does not overlap, or accept that the stricter rule wins.",
    ),
    (
        "conflict::modify",
        "Two policies modify the same field differently on one request.",
        "Make one rule's condition exclude the other's, or make both modify the field the same way.",
    ),
    (
        "conflict::dead_rule",
        "A rule or limit whose condition no valid request satisfies.",
        "Fix the condition (it contradicts itself or the schema) or remove the rule.",
    ),
    (
        "conflict::shadowed",
        "An allow whose every matching request is denied elsewhere.",
        "Remove the allow, or narrow the deny that shadows it.",
    ),
    (
        "conflict::approval_deadlock",
        "The tool that grants an approval itself needs approval, or is denied, for the same requests.",
        "Exempt the approval tool from the rules that block it.",
    ),
    (
        "state::limit_decrease",
        "A limit's max is lowered below live counters and the limit has no on_decrease.",
        "Add `on_decrease next_window` or `on_decrease freeze` to say how live counters migrate.",
    ),
    (
        "state::window_change",
        "A limit's window changes: its live counters are reset.",
        "Expect every key of the limit to start counting afresh when the change rolls out.",
    ),
    (
        "state::pending_approvals",
        "An approval rule is removed or narrowed while requests wait in its queue.",
        "Resolve the waiting requests first, or keep the rule covering them until they are.",
    ),
    (
        "state::limit_removed",
        "A limit disappears while it has live counters.",
        "Keep the limit (under the same name) until its window ends, or accept losing its counts.",
    ),
    (
        "trace::invalid",
        "A trace line is not a valid replay case.",
        "Write `{\"request\": {…}, \"expect\": \"deny\"}` on one line.",
    ),
];

/// The description and help of a finding code, when it is a known one.
pub fn describe(code: &str) -> Option<(&'static str, &'static str)> {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, d, h)| (*d, *h))
}

/// The files findings point into, for rendering positions and snippets.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: BTreeMap<String, SourceFile>,
}

impl Sources {
    pub fn new() -> Self {
        Sources::default()
    }

    pub fn add(&mut self, file: SourceFile) {
        self.files.insert(file.name.clone(), file);
    }

    pub fn get(&self, name: &str) -> Option<&SourceFile> {
        self.files.get(name)
    }

    /// 1-based line and column of a label, or (0, 0) when its file is unknown.
    pub fn line_col(&self, label: &Label) -> (usize, usize) {
        self.get(&label.file)
            .map_or((0, 0), |f| f.line_col(label.span.start))
    }

    /// The region a label covers: 1-based start line and column, and the
    /// line and column just past its end (columns in characters). `None`
    /// when the label's file is unknown.
    pub fn region(&self, label: &Label) -> Option<Region> {
        let f = self.get(&label.file)?;
        let (start_line, start_column) = f.line_col(label.span.start);
        let (end_line, end_column) = f.line_col(label.span.end.max(label.span.start));
        Some(Region {
            start_line,
            start_column,
            end_line,
            end_column,
        })
    }
}

/// Where a label is, in lines and columns (1-based; `end_column` is the
/// column just past the last character, as SARIF counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start_line: usize,
    pub start_column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// `file` as seen from the root of the git repository, when the policy
/// repository is the sub-folder `prefix` of it (empty: the same folder).
pub fn prefixed(prefix: &str, file: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        file.to_string()
    } else {
        format!("{prefix}/{file}")
    }
}

/// The identity of a finding across revisions: its code, the (file, policy,
/// rule) of each label, and its message — never line numbers, which shift
/// when unrelated lines change. The pull-request check matches base and head
/// findings by it; SARIF carries its hash as a fingerprint.
pub fn identity(f: &Finding) -> String {
    let mut key = String::from(f.code);
    for l in &f.labels {
        let _ = write!(
            key,
            "\u{1f}{}\u{1e}{}\u{1e}{}",
            l.file,
            l.policy.as_deref().unwrap_or(""),
            l.rule.as_deref().unwrap_or("")
        );
    }
    key.push('\u{1f}');
    key.push_str(&f.message);
    key
}

/// Summary figures printed with a report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub policies: usize,
    pub rules: usize,
    pub seconds: f64,
}

impl Summary {
    pub fn count(findings: &[Finding]) -> (usize, usize) {
        let errors = findings.iter().filter(|f| f.is_error()).count();
        (errors, findings.len() - errors)
    }
}

#[derive(Serialize)]
struct JsonLocation<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    code: &'a str,
    severity: Severity,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
    locations: Vec<JsonLocation<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    witness: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    witness_decisions: Option<&'a BTreeMap<String, String>>,
}

/// The `--format json` document of SPEC §3.
pub fn to_json(findings: &[Finding], sources: &Sources, summary: &Summary) -> serde_json::Value {
    let findings: Vec<JsonFinding<'_>> = findings
        .iter()
        .map(|f| JsonFinding {
            code: f.code,
            severity: f.severity,
            message: &f.message,
            help: f.help.as_deref(),
            locations: f
                .labels
                .iter()
                .map(|l| {
                    let (line, column) = sources.line_col(l);
                    JsonLocation {
                        file: &l.file,
                        line,
                        column,
                        policy: l.policy.as_deref(),
                        rule: l.rule.as_deref(),
                    }
                })
                .collect(),
            witness: f.witness.as_ref(),
            witness_decisions: f.witness_decisions.as_ref(),
        })
        .collect();
    serde_json::json!({ "findings": findings, "summary": summary })
}

/// A finding as a miette diagnostic: the first file's labels are the primary
/// snippet, labels in other files become related diagnostics with their own
/// snippet.
#[derive(Debug)]
struct Rendered {
    code: &'static str,
    severity: miette::Severity,
    message: String,
    help: Option<String>,
    source: Option<miette::NamedSource<String>>,
    labels: Vec<miette::LabeledSpan>,
    related: Vec<Rendered>,
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        if self.code.is_empty() {
            None
        } else {
            Some(Box::new(self.code))
        }
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}

fn rendered(finding: &Finding, sources: &Sources) -> Rendered {
    let severity = match finding.severity {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
    };
    // Group labels by file, keeping first-seen order.
    let mut groups: Vec<(String, Vec<&Label>)> = Vec::new();
    for l in &finding.labels {
        match groups.iter_mut().find(|(f, _)| *f == l.file) {
            Some((_, v)) => v.push(l),
            None => groups.push((l.file.clone(), vec![l])),
        }
    }
    let make = |file: &str, labels: &[&Label]| {
        let source = sources
            .get(file)
            .map(|f| miette::NamedSource::new(f.name.clone(), f.text.to_string()));
        let labels = if source.is_some() {
            labels
                .iter()
                .map(|l| miette::LabeledSpan::new_with_span(l.message.clone(), l.span))
                .collect()
        } else {
            Vec::new()
        };
        (source, labels)
    };
    let mut groups = groups.into_iter();
    let (source, labels) = match groups.next() {
        Some((file, ls)) => make(&file, &ls),
        None => (None, Vec::new()),
    };
    let related = groups
        .map(|(file, ls)| {
            let (source, labels) = make(&file, &ls);
            Rendered {
                code: "",
                severity: miette::Severity::Advice,
                message: format!("also involved: {file}"),
                help: None,
                source,
                labels,
                related: Vec::new(),
            }
        })
        .collect();
    Rendered {
        code: finding.code,
        severity,
        message: finding.message.clone(),
        help: finding.help.clone(),
        source,
        labels,
        related,
    }
}

/// Renders findings for a terminal. `color` false gives plain Unicode output of
/// a fixed width (what snapshots use).
pub fn render_human(findings: &[Finding], sources: &Sources, color: bool, width: usize) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_links(false);
    let mut out = String::new();
    for f in findings {
        let r = rendered(f, sources);
        let mut s = String::new();
        if handler.render_report(&mut s, &r).is_err() {
            let _ = writeln!(s, "{}: {}", f.code, f.message);
        }
        out.push_str(&s);
        if let Some(w) = &f.witness {
            let _ = writeln!(out, "  witness request:");
            let pretty = serde_json::to_string_pretty(w).unwrap_or_default();
            for line in pretty.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        if let Some(d) = &f.witness_decisions {
            let _ = writeln!(out, "  decisions it gets:");
            for (k, v) in d {
                let _ = writeln!(out, "    {k}: {v}");
            }
        }
        out.push('\n');
    }
    out
}
