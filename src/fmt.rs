//! Canonical formatting of `.policy` files (`sluice fmt`). Pure: text in,
//! text out; no I/O.
//!
//! The canonical layout:
//!
//! ```text
//! policy payments version 1.4.0 {
//!   tier security
//!   requires core ^2.0
//!
//!   rule large_transfer {
//!     when tool == "payments.transfer" and args.amount > 1000
//!     require_approval "finance" via "approvals.request" APPROVAL_REQUIRED "Above 1000"
//!   }
//!
//!   rule small_transfer {
//!     when tool == "payments.transfer"
//!       and agent in ["billing-bot", "payroll-bot"]
//!       and (args.country in ["AT", "BE", "CH", "DE", "DK", "ES", "FR", "GB", "IE", "IT", "NL", "PL",
//!           "SE", "US"]
//!         or args.domestic)
//!     require_approval "finance" via "approvals.request"
//!       SMALL_TRANSFER "Small transfers to supported corridors need a second look"
//!   }
//!
//!   limit transfers_per_agent {
//!     when tool == "payments.transfer"
//!     max 100 per 1d by agent
//!     exceed deny RATE_LIMITED "Daily transfer limit reached"
//!     on_decrease next_window
//!   }
//! }
//! ```
//!
//! - two spaces of indentation; `tier` first, then the `requires` lines in the
//!   order written, then one blank line (when there is a tier or a
//!   requirement), then the rules and limits in the order written, separated
//!   by one blank line;
//! - a condition after `when`, the effect on the next line; each part of a
//!   limit on its own line;
//! - a line that would be wider than [`MAX_WIDTH`] columns (indentation
//!   included, a trailing comment not counted) is wrapped, by rules that look
//!   at the syntax tree alone (see `fmt/wrap.rs`): a condition breaks its
//!   `and`/`or` chain one operand per line (`and …`/`or …` one level deeper
//!   than `when`), then each operand that is still too long: a chain inside
//!   it one level deeper again (`)` at the end of its last operand), a list
//!   after a comma (filled up to the width); an effect breaks before its
//!   reason code, then before `via`;
//! - one space around binary operators, lists as `["a", "b"]`, strings
//!   re-escaped (`\\ \" \n \t`), requirements with normalized spacing
//!   (`>=1.0, <2.0`); parentheses exactly where the author wrote them;
//! - comments kept: an own-line comment stays above the line that follows it
//!   (with a blank line after it when the source had one), a comment that
//!   trailed code stays at the end of that line after two spaces, and a comment
//!   inside a construct that is now printed on one line moves above that line
//!   (in a wrapped condition or effect, each line is such a construct: a
//!   comment goes above the operand line it precedes or after the one it
//!   trails; it keeps no blank line below it there);
//! - exactly one newline at the end of the file.
//!
//! Formatting is idempotent, and the text it prints parses to the same syntax
//! tree (spans aside; requirement text with its spacing normalized).

mod comments;
mod print;
mod wrap;

use crate::diagnostic::Finding;
use crate::parse::ast::{Item, Limit, Policy, Rule};
use crate::parse::parse_policy;
use crate::source::SourceFile;

pub use comments::{Comment, scan_comments};
pub use print::{
    effect as format_effect, expr as format_expr, literal as format_literal,
    modify_value as format_modify_value, quote, requirement as normalize_requirement,
};
pub use wrap::MAX_WIDTH;

/// Indentation of one level.
const INDENT: &str = "  ";

/// Formats one policy file, keeping its comments. Findings when the file does
/// not parse (the same findings as [`parse_policy`]).
pub fn format_source(file: &SourceFile) -> Result<String, Vec<Finding>> {
    let policy = parse_policy(file)?;
    Ok(format_parsed(&policy, &file.text))
}

/// Formats a policy parsed from `text`, keeping the comments of `text`. The
/// spans of `policy` must point into `text` (as [`parse_policy`] leaves them);
/// otherwise the comments are still all printed, but on the wrong lines.
pub fn format_parsed(policy: &Policy, text: &str) -> String {
    let lines = layout(policy, Some(text));
    let comments = scan_comments(text);
    render(&lines, &attach(&lines, &comments, text))
}

/// Formats a policy without comments (for a syntax tree that was built rather
/// than parsed; its spans are not used).
pub fn format_policy(policy: &Policy) -> String {
    let lines = layout(policy, None);
    render(&lines, &Attached::empty(lines.len()))
}

/// The outcome of formatting one file, for `sluice fmt` and `sluice fmt --check`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFormat {
    /// The file's name, as in its [`SourceFile`].
    pub name: String,
    /// The canonical text, or the findings that stop the file from parsing.
    pub result: Result<String, Vec<Finding>>,
    /// The canonical text differs from the file's text (false on findings).
    pub changed: bool,
}

/// Formats each file on its own: a file that does not parse yields its
/// findings and does not stop the others.
pub fn format_files(files: &[SourceFile]) -> Vec<FileFormat> {
    files
        .iter()
        .map(|file| {
            let result = format_source(file);
            let changed = result
                .as_ref()
                .is_ok_and(|text| text.as_str() != &*file.text);
            FileFormat {
                name: file.name.clone(),
                result,
                changed,
            }
        })
        .collect()
}

/// What `sluice fmt --check` shows for a file that is not formatted: a
/// unified diff from its text to the canonical text (3 lines of context),
/// headed `--- name` and `+++ name (formatted)`.
pub fn diff(name: &str, text: &str, formatted: &str) -> String {
    similar::TextDiff::from_lines(text, formatted)
        .unified_diff()
        .context_radius(3)
        .header(name, &format!("{name} (formatted)"))
        .to_string()
}

/// One printed line.
#[derive(Debug)]
struct Line {
    /// Levels of indentation.
    depth: usize,
    /// Empty for a blank line.
    text: String,
    /// The end of the line's last token in the source; `None` for blank lines.
    end: Option<usize>,
    /// A closing `}`: own-line comments above it belong to the block's body and
    /// are indented one level deeper.
    closes: bool,
    /// A line that goes on with a wrapped condition or effect: own-line
    /// comments above it keep no blank line after them.
    cont: bool,
}

struct Lines<'a> {
    src: Option<&'a str>,
    lines: Vec<Line>,
}

impl Lines<'_> {
    fn code(&mut self, depth: usize, text: String, end: usize) {
        self.lines.push(Line {
            depth,
            text,
            end: Some(end),
            closes: false,
            cont: false,
        });
    }

    /// The lines of one wrapped construct.
    fn wrapped(&mut self, pieces: Vec<wrap::Piece>) {
        for (i, p) in pieces.into_iter().enumerate() {
            self.lines.push(Line {
                depth: p.depth,
                text: p.text,
                end: Some(p.end),
                closes: false,
                cont: i > 0,
            });
        }
    }

    fn close(&mut self, depth: usize, end: usize) {
        self.lines.push(Line {
            depth,
            text: "}".to_string(),
            end: Some(end),
            closes: true,
            cont: false,
        });
    }

    fn blank(&mut self) {
        self.lines.push(Line {
            depth: 0,
            text: String::new(),
            end: None,
            closes: false,
            cont: false,
        });
    }

    /// The end of the `{` that follows `pos` in the source.
    fn brace_after(&self, pos: usize) -> usize {
        comments::end_of_token(self.src, pos, b'{')
    }
}

fn layout(policy: &Policy, src: Option<&str>) -> Vec<Line> {
    let mut out = Lines {
        src,
        lines: Vec::new(),
    };
    out.code(
        0,
        format!(
            "policy {} version {} {{",
            policy.name.node, policy.version.node
        ),
        out.brace_after(policy.version.span.end),
    );
    if let Some(tier) = &policy.tier {
        out.code(1, format!("tier {}", tier.node.as_str()), tier.span.end);
    }
    for r in &policy.requires {
        out.code(
            1,
            format!("requires {} {}", r.policy.node, print::requirement(&r.text)),
            r.req.span.end,
        );
    }
    let has_header = policy.tier.is_some() || !policy.requires.is_empty();
    for (i, item) in policy.items.iter().enumerate() {
        if i > 0 || has_header {
            out.blank();
        }
        match item {
            Item::Rule(rule) => layout_rule(&mut out, rule),
            Item::Limit(limit) => layout_limit(&mut out, limit),
        }
    }
    out.close(0, policy.span.0.end);
    out.lines
}

fn layout_rule(out: &mut Lines<'_>, rule: &Rule) {
    out.code(
        1,
        format!("rule {} {{", rule.name.node),
        out.brace_after(rule.name.span.end),
    );
    if let Some(when) = &rule.when {
        out.wrapped(wrap::condition(when, 2, out.src));
    }
    out.wrapped(wrap::effect("", &rule.effect, 2));
    out.close(1, rule.span.0.end);
}

fn layout_limit(out: &mut Lines<'_>, limit: &Limit) {
    out.code(
        1,
        format!("limit {} {{", limit.name.node),
        out.brace_after(limit.name.span.end),
    );
    if let Some(when) = &limit.when {
        out.wrapped(wrap::condition(when, 2, out.src));
    }
    let by: Vec<&str> = limit.by.iter().map(|p| p.node.as_str()).collect();
    let window = limit.window.node;
    out.code(
        2,
        format!(
            "max {} per {}{} by {}",
            limit.max.node,
            window.amount,
            window.unit,
            by.join(", ")
        ),
        limit
            .by
            .last()
            .map_or(limit.window.span.end, |p| p.span.end),
    );
    out.wrapped(wrap::effect("exceed ", &limit.exceed, 2));
    if let Some(od) = &limit.on_decrease {
        out.code(2, format!("on_decrease {}", od.node.as_str()), od.span.end);
    }
    out.close(1, limit.span.0.end);
}

/// Which comments go where: above a line, at the end of a line, or after the
/// last line.
struct Attached<'c> {
    /// Own-line comments above each line, each with whether a blank line
    /// follows it (only kept for a comment that was between lines: one that
    /// was inside a construct has no blank line of its own to keep).
    above: Vec<Vec<(&'c Comment, bool)>>,
    after: Vec<Option<&'c Comment>>,
    tail: Vec<&'c Comment>,
}

impl Attached<'_> {
    fn empty(n: usize) -> Self {
        Attached {
            above: vec![Vec::new(); n],
            after: vec![None; n],
            tail: Vec::new(),
        }
    }
}

/// Attaches each comment to a printed line. The printed lines, taken in source
/// order, split the source into runs of tokens; a comment lies either inside
/// one run (it goes above that line) or between two (a trailing comment stays
/// after the earlier line, an own-line comment goes above the later one).
///
/// With spans that do not point into `src` the comments land on the wrong
/// lines, but every comment is still printed once and nothing panics.
//
// INVARIANT: the code lines of `layout` cover every token of the source, and
// each is one contiguous run of source tokens (the lines of a wrapped
// condition or effect too); `Line::end` is the end of that run's last token.
fn attach<'c>(lines: &[Line], comments: &'c [Comment], src: &str) -> Attached<'c> {
    let mut att = Attached::empty(lines.len());
    // (end, start, line index) of each code line, in source order.
    let mut runs: Vec<(usize, usize, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.end.map(|end| (end, 0, i)))
        .collect();
    runs.sort_by_key(|&(end, _, _)| end);
    let mut prev_end = 0;
    for run in &mut runs {
        run.1 = comments::next_token(src, prev_end);
        prev_end = run.0;
    }
    for c in comments {
        let at = c.span.start;
        let k = runs.partition_point(|&(end, _, _)| end <= at);
        let next = runs.get(k).copied();
        // `runs` holds indexes of `lines`, and `att` has a slot for each of
        // them: the lookups below always find their slot.
        if let Some((_, start, line)) = next
            && start <= at
            && let Some(above) = att.above.get_mut(line)
        {
            above.push((c, false));
            continue;
        }
        if c.trailing
            && let Some(&(_, _, prev)) = k.checked_sub(1).and_then(|p| runs.get(p))
            && let Some(after @ None) = att.after.get_mut(prev)
        {
            *after = Some(c);
            continue;
        }
        match next.and_then(|(_, _, line)| att.above.get_mut(line)) {
            Some(above) => above.push((c, c.blank_after)),
            None => att.tail.push(c),
        }
    }
    att
}

fn render(lines: &[Line], att: &Attached<'_>) -> String {
    let mut out = String::new();
    let mut push = |depth: usize, text: &str| {
        if !text.is_empty() {
            for _ in 0..depth {
                out.push_str(INDENT);
            }
            out.push_str(text);
        }
        out.push('\n');
    };
    for (i, line) in lines.iter().enumerate() {
        let above = att.above.get(i).map_or(&[][..], Vec::as_slice);
        for (j, &(c, blank_after)) in above.iter().enumerate() {
            push(line.depth + usize::from(line.closes), &c.text);
            let last = j + 1 == above.len();
            if blank_after && !line.cont && !(last && line.closes) {
                push(0, "");
            }
        }
        match att.after.get(i).copied().flatten() {
            Some(c) => push(line.depth, &format!("{}  {}", line.text, c.text)),
            None => push(line.depth, &line.text),
        }
    }
    for (j, c) in att.tail.iter().enumerate() {
        push(0, &c.text);
        if c.blank_after && j + 1 < att.tail.len() {
            push(0, "");
        }
    }
    out
}
