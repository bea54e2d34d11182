//! The engine's state backend: limit counters and approval queues behind one
//! trait, in memory by default. A shared backend for a fleet implements the
//! same trait, and so does any backend a caller of
//! [`crate::engine::server::Engine::start`] passes (the tests pass one that
//! fails or stalls on demand, to drive the circuit breaker).
//!
//! No policy logic here: a backend stores counters and approvals.

use std::sync::Arc;

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

/// The backend's limit store, owned: what the engine counts with (behind
/// its `next_window` graces). Every call goes to
/// [`StateBackend::limits`].
#[derive(Clone)]
pub struct BackendLimits(Arc<dyn StateBackend>);

impl std::fmt::Debug for BackendLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendLimits").finish_non_exhaustive()
    }
}

impl BackendLimits {
    pub fn new(backend: Arc<dyn StateBackend>) -> Self {
        BackendLimits(backend)
    }
}

impl LimitStore for BackendLimits {
    fn try_acquire(&self, key: LimitKey<'_>, window: Window, max: u64) -> Result<bool, StateError> {
        self.0.limits().try_acquire(key, window, max)
    }

    fn count(&self, key: LimitKey<'_>, window: Window) -> Result<u64, StateError> {
        self.0.limits().count(key, window)
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        self.0.limits().entries()
    }

    fn put(&self, entry: &CounterEntry) -> Result<(), StateError> {
        self.0.limits().put(entry)
    }

    fn remove_limit(&self, limit: &str) -> Result<usize, StateError> {
        self.0.limits().remove_limit(limit)
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
