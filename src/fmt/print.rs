//! The canonical text of one construct: expressions, literals, effects,
//! requirements. Each function prints exactly what the parser reads back as
//! the same node; it adds and drops no parentheses (`Paren` nodes carry the
//! author's grouping).

use crate::parse::ast::{Effect, Expr, ExprKind, Literal, ModifyValue, Term, TermKind};

/// A string literal: double-quoted, with `\\ \" \n \t` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A literal: `123`, `"text"`, `true`, `false`.
pub fn literal(lit: &Literal) -> String {
    match lit {
        Literal::Int(n) => n.to_string(),
        Literal::Str(s) => quote(s),
        Literal::Bool(b) => b.to_string(),
    }
}

/// A condition on one line, one space around every binary operator.
pub fn expr(e: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, e);
    out
}

fn write_expr(out: &mut String, e: &Expr) {
    match &e.node {
        ExprKind::Or(parts) => write_joined(out, parts, " or "),
        ExprKind::And(parts) => write_joined(out, parts, " and "),
        ExprKind::Not(inner) => {
            out.push_str("not ");
            write_expr(out, inner);
        }
        ExprKind::Paren(inner) => {
            out.push('(');
            write_expr(out, inner);
            out.push(')');
        }
        ExprKind::Cmp { op, lhs, rhs } => {
            write_term(out, lhs);
            out.push(' ');
            out.push_str(op.as_str());
            out.push(' ');
            write_term(out, rhs);
        }
        ExprKind::In { lhs, list } => {
            write_term(out, lhs);
            out.push_str(" in [");
            for (i, v) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&literal(&v.node));
            }
            out.push(']');
        }
        ExprKind::Str { op, lhs, rhs } => {
            write_term(out, lhs);
            out.push(' ');
            out.push_str(op.as_str());
            out.push(' ');
            write_term(out, rhs);
        }
        ExprKind::Has(path) => {
            out.push_str("has(");
            out.push_str(path.node.as_str());
            out.push(')');
        }
        ExprKind::Term(t) => write_term(out, t),
    }
}

fn write_joined(out: &mut String, parts: &[Expr], sep: &str) {
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        write_expr(out, p);
    }
}

/// A term: a field path, `len(x)` or a literal.
pub fn term(t: &Term) -> String {
    let mut out = String::new();
    write_term(&mut out, t);
    out
}

fn write_term(out: &mut String, t: &Term) {
    match &t.node {
        TermKind::Field(p) => out.push_str(p.as_str()),
        TermKind::Len(p) => {
            out.push_str("len(");
            out.push_str(p.node.as_str());
            out.push(')');
        }
        TermKind::Lit(l) => out.push_str(&literal(l)),
    }
}

/// An effect on one line: `allow`, `deny CODE "text"`,
/// `require_approval "group" via "tool" CODE "text"`,
/// `modify field = value CODE "text"`.
pub fn effect(e: &Effect) -> String {
    match e {
        Effect::Allow => "allow".to_string(),
        Effect::Deny { code, text } => format!("deny {} {}", code.node, quote(&text.node)),
        Effect::RequireApproval {
            group,
            via,
            code,
            text,
        } => {
            let via = via
                .as_ref()
                .map(|v| format!(" via {}", quote(&v.node)))
                .unwrap_or_default();
            format!(
                "require_approval {}{via} {} {}",
                quote(&group.node),
                code.node,
                quote(&text.node)
            )
        }
        Effect::Modify {
            field,
            value,
            code,
            text,
        } => format!(
            "modify {} = {} {} {}",
            field.node.as_str(),
            modify_value(&value.node),
            code.node,
            quote(&text.node)
        ),
    }
}

/// The value of a `modify`: a literal, `redact(x)`, `redact(x, "regex")`,
/// `truncate(x, N)` or `lowercase(x)`.
pub fn modify_value(v: &ModifyValue) -> String {
    match v {
        ModifyValue::Literal(l) => literal(l),
        ModifyValue::Redact(p) => format!("redact({})", p.node.as_str()),
        ModifyValue::RedactPattern(p, re) => {
            format!("redact({}, {})", p.node.as_str(), quote(&re.node))
        }
        ModifyValue::Truncate(p, n) => format!("truncate({}, {})", p.node.as_str(), n.node),
        ModifyValue::Lowercase(p) => format!("lowercase({})", p.node.as_str()),
    }
}

/// A version requirement as written, with its spacing normalized: no space
/// between an operator and its version, `, ` between comparators
/// (`>= 1.0 ,<2` → `>=1.0, <2`). The meaning is unchanged.
pub fn requirement(text: &str) -> String {
    text.split(',')
        .map(|c| c.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a\\b\"c\nd\te\r"), "\"a\\\\b\\\"c\\nd\\te\r\"");
    }

    #[test]
    fn requirements() {
        assert_eq!(requirement(">= 1.0 ,<2"), ">=1.0, <2");
        assert_eq!(requirement("^2.0"), "^2.0");
        assert_eq!(requirement("= 1.2.3-rc.1 ,  <  2"), "=1.2.3-rc.1, <2");
    }
}
