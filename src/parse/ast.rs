//! The syntax tree of one `.policy` file, with spans.
//!
//! Every node that a diagnostic can point at carries a [`Span`]. Spans are
//! excluded from equality (`PartialEq` ignores them), so that `parse(fmt(p))`
//! can be compared with `parse(p)`.
//!
//! Comparison operators, tiers and `on_decrease` behaviours are the IR's own
//! types ([`CmpOp`], [`Tier`], [`OnDecrease`] from `model::ir`): the parser
//! produces them directly, and nothing translates them.

use crate::model::ir::Type;
pub use crate::model::ir::{CmpOp, OnDecrease, Tier};
use crate::source::Span;

/// A value paired with where it was written. Equality ignores the span.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}

impl<T: Eq> Eq for Spanned<T> {}

pub type Ident = Spanned<String>;

/// One policy: the content of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: Ident,
    /// Semver text as written (validated by the parser).
    pub version: Spanned<semver::Version>,
    pub tier: Option<Spanned<Tier>>,
    pub requires: Vec<Requirement>,
    pub items: Vec<Item>,
    /// The whole `policy … { … }`; the formatter reads where its closing
    /// brace is.
    pub span: SpanIgnored,
}

/// A span that never affects equality (for nodes that are plain structs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanIgnored(pub Span);

impl PartialEq for SpanIgnored {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub policy: Ident,
    /// The requirement, in Cargo's syntax (validated by the parser).
    pub req: Spanned<semver::VersionReq>,
    /// The requirement as written, for formatting.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Rule(Rule),
    Limit(Limit),
}

impl Item {
    pub fn name(&self) -> &Ident {
        match self {
            Item::Rule(r) => &r.name,
            Item::Limit(l) => &l.name,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: Ident,
    /// `None` when the rule has no `when`: it matches every request.
    pub when: Option<Expr>,
    pub effect: Spanned<Effect>,
    pub span: SpanIgnored,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub name: Ident,
    pub when: Option<Expr>,
    pub max: Spanned<u64>,
    /// Window length in seconds.
    pub window: Spanned<Duration>,
    pub by: Vec<Spanned<Path>>,
    pub exceed: Spanned<Effect>,
    pub on_decrease: Option<Spanned<OnDecrease>>,
    pub span: SpanIgnored,
}

/// A window length as written: amount and unit (`s m h d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Duration {
    pub amount: u64,
    pub unit: char,
}

impl Duration {
    pub fn seconds(self) -> u64 {
        let mul = match self.unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => 86_400,
        };
        self.amount.saturating_mul(mul)
    }
}

/// A dotted field path such as `args.amount`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(pub String);

impl Path {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Allow,
    Deny {
        code: Ident,
        text: Spanned<String>,
    },
    RequireApproval {
        group: Spanned<String>,
        via: Option<Spanned<String>>,
        code: Ident,
        text: Spanned<String>,
    },
    Modify {
        field: Spanned<Path>,
        value: Spanned<ModifyValue>,
        code: Ident,
        text: Spanned<String>,
    },
}

impl Effect {
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny { .. } => "deny",
            Effect::RequireApproval { .. } => "require_approval",
            Effect::Modify { .. } => "modify",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModifyValue {
    Literal(Literal),
    /// `redact(x)`: the whole value becomes `"[REDACTED]"`.
    Redact(Spanned<Path>),
    /// `redact(x, "regex")`: every match becomes `"[REDACTED]"`.
    RedactPattern(Spanned<Path>, Spanned<String>),
    /// `truncate(x, N)`: the first N characters.
    Truncate(Spanned<Path>, Spanned<u64>),
    /// `lowercase(x)`.
    Lowercase(Spanned<Path>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Literal {
    Int(i64),
    Str(String),
    Bool(bool),
}

impl Literal {
    /// The type of the value as written.
    pub fn ty(&self) -> Type {
        match self {
            Literal::Int(_) => Type::Int,
            Literal::Str(_) => Type::Str,
            Literal::Bool(_) => Type::Bool,
        }
    }
}

/// A condition. Spans sit on every node.
pub type Expr = Spanned<ExprKind>;

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    /// `(e)`, kept so that formatting keeps the author's grouping.
    Paren(Box<Expr>),
    Cmp {
        op: CmpOp,
        lhs: Term,
        rhs: Term,
    },
    In {
        lhs: Term,
        list: Vec<Spanned<Literal>>,
    },
    Str {
        op: StrOp,
        lhs: Term,
        rhs: Term,
    },
    Has(Spanned<Path>),
    /// A bare term used as a condition: a `bool` field or `true`/`false`.
    Term(Term),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

impl StrOp {
    pub fn as_str(self) -> &'static str {
        match self {
            StrOp::Contains => "contains",
            StrOp::StartsWith => "starts_with",
            StrOp::EndsWith => "ends_with",
            StrOp::Matches => "matches",
        }
    }
}

pub type Term = Spanned<TermKind>;

#[derive(Debug, Clone, PartialEq)]
pub enum TermKind {
    Field(Path),
    Len(Spanned<Path>),
    Lit(Literal),
}
