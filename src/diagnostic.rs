//! Findings: the one report shape shared by every check (language errors,
//! version graph, conflict analysis, live state), and their renderings.
//!
//! A [`Finding`] carries a stable [`Code`] (which fixes its severity), a
//! message, help text, the
//! labelled spans it concerns (possibly in several files), and for conflicts a
//! witness request with the decisions it really gets. Stages produce findings;
//! only `cli` prints them.
//!
//! Renderings: [`render_human`] (miette), [`to_json`] (SPEC §3), [`sarif`]
//! (SARIF 2.1.0 for code scanning) and [`github`] (workflow annotations and a
//! Markdown step summary). All of them are pure: text in, text out.

pub mod change;
mod code;
pub mod github;
pub mod sarif;

pub use self::code::{Code, DOCS_URL};

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::source::{SourceFile, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Informs; never fails a check (`change::decision`).
    Note,
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
    pub code: Code,
    /// The code's severity.
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
    pub labels: Vec<Label>,
    /// A concrete request that triggers the finding (conflicts found by the solver).
    pub witness: Option<serde_json::Value>,
    /// What the real evaluator decides for the witness: `policy.rule` -> effect,
    /// and `final` -> the combined decision.
    pub witness_decisions: Option<BTreeMap<String, String>>,
    /// In a pull-request check (`--base`): whether the change introduced
    /// the finding (`false`: the base revision already had it). `None`
    /// outside a comparison.
    pub introduced: Option<bool>,
}

impl Finding {
    /// A finding of `code`, with the severity the code fixes.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Finding {
            code,
            severity: code.severity(),
            message: message.into(),
            help: None,
            labels: Vec::new(),
            witness: None,
            witness_decisions: None,
            introduced: None,
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

    /// Whether a pull-request check found it at the base revision too.
    pub fn preexisting(&self) -> bool {
        self.introduced == Some(false)
    }

    /// A finding of the conflict analysis (`conflict::*`, `analyze::*`).
    pub fn from_analysis(&self) -> bool {
        matches!(self.code.family(), "conflict" | "analyze")
    }

    /// Ordering key: file, position, code. Reports are sorted by it so output
    /// does not depend on the order files were read.
    pub fn sort_key(&self) -> (String, usize, &'static str, String) {
        let (file, start) = self
            .labels
            .first()
            .map_or((String::new(), 0), |l| (l.file.clone(), l.span.start));
        (file, start, self.code.as_str(), self.message.clone())
    }
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
/// rule) of its labels (as a set: the pull-request check puts the changed
/// rule's label first), and its message — never line numbers, which shift
/// when unrelated lines change. The pull-request check matches base and head
/// findings by it; SARIF carries its hash as a fingerprint.
pub fn identity(f: &Finding) -> String {
    let mut key = String::from(f.code.as_str());
    let mut places: Vec<(&str, &str, &str)> = f
        .labels
        .iter()
        .map(|l| {
            (
                l.file.as_str(),
                l.policy.as_deref().unwrap_or(""),
                l.rule.as_deref().unwrap_or(""),
            )
        })
        .collect();
    places.sort_unstable();
    for (file, policy, rule) in places {
        let _ = write!(key, "\u{1f}{file}\u{1e}{policy}\u{1e}{rule}");
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
    /// Notes (`change::decision`): they inform, never fail a check.
    #[serde(skip_serializing_if = "is_zero")]
    pub notes: usize,
    pub policies: usize,
    pub rules: usize,
    pub seconds: f64,
    /// With `--base`: how many of the findings the base revision already
    /// had (`"introduced": false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preexisting: Option<usize>,
    /// With `--base`: the head's traces (and a decision log) replayed
    /// against both revisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplaySummary>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Summary {
    /// Errors and warnings (notes are neither).
    pub fn count(findings: &[Finding]) -> (usize, usize) {
        let errors = findings.iter().filter(|f| f.is_error()).count();
        let warnings = findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count();
        (errors, warnings)
    }

    /// Findings the base revision already had.
    pub fn preexisting(findings: &[Finding]) -> usize {
        findings.iter().filter(|f| f.preexisting()).count()
    }

    /// Notes.
    pub fn notes(findings: &[Finding]) -> usize {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Note)
            .count()
    }
}

/// Requests replayed against both revisions of a change (SPEC §3, "What a
/// change does to decisions"): the head's traces and an engine's decision
/// log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// Requests evaluated at both revisions.
    pub requests: usize,
    /// Of those, requests whose final decision differs.
    pub changed: usize,
    /// Requests left out: not valid at one of the revisions, or a log line
    /// that is not an evaluation.
    pub skipped: usize,
    /// `"deny→allow"` → how many requests, for every transition seen.
    pub by_transition: BTreeMap<String, usize>,
    /// A few of the changed requests (the first of each transition first).
    pub examples: Vec<ReplayExample>,
}

/// One replayed request whose decision changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayExample {
    /// Where it came from: `traces/x.jsonl:3`, or `decision log line 17`.
    pub source: String,
    pub request: serde_json::Value,
    pub base: String,
    pub head: String,
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
    code: Code,
    severity: Severity,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
    /// The code's entry in the catalogue (`docs/codes.md`).
    help_uri: String,
    locations: Vec<JsonLocation<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    witness: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    witness_decisions: Option<&'a BTreeMap<String, String>>,
    /// With `--base`: whether the change introduced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    introduced: Option<bool>,
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
            help_uri: f.code.doc_url(),
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
            introduced: f.introduced,
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
    /// The code's entry in the catalogue: a link on the code, on a terminal.
    url: Option<String>,
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
    fn url<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.url
            .as_ref()
            .map(|u| Box::new(u) as Box<dyn std::fmt::Display>)
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
        Severity::Note => miette::Severity::Advice,
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
                url: None,
            }
        })
        .collect();
    Rendered {
        code: finding.code.as_str(),
        severity,
        message: finding.message.clone(),
        help: finding.help.clone(),
        source,
        labels,
        related,
        url: None,
    }
}

/// What the human and GitHub renderings put before the message of a
/// finding the base revision already had: `[already on main] `, naming the
/// base as the report does.
pub fn preexisting_tag(base: &str) -> String {
    format!("[already on {base}] ")
}

/// `findings` with the message of each one the base already had prefixed
/// by [`preexisting_tag`], for the renderings that show text (human,
/// GitHub). Identity, JSON and SARIF use the field itself.
pub fn tag_preexisting(findings: &[Finding], base: &str) -> Vec<Finding> {
    let tag = preexisting_tag(base);
    findings
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.preexisting() {
                f.message.insert_str(0, &tag);
            }
            f
        })
        .collect()
}

/// Renders findings for a terminal. `color` false gives plain Unicode output of
/// a fixed width (what snapshots use).
pub fn render_human(findings: &[Finding], sources: &Sources, color: bool, width: usize) -> String {
    render(findings, sources, color, width, false)
}

/// [`render_human`] as the commands print it: each finding's help ends with
/// the address of its code's entry in the catalogue (`see …`), in plain
/// text, for terminals that do not show links and for logs.
pub fn render_human_linked(
    findings: &[Finding],
    sources: &Sources,
    color: bool,
    width: usize,
) -> String {
    render(findings, sources, color, width, true)
}

fn render(findings: &[Finding], sources: &Sources, color: bool, width: usize, see: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_links(color);
    let mut out = String::new();
    for f in findings {
        let mut r = rendered(f, sources);
        if color {
            r.url = Some(f.code.doc_url());
        }
        if see {
            let url = f.code.doc_url();
            r.help = Some(match r.help.take() {
                Some(h) => format!("{h}\nsee {url}"),
                None => format!("see {url}"),
            });
        }
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
