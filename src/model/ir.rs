//! The checked intermediate representation: what an artifact contains and what
//! the evaluator and the analyzer consume.
//!
//! The IR is typed (every atom's operand types are resolved against the schema)
//! and location-free as data: locations ride along in `#[serde(skip)]` fields
//! so that reformatting a file does not change the artifact's hash.

use serde::{Deserialize, Serialize};

use crate::source::Span;

/// The type of a request field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Type {
    #[serde(rename = "int")]
    Int,
    #[serde(rename = "string")]
    Str,
    #[serde(rename = "bool")]
    Bool,
    #[serde(rename = "set<string>")]
    StrSet,
}

impl Type {
    pub fn as_str(self) -> &'static str {
        match self {
            Type::Int => "int",
            Type::Str => "string",
            Type::Bool => "bool",
            Type::StrSet => "set<string>",
        }
    }

    pub fn parse(s: &str) -> Option<Type> {
        match s.trim() {
            "int" => Some(Type::Int),
            "string" => Some(Type::Str),
            "bool" => Some(Type::Bool),
            "set<string>" => Some(Type::StrSet),
            _ => None,
        }
    }
}

/// One declared request field (`tool`, `args.amount`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FieldDecl {
    pub path: String,
    #[serde(rename = "type")]
    pub ty: Type,
    pub optional: bool,
}

/// A policy's tier (`tier security`); a policy without one is operational.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Security,
    #[default]
    Operational,
    Compliance,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Security => "security",
            Tier::Operational => "operational",
            Tier::Compliance => "compliance",
        }
    }
}

/// The decision kinds, least severe first: `Ord` is severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Allow,
    Modify,
    RequireApproval,
    Deny,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Modify => "modify",
            DecisionKind::RequireApproval => "require_approval",
            DecisionKind::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<DecisionKind> {
        match s {
            "allow" => Some(DecisionKind::Allow),
            "modify" => Some(DecisionKind::Modify),
            "require_approval" => Some(DecisionKind::RequireApproval),
            "deny" => Some(DecisionKind::Deny),
            _ => None,
        }
    }
}

/// Where an IR node came from. Not part of the artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// File path relative to the repository root.
    pub file: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySet {
    /// Sorted by name.
    pub policies: Vec<Policy>,
}

impl PolicySet {
    pub fn rule_count(&self) -> usize {
        self.policies
            .iter()
            .map(|p| p.rules.len() + p.limits.len())
            .sum()
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requirement {
    pub policy: String,
    pub req: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub version: String,
    pub tier: Tier,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Requirement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Limit>,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub when: Expr,
    pub effect: Effect,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDecrease {
    NextWindow,
    Freeze,
}

impl OnDecrease {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDecrease::NextWindow => "next_window",
            OnDecrease::Freeze => "freeze",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub name: String,
    pub when: Expr,
    pub max: u64,
    pub window_secs: u64,
    /// The fields whose values form the counter key.
    pub by: Vec<String>,
    pub exceed: Effect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_decrease: Option<OnDecrease>,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny {
        code: String,
        text: String,
    },
    RequireApproval {
        group: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
        code: String,
        text: String,
    },
    Modify {
        field: String,
        value: ModifyValue,
        code: String,
        text: String,
    },
}

impl Effect {
    pub fn kind(&self) -> DecisionKind {
        match self {
            Effect::Allow => DecisionKind::Allow,
            Effect::Deny { .. } => DecisionKind::Deny,
            Effect::RequireApproval { .. } => DecisionKind::RequireApproval,
            Effect::Modify { .. } => DecisionKind::Modify,
        }
    }

    /// The reason code and text, when the effect has one (`allow` has none).
    pub fn code_text(&self) -> Option<(&str, &str)> {
        match self {
            Effect::Allow => None,
            Effect::Deny { code, text }
            | Effect::RequireApproval { code, text, .. }
            | Effect::Modify { code, text, .. } => Some((code, text)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModifyValue {
    Literal(Literal),
    /// The whole value of `field` becomes `"[REDACTED]"`.
    Redact {
        field: String,
    },
    /// Every match of `pattern` in `field` becomes `"[REDACTED]"`.
    RedactPattern {
        field: String,
        pattern: String,
    },
    /// The first `len` characters of `field`.
    Truncate {
        field: String,
        len: u64,
    },
    Lowercase {
        field: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Literal {
    Int(i64),
    Str(String),
    Bool(bool),
}

/// An operand of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    Field(String),
    /// Length of a string (in characters) or a set (in elements).
    Len(String),
    Lit(Literal),
}

impl Term {
    /// The field this term reads, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Term::Field(f) | Term::Len(f) => Some(f),
            Term::Lit(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Eq | CmpOp::Ne => self,
        }
    }

    /// The operator of the negated comparison: `!(a < b)` is `a >= b`.
    pub fn negated(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
        }
    }
}

/// A typed condition.
///
/// Absent optional fields: an atom that reads a field the request does not
/// carry is false; `Not` of it is true; only `Has` reads no value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    Const(bool),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// The optional field is present.
    Has(String),
    /// A `bool` field is true.
    Truthy(String),
    /// `lhs op rhs`; both sides have type `ty` (`int`, `string` or `bool`;
    /// ordering operators only on `int`).
    Cmp {
        op: CmpOp,
        lhs: Term,
        rhs: Term,
        ty: Type,
    },
    /// `lhs in [values]`: the values have the type of `lhs` (int or string).
    In {
        lhs: Term,
        values: Vec<Literal>,
    },
    /// Substring of a string field.
    Contains {
        field: String,
        value: String,
    },
    /// Membership in a `set<string>` field.
    SetContains {
        field: String,
        value: String,
    },
    StartsWith {
        field: String,
        value: String,
    },
    EndsWith {
        field: String,
        value: String,
    },
    /// Unanchored regex search (`Regex::is_match`).
    Matches {
        field: String,
        pattern: String,
    },
}
