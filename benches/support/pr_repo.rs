//! A git repository for the pull-request check benchmark: a base commit
//! with a generated set ([`super::conflicts`]) and a head commit that changes
//! one policy, planting one new conflict and bumping its version, as a pull
//! request would. Written with git2: a working tree checked out at the head,
//! so both `sluice check --base HEAD~1` (head from the working tree) and
//! `--base HEAD~1 --head HEAD` (both from the object database) apply.

use std::path::Path;

use git2::{IndexAddOption, Oid, Repository, Signature};

use super::conflicts::{self, Generated};

/// The repository's change: the policy changed and the finding it must
/// introduce (code and labelled rules).
pub struct Change {
    pub policy: String,
    pub code: &'static str,
    pub rules: Vec<String>,
}

/// The one-policy change to a generated set of `n` policies: policy
/// `n / 2 + 3` (never a planting one) gets a deny that covers every write
/// its successor's `write_allow` lets through, and its patch version goes
/// up. Returns the head's files and what the check must report.
pub fn one_change(g: &Generated) -> (Vec<(String, String)>, Change) {
    let n = g.files.len().saturating_sub(2).max(2);
    let i = (n / 2 + 3) % n;
    let j = (i + 1) % n;
    let (me, next) = (conflicts::policy(i), conflicts::policy(j));
    let path = format!("policies/{me}.policy");
    let mut files = g.files.clone();
    if let Some((_, text)) = files.iter_mut().find(|(p, _)| *p == path) {
        // `policy pNNNNN version 1.m.0 {` → `1.m.1`.
        *text = text.replacen(".0 {\n", ".1 {\n", 1);
        let end = text.rfind("}\n").unwrap_or(text.len());
        text.insert_str(
            end,
            &format!(
                "  rule x_pr_block {{\n    when tool == \"svc{j}.write\" and args.amount > 0\n    \
                 deny PR_BLOCK \"Writes are closed\"\n  }}\n"
            ),
        );
    }
    let change = Change {
        policy: me.clone(),
        code: "conflict::shadowed",
        rules: vec![format!("{next}.write_allow"), format!("{me}.x_pr_block")],
    };
    (files, change)
}

/// Writes `files` (and `sluice.toml`) into the working tree at `dir` and
/// commits them on top of `parent`.
fn commit(
    repo: &Repository,
    dir: &Path,
    toml: &str,
    files: &[(String, String)],
    parent: Option<Oid>,
    message: &str,
) -> Result<Oid, String> {
    let err = |e: &dyn std::fmt::Display| format!("{message}: {e}");
    std::fs::write(dir.join("sluice.toml"), toml).map_err(|e| err(&e))?;
    for (path, text) in files {
        let p = dir.join(path);
        if let Some(folder) = p.parent() {
            std::fs::create_dir_all(folder).map_err(|e| err(&e))?;
        }
        std::fs::write(&p, text).map_err(|e| err(&e))?;
    }
    let mut index = repo.index().map_err(|e| err(&e))?;
    index
        .add_all(["*"], IndexAddOption::DEFAULT, None)
        .map_err(|e| err(&e))?;
    index.write().map_err(|e| err(&e))?;
    let tree = index.write_tree().map_err(|e| err(&e))?;
    let tree = repo.find_tree(tree).map_err(|e| err(&e))?;
    let sig = Signature::new(
        "bench",
        "bench@example.com",
        &git2::Time::new(1_800_000_000, 0),
    )
    .map_err(|e| err(&e))?;
    let parents = match parent {
        Some(p) => vec![repo.find_commit(p).map_err(|e| err(&e))?],
        None => Vec::new(),
    };
    let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .map_err(|e| err(&e))
}

/// Creates the repository at `dir` (which must not hold one): the base
/// commit with `g`, then the head commit with the one-policy change.
pub fn write(dir: &Path, g: &Generated) -> Result<Change, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let repo = Repository::init(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let base = commit(&repo, dir, &g.toml, &g.files, None, "base")?;
    let (head_files, change) = one_change(g);
    let changed: Vec<(String, String)> = head_files
        .into_iter()
        .filter(|(p, t)| g.files.iter().all(|(bp, bt)| bp != p || bt != t))
        .collect();
    commit(
        &repo,
        dir,
        &g.toml,
        &changed,
        Some(base),
        "one policy changed",
    )?;
    Ok(change)
}
