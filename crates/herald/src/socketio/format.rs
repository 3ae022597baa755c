//! The Socket.IO wire format: what a Socket.IO connection's [`Subscription`](crate::Subscription) yields, which
//! its drain task (`super::drain`) turns into `emit`s.
//!
//! A record is the WebSocket transport's JSON line ([`crate::ws::frame::encode`]):
//!
//! ```text
//! {"id":"0191a2b3c4d5-42","event":"notification","data":{"title":"Hi"}}
//! ```
//!
//! It is encoded once per event, in the same cache slot as the WebSocket transport's
//! ([`slot::JSON_LINES`]: an event sent to both is encoded once), and ends with `\n`, so a chunk of
//! coalesced records splits without copying; `Record::parse` borrows the name, the id and
//! the `data` as raw JSON, which the emit then copies into the Socket.IO packet. What stays per
//! socket is socketioxide's own encoding of each packet (`42["notification",{…},"<id>"]`): one
//! JSON scan and copy of the record per event and socket.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

#[cfg(doc)]
use crate::transport::slot;
use crate::ws::frame::JsonLines;

/// The Socket.IO transport's instance of the JSON-lines format (see the module docs).
pub static SOCKETIO_FORMAT: JsonLines = JsonLines::named("socketio");

/// One record, borrowed from its line.
#[derive(Debug, Deserialize)]
pub(crate) struct Record<'a> {
    /// The event id, when the event moves the client's position.
    #[serde(borrow)]
    pub(crate) id: Option<Cow<'a, str>>,
    /// The Socket.IO event name.
    #[serde(borrow)]
    pub(crate) event: Cow<'a, str>,
    /// The payload, as JSON.
    #[serde(borrow)]
    pub(crate) data: &'a RawValue,
}

impl<'a> Record<'a> {
    /// Parses one line (without its `\n`).
    pub(crate) fn parse(line: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(line)
    }
}

/// The records of a chunk: its lines, without the `\n`s.
pub(crate) fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    chunk.split(|b| *b == b'\n').filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeartbeatStyle;
    use crate::event::{Epoch, Event, EventId, EventName, Payload};
    use crate::transport::WireFormat;
    use serde_json::json;

    fn event(payload: Payload) -> Event {
        let id = EventId {
            epoch: Epoch::from_u64(0xabc),
            seq: 7,
        };
        Event::new(id, EventName::new("notification").unwrap(), payload)
    }

    #[test]
    fn records_round_trip_through_a_coalesced_chunk() {
        let a = SOCKETIO_FORMAT
            .encode_event(&event(Payload::json(&json!({"a": [1, "x\ny"]})).unwrap()));
        let b = SOCKETIO_FORMAT.encode_event(&event(Payload::text("two\nlines \"q\"")));
        let c = SOCKETIO_FORMAT.encode_heartbeat(HeartbeatStyle::Comment, r#"{"ts":1}"#);
        let chunk = [a, b, c].concat();
        let records: Vec<_> = lines(&chunk).map(|l| Record::parse(l).unwrap()).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].event, "notification");
        assert_eq!(records[0].id.as_deref(), Some("000000000abc-7"));
        let data: serde_json::Value = serde_json::from_str(records[0].data.get()).unwrap();
        assert_eq!(data, json!({"a": [1, "x\ny"]}));
        assert_eq!(records[1].data.get(), r#""two\nlines \"q\"""#);
        assert_eq!(records[2].event, "heartbeat");
        assert!(records[2].id.is_none());
    }

    #[test]
    fn socketio_packets_carry_the_raw_data_and_the_id() {
        // The emit's argument: (data, id) becomes `["<event>", data, "<id>"]`.
        let line = SOCKETIO_FORMAT.encode_event(&event(Payload::json(&json!({"t": 1})).unwrap()));
        let record = Record::parse(lines(&line).next().unwrap()).unwrap();
        let text = serde_json::to_string(&(record.data, record.id.as_deref())).unwrap();
        assert_eq!(text, r#"[{"t":1},"000000000abc-7"]"#);
    }
}
