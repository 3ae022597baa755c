//! The Socket.IO transport: `/socket.io/` (protocol v5, the one `socket.io-client` 3.x and 4.x
//! speak), on [`socketioxide`], with its `polling` and `websocket` transports and the upgrade
//! between them.
//!
//! Two paths serve it. A socket that starts on a WebSocket (`transport=websocket`, no session
//! id) is served on Herald's own WebSocket ([`websocket`], in the Engine.IO dialect of
//! `crate::ws`'s socket), each event's packet encoded once for every such socket
//! ([`packets`]). Every other request (long polling, and the upgrade of a polling session to a
//! WebSocket) goes to socketioxide, which carries the whole protocol; what follows describes
//! that path, whose sockets the identity, events and refusals of the first path match.
//!
//! socketioxide carries the protocol; Herald does the routing. Each socket of the `/` namespace
//! is a registry connection like an SSE or WebSocket one (targets, bounded outbox, slow-reader
//! eviction, limits, resume), in its own wire format ([`format::SOCKETIO_FORMAT`]); socketioxide
//! rooms are not used. A task per socket (`drain`) emits each record the connection's
//! [`Subscription`] yields as a Socket.IO event of the same name: `socket.on("notification",
//! (data, id) => …)`, with the payload as the first argument and the event id (what
//! `auth.lastEventId` resumes from) as the second where the event has one; `connected`,
//! `disconnected`, `reset` and `heartbeat` alike.
//!
//! The handshake's `auth` payload carries what `GET /api/sse` takes in its query:
//! `{"token", "channels": [...], "lastEventId"}`, or `{"userId", "username", "channels",
//! "sessionId", "metadata": {...}}` where
//! identity from the query is allowed. It passes the same checks (`http::subscribe::admit`,
//! plus the socket rule of `Origin`, `http::origin`); a refusal is the namespace's
//! `connect_error`, whose message is `<code>: <explanation>` (the code of the JSON error the SSE
//! endpoint would answer).
//!
//! When the hub ends the connection (eviction, `POST /api/sse/disconnect`, shutdown) the socket
//! is disconnected; when the socket disconnects, the subscription is dropped, which unregisters
//! the connection.

pub mod format;
pub mod packets;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::MethodRouter;
use futures_util::StreamExt;
use parking_lot::Mutex;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SendError, SocketError, SocketIo};
use tokio_util::sync::CancellationToken;

use crate::http::auth_hook::Transport;
use crate::http::subscribe::admit;
use crate::http::{ApiError, AppState};
use crate::registry::TransportCloser;
use crate::transport::Subscription;

pub use format::SOCKETIO_FORMAT;

/// The path of the Socket.IO endpoint (socket.io-client's default `path`, `/socket.io`).
pub const SOCKETIO_PATH: &str = "/socket.io/";

/// Packets socketioxide buffers per socket before `emit` reports the socket full. A long-poll
/// client takes the buffer at each poll, so this holds a burst between two polls.
const BUFFER: usize = 1024;
/// Largest WebSocket message (and frame) a client may send: its packets are the namespace
/// handshake (with `auth`, a token) and pongs. (socketioxide's default is 64 MiB.)
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// How often a full socket buffer is tried again.
const FULL_RETRY: Duration = Duration::from_millis(10);
/// Event names socket.io-client keeps for itself: an event emitted under one of them would
/// fire the client's own handlers (a Socket.IO server refuses to emit them), so Herald events
/// with these names are not sent to Socket.IO sockets.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The route entry of the endpoint: socketioxide's service for `GET` (the WebSocket upgrade,
/// long polls) and `POST` (polling's client packets) at [`SOCKETIO_PATH`], its `/` namespace
/// served by the hub in `state`. (A CORS preflight is answered by the router's CORS layer.)
pub(crate) fn endpoint(state: &AppState) -> MethodRouter<AppState> {
    let config = &state.config;
    let (service, io) = SocketIo::builder()
        .req_path(SOCKETIO_PATH.trim_end_matches('/'))
        .ping_interval(config.ws_ping_interval)
        .ping_timeout(config.ws_pong_timeout)
        .max_buffer_size(BUFFER)
        .ws_max_message_size(MAX_CLIENT_MESSAGE)
        .ws_max_frame_size(MAX_CLIENT_MESSAGE)
        .build_svc();
    let admitting = state.clone();
    let serving = state.clone();
    let handler = move |socket: SocketRef| {
        let state = serving.clone();
        async move { serve(state, socket) }
    };
    let middleware = move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
        let state = admitting.clone();
        async move { connect(&state, &socket, auth.ok()).await }
    };
    io.ns("/", handler.with(middleware));
    let polling = service.clone();
    let get = move |axum::extract::State(state): axum::extract::State<AppState>,
                    request: axum::extract::Request| {
        let polling = polling.clone();
        async move {
            if websocket::is_direct_websocket(&request) {
                websocket::open(state, request).await
            } else {
                match tower::ServiceExt::oneshot(polling, request).await {
                    Ok(response) => response.map(axum::body::Body::new),
                    Err(never) => match never {},
                }
            }
        }
    };
    axum::routing::get(get).post_service(service)
}

/// Why a handshake was refused: the `connect_error` message.
#[derive(Debug)]
struct Refusal(ApiError);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal(e)
    }
}

/// What the middleware hands to the handler: the socket's connection, once.
#[derive(Clone)]
struct Pending(Arc<Mutex<Option<(Subscription, CancellationToken)>>>);

/// The connect middleware: the checks of `GET /api/sse`, then [`Hub::connect`](crate::Hub::connect).
async fn connect(
    state: &AppState,
    socket: &SocketRef,
    auth: Option<serde_json::Value>,
) -> Result<(), Refusal> {
    let evicted = CancellationToken::new();
    let subscription = admit_socket(
        state,
        socket.req_parts(),
        auth.as_ref(),
        &SOCKETIO_FORMAT,
        Some(TransportCloser::new(evicted.clone())),
    )
    .await?;
    socket
        .extensions
        .insert(Pending(Arc::new(Mutex::new(Some((subscription, evicted))))));
    Ok(())
}

/// What both paths check before a socket becomes a connection: the socket rule of `Origin`
/// on the handshake request `parts`, then the checks of `GET /api/sse` with `auth` as the query
/// (`http::subscribe::admit`); then [`Hub::connect`](crate::Hub::connect) in `format`, with
/// `closer` for the registry to close the transport with when it evicts the client. The
/// connection's subscription.
async fn admit_socket(
    state: &AppState,
    parts: &axum::http::request::Parts,
    auth: Option<&serde_json::Value>,
    format: &'static dyn crate::transport::WireFormat,
    closer: Option<TransportCloser>,
) -> Result<Subscription, Refusal> {
    let cookie = crate::http::origin::check_socket_origin(
        &state.config,
        &axum::http::Request::from_parts(parts.clone(), ()),
    )?;
    let query = auth_query(auth)?;
    let admission = admit(
        state,
        parts.extensions.get::<ConnectInfo<SocketAddr>>(),
        &parts.headers,
        Some(&query),
        cookie,
        Transport::SocketIo,
    )
    .await?;
    let request = admission.into_request(state, format, closer)?;
    Ok(state.hub.connect(request).await.map_err(ApiError::from)?)
}

/// The `auth` payload as the query of `GET /api/sse`: `token`, `userId`, `username`,
/// `sessionId`, `metadata` (an object, or its JSON text),
/// `lastEventId` (strings) and `channels` (an array of names, or a comma-separated string).
/// Other keys are ignored.
fn auth_query(auth: Option<&serde_json::Value>) -> Result<String, ApiError> {
    use serde_json::Value;
    let mut query = form_urlencoded::Serializer::new(String::new());
    let Some(auth) = auth.filter(|a| !a.is_null()) else {
        return Ok(query.finish());
    };
    let Value::Object(fields) = auth else {
        return Err(ApiError::bad_request(
            "invalid_auth",
            "the handshake's auth must be an object: {\"token\", \"channels\", \"lastEventId\"}",
        ));
    };
    for key in ["token", "userId", "username", "lastEventId", "sessionId"] {
        match fields.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                query.append_pair(key, s);
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_auth",
                    format!("auth.{key}: must be a string"),
                ))
            }
        }
    }
    // An object (or its JSON text), checked like the query's `metadata`.
    match fields.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            query.append_pair("metadata", &Value::Object(m.clone()).to_string());
        }
        Some(Value::String(s)) => {
            query.append_pair("metadata", s);
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "auth.metadata: must be a JSON object",
            ))
        }
    }
    match fields.get("channels") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            query.append_pair("channels", s);
        }
        Some(Value::Array(names)) => {
            for name in names {
                let Value::String(name) = name else {
                    return Err(ApiError::bad_request(
                        "invalid_auth",
                        "auth.channels: must be an array of channel names",
                    ));
                };
                if name.contains(',') {
                    return Err(ApiError::bad_request(
                        "invalid_field",
                        format!("channel {name:?}: a channel name has no comma"),
                    ));
                }
                query.append_pair("channels", name);
            }
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_auth",
                "auth.channels: must be an array of channel names",
            ))
        }
    }
    Ok(query.finish())
}

/// The connect handler: starts the socket's drain task, which owns its connection.
fn serve(state: AppState, socket: SocketRef) {
    let Some((subscription, evicted)) = socket
        .extensions
        .get::<Pending>()
        .and_then(|Pending(slot)| slot.lock().take())
    else {
        // The middleware always leaves one; without it there is nothing to serve.
        let _ = socket.disconnect();
        return;
    };
    socket.extensions.remove::<Pending>();
    let gone = CancellationToken::new();
    socket.on_disconnect({
        let gone = gone.clone();
        move || {
            gone.cancel();
            async {}
        }
    });
    // Any event the client emits shows it is not idle (`idle_timeout`). Engine.IO's own
    // ping and pong stay inside socketioxide and do not count.
    let activity = subscription.activity();
    socket.on_fallback(move || {
        activity.touch();
        async {}
    });
    if !socket.connected() {
        gone.cancel();
    }
    state
        .hub
        .lifecycle()
        .spawn(drain(socket, subscription, evicted, gone));
}

/// Why a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The hub ended the stream (after its `disconnected` event), or evicted the client.
    Hub,
    /// The socket is gone (the client left, or a transport failed).
    Socket,
}

/// Emits what `subscription` yields on `socket` until either ends (see the module docs).
async fn drain(
    socket: SocketRef,
    mut subscription: Subscription,
    evicted: CancellationToken,
    gone: CancellationToken,
) {
    let connection = subscription.connection_id();
    let end = loop {
        let chunk = tokio::select! {
            biased;
            _ = gone.cancelled() => break End::Socket,
            _ = evicted.cancelled() => break End::Hub,
            chunk = subscription.next() => chunk,
        };
        let chunk = match chunk {
            Some(Ok(chunk)) => chunk,
            Some(Err(_)) | None => break End::Hub,
        };
        let mut failed = false;
        for line in format::lines(&chunk) {
            let record = match format::Record::parse(line) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(%connection, "a Socket.IO record does not parse: {e}");
                    continue;
                }
            };
            if RESERVED_EVENTS.contains(&&*record.event) {
                tracing::debug!(%connection, event = %record.event, "not emitted: a name socket.io-client reserves");
                continue;
            }
            if !emit(&socket, &record, &gone, &evicted).await {
                failed = true;
                break;
            }
        }
        if failed {
            break if gone.is_cancelled() || !socket.connected() {
                End::Socket
            } else {
                End::Hub
            };
        }
    };
    drop(subscription);
    if end == End::Hub {
        disconnect(socket, &gone).await;
    }
}

/// Emits one record; `false` when the socket is gone or the hub evicted it meanwhile.
async fn emit(
    socket: &SocketRef,
    record: &format::Record<'_>,
    gone: &CancellationToken,
    evicted: &CancellationToken,
) -> bool {
    loop {
        let sent = match record.id.as_deref() {
            Some(id) => socket.emit(&*record.event, &(record.data, id)),
            None => socket.emit(&*record.event, &record.data),
        };
        match sent {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                // The client has not taken the buffer yet (a long poll between two requests, a
                // slow reader); the outbox keeps filling meanwhile and evicts it if it stays
                // behind.
                tokio::select! {
                    _ = gone.cancelled() => return false,
                    _ = evicted.cancelled() => return false,
                    _ = tokio::time::sleep(FULL_RETRY) => {}
                }
            }
            Err(SendError::Serialize(e)) => {
                tracing::error!(socket = %socket.id, "a Socket.IO event does not serialize: {e}");
                return true;
            }
            Err(SendError::Socket(_)) => return false,
        }
    }
}

/// Disconnects `socket` from its namespace. Its buffer may be full (an evicted slow reader):
/// the disconnect packet is tried again until it fits or the socket is gone (Engine.IO's ping
/// timeout ends a client that reads nothing at all).
async fn disconnect(socket: SocketRef, gone: &CancellationToken) {
    loop {
        match socket.clone().disconnect() {
            Err(SocketError::InternalChannelFull) if !gone.is_cancelled() => {
                tokio::select! {
                    _ = gone.cancelled() => return,
                    _ = tokio::time::sleep(FULL_RETRY) => {}
                }
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auth_payloads_become_the_subscribe_query() {
        let q = auth_query(Some(&json!({
            "token": "a.b.c", "channels": ["x", "y-z"], "lastEventId": "abc-1", "other": 1
        })))
        .unwrap();
        assert_eq!(q, "token=a.b.c&lastEventId=abc-1&channels=x&channels=y-z");
        let q = auth_query(Some(&json!({"userId": "al ice", "channels": "a,b"}))).unwrap();
        assert_eq!(q, "userId=al+ice&channels=a%2Cb");
        let q = auth_query(Some(
            &json!({"userId": "a", "sessionId": "s1", "metadata": {"p": 1}}),
        ))
        .unwrap();
        assert_eq!(q, "userId=a&sessionId=s1&metadata=%7B%22p%22%3A1%7D");
        let parsed = crate::http::subscribe::parse_query(Some(&q)).unwrap();
        assert_eq!(parsed.session_id.as_deref(), Some("s1"));
        assert_eq!(parsed.metadata.unwrap()["p"], 1);
        assert_eq!(auth_query(None).unwrap(), "");
        assert_eq!(auth_query(Some(&json!(null))).unwrap(), "");
    }

    #[test]
    fn bad_auth_payloads_are_refused() {
        for bad in [
            json!("token"),
            json!({"token": 5}),
            json!({"channels": [1]}),
            json!({"channels": {"a": 1}}),
            json!({"channels": ["a,b"]}),
            json!({"metadata": [1]}),
            json!({"sessionId": 1}),
        ] {
            let e = auth_query(Some(&bad)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
        let message = Refusal(auth_query(Some(&json!({"token": 5}))).unwrap_err()).to_string();
        assert_eq!(message, "invalid_auth: auth.token: must be a string");
    }
}
