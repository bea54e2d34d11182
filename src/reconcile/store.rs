//! The daemon's durable state in `--state-dir`:
//!
//! ```text
//! state.json          the rollout state (api::rollout_state::State), replaced atomically
//! audit.jsonl         one JSON line per transition (api::audit::Transition), appended and fsynced
//! artifacts/<hash>.json   the artifacts the state refers to (stable, previous,
//!                     candidate, quarantined) and builds not acted on yet;
//!                     the others are deleted (`retain_artifacts`)
//! git/                the bare mirror of the watched repository
//! control.addr        the control API's address, for tools and tests
//! daemon.pid          the process using the folder, locked while it runs (`lock`)
//! ```
//!
//! Writes are atomic: write a temporary file of a fresh name in the same
//! folder, fsync it, rename it over the old one (`tempfile`), fsync the
//! folder. `state.json` carries its schema's version; a file of a version
//! this build does not know is refused, never guessed at. The state is written *before* the audit line
//! of its transition, and carries that transition (`State::last`): when the
//! daemon dies between the two, [`Store::open`] appends the missing line, so
//! the log has every transition exactly once. A torn last line (a crash in
//! the middle of an append) is cut off first.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::err::ReconcileError;
use crate::api::audit::Transition;
use crate::api::rollout_state::State;

/// The state folder.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Io { what, source }
}

impl Store {
    /// Opens (creating) the state folder and repairs the audit log against
    /// the state: a torn last line is cut, a missing last line appended.
    pub fn open(dir: &Path) -> Result<(Store, State), ReconcileError> {
        fs::create_dir_all(dir.join("artifacts"))
            .map_err(io(format!("creating `{}`", dir.display())))?;
        let store = Store {
            dir: dir.to_path_buf(),
        };
        let state = store.load_state()?;
        store.repair_audit(&state)?;
        Ok((store, state))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn git_dir(&self) -> PathBuf {
        self.dir.join("git")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn load_state(&self) -> Result<State, ReconcileError> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(io("reading state.json")(e)),
        };
        State::from_json(&bytes).map_err(|source| ReconcileError::StateFile { path, source })
    }

    /// Replaces `state.json` atomically.
    pub fn save_state(&self, state: &State) -> Result<(), ReconcileError> {
        let mut bytes = serde_json::to_vec_pretty(state)
            .map_err(|source| ReconcileError::Json { what: "", source })?;
        bytes.push(b'\n');
        write_atomic(&self.state_path(), &bytes)
    }

    /// Appends one transition to the audit log and syncs it.
    pub fn append_audit(&self, t: &Transition) -> Result<(), ReconcileError> {
        let mut line =
            serde_json::to_vec(t).map_err(|source| ReconcileError::Json { what: "", source })?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.audit_path())
            .map_err(io("opening audit.jsonl"))?;
        f.write_all(&line).map_err(io("writing audit.jsonl"))?;
        f.sync_data().map_err(io("syncing audit.jsonl"))
    }

    /// Every line of the audit log.
    pub fn read_audit(&self) -> Result<Vec<Transition>, ReconcileError> {
        read_audit(&self.audit_path())
    }

    fn repair_audit(&self, state: &State) -> Result<(), ReconcileError> {
        let path = self.audit_path();
        let mut f = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(t) = &state.last {
                    self.append_audit(t)?;
                }
                return Ok(());
            }
            Err(e) => return Err(io("opening audit.jsonl")(e)),
        };
        let mut text = Vec::new();
        f.read_to_end(&mut text)
            .map_err(io("reading audit.jsonl"))?;
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < text.len() {
            f.set_len(keep as u64)
                .map_err(io("repairing audit.jsonl"))?;
            f.seek(SeekFrom::End(0))
                .map_err(io("repairing audit.jsonl"))?;
            f.sync_data().map_err(io("syncing audit.jsonl"))?;
        }
        let last_seq = text
            .get(..keep)
            .unwrap_or_default()
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .and_then(|l| serde_json::from_slice::<Transition>(l).ok())
            .map_or(0, |t| t.seq);
        if let Some(t) = &state.last
            && t.seq > last_seq
        {
            self.append_audit(t)?;
        }
        Ok(())
    }

    fn artifact_path(&self, hash: &str) -> Result<PathBuf, ReconcileError> {
        if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ReconcileError::ArtifactHash(hash.to_string()));
        }
        Ok(self.dir.join("artifacts").join(format!("{hash}.json")))
    }

    /// Stores an artifact's bytes (atomically; kept if already there).
    pub fn save_artifact(&self, hash: &str, bytes: &[u8]) -> Result<(), ReconcileError> {
        let path = self.artifact_path(hash)?;
        if path.is_file() {
            return Ok(());
        }
        write_atomic(&path, bytes)
    }

    /// An artifact's bytes.
    pub fn load_artifact(&self, hash: &str) -> Result<Vec<u8>, ReconcileError> {
        let path = self.artifact_path(hash)?;
        fs::read(&path).map_err(io(format!("reading artifact `{hash}`")))
    }

    /// Deletes every stored artifact whose hash is not in `keep`; returns
    /// how many were deleted. Only `<hash>.json` files are touched.
    pub fn retain_artifacts(&self, keep: &BTreeSet<String>) -> Result<usize, ReconcileError> {
        let dir = self.dir.join("artifacts");
        let entries = fs::read_dir(&dir).map_err(io("listing the stored artifacts"))?;
        let mut deleted = 0;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Some(hash) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if hash.is_empty()
                || !hash.chars().all(|c| c.is_ascii_hexdigit())
                || keep.contains(hash)
            {
                continue;
            }
            fs::remove_file(&path).map_err(io(format!("deleting artifact `{hash}`")))?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Records the control API's address.
    pub fn save_addr(&self, addr: &str) -> Result<(), ReconcileError> {
        write_atomic(&self.dir.join("control.addr"), addr.as_bytes())
    }
}

/// Reads an audit log; a torn last line is ignored.
pub fn read_audit(path: &Path) -> Result<Vec<Transition>, ReconcileError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading audit.jsonl")(e)),
    };
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        let t = serde_json::from_str(line.trim_end()).map_err(|source| ReconcileError::Json {
            what: "audit.jsonl: ",
            source,
        })?;
        out.push(t);
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file of a fresh name
/// beside it, fsync, rename over `path`, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReconcileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let what = || format!("writing `{}`", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(what()))?;
    tmp.write_all(bytes).map_err(io(what()))?;
    tmp.as_file().sync_all().map_err(io(what()))?;
    tmp.persist(path).map_err(|e| io(what())(e.error))?;
    // A folder can be opened and synced on Unix; elsewhere the rename is
    // what there is.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
