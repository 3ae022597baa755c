//! The in-memory engine: one process, no setup; the default. Optionally keeps its replay window
//! on disk ([`DurableHistory`]) so that a restarted hub can still resume its clients.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::durable::DurableHistory;
use super::{Command, Delivery, Engine, EngineError, EngineHealth, Publication, Published};
use crate::event::{Epoch, EventId};
use crate::history::{
    HistoryEntry, HistoryLimits, HistoryStats, Replay, ReplayBuffer, ReplayFilter,
};
use crate::sse::frame;

/// Publishes within this process: ids are `<epoch>-<n>` with `n` counting up from 1.
///
/// One mutex covers "assign the id, deliver, retain": events reach every connection in id order
/// even when several publishers race, and a resume reads a window consistent with live delivery.
/// The section never waits (delivery only queues frames; the durable store writes behind, and
/// when it is too far behind the publish is refused before it takes an id).
#[derive(Debug)]
pub struct MemoryEngine {
    window: Mutex<ReplayBuffer>,
    durable: Option<DurableHistory>,
    delivery: OnceLock<Arc<dyn Delivery>>,
}

impl MemoryEngine {
    /// A fresh engine with a random epoch and an in-memory window with these limits.
    pub fn new(limits: HistoryLimits) -> Self {
        MemoryEngine {
            window: Mutex::new(ReplayBuffer::new(Epoch::random(), limits, 0)),
            durable: None,
            delivery: OnceLock::new(),
        }
    }

    /// An engine whose window is also written to `durable` and was restored from it.
    pub fn with_durable_history(window: ReplayBuffer, durable: DurableHistory) -> Self {
        MemoryEngine {
            window: Mutex::new(window),
            durable: Some(durable),
            delivery: OnceLock::new(),
        }
    }

    /// The epoch of this engine's event ids.
    pub fn epoch(&self) -> Epoch {
        self.window.lock().epoch()
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    fn attach(&self, delivery: Arc<dyn Delivery>) {
        // A second attach keeps the first delivery: one engine serves one hub.
        let _ = self.delivery.set(delivery);
    }

    async fn publish(&self, publication: Publication) -> Result<Published, EngineError> {
        let delivery = self.delivery.get().ok_or(EngineError::NotRunning)?;
        if delivery.is_overloaded() {
            return Err(EngineError::Overloaded);
        }
        let mut window = self.window.lock();
        if let Some(durable) = &self.durable {
            // Refuses (never waits) when the disk is far behind, before the id is taken.
            durable.admit(window.head().seq + 1)?;
        }
        let id = window.next_id();
        let bytes = frame::encode_event(Some(&id), &publication.name, publication.payload.as_str());
        let report = delivery.deliver(id, &bytes, &publication.targets);
        let entry = HistoryEntry {
            seq: id.seq,
            published_at: SystemTime::now(),
            targets: publication.targets,
            fell_back: report.fell_back,
            frame: bytes,
        };
        if let Some(durable) = &self.durable {
            durable.append(&entry);
        }
        window.push(entry);
        drop(window);
        Ok(Published {
            id,
            delivered: report.delivered,
        })
    }

    async fn command(&self, command: Command) -> Result<usize, EngineError> {
        let delivery = self.delivery.get().ok_or(EngineError::NotRunning)?;
        Ok(delivery.apply(&command))
    }

    async fn head(&self) -> Result<EventId, EngineError> {
        Ok(self.window.lock().head())
    }

    async fn replay(&self, after: EventId, filter: &ReplayFilter) -> Result<Replay, EngineError> {
        let mut window = self.window.lock();
        window.evict(SystemTime::now());
        Ok(window.replay(after, filter))
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
