//! Where a new connection's stream starts, and the resume that gets it there without a gap or a
//! duplicate. It relies on the outbox's hold and release ([`Outbox::hold`],
//! [`Outbox::release`]): live events that arrive while the start position is worked out wait in
//! the outbox with their sequence numbers, and are then kept or dropped against that position.
//!
//! [`Outbox::hold`]: super::outbox::Outbox::hold
//! [`Outbox::release`]: super::outbox::Outbox::release

use serde_json::json;

use std::sync::Arc;

use crate::broker::Broker;
use crate::error::Result;
use crate::event::{Event, EventId, EventName};
use crate::history::{Replay, ReplayCap, ReplayFilter};
use crate::metrics::Metrics;
use crate::registry::Connection;
use crate::transport::{FilterScratch, LenientStart};

/// Starts the stream of `conn`, registered (its outbox held) when the registry's position was
/// `position`: for a fresh client, releases the live events after that position; for a client
/// resuming after `resume_from`, queues the replay (or a `reset`) and then the live events the
/// replay did not cover. Returns the id its `connected` event carries (`None` for a resuming
/// client, which keeps its own last id until the replay or reset moves it).
///
/// # Errors
/// [`crate::Error::Engine`] when the broker cannot be read.
pub(crate) async fn start(
    conn: &Connection,
    position: Option<EventId>,
    resume_from: Option<String>,
    broker: &dyn Broker,
    cap: ReplayCap,
    metrics: &Metrics,
) -> Result<Option<EventId>> {
    Ok(match resume_from {
        None => {
            // A fresh client starts right after the last event counted for delivery before
            // it registered: every later event was counted for it (`delivered`) and reaches
            // it live; earlier ones still being fanned out are dropped (they did not count
            // it). Its `connected` event carries that id, so even a client that has
            // received nothing yet resumes from the right place after a blip. Before this
            // node delivered its first event, nothing can be dropped: it starts at the
            // broker's head and keeps everything that arrives.
            let (start, floor) = match position {
                Some(position) => (position, position.seq),
                None => (broker.head().await?, 0),
            };
            conn.outbox.release([], floor);
            Some(start)
        }
        Some(text) => {
            let filter = ReplayFilter {
                user: conn.user.clone(),
                channels: conn.channels.clone(),
            };
            // The broker pages through its history and stops at the cap, so a resume costs
            // at most that much, whatever id it names.
            let replay = match text.parse::<EventId>() {
                Ok(after) => broker.replay(after, &filter, cap).await?,
                Err(_) => Replay::Reset {
                    reason: crate::history::ResetReason::UnknownEpoch,
                    head: broker.head().await?,
                },
            };
            match replay {
                Replay::Events { events, head } => {
                    let events = filtered(conn, events);
                    metrics.resumed(events.len());
                    let format = conn.format;
                    conn.outbox
                        .release(events.iter().map(|e| e.encoded(format)), head.seq);
                }
                Replay::Reset { reason, head } => {
                    metrics.reset();
                    // The reset carries the head id: the client's next resume starts there.
                    // It is queued before any held live event (floor 0 keeps them all).
                    let data = json!({
                        "reason": reason.as_str(),
                        "lastEventId": text,
                        "message": "Events may have been missed; refetch your state",
                    });
                    let reset = conn.format.encode_control(
                        Some(&head),
                        &EventName::system("reset"),
                        &data.to_string(),
                    );
                    conn.outbox.release([reset], 0);
                }
            }
            // A resuming client keeps its own last id until the replay or reset moves it.
            None
        }
    })
}

/// The replayed events `conn`'s filter accepts (all of them without a filter): a replay never
/// gives a client what live delivery would not have.
fn filtered(conn: &Connection, events: Vec<Arc<Event>>) -> Vec<Arc<Event>> {
    match &conn.filter {
        None => events,
        Some(filter) => events
            .into_iter()
            .filter(|e| filter.accepts(e, &mut FilterScratch::default()))
            .collect(),
    }
}

/// Starts the stream of `conn` (registered with its outbox held at `position`) from `start`,
/// for protocols without a `reset` event: queues the replay when the broker can give all of it
/// within `cap`, and otherwise starts live, as a fresh client does. Returns whether it replayed.
///
/// `Earliest` replays from just before the oldest retained event the broker reports.
///
/// # Errors
/// [`crate::Error::Engine`] when the broker cannot be read.
pub(crate) async fn start_lenient(
    conn: &Connection,
    position: Option<EventId>,
    start: LenientStart,
    broker: &dyn Broker,
    cap: ReplayCap,
    metrics: &Metrics,
) -> Result<bool> {
    let filter = ReplayFilter {
        user: conn.user.clone(),
        channels: conn.channels.clone(),
    };
    let after = match &start {
        LenientStart::After(id) => Some(*id),
        // Nothing retained (`None`): everything there is (nothing) is sent.
        LenientStart::Earliest | LenientStart::AfterMatching(_) => {
            broker.oldest().await?.map(|oldest| EventId {
                epoch: oldest.epoch,
                seq: oldest.seq.saturating_sub(1),
            })
        }
    };
    let replay = match after {
        Some(after) => Some(broker.replay(after, &filter, cap).await?),
        None => None,
    };
    let live = |conn: &Connection| {
        // As a fresh client (see `start`).
        let floor = match position {
            Some(position) => position.seq,
            None => 0,
        };
        conn.outbox.release([], floor);
    };
    match replay {
        Some(Replay::Events { events, head }) => {
            let mut events = filtered(conn, events);
            if let LenientStart::AfterMatching(picks) = &start {
                match events.iter().rposition(|e| picks(e)) {
                    Some(at) => {
                        events.drain(..=at);
                    }
                    None => {
                        live(conn);
                        return Ok(false);
                    }
                }
            }
            metrics.resumed(events.len());
            let format = conn.format;
            conn.outbox
                .release(events.iter().map(|e| e.encoded(format)), head.seq);
            Ok(true)
        }
        Some(Replay::Reset { .. }) => {
            metrics.reset();
            live(conn);
            Ok(false)
        }
        None => {
            live(conn);
            Ok(matches!(start, LenientStart::Earliest))
        }
    }
}
