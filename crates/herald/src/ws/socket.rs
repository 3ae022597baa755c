//! One upgraded WebSocket: the connection's [`Subscription`] written out as text messages,
//! pings, and what the client sends.
//!
//! Three things run side by side until the first of them ends the connection:
//!
//! - the **writer** drains the subscription (each chunk cut into messages at its `\n`s,
//!   [`split_frames`]) and sends a ping every `ping_interval`;
//! - the **reader** takes the client's frames: it answers pings (tungstenite queues the pong),
//!   ignores text, ends on close, closes with `1003` on binary; and it drops a peer that has sent
//!   nothing, no pong to the last ping either, for `ping_interval + pong_timeout`;
//! - the **eviction** token, which the registry cancels when the client reads too slowly.
//!
//! A socket speaks one of two [`Dialect`]s: Herald's own (`GET /api/ws`), or Engine.IO v4 for
//! the Socket.IO sockets that open a WebSocket directly ([`crate::socketio`]), whose keepalive
//! is the Engine.IO `2`/`3` text packets instead of WebSocket pings, and whose client leaves
//! with a `41` or `1` packet.
//!
//! The reader and the writer are the two halves of one socket, so a writer blocked on a client
//! that does not read still lets the reader notice that it answers no pings, and the eviction
//! drops the socket in any state. Whatever ends the loop, the subscription is dropped with it
//! and the registry unregisters the connection.

use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::transport::Subscription;

/// How long the server waits for the client's half of a closing handshake (or to get its own
/// close frame out) before it drops the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a socket speaks on top of WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Herald's JSON messages ([`super::frame`]); WebSocket ping/pong.
    Herald,
    /// Engine.IO v4 packets carrying Socket.IO ones ([`crate::socketio::packets`]): the server
    /// pings with a `2` message, the client answers `3`; `41` (leave the namespace) or `1`
    /// (close) from the client ends the socket; binary messages (attachments) are ignored.
    EngineIo,
}

/// The ping settings of one socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pings {
    /// Interval of the server's pings.
    pub(crate) interval: Duration,
    /// How long the peer has to answer one.
    pub(crate) timeout: Duration,
}

/// Why a socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The hub ended the stream (after its `disconnected` event): close normally.
    Closed,
    /// The registry evicted the client (it read too slowly): drop the socket at once.
    Evicted,
    /// The client closed the socket (or its TCP connection).
    ClientClosed,
    /// The client sent a binary message, which this protocol has no use for.
    Binary,
    /// The client answered no ping in time.
    Unresponsive,
    /// Reading or writing failed.
    Failed,
}

/// Serves `socket` until the hub, the client or a failure ends it (see the module docs).
pub(crate) async fn run(
    socket: WebSocket,
    mut subscription: Subscription,
    evicted: CancellationToken,
    pings: Pings,
    dialect: Dialect,
) {
    let connection = subscription.connection_id();
    let activity = subscription.activity();
    let (mut sink, mut stream) = socket.split();
    // Engine.IO: whether the hub's `disconnected` event said not to reconnect.
    let mut final_disconnect = false;
    let writer = async {
        let start = Instant::now() + pings.interval;
        let mut ticks = tokio::time::interval_at(start, pings.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                chunk = subscription.next() => {
                    let mut next = chunk;
                    // Everything queued by now goes out in one flush (one write where it fits).
                    loop {
                        match next {
                            Some(Ok(chunk)) => {
                                for frame in split_frames(&chunk) {
                                    if dialect == Dialect::EngineIo {
                                        final_disconnect |= says_do_not_reconnect(&frame);
                                    }
                                    let Ok(text) = Utf8Bytes::try_from(frame) else {
                                        // Frames are JSON, cut at ASCII newlines: always UTF-8.
                                        tracing::error!(%connection, "a frame is not UTF-8; closing");
                                        return End::Failed;
                                    };
                                    if sink.feed(Message::Text(text)).await.is_err() {
                                        return End::Failed;
                                    }
                                }
                            }
                            Some(Err(_aborted)) => return End::Evicted,
                            None => {
                                let _ = sink.flush().await;
                                return End::Closed;
                            }
                        }
                        match subscription.next().now_or_never() {
                            Some(more) => next = more,
                            None => break,
                        }
                    }
                    if sink.flush().await.is_err() {
                        return End::Failed;
                    }
                }
                _ = ticks.tick() => {
                    let ping = match dialect {
                        Dialect::Herald => Message::Ping(Bytes::new()),
                        Dialect::EngineIo => Message::Text(Utf8Bytes::from_static("2")),
                    };
                    if sink.send(ping).await.is_err() {
                        return End::Failed;
                    }
                }
            }
        }
    };
    let reader = async {
        let patience = pings.interval + pings.timeout;
        loop {
            let message = match tokio::time::timeout(patience, stream.next()).await {
                Err(_) => return End::Unresponsive,
                Ok(None) => return End::ClientClosed,
                Ok(Some(Err(_))) => return End::Failed,
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Close(_) => return End::ClientClosed,
                Message::Text(text)
                    if dialect == Dialect::EngineIo && (text == "41" || text.starts_with('1')) =>
                {
                    return End::ClientClosed
                }
                Message::Binary(_) if dialect == Dialect::EngineIo => activity.touch(),
                Message::Binary(_) => return End::Binary,
                // Pings are answered by the protocol layer; pongs and text only show that the
                // peer is alive (and not idle). (Text is reserved for client commands; none is
                // defined yet.)
                Message::Ping(_) | Message::Pong(_) | Message::Text(_) => activity.touch(),
            }
        }
    };
    let end = tokio::select! {
        biased;
        _ = evicted.cancelled() => End::Evicted,
        end = writer => end,
        end = reader => end,
    };
    tracing::debug!(%connection, ?end, "WebSocket ended");
    // Unregistered now, not after the closing handshake below.
    drop(subscription);
    if end == End::Closed && final_disconnect {
        // Socket.IO's "server disconnect": socket.io-client does not reconnect on its own.
        // Otherwise the plain close is a "transport close", after which it does.
        let _ = sink.send(Message::Text(Utf8Bytes::from_static("41"))).await;
    }
    let closing = match end {
        End::Closed => Some((close_code::NORMAL, "closed by the server")),
        End::Binary => Some((close_code::UNSUPPORTED, "binary messages are not supported")),
        // The client already sent its close frame: flushing the reply is all that is left.
        End::ClientClosed => None,
        End::Evicted | End::Unresponsive | End::Failed => return,
    };
    // Our close frame (or tungstenite's reply to the client's), then the client's reply to ours:
    // closing the TCP connection before reading it could reset the connection and lose the
    // last events still in the client's receive buffer.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if let Some((code, reason)) = closing {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            if sink.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        }
        let _ = sink.close().await;
    })
    .await;
}

/// Whether `packet` is a Socket.IO `disconnected` event advising not to reconnect.
fn says_do_not_reconnect(packet: &[u8]) -> bool {
    const PREFIX: &[u8] = b"42[\"disconnected\",";
    packet.starts_with(PREFIX)
        && serde_json::from_slice::<(String, serde_json::Value)>(&packet[2..])
            .is_ok_and(|(_, data)| data["reconnect"] == "no")
}

/// The frames of a chunk the outbox coalesced: each frame of the WebSocket format ends with
/// `\n` (see [`super::frame`]), so the chunk is cut there, without copying, into one message
/// per frame, the `\n` left out.
pub(crate) fn split_frames(chunk: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < chunk.len() {
            let rest = &chunk[start..];
            let (frame, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (chunk.slice(start..start + i), start + i + 1),
                // Every frame ends with `\n`; a chunk that does not is sent whole rather
                // than lost.
                None => (chunk.slice(start..), chunk.len()),
            };
            start = next;
            if !frame.is_empty() {
                return Some(frame);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_disconnected_event_advising_no_ends_a_socketio_session_for_good() {
        let packet = |data: &str| format!("42[\"disconnected\",{data}]").into_bytes();
        assert!(says_do_not_reconnect(&packet(
            r#"{"reason":"x","reconnect":"no"}"#
        )));
        for other in [
            packet(r#"{"reason":"server_shutdown","reconnect":"now"}"#),
            packet(r#"{"reason":"token_expired","reconnect":"new_token"}"#),
            br#"42["note",{"reconnect":"no"}]"#.to_vec(),
            b"42[\"disconnected\",".to_vec(),
        ] {
            assert!(
                !says_do_not_reconnect(&other),
                "{}",
                String::from_utf8_lossy(&other)
            );
        }
    }

    #[test]
    fn a_chunk_is_cut_into_its_frames_without_copying() {
        let chunk = Bytes::from_static(b"{\"event\":\"a\"}\n{\"event\":\"b\"}\n\n{\"x\":1}");
        let frames: Vec<Bytes> = split_frames(&chunk).collect();
        assert_eq!(
            frames,
            [
                Bytes::from_static(b"{\"event\":\"a\"}"),
                Bytes::from_static(b"{\"event\":\"b\"}"),
                Bytes::from_static(b"{\"x\":1}"),
            ]
        );
        let base = chunk.as_ptr() as usize;
        assert_eq!(
            frames[1].as_ptr() as usize,
            base + 14,
            "a slice of the chunk"
        );
        assert_eq!(split_frames(&Bytes::new()).count(), 0);
        assert_eq!(split_frames(&Bytes::from_static(b"\n\n")).count(), 0);
    }
}
