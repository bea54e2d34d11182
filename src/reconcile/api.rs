//! The daemon's control API (axum), for the operator commands and git hooks.
//! Every route but `/healthz` needs `Authorization: Bearer <admin token>`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/status` | the [`Status`] document |
//! | `POST /v1/pause` `{"reason"?}` | 200 `{"message"}`; 409 `{"error"}` when already paused |
//! | `POST /v1/resume` | 200; 409 when not paused |
//! | `POST /v1/promote` | 200; 409 with no rollout in flight |
//! | `POST /v1/rollback` `{"reason"?}` | 200; 409 when there is nothing to roll back |
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

/// The optional `{"reason": "…"}` body; `Err` says why it cannot be read.
fn reason(body: &Bytes) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<CommandBody>(body)
        .map(|r| r.reason)
        .map_err(|e| format!("the body must be {{\"reason\": \"…\"}}: {e}"))
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

async fn pause(State(s): State<ApiState>, body: Bytes) -> Response {
    match reason(&body) {
        Ok(reason) => run(&s, Command::Pause { reason }).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn resume(State(s): State<ApiState>) -> Response {
    run(&s, Command::Resume).await
}

async fn promote(State(s): State<ApiState>) -> Response {
    run(&s, Command::Promote).await
}

async fn rollback(State(s): State<ApiState>, body: Bytes) -> Response {
    match reason(&body) {
        Ok(reason) => run(&s, Command::Rollback { reason }).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn revert_skip(State(s): State<ApiState>, body: Bytes) -> Response {
    match reason(&body) {
        Ok(reason) => run(&s, Command::RevertSkip { reason }).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn revert_done(State(s): State<ApiState>, body: Bytes) -> Response {
    match reason(&body) {
        Ok(reason) => run(&s, Command::RevertDone { reason }).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

async fn hook(State(s): State<ApiState>) -> Response {
    s.hook.notify_one();
    (StatusCode::ACCEPTED, message("fetching the branch now")).into_response()
}
