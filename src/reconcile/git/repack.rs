//! Repacking the mirror: every fetch leaves one more pack file, and the
//! object database keeps a descriptor open on each pack it has read from,
//! for as long as the repository is open. Past [`MAX_PACKS`] packs, the
//! objects the daemon may still read (everything reachable from the refs,
//! and the commits its state names) are written into one new pack with
//! git2's pack builder, the old packs are removed, and the repository is
//! opened afresh, which closes their descriptors.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::Mirror;
use crate::reconcile::err::ReconcileError;

/// The most packs the mirror keeps before it is repacked.
pub const MAX_PACKS: usize = 8;

/// The pack files (`objects/pack/pack-*.pack`) of a repository.
fn packs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "pack")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pack-"))
        })
        .collect();
    out.sort();
    out
}

impl Mirror {
    fn pack_dir(&self) -> PathBuf {
        self.repo.path().join("objects").join("pack")
    }

    /// How many pack files the mirror has.
    pub fn pack_count(&self) -> usize {
        packs(&self.pack_dir()).len()
    }

    /// Repacks the mirror when it has more than [`MAX_PACKS`] packs: one
    /// pack of every object reachable from its refs and from the commits
    /// in `keep` (those the daemon's state names, which a force-push may
    /// have taken off the branch). Returns whether it repacked.
    pub fn repack_if_needed(&mut self, keep: &[String]) -> Result<bool, ReconcileError> {
        let dir = self.pack_dir();
        let old = packs(&dir);
        if old.len() <= MAX_PACKS {
            return Ok(false);
        }
        let name = {
            let mut walk = self.repo.revwalk()?;
            walk.push_glob("*")?;
            for c in keep {
                if let Ok(oid) = Oid::from_str(c)
                    && self.repo.find_commit(oid).is_ok()
                {
                    walk.push(oid)?;
                }
            }
            let mut builder = self.repo.packbuilder()?;
            builder.insert_walk(&mut walk)?;
            if builder.object_count() == 0 {
                return Ok(false);
            }
            builder.write(&dir, 0o644)?;
            builder
                .name()?
                .map(|n| format!("pack-{n}"))
                .ok_or_else(|| ReconcileError::Git("the new pack has no name".to_string()))?
        };
        for pack in &old {
            let stem = pack.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if stem == name {
                continue;
            }
            for ext in ["pack", "idx", "rev", "keep"] {
                let _ = std::fs::remove_file(pack.with_extension(ext));
            }
        }
        // Dropping the old handle closes the descriptors of the packs
        // removed.
        self.repo = Repository::open_bare(self.repo.path())?;
        tracing::info!(packs = old.len(), "git mirror repacked into one pack");
        Ok(true)
    }
}
