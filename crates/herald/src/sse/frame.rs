//! Exact bytes of the `text/event-stream` format (WHATWG HTML, "Server-sent events").
//!
//! Every frame is encoded once, into a [`Bytes`] that is then shared by every connection it goes
//! to. Field values that could break the framing are impossible by construction: event names and
//! ids come from validated types that exclude CR, LF and NUL, and the payload is split on every
//! line terminator the spec knows (CRLF, CR, LF) into one `data:` line each, so a client's parser
//! joins the lines back with `\n`.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::HeartbeatStyle;
use crate::event::{Event, EventId, EventName, Payload};
use crate::transport::{slot, WireFormat};

/// The SSE wire format: what every `text/event-stream` connection's events look like. Both JSON
/// and text payloads go on the `data:` lines as they are.
#[derive(Debug)]
pub struct Sse;

/// The one instance of [`Sse`].
pub static SSE: Sse = Sse;

impl WireFormat for Sse {
    fn slot(&self) -> usize {
        slot::SSE
    }

    fn name(&self) -> &'static str {
        "sse"
    }

    fn encode_event(&self, event: &Event) -> Bytes {
        encode_event(Some(&event.id), &event.name, event.payload.as_str())
    }

    fn encode_control(&self, id: Option<&EventId>, name: &EventName, data: &str) -> Bytes {
        encode_event(id, name, data)
    }

    fn encode_heartbeat(&self, style: HeartbeatStyle, data: &str) -> Bytes {
        match style {
            HeartbeatStyle::Comment => encode_comment("heartbeat"),
            HeartbeatStyle::Event => encode_event(None, &EventName::system("heartbeat"), data),
        }
    }

    fn encode_retry(&self, delay: Duration) -> Option<Bytes> {
        Some(encode_retry(delay))
    }
}

/// Reads back an event frame written by [`encode_event`] (as earlier releases stored them, in a
/// data directory or a Redis stream): its id, name and data. The payload is JSON when the data
/// parses as JSON (every earlier publish was), text otherwise. `None` for anything else.
pub fn decode_stored_frame(frame: &str) -> Option<(Option<EventId>, EventName, Payload)> {
    let mut id = None;
    let mut name = None;
    let mut data: Option<String> = None;
    for line in frame.split('\n') {
        if line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "id" => id = Some(value.parse::<EventId>().ok()?),
            "event" => name = Some(EventName::stored(value)?),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => return None,
        }
    }
    let name = name.unwrap_or_else(|| EventName::system(EventName::DEFAULT));
    let data = data?;
    let payload = if serde_json::from_str::<serde::de::IgnoredAny>(&data).is_ok() {
        Payload::json_text(data)
    } else {
        Payload::text(data)
    };
    Some((id, name, payload))
}

/// Encodes one event: `id:` (when given), `event:`, one `data:` line per line of `data`, and the
/// blank line that dispatches it.
///
/// `data` may hold any text; a JSON payload never holds a raw line break, but raw-text payloads
/// may, and they still arrive intact.
pub fn encode_event(id: Option<&EventId>, event: &EventName, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + event.as_str().len() + 48);
    if let Some(id) = id {
        buf.put_slice(b"id: ");
        put_event_id(&mut buf, id);
        buf.put_u8(b'\n');
    }
    buf.put_slice(b"event: ");
    buf.put_slice(event.as_str().as_bytes());
    buf.put_u8(b'\n');
    put_data_lines(&mut buf, data);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Appends `id` as its text (`<12 hex digits>-<decimal seq>`, as its `Display` writes it),
/// without the formatting machinery: every event frame starts with one.
pub(crate) fn put_event_id(buf: &mut BytesMut, id: &EventId) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let epoch = id.epoch.as_u64();
    let mut hex = [0u8; 12];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = HEX[((epoch >> (44 - 4 * i)) & 0xf) as usize];
    }
    buf.put_slice(&hex);
    buf.put_u8(b'-');
    let mut digits = [0u8; 20];
    let mut n = id.seq;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[start..]);
}

/// Appends `data: <line>\n` for every line of `data`, splitting on CRLF, CR and LF.
pub(crate) fn put_data_lines(buf: &mut BytesMut, data: &str) {
    let bytes = data.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                put_data_line(buf, &bytes[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                put_data_line(buf, &bytes[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    put_data_line(buf, &bytes[start..]);
}

fn put_data_line(buf: &mut BytesMut, line: &[u8]) {
    // The space after the colon matters: a parser strips exactly one leading space, so a line
    // that itself starts with a space keeps it.
    buf.put_slice(b"data: ");
    buf.put_slice(line);
    buf.put_u8(b'\n');
}

/// Encodes a `retry:` line: the reconnection delay a client's EventSource should use. It takes
/// effect as soon as it is parsed; written without a blank line, it rides along with the next
/// event, which also suits parsers that report `retry` as a property of an event.
pub fn encode_retry(delay: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n", delay.as_millis()))
}

/// Encodes a comment line (`: text`). Clients ignore it; proxies see traffic. `text` must be a
/// single line; line breaks are replaced by spaces.
pub fn encode_comment(text: &str) -> Bytes {
    let line: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    Bytes::from(format!(": {line}\n\n"))
}

/// A parser for the `text/event-stream` format following the WHATWG algorithm, used by the
/// crate's tests and fuzz targets to check that what [`encode_event`] writes parses back to what
/// went in. Not used on the serving path.
#[doc(hidden)]
pub mod parse {
    /// One dispatched event, as an EventSource would see it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ParsedEvent {
        /// The last event id (the `id:` field, sticky across events).
        pub id: String,
        /// The event type (`message` when there was no `event:` field).
        pub event: String,
        /// The data, lines joined with `\n`.
        pub data: String,
        /// The `retry:` value seen before this event, if any.
        pub retry: Option<u64>,
    }

    /// Parses a whole stream into the events it dispatches.
    pub fn parse_stream(input: &str) -> Vec<ParsedEvent> {
        let mut out = Vec::new();
        let mut last_id = String::new();
        let mut event = String::new();
        let mut data = String::new();
        let mut retry = None;
        let input = input.strip_prefix('\u{feff}').unwrap_or(input);
        let mut lines = Vec::new();
        let mut rest = input;
        // Split on CRLF, CR or LF; an unterminated last line is not processed (the spec waits).
        while let Some(pos) = rest.find(['\r', '\n']) {
            lines.push(&rest[..pos]);
            let skip = if rest[pos..].starts_with("\r\n") {
                2
            } else {
                1
            };
            rest = &rest[pos + skip..];
        }
        for line in lines {
            if line.is_empty() {
                if data.is_empty() {
                    event.clear();
                    continue;
                }
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(ParsedEvent {
                    id: last_id.clone(),
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event.clone()
                    },
                    data: std::mem::take(&mut data),
                    retry,
                });
                event.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(' ').unwrap_or(v))
                }
                None => (line, ""),
            };
            match field {
                "event" => event = value.to_string(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\0') => last_id = value.to_string(),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    retry = value.parse().ok();
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::parse::parse_stream;
    use super::*;
    use crate::event::Epoch;

    fn name(s: &'static str) -> EventName {
        EventName::system(s)
    }

    #[test]
    fn event_ids_are_written_as_their_display_text() {
        for (epoch, seq) in [
            (0, 0),
            (1, 1),
            (0xffff_ffff_ffff, u64::MAX),
            (0x5f3a_9c01_b2d4, 17),
        ] {
            let id = EventId {
                epoch: crate::event::Epoch::from_u64(epoch),
                seq,
            };
            let frame = encode_event(Some(&id), &EventName::new("n").unwrap(), "x");
            assert_eq!(frame, format!("id: {id}\nevent: n\ndata: x\n\n"));
        }
    }

    #[test]
    fn exact_bytes_of_an_event() {
        let id = EventId {
            epoch: Epoch::from_u64(0xabc),
            seq: 7,
        };
        let b = encode_event(Some(&id), &name("notification"), r#"{"a":1}"#);
        assert_eq!(
            &b[..],
            b"id: 000000000abc-7\nevent: notification\ndata: {\"a\":1}\n\n"
        );
        let b = encode_event(None, &name("heartbeat"), "");
        assert_eq!(&b[..], b"event: heartbeat\ndata: \n\n");
    }

    #[test]
    fn line_breaks_become_data_lines() {
        let b = encode_event(None, &name("x"), "a\nb\r\nc\rd\n");
        assert_eq!(
            &b[..],
            b"event: x\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
    }

    #[test]
    fn any_text_round_trips_through_a_spec_parser() {
        let samples = [
            "",
            "plain",
            " leading space",
            "  two",
            "a\nb",
            "a\r\nb\rc",
            "\n\n",
            "\r",
            "trailing\n",
            "event: injected\n\nid: 9",
            "unicode ✓ 🎉 Zoë",
            "nul\0inside",
        ];
        for s in samples {
            let b = encode_event(None, &name("x"), s);
            let parsed = parse_stream(std::str::from_utf8(&b).unwrap());
            assert_eq!(parsed.len(), 1, "{s:?}");
            // The spec normalizes every line terminator to \n.
            let expected = s.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(parsed[0].data, expected, "{s:?}");
            assert_eq!(parsed[0].event, "x");
        }
    }

    #[test]
    fn retry_and_comments() {
        let mut s = String::from_utf8(encode_retry(Duration::from_millis(2500)).to_vec()).unwrap();
        s.push_str(std::str::from_utf8(&encode_comment("hi\nthere")).unwrap());
        s.push_str(std::str::from_utf8(&encode_event(None, &name("e"), "1")).unwrap());
        let parsed = parse_stream(&s);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].retry, Some(2500));
        assert!(s.contains(": hi there\n"));
    }
}
