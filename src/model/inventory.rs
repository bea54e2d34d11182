//! The agent inventory: `agents/*.toml`, one agent per file (SPEC §9), as
//! `project` reads it, the artifact carries it and the checks read it. Pure
//! data.

use serde::{Deserialize, Serialize};

/// Every inventoried agent, sorted by `id` (unique).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub agents: Vec<Agent>,
}

impl Inventory {
    /// No agent is inventoried: the repository has no `agents/*.toml`, and
    /// none of the inventory's checks applies.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// The agent of this id.
    pub fn agent(&self, id: &str) -> Option<&Agent> {
        match self.agents.binary_search_by(|a| a.id.as_str().cmp(id)) {
            Ok(i) => self.agents.get(i),
            // An inventory built out of order (not by `project`).
            Err(_) => self.agents.iter().find(|a| a.id == id),
        }
    }

    /// Whether some agent declares `tool`.
    pub fn declares_tool(&self, tool: &str) -> bool {
        self.agents
            .iter()
            .any(|a| a.tools.iter().any(|t| t == tool))
    }

    /// Every tool some agent declares, sorted, once.
    pub fn tools(&self) -> Vec<&str> {
        let mut tools: Vec<&str> = self
            .agents
            .iter()
            .flat_map(|a| a.tools.iter().map(String::as_str))
            .collect();
        tools.sort_unstable();
        tools.dedup();
        tools
    }
}

/// One `agents/*.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// The value of the request field `agent` this agent sends.
    pub id: String,
    /// Who answers for the agent (a team, a person).
    pub owner: String,
    /// The tools it calls, as the request field `tool` names them.
    pub tools: Vec<String>,
    /// The data classes it handles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<String>,
    /// The credentials it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// What starts it (a schedule, a webhook, a user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// Its expected cost envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

/// `cost = { calls_per_day = N }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// The calls a day the agent is expected to make (above 0).
    pub calls_per_day: u64,
}
