//! Serving the gateway: streamable HTTP at `/mcp` (rmcp's
//! `StreamableHttpService` under axum) until a shutdown signal, or one
//! client over standard input and output.

use std::sync::Arc;

use axum::serve::ListenerExt as _;
use rmcp::ServiceExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::gateway::server::Gateway;

/// Serves `gateway` over streamable HTTP at `/mcp` on `listener`, until
/// `shutdown` completes. `allowed_hosts` are the `Host` values accepted
/// besides the loopback names (DNS rebinding protection).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    allowed_hosts: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(allowed_hosts);
    // A call's result as one JSON body (SSE only when a notification comes
    // first): a client reads it to its end and keeps the connection, where
    // an event stream cost a TCP connection per call.
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_json_response(true);
    let ct = config.cancellation_token.clone();
    let service: StreamableHttpService<Gateway, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(gateway.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    // A response is written in a few small pieces (headers, events, the
    // end of the stream): without TCP_NODELAY, Nagle's algorithm holds each
    // after the first until the client acknowledges it.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on a client connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            ct.cancel();
        })
        .await
}

/// Serves one client over standard input and output until it leaves.
pub async fn serve_stdio(gateway: Gateway) -> Result<(), String> {
    let running = gateway
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| e.to_string())?;
    running.waiting().await.map_err(|e| e.to_string())?;
    Ok(())
}
