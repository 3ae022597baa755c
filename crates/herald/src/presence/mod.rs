//! Presence stores: who is connected where, for the hub's stats and presence answers, and the
//! `presence:join` / `presence:leave` events of channels that have them.
//!
//! A [`PresenceStore`] answers the same questions on one node and on many; the hub asks it and
//! never whether it runs in a cluster. The memory store ([`MemoryPresence`]) answers from this
//! node's registry. The Redis store ([`RedisPresence`]) keeps this node's presence in Redis
//! (the per-node counts the Redis broker reads to count `delivered` and decide
//! `fallback: broadcast`, with a TTL so a dead node drops out) and asks every node for the rest.
//! It learns this node's connections from the registry itself: the registry reports every join
//! and leave to the store's [`PresenceFeed`] as it happens, and the store writes what changed
//! every `presence_interval`; nothing copies the registry.
//!
//! | File | What |
//! |---|---|
//! | `mod.rs` | the [`PresenceStore`], [`LocalPresence`] and [`PresenceFeed`] traits, and the answers' types |
//! | `memory.rs` | [`MemoryPresence`]: one process; the registry answers |
//! | `redis/` | [`RedisPresence`]: this node's presence in Redis, written from its registry's joins and leaves, and queries to every node |

mod memory;
pub(crate) mod redis;

pub use memory::MemoryPresence;
pub use redis::RedisPresence;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::Serialize;

use crate::broker::{Broker, Publication, Published};
use crate::engine::EngineError;
use crate::lifecycle::Lifecycle;
use crate::target::{ChannelName, ConnectionId, UserId};

/// Who is connected where, in the whole hub.
///
/// The hub calls [`PresenceStore::start`] once, when it starts, then asks the store for every
/// presence answer and hands it every presence change of a channel with presence events.
#[async_trait]
pub trait PresenceStore: Send + Sync + fmt::Debug {
    /// Where this node's registry reports every connection that joins or leaves, as it happens;
    /// `None` (the default) when the store has no use for it (the memory store asks the
    /// registry instead). Asked once, by [`Hub::start`](crate::Hub::start), before any
    /// connection registers.
    fn feed(&self) -> Option<Arc<dyn PresenceFeed>> {
        None
    }

    /// Connects the store to this node's registry (`local`) and starts its background work
    /// (Redis: the periodic write of this node's presence), each task spawned on `lifecycle`
    /// and ending when its token is cancelled. Called once, by [`Hub::start`](crate::Hub::start),
    /// after the broker started; a second call does nothing. Constructors spawn nothing.
    fn start(&self, local: Arc<dyn LocalPresence>, lifecycle: &Lifecycle);

    /// Publishes `publication`, the `presence:join` or `presence:leave` event of `update`
    /// (through `broker`, or in the same step that records the change), if the update changes
    /// the user's presence in the whole hub: a join only for their first connection to the
    /// channel on any node, a leave only for their last. Returns `None` when it published
    /// nothing. On one node, this node's first and last connection are the hub's: it always
    /// publishes.
    ///
    /// # Errors
    /// As [`Broker::publish`].
    async fn announce(
        &self,
        update: &PresenceUpdate,
        publication: Publication,
        broker: &dyn Broker,
    ) -> Result<Option<Published>, EngineError>;

    /// Figures of every live node and their totals, for the `cluster` block of the stats;
    /// `None` when the hub is one node (its own figures are the whole story).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the other nodes' figures cannot be read.
    async fn cluster_stats(&self) -> Result<Option<ClusterStats>, EngineError>;

    /// The users connected to `channel`, on every node.
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the other nodes cannot be asked;
    /// [`EngineError::NotRunning`] before [`PresenceStore::start`].
    async fn channel_presence(&self, channel: &ChannelName)
        -> Result<ChannelPresence, EngineError>;

    /// The connections of `user` on every node, oldest first.
    ///
    /// # Errors
    /// As [`PresenceStore::channel_presence`].
    async fn user_connections(&self, user: &UserId) -> Result<Vec<NodeConnection>, EngineError>;

    /// The connections `query` selects on every node (with their metadata), oldest first: how
    /// a protocol that keeps its subscriptions as connection metadata (Mercure) lists them for
    /// the whole cluster.
    ///
    /// # Errors
    /// As [`PresenceStore::channel_presence`].
    async fn connections(
        &self,
        query: &ConnectionQuery,
    ) -> Result<Vec<NodeConnection>, EngineError>;

    /// Stops background work (awaiting the tasks [`PresenceStore::start`] spawned) and takes
    /// this node's presence out of the hub (Redis: its users leave where it was their last
    /// node). Called once, by the hub, at shutdown, after its own loops have stopped and before
    /// the broker shuts down.
    async fn shutdown(&self);
}

/// This node's registry, as a presence store reads it. The hub implements it; a store keeps
/// it from [`PresenceStore::start`] on.
pub trait LocalPresence: Send + Sync + fmt::Debug {
    /// The users connected to `channel` on this node.
    fn channel_presence(&self, channel: &ChannelName) -> ChannelPresence;

    /// The connections of `user` on this node, oldest first.
    fn user_connections(&self, user: &UserId) -> Vec<ConnectionInfo>;

    /// The connections `query` selects on this node, oldest first.
    fn connections(&self, query: &ConnectionQuery) -> Vec<ConnectionInfo>;
}

/// Which connections [`PresenceStore::connections`] lists: those of one transport, on some
/// channels or on any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionQuery {
    /// Their transport ([`WireFormat::name`](crate::transport::WireFormat::name)).
    pub transport: String,
    /// Only connections to at least one of these channels; empty: every connection of the
    /// transport (a walk over all of this node's connections).
    pub channels: Vec<ChannelName>,
}

/// Hears every join and leave of this node's registry, as it happens: the deltas a presence
/// store keeps its own view of this node from ([`PresenceStore::feed`]).
///
/// The registry calls it inside its lock, so that a connection's join always comes before its
/// leave and the calls for one connection never cross: an implementation must not block, await
/// or do I/O (a short mutex around a few map updates is the intended cost), and must not call
/// back into the hub.
pub trait PresenceFeed: Send + Sync + fmt::Debug {
    /// `connection` registered. `updates` are the presence changes it made: a join for each
    /// presence channel where it is its user's first connection on this node.
    fn joined(&self, connection: &ConnectionInfo, updates: &[PresenceUpdate]);

    /// `connection` left. `updates` are the presence changes it made: a leave for each
    /// presence channel where it was its user's last connection on this node.
    fn left(&self, connection: &ConnectionInfo, updates: &[PresenceUpdate]);
}

/// One live connection, as presence knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
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
    /// Its transport ([`WireFormat::name`](crate::transport::WireFormat::name)).
    pub transport: &'static str,
    /// The session id the client gave (`sessionId`), if any.
    pub session_id: Option<Arc<str>>,
    /// The connection's metadata (a JSON object: from the `metadata` query parameter, the
    /// token's `metadata` claim or the auth hook), if any.
    pub metadata: Option<Arc<crate::hub::Metadata>>,
}

/// A connection and the node that holds it.
#[derive(Debug, Clone)]
pub struct NodeConnection {
    /// The node's id in a cluster; `None` when the hub is one node.
    pub node_id: Option<String>,
    /// The connection.
    pub connection: ConnectionInfo,
}

/// The users in one channel.
#[derive(Debug, Clone, Default)]
pub struct ChannelPresence {
    /// One entry per user, ordered by when they first connected (then by user id).
    pub users: Vec<PresenceUser>,
    /// Connections to the channel without a user.
    pub anonymous_connections: usize,
}

/// One user in a channel.
#[derive(Debug, Clone)]
pub struct PresenceUser {
    /// The user.
    pub user: UserId,
    /// Their display name: the one their oldest connection gave, else any connection's.
    pub username: Option<Arc<str>>,
    /// Their connections to the channel.
    pub connections: usize,
    /// When their oldest connection to the channel opened.
    pub first_connected_at: SystemTime,
}

/// A user in a presence channel (one with `presence:join` / `presence:leave` events) on one
/// node.
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
    /// Distinct users with a connection on any node (a user connected to two nodes counts
    /// once); `None` when the store cannot count them cheaply (the Redis store: more than
    /// 20 000 users summed over the nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_users: Option<usize>,
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
    /// Whether its presence store reports its connections (without, the cluster cannot route
    /// `fallback: broadcast` or count its connections).
    pub reports_connections: bool,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it last reported (RFC 3339).
    pub updated_at: String,
}
