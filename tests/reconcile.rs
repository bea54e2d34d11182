//! The reconcile daemon (issue 5, SPEC §6).
//!
//! - `machine`: the pure rollout state machine, event by event.
//! - `parts`: the store (atomic state, audit repair), the fleet's figures,
//!   a commit's build, the git mirror's revert.
//! - `e2e`: the real `git` command line, a bare repository, engines on
//!   loopback, the daemon, a traffic generator and compressed stages: a good
//!   change reaches full; a bad one is rolled back and reverted, for good.
//! - `crash`: the daemon as a child process, killed with SIGKILL at many
//!   moments of two rollouts; every run ends in the same state.
//! - `faults`: an engine down mid-stage; the git remote gone during a
//!   rollback.
//! - `latency`: what the daemon never waits for: the next tick after a
//!   hook, a hung engine, a hung git server.
//! - `fencing`: two daemons on one fleet: the second is refused and
//!   changes nothing; a stale daemon restarted cannot roll the fleet back.
//!
//! - `githttp`: a git smart-HTTP server (`git http-backend`) in a process
//!   of its own, to stop with SIGSTOP; with basic auth and TLS.
//! - `sshd`: an OpenSSH server on loopback with generated keys.
//! - `transports`: the daemon over HTTP with basic auth, HTTPS with a test
//!   CA and ssh with a deploy key; wrong credentials, host keys and
//!   certificates; a token revoked under a running daemon.
//! - `secrets`: the daemon binary over HTTPS and ssh; every output read for
//!   the token and the key's passphrase; starts that fail are exit 2.
//!
//! - `revert`: what a commit may not change about its own rollout (the
//!   stable commit's plan and traces gate it), several commits in one
//!   push, checked reverts, reverts that cannot be made, a revert made by
//!   hand, a deleted branch, a force-push, a rollback of a revert.
//!
//! - `governance`: an observe scope moved to enforce, rolled out stage by
//!   stage: shadow sees the scope's requests diverge, the engines deny them
//!   at the end.
//!
//! - `cost`: the `max_cost_ratio` gate with real engines and traffic: a
//!   candidate whose agent is past its envelope is rolled back at the
//!   canary, one within it advances.
//!
//! - `settle`: the pure machine's transitions around reverts (stopped,
//!   skipped, done by hand), a force-push, a deleted branch.
//!
//! Every loop is bounded: tests wait for a condition with a deadline.

mod fixture;
mod githttp;
mod sshd;

mod cost;
mod crash;
mod e2e;
mod faults;
mod fencing;
mod governance;
mod growth;
mod hooks;
mod latency;
mod machine;
mod notify;
mod operability;
mod operate;
mod parts;
mod revert;
mod secrets;
mod settle;
mod status;
mod transports;
