//! Events: their names, ids and payloads.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Serialize, Serializer};

use crate::error::InvalidInput;
use crate::transport::WireFormat;

/// Longest accepted event name.
pub const MAX_EVENT_NAME_LEN: usize = 64;

/// Event names the hub itself sends; publishers cannot use them, so that a client can trust
/// that a `disconnected` or `reset` really comes from the hub.
pub const RESERVED_EVENT_NAMES: &[&str] = &[
    "connected",
    "heartbeat",
    "disconnected",
    "reset",
    "presence:join",
    "presence:leave",
    "mercure:update",
];

/// The name of an event (the SSE `event:` field): 1 to [`MAX_EVENT_NAME_LEN`] characters of
/// `[A-Za-z0-9_.:-]`. The character set makes line injection impossible by construction.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

impl EventName {
    /// The name SSE gives an event without an `event:` field; the default of a publish.
    pub const DEFAULT: &'static str = "message";

    /// Validates a publisher's event name.
    ///
    /// # Errors
    /// When the name is empty, too long, has a character outside the set, or is reserved
    /// ([`RESERVED_EVENT_NAMES`]).
    pub fn new(s: &str) -> Result<Self, InvalidInput> {
        Self::validate_chars(s)?;
        if RESERVED_EVENT_NAMES.contains(&s) {
            return Err(InvalidInput::with_code(
                "reserved_event",
                "event",
                format!("event name {s:?} is reserved for the hub's own events"),
            ));
        }
        Ok(EventName(interned(s)))
    }

    /// A name of the hub's own events; panics in debug builds if the name is not well formed.
    pub(crate) fn system(s: &'static str) -> Self {
        debug_assert!(Self::validate_chars(s).is_ok());
        EventName(s.into())
    }

    /// A name read back from storage: any well-formed name, reserved ones included (the
    /// hub's presence events are stored too). `None` when it is not well formed.
    pub(crate) fn stored(s: &str) -> Option<Self> {
        Self::validate_chars(s).ok()?;
        Some(EventName(interned(s)))
    }

    fn validate_chars(s: &str) -> Result<(), InvalidInput> {
        if s.is_empty() || s.len() > MAX_EVENT_NAME_LEN {
            return Err(InvalidInput::new(
                "event",
                format!("an event name is 1 to {MAX_EVENT_NAME_LEN} characters"),
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
        {
            return Err(InvalidInput::new(
                "event",
                format!("event name has the character {c:?}; allowed are A-Z a-z 0-9 and _ . : -"),
            ));
        }
        Ok(())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventName({:?})", &*self.0)
    }
}

/// Most distinct event names a thread keeps shared; past it the set starts over.
const INTERNED_NAMES: usize = 256;

thread_local! {
    /// The names this thread has seen lately: a hub publishes a handful of names over and over,
    /// and each publish then shares one allocation (in the replay window too) instead of making
    /// its own.
    static NAMES: std::cell::RefCell<std::collections::HashSet<Arc<str>>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// `s` as a shared string, from this thread's set of recent names when it is there.
fn interned(s: &str) -> Arc<str> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(name) = names.get(s) {
            return name.clone();
        }
        if names.len() >= INTERNED_NAMES {
            names.clear();
        }
        let name: Arc<str> = s.into();
        names.insert(name.clone());
        name
    })
}

/// The history epoch of a hub: a random 48-bit number chosen when its history starts. An event
/// id from another epoch cannot be resumed from, and the hub says so instead of guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// A fresh random epoch.
    pub fn random() -> Self {
        Epoch(rand::random::<u64>() & 0xffff_ffff_ffff)
    }

    /// The epoch with this value (as stored by a durable history).
    pub fn from_u64(v: u64) -> Self {
        Epoch(v & 0xffff_ffff_ffff)
    }

    /// The raw value.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012x}", self.0)
    }
}

/// The id of a published event, `<epoch>-<sequence>` (e.g. `5f3a9c01b2d4-17`). Sequence numbers
/// grow by one per event within an epoch, so ids totally order the events of a hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    /// The history epoch the id belongs to.
    pub epoch: Epoch,
    /// The position in that epoch, from 1.
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl FromStr for EventId {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidInput::new("lastEventId", "an event id looks like 5f3a9c01b2d4-17");
        let (epoch, seq) = s.split_once('-').ok_or_else(bad)?;
        if epoch.len() != 12 || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(EventId {
            epoch: Epoch(u64::from_str_radix(epoch, 16).map_err(|_| bad())?),
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether a payload is JSON or raw text. Each wire format decides what that changes: SSE sends
/// both as they are on `data:` lines; a JSON-framed transport embeds JSON as a value and text as
/// a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// The compact JSON encoding of a value (`"data"` in a publish).
    Json,
    /// Raw text, sent as it is (`"text"` in a publish).
    Text,
}

/// The payload of an event: its text and whether that text is JSON or raw. For a JSON payload
/// the text is the compact encoding of the published value, so `JSON.parse(e.data)` gives the
/// value back; a text payload arrives exactly as published. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    text: Arc<str>,
    kind: PayloadKind,
}

impl Payload {
    /// The compact JSON encoding of `value`.
    ///
    /// # Errors
    /// When `value` cannot be serialized to JSON (a map with non-string keys, say).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, InvalidInput> {
        serde_json::to_string(value)
            .map(|s| Payload {
                text: s.into(),
                kind: PayloadKind::Json,
            })
            .map_err(|e| InvalidInput::new("data", format!("cannot encode data as JSON: {e}")))
    }

    /// Text that is already compact JSON (as stored by an engine). Not checked.
    pub(crate) fn json_text(text: impl Into<Arc<str>>) -> Self {
        Payload {
            text: text.into(),
            kind: PayloadKind::Json,
        }
    }

    /// Raw text, sent as it is (line breaks become several `data:` lines on SSE).
    pub fn text(text: impl Into<Arc<str>>) -> Self {
        Payload {
            text: text.into(),
            kind: PayloadKind::Text,
        }
    }

    /// JSON or text.
    pub fn kind(&self) -> PayloadKind {
        self.kind
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.text;
        let kind = match self.kind {
            PayloadKind::Json => "Json",
            PayloadKind::Text => "Text",
        };
        if s.len() > 80 {
            let mut end = 80;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            write!(f, "Payload::{kind}({:?}… {} bytes)", &s[..end], s.len())
        } else {
            write!(f, "Payload::{kind}({s:?})")
        }
    }
}

/// How many wire formats an event keeps an encoding of; see [`crate::transport::WireFormat`].
pub const FORMAT_SLOTS: usize = 6;

/// A published event with its id: what every transport delivers.
///
/// An event is shared (`Arc<Event>`) by every connection it goes to and by the replay window. It
/// keeps each wire format's encoding once made ([`Event::encoded`]), so a format encodes an
/// event at most once, and every connection of that format gets the same bytes.
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// Its name.
    pub name: EventName,
    /// Its payload.
    pub payload: Payload,
    /// [`Event::size`], computed once.
    size: usize,
    encodings: [OnceLock<Bytes>; FORMAT_SLOTS],
}

impl Event {
    /// An event, not yet encoded in any format.
    pub fn new(id: EventId, name: EventName, payload: Payload) -> Self {
        Event {
            size: Self::size_of(&name, &payload),
            id,
            name,
            payload,
            encodings: Default::default(),
        }
    }

    /// This event in `format`, encoded on first use and shared after.
    pub fn encoded(&self, format: &dyn WireFormat) -> Bytes {
        let slot = format.slot();
        match self.encodings.get(slot) {
            Some(cell) => cell.get_or_init(|| format.encode_event(self)).clone(),
            // A format with a slot out of range still works, without the cache.
            None => format.encode_event(self),
        }
    }

    /// Whether this event's encoding in the format of `slot` was already made (tests).
    #[doc(hidden)]
    pub fn is_encoded(&self, slot: usize) -> bool {
        self.encodings.get(slot).is_some_and(|c| c.get().is_some())
    }

    /// The bytes the event counts for in the replay window's and a resume's byte limits: the
    /// length of its storage form (name, payload and 2), plus 7 for every line break of a text
    /// payload, which SSE sends as a `data: ` line of its own (so the limits bound what a
    /// resume queues to an SSE client, not only what is stored). A JSON payload holds no line
    /// break. Redis stores it beside each event; the memory engine and the durable file
    /// compute it the same way.
    pub fn size(&self) -> usize {
        self.size
    }

    /// [`Event::size`] of an event with this name and payload.
    pub fn size_of(name: &EventName, payload: &Payload) -> usize {
        let breaks = match payload.kind() {
            PayloadKind::Json => 0,
            PayloadKind::Text => payload
                .as_str()
                .bytes()
                .filter(|b| matches!(b, b'\n' | b'\r'))
                .count(),
        };
        name.as_str().len() + payload.len() + 2 + 7 * breaks
    }

    /// The event's storage form, shared by every engine that keeps events outside this process
    /// (a Redis stream, the durable file): one line `j<name>` or `t<name>` (JSON or text
    /// payload), then the payload. Event names hold no line break, so the form is unambiguous;
    /// the id is stored beside it.
    pub fn stored_form(name: &EventName, payload: &Payload) -> String {
        let mut out = String::with_capacity(payload.len() + name.as_str().len() + 2);
        out.push(match payload.kind() {
            PayloadKind::Json => 'j',
            PayloadKind::Text => 't',
        });
        out.push_str(name.as_str());
        out.push('\n');
        out.push_str(payload.as_str());
        out
    }

    /// Reads back what [`Event::stored_form`] wrote. `None` for text no Herald node wrote.
    pub fn from_stored_form(id: EventId, stored: &str) -> Option<Self> {
        let (head, payload) = stored.split_once('\n')?;
        let (kind, name) = head.split_at_checked(1)?;
        let name = EventName::stored(name)?;
        let payload = match kind {
            "j" => Payload::json_text(payload),
            "t" => Payload::text(payload),
            _ => return None,
        };
        Some(Event::new(id, name, payload))
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert!(EventName::new("notification").is_ok());
        assert!(EventName::new("order:shipped.v2-x_y").is_ok());
        assert!(EventName::new(&"a".repeat(64)).is_ok());
        assert!(EventName::new(&"a".repeat(65)).is_err());
        assert!(EventName::new("").is_err());
        assert!(EventName::new("a\nevent: evil").is_err());
        assert!(EventName::new("a\r").is_err());
        assert!(EventName::new("a b").is_err());
        assert_eq!(
            EventName::new("disconnected").unwrap_err().code,
            "reserved_event"
        );
    }

    #[test]
    fn repeated_names_share_one_allocation() {
        let a = EventName::new("order.shipped").unwrap();
        let b = EventName::new("order.shipped").unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        for i in 0..(INTERNED_NAMES * 2) {
            assert_eq!(
                EventName::new(&format!("n{i}")).unwrap().as_str(),
                format!("n{i}")
            );
        }
        assert_eq!(EventName::new("order.shipped").unwrap(), a);
    }

    #[test]
    fn event_ids_round_trip() {
        let id = EventId {
            epoch: Epoch::random(),
            seq: 42,
        };
        let text = id.to_string();
        assert_eq!(text.parse::<EventId>().unwrap(), id);
        for bad in [
            "",
            "42",
            "abc-1",
            "5f3a9c01b2d4-",
            "5f3a9c01b2d4-x",
            "5f3a9c01b2d4-1-2",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn json_payload_is_compact() {
        let v = serde_json::json!({"a": [1, 2], "b": "x\ny"});
        assert_eq!(
            Payload::json(&v).unwrap().as_str(),
            r#"{"a":[1,2],"b":"x\ny"}"#
        );
    }

    #[test]
    fn the_stored_form_round_trips_and_refuses_foreign_text() {
        let id = EventId {
            epoch: Epoch::random(),
            seq: 3,
        };
        for payload in [
            Payload::json(&serde_json::json!({"a": "x\ny"})).unwrap(),
            Payload::text("two\nlines\r\nand more"),
            Payload::text(""),
        ] {
            let name = EventName::new("order.shipped").unwrap();
            let stored = Event::stored_form(&name, &payload);
            let back = Event::from_stored_form(id, &stored).unwrap();
            assert_eq!((back.id, &back.name, &back.payload), (id, &name, &payload));
        }
        let presence =
            Event::stored_form(&EventName::system("presence:join"), &Payload::text("{}"));
        assert!(Event::from_stored_form(id, &presence).is_some());
        for foreign in [
            "",
            "jname",
            "xname\n{}",
            "j\n{}",
            "ja b\n{}",
            "id: 1-1\ndata: x\n\n",
        ] {
            assert!(
                Event::from_stored_form(id, foreign).is_none(),
                "{foreign:?}"
            );
        }
    }
}
