//! The daemon's control API ([`super::api`]) from the caller's side: one
//! typed client for `sluice status`, `pause`, `resume`, `promote`,
//! `rollback`, `unquarantine` and `revert skip|done`. It sends the requests and reads the documents of the API's
//! table; it must not print or decide anything about the answers.

use std::time::Duration;

use super::api::Status;
use crate::api::control::{CommandBody, Failure, Message};

/// An operator command ([`super::api`]'s `POST` routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Pause {
        reason: Option<String>,
    },
    Resume {
        reason: Option<String>,
    },
    Promote {
        through: Option<String>,
        reason: Option<String>,
    },
    Rollback {
        reason: Option<String>,
        candidate: Option<String>,
    },
    Unquarantine {
        target: String,
        reason: String,
    },
    RevertSkip {
        reason: Option<String>,
    },
    RevertDone {
        reason: Option<String>,
    },
}

impl Operation {
    /// The command's name, as the route and the CLI spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Pause { .. } => "pause",
            Operation::Resume { .. } => "resume",
            Operation::Promote { .. } => "promote",
            Operation::Rollback { .. } => "rollback",
            Operation::Unquarantine { .. } => "unquarantine",
            Operation::RevertSkip { .. } => "revert skip",
            Operation::RevertDone { .. } => "revert done",
        }
    }

    /// The body the command sends; `None` sends none.
    fn body(&self) -> Option<CommandBody> {
        let b = match self {
            Operation::Pause { reason }
            | Operation::Resume { reason }
            | Operation::RevertSkip { reason }
            | Operation::RevertDone { reason } => CommandBody {
                reason: reason.clone(),
                ..CommandBody::default()
            },
            Operation::Promote { through, reason } => CommandBody {
                reason: reason.clone(),
                through: through.clone(),
                ..CommandBody::default()
            },
            Operation::Rollback { reason, candidate } => CommandBody {
                reason: reason.clone(),
                candidate: candidate.clone(),
                ..CommandBody::default()
            },
            Operation::Unquarantine { target, reason } => CommandBody {
                reason: Some(reason.clone()),
                target: Some(target.clone()),
                ..CommandBody::default()
            },
        };
        (b != CommandBody::default()).then_some(b)
    }

    /// The route's path under `/v1/`.
    fn path(&self) -> &'static str {
        match self {
            Operation::RevertSkip { .. } => "revert/skip",
            Operation::RevertDone { .. } => "revert/done",
            _ => self.name(),
        }
    }
}

/// What the daemon answered a call it understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    Done(T),
    /// 409: the daemon refused, and says why (already paused, nothing to
    /// promote, …).
    Refused(String),
}

/// A call that did not get an answer the API defines.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("starting the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot reach the daemon at {daemon}")]
    Unreachable {
        daemon: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the daemon answered {status}: {message}")]
    Status {
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("reading the daemon's answer")]
    Decode(#[source] reqwest::Error),
}

/// A client of one daemon's control API.
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
    token: String,
    /// Who gives the commands (`by` in every body).
    by: Option<String>,
    http: reqwest::Client,
}

impl ControlClient {
    /// A client for the daemon at `base` (e.g. `http://127.0.0.1:7474`);
    /// every call gives up after `timeout`.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<ControlClient, ControlError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(ControlError::Client)?;
        Ok(ControlClient {
            base: base.to_string(),
            token: token.to_string(),
            by: None,
            http,
        })
    }

    /// The client names `by` as who gives every command it sends.
    pub fn given_by(mut self, by: Option<String>) -> ControlClient {
        self.by = by;
        self
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Answer<Status>, ControlError> {
        let req = self.http.get(self.url("/v1/status"));
        let resp = match self.send(req).await? {
            Answer::Done(resp) => resp,
            Answer::Refused(why) => return Ok(Answer::Refused(why)),
        };
        resp.json()
            .await
            .map(Answer::Done)
            .map_err(ControlError::Decode)
    }

    /// `POST /v1/{command}`; the answer's message (`done` when it has none).
    pub async fn run(&self, op: &Operation) -> Result<Answer<String>, ControlError> {
        let mut req = self.http.post(self.url(&format!("/v1/{}", op.path())));
        let mut body = op.body();
        if let Some(by) = &self.by {
            body.get_or_insert_with(CommandBody::default).by = Some(by.clone());
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = match self.send(req).await? {
            Answer::Done(resp) => resp,
            Answer::Refused(why) => return Ok(Answer::Refused(why)),
        };
        // An answer without a message is still a command done.
        let message = resp
            .json::<Message>()
            .await
            .map_or_else(|_| "done".to_string(), |m| m.message);
        Ok(Answer::Done(message))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    /// Sends a request with the token; a success is the response, a 409 a
    /// refusal, anything else an error with the API's message.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Answer<reqwest::Response>, ControlError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ControlError::Unreachable {
                daemon: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Answer::Done(resp));
        }
        let message = resp
            .json::<Failure>()
            .await
            .map_or_else(|_| "no message".to_string(), |f| f.error);
        if status == reqwest::StatusCode::CONFLICT {
            Ok(Answer::Refused(message))
        } else {
            Err(ControlError::Status { status, message })
        }
    }
}
