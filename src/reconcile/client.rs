//! Engine access behind a small trait, [`EngineClient`], so that the loop
//! and its tests do not care how an engine is reached; [`HttpEngine`] is the
//! engine's admin API over HTTP (SPEC §5, bearer token):
//!
//! | call | request | answer read |
//! |---|---|---|
//! | [`EngineClient::upload`] | `PUT /v1/artifacts/{hash}` | 200/201 |
//! | [`EngineClient::set_route`] | `PUT /v1/route` ([`RouteRequest`]: owner, expected version, lease) | 200; 409 when an artifact is not held; 409 [`Fenced`] |
//! | [`EngineClient::get_route`] | `GET /v1/route` | [`RouteInForce`] (version, lease); 404 before the first |
//! | [`EngineClient::renew_lease`] | `POST /v1/lease` | [`LeaseGranted`]; 409 [`Fenced`] |
//! | [`EngineClient::stats`] | `GET /v1/stats` | [`EngineStats`]: the route and the figures per artifact and cohort |
//! | [`EngineClient::live_state`] | `GET /v1/state` | limit counters and pending approvals; 404: none |
//! | [`EngineClient::delete_artifact`] | `DELETE /v1/artifacts/{hash}` | 204; 404 not held (done too); 409 on the route |

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::api::control::Failure;
use crate::api::lease::{Conflict, Fenced, LeaseGranted, LeaseRequest, RouteRequest};
use crate::api::route::RouteInForce;
use crate::api::state::LiveState;
use crate::api::stats::EngineStats;

/// A boxed future, so that the trait can be used as `dyn EngineClient`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No answer (connection refused, timeout). The message names the kind
    /// of failure and the source's chain, without the URL (status names the
    /// engine already).
    #[error("unreachable: {}", without_url(.source))]
    Unreachable {
        #[source]
        source: reqwest::Error,
    },
    /// An answer other than success.
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// Fencing refused the call (409): another daemon holds the engine, or
    /// the route changed since it was read.
    #[error("HTTP 409: {}", .0.error)]
    Fenced(Fenced),
    /// An answer that could not be read.
    #[error("unreadable answer: {source}")]
    Decode {
        #[source]
        source: serde_json::Error,
    },
    /// The HTTP client cannot be built (its TLS roots, …).
    #[error("unreachable: {source}")]
    Client {
        #[source]
        source: reqwest::Error,
    },
}

impl From<reqwest::Error> for EngineError {
    fn from(source: reqwest::Error) -> Self {
        EngineError::Unreachable { source }
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(source: serde_json::Error) -> Self {
        EngineError::Decode { source }
    }
}

impl EngineError {
    /// The engine answered 409: an artifact of the route is not held.
    pub fn is_missing_artifact(&self) -> bool {
        matches!(self, EngineError::Status { status: 409, .. })
    }

    /// The call never reached the engine or got no answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, EngineError::Unreachable { source } if source.is_timeout())
    }

    /// The owner of another live lease, when fencing refused the call for it.
    pub fn held_by(&self) -> Option<&str> {
        match self {
            EngineError::Fenced(f) if f.conflict == Conflict::Held => f.owner.as_deref(),
            _ => None,
        }
    }
}

/// What the daemon needs from an engine.
pub trait EngineClient: Send + Sync {
    /// The engine's name in status and the audit log (its URL).
    fn name(&self) -> &str;
    fn upload<'a>(
        &'a self,
        hash: &'a str,
        artifact: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EngineError>>;
    /// Sets the route as `req.owner`, over the version `req.expect`; on
    /// success the route's version is `req.expect + 1`.
    fn set_route<'a>(&'a self, req: &'a RouteRequest) -> BoxFuture<'a, Result<(), EngineError>>;
    /// The route in force, its version and lease; `None` before the first.
    fn get_route(&self) -> BoxFuture<'_, Result<Option<RouteInForce>, EngineError>>;
    /// Renews (or takes) the engine's lease.
    fn renew_lease<'a>(
        &'a self,
        req: &'a LeaseRequest,
    ) -> BoxFuture<'a, Result<LeaseGranted, EngineError>>;
    fn stats(&self) -> BoxFuture<'_, Result<EngineStats, EngineError>>;
    /// Limit counters and pending approvals, for the `state::` checks of a
    /// new commit; `None` when the engine does not expose them.
    fn live_state(&self) -> BoxFuture<'_, Result<Option<LiveState>, EngineError>> {
        Box::pin(async { Ok(None) })
    }
    /// Deletes an artifact the engine no longer needs (one it does not hold
    /// is deleted already). A client that cannot delete says so with an
    /// error; the daemon then leaves the artifact where it is.
    fn delete_artifact<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        let _ = hash;
        Box::pin(async {
            Err(EngineError::Status {
                status: 501,
                message: "this engine client does not delete artifacts".to_string(),
            })
        })
    }
}

/// An engine's admin API over HTTP.
#[derive(Debug, Clone)]
pub struct HttpEngine {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl HttpEngine {
    /// A client for the engine at `base` (e.g. `http://10.0.0.7:8080`);
    /// every call gives up after `timeout`.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<HttpEngine, EngineError> {
        Ok(HttpEngine::with_client(base, token, http_client(timeout)?))
    }

    /// A client for the engine at `base` sharing an HTTP client (and its
    /// connection pool) with others.
    pub fn with_client(base: &str, token: &str, http: reqwest::Client) -> HttpEngine {
        HttpEngine {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, EngineError> {
        let resp = req.bearer_auth(&self.token).send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        if status.as_u16() == 409
            && let Ok(fenced) = serde_json::from_str::<Fenced>(&body)
        {
            return Err(EngineError::Fenced(fenced));
        }
        let message = serde_json::from_str::<Failure>(&body)
            .map(|f| f.error)
            .unwrap_or(body);
        Err(EngineError::Status {
            status: status.as_u16(),
            message,
        })
    }
}

/// An HTTP client whose calls give up after `timeout`. Building one is not
/// free (TLS roots are loaded): share it between engines.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, EngineError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| EngineError::Client { source })
}

/// A reqwest error without the URL it names (the caller names the engine).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out = format!("{out}: {s}");
        source = s.source();
    }
    out
}

impl EngineClient for HttpEngine {
    fn name(&self) -> &str {
        &self.base
    }

    fn upload<'a>(
        &'a self,
        hash: &'a str,
        artifact: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let req = self
                .http
                .put(self.url(&format!("/v1/artifacts/{hash}")))
                .header("content-type", "application/json")
                .body(artifact.to_vec());
            self.send(req).await.map(drop)
        })
    }

    fn set_route<'a>(&'a self, req: &'a RouteRequest) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let req = self.http.put(self.url("/v1/route")).json(req);
            self.send(req).await.map(drop)
        })
    }

    fn get_route(&self) -> BoxFuture<'_, Result<Option<RouteInForce>, EngineError>> {
        Box::pin(async move {
            match self.send(self.http.get(self.url("/v1/route"))).await {
                Ok(resp) => {
                    let bytes = resp.bytes().await?;
                    Ok(Some(serde_json::from_slice::<RouteInForce>(&bytes)?))
                }
                Err(EngineError::Status { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn renew_lease<'a>(
        &'a self,
        req: &'a LeaseRequest,
    ) -> BoxFuture<'a, Result<LeaseGranted, EngineError>> {
        Box::pin(async move {
            let resp = self
                .send(self.http.post(self.url("/v1/lease")).json(req))
                .await?;
            let bytes = resp.bytes().await?;
            Ok(serde_json::from_slice(&bytes)?)
        })
    }

    fn live_state(&self) -> BoxFuture<'_, Result<Option<LiveState>, EngineError>> {
        Box::pin(async move {
            match self.send(self.http.get(self.url("/v1/state"))).await {
                Ok(resp) => {
                    let bytes = resp.bytes().await?;
                    Ok(Some(serde_json::from_slice(&bytes)?))
                }
                Err(EngineError::Status { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn delete_artifact<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let req = self.http.delete(self.url(&format!("/v1/artifacts/{hash}")));
            match self.send(req).await {
                Ok(_) | Err(EngineError::Status { status: 404, .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<EngineStats, EngineError>> {
        Box::pin(async move {
            let resp = self.send(self.http.get(self.url("/v1/stats"))).await?;
            let bytes = resp.bytes().await?;
            Ok(serde_json::from_slice(&bytes)?)
        })
    }
}
