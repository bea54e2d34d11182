//! State migrations on a route change (SPEC §5 "State migration", the
//! `state::` cases of §3). Planning is pure; [`OverrideStore`] applies the
//! one migration that outlives the change (`on_decrease next_window`).
//!
//! Counters belong to the limit's qualified name (`policy.limit`) and carry
//! over a swap as they are. What a limit means is taken from the artifacts
//! that enforce: the stable artifact's limits, overlaid by the candidate's in
//! split mode (the newer definition wins for a limit both define; their
//! cohorts share its counters). Comparing those definitions before and
//! after a route change:
//!
//! - **`state::limit_decrease`** — `max` lowered:
//!   - `on_decrease next_window`: the lowered max applies from the next
//!     window on. Until the window in force at the change ends, every key of
//!     the limit keeps counting against the old max (keys are neither reset
//!     nor refused early); at the window's end counts start afresh under the
//!     new max.
//!   - `on_decrease freeze`, and a limit without `on_decrease` (which
//!     `sluice check` reports as an error; an operator who routes it anyway
//!     gets the safe reading): the new max applies at once and counts are
//!     kept, so a key whose count is at or over the new max is refused for
//!     the rest of the window (refused requests are not counted; its count
//!     stays frozen) and keys under it go on up to the new max.
//!   - Recorded with the number of keys whose count exceeds the new max.
//! - **`state::window_change`** — the window length changed: the limit's
//!   counters are reset (dropped) and the reset is recorded.
//! - **`state::limit_removed`** — no enforcing artifact defines the limit
//!   any more: its counters are dropped, recorded.
//! - **`state::pending_approvals`** — a waiting request whose rule no longer
//!   exists in the artifact that would now enforce it is resolved: rejected
//!   with reason `rule removed`; one whose rule still exists but no longer
//!   covers it (narrowed) is rejected with reason `rule narrowed`. Recorded.
//!
//! A raised max, an unchanged limit and a new limit need nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::compile::artifact::Artifact;
use crate::eval::state::{CounterEntry, LimitKey, LimitStore, StateError, Window};
use crate::model::ir::OnDecrease;

/// What a limit means, for migration purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDef {
    pub max: u64,
    pub window_secs: u64,
    pub on_decrease: Option<OnDecrease>,
}

/// The limits in force under a route: the stable artifact's, overlaid by the
/// split candidate's.
pub fn limits_in_force(
    stable: &Artifact,
    split_candidate: Option<&Artifact>,
) -> BTreeMap<String, LimitDef> {
    let mut out = BTreeMap::new();
    for artifact in std::iter::once(stable).chain(split_candidate) {
        for p in &artifact.policies {
            for l in &p.limits {
                out.insert(
                    format!("{}.{}", p.name, l.name),
                    LimitDef {
                        max: l.max,
                        window_secs: l.window_secs,
                        on_decrease: l.on_decrease,
                    },
                );
            }
        }
    }
    out
}

/// A short digest of the limits in force under a route: two route changes
/// with the same digests before and after are the same migration (the
/// fleet applies it once).
pub fn limits_digest(limits: &BTreeMap<String, LimitDef>) -> String {
    let mut h = Sha256::new();
    for (name, d) in limits {
        let on_decrease = match d.on_decrease {
            Some(OnDecrease::NextWindow) => "next_window",
            Some(OnDecrease::Freeze) => "freeze",
            None => "-",
        };
        h.update(format!("{name} {} {} {on_decrease}\n", d.max, d.window_secs).as_bytes());
    }
    hex::encode(h.finalize().get(..12).unwrap_or_default())
}

/// A `next_window` grace: until `until`, counting windows of `secs` seconds
/// use `max` (the old, higher max) for this limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Override {
    pub max: u64,
    pub secs: u64,
    pub until: u64,
}

impl Override {
    /// The max a request counted in `window` against a limit of `max` gets
    /// under this grace.
    pub fn max_for(&self, window: Window, max: u64) -> u64 {
        if window.start < self.until && window.secs == self.secs {
            max.max(self.max)
        } else {
            max
        }
    }
}

/// One applied migration, as recorded in the decision log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "migration", rename_all = "snake_case")]
pub enum Migration {
    LimitDecrease {
        limit: String,
        old_max: u64,
        new_max: u64,
        /// `next_window`, `freeze`, or absent (applied as `freeze`).
        on_decrease: Option<OnDecrease>,
        /// Live keys whose count is over the new max.
        keys_over: usize,
        /// When the window in force ends (seconds since the epoch).
        until: u64,
        effect: String,
    },
    WindowChange {
        limit: String,
        old_secs: u64,
        new_secs: u64,
        counters_reset: usize,
    },
    LimitRemoved {
        limit: String,
        counters_dropped: usize,
    },
    ApprovalResolved {
        id: String,
        policy: String,
        rule: String,
        reason: String,
    },
    /// Another engine sharing the state backend applied this limit
    /// migration (the limits in force `from` → `to`, digests) already.
    AppliedElsewhere {
        from: String,
        to: String,
        by: String,
    },
}

/// What a route change does to limit state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitPlan {
    pub migrations: Vec<Migration>,
    /// Limits whose counters are dropped.
    pub drop: Vec<String>,
    /// Limits whose override is set (or replaced) …
    pub set_overrides: Vec<(String, Override)>,
    /// … or cleared.
    pub clear_overrides: Vec<String>,
}

/// Plans the limit migrations from the definitions in force `before` to
/// those `after`, given the live `counters` and the active `overrides`.
pub fn plan_limits(
    before: &BTreeMap<String, LimitDef>,
    after: &BTreeMap<String, LimitDef>,
    counters: &[CounterEntry],
    overrides: &HashMap<String, Override>,
    now: u64,
) -> LimitPlan {
    let mut plan = LimitPlan::default();
    let over = |limit: &str, max: u64| {
        counters
            .iter()
            .filter(|c| c.limit == limit && c.window.end() > now && c.count > max)
            .count()
    };
    for (limit, old) in before {
        let Some(new) = after.get(limit) else {
            plan.migrations.push(Migration::LimitRemoved {
                limit: limit.clone(),
                counters_dropped: counters.iter().filter(|c| c.limit == *limit).count(),
            });
            plan.drop.push(limit.clone());
            if overrides.contains_key(limit) {
                plan.clear_overrides.push(limit.clone());
            }
            continue;
        };
        if new == old {
            continue;
        }
        if new.window_secs != old.window_secs {
            plan.migrations.push(Migration::WindowChange {
                limit: limit.clone(),
                old_secs: old.window_secs,
                new_secs: new.window_secs,
                counters_reset: counters.iter().filter(|c| c.limit == *limit).count(),
            });
            plan.drop.push(limit.clone());
            if overrides.contains_key(limit) {
                plan.clear_overrides.push(limit.clone());
            }
            continue;
        }
        // The max in force before: the old one, or a grace still running.
        let grace = overrides
            .get(limit)
            .filter(|o| o.until > now && o.secs == old.window_secs)
            .map(|o| o.max);
        let old_max = grace.map_or(old.max, |g| g.max(old.max));
        if new.max >= old_max {
            if overrides.contains_key(limit) {
                plan.clear_overrides.push(limit.clone());
            }
            continue;
        }
        let until = Window::containing(now, new.window_secs).end();
        let keys_over = over(limit, new.max);
        let effect = match new.on_decrease {
            Some(OnDecrease::NextWindow) => {
                plan.set_overrides.push((
                    limit.clone(),
                    Override {
                        max: old_max,
                        secs: new.window_secs,
                        until,
                    },
                ));
                format!("max {old_max} stays in force until the window ends at {until}")
            }
            Some(OnDecrease::Freeze) | None => {
                if overrides.contains_key(limit) {
                    plan.clear_overrides.push(limit.clone());
                }
                format!(
                    "max {} applies now: {keys_over} key(s) over it are refused until the window ends at {until}",
                    new.max
                )
            }
        };
        plan.migrations.push(Migration::LimitDecrease {
            limit: limit.clone(),
            old_max,
            new_max: new.max,
            on_decrease: new.on_decrease,
            keys_over,
            until,
            effect,
        });
    }
    for limit in after.keys() {
        if !before.contains_key(limit) && overrides.contains_key(limit) {
            plan.clear_overrides.push(limit.clone());
        }
    }
    plan
}

/// A limit store that applies `next_window` graces to counting requests.
///
/// Dry runs (`count`) are untouched: they compare a count with the
/// evaluating artifact's own max.
#[derive(Debug)]
pub struct OverrideStore<S> {
    inner: S,
    any: AtomicBool,
    overrides: ArcSwap<HashMap<String, Override>>,
}

impl<S: LimitStore> OverrideStore<S> {
    pub fn new(inner: S) -> Self {
        OverrideStore {
            inner,
            any: AtomicBool::new(false),
            overrides: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The overrides in force.
    pub fn overrides(&self) -> HashMap<String, Override> {
        HashMap::clone(&self.overrides.load())
    }

    /// Applies a plan's override changes; expired overrides are dropped.
    pub fn apply(&self, plan: &LimitPlan, now: u64) {
        let mut map = self.overrides();
        for limit in &plan.clear_overrides {
            map.remove(limit);
        }
        for (limit, o) in &plan.set_overrides {
            map.insert(limit.clone(), *o);
        }
        map.retain(|_, o| o.until > now);
        self.any.store(!map.is_empty(), Ordering::Release);
        self.overrides.store(Arc::new(map));
    }
}

impl<S: LimitStore> LimitStore for OverrideStore<S> {
    fn try_acquire(&self, key: LimitKey<'_>, window: Window, max: u64) -> Result<bool, StateError> {
        let mut max = max;
        if self.any.load(Ordering::Acquire)
            && let Some(o) = self.overrides.load().get(key.limit)
        {
            max = o.max_for(window, max);
        }
        self.inner.try_acquire(key, window, max)
    }

    fn count(&self, key: LimitKey<'_>, window: Window) -> Result<u64, StateError> {
        self.inner.count(key, window)
    }

    fn entries(&self) -> Result<Vec<CounterEntry>, StateError> {
        self.inner.entries()
    }

    fn put(&self, entry: &CounterEntry) -> Result<(), StateError> {
        self.inner.put(entry)
    }

    fn remove_limit(&self, limit: &str) -> Result<usize, StateError> {
        self.inner.remove_limit(limit)
    }

    fn expire(&self, now: u64) {
        self.inner.expire(now);
    }

    fn keys_refused(&self) -> u64 {
        self.inner.keys_refused()
    }
}
