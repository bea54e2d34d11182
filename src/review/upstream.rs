//! `sluice check --upstream-schemas FILE`: the arguments upstream MCP tools
//! take that the request schema does not declare. The gateway forwards such
//! an argument but never evaluates it (SPEC §8), which is what an author
//! wants to know before a policy on it is assumed to hold.
//!
//! FILE is a `tools/list` result as the gateway answers it (`{"tools":
//! [{"name": "files.write", "inputSchema": {…}}]}`) or just its array. For
//! each tool, the properties of its input schema are walked (into nested
//! objects' properties); a property that is not declared as `args.PATH`
//! is reported, one `schema::upstream_field` warning per tool at its name
//! in FILE, with the `[schema]` line to add when the property's JSON type
//! has a sluice type. Pure: the file is read by the caller.

use serde_json::{Map, Value};

use crate::diagnostic::{Code, Finding, Label};
use crate::model::schema::Schema;
use crate::source::{SourceFile, Span};

/// FILE is not a tools list.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{file}:{line}:{column}: not JSON: {detail}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        detail: String,
    },
    #[error(
        "{file}: expected a `tools/list` result (`{{\"tools\": [...]}}`) or an array of tools: {detail}"
    )]
    Shape { file: String, detail: String },
}

/// One `schema::upstream_field` warning per tool of `file` with arguments
/// `schema` does not declare.
pub fn check(file: &SourceFile, schema: &Schema) -> Result<Vec<Finding>, UpstreamError> {
    let doc: Value = serde_json::from_str(&file.text).map_err(|e| UpstreamError::Json {
        file: file.name.clone(),
        line: e.line(),
        column: e.column(),
        detail: e.to_string(),
    })?;
    let shape = |detail: &str| UpstreamError::Shape {
        file: file.name.clone(),
        detail: detail.to_string(),
    };
    let tools = match &doc {
        Value::Array(tools) => tools,
        Value::Object(o) => match o.get("tools") {
            Some(Value::Array(tools)) => tools,
            _ => return Err(shape("no `tools` array")),
        },
        _ => return Err(shape("neither an object nor an array")),
    };
    let mut findings = Vec::new();
    let mut cursor = 0;
    for (i, tool) in tools.iter().enumerate() {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| shape(&format!("tool {} has no `name`", i + 1)))?;
        let span = name_span(&file.text, name, cursor);
        cursor = span.end;
        let input = tool.get("inputSchema").or_else(|| tool.get("input_schema"));
        let mut missing = Vec::new();
        if let Some(Value::Object(props)) = input.and_then(|s| s.get("properties")) {
            walk(props, "args", schema, &mut missing);
        }
        if missing.is_empty() {
            continue;
        }
        missing.sort();
        let paths: Vec<String> = missing.iter().map(|(p, _)| format!("`{p}`")).collect();
        let lines: Vec<String> = missing
            .iter()
            .filter_map(|(p, ty)| ty.map(|ty| format!("\"{p}?\" = \"{ty}\"")))
            .collect();
        let mut help = String::from(
            "the gateway forwards these arguments but no policy can read them; to let one, declare them under [schema] in sluice.toml",
        );
        if !lines.is_empty() {
            help.push_str(": ");
            help.push_str(&lines.join(", "));
        }
        findings.push(
            Finding::new(
                Code::SchemaUpstreamField,
                format!(
                    "tool `{name}` takes {} that the request schema does not declare",
                    paths.join(", ")
                ),
            )
            .with_label(Label::new(file.name.clone(), span).with_message("this tool"))
            .with_help(help),
        );
    }
    Ok(findings)
}

/// The undeclared properties under `prefix`, with the sluice type of each
/// when its JSON type has one.
fn walk(
    props: &Map<String, Value>,
    prefix: &str,
    schema: &Schema,
    out: &mut Vec<(String, Option<&'static str>)>,
) {
    for (key, sub) in props {
        // The gateway never evaluates such a key (a path cannot name it).
        if key.is_empty() || key.contains('.') {
            continue;
        }
        let path = format!("{prefix}.{key}");
        if schema.get(&path).is_some() {
            continue;
        }
        match sub.get("properties") {
            Some(Value::Object(inner)) if !inner.is_empty() => walk(inner, &path, schema, out),
            _ => out.push((path, sluice_type(sub))),
        }
    }
}

/// The sluice type of a JSON schema, if it has one (`null` alongside is
/// what `?` says).
fn sluice_type(s: &Value) -> Option<&'static str> {
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let mut it = types.into_iter().filter(|t| *t != "null");
    let ty = it.next()?;
    if it.next().is_some() {
        return None;
    }
    match ty {
        "string" => Some("string"),
        "integer" => Some("int"),
        "boolean" => Some("bool"),
        "array" if s.pointer("/items/type").and_then(Value::as_str) == Some("string") => {
            Some("set<string>")
        }
        _ => None,
    }
}

/// Where `"name": "NAME"` is written in `text`, from `from` on; the start of
/// the file when it cannot be found (a name written with escapes).
fn name_span(text: &str, name: &str, from: usize) -> Span {
    let Ok(encoded) = serde_json::to_string(name) else {
        return Span::new(0, 0);
    };
    let pattern = format!(r#""name"\s*:\s*({})"#, regex::escape(&encoded));
    let Ok(re) = regex::Regex::new(&pattern) else {
        return Span::new(0, 0);
    };
    let found = text
        .get(from..)
        .and_then(|rest| re.captures(rest))
        .and_then(|c| c.get(1))
        .map(|m| Span::new(from + m.start(), from + m.end()));
    found
        .or_else(|| {
            re.captures(text)
                .and_then(|c| c.get(1))
                .map(|m| Span::new(m.start(), m.end()))
        })
        .unwrap_or(Span::new(0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ir::{FieldDecl, Type};

    #[test]
    fn undeclared_arguments_are_named_with_their_lines() {
        let schema = Schema::new(vec![
            FieldDecl {
                path: "args.amount".into(),
                ty: Type::Int,
                optional: true,
            },
            FieldDecl {
                path: "args.to.country".into(),
                ty: Type::Str,
                optional: true,
            },
        ]);
        let text = r#"{"tools": [
  {"name": "pay.send", "inputSchema": {"type": "object", "properties": {
    "amount": {"type": "integer"},
    "memo": {"type": ["string", "null"]},
    "to": {"type": "object", "properties": {"country": {"type": "string"}, "iban": {"type": "string"}}},
    "tags": {"type": "array", "items": {"type": "string"}},
    "ratio": {"type": "number"}}}},
  {"name": "pay.ok", "inputSchema": {"type": "object", "properties": {"amount": {"type": "integer"}}}}
]}"#;
        let file = SourceFile::new("tools.json", text);
        let f = check(&file, &schema).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            f[0].message,
            "tool `pay.send` takes `args.memo`, `args.ratio`, `args.tags`, `args.to.iban` that the request schema does not declare"
        );
        let help = f[0].help.as_deref().unwrap();
        assert!(
            help.contains(r#""args.memo?" = "string", "args.tags?" = "set<string>", "args.to.iban?" = "string""#),
            "{help}"
        );
        let span = f[0].labels[0].span;
        assert_eq!(&text[span.start..span.end], "\"pay.send\"");
        assert!(matches!(
            check(&SourceFile::new("t.json", "{\"tools\": 3}"), &schema),
            Err(UpstreamError::Shape { .. })
        ));
        let e = check(&SourceFile::new("t.json", "{\n  \"tools\": [,\n"), &schema).unwrap_err();
        assert!(e.to_string().starts_with("t.json:2:"), "{e}");
    }
}
