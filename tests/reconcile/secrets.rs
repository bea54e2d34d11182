//! No credential ever shows (SPEC §6 "Remotes"), read from outside: the
//! `sluice reconcile` binary over HTTPS with a token (in the environment and
//! in the URL) and the test CA through `SSL_CERT_FILE`, and over ssh with a
//! key whose passphrase is in the environment. Each daemon installs,
//! rolls a commit out, is rolled back and pushes the revert, then its
//! credential stops working; every output is read for the token and the
//! passphrase: the log lines (JSON and text), `sluice status` (human and
//! JSON), the audit log, the mirror's config, and the errors of starts that
//! fail (exit 2). A start on an unsupported or unreachable URL is exit 2
//! with a clear message, at once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::fixture::{self, GOOD, Repo, TOKEN, git};
use super::transports::{GIT_TOKEN, PASSPHRASE, auth_server, slow_toml, test_ca};

const LIMIT: Duration = Duration::from_secs(40);

/// `sluice reconcile` with `args`, `env`; standard error to `log`.
fn reconcile(
    url: &str,
    state: &Path,
    engine: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["reconcile", "--repo", url, "--engine", engine])
        .arg("--state-dir")
        .arg(state)
        .args(["--admin-token", TOKEN, "--listen", "127.0.0.1:0"])
        .args(["--interval", "100ms", "--git-timeout", "10s"])
        .args(args)
        .env_remove("SLUICE_GIT_TOKEN")
        .env_remove("SLUICE_GIT_SSH_PASSPHRASE")
        .env_remove("SSL_CERT_FILE")
        .env("RUST_LOG", "info,sluice=debug")
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A daemon binary running; killed when dropped.
struct Running {
    child: Child,
    state: PathBuf,
    log: PathBuf,
}

impl Running {
    fn start(mut cmd: Command, state: &Path) -> Running {
        let log = state.with_extension("log");
        cmd.stderr(std::fs::File::create(&log).unwrap());
        Running {
            child: cmd.spawn().unwrap(),
            state: state.to_path_buf(),
            log,
        }
    }

    fn addr(&self) -> Option<String> {
        std::fs::read_to_string(self.state.join("control.addr")).ok()
    }

    /// `sluice status` (`json`: `--format json`): stdout.
    fn status(&self, json: bool) -> String {
        let Some(addr) = self.addr() else {
            return String::new();
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["status", "--daemon", &format!("http://{addr}")])
            .env("SLUICE_ADMIN_TOKEN", TOKEN);
        if json {
            cmd.args(["--format", "json"]);
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.status(true)).unwrap_or(serde_json::Value::Null)
    }

    fn operator(&self, args: &[&str]) {
        let addr = self.addr().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--daemon", &format!("http://{addr}")])
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// Waits for `f` of the JSON status.
    fn wait(&mut self, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        let start = Instant::now();
        while !f(&self.json()) {
            if let Ok(Some(code)) = self.child.try_wait() {
                panic!(
                    "the daemon stopped ({code}) waiting for {what}:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < LIMIT,
                "{what} not seen in {LIMIT:?}:\n{}\n{}",
                self.status(false),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every output of the daemon, named.
    fn outputs(&self) -> Vec<(String, String)> {
        vec![
            ("log".into(), self.log()),
            ("status".into(), self.status(false)),
            ("status --format json".into(), self.status(true)),
            (
                "audit.jsonl".into(),
                std::fs::read_to_string(self.state.join("audit.jsonl")).unwrap_or_default(),
            ),
            (
                "state.json".into(),
                std::fs::read_to_string(self.state.join("state.json")).unwrap_or_default(),
            ),
            (
                "git/config".into(),
                std::fs::read_to_string(self.state.join("git/config")).unwrap_or_default(),
            ),
        ]
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs, rolls out `GOOD`, rolls back, waits for the revert pushed.
fn round_trip(d: &mut Running, repo: &Repo) {
    d.wait("the first commit installed", |s| !s["stable"].is_null());
    let c = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    d.wait("the rollout in shadow", |s| {
        s["phase"] == "shadow" && s["candidate"]["commit"] == c.as_str()
    });
    d.operator(&["rollback", "--reason", "secrets test"]);
    d.wait("the revert pushed", |s| {
        s["reverts"].as_array().is_some_and(Vec::is_empty)
            && git(&repo.bare, &["log", "-1", "--format=%an", "main"]) == "sluice reconcile"
    });
}

#[track_caller]
fn assert_clean(outputs: &[(String, String)], secrets: &[&str]) {
    for (name, text) in outputs {
        assert!(!text.is_empty() || name == "git/config", "{name} is empty");
        for secret in secrets {
            assert!(!text.contains(secret), "{name} shows a credential:\n{text}");
        }
    }
}

/// A failed start: exit 2, its standard error, within `within`.
fn failed_start(mut cmd: Command, within: Duration) -> String {
    let started = Instant::now();
    let out: Output = cmd.stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(started.elapsed() < within, "{:?}: {err}", started.elapsed());
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_ever_shows_in_any_output() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.commit("Slow stages", &[("sluice.toml", Some(&slow_toml()))]);
    let engines = fixture::engines(2).await;
    let ca = test_ca(&tmp.path().join("ca"));
    let (server, auth_file, _) = auth_server(tmp.path(), Some(&ca));
    let url = server.url("origin.git");
    let ca_env = ca.ca.to_string_lossy().into_owned();

    // HTTPS: the token in the environment, the CA through SSL_CERT_FILE,
    // JSON log lines.
    let state = tmp.path().join("https-state");
    let mut d = Running::start(
        reconcile(
            &url,
            &state,
            &engines[0].url(),
            &["--log-format", "json"],
            &[("SLUICE_GIT_TOKEN", GIT_TOKEN), ("SSL_CERT_FILE", &ca_env)],
        ),
        &state,
    );
    round_trip(&mut d, &repo);
    // The token is revoked: fetches fail, in status and the audit log.
    std::fs::write(&auth_file, "x-access-token:ghs-rotated-000000000000000").unwrap();
    d.wait("the fetch failure", |s| {
        s["git_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused the token"))
            && s["last"]["event"] == "fetch_failed"
    });
    let mut outputs = d.outputs();
    assert!(
        outputs[0].1.contains("fetching the branch failed"),
        "{}",
        outputs[0].1
    );
    drop(d);

    // Starts that fail: the token in the URL (wrong), then in the
    // environment (wrong); the server's CA not trusted; an unsupported and
    // an unreachable URL. Each is exit 2 with a clear message.
    let in_url = url.replace("https://", &format!("https://x-access-token:{GIT_TOKEN}@"));
    let err = failed_start(
        reconcile(
            &in_url,
            &tmp.path().join("s1"),
            &engines[1].url(),
            &[],
            &[("SSL_CERT_FILE", &ca_env)],
        ),
        Duration::from_secs(10),
    );
    assert!(
        err.contains("refused the token (user `x-access-token`)"),
        "{err}"
    );
    outputs.push(("a start with the token in the URL".into(), err));
    let err = failed_start(
        reconcile(
            &url,
            &tmp.path().join("s2"),
            &engines[1].url(),
            &["--git-ca-file", &ca_env],
            &[("SLUICE_GIT_TOKEN", GIT_TOKEN)],
        ),
        Duration::from_secs(10),
    );
    assert!(err.contains("refused the token"), "{err}");
    outputs.push(("a start with --git-ca-file".into(), err));
    let err = failed_start(
        reconcile(
            &url,
            &tmp.path().join("s3"),
            &engines[1].url(),
            &[],
            &[("SLUICE_GIT_TOKEN", GIT_TOKEN)],
        ),
        Duration::from_secs(10),
    );
    assert!(
        err.contains("cannot be reached") && err.contains("certificate"),
        "{err}"
    );
    outputs.push(("a start without the CA".into(), err));
    let err = failed_start(
        reconcile(
            &format!("git://x-access-token:{GIT_TOKEN}@127.0.0.1/origin.git"),
            &tmp.path().join("s4"),
            &engines[1].url(),
            &[],
            &[],
        ),
        Duration::from_secs(5),
    );
    assert!(
        err.contains("`git://` is not a transport the daemon speaks"),
        "{err}"
    );
    outputs.push(("an unsupported URL".into(), err));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = failed_start(
        reconcile(
            &format!("https://127.0.0.1:{port}/origin.git"),
            &tmp.path().join("s5"),
            &engines[1].url(),
            &[],
            &[("SLUICE_GIT_TOKEN", GIT_TOKEN)],
        ),
        Duration::from_secs(5),
    );
    assert!(err.contains("cannot be reached"), "{err}");
    outputs.push(("an unreachable URL".into(), err));

    // ssh: the key's passphrase in the environment, text log lines.
    let ssh_dir = tmp.path().join("ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let key = ssh_dir.join("deploy_key");
    super::sshd::keygen(&key, PASSPHRASE);
    let sshd = super::sshd::Sshd::start(&ssh_dir.join("sshd"), &key.with_extension("pub"));
    let known = sshd.known_hosts();
    let ssh_url = sshd.url(&repo.bare);
    let key_arg = key.to_string_lossy().into_owned();
    let known_arg = known.to_string_lossy().into_owned();
    let ssh_args = ["--git-ssh-key", &key_arg, "--git-known-hosts", &known_arg];
    let state = tmp.path().join("ssh-state");
    let mut d = Running::start(
        reconcile(
            &ssh_url,
            &state,
            &engines[1].url(),
            &ssh_args,
            &[("SLUICE_GIT_SSH_PASSPHRASE", PASSPHRASE)],
        ),
        &state,
    );
    round_trip(&mut d, &repo);
    // The deploy key is removed from the server.
    std::fs::write(&sshd.authorized_keys, "").unwrap();
    d.wait("the fetch failure", |s| {
        s["git_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused the ssh key"))
    });
    outputs.extend(d.outputs());
    drop(d);
    let err = failed_start(
        reconcile(
            &ssh_url,
            &tmp.path().join("s6"),
            &engines[1].url(),
            &ssh_args,
            &[("SLUICE_GIT_SSH_PASSPHRASE", PASSPHRASE)],
        ),
        Duration::from_secs(10),
    );
    assert!(err.contains("refused the ssh key"), "{err}");
    outputs.push(("an ssh start with the key refused".into(), err));

    eprintln!(
        "read {} outputs ({} bytes) for the token and the passphrase",
        outputs.len(),
        outputs.iter().map(|(_, t)| t.len()).sum::<usize>()
    );
    assert_clean(&outputs, &[GIT_TOKEN, PASSPHRASE]);
}
