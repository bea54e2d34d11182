//! Serving: the engine's router on a TCP listener (under
//! [`crate::engine::guard`]'s limits) until a shutdown signal, then a
//! graceful stop — requests in flight finish, queued shadow evaluations
//! run, the decision log is written out and closed (within its close
//! timeout). SIGHUP reopens the decision log ([`reopen_on_hangup`]).
//!
//! [`shutdown_signal`] is the one signal handler of every long-running
//! command (`sluice engine`, `sluice reconcile`, `sluice demo`). Nothing
//! here evaluates or holds state.

use std::sync::Arc;

use crate::engine::decision_log::Reopen;
use crate::engine::guard::{HttpLimits, serve_router};
use crate::engine::http::router_with;
use crate::engine::server::Engine;

/// Serves `engine` on `listener` under `limits` until `shutdown`
/// completes, then lets requests in flight finish, waits for queued
/// shadow evaluations and closes the decision log.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(Arc::clone(&engine), &limits);
    serve_router(listener, app, limits, shutdown).await?;
    engine.shutdown().await;
    Ok(())
}

/// Reopens the decision log on every SIGHUP (what logrotate sends), for
/// as long as the runtime runs. Installed with or without a log: a SIGHUP
/// never stops the engine.
pub fn reopen_on_hangup(reopen: Reopen) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reopening the decision log");
                        reopen.request();
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: the decision log cannot be reopened")
            }
        }
    }
    #[cfg(not(unix))]
    drop(reopen);
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
