//! The per-artifact circuit breaker (SPEC §5 "Circuit breaker"). Pure state
//! machine: the caller passes the time, so tests drive it with any clock.
//!
//! - **Closed**: every request is evaluated. Outcomes go into a sliding
//!   window of `buckets` time buckets covering `window`. When the window
//!   holds at least `min_requests` outcomes and either the share of failed
//!   evaluations reaches `error_rate` or the share of slow ones (taking at
//!   least `slow_call`) reaches `slow_rate`, the breaker opens.
//! - **Open**: no request is evaluated; each gets the tier failsafe. After
//!   `open_for`, the next request moves the breaker to half-open.
//! - **Half-open**: up to `probes` requests are evaluated as probes (others
//!   get the failsafe). One failed or slow probe re-opens the breaker; when
//!   `probes` probes have succeeded, it closes with an empty window.
//!
//! The closed state is read with one atomic load; outcomes take a mutex held
//! for a few counter updates.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::stats::BreakerState;

/// Thresholds and timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub window: Duration,
    pub buckets: u32,
    pub min_requests: u64,
    pub error_rate: f64,
    pub slow_call: Duration,
    pub slow_rate: f64,
    pub open_for: Duration,
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(10),
            buckets: 10,
            min_requests: 20,
            error_rate: 0.5,
            slow_call: Duration::from_millis(100),
            slow_rate: 0.5,
            open_for: Duration::from_secs(5),
            probes: 5,
        }
    }
}

/// The state's code in the breaker's atomic.
fn code(s: BreakerState) -> u8 {
    match s {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

fn from_code(c: u8) -> BreakerState {
    match c {
        0 => BreakerState::Closed,
        1 => BreakerState::Open,
        _ => BreakerState::HalfOpen,
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Evaluate (closed).
    Evaluate,
    /// Evaluate as a half-open probe.
    Probe,
    /// Do not evaluate: apply the failsafe.
    Failsafe,
}

/// A state change, for the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    /// Why, with the figures.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The bucket's index since `origin` (its slot is `epoch % buckets`).
    epoch: u64,
    total: u64,
    errors: u64,
    slow: u64,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    ring: Vec<Bucket>,
    opened_at: Instant,
    probes_started: u32,
    probes_ok: u32,
}

/// One artifact's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    origin: Instant,
    state: AtomicU8,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(config: BreakerConfig, now: Instant) -> Breaker {
        let buckets = config.buckets.max(1);
        Breaker {
            config: BreakerConfig { buckets, ..config },
            origin: now,
            state: AtomicU8::new(code(BreakerState::Closed)),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                ring: vec![Bucket::default(); buckets as usize],
                opened_at: now,
                probes_started: 0,
                probes_ok: 0,
            }),
        }
    }

    pub fn state(&self) -> BreakerState {
        from_code(self.state.load(Ordering::Acquire))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, inner: &mut Inner, to: BreakerState, reason: String) -> Transition {
        let from = inner.state;
        inner.state = to;
        self.state.store(code(to), Ordering::Release);
        Transition { from, to, reason }
    }

    /// Decides whether a request is evaluated; may move open → half-open.
    pub fn admit(&self, now: Instant) -> (Admit, Option<Transition>) {
        if self.state() == BreakerState::Closed {
            return (Admit::Evaluate, None);
        }
        let mut inner = self.lock();
        let mut transition = None;
        if inner.state == BreakerState::Open
            && now.saturating_duration_since(inner.opened_at) >= self.config.open_for
        {
            inner.probes_started = 0;
            inner.probes_ok = 0;
            transition = Some(self.set(
                &mut inner,
                BreakerState::HalfOpen,
                format!(
                    "open for {} ms: probing with {} requests",
                    self.config.open_for.as_millis(),
                    self.config.probes
                ),
            ));
        }
        let admit = match inner.state {
            BreakerState::Closed => Admit::Evaluate,
            BreakerState::Open => Admit::Failsafe,
            BreakerState::HalfOpen if inner.probes_started < self.config.probes.max(1) => {
                inner.probes_started += 1;
                Admit::Probe
            }
            BreakerState::HalfOpen => Admit::Failsafe,
        };
        (admit, transition)
    }

    /// Records the outcome of an admitted evaluation: `ok` false when it
    /// failed; `elapsed` its duration.
    pub fn record(
        &self,
        now: Instant,
        admit: Admit,
        ok: bool,
        elapsed: Duration,
    ) -> Option<Transition> {
        let slow = elapsed >= self.config.slow_call;
        let mut inner = self.lock();
        match (admit, inner.state) {
            (Admit::Probe, BreakerState::HalfOpen) => {
                if !ok || slow {
                    inner.opened_at = now;
                    let why = if ok { "was slow" } else { "failed" };
                    Some(self.set(
                        &mut inner,
                        BreakerState::Open,
                        format!("a probe {why} ({} µs): open again", elapsed.as_micros()),
                    ))
                } else {
                    inner.probes_ok += 1;
                    if inner.probes_ok >= self.config.probes.max(1) {
                        inner.ring.iter_mut().for_each(|b| *b = Bucket::default());
                        let n = inner.probes_ok;
                        Some(self.set(
                            &mut inner,
                            BreakerState::Closed,
                            format!("{n} probes succeeded"),
                        ))
                    } else {
                        None
                    }
                }
            }
            (Admit::Evaluate, BreakerState::Closed) => {
                let bucket_ms =
                    (self.config.window.as_millis() / u128::from(self.config.buckets)).max(1);
                let epoch = u64::try_from(
                    now.saturating_duration_since(self.origin).as_millis() / bucket_ms,
                )
                .unwrap_or(u64::MAX);
                let n = inner.ring.len() as u64;
                let slot = (epoch % n.max(1)) as usize;
                if let Some(b) = inner.ring.get_mut(slot) {
                    if b.epoch != epoch {
                        *b = Bucket {
                            epoch,
                            ..Bucket::default()
                        };
                    }
                    b.total += 1;
                    b.errors += u64::from(!ok);
                    b.slow += u64::from(slow);
                }
                if ok && !slow {
                    return None;
                }
                // Only a bad outcome can push a rate over its threshold.
                let oldest = epoch.saturating_sub(n.saturating_sub(1));
                let (total, errors, slows) = inner
                    .ring
                    .iter()
                    .filter(|b| b.epoch >= oldest && b.epoch <= epoch)
                    .fold((0, 0, 0), |(t, e, s), b| {
                        (t + b.total, e + b.errors, s + b.slow)
                    });
                if total < self.config.min_requests.max(1) {
                    return None;
                }
                let error_rate = errors as f64 / total as f64;
                let slow_rate = slows as f64 / total as f64;
                let reason = if error_rate >= self.config.error_rate {
                    format!(
                        "error rate {error_rate:.3} ({errors} of {total}) reached {}",
                        self.config.error_rate
                    )
                } else if slow_rate >= self.config.slow_rate {
                    format!(
                        "slow-call rate {slow_rate:.3} ({slows} of {total} took ≥ {} ms) reached {}",
                        self.config.slow_call.as_millis(),
                        self.config.slow_rate
                    )
                } else {
                    return None;
                };
                inner.opened_at = now;
                Some(self.set(&mut inner, BreakerState::Open, reason))
            }
            // An outcome that raced a state change: the window it belonged
            // to is gone.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_calls_open_the_breaker() {
        let t0 = Instant::now();
        let cfg = BreakerConfig {
            min_requests: 4,
            ..BreakerConfig::default()
        };
        let b = Breaker::new(cfg, t0);
        for _ in 0..2 {
            assert!(
                b.record(t0, Admit::Evaluate, true, Duration::ZERO)
                    .is_none()
            );
        }
        assert!(
            b.record(t0, Admit::Evaluate, true, Duration::from_secs(1))
                .is_none()
        );
        let t = b.record(t0, Admit::Evaluate, true, Duration::from_secs(1));
        assert_eq!(t.map(|t| t.to), Some(BreakerState::Open));
        assert_eq!(b.admit(t0).0, Admit::Failsafe);
    }
}
