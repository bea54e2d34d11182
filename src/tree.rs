//! Which files of a repository are its policy set, read from anywhere: one
//! walker over a [`TreeSource`], with a source for a folder on disk
//! ([`fs`]) and one for a git revision read from the object database
//! ([`git`]). `sluice check`, `check --base`, `sluice test` and the reconcile
//! daemon all read through [`read`], so they see the same set for the same
//! commit. This module reads and decides membership; it checks nothing (that
//! is [`crate::pipeline`]).
//!
//! # The inclusion rule
//!
//! A **policy repository** is a folder holding a file named `sluice.toml`
//! (SPEC §1). The walk starts there, and looks at names as bytes:
//!
//! 1. The root's `sluice.toml` must be a regular file. Missing, it is not a
//!    policy repository; a symbolic link is refused with an error of its own.
//! 2. **Folders** below the root are walked, except hidden ones (the name
//!    starts with `.`: `.git`, `.github`, …), build output (`target`,
//!    `node_modules`), and any folder holding an entry named `sluice.toml`
//!    (a file or a symbolic link): that is a nested repository, another set.
//! 3. **Policy files** are the regular files whose name has the extension
//!    `policy`: it ends in `.policy` with something before the dot.
//!    `core.policy` and `.dot.policy` belong to the set; `.policy`, `policy`
//!    and `x.policy.bak` do not.
//! 4. **Trace files** are the regular files with the extension `jsonl` below
//!    the traces folder (`[project] traces`, `traces` by default), walked
//!    with the rules of (2). The folder must lie inside the repository (no
//!    `..`, not absolute); missing, there are no traces. Other regular files
//!    there are not traces, but are listed
//!    ([`RepoSources::not_traces`]) so that a `cases.json` is reported
//!    rather than silently skipped.
//! 5. **Agent files** (the agent inventory, SPEC §9) are the regular files
//!    with the extension `toml` directly in the root's folder `agents`
//!    (not below it). Without that folder, or without such a file in it,
//!    the repository has no inventory.
//! 6. **Symbolic links** are never followed, and other kinds of entries
//!    (git submodules, sockets, …) are not part of the set.
//! 7. A file of the set whose path is **not valid UTF-8** is an error that
//!    names it (invalid bytes as `\xNN`); so is one whose content is not
//!    UTF-8 text. Names outside the set are never looked at beyond their
//!    bytes, so a stray binary-named file elsewhere changes nothing.
//!
//! Files are named relative to the root with `/` separators and sorted by
//! name, so the result does not depend on the source's order.
//!
//! What this module must not do: parse or check policies, or decide anything
//! about a file from where it was read (disk or git): every rule above is in
//! the walker, not in a source.

pub mod fs;
pub mod git;

use crate::source::SourceFile;

/// The file that marks a repository's root.
pub const PROJECT_FILE: &str = "sluice.toml";

/// The folder of the agent inventory, below the root.
pub const AGENTS_DIR: &str = "agents";

/// What an entry of a folder is. Sources report symbolic links as such,
/// without following them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// Anything else: a git submodule, a socket, a device.
    Other,
}

/// One entry of a folder: its name as bytes, its kind, and the source's
/// handle to list it (a folder) or read it (a file).
#[derive(Debug, Clone)]
pub struct Entry<H> {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub handle: H,
}

/// A tree of folders and files: a folder on disk, a git tree.
pub trait TreeSource {
    /// How the source finds a folder or a file again.
    type Handle;

    /// The root folder: where `sluice.toml` is looked for.
    fn root(&self) -> Self::Handle;

    /// The entries of a folder, in any order. `path` names the folder
    /// (relative to the root, `/` separators, lossy) for error messages.
    fn list(&self, dir: &Self::Handle, path: &str) -> Result<Vec<Entry<Self::Handle>>, TreeError>;

    /// The bytes of a file; `path` names it for error messages.
    fn read(&self, file: &Self::Handle, path: &str) -> Result<Vec<u8>, TreeError>;

    /// Where the tree comes from, for error messages.
    fn origin(&self) -> &Origin;
}

/// Where a tree was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A folder on disk.
    Dir(String),
    /// A git revision; `prefix` is the policy repository's folder in it
    /// (empty: the top level).
    Rev { rev: String, prefix: String },
}

impl Origin {
    /// ` at revision `REV`` for a revision; nothing for a folder (paths are
    /// relative to it, which the user named).
    fn at(&self) -> String {
        match self {
            Origin::Dir(_) => String::new(),
            Origin::Rev { rev, .. } => format!(" at revision `{rev}`"),
        }
    }
}

/// Why a policy repository could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum TreeError {
    #[error("{}", no_project(origin))]
    #[diagnostic(
        code(repo::not_found),
        help("run the command in a policy repository or pass `--repo DIR`")
    )]
    NoProject { origin: Origin },

    #[error("`{PROJECT_FILE}`{} is a symbolic link: sluice follows none, make it a file", origin.at())]
    #[diagnostic(code(repo::symlink))]
    ProjectSymlink { origin: Origin },

    #[error("the file name `{path}`{} is not valid UTF-8: rename it", origin.at())]
    #[diagnostic(code(repo::name_not_utf8))]
    NameNotUtf8 { origin: Origin, path: String },

    #[error("`{path}`{} is not valid UTF-8 text", origin.at())]
    #[diagnostic(code(repo::not_utf8))]
    NotUtf8 { origin: Origin, path: String },

    #[error(
        "the traces folder `{dir}` is not inside the repository: `[project] traces` names a folder below sluice.toml"
    )]
    #[diagnostic(code(repo::traces))]
    TracesOutside { dir: String },

    #[error("cannot read `{path}`")]
    #[diagnostic(code(repo::io))]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

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

    #[error("reading revision `{rev}`")]
    #[diagnostic(code(git::io))]
    Git {
        rev: String,
        #[source]
        source: git2::Error,
    },
}

fn no_project(origin: &Origin) -> String {
    match origin {
        Origin::Dir(dir) => {
            format!("`{dir}` has no {PROJECT_FILE}: not a policy repository")
        }
        Origin::Rev { rev, prefix } => format!(
            "revision `{rev}` has no `{}`: not a policy repository at that revision",
            crate::diagnostic::prefixed(prefix, PROJECT_FILE)
        ),
    }
}

/// The sources of a policy repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSources {
    pub project: SourceFile,
    /// Every `*.policy` file of the set, sorted by name.
    pub policies: Vec<SourceFile>,
    /// Every `agents/*.toml` (the agent inventory), sorted by name.
    pub agents: Vec<SourceFile>,
    /// Every `*.jsonl` file under the traces folder, sorted by name; empty
    /// unless [`Traces::Read`] was asked for.
    pub traces: Vec<SourceFile>,
    /// The other files under the traces folder (not `*.jsonl`), by name.
    pub not_traces: Vec<String>,
}

/// Whether [`read`] reads the trace files too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traces {
    Skip,
    Read,
}

/// Reads a policy repository: `sluice.toml`, the policy set and, when asked,
/// the traces, by the rule of this module's documentation.
pub fn read<S: TreeSource>(src: &S, traces: Traces) -> Result<RepoSources, TreeError> {
    let root = src.root();
    let entries = src.list(&root, "")?;
    let project = match entries.iter().find(|e| e.name == PROJECT_FILE.as_bytes()) {
        Some(e) if e.kind == Kind::File => read_text(src, e, &[])?,
        Some(e) if e.kind == Kind::Symlink => {
            return Err(TreeError::ProjectSymlink {
                origin: src.origin().clone(),
            });
        }
        _ => {
            return Err(TreeError::NoProject {
                origin: src.origin().clone(),
            });
        }
    };
    let agents = read_agents(src, &entries)?;
    let mut policies = Vec::new();
    walk(src, entries, &mut Vec::new(), "policy", &mut policies, None)?;
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let mut not_traces = Vec::new();
    let traces = match traces {
        Traces::Skip => Vec::new(),
        Traces::Read => {
            // A `sluice.toml` with errors names no traces folder it can be
            // trusted with; the set does not check anyway.
            match crate::project::parse(&project) {
                Ok(p) => read_traces(src, &p.traces, &mut not_traces)?,
                Err(_) => Vec::new(),
            }
        }
    };
    Ok(RepoSources {
        project,
        policies,
        agents,
        traces,
        not_traces,
    })
}

/// The agent files: `agents/*.toml` directly in the root's `agents` folder
/// (`root` lists the root's entries), sorted by name.
fn read_agents<S: TreeSource>(
    src: &S,
    root: &[Entry<S::Handle>],
) -> Result<Vec<SourceFile>, TreeError> {
    let Some(dir) = root
        .iter()
        .find(|e| e.name == AGENTS_DIR.as_bytes() && e.kind == Kind::Dir)
    else {
        return Ok(Vec::new());
    };
    let path = vec![dir.name.clone()];
    let mut out = Vec::new();
    for e in src.list(&dir.handle, AGENTS_DIR)? {
        let name = e.name.as_slice();
        let is_toml = name.len() > ".toml".len() && name.ends_with(b".toml");
        if e.kind == Kind::File && is_toml {
            out.push(read_text(src, &e, &path)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every trace file below the folder `dir` (relative to the root).
fn read_traces<S: TreeSource>(
    src: &S,
    dir: &str,
    not_traces: &mut Vec<String>,
) -> Result<Vec<SourceFile>, TreeError> {
    let outside = || TreeError::TracesOutside {
        dir: dir.to_string(),
    };
    if dir.starts_with('/') || dir.starts_with('\\') {
        return Err(outside());
    }
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut folder = src.root();
    for part in dir
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
    {
        if part == ".." {
            return Err(outside());
        }
        let entries = src.list(&folder, &display(&path))?;
        let Some(next) = entries
            .into_iter()
            .find(|e| e.name == part.as_bytes() && e.kind == Kind::Dir)
        else {
            return Ok(Vec::new());
        };
        folder = next.handle;
        path.push(next.name);
    }
    let entries = src.list(&folder, &display(&path))?;
    let mut out = Vec::new();
    walk(src, entries, &mut path, "jsonl", &mut out, Some(not_traces))?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    not_traces.sort();
    Ok(out)
}

/// Every file with extension `ext` in a folder (`entries`, at `path`) and
/// the folders below it that rule (2) admits; the names of the other
/// regular files into `others`, when given.
fn walk<S: TreeSource>(
    src: &S,
    mut entries: Vec<Entry<S::Handle>>,
    path: &mut Vec<Vec<u8>>,
    ext: &str,
    out: &mut Vec<SourceFile>,
    mut others: Option<&mut Vec<String>>,
) -> Result<(), TreeError> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for entry in entries {
        match entry.kind {
            Kind::Dir if !excluded_dir(&entry.name) => {
                path.push(entry.name);
                let here = display(path);
                let sub = src.list(&entry.handle, &here)?;
                let nested = sub.iter().any(|e| {
                    e.name == PROJECT_FILE.as_bytes()
                        && matches!(e.kind, Kind::File | Kind::Symlink)
                });
                if !nested {
                    walk(src, sub, path, ext, out, others.as_deref_mut())?;
                }
                path.pop();
            }
            Kind::File if has_extension(&entry.name, ext) => {
                out.push(read_text(src, &entry, path)?);
            }
            Kind::File => {
                if let Some(others) = others.as_deref_mut() {
                    path.push(entry.name);
                    others.push(display(path));
                    path.pop();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A folder that never belongs to the policy set: hidden, or build output.
fn excluded_dir(name: &[u8]) -> bool {
    name.starts_with(b".") || name == b"target" || name == b"node_modules"
}

/// Whether `name` has the extension `ext`: it ends in `.ext`, with
/// something before the dot.
fn has_extension(name: &[u8], ext: &str) -> bool {
    name.len() > ext.len() + 1
        && name.ends_with(ext.as_bytes())
        && name.get(name.len() - ext.len() - 1) == Some(&b'.')
}

/// Reads a file of the set (in the folder `dir`) as a [`SourceFile`].
fn read_text<S: TreeSource>(
    src: &S,
    entry: &Entry<S::Handle>,
    dir: &[Vec<u8>],
) -> Result<SourceFile, TreeError> {
    let mut bytes_path = dir.join(&b'/');
    if !bytes_path.is_empty() {
        bytes_path.push(b'/');
    }
    bytes_path.extend_from_slice(&entry.name);
    let name = String::from_utf8(bytes_path).map_err(|e| TreeError::NameNotUtf8 {
        origin: src.origin().clone(),
        path: escaped(e.as_bytes()),
    })?;
    let bytes = src.read(&entry.handle, &name)?;
    let text = String::from_utf8(bytes).map_err(|_| TreeError::NotUtf8 {
        origin: src.origin().clone(),
        path: name.clone(),
    })?;
    Ok(SourceFile::new(name, text))
}

/// A path of byte components, `/`-joined, invalid bytes as `\xNN`.
fn display(path: &[Vec<u8>]) -> String {
    escaped(&path.join(&b'/'))
}

/// Bytes as text: valid UTF-8 as it is, every other byte as `\xNN`.
fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
