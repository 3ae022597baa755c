//! Brokers: how events travel between the nodes of a hub: their ids, the replay window, and
//! commands every node carries out.
//!
//! A [`Broker`] takes every publication of this node, gives it its id, retains it, and hands it,
//! on every node, to that node's [`Delivery`] (its registry of live connections). The memory
//! broker ([`MemoryBroker`]) does this within one process; the Redis broker ([`RedisBroker`])
//! across processes with the same trait, so the hub core never knows which one runs. Both send
//! events back through the same `Delivery` path, so there is one delivery path for one node or
//! many. Who is connected where is the presence store's part ([`crate::presence`]); an
//! [`Engine`](crate::engine::Engine) pairs a broker with the presence store of its backend.
//!
//! | File | What |
//! |---|---|
//! | `mod.rs` | the [`Broker`] and [`Delivery`] traits, [`Publication`], [`Published`], [`Command`] |
//! | `memory.rs` | [`MemoryBroker`]: one process, the replay window in memory (or on disk) |
//! | `durable.rs` | [`DurableHistory`]: the memory broker's replay window on disk |
//! | `redis/` | [`RedisBroker`]: one Redis stream carries every event to every node; the link to Redis (connections, supervisor, keys, scripts) that it shares with [`RedisPresence`](crate::presence::RedisPresence) |

pub mod durable;
mod memory;
pub(crate) mod redis;

pub use self::redis::{RedisBroker, RedisOptions};
pub use durable::DurableHistory;
pub use memory::MemoryBroker;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::{EngineError, EngineHealth};
use crate::event::{Event, EventId, EventName, Payload};
use crate::history::{HistoryStats, Replay, ReplayCap, ReplayFilter};
use crate::idempotency::IdempotencyKey;
use crate::lifecycle::Lifecycle;
use crate::metrics::DisconnectReason;
use crate::target::{ConnectionId, Targets, UserId};

/// An event on its way in: everything but its id, which the broker assigns.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The event name.
    pub name: EventName,
    /// The payload.
    pub payload: Payload,
    /// Who gets it.
    pub targets: Targets,
    /// Publish at most once per key within the broker's idempotency window (a retry with the
    /// same key answers the first result again).
    pub idempotency: Option<IdempotencyKey>,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The id the event got.
    pub id: EventId,
    /// How many connections it was queued to.
    pub delivered: usize,
    /// True when this is the remembered answer of an earlier publish with the same
    /// idempotency key: nothing was published this time.
    pub replayed: bool,
}

/// A command every node carries out on its own connections.
#[derive(Debug, Clone)]
pub enum Command {
    /// Close the connections of these users and these connection ids.
    Disconnect {
        /// Users whose connections end.
        users: Vec<UserId>,
        /// Connections that end.
        connections: Vec<ConnectionId>,
        /// Reason given to the clients.
        reason: DisconnectReason,
    },
    /// Close every connection.
    DisconnectAll {
        /// Reason given to the clients.
        reason: DisconnectReason,
    },
}

/// What delivering one event on one node did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Connections the event was queued to.
    pub delivered: usize,
    /// True when the targets matched nobody and `fallback: broadcast` sent it to everyone.
    pub fell_back: bool,
}

/// The receiving end of a broker on one node: its live connections.
pub trait Delivery: Send + Sync + fmt::Debug {
    /// Queues `event` to the local connections `targets` selects (each connection gets it in
    /// its own wire format, encoded once per format).
    fn deliver(&self, event: &Arc<Event>, targets: &Targets) -> DeliveryReport;
    /// Carries out `command` on local connections; returns how many it affected.
    fn apply(&self, command: &Command) -> usize;

    /// True when this node cannot take more events right now (its fan-out is far behind);
    /// brokers then refuse publishes with [`EngineError::Overloaded`] instead of queueing
    /// without bound.
    fn is_overloaded(&self) -> bool {
        false
    }
}

/// Carries events and commands between the nodes of a hub.
///
/// Implementations must deliver the events of one publisher in the order they were published,
/// and give every event an id that orders it after every event published before it.
#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug {
    /// Connects the broker to this node's connections and starts its background work (the
    /// Redis supervisor, the durable history's writer), each task spawned on `lifecycle` and
    /// ending when its token is cancelled. Called once, by [`Hub::start`](crate::Hub::start),
    /// before any publish; a second call does nothing (one broker serves one hub). Constructors
    /// spawn nothing: a broker that was never started has no background work to stop.
    fn start(&self, delivery: Arc<dyn Delivery>, lifecycle: &Lifecycle);

    /// Assigns `publication` its id and delivers it to the targeted connections of every node.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the event could not be published at all; the caller
    /// must report it rather than pretend it was sent.
    async fn publish(&self, publication: Publication) -> Result<Published, EngineError>;

    /// Publishes several events, in order, each with its own outcome (as [`Broker::publish`]
    /// would give it). The default publishes them one by one; a broker that can do better (one
    /// lock, one round trip) does.
    async fn publish_batch(
        &self,
        publications: Vec<Publication>,
    ) -> Vec<Result<Published, EngineError>> {
        let mut results = Vec::with_capacity(publications.len());
        for publication in publications {
            results.push(self.publish(publication).await);
        }
        results
    }

    /// [`Broker::publish`], remembering that `key` (an id the publisher chose, such as a
    /// Mercure update's) names the event while it is retained, for [`Broker::find_key`]. A
    /// later event with the same key takes it over. The default remembers nothing.
    ///
    /// # Errors
    /// As [`Broker::publish`].
    async fn publish_keyed(
        &self,
        publication: Publication,
        _key: &str,
    ) -> Result<Published, EngineError> {
        self.publish(publication).await
    }

    /// The retained event `key` names ([`Broker::publish_keyed`]), in one lookup: `None` when
    /// the broker does not know it (never given, trimmed, or a broker that remembers no keys).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the broker cannot look.
    async fn find_key(&self, _key: &str) -> Result<Option<EventId>, EngineError> {
        Ok(None)
    }

    /// Runs `command` on every node; returns how many connections it affected on this node and
    /// (where the broker knows) the others.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the command could not reach the other nodes.
    async fn command(&self, command: Command) -> Result<usize, EngineError>;

    /// The newest event id: where a client that connects now starts from.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the broker cannot tell.
    async fn head(&self) -> Result<EventId, EngineError>;

    /// The retained events after `after` that a connection described by `filter` would have
    /// received live, oldest first, or why it cannot resume. More than `cap` allows is
    /// [`Replay::Reset`] with [`ResetReason::ReplayTooLarge`](crate::history::ResetReason::ReplayTooLarge).
    /// Brokers read their history in bounded pages (never the whole window in one step), so a
    /// resume neither stalls publishers nor copies more than `cap` plus one page.
    ///
    /// For a resume without gaps or duplicates, a broker must retain an event before it hands
    /// it to any node's [`Delivery`]: the hub registers a resuming connection (holding its live
    /// events) before it calls `replay`, then drops held events the replay already covered.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the history cannot be read.
    async fn replay(
        &self,
        after: EventId,
        filter: &ReplayFilter,
        cap: ReplayCap,
    ) -> Result<Replay, EngineError>;

    /// Figures of the replay window, if the broker keeps one.
    fn history_stats(&self) -> Option<HistoryStats>;

    /// The oldest retained event, as of now (`None`: nothing is retained): a replay after the
    /// event before it gives everything retained (a Mercure `earliest`). The default reads
    /// [`Broker::history_stats`]; a broker whose figures can lag behind reads its history.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the history cannot be read.
    async fn oldest(&self) -> Result<Option<EventId>, EngineError> {
        Ok(self
            .history_stats()
            .and_then(|s| s.oldest_id)
            .and_then(|id| id.parse().ok()))
    }

    /// Whether the broker works right now (for `/readyz`).
    fn health(&self) -> EngineHealth;

    /// Adds the broker's own metrics to the hub's registry. Called once, by the hub, at start.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Stops background work (awaiting the tasks [`Broker::start`] spawned) and releases what
    /// the broker holds. Called once, by the hub, at shutdown, after the hub's own loops have
    /// stopped and the presence store has shut down.
    async fn shutdown(&self);
}
