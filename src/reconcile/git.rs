//! The watched repository, through git2: a bare mirror in the state folder
//! that fetches the branch, reads a commit's policy repository from its tree
//! (no checkout), and makes and pushes revert commits.
//!
//! git2 is built without network features: the repository is a local path
//! or a `file://` URL (a bare repository on a shared disk, or a mirror kept
//! in sync by other means); libgit2's plain `http://` transport is built in
//! too. Everything here blocks: the daemon reads commits on tokio's
//! blocking pool, and runs fetches and pushes on threads of their own, each
//! with its own [`Mirror::handle`] (`gitcall`).
//!
//! A commit's policy repository is read by the one walker of [`crate::tree`]
//! (the rule `sluice check` and `check --base` read by), at the top level
//! of the repository, traces included.

use std::cell::RefCell;
use std::path::Path;

use git2::{Oid, PushOptions, RemoteCallbacks, Repository, Signature};

use super::err::ReconcileError;
use crate::model::short;
use crate::rollout::machine::{PendingRevert, RevertOutcome};
use crate::tree::git::GitTree;
use crate::tree::{self, RepoSources, Traces, TreeError};

/// The local ref a revert commit is pushed from.
const REVERT_REF: &str = "refs/sluice/revert";

/// The bare mirror of the watched branch.
pub struct Mirror {
    repo: Repository,
    branch: String,
    url: String,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("path", &self.repo.path())
            .field("branch", &self.branch)
            .finish()
    }
}

/// A commit's policy repository.
#[derive(Debug)]
pub struct CommitFiles {
    pub commit: String,
    pub summary: String,
    /// `sluice.toml`, the policy set and the traces; or why the commit has
    /// no policy repository that can be read (no `sluice.toml`, a file that
    /// is not UTF-8): the commit is then refused.
    pub sources: Result<RepoSources, TreeError>,
}

/// The URL git2 is given for `--repo`: URLs as they are, paths made absolute.
pub fn remote_url(repo: &str) -> String {
    if repo.contains("://") {
        return repo.to_string();
    }
    let path = Path::new(repo);
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    });
    abs.to_string_lossy().into_owned()
}

impl Mirror {
    /// Opens the mirror in `dir`, creating it on first use, with `origin`
    /// pointing at `url`.
    pub fn open(dir: &Path, url: &str, branch: &str) -> Result<Mirror, ReconcileError> {
        remove_stale_locks(dir);
        let repo = match Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(dir)?,
        };
        match repo.find_remote("origin") {
            Ok(r) if r.url().ok() == Some(url) => {}
            Ok(_) => repo.remote_set_url("origin", url)?,
            Err(_) => {
                repo.remote_with_fetch("origin", url, "+refs/heads/*:refs/remotes/origin/*")?;
            }
        }
        Ok(Mirror {
            repo,
            branch: branch.to_string(),
            url: url.to_string(),
        })
    }

    /// Another handle on this mirror, for one network call on a thread of
    /// its own (`gitcall`): a remote that hangs then holds that handle
    /// only, never the loop's.
    pub fn handle(&self) -> Result<Mirror, ReconcileError> {
        Ok(Mirror {
            repo: Repository::open_bare(self.repo.path())?,
            branch: self.branch.clone(),
            url: self.url.clone(),
        })
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// The branch head as last fetched.
    pub fn head(&self) -> Option<String> {
        self.repo
            .refname_to_id(&self.tracking_ref())
            .ok()
            .map(|o| o.to_string())
    }

    /// A local remote that is not there: a clearer error than git2's.
    fn check_reachable(&self) -> Result<(), ReconcileError> {
        let path = self.url.strip_prefix("file://").unwrap_or(&self.url);
        let local = !self.url.contains("://") || self.url.starts_with("file://");
        if local && !Path::new(path).exists() {
            return Err(ReconcileError::Git(format!(
                "the repository `{}` is not reachable",
                self.url
            )));
        }
        Ok(())
    }

    /// Fetches the branch; returns its head.
    pub fn fetch(&self) -> Result<String, ReconcileError> {
        self.check_reachable()?;
        let mut remote = self.repo.find_remote("origin")?;
        let spec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        remote.fetch(&[spec.as_str()], None, None)?;
        self.head().ok_or_else(|| {
            ReconcileError::Git(format!("the repository has no branch `{}`", self.branch))
        })
    }

    /// A commit's summary line.
    pub fn summary(&self, sha: &str) -> String {
        Oid::from_str(sha)
            .and_then(|o| self.repo.find_commit(o))
            .ok()
            .and_then(|c| c.summary().ok().flatten().map(str::to_string))
            .unwrap_or_default()
    }

    /// Reads the policy repository at a commit.
    pub fn read_commit(&self, sha: &str) -> Result<CommitFiles, ReconcileError> {
        let commit = self.repo.find_commit(Oid::from_str(sha)?)?;
        let rev = short::hash(sha);
        let sources =
            GitTree::at(&self.repo, &commit, "", rev).and_then(|t| tree::read(&t, Traces::Read));
        Ok(CommitFiles {
            commit: sha.to_string(),
            summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
            sources,
        })
    }

    /// Makes the revert commit of `pending.commit` on top of the branch head
    /// as fetched now, and pushes it. When the branch no longer carries the
    /// commit's change (it was reverted already, by hand or by an earlier
    /// attempt whose answer was lost), nothing is pushed.
    pub fn revert(&self, pending: &PendingRevert) -> Result<RevertOutcome, ReconcileError> {
        let head_sha = self.fetch()?;
        let head = self.repo.find_commit(Oid::from_str(&head_sha)?)?;
        let Ok(bad) = Oid::from_str(&pending.commit).and_then(|o| self.repo.find_commit(o)) else {
            return Ok(RevertOutcome::NotNeeded {
                note: "the commit is not in the repository".to_string(),
            });
        };
        if head.id() != bad.id() && !self.repo.graph_descendant_of(head.id(), bad.id())? {
            return Ok(RevertOutcome::NotNeeded {
                note: format!("branch `{}` no longer contains it", self.branch),
            });
        }
        let mainline = match bad.parent_count() {
            0 => {
                return Err(ReconcileError::Git(format!(
                    "commit {} is the repository's first commit: it cannot be reverted",
                    pending.commit
                )));
            }
            1 => 0,
            _ => 1,
        };
        let mut index = self.repo.revert_commit(&bad, &head, mainline, None)?;
        if index.has_conflicts() {
            return Err(ReconcileError::Git(format!(
                "the revert of {} conflicts with the branch head {head_sha}: revert it by hand",
                pending.commit
            )));
        }
        let tree_id = index.write_tree_to(&self.repo)?;
        if tree_id == head.tree_id() {
            return Ok(RevertOutcome::NotNeeded {
                note: format!("the head of `{}` already reverts it", self.branch),
            });
        }
        let tree = self.repo.find_tree(tree_id)?;
        let sig = Signature::now("sluice reconcile", "sluice@localhost")?;
        let summary = bad.summary().ok().flatten().unwrap_or("").to_string();
        let message = revert_message(&summary, pending);
        let oid = self
            .repo
            .commit(None, &sig, &sig, &message, &tree, &[&head])?;
        self.repo
            .reference(REVERT_REF, oid, true, "revert commit to push")?;
        self.push()?;
        self.repo
            .reference(&self.tracking_ref(), oid, true, "revert pushed")?;
        Ok(RevertOutcome::Pushed {
            revert: oid.to_string(),
        })
    }

    fn push(&self) -> Result<(), ReconcileError> {
        self.check_reachable()?;
        let rejected: RefCell<Option<String>> = RefCell::new(None);
        {
            let mut callbacks = RemoteCallbacks::new();
            callbacks.push_update_reference(|refname, status| {
                if let Some(s) = status {
                    *rejected.borrow_mut() = Some(format!("{refname}: {s}"));
                }
                Ok(())
            });
            let mut opts = PushOptions::new();
            opts.remote_callbacks(callbacks);
            let mut remote = self.repo.find_remote("origin")?;
            let spec = format!("{REVERT_REF}:refs/heads/{}", self.branch);
            remote.push(&[spec.as_str()], Some(&mut opts))?;
        }
        match rejected.into_inner() {
            Some(why) => Err(ReconcileError::Git(format!("push rejected: {why}"))),
            None => Ok(()),
        }
    }
}

/// Removes the lock files a killed daemon may have left in its mirror
/// (`refs/…/main.lock`, `packed-refs.lock`, `config.lock`, …): the mirror
/// belongs to one daemon, and a stale lock would fail every later fetch.
fn remove_stale_locks(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || e.file_name() != "objects")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        if entry.file_name().to_string_lossy().ends_with(".lock") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The message of a revert commit: what was reverted, at which stage, why,
/// and the figures.
pub fn revert_message(summary: &str, p: &PendingRevert) -> String {
    let mut m = format!(
        "Revert \"{summary}\"\n\nThis reverts commit {}.\n\n\
         Rolled back by sluice reconcile at stage `{}`.\n\
         Trigger: {}\n\
         Cause: {}\n\
         Artifact: {}\n",
        p.commit,
        p.stage,
        p.trigger,
        p.cause.as_str(),
        p.artifact
    );
    if !p.figures.is_empty() {
        m.push_str("\nFigures:\n");
        for line in p.figures.lines() {
            m.push_str("  ");
            m.push_str(line);
            m.push('\n');
        }
    }
    m
}
