//! The SSE envelope format (`GET /api/sse?envelope=1`): every event, the hub's own included, as
//! an SSE event of the default type (`message`, no `event:` line) whose data is the WebSocket
//! frame's JSON object ([`crate::ws::frame`]):
//!
//! ```text
//! id: 5f3a9c01b2d4-42
//! data: {"id":"5f3a9c01b2d4-42","event":"order_update","data":{"orderId":"123"}}
//!
//! data: {"event":"heartbeat","data":{"ts":1718000000000}}
//!
//! ```
//!
//! Why: a browser's `EventSource` only hands a named event to a listener registered for that
//! name, so a client that does not know every event name in advance silently misses some. One
//! `onmessage` handler sees everything here and dispatches on `event` itself.
//!
//! The `id:` line stays exactly where the plain SSE format writes one (published events,
//! `connected` of a new connection, `reset`), so `Last-Event-ID` resume works unchanged. A
//! `retry:` hint and comment heartbeats (`HERALD_HEARTBEAT_STYLE=comment`) are written as in
//! plain SSE: neither is an event.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::frame;
use crate::config::HeartbeatStyle;
use crate::event::{Event, EventId, EventName, PayloadKind};
use crate::transport::{slot, WireFormat};
use crate::ws::frame::{encode as encode_json, Data};

/// The envelope wire format of SSE connections that asked for `envelope=1`.
#[derive(Debug)]
pub struct SseEnvelope;

/// The one instance of [`SseEnvelope`].
pub static SSE_ENVELOPE: SseEnvelope = SseEnvelope;

impl WireFormat for SseEnvelope {
    fn slot(&self) -> usize {
        slot::SSE_ENVELOPE
    }

    /// `sse`: for operators it is an SSE connection like any other.
    fn name(&self) -> &'static str {
        "sse"
    }

    fn encode_event(&self, event: &Event) -> Bytes {
        let data = event.payload.as_str();
        let data = match event.payload.kind() {
            PayloadKind::Json => Data::Json(data),
            PayloadKind::Text => Data::Text(data),
        };
        encode(Some(&event.id), &event.name, data)
    }

    fn encode_control(&self, id: Option<&EventId>, name: &EventName, data: &str) -> Bytes {
        encode(id, name, Data::Json(data))
    }

    fn encode_heartbeat(&self, style: HeartbeatStyle, data: &str) -> Bytes {
        match style {
            HeartbeatStyle::Comment => frame::encode_comment("heartbeat"),
            HeartbeatStyle::Event => {
                encode(None, &EventName::system("heartbeat"), Data::Json(data))
            }
        }
    }

    fn encode_retry(&self, delay: Duration) -> Option<Bytes> {
        Some(frame::encode_retry(delay))
    }
}

/// Encodes one enveloped event: `id:` (when given), one `data:` line holding the JSON object
/// `{"id","event","data"}`, and the blank line that dispatches it. The JSON is always one line
/// (see [`crate::ws::frame::encode`]), so it needs no splitting.
pub fn encode(id: Option<&EventId>, name: &EventName, data: Data<'_>) -> Bytes {
    let json = encode_json(id, name, data);
    // `encode_json` ends its line with `\n`, which here ends the `data:` line.
    let mut buf = BytesMut::with_capacity(json.len() + 40);
    if let Some(id) = id {
        buf.put_slice(b"id: ");
        frame::put_event_id(&mut buf, id);
        buf.put_u8(b'\n');
    }
    buf.put_slice(b"data: ");
    buf.put_slice(&json);
    buf.put_u8(b'\n');
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Epoch, Payload};
    use crate::sse::frame::parse::parse_stream;
    use serde_json::{json, Value};

    fn id() -> EventId {
        EventId {
            epoch: Epoch::from_u64(0xabc),
            seq: 7,
        }
    }

    fn parse_one(bytes: &Bytes) -> (String, String, Value) {
        let parsed = parse_stream(std::str::from_utf8(bytes).unwrap());
        assert_eq!(parsed.len(), 1, "{bytes:?}");
        let e = &parsed[0];
        (
            e.id.clone(),
            e.event.clone(),
            serde_json::from_str(&e.data).unwrap(),
        )
    }

    #[test]
    fn exact_bytes_of_an_event() {
        let event = Event::new(
            id(),
            EventName::new("order_update").unwrap(),
            Payload::json(&json!({"a": 1})).unwrap(),
        );
        assert_eq!(
            &SSE_ENVELOPE.encode_event(&event)[..],
            b"id: 000000000abc-7\ndata: {\"id\":\"000000000abc-7\",\"event\":\"order_update\",\"data\":{\"a\":1}}\n\n"
                as &[u8]
        );
        assert_eq!(
            &SSE_ENVELOPE.encode_heartbeat(HeartbeatStyle::Event, r#"{"ts":1}"#)[..],
            b"data: {\"event\":\"heartbeat\",\"data\":{\"ts\":1}}\n\n" as &[u8]
        );
        assert_eq!(
            &SSE_ENVELOPE.encode_heartbeat(HeartbeatStyle::Comment, "{}")[..],
            b": heartbeat\n\n" as &[u8]
        );
    }

    #[test]
    fn every_event_is_a_default_message_with_the_frame_object() {
        for text in [
            "",
            "two\nlines\r\nand\rmore",
            "\"q\" \\",
            "}\n\nevent: injected\n",
        ] {
            let event = Event::new(id(), EventName::new("note").unwrap(), Payload::text(text));
            let (sse_id, kind, v) = parse_one(&SSE_ENVELOPE.encode_event(&event));
            assert_eq!(kind, "message", "no event: line");
            assert_eq!(sse_id, "000000000abc-7");
            assert_eq!(
                v,
                json!({"id": "000000000abc-7", "event": "note", "data": text})
            );
        }
        let (sse_id, kind, v) = parse_one(&SSE_ENVELOPE.encode_control(
            None,
            &EventName::system("disconnected"),
            r#"{"reason":"server_shutdown"}"#,
        ));
        assert_eq!((sse_id.as_str(), kind.as_str()), ("", "message"));
        assert_eq!(
            v,
            json!({"event": "disconnected", "data": {"reason": "server_shutdown"}})
        );
        let (_, _, v) = parse_one(&SSE_ENVELOPE.encode_control(
            Some(&id()),
            &EventName::system("presence:join"),
            "{\n \"userId\": \"a\"\n}",
        ));
        assert_eq!(v["event"], "presence:join");
        assert_eq!(v["data"]["userId"], "a");
    }

    #[test]
    fn a_slot_of_its_own() {
        assert_ne!(SSE_ENVELOPE.slot(), frame::SSE.slot());
        assert_ne!(SSE_ENVELOPE.slot(), crate::ws::frame::WS_JSON.slot());
        assert!(SSE_ENVELOPE.slot() < crate::event::FORMAT_SLOTS);
        assert_ne!(SSE_ENVELOPE.slot(), slot::SOCKETIO_PACKETS);
        assert_ne!(SSE_ENVELOPE.slot(), slot::TEST);
    }
}
