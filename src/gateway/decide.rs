//! Where a decision comes from: an engine over HTTP (`--engine URL`, so
//! canary routing, shadow and stats apply to the traffic) or an artifact
//! in-process (`--artifact FILE`), served by the same [`Engine`] code
//! `sluice engine` runs — routing, stats, breaker, failsafe, approvals and
//! the decision log — with no HTTP in between.

use std::sync::Arc;
use std::time::Duration;

use crate::api::control::Failure;
use crate::api::evaluate::EvalResponse;
use crate::api::route::RouteSpec;
use crate::compile::artifact::Artifact;
use crate::engine::backend::StateBackend;
use crate::engine::decision_log::DecisionLog;
use crate::engine::error::EvaluateError;
use crate::engine::server::{Engine, EngineConfig};

/// Why no decision was had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    /// The request does not fit the policies' schema (the engine's 400).
    #[error("the request was refused: {0}")]
    Refused(String),
    /// The engine could not be asked, or did not answer a decision.
    #[error("the engine at {url} gave no decision: {detail}")]
    Unavailable { url: String, detail: String },
    /// The in-process engine failed.
    #[error("the policy engine failed: {0}")]
    Local(String),
}

/// A decider could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("the artifact cannot be read: {0}")]
    Artifact(String),
    #[error("the in-process engine cannot start: {0}")]
    Engine(String),
    #[error("the engine client cannot be built: {0}")]
    Client(String),
}

/// A source of decisions.
#[derive(Clone)]
pub enum Decider {
    /// `POST {url}/v1/evaluate` on an engine.
    Remote {
        client: reqwest::Client,
        url: String,
        key: Option<String>,
    },
    /// An engine in this process with one artifact routed as stable.
    Local(Arc<Engine>),
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decider::Remote { url, .. } => f.debug_struct("Remote").field("url", url).finish(),
            Decider::Local(_) => f.write_str("Local"),
        }
    }
}

impl Decider {
    /// An engine reached at `url` (its base, e.g. `http://127.0.0.1:7400`);
    /// `key` is the agent's key when the engine checks agent identity. A
    /// decision that takes longer than `timeout` is an error.
    pub fn remote(
        url: &str,
        key: Option<String>,
        timeout: Duration,
    ) -> Result<Decider, StartError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        Ok(Decider::Remote {
            client,
            url: url.trim_end_matches('/').to_string(),
            key,
        })
    }

    /// An engine in this process serving the artifact `bytes` as stable,
    /// its limit counters and approvals in `backend` (a shared one lets any
    /// engine on it decide the gateway's approvals), logging to `log`.
    /// Needs a tokio runtime.
    pub async fn local(
        bytes: &[u8],
        backend: Arc<dyn StateBackend>,
        log: DecisionLog,
    ) -> Result<Decider, StartError> {
        let hash = Artifact::from_bytes(bytes)
            .map_err(|e| StartError::Artifact(e.to_string()))?
            .hash;
        // No admin API is served: the token only satisfies the engine's
        // start check and is never compared against anything.
        let config = EngineConfig::new("in-process engine, no admin API");
        let engine =
            Engine::start(config, backend, log).map_err(|e| StartError::Engine(e.to_string()))?;
        engine
            .put_artifact(&hash, bytes)
            .map_err(|e| StartError::Artifact(e.to_string()))?;
        engine
            .set_route(RouteSpec::stable(hash))
            .await
            .map_err(|e| StartError::Engine(e.to_string()))?;
        Ok(Decider::Local(engine))
    }

    /// Once the gateway has stopped taking calls: an in-process engine
    /// writes out its decision log.
    pub async fn shutdown(&self) {
        if let Decider::Local(engine) = self {
            engine.shutdown().await;
        }
    }

    /// The decision for `request`; `request_id` (1–128 visible characters)
    /// names it in the decision log (`X-Request-Id` to an engine), else the
    /// engine makes one up.
    pub async fn decide(
        &self,
        request: &serde_json::Value,
        request_id: Option<&str>,
    ) -> Result<EvalResponse, DecideError> {
        match self {
            Decider::Local(engine) => {
                let body =
                    serde_json::to_vec(request).map_err(|e| DecideError::Local(e.to_string()))?;
                let bytes = engine
                    .evaluate_to_end(body, request_id, None)
                    .await
                    .map_err(|e| match e {
                        EvaluateError::Json(_) | EvaluateError::Request(_) => {
                            DecideError::Refused(e.to_string())
                        }
                        other => DecideError::Local(other.to_string()),
                    })?;
                serde_json::from_slice(&bytes).map_err(|e| DecideError::Local(e.to_string()))
            }
            Decider::Remote { client, url, key } => {
                let unavailable = |detail: String| DecideError::Unavailable {
                    url: url.clone(),
                    detail,
                };
                let mut call = client.post(format!("{url}/v1/evaluate")).json(request);
                if let Some(key) = key {
                    call = call.bearer_auth(key);
                }
                if let Some(id) = request_id {
                    call = call.header("x-request-id", id);
                }
                let answer = call.send().await.map_err(|e| unavailable(e.to_string()))?;
                let status = answer.status();
                let body = answer
                    .bytes()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                if status.is_success() {
                    return serde_json::from_slice(&body)
                        .map_err(|e| unavailable(format!("not a decision: {e}")));
                }
                let said = serde_json::from_slice::<Failure>(&body)
                    .map_or_else(|_| String::from_utf8_lossy(&body).into_owned(), |f| f.error);
                if status.is_client_error() && status.as_u16() != 401 && status.as_u16() != 403 {
                    return Err(DecideError::Refused(said));
                }
                Err(unavailable(format!("{status}: {said}")))
            }
        }
    }
}
