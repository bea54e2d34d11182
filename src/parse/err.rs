//! Syntax errors: pest's error turned into a `parse::syntax` finding that says
//! what was expected, what was found, and how to fix common slips.

use pest::error::{ErrorVariant, InputLocation};

use super::grammar::Rule;
use crate::diagnostic::{Code, Finding, Label};
use crate::source::{SourceFile, Span};

pub(super) fn from_pest(file: &SourceFile, e: &pest::error::Error<Rule>) -> Finding {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = token_at(&file.text, pos);
    let span = Span::new(pos, pos + found.len());
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => expected_list(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let found_text = if found.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{found}`")
    };
    let message = format!("expected {expected}, found {found_text}");
    let help = help_in_context(&file.text, pos, found, &expected)
        .or_else(|| help_for(found, &expected).map(str::to_string));
    syntax_finding(file, span, message, help)
}

/// A `parse::syntax` finding at `span` of `file`.
pub fn syntax_finding(
    file: &SourceFile,
    span: Span,
    message: String,
    help: Option<String>,
) -> Finding {
    let mut f = Finding::new(Code::ParseSyntax, message)
        .with_label(Label::new(&file.name, span).with_message("here"));
    f.help = help;
    f
}

/// The token starting at `pos`: a word, a two-character operator, or one
/// character; empty at end of input.
fn token_at(text: &str, pos: usize) -> &str {
    let rest = text.get(pos..).unwrap_or("");
    let Some(c) = rest.chars().next() else {
        return "";
    };
    if c.is_alphanumeric() || c == '_' {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        return &rest[..end];
    }
    if c == '"' {
        return match rest[1..].find(['"', '\n']) {
            Some(i) if rest.as_bytes().get(i + 1) == Some(&b'"') => &rest[..i + 2],
            Some(i) => &rest[..i + 1],
            None => rest,
        };
    }
    for op in ["==", "!=", "<=", ">=", "&&", "||", "=>"] {
        if rest.starts_with(op) {
            return &rest[..2];
        }
    }
    &rest[..c.len_utf8()]
}

/// Is `c` a character of a name or a field path?
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Help that needs the text around the error: slips whose fix depends on
/// what comes before the place the parser stopped at.
fn help_in_context(text: &str, pos: usize, found: &str, expected: &str) -> Option<String> {
    let before = text.get(..pos)?;
    let after = text.get(pos..)?;
    let prev = before.chars().next_back();
    // `curl-pipe-sh`, `next-window`: a name with hyphens.
    if found == "-"
        && prev.is_some_and(name_char)
        && after
            .chars()
            .nth(1)
            .is_some_and(|c| c.is_ascii_alphabetic())
    {
        let start = before
            .rfind(|c: char| !(name_char(c) || c == '-'))
            .map_or(0, |i| i + 1);
        let end = after
            .find(|c: char| !(name_char(c) || c == '-'))
            .map_or(text.len(), |i| pos + i);
        let word = text.get(start..end)?;
        return Some(format!(
            "names are letters, digits and underscores, without `-`: write `{}`",
            word.replace('-', "_")
        ));
    }
    // `"x" in args.to`: `in` takes a list; a set is tested with `contains`.
    let word_before = before.trim_end();
    if expected == "`[`" && word_before.ends_with("in") {
        let lhs_text = word_before
            .strip_suffix("in")
            .map(str::trim_end)
            .unwrap_or_default();
        let lhs = last_operand(lhs_text);
        let is_path = found
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if is_path && !lhs.is_empty() {
            return Some(format!(
                "`in` compares one value with a list in brackets (`x in [\"a\", \"b\"]`); \
                 to test whether the set `{found}` holds {lhs}, write `{found} contains {lhs}`"
            ));
        }
        return Some(
            "`in` takes a list of values in brackets, e.g. `args.country in [\"KP\", \"IR\"]`"
                .to_string(),
        );
    }
    // `tool starts_with agent/`: an unquoted value read as a field name
    // up to the first character a name cannot hold.
    let glued = found.chars().next().is_some_and(|c| {
        matches!(
            c,
            '/' | ':' | '@' | '#' | '$' | '%' | '*' | '\\' | '~' | '?' | '+' | '-' | '.'
        )
    });
    if glued && prev.is_some_and(name_char) {
        let start = before
            .rfind(|c: char| c.is_whitespace() || matches!(c, '(' | '[' | ','))
            .map_or(0, |i| i + 1);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ']' | ','))
            .map_or(text.len(), |i| pos + i);
        let word = text.get(start..end)?;
        let field = before.get(start..)?;
        return Some(format!(
            "`{word}` is not a value: unquoted, `{field}` reads as a field name; \
             strings are double-quoted: `\"{word}\"`"
        ));
    }
    None
}

/// The last operand written at the end of `text`: a string literal or a
/// word (a field, a number).
fn last_operand(text: &str) -> &str {
    if text.ends_with('"') {
        let inner = text.get(..text.len() - 1).unwrap_or_default();
        return match inner.rfind('"') {
            Some(i) => text.get(i..).unwrap_or_default(),
            None => text,
        };
    }
    let start = text
        .rfind(|c: char| !(name_char(c) || c == '.' || c == '-'))
        .map_or(0, |i| i + 1);
    text.get(start..).unwrap_or_default()
}

fn help_for(found: &str, expected: &str) -> Option<&'static str> {
    let h = match found {
        "=" if expected.contains("comparison") || expected.contains("`and`") => {
            "did you mean `==`? a single `=` is only used by `modify`"
        }
        "&&" => "write `and` instead of `&&`",
        "||" => "write `or` instead of `||`",
        "!" => "write `not` instead of `!`",
        "=>" => "comparisons are `>=` and `<=`",
        "'" => "strings are double-quoted: \"text\"",
        "" => "the file ended early: is a closing `}` missing?",
        _ if found.starts_with('"') && !found[1..].contains('"') => {
            "this string is not closed: add a `\"` before the end of the line"
        }
        _ if expected.contains("reason code") => {
            "a `deny`, `require_approval` or `modify` needs a reason code and a text, e.g. `deny BLOCKED \"why\"`"
        }
        _ => return None,
    };
    Some(h)
}

fn describe(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::EOI => "end of file",
        Rule::policy | Rule::kw_policy => "`policy`",
        Rule::ident => "a name",
        Rule::version => "a version such as `1.0.0`",
        Rule::version_req => "a version requirement such as `^1.2`",
        Rule::kw_version => "`version`",
        Rule::tier_decl | Rule::kw_tier => "`tier`",
        Rule::requires_decl | Rule::kw_requires => "`requires`",
        Rule::rule | Rule::kw_rule => "`rule`",
        Rule::limit | Rule::kw_limit => "`limit`",
        Rule::when | Rule::kw_when => "`when`",
        Rule::kw_max => "`max`",
        Rule::kw_per => "`per`",
        Rule::kw_by => "`by`",
        Rule::kw_exceed => "`exceed`",
        Rule::kw_on_decrease => "`on_decrease`",
        Rule::effect | Rule::allow | Rule::deny | Rule::require_approval | Rule::modify => {
            "an effect (`allow`, `deny`, `require_approval`, `modify`)"
        }
        Rule::kw_allow | Rule::kw_deny | Rule::kw_require_approval | Rule::kw_modify => {
            "an effect (`allow`, `deny`, `require_approval`, `modify`)"
        }
        Rule::kw_via => "`via`",
        Rule::modify_value | Rule::redact_call | Rule::truncate_call | Rule::lowercase_call => {
            "a value (a literal, `redact(…)`, `truncate(…)`, `lowercase(…)`)"
        }
        Rule::kw_redact | Rule::kw_truncate | Rule::kw_lowercase => {
            "a value (a literal, `redact(…)`, `truncate(…)`, `lowercase(…)`)"
        }
        Rule::expr | Rule::or_expr | Rule::and_expr | Rule::not_expr | Rule::not_op => {
            "a condition"
        }
        Rule::paren | Rule::has_call | Rule::in_expr | Rule::str_expr | Rule::cmp_expr => {
            "a condition"
        }
        Rule::bare | Rule::term | Rule::len_call | Rule::kw_not | Rule::kw_has | Rule::kw_len => {
            "a condition"
        }
        Rule::kw_and => "`and`",
        Rule::kw_or => "`or`",
        Rule::kw_in => "`in`",
        Rule::str_op
        | Rule::kw_contains
        | Rule::kw_starts_with
        | Rule::kw_ends_with
        | Rule::kw_matches => "a comparison",
        Rule::cmp_op => "a comparison",
        Rule::list => "a list `[…]`",
        Rule::int => "a number",
        Rule::string | Rule::str_inner | Rule::str_escape => "a string",
        Rule::boolean | Rule::kw_true | Rule::kw_false => "`true` or `false`",
        Rule::duration => "a duration such as `1d`, `12h`, `30m` or `10s`",
        Rule::code => "a reason code such as `BLOCKED`",
        Rule::path => "a field",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::lbracket => "`[`",
        Rule::rbracket => "`]`",
        Rule::comma => "`,`",
        Rule::assign => "`=`",
        _ => return None,
    })
}

fn expected_list(rules: &[Rule]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in rules {
        if let Some(d) = describe(*r)
            && !names.contains(&d)
        {
            names.push(d);
        }
    }
    match names.as_slice() {
        [] => "something else".to_string(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}
