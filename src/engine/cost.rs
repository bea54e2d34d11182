//! Each inventoried agent's calls per day, against the cost envelope its
//! `agents/*.toml` gives (`cost = { calls_per_day = N }`, SPEC §9), for
//! `GET /v1/stats` and `GET /metrics`.
//!
//! Only agents of the evaluating artifact's inventory are counted (a request
//! naming another agent counts nowhere), so the figures hold at most one
//! entry per inventoried agent. A day is a UTC day of the engine's clock; a
//! call on a new day starts that agent's count afresh. Every evaluation
//! counts, whatever its decision: a denied call is still a call.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::api::stats::AgentFigures;
use crate::model::inventory::Inventory;

const DAY_SECS: u64 = 86_400;

/// The calls of the current day, per agent id.
#[derive(Debug, Default)]
pub struct AgentCalls {
    days: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl AgentCalls {
    /// Counts a call by `agent` at `now_secs`, when `inventory` has it.
    pub fn record(&self, inventory: &Inventory, agent: Option<&str>, now_secs: u64) {
        let Some(agent) = agent.filter(|a| inventory.agent(a).is_some()) else {
            return;
        };
        let day = now_secs / DAY_SECS;
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        match days.get_mut(agent) {
            Some((d, n)) if *d == day => *n += 1,
            Some(entry) => *entry = (day, 1),
            None => {
                days.insert(agent.to_string(), (day, 1));
            }
        }
    }

    /// Every agent of `inventory` with its calls today (at `now_secs`) and
    /// its envelope, sorted by id.
    pub fn report(&self, inventory: &Inventory, now_secs: u64) -> Vec<AgentFigures> {
        let day = now_secs / DAY_SECS;
        let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        inventory
            .agents
            .iter()
            .map(|a| {
                let calls = days
                    .get(&a.id)
                    .filter(|(d, _)| *d == day)
                    .map_or(0, |(_, n)| *n);
                let envelope = a.cost.map(|c| c.calls_per_day);
                AgentFigures {
                    agent: a.id.clone(),
                    day_start: day * DAY_SECS,
                    calls,
                    calls_per_day: envelope,
                    cost_ratio: envelope.map(|e| calls as f64 / e as f64),
                }
            })
            .collect()
    }
}
