//! A Mercure update as the hub core carries it: one [`Event`] named
//! [`EVENT_NAME`] whose text payload is the update's record, so that every engine (memory, the
//! durable file, Redis) stores, replays and carries it across nodes with nothing Mercure-specific.
//!
//! The record is one line of compact JSON (`{"id", "topics", "private", "type", "retry"}`; JSON
//! escapes every line break, so the line ends at the first `\n`), then `\n`, then the update's
//! data byte for byte. The name is reserved ([`crate::event::RESERVED_EVENT_NAMES`]): no
//! publisher of Herald's own API can forge an update.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventName, Payload};

/// The name of every Mercure update's event.
pub(crate) const EVENT_NAME: &str = "mercure:update";

/// One update, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Update {
    /// The update's id: the publisher's, or one the hub made (`urn:uuid:…`).
    pub(crate) id: String,
    /// Its topics (the first is the canonical one).
    pub(crate) topics: Vec<String>,
    /// Only subscribers whose token allows one of the topics get it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) private: bool,
    /// The SSE `event:` field.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) event_type: Option<String>,
    /// The SSE `retry:` field, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry: Option<u64>,
    /// The data.
    #[serde(skip)]
    pub(crate) data: String,
}

impl Update {
    /// The event name and payload that carry this update.
    pub(crate) fn to_event_parts(&self) -> (EventName, Payload) {
        // An `Update` always serializes (strings, booleans and numbers only).
        let mut text = serde_json::to_string(self).expect("an update serializes");
        text.push('\n');
        text.push_str(&self.data);
        (EventName::system(EVENT_NAME), Payload::text(text))
    }

    /// The update `event` carries; `None` for any other event (Herald's own, or a record this
    /// release cannot read).
    pub(crate) fn from_event(event: &Event) -> Option<Arc<Update>> {
        if event.name.as_str() != EVENT_NAME {
            return None;
        }
        let (head, data) = event.payload.as_str().split_once('\n')?;
        let mut update: Update = serde_json::from_str(head).ok()?;
        update.data = data.to_owned();
        Some(Arc::new(update))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Epoch, EventId};

    #[test]
    fn an_update_round_trips_through_every_engine_form() {
        let update = Update {
            id: "urn:uuid:1".into(),
            topics: vec!["https://example.com/a\n\"b\"".into(), "c".into()],
            private: true,
            event_type: Some("type with spaces: ok".into()),
            retry: Some(1500),
            data: "line 1\n\nline 3\r\n".into(),
        };
        let (name, payload) = update.to_event_parts();
        let id = EventId {
            epoch: Epoch::random(),
            seq: 1,
        };
        let event = Event::new(id, name.clone(), payload.clone());
        assert_eq!(*Update::from_event(&event).unwrap(), update);
        // The storage form of Redis and the durable file gives it back too.
        let stored = Event::stored_form(&name, &payload);
        let back = Event::from_stored_form(id, &stored).unwrap();
        assert_eq!(*Update::from_event(&back).unwrap(), update);
        // Other events are not updates.
        let other = Event::new(id, EventName::new("note").unwrap(), payload);
        assert!(Update::from_event(&other).is_none());
        // The name is reserved to the hub.
        assert!(EventName::new(EVENT_NAME).is_err());
    }
}
