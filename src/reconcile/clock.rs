//! The daemon's clock: the one place the rollout's time is read. The rollout
//! machine is pure and takes the time from its caller; the daemon reads it
//! through the [`Clock`] of its configuration ([`SystemClock`] unless an
//! embedder or a test gives another), so that stage durations, grace
//! periods and the times of audit lines all come from one source.
//!
//! How often the loop wakes is not the clock's business: that is tokio's
//! timer, which a test can pause and advance on its own.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the daemon reads the time.
pub trait Clock: Debug + Send + Sync {
    /// Now, in milliseconds since the epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Now, in milliseconds since the epoch, from the system's wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
