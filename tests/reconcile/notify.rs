//! Notifications as a receiver sees them: the events chosen, signed, a
//! one-line `text`, retried after a 500, failures in the status without a
//! credential, and a receiver that hangs delaying nothing.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sluice::api::notify::Notification;
use sluice::reconcile::access::WebhookSecret;
use sluice::reconcile::notify::NotifyConfig;
use sluice::reconcile::{Config, Daemon};
use sluice::rollout::machine::Command;

use super::fixture::{self, Engine, Repo, TOKEN, wait_for};

const SECRET: &str = "notification-secret-0123";

/// A request as received: its path, signature header and body.
type Delivery = (String, Option<String>, Bytes);

#[derive(Clone, Default)]
struct Received {
    all: Arc<Mutex<Vec<Delivery>>>,
}

impl Received {
    fn of(&self, path: &str) -> Vec<(Option<String>, Bytes)> {
        self.all
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, s, b)| (s.clone(), b.clone()))
            .collect()
    }
}

async fn record(r: &Received, path: &str, headers: &HeaderMap, body: Bytes) -> usize {
    let sig = headers
        .get("x-sluice-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut all = r.all.lock().unwrap();
    all.push((path.to_string(), sig, body));
    all.iter().filter(|(p, _, _)| p == path).count()
}

/// A receiver: `/flaky` answers 500 to its first request, then 200;
/// `/hang` never answers in time.
async fn receiver() -> (String, Received) {
    let r = Received::default();
    let app = Router::new()
        .route(
            "/flaky",
            post(
                |State(r): State<Received>, h: HeaderMap, b: Bytes| async move {
                    if record(&r, "/flaky", &h, b).await == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .route(
            "/hang",
            post(
                |State(r): State<Received>, h: HeaderMap, b: Bytes| async move {
                    record(&r, "/hang", &h, b).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    StatusCode::OK
                },
            ),
        )
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), r)
}

fn config(repo: &Repo, state: &Path, engines: &[Engine], notify: NotifyConfig) -> Config {
    let mut c = fixture::config(repo, state, engines);
    c.listen = None;
    c.notify = Some(notify);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_notified_signed_retried_and_failures_shown_without_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let engines = fixture::engines(1).await;
    let (base, received) = receiver().await;
    // A port nothing listens on, named with a user and password.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut n = NotifyConfig::new(vec![
        format!("{base}/flaky"),
        format!("{base}/hang"),
        // A secret in the path and the query, as Slack's and others'
        // webhook URLs carry theirs.
        format!(
            "http://hook-user:hook-password@127.0.0.1:{closed}/services/T0/B0/path-secret-0123?token=query-secret"
        ),
    ]);
    n.secret = Some(SECRET.to_string());
    n.first_retry = Duration::from_millis(50);
    n.retries = 2;
    n.timeout = Duration::from_millis(500);
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines, n))
        .await
        .unwrap();
    wait_for("installed", Duration::from_secs(20), || {
        daemon.status().stable
    })
    .await;

    // A notified event: the command is answered while `/hang` still holds
    // its delivery.
    let start = Instant::now();
    daemon
        .command(Command::Pause {
            reason: Some("freeze\nfor the release".into()),
        })
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    // An event not asked for.
    daemon.command(Command::Resume).await.unwrap();

    let flaky = wait_for("the retried delivery", Duration::from_secs(10), || {
        let got = received.of("/flaky");
        (got.len() >= 2).then_some(got)
    })
    .await;
    // Once after the 500; the same body each time, signed.
    let secret = WebhookSecret::new(SECRET);
    for (sig, body) in &flaky {
        assert_eq!(sig.as_deref(), secret.sign(body).as_deref());
        assert_eq!(body, &flaky[0].1);
    }
    let n: Notification = serde_json::from_slice(&flaky[0].1).unwrap();
    assert_eq!(n.event, "pause");
    assert_eq!(n.branch, "main");
    assert!(!n.text.contains('\n'), "{}", n.text);
    assert!(
        n.text.starts_with("sluice: pause on main (") && n.text.contains(", operator): "),
        "{}",
        n.text
    );
    assert!(n.text.contains("freeze for the release"), "{}", n.text);

    // The closed port and the hanging receiver fail after their retries;
    // the status says so, without the password.
    let d = wait_for("two failures", Duration::from_secs(20), || {
        daemon.status().notifications.filter(|d| d.failed >= 2)
    })
    .await;
    assert_eq!(d.delivered, 1, "{d:?}");
    assert_eq!(d.failed, 2, "{d:?}");
    let text = serde_json::to_string(&daemon.status()).unwrap();
    assert!(!text.contains("hook-password"), "{text}");
    assert!(!text.contains("hook-user"), "{text}");
    assert!(!text.contains("path-secret"), "{text}");
    assert!(!text.contains("query-secret"), "{text}");
    // The last failure is shown: the closed port's or the hanging one's.
    assert!(
        text.contains(&format!("http://127.0.0.1:{closed}/… ["))
            || text.contains(&format!("{}/… [", base)),
        "{text}"
    );
    assert!(!text.contains("/hang"), "{text}");
    // Only the pause was notified.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.of("/flaky").len(), 2);
    daemon.stop().await.unwrap();
}

#[test]
fn bad_notify_flags_stop_the_daemon_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["reconcile", "--repo"])
            .arg(dir.path())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--engine", "http://127.0.0.1:9", "--admin-token", TOKEN])
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap()
    };
    for (args, says) in [
        (
            &["--notify", "not a url"][..],
            "--notify `<not a URL>` is not a URL",
        ),
        (
            &["--notify", "ftp://u:secretpw@example.test/"][..],
            "is not an http(s) URL",
        ),
        (
            &[
                "--notify",
                "http://127.0.0.1:9/",
                "--notify-on",
                "rollback,nope",
            ][..],
            "`nope` is not an audit event",
        ),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("secretpw"), "{err}");
    }
}
