//! Engines: how events travel between the nodes of a hub, and (later) where their history lives.
//!
//! An [`Engine`] takes every publication of this node, gives it its id, and hands it, on every
//! node, to that node's [`Delivery`] (its registry of live connections). The in-memory engine
//! ([`MemoryEngine`]) does this within one process; a Redis engine does it across processes with
//! the same trait, so the hub core never knows which one runs. Both send events back through
//! the same `Delivery` path, so there is one delivery path for one node or many.

pub mod durable;
mod memory;
mod redis;

pub use self::redis::{RedisEngine, RedisOptions};
pub use durable::DurableHistory;
pub use memory::MemoryEngine;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::Serialize;

use crate::event::{Event, EventId, EventName, Payload};
use crate::history::{HistoryStats, Replay, ReplayCap, ReplayFilter};
use crate::idempotency::IdempotencyKey;
use crate::lifecycle::Lifecycle;
use crate::metrics::DisconnectReason;
use crate::target::{ChannelName, ConnectionId, Targets, UserId};

/// An event on its way in: everything but its id, which the engine assigns.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The event name.
    pub name: EventName,
    /// The payload.
    pub payload: Payload,
    /// Who gets it.
    pub targets: Targets,
    /// Publish at most once per key within the engine's idempotency window (a retry with the
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

/// The receiving end of an engine on one node: its live connections.
pub trait Delivery: Send + Sync + fmt::Debug {
    /// Queues `event` to the local connections `targets` selects (each connection gets it in
    /// its own wire format, encoded once per format).
    fn deliver(&self, event: &Arc<Event>, targets: &Targets) -> DeliveryReport;
    /// Carries out `command` on local connections; returns how many it affected.
    fn apply(&self, command: &Command) -> usize;

    /// True when this node cannot take more events right now (its fan-out is far behind);
    /// engines then refuse publishes with [`EngineError::Overloaded`] instead of queueing
    /// without bound.
    fn is_overloaded(&self) -> bool {
        false
    }

    /// Every live connection of this node, for engines that share presence and routing between
    /// nodes (the Redis engine reads it every `presence_interval`). `None` (the default): this
    /// delivery does not tell, and such an engine can then neither count other nodes'
    /// connections nor decide `fallback: broadcast` across nodes.
    fn connections(&self) -> Option<Vec<ConnectionSnapshot>> {
        None
    }

    /// Every user of a presence channel on this node (channels with `presence:join` /
    /// `presence:leave` events), for engines that decide those events for the whole cluster.
    /// `None` (the default): this delivery does not tell.
    fn presence_members(&self) -> Option<Vec<PresenceMember>> {
        None
    }
}

/// A user in a presence channel on one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PresenceMember {
    /// The channel.
    pub channel: ChannelName,
    /// The user.
    pub user: UserId,
    /// The display name their first connection gave.
    pub username: Option<Arc<str>>,
}

/// A user's first connection to a presence channel on this node opened (`joined`), or their
/// last one on this node closed.
#[derive(Debug, Clone)]
pub struct PresenceUpdate {
    /// Opened or closed.
    pub joined: bool,
    /// Who, where.
    pub member: PresenceMember,
}

/// Failures of an engine.
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
    /// The engine was used before [`Engine::start`] or after shutdown.
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
    /// Connects the engine to this node's connections and starts its background work (the
    /// Redis supervisor, the durable history's writer), each task spawned on `lifecycle` and
    /// ending when its token is cancelled. Called once, by [`Hub::start`](crate::Hub::start),
    /// before any publish; a second call does nothing (one engine serves one hub). Constructors
    /// spawn nothing: an engine that was never started has no background work to stop.
    fn start(&self, delivery: Arc<dyn Delivery>, lifecycle: &Lifecycle);

    /// Assigns `publication` its id and delivers it to the targeted connections of every node.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the event could not be published at all; the caller
    /// must report it rather than pretend it was sent.
    async fn publish(&self, publication: Publication) -> Result<Published, EngineError>;

    /// Publishes `publication`, the `presence:join` or `presence:leave` event of `update`, if
    /// the update changes the user's presence in the whole hub: a join only for their first
    /// connection to the channel on any node, a leave only for their last. Returns `None` when
    /// it published nothing. The default (one node: this node's first and last connection are
    /// the hub's) always publishes.
    ///
    /// # Errors
    /// As [`Engine::publish`].
    async fn publish_presence(
        &self,
        update: &PresenceUpdate,
        publication: Publication,
    ) -> Result<Option<Published>, EngineError> {
        let _ = update;
        self.publish(publication).await.map(Some)
    }

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
    /// received live, oldest first, or why it cannot resume. More than `cap` allows is
    /// [`Replay::Reset`] with [`ResetReason::ReplayTooLarge`](crate::history::ResetReason::ReplayTooLarge).
    /// Engines read their history in bounded pages (never the whole window in one step), so a
    /// resume neither stalls publishers nor copies more than `cap` plus one page.
    ///
    /// For a resume without gaps or duplicates, an engine must retain an event before it hands
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

    /// Figures of the replay window, if the engine keeps one.
    fn history_stats(&self) -> Option<HistoryStats>;

    /// Whether the engine works right now (for `/readyz`).
    fn health(&self) -> EngineHealth;

    /// Adds the engine's own metrics to the hub's registry. Called once, by the hub, at start.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Stops background work (awaiting the tasks [`Engine::start`] spawned) and releases what
    /// the engine holds. Called once, by the hub, at shutdown, after the hub's own loops have
    /// stopped.
    async fn shutdown(&self);

    /// This node's id within a cluster; `None` for a single-node engine.
    fn node_id(&self) -> Option<&str> {
        None
    }

    /// Figures of every live node and their totals; `None` for a single-node engine (the hub's
    /// own figures are the whole story).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the other nodes' figures cannot be read.
    async fn cluster_stats(&self) -> Result<Option<ClusterStats>, EngineError> {
        Ok(None)
    }

    /// The users connected to `channel` on every node; `None` for a single-node engine (ask
    /// the local registry).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the other nodes cannot be asked.
    async fn channel_presence(
        &self,
        _channel: &ChannelName,
    ) -> Result<Option<ChannelPresence>, EngineError> {
        Ok(None)
    }

    /// The connections of `user` on every node, oldest first; `None` for a single-node engine
    /// (ask the local registry).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the other nodes cannot be asked.
    async fn user_connections(
        &self,
        _user: &UserId,
    ) -> Result<Option<Vec<NodeConnection>>, EngineError> {
        Ok(None)
    }
}

/// One live connection, as a cluster engine shares it between nodes.
#[derive(Debug, Clone)]
pub struct ConnectionSnapshot {
    /// Its id.
    pub id: ConnectionId,
    /// Its user, if any.
    pub user: Option<UserId>,
    /// The display name it gave.
    pub username: Option<Arc<str>>,
    /// Its channels, sorted.
    pub channels: Arc<[ChannelName]>,
    /// When it opened.
    pub connected_at: SystemTime,
}

/// A connection and the node that holds it.
#[derive(Debug, Clone)]
pub struct NodeConnection {
    /// The node's id.
    pub node_id: String,
    /// The connection.
    pub connection: ConnectionSnapshot,
}

/// The users in one channel across every node.
#[derive(Debug, Clone, Default)]
pub struct ChannelPresence {
    /// One entry per user, ordered by when they first connected.
    pub users: Vec<PresenceUser>,
    /// Connections to the channel without a user.
    pub anonymous_connections: usize,
}

/// One user in a channel, across every node.
#[derive(Debug, Clone)]
pub struct PresenceUser {
    /// The user.
    pub user: UserId,
    /// Their display name, if a connection gave one.
    pub username: Option<Arc<str>>,
    /// Their connections to the channel, on all nodes.
    pub connections: usize,
    /// When their oldest connection to the channel opened.
    pub first_connected_at: SystemTime,
}

/// Figures of a cluster for `GET /api/sse/stats`: totals and one entry per live node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStats {
    /// The node that answered.
    pub node_id: String,
    /// Open connections on all nodes.
    pub connections: usize,
    /// Users with a connection, summed over nodes (a user connected to two nodes counts twice).
    pub users: usize,
    /// Connections without a user, on all nodes.
    pub anonymous_connections: usize,
    /// Subscribers per channel, on all nodes.
    pub channels: BTreeMap<String, usize>,
    /// Event copies queued to connections since their start, summed over the live nodes.
    pub events_delivered: u64,
    /// Each live node, by id.
    pub nodes: Vec<NodeStats>,
}

/// Figures one node last reported.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's id.
    pub node_id: String,
    /// Its open connections.
    pub connections: usize,
    /// Its distinct users.
    pub users: usize,
    /// Its connections without a user.
    pub anonymous_connections: usize,
    /// Channels with at least one subscriber on it.
    pub channels: usize,
    /// Event copies it queued to its connections since it started, as of its last report.
    pub events_delivered: u64,
    /// Whether its hub reports its connections (without, the cluster cannot route
    /// `fallback: broadcast` or count its connections).
    pub reports_connections: bool,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it last reported (RFC 3339).
    pub updated_at: String,
}
