//! `governance::observes_security`: an observe scope (`[governance] observe`
//! of `sluice.toml`, SPEC §9) that covers a `security`-tier policy, whose
//! denials in the scope would then be answered `allow`. Pure: no I/O, no
//! solver.
//!
//! A rule is out of the scope when its condition cannot hold for any request
//! the scope selects, as its syntax shows: a conjunct that compares a scope
//! field with a value the scope leaves out (`org == "acme"` against
//! `observe = { org = ["newco"] }`), a `!=` of the scope's only value, an
//! `in` list that shares no value with the scope. Every other rule or limit
//! may decide a request of the scope, so the reading errs on the side of
//! warning: a policy is reported when any of its rules or limits may match.

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
/// the scope's values (as its syntax shows; `false` when unsure).
fn excludes(e: &Expr, scope: &BTreeMap<String, Vec<Literal>>) -> bool {
    let values = |t: &Term| match t {
        Term::Field(f) => scope.get(f),
        _ => None,
    };
    match e {
        Expr::Const(b) => !b,
        Expr::And(items) => items.iter().any(|i| excludes(i, scope)),
        Expr::Or(items) => items.iter().all(|i| excludes(i, scope)),
        Expr::Cmp { op, lhs, rhs, .. } => {
            let (allowed, lit) = match (lhs, rhs) {
                (f, Term::Lit(l)) | (Term::Lit(l), f) => match values(f) {
                    Some(v) => (v, l),
                    None => return false,
                },
                _ => return false,
            };
            match op {
                CmpOp::Eq => !allowed.contains(lit),
                CmpOp::Ne => allowed.iter().all(|a| a == lit),
                _ => false,
            }
        }
        Expr::In { lhs, values: list } => match values(lhs) {
            Some(allowed) => !list.iter().any(|l| allowed.contains(l)),
            None => false,
        },
        _ => false,
    }
}
