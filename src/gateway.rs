//! Where agents plug in (SPEC §8): the enforcement points in front of an
//! agent's tools, deciding through an engine or an artifact in-process.
//!
//! - [`request`]: a tool call as a policy request; a `modify` decision's
//!   values written back into the call's arguments. Pure.
//! - [`decide`]: the [`decide::Decider`]: an engine over HTTP, or the
//!   engine's own code in this process with one artifact.
//! - [`hook`]: `sluice hook claude-code`: a `PreToolUse` event in, the
//!   hook's answer out. Pure.
//! - [`upstream`]: the upstream MCP servers (streamable HTTP or a child
//!   process over stdio), rmcp clients, every call under a timeout.
//! - [`server`]: the gateway, an rmcp server handler: `tools/list` the
//!   union, `tools/call` decided then forwarded or answered.
//! - [`serve`](mod@serve): the gateway on streamable HTTP (`/mcp`) or stdio.
//!
//! Reads no files: the command line hands in the artifact's bytes and the
//! schema.

pub mod decide;
pub mod hook;
pub mod request;
pub mod serve;
pub mod server;
pub mod upstream;
