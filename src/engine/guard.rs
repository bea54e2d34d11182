//! What a connection may cost, for both HTTP servers (the engine's API and
//! the daemon's control API): [`HttpLimits`] and the two places they are
//! enforced.
//!
//! - [`serve_router`]: the accept loop. At most `max_connections` are open
//!   at once (a semaphore: past it, new connections wait in the listen
//!   backlog, so file descriptors are never exhausted); hyper closes a
//!   connection whose request head is not complete within
//!   `header_timeout`, and the same timer bounds an idle keep-alive
//!   connection (it starts as soon as hyper waits for a request head).
//! - [`guard_body`]: a middleware that answers 413 at once when the
//!   declared `Content-Length` is over the route's limit (the body is never
//!   read), and reads the body within `body_timeout` (408 otherwise). Both
//!   answers close the connection.
//!
//! Every answer here is the `{"error": "…"}` JSON both servers speak.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::api::control::Failure;

/// Descriptors kept free for everything but connections (the listener,
/// the decision log, state files, outgoing calls).
const FD_RESERVE: u64 = 64;

/// The bounds on what a connection may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to receive a whole request head; also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Time to receive a whole request body.
    pub body_timeout: Duration,
    /// Connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

impl HttpLimits {
    /// `max_connections`, lowered when the process's open-file limit
    /// (`RLIMIT_NOFILE`) could not hold that many connections.
    pub fn effective_connections(&self) -> usize {
        let fds = open_file_limit().saturating_sub(FD_RESERVE).max(1);
        let fds = usize::try_from(fds).unwrap_or(usize::MAX);
        self.max_connections.clamp(1, fds)
    }
}

#[cfg(unix)]
fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

#[cfg(not(unix))]
fn open_file_limit() -> u64 {
    u64::MAX
}

/// Connections the kernel holds for a server at its connection cap.
pub const BACKLOG: u32 = 1024;

/// Binds a listener with a backlog of [`BACKLOG`] connections (the
/// default is 128), so connections past `max_connections` wait to be
/// accepted rather than being refused.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes,
/// then stops accepting and waits for the open connections to finish
/// their requests.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.effective_connections();
    if max < limits.max_connections {
        tracing::warn!(
            max_connections = max,
            asked = limits.max_connections,
            "the open-file limit holds fewer connections than asked"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it
                    // was accepted: not fatal; back off a little.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Decisions are small and latency-bound: no Nagle delay.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The state [`guard_body`] runs with: the body limit of every request
/// but those of one method under one path prefix, which have their own
/// (artifact uploads, forge deliveries), and the time to read a body.
#[derive(Debug, Clone)]
pub struct BodyGuard {
    pub limit: usize,
    pub larger: Option<(Method, &'static str, usize)>,
    pub timeout: Duration,
}

impl BodyGuard {
    fn limit_for(&self, method: &Method, path: &str) -> usize {
        match &self.larger {
            Some((m, prefix, limit)) if m == method && path.starts_with(prefix) => *limit,
            _ => self.limit,
        }
    }
}

/// Refuses a declared body over the limit before reading it (413), reads
/// the body within the timeout (408), and hands the handler the body
/// already read.
pub async fn guard_body(State(guard): State<BodyGuard>, req: Request, next: Next) -> Response {
    let limit = guard.limit_for(req.method(), req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes"),
        );
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(guard.timeout, Limited::new(body, limit).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return closing(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over the limit of {limit} bytes"),
            );
        }
        Ok(Err(e)) => {
            return closing(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            );
        }
        Err(_) => {
            return closing(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}",
                    humantime::format_duration(guard.timeout)
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// An error answer that closes the connection (what is left of the body
/// is never read).
fn closing(status: StatusCode, error: String) -> Response {
    let mut resp = (status, axum::Json(Failure { error })).into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
