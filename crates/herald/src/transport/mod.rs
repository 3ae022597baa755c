//! What the hub core asks of a transport, and nothing more.
//!
//! A transport (SSE today; WebSocket, Socket.IO and Mercure next) is a module of its own that
//! turns a client's request into a [`ConnectRequest`](crate::ConnectRequest), calls
//! [`Hub::connect`](crate::Hub::connect), and writes what the returned
//! [`Subscription`](crate::Subscription) yields to its socket. The core only needs to know how
//! that transport encodes things, which is its [`WireFormat`]: the registry, the replay, the
//! heartbeat and disconnects then work identically for every transport, and one user's tabs on
//! different transports each get an event once.
//!
//! Each wire format encodes a published event at most once: the encoding is kept in the event
//! (slot [`WireFormat::slot`] of [`Event`]), and every connection of that format shares the
//! same bytes.

pub(crate) mod outbox;
pub(crate) mod resume;
mod subscription;

pub(crate) use subscription::WriterHandle;
pub use subscription::{StreamAborted, Subscription};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::HeartbeatStyle;
use crate::event::{Event, EventId, EventName, FORMAT_SLOTS};

/// The encoding-cache slot of each wire format. One line per transport; a new transport takes
/// the next free number below [`FORMAT_SLOTS`].
pub mod slot {
    /// Server-Sent Events (`text/event-stream`, [`crate::sse`]).
    pub const SSE: usize = 0;
    /// JSON lines ([`crate::ws::frame::JsonLines`]): WebSocket text frames, and the records the
    /// Socket.IO transport emits from; one encoding for both.
    pub const JSON_LINES: usize = 1;
    /// SSE with `?envelope=1` ([`crate::sse::envelope`]): every event as a default `message`
    /// whose data is the JSON-lines object. (This was the free slot `NEXT`; a further transport
    /// raises [`FORMAT_SLOTS`](super::FORMAT_SLOTS) and takes the number below `TEST`.)
    pub const SSE_ENVELOPE: usize = 2;
    /// Socket.IO packets (`42["name",data,"id"]`, [`crate::socketio::packets`]): what Socket.IO
    /// sockets on a WebSocket of Herald's own are sent.
    pub const SOCKETIO_PACKETS: usize = 3;
    /// Mercure's SSE ([`crate::mercure`]): the publisher's ids, `event:` only for a `type`,
    /// `retry:` when given.
    pub const MERCURE: usize = 4;
    /// The last slot, which tests use for their own formats.
    pub const TEST: usize = super::FORMAT_SLOTS - 1;
}

/// Every transport name a [`WireFormat::name`] gives, so that a name read back from another
/// node becomes the same `&'static str` ([`name_of`]).
pub const NAMES: &[&str] = &["sse", "websocket", "socketio", "mercure", "test"];

/// The known transport name `name`, or `"other"` (a newer node's transport).
pub fn name_of(name: &str) -> &'static str {
    NAMES
        .iter()
        .copied()
        .find(|n| *n == name)
        .unwrap_or("other")
}

/// How one transport writes events to its clients.
///
/// Implementations are stateless (usually a `static`): the registry holds a
/// `&'static dyn WireFormat` per connection.
pub trait WireFormat: Send + Sync + fmt::Debug + 'static {
    /// The slot of this format in an event's encoding cache (see [`slot`]). Two formats share a
    /// slot only when they encode every event to the same bytes (the WebSocket and Socket.IO
    /// transports' JSON lines do); otherwise each takes its own.
    fn slot(&self) -> usize;

    /// The transport's name as operators see it (admin answers, the dashboard): `sse`,
    /// `websocket`, …; one of [`NAMES`].
    fn name(&self) -> &'static str;

    /// A published event. Called at most once per event and format; the bytes are shared by
    /// every connection of the format.
    fn encode_event(&self, event: &Event) -> Bytes;

    /// One of the hub's own events (`connected`, `disconnected`, `reset`), whose data is JSON
    /// the hub built; `id` is the event id a client resumes from afterwards, when it moves.
    fn encode_control(&self, id: Option<&EventId>, name: &EventName, data: &str) -> Bytes;

    /// What keeps an idle connection alive and lets the client notice a dead one, in `style`
    /// where the format has a choice; `data` is the JSON a heartbeat event carries.
    fn encode_heartbeat(&self, style: HeartbeatStyle, data: &str) -> Bytes;

    /// A hint of how long the client waits before it reconnects, where the format has one
    /// (SSE: `retry:`). Sent before `connected`, and before `disconnected` at shutdown (each
    /// client a different delay, so they come back spread out).
    fn encode_retry(&self, delay: Duration) -> Option<Bytes> {
        let _ = delay;
        None
    }

    /// The most bytes (compact JSON) of a connection's metadata: clients' own metadata is
    /// bounded by [`MAX_METADATA_BYTES`](crate::hub::MAX_METADATA_BYTES); a transport that
    /// keeps its protocol's subscription there (Mercure: the selectors and the token's
    /// payload, already bounded by its own input limits) may allow more.
    fn max_metadata_bytes(&self) -> usize {
        crate::hub::MAX_METADATA_BYTES
    }
}

/// Decides, per event, whether one connection gets it, beyond what its targets select: the
/// matching of a protocol whose subscriptions are not plain channels (Mercure's topic selectors
/// and private updates; see [`crate::mercure`]).
///
/// Fan-out asks a connection's filter once per event; connections that share one filter (the
/// same `Arc`) are asked once per event and shard, whatever their number, so a transport that
/// interns its filters (one per distinct subscription) pays per distinct subscription, not per
/// connection. The replay of a resume is filtered the same way, so nothing a filter refuses
/// live reaches the client through a replay.
pub trait DeliveryFilter: Send + Sync + fmt::Debug + 'static {
    /// Whether the connection gets `event`. `scratch` is shared by every filter asked about
    /// this event in one fan-out pass (one shard), so that what a filter works out from the
    /// event (its decoded form) is worked out once.
    fn accepts(&self, event: &Event, scratch: &mut FilterScratch) -> bool;
}

/// Per-event scratch space of [`DeliveryFilter`]s: the decisions made so far (by filter) and
/// one value of the filters' own, made on first use.
#[derive(Default)]
pub struct FilterScratch {
    decided: std::collections::HashMap<usize, bool>,
    state: Option<Box<dyn std::any::Any + Send>>,
}

impl fmt::Debug for FilterScratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterScratch")
            .field("decided", &self.decided.len())
            .finish_non_exhaustive()
    }
}

/// Most decisions a scratch remembers: beyond, filters are asked again (still correct, only
/// slower). Interned filters make this the number of distinct subscriptions in one shard.
const MAX_REMEMBERED_DECISIONS: usize = 4096;

impl FilterScratch {
    /// The filters' own value for this event, made by `init` on first use (or when the value
    /// held is of another type).
    pub fn state<T: Send + 'static>(&mut self, init: impl FnOnce() -> T) -> &mut T {
        if !self.state.as_ref().is_some_and(|s| s.is::<T>()) {
            self.state = Some(Box::new(init()));
        }
        // Just made sure it holds a `T`.
        self.state
            .as_mut()
            .and_then(|s| s.downcast_mut::<T>())
            .expect("the state holds a T")
    }

    /// Whether `filter` accepts `event`, asking it only the first time.
    pub(crate) fn decide(&mut self, filter: &Arc<dyn DeliveryFilter>, event: &Event) -> bool {
        let key = Arc::as_ptr(filter) as *const () as usize;
        if let Some(&accepted) = self.decided.get(&key) {
            return accepted;
        }
        let accepted = filter.accepts(event, self);
        if self.decided.len() < MAX_REMEMBERED_DECISIONS {
            self.decided.insert(key, accepted);
        }
        accepted
    }
}

/// Where the stream of a client that names a position starts, for transports whose protocol
/// has no `reset` event (Mercure): what can be replayed is, and otherwise the stream starts
/// live and the transport tells the client itself (Mercure: the `Last-Event-ID` response
/// header). See [`Subscription::replayed`].
#[derive(Clone)]
pub enum LenientStart {
    /// After this event, when every event since is retained and within the replay cap.
    After(EventId),
    /// Every retained event, when they fit within the replay cap.
    Earliest,
    /// After the newest retained event (of those the connection would have received) that
    /// the function picks, when they all fit within the replay cap: for a position the
    /// transport cannot map to an [`EventId`] itself (a protocol's own event ids, published
    /// on another node). Nothing picked: live.
    AfterMatching(Arc<dyn Fn(&Event) -> bool + Send + Sync>),
}

/// How a [`LenientStart`] went ([`Subscription::lenient_outcome`](crate::Subscription::lenient_outcome)).
#[derive(Debug, Clone)]
pub enum LenientOutcome {
    /// Everything asked for was queued.
    Complete,
    /// Not everything could be (the position is unknown or too old, or the replay exceeds the
    /// cap): the stream replays what follows `after`, the newest event (that the connection
    /// would have received) before the first one it sends. A protocol names it to its client
    /// as where it now stands.
    After(Arc<Event>),
    /// Not everything could be: the stream replays every retained event the connection would
    /// have received, which does not reach back to the position asked for (an unknown id).
    FromOldest,
    /// Nothing could be replayed: the stream starts live.
    Live,
}

impl fmt::Debug for LenientStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LenientStart::After(id) => write!(f, "After({id})"),
            LenientStart::Earliest => f.write_str("Earliest"),
            LenientStart::AfterMatching(_) => f.write_str("AfterMatching(..)"),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_format {
    //! A wire format for tests: one line per event, `<kind> <id> <name> <data>`.
    use super::*;

    /// Lines like `event 5f3a9c01b2d4-1 note {"n":1}`.
    #[derive(Debug)]
    pub(crate) struct Lines;

    pub(crate) static LINES: Lines = Lines;

    impl WireFormat for Lines {
        fn slot(&self) -> usize {
            slot::TEST
        }
        fn name(&self) -> &'static str {
            "test"
        }
        fn encode_event(&self, event: &Event) -> Bytes {
            Bytes::from(format!(
                "event {} {} {}\n",
                event.id,
                event.name,
                event.payload.as_str()
            ))
        }
        fn encode_control(&self, id: Option<&EventId>, name: &EventName, data: &str) -> Bytes {
            let id = id.map(ToString::to_string).unwrap_or_default();
            Bytes::from(format!("control {id} {name} {data}\n"))
        }
        fn encode_heartbeat(&self, _: HeartbeatStyle, data: &str) -> Bytes {
            Bytes::from(format!("heartbeat {data}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::event::{Epoch, Payload};

    /// Counts its encodings.
    #[derive(Debug)]
    struct Counting(AtomicUsize, usize);

    impl WireFormat for Counting {
        fn slot(&self) -> usize {
            self.1
        }
        fn name(&self) -> &'static str {
            "counting"
        }
        fn encode_event(&self, event: &Event) -> Bytes {
            self.0.fetch_add(1, Ordering::SeqCst);
            Bytes::from(format!("{}:{}", self.1, event.payload.as_str()))
        }
        fn encode_control(&self, _: Option<&EventId>, _: &EventName, _: &str) -> Bytes {
            Bytes::new()
        }
        fn encode_heartbeat(&self, _: HeartbeatStyle, _: &str) -> Bytes {
            Bytes::new()
        }
    }

    #[test]
    fn each_format_encodes_an_event_once_and_shares_the_bytes() {
        let a = Counting(AtomicUsize::new(0), slot::SSE);
        let b = Counting(AtomicUsize::new(0), slot::TEST);
        let id = EventId {
            epoch: Epoch::random(),
            seq: 1,
        };
        let event = Event::new(id, EventName::new("n").unwrap(), Payload::text("x"));
        assert!(!event.is_encoded(slot::SSE));
        let first = event.encoded(&a);
        for _ in 0..100 {
            let again = event.encoded(&a);
            assert_eq!(again.as_ptr(), first.as_ptr(), "the same shared bytes");
        }
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert!(event.is_encoded(slot::SSE) && !event.is_encoded(slot::TEST));
        assert_eq!(
            &event.encoded(&b)[..],
            format!("{}:x", slot::TEST).as_bytes()
        );
        assert_eq!(&event.encoded(&a)[..], b"0:x", "formats do not mix");
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        // A format beyond the cache still encodes (each time).
        let c = Counting(AtomicUsize::new(0), FORMAT_SLOTS + 5);
        event.encoded(&c);
        event.encoded(&c);
        assert_eq!(c.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn encodings_race_to_one() {
        let a = std::sync::Arc::new(Counting(AtomicUsize::new(0), slot::SSE_ENVELOPE));
        let id = EventId {
            epoch: Epoch::random(),
            seq: 1,
        };
        let event = std::sync::Arc::new(Event::new(
            id,
            EventName::new("n").unwrap(),
            Payload::text("x"),
        ));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (a, event) = (a.clone(), event.clone());
                std::thread::spawn(move || event.encoded(&*a))
            })
            .collect();
        for t in threads {
            assert_eq!(
                &t.join().unwrap()[..],
                format!("{}:x", slot::SSE_ENVELOPE).as_bytes()
            );
        }
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
    }
}
