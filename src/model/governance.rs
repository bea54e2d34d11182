//! Governance: `[governance]` of `sluice.toml`, as `project` reads it, the
//! artifact carries it and the evaluator applies it (SPEC §9). Pure data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ir::Literal;

/// `[governance]`: which requests the policies only observe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    /// The observe scope: a request whose every named field has one of the
    /// listed values is evaluated, counted and logged with the policies'
    /// decision, but answered `allow` (`"observed": "<decision>"`,
    /// `audit: true`). Empty: every request is enforced. Keys are schema
    /// fields of type `int`, `string` or `bool`; values have the field's
    /// type; no list is empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observe: BTreeMap<String, Vec<Literal>>,
}

impl Governance {
    /// Nothing is observed: every request is enforced.
    pub fn is_empty(&self) -> bool {
        self.observe.is_empty()
    }
}
