//! Stage 3: a checked set → IR ([`lower()`]) → artifact ([`artifact`]:
//! canonical JSON with a sha256 hash). Pure: no I/O, and no checking — what
//! reaches this stage has passed `check`.

pub mod artifact;
mod lower;

pub use self::lower::{lower, lower_policy};
