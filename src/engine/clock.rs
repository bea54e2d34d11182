//! The engine's clock: the wall-clock time limits are counted in, passed
//! in [`crate::engine::server::EngineConfig`] so an embedder (or a test)
//! can run the engine on its own time.
//!
//! Only limit windows, approval times, upload times and owner leases read
//! it. Latencies, breaker timings and decision-log timestamps keep the
//! system's clocks.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in whole seconds since the Unix epoch.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Seconds since the epoch, now.
    fn now_secs(&self) -> u64;

    /// Milliseconds since the epoch, now (leases lapse by it). A clock that
    /// only knows seconds gives whole seconds.
    fn now_ms(&self) -> u64 {
        self.now_secs().saturating_mul(1000)
    }
}

/// The system's wall clock: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        epoch_secs(SystemTime::now())
    }

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Seconds since the epoch of `t` (0 before it).
pub(crate) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
