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
use crate::history::{Replay, ReplayCap, ReplayFilter, ResetReason};
use crate::metrics::Metrics;
use crate::registry::Connection;
use crate::transport::{FilterScratch, LenientOutcome, LenientStart};

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

/// Most probes of a start that could not replay everything (each a replay bounded by the cap,
/// over a range twice the last one's): at most `2^LENIENT_PROBES` times the event cap of
/// retained events are read, and never more than twice the retained window.
const LENIENT_PROBES: u32 = 12;

/// Starts the stream of `conn` (registered with its outbox held at `position`) from `start`,
/// for protocols without a `reset` event.
///
/// When the broker can give everything after the start within `cap`, it is queued
/// ([`LenientOutcome::Complete`]). Otherwise (the position is unknown or too old, or more than
/// the cap follows it) the stream sends what it can: the newest events that fit within the
/// cap, found by probing back from the head over doubling ranges (`head - e`, `head - 2e`, … for
/// an event cap `e`, at most [`LENIENT_PROBES`] probes, none before the position asked for or the
/// oldest retained event), each probe a replay the broker bounds by the cap as any resume. The
/// replay of the widest probe that fit is sent from its second event on, and the first, the
/// newest event before what is sent that the connection would have received, is the outcome
/// ([`LenientOutcome::After`]): the protocol names it to the client. When the widest probe read
/// everything retained (an unknown position), all of it is sent
/// ([`LenientOutcome::FromOldest`]). With nothing to send, the stream starts live
/// ([`LenientOutcome::Live`]).
///
/// The cap counts what the broker's replay counts: every retained event the connection's
/// targets select (for a connection on a channel every update targets, all of them), before
/// the connection's filter. `Earliest` is every retained event. `AfterMatching` is found among
/// the probes' events: once found, what follows it is sent whole.
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
) -> Result<LenientOutcome> {
    let filter = ReplayFilter {
        user: conn.user.clone(),
        channels: conn.channels.clone(),
    };
    let oldest = broker.oldest().await?.map(|oldest| EventId {
        epoch: oldest.epoch,
        seq: oldest.seq.saturating_sub(1),
    });
    let release = |events: &[Arc<Event>], head: EventId| {
        let format = conn.format;
        conn.outbox
            .release(events.iter().map(|e| e.encoded(format)), head.seq);
    };
    let live = |conn: &Connection| {
        // As a fresh client (see `start`).
        let floor = match position {
            Some(position) => position.seq,
            None => 0,
        };
        conn.outbox.release([], floor);
    };
    // The exact start first: after the id, or after everything retained.
    let (exact, picks) = match &start {
        LenientStart::After(id) => (Some(*id), None),
        LenientStart::Earliest => (oldest, None),
        LenientStart::AfterMatching(picks) => (None, Some(picks.clone())),
    };
    // How far back the probes may go: not before the position asked for (when it is known
    // and retained), nor before the oldest retained event.
    let mut floor = oldest;
    if let Some(after) = exact {
        match broker.replay(after, &filter, cap).await? {
            Replay::Events { events, head } => {
                let events = filtered(conn, events);
                metrics.resumed(events.len());
                release(&events, head);
                return Ok(LenientOutcome::Complete);
            }
            Replay::Reset {
                reason: ResetReason::ReplayTooLarge,
                ..
            } => floor = Some(after),
            Replay::Reset { .. } => {}
        }
    } else if picks.is_none() || oldest.is_none() {
        // `Earliest` with nothing retained: everything there is (nothing) is sent.
        live(conn);
        return Ok(if picks.is_none() {
            LenientOutcome::Complete
        } else {
            LenientOutcome::Live
        });
    }
    let Some(floor) = floor else {
        // Nothing retained.
        live(conn);
        return Ok(LenientOutcome::Live);
    };
    let head = broker.head().await?;
    if head.epoch != floor.epoch || head.seq <= floor.seq {
        live(conn);
        return Ok(LenientOutcome::Live);
    }
    let step = (cap.max_events.max(1) as u64).min(head.seq - floor.seq);
    // The replay of the widest probe that fit, its head, and whether it read everything
    // retained.
    let mut best: Option<(Vec<Arc<Event>>, EventId, bool)> = None;
    let mut span = step;
    for _ in 0..LENIENT_PROBES {
        let from_seq = head.seq.saturating_sub(span).max(floor.seq);
        let last = from_seq == floor.seq;
        // The floor itself is known not to fit when the exact start was too large.
        if last && exact == Some(floor) {
            break;
        }
        let from = EventId {
            epoch: head.epoch,
            seq: from_seq,
        };
        match broker.replay(from, &filter, cap).await? {
            Replay::Events { events, head } => {
                let events = filtered(conn, events);
                if let Some(picks) = &picks {
                    if let Some(at) = events.iter().rposition(|e| picks(e)) {
                        let rest = &events[at + 1..];
                        metrics.resumed(rest.len());
                        release(rest, head);
                        return Ok(LenientOutcome::Complete);
                    }
                }
                best = Some((events, head, from == floor && Some(floor) == oldest));
            }
            // Too large, or the window moved: the last probe that fit is the answer.
            Replay::Reset { .. } => break,
        }
        if last {
            break;
        }
        span = span.saturating_mul(2);
    }
    metrics.reset();
    match best {
        Some((events, head, true)) if !events.is_empty() => {
            metrics.resumed(events.len());
            release(&events, head);
            Ok(LenientOutcome::FromOldest)
        }
        Some((events, head, _)) if !events.is_empty() => {
            let rest = &events[1..];
            metrics.resumed(rest.len());
            release(rest, head);
            Ok(LenientOutcome::After(events[0].clone()))
        }
        _ => {
            live(conn);
            Ok(LenientOutcome::Live)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Command, Delivery, MemoryBroker, Publication, Published};
    use crate::config::HubConfig;
    use crate::engine::{EngineError, EngineHealth};
    use crate::history::HistoryStats;
    use crate::lifecycle::Lifecycle;
    use crate::presence::MemoryPresence;
    use crate::target::{ChannelName, Fallback, Target, Targets};
    use crate::{ConnectRequest, Engine, Hub, Payload};
    use async_trait::async_trait;
    use parking_lot::Mutex;

    /// The memory broker, with the start of every replay asked of it.
    #[derive(Debug)]
    struct Recording {
        inner: MemoryBroker,
        replays: Mutex<Vec<EventId>>,
    }

    #[async_trait]
    impl Broker for Recording {
        fn start(&self, delivery: Arc<dyn Delivery>, lifecycle: &Lifecycle) {
            self.inner.start(delivery, lifecycle)
        }
        async fn publish(&self, publication: Publication) -> Result<Published, EngineError> {
            self.inner.publish(publication).await
        }
        async fn command(&self, command: Command) -> Result<usize, EngineError> {
            self.inner.command(command).await
        }
        async fn head(&self) -> Result<EventId, EngineError> {
            self.inner.head().await
        }
        async fn replay(
            &self,
            after: EventId,
            filter: &ReplayFilter,
            cap: ReplayCap,
        ) -> Result<Replay, EngineError> {
            self.replays.lock().push(after);
            self.inner.replay(after, filter, cap).await
        }
        fn history_stats(&self) -> Option<HistoryStats> {
            self.inner.history_stats()
        }
        async fn oldest(&self) -> Result<Option<EventId>, EngineError> {
            self.inner.oldest().await
        }
        fn health(&self) -> EngineHealth {
            self.inner.health()
        }
        async fn shutdown(&self) {
            self.inner.shutdown().await
        }
    }

    /// A hub with a replay cap of `cap` and `events` retained events: every `every`-th on
    /// channel `c`, the others on `other`.
    async fn hub(cap: usize, events: u64, every: u64) -> (Hub, Arc<Recording>, Lifecycle) {
        let mut config = HubConfig {
            max_replay_events: cap,
            ..HubConfig::default()
        };
        config.history.max_events = events as usize + 10;
        let broker = Arc::new(Recording {
            inner: MemoryBroker::new(config.history),
            replays: Mutex::new(Vec::new()),
        });
        let lifecycle = Lifecycle::new();
        let engine = Engine::new(broker.clone(), Arc::new(MemoryPresence::new()));
        let hub = Hub::start(config, engine, &lifecycle);
        for n in 1..=events {
            let channel = if n % every == 0 { "c" } else { "other" };
            hub.publish(Publication {
                name: EventName::new("n").unwrap(),
                payload: Payload::text(n.to_string()),
                targets: Targets::new(
                    vec![Target::Channel(ChannelName::new(channel).unwrap())],
                    Fallback::None,
                )
                .unwrap(),
                idempotency: None,
            })
            .await
            .unwrap();
        }
        broker.replays.lock().clear();
        (hub, broker, lifecycle)
    }

    fn on_c(start: LenientStart) -> ConnectRequest {
        ConnectRequest {
            channels: vec![ChannelName::new("c").unwrap()],
            lenient_start: Some(start),
            ..ConnectRequest::default()
        }
    }

    fn seq_of(outcome: Option<&LenientOutcome>) -> Option<u64> {
        match outcome {
            Some(LenientOutcome::After(e)) => Some(e.id.seq),
            _ => None,
        }
    }

    #[tokio::test]
    async fn beyond_the_cap_the_newest_events_that_fit_are_sent_after_a_bounded_search() {
        // Every event on `c`: a resume from the start is 5000 events, the cap 10.
        let (hub, broker, _lifecycle) = hub(10, 5000, 1).await;
        let head = broker.head().await.unwrap();
        let after = |seq| EventId {
            epoch: head.epoch,
            seq,
        };
        let stream = hub
            .connect(on_c(LenientStart::After(after(1))))
            .await
            .unwrap();
        // The exact replay, then the probe of the last 10 (fits) and of the last 20 (does not):
        // the stream stands at the first of the last 10 and sends the 9 after it.
        assert_eq!(seq_of(stream.lenient_outcome()), Some(head.seq - 9));
        let probes = broker.replays.lock().clone();
        assert_eq!(
            probes,
            [after(1), after(head.seq - 10), after(head.seq - 20)]
        );
        drop(stream);
        // An id that is never found: the probes double until one does not fit, never more.
        broker.replays.lock().clear();
        let never = LenientStart::AfterMatching(Arc::new(|_| false));
        let stream = hub.connect(on_c(never)).await.unwrap();
        assert_eq!(seq_of(stream.lenient_outcome()), Some(head.seq - 9));
        assert_eq!(broker.replays.lock().len(), 2);
        drop(stream);
        // Within the cap: everything, one replay.
        broker.replays.lock().clear();
        let stream = hub
            .connect(on_c(LenientStart::After(after(head.seq - 10))))
            .await
            .unwrap();
        assert!(matches!(
            stream.lenient_outcome(),
            Some(LenientOutcome::Complete)
        ));
        assert_eq!(broker.replays.lock().len(), 1);
    }

    #[tokio::test]
    async fn sparse_matches_are_searched_within_the_probe_budget() {
        // One event in 1000 on `c`, 20 000 retained, the cap 2: the probes widen (each reading
        // what the cap allows of `c`'s events) up to the retained window, at most
        // LENIENT_PROBES of them, reading in all less than twice the window.
        let (hub, broker, _lifecycle) = hub(2, 20_000, 1000).await;
        let head = broker.head().await.unwrap();
        let never = LenientStart::AfterMatching(Arc::new(|_| false));
        let stream = hub.connect(on_c(never)).await.unwrap();
        let probes = broker.replays.lock().clone();
        assert!(probes.len() as u32 <= LENIENT_PROBES, "{probes:?}");
        let read: u64 = probes.iter().map(|p| head.seq - p.seq).sum();
        assert!(read < 2 * 20_000, "{read} entries read");
        // The two newest events of `c` fit: the stream stands at the older of them.
        assert_eq!(seq_of(stream.lenient_outcome()), Some(19_000));
    }
}
