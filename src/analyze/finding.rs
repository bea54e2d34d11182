//! Witness replay: every request the solver produces is run through the real
//! evaluator (`eval`), and the finding shows the decisions it
//! actually gets. A witness that does not reproduce its conflict becomes an
//! `analyze::witness_mismatch` finding: a bug in the analysis, never hidden.
//!
//! Also the label helpers shared by the analysis findings. Pure: no I/O.

use std::collections::BTreeMap;

use crate::compile::artifact::{Artifact, FORMAT_VERSION};
use crate::diagnostic::{Finding, Label};
use crate::eval::Evaluator;
use crate::eval::state::MemoryLimitStore;
use crate::model::ir::{DecisionKind, Origin, PolicySet};
use crate::model::schema::Schema;

/// The evaluator the witnesses are replayed on.
#[derive(Debug)]
pub(crate) struct Replay {
    evaluator: Evaluator,
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

impl Replay {
    pub fn new(set: &PolicySet, schema: &Schema, default: DecisionKind) -> Result<Replay, String> {
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
        Ok(Replay { evaluator })
    }

    /// Decodes and evaluates a witness (limits read, not counted, from empty
    /// counters).
    pub fn run(&self, request: &serde_json::Value) -> Result<Run, String> {
        let req = self
            .evaluator
            .decode(request)
            .map_err(|e| format!("the witness is not a valid request: {e}"))?;
        let store = MemoryLimitStore::new();
        let out = self
            .evaluator
            .evaluate_dry_run(&req, 0, &store)
            .map_err(|e| e.to_string())?;
        let matched = self
            .evaluator
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
