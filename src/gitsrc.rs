//! Reading a policy repository at a git revision, straight from the object
//! database (git2): no checkout, no working tree needed.
//!
//! The pull-request check (`sluice check --base REV`) reads the base
//! revision's policy set this way; it works on a bare repository, on any
//! commit (merge commits included), and when the policy repository is a
//! sub-folder of the git repository: the folder's path relative to the git
//! working tree is the prefix read from every revision.
//!
//! Inclusion rules are those of [`crate::repo`]: every `*.policy` blob below
//! the root, except in hidden folders, `target/`, `node_modules/` and
//! sub-folders that have a `sluice.toml` of their own; symbolic links and
//! submodules are not followed. Names are relative to the policy repository's
//! root with `/` separators, sorted by path — the same names the working tree
//! gives, so findings of both revisions can be compared.

use std::path::Path;

use git2::{ObjectType, Repository, Tree};

use crate::repo::{PROJECT_FILE, excluded_dir, relative_name};
use crate::source::SourceFile;

/// A revision that could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum GitSrcError {
    #[error("`{dir}` is not inside a git repository")]
    #[diagnostic(
        code(git::not_found),
        help(
            "`--base` and `--head` read revisions from git: run in a clone of the policy repository"
        )
    )]
    NotInGit { dir: String },

    #[error("revision `{rev}` is not in the repository{}", if *.shallow { " (a shallow clone)" } else { "" })]
    #[diagnostic(code(git::revision))]
    Revision {
        rev: String,
        shallow: bool,
        #[help]
        help: String,
    },

    #[error("`{rev}` names no commit")]
    #[diagnostic(
        code(git::revision),
        help("name a commit, branch or tag, not a tree or a file")
    )]
    NotACommit { rev: String },

    #[error("revision `{rev}` has no `{path}`: not a policy repository at that revision")]
    #[diagnostic(code(git::no_project))]
    NoProject { rev: String, path: String },

    #[error("`{path}` at revision `{rev}` is not valid UTF-8 text")]
    #[diagnostic(code(git::not_utf8))]
    NotUtf8 { rev: String, path: String },

    #[error("reading revision `{rev}`: {source}")]
    #[diagnostic(code(git::io))]
    Git {
        rev: String,
        #[source]
        source: git2::Error,
    },
}

/// The policy set's text at one revision.
#[derive(Debug, Clone)]
pub struct RevFiles {
    /// The full hash of the commit read.
    pub commit: String,
    pub project: SourceFile,
    /// Every `*.policy` file of the set, sorted by path.
    pub policies: Vec<SourceFile>,
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
    pub fn open(dir: &Path) -> Result<GitRepo, GitSrcError> {
        let not_found = || GitSrcError::NotInGit {
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
                relative_name(&workdir, &dir)
            }
        };
        Ok(GitRepo { repo, prefix })
    }

    /// The policy repository's folder inside the git repository, with `/`
    /// separators; empty when it is the top level.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Reads `sluice.toml` and every policy file at revision `rev` (anything
    /// `git rev-parse` accepts that names a commit).
    pub fn load(&self, rev: &str) -> Result<RevFiles, GitSrcError> {
        let git = |source| GitSrcError::Git {
            rev: rev.to_string(),
            source,
        };
        let shallow = self.repo.is_shallow();
        let object = self
            .repo
            .revparse_single(rev)
            .map_err(|_| GitSrcError::Revision {
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
        let commit = object
            .peel_to_commit()
            .map_err(|_| GitSrcError::NotACommit {
                rev: rev.to_string(),
            })?;
        let tree = commit.tree().map_err(git)?;
        let project_path = crate::diagnostic::prefixed(&self.prefix, PROJECT_FILE);
        let no_project = || GitSrcError::NoProject {
            rev: rev.to_string(),
            path: project_path.clone(),
        };
        let root = if self.prefix.is_empty() {
            tree
        } else {
            let entry = tree
                .get_path(Path::new(&self.prefix))
                .map_err(|_| no_project())?;
            if entry.kind() != Some(ObjectType::Tree) {
                return Err(no_project());
            }
            self.repo.find_tree(entry.id()).map_err(git)?
        };
        let reader = Reader {
            repo: &self.repo,
            rev,
        };
        let project = match root.get_name(PROJECT_FILE) {
            Some(e) if e.kind() == Some(ObjectType::Blob) => {
                reader.source(PROJECT_FILE.to_string(), e.id())?
            }
            _ => return Err(no_project()),
        };
        let mut policies = Vec::new();
        reader.walk(&root, "", &mut policies)?;
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(RevFiles {
            commit: commit.id().to_string(),
            project,
            policies,
        })
    }
}

/// A mode git gives symbolic links.
const SYMLINK_MODE: i32 = 0o120_000;

struct Reader<'r> {
    repo: &'r Repository,
    rev: &'r str,
}

impl Reader<'_> {
    fn git(&self, source: git2::Error) -> GitSrcError {
        GitSrcError::Git {
            rev: self.rev.to_string(),
            source,
        }
    }

    fn source(&self, name: String, id: git2::Oid) -> Result<SourceFile, GitSrcError> {
        let blob = self.repo.find_blob(id).map_err(|e| self.git(e))?;
        let text =
            String::from_utf8(blob.content().to_vec()).map_err(|_| GitSrcError::NotUtf8 {
                rev: self.rev.to_string(),
                path: name.clone(),
            })?;
        Ok(SourceFile::new(name, text))
    }

    /// Every `*.policy` blob below `tree` (named `dir/…`), skipping excluded
    /// folders and nested repositories.
    fn walk(
        &self,
        tree: &Tree<'_>,
        dir: &str,
        out: &mut Vec<SourceFile>,
    ) -> Result<(), GitSrcError> {
        for entry in tree.iter() {
            let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    if excluded_dir(&name) {
                        continue;
                    }
                    let sub = self.repo.find_tree(entry.id()).map_err(|e| self.git(e))?;
                    if sub
                        .get_name(PROJECT_FILE)
                        .is_some_and(|e| e.kind() == Some(ObjectType::Blob))
                    {
                        continue;
                    }
                    self.walk(&sub, &path, out)?;
                }
                Some(ObjectType::Blob) => {
                    if entry.filemode() == SYMLINK_MODE
                        || Path::new(&name).extension().is_none_or(|e| e != "policy")
                    {
                        continue;
                    }
                    out.push(self.source(path, entry.id())?);
                }
                // Submodules (commits) are other repositories.
                _ => {}
            }
        }
        Ok(())
    }
}
