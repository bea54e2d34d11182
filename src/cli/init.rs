//! `sluice init`: a starter policy repository in a folder (the current one,
//! or `--repo DIR`): `sluice.toml` with a schema, a rollout plan and an
//! observe scope, three policies, the inventory of their two agents, their
//! traces (named cases), and a pull-request check for CI under
//! `.github/workflows/`. The files are under `src/cli/starter/`.
//!
//! It never overwrites: when any of its files exists, or the folder already
//! belongs to a policy repository, it writes nothing and says so.

use std::path::Path;

use anyhow::Context as _;

use super::Exit;
use crate::tree::PROJECT_FILE;

/// The starter files: (path in the new repository, content).
const FILES: &[(&str, &str)] = &[
    (PROJECT_FILE, include_str!("starter/sluice.toml")),
    (
        "policies/payments.policy",
        include_str!("starter/policies/payments.policy"),
    ),
    (
        "policies/refunds.policy",
        include_str!("starter/policies/refunds.policy"),
    ),
    (
        "policies/approvals.policy",
        include_str!("starter/policies/approvals.policy"),
    ),
    (
        "agents/billing-bot.toml",
        include_str!("starter/agents/billing-bot.toml"),
    ),
    (
        "agents/support-bot.toml",
        include_str!("starter/agents/support-bot.toml"),
    ),
    (
        "traces/payments.jsonl",
        include_str!("starter/traces/payments.jsonl"),
    ),
    (
        ".github/workflows/sluice.yml",
        include_str!("starter/pull-request.yml"),
    ),
];

/// Writes the starter repository into `dir`. `explicit`: the folder was
/// named with `--repo` (otherwise it is the folder the upward search found,
/// or the current one).
pub(super) fn cmd_init(dir: &Path, explicit: bool) -> anyhow::Result<Exit> {
    let dir = if explicit { dir } else { Path::new(".") };
    if !explicit && let Some(root) = enclosing_repo() {
        anyhow::bail!(
            "`{}` is already inside the policy repository `{}`: run `sluice init` outside it, or `sluice init --repo .` to start a separate, nested repository here",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| ".".to_string()),
            root
        );
    }
    let existing: Vec<&str> = FILES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| dir.join(name).exists())
        .collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "`{}` already has {}: `sluice init` overwrites nothing",
            dir.display(),
            existing
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
        println!("created {name}");
    }
    println!(
        "\nnext: `sluice check` checks the set, `sluice test` replays traces/,\n`sluice explain REQUEST.json` shows why a request gets its decision"
    );
    Ok(Exit::Ok)
}

/// The policy repository the current folder lies in, if any (a folder above
/// or at it holding `sluice.toml`).
fn enclosing_repo() -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .find(|d| d.join(PROJECT_FILE).is_file())
        .map(|d| d.display().to_string())
}
