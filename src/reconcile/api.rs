//! The daemon's control API (axum), for the operator commands and git hooks.
//! Every route but `/healthz` needs `Authorization: Bearer <admin token>`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/status` | the [`Status`] document |
//! | `POST /v1/pause` `{"reason"?}` | 200 `{"message"}`; 409 `{"error"}` when already paused |
//! | `POST /v1/resume` | 200; 409 when not paused |
//! | `POST /v1/promote` `{"through"?, "reason"?}` | 200; 409 with nothing to promote or an unknown stage; 400 `through` without `reason` |
//! | `POST /v1/rollback` `{"reason"?, "candidate"?}` | 200; 409 when there is nothing to roll back, or `candidate` is not what is in flight |
//! | `POST /v1/unquarantine` `{"target", "reason"}` | 200; 409 when nothing quarantined matches; 400 without both |
//! | `POST /v1/revert/skip` `{"reason"?}` | 200: the pending revert dropped, the branch left as it is; 409 when none is pending |
//! | `POST /v1/revert/done` `{"reason"?}` | 200: the pending revert settled as made by hand; 409 when none is pending |
//! | `POST /v1/hooks/git` | 202: the branch is fetched at once |
//! | `GET /healthz` | `{"status": "ok"}` |
//!
//! Commands are handed to the reconcile loop, which runs them as its next
//! transition and answers when the new state is persisted. The documents
//! are wire types of `api::status` (the status, re-exported here) and
//! `api::control` (the command body and the answers).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::api::control::{CommandBody, Failure, Message};
pub use crate::api::status::Status;
use crate::engine::http::AdminToken;
use crate::rollout::machine::Command;

/// A command for the loop, with where to send its answer.
pub type CommandRequest = (Command, oneshot::Sender<Result<String, String>>);

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    token: AdminToken,
    status: watch::Receiver<Status>,
    commands: mpsc::Sender<CommandRequest>,
    hook: Arc<Notify>,
}

impl ApiState {
    pub fn new(
        token: &str,
        status: watch::Receiver<Status>,
        commands: mpsc::Sender<CommandRequest>,
        hook: Arc<Notify>,
    ) -> ApiState {
        ApiState {
            token: AdminToken::new(token),
            status,
            commands,
            hook,
        }
    }
}

/// The control API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/pause", post(pause))
        .route("/v1/resume", post(resume))
        .route("/v1/promote", post(promote))
        .route("/v1/rollback", post(rollback))
        .route("/v1/unquarantine", post(unquarantine))
        .route("/v1/revert/skip", post(revert_skip))
        .route("/v1/revert/done", post(revert_done))
        .route("/v1/hooks/git", post(hook))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/healthz", get(healthz))
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

async fn require_token(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if !s.token.admits(req.headers()) {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "the control API needs `Authorization: Bearer <admin token>`",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
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
    let b: CommandBody = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body of `{name}` must be a JSON object with {}: {e}",
            takes.join(", ")
        )
    })?;
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

async fn run(s: &ApiState, c: Command) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.commands.send((c, tx)).await.is_err() {
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
        Ok(b) => run(&s, Command::Pause { reason: b.reason }).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn resume(State(s): State<ApiState>) -> Response {
    run(&s, Command::Resume).await
}

async fn promote(State(s): State<ApiState>, raw: Bytes) -> Response {
    let command = body("promote", &raw, &["through", "reason"]).and_then(|b| {
        let reason = match &b.through {
            Some(_) => Some(needed_reason("promote --through", b.reason)?),
            None => b.reason,
        };
        Ok(Command::Promote {
            through: b.through.map(|t| t.trim().to_string()),
            reason,
        })
    });
    match command {
        Ok(c) => run(&s, c).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn rollback(State(s): State<ApiState>, raw: Bytes) -> Response {
    let command = body("rollback", &raw, &["reason", "candidate"]).and_then(|b| {
        Ok(Command::Rollback {
            reason: b.reason,
            candidate: b.candidate.map(|c| hash_arg("candidate", &c)).transpose()?,
        })
    });
    match command {
        Ok(c) => run(&s, c).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn unquarantine(State(s): State<ApiState>, raw: Bytes) -> Response {
    let command = body("unquarantine", &raw, &["target", "reason"]).and_then(|b| {
        let target = b
            .target
            .ok_or_else(|| "`unquarantine` needs a `target` (a commit or artifact)".to_string())?;
        Ok(Command::Unquarantine {
            target: hash_arg("target", &target)?,
            reason: needed_reason("unquarantine", b.reason)?,
        })
    });
    match command {
        Ok(c) => run(&s, c).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn revert_skip(State(s): State<ApiState>, raw: Bytes) -> Response {
    match body("revert skip", &raw, &["reason"]) {
        Ok(b) => run(&s, Command::RevertSkip { reason: b.reason }).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn revert_done(State(s): State<ApiState>, raw: Bytes) -> Response {
    match body("revert done", &raw, &["reason"]) {
        Ok(b) => run(&s, Command::RevertDone { reason: b.reason }).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn hook(State(s): State<ApiState>) -> Response {
    s.hook.notify_one();
    (StatusCode::ACCEPTED, message("fetching the branch now")).into_response()
}
