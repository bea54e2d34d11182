//! The evaluate response (SPEC §5): an outcome rendered as the JSON document
//! agents receive. Pure.
//!
//! Shape: `decision`, `observed` (a request in the observe scope: the
//! policies' decision; `decision` is `allow` and `audit` true), `approval_id` (only for `require_approval`, supplied by
//! the caller, who owns the approval queue), `reasons`, `artifact`, `cohort`
//! and `stage` (when the caller routes), `audit`, and — when the decision is
//! `modify` or `require_approval` and a modification changed a field —
//! `modifications` and the modified `request`. A denied request is not
//! modified: nothing of it goes through.

use crate::api::evaluate::{EvalResponse, ResponseModification, ResponseReason};
use crate::eval::request::Request;
use crate::eval::{CheckKind, Evaluator, Outcome, Reason};
use crate::model::ir::{DecisionKind, Effect};

/// What the caller adds to a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseContext<'a> {
    /// The id of the queued approval; used only when the decision is
    /// `require_approval`.
    pub approval_id: Option<&'a str>,
    pub cohort: Option<&'a str>,
    pub stage: Option<&'a str>,
    /// The response is flagged for audit (an operational policy failed open).
    pub audit: bool,
}

impl From<Reason<'_>> for ResponseReason {
    fn from(r: Reason<'_>) -> Self {
        let (group, via) = match r.effect {
            Effect::RequireApproval { group, via, .. } => (Some(group.clone()), via.clone()),
            _ => (None, None),
        };
        ResponseReason {
            policy: r.policy.to_string(),
            version: r.version.to_string(),
            rule: r.rule.to_string(),
            effect: r.decision(),
            code: r.code().map(str::to_string),
            text: r.text().map(str::to_string),
            group,
            via,
            limit: r.kind == CheckKind::Limit,
        }
    }
}

impl Evaluator {
    /// Renders `outcome` (of `req`) as the evaluate response.
    pub fn respond(
        &self,
        req: &Request,
        outcome: &Outcome,
        cx: &ResponseContext<'_>,
    ) -> EvalResponse {
        let decision = outcome.decision();
        let (modifications, request) = match decision {
            DecisionKind::Modify | DecisionKind::RequireApproval => {
                let modified = self.apply_modifications(req, outcome);
                if modified.applied.is_empty() {
                    (Vec::new(), None)
                } else {
                    let list = modified
                        .applied
                        .iter()
                        .map(|m| ResponseModification {
                            policy: m.policy.to_string(),
                            rule: m.rule.to_string(),
                            field: m.field.to_string(),
                            code: m.code.to_string(),
                        })
                        .collect();
                    (list, Some(modified.request.to_json(self.schema())))
                }
            }
            DecisionKind::Allow | DecisionKind::Deny => (Vec::new(), None),
        };
        let observed = outcome.observed();
        EvalResponse {
            decision,
            observed,
            approval_id: match decision {
                DecisionKind::RequireApproval => cx.approval_id.map(str::to_string),
                _ => None,
            },
            reasons: self.reasons(outcome).map(ResponseReason::from).collect(),
            artifact: self.hash().to_string(),
            cohort: cx.cohort.map(str::to_string),
            stage: cx.stage.map(str::to_string),
            audit: cx.audit || observed.is_some(),
            modifications,
            request,
        }
    }
}
