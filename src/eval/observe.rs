//! The observe scope of an artifact's governance (SPEC §9), resolved to
//! field slots: whether a request is one the policies only observe.

use crate::eval::LoadError;
use crate::eval::request::{FieldValue, Request, field_index};
use crate::model::governance::Governance;
use crate::model::ir::Literal;
use crate::model::schema::Schema;

/// `[governance] observe`, by field slot: a request fits when each field
/// holds one of its values (an absent field fits no value).
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    fields: Vec<(usize, Vec<Literal>)>,
}

impl Scope {
    /// Resolves every field of the scope against the schema.
    pub(super) fn new(schema: &Schema, governance: &Governance) -> Result<Scope, LoadError> {
        let mut fields = Vec::with_capacity(governance.observe.len());
        for (path, values) in &governance.observe {
            let Some(slot) = field_index(schema, path) else {
                return Err(LoadError::UnknownField {
                    policy: "governance".to_string(),
                    rule: "observe".to_string(),
                    field: path.clone(),
                });
            };
            fields.push((slot, values.clone()));
        }
        Ok(Scope { fields })
    }

    /// Whether `req` is in the scope (never, when the scope is empty).
    pub(super) fn fits(&self, req: &Request) -> bool {
        !self.fields.is_empty()
            && self.fields.iter().all(|(slot, values)| {
                req.get(*slot)
                    .is_some_and(|v| values.iter().any(|l| same(v, l)))
            })
    }
}

fn same(v: &FieldValue, l: &Literal) -> bool {
    match (v, l) {
        (FieldValue::Int(a), Literal::Int(b)) => a == b,
        (FieldValue::Str(a), Literal::Str(b)) => a == b,
        (FieldValue::Bool(a), Literal::Bool(b)) => a == b,
        _ => false,
    }
}
