//! `serve`: accept TCP (or TLS) connections and serve the HTTP API on them until told to stop.
//! The one place that spawns connection tasks, on the [`Lifecycle`] it is given (the root that
//! the hub was started on, so that one tracker holds every task of the process).
//!
//! Plain-TCP connections whose first request opens an event stream are served by
//! `event_stream` (small per-connection footprint); everything else by hyper.

mod event_stream;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::lifecycle::Lifecycle;

use crate::config::{Config, TlsFiles};
use crate::http::{self, AppState};
use crate::hub::Hub;
use crate::registry::TransportCloser;

/// Longest time a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of HTTP/2 keep-alive pings, which find dead connections.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How the server runs: everything about connections rather than about the hub.
#[derive(Clone)]
pub struct ServerOptions {
    /// How long graceful shutdown waits for connections.
    pub shutdown_timeout: Duration,
    /// Longest time to receive request headers.
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_header_size: usize,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this acceptor.
    pub tls: Option<TlsAcceptor>,
    /// Runtime for everything but event streams (publishes, admin, health, TLS and HTTP/2
    /// connections). Under a heavy fan-out the main runtime's queues hold thousands of stream
    /// tasks; a publish served there would wait its turn behind them. `None`: one runtime.
    pub api_runtime: Option<tokio::runtime::Handle>,
    /// Serve plain-HTTP/1.1 event streams without hyper (see the `event_stream` module); on by
    /// default.
    /// Off only to compare the two in benchmarks (the `herald` binary turns it off when
    /// `HERALD_STREAMS_VIA_HYPER=1`).
    pub lean_event_streams: bool,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_size", &self.max_header_size)
            .field("tls", &self.tls.is_some())
            .field("lean_event_streams", &self.lean_event_streams)
            .field("api_runtime", &self.api_runtime.is_some())
            .finish()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            shutdown_timeout: crate::config::DEFAULT_SHUTDOWN_TIMEOUT,
            header_read_timeout: crate::config::DEFAULT_HEADER_READ_TIMEOUT,
            max_header_size: crate::config::DEFAULT_MAX_HEADER_SIZE,
            tls: None,
            api_runtime: None,
            lean_event_streams: true,
        }
    }
}

impl ServerOptions {
    /// The server options of a configuration, loading its TLS certificate and key.
    ///
    /// # Errors
    /// When the TLS files cannot be read or used.
    pub fn from_config(config: &Config) -> io::Result<Self> {
        Ok(ServerOptions {
            shutdown_timeout: config.shutdown_timeout,
            header_read_timeout: config.header_read_timeout,
            max_header_size: config.max_header_size,
            tls: config.tls.as_ref().map(tls_acceptor).transpose()?,
            lean_event_streams: true,
            api_runtime: None,
        })
    }
}

/// Most connections waiting in the kernel to be accepted. The default of 128 drops connections
/// (and costs clients a second each to retry) when thousands of clients come back at once.
/// How long a connection whose first request head is still incomplete when shutdown starts
/// may go on sending it.
const SHUTDOWN_HEAD_GRACE: Duration = Duration::from_secs(1);

pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for `config.listen` with a deep accept backlog, `SO_REUSEADDR`, and
/// `SO_REUSEPORT` when `config.reuse_port` is set.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(config: &Config) -> io::Result<TcpListener> {
    let socket = if config.listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if config.reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(config.listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Builds a TLS acceptor that offers HTTP/2 and HTTP/1.1 (ALPN).
///
/// # Errors
/// When a file cannot be read, holds no certificate or key, or they do not match.
pub fn tls_acceptor(files: &TlsFiles) -> io::Result<TlsAcceptor> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(std::fs::File::open(&files.cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(invalid(
            "TLS certificate",
            &"no certificate in the PEM file",
        ));
    }
    let key =
        rustls_pemfile::private_key(&mut io::BufReader::new(std::fs::File::open(&files.key)?))?
            .ok_or_else(|| invalid("TLS key", &"no private key in the PEM file"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid("TLS", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| invalid("TLS certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves the HTTP API of `state` on `listener` until `lifecycle` is cancelled, then shuts down
/// gracefully:
///
/// 1. stop accepting connections;
/// 2. end every SSE stream with a `disconnected` event (reason `server_shutdown`) and a jittered
///    `retry:` hint, stop the hub's loops and its engine ([`crate::Hub::shutdown`]);
/// 3. let in-flight requests finish and close idle connections;
/// 4. return once every task of `lifecycle`'s tree is done (the connections, and anything else
///    spawned on it: see [`Lifecycle::wait`]), or after `shutdown_timeout` at the latest.
///
/// Connection tasks are spawned on `lifecycle`; pass the lifecycle the hub was started on
/// ([`crate::Hub::start`]), or its root. It installs no signal handler: the caller decides what
/// cancels `lifecycle` (the binary: SIGINT and SIGTERM; tests: dropping their handle).
///
/// # Errors
/// None at present; accept errors are logged and retried, since they are usually transient
/// (out of file descriptors, a connection reset before it was accepted).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    lifecycle: Lifecycle,
    options: ServerOptions,
) -> io::Result<()> {
    let router = http::router(state.clone());
    serve_router(listener, router, state.hub.clone(), lifecycle, options).await
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
    lifecycle: Lifecycle,
    options: ServerOptions,
) -> io::Result<()> {
    let shutdown = lifecycle.token().clone();
    let tracker = lifecycle.tasks().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        // The read buffer bounds the request head; hyper answers 431 beyond it.
        .max_buf_size(options.max_header_size.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(options.max_header_size as u32)
        .keep_alive_interval(H2_KEEP_ALIVE);
    // Shared by every connection task, so that each task holds one pointer, not copies.
    let context = Arc::new(ConnectionContext {
        builder,
        router,
        shutdown: shutdown.clone(),
        tls: options.tls.is_some(),
        idle_timeout: options.header_read_timeout,
    });
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
        hub.metrics().transport_connection_accepted();
        let _ = stream.set_nodelay(true);
        // The first request head must be in by then, whatever the client sends (a partial
        // head, a prefix of the HTTP/2 preface, bytes one at a time) and whoever reads it.
        let head_deadline = deadline_after(options.header_read_timeout);
        let connection = Connection {
            context: context.clone(),
            peer,
        };
        let api = options.api_runtime.clone();
        match options.tls.clone() {
            None if !options.lean_event_streams => {
                spawn_api(&tracker, api.as_ref(), stream, move |stream| async move {
                    connection.run(stream, head_deadline).await
                });
            }
            None => {
                let max_head = options.max_header_size;
                let tracker2 = tracker.clone();
                let draining = shutdown.clone();
                tracker.spawn(async move {
                    let mut stream = stream;
                    use event_stream::FirstRequest;
                    // A client that has not sent its head when shutdown starts gets a second
                    // more, not the whole header timeout: a silent socket (a browser's
                    // speculative connection) must not hold the exit up. Boxed, so that idle
                    // streams do not carry this state.
                    let first = Box::pin(async {
                        tokio::select! {
                            first = event_stream::read_first_request(
                                &mut stream, max_head, head_deadline,
                            ) => first,
                            _ = async {
                                draining.cancelled().await;
                                tokio::time::sleep(SHUTDOWN_HEAD_GRACE).await;
                            } => FirstRequest::Gone,
                        }
                    })
                    .await;
                    match first {
                        FirstRequest::EventStream(request) => {
                            connection.run_event_stream(stream, request).await
                        }
                        FirstRequest::Socket(prefix) => {
                            // Served by hyper here, on the stream runtime: the upgraded socket's
                            // task is spawned where its handshake ran, and a long-lived socket
                            // must not compete with publishes on the API runtime. Boxed as below.
                            Box::pin(
                                connection.run(
                                    event_stream::Prefixed::new(prefix, stream),
                                    head_deadline,
                                ),
                            )
                            .await
                        }
                        FirstRequest::Other(prefix) => {
                            // Boxed: hyper's connection future is large, and keeping it inline
                            // would make every event-stream task as big as it.
                            spawn_api(&tracker2, api.as_ref(), stream, move |stream| {
                                Box::pin(connection.run(
                                    event_stream::Prefixed::new(prefix, stream),
                                    head_deadline,
                                ))
                            });
                        }
                        // Boxed: every connection task is sized for its largest state, and
                        // this rare path must not make idle event streams bigger.
                        FirstRequest::Refused(why, mercure) => {
                            Box::pin(refuse_head(stream, why.response(mercure))).await
                        }
                        FirstRequest::Gone => {}
                    }
                });
            }
            Some(acceptor) => {
                let header_read_timeout = options.header_read_timeout;
                spawn_api(&tracker, api.as_ref(), stream, move |stream| async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        // The head's time starts once the handshake is done.
                        Ok(Ok(tls)) => {
                            let head_deadline = deadline_after(header_read_timeout);
                            connection.run(tls, head_deadline).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    hub.shutdown().await;
    if !lifecycle.wait(options.shutdown_timeout).await {
        tracing::warn!(
            remaining = tracker.len(),
            "shutdown timeout reached; dropping the remaining connections"
        );
    }
    Ok(())
}

/// The value of `boxed`, its allocation freed now.
#[allow(clippy::boxed_local)] // the point: the box arrives from elsewhere and goes here
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Runs `serve(stream)` on the API runtime when there is one (moving the socket's registration
/// to that runtime's reactor), else here.
fn spawn_api<F, Fut>(
    tracker: &TaskTracker,
    api: Option<&tokio::runtime::Handle>,
    stream: tokio::net::TcpStream,
    serve: F,
) where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(api) = api else {
        tracker.spawn(serve(stream));
        return;
    };
    let std_stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "could not hand a connection over");
            return;
        }
    };
    tracker.spawn_on(
        async move {
            match tokio::net::TcpStream::from_std(std_stream) {
                Ok(stream) => serve(stream).await,
                Err(e) => tracing::debug!(error = %e, "could not hand a connection over"),
            }
        },
        api,
    );
}

/// What every connection task needs, shared.
struct ConnectionContext {
    builder: auto::Builder<TokioExecutor>,
    router: axum::Router,
    shutdown: CancellationToken,
    /// Connections are HTTPS: requests carry [`http::TlsConnection`].
    tls: bool,
    /// How long a connection may stay without a request in progress.
    idle_timeout: Duration,
}

/// One accepted connection, ready to be served. Kept small: it lives as long as the connection.
struct Connection {
    context: Arc<ConnectionContext>,
    peer: SocketAddr,
}

impl Connection {
    /// Serves an event-stream request without hyper (see the `event_stream` module).
    async fn run_event_stream(
        self,
        stream: tokio::net::TcpStream,
        // Boxed: an async function's arguments stay in its future as long as it runs.
        mut request: Box<axum::http::Request<axum::body::Body>>,
    ) {
        let closer = CancellationToken::new();
        let ext = request.extensions_mut();
        ext.insert(ConnectInfo(self.peer));
        ext.insert(TransportCloser::new(closer.clone()));
        let http10 = request.version() == axum::http::Version::HTTP_10;
        let router = self.context.router.clone();
        drop(self);
        // Boxed: the router's future is large and needed only until the response exists; the
        // long-lived rest of this task then holds little more than the socket and the body.
        // Out of its box first: moving out of a `Box` frees it only when the box's binding goes
        // out of scope, here at the end of the stream.
        let request = unbox(request);
        let Ok(response) = Box::pin(router.oneshot(request)).await;
        // Ends when the response does, the client leaves, or the hub evicts the client (then
        // the socket is dropped at once).
        event_stream::write_response(stream, response, http10, &closer).await;
    }

    /// Serves the connection with hyper. Its first request head must have arrived by
    /// `head_deadline`, else the connection is dropped: hyper's own `header_read_timeout` covers
    /// later requests of an HTTP/1.1 connection, but not the wait for the first bytes, the
    /// HTTP/2 preface, or a head the lean reader had already spent time on.
    async fn run<I>(self, io: I, head_deadline: tokio::time::Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let closer = CancellationToken::new();
        let first_request = CancellationToken::new();
        let peer = self.peer;
        let extension_closer = closer.clone();
        let first_request_seen = first_request.clone();
        let context = self.context;
        let tls = context.tls;
        // Requests in progress, their response bodies included (an event stream is one until it
        // ends).
        let activity = Arc::new(Activity::new());
        let active = activity.clone();
        let service = context
            .router
            .clone()
            .map_request(
                move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                    first_request_seen.cancel();
                    let ext = request.extensions_mut();
                    ext.insert(ConnectInfo(peer));
                    if tls {
                        ext.insert(http::TlsConnection);
                    }
                    ext.insert(TransportCloser::new(extension_closer.clone()));
                    request
                },
            )
            .map_future(move |response| {
                let guard = InProgress::new(active.clone());
                async move {
                    let response: axum::response::Response = response.await?;
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        axum::body::Body::new(Tracked {
                            inner: body,
                            _in_progress: guard,
                        })
                    }))
                }
            });
        let conn = context
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(conn);
        // Completes when the deadline passes before the first request; never after it.
        let head_timeout = async {
            if tokio::time::timeout_at(head_deadline, first_request.cancelled())
                .await
                .is_ok()
            {
                std::future::pending::<()>().await;
            }
            tracing::debug!(%peer, "no complete request head in time; closing");
        };
        tokio::pin!(head_timeout);
        // Completes when the connection has had no request in progress for the idle timeout:
        // hyper closes such an HTTP/1.1 connection itself (its header timeout runs while it
        // waits for the next head), but would keep an idle HTTP/2 connection forever.
        let idle_timeout = context.idle_timeout;
        let idle = async move {
            loop {
                let left = activity.idle_left(idle_timeout);
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left).await;
            }
            tracing::debug!(%peer, "idle connection; closing");
        };
        tokio::pin!(idle);
        tokio::select! {
            result = conn.as_mut() => return log_connection_end(result),
            // The hub evicted a slow consumer: drop the socket now.
            _ = closer.cancelled() => return,
            _ = head_timeout.as_mut() => return,
            _ = idle.as_mut() => {}
            _ = context.shutdown.cancelled() => {
                // A client whose first request is on its way gets an answer (`503
                // shutting_down`, the hub being closed) rather than a connection closed without
                // one: it then knows that nothing was done.
                if !first_request.is_cancelled() {
                    tokio::select! {
                        result = conn.as_mut() => return log_connection_end(result),
                        _ = closer.cancelled() => return,
                        _ = head_timeout.as_mut() => return,
                        _ = first_request.cancelled() => {}
                    }
                }
            }
        }
        // Ends once the requests in progress are done (HTTP/2: after a GOAWAY).
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            result = conn.as_mut() => log_connection_end(result),
            _ = closer.cancelled() => {}
            _ = head_timeout.as_mut() => {}
        }
    }
}

/// Counts a request as in progress (in `Connection::run`) while it lives.
struct InProgress(Arc<Activity>);

impl InProgress {
    fn new(activity: Arc<Activity>) -> Self {
        activity.active.fetch_add(1, Ordering::AcqRel);
        InProgress(activity)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity
                .idle_since_ms
                .store(activity.elapsed_ms(), Ordering::Release);
        }
    }
}

/// What a connection is doing, in two atomics: its requests never wake its task (the idle check
/// looks at them when its timer fires, once per idle timeout).
struct Activity {
    /// Requests in progress, their response bodies included.
    active: AtomicUsize,
    /// When the last request ended, in ms since `base`.
    idle_since_ms: AtomicU64,
    base: std::time::Instant,
}

impl Activity {
    fn new() -> Self {
        Activity {
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            base: std::time::Instant::now(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How much longer the connection must stay without a request to count as idle; zero when
    /// it already has for `timeout`.
    fn idle_left(&self, timeout: Duration) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            return timeout;
        }
        let idle_for = self
            .elapsed_ms()
            .saturating_sub(self.idle_since_ms.load(Ordering::Acquire));
        timeout.saturating_sub(Duration::from_millis(idle_for))
    }
}

/// A response body that counts as a request in progress until it is dropped; otherwise the body
/// itself (its size hint too, so that a `Content-Length` stays).
struct Tracked {
    inner: axum::body::Body,
    _in_progress: InProgress,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// `timeout` from now, or (for a timeout too long for the clock) about thirty years from now.
fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}

fn log_connection_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Answers a first request head Herald refuses before routing it, then closes the connection
/// without resetting it before the client could read the answer.
async fn refuse_head(mut stream: tokio::net::TcpStream, response: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Bounded: a client that does not read its answer is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&response)).await;
    let _ = stream.shutdown().await;
    // Read what the client still sends (briefly, boundedly) before closing.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = vec![0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
