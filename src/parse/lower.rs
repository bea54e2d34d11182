//! pest pairs → spanned AST, collecting every error of the file.
//!
//! The grammar already guarantees the shape of the tree, so a pair that is not
//! where the grammar puts it is an internal error reported as a finding, never
//! a panic.

use pest::iterators::{Pair, Pairs};

use super::ast::*;
use super::err::syntax_finding;
use super::grammar::Rule as R;
use crate::diagnostic::Finding;
use crate::source::{SourceFile, Span};

type P<'i> = Pair<'i, R>;

struct Lower<'a> {
    file: &'a SourceFile,
    errors: Vec<Finding>,
    /// The parentheses and `not`s around the condition being lowered.
    depth: usize,
}

pub(super) fn lower_file(
    file: &SourceFile,
    mut pairs: Pairs<'_, R>,
) -> Result<Policy, Vec<Finding>> {
    let mut l = Lower {
        file,
        errors: Vec::new(),
        depth: 0,
    };
    let policy = pairs
        .next()
        .and_then(|f| f.into_inner().find(|p| p.as_rule() == R::policy))
        .and_then(|p| l.policy(p));
    match policy {
        Some(p) if l.errors.is_empty() => Ok(p),
        _ => {
            if l.errors.is_empty() {
                l.internal(Span::default());
            }
            Err(l.errors)
        }
    }
}

pub(super) fn lower_expr_only(
    file: &SourceFile,
    mut pairs: Pairs<'_, R>,
) -> Result<Expr, Vec<Finding>> {
    let mut l = Lower {
        file,
        errors: Vec::new(),
        depth: 0,
    };
    let e = pairs
        .next()
        .and_then(|f| f.into_inner().find(|p| p.as_rule() == R::expr))
        .and_then(|p| l.expr(p));
    match e {
        Some(e) if l.errors.is_empty() => Ok(e),
        _ => {
            if l.errors.is_empty() {
                l.internal(Span::default());
            }
            Err(l.errors)
        }
    }
}

fn span(p: &P<'_>) -> Span {
    let s = p.as_span();
    Span::new(s.start(), s.end())
}

/// The meaningful children of a pair (punctuation and keywords dropped).
fn children<'i>(p: P<'i>) -> impl Iterator<Item = P<'i>> {
    p.into_inner().filter(|c| !is_token(c.as_rule()))
}

/// Punctuation and keywords: present in the tree for error messages only.
fn is_token(r: R) -> bool {
    matches!(
        r,
        R::lbrace
            | R::rbrace
            | R::lparen
            | R::rparen
            | R::lbracket
            | R::rbracket
            | R::comma
            | R::assign
            | R::kw_policy
            | R::kw_version
            | R::kw_tier
            | R::kw_requires
            | R::kw_rule
            | R::kw_limit
            | R::kw_when
            | R::kw_max
            | R::kw_per
            | R::kw_by
            | R::kw_exceed
            | R::kw_on_decrease
            | R::kw_via
            | R::kw_allow
            | R::kw_deny
            | R::kw_require_approval
            | R::kw_modify
            | R::kw_redact
            | R::kw_truncate
            | R::kw_lowercase
            | R::kw_and
            | R::kw_or
            | R::kw_not
            | R::kw_in
            | R::kw_has
            | R::kw_len
    )
}

fn is_lower_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_lowercase())
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_code(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_uppercase())
        && cs.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        }
    }
    let out = out
        .trim_start_matches(|c: char| !c.is_ascii_lowercase())
        .to_string();
    if out.is_empty() {
        "name".to_string()
    } else {
        out
    }
}

impl Lower<'_> {
    fn error(&mut self, span: Span, message: String, help: Option<String>) {
        self.errors
            .push(syntax_finding(self.file, span, message, help));
    }

    fn internal(&mut self, span: Span) {
        self.error(
            span,
            "internal error: unexpected syntax tree shape".into(),
            None,
        );
    }

    fn name(&mut self, p: P<'_>, what: &str) -> Ident {
        let text = p.as_str().to_string();
        let sp = span(&p);
        if !is_lower_name(&text) {
            self.error(
                sp,
                format!("{what} name `{text}` must be lowercase letters, digits and `_`, starting with a letter"),
                Some(format!("try `{}`", snake(&text))),
            );
        }
        Spanned::new(text, sp)
    }

    fn code(&mut self, p: P<'_>) -> Ident {
        let text = p.as_str().to_string();
        let sp = span(&p);
        if !is_code(&text) {
            self.error(
                sp,
                format!("reason code `{text}` must be uppercase letters, digits and `_`, starting with a letter"),
                Some(format!("try `{}`", text.to_ascii_uppercase())),
            );
        }
        Spanned::new(text, sp)
    }

    fn policy(&mut self, p: P<'_>) -> Option<Policy> {
        let whole = span(&p);
        let mut it = children(p);
        let name = self.name(it.next()?, "policy");
        let vp = it.next()?;
        let version = match semver::Version::parse(vp.as_str()) {
            Ok(v) => Spanned::new(v, span(&vp)),
            Err(e) => {
                self.error(
                    span(&vp),
                    format!("invalid version `{}`: {e}", vp.as_str()),
                    None,
                );
                Spanned::new(semver::Version::new(0, 0, 0), span(&vp))
            }
        };
        let mut policy = Policy {
            name,
            version,
            tier: None,
            requires: Vec::new(),
            items: Vec::new(),
            span: SpanIgnored(whole),
        };
        for item in it {
            match item.as_rule() {
                R::tier_decl => self.tier(item, &mut policy),
                R::requires_decl => {
                    if let Some(r) = self.requires(item) {
                        policy.requires.push(r);
                    }
                }
                R::rule => {
                    if let Some(r) = self.rule(item) {
                        policy.items.push(Item::Rule(r));
                    }
                }
                R::limit => {
                    if let Some(l) = self.limit(item) {
                        policy.items.push(Item::Limit(l));
                    }
                }
                _ => self.internal(span(&item)),
            }
        }
        Some(policy)
    }

    fn tier(&mut self, p: P<'_>, policy: &mut Policy) {
        let whole = span(&p);
        let Some(t) = children(p).next() else {
            return self.internal(whole);
        };
        let sp = span(&t);
        let tier = match t.as_str() {
            "security" => Tier::Security,
            "operational" => Tier::Operational,
            "compliance" => Tier::Compliance,
            other => {
                return self.error(
                    sp,
                    format!("unknown tier `{other}`"),
                    Some("a tier is `security`, `operational` or `compliance`".into()),
                );
            }
        };
        if let Some(prev) = &policy.tier {
            let _ = prev;
            return self.error(
                whole,
                "the tier is declared twice".into(),
                Some("keep one `tier` line".into()),
            );
        }
        policy.tier = Some(Spanned::new(tier, sp));
    }

    fn requires(&mut self, p: P<'_>) -> Option<Requirement> {
        let mut it = children(p);
        let name = self.name(it.next()?, "policy");
        let rp = it.next()?;
        let text = rp.as_str().trim().to_string();
        match semver::VersionReq::parse(&text) {
            Ok(req) => Some(Requirement {
                policy: name,
                req: Spanned::new(req, span(&rp)),
                text,
            }),
            Err(e) => {
                self.error(
                    span(&rp),
                    format!("invalid version requirement `{text}`: {e}"),
                    Some(requirement_help(&text)),
                );
                None
            }
        }
    }

    fn rule(&mut self, p: P<'_>) -> Option<Rule> {
        let whole = span(&p);
        let mut it = children(p).peekable();
        let name = self.name(it.next()?, "rule");
        let when = match it.peek() {
            Some(w) if w.as_rule() == R::when => {
                let w = it.next()?;
                self.when(w)
            }
            _ => None,
        };
        let effect = self.effect(it.next()?)?;
        Some(Rule {
            name,
            when,
            effect,
            span: SpanIgnored(whole),
        })
    }

    fn when(&mut self, p: P<'_>) -> Option<Expr> {
        let e = children(p).next()?;
        self.expr(e)
    }

    fn limit(&mut self, p: P<'_>) -> Option<Limit> {
        let whole = span(&p);
        let mut it = children(p).peekable();
        let name = self.name(it.next()?, "limit");
        let when = match it.peek() {
            Some(w) if w.as_rule() == R::when => {
                let w = it.next()?;
                self.when(w)
            }
            _ => None,
        };
        let mp = it.next()?;
        let max = match mp.as_str().parse::<u64>() {
            Ok(n) => Spanned::new(n, span(&mp)),
            Err(_) => {
                self.error(
                    span(&mp),
                    format!("`{}` is not a valid maximum", mp.as_str()),
                    Some("a limit's `max` is a whole number, 0 or more".into()),
                );
                Spanned::new(0, span(&mp))
            }
        };
        let dp = it.next()?;
        let window = self.duration(dp);
        let mut by = Vec::new();
        while it.peek().is_some_and(|p| p.as_rule() == R::path) {
            let p = it.next()?;
            by.push(Spanned::new(Path(p.as_str().to_string()), span(&p)));
        }
        let exceed = self.effect(it.next()?)?;
        if matches!(exceed.node, Effect::Allow) {
            self.error(
                exceed.span,
                "a limit cannot `exceed allow`".into(),
                Some("the request that exceeds the limit gets this effect: `deny`, `require_approval` or `modify`".into()),
            );
        }
        let on_decrease = match it.next() {
            Some(od) => {
                let sp = span(&od);
                match od.as_str() {
                    "next_window" => Some(Spanned::new(OnDecrease::NextWindow, sp)),
                    "freeze" => Some(Spanned::new(OnDecrease::Freeze, sp)),
                    other => {
                        self.error(
                            sp,
                            format!("unknown `on_decrease` migration `{other}`"),
                            Some("use `next_window` or `freeze`".into()),
                        );
                        None
                    }
                }
            }
            None => None,
        };
        Some(Limit {
            name,
            when,
            max,
            window,
            by,
            exceed,
            on_decrease,
            span: SpanIgnored(whole),
        })
    }

    fn duration(&mut self, p: P<'_>) -> Spanned<Duration> {
        let text = p.as_str();
        let sp = span(&p);
        let unit = text.chars().last().unwrap_or('s');
        let amount = text[..text.len().saturating_sub(1)]
            .parse::<u64>()
            .unwrap_or(0);
        if amount == 0 {
            self.error(
                sp,
                format!("window `{text}` must be longer than zero"),
                Some("e.g. `1d`, `12h`, `30m` or `10s`".into()),
            );
        }
        Spanned::new(Duration { amount, unit }, sp)
    }

    fn effect(&mut self, p: P<'_>) -> Option<Spanned<Effect>> {
        let sp = span(&p);
        let inner = children(p).next()?;
        let effect = match inner.as_rule() {
            R::allow => Effect::Allow,
            R::deny => {
                let mut it = children(inner);
                let code = self.code(it.next()?);
                let text = self.string(it.next()?);
                Effect::Deny { code, text }
            }
            R::require_approval => {
                let mut it = children(inner).collect::<Vec<_>>().into_iter();
                let n = it.len();
                let group = self.string(it.next()?);
                let via = if n == 4 {
                    Some(self.string(it.next()?))
                } else {
                    None
                };
                let code = self.code(it.next()?);
                let text = self.string(it.next()?);
                Effect::RequireApproval {
                    group,
                    via,
                    code,
                    text,
                }
            }
            R::modify => {
                let mut it = children(inner);
                let fp = it.next()?;
                let field = Spanned::new(Path(fp.as_str().to_string()), span(&fp));
                let value = self.modify_value(it.next()?)?;
                let code = self.code(it.next()?);
                let text = self.string(it.next()?);
                Effect::Modify {
                    field,
                    value,
                    code,
                    text,
                }
            }
            _ => {
                self.internal(span(&inner));
                return None;
            }
        };
        Some(Spanned::new(effect, sp))
    }

    fn modify_value(&mut self, p: P<'_>) -> Option<Spanned<ModifyValue>> {
        let sp = span(&p);
        let inner = p.into_inner().next()?;
        let path_of = |p: &P<'_>| Spanned::new(Path(p.as_str().to_string()), span(p));
        let v = match inner.as_rule() {
            R::redact_call => {
                let mut it = children(inner);
                let f = path_of(&it.next()?);
                match it.next() {
                    Some(s) => ModifyValue::RedactPattern(f, self.string(s)),
                    None => ModifyValue::Redact(f),
                }
            }
            R::truncate_call => {
                let mut it = children(inner);
                let f = path_of(&it.next()?);
                let np = it.next()?;
                let n = match np.as_str().parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => {
                        self.error(
                            span(&np),
                            format!("`{}` is not a valid length", np.as_str()),
                            Some(
                                "`truncate(x, N)` keeps the first N characters; N is 0 or more"
                                    .into(),
                            ),
                        );
                        0
                    }
                };
                ModifyValue::Truncate(f, Spanned::new(n, span(&np)))
            }
            R::lowercase_call => {
                let f = path_of(&children(inner).next()?);
                ModifyValue::Lowercase(f)
            }
            _ => ModifyValue::Literal(self.literal(inner)?.node),
        };
        Some(Spanned::new(v, sp))
    }

    fn string(&mut self, p: P<'_>) -> Spanned<String> {
        let sp = span(&p);
        let inner = p
            .into_inner()
            .next()
            .map(|i| (i.as_str().to_string(), span(&i)));
        let Some((raw, isp)) = inner else {
            return Spanned::new(String::new(), sp);
        };
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => {
                    let at = isp.start + i;
                    self.error(
                        Span::new(at, at + 1 + other.len_utf8()),
                        format!("unknown escape `\\{other}` in a string"),
                        Some("the escapes are `\\\\`, `\\\"`, `\\n` and `\\t`; in a regex write `\\\\d` for `\\d`".into()),
                    );
                }
                None => {}
            }
        }
        Spanned::new(out, sp)
    }

    fn literal(&mut self, p: P<'_>) -> Option<Spanned<Literal>> {
        let sp = span(&p);
        let lit = match p.as_rule() {
            R::int => match p.as_str().parse::<i64>() {
                Ok(n) => Literal::Int(n),
                Err(_) => {
                    self.error(
                        sp,
                        format!("number `{}` is out of range", p.as_str()),
                        Some("integers are 64-bit signed".into()),
                    );
                    Literal::Int(0)
                }
            },
            R::string => Literal::Str(self.string(p).node),
            R::boolean => Literal::Bool(p.as_str().starts_with('t')),
            _ => {
                self.internal(sp);
                return None;
            }
        };
        Some(Spanned::new(lit, sp))
    }

    fn expr(&mut self, p: P<'_>) -> Option<Expr> {
        let sp = span(&p);
        match p.as_rule() {
            R::expr => self.expr(p.into_inner().next()?),
            R::or_expr | R::and_expr => {
                let is_or = p.as_rule() == R::or_expr;
                let mut parts: Vec<Expr> = Vec::new();
                for c in children(p) {
                    parts.push(self.expr(c)?);
                }
                if parts.len() == 1 {
                    return parts.pop();
                }
                // pest's span of a repetition can run over the trivia after its
                // last operand; the chain spans its operands exactly.
                let sp = match (parts.first(), parts.last()) {
                    (Some(a), Some(b)) => a.span.join(b.span),
                    _ => sp,
                };
                Some(Spanned::new(
                    if is_or {
                        ExprKind::Or(parts)
                    } else {
                        ExprKind::And(parts)
                    },
                    sp,
                ))
            }
            R::not_expr => self.expr(p.into_inner().next()?),
            R::not_op | R::paren => {
                let is_not = p.as_rule() == R::not_op;
                if self.depth >= super::MAX_NESTING {
                    self.errors.push(super::too_deep(self.file, sp));
                    return None;
                }
                self.depth += 1;
                let inner = children(p).next().and_then(|c| self.expr(c));
                self.depth -= 1;
                let inner = Box::new(inner?);
                Some(Spanned::new(
                    if is_not {
                        ExprKind::Not(inner)
                    } else {
                        ExprKind::Paren(inner)
                    },
                    sp,
                ))
            }
            R::has_call => {
                let f = children(p).next()?;
                Some(Spanned::new(
                    ExprKind::Has(Spanned::new(Path(f.as_str().to_string()), span(&f))),
                    sp,
                ))
            }
            R::in_expr => {
                let mut it = children(p);
                let lhs = self.term(it.next()?)?;
                let list = it.next()?;
                let mut values = Vec::new();
                for v in children(list) {
                    values.push(self.literal(v)?);
                }
                Some(Spanned::new(ExprKind::In { lhs, list: values }, sp))
            }
            R::str_expr => {
                let mut it = children(p);
                let lhs = self.term(it.next()?)?;
                let op = match it.next()?.as_str() {
                    "contains" => StrOp::Contains,
                    "starts_with" => StrOp::StartsWith,
                    "ends_with" => StrOp::EndsWith,
                    _ => StrOp::Matches,
                };
                let rhs = self.term(it.next()?)?;
                Some(Spanned::new(ExprKind::Str { op, lhs, rhs }, sp))
            }
            R::cmp_expr => {
                let mut it = children(p);
                let lhs = self.term(it.next()?)?;
                let op = match it.next()?.as_str() {
                    "==" => CmpOp::Eq,
                    "!=" => CmpOp::Ne,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                let rhs = self.term(it.next()?)?;
                Some(Spanned::new(ExprKind::Cmp { op, lhs, rhs }, sp))
            }
            R::bare => {
                let t = self.term(children(p).next()?)?;
                Some(Spanned::new(ExprKind::Term(t), sp))
            }
            _ => {
                self.internal(sp);
                None
            }
        }
    }

    fn term(&mut self, p: P<'_>) -> Option<Term> {
        let sp = span(&p);
        let inner = p.into_inner().next()?;
        let kind = match inner.as_rule() {
            R::len_call => {
                let f = children(inner).next()?;
                TermKind::Len(Spanned::new(Path(f.as_str().to_string()), span(&f)))
            }
            R::path => TermKind::Field(Path(inner.as_str().to_string())),
            _ => TermKind::Lit(self.literal(inner)?.node),
        };
        Some(Spanned::new(kind, sp))
    }
}

/// How to fix a version requirement that `semver` refused: the slips authors
/// make most (alternatives, comparators without commas, wildcards in the
/// wrong place), then the syntax.
fn requirement_help(text: &str) -> String {
    const SYNTAX: &str = "requirements use Cargo's syntax: `^1.2` (compatible with 1.2), `~1.2.3`, \
         `>=1.0, <2.0` (comparators separated by commas) or `1.*`";
    if text.contains("||") || text.contains("&&") {
        return format!(
            "a requirement is one range: `||` and `&&` are not part of it; write the range \
             that covers what you mean, e.g. `>=1.0, <3.0`; {SYNTAX}"
        );
    }
    // Comparators separated by spaces only: `>=1.0 <2.0`.
    let words: Vec<&str> = text.split_whitespace().collect();
    let operator = |w: &str| w.starts_with(['>', '<', '=', '~', '^']);
    if words.len() > 1 && !text.contains(',') && words.iter().skip(1).all(|w| operator(w)) {
        return format!("separate comparators with a comma: `{}`", words.join(", "));
    }
    if text.contains(['x', 'X', '*']) {
        return format!(
            "a wildcard stands for a whole version number and nothing follows it: \
             `1.*` or `1.2.*`, not `{text}`; {SYNTAX}"
        );
    }
    SYNTAX.to_string()
}
