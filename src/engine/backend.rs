//! The engine's state backend: limit counters and approval queues behind one
//! trait, in memory by default (a shared backend for a fleet implements the
//! same trait), plus the hidden fault injector tests use to drive the
//! circuit breaker and the clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::engine::approvals::{ApprovalStore, MemoryApprovalStore};
use crate::eval::state::{
    CounterEntry, LimitKey, LimitStore, MemoryLimitStore, StateError, Window,
};

/// Where an engine keeps the state that outlives a request.
pub trait StateBackend: Send + Sync + 'static {
    fn limits(&self) -> &dyn LimitStore;
    fn approvals(&self) -> &dyn ApprovalStore;
    /// Housekeeping: forgets counters of windows that ended by `now`.
    fn expire(&self, now: u64);
}

/// State in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    limits: MemoryLimitStore,
    approvals: MemoryApprovalStore,
}

impl MemoryBackend {
    pub fn new() -> Self {
        MemoryBackend::default()
    }
}

impl StateBackend for MemoryBackend {
    fn limits(&self) -> &dyn LimitStore {
        &self.limits
    }

    fn approvals(&self) -> &dyn ApprovalStore {
        &self.approvals
    }

    fn expire(&self, now: u64) {
        self.limits.expire(now);
    }
}

/// Faults to inject, for tests (hidden from the documentation; inert unless
/// set): a failing or slow limit store, and a clock offset.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct FaultInjector {
    fail: AtomicBool,
    delay_us: AtomicU64,
    clock_offset: AtomicI64,
}

impl FaultInjector {
    /// Makes every counting or reading limit-store call fail (or not).
    pub fn fail_store(&self, on: bool) {
        self.fail.store(on, Relaxed);
    }

    /// Makes every counting or reading limit-store call take `d` longer.
    pub fn delay_store(&self, d: Duration) {
        self.delay_us
            .store(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Moves the engine's wall clock by `secs`.
    pub fn advance_clock(&self, secs: i64) {
        self.clock_offset.fetch_add(secs, Relaxed);
    }

    /// The clock offset in seconds.
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset.load(Relaxed)
    }

    fn check(&self) -> Result<(), StateError> {
        let delay = self.delay_us.load(Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        if self.fail.load(Relaxed) {
            return Err(StateError::Unavailable("injected fault".to_string()));
        }
        Ok(())
    }
}

/// The backend's limit store with the fault injector in front.
pub struct FaultyStore {
    backend: Arc<dyn StateBackend>,
    faults: Arc<FaultInjector>,
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    pub fn new(backend: Arc<dyn StateBackend>, faults: Arc<FaultInjector>) -> Self {
        FaultyStore { backend, faults }
    }
}

impl LimitStore for FaultyStore {
    fn try_acquire(&self, key: LimitKey<'_>, window: Window, max: u64) -> Result<bool, StateError> {
        self.faults.check()?;
        self.backend.limits().try_acquire(key, window, max)
    }

    fn count(&self, key: LimitKey<'_>, window: Window) -> Result<u64, StateError> {
        self.faults.check()?;
        self.backend.limits().count(key, window)
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        self.backend.limits().entries()
    }

    fn put(&self, entry: &CounterEntry) -> Result<(), StateError> {
        self.backend.limits().put(entry)
    }

    fn remove_limit(&self, limit: &str) -> Result<usize, StateError> {
        self.backend.limits().remove_limit(limit)
    }
}

/// A store in which every limit is exhausted and nothing is counted: a dry
/// run against it reports every limit whose condition matches. Used to find
/// the policies a request falls under without touching real state (the
/// failsafe, approval migrations). It never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct Saturated;

impl LimitStore for Saturated {
    fn try_acquire(&self, _: LimitKey<'_>, _: Window, _: u64) -> Result<bool, StateError> {
        Ok(false)
    }

    fn count(&self, _: LimitKey<'_>, _: Window) -> Result<u64, StateError> {
        Ok(u64::MAX)
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        Ok(Vec::new())
    }

    fn put(&self, _: &CounterEntry) -> Result<(), StateError> {
        Ok(())
    }

    fn remove_limit(&self, _: &str) -> Result<usize, StateError> {
        Ok(0)
    }
}
