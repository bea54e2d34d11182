//! Stage 3: typed IR → artifact (canonical JSON with a sha256 hash). Pure.

pub mod artifact;
