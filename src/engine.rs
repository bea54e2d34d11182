//! The policy engine's HTTP server (`sluice engine`, SPEC §5): artifacts
//! loaded into [`crate::eval`] evaluators, a route in force, state, and the
//! API around them. Evaluation itself is [`crate::eval`]'s; the engine adds
//! routing, limits state, breakers, shadowing and the logs.
//!
//! - [`server`]: the running [`server::Engine`] — artifacts, the route in
//!   an `ArcSwap`, evaluation with breaker and failsafe; inside it the
//!   shadow worker, route changes with migrations, and the stats and
//!   metrics documents.
//! - [`http`]: the axum router, handlers, [`http::ApiError`] and the
//!   mapping of the domain errors to statuses; the admin token check.
//! - [`serve`](mod@serve): serving on a listener with graceful shutdown,
//!   and the process's shutdown signal.
//! - [`guard`]: what a connection may cost (both servers): the connection
//!   cap, header and body timeouts, the early 413.
//! - [`agents`]: agent identity (`--agent-keys`) and what a secret must be.
//! - [`bound`]: what is kept of a caller's request, bounded in bytes. Pure.
//! - [`error`]: the domain errors of the engine's operations. No HTTP.
//! - [`failsafe`]: the tier failsafe answer. Pure.
//! - [`clock`]: the time limits are counted in, injectable.
//! - [`cost`]: each inventoried agent's calls per day against its cost
//!   envelope.
//! - [`migrate`]: state migrations on a route change. Pure planning.
//! - [`breaker`]: the per-artifact circuit breaker. Pure state machine.
//! - [`stats`]: per artifact and cohort figures: atomic counters, the
//!   hdrhistogram the gates read, the Prometheus latency buckets.
//! - [`metrics`]: `GET /metrics`, Prometheus text by `prometheus-client`.
//! - [`approvals`]: approval queues behind a trait.
//! - [`backend`]: the state backend trait (counters and approvals), in
//!   memory by default.
//! - [`decision_log`]: JSON lines through a bounded channel to a writer
//!   thread.
//!
//! Dependencies run one way: `http` and `serve` call `server`; `server`
//! knows nothing of HTTP.

pub mod agents;
pub mod approvals;
pub mod backend;
pub mod bound;
pub mod breaker;
pub mod clock;
pub mod cost;
pub mod decision_log;
pub mod error;
pub mod failsafe;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod serve;
pub mod server;
pub mod stats;
