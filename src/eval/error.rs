//! The evaluator's errors: an artifact it cannot load ([`LoadError`]) and a
//! request it cannot evaluate ([`EvalError`]).

use crate::eval::state::StateError;

/// An artifact the evaluator cannot load. Names the policy and rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{policy}.{rule}: field `{field}` is not in the schema")]
    #[diagnostic(code(eval::unknown_field))]
    UnknownField {
        policy: String,
        rule: String,
        field: String,
    },

    #[error("{policy}.{rule}: {message}")]
    #[diagnostic(code(eval::type_mismatch))]
    TypeMismatch {
        policy: String,
        rule: String,
        message: String,
    },

    #[error("{policy}.{rule}: regex `{pattern}` does not compile: {message}")]
    #[diagnostic(code(eval::bad_regex))]
    BadRegex {
        policy: String,
        rule: String,
        pattern: String,
        message: String,
    },

    #[error("{policy}.{rule}: a limit window must be at least one second")]
    #[diagnostic(code(eval::zero_window))]
    ZeroWindow { policy: String, rule: String },
}

/// A request that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum EvalError {
    #[error("the request was decoded with another schema than the artifact's")]
    #[diagnostic(
        code(eval::schema_mismatch),
        help("decode the request with the evaluator's schema (`Evaluator::decode`)")
    )]
    SchemaMismatch,

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
}
