//! The WebSocket wire format: one JSON object per event, sent as one text message.
//!
//! ```text
//! {"id":"0191a2b3c4d5-42","event":"notification","data":{"title":"Hi"}}
//! {"event":"heartbeat","data":{"ts":1718000000000}}
//! ```
//!
//! - `id`: the event id, which a client passes back as `?lastEventId=` to resume; absent on
//!   frames that do not move the client's position (heartbeats, `disconnected`, a `connected`
//!   or `reset` that carries none).
//! - `event`: the event name (`notification`, `connected`, `disconnected`, `reset`,
//!   `heartbeat`, `presence:join`…).
//! - `data`: a JSON payload embedded as a value; a text payload ([`PayloadKind::Text`]) as a JSON
//!   string.
//!
//! Each frame is encoded once per event (in the event's cache, slot [`slot::JSON_LINES`], shared with Socket.IO) and
//! ends with `\n`, a byte JSON never needs outside of a string (where serde_json escapes it):
//! the outbox coalesces queued frames into one chunk, and the socket writer
//! (`socket::next_frame`) cuts that chunk back into messages at each `\n` without copying.

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::HeartbeatStyle;
use crate::event::{Event, EventId, EventName, PayloadKind};
use crate::transport::{slot, WireFormat};

/// The JSON-lines wire format: every frame is `{"id", "event", "data"}` JSON on one line. The
/// WebSocket transport sends the lines as text messages; the Socket.IO transport reads them
/// back into emits ([`crate::socketio`]). Both share one encoding (one cache slot): an event
/// sent to both is encoded once. `name` tells the transports apart for operators.
#[derive(Debug)]
pub struct JsonLines {
    name: &'static str,
}

impl JsonLines {
    /// The format for the transport called `name` (one of [`crate::transport::NAMES`]).
    pub const fn named(name: &'static str) -> Self {
        JsonLines { name }
    }
}

/// The WebSocket transport's instance of [`JsonLines`].
pub static WS_JSON: JsonLines = JsonLines::named("websocket");

impl WireFormat for JsonLines {
    fn slot(&self) -> usize {
        slot::JSON_LINES
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn encode_event(&self, event: &Event) -> Bytes {
        let data = event.payload.as_str();
        match event.payload.kind() {
            PayloadKind::Json => encode(Some(&event.id), &event.name, Data::Json(data)),
            PayloadKind::Text => encode(Some(&event.id), &event.name, Data::Text(data)),
        }
    }

    fn encode_control(&self, id: Option<&EventId>, name: &EventName, data: &str) -> Bytes {
        encode(id, name, Data::Json(data))
    }

    /// Always the `heartbeat` event, whatever `style` says: a comment has no equivalent here,
    /// and a browser's `WebSocket` never sees the protocol's pings, so this event is how its
    /// code notices a dead server.
    fn encode_heartbeat(&self, _style: HeartbeatStyle, data: &str) -> Bytes {
        encode(None, &EventName::system("heartbeat"), Data::Json(data))
    }
}

/// The `data` of a frame.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// JSON text, embedded as it is. It must be valid JSON; line breaks in it (whitespace, in
    /// valid JSON) become spaces, so that the frame stays on one line.
    Json(&'a str),
    /// Any text, sent as a JSON string.
    Text(&'a str),
}

/// Encodes one frame: `{"id":…,"event":…,"data":…}` and a closing `\n` (no `id` when `None`).
pub fn encode(id: Option<&EventId>, name: &EventName, data: Data<'_>) -> Bytes {
    let payload_len = match data {
        Data::Json(s) | Data::Text(s) => s.len(),
    };
    let mut buf = BytesMut::with_capacity(payload_len + name.as_str().len() + 64);
    buf.put_u8(b'{');
    if let Some(id) = id {
        // An id is `<hex epoch>-<seq>`: nothing to escape.
        let mut w = (&mut buf).writer();
        // Writing into a BytesMut cannot fail.
        let _ = write!(w, "\"id\":\"{id}\",");
    }
    buf.put_slice(b"\"event\":");
    put_json_string(&mut buf, name.as_str());
    buf.put_slice(b",\"data\":");
    match data {
        Data::Json(json) if json.contains(['\n', '\r']) => {
            // Only whitespace between tokens can be a raw line break in valid JSON.
            buf.put_slice(json.replace(['\n', '\r'], " ").as_bytes());
        }
        Data::Json(json) => buf.put_slice(json.as_bytes()),
        Data::Text(text) => put_json_string(&mut buf, text),
    }
    buf.put_slice(b"}\n");
    buf.freeze()
}

fn put_json_string(buf: &mut BytesMut, s: &str) {
    // Serializing a `str` into memory cannot fail.
    let _ = serde_json::to_writer(buf.writer(), s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Epoch, Payload};
    use serde_json::{json, Value};

    fn id() -> EventId {
        EventId {
            epoch: Epoch::from_u64(0xabc),
            seq: 7,
        }
    }

    fn parse(frame: &Bytes) -> Value {
        let text = std::str::from_utf8(frame).unwrap();
        let line = text.strip_suffix('\n').expect("a frame ends with \\n");
        assert!(!line.contains('\n'), "one line: {text:?}");
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn exact_bytes_of_an_event() {
        let event = Event::new(
            id(),
            EventName::new("notification").unwrap(),
            Payload::json(&json!({"a": 1})).unwrap(),
        );
        assert_eq!(
            &WS_JSON.encode_event(&event)[..],
            b"{\"id\":\"000000000abc-7\",\"event\":\"notification\",\"data\":{\"a\":1}}\n"
        );
        let hb = WS_JSON.encode_heartbeat(HeartbeatStyle::Comment, r#"{"ts":1}"#);
        assert_eq!(&hb[..], b"{\"event\":\"heartbeat\",\"data\":{\"ts\":1}}\n");
    }

    #[test]
    fn text_payloads_are_json_strings_and_stay_on_one_line() {
        for text in [
            "",
            "plain",
            "two\nlines\r\nand\rmore",
            "\"quoted\" \\ back",
            "unicode ✓ 🎉 Zoë",
            "nul\0 and \u{2028} and \u{1b}",
            "}\n{\"event\":\"injected\"}",
        ] {
            let event = Event::new(id(), EventName::new("note").unwrap(), Payload::text(text));
            let frame = parse(&WS_JSON.encode_event(&event));
            assert_eq!(frame["data"], Value::String(text.into()), "{text:?}");
            assert_eq!(frame["event"], "note");
            assert_eq!(frame["id"], "000000000abc-7");
        }
    }

    #[test]
    fn json_payloads_are_values() {
        for value in [
            json!({"nested": {"list": [1, 2.5, null, true, "s\nt"]}}),
            json!("just a string"),
            json!(42),
            json!(null),
        ] {
            let event = Event::new(
                id(),
                EventName::new("x").unwrap(),
                Payload::json(&value).unwrap(),
            );
            assert_eq!(parse(&WS_JSON.encode_event(&event))["data"], value);
        }
        // JSON text with line breaks between tokens (as an older store may hold) stays one line.
        let frame = encode(
            None,
            &EventName::system("x"),
            Data::Json("{\n  \"a\": 1\r\n}"),
        );
        assert_eq!(parse(&frame)["data"], json!({"a": 1}));
    }

    #[test]
    fn control_events_without_an_id_have_none() {
        let frame = WS_JSON.encode_control(
            None,
            &EventName::system("disconnected"),
            r#"{"reason":"server_shutdown","reconnect":"backoff"}"#,
        );
        let frame = parse(&frame);
        assert!(frame.get("id").is_none());
        assert_eq!(frame["data"]["reconnect"], "backoff");
        let frame =
            parse(&WS_JSON.encode_control(Some(&id()), &EventName::system("connected"), "{}"));
        assert_eq!(frame["id"], "000000000abc-7");
    }

    #[test]
    fn hub_event_names_pass_through() {
        let frame = encode(None, &EventName::system("presence:join"), Data::Text("x"));
        assert_eq!(parse(&frame)["event"], "presence:join");
    }
}
