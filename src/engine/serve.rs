//! Serving: the engine's router on a TCP listener until a shutdown signal,
//! then a graceful stop — requests in flight finish, queued shadow
//! evaluations run, the decision log is written out and closed.
//!
//! [`shutdown_signal`] is the one signal handler of every long-running
//! command (`sluice engine`, `sluice reconcile`, `sluice demo`). Nothing
//! here evaluates or holds state.

use std::sync::Arc;

use axum::serve::ListenerExt as _;

use crate::engine::http::router;
use crate::engine::server::Engine;

/// Serves `engine` on `listener` until `shutdown` completes, then lets
/// requests in flight finish, waits for queued shadow evaluations and
/// closes the decision log.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&engine));
    // Decisions are small and latency-bound: no Nagle delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    engine.shutdown().await;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. A signal whose handler cannot
/// be installed never completes; the other still can.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
