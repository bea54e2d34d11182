//! The one integration test binary: a module per pipeline stage.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test or benchmark that cannot go on fails by panicking"
)]

mod analyze;
mod artifact;
mod authoring;
mod caller_cost;
mod check;
mod cli;
mod decisions;
mod demo;
mod engine;
mod eval;
mod examples;
mod fleet_state;
mod fmt;
mod gateway;
mod governance;
mod hardening;
mod inventory;
mod kept;
mod messages;
mod openapi;
mod parse;
mod project;
mod readme;
mod reconcile;
mod report;
mod rollout;
mod tidy;
mod tree;
