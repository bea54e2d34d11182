//! State in this process: limit counters in any [`LimitStore`] (the
//! in-memory one by default) behind the next_window graces, migration
//! claims, and [`MemoryApprovals`]. Its futures are ready at once; the
//! engine counts through [`StateBackend::local`] without them.

use std::collections::HashMap;
use std::future::ready;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::approvals::Approval;
use crate::api::state::BackendStatus;
use crate::engine::approvals::{ApprovalConfig, Asked, MemoryApprovals, NewApproval};
use crate::engine::backend::{
    DecideFuture, Decision, MIGRATION_CLAIM_SECS, StateBackend, StateFuture,
};
use crate::engine::migrate::{LimitPlan, Override, OverrideStore};
use crate::eval::state::{CounterEntry, LimitCall, LimitStore, MemoryLimitStore, StateError};

/// State in this process, counters in `S`.
#[derive(Debug)]
pub struct LocalBackend<S = MemoryLimitStore> {
    limits: OverrideStore<S>,
    approvals: MemoryApprovals,
    /// `from → to` → (engine, until).
    claims: Mutex<HashMap<(String, String), (String, u64)>>,
    /// Its name, when several engines in this process share it.
    shared: Option<String>,
}

/// Shared local backends made in this process (their names tell them
/// apart).
static SHARED: AtomicU64 = AtomicU64::new(0);

/// State in this process's memory: the default backend.
pub type MemoryBackend = LocalBackend<MemoryLimitStore>;

impl Default for LocalBackend<MemoryLimitStore> {
    fn default() -> Self {
        LocalBackend::with_limits(MemoryLimitStore::new())
    }
}

impl LocalBackend<MemoryLimitStore> {
    pub fn new() -> Self {
        LocalBackend::default()
    }

    /// A backend for several engines of this process to share (one `Arc`
    /// of it): their live states name it, so that it is checked once.
    pub fn shared() -> Self {
        let n = SHARED.fetch_add(1, Ordering::Relaxed) + 1;
        LocalBackend {
            shared: Some(format!("memory of process {} #{n}", std::process::id())),
            ..LocalBackend::default()
        }
    }
}

impl<S: LimitStore> LocalBackend<S> {
    /// A local backend counting in `limits`.
    pub fn with_limits(limits: S) -> Self {
        LocalBackend {
            limits: OverrideStore::new(limits),
            approvals: MemoryApprovals::new(),
            claims: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// The store counters live in.
    pub fn store(&self) -> &S {
        self.limits.inner()
    }
}

fn done<'a, T: Send + 'a>(v: Result<T, StateError>) -> StateFuture<'a, T> {
    Box::pin(ready(v))
}

impl<S: LimitStore + 'static> StateBackend for LocalBackend<S> {
    fn status(&self) -> BackendStatus {
        BackendStatus {
            kind: "memory".to_string(),
            location: "this process".to_string(),
            shared: self.shared.is_some(),
            up: true,
            error: None,
        }
    }

    fn shared_name(&self) -> Option<String> {
        self.shared.clone()
    }

    fn local(&self) -> Option<&dyn LimitStore> {
        Some(&self.limits)
    }

    fn acquire<'a>(&'a self, calls: &'a [LimitCall<'a>], _now: u64) -> StateFuture<'a, Vec<bool>> {
        done(
            calls
                .iter()
                .map(|c| self.limits.try_acquire(c.key, c.window, c.max))
                .collect(),
        )
    }

    fn counts<'a>(&'a self, calls: &'a [LimitCall<'a>]) -> StateFuture<'a, Vec<u64>> {
        done(
            calls
                .iter()
                .map(|c| self.limits.count(c.key, c.window))
                .collect(),
        )
    }

    fn entries(&self) -> StateFuture<'_, Vec<CounterEntry>> {
        done(self.limits.entries())
    }

    fn graces(&self) -> StateFuture<'_, HashMap<String, Override>> {
        done(Ok(self.limits.overrides()))
    }

    fn apply_plan<'a>(&'a self, plan: &'a LimitPlan, now: u64) -> StateFuture<'a, usize> {
        let mut dropped = 0;
        for limit in &plan.drop {
            match self.limits.remove_limit(limit) {
                Ok(n) => dropped += n,
                Err(e) => return done(Err(e)),
            }
        }
        self.limits.apply(plan, now);
        done(Ok(dropped))
    }

    fn claim_migration<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        by: &'a str,
        now: u64,
    ) -> StateFuture<'a, Option<String>> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        claims.retain(|_, (_, until)| *until > now);
        claims.remove(&(to.to_string(), from.to_string()));
        let key = (from.to_string(), to.to_string());
        if let Some((engine, _)) = claims.get(&key) {
            return done(Ok(Some(engine.clone())));
        }
        claims.insert(key, (by.to_string(), now + MIGRATION_CLAIM_SECS));
        done(Ok(None))
    }

    fn ask<'a>(
        &'a self,
        new: &'a NewApproval,
        config: &'a ApprovalConfig,
        now: u64,
    ) -> StateFuture<'a, Asked> {
        done(self.approvals.ask(new, config, now))
    }

    fn approval<'a>(&'a self, id: &'a str, now: u64) -> StateFuture<'a, Option<Approval>> {
        done(Ok(self.approvals.get(id, now)))
    }

    fn approvals(&self, now: u64) -> StateFuture<'_, Vec<Approval>> {
        done(Ok(self.approvals.all(now)))
    }

    fn decide<'a>(
        &'a self,
        d: Decision<'a>,
        config: &'a ApprovalConfig,
        now: u64,
    ) -> DecideFuture<'a> {
        Box::pin(ready(
            self.approvals
                .decide(d.id, d.verdict, d.by, d.reason, config, now),
        ))
    }

    fn health(&self) -> StateFuture<'_, ()> {
        done(Ok(()))
    }

    fn expire(&self, now: u64) -> StateFuture<'_, ()> {
        self.limits.expire(now);
        self.limits.apply(&LimitPlan::default(), now);
        self.approvals.expire(now);
        done(Ok(()))
    }
}
