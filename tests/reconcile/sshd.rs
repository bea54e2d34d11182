//! An OpenSSH server on 127.0.0.1 for the daemon's ssh transport: `sshd`
//! as a child that does not detach (`-D -e -f`), with its own config file,
//! a generated ed25519 host key, a free port, public-key logins only, for
//! the user the tests run as (root in CI: `PermitRootLogin
//! prohibit-password`), keys from a temporary `authorized_keys` file, and
//! its log (LogLevel VERBOSE) in a file the tests read to count the
//! authentication attempts a client makes. `git-upload-pack` and
//! `git-receive-pack` are reached through the login's PATH.
//!
//! Also what a client needs: a user key (with or without a passphrase) and
//! a `known_hosts` file with the server's host key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server process and its files.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// The server's log (standard error).
    pub log: PathBuf,
    /// The keys that may log in, one per line.
    pub authorized_keys: PathBuf,
    /// The server's host key (public part).
    pub host_key_pub: PathBuf,
}

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "sluice-test",
            "-f",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    /// Starts a server in `dir` (its keys, config and log there) that
    /// admits the public key `user_key_pub`.
    pub fn start(dir: &Path, user_key_pub: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        // sshd checks its privilege separation folder exists.
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = dir.join("host_ed25519");
        keygen(&host_key, "");
        let authorized_keys = dir.join("authorized_keys");
        std::fs::copy(user_key_pub, &authorized_keys).unwrap();
        let config = dir.join("sshd_config");
        let log = dir.join("sshd.log");
        let port = free_port();
        std::fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {}\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 LogLevel VERBOSE\n\
                 MaxAuthTries 20\n",
                host_key.display(),
                authorized_keys.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("sshd (openssh-server) is installed");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "sshd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd {
            child,
            port,
            dir: dir.to_path_buf(),
            log,
            authorized_keys,
            host_key_pub: host_key.with_extension("pub"),
        }
    }

    /// `ssh://root@127.0.0.1:PORT/<path>` of a repository on this machine.
    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", user(), self.port, repo.display())
    }

    /// A known_hosts file that knows this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        let key = std::fs::read_to_string(&self.host_key_pub).unwrap();
        let mut words = key.split_whitespace();
        let (kind, blob) = (words.next().unwrap(), words.next().unwrap());
        let path = self.dir.join("known_hosts");
        std::fs::write(
            &path,
            format!(
                "# the test server\n[127.0.0.1]:{} {kind} {blob}\n",
                self.port
            ),
        )
        .unwrap();
        path
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Public-key attempts the server refused so far.
    pub fn refused_keys(&self) -> usize {
        self.log().matches("Failed publickey").count()
    }

    /// Logins so far.
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user the tests run as (the login user).
pub fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = Command::new("id").arg("-un").output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
}
