//! How the daemon reaches the watched repository (SPEC §6 "Remotes"): what
//! `--repo` names ([`Remote::parse`]: a local path, `file://`, `http://`,
//! `https://`, `ssh://` or scp-like `user@host:path`), the credentials and
//! trust it is given ([`GitAuth`]: a token for HTTPS, a key for ssh, a CA
//! file, a known_hosts file), libgit2's callbacks that hand them over
//! ([`callbacks`]) and the one redaction of everything shown
//! ([`GitAuth::redact`], [`redact`]).
//!
//! **Credentials never loop.** libgit2 asks for a credential again after
//! the remote refused one; the callbacks remember what each call already
//! gave and give up with an error that says which credential was refused,
//! so one fetch makes at most one attempt per kind of credential.
//!
//! **Nothing secret is shown.** A password in the `--repo` URL is taken out
//! of it before libgit2 or the mirror's `config` ever see it (it becomes
//! the token); every text the daemon shows of a remote (status, log lines,
//! audit lines, errors) goes through [`GitAuth::redact`], which strips the
//! user information of every URL in it and replaces the token and the key's
//! passphrase wherever they appear.
//!
//! `known_hosts`: ssh host keys checked against an OpenSSH `known_hosts`
//! file; `ca`: an HTTPS server's certificate checked against `--git-ca-file`.

mod ca;
mod known_hosts;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

use super::err::ReconcileError;

/// The user a token is sent with when `--git-user` is not given (GitHub's
/// name for a token that is not a user's password; GitLab accepts any).
pub const DEFAULT_GIT_USER: &str = "x-access-token";

/// What replaces a secret in a text that is shown.
pub const REDACTED: &str = "[REDACTED]";

/// How a remote is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A path on this machine, or a `file://` URL.
    Local,
    /// Plain `http://` (a test server, a mirror on a private network).
    Http,
    Https,
    /// `ssh://…` or scp-like `user@host:path`.
    Ssh,
}

/// The repository `--repo` names, as libgit2 is given it.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// What libgit2 and the mirror's `config` are given: never a password.
    pub url: String,
    pub transport: Transport,
    /// The server's host name (not for local repositories).
    pub host: Option<String>,
    /// The server's port, when the URL names one.
    pub port: Option<u16>,
    /// The user named in the URL (`git` of `git@github.com:org/repo.git`).
    pub user: Option<String>,
    /// The password of an `https://user:password@…` URL: used as the token
    /// when none is given otherwise, never kept in the URL.
    password: Option<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Reads `--repo`: URLs by their scheme, `[user@]host:path` (a colon
    /// before any slash, as git reads it) as ssh, anything else as a path
    /// (made absolute). An unsupported scheme is an error.
    pub fn parse(repo: &str) -> Result<Remote, ReconcileError> {
        let shown = redact(repo);
        if let Some((scheme, _)) = repo.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            let transport = match scheme.as_str() {
                "file" => {
                    return Ok(Remote::local(repo.to_string()));
                }
                "http" => Transport::Http,
                "https" => Transport::Https,
                "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
                other => {
                    return Err(ReconcileError::Config(format!(
                        "--repo `{shown}`: `{other}://` is not a transport the daemon speaks \
                         (a path, file://, http://, https://, ssh:// or user@host:path)"
                    )));
                }
            };
            let mut url = reqwest::Url::parse(repo).map_err(|e| {
                ReconcileError::Config(format!("--repo `{shown}` is not a URL: {e}"))
            })?;
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| ReconcileError::Config(format!("--repo `{shown}` names no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let user = (!url.username().is_empty()).then(|| decode(url.username()));
            let password = url.password().map(decode);
            let mut out = Remote {
                url: String::new(),
                transport,
                host: Some(host),
                port: url.port(),
                user: user.clone(),
                password,
            };
            if transport == Transport::Ssh {
                if out.password.is_some() {
                    return Err(ReconcileError::Config(format!(
                        "--repo `{shown}`: an ssh URL carries no password: give the key with \
                         --git-ssh-key"
                    )));
                }
                // libgit2 reads `ssh://`; the other spellings are the same.
                if scheme != "ssh" {
                    let rest = repo.split_once("://").map_or("", |(_, r)| r);
                    out.url = format!("ssh://{rest}");
                    return Ok(out);
                }
                out.url = url.to_string();
                return Ok(out);
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
            out.url = url.to_string();
            return Ok(out);
        }
        if let Some((user_host, path)) = scp_like(repo) {
            let (user, host) = match user_host.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h.to_string()),
                None => (None, user_host.to_string()),
            };
            if host.is_empty() || path.is_empty() {
                return Err(ReconcileError::Config(format!(
                    "--repo `{shown}`: an ssh remote is `user@host:path`"
                )));
            }
            return Ok(Remote {
                url: repo.to_string(),
                transport: Transport::Ssh,
                host: Some(host),
                port: None,
                user,
                password: None,
            });
        }
        Ok(Remote::local(local_path(repo)))
    }

    fn local(url: String) -> Remote {
        Remote {
            url,
            transport: Transport::Local,
            host: None,
            port: None,
            user: None,
            password: None,
        }
    }

    /// The URL as it may be shown.
    pub fn shown(&self) -> String {
        redact(&self.url)
    }

    /// A local repository that is not there: a clearer error than git2's.
    pub fn check_local(&self) -> Result<(), ReconcileError> {
        if self.transport != Transport::Local {
            return Ok(());
        }
        let path = self.url.strip_prefix("file://").unwrap_or(&self.url);
        if !Path::new(path).exists() {
            return Err(ReconcileError::Git(format!(
                "the repository `{}` is not reachable",
                self.shown()
            )));
        }
        Ok(())
    }
}

/// `[user@]host:path` when the colon comes before any slash (git's rule),
/// the host is not a single letter (a Windows drive) and the whole is not
/// a path that exists.
fn scp_like(repo: &str) -> Option<(&str, &str)> {
    let colon = repo.find(':')?;
    if repo.find('/').is_some_and(|slash| slash < colon) || Path::new(repo).exists() {
        return None;
    }
    let (user_host, path) = (repo.get(..colon)?, repo.get(colon + 1..)?);
    (user_host.len() > 1).then_some((user_host, path))
}

/// A path made absolute (as it is when it does not exist yet: then the
/// current folder's).
fn local_path(repo: &str) -> String {
    let path = Path::new(repo);
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    });
    abs.to_string_lossy().into_owned()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The user information of every URL in `text` taken out (`https://x:T@h/`
/// → `https://h/`); an ssh URL's user alone (`ssh://git@h/`) is no secret
/// and stays. The one function every URL shown goes through.
pub fn redact(text: &str) -> String {
    static USERINFO: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*)://([^/?#@\s]*)@").ok());
    let Some(re) = USERINFO.as_ref() else {
        return text.to_string();
    };
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let scheme = c.get(1).map_or("", |m| m.as_str());
        let info = c.get(2).map_or("", |m| m.as_str());
        if scheme.to_ascii_lowercase().contains("ssh") && !info.contains(':') {
            format!("{scheme}://{info}@")
        } else {
            format!("{scheme}://")
        }
    })
    .into_owned()
}

/// The credentials and the trust the daemon reaches its remote with
/// (`--git-token-file`, `--git-user`, `--git-ssh-key`, `--git-known-hosts`,
/// `--git-ca-file`). Its `Debug` shows no secret.
#[derive(Clone, Default)]
pub struct GitAuth {
    /// The user a token is sent with ([`DEFAULT_GIT_USER`] when `None`).
    pub user: Option<String>,
    /// The HTTPS token (basic auth's password).
    pub token: Option<String>,
    /// The ssh private key.
    pub ssh_key: Option<PathBuf>,
    /// The ssh key's passphrase.
    pub ssh_passphrase: Option<String>,
    /// The known_hosts file ssh host keys are checked against (the user's
    /// `~/.ssh/known_hosts` when `None`).
    pub known_hosts: Option<PathBuf>,
    /// PEM certificates an HTTPS server's certificate is checked against
    /// instead of the system's (`--git-ca-file`).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("ssh_key", &self.ssh_key)
            .field(
                "ssh_passphrase",
                &self.ssh_passphrase.as_ref().map(|_| REDACTED),
            )
            .field("known_hosts", &self.known_hosts)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl GitAuth {
    /// `text` as it may be shown: URLs without user information (see
    /// [`redact`]), the token and the passphrase replaced wherever they are.
    pub fn redact(&self, text: &str) -> String {
        let mut out = redact(text);
        for secret in [&self.token, &self.ssh_passphrase].into_iter().flatten() {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// This configuration for `remote`: a password in its URL becomes the
    /// token when no other is given. Checks what can be checked before any
    /// connection: the files exist and read, the transport has what it needs.
    pub fn for_remote(mut self, remote: &Remote) -> Result<GitAuth, ReconcileError> {
        if self.token.is_none() && remote.password.is_some() {
            self.token = remote.password.clone();
            if remote.user.is_some() {
                self.user = remote.user.clone();
            }
        }
        if let Some(f) = &self.ca_file {
            ca::load(f).map_err(|e| ReconcileError::Config(format!("--git-ca-file: {e}")))?;
        }
        if let Some(k) = &self.ssh_key
            && let Err(e) = std::fs::metadata(k)
        {
            return Err(ReconcileError::Config(format!(
                "--git-ssh-key `{}`: {e}",
                k.display()
            )));
        }
        if remote.transport == Transport::Ssh {
            let file = self.known_hosts_file();
            known_hosts::load(file.as_deref()).map_err(ReconcileError::Config)?;
        }
        Ok(self)
    }

    fn known_hosts_file(&self) -> Option<PathBuf> {
        self.known_hosts
            .clone()
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts")))
    }

    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or(DEFAULT_GIT_USER)
    }
}

/// What one network call's callbacks gave so far: each kind of credential
/// at most once.
#[derive(Debug, Default)]
pub struct Attempts {
    userpass: Cell<u32>,
    ssh_key: Cell<u32>,
    username: Cell<u32>,
    /// Why a callback refused to go on: libgit2 may replace the callback's
    /// message with its own ("invalid or unknown remote ssh hostkey").
    refused: RefCell<Option<String>>,
}

impl Attempts {
    /// Why a callback refused to go on, when one did.
    pub fn refused(&self) -> Option<String> {
        self.refused.borrow().clone()
    }

    fn refuse(&self, why: String) -> git2::Error {
        *self.refused.borrow_mut() = Some(why.clone());
        git2::Error::from_str(&why)
    }

    /// How many credentials the callbacks handed over.
    pub fn total(&self) -> u32 {
        self.userpass.get() + self.ssh_key.get() + self.username.get()
    }
}

/// libgit2's callbacks for one network call to `remote`: credentials given
/// once each, certificates and host keys checked.
pub fn callbacks<'a>(
    auth: &'a GitAuth,
    remote: &'a Remote,
    attempts: &'a Attempts,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    cb.credentials(move |_url, user_from_url, allowed| {
        credential(auth, remote, attempts, user_from_url, allowed)
            .map_err(|why| attempts.refuse(why))
    });
    cb.certificate_check(move |cert, host| {
        check_certificate(auth, remote, cert, host).map_err(|why| attempts.refuse(why))
    });
    cb
}

fn credential(
    auth: &GitAuth,
    remote: &Remote,
    attempts: &Attempts,
    user_from_url: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, String> {
    let once = |c: &Cell<u32>| {
        let n = c.get();
        c.set(n + 1);
        n == 0
    };
    let host = remote.host.as_deref().unwrap_or("the remote");
    if allowed.contains(CredentialType::SSH_KEY) {
        let user = user_from_url.or(remote.user.as_deref()).unwrap_or("git");
        let Some(key) = &auth.ssh_key else {
            return Err(format!(
                "{host} asks for an ssh key: give one with --git-ssh-key"
            ));
        };
        if !once(&attempts.ssh_key) {
            return Err(format!(
                "{host} refused the ssh key {} for user `{user}` (is it a deploy key of the \
                 repository, and its passphrase in SLUICE_GIT_SSH_PASSPHRASE?)",
                key.display()
            ));
        }
        // The public half beside the key when it is there: libssh2 cannot
        // derive it from every private key format.
        let public = PathBuf::from(format!("{}.pub", key.display()));
        let public = public.exists().then_some(public);
        return Cred::ssh_key(user, public.as_deref(), key, auth.ssh_passphrase.as_deref())
            .map_err(|e| auth.redact(&format!("the ssh key {}: {}", key.display(), e.message())));
    }
    if allowed.contains(CredentialType::USERNAME) {
        let user = remote.user.as_deref().unwrap_or("git");
        if !once(&attempts.username) {
            return Err(format!("{host} refused the user `{user}`"));
        }
        return Cred::username(user).map_err(|e| e.message().to_string());
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        let Some(token) = &auth.token else {
            return Err(format!(
                "{host} asks for credentials: give a token with --git-token-file or \
                 SLUICE_GIT_TOKEN"
            ));
        };
        if !once(&attempts.userpass) {
            return Err(format!(
                "{host} refused the token (user `{}`): it is wrong, expired, or lacks access \
                 to the repository",
                auth.user()
            ));
        }
        return Cred::userpass_plaintext(auth.user(), token).map_err(|e| e.message().to_string());
    }
    Err(format!(
        "{host} asks for a kind of credential the daemon does not give ({allowed:?})"
    ))
}

fn check_certificate(
    auth: &GitAuth,
    remote: &Remote,
    cert: &git2::cert::Cert<'_>,
    host: &str,
) -> Result<CertificateCheckStatus, String> {
    if let Some(key) = cert.as_hostkey() {
        let file = auth.known_hosts_file();
        let known = known_hosts::load(file.as_deref())?;
        known.check(host, remote.port, key)?;
        return Ok(CertificateCheckStatus::CertificateOk);
    }
    match (cert.as_x509(), &auth.ca_file) {
        (Some(x509), Some(ca_file)) => {
            ca::verify(ca_file, x509.data(), host)?;
            Ok(CertificateCheckStatus::CertificateOk)
        }
        // The system's trust (SSL_CERT_FILE, SSL_CERT_DIR), as libgit2 read it.
        _ => Ok(CertificateCheckStatus::CertificatePassthrough),
    }
}
