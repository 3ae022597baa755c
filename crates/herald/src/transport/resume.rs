//! Where a new connection's stream starts, and the resume that gets it there without a gap or a
//! duplicate. It relies on the outbox's hold and release ([`Outbox::hold`],
//! [`Outbox::release`]): live events that arrive while the start position is worked out wait in
//! the outbox with their sequence numbers, and are then kept or dropped against that position.
//!
//! [`Outbox::hold`]: super::outbox::Outbox::hold
//! [`Outbox::release`]: super::outbox::Outbox::release

use serde_json::json;

use crate::broker::Broker;
use crate::error::Result;
use crate::event::{EventId, EventName};
use crate::history::{Replay, ReplayCap, ReplayFilter};
use crate::metrics::Metrics;
use crate::registry::Connection;

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
