//! The memory broker: one process, no setup; the default. Optionally keeps its replay window on
//! disk ([`DurableHistory`]) so that a restarted hub can still resume its clients.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::durable::DurableHistory;
use super::{Broker, Command, Delivery, Publication, Published};
use crate::engine::{EngineError, EngineHealth};
use crate::event::{Epoch, Event, EventId};
use crate::history::{
    HistoryEntry, HistoryLimits, HistoryStats, Replay, ReplayBuffer, ReplayCap, ReplayCollector,
    ReplayFilter, ResetReason,
};
use crate::idempotency::{self, IdempotencyCache, IdempotencyLimits, Seen};
use crate::lifecycle::Lifecycle;

/// Publishes within this process: ids are `<epoch>-<n>` with `n` counting up from 1.
///
/// One mutex covers "assign the id, deliver, retain": events reach every connection in id order
/// even when several publishers race, and a resume reads a window consistent with live delivery.
/// The section never waits (delivery only queues frames; the durable store writes behind, and
/// when it is too far behind the publish is refused before it takes an id). A resume holds the
/// lock only to copy a chunk of [`REPLAY_CHUNK`] entry pointers at a time, and filters them
/// outside it, so a long replay never stalls publishers.
#[derive(Debug)]
pub struct MemoryBroker {
    window: Mutex<ReplayBuffer>,
    durable: Option<DurableHistory>,
    delivery: OnceLock<Arc<dyn Delivery>>,
    /// Idempotency keys seen within their window; locked inside `window`'s lock, so that
    /// "seen?" and "assign the id" are one step.
    idempotency: Mutex<IdempotencyCache>,
}

impl MemoryBroker {
    /// A fresh broker with a random epoch and an in-memory window with these limits.
    pub fn new(limits: HistoryLimits) -> Self {
        MemoryBroker {
            window: Mutex::new(ReplayBuffer::new(Epoch::random(), limits, 0)),
            durable: None,
            delivery: OnceLock::new(),
            idempotency: Mutex::new(IdempotencyCache::new(IdempotencyLimits::default())),
        }
    }

    /// A broker whose window is also written to `durable` and was restored from it.
    pub fn with_durable_history(window: ReplayBuffer, durable: DurableHistory) -> Self {
        MemoryBroker {
            window: Mutex::new(window),
            durable: Some(durable),
            delivery: OnceLock::new(),
            idempotency: Mutex::new(IdempotencyCache::new(IdempotencyLimits::default())),
        }
    }

    /// Remembers idempotency keys within `limits` (default: 10 minutes, 100,000 keys).
    #[must_use]
    pub fn with_idempotency(self, limits: IdempotencyLimits) -> Self {
        *self.idempotency.lock() = IdempotencyCache::new(limits);
        self
    }

    /// The epoch of this broker's event ids.
    pub fn epoch(&self) -> Epoch {
        self.window.lock().epoch()
    }
}

/// The idempotency fingerprint of a publication that has a key (hashed outside the lock).
fn fingerprint_of(publication: &Publication) -> Option<String> {
    publication
        .idempotency
        .as_ref()
        .map(|_| idempotency::fingerprint(publication))
}

impl MemoryBroker {
    /// Assigns the id, delivers and retains, under the window's lock: the one section that
    /// orders every event.
    fn publish_locked(
        &self,
        window: &mut ReplayBuffer,
        delivery: &dyn Delivery,
        publication: Publication,
        fingerprint: Option<String>,
    ) -> Result<Published, EngineError> {
        let mut seen = publication.idempotency.as_ref().map(|key| {
            let fp = fingerprint.unwrap_or_default();
            let mut cache = self.idempotency.lock();
            let found = cache.check(key, &fp, Instant::now());
            (cache, key.clone(), fp, found)
        });
        match seen.as_ref().map(|(_, _, _, found)| found) {
            Some(Seen::Published(first)) => return Ok(*first),
            Some(Seen::Reused) => return Err(EngineError::IdempotencyKeyReused),
            Some(Seen::New) | None => {}
        }
        if let Some(durable) = &self.durable {
            // Refuses (never waits) when the disk is far behind, before the id is taken.
            durable.admit(window.head().seq + 1)?;
        }
        let id = window.next_id();
        let event = Arc::new(Event::new(id, publication.name, publication.payload));
        let report = delivery.deliver(&event, &publication.targets);
        let retained = crate::history::is_retained(&event.name);
        let entry = HistoryEntry {
            seq: id.seq,
            published_at: SystemTime::now(),
            targets: publication.targets,
            fell_back: report.fell_back,
            event,
        };
        if let Some(durable) = &self.durable {
            durable.append(&entry);
        }
        if retained {
            window.push(entry);
        }
        let published = Published {
            id,
            delivered: report.delivered,
            replayed: false,
        };
        if let Some((mut cache, key, fp, _)) = seen.take() {
            cache.remember(key, fp, published, Instant::now());
        }
        Ok(published)
    }
}

/// Most events of a batch published per hold of the broker's lock.
const BATCH_CHUNK: usize = 64;

/// Most window entries a resume copies (as pointers) per hold of the broker's lock.
const REPLAY_CHUNK: usize = 256;

#[async_trait]
impl Broker for MemoryBroker {
    fn start(&self, delivery: Arc<dyn Delivery>, lifecycle: &Lifecycle) {
        // A second start keeps the first delivery: one broker serves one hub.
        if self.delivery.set(delivery).is_err() {
            return;
        }
        if let Some(durable) = &self.durable {
            durable.start(lifecycle);
        }
    }

    async fn publish(&self, publication: Publication) -> Result<Published, EngineError> {
        let delivery = self.delivery.get().ok_or(EngineError::NotRunning)?;
        if delivery.is_overloaded() {
            return Err(EngineError::Overloaded);
        }
        // Hashed before taking the lock: the body can be 64 KiB.
        let fingerprint = fingerprint_of(&publication);
        // The sends to idle connections' sockets happen after the lock is released.
        crate::registry::deferring(|| {
            let mut window = self.window.lock();
            self.publish_locked(&mut window, delivery.as_ref(), publication, fingerprint)
        })
    }

    async fn publish_batch(
        &self,
        publications: Vec<Publication>,
    ) -> Vec<Result<Published, EngineError>> {
        let Some(delivery) = self.delivery.get() else {
            return publications
                .iter()
                .map(|_| Err(EngineError::NotRunning))
                .collect();
        };
        let mut results = Vec::with_capacity(publications.len());
        // Hashed before taking the lock (bodies can be 64 KiB each).
        let items: Vec<_> = publications
            .into_iter()
            .map(|p| {
                let fingerprint = fingerprint_of(&p);
                (p, fingerprint)
            })
            .collect();
        let mut items = items.into_iter();
        loop {
            // A chunk per hold of the lock, so that other publishers get their turn. Queued,
            // not written directly: a batch's events then go out the way a burst does, several
            // to a write where they share a connection, from the connections' own tasks.
            let more = crate::registry::queueing(|| {
                let mut window = self.window.lock();
                let mut taken = 0;
                for (publication, fingerprint) in items.by_ref() {
                    results.push(if delivery.is_overloaded() {
                        Err(EngineError::Overloaded)
                    } else {
                        self.publish_locked(
                            &mut window,
                            delivery.as_ref(),
                            publication,
                            fingerprint,
                        )
                    });
                    taken += 1;
                    if taken == BATCH_CHUNK {
                        return true;
                    }
                }
                false
            });
            if !more {
                return results;
            }
            tokio::task::yield_now().await;
        }
    }

    async fn command(&self, command: Command) -> Result<usize, EngineError> {
        let delivery = self.delivery.get().ok_or(EngineError::NotRunning)?;
        Ok(delivery.apply(&command))
    }

    async fn head(&self) -> Result<EventId, EngineError> {
        Ok(self.window.lock().head())
    }

    async fn replay(
        &self,
        after: EventId,
        filter: &ReplayFilter,
        cap: ReplayCap,
    ) -> Result<Replay, EngineError> {
        let mut cursor = {
            let mut window = self.window.lock();
            window.evict(SystemTime::now());
            match window.replay_start(after) {
                Ok(cursor) => cursor,
                Err(reset) => return Ok(reset),
            }
        };
        let head = cursor.head;
        let mut collected = ReplayCollector::new(cap);
        let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
        loop {
            chunk.clear();
            let done =
                self.window
                    .lock()
                    .replay_chunk(&mut cursor, REPLAY_CHUNK, filter, &mut chunk);
            let Some(done) = done else {
                // The window moved past events this replay had not read yet.
                return Ok(Replay::Reset {
                    reason: ResetReason::HistoryGap,
                    head,
                });
            };
            for event in chunk.drain(..) {
                if !collected.push(event) {
                    return Ok(Replay::Reset {
                        reason: ResetReason::ReplayTooLarge,
                        head,
                    });
                }
            }
            if done {
                return Ok(Replay::Events {
                    events: collected.into_events(),
                    head,
                });
            }
            // Let publishers and other tasks of this runtime thread run between chunks.
            tokio::task::yield_now().await;
        }
    }

    fn history_stats(&self) -> Option<HistoryStats> {
        let mut window = self.window.lock();
        window.evict(SystemTime::now());
        let mut stats = window.stats();
        stats.durable = self.durable.is_some();
        Some(stats)
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        if let Some(durable) = &self.durable {
            durable.register_metrics(registry);
        }
    }

    fn health(&self) -> EngineHealth {
        match &self.durable {
            Some(d) => d.health(),
            None => EngineHealth::Ok,
        }
    }

    async fn shutdown(&self) {
        if let Some(durable) = &self.durable {
            durable.close().await;
        }
    }
}
