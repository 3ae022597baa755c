//! One upgraded WebSocket: the connection's [`Subscription`] written out as text messages,
//! pings, and what the client sends.
//!
//! One future, [`Run`], owns the socket and serves it until the first of these ends it:
//!
//! - the **writer** drains the subscription (each chunk cut into messages at its `\n`s,
//!   [`next_frame`]), everything already queued fed before one flush, and sends a ping every
//!   `ping_interval` when it is not blocked on the client;
//! - the **reader** takes the client's frames: it answers pings (tungstenite queues the pong),
//!   ignores text, ends on close, closes with `1003` on binary; and it drops a peer that has sent
//!   nothing, no pong to the last ping either, for `ping_interval + pong_timeout`;
//! - the **eviction**: the registry aborts the connection's outbox when the client reads too
//!   slowly, which wakes the socket whether its writer waits on the outbox or on the socket.
//!
//! A socket speaks one of two [`Dialect`]s: Herald's own (`GET /api/ws`), or Engine.IO v4 for
//! the Socket.IO sockets that open a WebSocket directly ([`crate::socketio`]), whose keepalive
//! is the Engine.IO `2`/`3` text packets instead of WebSocket pings, and whose client leaves
//! with a `41` or `1` packet.
//!
//! Each wake-up polls the reader, then the timer, then the writer, on the one socket
//! (tungstenite's reads and writes do not block each other), so a writer blocked on a client
//! that does not read still lets the reader notice that it answers no pings; a writer that
//! waits on the socket checks for an eviction before it sleeps, so an eviction drops the socket
//! in any state. Whatever ends the loop, the subscription is dropped
//! with it and the registry unregisters the connection; the closing handshake, when there is
//! one, runs after that.
//!
//! Why a hand-written future rather than a reader and a writer on the split socket: an idle
//! socket is most of what a hub holds. Split, the socket moves into a shared lock (a heap
//! block of its own), and the task keeps room for the two halves' futures, a ping interval
//! and a timeout per read, and for the closing handshake; here an idle socket holds the
//! socket, its subscription and one timer (BENCHMARKS.md, "Socket.IO against a Node socket.io
//! server"). The eviction needs no token of its own either (two heap blocks per socket): the
//! outbox's abort is the signal.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::{Buf, Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_util::task::task_tracker::TaskTrackerToken;

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

/// Serves `socket` until the hub, the client or a failure ends it (see the module docs);
/// `tracked` (the hub's count of its tasks) is released when it is done. Must be called
/// within the runtime (it starts the socket's timer).
pub(crate) fn run(
    socket: WebSocket,
    subscription: Subscription,
    pings: Pings,
    dialect: Dialect,
    tracked: TaskTrackerToken,
) -> Run {
    let now = Instant::now();
    let next_ping = now + pings.interval;
    let deadline = now + pings.interval + pings.timeout;
    Run {
        state: State::Open(Open {
            socket,
            subscription,
            timer: Box::pin(tokio::time::sleep_until(next_ping.min(deadline))),
            next_ping,
            deadline,
            pings,
            dialect,
            chunk: Bytes::new(),
            ping_due: false,
            unflushed: false,
            stream_ended: false,
            final_disconnect: false,
        }),
        _tracked: tracked,
    }
}

/// The future of one socket (see [`run`]).
pub(crate) struct Run {
    state: State,
    _tracked: TaskTrackerToken,
}

// Not boxed: the open socket is the state that lasts, a box would only add a heap block to it.
#[allow(clippy::large_enum_variant)]
enum State {
    Open(Open),
    /// The closing handshake, boxed: only a closing socket needs room for it.
    Closing(Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

/// An open socket and what serving it needs between two wake-ups.
struct Open {
    socket: WebSocket,
    subscription: Subscription,
    /// The one timer, due at the earlier of `next_ping` and `deadline`.
    timer: Pin<Box<Sleep>>,
    /// When the next ping is due.
    next_ping: Instant,
    /// When the peer is unresponsive unless it sends something before.
    deadline: Instant,
    pings: Pings,
    dialect: Dialect,
    /// What is left of the chunk being written (its frames not sent yet).
    chunk: Bytes,
    /// A ping waits for the writer.
    ping_due: bool,
    /// Messages were fed since the last flush.
    unflushed: bool,
    /// The subscription ended: flush, then close.
    stream_ended: bool,
    /// Engine.IO: whether the hub's `disconnected` event said not to reconnect.
    final_disconnect: bool,
}

impl Future for Run {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Open(open) => {
                    let end = ready!(open.poll_open(cx));
                    let State::Open(open) = std::mem::replace(&mut this.state, State::Done) else {
                        unreachable!("the state was open");
                    };
                    match open.finish(end) {
                        Some(closing) => this.state = State::Closing(closing),
                        None => return Poll::Ready(()),
                    }
                }
                State::Closing(closing) => {
                    ready!(closing.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(());
                }
                State::Done => return Poll::Ready(()),
            }
        }
    }
}

impl Open {
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        // The client's frames.
        loop {
            match Pin::new(&mut self.socket).poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => return Poll::Ready(End::ClientClosed),
                Poll::Ready(Some(Err(_))) => return Poll::Ready(End::Failed),
                Poll::Ready(Some(Ok(message))) => {
                    self.deadline = Instant::now() + self.pings.interval + self.pings.timeout;
                    if let Some(end) = self.received(message) {
                        return Poll::Ready(end);
                    }
                }
            }
        }
        // The pong deadline and the pings: the timer is moved on lazily (a message received
        // only moves `deadline`), so a busy socket does not reset it per message.
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= self.deadline {
                return Poll::Ready(End::Unresponsive);
            }
            if now >= self.next_ping {
                self.ping_due = true;
                // A late tick is not caught up on: the next one is an interval from now.
                self.next_ping = now + self.pings.interval;
            }
            let due = self.next_ping.min(self.deadline);
            self.timer.as_mut().reset(due);
        }
        self.poll_write(cx)
    }

    /// What a message from the client does: `Some` when it ends the socket.
    fn received(&mut self, message: Message) -> Option<End> {
        let engine_io = self.dialect == Dialect::EngineIo;
        match message {
            Message::Close(_) => Some(End::ClientClosed),
            Message::Text(text) if engine_io && (text == "41" || text.starts_with('1')) => {
                Some(End::ClientClosed)
            }
            Message::Binary(_) if !engine_io => Some(End::Binary),
            // Pings are answered by the protocol layer; pongs, text and (Engine.IO) binary
            // attachments only show that the peer is alive (and not idle). (Text is reserved
            // for client commands; none is defined yet.)
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Text(_) => {
                // (An atomic store on the connection: the client's messages are few.)
                self.subscription.activity().touch();
                None
            }
        }
    }

    /// Feeds the socket while it takes more, everything already queued, then flushes once.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        let connection = self.subscription.connection_id();
        loop {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Pending => return self.blocked(cx),
                Poll::Ready(Err(_)) => return Poll::Ready(End::Failed),
                Poll::Ready(Ok(())) => {}
            }
            let message = if self.ping_due {
                self.ping_due = false;
                match self.dialect {
                    Dialect::Herald => Message::Ping(Bytes::new()),
                    Dialect::EngineIo => Message::Text(Utf8Bytes::from_static("2")),
                }
            } else if let Some(frame) = next_frame(&mut self.chunk) {
                if self.dialect == Dialect::EngineIo {
                    self.final_disconnect |= says_do_not_reconnect(&frame);
                }
                let Ok(text) = Utf8Bytes::try_from(frame) else {
                    // Frames are JSON, cut at ASCII newlines: always UTF-8.
                    tracing::error!(%connection, "a frame is not UTF-8; closing");
                    return Poll::Ready(End::Failed);
                };
                Message::Text(text)
            } else if self.stream_ended {
                break;
            } else {
                match Pin::new(&mut self.subscription).poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        self.chunk = chunk;
                        continue;
                    }
                    Poll::Ready(Some(Err(_aborted))) => return Poll::Ready(End::Evicted),
                    Poll::Ready(None) => {
                        self.stream_ended = true;
                        continue;
                    }
                    Poll::Pending => break,
                }
            };
            if Pin::new(&mut self.socket).start_send(message).is_err() {
                return Poll::Ready(End::Failed);
            }
            self.unflushed = true;
        }
        if self.unflushed || self.stream_ended {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Pending => return self.blocked(cx),
                Poll::Ready(result) => {
                    self.unflushed = false;
                    if self.stream_ended {
                        return Poll::Ready(End::Closed);
                    }
                    if result.is_err() {
                        return Poll::Ready(End::Failed);
                    }
                }
            }
        }
        Poll::Pending
    }

    /// The writer waits on the socket, not on the outbox: an eviction must still wake it (a
    /// client too slow to read is exactly the one whose socket takes no more).
    fn blocked(&self, cx: &mut Context<'_>) -> Poll<End> {
        match self.subscription.poll_evicted(cx) {
            Poll::Ready(()) => Poll::Ready(End::Evicted),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Unregisters the connection and returns the closing handshake still to run, if any.
    fn finish(self, end: End) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let Open {
            socket,
            subscription,
            final_disconnect,
            ..
        } = self;
        tracing::debug!(connection = %subscription.connection_id(), ?end, "WebSocket ended");
        // Unregistered now, not after the closing handshake below.
        drop(subscription);
        let closing = match end {
            End::Closed => Some((close_code::NORMAL, "closed by the server")),
            End::Binary => Some((close_code::UNSUPPORTED, "binary messages are not supported")),
            // The client already sent its close frame: flushing the reply is all that is left.
            End::ClientClosed => None,
            End::Evicted | End::Unresponsive | End::Failed => return None,
        };
        // Socket.IO's "server disconnect": socket.io-client does not reconnect on its own.
        // Otherwise the plain close is a "transport close", after which it does.
        let leave = end == End::Closed && final_disconnect;
        Some(Box::pin(close(socket, leave, closing)))
    }
}

/// The end of a socket the server or the client closes: the Socket.IO `41` first when `leave`,
/// our close frame (or tungstenite's reply to the client's), then the client's reply to ours:
/// closing the TCP connection before reading it could reset the connection and lose the last
/// events still in the client's receive buffer.
async fn close(mut socket: WebSocket, leave: bool, closing: Option<(u16, &'static str)>) {
    if leave {
        let _ = socket
            .send(Message::Text(Utf8Bytes::from_static("41")))
            .await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if let Some((code, reason)) = closing {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            if socket.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        }
        let _ = socket.close().await;
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

/// The next frame of a chunk the outbox coalesced, taken off its front: each frame of the
/// WebSocket format ends with `\n` (see [`super::frame`]), so the chunk is cut there, without
/// copying, the `\n` left out. Once the chunk is used up it is replaced by an empty one, so
/// that an idle socket does not keep the last chunk's bytes alive.
fn next_frame(chunk: &mut Bytes) -> Option<Bytes> {
    while !chunk.is_empty() {
        let frame = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let frame = chunk.split_to(i);
                chunk.advance(1);
                frame
            }
            // Every frame ends with `\n`; a chunk that does not is sent whole rather than
            // lost.
            None => std::mem::take(chunk),
        };
        if chunk.is_empty() {
            *chunk = Bytes::new();
        }
        if !frame.is_empty() {
            return Some(frame);
        }
    }
    *chunk = Bytes::new();
    None
}

/// The frames of a chunk, one message each (see [`next_frame`]).
#[cfg(test)]
fn split_frames(chunk: &Bytes) -> impl Iterator<Item = Bytes> {
    let mut rest = chunk.clone();
    std::iter::from_fn(move || next_frame(&mut rest))
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
