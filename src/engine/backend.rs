//! The engine's state backend: limit counters, `next_window` graces, the
//! record of migrations applied, and the approval lifecycle, behind one
//! trait whose calls are asynchronous, so that a backend across the
//! network never blocks the runtime's threads.
//!
//! - [`LocalBackend`] (`local`) keeps state in this process. It also lends
//!   its limit store for synchronous counting ([`StateBackend::local`]):
//!   the engine then evaluates a request without a future or an
//!   allocation more than before, which is what keeps the default backend
//!   as fast as it was. [`MemoryBackend`] is the local backend on
//!   [`MemoryLimitStore`]; one `Arc` of it may be shared by several engines
//!   in a process (the demo's fleet).
//! - [`redis::RedisBackend`] (`redis`) keeps it in Redis, shared by every
//!   engine that names the same server and prefix.
//!
//! Any other backend a caller of [`crate::engine::server::Engine::start`]
//! passes implements the same trait (the tests pass one that fails or
//! stalls on demand, to drive the circuit breaker). No policy logic here: a
//! backend stores what the engine decided to store.

mod local;
pub mod redis;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use crate::api::approvals::{Approval, Verdict};
use crate::api::state::BackendStatus;
use crate::engine::approvals::{ApprovalConfig, Asked, DecideError, NewApproval};
use crate::engine::migrate::{LimitPlan, Override};
use crate::eval::state::{CounterEntry, LimitCall, LimitKey, LimitStore, StateError, Window};

pub use crate::engine::backend::local::{LocalBackend, MemoryBackend};
pub use crate::eval::state::MemoryLimitStore;

/// What a backend call resolves to.
pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// What deciding an approval resolves to.
pub type DecideFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Approval, DecideError>> + Send + 'a>>;

/// An approval decision to record.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub id: &'a str,
    pub verdict: Verdict,
    pub by: &'a str,
    pub reason: Option<&'a str>,
}

/// Where an engine keeps the state that outlives a request.
pub trait StateBackend: Send + Sync + 'static {
    /// What it is and where, for `/readyz` (`up` is filled by the probe).
    fn status(&self) -> BackendStatus;

    /// The state's name when other engines may share it (`None`: this
    /// engine's own): engines answering the same name read and write the
    /// same state ([`crate::api::state::LiveState::shared`]).
    fn shared_name(&self) -> Option<String> {
        None
    }

    /// A store this process holds, that counts synchronously without
    /// blocking on anything but a short lock: evaluations count in it
    /// directly (next_window graces applied). `None` (the default): every
    /// evaluation goes through [`StateBackend::acquire`].
    fn local(&self) -> Option<&dyn LimitStore> {
        None
    }

    /// The project whose artifacts the engine routes (the default key
    /// prefix of a shared backend). Called on every route change.
    fn bind_project(&self, _project: &str) {}

    /// The limits in force changed on this engine (whichever engine
    /// migrated the state): forget what was cached about counters.
    fn limits_changed(&self) {}

    /// Counts one request against every counter of `calls`, atomically:
    /// each is counted unless its count has reached its max (or the
    /// next_window grace in force); `within[i]` says whether `calls[i]`
    /// was counted. `now` is the engine's clock.
    fn acquire<'a>(&'a self, calls: &'a [LimitCall<'a>], now: u64) -> StateFuture<'a, Vec<bool>>;

    /// The counts of `calls` in their windows, without counting.
    fn counts<'a>(&'a self, calls: &'a [LimitCall<'a>]) -> StateFuture<'a, Vec<u64>>;

    /// Every live counter, sorted by limit, key.
    fn entries(&self) -> StateFuture<'_, Vec<CounterEntry>>;

    /// The next_window graces in force, by limit.
    fn graces(&self) -> StateFuture<'_, HashMap<String, Override>>;

    /// Applies the state part of a migration plan: drops the counters of
    /// `plan.drop`, sets and clears graces. Returns how many counters were
    /// dropped.
    fn apply_plan<'a>(&'a self, plan: &'a LimitPlan, now: u64) -> StateFuture<'a, usize>;

    /// Claims the migration `from` → `to` (digests of the limits in force
    /// before and after) for engine `by`: `None` when this call claimed it
    /// and must apply it; `Some(engine)` when `engine` did already, within
    /// the last [`MIGRATION_CLAIM_SECS`]. Claiming `from` → `to` forgets the
    /// claim of `to` → `from`, so a route that goes back and forth migrates
    /// each time.
    fn claim_migration<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        by: &'a str,
        now: u64,
    ) -> StateFuture<'a, Option<String>>;

    /// Asks approval for a request (the lifecycle of
    /// [`crate::engine::approvals`]).
    fn ask<'a>(
        &'a self,
        new: &'a NewApproval,
        config: &'a ApprovalConfig,
        now: u64,
    ) -> StateFuture<'a, Asked>;

    /// The approval `id`, while it is kept.
    fn approval<'a>(&'a self, id: &'a str, now: u64) -> StateFuture<'a, Option<Approval>>;

    /// Every approval kept, oldest first.
    fn approvals(&self, now: u64) -> StateFuture<'_, Vec<Approval>>;

    /// Approves or rejects a waiting approval; returns it decided.
    fn decide<'a>(
        &'a self,
        decision: Decision<'a>,
        config: &'a ApprovalConfig,
        now: u64,
    ) -> DecideFuture<'a>;

    /// Requests refused since start because their limit key would have
    /// been new in a limit holding the most keys allowed.
    fn keys_refused(&self) -> u64 {
        self.local().map_or(0, LimitStore::keys_refused)
    }

    /// Answers when the backend can be used (the readiness probe).
    fn health(&self) -> StateFuture<'_, ()>;

    /// Housekeeping at `now`: forgets what ended.
    fn expire(&self, now: u64) -> StateFuture<'_, ()>;
}

/// How long a migration claim keeps other engines from applying the same
/// migration again: the time a fleet takes to converge on a route, with a
/// wide margin.
pub const MIGRATION_CLAIM_SECS: u64 = 120;

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
