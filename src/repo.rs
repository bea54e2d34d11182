//! Reading a policy repository from disk: `sluice.toml`, every `*.policy`
//! below the root, and trace files.
//!
//! Excluded from the policy set: hidden folders (`.git`, `.github`, …), build
//! output (`target`, `node_modules`), and any folder below the root that has a
//! `sluice.toml` of its own (a nested repository is a different set). Paths
//! are reported relative to the root with `/` separators, and files are
//! sorted by path, so results do not depend on the filesystem's order.

use std::path::{Path, PathBuf};

use crate::source::SourceFile;

/// The file that marks a repository's root.
pub const PROJECT_FILE: &str = "sluice.toml";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RepoError {
    #[error("`{0}` has no sluice.toml: not a policy repository")]
    #[diagnostic(
        code(repo::not_found),
        help("run the command in a policy repository or pass `--repo DIR`")
    )]
    NotARepository(String),
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(code(repo::io))]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` is not valid UTF-8 text")]
    #[diagnostic(code(repo::io))]
    NotUtf8(String),
}

/// The text of a policy repository as read from disk.
#[derive(Debug, Clone)]
pub struct RepoFiles {
    pub root: PathBuf,
    pub project: SourceFile,
    /// Every `*.policy` file of the set, sorted by path.
    pub policies: Vec<SourceFile>,
}

/// Reads `sluice.toml` and every policy file of the repository at `root`.
pub fn load(root: &Path) -> Result<RepoFiles, RepoError> {
    let project_path = root.join(PROJECT_FILE);
    if !project_path.is_file() {
        return Err(RepoError::NotARepository(root.display().to_string()));
    }
    let project = read_source(root, &project_path)?;
    let mut policies = Vec::new();
    for path in walk(root, "policy")? {
        policies.push(read_source(root, &path)?);
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(RepoFiles {
        root: root.to_path_buf(),
        project,
        policies,
    })
}

/// Reads every `*.jsonl` file under `dir` (relative to `root`), sorted by path.
/// A missing folder means no traces.
pub fn load_traces(root: &Path, dir: &str) -> Result<Vec<SourceFile>, RepoError> {
    let base = root.join(dir);
    if !base.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for path in walk(&base, "jsonl")? {
        out.push(read_source(root, &path)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads one file as a [`SourceFile`] named relative to `root`.
pub fn read_source(root: &Path, path: &Path) -> Result<SourceFile, RepoError> {
    let name = relative_name(root, path);
    let bytes = std::fs::read(path).map_err(|source| RepoError::Io {
        path: name.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| RepoError::NotUtf8(name.clone()))?;
    Ok(SourceFile::new(name, text))
}

/// `path` relative to `root`, with `/` separators.
pub fn relative_name(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// A folder that never belongs to the policy set: hidden, or build output.
pub fn excluded_dir(name: &str) -> bool {
    name.starts_with('.') || name == "target" || name == "node_modules"
}

/// Every file with extension `ext` below `root`, skipping excluded folders and
/// nested repositories.
fn walk(root: &Path, ext: &str) -> Result<Vec<PathBuf>, RepoError> {
    let mut out = Vec::new();
    let mut it = walkdir::WalkDir::new(root).follow_links(false).into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| RepoError::Io {
            path: e
                .path()
                .map_or_else(|| root.display().to_string(), |p| relative_name(root, p)),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
        })?;
        let path = entry.path();
        if entry.file_type().is_dir() {
            if entry.depth() > 0 {
                let name = entry.file_name().to_string_lossy();
                if excluded_dir(&name) || path.join(PROJECT_FILE).is_file() {
                    it.skip_current_dir();
                }
            }
            continue;
        }
        if entry.file_type().is_file() && path.extension().is_some_and(|e| e == ext) {
            out.push(path.to_path_buf());
        }
    }
    Ok(out)
}
