//! The OpenAPI 3.1 documents of the two HTTP servers, each served at its
//! own `GET /openapi.json`: the engine's (`docs/openapi.json`) and the
//! reconcile daemon's control API (`docs/openapi-daemon.json`). Each is
//! checked against its router the same way: the same paths as the router
//! declares; on every path each method the document names is routed and
//! every other one is a 405; every operation's security is what the server
//! enforces (no credential, and each credential it has, admitted exactly
//! when the document lists it); and every answer has a status the
//! operation lists, a content type it names and a body its schema admits.
//! A real engine and a real daemon serve their documents.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use sluice::api::audit::Cause;
use sluice::api::gate::Step;
use sluice::api::rollout_state::{Paused, Quarantined, Release};
use sluice::api::status::{CandidateStatus, EngineStatus, RevertStatus, Status};
use sluice::reconcile::access::{Access, WebhookSecret};
use sluice::reconcile::api::{self as control, ApiState};
use tokio::sync::{Notify, mpsc, watch};
use tower::ServiceExt as _;

use crate::engine::{OWNER, PAY, TOKEN, artifact, config, pay, with_stable};
use crate::hardening::{self, request};

const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

fn read(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn document(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap()
}

/// The paths a router's source routes (`.route("/…", …)`).
fn routed_paths(source: &str) -> BTreeSet<String> {
    let text = read(source);
    let mut out = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        if let Some(q) = rest.trim_start().strip_prefix('"') {
            out.insert(q[..q.find('"').unwrap()].to_string());
        }
    }
    out
}

/// A credential: the security scheme it answers to and its headers.
struct Credential {
    scheme: &'static str,
    headers: Vec<(&'static str, String)>,
}

fn bearer(scheme: &'static str, token: &str) -> Credential {
    Credential {
        scheme,
        headers: vec![("authorization", format!("Bearer {token}"))],
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The body every check sends: a JSON object, so that a route reads it.
const BODY: &[u8] = b"{}";

async fn call(app: &Router, method: &str, path: &str, headers: &[(&str, String)]) -> Answer {
    call_with(app, method, path, headers, BODY.to_vec()).await
}

async fn call_with(
    app: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (n, v) in headers {
        req = req.header(*n, v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// `answer` to `what` is one the operation `op` of `doc` lists: its status,
/// a content type it names for it (none for a documented answer without
/// content), a JSON body its schema admits.
fn conforms(doc: &Value, op: &Value, what: &str, answer: &Answer) {
    let code = answer.status.as_str();
    let listed = &op["responses"][code];
    assert!(
        listed.is_object(),
        "{what} answered {code}, which the document does not list: {}",
        answer.text()
    );
    let Some(content) = listed.get("content").and_then(Value::as_object) else {
        assert!(
            answer.body.is_empty(),
            "{what}: a body where none is documented"
        );
        return;
    };
    let given = answer
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = given.split(';').next().unwrap_or_default().trim();
    let media = content.get(essence).unwrap_or_else(|| {
        panic!("{what}: content type {given:?}, the document names {content:?}")
    });
    if essence == "application/json" {
        // The document is the root, so that `#/components/…` resolves.
        let mut schema = doc.clone();
        schema["allOf"] = serde_json::json!([media["schema"]]);
        let validator = jsonschema::validator_for(&schema).unwrap();
        let body: Value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", answer.text()));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{body:#}");
    }
}

/// Checks `doc` against `app`, the router built by `source`; `concrete`
/// fills in a path's parameters; `credentials` are those the server under
/// test admits, the first one admitted by every operation.
async fn check(
    doc: &Value,
    source: &str,
    app: &Router,
    credentials: &[Credential],
    concrete: impl Fn(&str) -> String,
) {
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(documented, routed_paths(source), "{source}");

    let served = call(app, "GET", "/openapi.json", &[]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&served.body).unwrap(), *doc);

    let full = &credentials[0].headers;
    for (path, item) in paths {
        let uri = concrete(path);
        for method in METHODS {
            let upper = method.to_uppercase();
            let what = format!("{upper} {uri}");
            let r = call(app, &upper, &uri, full).await;
            let routed = r.status != StatusCode::METHOD_NOT_ALLOWED
                && !(r.status == StatusCode::NOT_FOUND && r.text().contains("no such route"));
            assert_eq!(
                routed,
                item.get(method).is_some(),
                "{what}: {} {}",
                r.status,
                r.text()
            );
            let Some(op) = item.get(method) else {
                continue;
            };
            assert!(op["summary"].is_string(), "{what}: no summary");
            conforms(doc, op, &what, &r);

            // Security: every scheme named is declared; no credential is
            // admitted exactly when `{}` is listed, each credential exactly
            // when its scheme is.
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no `security`"));
            let lists = |scheme: Option<&str>| {
                security.iter().any(|s| {
                    let s = s.as_object().unwrap();
                    s.is_empty() || scheme.is_some_and(|n| s.contains_key(n))
                })
            };
            for s in security {
                for name in s.as_object().unwrap().keys() {
                    assert!(
                        schemes.contains_key(name),
                        "{what}: scheme {name} undeclared"
                    );
                }
            }
            let anonymous = call(app, &upper, &uri, &[]).await;
            assert_eq!(
                anonymous.status != StatusCode::UNAUTHORIZED,
                lists(None),
                "{what} without a credential: {} {}",
                anonymous.status,
                anonymous.text()
            );
            conforms(doc, op, &format!("{what} without a credential"), &anonymous);
            for c in credentials {
                let r = call(app, &upper, &uri, &c.headers).await;
                assert_eq!(
                    r.status != StatusCode::UNAUTHORIZED,
                    lists(Some(c.scheme)),
                    "{what} with {}: {} {}",
                    c.scheme,
                    r.status,
                    r.text()
                );
                conforms(doc, op, &format!("{what} with {}", c.scheme), &r);
            }
        }
    }
}

#[tokio::test]
async fn the_engine_document_matches_the_router() {
    let a = artifact(&[PAY]);
    let (_e, app, _sink) = with_stable(config(), &[&a]).await;
    check(
        &document("docs/openapi.json"),
        "src/engine/http.rs",
        &app,
        &[bearer("adminToken", TOKEN)],
        |path| {
            path.replace("{hash}", &"0".repeat(64))
                .replace("{id}", "ap-0")
        },
    )
    .await;
}

/// One call of a real sequence, its answer checked against the document:
/// `template` is the documented path, `params` what fills it in.
async fn step(
    app: &Router,
    doc: &Value,
    method: &str,
    template: &str,
    params: &[(&str, &str)],
    body: &Value,
    expect: StatusCode,
) -> Answer {
    let uri = params
        .iter()
        .fold(template.to_string(), |p, (k, v)| p.replace(k, v));
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    let answer = call_with(app, method, &uri, &auth, bytes).await;
    let what = format!("{method} {uri}");
    assert_eq!(answer.status, expect, "{what}: {}", answer.text());
    let op = &doc["paths"][template][method.to_lowercase()];
    assert!(op.is_object(), "{method} {template} is not documented");
    conforms(doc, op, &what, &answer);
    answer
}

/// The engine's answers to what a client really does (uploads, route
/// changes, fencing, leases, evaluations, approvals, deletions) have the
/// shapes the document gives them.
#[tokio::test]
async fn the_engine_answers_real_calls_as_documented() {
    use serde_json::json;
    let doc = document("docs/openapi.json");
    let a = artifact(&[PAY]);
    let b = artifact(&[
        PAY,
        r#"policy extra version 1.0.0 {
  rule shell { when tool == "shell" deny SHELL "no shell" }
}
"#,
    ]);
    let (_e, app, _sink) = with_stable(config(), &[&a]).await;
    let (ha, hb) = (a.hash.as_str(), b.hash.as_str());
    let body_b = serde_json::to_value(&b).unwrap();
    let created = StatusCode::CREATED;
    step(
        &app,
        &doc,
        "PUT",
        "/v1/artifacts/{hash}",
        &[("{hash}", hb)],
        &body_b,
        created,
    )
    .await;
    let ok = StatusCode::OK;
    step(
        &app,
        &doc,
        "PUT",
        "/v1/artifacts/{hash}",
        &[("{hash}", hb)],
        &body_b,
        ok,
    )
    .await;
    step(&app, &doc, "GET", "/v1/artifacts", &[], &Value::Null, ok).await;
    step(
        &app,
        &doc,
        "GET",
        "/v1/artifacts/{hash}",
        &[("{hash}", ha)],
        &Value::Null,
        ok,
    )
    .await;
    let route = step(&app, &doc, "GET", "/v1/route", &[], &Value::Null, ok).await;
    let version = serde_json::from_slice::<Value>(&route.body).unwrap()["version"].clone();
    let shadow = json!({"stable": ha, "candidate": hb, "mode": "shadow"});
    let change = json!({"owner": OWNER, "expect": version, "lease_ms": 60000, "route": shadow});
    step(&app, &doc, "PUT", "/v1/route", &[], &change, ok).await;
    // Fenced: the version changed; a bare route names no owner.
    let conflict = StatusCode::CONFLICT;
    step(&app, &doc, "PUT", "/v1/route", &[], &change, conflict).await;
    step(&app, &doc, "PUT", "/v1/route", &[], &shadow, conflict).await;
    let lease = json!({"owner": OWNER, "lease_ms": 99_999_999});
    step(&app, &doc, "POST", "/v1/lease", &[], &lease, ok).await;
    let other = json!({"owner": "other", "lease_ms": 1000});
    step(&app, &doc, "POST", "/v1/lease", &[], &other, conflict).await;
    step(&app, &doc, "GET", "/v1/route", &[], &Value::Null, ok).await;
    step(&app, &doc, "POST", "/v1/evaluate", &[], &pay("a", 10), ok).await;
    let asked = step(&app, &doc, "POST", "/v1/evaluate", &[], &pay("a", 5000), ok).await;
    let asked: Value = serde_json::from_slice(&asked.body).unwrap();
    let id = asked["approval_id"].as_str().unwrap().to_string();
    let at = [("{id}", id.as_str())];
    step(
        &app,
        &doc,
        "GET",
        "/v1/approvals/{id}",
        &at,
        &Value::Null,
        ok,
    )
    .await;
    step(&app, &doc, "GET", "/v1/approvals", &[], &Value::Null, ok).await;
    step(&app, &doc, "GET", "/v1/state", &[], &Value::Null, ok).await;
    let approve = json!({"decision": "approve", "by": "alice"});
    step(&app, &doc, "POST", "/v1/approvals/{id}", &at, &approve, ok).await;
    step(
        &app,
        &doc,
        "POST",
        "/v1/approvals/{id}",
        &at,
        &approve,
        conflict,
    )
    .await;
    step(
        &app,
        &doc,
        "GET",
        "/v1/approvals/{id}",
        &at,
        &Value::Null,
        ok,
    )
    .await;
    step(&app, &doc, "GET", "/v1/stats", &[], &Value::Null, ok).await;
    step(&app, &doc, "GET", "/readyz", &[], &Value::Null, ok).await;
    let named = [("{hash}", hb)];
    step(
        &app,
        &doc,
        "DELETE",
        "/v1/artifacts/{hash}",
        &named,
        &Value::Null,
        conflict,
    )
    .await;
    let stable = json!({"owner": OWNER, "expect": 2, "route": {"stable": ha}});
    step(&app, &doc, "PUT", "/v1/route", &[], &stable, ok).await;
    let gone = StatusCode::NO_CONTENT;
    step(
        &app,
        &doc,
        "DELETE",
        "/v1/artifacts/{hash}",
        &named,
        &Value::Null,
        gone,
    )
    .await;
}

const ADMIN: &str = "daemon-admin-token-0123";
const OPERATOR: &str = "daemon-operator-token-0123";
const READER: &str = "daemon-read-token-0123";
const SECRET: &str = "daemon-webhook-secret-0123";

/// A status with every part filled in, so that the schema is checked
/// against more than an empty daemon's.
fn busy_status() -> Status {
    Status {
        identity: "daemon-1".into(),
        repo: "/srv/git/policies.git".into(),
        branch: "main".into(),
        head: Some("9f2c1e0".into()),
        fetched: Some("2026-01-01T00:00:00Z".into()),
        fetch_failures: 2,
        fetch_retry_ms: Some(2000),
        phase: "canary".into(),
        paused: Some(Paused {
            reason: "holding".into(),
            cause: Cause::Operator,
            since_ms: 1,
            engines: vec!["http://127.0.0.1:9".into()],
            hold: true,
        }),
        stable: Some(Release {
            commit: None,
            artifact: "54548799".into(),
            since_ms: 1,
        }),
        candidate: Some(CandidateStatus {
            kind: "split".into(),
            step: Some(Step::Rollback {
                trigger: "error_rate".into(),
            }),
            percent: Some(50),
            ..CandidateStatus::default()
        }),
        engines: vec![EngineStatus::default()],
        reverts: vec![RevertStatus {
            stuck: Some("cannot push".into()),
            ..RevertStatus::default()
        }],
        quarantine: vec![Quarantined {
            commit: "9f2c1e0".into(),
            artifact: "54548799".into(),
            reason: "rolled back".into(),
            since_ms: 1,
        }],
        ..Status::default()
    }
}

/// The daemon's control API in this process, its loop refusing every
/// command (409), as it does one that does not apply.
fn daemon_app() -> (watch::Sender<Status>, Router) {
    let (status_tx, status) = watch::channel(busy_status());
    let (commands, mut loop_rx) = mpsc::channel::<control::CommandRequest>(4);
    tokio::spawn(async move {
        while let Some((_, _, answer)) = loop_rx.recv().await {
            let _ = answer.send(Err("refused".to_string()));
        }
    });
    let access = Access::new(ADMIN)
        .with_operator_token(Some(OPERATOR))
        .with_read_token(Some(READER))
        .with_webhook_secret(Some(SECRET));
    let app = control::router(ApiState::new(
        access,
        "main",
        status,
        commands,
        Arc::new(Notify::new()),
    ));
    (status_tx, app)
}

#[tokio::test]
async fn the_daemon_document_matches_the_router() {
    let (_status_tx, app) = daemon_app();
    let signature = WebhookSecret::new(SECRET).sign(BODY).unwrap();
    check(
        &document("docs/openapi-daemon.json"),
        "src/reconcile/api.rs",
        &app,
        &[
            bearer("adminToken", ADMIN),
            bearer("operatorToken", OPERATOR),
            bearer("readToken", READER),
            Credential {
                scheme: "gitlabToken",
                headers: vec![("x-gitlab-token", SECRET.to_string())],
            },
            Credential {
                scheme: "githubSignature",
                headers: vec![("x-hub-signature-256", signature)],
            },
        ],
        str::to_string,
    )
    .await;
    assert_eq!(
        control::OPENAPI,
        read("docs/openapi-daemon.json"),
        "the daemon serves the file"
    );
}

/// A real engine process serves its document, as JSON, with `nosniff`.
#[test]
fn a_real_engine_serves_its_document() {
    let engine = hardening::engine(&[]);
    let a = request(engine.addr, "GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(a.json(), document("docs/openapi.json"));
}

/// Whether the document's request schema of `method template` admits
/// `body`, and the server agrees: a 400 exactly for a body the schema
/// refuses (the cases schemathesis found the documents too loose or too
/// strict on).
async fn agrees(
    doc: &Value,
    app: &Router,
    (method, template, uri): (&str, &str, &str),
    token: &str,
    body: Value,
) {
    let op = &doc["paths"][template][method.to_lowercase()];
    let mut schema = doc.clone();
    schema["allOf"] =
        serde_json::json!([op["requestBody"]["content"]["application/json"]["schema"]]);
    let valid = jsonschema::validator_for(&schema).unwrap().is_valid(&body);
    let auth = [("authorization", format!("Bearer {token}"))];
    let answer = call_with(app, method, uri, &auth, serde_json::to_vec(&body).unwrap()).await;
    let what = format!("{method} {uri} {body}");
    assert_eq!(
        answer.status == StatusCode::BAD_REQUEST,
        !valid,
        "{what}: the schema {} it, the server answered {} {}",
        if valid { "admits" } else { "refuses" },
        answer.status,
        answer.text()
    );
    conforms(doc, op, &what, &answer);
}

#[tokio::test]
async fn the_request_schemas_admit_what_the_servers_take() {
    use serde_json::json;
    let doc = document("docs/openapi-daemon.json");
    let (_status, app) = daemon_app();
    let pause = ("POST", "/v1/pause", "/v1/pause");
    for body in [
        json!({"reason": "r", "by": null}),
        json!({"by": "alice"}),
        json!({"by": "\u{2}alice"}),
        json!({"by": "ali\u{87}ce"}),
        json!({"by": " "}),
        json!({"by": ""}),
        json!({"by": 7}),
        json!({"reason": "r", "through": "full"}),
        json!([null, null]),
        json!(["holding", null, null, null, "alice"]),
    ] {
        agrees(&doc, &app, pause, OPERATOR, body).await;
    }
    let promote = ("POST", "/v1/promote", "/v1/promote");
    for body in [
        json!({"through": "full"}),
        json!({"through": "full", "reason": " "}),
        json!({"through": "full", "reason": "a fix"}),
        json!({"through": null}),
        json!({}),
    ] {
        agrees(&doc, &app, promote, OPERATOR, body).await;
    }
    let unquarantine = ("POST", "/v1/unquarantine", "/v1/unquarantine");
    for body in [
        json!({"target": "9f2c1e0", "reason": "r"}),
        json!({"target": " 9f2c1e0 ", "reason": "r"}),
        json!({"target": "9f2c1e0", "reason": " "}),
        json!({"target": "9f2c", "reason": "r"}),
        json!({"target": "9f2c1e0"}),
    ] {
        agrees(&doc, &app, unquarantine, OPERATOR, body).await;
    }
    let rollback = ("POST", "/v1/rollback", "/v1/rollback");
    for body in [json!({"candidate": null}), json!({"candidate": "xyz0000"})] {
        agrees(&doc, &app, rollback, OPERATOR, body).await;
    }
    let hook = ("POST", "/v1/hooks/git", "/v1/hooks/git");
    for body in [
        json!({"ref": "refs/heads/main"}),
        json!(["refs/heads/main"]),
        json!({"ref": 7}),
    ] {
        agrees(&doc, &app, hook, OPERATOR, body).await;
    }

    let doc = document("docs/openapi.json");
    let a = artifact(&[PAY]);
    let (_e, app, _sink) = with_stable(config(), &[&a]).await;
    let lease = ("POST", "/v1/lease", "/v1/lease");
    for body in [
        json!({"owner": ""}),
        json!({"owner": "two words"}),
        json!({"owner": "x".repeat(129)}),
        json!({"owner": "other", "lease_ms": -1}),
        json!({"owner": "other", "extra": 1}),
        json!({"owner": "other", "lease_ms": 1000}),
        json!(["other"]),
        json!({"owner": "other", "lease_ms": 18_446_744_073_709_551_616_f64}),
    ] {
        agrees(&doc, &app, lease, TOKEN, body).await;
    }
    let route = ("PUT", "/v1/route", "/v1/route");
    for body in [
        json!({"owner": "", "route": {"stable": a.hash}}),
        json!({"owner": OWNER, "expect": -1, "route": {"stable": a.hash}}),
        json!({"owner": OWNER, "route": {"stable": a.hash, "extra": 1}}),
        json!({"owner": OWNER, "route": {"stable": a.hash, "hash_key": ""}}),
        json!([OWNER, 1, 1000, {"stable": a.hash}]),
    ] {
        agrees(&doc, &app, route, TOKEN, body).await;
    }
    let decide = ("POST", "/v1/approvals/{id}", "/v1/approvals/ap-0");
    for body in [
        json!({"decision": "approve", "by": ""}),
        json!({"decision": "approve", "by": " "}),
        json!({"decision": "approve", "by": "alice", "reason": null}),
        json!({"decision": "maybe", "by": "alice"}),
        json!(["approve", "alice"]),
        json!({"decision": "approve", "by": "al\u{7}ice"}),
        json!({"decision": "approve", "by": "al\u{85}ice"}),
        json!({"decision": "approve", "by": "a".repeat(200)}),
        json!({"decision": "approve", "by": "a".repeat(201)}),
        json!({"decision": "reject", "by": "alice", "reason": "r".repeat(2000)}),
        json!({"decision": "reject", "by": "alice", "reason": "r".repeat(2001)}),
    ] {
        agrees(&doc, &app, decide, TOKEN, body).await;
    }
}
