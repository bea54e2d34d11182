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
//!   exceeded contributes nothing. Limits are counted once every rule is
//!   known: a request that the rules (or the default) deny is not counted
//!   against any limit — its limits are only read, so that it still shows
//!   one it is over — since nothing of it goes through; any other request
//!   counts against every limit it applies to (one limit refusing it does
//!   not take back the count of another).
//! - A request in the artifact's observe scope (`[governance] observe`,
//!   SPEC §9) is evaluated and its limits counted as any other's (by the
//!   policies' decision), but its answer is `allow`: [`Outcome::decision`] is `allow` and [`Outcome::observed`] the
//!   decision the policies reached.
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
//! - Limits are counted as they are met ([`Evaluator::evaluate_into`], a
//!   store in this process) or left pending and counted together in one
//!   call ([`Evaluator::evaluate_deferred`], [`Evaluator::settle`]: a store
//!   across the network, which the caller awaits).
//! - Reasons are indices until rendered; [`Evaluator::evaluate_into`] reuses
//!   an [`Outcome`]'s buffers, so a steady-state evaluation allocates only
//!   when a limit store does.
//!
//! Layout: [`request`] decodes, [`state`] holds the limit store trait,
//! [`response`] renders; inside, `build` compiles an artifact into `compiled`
//! conditions, `modify` effects and `limits`, and `index` is the tool index.
//! [`outright`] finds the deny rules that hold whatever a request's other
//! fields (the gateway's `tools/list`).

mod build;
mod compiled;
mod error;
pub mod explain;
mod fnv;
mod index;
mod limits;
mod modify;
mod observe;
mod outcome;
pub mod outright;
pub mod request;
pub mod response;
pub mod state;
pub mod unique;

use std::cell::RefCell;
use std::sync::Arc;

use crate::compile::artifact::Artifact;
use crate::eval::build::{Ctx, Regexes};
use crate::eval::compiled::Condition;
use crate::eval::index::{Candidates, ToolIndex, tools_of};
use crate::eval::limits::LimitSpec;
use crate::eval::modify::Modify;
use crate::eval::outcome::Pending;
use crate::eval::request::{Request, field_index, schema_fingerprint};
use crate::eval::state::{LimitCall, LimitKey, LimitStore, StateError, Window};
use crate::model::ir::{DecisionKind, Effect, Tier, Type};
use crate::model::schema::Schema;

pub use crate::eval::error::{EvalError, LoadError};
pub(crate) use crate::eval::fnv::Fnv1a;
pub use crate::eval::limits::MAX_KEY;
pub use crate::eval::outcome::{Modification, Modified, Outcome, Reason};

/// What replaces a redacted value or match.
pub const REDACTED: &str = "[REDACTED]";

/// The most policy versions [`Evaluator::versions_for`] names.
pub const MAX_VERSIONS: usize = 64;

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
    /// The requests the policies only observe.
    scope: observe::Scope,
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
                    when: rule.when.clone(),
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
                    when: limit.when.clone(),
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
            scope: observe::Scope::new(schema, &artifact.governance)?,
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
        let counting = Counting::Store(limits, mode);
        self.run(req, now, counting, self.index.candidates(req), out)
    }

    /// Evaluates the conditions of `req` into `out` and leaves its limits
    /// pending: [`Evaluator::pending`] lists the counters to ask a store
    /// (an asynchronous one, say, several limits in one call), and
    /// [`Evaluator::settle`] completes the outcome with the answers. The
    /// result is the one [`Evaluator::evaluate_into`] gives when the store
    /// answers the same.
    pub fn evaluate_deferred(
        &self,
        req: &Request,
        now: u64,
        out: &mut Outcome,
    ) -> Result<(), EvalError> {
        self.run(req, now, Counting::Defer, self.index.candidates(req), out)
    }

    /// The limit counters a deferred evaluation left pending, in check
    /// order: counter, window and the limit's own max. The caller counts
    /// them only when [`counts_limits`] says so of the outcome's decision
    /// (else it reads them).
    pub fn pending<'a>(&'a self, out: &'a Outcome) -> impl Iterator<Item = LimitCall<'a>> + 'a {
        out.pending.iter().filter_map(|p| {
            let limit = self.checks.get(p.check as usize)?.limit.as_ref()?;
            Some(LimitCall {
                key: LimitKey {
                    limit: &limit.id,
                    key: out.keys.get(p.key.clone())?,
                },
                window: p.window,
                max: limit.max,
            })
        })
    }

    /// Completes a deferred evaluation: `within[i]` says whether the `i`-th
    /// pending counter let the request through (counting: it was counted;
    /// a dry run: its count is under the max). A limit not within
    /// contributes its `exceed` effect.
    pub fn settle(&self, out: &mut Outcome, within: &[bool]) -> Result<(), EvalError> {
        if within.len() != out.pending.len() {
            return Err(EvalError::State(StateError::Unavailable(format!(
                "the store answered {} limit(s) of {}",
                within.len(),
                out.pending.len()
            ))));
        }
        let mut exceeded = false;
        for (p, ok) in out.pending.iter().zip(within) {
            if !ok {
                out.hits.push(p.check);
                exceeded = true;
            }
        }
        out.pending.clear();
        out.keys.clear();
        if exceeded {
            out.hits.sort_unstable();
            out.decision = self.decide(&out.hits);
        }
        Ok(())
    }

    /// The most severe effect of `hits`, or the default.
    fn decide(&self, hits: &[u32]) -> DecisionKind {
        hits.iter()
            .filter_map(|i| self.checks.get(*i as usize))
            .map(|c| c.effect.kind())
            .max()
            .unwrap_or(self.artifact.default)
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
        self.run(req, now, Counting::Store(limits, mode), all, &mut out)?;
        Ok(out)
    }

    fn run(
        &self,
        req: &Request,
        now: u64,
        counting: Counting<'_>,
        candidates: Candidates<'_>,
        out: &mut Outcome,
    ) -> Result<(), EvalError> {
        // Reached through the index, a check's leading tool atoms hold.
        let indexed = matches!(candidates, Candidates::Merge { .. });
        if req.schema_id() != self.schema_id {
            return Err(EvalError::SchemaMismatch);
        }
        out.hits.clear();
        out.pending.clear();
        out.keys.clear();
        out.examined = 0;
        out.observed = self.scope.fits(req);
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
                // Counted once every rule is known (below, or by the
                // caller of a deferred evaluation).
                if limit.key_into(req, &mut out.scratch) {
                    let start = out.keys.len();
                    out.keys.push_str(&out.scratch);
                    out.pending.push(Pending {
                        check: i,
                        key: start..out.keys.len(),
                        window: Window::containing(now, limit.window_secs),
                    });
                }
                continue;
            }
            out.hits.push(i);
            let kind = check.effect.kind();
            worst = Some(worst.map_or(kind, |w| w.max(kind)));
        }
        out.decision = worst.unwrap_or(self.artifact.default);
        if let Counting::Store(store, mode) = counting {
            self.count_pending(store, mode, out)?;
        }
        Ok(())
    }

    /// Counts (or reads) the limits `run` left pending in `store`: read
    /// only in a dry run or when the rules deny the request.
    fn count_pending(
        &self,
        store: &dyn LimitStore,
        mode: LimitMode,
        out: &mut Outcome,
    ) -> Result<(), EvalError> {
        let read_only = mode == LimitMode::DryRun || !counts_limits(out.decision);
        let mut exceeded = false;
        for p in &out.pending {
            let Some(limit) = self
                .checks
                .get(p.check as usize)
                .and_then(|c| c.limit.as_ref())
            else {
                continue;
            };
            let key = LimitKey {
                limit: &limit.id,
                key: out.keys.get(p.key.clone()).unwrap_or_default(),
            };
            let within = if read_only {
                store.count(key, p.window)? < limit.max
            } else {
                store.try_acquire(key, p.window, limit.max)?
            };
            if !within {
                out.hits.push(p.check);
                exceeded = true;
            }
        }
        out.pending.clear();
        out.keys.clear();
        if exceeded {
            out.hits.sort_unstable();
            out.decision = self.decide(&out.hits);
        }
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

    /// The request as the engine may keep it (the decision log, an
    /// approval), whatever the decision: with every modification of
    /// `outcome` applied, so that what a `modify` redacts is never kept in
    /// clear. `None` when no modification changes it.
    pub fn kept_request(&self, req: &Request, outcome: &Outcome) -> Option<serde_json::Value> {
        let modifies = outcome.hits.iter().any(|i| {
            self.checks
                .get(*i as usize)
                .is_some_and(|c| c.modify.is_some())
        });
        if !modifies {
            return None;
        }
        let modified = self.apply_modifications(req, outcome);
        (!modified.applied.is_empty()).then(|| modified.request.to_json(self.schema()))
    }

    /// The policies `req` is evaluated against (those with a rule or limit
    /// of its tool, through the index), name → version, at most
    /// [`MAX_VERSIONS`] of them (the artifact's hash names them all).
    pub fn versions_for(&self, req: &Request) -> std::collections::BTreeMap<&str, &str> {
        let mut out = std::collections::BTreeMap::new();
        for i in self.index.candidates(req) {
            let Some(check) = self.checks.get(i as usize) else {
                continue;
            };
            if out.len() >= MAX_VERSIONS && !out.contains_key(check.policy.name.as_str()) {
                continue;
            }
            out.insert(check.policy.name.as_str(), check.policy.version.as_str());
        }
        out
    }

    /// How many rules and limits a request with this tool value would
    /// examine (`None`: a request without a tool).
    pub fn candidate_count(&self, tool: Option<&str>) -> usize {
        self.index.candidates_for(tool).count()
    }
}

/// Whether a request whose rules decided `decision` is counted against
/// its limits: not when they deny it (nothing of it goes through).
pub fn counts_limits(decision: DecisionKind) -> bool {
    decision != DecisionKind::Deny
}

/// How a run treats the limits whose condition holds.
#[derive(Clone, Copy)]
enum Counting<'a> {
    /// Ask this store at once.
    Store(&'a dyn LimitStore, LimitMode),
    /// Leave them pending for [`Evaluator::settle`].
    Defer,
}

/// What every check of one policy shares.
#[derive(Debug)]
struct PolicyMeta {
    name: String,
    version: String,
    tier: Tier,
}

/// One rule or limit, compiled: the unit the index selects and `run`
/// examines.
#[derive(Debug)]
struct Check {
    policy: Arc<PolicyMeta>,
    name: String,
    kind: CheckKind,
    cond: Condition,
    /// The condition as written (for explanations).
    when: crate::model::ir::Expr,
    effect: Effect,
    modify: Option<Modify>,
    limit: Option<LimitSpec>,
}
