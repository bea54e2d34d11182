//! Rollout decisions: pure functions from a plan and observed figures to the
//! next step. No I/O, no clock: the caller passes the time.
//!
//! - [`gate`]: confidence intervals (Wilson, Newcombe) and the three-way gate
//!   verdict (pass, fail, wait).

pub mod gate;
pub mod stage;
