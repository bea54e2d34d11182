//! ssh host keys checked against an OpenSSH `known_hosts` file: an
//! unknown host, a key of another type only, a changed key or a revoked
//! one is refused with a message that says which, never accepted.
//!
//! Lines are `[@revoked] hosts keytype base64-key [comment]`; `hosts` is a
//! comma-separated list of names, `[name]:port` for another port than 22,
//! patterns with `*` and `?`, negations with `!`, or a hashed name
//! (`|1|salt|hash`, HMAC-SHA1, as `ssh-keygen -H` writes). `@cert-authority`
//! lines are not read (host certificates are not supported).

use std::path::Path;

use base64::Engine as _;
use git2::cert::CertHostkey;
use sha2::{Digest, Sha256};

/// One key line.
#[derive(Debug)]
struct Entry {
    revoked: bool,
    hosts: String,
    kind: String,
    key: Vec<u8>,
}

/// The keys of a known_hosts file.
#[derive(Debug)]
pub(super) struct KnownHosts {
    file: String,
    entries: Vec<Entry>,
}

/// Reads the file (`None`: there is none to read).
pub(super) fn load(file: Option<&Path>) -> Result<KnownHosts, String> {
    let Some(file) = file else {
        return Err(
            "no known_hosts file to check the server's host key against: give one with \
             --git-known-hosts"
                .to_string(),
        );
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "cannot read the known_hosts file `{}` ({e}): give one with --git-known-hosts",
            file.display()
        )
    })?;
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let mut first = words.next().unwrap_or("");
        let mut revoked = false;
        if first.starts_with('@') {
            if first != "@revoked" {
                continue;
            }
            revoked = true;
            first = words.next().unwrap_or("");
        }
        let (Some(kind), Some(b64)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(key) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        entries.push(Entry {
            revoked,
            hosts: first.to_string(),
            kind: kind.to_string(),
            key,
        });
    }
    Ok(KnownHosts {
        file: file.display().to_string(),
        entries,
    })
}

impl KnownHosts {
    /// Whether `key` is the known key of `host` (on `port`).
    pub(super) fn check(
        &self,
        host: &str,
        port: Option<u16>,
        key: &CertHostkey<'_>,
    ) -> Result<(), String> {
        let name = match port {
            Some(p) if p != 22 => format!("[{host}]:{p}"),
            _ => host.to_string(),
        };
        let kind = key
            .hostkey_type()
            .map_or("unknown", |t| t.name())
            .to_string();
        let same_key = |e: &Entry| match key.hostkey() {
            Some(raw) => raw == e.key.as_slice(),
            None => key
                .hash_sha256()
                .is_some_and(|h| h.as_slice() == Sha256::digest(&e.key).as_slice()),
        };
        let mine: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| hosts_match(&e.hosts, &name))
            .collect();
        if mine.iter().any(|e| e.revoked && same_key(e)) {
            return Err(format!(
                "the host key of {name} is marked @revoked in {}: refused",
                self.file
            ));
        }
        if mine
            .iter()
            .any(|e| !e.revoked && e.kind == kind && same_key(e))
        {
            return Ok(());
        }
        let fingerprint = key
            .hash_sha256()
            .map(|h| base64::engine::general_purpose::STANDARD_NO_PAD.encode(h))
            .unwrap_or_default();
        if mine.iter().any(|e| !e.revoked && e.kind == kind) {
            return Err(format!(
                "the host key of {name} has CHANGED: the server offers {kind} SHA256:{fingerprint}, \
                 which is not the key {} holds for it; refused (if the change is expected, \
                 replace the line)",
                self.file
            ));
        }
        if mine.iter().any(|e| !e.revoked) {
            return Err(format!(
                "the server {name} offers a {kind} host key (SHA256:{fingerprint}) and {} \
                 holds keys of other types only for it: refused",
                self.file
            ));
        }
        Err(format!(
            "the host {name} is unknown: {} has no key for it (its {kind} key is \
             SHA256:{fingerprint}); refused: add its key to the file",
            self.file
        ))
    }
}

/// Whether a line's hosts field names `name`.
fn hosts_match(field: &str, name: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let mut matched = false;
    for pattern in field.split(',') {
        match pattern.strip_prefix('!') {
            Some(neg) if glob(neg, name) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, name),
        }
    }
    matched
}

/// `salt|hash` (both base64): HMAC-SHA1 of the name keyed by the salt.
fn hashed_match(field: &str, name: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = field.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let mac = openssl::pkey::PKey::hmac(&salt).and_then(|k| {
        let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha1(), &k)?;
        s.update(name.as_bytes())?;
        s.sign_to_vec()
    });
    mac.is_ok_and(|m| m == hash)
}

/// A known_hosts pattern (`*`, `?`), case-insensitive as host names are.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some(pi);
                mark = ni;
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == n.get(ni) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ni = mark;
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_ports_negations_and_hashes() {
        assert!(hosts_match("github.com", "github.com"));
        assert!(hosts_match("gitlab.com,github.com", "GitHub.com"));
        assert!(hosts_match("*.example.org", "git.example.org"));
        assert!(!hosts_match(
            "*.example.org,!git.example.org",
            "git.example.org"
        ));
        assert!(hosts_match("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
        assert!(!hosts_match("127.0.0.1", "[127.0.0.1]:2222"));
        assert!(hosts_match("git?.example.org", "git1.example.org"));
        // `ssh-keygen -H -F github.com` of a line for github.com.
        let salt = [7u8; 20];
        let b64 = base64::engine::general_purpose::STANDARD;
        let mac = openssl::pkey::PKey::hmac(&salt)
            .and_then(|k| {
                let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha1(), &k)?;
                s.update(b"github.com")?;
                s.sign_to_vec()
            })
            .unwrap_or_default();
        let field = format!("|1|{}|{}", b64.encode(salt), b64.encode(mac));
        assert!(hosts_match(&field, "github.com"));
        assert!(!hosts_match(&field, "gitlab.com"));
    }
}
