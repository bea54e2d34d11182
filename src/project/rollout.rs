//! `[rollout]` of `sluice.toml`: the hash key, the stages in written order
//! with their gates, and the rollback triggers (SPEC §1, §6). Pure: no I/O.
//!
//! A stage's kind comes from its name: `replay` runs offline over the traces,
//! `shadow` evaluates the candidate beside stable on all traffic, and every
//! other stage is a split stage that enforces the candidate on `percent` of
//! the hash buckets. Keys that make no sense for a kind are errors.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::fields::Declared;
use super::read::{CODE, Cx, Key, Value, a_type, entries, leaves};
use crate::diagnostic::{Code, Finding};
use crate::model::ir::{Literal, Type};
use crate::model::plan::{Gates, RollbackTriggers, RolloutPlan, Stage, StageKind, Z95};

const ROLLOUT_KEYS: [&str; 3] = ["hash_key", "stage", "rollback"];
const ROLLBACK_KEYS: [&str; 3] = ["error_rate", "deny_rate_delta", "latency_p99_ms"];
const STAGE_KEYS: [&str; 13] = [
    "name",
    "percent",
    "match",
    "min_duration",
    "max_duration",
    "min_samples",
    "max_catastrophic",
    "max_false_positive_rate",
    "max_divergence",
    "max_error_rate",
    "max_deny_rate_delta",
    "max_latency_p99_delta_ms",
    "max_cost_ratio",
];

/// A stage waits at most this many times its `min_duration` when no
/// `max_duration` is given (SPEC §6).
const DEFAULT_MAX_FACTOR: u32 = 4;

/// Reads `[rollout]`; `header` is the span of the table.
pub(super) fn read(
    cx: &mut Cx<'_>,
    table: &DeTable<'_>,
    header: Range<usize>,
    declared: &Declared,
) -> Option<RolloutPlan> {
    let mut hash_key = None;
    let mut stages = Some(Vec::new());
    let mut stages_seen = false;
    let mut rollback = Some(RollbackTriggers::default());
    for (k, v) in entries(table) {
        match k.get_ref().as_ref() {
            "hash_key" => hash_key = read_hash_key(cx, v, declared),
            "stage" => {
                stages_seen = true;
                stages = read_stages(cx, v, declared);
            }
            "rollback" => rollback = read_rollback(cx, v),
            _ => cx.unknown_key(k, "in `[rollout]`", &ROLLOUT_KEYS),
        }
    }
    if !table.contains_key("hash_key") {
        cx.error(
            header.clone(),
            "no `hash_key`",
            "`[rollout]` has no `hash_key`",
            "name the request field that keeps canary assignment sticky, like `hash_key = \"session\"`",
        );
    }
    if !stages_seen {
        cx.error(
            header,
            "no stages",
            "`[rollout]` has no stages",
            "add stages in the order they run, each as `[[rollout.stage]]` with a `name`",
        );
    }
    Some(RolloutPlan {
        hash_key: hash_key?,
        stages: stages?,
        rollback: rollback?,
    })
}

fn read_hash_key(cx: &mut Cx<'_>, v: &Value<'_>, declared: &Declared) -> Option<String> {
    let key = cx.string(v, "`hash_key`", "hash_key = \"session\"")?;
    let Some(field) = declared.schema.get(key) else {
        if !declared.knows(key) {
            cx.error(
                v.span(),
                "not a field",
                format!("`hash_key` names `{key}`, which is not a field in `[schema]`"),
                unknown_field_help(key, declared),
            );
        }
        return None;
    };
    let mut ok = true;
    if field.optional {
        cx.error(
            v.span(),
            "optional field",
            format!("`hash_key` names `{key}`, an optional field"),
            "assignment is sticky only if every request has the field: name a required field",
        );
        ok = false;
    }
    if !matches!(field.ty, Type::Str | Type::Int) {
        cx.error(
            v.span(),
            format!("a `{}` field", field.ty.as_str()),
            format!("`hash_key` names `{key}`, a `{}` field", field.ty.as_str()),
            "hash buckets need a field of many values: name a `string` or `int` field",
        );
        ok = false;
    }
    ok.then(|| key.to_owned())
}

fn read_rollback(cx: &mut Cx<'_>, v: &Value<'_>) -> Option<RollbackTriggers> {
    let t = cx.table(v, "`rollout.rollback`", "[rollout.rollback]")?;
    let mut r = RollbackTriggers::default();
    let mut ok = true;
    for (k, v) in entries(t) {
        let what = format!("`{}` in `[rollout.rollback]`", k.get_ref());
        let good = match k.get_ref().as_ref() {
            "error_rate" => {
                r.error_rate = cx.rate(v, &what, "error_rate = 0.01");
                r.error_rate.is_some()
            }
            "deny_rate_delta" => {
                r.deny_rate_delta = cx.rate(v, &what, "deny_rate_delta = 0.15");
                r.deny_rate_delta.is_some()
            }
            "latency_p99_ms" => {
                r.latency_p99_ms = cx.positive(v, &what, "latency_p99_ms = 100");
                r.latency_p99_ms.is_some()
            }
            _ => {
                cx.unknown_key(k, "in `[rollout.rollback]`", &ROLLBACK_KEYS);
                false
            }
        };
        ok &= good;
    }
    ok.then_some(r)
}

/// The name of a stage and where it is written.
struct Named {
    name: String,
    span: Range<usize>,
}

fn read_stages(cx: &mut Cx<'_>, v: &Value<'_>, declared: &Declared) -> Option<Vec<Stage>> {
    let items = match v.get_ref() {
        DeValue::Array(items) => items,
        other => {
            cx.error(
                v.span(),
                "expected an array of tables",
                format!(
                    "`rollout.stage` must be an array of tables, not {}",
                    a_type(other)
                ),
                "write each stage as its own `[[rollout.stage]]` table, in the order they run",
            );
            return None;
        }
    };
    let mut stages = Vec::new();
    let mut ok = true;
    let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        let Some(t) = cx.table(item, "each `rollout.stage`", "[[rollout.stage]]") else {
            ok = false;
            continue;
        };
        let named = read_name(cx, t, item.span());
        if let Some(n) = &named {
            if let Some(first) = seen.get(&n.name) {
                let finding = Finding::new(CODE, format!("stage `{}` is defined twice", n.name))
                    .with_label(cx.label(n.span.clone(), "defined again here"))
                    .with_label(cx.label(first.clone(), "first defined here"))
                    .with_help("stage names are unique: rename or remove one of them");
                cx.push(finding);
                ok = false;
            } else {
                seen.insert(n.name.clone(), n.span.clone());
            }
            if n.name == "replay" && index > 0 {
                cx.error(
                    n.span.clone(),
                    "not the first stage",
                    "stage `replay` must come first",
                    "replay runs offline before any live stage: move it to the top of the plan",
                );
                ok = false;
            }
        }
        match read_stage(cx, t, item.span(), named, declared) {
            Some(s) => stages.push(s),
            None => ok = false,
        }
    }
    ok.then_some(stages)
}

/// Reads and checks the `name` of a stage; `None` after reporting.
fn read_name(cx: &mut Cx<'_>, t: &DeTable<'_>, header: Range<usize>) -> Option<Named> {
    let Some(v) = t.get("name") else {
        cx.error(
            header,
            "no `name`",
            "stage has no `name`",
            "give each stage a name, like `name = \"canary\"`; `replay` and `shadow` name the \
             offline and shadow stages, any other name a split stage",
        );
        return None;
    };
    let name = cx.string(v, "the stage `name`", "name = \"canary\"")?;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid {
        cx.error(
            v.span(),
            "invalid stage name",
            format!("invalid stage name `{name}`"),
            "a stage name starts with a lowercase letter, then lowercase letters, digits, `_` or `-`",
        );
        return None;
    }
    Some(Named {
        name: name.to_owned(),
        span: v.span(),
    })
}

/// The kind a stage has by its name.
fn kind_of(name: &str) -> StageKind {
    match name {
        "replay" => StageKind::Replay,
        "shadow" => StageKind::Shadow,
        _ => StageKind::Split,
    }
}

/// Whether a stage key applies to a kind of stage.
fn applies(key: &str, kind: StageKind) -> bool {
    use StageKind::{Replay, Shadow, Split};
    match key {
        "max_catastrophic" | "max_false_positive_rate" => kind == Replay,
        "percent" | "match" => kind == Split,
        "max_divergence" => kind == Shadow,
        "min_duration"
        | "max_duration"
        | "min_samples"
        | "max_error_rate"
        | "max_deny_rate_delta"
        | "max_latency_p99_delta_ms"
        | "max_cost_ratio" => matches!(kind, Shadow | Split),
        _ => true,
    }
}

/// Help for a key written on a stage it does not apply to.
fn where_applies(key: &str) -> String {
    let (place, why) = match key {
        "max_catastrophic" | "max_false_positive_rate" => (
            "the `replay` stage",
            "it counts trace cases with an expected decision, which only replay has",
        ),
        "percent" => (
            "split stages (any stage but `replay` and `shadow`)",
            "replay runs offline and shadow evaluates the candidate on all traffic without enforcing it",
        ),
        "match" => (
            "split stages (any stage but `replay` and `shadow`)",
            "it narrows the requests the candidate is enforced on",
        ),
        "max_divergence" => (
            "the `shadow` stage",
            "only shadow evaluates candidate and stable on the same requests",
        ),
        _ => (
            "live stages (`shadow` and split stages)",
            "the `replay` stage runs offline over the traces, with no traffic or time to measure",
        ),
    };
    format!("`{key}` applies to {place}: {why}")
}

fn read_stage(
    cx: &mut Cx<'_>,
    t: &DeTable<'_>,
    header: Range<usize>,
    named: Option<Named>,
    declared: &Declared,
) -> Option<Stage> {
    let kind = named.as_ref().map(|n| kind_of(&n.name));
    let (place, on) = match (&named, kind) {
        (Some(n), Some(StageKind::Split)) => (
            format!("in stage `{}`", n.name),
            format!("split stage `{}`", n.name),
        ),
        (Some(n), _) => (
            format!("in stage `{}`", n.name),
            format!("the `{}` stage", n.name),
        ),
        (None, _) => ("in `[[rollout.stage]]`".to_owned(), "this stage".to_owned()),
    };
    let mut stage = Stage {
        name: named.as_ref().map(|n| n.name.clone()).unwrap_or_default(),
        kind: kind.unwrap_or(StageKind::Split),
        percent: None,
        matches: BTreeMap::new(),
        min_duration: None,
        max_duration: None,
        min_samples: None,
        gates: Gates::default(),
    };
    let mut ok = named.is_some();
    let mut max_span = None;
    let mut spans: Vec<(&str, Range<usize>)> = Vec::new();
    for (k, v) in entries(t) {
        let key = k.get_ref().as_ref();
        if !STAGE_KEYS.contains(&key) {
            let known: Vec<&str> = match kind {
                Some(kind) => STAGE_KEYS
                    .iter()
                    .copied()
                    .filter(|k| applies(k, kind))
                    .collect(),
                None => STAGE_KEYS.to_vec(),
            };
            cx.unknown_key(k, &place, &known);
            ok = false;
            continue;
        }
        if let Some(kind) = kind
            && !applies(key, kind)
        {
            cx.error(
                k.span(),
                "does not apply here",
                format!("`{key}` does not apply to {on}"),
                where_applies(key),
            );
            ok = false;
            continue;
        }
        let what = format!("`{key}` {place}");
        spans.push((k.get_ref().as_ref(), v.span()));
        let good = match key {
            "name" => true,
            "percent" => read_percent(cx, v, &what)
                .map(|p| stage.percent = Some(p))
                .is_some(),
            "match" => read_match(cx, k, v, &place, declared)
                .map(|m| stage.matches = m)
                .is_some(),
            "min_duration" => {
                stage.min_duration = cx.duration(v, &what, "min_duration = \"30m\"");
                stage.min_duration.is_some()
            }
            "max_duration" => {
                stage.max_duration = cx.duration(v, &what, "max_duration = \"2h\"");
                max_span = Some(v.span());
                stage.max_duration.is_some()
            }
            "min_samples" => {
                stage.min_samples = cx.count(v, &what, "min_samples = 500");
                stage.min_samples.is_some()
            }
            _ => read_gate(cx, key, v, &what, &mut stage.gates),
        };
        ok &= good;
    }
    if kind == Some(StageKind::Split) && !t.contains_key("percent") {
        cx.error(
            header,
            "no `percent`",
            format!("split stage `{}` has no `percent`", stage.name),
            "a split stage enforces the candidate on a share of the hash buckets: add \
             `percent = 5` (0 to 100); only stages named `replay` and `shadow` have none",
        );
        ok = false;
    }
    match (stage.min_duration, stage.max_duration, max_span) {
        (Some(min), Some(max), Some(span)) if max < min => {
            cx.error(
                span,
                "shorter than `min_duration`",
                format!("`max_duration` {place} is shorter than its `min_duration`"),
                format!(
                    "the stage waits at least `min_duration` ({}); make `max_duration` at least that, \
                     or leave it out for {DEFAULT_MAX_FACTOR} times `min_duration`",
                    humantime::format_duration(min)
                ),
            );
            ok = false;
        }
        (Some(min), None, _) => stage.max_duration = min.checked_mul(DEFAULT_MAX_FACTOR),
        _ => {}
    }
    if ok {
        underpowered(cx, &stage, &spans);
    }
    ok.then_some(stage)
}

/// Warns of every rate gate of `stage` that cannot pass on the stage's
/// `min_samples` requests, however good the candidate
/// ([`crate::model::plan::fewest_samples_to_pass`]): the stage would wait past its
/// `min_samples` for evidence, and pause at `max_duration` when the
/// traffic does not bring it. `spans` are the stage's keys and values.
fn underpowered(cx: &mut Cx<'_>, stage: &Stage, spans: &[(&str, Range<usize>)]) {
    let Some(min) = stage.min_samples else {
        return;
    };
    let span = |key: &str| {
        spans
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone())
    };
    for (gate, limit, needed) in stage.rate_gates_power() {
        if needed.is_some_and(|n| n <= min) {
            continue;
        }
        let (Some(at), Some(min_at)) = (span(gate), span("min_samples")) else {
            continue;
        };
        let events = match gate {
            "max_divergence" => "no decision differs",
            "max_error_rate" => "no evaluation fails",
            _ => "the candidate denies exactly as stable does",
        };
        let (message, help) = match needed {
            Some(n) => (
                format!(
                    "stage `{}`: `{gate} = {limit}` cannot pass on `min_samples = {min}`: even when \
                     {events}, the 95% bound stays above {limit} until {n} requests",
                    stage.name
                ),
                format!(
                    "raise `min_samples` to {n} or more, or loosen `{gate}` to {:.4} or more, which \
                     {min} requests can show",
                    Z95 * Z95 / (min as f64 + Z95 * Z95)
                ),
            ),
            None => (
                format!(
                    "stage `{}`: `{gate} = {limit}` can never pass: no count of requests brings the \
                     95% bound of a rate to 0",
                    stage.name
                ),
                "give the gate a limit above 0".to_owned(),
            ),
        };
        let needs = needed.map_or_else(
            || "never passes".to_owned(),
            |n| format!("needs {n} requests"),
        );
        let finding = Finding::new(Code::PlanUnderpowered, message)
            .with_label(cx.label(at, needs))
            .with_label(cx.label(min_at, format!("{min} requests")))
            .with_help(help);
        cx.warnings.push(finding);
    }
}

fn read_percent(cx: &mut Cx<'_>, v: &Value<'_>, what: &str) -> Option<u32> {
    let n = cx.int(v, what, "percent = 5")?;
    match u32::try_from(n) {
        Ok(p) if p <= 100 => Some(p),
        _ => {
            cx.error(
                v.span(),
                "out of range",
                format!("{what} must be between 0 and 100, found `{n}`"),
                "`percent` is the share of hash buckets enforced by the candidate, from 0 to 100",
            );
            None
        }
    }
}

fn read_gate(cx: &mut Cx<'_>, key: &str, v: &Value<'_>, what: &str, g: &mut Gates) -> bool {
    match key {
        "max_catastrophic" => {
            g.max_catastrophic = cx.count(v, what, "max_catastrophic = 0");
            g.max_catastrophic.is_some()
        }
        "max_false_positive_rate" => {
            g.max_false_positive_rate = cx.rate(v, what, "max_false_positive_rate = 0.01");
            g.max_false_positive_rate.is_some()
        }
        "max_divergence" => {
            g.max_divergence = cx.rate(v, what, "max_divergence = 0.02");
            g.max_divergence.is_some()
        }
        "max_error_rate" => {
            g.max_error_rate = cx.rate(v, what, "max_error_rate = 0.001");
            g.max_error_rate.is_some()
        }
        "max_deny_rate_delta" => {
            g.max_deny_rate_delta = cx.rate(v, what, "max_deny_rate_delta = 0.02");
            g.max_deny_rate_delta.is_some()
        }
        "max_latency_p99_delta_ms" => {
            g.max_latency_p99_delta_ms = cx.non_negative(v, what, "max_latency_p99_delta_ms = 5");
            g.max_latency_p99_delta_ms.is_some()
        }
        "max_cost_ratio" => {
            g.max_cost_ratio = cx.positive(v, what, "max_cost_ratio = 1.2");
            g.max_cost_ratio.is_some()
        }
        // INVARIANT: the caller passes only keys of `STAGE_KEYS` handled here.
        _ => false,
    }
}

/// Reads `match = { field = [values…] }`: every key a declared field, every
/// value of the field's type.
pub(super) fn read_match(
    cx: &mut Cx<'_>,
    key: &Key<'_>,
    v: &Value<'_>,
    place: &str,
    declared: &Declared,
) -> Option<BTreeMap<String, Vec<Literal>>> {
    let name = key.get_ref().to_string();
    let what = format!("`{name}` {place}");
    let t = cx.table(v, &what, &format!("{name} = {{ org = [\"internal\"] }}"))?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for leaf in leaves(t) {
        let path = leaf.path.as_str();
        let Some(field) = declared.schema.get(path) else {
            if !declared.knows(path) {
                cx.error(
                    leaf.key.span(),
                    "not a field",
                    format!("`{name}` {place} names `{path}`, which is not a field in `[schema]`"),
                    unknown_field_help(path, declared),
                );
            }
            ok = false;
            continue;
        };
        if field.ty == Type::StrSet {
            cx.error(
                leaf.key.span(),
                "a `set<string>` field",
                format!("`{name}` {place} names `{path}`, a `set<string>` field"),
                format!(
                    "`{name}` selects requests by the value of an `int`, `string` or `bool` field"
                ),
            );
            ok = false;
            continue;
        }
        let example = format!("{path} = [{}]", example_literal(field.ty));
        let items = match leaf.value.get_ref() {
            DeValue::Array(items) => items,
            other => {
                cx.error(
                    leaf.value.span(),
                    "expected an array",
                    format!(
                        "`{name}` values for `{path}` {place} must be an array, not {}",
                        a_type(other)
                    ),
                    format!("list the values a request may have, like `{example}`"),
                );
                ok = false;
                continue;
            }
        };
        if items.is_empty() {
            cx.error(
                leaf.value.span(),
                "no values",
                format!("`{name}` values for `{path}` {place} are empty"),
                format!("no request would be eligible: list at least one value, like `{example}`"),
            );
            ok = false;
            continue;
        }
        let mut values = Vec::new();
        for item in items.iter() {
            match literal(item.get_ref(), field.ty) {
                Some(l) => values.push(l),
                None => {
                    cx.error(
                        item.span(),
                        format!("expected {}", a_type_name(field.ty)),
                        format!(
                            "`{name}` value `{}` for `{path}` {place} is not {}",
                            cx.text(item.span()),
                            a_type_name(field.ty)
                        ),
                        format!(
                            "`{path}` is declared as `{}` in `[schema]`, like `{example}`",
                            field.ty.as_str()
                        ),
                    );
                    ok = false;
                }
            }
        }
        out.insert(path.to_owned(), values);
    }
    ok.then_some(out)
}

/// A TOML value as a literal of type `ty`, if it is one.
fn literal(v: &DeValue<'_>, ty: Type) -> Option<Literal> {
    match (v, ty) {
        (DeValue::Integer(i), Type::Int) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(Literal::Int),
        (DeValue::String(s), Type::Str) => Some(Literal::Str(s.to_string())),
        (DeValue::Boolean(b), Type::Bool) => Some(Literal::Bool(*b)),
        _ => None,
    }
}

fn a_type_name(ty: Type) -> &'static str {
    match ty {
        Type::Int => "an integer",
        Type::Str => "a string",
        Type::Bool => "a boolean",
        Type::StrSet => "a set of strings",
    }
}

fn example_literal(ty: Type) -> &'static str {
    match ty {
        Type::Int => "1, 2",
        Type::Bool => "true",
        Type::Str | Type::StrSet => "\"internal\"",
    }
}

fn unknown_field_help(path: &str, declared: &Declared) -> String {
    match declared.schema.closest(path) {
        Some(c) => format!("did you mean `{c}`?"),
        None => "declare the field in `[schema]` first".to_owned(),
    }
}
