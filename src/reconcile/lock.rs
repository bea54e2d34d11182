//! One daemon per state folder: an exclusive OS file lock (`flock` on Unix,
//! through `fs4`) on `daemon.pid`, held for as long as the daemon runs.
//! The file also names the holder's process, for the error a second daemon
//! gets. The operating system drops the lock when the process ends, however
//! it ends: a pid file left by a killed daemon does not block a restart.
//!
//! Blocking (plain file calls): the daemon takes the lock on tokio's
//! blocking pool before it reads its state.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::{FileExt, TryLockError};

use super::err::ReconcileError;

/// The lock file in the state folder.
pub const LOCK_FILE: &str = "daemon.pid";

/// The state folder, held by this process until dropped.
#[derive(Debug)]
pub struct FolderLock {
    /// Open for as long as the lock is held: closing it releases the lock.
    file: File,
    dir: PathBuf,
}

impl FolderLock {
    /// Takes the state folder `dir` (creating it), or says which process
    /// holds it. Two locks on one folder conflict within one process too.
    pub fn acquire(dir: &Path) -> Result<FolderLock, ReconcileError> {
        let io = |what: &str| {
            let what = format!("{what} `{}`", dir.join(LOCK_FILE).display());
            move |source| ReconcileError::Io { what, source }
        };
        fs::create_dir_all(dir).map_err(io("creating the folder of"))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io("opening"))?;
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ReconcileError::InUse {
                    dir: dir.to_path_buf(),
                    pid: holder(&mut file),
                });
            }
            Err(TryLockError::Error(source)) => return Err(io("locking")(source)),
        }
        let me = std::process::id();
        file.set_len(0).map_err(io("writing"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("writing"))?;
        file.write_all(format!("{me}\n").as_bytes())
            .map_err(io("writing"))?;
        file.sync_data().map_err(io("syncing"))?;
        Ok(FolderLock {
            file,
            dir: dir.to_path_buf(),
        })
    }

    /// The folder held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; this says it explicitly.
        let _ = FileExt::unlock(&self.file);
    }
}

/// The process named in a held lock file, when it can be read.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
