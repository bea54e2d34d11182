//! The daemon's side of fencing (SPEC §6 "Fencing and liveness", wire in
//! [`crate::api::lease`]): its identity, and the leases it holds on its
//! engines.
//!
//! - **Identity.** Made on the first start and kept in the state folder
//!   (`identity`): the host's name and 16 hex digits. A daemon restarted on
//!   its folder is the same daemon; another folder is another daemon.
//! - **Renewal.** Every pass reads each engine's route and lease; an engine
//!   whose lease is this daemon's is renewed (`POST /v1/lease`) once a third
//!   of `--lease` has passed since the last renewal, in parallel with the
//!   reads. The loop wakes at least that often. A loop that stops (a dead
//!   or wedged daemon) stops renewing, and the engines fall back to stable
//!   on their own.
//! - **Claims.** A free engine (no live lease) is claimed one at a time in
//!   the order of the engines' URLs, stopping at the first engine another
//!   daemon holds: two daemons started together on the same fleet take the
//!   engines in the same order, so one gets them all instead of each a
//!   part. `--take-over` claims every engine by force once at start.
//! - **Fenced.** While another daemon holds any engine, this one takes no
//!   transition of its own (no install, no rollout, no stage step) and moves
//!   no engine it does not hold; status says who holds which engine.

use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::client::EngineError;
use super::err::ReconcileError;
use super::runner::{EngineView, Holder, Runner};
use crate::api::lease::{LeaseRequest, MAX_OWNER_LEN, valid_owner};

/// The identity file in the state folder.
pub const IDENTITY_FILE: &str = "identity";

/// The daemon's identity in `dir`, made and kept on first use.
pub fn identity(dir: &Path) -> Result<String, ReconcileError> {
    let path = dir.join(IDENTITY_FILE);
    let io = |what: &str| {
        let what = format!("{what} `{}`", path.display());
        move |source| ReconcileError::Io { what, source }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if valid_owner(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(ReconcileError::Config(format!(
                "`{}` does not hold a daemon identity (1 to {MAX_OWNER_LEN} visible ASCII characters): remove it to make a new one",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading")(e)),
    }
    let id = new_identity(dir);
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io("writing"))?;
    std::io::Write::write_all(&mut file, format!("{id}\n").as_bytes()).map_err(io("writing"))?;
    file.as_file().sync_all().map_err(io("syncing"))?;
    file.persist(&path).map_err(|e| io("writing")(e.error))?;
    Ok(id)
}

/// The host's name and 16 hex digits of a digest of the time, the process
/// and the folder: unique across daemons, stable across restarts once kept.
fn new_identity(dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let seed = format!(
        "{:?} {} {:?} {}",
        SystemTime::now(),
        std::process::id(),
        std::time::Instant::now(),
        dir.display()
    );
    let digest = Sha256::digest(seed.as_bytes());
    let tail = hex::encode(digest.get(..8).unwrap_or_default());
    if host.is_empty() {
        format!("sluice-{tail}")
    } else {
        format!("{host}-{tail}")
    }
}

impl Runner {
    /// The lease request this daemon sends.
    pub(super) fn lease_request(&self, force: bool) -> LeaseRequest {
        LeaseRequest {
            owner: self.identity.clone(),
            lease_ms: self.lease_ms(),
            force,
        }
    }

    pub(super) fn lease_ms(&self) -> u64 {
        u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// How often a lease is renewed: a third of `--lease`.
    pub(super) fn renew_every(&self) -> Duration {
        self.config.lease / 3
    }

    /// Reads who holds an engine from what it answered.
    pub(super) fn holder_of(&self, owner: Option<&str>) -> Holder {
        match owner {
            None => Holder::Free,
            Some(o) if o == self.identity => Holder::Mine,
            Some(o) => Holder::Other(o.to_string()),
        }
    }

    /// Claims free engines one at a time in URL order, stopping at the
    /// first another daemon holds; with `--take-over`, every engine not yet
    /// taken, by force.
    pub(super) async fn claim(&mut self) {
        let mut order: Vec<usize> = (0..self.engines.len()).collect();
        order.sort_by(|a, b| {
            let name = |i: &usize| self.engines.get(*i).map(|e| e.client.name().to_string());
            name(a).cmp(&name(b))
        });
        for i in order {
            let Some(view) = self.engines.get(i) else {
                continue;
            };
            let force = view.take_over;
            let wanted =
                force || (view.known && matches!(view.holder, Holder::Free | Holder::Unknown));
            if !wanted {
                if matches!(view.holder, Holder::Other(_)) {
                    break;
                }
                continue;
            }
            let client = view.client.clone();
            let req = self.lease_request(force);
            let answer = client.renew_lease(&req).await;
            let Some(view) = self.engines.get_mut(i) else {
                continue;
            };
            match answer {
                Ok(granted) => {
                    if force {
                        tracing::warn!(engine = client.name(), "engine taken over by force");
                    } else {
                        tracing::info!(engine = client.name(), "engine's lease taken");
                    }
                    view.take_over = false;
                    view.holder = Holder::Mine;
                    view.version = granted.version;
                    view.renewed = Some(Instant::now());
                }
                Err(e) => {
                    let other = e.held_by().map(str::to_string);
                    note_failure(view, &e);
                    if other.is_some() && !force {
                        break;
                    }
                }
            }
        }
    }

    /// The daemons holding engines of this fleet, other than this one, with
    /// the engines each holds; empty when this daemon is not fenced.
    pub(super) fn held_by_others(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for e in &self.engines {
            if let Holder::Other(owner) = &e.holder {
                match out.iter_mut().find(|(o, _)| o == owner) {
                    Some((_, names)) => names.push(e.client.name().to_string()),
                    None => out.push((owner.clone(), vec![e.client.name().to_string()])),
                }
            }
        }
        out
    }

    /// Why this daemon does not act, when another daemon holds engines of
    /// its fleet.
    pub(super) fn fenced(&self) -> Option<String> {
        let others = self.held_by_others();
        if others.is_empty() {
            return None;
        }
        let n = self.engines.len();
        let parts: Vec<String> = others
            .iter()
            .map(|(owner, names)| {
                format!(
                    "daemon `{owner}` holds {} of {n} engines ({})",
                    names.len(),
                    names.join(", ")
                )
            })
            .collect();
        Some(format!(
            "the fleet is held by another daemon: {}; this daemon (`{}`) changes nothing until that lease lapses, or takes the fleet over when started with --take-over",
            parts.join("; "),
            self.identity
        ))
    }
}

/// Records a refused or failed lease or route call on an engine's view.
pub(super) fn note_failure(view: &mut EngineView, e: &EngineError) {
    if let EngineError::Fenced(f) = e {
        view.version = f.version;
        view.holder = match &f.owner {
            Some(o) if f.conflict == crate::api::lease::Conflict::Held => Holder::Other(o.clone()),
            _ => view.holder.clone(),
        };
    }
    view.error = Some(e.to_string());
}
