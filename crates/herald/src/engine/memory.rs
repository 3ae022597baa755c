//! The in-memory engine: one process, no setup; the default.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Command, Delivery, Engine, EngineError, EngineHealth, Publication, Published};
use crate::event::{Epoch, Event, EventId};

/// Publishes within this process: ids are `<epoch>-<n>` with `n` counting up from 1.
///
/// A mutex covers "assign the id, then deliver", so events reach every connection in id order
/// even when several publishers race; the section never waits (delivery only queues frames).
#[derive(Debug)]
pub struct MemoryEngine {
    epoch: Epoch,
    next_seq: Mutex<u64>,
    delivery: OnceLock<Arc<dyn Delivery>>,
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// A fresh engine with a random epoch.
    pub fn new() -> Self {
        MemoryEngine {
            epoch: Epoch::random(),
            next_seq: Mutex::new(1),
            delivery: OnceLock::new(),
        }
    }

    /// The epoch of this engine's event ids.
    pub fn epoch(&self) -> Epoch {
        self.epoch
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
        let mut next = self.next_seq.lock();
        let id = EventId {
            epoch: self.epoch,
            seq: *next,
        };
        *next += 1;
        let event = Event {
            id,
            name: publication.name,
            payload: publication.payload,
        };
        let delivered = delivery.deliver(&event, &publication.targets);
        drop(next);
        Ok(Published { id, delivered })
    }

    async fn command(&self, command: Command) -> Result<usize, EngineError> {
        let delivery = self.delivery.get().ok_or(EngineError::NotRunning)?;
        Ok(delivery.apply(&command))
    }

    fn health(&self) -> EngineHealth {
        EngineHealth::Ok
    }

    async fn shutdown(&self) {}
}
