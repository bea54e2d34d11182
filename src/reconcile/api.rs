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
//! | `POST /v1/hooks/git` | 202: the branch is fetched at once |
//! | `GET /healthz` | `{"status": "ok"}` |
//!
//! Commands are handed to the reconcile loop, which runs them as its next
//! transition and answers when the new state is persisted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::api::route::RouteSpec;
use crate::engine::http::AdminToken;
use crate::rollout::machine::{
    Command, Paused, Quarantined, Refused, Release, ReplaySummary, Transition,
};

/// A command for the loop, with where to send its answer.
pub type CommandRequest = (Command, oneshot::Sender<Result<String, String>>);

/// What `GET /v1/status` answers and `sluice status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub repo: String,
    pub branch: String,
    /// The branch head as last fetched.
    pub head: Option<String>,
    /// When the branch was last fetched (RFC 3339).
    pub fetched: Option<String>,
    /// The last fetch's error, if it failed.
    pub git_error: Option<String>,
    /// `empty`, `stable`, or the candidate's stage.
    pub phase: String,
    pub paused: Option<Paused>,
    pub stable: Option<Release>,
    pub previous: Option<Release>,
    pub candidate: Option<CandidateStatus>,
    pub engines: Vec<EngineStatus>,
    pub reverts: Vec<RevertStatus>,
    pub quarantine: Vec<Quarantined>,
    pub refused: Option<Refused>,
    /// Why the head is not acted on yet, when it is not.
    pub waiting: Option<String>,
    /// The last transition.
    pub last: Option<Transition>,
    /// The last error of the loop itself (persisting the state, …).
    pub error: Option<String>,
}

/// The candidate in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateStatus {
    pub commit: String,
    pub summary: String,
    pub artifact: String,
    pub stage: String,
    /// 0-based index into `stages`.
    pub stage_index: usize,
    pub stages: Vec<String>,
    /// `replay`, `shadow` or `split`.
    pub kind: String,
    pub percent: Option<u32>,
    pub in_stage_ms: u64,
    pub min_duration_ms: Option<u64>,
    pub max_duration_ms: Option<u64>,
    pub min_samples: Option<u64>,
    /// The last decision: `wait`, `advance`, `rollback` or `pause`, with
    /// its reason.
    pub step: Option<Value>,
    /// Every gate: `gate`, `limit`, `estimate`, `interval {lo, hi}`, `verdict`.
    pub gates: Vec<Value>,
    /// The rollback triggers, read the same way.
    pub triggers: Vec<Value>,
    pub samples_left: Option<u64>,
    pub time_left_ms: Option<u64>,
    /// The fleet's summed figures.
    pub observed: Option<Value>,
    pub replay: ReplaySummary,
    /// Decision-log flips by rule, state-check warnings.
    #[serde(default)]
    pub notes: Value,
}

/// One engine as last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub url: String,
    pub reachable: bool,
    /// On the route the state asks for.
    pub on_route: bool,
    pub route: Option<RouteSpec>,
    pub error: Option<String>,
}

/// A revert still to land.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RevertStatus {
    pub commit: String,
    pub stage: String,
    pub trigger: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

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
        .route("/v1/hooks/git", post(hook))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
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

#[derive(Deserialize, Default)]
struct Reason {
    #[serde(default)]
    reason: Option<String>,
}

/// The optional `{"reason": "…"}` body; `Err` says why it cannot be read.
fn reason(body: &Bytes) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Reason>(body)
        .map(|r| r.reason)
        .map_err(|e| format!("the body must be {{\"reason\": \"…\"}}: {e}"))
}

async fn run(s: &ApiState, c: Command) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.commands.send((c, tx)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match rx.await {
        Ok(Ok(message)) => Json(json!({ "message": message })).into_response(),
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

async fn hook(State(s): State<ApiState>) -> Response {
    s.hook.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "message": "fetching the branch now" })),
    )
        .into_response()
}
