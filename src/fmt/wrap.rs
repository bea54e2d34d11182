//! Line breaking: a `when` condition or an effect that does not fit in
//! [`MAX_WIDTH`] columns, split over several lines. Pure: no I/O.
//!
//! The layout depends on the syntax tree alone (never on how the source was
//! laid out, nor on its comments), so the canonical text of a policy is the
//! same whatever its input layout. Each printed line is one contiguous run of
//! source tokens, and carries the end of its last token, so that comments can
//! be attached to it (see `attach` in `fmt.rs`).
//!
//! Conditions are broken top-down, greedily: a construct that fits on the
//! rest of its line is printed flat; one that does not is broken at its
//! outermost level, and each of its parts is tried again on its own line.
//!
//! - An `and`/`or` chain puts each operand after the first on its own line,
//!   starting with its operator, at the chain's continuation depth.
//! - The continuation depth of the `when` condition is one level deeper than
//!   `when`; an operand of a broken chain gets the chain's continuation depth
//!   plus one (so that a chain inside a chain, in parentheses or not, breaks
//!   one level deeper than the chain that holds it).
//! - Parentheses and `not` break what they hold, at their own continuation
//!   depth; a `)` stays at the end of the last operand's line.
//! - A list breaks after a comma, filling each line up to the width; the
//!   elements that go on after the first line start at the continuation depth
//!   and the `]` stays at the end of the last element.
//! - A comparison, `has(…)`, a string operator or a term never breaks: a line
//!   that holds one longer than the width stays too long.

use super::{comments, print};
use crate::parse::ast::{Effect, Expr, ExprKind, Spanned};

/// The widest a line may be, in columns (characters), indentation included
/// and a trailing comment not counted.
pub const MAX_WIDTH: usize = 100;

/// Columns of one level of indentation.
const INDENT_WIDTH: usize = super::INDENT.len();

/// One printed line of a construct that may be wrapped.
#[derive(Debug)]
pub(super) struct Piece {
    /// Levels of indentation.
    pub depth: usize,
    pub text: String,
    /// The end of the line's last token in the source.
    pub end: usize,
}

/// The lines of `when COND`, the `when` at `depth`; `src` is the text the
/// spans of `e` point into, if any.
pub(super) fn condition(e: &Expr, depth: usize, src: Option<&str>) -> Vec<Piece> {
    let mut w = Wrap::new(depth, "when ", src);
    w.expr(e, depth + 1, 0);
    w.finish()
}

/// The lines of an effect (after `prefix`, e.g. `exceed `), at `depth`. An
/// effect that does not fit breaks before its reason code (the code and text
/// go on the next line, one level deeper); a `require_approval` whose first
/// line still does not fit breaks before `via` too. `allow` and
/// `deny CODE "text"` never break.
pub(super) fn effect(prefix: &str, e: &Spanned<Effect>, depth: usize) -> Vec<Piece> {
    let flat = format!("{prefix}{}", print::effect(&e.node));
    let one = |text: String| {
        vec![Piece {
            depth,
            text,
            end: e.span.end,
        }]
    };
    if fits(depth, &flat) {
        return one(flat);
    }
    let reason = |code: &str, text: &str| Piece {
        depth: depth + 1,
        text: format!("{code} {}", print::quote(text)),
        end: e.span.end,
    };
    match &e.node {
        Effect::Allow | Effect::Deny { .. } => one(flat),
        Effect::RequireApproval {
            group,
            via,
            code,
            text,
        } => {
            let head = format!("{prefix}require_approval {}", print::quote(&group.node));
            let mut out = Vec::new();
            match via {
                Some(via) => {
                    let via_text = format!("via {}", print::quote(&via.node));
                    let joined = format!("{head} {via_text}");
                    if fits(depth, &joined) {
                        out.push(Piece {
                            depth,
                            text: joined,
                            end: via.span.end,
                        });
                    } else {
                        out.push(Piece {
                            depth,
                            text: head,
                            end: group.span.end,
                        });
                        out.push(Piece {
                            depth: depth + 1,
                            text: via_text,
                            end: via.span.end,
                        });
                    }
                }
                None => out.push(Piece {
                    depth,
                    text: head,
                    end: group.span.end,
                }),
            }
            out.push(reason(&code.node, &text.node));
            out
        }
        Effect::Modify {
            field,
            value,
            code,
            text,
        } => vec![
            Piece {
                depth,
                text: format!(
                    "{prefix}modify {} = {}",
                    field.node.as_str(),
                    print::modify_value(&value.node)
                ),
                end: value.span.end,
            },
            reason(&code.node, &text.node),
        ],
    }
}

/// The end of an expression's last token. The span of an `and`/`or` chain
/// may run on over the whitespace and comments that follow it, so the end is
/// taken from the last operand.
pub(super) fn expr_end(e: &Expr) -> usize {
    match &e.node {
        ExprKind::Or(parts) | ExprKind::And(parts) => parts.last().map_or(e.span.end, expr_end),
        ExprKind::Not(inner) => expr_end(inner),
        _ => e.span.end,
    }
}

/// The columns `s` takes in a terminal or an editor: a wide character (CJK,
/// most emoji) takes two, a combining mark none.
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

fn fits(depth: usize, text: &str) -> bool {
    depth * INDENT_WIDTH + width(text) <= MAX_WIDTH
}

/// Whether breaking `e` can make it narrower: it holds a chain or a list of
/// more than one element.
fn breakable(e: &Expr) -> bool {
    match &e.node {
        ExprKind::Or(_) | ExprKind::And(_) => true,
        ExprKind::Not(inner) | ExprKind::Paren(inner) => breakable(inner),
        ExprKind::In { list, .. } => list.len() > 1,
        ExprKind::Cmp { .. } | ExprKind::Str { .. } | ExprKind::Has(_) | ExprKind::Term(_) => false,
    }
}

/// Lines being built: the finished ones and the current one.
struct Wrap<'s> {
    src: Option<&'s str>,
    done: Vec<Piece>,
    depth: usize,
    text: String,
    end: usize,
}

impl<'s> Wrap<'s> {
    fn new(depth: usize, prefix: &str, src: Option<&'s str>) -> Self {
        Wrap {
            src,
            done: Vec::new(),
            depth,
            text: prefix.to_string(),
            end: 0,
        }
    }

    /// The column the next character goes to.
    fn col(&self) -> usize {
        self.depth * INDENT_WIDTH + width(&self.text)
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn newline(&mut self, depth: usize) {
        self.done.push(Piece {
            depth: self.depth,
            text: std::mem::take(&mut self.text),
            end: self.end,
        });
        self.depth = depth;
    }

    fn finish(mut self) -> Vec<Piece> {
        self.newline(0);
        self.done
    }

    /// Writes `e` from the current column; lines it goes on to start at depth
    /// `cont`; `suffix` columns (closing parentheses) follow its last token.
    fn expr(&mut self, e: &Expr, cont: usize, suffix: usize) {
        let flat = print::expr(e);
        if !breakable(e) || self.col() + width(&flat) + suffix <= MAX_WIDTH {
            self.push(&flat);
            self.end = expr_end(e);
            return;
        }
        match &e.node {
            ExprKind::Or(parts) | ExprKind::And(parts) => {
                let op = if matches!(e.node, ExprKind::Or(_)) {
                    "or "
                } else {
                    "and "
                };
                let last = parts.len().saturating_sub(1);
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        self.newline(cont);
                        self.push(op);
                    }
                    self.expr(p, cont + 1, if i == last { suffix } else { 0 });
                }
            }
            ExprKind::Not(inner) => {
                self.push("not ");
                self.expr(inner, cont, suffix);
            }
            ExprKind::Paren(inner) => {
                self.push("(");
                self.expr(inner, cont, suffix + 1);
                self.push(")");
                self.end = e.span.end;
            }
            ExprKind::In { lhs, list } => {
                self.push(&print::term(lhs));
                self.push(" in [");
                for (i, v) in list.iter().enumerate() {
                    let last = i + 1 == list.len();
                    let mut item = print::literal(&v.node);
                    item.push(if last { ']' } else { ',' });
                    if i > 0 {
                        let need = 1 + width(&item) + if last { suffix } else { 0 };
                        if self.col() + need > MAX_WIDTH {
                            self.newline(cont);
                        } else {
                            self.push(" ");
                        }
                    }
                    self.push(&item);
                    // A line that ends in a comma ends after the source's
                    // comma, so that a comment after it trails this line.
                    self.end = comments::end_of_token(self.src, v.span.end, b',');
                }
                self.end = e.span.end;
            }
            ExprKind::Cmp { .. } | ExprKind::Str { .. } | ExprKind::Has(_) | ExprKind::Term(_) => {
                self.push(&flat);
                self.end = expr_end(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_policy;
    use crate::source::SourceFile;

    fn when_lines(cond: &str) -> Vec<String> {
        let text = format!("policy p version 1.0.0 {{ rule r {{ when {cond} allow }} }}");
        let policy = parse_policy(&SourceFile::new("p.policy", text)).unwrap();
        let crate::parse::ast::Item::Rule(rule) = &policy.items[0] else {
            panic!("not a rule");
        };
        condition(rule.when.as_ref().unwrap(), 2, None)
            .into_iter()
            .map(|p| format!("{}{}", "  ".repeat(p.depth), p.text))
            .collect()
    }

    #[test]
    fn fits_exactly() {
        // `    when ` is 9 columns, `b and a == "` 12, the closing quote 1.
        let cond = |n: usize| format!("b and a == \"{}\"", "x".repeat(n));
        assert_eq!(when_lines(&cond(78)).len(), 1);
        assert_eq!(
            when_lines(&cond(79)),
            [
                "    when b".to_string(),
                format!("      and a == \"{}\"", "x".repeat(79))
            ]
        );
    }

    #[test]
    fn closing_parens_count() {
        let inner = format!("a or b == \"{}\"", "x".repeat(80));
        // `    when (` + inner + `)` is 10 + 92 + 1 = 103 columns.
        assert_eq!(
            when_lines(&format!("({inner})")),
            [
                "    when (a".to_string(),
                format!("      or b == \"{}\")", "x".repeat(80)),
            ]
        );
    }

    #[test]
    fn unbreakable_atoms_stay_long() {
        let atom = format!("a matches \"{}\"", "x".repeat(120));
        assert_eq!(when_lines(&atom), [format!("    when {atom}")]);
    }

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(width("deny"), 4);
        assert_eq!(width("日本語"), 6);
        assert_eq!(width("e\u{301}"), 1);
        // 50 wide characters fill the line; 51 do not fit.
        assert!(fits(0, &"語".repeat(50)));
        assert!(!fits(0, &"語".repeat(51)));
    }
}
