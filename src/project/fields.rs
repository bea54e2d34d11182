//! `[schema]` of `sluice.toml`: dotted field paths and their types, read into
//! a [`Schema`]. Pure: no I/O.
//!
//! A key is a field path (`"args.amount"`, or nested tables `[schema.args]`),
//! a trailing `?` marks the field optional, and the value is one of the types
//! `int`, `string`, `bool`, `set<string>`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::de::DeTable;

use super::read::{CODE, Cx, leaves, list};
use crate::diagnostic::Finding;
use crate::model::ir::{FieldDecl, Type};
use crate::model::schema::Schema;

/// The type names a field may have, as written in `sluice.toml`.
const TYPES: [&str; 4] = ["int", "string", "bool", "set<string>"];

/// What `[schema]` declares: the schema of the valid declarations, and the
/// paths whose declaration was reported as an error (so that later checks do
/// not report them a second time as unknown).
pub(super) struct Declared {
    pub(super) schema: Schema,
    pub(super) broken: BTreeSet<String>,
}

impl Declared {
    /// Whether `path` is declared, validly or not.
    pub(super) fn knows(&self, path: &str) -> bool {
        self.schema.get(path).is_some() || self.broken.contains(path)
    }
}

/// Reads `[schema]`; `header` is the span of the table (its header, or the
/// start of the file when the table is missing).
pub(super) fn read(cx: &mut Cx<'_>, table: Option<&DeTable<'_>>, header: Range<usize>) -> Declared {
    let mut broken = BTreeSet::new();
    // Path -> (declaration, key span) of the valid declarations.
    let mut fields: BTreeMap<String, (FieldDecl, Range<usize>)> = BTreeMap::new();
    // Path -> (key span, key as written) of every declaration: the first wins.
    let mut seen: BTreeMap<String, (Range<usize>, String)> = BTreeMap::new();
    let Some(table) = table else {
        cx.error(
            header,
            "no `[schema]` here",
            "missing table `[schema]`",
            "declare the request fields, e.g. `[schema]` with `tool = \"string\"`",
        );
        return Declared {
            schema: Schema::default(),
            broken,
        };
    };

    for leaf in leaves(table) {
        let key_span = leaf.key.span();
        let (path, optional) = match leaf.path.strip_suffix('?') {
            Some(p) => (p.to_owned(), true),
            None => (leaf.path.clone(), false),
        };
        let path_ok = valid_path(&path);
        if !path_ok {
            cx.error(
                key_span.clone(),
                "invalid field path",
                format!("invalid field path `{}` in `[schema]`", leaf.path),
                "a field path is dot-separated names of lowercase letters, digits and `_` \
                 (not starting with a digit), with an optional trailing `?`, like `args.amount?`",
            );
        }
        let ty = match cx.string(
            leaf.value,
            &format!("the type of `{}`", leaf.path),
            &format!("\"{}\" = \"string\"", leaf.path),
        ) {
            Some(s) => match Type::parse(s) {
                Some(t) => Some(t),
                None => {
                    cx.error(
                        leaf.value.span(),
                        "unknown type",
                        format!("unknown type `{s}` for field `{path}`"),
                        match type_hint(s) {
                            Some(c) => {
                                format!("did you mean `{c}`? the types are {}", list(&TYPES, "and"))
                            }
                            None => format!("the types are {}", list(&TYPES, "and")),
                        },
                    );
                    None
                }
            },
            None => None,
        };
        if let Some((first, first_written)) = seen.get(&path) {
            let help = if *first_written == leaf.path {
                format!("declare `{path}` once: remove one of these")
            } else {
                format!(
                    "`{first_written}` and `{}` name the same field (`?` only marks it optional): keep one",
                    leaf.path
                )
            };
            let finding = Finding::new(CODE, format!("field `{path}` is declared twice"))
                .with_label(cx.label(key_span, "declared again here"))
                .with_label(cx.label(first.clone(), "first declared here"))
                .with_help(help);
            cx.push(finding);
            continue;
        }
        seen.insert(path.clone(), (key_span.clone(), leaf.path.clone()));
        match ty {
            Some(ty) if path_ok => {
                fields.insert(path.clone(), (FieldDecl { path, ty, optional }, key_span));
            }
            _ => {
                broken.insert(path);
            }
        }
    }

    check_nesting(cx, &fields);
    check_tool(cx, &fields, &broken, header);

    let schema = Schema::new(fields.into_values().map(|(f, _)| f).collect());
    Declared { schema, broken }
}

/// The type meant by a type name that is not one: a common spelling from
/// other languages, or the closest by edit distance.
fn type_hint(s: &str) -> Option<&'static str> {
    let alias = match s.trim().to_ascii_lowercase().as_str() {
        "integer" | "i64" | "long" | "number" | "u64" => Some("int"),
        "str" | "text" => Some("string"),
        "boolean" => Some("bool"),
        "set" | "[string]" | "list<string>" | "array<string>" | "vec<string>" | "set<str>" => {
            Some("set<string>")
        }
        _ => None,
    };
    alias.or_else(|| crate::model::schema::closest(s, TYPES.iter().copied()))
}

/// A field path: names `[a-z_][a-z0-9_]*` separated by dots.
fn valid_path(path: &str) -> bool {
    path.split('.').all(|seg| {
        let mut chars = seg.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// A field cannot both hold a value and hold other fields: `args` and
/// `args.amount` cannot both be declared.
fn check_nesting(cx: &mut Cx<'_>, fields: &BTreeMap<String, (FieldDecl, Range<usize>)>) {
    for (path, (_, span)) in fields {
        let mut prefix = String::new();
        for seg in path.split('.') {
            if !prefix.is_empty() {
                if let Some((parent, parent_span)) = fields.get(&prefix) {
                    let finding = Finding::new(
                        CODE,
                        format!(
                            "field `{path}` is nested under `{prefix}`, which is declared as a `{}` field",
                            parent.ty.as_str()
                        ),
                    )
                    .with_label(cx.label(span.clone(), "nested field"))
                    .with_label(cx.label(parent_span.clone(), "declared as a value here"))
                    .with_help(format!(
                        "a field either holds a value or holds other fields; remove `{prefix}` or rename one of them"
                    ));
                    cx.push(finding);
                    break;
                }
                prefix.push('.');
            }
            prefix.push_str(seg);
        }
    }
}

/// `tool` must be declared, required, and a string.
fn check_tool(
    cx: &mut Cx<'_>,
    fields: &BTreeMap<String, (FieldDecl, Range<usize>)>,
    broken: &BTreeSet<String>,
    header: Range<usize>,
) {
    match fields.get("tool") {
        Some((decl, span)) => {
            if decl.ty != Type::Str {
                cx.error(
                    span.clone(),
                    "must be a string",
                    format!(
                        "field `tool` must be a `string`, not `{}`",
                        decl.ty.as_str()
                    ),
                    "every request names the tool it calls: declare `tool = \"string\"`",
                );
            }
            if decl.optional {
                cx.error(
                    span.clone(),
                    "must be required",
                    "field `tool` cannot be optional",
                    "every request names the tool it calls: declare `tool = \"string\"`, without `?`",
                );
            }
        }
        None if broken.contains("tool") => {}
        None => cx.error(
            header,
            "no `tool` declared",
            "field `tool` is not declared in `[schema]`",
            "every request names the tool it calls: add `tool = \"string\"`",
        ),
    }
}
