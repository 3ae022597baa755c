//! The engine a hub runs on: a [`Broker`] (how events, ids, history and commands travel between
//! nodes) and a [`PresenceStore`] (who is connected where), of the same backend. The
//! configuration's `engine` setting names it: `memory` (one process; [`MemoryBroker`] and
//! [`MemoryPresence`]) or a Redis URL (a cluster; [`RedisBroker`] and [`RedisPresence`] on one
//! shared link to Redis).
//!
//! The hub holds the two halves side by side and never asks which backend they are: publishing,
//! replay and commands go through the broker, stats, presence queries and presence events
//! through the presence store, the same calls on one node and on many.
//!
//! [`MemoryBroker`]: crate::broker::MemoryBroker
//! [`RedisBroker`]: crate::broker::RedisBroker
//! [`MemoryPresence`]: crate::presence::MemoryPresence
//! [`RedisPresence`]: crate::presence::RedisPresence

use std::sync::Arc;

use crate::broker::{Broker, RedisBroker, RedisOptions};
use crate::presence::PresenceStore;

/// A broker and the presence store of the same backend, as a hub runs on them. Cheap to clone
/// (two `Arc`s).
#[derive(Debug, Clone)]
pub struct Engine {
    broker: Arc<dyn Broker>,
    presence: Arc<dyn PresenceStore>,
}

impl Engine {
    /// Pairs `broker` with `presence`. They must be of the same backend: a Redis broker counts
    /// `delivered` and decides `fallback: broadcast` from what the Redis presence store writes,
    /// and the memory presence store publishes presence events through whatever broker it is
    /// given. [`Engine::redis`] pairs the Redis ones.
    pub fn new(broker: Arc<dyn Broker>, presence: Arc<dyn PresenceStore>) -> Self {
        Engine { broker, presence }
    }

    /// Connects to Redis (see [`RedisBroker::connect`]) and pairs its broker with the presence
    /// store on the same link ([`RedisBroker::presence`]).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the options are invalid or Redis cannot be reached.
    pub async fn redis(options: RedisOptions) -> Result<Self, EngineError> {
        let broker = RedisBroker::connect(options).await?;
        let presence = broker.presence();
        Ok(Engine::new(Arc::new(broker), Arc::new(presence)))
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// The presence store.
    pub fn presence(&self) -> &Arc<dyn PresenceStore> {
        &self.presence
    }

    pub(crate) fn into_parts(self) -> (Arc<dyn Broker>, Arc<dyn PresenceStore>) {
        (self.broker, self.presence)
    }
}

/// Failures of an engine (its broker or its presence store).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot reach its backend (Redis down, say): nothing was published, for
    /// certain. Safe to retry.
    #[error("the engine is unavailable: {0}")]
    Unavailable(String),
    /// The request reached the backend but its answer did not come back (a timeout or a
    /// connection lost after sending): the event may or may not have been published. Retry
    /// only with the same idempotency key.
    #[error("the outcome of the publish is unknown: {0}")]
    OutcomeUnknown(String),
    /// The idempotency key was already used, within the window, for a different event.
    #[error("the idempotency key was already used for a different event")]
    IdempotencyKeyReused,
    /// This node's fan-out is too far behind to accept more events now; retry shortly.
    #[error("the hub is overloaded; retry shortly")]
    Overloaded,
    /// The engine was used before it was started ([`Broker::start`],
    /// [`PresenceStore::start`]) or after shutdown.
    #[error("the engine is not running")]
    NotRunning,
}

/// Whether the engine can do its work right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineHealth {
    /// Working.
    Ok,
    /// Not able to publish or receive (for example, Redis is unreachable); the text says why.
    Degraded(String),
}
