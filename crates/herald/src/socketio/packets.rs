//! The Socket.IO packet wire format: what a Socket.IO socket on Herald's own WebSocket
//! ([`super::websocket`]) is sent, one Engine.IO message per event.
//!
//! ```text
//! 42["notification",{"title":"Hi"},"0191a2b3c4d5-42"]
//! 42["heartbeat",{"ts":1718000000000}]
//! ```
//!
//! An Engine.IO `message` packet (`4`) holding a Socket.IO `EVENT` (`2`) of the main namespace:
//! the event name, the payload as the first argument (a text payload as a JSON string) and the
//! event id (what `auth.lastEventId` resumes from) as the second where the event has one:
//! exactly what socketioxide sends a socket of the polling transport for the same event, so a
//! client cannot tell the two paths apart.
//!
//! Each packet is encoded once per event, in its own cache slot ([`slot::SOCKETIO_PACKETS`]),
//! and shared by every such socket; like the JSON lines of the WebSocket transport it ends with
//! `\n` (which JSON never holds raw), so the socket writer cuts a coalesced chunk back into
//! messages without copying ([`crate::ws`]'s `next_frame`). An event under a name
//! socket.io-client keeps for itself ([`super::RESERVED_EVENTS`]) encodes to nothing: it is
//! not sent.

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::HeartbeatStyle;
use crate::event::{Event, EventId, EventName, PayloadKind};
use crate::transport::{slot, WireFormat};

/// The format of Socket.IO sockets on Herald's WebSocket (see the module docs).
#[derive(Debug)]
pub struct SocketIoPackets;

/// The one instance.
pub static SOCKETIO_PACKETS: SocketIoPackets = SocketIoPackets;

impl WireFormat for SocketIoPackets {
    fn slot(&self) -> usize {
        slot::SOCKETIO_PACKETS
    }

    fn name(&self) -> &'static str {
        "socketio"
    }

    fn encode_event(&self, event: &Event) -> Bytes {
        let data = event.payload.as_str();
        match event.payload.kind() {
            PayloadKind::Json => encode(Some(&event.id), &event.name, data, false),
            PayloadKind::Text => encode(Some(&event.id), &event.name, data, true),
        }
    }

    fn encode_control(&self, id: Option<&EventId>, name: &EventName, data: &str) -> Bytes {
        encode(id, name, data, false)
    }

    /// The `heartbeat` event, as on the polling transport: the Engine.IO pings are invisible to
    /// application code.
    fn encode_heartbeat(&self, _style: HeartbeatStyle, data: &str) -> Bytes {
        encode(None, &EventName::system("heartbeat"), data, false)
    }
}

/// `42["<name>",<data>,"<id>"]\n` (no id when `None`; `text`: `data` is sent as a JSON string);
/// nothing for a reserved name.
fn encode(id: Option<&EventId>, name: &EventName, data: &str, text: bool) -> Bytes {
    let name = name.as_str();
    if super::RESERVED_EVENTS.contains(&name) {
        return Bytes::new();
    }
    let mut buf = BytesMut::with_capacity(data.len() + name.len() + 48);
    buf.put_slice(b"42[");
    put_json_string(&mut buf, name);
    buf.put_u8(b',');
    if text {
        put_json_string(&mut buf, data);
    } else if data.contains(['\n', '\r']) {
        // Valid JSON holds raw line breaks only as whitespace between tokens.
        buf.put_slice(data.replace(['\n', '\r'], " ").as_bytes());
    } else {
        buf.put_slice(data.as_bytes());
    }
    if let Some(id) = id {
        // An id is `<hex epoch>-<seq>`: nothing to escape.
        let _ = write!((&mut buf).writer(), ",\"{id}\"");
    }
    buf.put_slice(b"]\n");
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

    fn event(name: &str, payload: Payload) -> Event {
        let id = EventId {
            epoch: Epoch::from_u64(0xabc),
            seq: 7,
        };
        Event::new(id, EventName::new(name).unwrap(), payload)
    }

    /// The Socket.IO event a packet holds: `(name, arguments)`.
    fn parse(packet: &Bytes) -> (String, Vec<Value>) {
        let text = std::str::from_utf8(packet).unwrap();
        let line = text.strip_suffix('\n').expect("ends with \\n");
        assert!(!line.contains('\n'), "one line: {text:?}");
        let array: Vec<Value> = serde_json::from_str(line.strip_prefix("42").unwrap()).unwrap();
        let name = array[0].as_str().unwrap().to_owned();
        (name, array[1..].to_vec())
    }

    #[test]
    fn exact_bytes_of_an_event_and_a_heartbeat() {
        let e = event("notification", Payload::json(&json!({"a": 1})).unwrap());
        assert_eq!(
            &SOCKETIO_PACKETS.encode_event(&e)[..],
            b"42[\"notification\",{\"a\":1},\"000000000abc-7\"]\n"
        );
        let hb = SOCKETIO_PACKETS.encode_heartbeat(HeartbeatStyle::Comment, r#"{"ts":1}"#);
        assert_eq!(&hb[..], b"42[\"heartbeat\",{\"ts\":1}]\n");
    }

    #[test]
    fn text_and_multi_line_payloads_stay_one_packet() {
        let e = event("t", Payload::text("two\nlines \"q\"\r\n"));
        assert_eq!(
            parse(&SOCKETIO_PACKETS.encode_event(&e)),
            (
                "t".to_owned(),
                vec![json!("two\nlines \"q\"\r\n"), json!("000000000abc-7")]
            )
        );
        let c = SOCKETIO_PACKETS.encode_control(
            None,
            &EventName::system("disconnected"),
            "{\n\"reason\": \"shutdown\"\n}",
        );
        assert_eq!(
            parse(&c),
            (
                "disconnected".to_owned(),
                vec![json!({"reason": "shutdown"})]
            )
        );
    }

    #[test]
    fn reserved_names_are_not_sent() {
        for name in super::super::RESERVED_EVENTS {
            let e = event(name, Payload::json(&json!(1)).unwrap());
            assert!(SOCKETIO_PACKETS.encode_event(&e).is_empty(), "{name}");
        }
    }
}
