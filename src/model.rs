//! The foundation: what every stage speaks — the request schema, value
//! types and literals, decisions, the typed IR of a policy set, and the
//! rollout plan. Pure data, no I/O; imports nothing of the pipeline.
//!
//! - [`schema`]: the declared request fields.
//! - [`ir`]: the typed IR that artifacts contain and the evaluator and the
//!   analyzer consume.
//! - [`plan`]: the rollout plan (`[rollout]` in `sluice.toml`).
//! - [`governance`]: the observe scope (`[governance]` in `sluice.toml`).
//! - [`inventory`]: the agent inventory (`agents/*.toml`).
//! - [`short`]: hashes and commits abbreviated for display.

pub mod governance;
pub mod inventory;
pub mod ir;
pub mod plan;
pub mod schema;
pub mod short;
