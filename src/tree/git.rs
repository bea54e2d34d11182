//! A policy repository at a git revision, straight from the object database
//! (git2): the [`TreeSource`] of a git tree, and [`GitRepo`], which finds the
//! git repository holding a policy repository and reads it at any revision.
//! No checkout, no working tree needed: it works on a bare repository, on
//! any commit (merge commits included), and when the policy repository is a
//! sub-folder of the git repository (the folder's path relative to the
//! working tree is the prefix read from every revision).
//!
//! Git records symbolic links as blobs of mode `120000`: this source reports
//! them as [`Kind::Symlink`], submodules as [`Kind::Other`]. It must not
//! decide what belongs to the set: that is the walker's
//! ([`crate::tree::read`]).

use std::path::Path;

use git2::{ObjectType, Oid, Repository};

use super::{Entry, Kind, Origin, PROJECT_FILE, RepoSources, Traces, TreeError, TreeSource};

/// The mode git gives symbolic links.
const SYMLINK_MODE: i32 = 0o120_000;

/// A git tree as a [`TreeSource`].
pub struct GitTree<'r> {
    repo: &'r Repository,
    root: Oid,
    origin: Origin,
}

impl std::fmt::Debug for GitTree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitTree")
            .field("root", &self.root)
            .field("origin", &self.origin)
            .finish()
    }
}

impl<'r> GitTree<'r> {
    /// The policy repository at `prefix` (a `/`-separated folder, empty for
    /// the top level) of `commit`; `rev` names the commit in messages.
    pub fn at(
        repo: &'r Repository,
        commit: &git2::Commit<'_>,
        prefix: &str,
        rev: &str,
    ) -> Result<GitTree<'r>, TreeError> {
        let origin = Origin::Rev {
            rev: rev.to_string(),
            prefix: prefix.to_string(),
        };
        let git = |source| TreeError::Git {
            rev: rev.to_string(),
            source,
        };
        let tree = commit.tree().map_err(git)?;
        let root = if prefix.is_empty() {
            tree.id()
        } else {
            match tree.get_path(Path::new(prefix)) {
                Ok(entry) if entry.kind() == Some(ObjectType::Tree) => entry.id(),
                _ => return Err(TreeError::NoProject { origin }),
            }
        };
        Ok(GitTree { repo, root, origin })
    }

    fn git(&self, source: git2::Error) -> TreeError {
        let rev = match &self.origin {
            Origin::Rev { rev, .. } => rev.clone(),
            Origin::Dir(dir) => dir.clone(),
        };
        TreeError::Git { rev, source }
    }
}

impl TreeSource for GitTree<'_> {
    type Handle = Oid;

    fn root(&self) -> Oid {
        self.root
    }

    fn list(&self, dir: &Oid, _path: &str) -> Result<Vec<Entry<Oid>>, TreeError> {
        let tree = self.repo.find_tree(*dir).map_err(|e| self.git(e))?;
        Ok(tree
            .iter()
            .map(|e| {
                let kind = match e.kind() {
                    Some(ObjectType::Tree) => Kind::Dir,
                    Some(ObjectType::Blob) if e.filemode() == SYMLINK_MODE => Kind::Symlink,
                    Some(ObjectType::Blob) => Kind::File,
                    _ => Kind::Other,
                };
                Entry {
                    name: e.name_bytes().to_vec(),
                    kind,
                    handle: e.id(),
                }
            })
            .collect())
    }

    fn read(&self, file: &Oid, _path: &str) -> Result<Vec<u8>, TreeError> {
        let blob = self.repo.find_blob(*file).map_err(|e| self.git(e))?;
        Ok(blob.content().to_vec())
    }

    fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// The policy repository's sources at one revision.
#[derive(Debug, Clone)]
pub struct RevFiles {
    /// The full hash of the commit read.
    pub commit: String,
    pub sources: RepoSources,
}

/// A git repository and where the policy repository sits in it.
pub struct GitRepo {
    repo: Repository,
    prefix: String,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRepo")
            .field("path", &self.repo.path())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl GitRepo {
    /// Opens the git repository that holds the policy repository `dir`: a
    /// folder of a working tree (the policy repository is then the folder's
    /// path inside the working tree) or a bare repository (the policy
    /// repository is then its top level).
    pub fn open(dir: &Path) -> Result<GitRepo, TreeError> {
        let not_found = || TreeError::NotInGit {
            dir: dir.display().to_string(),
        };
        let repo = Repository::discover(dir).map_err(|_| not_found())?;
        let prefix = match repo.workdir() {
            None => String::new(),
            Some(workdir) => {
                let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
                let (workdir, dir) = (canon(workdir), canon(dir));
                if !dir.starts_with(&workdir) {
                    return Err(not_found());
                }
                super::fs::relative_name(&workdir, &dir)
            }
        };
        Ok(GitRepo { repo, prefix })
    }

    /// The policy repository's folder inside the git repository, with `/`
    /// separators; empty when it is the top level.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `name` is a remote of the repository (`origin`).
    pub fn is_remote(&self, name: &str) -> bool {
        self.repo.find_remote(name).is_ok()
    }

    /// The branch `rev` names, local or remote-tracking (`main`,
    /// `origin/main`, `refs/heads/main`, `HEAD` on a branch), as its
    /// reference's name (`refs/heads/main`, `refs/remotes/origin/main`).
    pub fn branch_named(&self, rev: &str) -> Option<String> {
        let r = self.repo.resolve_reference_from_short_name(rev).ok()?;
        let r = r.resolve().ok()?;
        if !(r.is_branch() || r.is_remote()) {
            return None;
        }
        r.name().ok().map(str::to_string)
    }

    /// A branch whose tip is `commit` (a full hash), as its reference's name
    /// (`refs/heads/main`, `refs/remotes/origin/main`): `main` or `master`
    /// first, local before remote-tracking, then by name.
    pub fn branch_at(&self, commit: &str) -> Option<String> {
        let mut found: Vec<(bool, bool, String)> = Vec::new();
        for (branch, kind) in self.repo.branches(None).ok()?.flatten() {
            let reference = branch.get();
            let Ok(name) = reference.name() else {
                continue;
            };
            if name.ends_with("/HEAD") {
                continue;
            }
            if reference
                .peel_to_commit()
                .is_ok_and(|c| c.id().to_string() == commit)
            {
                let short = name.rsplit('/').next().unwrap_or(name);
                let usual = matches!(short, "main" | "master");
                found.push((!usual, kind == git2::BranchType::Remote, name.to_string()));
            }
        }
        found.sort();
        found.into_iter().next().map(|(_, _, name)| name)
    }

    /// Reads `sluice.toml` and every policy file at revision `rev` (anything
    /// `git rev-parse` accepts that names a commit).
    pub fn load(&self, rev: &str) -> Result<RevFiles, TreeError> {
        self.load_with(rev, Traces::Skip)
    }

    /// [`GitRepo::load`], with the trace files when `traces` asks for them.
    pub fn load_with(&self, rev: &str, traces: Traces) -> Result<RevFiles, TreeError> {
        let shallow = self.repo.is_shallow();
        let object = self
            .repo
            .revparse_single(rev)
            .map_err(|_| TreeError::Revision {
                rev: rev.to_string(),
                shallow,
                help: if shallow {
                    format!(
                        "fetch it (`git fetch --depth=1 origin {rev}`) or clone with full history \
                         (actions/checkout: `fetch-depth: 0`)"
                    )
                } else {
                    "name a commit, branch or tag that exists (`git log --oneline` lists commits)"
                        .to_string()
                },
            })?;
        let commit = object.peel_to_commit().map_err(|_| TreeError::NotACommit {
            rev: rev.to_string(),
        })?;
        let tree = GitTree::at(&self.repo, &commit, &self.prefix, rev)?;
        Ok(RevFiles {
            commit: commit.id().to_string(),
            sources: super::read(&tree, traces)?,
        })
    }
}

/// The path of `sluice.toml` in a git repository whose policy repository
/// sits at `prefix`.
pub fn project_path(prefix: &str) -> String {
    crate::diagnostic::prefixed(prefix, PROJECT_FILE)
}
