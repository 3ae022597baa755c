//! A connection's side of the hub: the bytes it must write, in its wire format, until the hub
//! closes it or the client goes away. Every transport drains one of these; an HTTP streaming
//! transport (SSE) returns it as the response body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};

use super::outbox::{DirectWrite, Drained};
use crate::metrics::DisconnectReason;
use crate::registry::{Connection, Registry};
use crate::target::ConnectionId;

/// The stream of one connection: a [`Stream`] of the bytes to write (for a socket transport or
/// in-process use) and an HTTP response [`Body`] (for a streaming HTTP transport).
///
/// Dropping it unregisters the connection: this is the one path shared by a client that hangs
/// up, a write error and the server ending the response, so nothing is left behind.
#[derive(Debug)]
pub struct Subscription {
    conn: Arc<Connection>,
    registry: Arc<Registry>,
    opening: Option<Bytes>,
    replayed: Option<super::LenientOutcome>,
}

/// Where a transport reports that the client sent something (a WebSocket pong or frame, a
/// Socket.IO packet): the connection is not idle. One relaxed store per call.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<Connection>);

impl Activity {
    /// The client sent something.
    pub(crate) fn touch(&self) {
        self.0.touch();
    }
}

/// What the lean HTTP/1.1 writer (`server::event_stream`) needs of a stream's connection beside
/// its body: where to install its socket for direct writes, and where to say a write is done.
/// Passed in the response's extensions.
#[derive(Debug, Clone)]
pub(crate) struct WriterHandle(Arc<Connection>);

impl WriterHandle {
    /// See [`Outbox::set_direct`](super::outbox::Outbox::set_direct).
    pub(crate) fn set_direct(&self, sink: Option<Arc<dyn DirectWrite>>) {
        self.0.outbox.set_direct(sink);
    }

    /// See [`Outbox::written`](super::outbox::Outbox::written).
    pub(crate) fn written(&self) {
        self.0.outbox.written();
    }
}

/// The stream was cut by the hub because the client read too slowly. The HTTP server drops the
/// connection when a body fails, which is the intent.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the stream was aborted: the client did not keep up")]
pub struct StreamAborted;

impl Subscription {
    pub(crate) fn new(conn: Arc<Connection>, registry: Arc<Registry>) -> Self {
        Subscription {
            conn,
            registry,
            opening: None,
            replayed: None,
        }
    }

    pub(crate) fn set_replayed(&mut self, outcome: super::LenientOutcome) {
        self.replayed = Some(outcome);
    }

    /// For a connection opened with a [`LenientStart`](super::LenientStart): whether the
    /// replay it asked for was queued whole (`Some(true)`), or not (`Some(false)`: the position
    /// is unknown or too old, or the replay exceeds the cap; see
    /// [`lenient_outcome`](Self::lenient_outcome) for where it starts instead). `None` for
    /// other connections.
    pub fn replayed(&self) -> Option<bool> {
        self.replayed
            .as_ref()
            .map(|o| matches!(o, super::LenientOutcome::Complete))
    }

    /// For a connection opened with a [`LenientStart`](super::LenientStart): how its start
    /// went. `None` for other connections.
    pub fn lenient_outcome(&self) -> Option<&super::LenientOutcome> {
        self.replayed.as_ref()
    }

    /// Sets the bytes the stream starts with (before anything queued).
    pub(crate) fn set_opening(&mut self, opening: Bytes) {
        self.opening = Some(opening);
    }

    /// The handle a socket writer uses for direct writes ([`WriterHandle`]).
    pub(crate) fn writer_handle(&self) -> WriterHandle {
        WriterHandle(self.conn.clone())
    }

    /// The id of this stream's connection.
    pub fn connection_id(&self) -> ConnectionId {
        self.conn.id
    }

    /// A handle through which the transport reports what it received from the client (for
    /// `idle_timeout`), usable beside the stream.
    pub(crate) fn activity(&self) -> Activity {
        Activity(self.conn.clone())
    }

    /// Ready once the registry evicted the client (see [`Outbox::poll_aborted`]): for a
    /// transport whose writer waits on its socket and must still notice an eviction at once.
    ///
    /// [`Outbox::poll_aborted`]: super::outbox::Outbox::poll_aborted
    pub(crate) fn poll_evicted(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.conn.outbox.poll_aborted(cx)
    }

    fn poll_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamAborted>>> {
        if let Some(opening) = self.opening.take() {
            return Poll::Ready(Some(Ok(opening)));
        }
        match self.conn.outbox.poll_drain(cx) {
            Poll::Ready(Drained::Data(bytes)) => Poll::Ready(Some(Ok(bytes))),
            Poll::Ready(Drained::End) => Poll::Ready(None),
            Poll::Ready(Drained::Aborted) => Poll::Ready(Some(Err(StreamAborted))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Body for Subscription {
    type Data = Bytes;
    type Error = StreamAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamAborted>>> {
        self.get_mut()
            .poll_bytes(cx)
            .map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Stream for Subscription {
    type Item = Result<Bytes, StreamAborted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_bytes(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self
            .registry
            .remove(self.conn.id, DisconnectReason::ClientClosed)
            .is_some()
        {
            self.conn.outbox.abort();
            tracing::debug!(connection = %self.conn.id, "client went away");
        }
    }
}
