//! The WebSocket transport: `GET /api/ws`.
//!
//! A WebSocket connection is a registry connection like an SSE one, in its own wire format
//! ([`frame::WS_JSON`]: one JSON text message per event). Everything else is the core's: the
//! targets, the bounded outbox and the eviction of a slow reader, `?lastEventId=` resume
//! (replay, then live, or `reset`), the heartbeat event, `disconnected` with its reason.
//!
//! Before the upgrade, the request passes the same checks as `GET /api/sse` (identity, channel
//! authorization, limits; the same JSON errors and statuses) and one more: the socket rule of
//! `Origin` (see `http::origin`), since a browser opens a WebSocket from any page with the
//! user's cookies. After it, `socket` runs the connection: messages out, server pings with a
//! pong deadline, the client's frames in.
//!
//! permessage-deflate is not offered (axum does not negotiate it): every message is encoded
//! once and its bytes shared by every connection, which per-connection compression would undo.

pub mod frame;
pub(crate) mod socket;

use std::net::SocketAddr;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::auth_hook::Transport;
use crate::http::subscribe::admit;
use crate::http::{ApiError, AppState};

pub use frame::{JsonLines, WS_JSON};

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/api/ws";

/// Largest message (and frame) a client may send. Clients send nothing the hub needs yet; this
/// leaves room for small commands and bounds what a client can make the hub buffer.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Read buffer of a socket. tungstenite allocates it up front (128 KiB by default), so it is
/// sized for what clients send (pongs, small frames), not for what the hub sends: at ten
/// thousand sockets that is 5 MiB rather than 1.25 GiB. A larger frame is read in several
/// reads. (4 KiB gave 8.4 KiB per idle socket, 512 bytes 4.9: BENCHMARKS.md.) A client's
/// messages are few and small, so a small buffer costs a few more reads of them, no more.
pub(crate) const READ_BUFFER: usize = 128;
/// Bytes of messages gathered before they are written: one write for a usual burst, and a
/// small buffer kept per connection.
const WRITE_BUFFER: usize = 16 * 1024;

/// Opens a WebSocket (`GET /api/ws`, with the WebSocket handshake headers). The query is the
/// one of `GET /api/sse`: `userId`, `username`, `channels`, `token`, and `lastEventId` to
/// resume. The first message is the `connected` event; then every event targeted at this
/// connection, and heartbeats; each is one text message `{"id", "event", "data"}` (see
/// [`frame`]).
///
/// Errors, as JSON before the upgrade: those of `GET /api/sse` (`400`, `401`, `403`, `429`,
/// `503`); `403 origin_not_allowed` for a page on an origin that is neither the hub's nor in
/// `cors_origins`; `426 upgrade_required` for a request that is not a WebSocket handshake
/// (version 13).
pub async fn subscribe(State(state): State<AppState>, request: Request) -> Response {
    match open(state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn open(state: AppState, request: Request) -> Result<Response, ApiError> {
    let cookie = crate::http::origin::check_socket_origin(&state.config, &request)?;
    let (mut parts, _body) = request.into_parts();
    let admission = admit(
        &state,
        parts.extensions.get::<ConnectInfo<SocketAddr>>(),
        &parts.headers,
        parts.uri.query(),
        cookie,
        Transport::WebSocket,
    )
    .await?;
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(not_a_handshake(&rejection)),
    };
    // No transport closer: an eviction aborts the outbox, which the socket watches.
    let request = admission.into_request(&state, &WS_JSON, None)?;
    let subscription = state.hub.connect(request).await?;
    let pings = socket::Pings {
        interval: state.config.ws_ping_interval,
        timeout: state.config.ws_pong_timeout,
    };
    // axum runs the upgraded socket on a task of its own; the token makes the hub's tracker
    // count it, so that shutdown waits for it as for any connection.
    let tracked = state.hub.lifecycle().tasks().token();
    let serving = Box::new((subscription, pings, tracked));
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        // The socket's future itself, not an `async` block around it (a block would keep room
        // for the socket it moves into the future), and what the closure needs in one box
        // (axum keeps the closure's room in the socket's task for as long as the socket
        // lives): BENCHMARKS.md, "Socket.IO against a Node socket.io server".
        .on_upgrade(move |socket| {
            let (subscription, pings, tracked) = *serving;
            socket::run(
                socket,
                subscription,
                pings,
                socket::Dialect::Herald,
                tracked,
            )
        }))
}

/// The answer to a request that is not a WebSocket handshake: `426 upgrade_required` with
/// `Upgrade: websocket` (and the version this server speaks, RFC 6455 §4.4).
fn not_a_handshake(rejection: &WebSocketUpgradeRejection) -> Response {
    let mut response = ApiError::new(
        StatusCode::UPGRADE_REQUIRED,
        "upgrade_required",
        format!(
            "this endpoint opens a WebSocket (version 13); the request is not a WebSocket \
             handshake: {}",
            rejection.body_text()
        ),
    )
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    response
}
