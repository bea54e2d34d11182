//! Reading a policy repository from disk: `sluice.toml`, every `*.policy`
//! below the root (hidden folders and build output excluded), and traces.
