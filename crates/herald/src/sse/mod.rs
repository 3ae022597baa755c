//! The Server-Sent Events wire format: the exact bytes of `text/event-stream` ([`frame`]) and
//! the [`WireFormat`](crate::transport::WireFormat) every SSE connection uses ([`frame::SSE`]),
//! or, with `?envelope=1`, every event as a default `message` carrying the WebSocket frame's
//! `{"id","event","data"}` object ([`envelope::SSE_ENVELOPE`]).
//! The HTTP side (the `GET` handler, the lean HTTP/1.1 writer) lives in [`crate::http`] and
//! [`crate::server`].

pub mod envelope;
pub mod frame;

pub use crate::transport::StreamAborted;

/// The body of an SSE response: the connection's [`Subscription`](crate::transport::Subscription).
pub type EventStream = crate::transport::Subscription;
