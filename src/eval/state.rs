//! Limit counters: the state that evaluation reads and writes.
//!
//! The evaluator never owns counters; it talks to a [`LimitStore`], so the
//! same evaluator runs against the in-memory store here or a shared backend
//! (one store for a fleet of engines). Counters are keyed by the limit's
//! qualified name (`policy.limit`) and the canonical text of its `by` values,
//! so they carry over an artifact swap and can be listed for state checks.
//!
//! Windows are fixed and aligned to the epoch: the window holding `now` starts
//! at `now - now % secs`. A counter remembers the window it counts; a request
//! in a later window starts the count afresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use crate::eval::Fnv1a;

pub use crate::api::state::{CounterEntry, Window};

/// Which counter: the limit and the key within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey<'a> {
    /// The qualified limit name `policy.limit` (names are `[a-z][a-z0-9_]*`,
    /// so the dot is unambiguous).
    pub limit: &'a str,
    /// The `by` values as a compact JSON array, e.g. `["billing-bot"]`.
    pub key: &'a str,
}

/// One counter to count (or read) for a request: the counter, the window
/// the request falls in, and the limit's max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitCall<'a> {
    pub key: LimitKey<'a>,
    pub window: Window,
    pub max: u64,
}

/// A limit store that could not be reached or answered wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum StateError {
    #[error("limit store unavailable: {0}")]
    #[diagnostic(code(state::unavailable))]
    Unavailable(String),
}

/// Where limit counters live.
///
/// Implementations are shared by concurrent evaluations (`&self`), so they
/// do their own locking. A request whose window is older than the one a
/// counter holds (a clock read just before a window boundary, applied just
/// after) counts against the newer window rather than resetting it.
pub trait LimitStore: Send + Sync {
    /// Counts one request against `key` in `window` unless the count has
    /// reached `max`. Returns whether the request was counted (it is within
    /// the limit); a request that would exceed is not counted.
    fn try_acquire(&self, key: LimitKey<'_>, window: Window, max: u64) -> Result<bool, StateError>;

    /// The count of `key` in `window`, without counting (dry runs, shadow
    /// evaluation).
    fn count(&self, key: LimitKey<'_>, window: Window) -> Result<u64, StateError>;

    /// Every live counter, sorted by limit, key.
    fn entries(&self) -> Result<Vec<CounterEntry>, StateError>;

    /// Sets a counter (state migration, restore).
    fn put(&self, entry: &CounterEntry) -> Result<(), StateError>;

    /// Drops every counter of `limit` (state migration: a removed limit or
    /// a changed window). Returns how many counters there were.
    fn remove_limit(&self, limit: &str) -> Result<usize, StateError>;

    /// Housekeeping: forgets counters of windows that ended by `now`. A
    /// store whose counters expire by themselves does nothing.
    fn expire(&self, _now: u64) {}

    /// Requests refused because their key would have been new in a limit
    /// holding as many keys as the store allows, since start.
    fn keys_refused(&self) -> u64 {
        0
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    window: Window,
    count: u64,
}

type Shard = HashMap<Box<str>, HashMap<Box<str>, Slot>>;

const SHARDS: usize = 16;

/// Keys one limit holds at most by default ([`MemoryLimitStore::new`]).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// In-memory counters, sharded by key to keep lock contention low.
///
/// **Bounded**: a limit holds at most `max_keys` counters at once (those
/// of windows that ended are forgotten by [`LimitStore::expire`]). At the
/// cap, a request whose key would be new is refused as over the limit (its
/// `exceed` effect, nothing stored) and counted
/// ([`LimitStore::keys_refused`]); keys already counted go on as before.
/// Nothing is evicted: evicting would reset a caller's count, which is
/// exactly what flooding a limit with new keys would then buy.
#[derive(Debug)]
pub struct MemoryLimitStore {
    shards: Vec<Mutex<Shard>>,
    max_keys: usize,
    /// Keys held per limit, across shards.
    held: RwLock<HashMap<Box<str>, AtomicUsize>>,
    refused: AtomicU64,
}

impl Default for MemoryLimitStore {
    fn default() -> Self {
        MemoryLimitStore::new()
    }
}

impl MemoryLimitStore {
    /// A store of at most [`DEFAULT_MAX_KEYS`] keys per limit.
    pub fn new() -> Self {
        MemoryLimitStore::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A store of at most `max_keys` keys per limit.
    pub fn with_max_keys(max_keys: usize) -> Self {
        MemoryLimitStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_keys,
            held: RwLock::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes a place for a new key of `limit`: false at the cap.
    fn admit(&self, limit: &str) -> bool {
        {
            let held = self.held.read().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = held.get(limit) {
                return n
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        (v < self.max_keys).then_some(v + 1)
                    })
                    .is_ok();
            }
        }
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(limit.into()).or_default();
        let v = n.get_mut();
        if *v >= self.max_keys {
            return false;
        }
        *v += 1;
        true
    }

    /// Gives back `n` places of `limit`.
    fn release(&self, limit: &str, n: usize) {
        if n == 0 {
            return;
        }
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = held.get(limit) {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        }
    }

    fn shard(&self, key: LimitKey<'_>) -> Option<MutexGuard<'_, Shard>> {
        // FNV-1a: shard choice needs spread, not resistance to crafted keys
        // (the maps inside keep std's keyed hashing).
        let mut h = Fnv1a::new();
        h.write(key.limit.as_bytes());
        h.write(&[0]);
        h.write(key.key.as_bytes());
        let i = (h.finish() % SHARDS as u64) as usize;
        // A poisoned lock only means another thread panicked mid-update of
        // plain counters; the data is still usable.
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The window a request in `window` counts against, given the counter's
/// current slot, and the count already in it.
fn effective(slot: Option<&Slot>, window: Window) -> (Window, u64) {
    match slot {
        Some(s) if s.window == window => (window, s.count),
        Some(s) if s.window.secs == window.secs && s.window.start > window.start => {
            (s.window, s.count)
        }
        _ => (window, 0),
    }
}

impl LimitStore for MemoryLimitStore {
    fn try_acquire(&self, key: LimitKey<'_>, window: Window, max: u64) -> Result<bool, StateError> {
        let Some(mut shard) = self.shard(key) else {
            return Err(StateError::Unavailable("no shard".to_string()));
        };
        let keys = match shard.get_mut(key.limit) {
            Some(keys) => keys,
            None => shard.entry(key.limit.into()).or_default(),
        };
        match keys.get_mut(key.key) {
            Some(slot) => {
                let (window, count) = effective(Some(slot), window);
                if count >= max {
                    return Ok(false);
                }
                *slot = Slot {
                    window,
                    count: count + 1,
                };
            }
            None => {
                if max == 0 {
                    return Ok(false);
                }
                if !self.admit(key.limit) {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                keys.insert(key.key.into(), Slot { window, count: 1 });
            }
        }
        Ok(true)
    }

    fn count(&self, key: LimitKey<'_>, window: Window) -> Result<u64, StateError> {
        let Some(shard) = self.shard(key) else {
            return Err(StateError::Unavailable("no shard".to_string()));
        };
        let slot = shard.get(key.limit).and_then(|keys| keys.get(key.key));
        Ok(effective(slot, window).1)
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (limit, keys) in shard.iter() {
                for (key, slot) in keys {
                    out.push(CounterEntry {
                        limit: limit.to_string(),
                        key: key.to_string(),
                        window: slot.window,
                        count: slot.count,
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn put(&self, entry: &CounterEntry) -> Result<(), StateError> {
        let key = LimitKey {
            limit: &entry.limit,
            key: &entry.key,
        };
        let Some(mut shard) = self.shard(key) else {
            return Err(StateError::Unavailable("no shard".to_string()));
        };
        let keys = shard.entry(entry.limit.as_str().into()).or_default();
        let slot = Slot {
            window: entry.window,
            count: entry.count,
        };
        match keys.get_mut(entry.key.as_str()) {
            Some(s) => *s = slot,
            // A restored counter is kept even past the cap (it was counted
            // under it), and takes its place.
            None => {
                keys.insert(entry.key.as_str().into(), slot);
                if !self.admit(&entry.limit) {
                    let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(n) = held.get_mut(entry.limit.as_str()) {
                        *n.get_mut() += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops every counter of windows that ended at or before `now`.
    fn expire(&self, now: u64) {
        let mut gone: HashMap<Box<str>, usize> = HashMap::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|limit, keys| {
                let before = keys.len();
                keys.retain(|_, slot| slot.window.end() > now);
                if keys.len() < before {
                    *gone.entry(limit.clone()).or_default() += before - keys.len();
                }
                !keys.is_empty()
            });
        }
        for (limit, n) in gone {
            self.release(&limit, n);
        }
    }

    fn remove_limit(&self, limit: &str) -> Result<usize, StateError> {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(keys) = shard.remove(limit) {
                removed += keys.len();
            }
        }
        self.release(limit, removed);
        Ok(removed)
    }

    fn keys_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_at_its_key_cap_refuses_new_keys_and_keeps_counting_old_ones()
    -> Result<(), StateError> {
        let store = MemoryLimitStore::with_max_keys(2);
        let w = Window { start: 0, secs: 60 };
        let key = |k: &'static str| LimitKey {
            limit: "p.l",
            key: k,
        };
        assert!(store.try_acquire(key("a"), w, 5)?);
        assert!(store.try_acquire(key("b"), w, 5)?);
        assert!(!store.try_acquire(key("c"), w, 5)?);
        assert!(store.try_acquire(key("a"), w, 5)?);
        assert_eq!(store.keys_refused(), 1);
        // Another limit has its own cap.
        let other = LimitKey {
            limit: "p.m",
            key: "c",
        };
        assert!(store.try_acquire(other, w, 5)?);
        // Once the window ended and is forgotten, new keys come in again.
        store.expire(60);
        let w2 = Window {
            start: 60,
            secs: 60,
        };
        assert!(store.try_acquire(key("c"), w2, 5)?);
        assert!(store.try_acquire(key("d"), w2, 5)?);
        assert!(!store.try_acquire(key("e"), w2, 5)?);
        assert_eq!(store.remove_limit("p.l")?, 2);
        assert!(store.try_acquire(key("e"), w2, 5)?);
        Ok(())
    }
}
