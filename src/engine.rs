//! The policy engine: request decoding and evaluation (pure), and later the
//! HTTP server around it.
//!
//! - [`request`]: JSON request → [`request::Request`] (slots by schema
//!   position), and back.
//! - [`eval`]: [`eval::Evaluator`] over an artifact: decision, reasons,
//!   modifications; rules indexed by `tool`.
//! - [`state`]: limit counters behind the [`state::LimitStore`] trait.
//! - [`response`]: the evaluate response document.

pub mod eval;
pub mod live;
pub mod request;
pub mod response;
pub mod state;
