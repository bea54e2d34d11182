//! The one integration test binary: a module per pipeline stage.

mod check;
mod parse;
mod project;
