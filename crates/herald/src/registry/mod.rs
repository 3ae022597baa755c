//! The live connections of this node, of every transport, indexed by id, by user and by channel,
//! and the fan-out of an event to the connections a [`Targets`](crate::Targets) selects.
//!
//! A connection is transport-agnostic: identity, channels, an outbox of bytes and the
//! [`WireFormat`] its transport writes. Targeting, limits, presence, eviction, resume and
//! disconnects never look further, so they work the same for every transport.
//!
//! Connections are spread over shards (one per core by default), each with its own indices
//! ([`indices`]) under its own `RwLock` and its own fan-out task ([`fanout`]). Publishing only
//! counts the targeted connections (O(1) for a single user, channel or connection) and appends
//! the event to every shard's queue, so it returns in microseconds whatever the audience; the
//! shards' tasks then push the event, encoded once per wire format and shared, into their
//! connections' outboxes in parallel, in queue order (so every connection sees events in id
//! order). Fan-out never waits on a client: a connection whose outbox is full is evicted.
//! Presence (who is in which channel, join and leave changes) is in [`presence`].
//!
//! A small global mutex keeps what must be counted across shards: the limits (total, per user,
//! per IP) and the per-channel presence counts. Register takes it, then the shard's write lock;
//! remove takes the global one, then the shard's; nothing takes them the other way round while
//! holding both. Both report the join or leave to the presence store's feed
//! ([`PresenceFeed`]), if it has one, while still holding the global lock: the feed sees every
//! connection's join before its leave, and takes only a short lock of its own.

mod direct;
mod fanout;
mod indices;
mod presence;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::fanout::Shard;
use crate::error::{Error, Result};
use crate::event::EventId;
use crate::metrics::{DisconnectReason, Metrics, RejectReason};
use crate::presence::{ConnectionInfo, PresenceFeed, PresenceMember, PresenceUpdate};
use crate::target::{ChannelName, ChannelPattern, ConnectionId, UserId};
use crate::transport::outbox::Outbox;
use crate::transport::WireFormat;
pub(crate) use direct::{deferring, queueing};

/// A handle that closes the transport under a connection (its TCP connection), for when ending
/// the response body is not enough: a client that stopped reading leaves the server blocked on a
/// full socket, and only dropping the socket frees it. The server passes one to every request.
#[derive(Debug, Clone)]
pub struct TransportCloser(CancellationToken);

impl TransportCloser {
    /// Wraps the token the server's connection task watches.
    pub fn new(token: CancellationToken) -> Self {
        TransportCloser(token)
    }

    fn close(&self) {
        self.0.cancel();
    }
}

/// Makes a control frame (a heartbeat, a `disconnected`) in a connection's wire format.
pub(crate) type Encode<'a> = dyn Fn(&dyn WireFormat) -> Bytes + 'a;

/// One live connection: who it is, what it listens to, and its outbox.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) user: Option<UserId>,
    pub(crate) username: Option<Arc<str>>,
    /// Sorted and free of duplicates.
    pub(crate) channels: Arc<[ChannelName]>,
    pub(crate) opened_at: Instant,
    pub(crate) opened_at_wall: SystemTime,
    pub(crate) outbox: Outbox,
    /// How its transport encodes events.
    pub(crate) format: &'static dyn WireFormat,
    pub(crate) closer: Option<TransportCloser>,
    /// The client's address, for the per-address limit.
    pub(crate) peer_ip: Option<IpAddr>,
    /// The client's session id (seed 001's `sessionId`), shown in presence answers.
    pub(crate) session_id: Option<Arc<str>>,
    /// What the client, its token or the auth hook said about the connection (a JSON object),
    /// shown in presence answers.
    pub(crate) metadata: Option<Arc<crate::hub::Metadata>>,
    /// Whether something other than a heartbeat was sent to it, or anything was received from
    /// it, since the last sweep: set by fan-out and by the transports ([`Connection::touch`]),
    /// taken by the sweep ([`Registry::sweep_candidates`]) for `idle_timeout`. A flag and not a
    /// timestamp, so that the hot path stores a byte and reads no clock.
    pub(crate) active: AtomicBool,
    /// When the sweep last found it active, in milliseconds after `opened_at` (0: never since
    /// it opened). Written by the sweep only.
    pub(crate) last_active_ms: AtomicU64,
    /// Decides per event whether the connection gets it, beyond its targets (a protocol's own
    /// matching: Mercure's topic selectors); `None` takes whatever its targets select.
    pub(crate) filter: Option<Arc<dyn crate::transport::DeliveryFilter>>,
}

impl Connection {
    /// Records activity: something other than a heartbeat was sent, or something was received.
    /// One relaxed store; the sweep reads it.
    pub(crate) fn touch(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// The key of the client's address in per-address limits (see [`ip_key`]).
    fn ip_key(&self) -> Option<IpAddr> {
        self.peer_ip.map(ip_key)
    }
}

/// The key of a client address in per-address limits (connections, rates): an IPv4 address
/// itself (also when written IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address its /64 network. One
/// IPv6 client usually holds a whole /64 (SLAAC, privacy addresses) and can pick any address in
/// it, so counting addresses would count it as 2^64 clients.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            v6.to_bits() & !u128::from(u64::MAX),
        )),
    }
}

/// The maps of the registry's hot paths (every connect, close and targeted publish looks up
/// several): foldhash, seeded at random per process, rather than SipHash, which took a tenth
/// of a connect's and close's CPU. Keys come from clients (user ids, channel names), so the
/// hasher stays keyed (a random global seed per process and one per map), but foldhash calls
/// itself only minimally DoS-resistant, weaker than SipHash; what bounds an attack is that
/// every map holds at most one entry per connection, within the connection limits.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set counterpart of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Counts kept across shards.
#[derive(Debug, Default)]
struct Global {
    connections: usize,
    anonymous: usize,
    by_user: FastMap<UserId, usize>,
    /// Connections per client address (only when a per-address limit is set).
    by_ip: FastMap<IpAddr, usize>,
    /// For channels with presence events: how many connections each user has in it, and the
    /// display name their first one gave.
    presence: FastMap<ChannelName, FastMap<UserId, PresenceCount>>,
    /// The newest event counted for delivery (`None` before the first). Set under this lock
    /// while the event's audience is counted, and read under it when a connection registers:
    /// every event after it counts the new connection, none before it does.
    position: Option<EventId>,
}

/// A user's connections to one presence channel, and the display name the first one gave.
type PresenceCount = (usize, Option<Arc<str>>);

/// Limits checked when a connection registers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_user: usize,
    pub(crate) max_connections_per_ip: Option<usize>,
}

/// What one sweep found (see [`Registry::sweep_candidates`]).
#[derive(Debug, Default)]
pub(crate) struct SweepCandidates {
    /// Their stream already ended.
    pub(crate) stale: Vec<ConnectionId>,
    /// Older than `connection_timeout`.
    pub(crate) expired: Vec<ConnectionId>,
    /// Idle for `idle_timeout`.
    pub(crate) idle: Vec<ConnectionId>,
}

/// Counts of the registry at one instant.
#[derive(Debug, Clone, Default)]
pub struct RegistryCounts {
    /// Open connections.
    pub connections: usize,
    /// Distinct users with a connection.
    pub users: usize,
    /// Connections without a user id.
    pub anonymous_connections: usize,
    /// Subscribers per channel.
    pub channels: HashMap<String, usize>,
}

#[derive(Debug)]
pub(crate) struct Registry {
    global: Mutex<Global>,
    shards: Box<[Shard]>,
    limits: Limits,
    closing: AtomicBool,
    metrics: Arc<Metrics>,
    /// Channels whose subscribers get `presence:join` / `presence:leave`.
    presence_channels: Vec<ChannelPattern>,
    /// Where presence changes go (the hub's presence task publishes them).
    presence_tx: Option<mpsc::Sender<PresenceUpdate>>,
    /// Hears every join and leave, under the global lock (the Redis presence store keeps its
    /// per-node index from it); `None` when the presence store has no use for it.
    presence_feed: Option<Arc<dyn PresenceFeed>>,
}

impl Registry {
    /// A registry with one shard per available core.
    pub(crate) fn new(limits: Limits, metrics: Arc<Metrics>) -> Self {
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
        Self::with_shards(limits, metrics, shards)
    }

    pub(crate) fn with_shards(limits: Limits, metrics: Arc<Metrics>, shards: usize) -> Self {
        Registry {
            global: Mutex::new(Global::default()),
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            limits,
            closing: AtomicBool::new(false),
            metrics,
            presence_channels: Vec::new(),
            presence_tx: None,
            presence_feed: None,
        }
    }

    /// Emits presence changes for the channels `patterns` match into `tx`.
    pub(crate) fn with_presence(
        mut self,
        patterns: Vec<ChannelPattern>,
        tx: mpsc::Sender<PresenceUpdate>,
    ) -> Self {
        self.presence_channels = patterns;
        self.presence_tx = Some(tx);
        self
    }

    /// Reports every join and leave to `feed`, as it happens.
    pub(crate) fn with_presence_feed(mut self, feed: Arc<dyn PresenceFeed>) -> Self {
        self.presence_feed = Some(feed);
        self
    }

    /// How many fan-out shards there are (the hub runs one [`Registry::run_shard`] task each).
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, id: ConnectionId) -> &Shard {
        &self.shards[id.shard_index(self.shards.len())]
    }

    /// Adds a connection, unless a limit forbids it.
    ///
    /// Returns the newest event counted for delivery before this connection joined (`None`
    /// before the first event): every later event that targets it counts it in `delivered` and
    /// reaches its outbox; no earlier one does. That is where its stream starts.
    pub(crate) fn register(&self, conn: Arc<Connection>) -> Result<Option<EventId>> {
        if self.closing.load(Ordering::Acquire) {
            self.metrics.rejected(RejectReason::ShuttingDown);
            return Err(Error::ShuttingDown);
        }
        let mut global = self.global.lock();
        if global.connections >= self.limits.max_connections {
            drop(global);
            self.metrics.rejected(RejectReason::MaxConnections);
            return Err(Error::TooManyConnections {
                max: self.limits.max_connections,
            });
        }
        if let (Some(max), Some(ip)) = (self.limits.max_connections_per_ip, conn.ip_key()) {
            if global.by_ip.get(&ip).copied().unwrap_or(0) >= max {
                drop(global);
                self.metrics.rejected(RejectReason::MaxConnectionsPerIp);
                return Err(Error::IpConnectionLimit { max });
            }
        }
        match &conn.user {
            Some(user) => {
                let held = global.by_user.get(user).copied().unwrap_or(0);
                if held >= self.limits.max_connections_per_user {
                    drop(global);
                    self.metrics.rejected(RejectReason::MaxConnectionsPerUser);
                    return Err(Error::UserConnectionLimit {
                        max: self.limits.max_connections_per_user,
                    });
                }
                *global.by_user.entry(user.clone()).or_default() += 1;
            }
            None => global.anonymous += 1,
        }
        if let (Some(_), Some(ip)) = (self.limits.max_connections_per_ip, conn.ip_key()) {
            *global.by_ip.entry(ip).or_default() += 1;
        }
        global.connections += 1;
        let mut changes = Vec::new();
        if let Some(user) = &conn.user {
            for channel in conn.channels.iter().filter(|c| self.has_presence_events(c)) {
                let (count, _) = global
                    .presence
                    .entry(channel.clone())
                    .or_default()
                    .entry(user.clone())
                    .or_insert_with(|| (0, conn.username.clone()));
                *count += 1;
                if *count == 1 {
                    changes.push(PresenceUpdate {
                        joined: true,
                        member: PresenceMember {
                            channel: channel.clone(),
                            user: user.clone(),
                            username: conn.username.clone(),
                        },
                    });
                }
            }
        }
        // Built before the connection moves into the shard; only when someone listens.
        let info = self.presence_feed.as_ref().map(|_| connection_info(&conn));
        // Insert into the shard while still holding the global lock, so that a concurrent
        // remove of the same connection (impossible before this returns, but cheap to rule out)
        // and the counts never disagree.
        {
            let mut ix = self.shard(conn.id).indices.write();
            if let Some(user) = &conn.user {
                ix.by_user
                    .entry(user.clone())
                    .or_default()
                    .push(conn.clone());
            }
            for channel in conn.channels.iter() {
                ix.by_channel
                    .entry(channel.clone())
                    .or_default()
                    .insert(conn.id, conn.clone());
            }
            ix.by_id.insert(conn.id, conn);
        }
        // Still under the global lock: the feed hears this join before any leave of it.
        if let (Some(feed), Some(info)) = (&self.presence_feed, &info) {
            feed.joined(info, &changes);
        }
        self.update_gauges(&global);
        let position = global.position;
        drop(global);
        self.emit(changes);
        Ok(position)
    }

    /// Removes a connection from every index. Returns it if it was still registered (the caller
    /// then closes its outbox); `None` means someone else removed it first.
    pub(crate) fn remove(
        &self,
        id: ConnectionId,
        reason: DisconnectReason,
    ) -> Option<Arc<Connection>> {
        let mut global = self.global.lock();
        let conn = {
            let mut ix = self.shard(id).indices.write();
            let conn = ix.by_id.remove(&id)?;
            if let Some(user) = &conn.user {
                if let Some(list) = ix.by_user.get_mut(user) {
                    list.retain(|c| c.id != id);
                    if list.is_empty() {
                        ix.by_user.remove(user);
                    }
                }
            }
            for channel in conn.channels.iter() {
                if let Some(members) = ix.by_channel.get_mut(channel) {
                    members.remove(&id);
                    if members.is_empty() {
                        ix.by_channel.remove(channel);
                    }
                }
            }
            conn
        };
        global.connections -= 1;
        match &conn.user {
            Some(user) => {
                if let Some(n) = global.by_user.get_mut(user) {
                    *n -= 1;
                    if *n == 0 {
                        global.by_user.remove(user);
                    }
                }
            }
            None => global.anonymous -= 1,
        }
        if let Some(ip) = conn.ip_key() {
            if let Some(n) = global.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    global.by_ip.remove(&ip);
                }
            }
        }
        let mut changes = Vec::new();
        if let Some(user) = &conn.user {
            for channel in conn.channels.iter() {
                let Some(users) = global.presence.get_mut(channel) else {
                    continue;
                };
                if let Some((count, _)) = users.get_mut(user) {
                    *count -= 1;
                    if *count == 0 {
                        users.remove(user);
                        changes.push(PresenceUpdate {
                            joined: false,
                            member: PresenceMember {
                                channel: channel.clone(),
                                user: user.clone(),
                                username: conn.username.clone(),
                            },
                        });
                    }
                }
                if users.is_empty() {
                    global.presence.remove(channel);
                }
            }
        }
        // Still under the global lock, after the join it follows (see `register`).
        if let Some(feed) = &self.presence_feed {
            feed.left(&connection_info(&conn), &changes);
        }
        self.update_gauges(&global);
        drop(global);
        self.metrics.disconnected(reason);
        self.emit(changes);
        Some(conn)
    }

    fn update_gauges(&self, global: &Global) {
        self.metrics.connections.set(global.connections as i64);
        self.metrics.users.set(global.by_user.len() as i64);
    }

    /// Removes a connection and ends its stream after `last`, the last thing it gets (a
    /// `disconnected` event) encoded in its wire format.
    pub(crate) fn close(
        &self,
        id: ConnectionId,
        reason: DisconnectReason,
        last: Option<&Encode<'_>>,
    ) -> bool {
        match self.remove(id, reason) {
            Some(conn) => {
                conn.outbox.close(last.map(|encode| encode(conn.format)));
                true
            }
            None => false,
        }
    }

    /// Removes a slow connection and drops its transport at once.
    fn evict(&self, conn: &Connection) {
        if self
            .remove(conn.id, DisconnectReason::SlowConsumer)
            .is_some()
        {
            tracing::info!(connection = %conn.id, "evicted slow consumer");
        }
        conn.outbox.abort();
        if let Some(closer) = &conn.closer {
            closer.close();
        }
    }

    /// The ids of the connections of `users` and of the listed `connections` that exist.
    pub(crate) fn select(
        &self,
        users: &[UserId],
        connections: &[ConnectionId],
    ) -> Vec<ConnectionId> {
        let mut ids = Vec::new();
        for shard in self.shards.iter() {
            let ix = shard.indices.read();
            ids.extend(
                users
                    .iter()
                    .filter_map(|u| ix.by_user.get(u))
                    .flatten()
                    .map(|c| c.id),
            );
            ids.extend(
                connections
                    .iter()
                    .copied()
                    .filter(|id| ix.by_id.contains_key(id)),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether this connection is registered.
    pub(crate) fn contains(&self, id: ConnectionId) -> bool {
        self.shard(id).indices.read().by_id.contains_key(&id)
    }

    /// Every connection id.
    pub(crate) fn all_ids(&self) -> Vec<ConnectionId> {
        self.shards
            .iter()
            .flat_map(|s| s.indices.read().by_id.keys().copied().collect::<Vec<_>>())
            .collect()
    }

    /// Connections whose outbox is already closed (stale); when `timeout` is set, those open
    /// for longer than it (expired); when `idle` is set, those not active for that long
    /// (idle), where a connection is active at a sweep when its flag ([`Connection::touch`]) was
    /// set since the previous one. A connection is idle once `idle` has passed since the last
    /// sweep that found it active (or since it opened), so it is closed between `idle` and
    /// `idle` plus two sweep intervals after its last activity, never sooner.
    pub(crate) fn sweep_candidates(
        &self,
        now: Instant,
        timeout: Option<Duration>,
        idle: Option<Duration>,
    ) -> SweepCandidates {
        let mut found = SweepCandidates::default();
        for shard in self.shards.iter() {
            let ix = shard.indices.read();
            for conn in ix.by_id.values() {
                if conn.outbox.is_closed() {
                    found.stale.push(conn.id);
                    continue;
                }
                let age = now.duration_since(conn.opened_at);
                if timeout.is_some_and(|t| age >= t) {
                    found.expired.push(conn.id);
                    continue;
                }
                let Some(idle) = idle else { continue };
                let age_ms = age.as_millis() as u64;
                if conn.active.swap(false, Ordering::Relaxed) {
                    conn.last_active_ms.store(age_ms, Ordering::Relaxed);
                } else {
                    let since = age_ms.saturating_sub(conn.last_active_ms.load(Ordering::Relaxed));
                    if u128::from(since) >= idle.as_millis() {
                        found.idle.push(conn.id);
                    }
                }
            }
        }
        found
    }

    /// Stops accepting new connections.
    pub(crate) fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub(crate) fn counts(&self) -> RegistryCounts {
        let mut channels: HashMap<String, usize> = HashMap::new();
        for shard in self.shards.iter() {
            for (name, members) in &shard.indices.read().by_channel {
                *channels.entry(name.as_str().to_owned()).or_default() += members.len();
            }
        }
        self.metrics.channels.set(channels.len() as i64);
        let global = self.global.lock();
        RegistryCounts {
            connections: global.connections,
            users: global.by_user.len(),
            anonymous_connections: global.anonymous,
            channels,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.global.lock().connections
    }

    /// The connections of `user`, oldest first.
    pub(crate) fn user_connections(&self, user: &UserId) -> Vec<ConnectionInfo> {
        let mut list: Vec<ConnectionInfo> = Vec::new();
        for shard in self.shards.iter() {
            let ix = shard.indices.read();
            list.extend(
                ix.by_user
                    .get(user)
                    .into_iter()
                    .flatten()
                    .map(|c| connection_info(c)),
            );
        }
        list.sort_by_key(|c| c.connected_at);
        list
    }
}

/// A connection as presence knows it.
fn connection_info(c: &Connection) -> ConnectionInfo {
    ConnectionInfo {
        id: c.id,
        user: c.user.clone(),
        username: c.username.clone(),
        channels: c.channels.clone(),
        connected_at: c.opened_at_wall,
        transport: c.format.name(),
        session_id: c.session_id.clone(),
        metadata: c.metadata.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::DeliveryReport;
    use crate::event::Event;
    use crate::target::{Fallback, Target, Targets};
    use std::task::{Context, Poll, Waker};

    use crate::transport::outbox::Drained;

    /// Event `seq`, whose payload is `!` (each delivery of it shows as one `!`).
    fn event(seq: u64) -> Arc<Event> {
        let id = EventId {
            epoch: crate::event::Epoch::random(),
            seq,
        };
        Arc::new(Event::new(
            id,
            crate::event::EventName::new("n").unwrap(),
            crate::event::Payload::text("!"),
        ))
    }

    fn registry(max: usize, per_user: usize) -> Registry {
        Registry::with_shards(
            Limits {
                max_connections: max,
                max_connections_per_user: per_user,
                max_connections_per_ip: None,
            },
            Arc::new(Metrics::new()),
            3,
        )
    }

    /// Runs every shard's fan-out now (the hub runs them as tasks).
    fn fan_out(r: &Registry) {
        for i in 0..r.shard_count() {
            r.fan_out(i);
        }
    }

    fn conn(user: Option<&str>, channels: &[&str]) -> Arc<Connection> {
        conn_in(&crate::transport::test_format::LINES, user, channels)
    }

    fn conn_in(
        format: &'static dyn WireFormat,
        user: Option<&str>,
        channels: &[&str],
    ) -> Arc<Connection> {
        Arc::new(Connection {
            format,
            id: ConnectionId::random(),
            user: user.map(|u| UserId::new(u).unwrap()),
            username: None,
            channels: channels
                .iter()
                .map(|c| ChannelName::new(c).unwrap())
                .collect(),
            opened_at: Instant::now(),
            opened_at_wall: SystemTime::now(),
            outbox: Outbox::new(4, 1 << 20),
            closer: None,
            peer_ip: None,
            session_id: None,
            metadata: None,
            active: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(0),
            filter: None,
        })
    }

    fn drained(c: &Connection) -> Bytes {
        let mut cx = Context::from_waker(Waker::noop());
        match c.outbox.poll_drain(&mut cx) {
            Poll::Ready(Drained::Data(d)) => d,
            _ => Bytes::new(),
        }
    }

    fn received(c: &Connection) -> usize {
        drained(c).iter().filter(|b| **b == b'!').count()
    }

    fn user(u: &str) -> Target {
        Target::User(UserId::new(u).unwrap())
    }

    fn chan(c: &str) -> Target {
        Target::Channel(ChannelName::new(c).unwrap())
    }

    #[test]
    fn union_of_targets_is_delivered_once_per_connection() {
        let r = registry(100, 10);
        let a1 = conn(Some("alice"), &["news"]);
        let a2 = conn(Some("alice"), &[]);
        let b = conn(Some("bob"), &["news"]);
        let anon = conn(None, &[]);
        for c in [&a1, &a2, &b, &anon] {
            r.register(c.clone()).unwrap();
        }
        let t = Targets::new(
            vec![user("alice"), chan("news"), Target::Connection(a1.id)],
            Fallback::None,
        )
        .unwrap();
        assert_eq!(r.deliver(&event(1), &t).delivered, 3);
        fan_out(&r);
        assert_eq!([&a1, &a2, &b, &anon].map(|c| received(c)), [1, 1, 1, 0]);
        assert_eq!(r.deliver(&event(2), &Targets::broadcast()).delivered, 4);
        fan_out(&r);
        assert_eq!([&a1, &a2, &b, &anon].map(|c| received(c)), [1, 1, 1, 1]);
    }

    #[test]
    fn fallback_broadcasts_only_when_nothing_matched() {
        let r = registry(100, 10);
        let a = conn(Some("alice"), &[]);
        r.register(a.clone()).unwrap();
        let nobody = Targets::new(vec![user("carol")], Fallback::None).unwrap();
        assert_eq!(r.deliver(&event(1), &nobody), DeliveryReport::default());
        let nobody = Targets::new(vec![user("carol")], Fallback::Broadcast).unwrap();
        assert_eq!(
            r.deliver(&event(2), &nobody),
            DeliveryReport {
                delivered: 1,
                fell_back: true
            }
        );
        fan_out(&r);
        assert_eq!(received(&a), 1);
    }

    #[test]
    fn limits_are_enforced() {
        let r = registry(3, 2);
        r.register(conn(Some("alice"), &[])).unwrap();
        r.register(conn(Some("alice"), &[])).unwrap();
        assert!(matches!(
            r.register(conn(Some("alice"), &[])),
            Err(Error::UserConnectionLimit { max: 2 })
        ));
        r.register(conn(None, &[])).unwrap();
        assert!(matches!(
            r.register(conn(None, &[])),
            Err(Error::TooManyConnections { max: 3 })
        ));
    }

    #[test]
    fn removal_cleans_every_index() {
        let r = registry(10, 10);
        let a = conn(Some("alice"), &["x", "y"]);
        r.register(a.clone()).unwrap();
        assert_eq!(r.counts().channels.len(), 2);
        assert!(r.close(a.id, DisconnectReason::ServerDisconnect, None));
        assert!(!r.close(a.id, DisconnectReason::ServerDisconnect, None));
        let c = r.counts();
        assert_eq!((c.connections, c.users, c.channels.len()), (0, 0, 0));
    }

    #[test]
    fn presence_changes_only_on_first_and_last_connection() {
        let (tx, mut rx) = mpsc::channel(16);
        let r = registry(10, 10).with_presence(vec!["room:*".parse().unwrap()], tx);
        let tab1 = conn(Some("alice"), &["room:1", "other"]);
        let tab2 = conn(Some("alice"), &["room:1"]);
        r.register(tab1.clone()).unwrap();
        r.register(tab2.clone()).unwrap();
        r.register(conn(None, &["room:1"])).unwrap();
        let c = rx.try_recv().unwrap();
        assert!(
            c.joined && c.member.channel.as_str() == "room:1" && c.member.user.as_str() == "alice"
        );
        assert!(
            rx.try_recv().is_err(),
            "one join for two tabs, none for anonymous or 'other'"
        );
        let p = r.channel_presence(&ChannelName::new("room:1").unwrap());
        assert_eq!(
            (
                p.users.len(),
                p.users[0].connections,
                p.anonymous_connections
            ),
            (1, 2, 1)
        );
        r.remove(tab1.id, DisconnectReason::ClientClosed);
        assert!(rx.try_recv().is_err(), "alice still has a tab open");
        r.remove(tab2.id, DisconnectReason::ClientClosed);
        let c = rx.try_recv().unwrap();
        assert!(!c.joined && c.member.user.as_str() == "alice");
    }

    #[test]
    fn full_outbox_is_evicted_and_others_still_receive() {
        let r = registry(10, 10);
        let slow = conn(Some("slow"), &["news"]);
        let fast = conn(Some("fast"), &["news"]);
        r.register(slow.clone()).unwrap();
        r.register(fast.clone()).unwrap();
        let t = Targets::one(chan("news"));
        for seq in 1..=4 {
            assert_eq!(r.deliver(&event(seq), &t).delivered, 2);
            fan_out(&r);
            assert_eq!(received(&fast), 1);
        }
        // slow's outbox (capacity 4) is now full: the next event evicts it.
        assert_eq!(r.deliver(&event(5), &t).delivered, 2);
        fan_out(&r);
        assert_eq!(received(&fast), 1);
        assert_eq!(r.counts().connections, 1);
        assert!(slow.outbox.is_closed());
    }

    /// Accepts events whose payload is in its list; counts how often it is asked.
    #[derive(Debug)]
    struct Only(&'static [&'static str], std::sync::atomic::AtomicUsize);

    impl crate::transport::DeliveryFilter for Only {
        fn accepts(&self, event: &Event, _: &mut crate::transport::FilterScratch) -> bool {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.contains(&event.payload.as_str())
        }
    }

    #[test]
    fn a_shared_filter_is_asked_once_per_event_and_shard() {
        let r = registry(100, 100);
        let only = Arc::new(Only(&["!"], std::sync::atomic::AtomicUsize::new(0)));
        let filter: Arc<dyn crate::transport::DeliveryFilter> = only.clone();
        let filtered: Vec<_> = (0..30)
            .map(|_| {
                let c = conn(None, &["news"]);
                let mut c = Arc::into_inner(c).unwrap();
                c.filter = Some(filter.clone());
                Arc::new(c)
            })
            .collect();
        let plain = conn(None, &["news"]);
        for c in filtered.iter().chain([&plain]) {
            r.register(c.clone()).unwrap();
        }
        let t = Targets::one(chan("news"));
        r.deliver(&event(1), &t);
        fan_out(&r);
        assert!(filtered.iter().all(|c| received(c) == 1));
        assert_eq!(received(&plain), 1);
        let asked = only.1.load(Ordering::SeqCst);
        assert!(
            asked <= r.shard_count(),
            "asked {asked} times for 30 connections"
        );
        // An event the filter refuses reaches only the unfiltered connection.
        let refused = Arc::new(Event::new(
            EventId {
                epoch: crate::event::Epoch::random(),
                seq: 2,
            },
            crate::event::EventName::new("n").unwrap(),
            crate::event::Payload::text("?"),
        ));
        r.deliver(&refused, &t);
        fan_out(&r);
        assert!(filtered.iter().all(|c| drained(c).is_empty()));
        assert_eq!(
            drained(&plain).len(),
            "event  n ?\n".len() + refused.id.to_string().len()
        );
    }

    #[test]
    fn one_users_tabs_on_different_transports_each_get_an_event_once_in_their_format() {
        let r = registry(10, 10);
        let sse = conn_in(&crate::sse::frame::SSE, Some("alice"), &["news"]);
        let lines = conn_in(
            &crate::transport::test_format::LINES,
            Some("alice"),
            &["news"],
        );
        let lines2 = conn_in(&crate::transport::test_format::LINES, Some("alice"), &[]);
        for c in [&sse, &lines, &lines2] {
            r.register(c.clone()).unwrap();
        }
        let e = event(7);
        let t = Targets::new(vec![user("alice"), chan("news")], Fallback::None).unwrap();
        assert_eq!(r.deliver(&e, &t).delivered, 3);
        fan_out(&r);
        let id = e.id;
        assert_eq!(drained(&sse), format!("id: {id}\nevent: n\ndata: !\n\n"));
        let line = format!("event {id} n !\n");
        assert_eq!(drained(&lines), line);
        assert_eq!(drained(&lines2), line);
        assert!(e.is_encoded(crate::transport::slot::SSE));
        assert!(e.is_encoded(crate::transport::slot::TEST));
        // Heartbeats and the last words of a close go out in each connection's format too.
        r.push_all(&|f: &dyn WireFormat| {
            f.encode_heartbeat(crate::config::HeartbeatStyle::Comment, "{}")
        });
        assert_eq!(drained(&sse), ": heartbeat\n\n");
        assert_eq!(drained(&lines), "heartbeat {}\n");
        let bye = |f: &dyn WireFormat| {
            f.encode_control(None, &crate::event::EventName::system("disconnected"), "{}")
        };
        assert!(r.close(lines.id, DisconnectReason::ServerDisconnect, Some(&bye)));
        assert_eq!(drained(&lines), "control  disconnected {}\n");
        // Still one delivery per connection after a transport left.
        assert_eq!(r.deliver(&event(8), &t).delivered, 2);
    }
}
