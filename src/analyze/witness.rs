//! Witness replay: every request the solver produces is run through the real
//! evaluator (`eval`), and the finding shows the decisions it
//! actually gets. A witness that does not reproduce its conflict becomes an
//! `analyze::witness_mismatch` finding: a bug in the analysis, never hidden.
//!
//! A finding on its way out ([`Pending`]) carries what its witness must show
//! ([`Claim`]); [`verify`] replays it and checks. Also the label helpers
//! shared by the analysis findings. It decides no conflict itself. Pure: no
//! I/O.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::run::Witnessed;
use crate::compile::artifact::{Artifact, FORMAT_VERSION};
use crate::diagnostic::{Finding, Label};
use crate::eval::Evaluator;
use crate::eval::state::{
    CounterEntry, LimitKey, LimitStore, MemoryLimitStore, StateError, Window,
};
use crate::model::ir::{DecisionKind, Origin, PolicySet};
use crate::model::schema::Schema;

/// The evaluator the witnesses are replayed on: built from the set, or
/// one the caller already built (the pull-request check builds one per
/// revision and shares it with the replay of traces).
#[derive(Debug)]
pub(crate) struct Replay<'e> {
    evaluator: Held<'e>,
}

#[derive(Debug)]
enum Held<'e> {
    Owned(Box<Evaluator>),
    Shared(&'e Evaluator),
}

/// What the evaluator decides for one witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub decision: DecisionKind,
    /// `policy.rule` → effect, for every contributing rule or limit.
    pub matched: BTreeMap<String, DecisionKind>,
}

impl Run {
    pub fn matches(&self, id: &str) -> bool {
        self.matched.contains_key(id)
    }

    /// `witness_decisions`: the effect of each rule in `ids` ("no match" for
    /// one that does not match) and `final`.
    pub fn decisions<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = ids
            .into_iter()
            .map(|id| {
                let v = self
                    .matched
                    .get(id)
                    .map_or("no match", |k| k.as_str())
                    .to_string();
                (id.to_string(), v)
            })
            .collect();
        out.insert("final".to_string(), self.decision.as_str().to_string());
        out
    }
}

impl<'e> Replay<'e> {
    /// Replays on an evaluator already built for the same set.
    pub fn shared(evaluator: &'e Evaluator) -> Replay<'e> {
        Replay {
            evaluator: Held::Shared(evaluator),
        }
    }

    fn evaluator(&self) -> &Evaluator {
        match &self.evaluator {
            Held::Owned(e) => e,
            Held::Shared(e) => e,
        }
    }

    pub fn new(
        set: &PolicySet,
        schema: &Schema,
        default: DecisionKind,
    ) -> Result<Replay<'e>, String> {
        // Only evaluated, never shipped: no need for the content hash.
        let artifact = Artifact {
            format_version: FORMAT_VERSION,
            project: "analysis".to_string(),
            default,
            schema: schema.clone(),
            policies: set.policies.clone(),
            source_commit: None,
            hash: String::new(),
        };
        let evaluator = Evaluator::new(&artifact).map_err(|e| e.to_string())?;
        Ok(Replay {
            evaluator: Held::Owned(Box::new(evaluator)),
        })
    }

    /// Decodes and evaluates a witness (limits read, not counted, from empty
    /// counters).
    pub fn run(&self, request: &serde_json::Value) -> Result<Run, String> {
        self.run_on(request, &MemoryLimitStore::new())
    }

    /// Evaluates a witness with every counter full: each limit it matches
    /// is exceeded (a claim about a limit's `exceed` effect).
    pub fn run_exceeded(&self, request: &serde_json::Value) -> Result<Run, String> {
        self.run_on(request, &Full)
    }

    /// Evaluates a witness with the counters of the limits in `full` full
    /// (each of them it matches is exceeded) and every other counter empty.
    pub fn run_full(
        &self,
        request: &serde_json::Value,
        full: &std::collections::BTreeSet<String>,
    ) -> Result<Run, String> {
        self.run_on(request, &FullFor(full))
    }

    fn run_on(&self, request: &serde_json::Value, store: &dyn LimitStore) -> Result<Run, String> {
        let evaluator = self.evaluator();
        let req = evaluator
            .decode(request)
            .map_err(|e| format!("the witness is not a valid request: {e}"))?;
        let out = evaluator
            .evaluate_dry_run(&req, 0, store)
            .map_err(|e| e.to_string())?;
        let matched = evaluator
            .reasons(&out)
            .map(|r| (format!("{}.{}", r.policy, r.rule), r.decision()))
            .collect();
        Ok(Run {
            decision: out.decision(),
            matched,
        })
    }
}

/// A label on a rule or limit, by its name's span.
pub(crate) fn label(
    origin: &Origin,
    policy: &str,
    rule: &str,
    message: impl Into<String>,
) -> Label {
    Label::new(&origin.file, origin.span)
        .in_rule(policy, Some(rule.to_string()))
        .with_message(message)
}

/// The internal-error finding for a witness that does not reproduce.
pub(crate) fn mismatch(original: &Finding, why: &str) -> Finding {
    let mut f = Finding::new(
        crate::diagnostic::Code::AnalyzeWitnessMismatch,
        format!(
            "internal error: the witness for this {} does not reproduce: {why}",
            original.code
        ),
    )
    .with_help(format!(
        "the solver's request does not get the decisions the analysis predicted ({}); \
         this is a bug in sluice's analysis — please report it with the policies involved",
        original.message
    ));
    f.labels = original.labels.clone();
    f.witness = original.witness.clone();
    f.witness_decisions = original.witness_decisions.clone();
    f
}

/// A finding with a witness whose decisions are still to be filled in by
/// replay: what it claims, to check against the evaluator.
#[derive(Debug, Clone)]
pub(super) enum Claim {
    /// `allow` matches, `other` matches, the decision is not allow.
    Overridden { allow: String, others: Vec<String> },
    /// Both modify (with every counter full when one is a limit: its
    /// `exceed` modifies).
    Modify {
        a: String,
        b: String,
        exceeded: bool,
    },
    /// `from` matches `original` without a deny; `to` matches the approval
    /// request, which is denied or needs approval.
    Deadlock {
        from: String,
        to: String,
        original: Json,
    },
    /// `from` matches `original` without a deny; no rule matches the
    /// approval request, which the default denies.
    Unruled { from: String, original: Json },
}

/// Counters that are all full: every limit a request matches is exceeded.
struct Full;

impl LimitStore for Full {
    fn try_acquire(&self, _: LimitKey<'_>, _: Window, _: u64) -> Result<bool, StateError> {
        Ok(false)
    }

    fn count(&self, _: LimitKey<'_>, _: Window) -> Result<u64, StateError> {
        Ok(u64::MAX)
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        Ok(Vec::new())
    }

    fn put(&self, _: &CounterEntry) -> Result<(), StateError> {
        Ok(())
    }

    fn remove_limit(&self, _: &str) -> Result<usize, StateError> {
        Ok(0)
    }
}

/// Counters full for the named limits (`policy.limit`), empty for the
/// others.
struct FullFor<'a>(&'a std::collections::BTreeSet<String>);

impl LimitStore for FullFor<'_> {
    fn try_acquire(&self, key: LimitKey<'_>, _: Window, _: u64) -> Result<bool, StateError> {
        Ok(!self.0.contains(key.limit))
    }

    fn count(&self, key: LimitKey<'_>, _: Window) -> Result<u64, StateError> {
        Ok(if self.0.contains(key.limit) {
            u64::MAX
        } else {
            0
        })
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        Ok(Vec::new())
    }

    fn put(&self, _: &CounterEntry) -> Result<(), StateError> {
        Ok(())
    }

    fn remove_limit(&self, _: &str) -> Result<usize, StateError> {
        Ok(0)
    }
}

/// A finding on its way out, with what its witness must show.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) finding: Finding,
    pub(super) claim: Option<Claim>,
}

impl Pending {
    pub(super) fn plain(finding: Finding) -> Pending {
        Pending {
            finding,
            claim: None,
        }
    }
}

pub(super) fn with_witness(
    mut f: Finding,
    witness: &Witnessed,
    claim: Claim,
    out: &mut Vec<Pending>,
) {
    match witness {
        Ok(w) => {
            f.witness = Some(w.request.clone());
            out.push(Pending {
                finding: f,
                claim: Some(claim),
            });
        }
        Err(e) => out.push(Pending::plain(mismatch(
            &f,
            &format!("no witness could be read from the model: {e}"),
        ))),
    }
}

/// Replays every witness and fills in the decisions; a witness that does not
/// do what its finding claims turns the finding into a mismatch.
pub(super) fn verify(pending: Vec<Pending>, replay: &Replay<'_>) -> Vec<Finding> {
    let mut out = Vec::with_capacity(pending.len());
    for Pending { mut finding, claim } in pending {
        let (Some(claim), Some(w)) = (claim, finding.witness.clone()) else {
            out.push(finding);
            continue;
        };
        let run = match &claim {
            Claim::Modify { exceeded: true, .. } => replay.run_exceeded(&w),
            _ => replay.run(&w),
        };
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                out.push(mismatch(&finding, &e));
                continue;
            }
        };
        let ids: Vec<&str> = match &claim {
            Claim::Overridden { allow, others } => std::iter::once(allow.as_str())
                .chain(others.iter().map(String::as_str))
                .collect(),
            Claim::Modify { a, b, .. } => vec![a, b],
            Claim::Deadlock { to, .. } => vec![to],
            Claim::Unruled { .. } => Vec::new(),
        };
        finding.witness_decisions = Some(run.decisions(ids));
        match check_claim(&claim, &run, replay) {
            Some(why) => out.push(mismatch(&finding, &why)),
            None => out.push(finding),
        }
    }
    out
}

/// What is wrong with a replay, if anything.
fn check_claim(claim: &Claim, run: &Run, replay: &Replay<'_>) -> Option<String> {
    match claim {
        Claim::Overridden { allow, others } => {
            if !run.matches(allow) {
                return Some(format!("`{allow}` does not match it"));
            }
            if run.decision == DecisionKind::Allow {
                return Some("the evaluator allows it".into());
            }
            if !others.iter().any(|o| run.matches(o)) {
                return Some(format!("none of {} matches it", others.join(", ")));
            }
            None
        }
        Claim::Modify { a, b, .. } => [a, b]
            .into_iter()
            .find(|x| !run.matches(x))
            .map(|x| format!("`{x}` does not match it")),
        Claim::Deadlock { .. } | Claim::Unruled { .. } => {
            let (from, original) = match claim {
                Claim::Deadlock { from, to, original } => {
                    if !run.matches(to) {
                        return Some(format!("`{to}` does not match the approval request"));
                    }
                    if !matches!(
                        run.decision,
                        DecisionKind::Deny | DecisionKind::RequireApproval
                    ) {
                        return Some("the approval request goes through".into());
                    }
                    (from, original)
                }
                Claim::Unruled { from, original } => {
                    if !run.matched.is_empty() || run.decision != DecisionKind::Deny {
                        return Some(
                            "the approval request is decided by a rule, not denied by the default"
                                .into(),
                        );
                    }
                    (from, original)
                }
                _ => return None,
            };
            match replay.run(original) {
                Ok(o) if !o.matches(from) => {
                    Some(format!("`{from}` does not match the original request"))
                }
                Ok(o) if o.decision == DecisionKind::Deny => {
                    Some("the original request is denied outright".into())
                }
                Ok(_) => None,
                Err(e) => Some(format!("the original request: {e}")),
            }
        }
    }
}
