//! The watched repository, through git2: a bare mirror in the state folder
//! that fetches the branch, reads a commit's policy repository from its tree
//! (no checkout), tells how a head relates to the commits before it (the
//! range since stable, a rewritten history), and makes and pushes revert
//! commits.
//!
//! **Reverts.** A rollback reverts every commit from the rollout's base
//! (the stable commit it started from) to the candidate, in one commit on
//! top of the branch head as fetched then: a three-way merge of the head's
//! tree with the base's, from the candidate's (what the range changed is
//! undone, what came after it is kept). Nothing is pushed when the branch
//! no longer carries the range: the candidate is gone from it, its policy
//! files are the base's again, a commit on it says `This reverts commit X.`
//! for every commit of the range (a revert made by hand, or by an earlier
//! attempt whose answer was lost), or the merge changes nothing. The revert
//! is checked by the caller before it is pushed ([`Mirror::revert`]'s
//! `check`), and the push never creates the branch: a branch deleted on the
//! remote is an error ([`ReconcileError::NoBranch`]), not a target.
//!
//! The remote is a local path, a `file://`, `http://` or `https://` URL
//! (libgit2 over the system's OpenSSL) or an ssh one (libssh2); how it is
//! reached, with which credentials and what trust, is `remote`'s: every
//! fetch and push goes through its callbacks, and every error of one
//! through its redaction. Everything here blocks: the daemon reads commits
//! on tokio's blocking pool, and runs fetches and pushes on threads of
//! their own, each with its own [`Mirror::handle`] (`gitcall`).
//!
//! A commit's policy repository is read by the one walker of [`crate::tree`]
//! (the rule `sluice check` and `check --base` read by), at the top level
//! of the repository, traces included.
//!
//! `repack`: past a few packs (one per fetch), the mirror is repacked into
//! one and reopened, so that its open descriptors stay bounded.

mod repack;

pub use repack::MAX_PACKS;

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use git2::{FetchOptions, FetchPrune, Oid, PushOptions, Repository, Signature, Sort};

use super::err::ReconcileError;
use super::remote::{self, Attempts, GitAuth, Remote};
use crate::model::short;
use crate::rollout::machine::{PendingRevert, RevertOutcome};
use crate::tree::git::GitTree;
use crate::tree::{self, RepoSources, Traces, TreeError};

/// The local ref a revert commit is pushed from.
const REVERT_REF: &str = "refs/sluice/revert";

/// The most commits a range holds (the newest are kept): a rewritten
/// history can put a whole repository between two commits.
pub const MAX_RANGE: usize = 1000;

/// The line of a commit message that names a commit it reverts.
const REVERTS_LINE: &str = "This reverts commit ";

/// The line every revert commit the daemon makes carries.
pub const DAEMON_REVERT_LINE: &str = "Rolled back by sluice reconcile";

/// A revert made and not pushed yet, or why none is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The branch no longer carries the range: nothing to push.
    NotNeeded { note: String },
    /// The revert commit, made on top of `head` (not on any branch yet).
    Commit { revert: String, head: String },
}

/// The bare mirror of the watched branch.
pub struct Mirror {
    repo: Repository,
    branch: String,
    remote: Remote,
    auth: Arc<GitAuth>,
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

impl Mirror {
    /// Opens the mirror in `dir`, creating it on first use, with `origin`
    /// pointing at `url` (`--repo`: a path or a URL), reached without
    /// credentials.
    pub fn open(dir: &Path, url: &str, branch: &str) -> Result<Mirror, ReconcileError> {
        let remote = Remote::parse(url)?;
        Mirror::open_with(dir, &remote, Arc::new(GitAuth::default()), branch)
    }

    /// Opens the mirror in `dir`, creating it on first use, with `origin`
    /// pointing at `remote` (its URL holds no password: the mirror's
    /// `config` never does), reached with `auth`.
    pub fn open_with(
        dir: &Path,
        remote: &Remote,
        auth: Arc<GitAuth>,
        branch: &str,
    ) -> Result<Mirror, ReconcileError> {
        let url = remote.url.as_str();
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
            remote: remote.clone(),
            auth,
        })
    }

    /// Another handle on this mirror, for one network call on a thread of
    /// its own (`gitcall`): a remote that hangs then holds that handle
    /// only, never the loop's.
    pub fn handle(&self) -> Result<Mirror, ReconcileError> {
        Ok(Mirror {
            repo: Repository::open_bare(self.repo.path())?,
            branch: self.branch.clone(),
            remote: self.remote.clone(),
            auth: self.auth.clone(),
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

    /// The remote's URL as it may be shown.
    pub fn shown_url(&self) -> String {
        self.auth.redact(&self.remote.url)
    }

    /// A network error as it may be shown: through the one redaction.
    /// The callbacks' own reason first: libgit2 may replace it with its own.
    fn net_error(&self, e: &git2::Error, attempts: &Attempts) -> ReconcileError {
        let why = attempts
            .refused()
            .unwrap_or_else(|| e.message().to_string());
        ReconcileError::Git(self.auth.redact(&why))
    }

    /// Connects to the remote and lists its branches, with the
    /// credentials and trust of a fetch: whether it can be reached at all
    /// (the daemon's start). Returns whether the branch is there.
    pub fn probe(&self) -> Result<bool, ReconcileError> {
        self.remote.check_local()?;
        let attempts = Attempts::default();
        let mut remote = self.repo.find_remote("origin")?;
        let callbacks = remote::callbacks(&self.auth, &self.remote, &attempts);
        let conn = remote
            .connect_auth(git2::Direction::Fetch, Some(callbacks), None)
            .map_err(|e| self.net_error(&e, &attempts))?;
        let branch = format!("refs/heads/{}", self.branch);
        let heads = conn.list().map_err(|e| self.net_error(&e, &attempts))?;
        Ok(heads.iter().any(|h| h.name() == branch))
    }

    /// Fetches the branch; returns its head. A branch the remote no longer
    /// has is pruned from the mirror and is [`ReconcileError::NoBranch`].
    pub fn fetch(&self) -> Result<String, ReconcileError> {
        self.remote.check_local()?;
        let mut remote = self.repo.find_remote("origin")?;
        let spec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        let attempts = Attempts::default();
        let mut opts = FetchOptions::new();
        opts.prune(FetchPrune::On);
        opts.remote_callbacks(remote::callbacks(&self.auth, &self.remote, &attempts));
        remote
            .fetch(&[spec.as_str()], Some(&mut opts), None)
            .map_err(|e| self.net_error(&e, &attempts))?;
        self.head().ok_or_else(|| ReconcileError::NoBranch {
            branch: self.branch.clone(),
        })
    }

    fn commit_of(&self, sha: &str) -> Result<git2::Commit<'_>, ReconcileError> {
        Ok(self.repo.find_commit(Oid::from_str(sha)?)?)
    }

    /// Whether `head` is `anchor` or descends from it (a commit the mirror
    /// does not have descends from nothing).
    pub fn descends(&self, head: &str, anchor: &str) -> bool {
        if head == anchor {
            return true;
        }
        match (Oid::from_str(head), Oid::from_str(anchor)) {
            (Ok(h), Ok(a)) => self.repo.graph_descendant_of(h, a).unwrap_or(false),
            _ => false,
        }
    }

    /// The commits of `head` that `base` does not have, oldest first, `head`
    /// last (at most [`MAX_RANGE`], the newest); with no base, `head` alone.
    pub fn range(&self, base: Option<&str>, head: &str) -> Result<Vec<String>, ReconcileError> {
        let head_id = self.commit_of(head)?.id();
        let Some(base_id) = base.and_then(|b| self.commit_of(b).ok()).map(|c| c.id()) else {
            return Ok(vec![head.to_string()]);
        };
        let mut walk = self.repo.revwalk()?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
        walk.push(head_id)?;
        walk.hide(base_id)?;
        let mut out = Vec::new();
        for oid in walk {
            out.push(oid?.to_string());
        }
        if out.len() > MAX_RANGE {
            out.drain(..out.len() - MAX_RANGE);
        }
        Ok(out)
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

    /// Makes the revert of `pending` on top of the branch head as fetched
    /// now, has `check` compile and check the revert's tree (its reason is
    /// the error), and pushes it; or says why no revert is needed.
    pub fn revert(
        &self,
        pending: &PendingRevert,
        check: impl FnOnce(&CommitFiles) -> Result<(), String>,
    ) -> Result<RevertOutcome, ReconcileError> {
        let (revert, head) = match self.prepare_revert(pending)? {
            Prepared::NotNeeded { note } => return Ok(RevertOutcome::NotNeeded { note }),
            Prepared::Commit { revert, head } => (revert, head),
        };
        let files = self.read_commit(&revert)?;
        check(&files).map_err(|why| {
            ReconcileError::Revert(format!(
                "the revert of {} does not check, so it is not pushed: {why}",
                short::hash(&pending.commit)
            ))
        })?;
        self.push_revert(&revert, &head)?;
        Ok(RevertOutcome::Pushed { revert })
    }

    /// Makes the revert commit of `pending` on top of the branch head as
    /// fetched now, without pushing it; or says why none is needed.
    pub fn prepare_revert(&self, pending: &PendingRevert) -> Result<Prepared, ReconcileError> {
        let head_sha = self.fetch()?;
        let head = self.commit_of(&head_sha)?;
        let not_needed = |note: String| Ok(Prepared::NotNeeded { note });
        let Ok(bad) = self.commit_of(&pending.commit) else {
            return not_needed("the commit is not in the repository".to_string());
        };
        if !self.descends(&head_sha, &pending.commit) {
            return not_needed(format!("branch `{}` no longer contains it", self.branch));
        }
        let base = match &pending.base {
            Some(b) => self.commit_of(b).map_err(|_| {
                ReconcileError::Revert(format!(
                    "the stable commit {b} to go back to is not in the repository"
                ))
            })?,
            None => {
                if is_daemon_revert(&bad) {
                    return Err(ReconcileError::Revert(format!(
                        "commit {} is a revert made by sluice reconcile: it is not reverted \
                         again (that would bring back what it reverted)",
                        pending.commit
                    )));
                }
                bad.parent(0).map_err(|_| {
                    ReconcileError::Revert(format!(
                        "commit {} is the repository's first commit: it cannot be reverted",
                        pending.commit
                    ))
                })?
            }
        };
        let range = match pending.commits.is_empty() {
            true => self.range(pending.base.as_deref(), &pending.commit)?,
            false => pending.commits.clone(),
        };
        if let Some(by) = self.reverted_on_branch(&head, &bad, &range)? {
            return not_needed(format!("reverted on the branch by {by}"));
        }
        if self.same_policies(&head_sha, &base.id().to_string()) {
            return not_needed(format!(
                "the policy and agent files at the head of `{}` are those of {} again",
                self.branch,
                short::hash(&base.id().to_string())
            ));
        }
        let mut index = self
            .repo
            .merge_trees(&bad.tree()?, &head.tree()?, &base.tree()?, None)?;
        if index.has_conflicts() {
            return Err(ReconcileError::Revert(format!(
                "the revert of {} conflicts with the branch head {head_sha}: revert it by hand, \
                 then `sluice revert done`",
                short::hash(&pending.commit)
            )));
        }
        let tree_id = index.write_tree_to(&self.repo)?;
        if tree_id == head.tree_id() {
            return not_needed(format!("the head of `{}` already reverts it", self.branch));
        }
        let tree = self.repo.find_tree(tree_id)?;
        let sig = Signature::now("sluice reconcile", "sluice@localhost")?;
        let reverted: Vec<(String, String)> =
            range.iter().map(|c| (c.clone(), self.summary(c))).collect();
        let message = revert_message(&reverted, pending);
        let oid = self
            .repo
            .commit(None, &sig, &sig, &message, &tree, &[&head])?;
        Ok(Prepared::Commit {
            revert: oid.to_string(),
            head: head_sha,
        })
    }

    /// Pushes a revert made on top of `head`, if the branch is still there
    /// and still at `head` (else an error: the next attempt starts afresh).
    /// The push is not forced: a branch that moved meanwhile refuses it.
    pub fn push_revert(&self, revert: &str, head: &str) -> Result<(), ReconcileError> {
        let now = self.fetch()?;
        if now != head {
            return Err(ReconcileError::Git(format!(
                "branch `{}` moved to {} while the revert was made: made again on the new head",
                self.branch,
                short::hash(&now)
            )));
        }
        let oid = Oid::from_str(revert)?;
        self.repo
            .reference(REVERT_REF, oid, true, "revert commit to push")?;
        self.push()?;
        self.repo
            .reference(&self.tracking_ref(), oid, true, "revert pushed")?;
        Ok(())
    }

    /// The commits after `bad` on the branch that say they revert every
    /// commit of the range, when there are.
    fn reverted_on_branch(
        &self,
        head: &git2::Commit<'_>,
        bad: &git2::Commit<'_>,
        range: &[String],
    ) -> Result<Option<String>, ReconcileError> {
        let mut walk = self.repo.revwalk()?;
        walk.push(head.id())?;
        walk.hide(bad.id())?;
        let mut named: Vec<String> = Vec::new();
        let mut by: Vec<String> = Vec::new();
        for oid in walk.take(MAX_RANGE) {
            let c = self.repo.find_commit(oid?)?;
            let before = named.len();
            named.extend(reverted_commits(c.message().unwrap_or("")));
            if named.len() > before {
                by.push(short::commit(&c.id().to_string()).to_string());
            }
        }
        let all = range.iter().all(|c| named.iter().any(|n| n == c));
        Ok((all && !by.is_empty()).then(|| by.join(", ")))
    }

    /// Whether two commits have the same `sluice.toml`, policy files and
    /// agent files (everything the artifact is built from).
    fn same_policies(&self, a: &str, b: &str) -> bool {
        let read = |sha: &str| self.read_commit(sha).ok().and_then(|f| f.sources.ok());
        match (read(a), read(b)) {
            (Some(a), Some(b)) => {
                let files = |s: &RepoSources| -> Vec<(String, String)> {
                    std::iter::once(&s.project)
                        .chain(&s.policies)
                        .chain(&s.agents)
                        .map(|f| (f.name.clone(), f.text.to_string()))
                        .collect()
                };
                files(&a) == files(&b)
            }
            _ => false,
        }
    }

    fn push(&self) -> Result<(), ReconcileError> {
        self.remote.check_local()?;
        let rejected: RefCell<Option<String>> = RefCell::new(None);
        let attempts = Attempts::default();
        {
            let mut callbacks = remote::callbacks(&self.auth, &self.remote, &attempts);
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
            remote
                .push(&[spec.as_str()], Some(&mut opts))
                .map_err(|e| self.net_error(&e, &attempts))?;
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

/// Whether a commit is a revert the daemon made.
fn is_daemon_revert(c: &git2::Commit<'_>) -> bool {
    c.message()
        .is_ok_and(|m| m.lines().any(|l| l.starts_with(DAEMON_REVERT_LINE)))
}

/// The commits a commit message says it reverts (`This reverts commit X.`
/// lines, as `git revert` and the daemon write them).
pub fn reverted_commits(message: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|l| l.trim().strip_prefix(REVERTS_LINE))
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .filter(|sha| sha.len() == 40)
        .collect()
}

/// The subject of a revert commit. One commit is `Revert "<summary>"`, as
/// `git revert` writes it; several, or one that is itself a revert, are
/// counted instead, so that reverts never nest (`Revert "Revert "…""`).
fn revert_subject(reverted: &[(String, String)], p: &PendingRevert) -> String {
    match reverted {
        [(_, summary)] if !summary.starts_with("Revert") => format!("Revert \"{summary}\""),
        _ => {
            let n = reverted.len().max(1);
            let commits = if n == 1 { "commit" } else { "commits" };
            match &p.base {
                Some(b) => format!("Revert {n} {commits}: back to {}", short::commit(b)),
                None => format!("Revert {n} {commits}: {}", short::commit(&p.commit)),
            }
        }
    }
}

/// The message of a revert commit: every commit reverted (one `This
/// reverts commit X.` line each, oldest first), at which stage, why, and
/// the figures.
pub fn revert_message(reverted: &[(String, String)], p: &PendingRevert) -> String {
    use std::fmt::Write as _;
    let mut m = revert_subject(reverted, p);
    m.push_str("\n\n");
    for (sha, _) in reverted {
        let _ = writeln!(m, "{REVERTS_LINE}{sha}.");
    }
    if reverted.len() > 1 {
        m.push_str("\nReverted, oldest first:\n");
        for (sha, summary) in reverted {
            let _ = writeln!(m, "  {} {summary}", short::commit(sha));
        }
    }
    if let Some(b) = &p.base {
        let _ = writeln!(m, "\nBack to the stable commit {b}.");
    }
    let _ = write!(
        m,
        "\n{DAEMON_REVERT_LINE} at stage `{}`.\n\
         Trigger: {}\n\
         Cause: {}\n\
         Artifact: {}\n",
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
