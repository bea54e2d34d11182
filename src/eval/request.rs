//! Request decoding: a JSON request checked against the schema and stored in
//! slots indexed by schema field position.
//!
//! Part of the engine's pure core: no I/O. A request is a JSON object holding
//! the top-level fields and nested objects (`args`) as the schema's dotted
//! paths declare them. Decoding rejects, naming the field: a required field
//! missing, a value of the wrong type, and a field the schema does not
//! declare. Once decoded, evaluation reads fields by position and never hashes
//! a field name.
//!
//! Conventions:
//! - `int` is a JSON integer that fits `i64`; `2.0` and `1e3` are not integers.
//! - `set<string>` is a JSON array of strings; it is stored sorted and
//!   deduplicated, and written back the same way.
//! - `null` for an optional field means absent; for a required field it is a
//!   wrong type.
//! - A JSON key containing `.` is never a field: `{"args.amount": 1}` is an
//!   unknown field, `{"args": {"amount": 1}}` is the field `args.amount`.

use serde_json::{Map, Value as Json};

use crate::eval::Fnv1a;
use crate::model::ir::{FieldDecl, Type};
use crate::model::schema::Schema;

/// The value of one request field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldValue {
    Int(i64),
    Str(String),
    Bool(bool),
    /// Sorted and deduplicated.
    Set(Vec<String>),
}

impl FieldValue {
    /// The schema type this value has.
    pub fn ty(&self) -> Type {
        match self {
            FieldValue::Int(_) => Type::Int,
            FieldValue::Str(_) => Type::Str,
            FieldValue::Bool(_) => Type::Bool,
            FieldValue::Set(_) => Type::StrSet,
        }
    }

    /// A set value from any strings: sorted and deduplicated.
    pub fn set<I, S>(items: I) -> FieldValue
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = items.into_iter().map(Into::into).collect();
        v.sort_unstable();
        v.dedup();
        FieldValue::Set(v)
    }

    /// The value as JSON.
    pub fn to_json(&self) -> Json {
        match self {
            FieldValue::Int(i) => Json::from(*i),
            FieldValue::Str(s) => Json::from(s.as_str()),
            FieldValue::Bool(b) => Json::from(*b),
            FieldValue::Set(v) => Json::Array(v.iter().map(|s| Json::from(s.as_str())).collect()),
        }
    }
}

/// A decoded request: one slot per schema field, in schema order.
///
/// A request belongs to the schema it was decoded with; the evaluator refuses
/// a request of another schema (see [`schema_fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    values: Vec<Option<FieldValue>>,
    schema_id: u64,
}

impl Request {
    /// Decodes a JSON request against `schema`.
    pub fn from_json(json: &Json, schema: &Schema) -> Result<Request, RequestError> {
        Request::from_json_with_id(json, schema, schema_fingerprint(schema))
    }

    /// [`Request::from_json`] with the schema's fingerprint computed once
    /// beforehand (the evaluator keeps it).
    pub(crate) fn from_json_with_id(
        json: &Json,
        schema: &Schema,
        schema_id: u64,
    ) -> Result<Request, RequestError> {
        let mut req = Request {
            values: vec![None; schema.fields.len()],
            schema_id,
        };
        let Json::Object(obj) = json else {
            return Err(RequestError::NotObject {
                found: json_kind(json),
            });
        };
        let mut path = String::with_capacity(32);
        decode_object(obj, &mut path, schema, &mut req.values)?;
        for (decl, slot) in schema.fields.iter().zip(&req.values) {
            if !decl.optional && slot.is_none() {
                return Err(RequestError::Missing {
                    field: decl.path.clone(),
                });
            }
        }
        Ok(req)
    }

    /// A request with every field absent (to build one field by field with
    /// [`Request::set`]).
    pub fn empty(schema: &Schema) -> Request {
        Request {
            values: vec![None; schema.fields.len()],
            schema_id: schema_fingerprint(schema),
        }
    }

    /// The value in slot `index` (the field's position in the schema).
    pub fn get(&self, index: usize) -> Option<&FieldValue> {
        self.values.get(index).and_then(Option::as_ref)
    }

    /// The value of the field at `path`, if the schema declares it and the
    /// request carries it.
    pub fn get_path(&self, schema: &Schema, path: &str) -> Option<&FieldValue> {
        field_index(schema, path).and_then(|i| self.get(i))
    }

    /// Sets (or, with `None`, removes) the field at `path`, checking that the
    /// schema declares it with the value's type.
    pub fn set(
        &mut self,
        schema: &Schema,
        path: &str,
        value: Option<FieldValue>,
    ) -> Result<(), RequestError> {
        let Some(i) = field_index(schema, path) else {
            return Err(RequestError::Unknown {
                field: path.to_string(),
                suggestion: schema.closest(path).map(str::to_string),
            });
        };
        if let (Some(v), Some(decl)) = (&value, schema.fields.get(i))
            && v.ty() != decl.ty
        {
            return Err(RequestError::WrongType {
                field: path.to_string(),
                expected: decl.ty,
                found: type_kind(v.ty()),
            });
        }
        if let Some(slot) = self.values.get_mut(i) {
            *slot = value;
        }
        Ok(())
    }

    /// Replaces slot `index` without type checks (the evaluator's modify
    /// transforms, whose types are checked when the evaluator is built).
    pub(crate) fn set_index(&mut self, index: usize, value: Option<FieldValue>) {
        if let Some(slot) = self.values.get_mut(index) {
            *slot = value;
        }
    }

    /// The request as JSON, nested as the schema's dotted paths say; absent
    /// fields are left out.
    pub fn to_json(&self, schema: &Schema) -> Json {
        let mut root = Map::new();
        for (decl, slot) in schema.fields.iter().zip(&self.values) {
            let Some(value) = slot else { continue };
            insert_path(&mut root, &decl.path, value.to_json());
        }
        Json::Object(root)
    }

    /// The fingerprint of the schema this request was decoded with.
    pub fn schema_id(&self) -> u64 {
        self.schema_id
    }
}

/// The position of `path` in the schema (its slot in a [`Request`]).
pub fn field_index(schema: &Schema, path: &str) -> Option<usize> {
    schema
        .fields
        .binary_search_by(|f| f.path.as_str().cmp(path))
        .ok()
}

/// A stable fingerprint of a schema's fields (paths, types, optionality):
/// FNV-1a over their text, so equal schemas agree across processes.
pub fn schema_fingerprint(schema: &Schema) -> u64 {
    let mut h = Fnv1a::new();
    for f in &schema.fields {
        h.write(f.path.as_bytes());
        h.write(&[0]);
        h.write(f.ty.as_str().as_bytes());
        h.write(if f.optional { b"?\x00" } else { b"\x00" });
    }
    h.finish()
}

/// A request that cannot be decoded. Every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum RequestError {
    #[error("the request must be a JSON object, found {found}")]
    #[diagnostic(code(request::not_object))]
    NotObject { found: &'static str },

    #[error("`{field}` must be an object, found {found}")]
    #[diagnostic(code(request::not_object))]
    FieldNotObject { field: String, found: &'static str },

    #[error("missing required field `{field}`")]
    #[diagnostic(code(request::missing_field))]
    Missing { field: String },

    #[error("field `{field}` must be {}, found {found}", type_kind(*expected))]
    #[diagnostic(code(request::wrong_type))]
    WrongType {
        field: String,
        expected: Type,
        found: &'static str,
    },

    #[error("field `{field}` is not in the schema")]
    #[diagnostic(
        code(request::unknown_field),
        help("{}", unknown_help(suggestion.as_deref()))
    )]
    Unknown {
        field: String,
        suggestion: Option<String>,
    },
}

impl RequestError {
    /// The field the error is about (`None` when the body is not an object).
    pub fn field(&self) -> Option<&str> {
        match self {
            RequestError::NotObject { .. } => None,
            RequestError::FieldNotObject { field, .. }
            | RequestError::Missing { field }
            | RequestError::WrongType { field, .. }
            | RequestError::Unknown { field, .. } => Some(field),
        }
    }
}

fn unknown_help(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None => {
            "the fields a request may carry are declared in `[schema]` of sluice.toml".to_string()
        }
    }
}

/// Decodes the members of `obj`, whose path is `path` (empty at the top);
/// `path` is a buffer extended and restored for each member.
fn decode_object(
    obj: &Map<String, Json>,
    path: &mut String,
    schema: &Schema,
    values: &mut [Option<FieldValue>],
) -> Result<(), RequestError> {
    let prefix_len = path.len();
    for (key, json) in obj {
        path.truncate(prefix_len);
        if prefix_len > 0 {
            path.push('.');
        }
        path.push_str(key);
        if key.is_empty() || key.contains('.') {
            return Err(unknown(schema, path.clone()));
        }
        if let Some(i) = field_index(schema, path) {
            let (Some(decl), Some(slot)) = (schema.fields.get(i), values.get_mut(i)) else {
                continue;
            };
            if json.is_null() && decl.optional {
                continue;
            }
            *slot = Some(decode_value(json, decl)?);
        } else if is_prefix(schema, path) {
            match json {
                Json::Object(inner) => decode_object(inner, path, schema, values)?,
                // An absent object: the missing-field check reports any
                // required field below it.
                Json::Null => {}
                other => {
                    return Err(RequestError::FieldNotObject {
                        field: path.clone(),
                        found: json_kind(other),
                    });
                }
            }
        } else {
            return Err(unknown(schema, path.clone()));
        }
    }
    path.truncate(prefix_len);
    Ok(())
}

fn unknown(schema: &Schema, path: String) -> RequestError {
    let suggestion = schema.closest(&path).map(str::to_string);
    RequestError::Unknown {
        field: path,
        suggestion,
    }
}

/// Whether some declared field lies below `path` (`args` for `args.amount`).
fn is_prefix(schema: &Schema, path: &str) -> bool {
    let start = schema.fields.partition_point(|f| f.path.as_str() < path);
    schema.fields.get(start..).is_some_and(|rest| {
        rest.iter()
            .take_while(|f| f.path.starts_with(path))
            .any(|f| f.path.as_bytes().get(path.len()) == Some(&b'.'))
    })
}

/// 2^63: the first whole float an `i64` cannot hold.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn decode_value(json: &Json, decl: &FieldDecl) -> Result<FieldValue, RequestError> {
    let wrong = |found: &'static str| RequestError::WrongType {
        field: decl.path.clone(),
        expected: decl.ty,
        found,
    };
    match (decl.ty, json) {
        (Type::Int, Json::Number(n)) => match n.as_i64() {
            Some(i) => Ok(FieldValue::Int(i)),
            None if n.is_u64() => Err(wrong("an integer out of range")),
            // serde_json reads `-0` as the float -0.0: it is the integer 0.
            None => match n.as_f64() {
                Some(f) if f == 0.0 && f.is_sign_negative() => Ok(FieldValue::Int(0)),
                // Past i64 (and u64) serde_json keeps only a float.
                Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() >= I64_BOUND => {
                    Err(wrong("an integer out of range"))
                }
                _ => Err(wrong("a number with a fraction or exponent")),
            },
        },
        (Type::Str, Json::String(s)) => Ok(FieldValue::Str(s.clone())),
        (Type::Bool, Json::Bool(b)) => Ok(FieldValue::Bool(*b)),
        (Type::StrSet, Json::Array(items)) => {
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Json::String(s) => set.push(s.clone()),
                    other => {
                        return Err(wrong(match other {
                            Json::Null => "an array containing null",
                            Json::Bool(_) => "an array containing a boolean",
                            Json::Number(_) => "an array containing a number",
                            Json::Array(_) => "an array containing an array",
                            _ => "an array containing an object",
                        }));
                    }
                }
            }
            set.sort_unstable();
            set.dedup();
            Ok(FieldValue::Set(set))
        }
        (_, other) => Err(wrong(json_kind(other))),
    }
}

fn insert_path(root: &mut Map<String, Json>, path: &str, value: Json) {
    match path.split_once('.') {
        None => {
            root.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = root
                .entry(head.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
            if !entry.is_object() {
                *entry = Json::Object(Map::new());
            }
            if let Json::Object(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// How a JSON value is named in messages.
fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number with a fraction or exponent",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// How a schema type is named in messages.
fn type_kind(ty: Type) -> &'static str {
    match ty {
        Type::Int => "an integer",
        Type::Str => "a string",
        Type::Bool => "a boolean",
        Type::StrSet => "an array of strings",
    }
}
