//! Evaluator tests: one table per semantic rule of SPEC §2, request decoding,
//! the response document, and the tool index against a brute-force scan and
//! an independent reference interpreter.
//!
//! Every case is one line: a policy set (built with the helpers below), a
//! request, and the expected outcome rendered as
//! `decision policy.rule:CODE …` (`:allow` for an allow without a code).

use crate::project::field;
use serde_json::{Value, json};
use sluice::compile::artifact::Artifact;
use sluice::eval::request::{FieldValue, Request};
use sluice::eval::response::ResponseContext;
use sluice::eval::state::{LimitStore, MemoryLimitStore, Window};
use sluice::eval::{Evaluator, LimitMode, LoadError, Outcome};
use sluice::model::ir::{
    CmpOp, DecisionKind, Effect, Expr, Limit, Literal, ModifyValue, Policy, PolicySet, Rule, Term,
    Tier, Type,
};
use sluice::model::schema::Schema;

// ---------------------------------------------------------------------------
// Builders.

pub(crate) fn schema() -> Schema {
    Schema::new(vec![
        field("tool", Type::Str, false),
        field("agent", Type::Str, false),
        field("org", Type::Str, false),
        field("session", Type::Str, false),
        field("args.amount", Type::Int, false),
        field("args.country", Type::Str, false),
        field("args.recipients", Type::StrSet, false),
        field("args.body", Type::Str, true),
        field("args.subject", Type::Str, true),
        field("args.urgent", Type::Bool, true),
        field("args.tags", Type::StrSet, true),
        field("args.count", Type::Int, true),
    ])
}

pub(crate) trait Lit {
    fn lit(self) -> Literal;
}
impl Lit for i64 {
    fn lit(self) -> Literal {
        Literal::Int(self)
    }
}
impl Lit for &str {
    fn lit(self) -> Literal {
        Literal::Str(self.to_string())
    }
}
impl Lit for bool {
    fn lit(self) -> Literal {
        Literal::Bool(self)
    }
}

fn op(s: &str) -> CmpOp {
    match s {
        "==" => CmpOp::Eq,
        "!=" => CmpOp::Ne,
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Le,
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Ge,
        _ => panic!("bad operator {s}"),
    }
}

fn lit_type(l: &Literal) -> Type {
    match l {
        Literal::Int(_) => Type::Int,
        Literal::Str(_) => Type::Str,
        Literal::Bool(_) => Type::Bool,
    }
}

/// `field op literal`.
pub(crate) fn cmp(field: &str, o: &str, v: impl Lit) -> Expr {
    let v = v.lit();
    Expr::Cmp {
        op: op(o),
        lhs: Term::Field(field.to_string()),
        ty: lit_type(&v),
        rhs: Term::Lit(v),
    }
}

/// `len(field) op n`.
pub(crate) fn len(field: &str, o: &str, n: i64) -> Expr {
    Expr::Cmp {
        op: op(o),
        lhs: Term::Len(field.to_string()),
        rhs: Term::Lit(Literal::Int(n)),
        ty: Type::Int,
    }
}

pub(crate) fn tool(t: &str) -> Expr {
    cmp("tool", "==", t)
}

pub(crate) fn is_in<L: Lit>(field: &str, values: impl IntoIterator<Item = L>) -> Expr {
    Expr::In {
        lhs: Term::Field(field.to_string()),
        values: values.into_iter().map(Lit::lit).collect(),
    }
}

pub(crate) fn and(xs: impl IntoIterator<Item = Expr>) -> Expr {
    Expr::And(xs.into_iter().collect())
}

pub(crate) fn or(xs: impl IntoIterator<Item = Expr>) -> Expr {
    Expr::Or(xs.into_iter().collect())
}

pub(crate) fn not(x: Expr) -> Expr {
    Expr::Not(Box::new(x))
}

pub(crate) fn has(f: &str) -> Expr {
    Expr::Has(f.to_string())
}

pub(crate) fn truthy(f: &str) -> Expr {
    Expr::Truthy(f.to_string())
}

pub(crate) fn contains(f: &str, v: &str) -> Expr {
    Expr::Contains {
        field: f.to_string(),
        value: v.to_string(),
    }
}

pub(crate) fn set_contains(f: &str, v: &str) -> Expr {
    Expr::SetContains {
        field: f.to_string(),
        value: v.to_string(),
    }
}

pub(crate) fn starts(f: &str, v: &str) -> Expr {
    Expr::StartsWith {
        field: f.to_string(),
        value: v.to_string(),
    }
}

pub(crate) fn ends(f: &str, v: &str) -> Expr {
    Expr::EndsWith {
        field: f.to_string(),
        value: v.to_string(),
    }
}

pub(crate) fn matches(f: &str, re: &str) -> Expr {
    Expr::Matches {
        field: f.to_string(),
        pattern: re.to_string(),
    }
}

pub(crate) fn yes() -> Expr {
    Expr::Const(true)
}

pub(crate) fn allow() -> Effect {
    Effect::Allow
}

pub(crate) fn deny(code: &str) -> Effect {
    Effect::Deny {
        code: code.to_string(),
        text: format!("{code} text"),
    }
}

pub(crate) fn approve(code: &str) -> Effect {
    Effect::RequireApproval {
        group: "finance".to_string(),
        via: Some("approvals.request".to_string()),
        code: code.to_string(),
        text: format!("{code} text"),
    }
}

pub(crate) fn modify(field: &str, value: ModifyValue, code: &str) -> Effect {
    Effect::Modify {
        field: field.to_string(),
        value,
        code: code.to_string(),
        text: format!("{code} text"),
    }
}

pub(crate) fn set_lit(v: impl Lit) -> ModifyValue {
    ModifyValue::Literal(v.lit())
}

pub(crate) fn redact(f: &str) -> ModifyValue {
    ModifyValue::Redact {
        field: f.to_string(),
    }
}

pub(crate) fn redact_re(f: &str, re: &str) -> ModifyValue {
    ModifyValue::RedactPattern {
        field: f.to_string(),
        pattern: re.to_string(),
    }
}

pub(crate) fn truncate(f: &str, n: u64) -> ModifyValue {
    ModifyValue::Truncate {
        field: f.to_string(),
        len: n,
    }
}

pub(crate) fn lowercase(f: &str) -> ModifyValue {
    ModifyValue::Lowercase {
        field: f.to_string(),
    }
}

pub(crate) fn rule(name: &str, when: Expr, effect: Effect) -> Rule {
    Rule {
        name: name.to_string(),
        when,
        effect,
        origin: Default::default(),
    }
}

pub(crate) fn limit(
    name: &str,
    when: Expr,
    max: u64,
    window: u64,
    by: &[&str],
    exceed: Effect,
) -> Limit {
    Limit {
        name: name.to_string(),
        when,
        max,
        window_secs: window,
        by: by.iter().map(|s| s.to_string()).collect(),
        exceed,
        on_decrease: None,
        origin: Default::default(),
    }
}

pub(crate) fn pol(name: &str, rules: Vec<Rule>) -> Policy {
    pol_limits(name, rules, vec![])
}

pub(crate) fn pol_limits(name: &str, rules: Vec<Rule>, limits: Vec<Limit>) -> Policy {
    Policy {
        name: name.to_string(),
        version: "1.0.0".to_string(),
        tier: Tier::Operational,
        requires: vec![],
        rules,
        limits,
        origin: Default::default(),
    }
}

pub(crate) fn artifact(default: DecisionKind, policies: Vec<Policy>) -> Artifact {
    Artifact::new("test", default, schema(), PolicySet { policies }, None).unwrap()
}

fn evaluator(default: DecisionKind, policies: Vec<Policy>) -> Evaluator {
    Evaluator::new(&artifact(default, policies)).unwrap()
}

/// A valid request for `tool`: defaults for the required fields, overridden
/// by `over` (top level and `args` merged key by key; `null` removes a key).
pub(crate) fn req(tool: &str, over: Value) -> Value {
    let mut base = json!({
        "tool": tool, "agent": "bot-1", "org": "acme", "session": "s-1",
        "args": {"amount": 10, "country": "DE", "recipients": ["a@x.io"]}
    });
    merge(&mut base, over);
    base
}

fn merge(base: &mut Value, over: Value) {
    let (Value::Object(b), Value::Object(o)) = (base, over) else {
        panic!("merge of non-objects")
    };
    for (k, v) in o {
        match (b.get_mut(&k), v) {
            (Some(bv @ Value::Object(_)), v @ Value::Object(_)) => merge(bv, v),
            (_, Value::Null) => {
                b.remove(&k);
            }
            (_, v) => {
                b.insert(k, v);
            }
        }
    }
}

/// `decision policy.rule:CODE …`.
fn render(ev: &Evaluator, out: &Outcome) -> String {
    let mut s = out.decision().as_str().to_string();
    for r in ev.reasons(out) {
        s.push_str(&format!(
            " {}.{}:{}",
            r.policy,
            r.rule,
            r.code().unwrap_or("allow")
        ));
    }
    s
}

#[track_caller]
fn check_with(default: DecisionKind, policies: Vec<Policy>, request: Value, expect: &str) {
    let ev = evaluator(default, policies);
    let r = ev.decode(&request).unwrap();
    let store = MemoryLimitStore::new();
    let out = ev.evaluate(&r, 1_000_000, &store).unwrap();
    assert_eq!(render(&ev, &out), expect, "request {request}");
    let scan = ev
        .evaluate_scan(&r, 1_000_000, &MemoryLimitStore::new(), LimitMode::Count)
        .unwrap();
    assert_eq!(render(&ev, &scan), expect, "scan disagrees for {request}");
}

/// Default deny.
#[track_caller]
fn check(policies: Vec<Policy>, request: Value, expect: &str) {
    check_with(DecisionKind::Deny, policies, request, expect);
}

/// One policy `p` holding one rule `r` with `when`, effect deny `HIT`; the
/// default is allow, so the outcome says whether the condition matched.
#[track_caller]
fn check_cond(when: Expr, request: Value, matched: bool) {
    let expect = if matched { "deny p.r:HIT" } else { "allow" };
    check_with(
        DecisionKind::Allow,
        vec![pol("p", vec![rule("r", when, deny("HIT"))])],
        request,
        expect,
    );
}

// ---------------------------------------------------------------------------
// Combining and severity.

#[test]
#[rustfmt::skip]
fn severity_most_severe_wins() {
    let r = |n: &str, e: Effect| rule(n, tool("t"), e);
    let q = || req("t", json!({}));
    check(vec![pol("a", vec![r("x", allow())])], q(), "allow a.x:allow");
    check(vec![pol("a", vec![r("x", allow()), r("y", deny("D"))])], q(), "deny a.x:allow a.y:D");
    check(vec![pol("a", vec![r("x", deny("D"))]), pol("b", vec![r("y", allow())])], q(), "deny a.x:D b.y:allow");
    check(vec![pol("a", vec![r("x", approve("A"))]), pol("b", vec![r("y", allow())])], q(), "require_approval a.x:A b.y:allow");
    check(vec![pol("a", vec![r("x", approve("A"))]), pol("b", vec![r("y", deny("D"))])], q(), "deny a.x:A b.y:D");
    check(vec![pol("a", vec![r("x", modify("args.body", redact("args.body"), "M"))]), pol("b", vec![r("y", allow())])], q(), "modify a.x:M b.y:allow");
    check(vec![pol("a", vec![r("x", modify("args.body", redact("args.body"), "M"))]), pol("b", vec![r("y", approve("A"))])], q(), "require_approval a.x:M b.y:A");
    check(vec![pol("a", vec![r("x", modify("args.body", redact("args.body"), "M")), r("y", approve("A")), r("z", deny("D")), r("w", allow())])], q(), "deny a.x:M a.y:A a.z:D a.w:allow");
}

#[test]
#[rustfmt::skip]
fn non_matching_rules_do_not_contribute() {
    let set = || vec![pol("a", vec![rule("x", tool("t"), deny("D")), rule("y", tool("u"), allow())])];
    check(set(), req("t", json!({})), "deny a.x:D");
    check(set(), req("u", json!({})), "allow a.y:allow");
    check(set(), req("v", json!({})), "deny");
}

#[test]
#[rustfmt::skip]
fn default_applies_only_without_a_match() {
    let set = || vec![pol("a", vec![rule("x", tool("t"), allow())])];
    check_with(DecisionKind::Deny, set(), req("other", json!({})), "deny");
    check_with(DecisionKind::Allow, set(), req("other", json!({})), "allow");
    check_with(DecisionKind::Deny, set(), req("t", json!({})), "allow a.x:allow");
    check_with(DecisionKind::Allow, vec![], req("t", json!({})), "allow");
    check_with(DecisionKind::Deny, vec![], req("t", json!({})), "deny");
}

#[test]
#[rustfmt::skip]
fn reasons_order_is_policy_name_then_declaration() {
    let all = |p: &str, names: &[&str]| pol(p, names.iter().map(|n| rule(n, yes(), deny("D"))).collect());
    // Policies given out of order; rules keep their declaration order.
    check(vec![all("zeta", &["b", "a"]), all("alpha", &["z", "y"]), all("mid", &["m"])], req("t", json!({})),
        "deny alpha.z:D alpha.y:D mid.m:D zeta.b:D zeta.a:D");
    // Rules before limits within a policy.
    let lim = limit("l", yes(), 0, 60, &["agent"], deny("RATE"));
    check(vec![pol_limits("p", vec![rule("r", yes(), allow())], vec![lim])], req("t", json!({})), "deny p.r:allow p.l:RATE");
}

#[test]
fn reasons_carry_policy_version_and_text() {
    let ev = evaluator(
        DecisionKind::Deny,
        vec![pol(
            "pay",
            vec![rule("big", cmp("args.amount", ">", 5), approve("BIG"))],
        )],
    );
    let r = ev
        .decode(&req("t", json!({"args": {"amount": 6}})))
        .unwrap();
    let out = ev.evaluate(&r, 0, &MemoryLimitStore::new()).unwrap();
    let reasons: Vec<_> = ev.reasons(&out).collect();
    assert_eq!(reasons.len(), 1);
    assert_eq!(
        (reasons[0].policy, reasons[0].version, reasons[0].rule),
        ("pay", "1.0.0", "big")
    );
    assert_eq!(
        (reasons[0].code(), reasons[0].text()),
        (Some("BIG"), Some("BIG text"))
    );
    assert_eq!(reasons[0].decision(), DecisionKind::RequireApproval);
}

// ---------------------------------------------------------------------------
// Absent optional fields.

#[test]
#[rustfmt::skip]
fn absent_optional_atoms_are_false_and_their_negation_true() {
    let absent = || req("t", json!({}));
    let present = |body: &str| req("t", json!({"args": {"body": body}}));
    check_cond(contains("args.body", "x"), absent(), false);
    check_cond(not(contains("args.body", "x")), absent(), true);
    check_cond(not(contains("args.body", "x")), present("x"), false);
    check_cond(cmp("args.body", "==", "x"), absent(), false);
    check_cond(cmp("args.body", "!=", "x"), absent(), false);
    check_cond(not(cmp("args.body", "!=", "x")), absent(), true);
    check_cond(not(cmp("args.body", "==", "x")), absent(), true);
    check_cond(matches("args.body", ".*"), absent(), false);
    check_cond(matches("args.body", ".*"), present(""), true);
    check_cond(starts("args.body", ""), absent(), false);
    check_cond(ends("args.body", ""), absent(), false);
    check_cond(len("args.body", "==", 0), absent(), false);
    check_cond(len("args.body", ">=", 0), absent(), false);
    check_cond(not(len("args.body", ">=", 0)), absent(), true);
    check_cond(is_in("args.body", ["a", "b"]), absent(), false);
    check_cond(not(is_in("args.body", ["a", "b"])), absent(), true);
    check_cond(cmp("args.count", "<", 5), absent(), false);
    check_cond(cmp("args.count", ">=", 5), absent(), false);
    check_cond(not(cmp("args.count", "<", 5)), absent(), true);
    check_cond(set_contains("args.tags", "a"), absent(), false);
    check_cond(len("args.tags", "==", 0), absent(), false);
    check_cond(truthy("args.urgent"), absent(), false);
    check_cond(not(truthy("args.urgent")), absent(), true);
    check_cond(cmp("args.urgent", "==", false), absent(), false);
    check_cond(has("args.body"), absent(), false);
    check_cond(not(has("args.body")), absent(), true);
    check_cond(has("args.body"), present(""), true);
    check_cond(or([has("args.body"), contains("args.body", "x")]), absent(), false);
    check_cond(and([not(has("args.body")), not(contains("args.body", "x"))]), absent(), true);
    // `null` for an optional field is absent.
    check_cond(has("args.body"), req("t", json!({"args": {"body": null}})), false);
}

// ---------------------------------------------------------------------------
// Regex anchoring.

#[test]
#[rustfmt::skip]
fn regex_is_an_unanchored_search() {
    let body = |b: &str| req("t", json!({"args": {"body": b}}));
    check_cond(matches("args.body", "[0-9]{3}"), body("id 123 here"), true);
    check_cond(matches("args.body", "[0-9]{3}"), body("id 12 here"), false);
    check_cond(matches("args.body", "^[0-9]{3}"), body("id 123"), false);
    check_cond(matches("args.body", "^[0-9]{3}"), body("123 id"), true);
    check_cond(matches("args.body", "[0-9]{3}$"), body("123 id"), false);
    check_cond(matches("args.body", "[0-9]{3}$"), body("id 123"), true);
    check_cond(matches("args.body", "^[0-9]{3}$"), body("1234"), false);
    check_cond(matches("args.body", "^[0-9]{3}$"), body("123"), true);
    check_cond(matches("args.body", "(?i)secret"), body("TOP SECRET"), true);
    check_cond(matches("args.body", "a.c"), body("a\nc"), false);
}

#[test]
fn regex_results_do_not_leak_between_evaluations() {
    // Three rules search one field for one pattern; the search runs once per
    // evaluation and a reused outcome starts afresh.
    let ev = evaluator(
        DecisionKind::Allow,
        vec![
            pol(
                "a",
                vec![rule("r", matches("args.body", "[0-9]{3}"), deny("A"))],
            ),
            pol(
                "b",
                vec![rule(
                    "r",
                    and([tool("t"), matches("args.body", "[0-9]{3}")]),
                    deny("B"),
                )],
            ),
            pol(
                "c",
                vec![
                    rule("r", not(matches("args.body", "[0-9]{3}")), allow()),
                    rule("s", matches("args.subject", "[0-9]{3}"), deny("S")),
                ],
            ),
        ],
    );
    let store = MemoryLimitStore::new();
    let mut out = Outcome::default();
    for (request, expect) in [
        (body("123"), "deny a.r:A b.r:B"),
        (body("abc"), "allow c.r:allow"),
        (
            req("t", json!({"args": {"body": "12", "subject": "456"}})),
            "deny c.r:allow c.s:S",
        ),
        (body("999"), "deny a.r:A b.r:B"),
        (req("t", json!({})), "allow c.r:allow"),
    ] {
        let r = ev.decode(&request).unwrap();
        ev.evaluate_into(&r, 0, &store, LimitMode::Count, &mut out)
            .unwrap();
        assert_eq!(render(&ev, &out), expect, "{request}");
    }
}

#[test]
fn a_bad_regex_is_a_load_error() {
    let a = artifact(
        DecisionKind::Deny,
        vec![pol(
            "p",
            vec![rule("r", matches("args.body", "(unclosed"), deny("X"))],
        )],
    );
    let err = Evaluator::new(&a).unwrap_err();
    assert!(
        matches!(&err, LoadError::BadRegex { policy, rule, .. } if policy == "p" && rule == "r"),
        "{err}"
    );
    let a = artifact(
        DecisionKind::Deny,
        vec![pol(
            "p",
            vec![rule(
                "r",
                yes(),
                modify("args.body", redact_re("args.body", "[z-a]"), "M"),
            )],
        )],
    );
    assert!(matches!(
        Evaluator::new(&a),
        Err(LoadError::BadRegex { .. })
    ));
}

#[test]
fn load_errors_name_the_rule() {
    let load = |e: Expr| {
        Evaluator::new(&artifact(
            DecisionKind::Deny,
            vec![pol("p", vec![rule("r", e, deny("X"))])],
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(
        load(cmp("args.nope", "==", 1)),
        Err("p.r: field `args.nope` is not in the schema".to_string())
    );
    assert!(
        load(cmp("args.amount", "==", "x"))
            .unwrap_err()
            .starts_with("p.r: ")
    );
    assert!(load(starts("args.amount", "x")).is_err());
    assert!(load(is_in("args.amount", ["x"])).is_err());
    assert!(load(truthy("args.body")).is_err());
    let zero = pol_limits(
        "p",
        vec![],
        vec![limit("l", yes(), 1, 0, &["agent"], deny("R"))],
    );
    assert!(matches!(
        Evaluator::new(&artifact(DecisionKind::Deny, vec![zero])),
        Err(LoadError::ZeroWindow { .. })
    ));
    let bad_modify = pol(
        "p",
        vec![rule("r", yes(), modify("args.amount", set_lit("x"), "M"))],
    );
    assert!(matches!(
        Evaluator::new(&artifact(DecisionKind::Deny, vec![bad_modify])),
        Err(LoadError::TypeMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------
// Strings and sets.

#[test]
#[rustfmt::skip]
fn string_operators() {
    let c = |s: &str| req("t", json!({"args": {"country": s}}));
    check_cond(contains("args.country", "E"), c("DE"), true);
    check_cond(contains("args.country", "e"), c("DE"), false);
    check_cond(contains("args.country", ""), c(""), true);
    check_cond(starts("args.country", "D"), c("DE"), true);
    check_cond(starts("args.country", "E"), c("DE"), false);
    check_cond(ends("args.country", "E"), c("DE"), true);
    check_cond(ends("args.country", "D"), c("DE"), false);
    check_cond(is_in("args.country", ["KP", "IR", "SY"]), c("IR"), true);
    check_cond(is_in("args.country", ["KP", "IR", "SY"]), c("ir"), false);
    check_cond(is_in("args.country", Vec::<&str>::new()), c("IR"), false);
    check_cond(cmp("args.country", "==", "DE"), c("DE"), true);
    check_cond(cmp("args.country", "!=", "DE"), c("DE"), false);
    check_cond(len("args.country", "==", 3), c("Däh"), true);
    check_cond(len("args.country", "==", 2), c("日本"), true);
}

#[test]
#[rustfmt::skip]
fn set_operators() {
    let r = |v: Value| req("t", json!({"args": {"recipients": v}}));
    check_cond(set_contains("args.recipients", "a@x.io"), r(json!(["b@x.io", "a@x.io"])), true);
    check_cond(set_contains("args.recipients", "a@x"), r(json!(["a@x.io"])), false);
    check_cond(set_contains("args.recipients", "a@x.io"), r(json!([])), false);
    // `contains` on a set field is membership, not substring.
    check_cond(contains("args.recipients", "a@x"), r(json!(["a@x.io"])), false);
    check_cond(contains("args.recipients", "a@x.io"), r(json!(["a@x.io"])), true);
    check_cond(len("args.recipients", "==", 0), r(json!([])), true);
    check_cond(len("args.recipients", "==", 2), r(json!(["a", "b"])), true);
    check_cond(len("args.recipients", "==", 1), r(json!(["a", "a"])), true);
    check_cond(len("args.recipients", ">", 1), r(json!(["a", "a"])), false);
    check_cond(not(set_contains("args.recipients", "z")), r(json!(["a"])), true);
    check_cond(set_contains("args.tags", "x"), req("t", json!({"args": {"tags": ["x"]}})), true);
}

#[test]
#[rustfmt::skip]
fn bool_fields() {
    let u = |b: bool| req("t", json!({"args": {"urgent": b}}));
    check_cond(truthy("args.urgent"), u(true), true);
    check_cond(truthy("args.urgent"), u(false), false);
    check_cond(cmp("args.urgent", "==", false), u(false), true);
    check_cond(is_in("args.urgent", [true]), u(true), true);
    check_cond(is_in("args.urgent", [true]), u(false), false);
}

// ---------------------------------------------------------------------------
// Integer comparisons at the boundaries.

#[test]
#[rustfmt::skip]
fn int_comparisons_at_boundaries() {
    let a = |n: i64| req("t", json!({"args": {"amount": n}}));
    for (o, below, at, above) in [
        ("<", true, false, false),
        ("<=", true, true, false),
        (">", false, false, true),
        (">=", false, true, true),
        ("==", false, true, false),
        ("!=", true, false, true),
    ] {
        check_cond(cmp("args.amount", o, 1000), a(999), below);
        check_cond(cmp("args.amount", o, 1000), a(1000), at);
        check_cond(cmp("args.amount", o, 1000), a(1001), above);
    }
    check_cond(cmp("args.amount", "<", 0), a(-1), true);
    check_cond(cmp("args.amount", ">=", i64::MAX), a(i64::MAX), true);
    check_cond(cmp("args.amount", "<=", i64::MIN), a(i64::MIN), true);
    check_cond(cmp("args.amount", ">", i64::MIN), a(i64::MIN), false);
    check_cond(is_in("args.amount", [1, 5, 10]), a(5), true);
    check_cond(is_in("args.amount", [1, 5, 10]), a(6), false);
    // A comparison of two fields.
    let two = Expr::Cmp { op: CmpOp::Lt, lhs: Term::Field("args.count".into()), rhs: Term::Field("args.amount".into()), ty: Type::Int };
    check_cond(two.clone(), req("t", json!({"args": {"amount": 5, "count": 4}})), true);
    check_cond(two.clone(), req("t", json!({"args": {"amount": 5, "count": 5}})), false);
    check_cond(two, req("t", json!({"args": {"amount": 5}})), false);
}

// ---------------------------------------------------------------------------
// Limits.

/// Runs `steps` (time, request, expected) in order against one store.
#[track_caller]
fn check_limits(policies: Vec<Policy>, steps: &[(u64, Value, &str)]) -> MemoryLimitStore {
    let ev = evaluator(DecisionKind::Allow, policies);
    let store = MemoryLimitStore::new();
    for (n, (now, request, expect)) in steps.iter().enumerate() {
        let r = ev.decode(request).unwrap();
        let out = ev.evaluate(&r, *now, &store).unwrap();
        assert_eq!(render(&ev, &out), *expect, "step {n} at t={now}: {request}");
    }
    store
}

fn per_agent(max: u64, window: u64) -> Vec<Policy> {
    vec![pol_limits(
        "p",
        vec![],
        vec![limit(
            "l",
            tool("pay"),
            max,
            window,
            &["agent"],
            deny("RATE"),
        )],
    )]
}

fn agent(a: &str) -> Value {
    req("pay", json!({"agent": a}))
}

#[test]
#[rustfmt::skip]
fn limit_counts_within_a_window_and_does_not_count_the_exceeding_request() {
    let store = check_limits(per_agent(2, 60), &[
        (120, agent("a"), "allow"),
        (130, agent("a"), "allow"),
        (140, agent("a"), "deny p.l:RATE"),
        (179, agent("a"), "deny p.l:RATE"),
        // Next window: the count starts afresh.
        (180, agent("a"), "allow"),
        (181, agent("a"), "allow"),
        (182, agent("a"), "deny p.l:RATE"),
    ]);
    let entries = store.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].limit.as_str(), entries[0].key.as_str()), ("p.l", r#"["a"]"#));
    // The two denied requests were not counted.
    assert_eq!((entries[0].window, entries[0].count), (Window { start: 180, secs: 60 }, 2));
}

#[test]
#[rustfmt::skip]
fn limit_windows_align_to_the_epoch() {
    check_limits(per_agent(1, 100), &[
        (199, agent("a"), "allow"),
        (200, agent("a"), "allow"),
        (299, agent("a"), "deny p.l:RATE"),
        (300, agent("a"), "allow"),
    ]);
    assert_eq!(Window::containing(86_399, 86_400), Window { start: 0, secs: 86_400 });
    assert_eq!(Window::containing(86_400, 86_400), Window { start: 86_400, secs: 86_400 });
}

#[test]
#[rustfmt::skip]
fn limit_keys_are_independent() {
    check_limits(per_agent(1, 60), &[
        (0, agent("a"), "allow"),
        (1, agent("b"), "allow"),
        (2, agent("a"), "deny p.l:RATE"),
        (3, agent("b"), "deny p.l:RATE"),
        (4, agent("c"), "allow"),
    ]);
    // Two `by` fields.
    let two = vec![pol_limits("p", vec![], vec![limit("l", yes(), 1, 60, &["agent", "org"], deny("RATE"))])];
    check_limits(two, &[
        (0, req("t", json!({"agent": "a", "org": "x"})), "allow"),
        (0, req("t", json!({"agent": "a", "org": "y"})), "allow"),
        (0, req("t", json!({"agent": "a", "org": "x"})), "deny p.l:RATE"),
    ]);
}

#[test]
#[rustfmt::skip]
fn limit_counts_only_matching_requests() {
    check_limits(per_agent(1, 60), &[
        (0, req("other", json!({})), "allow"),
        (0, req("other", json!({})), "allow"),
        (0, agent("bot-1"), "allow"),
        (0, agent("bot-1"), "deny p.l:RATE"),
    ]);
}

#[test]
#[rustfmt::skip]
fn limit_with_an_absent_key_field_does_not_apply() {
    let by_body = vec![pol_limits("p", vec![], vec![limit("l", yes(), 1, 60, &["args.body"], deny("RATE"))])];
    let store = check_limits(by_body, &[
        (0, req("t", json!({})), "allow"),
        (0, req("t", json!({})), "allow"),
        (0, req("t", json!({"args": {"body": "x"}})), "allow"),
        (0, req("t", json!({"args": {"body": "x"}})), "deny p.l:RATE"),
    ]);
    assert_eq!(store.entries().unwrap().len(), 1);
}

#[test]
#[rustfmt::skip]
fn limit_max_zero_always_exceeds_and_exceed_can_be_any_effect() {
    check_limits(per_agent(0, 60), &[(0, agent("a"), "deny p.l:RATE")]);
    let soft = vec![pol_limits("p", vec![rule("ok", yes(), allow())], vec![limit("l", yes(), 1, 60, &["agent"], approve("SLOW"))])];
    check_limits(soft, &[
        (0, agent("a"), "allow p.ok:allow"),
        (0, agent("a"), "require_approval p.ok:allow p.l:SLOW"),
    ]);
}

#[test]
#[rustfmt::skip]
fn limits_do_not_count_requests_the_rules_deny() {
    let set = vec![pol_limits("p", vec![rule("no", cmp("args.amount", ">", 100), deny("BIG"))], vec![limit("l", yes(), 1, 60, &["agent"], deny("RATE"))])];
    let store = check_limits(set, &[
        (0, req("t", json!({"args": {"amount": 500}})), "deny p.no:BIG"),
        (0, req("t", json!({"args": {"amount": 600}})), "deny p.no:BIG"),
        // The denied ones spent nothing: this one is counted …
        (0, req("t", json!({})), "allow"),
        (0, req("t", json!({})), "deny p.l:RATE"),
        // … and a denied request over the limit still shows it, counting
        // nothing.
        (0, req("t", json!({"args": {"amount": 500}})), "deny p.no:BIG p.l:RATE"),
    ]);
    assert_eq!(store.entries().unwrap()[0].count, 1);
}

#[test]
fn dry_run_reads_counters_without_counting() {
    let ev = evaluator(DecisionKind::Allow, per_agent(1, 60));
    let store = MemoryLimitStore::new();
    let r = ev.decode(&agent("a")).unwrap();
    for _ in 0..3 {
        assert_eq!(
            ev.evaluate_dry_run(&r, 0, &store).unwrap().decision(),
            DecisionKind::Allow
        );
    }
    assert!(store.entries().unwrap().is_empty());
    assert_eq!(
        ev.evaluate(&r, 0, &store).unwrap().decision(),
        DecisionKind::Allow
    );
    assert_eq!(
        render(&ev, &ev.evaluate_dry_run(&r, 0, &store).unwrap()),
        "deny p.l:RATE"
    );
    assert_eq!(store.entries().unwrap()[0].count, 1);
}

#[test]
fn limit_state_lists_and_restores() {
    let store = check_limits(
        per_agent(5, 60),
        &[
            (10, agent("a"), "allow"),
            (10, agent("b\"q"), "allow"),
            (11, agent("a"), "allow"),
        ],
    );
    let entries = store.entries().unwrap();
    let listed: Vec<_> = entries
        .iter()
        .map(|e| (e.limit.as_str(), e.key.as_str(), e.window.start, e.count))
        .collect();
    assert_eq!(
        listed,
        [("p.l", r#"["a"]"#, 0, 2), ("p.l", r#"["b\"q"]"#, 0, 1)]
    );
    let restored = MemoryLimitStore::new();
    for e in &entries {
        restored.put(e).unwrap();
    }
    assert_eq!(restored.entries().unwrap(), entries);
    // An older window never resets a newer counter (racing clocks).
    let key = sluice::eval::state::LimitKey {
        limit: "p.l",
        key: r#"["a"]"#,
    };
    assert!(
        store
            .try_acquire(
                key,
                Window {
                    start: 60,
                    secs: 60
                },
                5
            )
            .unwrap()
    );
    assert!(
        store
            .try_acquire(key, Window { start: 0, secs: 60 }, 5)
            .unwrap()
    );
    assert_eq!(
        store
            .count(
                key,
                Window {
                    start: 60,
                    secs: 60
                }
            )
            .unwrap(),
        2
    );
    // Counters of ended windows can be dropped.
    store.expire(120);
    assert!(store.entries().unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Modifications.

/// Evaluates and returns the decision, the codes applied, and the modified
/// `args` as JSON.
#[track_caller]
fn check_modify(policies: Vec<Policy>, request: Value, expect: &str, args: Value) {
    let ev = evaluator(DecisionKind::Allow, policies);
    let r = ev.decode(&request).unwrap();
    let out = ev.evaluate(&r, 0, &MemoryLimitStore::new()).unwrap();
    let m = ev.apply_modifications(&r, &out);
    let applied: Vec<String> = m
        .applied
        .iter()
        .map(|a| format!("{}.{}:{}", a.policy, a.rule, a.field))
        .collect();
    let got = format!("{} [{}]", out.decision().as_str(), applied.join(" "));
    assert_eq!(got, expect, "{request}");
    assert_eq!(m.request.to_json(ev.schema())["args"], args, "{request}");
}

fn body(b: &str) -> Value {
    req("t", json!({"args": {"body": b}}))
}

fn one_modify(v: ModifyValue) -> Vec<Policy> {
    vec![pol(
        "p",
        vec![rule("m", yes(), modify("args.body", v, "M"))],
    )]
}

fn args_with(extra: Value) -> Value {
    let mut a = json!({"amount": 10, "country": "DE", "recipients": ["a@x.io"]});
    merge(&mut a, extra);
    a
}

#[test]
#[rustfmt::skip]
fn modify_transforms() {
    check_modify(one_modify(redact("args.body")), body("call 555"), "modify [p.m:args.body]", args_with(json!({"body": "[REDACTED]"})));
    check_modify(one_modify(redact_re("args.body", "[0-9]{3}-[0-9]{2}-[0-9]{4}")), body("ssn 123-45-6789 or 987-65-4321."), "modify [p.m:args.body]", args_with(json!({"body": "ssn [REDACTED] or [REDACTED]."})));
    check_modify(one_modify(redact_re("args.body", "[0-9]+")), body("no digits"), "modify [p.m:args.body]", args_with(json!({"body": "no digits"})));
    check_modify(one_modify(redact_re("args.body", "\\$x")), body("a $x b"), "modify [p.m:args.body]", args_with(json!({"body": "a [REDACTED] b"})));
    check_modify(one_modify(truncate("args.body", 3)), body("abcdef"), "modify [p.m:args.body]", args_with(json!({"body": "abc"})));
    check_modify(one_modify(truncate("args.body", 3)), body("日本語です"), "modify [p.m:args.body]", args_with(json!({"body": "日本語"})));
    check_modify(one_modify(truncate("args.body", 10)), body("short"), "modify [p.m:args.body]", args_with(json!({"body": "short"})));
    check_modify(one_modify(truncate("args.body", 0)), body("abc"), "modify [p.m:args.body]", args_with(json!({"body": ""})));
    check_modify(one_modify(lowercase("args.body")), body("HeLLo ÄÖ"), "modify [p.m:args.body]", args_with(json!({"body": "hello äö"})));
    check_modify(one_modify(set_lit("fixed")), body("x"), "modify [p.m:args.body]", args_with(json!({"body": "fixed"})));
    // Another field as the source.
    check_modify(one_modify(lowercase("args.subject")), req("t", json!({"args": {"body": "x", "subject": "HI"}})), "modify [p.m:args.body]", args_with(json!({"body": "hi", "subject": "HI"})));
    // Literals of other types.
    let amount = vec![pol("p", vec![rule("m", yes(), modify("args.amount", set_lit(0), "M"))])];
    check_modify(amount, req("t", json!({})), "modify [p.m:args.amount]", args_with(json!({"amount": 0})));
    // Set elements are transformed one by one.
    let tags = vec![pol("p", vec![rule("m", yes(), modify("args.tags", lowercase("args.tags"), "M"))])];
    check_modify(tags, req("t", json!({"args": {"tags": ["B", "a", "A"]}})), "modify [p.m:args.tags]", args_with(json!({"tags": ["a", "b"]})));
}

#[test]
#[rustfmt::skip]
fn modify_of_an_absent_field_leaves_it_absent() {
    check_modify(one_modify(redact("args.body")), req("t", json!({})), "modify []", args_with(json!({})));
    check_modify(one_modify(set_lit("x")), req("t", json!({})), "modify []", args_with(json!({})));
    // Present target, absent source.
    check_modify(one_modify(lowercase("args.subject")), body("KEEP"), "modify []", args_with(json!({"body": "KEEP"})));
}

#[test]
#[rustfmt::skip]
fn modifications_compose() {
    // Different fields compose.
    let two = vec![
        pol("a", vec![rule("m", yes(), modify("args.body", redact("args.body"), "A"))]),
        pol("b", vec![rule("m", yes(), modify("args.subject", lowercase("args.subject"), "B"))]),
    ];
    check_modify(two, req("t", json!({"args": {"body": "x", "subject": "Hi"}})), "modify [a.m:args.body b.m:args.subject]", args_with(json!({"body": "[REDACTED]", "subject": "hi"})));
    // The same field: applied in policy-name then declaration order, each
    // transforming the previous result.
    let chain = |first: ModifyValue, second: ModifyValue| vec![
        pol("b", vec![rule("second", yes(), modify("args.body", second, "B"))]),
        pol("a", vec![rule("first", yes(), modify("args.body", first, "A"))]),
    ];
    check_modify(chain(lowercase("args.body"), truncate("args.body", 3)), body("ABCDEF"), "modify [a.first:args.body b.second:args.body]", args_with(json!({"body": "abc"})));
    check_modify(chain(truncate("args.body", 3), redact_re("args.body", "b")), body("abcdef"), "modify [a.first:args.body b.second:args.body]", args_with(json!({"body": "a[REDACTED]c"})));
    check_modify(chain(redact("args.body"), lowercase("args.body")), body("X"), "modify [a.first:args.body b.second:args.body]", args_with(json!({"body": "[redacted]"})));
    let in_policy = vec![pol("p", vec![rule("z", yes(), modify("args.body", set_lit("Z"), "Z")), rule("a", yes(), modify("args.body", lowercase("args.body"), "A"))])];
    check_modify(in_policy, body("x"), "modify [p.z:args.body p.a:args.body]", args_with(json!({"body": "z"})));
    // Only matching rules modify.
    let cond = vec![pol("p", vec![rule("m", and([has("args.body"), matches("args.body", "[0-9]")]), modify("args.body", redact_re("args.body", "[0-9]"), "M"))])];
    check_modify(cond.clone(), body("a1b2"), "modify [p.m:args.body]", args_with(json!({"body": "a[REDACTED]b[REDACTED]"})));
    check_modify(cond, body("ab"), "allow []", args_with(json!({"body": "ab"})));
}

// ---------------------------------------------------------------------------
// Bad requests.

#[track_caller]
fn check_bad(request: Value, expect: &str) {
    let err = Request::from_json(&request, &schema()).unwrap_err();
    assert_eq!(err.to_string(), expect, "{request}");
}

#[test]
#[rustfmt::skip]
fn bad_requests_name_the_field() {
    check_bad(json!([1]), "the request must be a JSON object, found an array");
    check_bad(json!("x"), "the request must be a JSON object, found a string");
    check_bad(req("t", json!({"tool": null})), "missing required field `tool`");
    check_bad(req("t", json!({"args": {"amount": null}})), "missing required field `args.amount`");
    check_bad(req("t", json!({"args": null})), "missing required field `args.amount`");
    check_bad(req("t", json!({"args": 5})), "`args` must be an object, found an integer");
    check_bad(req("t", json!({"tool": 5})), "field `tool` must be a string, found an integer");
    check_bad(req("t", json!({"args": {"amount": "5"}})), "field `args.amount` must be an integer, found a string");
    check_bad(req("t", json!({"args": {"amount": 5.0}})), "field `args.amount` must be an integer, found a number with a fraction or exponent");
    check_bad(req("t", json!({"args": {"amount": 1.5}})), "field `args.amount` must be an integer, found a number with a fraction or exponent");
    check_bad(req("t", json!({"args": {"amount": u64::MAX}})), "field `args.amount` must be an integer, found an integer out of range");
    let raw = |text: &str| req("t", json!({"args": {"amount": serde_json::from_str::<Value>(text).unwrap()}}));
    check_bad(raw("99999999999999999999"), "field `args.amount` must be an integer, found an integer out of range");
    check_bad(raw("-99999999999999999999"), "field `args.amount` must be an integer, found an integer out of range");
    check_bad(raw("1e3"), "field `args.amount` must be an integer, found a number with a fraction or exponent");
    let zero = Request::from_json(&raw("-0"), &schema()).unwrap();
    assert_eq!(zero.get_path(&schema(), "args.amount"), Some(&sluice::eval::request::FieldValue::Int(0)));
    check_bad(req("t", json!({"args": {"urgent": "yes"}})), "field `args.urgent` must be a boolean, found a string");
    check_bad(req("t", json!({"args": {"recipients": "a@x.io"}})), "field `args.recipients` must be an array of strings, found a string");
    check_bad(req("t", json!({"args": {"recipients": ["a", 1]}})), "field `args.recipients` must be an array of strings, found an array containing a number");
    check_bad(req("t", json!({"args": {"body": {}}})), "field `args.body` must be a string, found an object");
    check_bad(req("t", json!({"extra": 1})), "field `extra` is not in the schema");
    check_bad(req("t", json!({"args": {"amout": 1}})), "field `args.amout` is not in the schema");
    check_bad(req("t", json!({"args.amount": 1})), "field `args.amount` is not in the schema");
    check_bad(req("t", json!({"args": {"body": {"x": 1}}})), "field `args.body` must be a string, found an object");
}

#[test]
fn unknown_field_suggests_a_close_one() {
    let err = Request::from_json(&req("t", json!({"args": {"amout": 1}})), &schema()).unwrap_err();
    assert_eq!(err.field(), Some("args.amout"));
    let help = miette::Diagnostic::help(&err).map(|h| h.to_string());
    assert_eq!(help.as_deref(), Some("did you mean `args.amount`?"));
}

#[test]
fn requests_round_trip_to_json() {
    let s = schema();
    let input = req(
        "t",
        json!({"args": {"recipients": ["b", "a", "b"], "urgent": false, "body": null}}),
    );
    let r = Request::from_json(&input, &s).unwrap();
    assert_eq!(
        r.get_path(&s, "args.recipients"),
        Some(&FieldValue::set(["a", "b"]))
    );
    let back = r.to_json(&s);
    assert_eq!(
        back,
        json!({"agent": "bot-1", "args": {"amount": 10, "country": "DE", "recipients": ["a", "b"], "urgent": false}, "org": "acme", "session": "s-1", "tool": "t"})
    );
    assert_eq!(Request::from_json(&back, &s).unwrap(), r);
    // Built field by field, type-checked.
    let mut built = Request::empty(&s);
    assert!(
        built
            .set(&s, "args.amount", Some(FieldValue::Str("x".into())))
            .is_err()
    );
    assert!(built.set(&s, "args.nope", None).is_err());
    built
        .set(&s, "tool", Some(FieldValue::Str("t".into())))
        .unwrap();
    assert_eq!(built.to_json(&s), json!({"tool": "t"}));
}

#[test]
fn a_request_of_another_schema_is_refused() {
    let ev = evaluator(DecisionKind::Deny, vec![]);
    let mut other = schema();
    other.fields.retain(|f| f.path != "args.count");
    let r = Request::from_json(&req("t", json!({})), &other).unwrap();
    assert!(ev.evaluate(&r, 0, &MemoryLimitStore::new()).is_err());
}

// ---------------------------------------------------------------------------
// The response document.

#[test]
fn response_document() {
    let ev = evaluator(
        DecisionKind::Deny,
        vec![
            pol(
                "mail",
                vec![rule(
                    "pii",
                    has("args.body"),
                    modify("args.body", redact_re("args.body", "[0-9]+"), "PII"),
                )],
            ),
            pol(
                "pay",
                vec![
                    rule(
                        "big",
                        cmp("args.amount", ">", 1000),
                        approve("APPROVAL_REQUIRED"),
                    ),
                    rule("ok", yes(), allow()),
                ],
            ),
        ],
    );
    let store = MemoryLimitStore::new();
    let cx = ResponseContext {
        approval_id: Some("ap-17"),
        cohort: Some("candidate"),
        stage: Some("canary"),
        audit: false,
    };
    let respond = |request: Value| {
        let r = ev.decode(&request).unwrap();
        let out = ev.evaluate(&r, 0, &store).unwrap();
        serde_json::to_value(ev.respond(&r, &out, &cx)).unwrap()
    };
    let hash = ev.hash().to_string();
    assert_eq!(
        respond(req("t", json!({"args": {"amount": 2500}}))),
        json!({
        "decision": "require_approval", "approval_id": "ap-17",
        "reasons": [
            {"policy": "pay", "version": "1.0.0", "rule": "big", "effect": "require_approval", "code": "APPROVAL_REQUIRED", "text": "APPROVAL_REQUIRED text", "group": "finance", "via": "approvals.request"},
            {"policy": "pay", "version": "1.0.0", "rule": "ok", "effect": "allow"}],
        "artifact": hash, "cohort": "candidate", "stage": "canary", "audit": false})
    );
    assert_eq!(
        respond(req("t", json!({"args": {"body": "call 555 1234"}}))),
        json!({
        "decision": "modify",
        "reasons": [
            {"policy": "mail", "version": "1.0.0", "rule": "pii", "effect": "modify", "code": "PII", "text": "PII text"},
            {"policy": "pay", "version": "1.0.0", "rule": "ok", "effect": "allow"}],
        "artifact": hash, "cohort": "candidate", "stage": "canary", "audit": false,
        "modifications": [{"policy": "mail", "rule": "pii", "field": "args.body", "code": "PII"}],
        "request": req("t", json!({"args": {"body": "call [REDACTED] [REDACTED]"}}))})
    );
    // No approval id unless approval is required.
    let v = respond(req("t", json!({})));
    assert_eq!(v["decision"], "allow");
    assert!(v.get("approval_id").is_none() && v.get("request").is_none());
}

#[test]
fn response_marks_limits_and_round_trips() {
    let ev = evaluator(DecisionKind::Allow, per_agent(0, 60));
    let r = ev.decode(&agent("a")).unwrap();
    let out = ev.evaluate(&r, 0, &MemoryLimitStore::new()).unwrap();
    let resp = ev.respond(
        &r,
        &out,
        &ResponseContext {
            audit: true,
            ..Default::default()
        },
    );
    let v = serde_json::to_value(&resp).unwrap();
    assert_eq!(v["reasons"][0]["limit"], true);
    assert_eq!(v["audit"], true);
    assert_eq!(
        serde_json::from_value::<sluice::api::evaluate::EvalResponse>(v).unwrap(),
        resp
    );
}

#[test]
fn evaluator_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Evaluator>();
    assert_send_sync::<MemoryLimitStore>();
    // Concurrent evaluation against one store counts exactly `max`.
    let ev = evaluator(DecisionKind::Allow, per_agent(100, 60));
    let store = MemoryLimitStore::new();
    let r = ev.decode(&agent("a")).unwrap();
    let denied: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..50)
                        .filter(|_| {
                            ev.evaluate(&r, 5, &store).unwrap().decision() == DecisionKind::Deny
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(denied, 300);
    assert_eq!(store.entries().unwrap()[0].count, 100);
}

// ---------------------------------------------------------------------------
// The tool index.

#[test]
#[rustfmt::skip]
fn tool_index_derivation() {
    // (condition, tool, matched) for conditions the index must keep sound.
    let cases: Vec<(Expr, &str, bool)> = vec![
        (tool("a"), "a", true),
        (tool("a"), "b", false),
        (is_in("tool", ["a", "b"]), "b", true),
        (is_in("tool", ["a", "b"]), "c", false),
        (not(tool("a")), "b", true),
        (not(tool("a")), "a", false),
        (cmp("tool", "!=", "a"), "b", true),
        (not(cmp("tool", "!=", "a")), "a", true),
        (not(cmp("tool", "!=", "a")), "b", false),
        (or([tool("a"), tool("b")]), "b", true),
        (or([tool("a"), cmp("args.amount", ">", 0)]), "z", true),
        (and([tool("a"), tool("b")]), "a", false),
        (and([is_in("tool", ["a", "b"]), not(tool("a"))]), "b", true),
        (not(or([tool("a"), tool("b")])), "c", true),
        (not(and([cmp("tool", "!=", "a"), cmp("tool", "!=", "b")])), "b", true),
        (not(and([cmp("tool", "!=", "a"), cmp("tool", "!=", "b")])), "c", false),
        (Expr::Const(false), "a", false),
        (or(vec![]), "a", false),
        (and(vec![]), "a", true),
        (starts("tool", "pay"), "payments", true),
    ];
    for (n, (when, t, matched)) in cases.into_iter().enumerate() {
        let ev = evaluator(DecisionKind::Allow, vec![pol("p", vec![rule("r", when.clone(), deny("HIT"))])]);
        let r = ev.decode(&req(t, json!({}))).unwrap();
        let out = ev.evaluate(&r, 0, &MemoryLimitStore::new()).unwrap();
        assert_eq!(!out.is_default(), matched, "case {n}: {when:?} on {t}");
    }
}

#[test]
fn a_request_without_a_tool_examines_every_rule() {
    let ev = evaluator(
        DecisionKind::Allow,
        vec![pol(
            "p",
            vec![
                rule("eq", tool("a"), deny("EQ")),
                rule("not_eq", not(tool("a")), deny("NOT_EQ")),
                rule("not_ne", not(cmp("tool", "!=", "a")), deny("NOT_NE")),
                rule("any", cmp("args.amount", ">", 0), deny("ANY")),
            ],
        )],
    );
    let s = ev.schema().clone();
    let mut r = Request::empty(&s);
    r.set(&s, "args.amount", Some(FieldValue::Int(1))).unwrap();
    let out = ev.evaluate(&r, 0, &MemoryLimitStore::new()).unwrap();
    // Without a tool every `tool` atom is false, so both negations hold.
    assert_eq!(
        render(&ev, &out),
        "deny p.not_eq:NOT_EQ p.not_ne:NOT_NE p.any:ANY"
    );
    assert_eq!(out.examined(), 4);
}

/// 1,000 policies × 10 rules over 500 tools, plus a few wildcard rules.
pub(crate) fn big_set() -> Vec<Policy> {
    let mut policies = Vec::new();
    for p in 0..1000 {
        let mut rules = Vec::new();
        for r in 0..10 {
            let t = format!("tool.{}", (p * 7 + r * 13) % 500);
            let when = match r % 5 {
                0 => and([tool(&t), cmp("args.amount", ">", 1000 + r as i64)]),
                1 => and([tool(&t), is_in("args.country", ["KP", "IR", "SY"])]),
                2 => and([
                    is_in("tool", [t.as_str(), "tool.shared"]),
                    has("args.body"),
                    matches("args.body", "[0-9]{3}-[0-9]{2}"),
                ]),
                3 => and([tool(&t), set_contains("args.recipients", "ceo@x.io")]),
                _ => and([
                    tool(&t),
                    not(truthy("args.urgent")),
                    cmp("args.amount", "<=", 50),
                ]),
            };
            let effect = match r % 4 {
                0 => deny("D"),
                1 => approve("A"),
                2 => modify("args.body", redact("args.body"), "M"),
                _ => allow(),
            };
            rules.push(rule(&format!("r{r}"), when, effect));
        }
        if p % 250 == 0 {
            rules.push(rule(
                "wild",
                cmp("args.amount", ">", 1_000_000),
                deny("HUGE"),
            ));
        }
        policies.push(pol(&format!("p{p:04}"), rules));
    }
    policies
}

#[test]
fn tool_index_examines_tens_of_rules_in_ten_thousand() {
    let ev = evaluator(DecisionKind::Deny, big_set());
    assert!(ev.len() > 10_000);
    let r = ev
        .decode(&req(
            "tool.42",
            json!({"args": {"amount": 5000, "country": "IR"}}),
        ))
        .unwrap();
    let out = ev.evaluate(&r, 0, &MemoryLimitStore::new()).unwrap();
    assert!(out.examined() < 60, "examined {}", out.examined());
    assert_eq!(ev.candidate_count(Some("tool.42")), out.examined());
    assert_eq!(ev.candidate_count(Some("unknown")), 4);
    assert_eq!(ev.candidate_count(None), ev.len());
    let scan = ev
        .evaluate_scan(&r, 0, &MemoryLimitStore::new(), LimitMode::Count)
        .unwrap();
    assert_eq!(render(&ev, &out), render(&ev, &scan));
    assert_eq!(scan.examined(), ev.len());
}

// ---------------------------------------------------------------------------
// Property: index = scan = an independent reference interpreter.

mod reference {
    //! A direct reading of SPEC §2 over the IR and the JSON request, sharing
    //! no code with the evaluator.

    use serde_json::Value;
    use sluice::model::ir::{CmpOp, DecisionKind, Effect, Expr, Literal, Policy, Term};

    fn get<'a>(req: &'a Value, path: &str) -> Option<&'a Value> {
        let v = path.split('.').try_fold(req, |v, k| v.get(k))?;
        (!v.is_null()).then_some(v)
    }

    fn lit(l: &Literal) -> Value {
        match l {
            Literal::Int(i) => Value::from(*i),
            Literal::Str(s) => Value::from(s.as_str()),
            Literal::Bool(b) => Value::from(*b),
        }
    }

    fn term(req: &Value, t: &Term) -> Option<Value> {
        match t {
            Term::Field(f) => get(req, f).cloned(),
            Term::Len(f) => match get(req, f)? {
                Value::String(s) => Some(Value::from(s.chars().count())),
                Value::Array(a) => {
                    let mut a = a.clone();
                    a.sort_by_key(|v| v.to_string());
                    a.dedup();
                    Some(Value::from(a.len()))
                }
                _ => None,
            },
            Term::Lit(l) => Some(lit(l)),
        }
    }

    fn s<'a>(req: &'a Value, f: &str) -> Option<&'a str> {
        get(req, f)?.as_str()
    }

    pub fn eval(e: &Expr, req: &Value) -> bool {
        match e {
            Expr::Const(b) => *b,
            Expr::And(xs) => xs.iter().all(|x| eval(x, req)),
            Expr::Or(xs) => xs.iter().any(|x| eval(x, req)),
            Expr::Not(x) => !eval(x, req),
            Expr::Has(f) => get(req, f).is_some(),
            Expr::Truthy(f) => get(req, f) == Some(&Value::Bool(true)),
            Expr::Cmp { op, lhs, rhs, .. } => {
                let (Some(l), Some(r)) = (term(req, lhs), term(req, rhs)) else {
                    return false;
                };
                let ord = match (&l, &r) {
                    (Value::Number(a), Value::Number(b)) => a.as_i64().cmp(&b.as_i64()),
                    (Value::String(a), Value::String(b)) => a.cmp(b),
                    (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
                    _ => return false,
                };
                match op {
                    CmpOp::Eq => ord.is_eq(),
                    CmpOp::Ne => ord.is_ne(),
                    CmpOp::Lt => ord.is_lt(),
                    CmpOp::Le => ord.is_le(),
                    CmpOp::Gt => ord.is_gt(),
                    CmpOp::Ge => ord.is_ge(),
                }
            }
            Expr::In { lhs, values } => {
                term(req, lhs).is_some_and(|v| values.iter().any(|l| lit(l) == v))
            }
            Expr::Contains { field, value } => match get(req, field) {
                Some(Value::String(x)) => x.contains(value.as_str()),
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(value)),
                _ => false,
            },
            Expr::SetContains { field, value } => get(req, field)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(value))),
            Expr::StartsWith { field, value } => {
                s(req, field).is_some_and(|x| x.starts_with(value.as_str()))
            }
            Expr::EndsWith { field, value } => {
                s(req, field).is_some_and(|x| x.ends_with(value.as_str()))
            }
            Expr::Matches { field, pattern } => {
                s(req, field).is_some_and(|x| regex::Regex::new(pattern).unwrap().is_match(x))
            }
        }
    }

    /// `decision policy.rule:CODE …` for rules only (no limits).
    pub fn decide(default: DecisionKind, policies: &[Policy], req: &Value) -> String {
        let mut sorted: Vec<&Policy> = policies.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut decision: Option<DecisionKind> = None;
        let mut out = String::new();
        for p in sorted {
            for r in &p.rules {
                if eval(&r.when, req) {
                    let k = r.effect.kind();
                    decision = Some(decision.map_or(k, |d| d.max(k)));
                    let code = match &r.effect {
                        Effect::Allow => "allow",
                        Effect::Deny { code, .. }
                        | Effect::RequireApproval { code, .. }
                        | Effect::Modify { code, .. } => code,
                    };
                    out.push_str(&format!(" {}.{}:{}", p.name, r.name, code));
                }
            }
        }
        format!("{}{}", decision.unwrap_or(default).as_str(), out)
    }
}

mod property {
    use super::*;
    use proptest::prelude::*;

    const TOOLS: [&str; 5] = ["a", "b", "c", "d", "e"];

    fn arb_tool() -> impl Strategy<Value = String> {
        prop::sample::select(TOOLS.to_vec()).prop_map(str::to_string)
    }

    fn arb_atom() -> impl Strategy<Value = Expr> {
        prop_oneof![
            arb_tool().prop_map(|t| tool(&t)),
            arb_tool().prop_map(|t| cmp("tool", "!=", t.as_str())),
            prop::collection::vec(arb_tool(), 0..3)
                .prop_map(|ts| is_in("tool", ts.iter().map(String::as_str))),
            (
                prop::sample::select(vec!["<", "<=", ">", ">=", "==", "!="]),
                -2i64..3
            )
                .prop_map(|(o, n)| cmp("args.amount", o, n)),
            (prop::sample::select(vec!["<", ">="]), 0i64..3).prop_map(|(o, n)| cmp(
                "args.count",
                o,
                n
            )),
            prop::sample::select(vec!["DE", "IR"]).prop_map(|c| is_in("args.country", [c, "KP"])),
            Just(has("args.body")),
            Just(contains("args.body", "x")),
            Just(matches("args.body", "^x")),
            Just(truthy("args.urgent")),
            Just(set_contains("args.tags", "t")),
            (0i64..3).prop_map(|n| len("args.tags", ">=", n)),
            any::<bool>().prop_map(Expr::Const),
        ]
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        arb_atom().prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Expr::And),
                prop::collection::vec(inner.clone(), 0..3).prop_map(Expr::Or),
                inner.prop_map(|x| Expr::Not(Box::new(x))),
            ]
        })
    }

    fn arb_effect() -> impl Strategy<Value = Effect> {
        prop_oneof![
            Just(allow()),
            Just(deny("D")),
            Just(approve("A")),
            Just(modify("args.body", redact("args.body"), "M"))
        ]
    }

    fn arb_policies() -> impl Strategy<Value = Vec<Policy>> {
        prop::collection::vec(
            prop::collection::vec((arb_expr(), arb_effect()), 0..5),
            0..5,
        )
        .prop_map(|ps| {
            ps.into_iter()
                .enumerate()
                // Names in reverse so that the evaluator must sort.
                .map(|(i, rs)| {
                    pol(
                        &format!("p{}", 9 - i),
                        rs.into_iter()
                            .enumerate()
                            .map(|(j, (w, e))| rule(&format!("r{j}"), w, e))
                            .collect(),
                    )
                })
                .collect()
        })
    }

    fn arb_request() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["a", "b", "c", "z"]),
            -2i64..3,
            prop::option::of(0i64..3),
            prop::sample::select(vec!["DE", "IR"]),
            prop::option::of(prop::sample::select(vec!["", "x", "yx", "xy"])),
            prop::option::of(any::<bool>()),
            prop::option::of(prop::collection::vec(prop::sample::select(vec!["t", "u"]), 0..3)),
        )
            .prop_map(|(t, amount, count, country, body, urgent, tags)| {
                req(t, json!({"args": {"amount": amount, "count": count, "country": country, "body": body, "urgent": urgent, "tags": tags}}))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn index_scan_and_reference_agree(policies in arb_policies(), requests in prop::collection::vec(arb_request(), 1..6)) {
            let ev = evaluator(DecisionKind::Deny, policies.clone());
            let store = MemoryLimitStore::new();
            for request in &requests {
                let r = ev.decode(request).unwrap();
                let indexed = render(&ev, &ev.evaluate(&r, 0, &store).unwrap());
                let scan = render(&ev, &ev.evaluate_scan(&r, 0, &store, LimitMode::Count).unwrap());
                let expected = reference::decide(DecisionKind::Deny, &policies, request);
                prop_assert_eq!(&indexed, &scan, "index vs scan for {}", request);
                prop_assert_eq!(&indexed, &expected, "evaluator vs reference for {}", request);
            }
        }
    }
}
