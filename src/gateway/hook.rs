//! `sluice hook claude-code`: a Claude Code `PreToolUse` event in, the
//! hook's answer out. Pure: the command reads standard input, asks a
//! [`crate::gateway::decide::Decider`] and prints what [`answer`] makes.
//!
//! | decision | `permissionDecision` | also |
//! |---|---|---|
//! | `allow` | `allow` | |
//! | `modify` | `allow` | `updatedInput`: the tool input with the modified values |
//! | `deny` | `deny` | |
//! | `require_approval` | `ask` | the reason names the approval id |
//!
//! `permissionDecisionReason` lists every reason as `CODE: text (policy.rule)`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::evaluate::EvalResponse;
use crate::gateway::request::{self, Caller};
use crate::model::ir::DecisionKind;
use crate::model::schema::Schema;

/// The part of a hook event sluice reads; other fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub session_id: String,
    pub hook_event_name: String,
    pub tool_name: String,
    #[serde(default)]
    pub tool_input: Map<String, Value>,
}

/// An event that cannot be decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("the hook event is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "`sluice hook claude-code` answers `PreToolUse` events, not `{0}`: register it under \"PreToolUse\" in settings.json"
    )]
    NotPreToolUse(String),
}

/// Reads a hook event.
pub fn read_event(text: &str) -> Result<Event, EventError> {
    let event: Event = serde_json::from_str(text)?;
    if event.hook_event_name != "PreToolUse" {
        return Err(EventError::NotPreToolUse(event.hook_event_name));
    }
    Ok(event)
}

/// The policy request for `event`: `tool` is the tool's name as Claude Code
/// gives it (`Bash`, `Write`, `mcp__server__tool`), `session` the Claude
/// Code session, `args` the tool input's declared fields.
pub fn request(event: &Event, agent: Option<&str>, org: Option<&str>, schema: &Schema) -> Value {
    let caller = Caller {
        agent: agent.map(str::to_string),
        org: org.map(str::to_string),
        session: Some(event.session_id.clone()),
    };
    request::build(&event.tool_name, &caller, &event.tool_input, schema)
}

/// The hook's output document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub hook_specific_output: Specific,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Specific {
    pub hook_event_name: String,
    pub permission_decision: String,
    pub permission_decision_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<Map<String, Value>>,
}

/// What the hook answers for `event` decided by `response`.
pub fn answer(event: &Event, response: &EvalResponse) -> Output {
    let reasons = reasons_text(response);
    let (decision, reason, updated) = match response.decision {
        DecisionKind::Allow => ("allow", format!("sluice: allowed{reasons}"), None),
        DecisionKind::Modify => {
            let updated = response
                .request
                .as_ref()
                .map(|m| request::apply_modified(&event.tool_input, m));
            (
                "allow",
                format!("sluice: allowed with changes{reasons}"),
                updated,
            )
        }
        DecisionKind::Deny => ("deny", format!("sluice: denied{reasons}"), None),
        DecisionKind::RequireApproval => {
            let id = response.approval_id.as_deref().unwrap_or("(no id)");
            ("ask", format!("sluice: needs approval {id}{reasons}"), None)
        }
    };
    Output {
        hook_specific_output: Specific {
            hook_event_name: "PreToolUse".to_string(),
            permission_decision: decision.to_string(),
            permission_decision_reason: reason,
            updated_input: updated,
        },
    }
}

/// `: CODE: text (policy.rule); …`, or nothing when no rule decided.
pub fn reasons_text(response: &EvalResponse) -> String {
    let parts: Vec<String> = response
        .reasons
        .iter()
        .filter(|r| r.code.is_some() || r.text.is_some())
        .map(|r| {
            format!(
                "{}: {} ({}.{})",
                r.code.as_deref().unwrap_or("-"),
                r.text.as_deref().unwrap_or(""),
                r.policy,
                r.rule
            )
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_events_are_refused_by_name() {
        let e =
            read_event(r#"{"session_id":"s","hook_event_name":"PostToolUse","tool_name":"Bash"}"#);
        assert!(matches!(e, Err(EventError::NotPreToolUse(n)) if n == "PostToolUse"));
        assert!(matches!(read_event("{"), Err(EventError::Json(_))));
        assert!(matches!(
            read_event(r#"{"hook_event_name":"PreToolUse"}"#),
            Err(EventError::Json(_))
        ));
    }
}
