//! The engine's HTTP API (SPEC §5), shaped like axum's examples:
//! [`router`] builds the whole service from an [`Engine`] (tests drive it
//! with `oneshot`, no socket), handlers are thin, and every failure is an
//! [`ApiError`] rendered as `{"error": "…"}` with its status.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `POST /v1/evaluate` | — (with `--agent-keys`: the agent's key) | the evaluate response; 400 bad request (the field named), 401 no known agent key, 403 the request names another agent than the key's, 413, 503 without a route |
//! | `PUT /v1/artifacts/{hash}` | admin | 201 new, 200 already held; 400 not an artifact, 422 hash does not verify or differs from the path |
//! | `GET /v1/artifacts` | admin | `{"artifacts": [...]}` |
//! | `GET /v1/artifacts/{hash}` | admin | one artifact's summary; 404 when not held |
//! | `DELETE /v1/artifacts/{hash}` | admin | 204 deleted (its breaker and `/metrics` series with it); 404 not held, 409 the route names it |
//! | `PUT /v1/route` | admin | `{"owner", "expect", "lease_ms", "route"}` → `{"version", "route", "migrations", "lease"}`; 400 bad field, 409 artifact not held, 409 fenced (`api::lease::Fenced`: held by another owner, version changed, no owner named) |
//! | `GET /v1/route` | admin | the route in force and the lease (404 before the first) |
//! | `POST /v1/lease` | admin | `{"owner", "lease_ms", "force"}` → the lease; 409 fenced |
//! | `GET /v1/stats` | admin | figures per artifact and cohort since the route changed |
//! | `GET /v1/state` | admin | the live state (`api::state::LiveState`) |
//! | `POST /v1/approvals/{id}` | admin | `{"decision": "approve"\|"reject", "by": "alice"}` → the record; 404, 409 already decided or expired |
//! | `GET /v1/approvals/{id}` | — (the id is the capability) | `api::approvals::ApprovalState`: status and who decided; 404 |
//! | `GET /v1/approvals` | admin | `api::approvals::ApprovalList` |
//! | `GET /metrics` | — | Prometheus text |
//! | `GET /healthz` | — | `{"status": "ok"}` |
//! | `GET /openapi.json` | — | the OpenAPI 3.1 document of this API (`docs/openapi.json`) |
//! | `GET /readyz` | — | `api::state::Readiness`: 200 ready (a route, the state backend answers), 503 not |
//!
//! Admin routes need `Authorization: Bearer <token>`; the token is compared
//! in constant time (`subtle`) over SHA-256 digests, so neither its content
//! nor its length leaks through timing ([`AdminToken`], which the reconcile
//! daemon's control API uses too). Bad input is answered, not logged;
//! internal errors are logged and answered with a generic message.
//!
//! The engine's operations fail with domain errors
//! ([`crate::engine::error`], [`DecideError`]); this module alone decides
//! their statuses (`impl From<…> for ApiError`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::approvals::DecideRequest;
use crate::api::control::Failure;
use crate::api::lease::{Conflict, Fenced, LeaseRequest, RouteRequest};
use crate::api::route::{RouteInForce, RouteSpec};
use crate::compile::artifact::ArtifactError;
use crate::engine::approvals::DecideError;
use crate::engine::error::{
    DeleteError, EvaluateError, FenceError, RouteChangeError, StoreError, UploadError,
};
use crate::engine::guard::{BodyGuard, HttpLimits, guard_body};
use crate::engine::metrics;
use crate::engine::server::Engine;
use crate::eval::unique::duplicate_key;

/// An API failure: the status and a message naming what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong admin token: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// `--agent-keys` is on and no known agent key came with the request.
    #[error("missing or unknown agent key: send `Authorization: Bearer <the agent's key>`")]
    NoAgentKey,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// Fencing refused the change: 409 with the holder and the version.
    #[error("{}", .0.error)]
    Fenced(Fenced),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    /// Logged; the client gets a generic message.
    #[error("{0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::NoAgentKey => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::Fenced(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Fenced(body) = self {
            return (status, Json(body)).into_response();
        }
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error: the engine could not complete the request".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = (status, Json(Failure { error: message })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // Both the admin token and an agent key are bearer tokens.
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl ApiError {
    fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Internal(Box::new(e))
    }
}

impl From<EvaluateError> for ApiError {
    fn from(e: EvaluateError) -> ApiError {
        match e {
            EvaluateError::Json(_) | EvaluateError::Request(_) => {
                ApiError::BadRequest(e.to_string())
            }
            EvaluateError::NoRoute => ApiError::Unavailable(e.to_string()),
            EvaluateError::NotYourAgent(_) => ApiError::Forbidden(e.to_string()),
            EvaluateError::Render(_) | EvaluateError::Interrupted(_) => ApiError::internal(e),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        match e {
            UploadError::Artifact(ArtifactError::Decode { .. }) => {
                ApiError::BadRequest(e.to_string())
            }
            UploadError::Artifact(_) | UploadError::HashMismatch { .. } | UploadError::Load(_) => {
                ApiError::Unprocessable(e.to_string())
            }
        }
    }
}

impl From<RouteChangeError> for ApiError {
    fn from(e: RouteChangeError) -> ApiError {
        match e {
            RouteChangeError::Spec(_) | RouteChangeError::UnknownField { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            RouteChangeError::NotHeld { .. } => ApiError::Conflict(e.to_string()),
            RouteChangeError::Store(e) => e.into(),
            RouteChangeError::Fenced(e) => e.into(),
        }
    }
}

impl From<FenceError> for ApiError {
    fn from(e: FenceError) -> ApiError {
        let error = e.to_string();
        let body = match e {
            FenceError::BadOwner => return ApiError::BadRequest(error),
            FenceError::Held {
                owner,
                expires_in_ms,
                version,
            } => Fenced {
                error,
                conflict: Conflict::Held,
                owner: Some(owner),
                version,
                expires_in_ms: Some(expires_in_ms),
            },
            FenceError::Version { current, owner, .. } => Fenced {
                error,
                conflict: Conflict::Version,
                owner,
                version: current,
                expires_in_ms: None,
            },
            FenceError::NoOwner { version } => Fenced {
                error,
                conflict: Conflict::NoOwner,
                owner: None,
                version,
                expires_in_ms: None,
            },
        };
        ApiError::Fenced(body)
    }
}

impl From<DeleteError> for ApiError {
    fn from(e: DeleteError) -> ApiError {
        match e {
            DeleteError::NotHeld(_) => ApiError::NotFound(e.to_string()),
            DeleteError::Routed { .. } => ApiError::Conflict(e.to_string()),
        }
    }
}

/// The state backend failed: 503, the caller may try again (the engine
/// reconnects by itself; `/readyz` says when it is back).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Unavailable(format!("the state backend: {e}"))
    }
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> ApiError {
        match e {
            DecideError::NotFound(_) => ApiError::NotFound(e.to_string()),
            DecideError::AlreadyDecided { .. } | DecideError::Expired(_) => {
                ApiError::Conflict(e.to_string())
            }
            DecideError::State(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// The artifact-loading task did not finish (it panicked or was cancelled).
#[derive(Debug, thiserror::Error)]
#[error("loading the artifact: {0}")]
struct LoadTaskError(#[source] tokio::task::JoinError);

/// A body that could not be read: too large (413) or broken (400).
fn body_error(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "the request body is over the limit: {}",
            r.body_text()
        ))
    } else {
        ApiError::BadRequest(format!(
            "the request body could not be read: {}",
            r.body_text()
        ))
    }
}

/// The whole service, with the default [`HttpLimits`].
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, &HttpLimits::default())
}

/// The whole service; bodies are read under `limits` (their size limits
/// are the engine's `max_body` and `max_artifact_body`).
pub fn router_with(engine: Arc<Engine>, limits: &HttpLimits) -> Router {
    let max_body = engine.config().max_body;
    let max_artifact = engine.config().max_artifact_body;
    let guard = BodyGuard {
        limit: max_body,
        larger: Some((Method::PUT, "/v1/artifacts/", max_artifact)),
        timeout: limits.body_timeout,
    };
    let admin = Router::new()
        .route(
            "/v1/artifacts/{hash}",
            put(put_artifact)
                .layer(DefaultBodyLimit::max(max_artifact))
                .get(get_artifact)
                .delete(delete_artifact),
        )
        .route("/v1/artifacts", get(list_artifacts))
        .route("/v1/route", put(put_route).get(get_route))
        .route("/v1/lease", post(post_lease))
        .route("/v1/stats", get(get_stats))
        .route("/v1/state", get(get_state))
        .route("/v1/approvals", get(list_approvals))
        // Inside the token check: no body is read for a caller without it.
        .route_layer(middleware::from_fn_with_state(guard.clone(), guard_body))
        .route_layer(middleware::from_fn_with_state(
            AdminToken::new(&engine.config().admin_token),
            require_admin,
        ));
    // Deciding needs the token, and its body is read only once the token
    // is right; the status is public (the id is the capability).
    let decide = post(decide_approval)
        .layer(middleware::from_fn_with_state(guard.clone(), guard_body))
        .layer(middleware::from_fn_with_state(
            AdminToken::new(&engine.config().admin_token),
            require_admin,
        ));
    Router::new()
        .route("/v1/evaluate", post(evaluate))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(guard, guard_body))
        .route("/v1/approvals/{id}", get(approval_status).merge(decide))
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(say_close))
        .layer(middleware::map_response(nosniff))
        .with_state(engine)
}

/// The one path segment of a route (`{hash}`, `{id}`); one that is not
/// UTF-8 is a JSON 400 like every other error.
struct PathParam(String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathParam(p))
            .map_err(|e| ApiError::BadRequest(format!("bad path: {}", e.body_text())))
    }
}

/// Routes that need the admin token, whatever the method.
const ADMIN_PATHS: [&str; 6] = [
    "/v1/artifacts",
    "/v1/route",
    "/v1/lease",
    "/v1/stats",
    "/v1/state",
    "/v1/approvals",
];

fn is_admin_path(path: &str) -> bool {
    ADMIN_PATHS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Every answer says `X-Content-Type-Options: nosniff`.
pub async fn nosniff(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A request whose body is never read (401, 404, 405 answer before it)
/// cannot leave its connection usable: the answer says
/// `Connection: close` instead of the connection just ending.
pub async fn say_close(req: Request, next: Next) -> Response {
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut resp = next.run(req).await;
    if has_body
        && matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        )
    {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// An admin bearer token, kept as its SHA-256 digest so that comparing
/// takes the same time whatever the lengths.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

pub use crate::engine::agents::{MIN_SECRET_LEN, secret};

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>` (the
    /// scheme in any case, surrounding blanks ignored), compared in
    /// constant time.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110 §11.1).
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
            .map(str::trim);
        given.is_some_and(|g| {
            let digest: [u8; 32] = Sha256::digest(g.as_bytes()).into();
            bool::from(digest.ct_eq(&self.0))
        })
    }
}

async fn require_admin(
    State(token): State<AdminToken>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if token.admits(req.headers()) {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route: the engine serves /v1/evaluate, /v1/artifacts, /v1/route, /v1/lease, /v1/stats, /v1/state, /v1/approvals, /metrics, /healthz, /readyz and /openapi.json".to_string())
}

/// 405, but for an admin route only once the token is right (401 before:
/// a caller without it learns nothing about the admin routes).
async fn method_not_allowed(
    State(engine): State<Arc<Engine>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiError {
    if is_admin_path(uri.path()) && !AdminToken::new(&engine.config().admin_token).admits(&headers)
    {
        return ApiError::Unauthorized;
    }
    ApiError::MethodNotAllowed("this route does not take that method".to_string())
}

/// The OpenAPI 3.1 document of this API (`docs/openapi.json`, checked
/// against this router by the tests).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

const REQUEST_ID: &str = "x-request-id";

/// The caller's `X-Request-Id` (1–128 visible characters), echoed in the
/// response and written to the decision log; without one the engine makes
/// one up for the log. Read without copying the header map.
struct RequestId(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get(REQUEST_ID)
                .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
                .cloned(),
        ))
    }
}

/// The agent the request's bearer key speaks for, when the engine checks
/// agent identity (`--agent-keys`; 401 without a known key).
fn agent_of<'a>(
    engine: &'a Engine,
    auth: Option<&HeaderValue>,
) -> Result<Option<&'a str>, ApiError> {
    let Some(keys) = &engine.config().agent_keys else {
        return Ok(None);
    };
    auth.and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })
        .and_then(|key| keys.agent(key))
        .map(Some)
        .ok_or(ApiError::NoAgentKey)
}

/// The `Authorization` header, read without copying the header map.
struct Authorization(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for Authorization {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Authorization(
            parts.headers.get(header::AUTHORIZATION).cloned(),
        ))
    }
}

async fn evaluate(
    State(engine): State<Arc<Engine>>,
    RequestId(request_id): RequestId,
    Authorization(auth): Authorization,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let agent = agent_of(&engine, auth.as_ref())?;
    let body = body.map_err(body_error)?;
    if let Some(path) = duplicate_key(&body) {
        return Err(ApiError::BadRequest(format!(
            "duplicate key `{path}` in the request: a field may appear only once"
        )));
    }
    let id = request_id.as_ref().and_then(|v| v.to_str().ok());
    let bytes = engine.evaluate_to_end(body, id, agent).await?;
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response();
    if let Some(id) = request_id {
        resp.headers_mut().insert(REQUEST_ID, id);
    }
    Ok(resp)
}

async fn put_artifact(
    State(engine): State<Arc<Engine>>,
    PathParam(hash): PathParam,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    if !is_json_object(&body) {
        return Err(ApiError::BadRequest(
            "invalid artifact: the body must be a JSON object (an artifact `sluice compile` wrote)"
                .to_string(),
        ));
    }
    // Verifying the hash and compiling regexes is CPU work: off the
    // request threads.
    let (created, summary) = tokio::task::spawn_blocking(move || engine.put_artifact(&hash, &body))
        .await
        .map_err(|e| ApiError::internal(LoadTaskError(e)))??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(summary)).into_response())
}

async fn get_artifact(
    State(engine): State<Arc<Engine>>,
    PathParam(hash): PathParam,
) -> Result<Response, ApiError> {
    let summary = engine.artifact(&hash).ok_or_else(|| {
        ApiError::NotFound(format!("no artifact `{hash}` is held by this engine"))
    })?;
    Ok(Json(summary).into_response())
}

async fn delete_artifact(
    State(engine): State<Arc<Engine>>,
    PathParam(hash): PathParam,
) -> Result<StatusCode, ApiError> {
    engine.delete_artifact(&hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_artifacts(State(engine): State<Arc<Engine>>) -> Response {
    Json(json!({ "artifacts": engine.artifacts() })).into_response()
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T, ApiError> {
    if !is_json_object(body) {
        return Err(ApiError::BadRequest(format!(
            "invalid {what}: the body must be a JSON object"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid {what}: {e}")))
}

/// Whether `body` is a JSON object (before any of it is read): serde reads
/// a struct from a JSON array too (`["owner"]` as a lease request), and no
/// route of either server takes one.
pub fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

async fn put_route(
    State(engine): State<Arc<Engine>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    if !is_json_object(&body) {
        return Err(ApiError::BadRequest(
            "invalid route request: the body must be a JSON object (PUT /v1/route takes {\"owner\", \"expect\", \"lease_ms\", \"route\"})".to_string(),
        ));
    }
    let req: RouteRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        // A bare route names no owner: fenced, not merely malformed.
        Err(_) if serde_json::from_slice::<RouteSpec>(&body).is_ok() => {
            let version = engine.route().map_or(0, |r| r.version);
            return Err(FenceError::NoOwner { version }.into());
        }
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "invalid route request: {e} (PUT /v1/route takes {{\"owner\", \"expect\", \"lease_ms\", \"route\"}})"
            )));
        }
    };
    let change = engine.claim_route(req).await?;
    Ok(Json(change).into_response())
}

async fn post_lease(
    State(engine): State<Arc<Engine>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let req: LeaseRequest = parse_json(&body, "lease request")?;
    let granted = engine.renew_lease(req).await?;
    Ok(Json(granted).into_response())
}

async fn get_route(State(engine): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let route = engine
        .route()
        .ok_or_else(|| ApiError::NotFound("no route has been set: PUT /v1/route".to_string()))?;
    Ok(Json(RouteInForce {
        version: route.version,
        since: route.since,
        route: route.spec.clone(),
        lease: engine.lease(),
    })
    .into_response())
}

async fn get_stats(State(engine): State<Arc<Engine>>) -> Response {
    Json(engine.stats()).into_response()
}

async fn get_state(State(engine): State<Arc<Engine>>) -> Result<Response, ApiError> {
    Ok(Json(engine.live_state().await?).into_response())
}

async fn decide_approval(
    State(engine): State<Arc<Engine>>,
    PathParam(id): PathParam,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let d: DecideRequest = parse_json(&body, "approval decision")?;
    use crate::api::control::{MAX_BY, MAX_REASON, valid_by};
    if !valid_by(&d.by) {
        return Err(ApiError::BadRequest(format!(
            "`by` must name who decided: 1 to {MAX_BY} bytes, no control characters"
        )));
    }
    if d.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(ApiError::BadRequest(format!(
            "`reason` is longer than {MAX_REASON} bytes: say it in fewer words"
        )));
    }
    let record = engine
        .decide(&id, d.decision, d.by.trim(), d.reason.as_deref())
        .await?;
    Ok(Json(record).into_response())
}

async fn approval_status(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let state = engine
        .approval(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no approval `{id}`")))?;
    Ok(Json(state).into_response())
}

async fn list_approvals(State(engine): State<Arc<Engine>>) -> Result<Response, ApiError> {
    Ok(Json(engine.approvals().await?).into_response())
}

async fn readyz(State(engine): State<Arc<Engine>>) -> Response {
    let readiness = engine.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn metrics(State(engine): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let text = engine
        .scrape()
        .encode()
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}
