//! The one integration test binary: a module per pipeline stage.

mod fmt;
mod parse;
