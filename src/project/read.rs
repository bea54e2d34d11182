//! Reading the spanned TOML tree of `sluice.toml`: typed accessors that turn a
//! value of the wrong shape into a `schema::invalid` finding at its span.
//!
//! Every accessor returns `None` after reporting, so callers keep going and
//! collect every problem of the file. Pure: no I/O.

use std::borrow::Cow;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Code, Finding, Label};
use crate::model::schema::closest;
use crate::source::{SourceFile, Span};

/// The code of every finding about `sluice.toml`.
pub(super) const CODE: Code = Code::SchemaInvalid;

/// A key of a TOML table, with its span.
pub(super) type Key<'i> = Spanned<Cow<'i, str>>;
/// A value of a TOML table, with its span.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// The context of one read: the file and the findings so far.
pub(super) struct Cx<'f> {
    file: &'f SourceFile,
    /// The code of the findings (`schema::invalid` for `sluice.toml`).
    code: Code,
    pub(super) findings: Vec<Finding>,
    /// Findings that do not stop the read (a plan that cannot pass its own
    /// gates), reported beside the project.
    pub(super) warnings: Vec<Finding>,
}

impl<'f> Cx<'f> {
    pub(super) fn new(file: &'f SourceFile) -> Self {
        Cx::with_code(file, CODE)
    }

    /// A context whose findings have `code`.
    pub(super) fn with_code(file: &'f SourceFile, code: Code) -> Self {
        Cx {
            file,
            code,
            findings: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A label at `span` of this file.
    pub(super) fn label(&self, span: Range<usize>, text: impl Into<String>) -> Label {
        Label::new(self.file.name.clone(), Span::new(span.start, span.end)).with_message(text)
    }

    /// Reports one error with one label.
    pub(super) fn error(
        &mut self,
        span: Range<usize>,
        label: impl Into<String>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let finding = Finding::new(self.code, message)
            .with_label(self.label(span, label))
            .with_help(help);
        self.findings.push(finding);
    }

    /// Reports a finding built by the caller (several labels).
    pub(super) fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// The source text at `span`, for quoting a value in a message.
    pub(super) fn text(&self, span: Range<usize>) -> &'f str {
        self.file.text.get(span).unwrap_or_default()
    }

    /// Reports a key that the table does not know, with the closest known key
    /// (or the list of known keys) as help.
    pub(super) fn unknown_key(&mut self, key: &Key<'_>, place: &str, known: &[&str]) {
        let help = did_you_mean(key.get_ref(), known);
        self.error(
            key.span(),
            "unknown key",
            format!("unknown key `{}` {place}", key.get_ref()),
            help,
        );
    }

    /// Reports a value of the wrong TOML type.
    fn wrong_type(&mut self, v: &Value<'_>, what: &str, expected: &str, example: &str) {
        self.error(
            v.span(),
            format!("expected {expected}"),
            format!("{what} must be {expected}, not {}", a_type(v.get_ref())),
            format!("write it like `{example}`"),
        );
    }

    /// A string value.
    pub(super) fn string<'a>(
        &mut self,
        v: &'a Value<'_>,
        what: &str,
        example: &str,
    ) -> Option<&'a str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(v, what, "a string", example);
                None
            }
        }
    }

    /// A non-empty string value.
    pub(super) fn nonempty_string<'a>(
        &mut self,
        v: &'a Value<'_>,
        what: &str,
        example: &str,
    ) -> Option<&'a str> {
        let s = self.string(v, what, example)?;
        if s.trim().is_empty() {
            self.error(
                v.span(),
                "empty",
                format!("{what} must not be empty"),
                format!("write it like `{example}`"),
            );
            return None;
        }
        Some(s)
    }

    /// A table value.
    pub(super) fn table<'a, 'i>(
        &mut self,
        v: &'a Value<'i>,
        what: &str,
        example: &str,
    ) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, what, "a table", example);
                None
            }
        }
    }

    /// An integer value that fits `i64`.
    pub(super) fn int(&mut self, v: &Value<'_>, what: &str, example: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        v.span(),
                        "out of range",
                        format!("{what} is too large, found `{}`", self.text(v.span())),
                        "integers must fit in 64 bits",
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(v, what, "an integer", example);
                None
            }
        }
    }

    /// A non-negative integer value.
    pub(super) fn count(&mut self, v: &Value<'_>, what: &str, example: &str) -> Option<u64> {
        let n = self.int(v, what, example)?;
        match u64::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    v.span(),
                    "negative",
                    format!("{what} must not be negative, found `{n}`"),
                    format!("write a count of 0 or more, like `{example}`"),
                );
                None
            }
        }
    }

    /// A number (integer or float), finite.
    fn number(&mut self, v: &Value<'_>, what: &str, example: &str) -> Option<f64> {
        let n = match v.get_ref() {
            // The value is a threshold: precision lost above 2^53 does not matter.
            DeValue::Integer(_) => self.int(v, what, example).map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => {
                self.wrong_type(v, what, "a number", example);
                return None;
            }
        }?;
        if n.is_finite() {
            Some(n)
        } else {
            self.error(
                v.span(),
                "not a finite number",
                format!(
                    "{what} must be a finite number, found `{}`",
                    self.text(v.span())
                ),
                format!("write it like `{example}`"),
            );
            None
        }
    }

    /// A number of 0 or more (milliseconds, for instance).
    pub(super) fn non_negative(&mut self, v: &Value<'_>, what: &str, example: &str) -> Option<f64> {
        let n = self.number(v, what, example)?;
        if n < 0.0 {
            self.error(
                v.span(),
                "negative",
                format!(
                    "{what} must not be negative, found `{}`",
                    self.text(v.span())
                ),
                format!("write a number of 0 or more, like `{example}`"),
            );
            return None;
        }
        Some(n)
    }

    /// A number above 0.
    pub(super) fn positive(&mut self, v: &Value<'_>, what: &str, example: &str) -> Option<f64> {
        let n = self.number(v, what, example)?;
        if n <= 0.0 {
            self.error(
                v.span(),
                "not positive",
                format!("{what} must be above 0, found `{}`", self.text(v.span())),
                format!("write a number above 0, like `{example}`"),
            );
            return None;
        }
        Some(n)
    }

    /// A rate: a number within 0..=1.
    pub(super) fn rate(&mut self, v: &Value<'_>, what: &str, example: &str) -> Option<f64> {
        let n = self.number(v, what, example)?;
        if !(0.0..=1.0).contains(&n) {
            self.error(
                v.span(),
                "out of range",
                format!(
                    "{what} must be between 0 and 1, found `{}`",
                    self.text(v.span())
                ),
                format!("a rate is a share of requests: `0.01` is 1%, write it like `{example}`"),
            );
            return None;
        }
        Some(n)
    }

    /// A duration written as a string: `"30s"`, `"10m"`, `"1h30m"`.
    pub(super) fn duration(
        &mut self,
        v: &Value<'_>,
        what: &str,
        example: &str,
    ) -> Option<Duration> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.as_ref(),
            _ => {
                self.wrong_type(v, what, "a duration string", example);
                return None;
            }
        };
        match humantime::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                let why = match e {
                    humantime::DurationError::UnknownUnit { unit, .. } if !unit.is_empty() => {
                        format!("`{unit}` is not a unit; ")
                    }
                    humantime::DurationError::UnknownUnit { .. } => {
                        "the unit is missing; ".to_owned()
                    }
                    humantime::DurationError::NumberOverflow => "it is too long; ".to_owned(),
                    _ => String::new(),
                };
                self.error(
                    v.span(),
                    "not a duration",
                    format!("{what} is not a valid duration: `{s}`"),
                    format!(
                        "{why}write numbers with units (`s`, `m`, `h`, `d`), like `{example}` or `\"1h30m\"`"
                    ),
                );
                None
            }
        }
    }
}

/// Help for a word that is not one of `known`: the closest known word, or the
/// list of them.
pub(super) fn did_you_mean(word: &str, known: &[&str]) -> String {
    match closest(word, known.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("expected one of {}", list(known, "or")),
    }
}

/// `a`, `b` or `c` (with `conjunction` "or"), each in backticks.
pub(super) fn list(words: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

/// The entries of a table in the order they are written.
pub(super) fn entries<'a, 'i>(t: &'a DeTable<'i>) -> Vec<(&'a Key<'i>, &'a Value<'i>)> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// A leaf of a table read as dotted paths: `args.amount = …`, written either
/// as a quoted key `"args.amount"` or as nested tables.
pub(super) struct Leaf<'a, 'i> {
    pub(super) path: String,
    pub(super) key: &'a Key<'i>,
    pub(super) value: &'a Value<'i>,
}

/// The leaves of a table, nested tables flattened into dotted paths, in the
/// order they are written.
pub(super) fn leaves<'a, 'i>(t: &'a DeTable<'i>) -> Vec<Leaf<'a, 'i>> {
    fn walk<'a, 'i>(t: &'a DeTable<'i>, prefix: &str, out: &mut Vec<Leaf<'a, 'i>>) {
        for (k, v) in entries(t) {
            let path = format!("{prefix}{}", k.get_ref());
            match v.get_ref() {
                DeValue::Table(inner) => walk(inner, &format!("{path}."), out),
                _ => out.push(Leaf {
                    path,
                    key: k,
                    value: v,
                }),
            }
        }
    }
    let mut out = Vec::new();
    walk(t, "", &mut out);
    out.sort_by_key(|l| l.key.span().start);
    out
}

/// "a string", "an integer"…: the TOML type of a value, for messages.
pub(super) fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The text with its first letter in lowercase (messages start lowercase).
pub(super) fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
