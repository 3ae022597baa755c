//! Socket.IO sockets that open a WebSocket directly (`transport=websocket` without a session
//! id: `io(url, { transports: ["websocket"] })`, the usual production setting since it needs no
//! sticky sessions), served on Herald's own WebSocket rather than through socketioxide.
//!
//! A socket.io-client on the default transports starts on HTTP long-polling and upgrades its
//! session to a WebSocket later: socketioxide serves those, with the whole protocol. A socket
//! that starts on a WebSocket needs only a small, fixed part of it, which this module speaks:
//!
//! 1. the Engine.IO `open` packet (`0{"sid","upgrades":[],"pingInterval","pingTimeout",
//!    "maxPayload"}`), the intervals those of `/api/ws` (`ws_ping_interval`,
//!    `ws_pong_timeout`);
//! 2. the client's `CONNECT` to the main namespace (`40` with the handshake `auth`), which
//!    passes the checks of the polling path (the socket rule of `Origin`, then
//!    `http::subscribe::admit`) and is answered `40{"sid"}` or `44{"message"}` (the
//!    `connect_error`, `<code>: <explanation>`; the client may try again on the same socket, a
//!    few times); another namespace gets `44/<nsp>,{"message":"Invalid namespace"}`;
//! 3. then the connection as any WebSocket of the hub (`crate::ws`'s socket in its Engine.IO
//!    dialect): one `42["name",data,"id"]` message per event, encoded once per event and shared
//!    ([`super::packets`]), Engine.IO pings, the client's `41` or `1` to leave.
//!
//! The gain is the cost of a socket: the bytes of an event are shared by every socket instead
//! of being parsed and encoded per socket, and an idle socket holds what a `/api/ws` one holds
//! (BENCHMARKS.md, "Socket.IO against a Node socket.io server").

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use futures_util::{FutureExt, SinkExt, StreamExt};

use super::packets::SOCKETIO_PACKETS;
use super::{admit_socket, Refusal};
use crate::http::{ApiError, AppState};
use crate::transport::Subscription;
use crate::ws::socket::{self, Dialect, Pings};
use crate::ws::READ_BUFFER;

/// Largest message a client may send (its `CONNECT` with a token, pongs).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Bytes of messages gathered before they are written.
const WRITE_BUFFER: usize = 16 * 1024;
/// How long a client has to send its `CONNECT` after the `open` packet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most sockets of this path waiting for their `CONNECT` at once (per process): a socket is
/// upgraded before it is admitted (its identity comes in the `CONNECT`), so these are bounded
/// on their own; past it the upgrade is refused with `503` and the client retries.
const MAX_PENDING_HANDSHAKES: usize = 4096;

/// The sockets of this path waiting for their `CONNECT`.
static PENDING_HANDSHAKES: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_PENDING_HANDSHAKES);
/// Refused `CONNECT`s one socket may try before it is closed.
const MAX_ATTEMPTS: usize = 3;

/// Whether `request` is a Socket.IO WebSocket that starts a session of its own (Engine.IO v4,
/// `transport=websocket`, no `sid`): the sockets this module serves.
pub(crate) fn is_direct_websocket(request: &Request) -> bool {
    let Some(query) = request.uri().query() else {
        return false;
    };
    let (mut eio4, mut websocket, mut sid) = (false, false, false);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "EIO" => eio4 = value == "4",
            "transport" => websocket = value == "websocket",
            "sid" => sid = true,
            _ => {}
        }
    }
    eio4 && websocket && !sid
}

/// Upgrades `request` and serves the socket (see the module docs). A request that is not a
/// WebSocket handshake gets Engine.IO's answer to a bad request.
pub(crate) async fn open(state: AppState, request: Request) -> Response {
    let Ok(pending) = PENDING_HANDSHAKES.try_acquire() else {
        let body =
            serde_json::json!({"code": 5, "message": "too many handshakes in progress; retry"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    };
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            // Engine.IO's own error body: `{"code": 3, "message": "Bad request"}`.
            let body = serde_json::json!({"code": 3, "message": rejection.body_text()});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let tracked = state.hub.lifecycle().tasks().token();
    let pings = Pings {
        interval: state.config.ws_ping_interval,
        timeout: state.config.ws_pong_timeout,
    };
    let handshaking = Box::new((state, parts, pending, pings, tracked));
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            // What the closure needs in one box, the handshake boxed, and then the socket's
            // future itself: what the handshake needs (the request, the hub's state, its
            // futures) is freed once it is done instead of staying in the socket's task for as
            // long as the socket lives (axum keeps the closure's room in that task).
            let (state, parts, pending, pings, tracked) = *handshaking;
            Box::pin(handshake(state, parts, socket, pending, pings)).then(move |opened| {
                match opened {
                    Some((socket, subscription)) => Either::Left(socket::run(
                        socket,
                        subscription,
                        pings,
                        Dialect::EngineIo,
                        tracked,
                    )),
                    None => Either::Right(std::future::ready(())),
                }
            })
        })
}

/// The Engine.IO session id of a socket: random, like socketioxide's.
fn session_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends the Engine.IO `open` packet, then waits for the client's `CONNECT` and admits it
/// ([`connect_packet`]): the socket and its subscription, or `None` when the socket is done
/// (closed here).
async fn handshake(
    state: AppState,
    parts: Parts,
    mut socket: WebSocket,
    pending: tokio::sync::SemaphorePermit<'static>,
    pings: Pings,
) -> Option<(WebSocket, Subscription)> {
    let open = serde_json::json!({
        "sid": session_id(),
        "upgrades": [],
        "pingInterval": pings.interval.as_millis() as u64,
        "pingTimeout": pings.timeout.as_millis() as u64,
        "maxPayload": MAX_CLIENT_MESSAGE,
    });
    let open = format!("0{open}");
    if socket.send(Message::Text(open.into())).await.is_err() {
        return None;
    }
    let admitted = connect_packet(&state, &parts, &mut socket).await;
    drop(pending);
    match admitted {
        Some(subscription) => Some((socket, subscription)),
        None => {
            let _ = socket.close().await;
            None
        }
    }
}

/// Waits for the client's `CONNECT` and admits it: the socket's subscription, or `None` when
/// the client left, sent nothing in time, or was refused [`MAX_ATTEMPTS`] times.
async fn connect_packet(
    state: &AppState,
    parts: &Parts,
    socket: &mut WebSocket,
) -> Option<Subscription> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut attempts = 0;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??
            .ok()?;
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return None,
            _ => continue,
        };
        let Some(rest) = text.strip_prefix("40") else {
            if text.starts_with('1') || text.starts_with("41") {
                return None;
            }
            // A pong, a packet before its time: nothing to do yet.
            continue;
        };
        if let Some(namespace) = rest
            .strip_prefix('/')
            .map(|r| r.split(',').next().unwrap_or(""))
        {
            if !namespace.is_empty() {
                let refusal = format!("44/{namespace},{{\"message\":\"Invalid namespace\"}}");
                socket.send(Message::Text(refusal.into())).await.ok()?;
                continue;
            }
        }
        let auth = rest.strip_prefix("/,").unwrap_or(rest);
        match connect(state, parts, auth).await {
            Ok(subscription) => {
                let ack = format!("40{{\"sid\":\"{}\"}}", subscription.connection_id());
                socket.send(Message::Text(ack.into())).await.ok()?;
                return Some(subscription);
            }
            Err(refusal)
                if matches!(
                    refusal.0.status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ) =>
            {
                // A refusal that may pass later (rate limits, a full or draining hub, the auth
                // hook down): closing the transport makes socket.io-client reconnect with its
                // backoff, where a `connect_error` would leave it disconnected for good.
                return None;
            }
            Err(refusal) => {
                let packet = format!("44{}", serde_json::json!({"message": refusal.to_string()}));
                socket
                    .send(Message::Text(Utf8Bytes::from(packet)))
                    .await
                    .ok()?;
                attempts += 1;
                if attempts >= MAX_ATTEMPTS {
                    return None;
                }
            }
        }
    }
}

/// The checks of the polling path's `connect` middleware, for the `auth` JSON of a `CONNECT`.
async fn connect(state: &AppState, parts: &Parts, auth: &str) -> Result<Subscription, Refusal> {
    let auth: Option<serde_json::Value> = if auth.is_empty() {
        None
    } else {
        Some(serde_json::from_str(auth).map_err(|_| {
            ApiError::bad_request("invalid_auth", "the handshake's auth is not JSON")
        })?)
    };
    // No transport closer: an eviction aborts the outbox, which the socket watches.
    admit_socket(state, parts, auth.as_ref(), &SOCKETIO_PACKETS, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn only_fresh_engine_io_4_websockets_are_direct() {
        assert!(is_direct_websocket(&request(
            "/socket.io/?EIO=4&transport=websocket"
        )));
        for other in [
            "/socket.io/?EIO=4&transport=polling",
            "/socket.io/?EIO=4&transport=websocket&sid=abc",
            "/socket.io/?EIO=3&transport=websocket",
            "/socket.io/",
        ] {
            assert!(!is_direct_websocket(&request(other)), "{other}");
        }
    }
}
