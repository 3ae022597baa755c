//! `serve`: accept TCP connections and serve the HTTP API on them until told to stop. The one
//! place that spawns connection tasks.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::{self, AppState};
use crate::hub::Hub;
use crate::registry::TransportCloser;

/// Serves the HTTP API of `state` on `listener` until `shutdown` is cancelled, then shuts down
/// gracefully:
///
/// 1. stop accepting connections;
/// 2. end every SSE stream with a `disconnected` event (reason `server_shutdown`) and a jittered
///    `retry:` hint ([`crate::Hub::shutdown`]);
/// 3. let in-flight requests finish and close idle connections;
/// 4. return once every connection is done, or after `shutdown_timeout` at the latest.
///
/// It installs no signal handler: the caller decides what cancels `shutdown` (the binary: SIGINT
/// and SIGTERM; tests: dropping their handle).
///
/// # Errors
/// None at present; accept errors are logged and retried, since they are usually transient
/// (out of file descriptors, a connection reset before it was accepted).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
) -> io::Result<()> {
    let router = http::router(state.clone());
    serve_router(listener, router, state.hub, shutdown, shutdown_timeout).await
}

/// Like [`serve`], for an application that merged Herald's router ([`http::router`]) into its
/// own: serves `router`, and at shutdown shuts `hub` down before waiting for connections.
/// Prefer it to `axum::serve` for apps that embed Herald: it also drops the socket of a slow
/// consumer at once, where `axum::serve` can only end its response.
///
/// # Errors
/// As [`serve`].
pub async fn serve_router(
    listener: TcpListener,
    router: axum::Router,
    hub: Hub,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Request headers must arrive promptly; an SSE response streams for as long as it likes.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors, typically: give connections time to close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let closer = CancellationToken::new();
        let service = router
            .clone()
            .map_request(with_connection_extensions(peer, closer.clone()));
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_connection_end(result),
                // The hub evicted a slow consumer: drop the socket now.
                _ = closer.cancelled() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = conn.as_mut() => log_connection_end(result),
                        _ = closer.cancelled() => {}
                    }
                }
            }
        });
    }
    drop(listener);
    hub.shutdown().await;
    tracker.close();
    if tokio::time::timeout(shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tracker.len(),
            "shutdown timeout reached; dropping the remaining connections"
        );
    }
    Ok(())
}

fn with_connection_extensions(
    peer: SocketAddr,
    closer: CancellationToken,
) -> impl Fn(
    axum::extract::Request<hyper::body::Incoming>,
) -> axum::extract::Request<hyper::body::Incoming>
       + Clone {
    move |mut request| {
        let ext = request.extensions_mut();
        ext.insert(ConnectInfo(peer));
        ext.insert(TransportCloser::new(closer.clone()));
        request
    }
}

fn log_connection_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
