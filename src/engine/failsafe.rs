//! The tier failsafe: the answer for a request the engine cannot evaluate
//! against state (its artifact's breaker is open, or the evaluation failed).
//!
//! The policies the request falls under are found by a dry run against
//! [`Saturated`] — conditions only, no limit store, no counting: the part of
//! evaluation that cannot fail. Then: if any of them is `security` or
//! `compliance`, the decision is `deny` with code `FAILSAFE` (one reason per
//! such policy); else, if any is `operational`, `allow` with `audit: true`;
//! if none matches, the project default, with `audit: true` (and code
//! `FAILSAFE` when it is a deny).
//!
//! Pure: a failsafe decision never queues an approval, never counts a limit
//! and never touches the engine's state.

use crate::api::evaluate::{EvalResponse, ResponseReason};
use crate::engine::backend::Saturated;
use crate::eval::request::Request;
use crate::eval::response::ResponseContext;
use crate::eval::{Evaluator, LimitMode, Outcome};
use crate::model::ir::{DecisionKind, Tier};

/// The tier failsafe for `req` (see the module doc): what the engine answers
/// when it cannot evaluate against state.
pub fn failsafe(ev: &Evaluator, req: &Request, now: u64, cx: &ResponseContext<'_>) -> EvalResponse {
    let mut probe = Outcome::default();
    // Saturated never fails; on a schema mismatch nothing matches.
    let _ = ev.evaluate_into(req, now, &Saturated, LimitMode::DryRun, &mut probe);
    let mut closed: Vec<(String, String, Tier)> = Vec::new();
    let mut open: Vec<(String, String, Tier)> = Vec::new();
    for r in ev.reasons(&probe) {
        let list = match r.tier {
            Tier::Security | Tier::Compliance => &mut closed,
            Tier::Operational => &mut open,
        };
        if !list.iter().any(|(p, _, _)| p == r.policy) {
            list.push((r.policy.to_string(), r.version.to_string(), r.tier));
        }
    }
    let reason = |(policy, version, tier): (String, String, Tier), effect: DecisionKind| {
        let (code, text) = match effect {
            DecisionKind::Deny => (
                Some("FAILSAFE".to_string()),
                format!(
                    "the engine cannot evaluate this request now: {} policy `{policy}` fails closed",
                    tier.as_str()
                ),
            ),
            _ => (
                None,
                format!(
                    "the engine cannot evaluate this request now: {} policy `{policy}` fails open",
                    tier.as_str()
                ),
            ),
        };
        ResponseReason {
            policy,
            version,
            rule: "failsafe".to_string(),
            effect,
            code,
            text: Some(text),
            group: None,
            via: None,
            limit: false,
        }
    };
    let (decision, reasons, audit) = if !closed.is_empty() {
        let rs = closed
            .into_iter()
            .map(|p| reason(p, DecisionKind::Deny))
            .collect();
        (DecisionKind::Deny, rs, false)
    } else if !open.is_empty() {
        let rs = open
            .into_iter()
            .map(|p| reason(p, DecisionKind::Allow))
            .collect();
        (DecisionKind::Allow, rs, true)
    } else {
        let default = ev.artifact().default;
        let rs = if default == DecisionKind::Deny {
            vec![ResponseReason {
                policy: String::new(),
                version: String::new(),
                rule: "failsafe".to_string(),
                effect: DecisionKind::Deny,
                code: Some("FAILSAFE".to_string()),
                text: Some(
                    "the engine cannot evaluate this request now: no policy matches and the project default is deny"
                        .to_string(),
                ),
                group: None,
                via: None,
                limit: false,
            }]
        } else {
            Vec::new()
        };
        (default, rs, true)
    };
    EvalResponse {
        decision,
        // The failsafe is the engine's decision, not the policies': it is
        // enforced in the observe scope too.
        observed: None,
        approval_id: None,
        reasons,
        artifact: ev.hash().to_string(),
        cohort: cx.cohort.map(str::to_string),
        stage: cx.stage.map(str::to_string),
        audit,
        modifications: Vec::new(),
        request: None,
    }
}
