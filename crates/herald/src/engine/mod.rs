//! Engines: how events travel between the nodes of a hub, and (later) where their history lives.
//!
//! An [`Engine`] takes every publication of this node, gives it its id, and hands it, on every
//! node, to that node's [`Delivery`] (its registry of live connections). The in-memory engine
//! ([`MemoryEngine`]) does this within one process; a Redis engine does it across processes with
//! the same trait, so the hub core never knows which one runs. Both send events back through
//! the same `Delivery` path, so there is one delivery path for one node or many.

pub mod durable;
mod memory;

pub use durable::DurableHistory;
pub use memory::MemoryEngine;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use bytes::Bytes;

use crate::event::{EventId, EventName, Payload};
use crate::history::{HistoryStats, Replay, ReplayFilter};
use crate::metrics::DisconnectReason;
use crate::target::{ConnectionId, Targets, UserId};

/// An event on its way in: everything but its id, which the engine assigns.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The event name.
    pub name: EventName,
    /// The payload.
    pub payload: Payload,
    /// Who gets it.
    pub targets: Targets,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The id the event got.
    pub id: EventId,
    /// How many connections it was queued to.
    pub delivered: usize,
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

/// The receiving end of an engine on one node: its live connections.
pub trait Delivery: Send + Sync + fmt::Debug {
    /// Queues the encoded event `frame` (id `id`) to the local connections `targets` selects.
    fn deliver(&self, id: EventId, frame: &Bytes, targets: &Targets) -> DeliveryReport;
    /// Carries out `command` on local connections; returns how many it affected.
    fn apply(&self, command: &Command) -> usize;

    /// True when this node cannot take more events right now (its fan-out is far behind);
    /// engines then refuse publishes with [`EngineError::Overloaded`] instead of queueing
    /// without bound.
    fn is_overloaded(&self) -> bool {
        false
    }
}

/// Failures of an engine.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot reach its backend (Redis down, say): nothing was published.
    #[error("the engine is unavailable: {0}")]
    Unavailable(String),
    /// This node's fan-out is too far behind to accept more events now; retry shortly.
    #[error("the hub is overloaded; retry shortly")]
    Overloaded,
    /// The engine was used before [`Engine::attach`] or after shutdown.
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

/// Carries events and commands between the nodes of a hub.
///
/// Implementations must deliver the events of one publisher in the order they were published,
/// and give every event an id that orders it after every event published before it.
#[async_trait]
pub trait Engine: Send + Sync + fmt::Debug {
    /// Connects the engine to this node's connections. Called once, by the hub, before any
    /// publish.
    fn attach(&self, delivery: Arc<dyn Delivery>);

    /// Assigns `publication` its id and delivers it to the targeted connections of every node.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the event could not be published at all; the caller
    /// must report it rather than pretend it was sent.
    async fn publish(&self, publication: Publication) -> Result<Published, EngineError>;

    /// Runs `command` on every node; returns how many connections it affected on this node and
    /// (where the engine knows) the others.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the command could not reach the other nodes.
    async fn command(&self, command: Command) -> Result<usize, EngineError>;

    /// The newest event id: where a client that connects now starts from.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the engine cannot tell.
    async fn head(&self) -> Result<EventId, EngineError>;

    /// The retained events after `after` that a connection described by `filter` would have
    /// received live, oldest first, or why it cannot resume.
    ///
    /// For a resume without gaps or duplicates, an engine must retain an event before it hands
    /// it to any node's [`Delivery`]: the hub registers a resuming connection (holding its live
    /// events) before it calls `replay`, then drops held events the replay already covered.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the history cannot be read.
    async fn replay(&self, after: EventId, filter: &ReplayFilter) -> Result<Replay, EngineError>;

    /// Figures of the replay window, if the engine keeps one.
    fn history_stats(&self) -> Option<HistoryStats>;

    /// Whether the engine works right now (for `/readyz`).
    fn health(&self) -> EngineHealth;

    /// Stops background work. Called once, by the hub, at shutdown.
    async fn shutdown(&self);
}
