//! Type checking one policy against the schema.
//!
//! Every field must be declared, every operator must fit its operand types,
//! regexes must compile and stay within what the conflict analysis can encode,
//! and names must be unique within a policy. All errors of the policy are
//! collected. This module only proves: it builds no IR (`compile::lower`
//! does, from a policy that passed).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex_syntax::hir::{Hir, HirKind, Look};

use crate::diagnostic::{Code, Finding, Label};
use crate::model::ir::{self, Type};
use crate::model::schema::Schema;
use crate::parse::ast::{self, ExprKind, Spanned, TermKind};
use crate::source::{SourceFile, Span};

struct Checker<'a> {
    file: &'a SourceFile,
    schema: &'a Schema,
    policy: &'a str,
    rule: Option<String>,
    errors: Vec<Finding>,
}

/// Every language error of one policy (empty when it type-checks).
pub(super) fn check_policy(
    file: &SourceFile,
    policy: &ast::Policy,
    schema: &Schema,
) -> Vec<Finding> {
    let mut c = Checker {
        file,
        schema,
        policy: &policy.name.node,
        rule: None,
        errors: Vec::new(),
    };

    let mut seen: HashMap<&str, Span> = HashMap::new();
    for item in &policy.items {
        let name = item.name();
        if let Some(first) = seen.get(name.node.as_str()) {
            let f = Finding::new(
                Code::TypeDuplicateName,
                format!(
                    "`{}` is defined twice in policy `{}`",
                    name.node, policy.name.node
                ),
            )
            .with_label(c.label(name.span).with_message("defined again here"))
            .with_label(c.label(*first).with_message("first defined here"))
            .with_help("rule and limit names are unique within a policy: rename one of them");
            c.errors.push(f);
        } else {
            seen.insert(&name.node, name.span);
        }
    }

    for item in &policy.items {
        match item {
            ast::Item::Rule(r) => {
                c.rule = Some(r.name.node.clone());
                if let Some(e) = &r.when {
                    c.expr(e);
                }
                c.effect(&r.effect);
            }
            ast::Item::Limit(l) => {
                c.rule = Some(l.name.node.clone());
                if let Some(e) = &l.when {
                    c.expr(e);
                }
                for b in &l.by {
                    match c.field(&b.node, b.span) {
                        Some(decl)
                            if decl.optional && !requires_field(l.when.as_ref(), &b.node) =>
                        {
                            let path = decl.path.clone();
                            let f = Finding::new(
                                Code::LimitOptionalKey,
                                format!(
                                    "limit `{}` counts by `{path}`, an optional field: requests without it are never limited",
                                    l.name.node
                                ),
                            )
                            .with_label(c.label(b.span).with_message("optional field"))
                            .with_help(format!(
                                "count by a required field (such as `agent`), or add `has({path})` to the condition to say that requests without it go unlimited"
                            ));
                            c.errors.push(f);
                        }
                        Some(decl) if decl.ty == Type::StrSet => c.mismatch(
                            b.span,
                            format!(
                                "a limit cannot count by `{}`, a set<string>",
                                b.node.as_str()
                            ),
                            "count by a string, int or bool field such as `agent` or `session`",
                        ),
                        _ => {}
                    }
                }
                c.effect(&l.exceed);
            }
        }
    }
    c.errors
}

/// Whether a condition can hold only when `field` is present: one of its
/// top-level conjuncts is `has(field)` or an atom that reads it (an atom
/// that reads an absent field is false).
fn requires_field(when: Option<&ast::Expr>, field: &ast::Path) -> bool {
    let Some(e) = when else {
        return false;
    };
    let reads = |t: &ast::Term| match &t.node {
        TermKind::Field(p) => p == field,
        TermKind::Len(p) => p.node == *field,
        TermKind::Lit(_) => false,
    };
    match &e.node {
        ExprKind::And(parts) => parts.iter().any(|p| requires_field(Some(p), field)),
        ExprKind::Paren(inner) => requires_field(Some(inner), field),
        ExprKind::Has(p) => p.node == *field,
        ExprKind::Cmp { lhs, rhs, .. } | ExprKind::Str { lhs, rhs, .. } => reads(lhs) || reads(rhs),
        ExprKind::In { lhs, .. } => reads(lhs),
        ExprKind::Term(t) => reads(t),
        ExprKind::Or(_) | ExprKind::Not(_) => false,
    }
}

/// The type of a term, and whether it is a literal.
#[derive(Clone, Copy)]
struct Typed {
    ty: Type,
    /// The term is a literal (not a field or `len`).
    literal: bool,
}

impl Checker<'_> {
    fn label(&self, span: Span) -> Label {
        Label::new(&self.file.name, span).in_rule(self.policy, self.rule.clone())
    }

    fn mismatch(&mut self, span: Span, message: String, help: &str) {
        let f = Finding::new(Code::TypeMismatch, message)
            .with_label(self.label(span))
            .with_help(help.to_string());
        self.errors.push(f);
    }

    /// Looks a field up, reporting `type::unknown_field` when it is not declared.
    fn field(&mut self, path: &ast::Path, span: Span) -> Option<&ir::FieldDecl> {
        self.field_or_value(path, span, false)
    }

    /// [`Self::field`] for an operand compared with a string field, where an
    /// unknown name is most likely a value its author forgot to quote
    /// (`args.branch == main`): the help says so first.
    fn field_or_value(
        &mut self,
        path: &ast::Path,
        span: Span,
        string_context: bool,
    ) -> Option<&ir::FieldDecl> {
        let schema = self.schema;
        match schema.get(path.as_str()) {
            Some(d) => Some(d),
            None => {
                let name = path.as_str();
                let help = match (string_context, schema.closest(name)) {
                    (true, Some(c)) => format!(
                        "strings are double-quoted: did you mean the value `\"{name}\"`? (or the field `{c}`)"
                    ),
                    (true, None) => format!(
                        "strings are double-quoted: did you mean the value `\"{name}\"`? \
                         Unquoted, `{name}` is read as a field name"
                    ),
                    (false, Some(c)) => format!("did you mean `{c}`?"),
                    (false, None) => format!(
                        "declare it under [schema] in sluice.toml, e.g. `\"{name}\" = \"string\"`"
                    ),
                };
                let f = Finding::new(
                    Code::TypeUnknownField,
                    format!("unknown field `{}`", path.as_str()),
                )
                .with_label(self.label(span).with_message("not in the schema"))
                .with_help(help);
                self.errors.push(f);
                None
            }
        }
    }

    fn term(&mut self, t: &ast::Term) -> Option<Typed> {
        self.term_beside(t, None)
    }

    /// The type of a term written beside `other` (the other operand of a
    /// comparison): an unknown name beside a string field or literal is
    /// most likely an unquoted value.
    fn term_beside(&mut self, t: &ast::Term, other: Option<&ast::Term>) -> Option<Typed> {
        match &t.node {
            TermKind::Field(p) => {
                let string_context = other.is_some_and(|o| self.is_string(o));
                let ty = self.field_or_value(p, t.span, string_context).map(|d| d.ty);
                ty.map(|ty| Typed { ty, literal: false })
            }
            TermKind::Len(p) => {
                let ty = self.field(&p.node, p.span).map(|d| d.ty);
                if let Some(ty) = ty
                    && !matches!(ty, Type::Str | Type::StrSet)
                {
                    self.mismatch(
                        p.span,
                        format!(
                            "`len` needs a string or set<string>, but `{}` is {}",
                            p.node.as_str(),
                            ty.as_str()
                        ),
                        "use `len` on a string (characters) or a set<string> (elements)",
                    );
                }
                Some(Typed {
                    ty: Type::Int,
                    literal: false,
                })
            }
            TermKind::Lit(l) => Some(Typed {
                ty: l.ty(),
                literal: true,
            }),
        }
    }

    fn expr(&mut self, e: &ast::Expr) {
        match &e.node {
            ExprKind::Or(parts) | ExprKind::And(parts) => {
                for p in parts {
                    self.expr(p);
                }
            }
            ExprKind::Not(inner) | ExprKind::Paren(inner) => self.expr(inner),
            ExprKind::Has(p) => {
                if let Some(d) = self.field(&p.node, p.span)
                    && !d.optional
                {
                    let path = d.path.clone();
                    self.mismatch(
                        p.span,
                        format!("`has({path})` is always true: `{path}` is a required field"),
                        "`has` tests optional fields (declared with a trailing `?` in [schema]); remove it",
                    );
                }
            }
            ExprKind::Term(t) => {
                // A bool term (a bool field or `true`/`false`) is a condition;
                // anything else is not.
                if let Some(tt) = self.term(t)
                    && tt.ty != Type::Bool
                {
                    self.mismatch(
                        t.span,
                        format!(
                            "a condition must be true or false, but this is {}",
                            tt.ty.as_str()
                        ),
                        "compare it with something, e.g. `x == \"value\"` or `x > 0`",
                    );
                }
            }
            ExprKind::Cmp { op, lhs, rhs } => {
                let lt = self.term_beside(lhs, Some(rhs));
                let rt = self.term_beside(rhs, Some(lhs));
                if let (Some(lt), Some(rt)) = (lt, rt) {
                    if lt.ty == Type::StrSet || rt.ty == Type::StrSet {
                        self.mismatch(
                            e.span,
                            format!("`{}` cannot compare a set<string>", op.as_str()),
                            "test a set with `contains \"x\"` or `len(x)`",
                        );
                    } else if lt.ty != rt.ty {
                        self.mismatch(
                            e.span,
                            format!(
                                "`{}` compares {} with {}",
                                op.as_str(),
                                lt.ty.as_str(),
                                rt.ty.as_str()
                            ),
                            &type_help(lt.ty, rt.ty),
                        );
                    } else if !matches!(op, ir::CmpOp::Eq | ir::CmpOp::Ne) && lt.ty != Type::Int {
                        self.mismatch(
                            e.span,
                            format!(
                                "`{}` orders numbers, but these are {}",
                                op.as_str(),
                                lt.ty.as_str()
                            ),
                            "use `==` or `!=`, or `starts_with`/`ends_with`/`matches` for strings",
                        );
                    } else if lt.literal && rt.literal {
                        self.mismatch(
                            e.span,
                            "this comparison has no field: it is always true or always false"
                                .into(),
                            "compare a field (or `len(field)`) with a value",
                        );
                    }
                }
            }
            ExprKind::In { lhs, list } => self.in_list(lhs, list),
            ExprKind::Str { op, lhs, rhs } => self.str_op(e.span, *op, lhs, rhs),
        }
    }

    /// Whether a term is a string: a string literal or a declared string
    /// field (reports nothing).
    fn is_string(&self, t: &ast::Term) -> bool {
        match &t.node {
            TermKind::Lit(l) => l.ty() == Type::Str,
            TermKind::Field(p) => self
                .schema
                .get(p.as_str())
                .is_some_and(|d| d.ty == Type::Str),
            TermKind::Len(_) => false,
        }
    }

    fn in_list(&mut self, lhs: &ast::Term, list: &[Spanned<ast::Literal>]) {
        let Some(lt) = self.term(lhs) else {
            return;
        };
        if lt.ty == Type::StrSet {
            self.mismatch(
                lhs.span,
                format!(
                    "`in` tests one value, but `{}` is a set<string>",
                    term_text(lhs)
                ),
                "to test whether a set holds a value write `x contains \"value\"`",
            );
        } else {
            let wrong: Vec<&Spanned<ast::Literal>> =
                list.iter().filter(|v| v.node.ty() != lt.ty).collect();
            if let Some(first) = wrong.first() {
                let vt = first.node.ty();
                let mut f = Finding::new(
                    Code::TypeMismatch,
                    format!(
                        "`{}` is {} but this list holds {} values",
                        term_text(lhs),
                        lt.ty.as_str(),
                        vt.as_str()
                    ),
                )
                .with_help(type_help(lt.ty, vt));
                for v in wrong {
                    f = f.with_label(self.label(v.span).with_message(format!(
                        "{}, not {}",
                        v.node.ty().as_str(),
                        lt.ty.as_str()
                    )));
                }
                self.errors.push(f);
            }
        }
        if lt.literal {
            self.mismatch(
                lhs.span,
                "`in` needs a field on its left".into(),
                "write `field in [\"a\", \"b\"]`",
            );
        }
    }

    fn str_op(&mut self, span: Span, op: ast::StrOp, lhs: &ast::Term, rhs: &ast::Term) {
        let lt = self.term(lhs);
        let field = match &lhs.node {
            TermKind::Field(p) => p.0.as_str(),
            _ => {
                if lt.is_some() {
                    self.mismatch(
                        lhs.span,
                        format!("`{}` needs a field on its left", op.as_str()),
                        "write e.g. `args.body contains \"secret\"`",
                    );
                }
                ""
            }
        };
        let value = match &rhs.node {
            TermKind::Lit(ast::Literal::Str(s)) => Some(s.as_str()),
            _ => {
                self.mismatch(
                    rhs.span,
                    format!("`{}` needs a string literal on its right", op.as_str()),
                    "write the value in double quotes, e.g. \"text\"",
                );
                None
            }
        };
        let lty = lt.filter(|t| !t.literal).map(|t| t.ty);
        match (op, lty) {
            (ast::StrOp::Contains, Some(Type::StrSet)) => {}
            (_, Some(Type::Str) | None) => {
                if op == ast::StrOp::Matches
                    && let Some(pattern) = value
                {
                    self.regex(pattern, rhs.span);
                }
            }
            (_, Some(t)) => {
                let help = if op == ast::StrOp::Contains {
                    "`contains` applies to a string or a set<string>"
                } else {
                    "this operator applies to strings"
                };
                self.mismatch(
                    span,
                    format!(
                        "`{}` needs a string, but `{}` is {}",
                        op.as_str(),
                        field,
                        t.as_str()
                    ),
                    help,
                );
            }
        }
    }

    /// Checks that a regex compiles and uses only what the analysis encodes:
    /// no word boundaries and no line anchors (`(?m)`).
    fn regex(&mut self, pattern: &str, span: Span) {
        let f = match regex_verdict(pattern) {
            RegexVerdict::Ok => return,
            RegexVerdict::Invalid(detail) => {
                Finding::new(Code::TypeBadRegex, format!("invalid regex: {detail}"))
                    .with_label(self.label(span).with_message("this pattern"))
                    .with_help("patterns use the Rust `regex` syntax; look-around and back-references do not exist in it")
            }
            RegexVerdict::Unsupported(what) => Finding::new(
                Code::TypeBadRegex,
                format!("the conflict analysis cannot encode {what}"),
            )
            .with_label(self.label(span).with_message("this pattern"))
            .with_help(
                "use `^` and `$` (start and end of the whole value) and character classes instead",
            ),
            RegexVerdict::Unparsed(e) => {
                Finding::new(Code::TypeBadRegex, format!("invalid regex: {e}"))
                    .with_label(self.label(span))
            }
        };
        self.errors.push(f);
    }

    fn string_field(&mut self, p: &Spanned<ast::Path>, what: &str) {
        if let Some(d) = self.field(&p.node, p.span)
            && d.ty != Type::Str
        {
            let msg = format!(
                "`{what}` needs a string, but `{}` is {}",
                d.path,
                d.ty.as_str()
            );
            self.mismatch(p.span, msg, "these transforms apply to string fields");
        }
    }

    fn effect(&mut self, e: &Spanned<ast::Effect>) {
        let ast::Effect::Modify { field, value, .. } = &e.node else {
            return;
        };
        let target = self
            .field(&field.node, field.span)
            .map(|d| (d.ty, d.path.clone()));
        let transform = match &value.node {
            ast::ModifyValue::Literal(l) => {
                if let Some((ty, path)) = &target {
                    let lt = l.ty();
                    if lt != *ty {
                        self.mismatch(
                            value.span,
                            format!(
                                "`{path}` is {} but this value is {}",
                                ty.as_str(),
                                lt.as_str()
                            ),
                            &type_help(*ty, lt),
                        );
                    }
                }
                false
            }
            ast::ModifyValue::Redact(p) => {
                self.string_field(p, "redact");
                true
            }
            ast::ModifyValue::RedactPattern(p, pat) => {
                self.string_field(p, "redact");
                self.regex(&pat.node, pat.span);
                true
            }
            ast::ModifyValue::Truncate(p, _) => {
                self.string_field(p, "truncate");
                true
            }
            ast::ModifyValue::Lowercase(p) => {
                self.string_field(p, "lowercase");
                true
            }
        };
        if transform
            && let Some((ty, path)) = &target
            && *ty != Type::Str
        {
            let msg = format!(
                "`{path}` is {} but this transform makes a string",
                ty.as_str()
            );
            self.mismatch(
                value.span,
                msg,
                "redact, truncate and lowercase produce strings: modify a string field",
            );
        }
    }
}

/// What checking a pattern found.
#[derive(Debug, Clone)]
enum RegexVerdict {
    Ok,
    /// It does not compile (the last line of the `regex` crate's message).
    Invalid(String),
    /// It compiles but uses what the analysis cannot encode.
    Unsupported(&'static str),
    /// `regex_syntax` does not parse it (where `regex` did).
    Unparsed(String),
}

/// Verdicts are kept for the life of the process, up to this many patterns.
const REGEX_MEMO_ENTRIES: usize = 4096;

/// Checks a pattern, or takes the verdict from a process-wide memo: a set
/// repeats a few patterns in many rules, and compiling one per rule was
/// most of the time spent checking a large set.
fn regex_verdict(pattern: &str) -> RegexVerdict {
    static MEMO: OnceLock<Mutex<HashMap<String, RegexVerdict>>> = OnceLock::new();
    let memo = MEMO.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return v.clone();
    }
    let verdict = match regex::Regex::new(pattern) {
        Err(e) => {
            let msg = e.to_string();
            let detail = msg
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ");
            RegexVerdict::Invalid(detail.to_string())
        }
        Ok(_) => match regex_syntax::Parser::new().parse(pattern) {
            Ok(hir) => unsupported(&hir).map_or(RegexVerdict::Ok, RegexVerdict::Unsupported),
            Err(e) => RegexVerdict::Unparsed(e.to_string()),
        },
    };
    let mut guard = memo.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() >= REGEX_MEMO_ENTRIES {
        guard.clear();
    }
    guard.insert(pattern.to_string(), verdict.clone());
    verdict
}

fn unsupported(hir: &Hir) -> Option<&'static str> {
    match hir.kind() {
        HirKind::Look(look) => match look {
            Look::Start | Look::End => None,
            Look::StartLF | Look::EndLF | Look::StartCRLF | Look::EndCRLF => {
                Some("line anchors (`(?m)^` / `(?m)$`)")
            }
            _ => Some("word boundaries (`\\b`, `\\B`)"),
        },
        HirKind::Repetition(r) => unsupported(&r.sub),
        HirKind::Capture(c) => unsupported(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().find_map(unsupported),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => None,
    }
}

fn term_text(t: &ast::Term) -> String {
    match &t.node {
        TermKind::Field(p) => p.0.clone(),
        TermKind::Len(p) => format!("len({})", p.node.0),
        TermKind::Lit(ast::Literal::Int(n)) => n.to_string(),
        TermKind::Lit(ast::Literal::Str(s)) => format!("{s:?}"),
        TermKind::Lit(ast::Literal::Bool(b)) => b.to_string(),
    }
}

fn type_help(want: Type, got: Type) -> String {
    match (want, got) {
        (Type::Int, Type::Str) => "numbers are written without quotes, e.g. `1000`".into(),
        (Type::Str, Type::Int) => "strings are written in double quotes, e.g. `\"1000\"`".into(),
        (Type::Bool, _) => "a bool is `true` or `false`".into(),
        _ => format!("both sides must be {}", want.as_str()),
    }
}
