//! Rollout decisions: pure functions from a plan and observed figures to the
//! next step. No I/O, no clock: the caller passes the time.
//!
//! - [`gate`]: confidence intervals (Wilson, Newcombe) and the three-way gate
//!   verdict (pass, fail, wait).
//! - [`stage`]: one stage's decision from what the engines measured.
//! - [`machine`]: the rollout state machine the daemon drives: events in,
//!   the next state, one transition and the actions to take out.
//! - [`estimate`]: what a waiting gate waits for, and how long, for status.

pub mod estimate;
pub mod gate;
pub mod machine;
pub mod stage;
