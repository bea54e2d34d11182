//! sluice: AI-agent safety policies from a git repository to production.
//!
//! The pipeline, one module per stage (see ARCHITECTURE.md):
//! `parse` → `check` → `compile` → `eval`, with `project` for
//! `sluice.toml`, `tree` for reading a policy repository (from disk or at a
//! git revision, by one inclusion rule), and `cli`
//! for the commands. `parse`, `check`, `compile` and `eval` do no I/O.

pub mod analyze;
pub mod api;
pub mod check;
pub mod cli;
pub mod compile;
pub mod demo;
pub mod diagnostic;
pub mod engine;
pub mod eval;
pub mod fmt;
pub mod gateway;
pub mod model;
pub mod parse;
pub mod pipeline;
pub mod project;
pub mod reconcile;
pub mod replay;
pub mod review;
pub mod rollout;
pub mod source;
pub mod tree;
