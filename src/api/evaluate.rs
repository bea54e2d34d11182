//! `POST /v1/evaluate`: the response document agents receive (SPEC §5).
//!
//! Shape: `decision`, `observed` (for a request in the observe scope of
//! `[governance]`: the decision the policies reached, while `decision` is
//! `allow`), `approval_id` (only for `require_approval`), `reasons`,
//! `artifact`, `cohort` and `stage` (when the engine routes), `audit`, and —
//! when the decision is `modify` or `require_approval` and a modification
//! changed a field — `modifications` and the modified `request`.

use serde::{Deserialize, Serialize};

use crate::model::ir::DecisionKind;

/// The evaluate response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalResponse {
    pub decision: DecisionKind,
    /// The request is in the observe scope: the decision the policies
    /// reached (`decision` is then `allow` and `audit` true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<DecisionKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    pub reasons: Vec<ResponseReason>,
    /// The artifact's hash.
    pub artifact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default)]
    pub audit: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modifications: Vec<ResponseModification>,
    /// The request with the modifications applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
}

/// One contributing rule or limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseReason {
    pub policy: String,
    pub version: String,
    /// The rule or limit name.
    pub rule: String,
    pub effect: DecisionKind,
    /// Absent for `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The approving group (`require_approval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The approval tool (`require_approval … via`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The reason is an exceeded limit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub limit: bool,
}

/// One modification that changed a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseModification {
    pub policy: String,
    pub rule: String,
    pub field: String,
    pub code: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}
