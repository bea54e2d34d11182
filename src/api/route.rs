//! Routing: which artifact enforces a request (SPEC §5 "Routing"). Pure.
//!
//! The route names a `stable` artifact and, optionally, a `candidate` with a
//! `mode`:
//! - `shadow`: stable enforces every request; requests of the candidate
//!   cohort are also evaluated by the candidate, off the response path.
//! - `split`: requests of the candidate cohort are enforced by the candidate,
//!   the others by stable.
//!
//! A request is in the candidate cohort when it fits `match` and its
//! `hash_key` value falls in a bucket below the threshold.
//!
//! **Buckets.** `bucket(v) = u64::from_be_bytes(sha256(canonical(v))[0..8]) % 10_000`,
//! where `canonical` is: a string's UTF-8 bytes; an integer's decimal text; a
//! boolean's `true`/`false`; an array's compact JSON text (sets are sorted and
//! deduplicated first, as the request decoder stores them). SHA-256 is fixed
//! by its standard, so a session lands in the same bucket on every engine,
//! platform and restart, and any other tool can compute it. The threshold is
//! `round(percent × 100)`: percent has a resolution of 0.01, and since the
//! test is `bucket < threshold`, raising percent only adds buckets — sessions
//! move from stable to candidate, never back.
//!
//! **Match.** `match` maps a field path (`org`, `args.country`) to the values
//! allowed; a request fits when every listed field is present and equal to
//! one of its values (for an array field: when one of its elements is). A
//! request without a `hash_key` value is never in the candidate cohort.
//! Routing reads the raw request JSON, so it does not depend on either
//! artifact's schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The number of hash buckets.
pub const BUCKETS: u32 = 10_000;

/// How a candidate takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Shadow,
    Split,
}

/// The cohort a request belongs to, as named in responses, stats and the
/// decision log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cohort {
    /// Enforced by the stable artifact.
    Stable,
    /// Enforced by the candidate (split mode).
    Candidate,
    /// The candidate's off-path evaluations (shadow mode).
    Shadow,
}

impl Cohort {
    pub fn as_str(self) -> &'static str {
        match self {
            Cohort::Stable => "stable",
            Cohort::Candidate => "candidate",
            Cohort::Shadow => "shadow",
        }
    }
}

/// The route as `PUT /v1/route` takes it (inside an
/// [`crate::api::lease::RouteRequest`]) and `GET /v1/route` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The stable artifact's hash.
    pub stable: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Required with a candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The share of hash buckets in the candidate cohort, 0–100 (resolution
    /// 0.01). Default: 100 in shadow mode, 0 in split mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Field path → allowed values; only fitting requests are eligible.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_: BTreeMap<String, Vec<Value>>,
    /// The field whose value picks the bucket (default `session`).
    #[serde(default = "default_hash_key")]
    pub hash_key: String,
    /// The rollout stage, echoed in responses, stats and the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// What `GET /v1/route` answers: the route in force, since when, and how
/// many routes were set before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteInForce {
    /// Counts route changes since the engine started (1 for the first).
    pub version: u64,
    /// Seconds since the epoch.
    pub since: u64,
    pub route: RouteSpec,
    /// The owner's lease, while one is held (see [`crate::api::lease`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseInForce>,
}

/// The lease in force, as `GET /v1/route` and `POST /v1/lease` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInForce {
    pub owner: String,
    pub lease_ms: u64,
    /// How long until it lapses unless renewed.
    pub expires_in_ms: u64,
}

fn default_hash_key() -> String {
    "session".to_string()
}

/// A route that does not make sense. Each message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    #[error("`percent` must be a number from 0 to 100, got {0}")]
    Percent(f64),
    #[error("`mode` is required with a `candidate`: \"shadow\" or \"split\"")]
    MissingMode,
    #[error("`{0}` needs a `candidate`")]
    NoCandidate(&'static str),
    #[error("`candidate` is the stable artifact `{0}`")]
    SameArtifact(String),
    #[error("`hash_key` must name a field")]
    EmptyHashKey,
    #[error("`match.{0}` must list at least one value")]
    EmptyMatch(String),
    #[error("`match` field path `{0}` is not a field path")]
    BadMatchField(String),
}

impl RouteSpec {
    /// A route with only a stable artifact.
    pub fn stable(hash: impl Into<String>) -> RouteSpec {
        RouteSpec {
            stable: hash.into(),
            candidate: None,
            mode: None,
            percent: None,
            match_: BTreeMap::new(),
            hash_key: default_hash_key(),
            stage: None,
        }
    }

    /// Checks the fields and fills the defaults (`percent`).
    pub fn normalize(mut self) -> Result<RouteSpec, RouteError> {
        if self.hash_key.is_empty() {
            return Err(RouteError::EmptyHashKey);
        }
        for (field, values) in &self.match_ {
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(RouteError::BadMatchField(field.clone()));
            }
            if values.is_empty() {
                return Err(RouteError::EmptyMatch(field.clone()));
            }
        }
        match (&self.candidate, self.mode) {
            (Some(c), _) if *c == self.stable => {
                return Err(RouteError::SameArtifact(c.clone()));
            }
            (Some(_), None) => return Err(RouteError::MissingMode),
            (Some(_), Some(mode)) => {
                let percent = self.percent.unwrap_or(match mode {
                    Mode::Shadow => 100.0,
                    Mode::Split => 0.0,
                });
                if !(0.0..=100.0).contains(&percent) {
                    return Err(RouteError::Percent(percent));
                }
                self.percent = Some(percent);
            }
            (None, Some(_)) => return Err(RouteError::NoCandidate("mode")),
            (None, None) => {
                if self.percent.is_some_and(|p| p != 0.0) {
                    return Err(RouteError::NoCandidate("percent"));
                }
                if !self.match_.is_empty() {
                    return Err(RouteError::NoCandidate("match"));
                }
                self.percent = None;
            }
        }
        Ok(self)
    }

    /// The artifacts that enforce some requests: stable, and the candidate
    /// in split mode.
    pub fn enforcing(&self) -> impl Iterator<Item = &str> {
        let candidate = match self.mode {
            Some(Mode::Split) => self.candidate.as_deref(),
            _ => None,
        };
        std::iter::once(self.stable.as_str()).chain(candidate)
    }
}

/// The bucket of raw bytes: the first eight bytes of their SHA-256, big
/// endian, modulo [`BUCKETS`].
pub fn bucket(bytes: &[u8]) -> u32 {
    let digest = Sha256::digest(bytes);
    let mut head = [0u8; 8];
    head.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    // The remainder is below BUCKETS, so it fits a u32.
    u32::try_from(u64::from_be_bytes(head) % u64::from(BUCKETS)).unwrap_or(0)
}

/// The bucket of a request value (see the module doc for its canonical
/// bytes); `None` for `null` and objects.
pub fn bucket_of(value: &Value) -> Option<u32> {
    match value {
        Value::String(s) => Some(bucket(s.as_bytes())),
        Value::Number(n) => Some(bucket(n.to_string().as_bytes())),
        Value::Bool(b) => Some(bucket(if *b { b"true" } else { b"false" })),
        Value::Array(items) => {
            let mut strings: Vec<&str> = Vec::with_capacity(items.len());
            let canonical = if items.iter().all(Value::is_string) {
                strings.extend(items.iter().filter_map(Value::as_str));
                strings.sort_unstable();
                strings.dedup();
                serde_json::to_vec(&strings)
            } else {
                serde_json::to_vec(items)
            };
            canonical.ok().map(|b| bucket(&b))
        }
        Value::Null | Value::Object(_) => None,
    }
}

/// The candidate-cohort threshold for `percent`: buckets below it belong to
/// the candidate.
pub fn threshold(percent: f64) -> u32 {
    let t = (percent * 100.0).round().clamp(0.0, f64::from(BUCKETS));
    // Clamped to 0..=BUCKETS above.
    t as u32
}

/// A route's cohort test, compiled once per route.
#[derive(Debug, Clone)]
pub struct Matcher {
    hash_key: Vec<String>,
    threshold: u32,
    fields: Vec<(Vec<String>, Vec<Value>)>,
}

impl Matcher {
    pub fn new(spec: &RouteSpec) -> Matcher {
        let path = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        Matcher {
            hash_key: path(&spec.hash_key),
            threshold: spec.percent.map_or(0, threshold),
            fields: spec
                .match_
                .iter()
                .map(|(f, vs)| (path(f), vs.clone()))
                .collect(),
        }
    }

    /// Whether `request` (the raw JSON) is in the candidate cohort.
    pub fn in_cohort(&self, request: &Value) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let fits = self
            .fields
            .iter()
            .all(|(path, allowed)| match lookup(request, path) {
                Some(Value::Array(items)) => items.iter().any(|i| allowed.contains(i)),
                Some(v) => allowed.contains(v),
                None => false,
            });
        fits && lookup(request, &self.hash_key)
            .and_then(bucket_of)
            .is_some_and(|b| b < self.threshold)
    }
}

/// The value at a dotted field path of a request.
pub fn lookup<'a>(request: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(request, |v, key| v.get(key.as_str()))
        .filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_fixed() {
        // sha256("s-91") starts with these bytes on every platform; the
        // figure is pinned so that a change of hash is noticed.
        let b = bucket(b"s-91");
        assert_eq!(b, bucket_of(&Value::from("s-91")).unwrap_or(u32::MAX));
        assert!(b < BUCKETS);
        assert_eq!(threshold(5.0), 500);
        assert_eq!(threshold(0.01), 1);
        assert_eq!(threshold(100.0), BUCKETS);
    }
}
