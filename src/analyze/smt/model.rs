//! From a Z3 model back to a concrete request (the witness of a finding):
//! every required field, the optional ones the model makes present, values
//! read from the model or chosen by `refine`. Nothing here encodes.

use std::collections::BTreeMap;

use z3::Model;

use super::Override;
use super::encoder::{Encoder, Vars};
use super::plan::Repr;
use crate::eval::request::{FieldValue, Request};

impl Encoder<'_> {
    /// The request a model describes: every required field, the optional
    /// ones the model makes present, values from the model (`strings` for
    /// automata-decided fields, from [`Encoder::refine`]) and defaults for
    /// what the model leaves open. `over` replaces a field as in encoding.
    pub fn witness(
        &self,
        model: &Model,
        over: Option<&Override>,
        strings: &BTreeMap<usize, String>,
    ) -> Result<Request, String> {
        let schema = &self.plan.schema;
        let mut req = Request::empty(schema);
        for (i, (plan, vars)) in self.plan.fields.iter().zip(&self.vars).enumerate() {
            let path = &plan.decl.path;
            if let Some(o) = over.filter(|o| o.field == i) {
                req.set(schema, path, Some(FieldValue::Str(o.value.clone())))
                    .map_err(|e| e.to_string())?;
                continue;
            }
            if !self.is_present(model, i) {
                continue;
            }
            let value = match (&vars.vars, &plan.repr) {
                (Vars::Int(v), _) => FieldValue::Int(
                    model
                        .eval(v, true)
                        .and_then(|x| x.as_i64())
                        .ok_or_else(|| format!("`{path}`: the model's integer does not fit i64"))?,
                ),
                (Vars::Bool(v), _) => FieldValue::Bool(
                    model
                        .eval(v, true)
                        .and_then(|x| x.as_bool())
                        .unwrap_or(false),
                ),
                (Vars::Lang(_), _) => FieldValue::Str(strings.get(&i).cloned().unwrap_or_default()),
                (Vars::Code(v), Repr::Code(lits)) => {
                    let code = model.eval(v, true).and_then(|x| x.as_i64()).unwrap_or(-1);
                    match usize::try_from(code).ok().and_then(|c| lits.get(c)) {
                        Some(s) => FieldValue::Str(s.clone()),
                        None => FieldValue::Str(fresh(lits, "other", 0)),
                    }
                }
                (Vars::Set { len, members }, Repr::Set(lits)) => {
                    let mut items: Vec<String> = lits
                        .iter()
                        .zip(members)
                        .filter(|(_, m)| {
                            model.eval(*m, true).and_then(|b| b.as_bool()) == Some(true)
                        })
                        .map(|(l, _)| l.clone())
                        .collect();
                    let n = model.eval(len, true).and_then(|x| x.as_i64()).unwrap_or(0);
                    let n = usize::try_from(n).unwrap_or(0);
                    if n > MAX_SET {
                        return Err(format!(
                            "`{path}`: the model's set has {n} elements, more than a witness holds ({MAX_SET})"
                        ));
                    }
                    let mut k = 0;
                    while items.len() < n {
                        k += 1;
                        items.push(fresh(lits, "item", k));
                    }
                    FieldValue::set(items)
                }
                _ => return Err(format!("`{path}`: inconsistent representation")),
            };
            req.set(schema, path, Some(value))
                .map_err(|e| e.to_string())?;
        }
        Ok(req)
    }
}

/// The most elements a witness set is given (a set whose length must
/// exceed it has no witness).
const MAX_SET: usize = 2_000_000;

/// `{base}` or `{base}-{k}`, the first that is not among `taken` (sorted).
fn fresh(taken: &[String], base: &str, start: usize) -> String {
    let mut k = start;
    loop {
        let s = if k == 0 {
            base.to_string()
        } else {
            format!("{base}-{k}")
        };
        if taken.binary_search(&s).is_err() {
            return s;
        }
        k += 1;
    }
}
