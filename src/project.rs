//! `sluice.toml`: project settings, request schema and rollout plan, with the
//! location of every error in the TOML file. Pure: text in, config out.
