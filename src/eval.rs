//! Stage 4: a decoded request evaluated against an artifact.
//!
//! Pure except for limit counters, which it reaches only through a
//! [`LimitStore`]; the time is the caller's (an injectable clock). Building an
//! [`Evaluator`] resolves every field to its slot, compiles every regex once
//! and checks operand types, so evaluation itself cannot fail on the policy
//! set — only a limit store can fail.
//!
//! Semantics (SPEC §2):
//! - Every matching rule, and every limit whose count is exceeded, of every
//!   policy contributes. The decision is the most severe contribution
//!   (`deny` > `require_approval` > `modify` > `allow`); with none, the
//!   artifact's default.
//! - Contributions are reported in a fixed order: policies by name, then
//!   within a policy its rules in declaration order, then its limits in
//!   declaration order. That order is also the order in which modifications
//!   apply: when two rules modify one field, the later one transforms the
//!   value the earlier one produced.
//! - An atom that reads an absent field is false (`not` of it is true); only
//!   `has` needs no value. A modify of an absent field leaves it absent.
//! - A limit applies to a request that matches its condition and carries
//!   every `by` field; the request that would exceed `max` in the current
//!   window gets the `exceed` effect and is not counted. A limit that is not
//!   exceeded contributes nothing. Limits count every request they apply to,
//!   whatever the final decision.
//!
//! Cost (the engine sits on the path of every agent call):
//! - Rules are indexed by `tool`: each condition yields the set of tool
//!   values it can be true for (or "any"), so a request examines only the
//!   rules of its tool plus those that may match any tool, merged in the
//!   order above. A request without a tool examines every rule.
//! - A condition is compiled to a conjunction whose `tool` atoms come first
//!   and are skipped when the index already guarantees them; the other
//!   conjuncts (and the operands of every `and`/`or`) are ordered cheapest
//!   first, regexes last. Conditions have no side effects, so order changes
//!   cost, never the result.
//! - Each distinct regex is compiled once; a (pattern, field) search runs at
//!   most once per evaluation.
//! - Reasons are indices until rendered; [`Evaluator::evaluate_into`] reuses
//!   an [`Outcome`]'s buffers, so a steady-state evaluation allocates only
//!   when a limit store does.

pub mod request;
pub mod response;
pub mod state;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use regex::Regex;

use crate::compile::artifact::Artifact;
use crate::eval::request::{FieldValue, Request, field_index, schema_fingerprint};
use crate::eval::state::{LimitKey, LimitStore, StateError, Window};
use crate::model::ir::{CmpOp, DecisionKind, Effect, Expr, Literal, ModifyValue, Term, Tier, Type};
use crate::model::schema::Schema;

/// What replaces a redacted value or match.
pub const REDACTED: &str = "[REDACTED]";

/// The field rules are indexed by.
pub const TOOL_FIELD: &str = "tool";

/// An artifact ready to evaluate requests. `Send + Sync`; evaluation takes
/// `&self`, so one evaluator serves concurrent requests.
#[derive(Debug)]
pub struct Evaluator {
    artifact: Arc<Artifact>,
    schema_id: u64,
    checks: Vec<Check>,
    index: ToolIndex,
    /// The number of distinct (regex, field) searches, memoized per request.
    memo_len: usize,
}

/// Whether a contribution comes from a rule or a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    Rule,
    Limit,
}

/// Whether limits count the request or are only read (shadow evaluation,
/// dry runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LimitMode {
    #[default]
    Count,
    /// Read counters without incrementing them: a limit is exceeded when its
    /// count has reached `max`.
    DryRun,
}

/// The result of one evaluation: the decision and the contributing checks
/// (as indices, rendered on demand by [`Evaluator::reasons`]).
///
/// An outcome belongs to the evaluator that produced it. Reuse one with
/// [`Evaluator::evaluate_into`] to evaluate without allocating.
#[derive(Debug, Clone)]
pub struct Outcome {
    decision: DecisionKind,
    hits: Vec<u32>,
    examined: u32,
    scratch: String,
    memo: Memo,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            decision: DecisionKind::Allow,
            hits: Vec::new(),
            examined: 0,
            scratch: String::new(),
            memo: Memo::default(),
        }
    }
}

impl Outcome {
    /// The decision.
    pub fn decision(&self) -> DecisionKind {
        self.decision
    }

    /// No rule or limit contributed: the decision is the artifact's default.
    pub fn is_default(&self) -> bool {
        self.hits.is_empty()
    }

    /// How many conditions were evaluated (what the tool index let through).
    pub fn examined(&self) -> usize {
        self.examined as usize
    }
}

/// One contribution to a decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reason<'a> {
    pub policy: &'a str,
    pub version: &'a str,
    /// The rule or limit name.
    pub rule: &'a str,
    pub kind: CheckKind,
    pub tier: Tier,
    /// The rule's effect, or the limit's `exceed` effect.
    pub effect: &'a Effect,
}

impl Reason<'_> {
    pub fn decision(&self) -> DecisionKind {
        self.effect.kind()
    }

    pub fn code(&self) -> Option<&str> {
        self.effect.code_text().map(|(c, _)| c)
    }

    pub fn text(&self) -> Option<&str> {
        self.effect.code_text().map(|(_, t)| t)
    }
}

/// A request with the modifications of an outcome applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Modified<'a> {
    pub request: Request,
    /// The modifications that changed a field, in the order applied.
    pub applied: Vec<Modification<'a>>,
}

/// One applied modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modification<'a> {
    pub policy: &'a str,
    pub rule: &'a str,
    pub field: &'a str,
    pub code: &'a str,
}

/// An artifact the evaluator cannot load. Names the policy and rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{policy}.{rule}: field `{field}` is not in the schema")]
    #[diagnostic(code(eval::unknown_field))]
    UnknownField {
        policy: String,
        rule: String,
        field: String,
    },

    #[error("{policy}.{rule}: {message}")]
    #[diagnostic(code(eval::type_mismatch))]
    TypeMismatch {
        policy: String,
        rule: String,
        message: String,
    },

    #[error("{policy}.{rule}: regex `{pattern}` does not compile: {message}")]
    #[diagnostic(code(eval::bad_regex))]
    BadRegex {
        policy: String,
        rule: String,
        pattern: String,
        message: String,
    },

    #[error("{policy}.{rule}: a limit window must be at least one second")]
    #[diagnostic(code(eval::zero_window))]
    ZeroWindow { policy: String, rule: String },
}

/// A request that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum EvalError {
    #[error("the request was decoded with another schema than the artifact's")]
    #[diagnostic(
        code(eval::schema_mismatch),
        help("decode the request with the evaluator's schema (`Evaluator::decode`)")
    )]
    SchemaMismatch,

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
}

impl Evaluator {
    /// Loads an artifact: resolves fields, compiles regexes, checks types and
    /// builds the tool index. Policies are taken in name order whatever
    /// order the artifact lists them in.
    pub fn new(artifact: &Artifact) -> Result<Evaluator, LoadError> {
        let schema = &artifact.schema;
        let mut order: Vec<usize> = (0..artifact.policies.len()).collect();
        order.sort_by(|a, b| {
            let name = |i: &usize| artifact.policies.get(*i).map(|p| p.name.as_str());
            name(a).cmp(&name(b))
        });
        let mut checks = Vec::new();
        let mut tool_sets = Vec::new();
        let regexes = RefCell::new(Regexes::default());
        let tool = field_index(schema, TOOL_FIELD)
            .filter(|i| schema.fields.get(*i).is_some_and(|f| f.ty == Type::Str));
        for policy in order.iter().filter_map(|i| artifact.policies.get(*i)) {
            let meta = Arc::new(PolicyMeta {
                name: policy.name.clone(),
                version: policy.version.clone(),
                tier: policy.tier,
            });
            for rule in &policy.rules {
                let cx = Ctx {
                    schema,
                    policy: &policy.name,
                    rule: &rule.name,
                    regexes: &regexes,
                };
                checks.push(Check {
                    policy: Arc::clone(&meta),
                    name: rule.name.clone(),
                    kind: CheckKind::Rule,
                    cond: cx.condition(&rule.when, tool)?,
                    modify: cx.modify(&rule.effect)?,
                    effect: rule.effect.clone(),
                    limit: None,
                });
                tool_sets.push(tools_of(&rule.when).0);
            }
            for limit in &policy.limits {
                let cx = Ctx {
                    schema,
                    policy: &policy.name,
                    rule: &limit.name,
                    regexes: &regexes,
                };
                if limit.window_secs == 0 {
                    return Err(LoadError::ZeroWindow {
                        policy: policy.name.clone(),
                        rule: limit.name.clone(),
                    });
                }
                let by = limit
                    .by
                    .iter()
                    .map(|f| cx.field(f).map(|(i, _)| i))
                    .collect::<Result<Vec<_>, _>>()?;
                checks.push(Check {
                    policy: Arc::clone(&meta),
                    name: limit.name.clone(),
                    kind: CheckKind::Limit,
                    cond: cx.condition(&limit.when, tool)?,
                    modify: cx.modify(&limit.exceed)?,
                    effect: limit.exceed.clone(),
                    limit: Some(LimitSpec {
                        id: format!("{}.{}", policy.name, limit.name),
                        by,
                        max: limit.max,
                        window_secs: limit.window_secs,
                    }),
                });
                tool_sets.push(tools_of(&limit.when).0);
            }
        }
        Ok(Evaluator {
            artifact: Arc::new(artifact.clone()),
            schema_id: schema_fingerprint(schema),
            index: ToolIndex::new(tool, &tool_sets),
            memo_len: regexes.borrow().slots.len(),
            checks,
        })
    }

    /// The artifact this evaluator runs.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// The artifact's hash.
    pub fn hash(&self) -> &str {
        &self.artifact.hash
    }

    /// The artifact's request schema.
    pub fn schema(&self) -> &Schema {
        &self.artifact.schema
    }

    /// The number of rules and limits.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    /// The artifact holds no rule or limit.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Decodes a JSON request with this artifact's schema.
    pub fn decode(
        &self,
        json: &serde_json::Value,
    ) -> Result<Request, crate::eval::request::RequestError> {
        Request::from_json_with_id(json, self.schema(), self.schema_id)
    }

    /// Evaluates `req` at time `now` (seconds since the epoch), counting
    /// limits in `limits`.
    pub fn evaluate(
        &self,
        req: &Request,
        now: u64,
        limits: &dyn LimitStore,
    ) -> Result<Outcome, EvalError> {
        let mut out = Outcome::default();
        self.evaluate_into(req, now, limits, LimitMode::Count, &mut out)?;
        Ok(out)
    }

    /// Evaluates without counting: limits read their counters only.
    pub fn evaluate_dry_run(
        &self,
        req: &Request,
        now: u64,
        limits: &dyn LimitStore,
    ) -> Result<Outcome, EvalError> {
        let mut out = Outcome::default();
        self.evaluate_into(req, now, limits, LimitMode::DryRun, &mut out)?;
        Ok(out)
    }

    /// Evaluates into `out`, reusing its buffers. When a limit store fails
    /// midway, limits examined before the failure have counted the request.
    pub fn evaluate_into(
        &self,
        req: &Request,
        now: u64,
        limits: &dyn LimitStore,
        mode: LimitMode,
        out: &mut Outcome,
    ) -> Result<(), EvalError> {
        self.run(req, now, limits, mode, self.index.candidates(req), out)
    }

    /// Evaluates every rule without the tool index (a reference for tests
    /// and diagnostics; same result, slower).
    pub fn evaluate_scan(
        &self,
        req: &Request,
        now: u64,
        limits: &dyn LimitStore,
        mode: LimitMode,
    ) -> Result<Outcome, EvalError> {
        let mut out = Outcome::default();
        let all = Candidates::All(0..self.index.len);
        self.run(req, now, limits, mode, all, &mut out)?;
        Ok(out)
    }

    fn run(
        &self,
        req: &Request,
        now: u64,
        store: &dyn LimitStore,
        mode: LimitMode,
        candidates: Candidates<'_>,
        out: &mut Outcome,
    ) -> Result<(), EvalError> {
        // Reached through the index, a check's leading tool atoms hold.
        let indexed = matches!(candidates, Candidates::Merge { .. });
        if req.schema_id() != self.schema_id {
            return Err(EvalError::SchemaMismatch);
        }
        out.hits.clear();
        out.examined = 0;
        out.memo.begin(self.memo_len);
        let mut worst: Option<DecisionKind> = None;
        for i in candidates {
            let Some(check) = self.checks.get(i as usize) else {
                continue;
            };
            out.examined += 1;
            if !check.cond.eval(req, indexed, &mut out.memo) {
                continue;
            }
            if let Some(limit) = &check.limit {
                if !limit.key_into(req, &mut out.scratch) {
                    continue;
                }
                let key = LimitKey {
                    limit: &limit.id,
                    key: &out.scratch,
                };
                let window = Window::containing(now, limit.window_secs);
                let within = match mode {
                    LimitMode::Count => store.try_acquire(key, window, limit.max)?,
                    LimitMode::DryRun => store.count(key, window)? < limit.max,
                };
                if within {
                    continue;
                }
            }
            out.hits.push(i);
            let kind = check.effect.kind();
            worst = Some(worst.map_or(kind, |w| w.max(kind)));
        }
        out.decision = worst.unwrap_or(self.artifact.default);
        Ok(())
    }

    /// The contributions of `outcome`, in the fixed order (policy name, then
    /// rules and limits in declaration order).
    pub fn reasons<'a>(&'a self, outcome: &'a Outcome) -> impl Iterator<Item = Reason<'a>> + 'a {
        outcome
            .hits
            .iter()
            .filter_map(|i| self.checks.get(*i as usize))
            .map(|c| Reason {
                policy: &c.policy.name,
                version: &c.policy.version,
                rule: &c.name,
                kind: c.kind,
                tier: c.policy.tier,
                effect: &c.effect,
            })
    }

    /// Applies the modifications of `outcome` to a copy of `req`, in the
    /// fixed order. A modification whose field (or source field) is absent
    /// changes nothing and is not listed.
    pub fn apply_modifications<'a>(&'a self, req: &Request, outcome: &Outcome) -> Modified<'a> {
        let mut request = req.clone();
        let mut applied = Vec::new();
        for check in outcome
            .hits
            .iter()
            .filter_map(|i| self.checks.get(*i as usize))
        {
            let Some(modify) = &check.modify else {
                continue;
            };
            if let Some(value) = modify.apply(&request) {
                request.set_index(modify.target, Some(value));
                applied.push(Modification {
                    policy: &check.policy.name,
                    rule: &check.name,
                    field: &modify.field,
                    code: check.effect.code_text().map_or("", |(c, _)| c),
                });
            }
        }
        Modified { request, applied }
    }

    /// How many rules and limits a request with this tool value would
    /// examine (`None`: a request without a tool).
    pub fn candidate_count(&self, tool: Option<&str>) -> usize {
        self.index.candidates_for(tool).count()
    }
}

#[derive(Debug)]
struct PolicyMeta {
    name: String,
    version: String,
    tier: Tier,
}

#[derive(Debug)]
struct Check {
    policy: Arc<PolicyMeta>,
    name: String,
    kind: CheckKind,
    cond: Condition,
    effect: Effect,
    modify: Option<Modify>,
    limit: Option<LimitSpec>,
}

#[derive(Debug)]
struct LimitSpec {
    /// `policy.limit`.
    id: String,
    by: Vec<usize>,
    max: u64,
    window_secs: u64,
}

impl LimitSpec {
    /// Writes the counter key (a compact JSON array of the `by` values) into
    /// `buf`; false when a `by` field is absent (the limit does not apply).
    fn key_into(&self, req: &Request, buf: &mut String) -> bool {
        buf.clear();
        buf.push('[');
        for (n, i) in self.by.iter().enumerate() {
            let Some(v) = req.get(*i) else { return false };
            if n > 0 {
                buf.push(',');
            }
            write_json(buf, v);
        }
        buf.push(']');
        true
    }
}

fn write_json(buf: &mut String, v: &FieldValue) {
    match v {
        FieldValue::Int(i) => {
            let _ = write!(buf, "{i}");
        }
        FieldValue::Bool(b) => buf.push_str(if *b { "true" } else { "false" }),
        FieldValue::Str(s) => write_json_str(buf, s),
        FieldValue::Set(items) => {
            buf.push('[');
            for (n, s) in items.iter().enumerate() {
                if n > 0 {
                    buf.push(',');
                }
                write_json_str(buf, s);
            }
            buf.push(']');
        }
    }
}

fn write_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", u32::from(c));
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

// ---------------------------------------------------------------------------
// Compiled conditions.

/// A rule's condition as a conjunction, cheapest conjuncts first.
#[derive(Debug)]
struct Condition {
    conjuncts: Box<[Cond]>,
    /// How many leading conjuncts are `tool == lit` or `tool in [lits]`.
    //
    // INVARIANT: a check reached through `ToolIndex::by_tool` for tool `t`
    // has `t` in its may-be-true set, which lies within the set of every one
    // of these atoms: they are all true and need not be evaluated.
    tool_prefix: usize,
}

impl Condition {
    #[inline]
    fn eval(&self, req: &Request, indexed: bool, memo: &mut Memo) -> bool {
        let skip = if indexed { self.tool_prefix } else { 0 };
        self.conjuncts
            .get(skip..)
            .unwrap_or_default()
            .iter()
            .all(|c| c.eval(req, memo))
    }
}

#[derive(Debug)]
enum Cond {
    Const(bool),
    And(Box<[Cond]>),
    Or(Box<[Cond]>),
    Not(Box<Cond>),
    Has(usize),
    Truthy(usize),
    /// An `int` field against a literal.
    IntCmp {
        field: usize,
        op: CmpOp,
        value: i64,
    },
    /// A `string` field `==` (or, with `eq` false, `!=`) a literal.
    StrEq {
        field: usize,
        value: Box<str>,
        eq: bool,
    },
    Cmp {
        op: CmpOp,
        lhs: Operand,
        rhs: Operand,
    },
    In {
        lhs: Operand,
        values: InSet,
    },
    Contains {
        field: usize,
        needle: Box<str>,
    },
    SetContains {
        field: usize,
        value: Box<str>,
    },
    StartsWith {
        field: usize,
        prefix: Box<str>,
    },
    EndsWith {
        field: usize,
        suffix: Box<str>,
    },
    Matches {
        field: usize,
        re: Regex,
        /// The memo slot of this (pattern, field) search.
        slot: usize,
    },
}

/// Regex results within one evaluation: many rules often search one field
/// for one pattern (PII, secrets), and the search runs once.
#[derive(Debug, Clone, Default)]
struct Memo {
    /// The current evaluation's stamp; never 0.
    generation: u32,
    /// Per slot: the stamp of the evaluation that stored the result, and it.
    results: Vec<(u32, bool)>,
}

impl Memo {
    /// Starts an evaluation: every stored result becomes stale.
    fn begin(&mut self, len: usize) {
        if self.results.len() != len {
            self.results.clear();
            self.results.resize(len, (0, false));
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.results.iter_mut().for_each(|r| r.0 = 0);
            self.generation = 1;
        }
    }

    #[inline]
    fn get_or_insert(&mut self, slot: usize, search: impl FnOnce() -> bool) -> bool {
        let generation = self.generation;
        match self.results.get_mut(slot) {
            Some((stamp, value)) if *stamp == generation => *value,
            Some(entry) => {
                let value = search();
                *entry = (generation, value);
                value
            }
            None => search(),
        }
    }
}

/// Regexes compiled while building: one per pattern, one memo slot per
/// (pattern, field).
#[derive(Debug, Default)]
struct Regexes {
    by_pattern: HashMap<String, Regex>,
    slots: HashMap<(String, usize), usize>,
}

#[derive(Debug)]
enum Operand {
    Field(usize),
    Len(usize),
    Lit(Lit),
}

#[derive(Debug)]
enum Lit {
    Int(i64),
    Str(Box<str>),
    Bool(bool),
}

/// Sorted, deduplicated values of an `in` list.
#[derive(Debug)]
enum InSet {
    Int(Box<[i64]>),
    Str(Box<[Box<str>]>),
    Bool { t: bool, f: bool },
}

#[derive(Clone, Copy)]
enum Val<'a> {
    Int(i64),
    Str(&'a str),
    Bool(bool),
    Set(&'a [String]),
}

impl<'a> Val<'a> {
    fn of(v: &'a FieldValue) -> Val<'a> {
        match v {
            FieldValue::Int(i) => Val::Int(*i),
            FieldValue::Str(s) => Val::Str(s),
            FieldValue::Bool(b) => Val::Bool(*b),
            FieldValue::Set(s) => Val::Set(s),
        }
    }
}

fn str_of(req: &Request, field: usize) -> Option<&str> {
    match req.get(field) {
        Some(FieldValue::Str(s)) => Some(s),
        _ => None,
    }
}

fn count_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Up to this many values, an `in` list is searched linearly.
const LINEAR: usize = 8;

impl Cond {
    /// A rough evaluation cost, to order conjuncts and disjuncts.
    fn cost(&self) -> u32 {
        match self {
            Cond::Const(_) | Cond::Has(_) | Cond::Truthy(_) => 0,
            Cond::IntCmp { .. } => 1,
            Cond::StrEq { .. } => 2,
            Cond::Cmp { .. } | Cond::In { .. } => 3,
            Cond::SetContains { .. } | Cond::StartsWith { .. } | Cond::EndsWith { .. } => 4,
            Cond::Contains { .. } => 6,
            Cond::Matches { .. } => 50,
            Cond::Not(x) => x.cost(),
            Cond::And(xs) | Cond::Or(xs) => xs.iter().map(Cond::cost).fold(0, u32::saturating_add),
        }
    }

    /// `tool == lit` or `tool in [lits]`, for the tool at slot `tool`.
    fn is_tool_atom(&self, tool: usize) -> bool {
        match self {
            Cond::StrEq { field, eq, .. } => *field == tool && *eq,
            Cond::In {
                lhs: Operand::Field(field),
                values: InSet::Str(_),
            } => *field == tool,
            _ => false,
        }
    }
}

/// Orders conditions cheapest first (the order of a pure conjunction or
/// disjunction does not change its value).
fn by_cost(mut xs: Vec<Cond>) -> Box<[Cond]> {
    xs.sort_by_key(Cond::cost);
    xs.into()
}

impl Operand {
    #[inline]
    fn resolve<'a>(&'a self, req: &'a Request) -> Option<Val<'a>> {
        match self {
            Operand::Field(i) => req.get(*i).map(Val::of),
            Operand::Len(i) => match req.get(*i)? {
                FieldValue::Str(s) => Some(Val::Int(count_i64(s.chars().count()))),
                FieldValue::Set(v) => Some(Val::Int(count_i64(v.len()))),
                _ => None,
            },
            Operand::Lit(Lit::Int(i)) => Some(Val::Int(*i)),
            Operand::Lit(Lit::Str(s)) => Some(Val::Str(s)),
            Operand::Lit(Lit::Bool(b)) => Some(Val::Bool(*b)),
        }
    }
}

impl Cond {
    fn eval(&self, req: &Request, memo: &mut Memo) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::And(xs) => xs.iter().all(|x| x.eval(req, memo)),
            Cond::Or(xs) => xs.iter().any(|x| x.eval(req, memo)),
            Cond::Not(x) => !x.eval(req, memo),
            Cond::Has(i) => req.get(*i).is_some(),
            Cond::Truthy(i) => matches!(req.get(*i), Some(FieldValue::Bool(true))),
            Cond::IntCmp { field, op, value } => match req.get(*field) {
                Some(FieldValue::Int(i)) => match op {
                    CmpOp::Eq => i == value,
                    CmpOp::Ne => i != value,
                    CmpOp::Lt => i < value,
                    CmpOp::Le => i <= value,
                    CmpOp::Gt => i > value,
                    CmpOp::Ge => i >= value,
                },
                _ => false,
            },
            Cond::StrEq { field, value, eq } => match req.get(*field) {
                Some(FieldValue::Str(s)) => (s.as_str() == &**value) == *eq,
                _ => false,
            },
            Cond::Cmp { op, lhs, rhs } => {
                let (Some(l), Some(r)) = (lhs.resolve(req), rhs.resolve(req)) else {
                    return false;
                };
                let ord = match (l, r) {
                    (Val::Int(a), Val::Int(b)) => a.cmp(&b),
                    (Val::Str(a), Val::Str(b)) => a.cmp(b),
                    (Val::Bool(a), Val::Bool(b)) => a.cmp(&b),
                    (Val::Set(a), Val::Set(b)) => {
                        return match op {
                            CmpOp::Eq => a == b,
                            CmpOp::Ne => a != b,
                            _ => false,
                        };
                    }
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
            Cond::In { lhs, values } => match (lhs.resolve(req), values) {
                (Some(Val::Int(i)), InSet::Int(vs)) => {
                    if vs.len() <= LINEAR {
                        vs.contains(&i)
                    } else {
                        vs.binary_search(&i).is_ok()
                    }
                }
                (Some(Val::Str(s)), InSet::Str(vs)) => {
                    if vs.len() <= LINEAR {
                        vs.iter().any(|v| **v == *s)
                    } else {
                        vs.binary_search_by(|v| (**v).cmp(s)).is_ok()
                    }
                }
                (Some(Val::Bool(b)), InSet::Bool { t, f }) => {
                    if b {
                        *t
                    } else {
                        *f
                    }
                }
                _ => false,
            },
            Cond::Contains { field, needle } => {
                str_of(req, *field).is_some_and(|s| s.contains(&**needle))
            }
            Cond::SetContains { field, value } => match req.get(*field) {
                Some(FieldValue::Set(items)) => {
                    items.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
                }
                _ => false,
            },
            Cond::StartsWith { field, prefix } => {
                str_of(req, *field).is_some_and(|s| s.starts_with(&**prefix))
            }
            Cond::EndsWith { field, suffix } => {
                str_of(req, *field).is_some_and(|s| s.ends_with(&**suffix))
            }
            Cond::Matches { field, re, slot } => {
                str_of(req, *field).is_some_and(|s| memo.get_or_insert(*slot, || re.is_match(s)))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Compiled modifications.

#[derive(Debug)]
struct Modify {
    target: usize,
    field: String,
    op: ModOp,
}

#[derive(Debug)]
enum ModOp {
    Literal(FieldValue),
    Redact { src: usize },
    RedactPattern { src: usize, re: Regex },
    Truncate { src: usize, len: usize },
    Lowercase { src: usize },
}

impl Modify {
    /// The new value of the target field, or `None` to leave the request as
    /// it is (target or source absent).
    fn apply(&self, req: &Request) -> Option<FieldValue> {
        req.get(self.target)?;
        match &self.op {
            ModOp::Literal(v) => Some(v.clone()),
            ModOp::Redact { src } => map_str(req.get(*src)?, |_| REDACTED.to_string()),
            ModOp::RedactPattern { src, re } => map_str(req.get(*src)?, |s| {
                re.replace_all(s, regex::NoExpand(REDACTED)).into_owned()
            }),
            ModOp::Truncate { src, len } => {
                map_str(req.get(*src)?, |s| match s.char_indices().nth(*len) {
                    Some((end, _)) => s.get(..end).unwrap_or(s).to_string(),
                    None => s.to_string(),
                })
            }
            ModOp::Lowercase { src } => map_str(req.get(*src)?, str::to_lowercase),
        }
    }
}

/// Applies a string transform to a string, or to each element of a set.
fn map_str(v: &FieldValue, f: impl Fn(&str) -> String) -> Option<FieldValue> {
    match v {
        FieldValue::Str(s) => Some(FieldValue::Str(f(s))),
        FieldValue::Set(items) => Some(FieldValue::set(items.iter().map(|s| f(s)))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Building: fields to slots, types checked.

struct Ctx<'a> {
    schema: &'a Schema,
    policy: &'a str,
    rule: &'a str,
    /// Compiled regexes by pattern, shared by every rule (a `Regex` clone
    /// shares the compiled program).
    regexes: &'a RefCell<Regexes>,
}

impl Ctx<'_> {
    fn field(&self, path: &str) -> Result<(usize, Type), LoadError> {
        field_index(self.schema, path)
            .and_then(|i| self.schema.fields.get(i).map(|f| (i, f.ty)))
            .ok_or_else(|| LoadError::UnknownField {
                policy: self.policy.to_string(),
                rule: self.rule.to_string(),
                field: path.to_string(),
            })
    }

    fn mismatch(&self, message: String) -> LoadError {
        LoadError::TypeMismatch {
            policy: self.policy.to_string(),
            rule: self.rule.to_string(),
            message,
        }
    }

    fn field_of(
        &self,
        path: &str,
        allowed: &[Type],
        what: &str,
    ) -> Result<(usize, Type), LoadError> {
        let (i, ty) = self.field(path)?;
        if allowed.contains(&ty) {
            Ok((i, ty))
        } else {
            Err(self.mismatch(format!(
                "`{what}` does not apply to `{path}` of type {}",
                ty.as_str()
            )))
        }
    }

    fn regex(&self, pattern: &str) -> Result<Regex, LoadError> {
        if let Some(re) = self.regexes.borrow().by_pattern.get(pattern) {
            return Ok(re.clone());
        }
        let re = Regex::new(pattern).map_err(|e| LoadError::BadRegex {
            policy: self.policy.to_string(),
            rule: self.rule.to_string(),
            pattern: pattern.to_string(),
            message: e.to_string(),
        })?;
        self.regexes
            .borrow_mut()
            .by_pattern
            .insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    /// A rule's condition: its top-level conjunction flattened, tool atoms
    /// first (when `tool` is the indexed slot), then the rest cheapest first.
    fn condition(&self, e: &Expr, tool: Option<usize>) -> Result<Condition, LoadError> {
        fn flatten<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
            match e {
                Expr::And(xs) => xs.iter().for_each(|x| flatten(x, out)),
                other => out.push(other),
            }
        }
        let mut parts = Vec::new();
        flatten(e, &mut parts);
        let compiled = parts
            .into_iter()
            .map(|x| self.expr(x))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut conjuncts, rest): (Vec<Cond>, Vec<Cond>) = compiled
            .into_iter()
            .partition(|c| tool.is_some_and(|t| c.is_tool_atom(t)));
        let tool_prefix = conjuncts.len();
        conjuncts.extend(by_cost(rest));
        Ok(Condition {
            conjuncts: conjuncts.into(),
            tool_prefix,
        })
    }

    fn operand(&self, term: &Term) -> Result<(Operand, Type), LoadError> {
        Ok(match term {
            Term::Field(f) => {
                let (i, ty) = self.field(f)?;
                (Operand::Field(i), ty)
            }
            Term::Len(f) => {
                let (i, _) = self.field_of(f, &[Type::Str, Type::StrSet], "len")?;
                (Operand::Len(i), Type::Int)
            }
            Term::Lit(Literal::Int(i)) => (Operand::Lit(Lit::Int(*i)), Type::Int),
            Term::Lit(Literal::Str(s)) => (Operand::Lit(Lit::Str(s.as_str().into())), Type::Str),
            Term::Lit(Literal::Bool(b)) => (Operand::Lit(Lit::Bool(*b)), Type::Bool),
        })
    }

    fn exprs(&self, xs: &[Expr]) -> Result<Vec<Cond>, LoadError> {
        xs.iter().map(|x| self.expr(x)).collect()
    }

    fn expr(&self, e: &Expr) -> Result<Cond, LoadError> {
        Ok(match e {
            Expr::Const(b) => Cond::Const(*b),
            Expr::And(xs) => Cond::And(by_cost(self.exprs(xs)?)),
            Expr::Or(xs) => Cond::Or(by_cost(self.exprs(xs)?)),
            Expr::Not(x) => Cond::Not(Box::new(self.expr(x)?)),
            Expr::Has(f) => Cond::Has(self.field(f)?.0),
            Expr::Truthy(f) => Cond::Truthy(self.field_of(f, &[Type::Bool], "truthy")?.0),
            Expr::Cmp { op, lhs, rhs, .. } => {
                let (l, lt) = self.operand(lhs)?;
                let (r, rt) = self.operand(rhs)?;
                let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
                if lt != rt || (ordering && lt == Type::StrSet) {
                    return Err(self.mismatch(format!(
                        "`{}` cannot compare {} with {}",
                        op.as_str(),
                        lt.as_str(),
                        rt.as_str()
                    )));
                }
                match (l, r) {
                    (Operand::Field(field), Operand::Lit(Lit::Int(value))) => Cond::IntCmp {
                        field,
                        op: *op,
                        value,
                    },
                    (Operand::Lit(Lit::Int(value)), Operand::Field(field)) => Cond::IntCmp {
                        field,
                        op: op.flipped(),
                        value,
                    },
                    (Operand::Field(field), Operand::Lit(Lit::Str(value)))
                    | (Operand::Lit(Lit::Str(value)), Operand::Field(field))
                        if matches!(op, CmpOp::Eq | CmpOp::Ne) =>
                    {
                        Cond::StrEq {
                            field,
                            value,
                            eq: *op == CmpOp::Eq,
                        }
                    }
                    (lhs, rhs) => Cond::Cmp { op: *op, lhs, rhs },
                }
            }
            Expr::In { lhs, values } => {
                let (l, ty) = self.operand(lhs)?;
                Cond::In {
                    lhs: l,
                    values: self.in_set(ty, values)?,
                }
            }
            Expr::Contains { field, value } | Expr::SetContains { field, value } => {
                match self.field_of(field, &[Type::Str, Type::StrSet], "contains")? {
                    (i, Type::StrSet) => Cond::SetContains {
                        field: i,
                        value: value.as_str().into(),
                    },
                    (i, _) => Cond::Contains {
                        field: i,
                        needle: value.as_str().into(),
                    },
                }
            }
            Expr::StartsWith { field, value } => Cond::StartsWith {
                field: self.field_of(field, &[Type::Str], "starts_with")?.0,
                prefix: value.as_str().into(),
            },
            Expr::EndsWith { field, value } => Cond::EndsWith {
                field: self.field_of(field, &[Type::Str], "ends_with")?.0,
                suffix: value.as_str().into(),
            },
            Expr::Matches { field, pattern } => {
                let field = self.field_of(field, &[Type::Str], "matches")?.0;
                let re = self.regex(pattern)?;
                let mut regexes = self.regexes.borrow_mut();
                let next = regexes.slots.len();
                let slot = *regexes
                    .slots
                    .entry((pattern.clone(), field))
                    .or_insert(next);
                Cond::Matches { field, re, slot }
            }
        })
    }

    fn in_set(&self, ty: Type, values: &[Literal]) -> Result<InSet, LoadError> {
        let bad = |v: &Literal| {
            self.mismatch(format!(
                "`in` list value {v:?} does not have type {}",
                ty.as_str()
            ))
        };
        Ok(match ty {
            Type::Int => {
                let mut out = Vec::with_capacity(values.len());
                for v in values {
                    let Literal::Int(i) = v else {
                        return Err(bad(v));
                    };
                    out.push(*i);
                }
                out.sort_unstable();
                out.dedup();
                InSet::Int(out.into())
            }
            Type::Str => {
                let mut out: Vec<Box<str>> = Vec::with_capacity(values.len());
                for v in values {
                    let Literal::Str(s) = v else {
                        return Err(bad(v));
                    };
                    out.push(s.as_str().into());
                }
                out.sort_unstable();
                out.dedup();
                InSet::Str(out.into())
            }
            Type::Bool => {
                let (mut t, mut f) = (false, false);
                for v in values {
                    match v {
                        Literal::Bool(true) => t = true,
                        Literal::Bool(false) => f = true,
                        other => return Err(bad(other)),
                    }
                }
                InSet::Bool { t, f }
            }
            Type::StrSet => {
                return Err(self.mismatch("`in` does not apply to a set<string>".to_string()));
            }
        })
    }

    fn modify(&self, effect: &Effect) -> Result<Option<Modify>, LoadError> {
        let Effect::Modify { field, value, .. } = effect else {
            return Ok(None);
        };
        let (target, ty) = self.field(field)?;
        let source = |src: &str, what: &str| -> Result<usize, LoadError> {
            let (i, sty) = self.field_of(src, &[Type::Str, Type::StrSet], what)?;
            if sty == ty {
                Ok(i)
            } else {
                Err(self.mismatch(format!(
                    "`{what}({src})` of type {} cannot be assigned to `{field}` of type {}",
                    sty.as_str(),
                    ty.as_str()
                )))
            }
        };
        let op = match value {
            ModifyValue::Literal(lit) => {
                let v = match lit {
                    Literal::Int(i) => FieldValue::Int(*i),
                    Literal::Str(s) => FieldValue::Str(s.clone()),
                    Literal::Bool(b) => FieldValue::Bool(*b),
                };
                if v.ty() != ty {
                    return Err(self.mismatch(format!(
                        "a {} cannot be assigned to `{field}` of type {}",
                        v.ty().as_str(),
                        ty.as_str()
                    )));
                }
                ModOp::Literal(v)
            }
            ModifyValue::Redact { field: src } => ModOp::Redact {
                src: source(src, "redact")?,
            },
            ModifyValue::RedactPattern {
                field: src,
                pattern,
            } => ModOp::RedactPattern {
                src: source(src, "redact")?,
                re: self.regex(pattern)?,
            },
            ModifyValue::Truncate { field: src, len } => ModOp::Truncate {
                src: source(src, "truncate")?,
                len: usize::try_from(*len).unwrap_or(usize::MAX),
            },
            ModifyValue::Lowercase { field: src } => ModOp::Lowercase {
                src: source(src, "lowercase")?,
            },
        };
        Ok(Some(Modify {
            target,
            field: field.clone(),
            op,
        }))
    }
}

// ---------------------------------------------------------------------------
// The tool index.

/// An over-approximation of the tool values for which something can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tools {
    Any,
    Only(BTreeSet<String>),
}

impl Tools {
    fn none() -> Tools {
        Tools::Only(BTreeSet::new())
    }

    fn union(self, other: Tools) -> Tools {
        match (self, other) {
            (Tools::Only(mut a), Tools::Only(b)) => {
                a.extend(b);
                Tools::Only(a)
            }
            _ => Tools::Any,
        }
    }

    fn intersect(self, other: Tools) -> Tools {
        match (self, other) {
            (Tools::Any, x) | (x, Tools::Any) => x,
            (Tools::Only(a), Tools::Only(b)) => Tools::Only(a.intersection(&b).cloned().collect()),
        }
    }
}

/// For a condition, the tools for which it may be true and those for which
/// it may be false, assuming the request carries a tool (requests without
/// one are scanned in full).
///
/// `tool == "x"` may be true only for `x` and may be false for any tool;
/// `tool != "x"` the reverse; `not` swaps the two; `and` intersects the
/// may-be-true sets and unites the may-be-false ones, `or` the opposite.
/// Anything else may be either for any tool.
fn tools_of(e: &Expr) -> (Tools, Tools) {
    let is_tool = |t: &Term| matches!(t, Term::Field(f) if f == TOOL_FIELD);
    let lit_str = |t: &Term| match t {
        Term::Lit(Literal::Str(s)) => Some(s.clone()),
        _ => None,
    };
    match e {
        Expr::Const(true) => (Tools::Any, Tools::none()),
        Expr::Const(false) => (Tools::none(), Tools::Any),
        Expr::And(xs) => xs
            .iter()
            .map(tools_of)
            .fold((Tools::Any, Tools::none()), |(t, f), (xt, xf)| {
                (t.intersect(xt), f.union(xf))
            }),
        Expr::Or(xs) => xs
            .iter()
            .map(tools_of)
            .fold((Tools::none(), Tools::Any), |(t, f), (xt, xf)| {
                (t.union(xt), f.intersect(xf))
            }),
        Expr::Not(x) => {
            let (t, f) = tools_of(x);
            (f, t)
        }
        Expr::Cmp { op, lhs, rhs, .. } => {
            let value = if is_tool(lhs) {
                lit_str(rhs)
            } else if is_tool(rhs) {
                lit_str(lhs)
            } else {
                None
            };
            let one = |s: String| Tools::Only(BTreeSet::from([s]));
            match (op, value) {
                (CmpOp::Eq, Some(s)) => (one(s), Tools::Any),
                (CmpOp::Ne, Some(s)) => (Tools::Any, one(s)),
                _ => (Tools::Any, Tools::Any),
            }
        }
        Expr::In { lhs, values } if is_tool(lhs) => {
            let set = values
                .iter()
                .filter_map(|v| match v {
                    Literal::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            (Tools::Only(set), Tools::Any)
        }
        _ => (Tools::Any, Tools::Any),
    }
}

#[derive(Debug)]
struct ToolIndex {
    /// The slot of `tool`, when the schema has a string field of that name.
    tool: Option<usize>,
    /// Per tool, the checks that can match only some tools (this one among
    /// them), in check order.
    by_tool: HashMap<Box<str>, Box<[u32]>>,
    /// The checks that can match any tool, in check order.
    wildcard: Box<[u32]>,
    /// The number of checks.
    len: u32,
}

impl ToolIndex {
    fn new(tool: Option<usize>, sets: &[Tools]) -> ToolIndex {
        let mut by_tool: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut wildcard = Vec::new();
        let len = u32::try_from(sets.len()).unwrap_or(u32::MAX);
        for (i, set) in (0..len).zip(sets) {
            match set {
                Tools::Any => wildcard.push(i),
                // INVARIANT: a check is in exactly one of `wildcard` or the
                // `by_tool` lists of its tools; a check whose may-be-true set
                // is empty never matches a request with a tool.
                Tools::Only(names) => {
                    for name in names {
                        by_tool.entry(name.as_str().into()).or_default().push(i);
                    }
                }
            }
        }
        ToolIndex {
            tool,
            by_tool: by_tool.into_iter().map(|(k, v)| (k, v.into())).collect(),
            wildcard: wildcard.into(),
            len,
        }
    }

    fn candidates(&self, req: &Request) -> Candidates<'_> {
        match self.tool {
            Some(slot) => self.candidates_for(str_of(req, slot)),
            None => Candidates::All(0..self.len),
        }
    }

    fn candidates_for(&self, tool: Option<&str>) -> Candidates<'_> {
        match (self.tool, tool) {
            (Some(_), Some(t)) => Candidates::Merge {
                a: self.by_tool.get(t).map_or(&[][..], |v| &v[..]),
                b: &self.wildcard,
            },
            _ => Candidates::All(0..self.len),
        }
    }
}

/// The checks to examine, in check order.
enum Candidates<'a> {
    All(std::ops::Range<u32>),
    /// Two ascending, disjoint lists, merged.
    Merge {
        a: &'a [u32],
        b: &'a [u32],
    },
}

impl Iterator for Candidates<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        match self {
            Candidates::All(r) => r.next(),
            Candidates::Merge { a, b } => {
                let side = match (a.first(), b.first()) {
                    (Some(x), Some(y)) if x < y => a,
                    (Some(_), None) => a,
                    (_, Some(_)) => b,
                    (None, None) => return None,
                };
                let (first, rest) = side.split_first()?;
                *side = rest;
                Some(*first)
            }
        }
    }
}
