//! A tool call as a policy request (SPEC §8), and a `modify` decision's
//! values written back into the call's arguments. Pure: JSON in, JSON out.
//!
//! The request carries `tool`, `agent`, `org` and `session` when the schema
//! declares them, and under `args` only the arguments the schema declares:
//! an argument no policy can name is forwarded to the tool but never
//! evaluated (the engine would refuse a request carrying it). An argument
//! whose object holds declared fields is walked into; anything else is left
//! out.

use serde_json::{Map, Value};

use crate::model::schema::Schema;

/// Who calls a tool, and in which session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub agent: Option<String>,
    pub org: Option<String>,
    pub session: Option<String>,
}

/// The request for a call of `tool` with `arguments`, as `schema` declares
/// it. A declared top-level field the caller lacks is left out (the engine
/// then names it, when it is required).
pub fn build(
    tool: &str,
    caller: &Caller,
    arguments: &Map<String, Value>,
    schema: &Schema,
) -> Value {
    let mut req = Map::new();
    let mut put = |name: &str, value: Option<&str>| {
        if let (Some(v), true) = (value, schema.get(name).is_some()) {
            req.insert(name.to_string(), Value::from(v));
        }
    };
    put("tool", Some(tool));
    put("agent", caller.agent.as_deref());
    put("org", caller.org.as_deref());
    put("session", caller.session.as_deref());
    let mut path = String::from("args");
    if let Some(args) = declared(arguments, &mut path, schema) {
        req.insert("args".to_string(), Value::Object(args));
    }
    Value::Object(req)
}

/// The members of `obj` (at `path`) the schema declares, or that hold
/// declared fields; `None` when there are none.
fn declared(
    obj: &Map<String, Value>,
    path: &mut String,
    schema: &Schema,
) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let len = path.len();
    for (key, value) in obj {
        path.truncate(len);
        path.push('.');
        path.push_str(key);
        if key.is_empty() || key.contains('.') {
            continue;
        }
        if schema.get(path).is_some() {
            out.insert(key.clone(), value.clone());
        } else if let Value::Object(inner) = value
            && let Some(inner) = declared(inner, path, schema)
        {
            out.insert(key.clone(), Value::Object(inner));
        }
    }
    path.truncate(len);
    (!out.is_empty()).then_some(out)
}

/// The call's arguments with a modified request's `args` written over
/// them: every declared argument takes the modified value; the arguments
/// the schema does not declare stay as they were.
pub fn apply_modified(arguments: &Map<String, Value>, modified: &Value) -> Map<String, Value> {
    let mut out = arguments.clone();
    if let Some(Value::Object(args)) = modified.get("args") {
        merge(&mut out, args);
    }
    out
}

fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(from_inner)) => merge(inner, from_inner),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::ir::{FieldDecl, Type};

    fn schema() -> Schema {
        let f = |path: &str, ty, optional| FieldDecl {
            path: path.to_string(),
            ty,
            optional,
        };
        Schema::new(vec![
            f("tool", Type::Str, false),
            f("agent", Type::Str, false),
            f("session", Type::Str, true),
            f("args.amount", Type::Int, false),
            f("args.to.country", Type::Str, true),
            f("args.body", Type::Str, true),
        ])
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn only_declared_fields_and_arguments_are_sent() {
        let caller = Caller {
            agent: Some("bot".into()),
            org: Some("acme".into()),
            session: Some("s1".into()),
        };
        let args = obj(
            json!({"amount": 5, "memo": "x", "to": {"country": "DE", "iban": "X"},
                              "a.b": 1, "body": null}),
        );
        let req = build("pay.send", &caller, &args, &schema());
        assert_eq!(
            req,
            json!({"tool": "pay.send", "agent": "bot", "session": "s1",
                   "args": {"amount": 5, "to": {"country": "DE"}, "body": null}})
        );
    }

    #[test]
    fn no_declared_argument_means_no_args() {
        let req = build("t", &Caller::default(), &obj(json!({"x": 1})), &schema());
        assert_eq!(req, json!({"tool": "t"}));
    }

    #[test]
    fn modified_values_replace_declared_arguments_and_keep_the_rest() {
        let args = obj(
            json!({"amount": 5, "body": "ssn 123-45-6789", "to": {"country": "DE", "iban": "X"}}),
        );
        let modified = json!({"tool": "t", "args": {"amount": 5, "body": "ssn [REDACTED]", "to": {"country": "de"}}});
        assert_eq!(
            Value::Object(apply_modified(&args, &modified)),
            json!({"amount": 5, "body": "ssn [REDACTED]", "to": {"country": "de", "iban": "X"}})
        );
    }
}
