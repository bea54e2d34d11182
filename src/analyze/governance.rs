//! `governance::observes_security`: an observe scope (`[governance] observe`
//! of `sluice.toml`, SPEC §9) that covers a `security`-tier policy, whose
//! denials in the scope would then be answered `allow`. Pure: no I/O, no
//! solver.
//!
//! A rule is out of the scope when its condition cannot hold for any request
//! the scope selects, worked out from the scope's values alone: a conjunct
//! that tests a scope field and is false for every value the scope lists
//! (`org == "acme"` against `observe = { org = ["newco"] }`, a `!=` of the
//! scope's only value, an `in` list that shares no value with the scope,
//! `agent starts_with "quarantine-"` against `agent = ["crm-bot"]`, a regex
//! none of the values matches, the negation of a test all of them pass).
//! Every other rule or limit may decide a request of the scope, so the
//! reading errs on the side of warning: a policy is reported when any of
//! its rules or limits may match.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::diagnostic::{Code, Finding, Label};
use crate::model::governance::Governance;
use crate::model::ir::{CmpOp, Expr, Literal, PolicySet, Term, Tier};
use crate::source::{SourceFile, Span};

/// One warning per `security`-tier policy with a rule or limit the observe
/// scope may cover. `observe` is the span of the `observe` value in
/// `project_file` (the first label).
pub fn observes_security(
    project_file: &SourceFile,
    observe: Range<usize>,
    governance: &Governance,
    set: &PolicySet,
) -> Vec<Finding> {
    if governance.is_empty() {
        return Vec::new();
    }
    let scope = &governance.observe;
    let mut out = Vec::new();
    for policy in set.policies.iter().filter(|p| p.tier == Tier::Security) {
        let rules = policy.rules.iter().map(|r| (&r.name, &r.when, &r.origin));
        let limits = policy.limits.iter().map(|l| (&l.name, &l.when, &l.origin));
        let covered: Vec<_> = rules
            .chain(limits)
            .filter(|(_, when, _)| !excludes(when, scope))
            .collect();
        if covered.is_empty() {
            continue;
        }
        let names: Vec<String> = covered.iter().map(|(n, ..)| format!("`{n}`")).collect();
        let mut finding = Finding::new(
            Code::GovernanceObservesSecurity,
            format!(
                "the observe scope covers `{}`, a `security`-tier policy: its decisions there are answered `allow`",
                policy.name
            ),
        )
        .with_label(
            Label::new(
                project_file.name.clone(),
                Span::new(observe.start, observe.end),
            )
            .with_message("observed, not enforced"),
        );
        for (name, _, origin) in &covered {
            finding = finding.with_label(
                Label::new(origin.file.clone(), origin.span)
                    .with_message("a `security` rule this scope may match")
                    .in_rule(policy.name.clone(), Some((*name).clone())),
            );
        }
        out.push(finding.with_help(format!(
            "security policies stay enforced (fail closed) where it matters: narrow `observe` so that \
             {} cannot match it (e.g. a condition on a scope field with another value), or move \
             the scope to enforce by removing `observe`",
            if names.len() == 1 {
                format!("rule {}", names.join(""))
            } else {
                format!("the rules {}", names.join(", "))
            }
        )));
    }
    out
}

/// Whether `e` is false for every request whose scope fields hold one of
/// the scope's values (`false` when unsure).
fn excludes(e: &Expr, scope: &BTreeMap<String, Vec<Literal>>) -> bool {
    fixed(e, scope) == Some(false)
}

/// The value `e` has for every request of the scope, when the scope decides
/// it: a test of a scope field alone (a comparison with a literal, `in`,
/// `starts_with`, `ends_with`, `contains`, `matches`, `has`, a `bool` field)
/// is worked out for each of the field's scope values, and is fixed when
/// they all agree; `and`, `or` and `not` combine what is fixed (an `and`
/// with one conjunct fixed false is false whatever the others). `None`:
/// the request's other fields decide.
fn fixed(e: &Expr, scope: &BTreeMap<String, Vec<Literal>>) -> Option<bool> {
    // The test `f` of each scope value of `field`, when all agree.
    let each = |field: &str, f: &dyn Fn(&Literal) -> Option<bool>| -> Option<bool> {
        let values = scope.get(field)?;
        let mut got = values.iter().map(f);
        let first = got.next()??;
        got.all(|v| v == Some(first)).then_some(first)
    };
    let text = |l: &Literal| match l {
        Literal::Str(s) => Some(s.clone()),
        _ => None,
    };
    match e {
        Expr::Const(b) => Some(*b),
        Expr::And(items) => {
            let got: Vec<_> = items.iter().map(|i| fixed(i, scope)).collect();
            if got.contains(&Some(false)) {
                Some(false)
            } else if got.iter().all(|g| *g == Some(true)) {
                Some(true)
            } else {
                None
            }
        }
        Expr::Or(items) => {
            let got: Vec<_> = items.iter().map(|i| fixed(i, scope)).collect();
            if got.contains(&Some(true)) {
                Some(true)
            } else if got.iter().all(|g| *g == Some(false)) {
                Some(false)
            } else {
                None
            }
        }
        Expr::Not(inner) => fixed(inner, scope).map(|b| !b),
        // A request of the scope carries every scope field.
        Expr::Has(field) => scope.contains_key(field).then_some(true),
        Expr::Truthy(field) => each(field, &|l| match l {
            Literal::Bool(b) => Some(*b),
            _ => None,
        }),
        Expr::Cmp { op, lhs, rhs, .. } => {
            let (field, lit, flipped) = match (lhs, rhs) {
                (Term::Field(f), Term::Lit(l)) => (f, l, false),
                (Term::Lit(l), Term::Field(f)) => (f, l, true),
                _ => return None,
            };
            each(field, &|v| {
                let (a, b) = if flipped { (lit, v) } else { (v, lit) };
                match op {
                    CmpOp::Eq => Some(a == b),
                    CmpOp::Ne => Some(a != b),
                    _ => match (a, b) {
                        (Literal::Int(a), Literal::Int(b)) => Some(match op {
                            CmpOp::Lt => a < b,
                            CmpOp::Le => a <= b,
                            CmpOp::Gt => a > b,
                            _ => a >= b,
                        }),
                        _ => None,
                    },
                }
            })
        }
        Expr::In { lhs, values } => match lhs {
            Term::Field(f) => each(f, &|v| Some(values.contains(v))),
            _ => None,
        },
        Expr::Contains { field, value } => {
            each(field, &|v| text(v).map(|s| s.contains(value.as_str())))
        }
        Expr::StartsWith { field, value } => {
            each(field, &|v| text(v).map(|s| s.starts_with(value.as_str())))
        }
        Expr::EndsWith { field, value } => {
            each(field, &|v| text(v).map(|s| s.ends_with(value.as_str())))
        }
        Expr::Matches { field, pattern } => {
            let re = regex::Regex::new(pattern).ok()?;
            each(field, &|v| text(v).map(|s| re.is_match(&s)))
        }
        // A set field cannot be in a scope (string, int and bool only).
        Expr::SetContains { .. } => None,
    }
}
