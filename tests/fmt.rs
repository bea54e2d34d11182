//! Formatter tests: fixture pairs `tests/data/fmt/NAME.in.policy` →
//! `NAME.out.policy`, the round-trip and idempotence properties over every
//! policy file of the repository, the line-wrapping rule (a condition or an
//! effect that fits in `MAX_WIDTH` columns is on one line, one that does not
//! is broken), and property tests over random policies (long conditions and
//! effects among them) printed with a messy (but valid) layout full of
//! comments.
//!
//! Set `UPDATE_FMT_FIXTURES=1` to (re)write the `.out.policy` files.

use std::path::PathBuf;

use sluice::fmt::{
    MAX_WIDTH, format_effect, format_expr, format_files, format_parsed, format_policy,
    format_source, scan_comments,
};
use sluice::parse::ast::{Effect, Expr, ExprKind, Item, Policy};
use sluice::parse::parse_policy;
use sluice::source::SourceFile;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse(name: &str, text: &str) -> Result<Policy, String> {
    parse_policy(&SourceFile::new(name, text)).map_err(|fs| {
        let msgs: Vec<String> = fs.iter().map(|f| f.message.clone()).collect();
        format!("{name} does not parse: {msgs:?}\n--- text ---\n{text}")
    })
}

fn fmt(name: &str, text: &str) -> Result<String, String> {
    format_source(&SourceFile::new(name, text)).map_err(|fs| {
        let msgs: Vec<String> = fs.iter().map(|f| f.message.clone()).collect();
        format!("{name} does not format: {msgs:?}\n--- text ---\n{text}")
    })
}

/// The syntax tree with every requirement's text in canonical spacing: the
/// one thing formatting may change (the parsed requirement itself must not).
fn canon(mut p: Policy) -> Policy {
    for r in &mut p.requires {
        r.text = sluice::fmt::normalize_requirement(&r.text);
    }
    p
}

fn comment_texts(text: &str) -> Vec<String> {
    scan_comments(text).into_iter().map(|c| c.text).collect()
}

/// The properties every formatted file must have: the output parses to the
/// same tree, formatting it again changes nothing, every comment survives (in
/// order, when `ordered`), and the layout is clean. Returns the output.
fn check_format(name: &str, text: &str, ordered: bool) -> Result<String, String> {
    let before = canon(parse(name, text)?);
    let once = fmt(name, text)?;
    let after = canon(parse(name, &once).map_err(|e| format!("formatted output: {e}"))?);
    if before != after {
        return Err(format!(
            "{name}: the formatted text parses to another tree\n--- input ---\n{text}\n--- output ---\n{once}"
        ));
    }
    let twice = fmt(name, &once)?;
    if twice != once {
        return Err(format!(
            "{name}: formatting is not idempotent\n--- once ---\n{once}\n--- twice ---\n{twice}"
        ));
    }
    let mut want = comment_texts(text);
    let mut got = comment_texts(&once);
    if !ordered {
        want.sort();
        got.sort();
    }
    if want != got {
        return Err(format!(
            "{name}: comments changed\nwant {want:?}\ngot  {got:?}\n--- input ---\n{text}\n--- output ---\n{once}"
        ));
    }
    if !once.ends_with('\n') || once.ends_with("\n\n") {
        return Err(format!("{name}: output must end with exactly one newline"));
    }
    if let Some(l) = once
        .split('\n')
        .find(|l| l.ends_with([' ', '\t', '\r']) || l.starts_with('\t'))
    {
        return Err(format!("{name}: stray whitespace on line {l:?}\n{once}"));
    }
    Ok(once)
}

// ---- fixtures -----------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    root().join("tests/data/fmt")
}

#[test]
fn fixture_pairs() {
    let update = std::env::var_os("UPDATE_FMT_FIXTURES").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.policy"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "fixtures missing");
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(input).unwrap();
        let ordered = !name.contains("reorder");
        let got = match check_format(&name, &text, ordered) {
            Ok(got) => got,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let out_path = input.with_file_name(name.replace(".in.policy", ".out.policy"));
        if update {
            std::fs::write(&out_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out_path)
            .unwrap_or_else(|_| panic!("{} is missing", out_path.display()));
        if got != want {
            failures.push(format!(
                "{name}: output differs from {}\n--- got ---\n{got}\n--- want ---\n{want}",
                out_path.display()
            ));
        }
        // The canonical text is a fixed point.
        if fmt(&name, &want).as_deref() != Ok(want.as_str()) {
            failures.push(format!("{}: not canonical", out_path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- every policy file of the repository ----------------------------------------

/// Every `.policy` file under `policies/`, `examples/` and the parser's and
/// formatter's fixtures (folders that do not exist are skipped).
fn repository_policies() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        "policies",
        "examples",
        "tests/data/parse/ok",
        "tests/data/fmt",
    ] {
        let dir = root().join(dir);
        if !dir.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
            let entry = entry.unwrap();
            if entry.file_type().is_file()
                && entry.path().extension().is_some_and(|e| e == "policy")
            {
                out.push(entry.into_path());
            }
        }
    }
    out
}

#[test]
fn repository_policies_round_trip() {
    let files = repository_policies();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(root())
            .unwrap_or(path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let parses = parse_policy(&SourceFile::new(name.clone(), text.clone())).is_ok();
        let formats = fmt(&name, &text).is_ok();
        assert_eq!(parses, formats, "{name}: parse and fmt disagree");
        if !parses {
            // A deliberately broken example: `sluice check` reports it.
            continue;
        }
        if let Err(e) = check_format(&name, &text, !name.contains("reorder")) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- API ----------------------------------------------------------------------

#[test]
fn files_are_formatted_one_by_one() {
    let files = [
        SourceFile::new("a.policy", "policy a version 1.0.0 {\n}\n"),
        SourceFile::new("b.policy", "policy b version 1.0.0 { rule r { allow } }"),
        SourceFile::new(
            "c.policy",
            "policy c version 1.0.0 { rule r { when x = 1 allow } }",
        ),
    ];
    let out = format_files(&files);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].name, "a.policy");
    assert!(!out[0].changed);
    assert!(out[1].changed);
    assert_eq!(
        out[1].result.as_deref(),
        Ok("policy b version 1.0.0 {\n  rule r {\n    allow\n  }\n}\n")
    );
    let findings = out[2].result.as_ref().unwrap_err();
    assert!(!out[2].changed);
    assert!(findings.iter().all(|f| f.code == "parse::syntax"));
}

#[test]
fn comments_need_the_source() {
    let text = "// top\npolicy a version 1.0.0 { rule r { allow } // end\n}";
    let p = parse("a", text).unwrap();
    assert_eq!(
        format_parsed(&p, text),
        "// top\npolicy a version 1.0.0 {\n  rule r {\n    allow\n  }  // end\n}\n"
    );
    assert_eq!(
        format_policy(&p),
        "policy a version 1.0.0 {\n  rule r {\n    allow\n  }\n}\n"
    );
}

#[test]
fn slashes_in_strings_are_not_comments() {
    let text = r#"policy a version 1.0.0 { rule r { when url starts_with "https://x" deny URL "no // here" } }"#;
    let out = check_format("a", text, true).unwrap();
    assert!(scan_comments(&out).is_empty());
    assert!(out.contains(r#"when url starts_with "https://x""#));
}

// ---- wrapping ---------------------------------------------------------------------

/// Whether the formatter can break `e` over lines: it holds an `and`/`or`
/// chain or a list of more than one element.
fn breakable(e: &Expr) -> bool {
    match &e.node {
        ExprKind::Or(_) | ExprKind::And(_) => true,
        ExprKind::Not(inner) | ExprKind::Paren(inner) => breakable(inner),
        ExprKind::In { list, .. } => list.len() > 1,
        _ => false,
    }
}

/// The wrapping rule at the top level of `text`, the canonical text of `p`:
/// a `when` condition or an effect that fits in [`MAX_WIDTH`] columns is on
/// one line; one that does not, and can be broken, is not.
fn check_fit(p: &Policy, text: &str) -> Result<(), String> {
    // Without comments: a trailing comment does not count towards the width.
    let mut code = text.to_string();
    for c in scan_comments(text).iter().rev() {
        code.replace_range(c.span.start..c.span.end, "");
    }
    let lines: std::collections::HashSet<&str> = code.lines().map(str::trim_end).collect();
    let check = |flat: String, can_break: bool| {
        let line = format!("    {flat}");
        let fits = line.chars().count() <= MAX_WIDTH;
        let one_line = lines.contains(line.as_str());
        if fits && !one_line {
            Err(format!("fits but is wrapped: {line:?}\n{text}"))
        } else if !fits && can_break && one_line {
            Err(format!("too long but not wrapped: {line:?}\n{text}"))
        } else {
            Ok(())
        }
    };
    for item in &p.items {
        let (when, prefix, effect) = match item {
            Item::Rule(r) => (&r.when, "", &r.effect.node),
            Item::Limit(l) => (&l.when, "exceed ", &l.exceed.node),
        };
        if let Some(w) = when {
            check(format!("when {}", format_expr(w)), breakable(w))?;
        }
        let can_break = matches!(
            effect,
            Effect::RequireApproval { .. } | Effect::Modify { .. }
        );
        check(format!("{prefix}{}", format_effect(effect)), can_break)?;
    }
    Ok(())
}

#[test]
fn fixtures_fit() {
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.display().to_string();
        if !name.ends_with(".out.policy") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let p = parse(&name, &text).unwrap();
        if let Err(e) = check_fit(&p, &text) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn wrapping_does_not_depend_on_the_layout() {
    let text =
        std::fs::read_to_string(fixture_dir().join("0015_wrap_any_layout.out.policy")).unwrap();
    let mut bodies: Vec<&str> = text
        .split("\n  rule ")
        .skip(1)
        .map(|rule| {
            rule.split_once('\n')
                .unwrap()
                .1
                .split("\n  }")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(bodies.len(), 4);
    assert!(bodies[0].lines().count() > 4, "{}", bodies[0]);
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "{text}");
}

#[test]
fn module_doc_example_is_canonical() {
    let src = std::fs::read_to_string(root().join("src/fmt.rs")).unwrap();
    let doc: Vec<&str> = src
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let start = doc.iter().position(|l| *l == "```text").unwrap() + 1;
    let len = doc[start..].iter().position(|l| *l == "```").unwrap();
    let example = doc[start..start + len].join("\n") + "\n";
    assert!(example.contains("\n      and "), "{example}");
    assert_eq!(fmt("doc.policy", &example).unwrap(), example);
}

/// The generators make long conditions and effects often enough: among the
/// canonical texts of the generated policies, a fair share wrap a `when`
/// chain, break a chain inside it, break a list and break an effect.
#[test]
fn generated_policies_wrap() {
    use proptest::strategy::ValueTree;
    const N: usize = 256;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut chains, mut inner, mut lists, mut effects) = (0, 0, 0, 0);
    for _ in 0..N {
        let p = arb::policy().new_tree(&mut runner).unwrap().current();
        let text = format_policy(&p);
        let starts = |depth: usize, what: &dyn Fn(&str) -> bool| {
            text.lines().any(|l| {
                l.strip_prefix(&"  ".repeat(depth))
                    .is_some_and(|rest| !rest.starts_with(' ') && what(rest))
            })
        };
        let op = |rest: &str| rest.starts_with("and ") || rest.starts_with("or ");
        chains += usize::from(starts(3, &op));
        inner += usize::from((4..12).any(|d| starts(d, &op)));
        lists += usize::from(text.lines().any(|l| l.ends_with(',')));
        effects += usize::from(starts(3, &|rest: &str| {
            rest.starts_with(|c: char| c.is_ascii_uppercase())
                && rest
                    .split_once(' ')
                    .is_some_and(|(_, t)| t.starts_with('"'))
        }));
    }
    let counts = [chains, inner, lists, effects];
    assert!(counts.iter().all(|&c| c >= N / 20), "{counts:?} of {N}");
}

// ---- property tests ---------------------------------------------------------------

mod arb {
    //! Random syntax trees of the shapes the parser produces, and a messy (but
    //! valid) printer for them.

    use proptest::prelude::*;
    use proptest::sample::select;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt as _, SeedableRng as _};
    use sluice::parse::ast::*;
    use sluice::source::Span;

    fn sp<T>(t: T) -> Spanned<T> {
        Spanned::new(t, Span::default())
    }

    /// Field paths, some starting with a keyword's letters or named like a
    /// word the grammar uses elsewhere.
    const FIELDS: &[&str] = &[
        "tool",
        "agent",
        "session",
        "args.amount",
        "args.country",
        "args.body",
        "args.recipients",
        "args.urgent",
        "args.in",
        "a.b.c",
        "_private",
        "android",
        "orders",
        "notes",
        "index",
        "hash",
        "length",
        "trueish",
        "by",
        "per",
        "via",
        "redact",
        "version",
        "on_decrease",
    ];

    const KEYWORD_NAMES: &[&str] = &[
        "allow", "when", "rule", "limit", "version", "policy", "tier", "max", "and", "not", "in",
    ];

    const CHARS: &[char] = &[
        'a', 'Z', '0', ' ', '/', '\\', '"', '\n', '\t', '\r', '{', '}', '[', ']', 'é', '✓', '#',
        '*', '.', ',',
    ];

    pub fn path() -> impl Strategy<Value = Path> {
        select(FIELDS).prop_map(|s| Path(s.to_string()))
    }

    pub fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z][a-z0-9_]{0,10}",
            1 => select(KEYWORD_NAMES).prop_map(String::from),
        ]
    }

    fn code() -> impl Strategy<Value = String> {
        "[A-Z][A-Z0-9_]{0,10}"
    }

    /// Mostly short strings; sometimes long ones, so that effects and
    /// conditions overflow a line.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => prop::collection::vec(select(CHARS), 0..12),
            1 => prop::collection::vec(select(CHARS), 12..72),
        ]
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            any::<i64>().prop_map(Literal::Int),
            (-100i64..100).prop_map(Literal::Int),
            text().prop_map(Literal::Str),
            any::<bool>().prop_map(Literal::Bool),
        ]
    }

    fn term() -> impl Strategy<Value = Term> {
        prop_oneof![
            2 => path().prop_map(|p| sp(TermKind::Field(p))),
            1 => path().prop_map(|p| sp(TermKind::Len(sp(p)))),
            2 => literal().prop_map(|l| sp(TermKind::Lit(l))),
        ]
    }

    fn cmp_op() -> impl Strategy<Value = CmpOp> {
        select(
            &[
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Gt,
                CmpOp::Ge,
            ][..],
        )
    }

    fn str_op() -> impl Strategy<Value = StrOp> {
        select(
            &[
                StrOp::Contains,
                StrOp::StartsWith,
                StrOp::EndsWith,
                StrOp::Matches,
            ][..],
        )
    }

    fn atom() -> impl Strategy<Value = Expr> {
        prop_oneof![
            (cmp_op(), term(), term()).prop_map(|(op, lhs, rhs)| sp(ExprKind::Cmp {
                op,
                lhs,
                rhs
            })),
            (
                term(),
                prop_oneof![
                    3 => prop::collection::vec(literal().prop_map(sp), 0..4),
                    1 => prop::collection::vec(literal().prop_map(sp), 4..24),
                ]
            )
                .prop_map(|(lhs, list)| sp(ExprKind::In { lhs, list })),
            (str_op(), term(), term()).prop_map(|(op, lhs, rhs)| sp(ExprKind::Str {
                op,
                lhs,
                rhs
            })),
            path().prop_map(|p| sp(ExprKind::Has(sp(p)))),
            term().prop_map(|t| sp(ExprKind::Term(t))),
        ]
    }

    /// Any condition, with parentheses added where the parser would need them
    /// to build the same tree (`or` inside `and`, `and` inside `not`, …).
    pub fn expr() -> impl Strategy<Value = Expr> {
        atom()
            .prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 2..6).prop_map(|v| sp(ExprKind::Or(v))),
                    prop::collection::vec(inner.clone(), 2..6).prop_map(|v| sp(ExprKind::And(v))),
                    inner.clone().prop_map(|e| sp(ExprKind::Not(Box::new(e)))),
                    inner.prop_map(|e| sp(ExprKind::Paren(Box::new(e)))),
                ]
            })
            .prop_map(legal)
    }

    /// A `when` condition: any condition, or sometimes a long `and`/`or`
    /// chain of them, so that wrapping is exercised.
    pub fn condition() -> impl Strategy<Value = Expr> {
        prop_oneof![
            3 => expr(),
            1 => prop::collection::vec(expr(), 3..9).prop_map(|v| legal(sp(ExprKind::And(v)))),
            1 => prop::collection::vec(expr(), 3..9).prop_map(|v| legal(sp(ExprKind::Or(v)))),
        ]
    }

    fn paren_if(e: Expr, needs: fn(&ExprKind) -> bool) -> Expr {
        if needs(&e.node) {
            sp(ExprKind::Paren(Box::new(e)))
        } else {
            e
        }
    }

    fn legal(e: Expr) -> Expr {
        let is_or = |k: &ExprKind| matches!(k, ExprKind::Or(_));
        let is_bool = |k: &ExprKind| matches!(k, ExprKind::Or(_) | ExprKind::And(_));
        let kind = match e.node {
            ExprKind::Or(v) => {
                ExprKind::Or(v.into_iter().map(|e| paren_if(legal(e), is_or)).collect())
            }
            ExprKind::And(v) => {
                ExprKind::And(v.into_iter().map(|e| paren_if(legal(e), is_bool)).collect())
            }
            ExprKind::Not(e) => ExprKind::Not(Box::new(paren_if(legal(*e), is_bool))),
            ExprKind::Paren(e) => ExprKind::Paren(Box::new(legal(*e))),
            other => other,
        };
        sp(kind)
    }

    fn modify_value() -> impl Strategy<Value = ModifyValue> {
        prop_oneof![
            literal().prop_map(ModifyValue::Literal),
            path().prop_map(|p| ModifyValue::Redact(sp(p))),
            (path(), text()).prop_map(|(p, re)| ModifyValue::RedactPattern(sp(p), sp(re))),
            (path(), any::<u64>()).prop_map(|(p, n)| ModifyValue::Truncate(sp(p), sp(n))),
            path().prop_map(|p| ModifyValue::Lowercase(sp(p))),
        ]
    }

    fn effect(allow: bool) -> impl Strategy<Value = Effect> {
        let others = prop_oneof![
            (code(), text()).prop_map(|(c, t)| Effect::Deny {
                code: sp(c),
                text: sp(t)
            }),
            (text(), prop::option::of(text()), code(), text()).prop_map(|(g, v, c, t)| {
                Effect::RequireApproval {
                    group: sp(g),
                    via: v.map(sp),
                    code: sp(c),
                    text: sp(t),
                }
            }),
            (path(), modify_value(), code(), text()).prop_map(|(f, v, c, t)| Effect::Modify {
                field: sp(f),
                value: sp(v),
                code: sp(c),
                text: sp(t),
            }),
        ];
        let allow_weight = if allow { 1 } else { 0 };
        prop_oneof![allow_weight => Just(Effect::Allow), 3 => others]
    }

    fn rule() -> impl Strategy<Value = Item> {
        (name(), prop::option::of(condition()), effect(true)).prop_map(|(n, when, e)| {
            Item::Rule(Rule {
                name: sp(n),
                when,
                effect: sp(e),
                span: SpanIgnored::default(),
            })
        })
    }

    fn limit() -> impl Strategy<Value = Item> {
        (
            name(),
            prop::option::of(condition()),
            prop_oneof![0u64..1000, any::<u64>()],
            prop_oneof![1u64..100, 1u64..=u64::MAX],
            select(&['s', 'm', 'h', 'd'][..]),
            prop::collection::vec(path().prop_map(sp), 1..4),
            effect(false),
            prop::option::of(select(&[OnDecrease::NextWindow, OnDecrease::Freeze][..])),
        )
            .prop_map(|(n, when, max, amount, unit, by, exceed, od)| {
                Item::Limit(Limit {
                    name: sp(n),
                    when,
                    max: sp(max),
                    window: sp(Duration { amount, unit }),
                    by,
                    exceed: sp(exceed),
                    on_decrease: od.map(sp),
                    span: SpanIgnored::default(),
                })
            })
    }

    fn version() -> impl Strategy<Value = semver::Version> {
        (
            prop_oneof![0u64..20, any::<u64>()],
            0u64..20,
            0u64..200,
            prop::option::of(select(&["alpha", "alpha.1", "rc-2", "beta.11.x"][..])),
            prop::option::of(select(&["build.5", "sha-abc", "001"][..])),
        )
            .prop_filter_map("valid semver", |(a, b, c, pre, build)| {
                let mut s = format!("{a}.{b}.{c}");
                if let Some(p) = pre {
                    s.push('-');
                    s.push_str(p);
                }
                if let Some(b) = build {
                    s.push('+');
                    s.push_str(b);
                }
                semver::Version::parse(&s).ok()
            })
    }

    fn comparator() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => (
                select(&["", "^", "~", "=", ">", ">=", "<", "<="][..]),
                select(&["1", "1.2", "1.2.3", "0.4.0-rc.1", "10.20.30-alpha-1.x"][..]),
            )
                .prop_map(|(op, v)| format!("{op}{v}")),
            1 => select(&["*", "1.*", "1.2.*", "1.x"][..]).prop_map(String::from),
        ]
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        (name(), prop::collection::vec(comparator(), 1..3)).prop_filter_map(
            "valid requirement",
            |(n, cs)| {
                let text = cs.join(", ");
                let req = semver::VersionReq::parse(&text).ok()?;
                Some(Requirement {
                    policy: sp(n),
                    req: sp(req),
                    text,
                })
            },
        )
    }

    fn tier() -> impl Strategy<Value = Tier> {
        select(&[Tier::Security, Tier::Operational, Tier::Compliance][..])
    }

    pub fn policy() -> impl Strategy<Value = Policy> {
        (
            name(),
            version(),
            prop::option::of(tier()),
            prop::collection::vec(requirement(), 0..3),
            prop::collection::vec(prop_oneof![2 => rule(), 1 => limit()], 0..5),
        )
            .prop_map(|(name, version, tier, requires, items)| Policy {
                name: sp(name),
                version: sp(version),
                tier: tier.map(sp),
                requires,
                items,
                span: SpanIgnored::default(),
            })
    }

    // ---- the messy printer ---------------------------------------------------------

    /// Prints a policy with random whitespace (spaces, tabs, CR LF, blank
    /// lines), random comments between tokens, optional trailing commas in
    /// lists, and spacing inside requirements.
    pub struct Messy {
        rng: Xoshiro256PlusPlus,
        comment_pct: u64,
        out: String,
        /// The comments written, in order.
        pub comments: Vec<String>,
        prev_punct: bool,
    }

    /// What the messy printer wrote.
    pub struct Printed {
        pub text: String,
        pub comments: Vec<String>,
        /// Declarations and items in canonical order (tier, requires, items),
        /// so comments keep their order when formatted.
        pub ordered: bool,
    }

    fn is_punct(t: &str) -> bool {
        matches!(t, "(" | ")" | "[" | "]" | "{" | "}" | "," | "=")
    }

    impl Messy {
        fn below(&mut self, n: u64) -> u64 {
            self.rng.random_range(0..n)
        }

        fn chance(&mut self, pct: u64) -> bool {
            self.below(100) < pct
        }

        fn comment(&mut self) {
            const TEXT: &[char] = &['a', 'b', ' ', '"', '/', '{', '}', '\t', 'é', '*', '\\'];
            let len = self.below(10);
            let mut body = String::new();
            for _ in 0..len {
                let c = TEXT[self.below(TEXT.len() as u64) as usize];
                body.push(c);
            }
            let text = format!("// c{} {body}", self.comments.len())
                .trim_end()
                .to_string();
            self.out.push_str(&text);
            let end = ["\n", "\r\n", "\n\n", "  \n\t"][self.below(4) as usize];
            self.out.push_str(end);
            self.comments.push(text);
        }

        /// Whitespace (and maybe a comment) before the next token; none at all
        /// is allowed next to punctuation.
        fn sep(&mut self, tight: bool) {
            if !(tight && self.chance(30)) {
                let ws = [
                    " ", " ", " ", "  ", "\n", "\t", "\r\n    ", "\n\n  ", " \t ",
                ];
                let w = ws[self.below(ws.len() as u64) as usize];
                self.out.push_str(w);
            }
            if self.chance(self.comment_pct) {
                if self.chance(50) {
                    self.out.push(' ');
                }
                self.comment();
            }
        }

        fn tok(&mut self, t: &str) {
            let punct = is_punct(t);
            if self.out.is_empty() {
                if self.chance(self.comment_pct) {
                    self.comment();
                }
            } else {
                self.sep(punct || self.prev_punct);
            }
            self.out.push_str(t);
            self.prev_punct = punct;
        }

        fn string(&mut self, s: &str) {
            self.tok(&sluice::fmt::quote(s));
        }

        fn requirement(&mut self, text: &str) {
            let mut out = String::new();
            for (i, c) in text.split(", ").enumerate() {
                if i > 0 {
                    out.push_str(&" ".repeat(self.below(3) as usize));
                    out.push(',');
                    out.push_str(&" ".repeat(self.below(3) as usize));
                }
                let split = c
                    .find(|ch: char| ch.is_ascii_digit() || ch == '*')
                    .unwrap_or(0);
                let (op, v) = c.split_at(split);
                out.push_str(op);
                if !op.is_empty() {
                    out.push_str(&" ".repeat(self.below(3) as usize));
                }
                out.push_str(v);
            }
            self.tok(&out);
        }

        fn literal(&mut self, l: &Literal) {
            match l {
                Literal::Str(s) => self.string(s),
                other => self.tok(&sluice::fmt::format_literal(other)),
            }
        }

        fn path(&mut self, p: &Path) {
            self.tok(p.as_str());
        }

        fn call(&mut self, f: &str, p: &Path) {
            self.tok(f);
            self.tok("(");
            self.path(p);
            self.tok(")");
        }

        fn term(&mut self, t: &Term) {
            match &t.node {
                TermKind::Field(p) => self.path(p),
                TermKind::Len(p) => self.call("len", &p.node),
                TermKind::Lit(l) => self.literal(l),
            }
        }

        fn expr(&mut self, e: &Expr) {
            match &e.node {
                ExprKind::Or(v) | ExprKind::And(v) => {
                    let op = if matches!(e.node, ExprKind::Or(_)) {
                        "or"
                    } else {
                        "and"
                    };
                    for (i, x) in v.iter().enumerate() {
                        if i > 0 {
                            self.tok(op);
                        }
                        self.expr(x);
                    }
                }
                ExprKind::Not(x) => {
                    self.tok("not");
                    self.expr(x);
                }
                ExprKind::Paren(x) => {
                    self.tok("(");
                    self.expr(x);
                    self.tok(")");
                }
                ExprKind::Cmp { op, lhs, rhs } => {
                    self.term(lhs);
                    self.tok(op.as_str());
                    self.term(rhs);
                }
                ExprKind::Str { op, lhs, rhs } => {
                    self.term(lhs);
                    self.tok(op.as_str());
                    self.term(rhs);
                }
                ExprKind::In { lhs, list } => {
                    self.term(lhs);
                    self.tok("in");
                    self.tok("[");
                    for (i, l) in list.iter().enumerate() {
                        if i > 0 {
                            self.tok(",");
                        }
                        self.literal(&l.node);
                    }
                    if !list.is_empty() && self.chance(30) {
                        self.tok(",");
                    }
                    self.tok("]");
                }
                ExprKind::Has(p) => self.call("has", &p.node),
                ExprKind::Term(t) => self.term(t),
            }
        }

        fn effect(&mut self, e: &Effect) {
            match e {
                Effect::Allow => self.tok("allow"),
                Effect::Deny { code, text } => {
                    self.tok("deny");
                    self.tok(&code.node);
                    self.string(&text.node);
                }
                Effect::RequireApproval {
                    group,
                    via,
                    code,
                    text,
                } => {
                    self.tok("require_approval");
                    self.string(&group.node);
                    if let Some(v) = via {
                        self.tok("via");
                        self.string(&v.node);
                    }
                    self.tok(&code.node);
                    self.string(&text.node);
                }
                Effect::Modify {
                    field,
                    value,
                    code,
                    text,
                } => {
                    self.tok("modify");
                    self.path(&field.node);
                    self.tok("=");
                    match &value.node {
                        ModifyValue::Literal(l) => self.literal(l),
                        ModifyValue::Redact(p) => self.call("redact", &p.node),
                        ModifyValue::RedactPattern(p, re) => {
                            self.tok("redact");
                            self.tok("(");
                            self.path(&p.node);
                            self.tok(",");
                            self.string(&re.node);
                            self.tok(")");
                        }
                        ModifyValue::Truncate(p, n) => {
                            self.tok("truncate");
                            self.tok("(");
                            self.path(&p.node);
                            self.tok(",");
                            self.tok(&n.node.to_string());
                            self.tok(")");
                        }
                        ModifyValue::Lowercase(p) => self.call("lowercase", &p.node),
                    }
                    self.tok(&code.node);
                    self.string(&text.node);
                }
            }
        }

        fn when(&mut self, when: &Option<Expr>) {
            if let Some(e) = when {
                self.tok("when");
                self.expr(e);
            }
        }

        fn item(&mut self, item: &Item) {
            match item {
                Item::Rule(r) => {
                    self.tok("rule");
                    self.tok(&r.name.node);
                    self.tok("{");
                    self.when(&r.when);
                    self.effect(&r.effect.node);
                    self.tok("}");
                }
                Item::Limit(l) => {
                    self.tok("limit");
                    self.tok(&l.name.node);
                    self.tok("{");
                    self.when(&l.when);
                    self.tok("max");
                    self.tok(&l.max.node.to_string());
                    self.tok("per");
                    let w = l.window.node;
                    self.tok(&format!("{}{}", w.amount, w.unit));
                    self.tok("by");
                    for (i, p) in l.by.iter().enumerate() {
                        if i > 0 {
                            self.tok(",");
                        }
                        self.path(&p.node);
                    }
                    self.tok("exceed");
                    self.effect(&l.exceed.node);
                    if let Some(od) = &l.on_decrease {
                        self.tok("on_decrease");
                        self.tok(od.node.as_str());
                    }
                    self.tok("}");
                }
            }
        }

        /// Prints `p`; `comment_pct` is the chance of a comment between two
        /// tokens.
        pub fn print(p: &Policy, seed: u64, comment_pct: u64) -> Printed {
            let mut m = Messy {
                rng: Xoshiro256PlusPlus::seed_from_u64(seed),
                comment_pct,
                out: String::new(),
                comments: Vec::new(),
                prev_punct: false,
            };
            m.tok("policy");
            m.tok(&p.name.node);
            m.tok("version");
            m.tok(&p.version.node.to_string());
            m.tok("{");
            // Declarations go first, in canonical order, most of the time; else
            // anywhere among the items.
            #[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
            enum Part {
                Tier,
                Req(usize),
                Item(usize),
            }
            let mut parts: Vec<Part> = p.tier.iter().map(|_| Part::Tier).collect();
            parts.extend((0..p.requires.len()).map(Part::Req));
            parts.extend((0..p.items.len()).map(Part::Item));
            let canonical = parts.clone();
            if m.chance(15) {
                // Move each declaration to a random place, keeping items and
                // requirements in their own order.
                let decls: Vec<Part> = parts
                    .iter()
                    .copied()
                    .filter(|x| !matches!(x, Part::Item(_)))
                    .collect();
                parts.retain(|x| matches!(x, Part::Item(_)));
                for d in decls {
                    let after = match d {
                        Part::Req(i) => parts
                            .iter()
                            .position(|x| *x == Part::Req(i.wrapping_sub(1)))
                            .map_or(0, |at| at + 1),
                        _ => 0,
                    };
                    let at = after + m.below((parts.len() - after + 1) as u64) as usize;
                    parts.insert(at, d);
                }
            }
            let ordered = parts == canonical;
            for part in parts {
                match part {
                    Part::Tier => {
                        if let Some(t) = &p.tier {
                            m.tok("tier");
                            m.tok(t.node.as_str());
                        }
                    }
                    Part::Req(i) => {
                        let r = &p.requires[i];
                        m.tok("requires");
                        m.tok(&r.policy.node);
                        m.requirement(&r.text);
                    }
                    Part::Item(i) => m.item(&p.items[i]),
                }
            }
            m.tok("}");
            if m.chance(comment_pct) {
                m.out.push(' ');
                m.comment();
            }
            if m.chance(50) {
                m.out.push('\n');
            }
            Printed {
                text: m.out,
                comments: m.comments,
                ordered,
            }
        }
    }
}

use proptest::prelude::*;

// 256 cases each by default (a few seconds in debug); `PROPTEST_CASES=N` for
// more. A failing case is saved under `tests/data/fmt/` and replayed first.
proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/data/fmt/proptest-regressions.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]

    /// The printer's text parses back to the tree it printed, is canonical,
    /// and is wrapped where (and only where) it is too long.
    #[test]
    fn printed_policies_parse_back(p in arb::policy()) {
        let text = format_policy(&p);
        let back = parse("gen.policy", &text).map_err(TestCaseError::fail)?;
        check_fit(&p, &text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(canon(back), canon(p));
        prop_assert_eq!(fmt("gen.policy", &text).map_err(TestCaseError::fail)?, text);
    }

    /// A messy layout with comments everywhere parses to the generated tree;
    /// formatting it keeps the tree and every comment, and is idempotent.
    /// Without comments, the result is the printer's text: the canonical form
    /// does not depend on the layout.
    #[test]
    fn messy_layouts_format_canonically(
        p in arb::policy(),
        seed in any::<u64>(),
        comment_pct in prop_oneof![Just(0u64), 1u64..40],
    ) {
        let printed = arb::Messy::print(&p, seed, comment_pct);
        let parsed = parse("messy.policy", &printed.text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(canon(parsed), canon(p.clone()), "messy text:\n{}", printed.text);
        prop_assert_eq!(comment_texts(&printed.text), printed.comments.clone());
        let out = check_format("messy.policy", &printed.text, printed.ordered)
            .map_err(TestCaseError::fail)?;
        if printed.comments.is_empty() {
            prop_assert_eq!(out, format_policy(&p));
        }
    }
}
