//! The daemon against real remotes on loopback (issue 10, SPEC §6
//! "Remotes"): git's smart HTTP behind basic auth, the same behind TLS with
//! a CA made by the test (`openssl` command line), and `sshd` with a
//! generated host key, a user key with a passphrase and a known_hosts file.
//! For each: the daemon watches, rolls out, rolls back and pushes the
//! revert through the transport; a wrong credential, an unknown or changed
//! host key, an untrusted certificate stop a first start with a clear error
//! (exit 2 for the binary) after one attempt, never a loop; a credential
//! that stops working under a running daemon shows in status and once in
//! the audit log, and fetching backs off.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice::reconcile::remote::{GitAuth, Remote, Transport};
use sluice::reconcile::{Config, Daemon};
use sluice::rollout::machine::Command as Op;

use super::fixture::{self, GOOD, Repo, TOML, audit, git, wait_for};
use super::githttp::{GitHttp, Serve};
use super::sshd::{self, Sshd};

/// How long any one wait may take (a loaded machine builds slowly).
const LIMIT: Duration = Duration::from_secs(40);

/// The git token of the tests.
pub const GIT_TOKEN: &str = "ghs-test-token-7f3a9c2e51d84b06";

/// The passphrase of the tests' ssh key.
pub const PASSPHRASE: &str = "tidy-otter-passphrase-42";

/// `sluice.toml` whose live stages wait an hour: only operators move them.
pub fn slow_toml() -> String {
    TOML.replace(
        "min_duration = \"200ms\"\nmax_duration = \"60s\"",
        "min_duration = \"1h\"\nmax_duration = \"2h\"",
    )
}

/// A test CA and a server certificate it signed for 127.0.0.1.
pub struct Ca {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// Makes a CA and a server certificate (P-256 keys: quick) in `dir`.
pub fn test_ca(dir: &Path) -> Ca {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    ca_args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=sluice test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca_args);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    Ca {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// A basic-auth server (TLS when `ca` is given) serving `root`, admitting
/// `x-access-token:GIT_TOKEN`; its attempts' log.
pub fn auth_server(root: &Path, ca: Option<&Ca>) -> (GitHttp, PathBuf, PathBuf) {
    let auth_file = root.join(".auth");
    let log = root.join(".auth.log");
    std::fs::write(&auth_file, format!("x-access-token:{GIT_TOKEN}")).unwrap();
    let server = GitHttp::start_with(
        root,
        &Serve {
            auth_file: Some(auth_file.clone()),
            log: Some(log.clone()),
            tls: ca.map(|c| (c.cert.clone(), c.key.clone())),
        },
    );
    (server, auth_file, log)
}

/// Lines of the attempts' log that are `what`.
pub fn count(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == what)
        .count()
}

fn config(
    repo: &Repo,
    state: &Path,
    engines: &[fixture::Engine],
    url: &str,
    auth: GitAuth,
) -> Config {
    let mut c = fixture::config(repo, state, engines);
    c.repo = url.to_string();
    c.git_auth = auth;
    c
}

/// Watches, rolls out, rolls back and pushes the revert through `url`.
async fn watch_roll_out_roll_back(repo: &Repo, tmp: &Path, url: &str, auth: GitAuth) {
    let s0 = repo.commit("Slow stages", &[("sluice.toml", Some(&slow_toml()))]);
    let engines = fixture::engines(1).await;
    let state = tmp.join("state");
    let daemon = Daemon::start(config(repo, &state, &engines, url, auth))
        .await
        .unwrap();
    wait_for("the first commit installed", LIMIT, || {
        let s = daemon.status();
        (s.stable?.commit.as_deref() == Some(s0.as_str())).then_some(())
    })
    .await;
    let c = repo.commit(
        "Block the shell tool",
        &[("policies/shell.policy", Some(GOOD))],
    );
    daemon.trigger_fetch();
    wait_for("the rollout in shadow", LIMIT, || {
        let s = daemon.status();
        (s.phase == "shadow" && s.candidate?.commit == c).then_some(())
    })
    .await;
    daemon
        .command(Op::rollback(Some("transport test".into())))
        .await
        .unwrap();
    wait_for("the revert pushed", LIMIT, || {
        audit(&state)
            .iter()
            .any(|t| t.event == "reverted" && t.commit.as_deref() == Some(c.as_str()))
            .then_some(())
    })
    .await;
    let subject = git(&repo.bare, &["log", "-1", "--format=%an: %s", "main"]);
    assert_eq!(subject, "sluice reconcile: Revert \"Block the shell tool\"");
    let s = daemon.status();
    assert_eq!(s.git_error, None);
    assert_eq!(s.repo, Remote::parse(url).unwrap().url);
    assert!(!s.repo.contains(GIT_TOKEN));
    let mirror_config = std::fs::read_to_string(state.join("git/config")).unwrap();
    assert!(!mirror_config.contains(GIT_TOKEN), "{mirror_config}");
    daemon.stop().await.unwrap();
}

/// A first start that fails: its error.
async fn first_start_error(repo: &Repo, tmp: &Path, url: &str, auth: GitAuth) -> String {
    let engines = fixture::engines(1).await;
    let state = tmp.join(format!("state-{}", rand_suffix()));
    let started = Instant::now();
    let err = Daemon::start(config(repo, &state, &engines, url, auth))
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(
        !err.contains(GIT_TOKEN) && !err.contains(PASSPHRASE),
        "{err}"
    );
    err
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn token_auth(token: &str) -> GitAuth {
    GitAuth {
        token: Some(token.to_string()),
        ..GitAuth::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_token_and_a_test_ca_watches_rolls_out_rolls_back_and_pushes() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let ca = test_ca(&tmp.path().join("ca"));
    let (server, _, log) = auth_server(tmp.path(), Some(&ca));
    let url = server.url("origin.git");
    assert!(url.starts_with("https://"));

    // Without the CA, the certificate is refused: a first start stops.
    let err = first_start_error(&repo, tmp.path(), &url, token_auth(GIT_TOKEN)).await;
    assert!(
        err.contains("cannot be reached") && err.contains("certificate"),
        "{err}"
    );
    assert_eq!(count(&log, "ok"), 0, "nothing sent to an untrusted server");

    // A CA file that did not sign it: refused, saying so.
    let other = test_ca(&tmp.path().join("other-ca"));
    let mut auth = token_auth(GIT_TOKEN);
    auth.ca_file = Some(other.ca.clone());
    let err = first_start_error(&repo, tmp.path(), &url, auth).await;
    assert!(
        err.contains("the certificate of 127.0.0.1 is refused"),
        "{err}"
    );

    // A wrong token: one attempt, refused, said clearly.
    let mut auth = token_auth("ghs-wrong-token-00000000000000");
    auth.ca_file = Some(ca.ca.clone());
    let wrong_before = count(&log, "401 wrong");
    let err = first_start_error(&repo, tmp.path(), &url, auth).await;
    assert!(
        err.contains("refused the token (user `x-access-token`)"),
        "{err}"
    );
    assert!(!err.contains("ghs-wrong-token"), "{err}");
    assert_eq!(count(&log, "401 wrong") - wrong_before, 1, "one attempt");

    // No token at all: the server's 401 says what is missing.
    let auth = GitAuth {
        ca_file: Some(ca.ca.clone()),
        ..GitAuth::default()
    };
    let err = first_start_error(&repo, tmp.path(), &url, auth).await;
    assert!(
        err.contains("--git-token-file or SLUICE_GIT_TOKEN"),
        "{err}"
    );

    let mut auth = token_auth(GIT_TOKEN);
    auth.ca_file = Some(ca.ca.clone());
    watch_roll_out_roll_back(&repo, tmp.path(), &url, auth).await;
    assert!(count(&log, "ok") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_auth_watches_rolls_out_rolls_back_and_pushes() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let (server, _, log) = auth_server(tmp.path(), None);
    // The token in the URL: taken out of it, used, never kept.
    let url = server
        .url("origin.git")
        .replace("http://", &format!("http://x-access-token:{GIT_TOKEN}@"));
    watch_roll_out_roll_back(&repo, tmp.path(), &url, GitAuth::default()).await;
    assert!(count(&log, "ok") > 0);
    assert_eq!(count(&log, "401 wrong"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_under_a_running_daemon_shows_backs_off_and_never_loops() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let (server, auth_file, log) = auth_server(tmp.path(), None);
    let engines = fixture::engines(1).await;
    let state = tmp.path().join("state");
    let url = server.url("origin.git");
    let daemon = Daemon::start(config(&repo, &state, &engines, &url, token_auth(GIT_TOKEN)))
        .await
        .unwrap();
    wait_for("the first commit installed", LIMIT, || {
        daemon.status().stable
    })
    .await;

    // The forge revokes the token.
    std::fs::write(&auth_file, "x-access-token:ghs-rotated-000000000000000").unwrap();
    daemon.trigger_fetch();
    let error = wait_for("the failure in status", LIMIT, || daemon.status().git_error).await;
    assert!(
        error.contains("refused the token (user `x-access-token`)"),
        "{error}"
    );
    wait_for("the audit line", LIMIT, || {
        audit(&state)
            .iter()
            .any(|t| t.event == "fetch_failed" && t.reason.contains("refused the token"))
            .then_some(())
    })
    .await;
    // Over the next two seconds (20 intervals of 100 ms), the daemon backs
    // off, and each fetch makes one attempt with the token.
    let before = (count(&log, "401 wrong"), daemon.status().fetch_failures);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = daemon.status();
    let wrong = count(&log, "401 wrong") - before.0;
    let fetches = s.fetch_failures - before.1;
    eprintln!(
        "in 2 s: {fetches} failed fetches, {wrong} refused attempts; retry in {:?} ms",
        s.fetch_retry_ms
    );
    assert!(
        wrong <= fetches as usize + 1,
        "{wrong} attempts for {fetches} fetches"
    );
    assert!(fetches <= 8, "{fetches} fetches in 2 s: no backoff");
    assert!(s.fetch_retry_ms.unwrap() > 100, "{s:?}");
    let fetch_failed = audit(&state)
        .iter()
        .filter(|t| t.event == "fetch_failed")
        .count();
    assert_eq!(fetch_failed, 1, "said once");
    let (_, human, _) = status_cli(&daemon);
    assert!(
        human.contains("failed fetches in a row; next attempt in"),
        "{human}"
    );

    // A new token on the forge's side is what the daemon has: it recovers.
    std::fs::write(&auth_file, format!("x-access-token:{GIT_TOKEN}")).unwrap();
    daemon.trigger_fetch();
    wait_for("fetching again", LIMIT, || {
        audit(&state)
            .iter()
            .any(|t| t.event == "fetch_restored")
            .then_some(())
    })
    .await;
    // The status of the iteration that wrote the audit line follows it.
    wait_for("the status without the error", LIMIT, || {
        let s = daemon.status();
        (s.git_error.is_none() && s.fetch_failures == 0).then_some(())
    })
    .await;
    daemon.stop().await.unwrap();
}

/// `sluice status` of a daemon in this process: (code, stdout, stderr).
fn status_cli(daemon: &Daemon) -> (i32, String, String) {
    let addr = daemon.control_addr().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--daemon", &format!("http://{addr}")])
        .env("SLUICE_ADMIN_TOKEN", fixture::TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An ssh server admitting a key with [`PASSPHRASE`]; the key.
fn ssh_setup(dir: &Path) -> (Sshd, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("deploy_key");
    sshd::keygen(&key, PASSPHRASE);
    let server = Sshd::start(&dir.join("sshd"), &key.with_extension("pub"));
    (server, key)
}

fn ssh_auth(key: &Path, known_hosts: &Path) -> GitAuth {
    GitAuth {
        ssh_key: Some(key.to_path_buf()),
        ssh_passphrase: Some(PASSPHRASE.to_string()),
        known_hosts: Some(known_hosts.to_path_buf()),
        ..GitAuth::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_with_a_deploy_key_watches_rolls_out_rolls_back_and_pushes() {
    fixture::logs();
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let (server, key) = ssh_setup(&tmp.path().join("ssh"));
    let url = server.url(&repo.bare);
    let known = server.known_hosts();

    // An unknown host: refused before any key is offered.
    let empty = tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let err = first_start_error(&repo, tmp.path(), &url, ssh_auth(&key, &empty)).await;
    assert!(
        err.contains(&format!("the host [127.0.0.1]:{} is unknown", server.port)),
        "{err}"
    );
    assert_eq!(server.logins(), 0);

    // A changed host key: refused, saying so.
    let other = tmp.path().join("other_host");
    sshd::keygen(&other, "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let changed = tmp.path().join("changed_known_hosts");
    let mut words = other_pub.split_whitespace();
    std::fs::write(
        &changed,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            server.port,
            words.next().unwrap(),
            words.next().unwrap()
        ),
    )
    .unwrap();
    let err = first_start_error(&repo, tmp.path(), &url, ssh_auth(&key, &changed)).await;
    assert!(err.contains("has CHANGED"), "{err}");
    assert_eq!(server.logins(), 0);

    // A key the server does not admit: one attempt, refused, said clearly.
    let stranger = tmp.path().join("stranger");
    sshd::keygen(&stranger, "");
    let mut auth = ssh_auth(&stranger, &known);
    auth.ssh_passphrase = None;
    let refused = server.refused_keys();
    let err = first_start_error(&repo, tmp.path(), &url, auth).await;
    assert!(err.contains("refused the ssh key"), "{err}");
    let attempts = server.refused_keys() - refused;
    assert!(attempts <= 1, "{attempts} attempts:\n{}", server.log());

    // A wrong passphrase: the key cannot be read; said, not looped.
    let mut auth = ssh_auth(&key, &known);
    auth.ssh_passphrase = Some("not-the-passphrase".into());
    let err = first_start_error(&repo, tmp.path(), &url, auth).await;
    assert!(err.contains("ssh key"), "{err}");

    watch_roll_out_roll_back(&repo, tmp.path(), &url, ssh_auth(&key, &known)).await;
    assert!(server.logins() >= 2, "fetches and the push logged in");
}

#[test]
fn repo_urls_are_read_as_git_reads_them() {
    let scp = Remote::parse("git@github.com:acme/policies.git").unwrap();
    assert_eq!(scp.transport, Transport::Ssh);
    assert_eq!(scp.host.as_deref(), Some("github.com"));
    assert_eq!(scp.user.as_deref(), Some("git"));
    assert_eq!(scp.url, "git@github.com:acme/policies.git");
    let ssh = Remote::parse("ssh://git@gitlab.example.org:2222/acme/policies.git").unwrap();
    assert_eq!((ssh.transport, ssh.port), (Transport::Ssh, Some(2222)));
    let https = Remote::parse(&format!(
        "https://x-access-token:{GIT_TOKEN}@github.com/acme/p.git"
    ))
    .unwrap();
    assert_eq!(https.transport, Transport::Https);
    assert_eq!(https.url, "https://github.com/acme/p.git");
    let local = Remote::parse("./some/folder").unwrap();
    assert_eq!(local.transport, Transport::Local);
    assert!(Path::new(&local.url).is_absolute());
    let err = Remote::parse("git://github.com/acme/p.git")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`git://` is not a transport the daemon speaks"),
        "{err}"
    );
    let err = Remote::parse("ssh://git:pw@host/x.git")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("carries no password") && !err.contains("pw@"),
        "{err}"
    );
    // The one redaction: userinfo out of every URL, the secrets replaced.
    let auth = GitAuth {
        token: Some(GIT_TOKEN.into()),
        ssh_passphrase: Some(PASSPHRASE.into()),
        ..GitAuth::default()
    };
    let shown = auth.redact(&format!(
        "fetching https://u:{GIT_TOKEN}@h/x.git failed; tried {PASSPHRASE} and {GIT_TOKEN}; \
         ssh://git@h/x.git"
    ));
    assert_eq!(
        shown,
        "fetching https://h/x.git failed; tried [REDACTED] and [REDACTED]; ssh://git@h/x.git"
    );
    assert!(!format!("{auth:?}").contains(GIT_TOKEN));
}
