//! The policy engine: request decoding and evaluation (pure), and the HTTP
//! server around it (`sluice engine`).
//!
//! - [`request`]: JSON request → [`request::Request`] (slots by schema
//!   position), and back.
//! - [`eval`]: [`eval::Evaluator`] over an artifact: decision, reasons,
//!   modifications; rules indexed by `tool`.
//! - [`state`]: limit counters behind the [`state::LimitStore`] trait.
//! - [`response`]: the evaluate response document.
//! - [`live`]: the live-state document (`GET /v1/state`).
//!
//! The server (SPEC §5), the only part that does I/O:
//! - [`http`]: the axum router, handlers and `ApiError`.
//! - [`server`]: the running [`server::Engine`] — artifacts, the route in
//!   an `ArcSwap`, evaluation with breaker and failsafe, shadow worker,
//!   route changes with migrations; `serve` with graceful shutdown.
//! - [`routing`]: cohorts, the stable bucket hash. Pure.
//! - [`migrate`]: state migrations on a route change. Pure planning.
//! - [`breaker`]: the per-artifact circuit breaker. Pure state machine.
//! - [`stats`]: per artifact and cohort figures; Prometheus text.
//! - [`approvals`]: approval queues behind a trait.
//! - [`backend`]: the state backend trait (counters and approvals), in
//!   memory; the test fault injector.
//! - [`decision_log`]: JSON lines through a bounded queue to a writer thread.
//! - [`queue`]: the bounded, wake-free hand-off queue both background
//!   threads (shadow, decision log) drain.

pub mod approvals;
pub mod backend;
pub mod breaker;
pub mod decision_log;
pub mod http;
pub mod migrate;
pub mod queue;
pub mod server;
pub mod stats;
