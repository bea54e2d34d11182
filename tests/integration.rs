//! The one integration test binary: a module per pipeline stage.

mod analyze;
mod artifact;
mod check;
mod cli;
mod demo;
mod engine;
mod eval;
mod examples;
mod fmt;
mod parse;
mod project;
mod reconcile;
mod report;
mod rollout;
