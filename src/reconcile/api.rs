//! The daemon's control API (axum), for the operator commands and git hooks.
//! Who may call what is [`super::access`]'s: `GET /v1/status` needs the read
//! power, the commands the operate power (`Authorization: Bearer <token>`),
//! the hook a forge's signed delivery or the operate power; `/healthz`
//! nothing. Every command body may name who gives it (`"by"`).
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/status` | the [`Status`] document |
//! | `POST /v1/pause` `{"reason"?}` | 200 `{"message"}`; 409 `{"error"}` when already paused |
//! | `POST /v1/resume` `{"reason"?}` | 200; 409 when not paused |
//! | `POST /v1/promote` `{"through"?, "reason"?}` | 200; 409 with nothing to promote or an unknown stage; 400 `through` without `reason` |
//! | `POST /v1/rollback` `{"reason"?, "candidate"?}` | 200; 409 when there is nothing to roll back, or `candidate` is not what is in flight |
//! | `POST /v1/unquarantine` `{"target", "reason"}` | 200; 409 when nothing quarantined matches; 400 without both |
//! | `POST /v1/revert/skip` `{"reason"?}` | 200: the pending revert dropped, the branch left as it is; 409 when none is pending |
//! | `POST /v1/revert/done` `{"reason"?}` | 200: the pending revert settled as made by hand; 409 when none is pending |
//! | `POST /v1/hooks/git` | 202: the branch is fetched at once; 202 and ignored for a push to another branch or an event other than a push; 200 to GitHub's `ping`; 401 without a valid signature, GitLab token or operate power |
//! | `GET /healthz` | `{"status": "ok"}`: the process answers |
//! | `GET /readyz` | 200 `{"ready": true, "problems": []}`, or 503 naming what is wrong: a fetch failing or stale, an engine silent, a revert stopped |
//! | `GET /metrics` | the daemon's figures, Prometheus text ([`super::metrics`]) |
//! | `GET /openapi.json` | the OpenAPI 3.1 document of this API ([`OPENAPI`]) |
//!
//! This API and the engine's are two servers on two addresses, each with a
//! document of its own at its `/openapi.json` (`docs/openapi-daemon.json`
//! here, `docs/openapi.json` for the engine), each checked against its
//! router by the tests.
//!
//! Commands are handed to the reconcile loop, which runs them as its next
//! transition and answers when the new state is persisted. The documents
//! are wire types of `api::status` (the status, re-exported here) and
//! `api::control` (the command body and the answers).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::access::{Access, Power};
use super::metrics::{Tally, readiness};
use crate::api::control::{CommandBody, Failure, Message};
use crate::api::hook::Push;
pub use crate::api::status::Status;
use crate::rollout::machine::Command;

/// What an operator said along with a command: who (the audit log's `by`)
/// and, for a command with no reason of its own in the machine (`resume`),
/// why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Said {
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// A command for the loop, with what was said with it and where to send
/// its answer.
pub type CommandRequest = (Command, Said, oneshot::Sender<Result<String, String>>);

/// The largest body the hook reads (a forge's push delivery is far
/// smaller; GitHub lists at most 20 commits in one).
pub const MAX_HOOK_BODY: usize = 5 << 20;

/// The largest body any other route takes.
pub const MAX_BODY: usize = 2 << 20;

pub use crate::api::control::{MAX_BY, MAX_REASON};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    access: Arc<Access>,
    branch: String,
    tally: Arc<Tally>,
    /// A fetch older than this makes the daemon not ready.
    stale: Duration,
    status: watch::Receiver<Status>,
    commands: mpsc::Sender<CommandRequest>,
    hook: Arc<Notify>,
}

impl ApiState {
    /// `branch`: the watched branch, to tell a forge's push to it from a
    /// push to another.
    pub fn new(
        access: Access,
        branch: &str,
        status: watch::Receiver<Status>,
        commands: mpsc::Sender<CommandRequest>,
        hook: Arc<Notify>,
    ) -> ApiState {
        ApiState {
            access: Arc::new(access),
            branch: branch.to_string(),
            tally: Arc::new(Tally::default()),
            stale: Duration::from_secs(30),
            status,
            commands,
            hook,
        }
    }
}

impl ApiState {
    /// `/metrics` counts what `tally` is fed; `/readyz` says not ready once
    /// the last fetch is older than `stale`.
    pub fn with_metrics(mut self, tally: Arc<Tally>, stale: Duration) -> ApiState {
        self.tally = tally;
        self.stale = stale;
        self
    }
}

/// The control API.
pub fn router(state: ApiState) -> Router {
    let read = Router::new()
        .route("/v1/status", get(status))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_read));
    Router::new()
        .route("/v1/pause", post(pause))
        .route("/v1/resume", post(resume))
        .route("/v1/promote", post(promote))
        .route("/v1/rollback", post(rollback))
        .route("/v1/unquarantine", post(unquarantine))
        .route("/v1/revert/skip", post(revert_skip))
        .route("/v1/revert/done", post(revert_done))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_operate,
        ))
        .merge(read)
        .route(
            "/v1/hooks/git",
            post(hook).layer(DefaultBodyLimit::max(MAX_HOOK_BODY)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let failure = Failure {
        error: message.into(),
    };
    (status, Json(failure)).into_response()
}

fn message(text: impl Into<String>) -> Json<Message> {
    Json(Message {
        message: text.into(),
    })
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route on the control API")
}

async fn not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method",
    )
}

async fn readyz(State(s): State<ApiState>) -> Response {
    let r = readiness(&s.status.borrow(), s.stale);
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let status = s.status.borrow().clone();
    match s.tally.encode(&status) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::engine::metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        ),
    }
}

/// The OpenAPI 3.1 document of this API (`docs/openapi-daemon.json`,
/// checked against this router by the tests).
pub const OPENAPI: &str = include_str!("../../docs/openapi-daemon.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

fn unauthorized(why: &str) -> Response {
    let mut resp = error(StatusCode::UNAUTHORIZED, why);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

async fn require_operate(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if s.access.power(req.headers()) < Power::Operate {
        return unauthorized(
            "operator commands need `Authorization: Bearer <operator or admin token>`",
        );
    }
    next.run(req).await
}

async fn require_read(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if s.access.power(req.headers()) < Power::Read {
        return unauthorized(
            "the status needs `Authorization: Bearer <read, operator or admin token>`",
        );
    }
    next.run(req).await
}

async fn status(State(s): State<ApiState>) -> Response {
    let doc = s.status.borrow().clone();
    Json(doc).into_response()
}

/// The command's body; `Err` says why it cannot be read, or which field
/// the command `name` does not take (`takes` lists those it does).
fn body(name: &str, body: &Bytes, takes: &[&str]) -> Result<CommandBody, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CommandBody::default());
    }
    if !crate::engine::http::is_json_object(body) {
        return Err(format!(
            "the body of `{name}` must be a JSON object with {}",
            takes.join(", ")
        ));
    }
    let b: CommandBody = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body of `{name}` must be a JSON object with {}: {e}",
            takes.join(", ")
        )
    })?;
    if b.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(format!(
            "`reason` is longer than {MAX_REASON} bytes: say it in fewer words"
        ));
    }
    if let Some(by) = &b.by
        && !crate::api::control::valid_by(by)
    {
        return Err(format!(
            "`by` must name who gives the command: 1 to {MAX_BY} bytes, no control characters"
        ));
    }
    let given = [
        ("reason", b.reason.is_some()),
        ("candidate", b.candidate.is_some()),
        ("through", b.through.is_some()),
        ("target", b.target.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(f, set)| *set && !takes.contains(f)) {
        return Err(format!(
            "`{name}` takes no `{field}` (it takes {})",
            takes.join(", ")
        ));
    }
    Ok(b)
}

/// A commit or artifact named on the command line: 7 to 64 hexadecimal
/// characters (a prefix names the one hash that starts with it).
fn hash_arg(field: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if (7..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{field}` must be a commit or an artifact hash (7 to 64 hexadecimal characters), \
             not `{v}`"
        ))
    }
}

/// A reason that must be given and not blank.
fn needed_reason(name: &str, reason: Option<String>) -> Result<String, String> {
    reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| format!("`{name}` needs a `reason` for the audit log"))
}

async fn run(s: &ApiState, c: Command, said: Said) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.commands.send((c, said, tx)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match rx.await {
        Ok(Ok(done)) => message(done).into_response(),
        Ok(Err(why)) => error(StatusCode::CONFLICT, why),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}

async fn pause(State(s): State<ApiState>, raw: Bytes) -> Response {
    match body("pause", &raw, &["reason"]) {
        Ok(b) => {
            run(
                &s,
                Command::Pause {
                    reason: b.reason.clone(),
                },
                said_by(&b),
            )
            .await
        }
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn resume(State(s): State<ApiState>, raw: Bytes) -> Response {
    match body("resume", &raw, &["reason"]) {
        Ok(b) => {
            let said = Said {
                reason: b.reason.clone().filter(|r| !r.trim().is_empty()),
                ..said_by(&b)
            };
            run(&s, Command::Resume, said).await
        }
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// Who the body says gives the command.
fn said_by(b: &CommandBody) -> Said {
    Said {
        by: b.by.as_ref().map(|by| by.trim().to_string()),
        reason: None,
    }
}

async fn promote(State(s): State<ApiState>, raw: Bytes) -> Response {
    let command = body("promote", &raw, &["through", "reason"]).and_then(|b| {
        let said = said_by(&b);
        let reason = match &b.through {
            Some(_) => Some(needed_reason("promote --through", b.reason)?),
            None => b.reason,
        };
        Ok((
            Command::Promote {
                through: b.through.map(|t| t.trim().to_string()),
                reason,
            },
            said,
        ))
    });
    match command {
        Ok((c, said)) => run(&s, c, said).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn rollback(State(s): State<ApiState>, raw: Bytes) -> Response {
    let command = body("rollback", &raw, &["reason", "candidate"]).and_then(|b| {
        let said = said_by(&b);
        Ok((
            Command::Rollback {
                reason: b.reason,
                candidate: b.candidate.map(|c| hash_arg("candidate", &c)).transpose()?,
            },
            said,
        ))
    });
    match command {
        Ok((c, said)) => run(&s, c, said).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn unquarantine(State(s): State<ApiState>, raw: Bytes) -> Response {
    let command = body("unquarantine", &raw, &["target", "reason"]).and_then(|b| {
        let said = said_by(&b);
        let target = b
            .target
            .ok_or_else(|| "`unquarantine` needs a `target` (a commit or artifact)".to_string())?;
        Ok((
            Command::Unquarantine {
                target: hash_arg("target", &target)?,
                reason: needed_reason("unquarantine", b.reason)?,
            },
            said,
        ))
    });
    match command {
        Ok((c, said)) => run(&s, c, said).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn revert_skip(State(s): State<ApiState>, raw: Bytes) -> Response {
    match body("revert skip", &raw, &["reason"]) {
        Ok(b) => {
            run(
                &s,
                Command::RevertSkip {
                    reason: b.reason.clone(),
                },
                said_by(&b),
            )
            .await
        }
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn revert_done(State(s): State<ApiState>, raw: Bytes) -> Response {
    match body("revert done", &raw, &["reason"]) {
        Ok(b) => {
            run(
                &s,
                Command::RevertDone {
                    reason: b.reason.clone(),
                },
                said_by(&b),
            )
            .await
        }
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// `POST /v1/hooks/git`: a forge's push delivery (GitHub signed with the
/// webhook secret, GitLab carrying it) or an operator's call. The
/// signature is checked over the raw body before anything of it is read.
async fn hook(State(s): State<ApiState>, headers: HeaderMap, raw: Bytes) -> Response {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let forge = match (
        s.access.webhook(),
        text("x-hub-signature-256"),
        text("x-gitlab-token"),
    ) {
        (Some(secret), Some(sig), _) if secret.signed(&raw, sig) => true,
        (Some(secret), None, Some(token)) if secret.is(token) => true,
        _ if s.access.power(&headers) >= Power::Operate => false,
        _ => {
            return unauthorized(
                "the git hook needs a delivery signed with the webhook secret \
                 (`X-Hub-Signature-256`), GitLab's `X-Gitlab-Token`, or \
                 `Authorization: Bearer <operator or admin token>`",
            );
        }
    };
    let event = text("x-github-event").or(text("x-gitlab-event"));
    if event == Some("ping") {
        return (StatusCode::OK, message("pong")).into_response();
    }
    if let Some(e) = event
        && e != "push"
        && e != "Push Hook"
    {
        return ignored(format!("ignored: a `{e}` event is not a push"));
    }
    if forge || !raw.iter().all(u8::is_ascii_whitespace) {
        let parsed = if crate::engine::http::is_json_object(&raw) {
            serde_json::from_slice(&raw).map_err(|e| e.to_string())
        } else {
            Err("the body must be a JSON object".to_string())
        };
        let push: Push = match parsed {
            Ok(p) => p,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the hook's body is not a push delivery: {e}"),
                );
            }
        };
        let watched = format!("refs/heads/{}", s.branch);
        if let Some(r) = push.git_ref.filter(|r| *r != watched) {
            return ignored(format!("ignored: a push to `{r}`, not `{watched}`"));
        }
    }
    s.hook.notify_one();
    (StatusCode::ACCEPTED, message("fetching the branch now")).into_response()
}

fn ignored(why: String) -> Response {
    (StatusCode::ACCEPTED, message(why)).into_response()
}
