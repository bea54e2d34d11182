//! The control API's separate powers and the git hook as forges call it:
//! GitHub's signed deliveries, GitLab's token, pushes to other branches,
//! the read token, the operator token, and who gave a command in the audit
//! log.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice::reconcile::access::WebhookSecret;
use sluice::reconcile::{Config, Daemon};

use super::fixture::{self, Engine, Repo, TOKEN, audit, wait_for};

const SECRET: &str = "forge-webhook-secret-0123";
const OPERATOR: &str = "operator-token-0123456789";
const READER: &str = "read-only-token-0123456789";

fn config(repo: &Repo, state: &Path, engines: &[Engine]) -> Config {
    let mut c = fixture::config(repo, state, engines);
    // Only the hook fetches: a delivery that is refused or ignored leaves
    // the fetched head where it was.
    c.interval = Duration::from_secs(3600);
    c.operator_token = Some(OPERATOR.to_string());
    c.read_token = Some(READER.to_string());
    c.webhook_secret = Some(SECRET.to_string());
    c
}

fn push(branch: &str) -> String {
    serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": "1111111111111111111111111111111111111111",
        "commits": [],
    })
    .to_string()
}

struct Hook {
    url: String,
    http: reqwest::Client,
}

impl Hook {
    async fn send(&self, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let mut req = self.http.post(&self.url).body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn github(&self, event: &str, body: &str, signed_with: &str) -> (u16, String) {
        let sig = WebhookSecret::new(signed_with)
            .sign(body.as_bytes())
            .unwrap();
        self.send(
            &[
                ("x-github-event", event),
                ("x-hub-signature-256", &sig),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forges_reach_the_hook_with_their_own_credentials_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let engines = fixture::engines(1).await;
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    let first = repo.log()[0].0.clone();
    wait_for(
        "the first commit installed",
        Duration::from_secs(20),
        || {
            daemon.trigger_fetch();
            daemon.status().stable
        },
    )
    .await;
    let hook = Hook {
        url: format!("http://{addr}/v1/hooks/git"),
        http: reqwest::Client::new(),
    };
    let head = || daemon.status().head;
    assert_eq!(head().as_deref(), Some(first.as_str()));

    let c1 = repo.commit("Another rule", &[("policies/extra.policy", Some(EXTRA))]);
    let body = push("main");

    // Refused: no credential, a signature by another secret, a tampered
    // body, a wrong GitLab token, the read token, the secret as a bearer
    // token.
    let refused: Vec<(u16, String)> = vec![
        hook.send(&[("x-github-event", "push")], &body).await,
        hook.github("push", &body, "some-other-secret-0123").await,
        {
            let sig = WebhookSecret::new(SECRET).sign(body.as_bytes()).unwrap();
            let tampered = body.replace("main", "mainx");
            hook.send(&[("x-hub-signature-256", &sig)], &tampered).await
        },
        hook.send(
            &[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", "wrong-token-0123456"),
            ],
            &body,
        )
        .await,
        hook.send(&[("authorization", &format!("Bearer {READER}"))], &body)
            .await,
        hook.send(&[("authorization", &format!("Bearer {SECRET}"))], &body)
            .await,
    ];
    for (i, (code, text)) in refused.iter().enumerate() {
        assert_eq!(*code, 401, "delivery {i}: {text}");
        assert!(!text.contains(SECRET), "{text}");
    }

    // Acknowledged and ignored: a push to another branch, an event other
    // than a push; GitHub's ping answered.
    let (code, text) = hook.github("push", &push("feature"), SECRET).await;
    assert_eq!(code, 202, "{text}");
    assert!(
        text.contains("ignored: a push to `refs/heads/feature`"),
        "{text}"
    );
    let (code, text) = hook.github("issues", "{}", SECRET).await;
    assert_eq!(code, 202, "{text}");
    assert!(text.contains("not a push"), "{text}");
    let (code, text) = hook.github("ping", r#"{"zen":"hi"}"#, SECRET).await;
    assert_eq!(code, 200, "{text}");
    // A signed body that is not a push delivery: 400, nothing fetched.
    let (code, text) = hook.github("push", "not json", SECRET).await;
    assert_eq!(code, 400, "{text}");

    // None of that fetched the branch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(head().as_deref(), Some(first.as_str()));

    // GitHub's signed push to the branch fetches it at once.
    let (code, text) = hook.github("push", &body, SECRET).await;
    assert_eq!(code, 202, "{text}");
    wait_for("the pushed head fetched", Duration::from_secs(10), || {
        (head().as_deref() == Some(c1.as_str())).then_some(())
    })
    .await;

    // GitLab's token does too.
    let c2 = repo.commit("A third rule", &[("policies/more.policy", Some(MORE))]);
    let (code, text) = hook
        .send(
            &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", SECRET)],
            &body,
        )
        .await;
    assert_eq!(code, 202, "{text}");
    wait_for("the GitLab push fetched", Duration::from_secs(10), || {
        (head().as_deref() == Some(c2.as_str())).then_some(())
    })
    .await;
    daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_has_its_power_and_the_audit_log_says_who_acted() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let engines = fixture::engines(1).await;
    let state = tmp.path().join("state");
    let daemon = Daemon::start(config(&repo, &state, &engines))
        .await
        .unwrap();
    let addr = daemon.control_addr().unwrap().to_string();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: &str| {
        http.request(method, format!("http://{addr}{path}"))
            .bearer_auth(token)
    };
    use reqwest::Method;

    // The read token reads the status and does nothing else.
    let r = call(Method::GET, "/v1/status", READER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = call(Method::POST, "/v1/pause", READER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The webhook secret is no token at all.
    let r = call(Method::GET, "/v1/status", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A `by` that is not a name is refused.
    let r = call(Method::POST, "/v1/pause", OPERATOR)
        .json(&serde_json::json!({"by": "a\nb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A reason past 2,000 bytes, an unknown field, a route or a method
    // the API does not have: JSON errors, nothing done.
    let r = call(Method::POST, "/v1/pause", OPERATOR)
        .json(&serde_json::json!({"reason": "x".repeat(2001)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = call(Method::POST, "/v1/resume", OPERATOR)
        .json(&serde_json::json!({"bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for (method, path, code) in [
        (Method::GET, "/v1/nothing", 404),
        (Method::DELETE, "/v1/status", 405),
    ] {
        let r = call(method, path, OPERATOR).send().await.unwrap();
        assert_eq!(r.status(), code, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    }

    // The operator token pauses, from the command line, naming who.
    let sluice = |args: &[&str], envs: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
        c.args(args)
            .args(["--daemon", &format!("http://{addr}")])
            .env_remove("SLUICE_ADMIN_TOKEN")
            .env_remove("SLUICE_DAEMON_TOKEN")
            .env_remove("SLUICE_OPERATOR");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = sluice(
        &["pause", "--reason", "release freeze", "--as", "alice"],
        &[("SLUICE_DAEMON_TOKEN", &format!("{OPERATOR}\n"))],
    );
    assert_eq!(code, 0, "{err}");
    // The read token cannot resume.
    let (code, _, err) = sluice(&["resume"], &[("SLUICE_DAEMON_TOKEN", READER)]);
    assert_ne!(code, 0);
    assert!(err.contains("401") || err.contains("token"), "{err}");
    // Without any token: a clear error.
    let (code, _, err) = sluice(&["resume"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("SLUICE_DAEMON_TOKEN"), "{err}");
    // The admin token still operates; `SLUICE_OPERATOR` names who.
    let (code, _, err) = sluice(
        &["resume", "--reason", "freeze over"],
        &[("SLUICE_ADMIN_TOKEN", TOKEN), ("SLUICE_OPERATOR", "bob")],
    );
    assert_eq!(code, 0, "{err}");

    let lines = audit(&state);
    let pause = lines.iter().rfind(|t| t.event == "pause").unwrap();
    assert_eq!(pause.by.as_deref(), Some("alice"));
    assert!(pause.reason.contains("release freeze"), "{}", pause.reason);
    let resume = lines.iter().rfind(|t| t.event == "resume").unwrap();
    assert_eq!(resume.by.as_deref(), Some("bob"));
    assert!(
        resume.reason.ends_with(": freeze over"),
        "{}",
        resume.reason
    );
    daemon.stop().await.unwrap();
}

#[test]
fn a_short_or_unreadable_secret_stops_the_daemon_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("secret");
    std::fs::write(&short, "tiny-secret\n").unwrap();
    let run = |flag: &str, file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["reconcile", "--repo"])
            .arg(dir.path())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--engine", "http://127.0.0.1:9", "--admin-token", TOKEN])
            .args(["--listen", "127.0.0.1:0", flag])
            .arg(file)
            .output()
            .unwrap()
    };
    for flag in [
        "--webhook-secret-file",
        "--operator-token-file",
        "--read-token-file",
    ] {
        let out = run(flag, &short);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains("at least 16"), "{flag}: {err}");
        assert!(!err.contains("tiny-secret"), "{flag}: {err}");
        let out = run(flag, &dir.path().join("missing"));
        assert_eq!(out.status.code(), Some(2), "{flag}");
    }
}

const EXTRA: &str = r#"policy extra version 1.0.0 {
  rule no_wire {
    when tool == "wire.send"
    deny NO_WIRE "No wires"
  }
}
"#;

const MORE: &str = r#"policy more version 1.0.0 {
  rule no_fax {
    when tool == "fax.send"
    deny NO_FAX "No fax"
  }
}
"#;
