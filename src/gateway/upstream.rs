//! The upstream MCP servers the gateway fronts: `NAME=URL` (streamable
//! HTTP) or `NAME=COMMAND` (a child process spoken to over stdio), each an
//! rmcp client session of its own. Every call is bounded by a timeout, so a
//! hung upstream answers an error and never holds a client; upstreams are
//! independent, so a slow one delays only its own calls.

use std::sync::Mutex;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResponse, ProtocolVersion, Tool};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt as _, Peer, RoleClient, RunningService, ServiceExt as _,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};

/// How an upstream is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A streamable HTTP endpoint (`http://…/mcp`).
    Http(String),
    /// A program and its arguments, split on whitespace.
    Command(Vec<String>),
}

/// One `--upstream NAME=URL|COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub target: Target,
}

/// An `--upstream` that does not read, or an upstream that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("`{0}`: write NAME=URL or NAME=COMMAND (NAME of letters, digits, `_` and `-`)")]
    Spec(String),
    #[error("upstream `{name}`: {detail}")]
    Failed { name: String, detail: String },
    #[error("upstream `{name}` did not answer within {}", humantime::format_duration(*after))]
    Timeout { name: String, after: Duration },
}

impl std::str::FromStr for Spec {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Spec, UpstreamError> {
        let bad = || UpstreamError::Spec(s.to_string());
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let rest = rest.trim();
        if !name_ok || rest.is_empty() {
            return Err(bad());
        }
        let target = if rest.starts_with("http://") || rest.starts_with("https://") {
            Target::Http(rest.to_string())
        } else {
            Target::Command(rest.split_whitespace().map(str::to_string).collect())
        };
        Ok(Spec {
            name: name.to_string(),
            target,
        })
    }
}

/// The HTTP client of a streamable HTTP upstream. rmcp's default client
/// keeps no idle connection (a reused one stalled on delayed ACKs without
/// `TCP_NODELAY`); this one sets `TCP_NODELAY` (a call is a few small
/// writes each way, which Nagle's algorithm would hold back) and keeps
/// idle connections for reuse, and follows no redirect.
fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// A connected upstream.
pub struct Upstream {
    pub name: String,
    peer: Peer<RoleClient>,
    /// Keeps the session (and the child process) alive.
    _service: Mutex<RunningService<RoleClient, ()>>,
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why an HTTP upstream could not be reached, with a hint when it
/// redirects (a server mounted at `/mcp/` answers `/mcp` with a 307): the
/// gateway does not follow redirects, which could lead its calls elsewhere.
fn connect_error(url: &str, error: &str) -> String {
    let redirects = ["HTTP 301", "HTTP 302", "HTTP 303", "HTTP 307", "HTTP 308"]
        .iter()
        .any(|code| error.contains(code));
    if redirects {
        format!(
            "connecting to {url}: {error} (the server redirects, and the gateway does not follow \
             redirects: give the URL it redirects to, often the same with a trailing `/`)"
        )
    } else {
        format!("connecting to {url}: {error}")
    }
}

/// The longest an HTTP upstream is given to answer the MCP 2026-07-28
/// probe (`server/discover`) before the gateway speaks the `initialize`
/// handshake instead (a third of the start bound when that is shorter).
pub const DISCOVER_PROBE: Duration = Duration::from_secs(10);

impl Upstream {
    /// Connects to `spec`: the start and handshake are bounded by `start`,
    /// every later call by `timeout`.
    pub async fn connect(
        spec: &Spec,
        start: Duration,
        timeout: Duration,
    ) -> Result<Upstream, UpstreamError> {
        let failed = |detail: String| UpstreamError::Failed {
            name: spec.name.clone(),
            detail,
        };
        let connecting = async {
            match &spec.target {
                Target::Http(url) => {
                    let client = http_client().map_err(|e| failed(e.to_string()))?;
                    let transport = || {
                        let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                        StreamableHttpClientTransport::with_client(client.clone(), config)
                    };
                    // MCP 2026-07-28 when the upstream speaks it (no
                    // session; rmcp's legacy path drops a call's stream
                    // before it ends, which closed the connection after
                    // nearly every call). Any other answer to the probe, or
                    // none within its bound, and the initialize handshake
                    // on a new transport: a late answer to the probe is
                    // never taken for the handshake's.
                    let discover = ClientLifecycleMode::Discover {
                        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                    };
                    let probe = (start / 3).min(DISCOVER_PROBE);
                    match tokio::time::timeout(
                        probe,
                        ().serve_with_lifecycle(transport(), discover),
                    )
                    .await
                    {
                        Ok(Ok(service)) => Ok(service),
                        Ok(Err(e)) => {
                            tracing::debug!(upstream = %spec.name, error = %e, "no MCP 2026-07-28: the initialize handshake");
                            ().serve(transport())
                                .await
                                .map_err(|e| failed(connect_error(url.as_str(), &e.to_string())))
                        }
                        Err(_) => {
                            tracing::info!(upstream = %spec.name, after = ?probe, "no answer to the MCP 2026-07-28 probe: the initialize handshake");
                            ().serve(transport())
                                .await
                                .map_err(|e| failed(connect_error(url.as_str(), &e.to_string())))
                        }
                    }
                }
                Target::Command(argv) => {
                    let (program, args) = argv
                        .split_first()
                        .ok_or_else(|| failed("no command".into()))?;
                    let mut cmd = tokio::process::Command::new(program);
                    cmd.args(args).kill_on_drop(true);
                    let child = TokioChildProcess::new(cmd)
                        .map_err(|e| failed(format!("starting `{program}`: {e}")))?;
                    ().serve(child)
                        .await
                        .map_err(|e| failed(format!("starting `{program}`: {e}")))
                }
            }
        };
        let service = tokio::time::timeout(start, connecting)
            .await
            .map_err(|_| UpstreamError::Timeout {
                name: spec.name.clone(),
                after: start,
            })??;
        Ok(Upstream {
            name: spec.name.clone(),
            peer: service.peer().clone(),
            _service: Mutex::new(service),
            timeout,
        })
    }

    async fn bounded<T>(
        &self,
        what: impl std::future::Future<Output = Result<T, rmcp::ServiceError>>,
    ) -> Result<T, UpstreamError> {
        match tokio::time::timeout(self.timeout, what).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(UpstreamError::Failed {
                name: self.name.clone(),
                detail: e.to_string(),
            }),
            Err(_) => Err(UpstreamError::Timeout {
                name: self.name.clone(),
                after: self.timeout,
            }),
        }
    }

    /// The upstream's tools, every page.
    pub async fn tools(&self) -> Result<Vec<Tool>, UpstreamError> {
        self.bounded(self.peer.list_all_tools()).await
    }

    /// Calls one of the upstream's tools.
    pub async fn call(
        &self,
        params: CallToolRequestParams,
    ) -> Result<CallToolResponse, UpstreamError> {
        self.bounded(self.peer.call_tool_once(params)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_urls_and_commands() {
        let s: Spec = "files=http://127.0.0.1:9/mcp".parse().unwrap();
        assert_eq!(s.target, Target::Http("http://127.0.0.1:9/mcp".into()));
        let s: Spec = "py=python3 server.py --stdio".parse().unwrap();
        assert_eq!(s.name, "py");
        assert_eq!(
            s.target,
            Target::Command(vec!["python3".into(), "server.py".into(), "--stdio".into()])
        );
        for bad in ["noequals", "=cmd", "a.b=cmd", "a="] {
            assert!(bad.parse::<Spec>().is_err(), "{bad}");
        }
    }
}
