//! State checks: what a change does to an engine's live state (limit
//! counters, requests waiting for approval). Pure: the live state is already
//! read (`--state FILE` or `GET /v1/state`); waiting requests are evaluated
//! with the real evaluator over the head artifact, against an in-memory copy
//! of the live counters, without counting.
//!
//! "Before" is the live state, and the base revision's set when there is one.
//! A counter is live when its count is above zero and its window has not
//! ended at the state's `time` (every counter is live when `time` is 0).
//!
//! - `state::limit_removed` (error): a limit with live counters is not in the
//!   head set (counters belong to the qualified name `policy.limit`, so a
//!   rename is a removal). With a base, only limits the base had.
//! - `state::window_change` (warning): a limit with live counters whose head
//!   window differs from the base's (with a base) or from the window its live
//!   counters count in (without one): the counters are reset.
//! - `state::limit_decrease` (error): a limit whose window is unchanged, with
//!   no `on_decrease`, and keys whose live count is above the head `max` —
//!   with a base, only when the head `max` is below the base's. Says how many
//!   keys exceed, by how much at most and in all.
//! - `state::pending_approvals` (error): requests waiting in the queue of
//!   `policy.rule` that would no longer need approval from that rule at head
//!   (the rule is gone, the request no longer decodes with the head schema,
//!   or the evaluator's reasons for it no longer hold `require_approval` from
//!   that rule). With a base, queues of rules (or limits) whose compiled
//!   content is the same at base and head are not reported, nor queues of
//!   rules neither revision has.

use std::collections::BTreeMap;

use crate::api::approvals::Approval;
use crate::api::state::LiveState;
use crate::diagnostic::{Code, Finding, Label};
use crate::eval::Evaluator;
use crate::eval::state::{CounterEntry, LimitStore as _, MemoryLimitStore};
use crate::model::ir::{self, DecisionKind};
use crate::parse::ast;
use crate::source::{SourceFile, Span};

/// What the state checks read.
#[derive(Debug, Clone, Copy)]
pub struct LiveInputs<'a> {
    pub state: &'a LiveState,
    /// The head set, checked clean.
    pub head: &'a ir::PolicySet,
    /// The head's parsed policies, for locations.
    pub head_parsed: &'a [(SourceFile, ast::Policy)],
    /// The evaluator over the head artifact.
    pub evaluator: &'a Evaluator,
    /// The base revision's set, when `--base` is given and it checks clean.
    pub base: Option<&'a ir::PolicySet>,
    /// The name of the project file, where findings about policies that are
    /// gone altogether point.
    pub project_file: &'a str,
}

/// Every `state::` finding, sorted by location.
pub fn check_live(inp: &LiveInputs<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let time = inp.state.time;
    let mut counters: BTreeMap<&str, Vec<&CounterEntry>> = BTreeMap::new();
    for c in &inp.state.counters {
        if c.count > 0 && (time == 0 || c.window.end() > time) {
            counters.entry(c.limit.as_str()).or_default().push(c);
        }
    }
    for (id, live) in &counters {
        findings.extend(limit_finding(inp, id, live));
    }
    let mut queues: BTreeMap<(&str, &str), Vec<&Approval>> = BTreeMap::new();
    // A decided approval waits for nothing: only the waiting ones count.
    for a in inp.state.approvals.iter().filter(|a| a.is_pending()) {
        queues
            .entry((a.policy.as_str(), a.rule.as_str()))
            .or_default()
            .push(a);
    }
    if !queues.is_empty() {
        let store = MemoryLimitStore::new();
        for c in &inp.state.counters {
            // An in-memory store cannot fail.
            let _ = store.put(c);
        }
        for ((policy, rule), waiting) in &queues {
            findings.extend(approval_finding(inp, &store, policy, rule, waiting));
        }
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    findings
}

/// A limit of a set by its qualified name `policy.limit`.
fn find_limit<'a>(set: &'a ir::PolicySet, id: &str) -> Option<&'a ir::Limit> {
    let (policy, limit) = id.split_once('.')?;
    set.get(policy)?.limits.iter().find(|l| l.name == limit)
}

/// The rule or limit `name` of `policy`, as JSON (its compiled content).
fn item_content(set: &ir::PolicySet, policy: &str, name: &str) -> Option<serde_json::Value> {
    let p = set.get(policy)?;
    let rule = p
        .rules
        .iter()
        .find(|r| r.name == name)
        .map(serde_json::to_value);
    let limit = || {
        p.limits
            .iter()
            .find(|l| l.name == name)
            .map(serde_json::to_value)
    };
    rule.or_else(limit).and_then(Result::ok)
}

fn parsed_policy<'a>(
    parsed: &'a [(SourceFile, ast::Policy)],
    policy: &str,
) -> Option<&'a (SourceFile, ast::Policy)> {
    let mut found: Vec<&(SourceFile, ast::Policy)> = parsed
        .iter()
        .filter(|(_, p)| p.name.node == policy)
        .collect();
    found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    found.into_iter().next()
}

fn parsed_limit<'a>(
    parsed: &'a [(SourceFile, ast::Policy)],
    policy: &str,
    limit: &str,
) -> Option<(&'a SourceFile, &'a ast::Limit)> {
    let (file, p) = parsed_policy(parsed, policy)?;
    p.items.iter().find_map(|i| match i {
        ast::Item::Limit(l) if l.name.node == limit => Some((file, l)),
        _ => None,
    })
}

/// Where a finding about something that is no longer at head points: the
/// policy's name when the policy is still there, else the project file.
fn gone_label(inp: &LiveInputs<'_>, policy: &str, message: String) -> Label {
    match parsed_policy(inp.head_parsed, policy) {
        Some((file, p)) => Label::new(&file.name, p.name.span)
            .with_message(message)
            .in_rule(policy, None),
        None => Label::new(inp.project_file, Span::new(0, 0)).with_message(message),
    }
}

/// A window length as written in a policy: `90s`, `5m`, `2h`, `1d`.
fn window_text(secs: u64) -> String {
    for (unit, n) in [('d', 86_400), ('h', 3_600), ('m', 60)] {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// A time in seconds since the epoch, as RFC 3339.
fn when(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn limit_finding(inp: &LiveInputs<'_>, id: &str, live: &[&CounterEntry]) -> Option<Finding> {
    let (policy, name) = id.split_once('.').unwrap_or((id, ""));
    let counted: u64 = live.iter().map(|c| c.count).sum();
    let window_end = live.iter().map(|c| c.window.end()).max().unwrap_or(0);
    let keys = plural(live.len(), "key", "keys");
    let base = inp.base.map(|b| find_limit(b, id));
    let Some(head) = find_limit(inp.head, id) else {
        // With a base, a limit the base did not have either is not removed by
        // this change (the engine runs something older).
        if matches!(base, Some(None)) {
            return None;
        }
        return Some(
            Finding::new(
                Code::StateLimitRemoved,
                format!(
                    "limit `{id}` is removed while it has live counters: {keys}, {} counted in the current window",
                    plural(usize::try_from(counted).unwrap_or(usize::MAX), "request", "requests")
                ),
            )
            .with_label(gone_label(inp, policy, format!("limit `{name}` is no longer here")))
            .with_help(format!(
                "its counters are dropped when the change rolls out; counters belong to names, so a \
                 renamed limit starts from zero: keep the limit (under the same name) until its \
                 window ends ({}), or accept losing the counts",
                when(window_end)
            )),
        );
    };
    let located = parsed_limit(inp.head_parsed, policy, name);
    let label = |span: Option<Span>, message: String| match (located, span) {
        (Some((file, _)), Some(span)) => Label::new(&file.name, span)
            .with_message(message)
            .in_rule(policy, Some(name.to_string())),
        _ => gone_label(inp, policy, message),
    };
    let before_window = match base {
        Some(Some(b)) => Some(b.window_secs),
        Some(None) => None,
        None => live
            .iter()
            .map(|c| c.window.secs)
            .find(|s| *s != head.window_secs),
    };
    if let Some(before) = before_window.filter(|b| *b != head.window_secs) {
        let (from, to) = (window_text(before), window_text(head.window_secs));
        return Some(
            Finding::new(
                Code::StateWindowChange,
                format!(
                    "limit `{id}` changes its window from {from} to {to}: its live counters are reset ({keys}, {} counted)",
                    plural(usize::try_from(counted).unwrap_or(usize::MAX), "request", "requests")
                ),
            )
            .with_label(label(
                located.map(|(_, l)| l.window.span),
                format!("was {from}"),
            ))
            .with_help(format!(
                "every key starts counting afresh in a {to} window when the change rolls out, so up \
                 to {} more requests per key can pass at once",
                head.max
            )),
        );
    }
    if head.on_decrease.is_some() {
        return None;
    }
    let before_max = match base {
        Some(Some(b)) if b.max <= head.max => return None,
        Some(Some(b)) => Some(b.max),
        Some(None) => return None,
        None => None,
    };
    let mut over: Vec<&&CounterEntry> = live
        .iter()
        .filter(|c| c.window.secs == head.window_secs && c.count > head.max)
        .collect();
    if over.is_empty() {
        return None;
    }
    over.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    let worst = over.first()?;
    let excess: u64 = over.iter().map(|c| c.count - head.max).sum();
    let lowered = match before_max {
        Some(b) => format!("lowers `max` from {b} to {}", head.max),
        None => format!("has `max {}`", head.max),
    };
    Some(
        Finding::new(
            Code::StateLimitDecrease,
            format!(
                "limit `{id}` {lowered}, below live counters: {} above it, by up to {} (key `{}` at {}), {} over in all",
                plural(over.len(), "key is", "keys are"),
                worst.count - head.max,
                worst.key,
                worst.count,
                excess
            ),
        )
        .with_label(label(
            located.map(|(_, l)| l.max.span),
            format!("{} counted more", plural(over.len(), "key has", "keys have")),
        ))
        .with_help(format!(
            "say how live counters migrate: add `on_decrease next_window` or `on_decrease freeze` \
             to the limit; without it these keys are refused at once, until their window ends ({})",
            when(window_end)
        )),
    )
}

fn approval_finding(
    inp: &LiveInputs<'_>,
    store: &MemoryLimitStore,
    policy: &str,
    rule: &str,
    waiting: &[&Approval],
) -> Option<Finding> {
    let head_item = item_content(inp.head, policy, rule);
    if let Some(base) = inp.base {
        let base_item = item_content(base, policy, rule);
        if base_item == head_item {
            // Unchanged (or absent from both): not this change's doing.
            return None;
        }
    }
    let qualified = format!("{policy}.{rule}");
    let group = waiting.first().map(|a| a.group.clone()).unwrap_or_default();
    let now = match inp.state.time {
        0 => waiting.iter().map(|a| a.created).max().unwrap_or(0),
        t => t,
    };
    // (approval, the head's decision for its request, and its reasons)
    let mut resolved: Vec<(&Approval, String, BTreeMap<String, String>)> = Vec::new();
    for a in waiting {
        if head_item.is_none() {
            resolved.push((a, "removed".to_string(), BTreeMap::new()));
            continue;
        }
        let req = match inp.evaluator.decode(&a.request) {
            Ok(r) => r,
            Err(e) => {
                resolved.push((a, format!("a bad request ({e})"), BTreeMap::new()));
                continue;
            }
        };
        let outcome = match inp.evaluator.evaluate_dry_run(&req, now, store) {
            Ok(o) => o,
            Err(e) => {
                resolved.push((a, format!("not evaluated ({e})"), BTreeMap::new()));
                continue;
            }
        };
        let mut decisions = BTreeMap::new();
        let mut still = false;
        for r in inp.evaluator.reasons(&outcome) {
            decisions.insert(
                format!("{}.{}", r.policy, r.rule),
                r.decision().as_str().to_string(),
            );
            still |= r.policy == policy
                && r.rule == rule
                && r.decision() == DecisionKind::RequireApproval;
        }
        if !still {
            decisions.insert("final".to_string(), outcome.decision().as_str().to_string());
            resolved.push((a, outcome.decision().as_str().to_string(), decisions));
        }
    }
    let first = resolved.first()?;
    let waiting_n = plural(waiting.len(), "request waits", "requests wait");
    let message = if head_item.is_none() {
        format!(
            "`{qualified}` is removed while {waiting_n} in its approval queue (group `{group}`): the change would resolve them"
        )
    } else {
        let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, d, _) in &resolved {
            *outcomes.entry(d.as_str()).or_default() += 1;
        }
        let how = outcomes
            .iter()
            .map(|(d, n)| format!("{n} {d}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "`{qualified}` no longer requires approval for {} of the {} in its queue (group `{group}`): at head they get {how}",
            resolved.len(),
            plural(waiting.len(), "waiting request", "waiting requests"),
        )
    };
    let ids: Vec<&str> = resolved.iter().map(|(a, _, _)| a.id.as_str()).collect();
    let shown = if ids.len() > 5 {
        format!(
            "{}, …",
            ids.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        )
    } else {
        ids.join(", ")
    };
    let at_head = parsed_policy(inp.head_parsed, policy).and_then(|(file, p)| {
        p.items
            .iter()
            .find(|i| i.name().node == rule)
            .map(|i| (file, i.name().span))
    });
    let label = match at_head {
        Some((file, span)) => Label::new(&file.name, span)
            .with_message(format!(
                "{} no longer covered",
                plural(resolved.len(), "waiting request is", "waiting requests are")
            ))
            .in_rule(policy, Some(rule.to_string())),
        None => gone_label(inp, policy, format!("`{rule}` is no longer here")),
    };
    let mut f = Finding::new(Code::StatePendingApprovals, message)
        .with_label(label)
        .with_help(format!(
            "approve or reject the waiting requests ({shown}) before this rolls out, or keep the \
             rule covering them until they are resolved"
        ));
    f.witness = Some(first.0.request.clone());
    if !first.2.is_empty() {
        f.witness_decisions = Some(first.2.clone());
    }
    Some(f)
}
