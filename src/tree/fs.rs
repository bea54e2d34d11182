//! A policy repository on disk: the [`TreeSource`] of a folder. Lists
//! folders with `std::fs::read_dir` and reports symbolic links as such
//! (never followed). It must not decide what belongs to the set: that is
//! the walker's ([`crate::tree::read`]).

use std::path::{Path, PathBuf};

use super::{Entry, Kind, Origin, RepoSources, Traces, TreeError, TreeSource};
use crate::source::SourceFile;

/// A folder on disk as a tree.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
    origin: Origin,
}

impl DirTree {
    pub fn new(root: &Path) -> DirTree {
        DirTree {
            root: root.to_path_buf(),
            origin: Origin::Dir(root.display().to_string()),
        }
    }

    fn io(&self, path: &str, source: std::io::Error) -> TreeError {
        let path = if path.is_empty() {
            self.root.display().to_string()
        } else {
            path.to_string()
        };
        TreeError::Io { path, source }
    }
}

impl TreeSource for DirTree {
    type Handle = PathBuf;

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn list(&self, dir: &PathBuf, path: &str) -> Result<Vec<Entry<PathBuf>>, TreeError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| self.io(path, e))? {
            let entry = entry.map_err(|e| self.io(path, e))?;
            let file_type = entry.file_type().map_err(|e| self.io(path, e))?;
            let kind = if file_type.is_symlink() {
                Kind::Symlink
            } else if file_type.is_dir() {
                Kind::Dir
            } else if file_type.is_file() {
                Kind::File
            } else {
                Kind::Other
            };
            out.push(Entry {
                name: entry.file_name().as_encoded_bytes().to_vec(),
                kind,
                handle: entry.path(),
            });
        }
        Ok(out)
    }

    fn read(&self, file: &PathBuf, path: &str) -> Result<Vec<u8>, TreeError> {
        std::fs::read(file).map_err(|e| self.io(path, e))
    }

    fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Reads the policy repository at `root` (and its traces, when asked).
pub fn load(root: &Path, traces: Traces) -> Result<RepoSources, TreeError> {
    let tree = DirTree::new(root);
    if !root.is_dir() {
        return Err(TreeError::NoProject {
            origin: tree.origin,
        });
    }
    super::read(&tree, traces)
}

/// Reads one file named on the command line as a [`SourceFile`] named
/// relative to `root`.
pub fn read_file(root: &Path, path: &Path) -> Result<SourceFile, TreeError> {
    let name = relative_name(root, path);
    let bytes = std::fs::read(path).map_err(|source| TreeError::Io {
        path: name.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| TreeError::NotUtf8 {
        origin: Origin::Dir(root.display().to_string()),
        path: name.clone(),
    })?;
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
