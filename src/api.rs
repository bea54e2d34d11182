//! The wire documents: every JSON document an engine, the daemon or the CLI
//! sends or reads, as `Serialize + Deserialize` types. Servers, clients, the
//! CLI and the demo all use these types; nobody builds or reads a wire
//! document by hand. Pure data (plus the routing hash, which is part of the
//! route's contract).
//!
//! - [`evaluate`]: `POST /v1/evaluate`'s response.
//! - [`replay`]: the replay stage's report.
//! - [`route`]: `PUT /v1/route`, cohorts and the stable bucket hash.
//! - [`state`]: `GET /v1/state`, the live state an engine holds.

pub mod evaluate;
pub mod replay;
pub mod route;
pub mod state;
