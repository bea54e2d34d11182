//! State in Redis, shared by every engine that names the same server and
//! key prefix (`--state-backend redis://HOST:PORT[/DB]`, `rediss://` for
//! TLS, `--state-prefix`, default the project's name).
//!
//! Through the `redis` crate's [`ConnectionManager`]: one multiplexed
//! connection per engine — concurrent evaluations are pipelined on it, none
//! waits for another's round trip — that reconnects by itself after an
//! error. Every call has a deadline (`--state-timeout`); a call that fails
//! or times out is an error the engine answers with the tier failsafe.
//!
//! **Counting** is one Lua script per request (`acquire.lua`, run by its
//! SHA with `EVALSHA`, loaded again on `NOSCRIPT`): every limit the request
//! hits is counted atomically, each unless it reached its max (or the
//! next_window grace in force, read in the same script). Counters are
//! hashes `{s, w, n}` (window start, length, count) under
//! `PREFIX:c:LIMIT:KEY`, with the in-memory store's semantics, and expire
//! with their window. The engine's clock, not Redis's, places a request in
//! its window; each call also carries a deadline on Redis's clock: the
//! engine's time plus the measured offset of the two clocks, plus the
//! timeout, minus the offset's possible error and [`DEADLINE_GUARD`]. A
//! script that reaches Redis after it — it sat in a socket while Redis was
//! stopped or busy, and the engine has answered that request with the
//! failsafe, or is about to — counts nothing. A call is never sent twice,
//! so nothing is counted twice across a reconnect. What no deadline can
//! rule out: a script Redis ran just before it stopped, whose answer then
//! came too late, counted a request the engine answered with the failsafe
//! (at most the calls in flight at that moment).
//!
//! **A key over its limit** is remembered in this engine for the rest of
//! its window ([`OverCache`]): later requests on it are refused without a
//! round trip (counts never go down within a window; a route change that
//! drops counters clears the memory).
//!
//! **Keys**: `PREFIX:c:…` counters, `PREFIX:n:LIMIT:SECS:START` how many
//! counters a limit made in a window (at `--max-limit-keys`, a request
//! whose counter would be new is refused as over the limit; it expires
//! with the window), `PREFIX:graces` (hash, limit → `max
//! secs until`), `PREFIX:m:FROM:TO` migration claims (`SET NX`, 120 s),
//! `PREFIX:a:ID` approval records (hashes), `PREFIX:f:FINGERPRINT` → the
//! latest approval id of a request, `PREFIX:q:GROUP` the waiting approvals
//! of a group (sorted by expiry), `PREFIX:al` every approval (sorted by
//! creation). The scripts touch keys they compute from others (an
//! approval's group), so the backend needs a standalone Redis (a primary,
//! with replicas or Sentinel in front as the operator likes), not Redis
//! Cluster.

mod approvals;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Script};

use crate::api::approvals::Approval;
use crate::api::state::BackendStatus;
use crate::engine::approvals::{ApprovalConfig, Asked, NewApproval};
use crate::engine::backend::{
    DecideFuture, Decision, MIGRATION_CLAIM_SECS, StateBackend, StateFuture,
};
use crate::engine::migrate::{LimitPlan, Override};
use crate::eval::state::{CounterEntry, LimitCall, StateError, Window};

/// How long before the engine gives up on a counting call Redis stops
/// counting it: room for the answer to travel back.
pub const DEADLINE_GUARD: Duration = Duration::from_millis(2);

/// How long a clock offset measured with a small error is preferred to
/// a new measurement with a larger one.
const OFFSET_KEPT: Duration = Duration::from_secs(30);

/// The offset of Redis's clock to this process's.
#[derive(Debug, Clone, Copy)]
struct Offset {
    /// Redis's clock minus this process's, in microseconds.
    us: i64,
    /// How far off it may be (half the round trip that measured it).
    error_us: i64,
    at: Instant,
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]` or `rediss://…`.
    pub url: String,
    /// The key prefix; `None`: the project's name, from the first route.
    pub prefix: Option<String>,
    /// How long one call may take.
    pub timeout: Duration,
    /// Keys one limit may hold at most in one window (`--max-limit-keys`).
    pub max_keys: usize,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: None,
            timeout: Duration::from_millis(250),
            max_keys: crate::eval::state::DEFAULT_MAX_KEYS,
        }
    }
}

/// The Redis backend cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    #[error("`{url}` is not a Redis URL: {source}")]
    Url {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the state prefix must not be empty or contain blanks")]
    Prefix,
}

/// The scripts, hashed once.
struct Scripts {
    acquire: Script,
    counts: Script,
    ask: Script,
    decide: Script,
}

/// Counters known to be at their max for the rest of a window.
#[derive(Debug, Default)]
pub struct OverCache {
    map: Mutex<HashMap<Box<str>, Over>>,
}

#[derive(Debug, Clone, Copy)]
struct Over {
    window: Window,
    max: u64,
}

/// Keys the cache remembers at most (then it starts afresh).
const OVER_MAX: usize = 100_000;

impl OverCache {
    fn key(call: &LimitCall<'_>) -> String {
        format!("{}\0{}", call.key.limit, call.key.key)
    }

    /// Whether `call` is refused without asking: its counter reached a max
    /// at least as high in the same window.
    fn refuses(&self, call: &LimitCall<'_>) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(Self::key(call).as_str())
            .is_some_and(|o| o.window == call.window && call.max <= o.max)
    }

    fn note(&self, call: &LimitCall<'_>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= OVER_MAX {
            map.clear();
        }
        map.insert(
            Self::key(call).into(),
            Over {
                window: call.window,
                max: call.max,
            },
        );
    }

    fn expire(&self, now: u64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, o| o.window.end() > now);
    }

    fn clear(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// State in Redis.
pub struct RedisBackend {
    conn: ConnectionManager,
    location: String,
    prefix: OnceLock<String>,
    timeout: Duration,
    scripts: Scripts,
    /// The last good measurement of the clock offset …
    offset: Mutex<Option<Offset>>,
    /// … and the deadline of a call made at this process's time `t` is
    /// `t + shift_us` on Redis's clock (offset + timeout − error − guard) …
    shift_us: AtomicI64,
    /// … once measured.
    offset_known: AtomicBool,
    over: OverCache,
    max_keys: usize,
    /// Requests refused for a new key in a limit at `max_keys`.
    refused: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("location", &self.location)
            .field("prefix", &self.prefix.get())
            .finish_non_exhaustive()
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!(
                "{}{}",
                url.get(..scheme + 3).unwrap_or(""),
                url.get(at + 1..).unwrap_or("")
            )
        }
        _ => url.to_string(),
    }
}

fn unavailable(what: &str, e: &redis::RedisError) -> StateError {
    StateError::Unavailable(format!("redis {what}: {e}"))
}

fn micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Escapes glob characters for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisBackend {
    /// A backend on `config.url`. Connects lazily: an engine starts while
    /// Redis is down, answers with the failsafe and reports not ready
    /// until Redis answers.
    pub fn new(config: &RedisConfig) -> Result<RedisBackend, RedisSetupError> {
        let client =
            redis::Client::open(config.url.as_str()).map_err(|source| RedisSetupError::Url {
                url: redact(&config.url),
                source,
            })?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout.max(Duration::from_secs(1))))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(client, manager).map_err(|source| {
            RedisSetupError::Url {
                url: redact(&config.url),
                source,
            }
        })?;
        let prefix = OnceLock::new();
        if let Some(p) = &config.prefix {
            if p.is_empty() || p.chars().any(char::is_whitespace) {
                return Err(RedisSetupError::Prefix);
            }
            let _ = prefix.set(p.clone());
        }
        Ok(RedisBackend {
            conn,
            location: redact(&config.url),
            prefix,
            timeout: config.timeout,
            scripts: Scripts {
                acquire: Script::new(include_str!("redis/acquire.lua")),
                counts: Script::new(include_str!("redis/counts.lua")),
                ask: Script::new(include_str!("redis/ask.lua")),
                decide: Script::new(include_str!("redis/decide.lua")),
            },
            offset: Mutex::new(None),
            shift_us: AtomicI64::new(0),
            offset_known: AtomicBool::new(false),
            over: OverCache::default(),
            max_keys: config.max_keys,
            refused: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn prefix(&self) -> Result<&str, StateError> {
        self.prefix.get().map(String::as_str).ok_or_else(|| {
            StateError::Unavailable(
                "no key prefix yet: set a route, or pass --state-prefix".to_string(),
            )
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The deadline of a call made now, on Redis's clock (0: the offset is
    /// not known yet, no deadline).
    fn deadline(&self) -> i64 {
        if !self.offset_known.load(Ordering::Acquire) {
            return 0;
        }
        micros_now().saturating_add(self.shift_us.load(Ordering::Relaxed))
    }

    /// Measures the offset of Redis's clock (`TIME`), halfway through the
    /// round trip.
    async fn measure_offset(&self) -> Result<(), StateError> {
        let before = micros_now();
        let t0 = Instant::now();
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("TIME", &e))?;
        let half = i64::try_from(t0.elapsed().as_micros() / 2).unwrap_or(i64::MAX);
        let redis_us = secs.saturating_mul(1_000_000).saturating_add(micros);
        let new = Offset {
            us: redis_us.saturating_sub(before.saturating_add(half)),
            // The clock read can be off by its own resolution too.
            error_us: half.saturating_add(1),
            at: t0,
        };
        let budget = i64::try_from(self.timeout.saturating_sub(DEADLINE_GUARD).as_micros())
            .unwrap_or(i64::MAX);
        let mut kept = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        // A slow round trip (the first one connects) measures too coarsely
        // to cut into the timeout: kept out, and another comes with the
        // next probe or housekeeping tick.
        let better = new.error_us <= budget / 4
            && match *kept {
                None => true,
                Some(old) => new.error_us <= old.error_us || old.at.elapsed() > OFFSET_KEPT,
            };
        if better {
            *kept = Some(new);
            let shift = new.us.saturating_add(budget).saturating_sub(new.error_us);
            self.shift_us.store(shift, Ordering::Relaxed);
            self.offset_known.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn counter_key(prefix: &str, call: &LimitCall<'_>) -> String {
        format!("{prefix}:c:{}:{}", call.key.limit, call.key.key)
    }

    async fn acquire_now(
        &self,
        calls: &[LimitCall<'_>],
        now: u64,
    ) -> Result<Vec<bool>, StateError> {
        let prefix = self.prefix()?;
        let mut within = vec![false; calls.len()];
        let asked: Vec<usize> = (0..calls.len())
            .filter(|i| calls.get(*i).is_some_and(|c| !self.over.refuses(c)))
            .collect();
        if asked.is_empty() {
            return Ok(within);
        }
        let mut inv = self.scripts.acquire.prepare_invoke();
        inv.key(format!("{prefix}:graces"));
        inv.arg(now).arg(self.deadline());
        for c in asked.iter().filter_map(|i| calls.get(*i)) {
            inv.key(Self::counter_key(prefix, c));
            inv.key(format!(
                "{prefix}:n:{}:{}:{}",
                c.key.limit, c.window.secs, c.window.start
            ));
            inv.arg(c.key.limit)
                .arg(c.window.start)
                .arg(c.window.secs)
                .arg(c.max)
                .arg(self.max_keys);
        }
        let answer: Vec<i64> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("counting", &e))?;
        if answer.len() != asked.len() {
            return Err(StateError::Unavailable(format!(
                "redis answered {} counts for {} limits",
                answer.len(),
                asked.len()
            )));
        }
        for (i, counted) in asked.iter().zip(answer) {
            if counted == 2 {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if counted == 1 {
                if let Some(w) = within.get_mut(*i) {
                    *w = true;
                }
            } else if let Some(c) = calls.get(*i) {
                self.over.note(c);
            }
        }
        Ok(within)
    }

    async fn counts_now(&self, calls: &[LimitCall<'_>]) -> Result<Vec<u64>, StateError> {
        let prefix = self.prefix()?;
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.counts.prepare_invoke();
        for c in calls {
            inv.key(Self::counter_key(prefix, c));
            inv.arg(c.window.start).arg(c.window.secs);
        }
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("reading counts", &e))
    }

    /// Every key matching `pattern`.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StateError> {
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable("SCAN", &e))?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn entries_now(&self) -> Result<Vec<CounterEntry>, StateError> {
        let prefix = self.prefix()?;
        let head = format!("{prefix}:c:");
        let keys = self.scan(&format!("{}*", glob_escape(&head))).await?;
        if keys.is_empty() {
            // An empty pipeline is an error to the client.
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HMGET").arg(k).arg("s").arg("w").arg("n");
        }
        let values: Vec<(Option<u64>, Option<u64>, Option<u64>)> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("reading counters", &e))?;
        let mut out = Vec::new();
        for (k, v) in keys.iter().zip(values) {
            let (Some(start), Some(secs), Some(count)) = v else {
                continue;
            };
            let Some((limit, key)) = k
                .strip_prefix(head.as_str())
                .and_then(|r| r.split_once(':'))
            else {
                continue;
            };
            out.push(CounterEntry {
                limit: limit.to_string(),
                key: key.to_string(),
                window: Window { start, secs },
                count,
            });
        }
        out.sort();
        Ok(out)
    }

    async fn graces_now(&self) -> Result<HashMap<String, Override>, StateError> {
        let prefix = self.prefix()?;
        let raw: HashMap<String, String> = self
            .conn()
            .hgetall(format!("{prefix}:graces"))
            .await
            .map_err(|e| unavailable("reading graces", &e))?;
        Ok(raw
            .into_iter()
            .filter_map(|(limit, v)| {
                let mut it = v.split(' ').map(str::parse::<u64>);
                match (it.next(), it.next(), it.next()) {
                    (Some(Ok(max)), Some(Ok(secs)), Some(Ok(until))) => {
                        Some((limit, Override { max, secs, until }))
                    }
                    _ => None,
                }
            })
            .collect())
    }

    async fn apply_now(&self, plan: &LimitPlan, now: u64) -> Result<usize, StateError> {
        let prefix = self.prefix()?;
        let mut dropped = 0;
        for limit in &plan.drop {
            let keys = self
                .scan(&format!(
                    "{}*",
                    glob_escape(&format!("{prefix}:c:{limit}:"))
                ))
                .await?;
            for chunk in keys.chunks(500) {
                let n: usize = self
                    .conn()
                    .unlink(chunk)
                    .await
                    .map_err(|e| unavailable("dropping counters", &e))?;
                dropped += n;
            }
        }
        let graces = format!("{prefix}:graces");
        let mut pipe = redis::pipe();
        let mut writes = 0;
        for limit in &plan.clear_overrides {
            pipe.hdel(&graces, limit).ignore();
            writes += 1;
        }
        for (limit, o) in &plan.set_overrides {
            pipe.hset(&graces, limit, format!("{} {} {}", o.max, o.secs, o.until))
                .ignore();
            writes += 1;
        }
        for (limit, o) in self.graces_now().await? {
            if o.until <= now {
                pipe.hdel(&graces, limit).ignore();
                writes += 1;
            }
        }
        // An empty pipeline is an error to the client.
        if writes > 0 {
            let () = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(|e| unavailable("writing graces", &e))?;
        }
        self.over.clear();
        Ok(dropped)
    }

    async fn claim_now(
        &self,
        from: &str,
        to: &str,
        by: &str,
    ) -> Result<Option<String>, StateError> {
        let prefix = self.prefix()?;
        let key = format!("{prefix}:m:{from}:{to}");
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(by)
            .arg("NX")
            .arg("EX")
            .arg(MIGRATION_CLAIM_SECS)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| unavailable("claiming a migration", &e))?;
        if set.is_some() {
            let _: usize = self
                .conn()
                .del(format!("{prefix}:m:{to}:{from}"))
                .await
                .map_err(|e| unavailable("claiming a migration", &e))?;
            return Ok(None);
        }
        let holder: Option<String> = self
            .conn()
            .get(&key)
            .await
            .map_err(|e| unavailable("reading a migration claim", &e))?;
        Ok(Some(holder.unwrap_or_else(|| "another engine".to_string())))
    }
}

impl StateBackend for RedisBackend {
    fn keys_refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            kind: "redis".to_string(),
            location: self.location.clone(),
            shared: true,
            up: false,
            error: None,
        }
    }

    fn shared_name(&self) -> Option<String> {
        Some(match self.prefix.get() {
            Some(prefix) => format!("{}, prefix {prefix}", self.location),
            None => self.location.clone(),
        })
    }

    fn limits_changed(&self) {
        self.over.clear();
    }

    fn bind_project(&self, project: &str) {
        if !project.is_empty() {
            let _ = self.prefix.set(project.to_string());
        }
    }

    fn acquire<'a>(&'a self, calls: &'a [LimitCall<'a>], now: u64) -> StateFuture<'a, Vec<bool>> {
        Box::pin(self.acquire_now(calls, now))
    }

    fn counts<'a>(&'a self, calls: &'a [LimitCall<'a>]) -> StateFuture<'a, Vec<u64>> {
        Box::pin(self.counts_now(calls))
    }

    fn entries(&self) -> StateFuture<'_, Vec<CounterEntry>> {
        Box::pin(self.entries_now())
    }

    fn graces(&self) -> StateFuture<'_, HashMap<String, Override>> {
        Box::pin(self.graces_now())
    }

    fn apply_plan<'a>(&'a self, plan: &'a LimitPlan, now: u64) -> StateFuture<'a, usize> {
        Box::pin(self.apply_now(plan, now))
    }

    fn claim_migration<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        by: &'a str,
        _now: u64,
    ) -> StateFuture<'a, Option<String>> {
        Box::pin(self.claim_now(from, to, by))
    }

    fn ask<'a>(
        &'a self,
        new: &'a NewApproval,
        config: &'a ApprovalConfig,
        now: u64,
    ) -> StateFuture<'a, Asked> {
        Box::pin(self.ask_now(new, config, now))
    }

    fn approval<'a>(&'a self, id: &'a str, _now: u64) -> StateFuture<'a, Option<Approval>> {
        Box::pin(async move {
            let prefix = self.prefix()?;
            self.record(prefix, id).await
        })
    }

    fn approvals(&self, _now: u64) -> StateFuture<'_, Vec<Approval>> {
        Box::pin(self.approvals_now())
    }

    fn decide<'a>(
        &'a self,
        d: Decision<'a>,
        config: &'a ApprovalConfig,
        now: u64,
    ) -> DecideFuture<'a> {
        Box::pin(self.decide_now(d, config, now))
    }

    fn health(&self) -> StateFuture<'_, ()> {
        Box::pin(self.measure_offset())
    }

    fn expire(&self, now: u64) -> StateFuture<'_, ()> {
        Box::pin(async move {
            self.over.expire(now);
            self.measure_offset().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_leave_the_url() {
        assert_eq!(redact("redis://:s3cret@db:6379/2"), "redis://db:6379/2");
        assert_eq!(redact("rediss://u:p@db/0"), "rediss://db/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
