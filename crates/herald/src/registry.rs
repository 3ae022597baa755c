//! The live connections of this node, indexed by id, by user and by channel, and the fan-out of
//! an encoded frame to the connections a [`Targets`] selects.
//!
//! One `RwLock` guards the three indices. Fan-out takes the read lock and only pushes into
//! outboxes (never waits on a client), so several publishes and heartbeats can fan out at once;
//! registering and removing take the write lock briefly. Connections found full during a fan-out
//! are evicted after the read lock is released.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use crate::engine::DeliveryReport;
use crate::error::{Error, Result};
use crate::metrics::{DisconnectReason, Metrics, RejectReason};
use crate::sse::outbox::{Outbox, PushError};
use crate::target::{ChannelName, ChannelPattern, ConnectionId, Fallback, Target, Targets, UserId};

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
    pub(crate) closer: Option<TransportCloser>,
    /// The client's address, for the per-address limit.
    pub(crate) peer_ip: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct Indices {
    by_id: HashMap<ConnectionId, Arc<Connection>>,
    by_user: HashMap<UserId, Vec<Arc<Connection>>>,
    by_channel: HashMap<ChannelName, HashMap<ConnectionId, Arc<Connection>>>,
    anonymous: usize,
    /// Connections per client address (only when a per-address limit is set).
    by_ip: HashMap<IpAddr, usize>,
    /// For channels with presence events: how many connections each user has in it.
    presence: HashMap<ChannelName, HashMap<UserId, usize>>,
}

/// A user's first connection to a presence channel opened, or their last one closed.
#[derive(Debug, Clone)]
pub(crate) struct PresenceChange {
    pub(crate) joined: bool,
    pub(crate) channel: ChannelName,
    pub(crate) user: UserId,
    pub(crate) username: Option<Arc<str>>,
}

/// Limits checked when a connection registers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_user: usize,
    pub(crate) max_connections_per_ip: Option<usize>,
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
    indices: RwLock<Indices>,
    limits: Limits,
    closing: AtomicBool,
    metrics: Arc<Metrics>,
    /// Channels whose subscribers get `presence:join` / `presence:leave`.
    presence_channels: Vec<ChannelPattern>,
    /// Where presence changes go (the hub's presence task publishes them).
    presence_tx: Option<mpsc::Sender<PresenceChange>>,
}

impl Registry {
    pub(crate) fn new(limits: Limits, metrics: Arc<Metrics>) -> Self {
        Registry {
            indices: RwLock::new(Indices::default()),
            limits,
            closing: AtomicBool::new(false),
            metrics,
            presence_channels: Vec::new(),
            presence_tx: None,
        }
    }

    /// Emits presence changes for the channels `patterns` match into `tx`.
    pub(crate) fn with_presence(
        mut self,
        patterns: Vec<ChannelPattern>,
        tx: mpsc::Sender<PresenceChange>,
    ) -> Self {
        self.presence_channels = patterns;
        self.presence_tx = Some(tx);
        self
    }

    fn has_presence_events(&self, channel: &ChannelName) -> bool {
        self.presence_channels.iter().any(|p| p.matches(channel))
    }

    fn emit(&self, changes: Vec<PresenceChange>) {
        let Some(tx) = &self.presence_tx else { return };
        for change in changes {
            if tx.try_send(change).is_err() {
                tracing::warn!("presence queue full; a presence event was dropped");
            }
        }
    }

    /// Adds a connection, unless a limit forbids it.
    pub(crate) fn register(&self, conn: Arc<Connection>) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            self.metrics.rejected(RejectReason::ShuttingDown);
            return Err(Error::ShuttingDown);
        }
        let mut ix = self.indices.write();
        if ix.by_id.len() >= self.limits.max_connections {
            drop(ix);
            self.metrics.rejected(RejectReason::MaxConnections);
            return Err(Error::TooManyConnections {
                max: self.limits.max_connections,
            });
        }
        if let (Some(max), Some(ip)) = (self.limits.max_connections_per_ip, conn.peer_ip) {
            if ix.by_ip.get(&ip).copied().unwrap_or(0) >= max {
                drop(ix);
                self.metrics.rejected(RejectReason::MaxConnectionsPerIp);
                return Err(Error::IpConnectionLimit { max });
            }
        }
        if let Some(user) = &conn.user {
            let held = ix.by_user.get(user).map_or(0, Vec::len);
            if held >= self.limits.max_connections_per_user {
                drop(ix);
                self.metrics.rejected(RejectReason::MaxConnectionsPerUser);
                return Err(Error::UserConnectionLimit {
                    max: self.limits.max_connections_per_user,
                });
            }
            ix.by_user
                .entry(user.clone())
                .or_default()
                .push(conn.clone());
        } else {
            ix.anonymous += 1;
        }
        if let (Some(_), Some(ip)) = (self.limits.max_connections_per_ip, conn.peer_ip) {
            *ix.by_ip.entry(ip).or_default() += 1;
        }
        let mut changes = Vec::new();
        for channel in conn.channels.iter() {
            ix.by_channel
                .entry(channel.clone())
                .or_default()
                .insert(conn.id, conn.clone());
            if let (Some(user), true) = (&conn.user, self.has_presence_events(channel)) {
                let count = ix
                    .presence
                    .entry(channel.clone())
                    .or_default()
                    .entry(user.clone())
                    .or_default();
                *count += 1;
                if *count == 1 {
                    changes.push(PresenceChange {
                        joined: true,
                        channel: channel.clone(),
                        user: user.clone(),
                        username: conn.username.clone(),
                    });
                }
            }
        }
        ix.by_id.insert(conn.id, conn);
        self.update_gauges(&ix);
        drop(ix);
        self.emit(changes);
        Ok(())
    }

    /// Removes a connection from every index. Returns it if it was still registered (the caller
    /// then closes its outbox); `None` means someone else removed it first.
    pub(crate) fn remove(
        &self,
        id: ConnectionId,
        reason: DisconnectReason,
    ) -> Option<Arc<Connection>> {
        let mut ix = self.indices.write();
        let conn = ix.by_id.remove(&id)?;
        match &conn.user {
            Some(user) => {
                if let Some(list) = ix.by_user.get_mut(user) {
                    list.retain(|c| c.id != id);
                    if list.is_empty() {
                        ix.by_user.remove(user);
                    }
                }
            }
            None => ix.anonymous -= 1,
        }
        if let Some(ip) = conn.peer_ip {
            if let Some(n) = ix.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    ix.by_ip.remove(&ip);
                }
            }
        }
        let mut changes = Vec::new();
        for channel in conn.channels.iter() {
            if let Some(members) = ix.by_channel.get_mut(channel) {
                members.remove(&id);
                if members.is_empty() {
                    ix.by_channel.remove(channel);
                }
            }
            let Some(user) = &conn.user else { continue };
            let Some(users) = ix.presence.get_mut(channel) else {
                continue;
            };
            if let Some(count) = users.get_mut(user) {
                *count -= 1;
                if *count == 0 {
                    users.remove(user);
                    changes.push(PresenceChange {
                        joined: false,
                        channel: channel.clone(),
                        user: user.clone(),
                        username: conn.username.clone(),
                    });
                }
            }
            if users.is_empty() {
                ix.presence.remove(channel);
            }
        }
        self.update_gauges(&ix);
        drop(ix);
        self.metrics.disconnected(reason);
        self.emit(changes);
        Some(conn)
    }

    fn update_gauges(&self, ix: &Indices) {
        self.metrics.connections.set(ix.by_id.len() as i64);
        self.metrics.users.set(ix.by_user.len() as i64);
        self.metrics.channels.set(ix.by_channel.len() as i64);
    }

    /// Removes a connection and ends its stream after `last` (a `disconnected` frame).
    pub(crate) fn close(
        &self,
        id: ConnectionId,
        reason: DisconnectReason,
        last: Option<Bytes>,
    ) -> bool {
        match self.remove(id, reason) {
            Some(conn) => {
                conn.outbox.close(last);
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

    /// Queues `frame` (the event with sequence number `seq`) to every connection `targets`
    /// selects, each at most once.
    pub(crate) fn deliver(&self, seq: u64, frame: &Bytes, targets: &Targets) -> DeliveryReport {
        let mut slow = Vec::new();
        let mut report = DeliveryReport::default();
        {
            let ix = self.indices.read();
            let mut push = |conn: &Arc<Connection>| match conn.outbox.push_event(seq, frame.clone())
            {
                Ok(()) => report.delivered += 1,
                Err(PushError::Full) => slow.push(conn.clone()),
                Err(PushError::Closed) => {}
            };
            if targets.is_broadcast() {
                ix.by_id.values().for_each(&mut push);
            } else {
                let matched = visit_targets(&ix, targets.list(), &mut push);
                if matched == 0 && targets.fallback() == Fallback::Broadcast {
                    ix.by_id.values().for_each(&mut push);
                    report.fell_back = true;
                }
            }
        }
        for conn in &slow {
            self.evict(conn);
        }
        self.metrics
            .events_delivered
            .inc_by(report.delivered as u64);
        report
    }

    /// Queues `frame` to every connection (heartbeats). Full outboxes are evicted.
    pub(crate) fn push_all(&self, frame: &Bytes) {
        let mut slow = Vec::new();
        {
            let ix = self.indices.read();
            for conn in ix.by_id.values() {
                if conn.outbox.push(frame.clone()) == Err(PushError::Full) {
                    slow.push(conn.clone());
                }
            }
        }
        for conn in &slow {
            self.evict(conn);
        }
    }

    /// The ids of the connections of `users` and of the listed `connections` that exist.
    pub(crate) fn select(
        &self,
        users: &[UserId],
        connections: &[ConnectionId],
    ) -> Vec<ConnectionId> {
        let ix = self.indices.read();
        let mut ids: Vec<ConnectionId> = users
            .iter()
            .filter_map(|u| ix.by_user.get(u))
            .flatten()
            .map(|c| c.id)
            .chain(
                connections
                    .iter()
                    .copied()
                    .filter(|id| ix.by_id.contains_key(id)),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every connection id.
    pub(crate) fn all_ids(&self) -> Vec<ConnectionId> {
        self.indices.read().by_id.keys().copied().collect()
    }

    /// Connections whose outbox is already closed (stale) and, when `timeout` is set, those
    /// open for longer than it.
    pub(crate) fn sweep_candidates(
        &self,
        now: Instant,
        timeout: Option<Duration>,
    ) -> (Vec<ConnectionId>, Vec<ConnectionId>) {
        let ix = self.indices.read();
        let mut stale = Vec::new();
        let mut expired = Vec::new();
        for conn in ix.by_id.values() {
            if conn.outbox.is_closed() {
                stale.push(conn.id);
            } else if timeout.is_some_and(|t| now.duration_since(conn.opened_at) >= t) {
                expired.push(conn.id);
            }
        }
        (stale, expired)
    }

    /// Stops accepting new connections.
    pub(crate) fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub(crate) fn counts(&self) -> RegistryCounts {
        let ix = self.indices.read();
        RegistryCounts {
            connections: ix.by_id.len(),
            users: ix.by_user.len(),
            anonymous_connections: ix.anonymous,
            channels: ix
                .by_channel
                .iter()
                .map(|(name, members)| (name.as_str().to_owned(), members.len()))
                .collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.indices.read().by_id.len()
    }

    /// The users connected to `channel`, with their connection counts, and how many anonymous
    /// connections it has.
    pub(crate) fn channel_presence(&self, channel: &ChannelName) -> (Vec<UserPresence>, usize) {
        let ix = self.indices.read();
        let mut users: HashMap<&UserId, UserPresence> = HashMap::new();
        let mut anonymous = 0;
        for conn in ix
            .by_channel
            .get(channel)
            .into_iter()
            .flat_map(HashMap::values)
        {
            let Some(user) = &conn.user else {
                anonymous += 1;
                continue;
            };
            let p = users.entry(user).or_insert_with(|| UserPresence {
                user: user.clone(),
                username: None,
                connections: 0,
                first_connected_at: conn.opened_at_wall,
            });
            p.connections += 1;
            p.first_connected_at = p.first_connected_at.min(conn.opened_at_wall);
            if p.username.is_none() {
                p.username = conn.username.clone();
            }
        }
        let mut list: Vec<UserPresence> = users.into_values().collect();
        list.sort_by(|a, b| {
            a.first_connected_at
                .cmp(&b.first_connected_at)
                .then(a.user.cmp(&b.user))
        });
        (list, anonymous)
    }

    /// The connections of `user`, oldest first.
    pub(crate) fn user_connections(&self, user: &UserId) -> Vec<ConnectionInfo> {
        let ix = self.indices.read();
        let mut list: Vec<ConnectionInfo> = ix
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .map(|c| ConnectionInfo {
                id: c.id,
                username: c.username.clone(),
                channels: c.channels.clone(),
                connected_at: c.opened_at_wall,
            })
            .collect();
        list.sort_by_key(|c| c.connected_at);
        list
    }
}

/// One user in a channel's presence list.
#[derive(Debug, Clone)]
pub struct UserPresence {
    /// The user.
    pub user: UserId,
    /// Their display name, if a connection gave one.
    pub username: Option<Arc<str>>,
    /// Their connections to the channel.
    pub connections: usize,
    /// When their oldest connection to the channel opened.
    pub first_connected_at: SystemTime,
}

/// One connection of a user.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Its id.
    pub id: ConnectionId,
    /// The display name it gave.
    pub username: Option<Arc<str>>,
    /// Its channels.
    pub channels: Arc<[ChannelName]>,
    /// When it opened.
    pub connected_at: SystemTime,
}

/// Calls `f` once for every connection the targets select and returns how many that was.
fn visit_targets(ix: &Indices, list: &[Target], f: &mut impl FnMut(&Arc<Connection>)) -> usize {
    let mut count = 0;
    if let [single] = list {
        // One target never selects a connection twice: no need to remember what was visited.
        let mut visit = |c: &Arc<Connection>| {
            count += 1;
            f(c);
        };
        match single {
            Target::User(u) => ix.by_user.get(u).into_iter().flatten().for_each(&mut visit),
            Target::Connection(id) => ix.by_id.get(id).into_iter().for_each(&mut visit),
            Target::Channel(c) => ix
                .by_channel
                .get(c)
                .into_iter()
                .flat_map(HashMap::values)
                .for_each(&mut visit),
            Target::Broadcast => ix.by_id.values().for_each(&mut visit),
        }
        return count;
    }
    let mut seen = HashSet::new();
    let mut visit = |c: &Arc<Connection>| {
        if seen.insert(c.id) {
            count += 1;
            f(c);
        }
    };
    for target in list {
        match target {
            Target::User(u) => ix.by_user.get(u).into_iter().flatten().for_each(&mut visit),
            Target::Connection(id) => ix.by_id.get(id).into_iter().for_each(&mut visit),
            Target::Channel(c) => ix
                .by_channel
                .get(c)
                .into_iter()
                .flat_map(HashMap::values)
                .for_each(&mut visit),
            Target::Broadcast => ix.by_id.values().for_each(&mut visit),
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    use crate::sse::outbox::Drained;

    fn registry(max: usize, per_user: usize) -> Registry {
        Registry::new(
            Limits {
                max_connections: max,
                max_connections_per_user: per_user,
                max_connections_per_ip: None,
            },
            Arc::new(Metrics::new()),
        )
    }

    fn conn(user: Option<&str>, channels: &[&str]) -> Arc<Connection> {
        Arc::new(Connection {
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
        })
    }

    fn received(c: &Connection) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        match c.outbox.poll_drain(&mut cx) {
            Poll::Ready(Drained::Data(d)) => d.iter().filter(|b| **b == b'!').count(),
            _ => 0,
        }
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
        let frame = Bytes::from_static(b"!");
        let t = Targets::new(
            vec![user("alice"), chan("news"), Target::Connection(a1.id)],
            Fallback::None,
        )
        .unwrap();
        assert_eq!(r.deliver(1, &frame, &t).delivered, 3);
        assert_eq!([&a1, &a2, &b, &anon].map(|c| received(c)), [1, 1, 1, 0]);
        assert_eq!(r.deliver(2, &frame, &Targets::broadcast()).delivered, 4);
    }

    #[test]
    fn fallback_broadcasts_only_when_nothing_matched() {
        let r = registry(100, 10);
        let a = conn(Some("alice"), &[]);
        r.register(a.clone()).unwrap();
        let frame = Bytes::from_static(b"!");
        let nobody = Targets::new(vec![user("carol")], Fallback::None).unwrap();
        assert_eq!(r.deliver(1, &frame, &nobody), DeliveryReport::default());
        let nobody = Targets::new(vec![user("carol")], Fallback::Broadcast).unwrap();
        assert_eq!(
            r.deliver(2, &frame, &nobody),
            DeliveryReport {
                delivered: 1,
                fell_back: true
            }
        );
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
        assert!(c.joined && c.channel.as_str() == "room:1" && c.user.as_str() == "alice");
        assert!(
            rx.try_recv().is_err(),
            "one join for two tabs, none for anonymous or 'other'"
        );
        let (users, anonymous) = r.channel_presence(&ChannelName::new("room:1").unwrap());
        assert_eq!((users.len(), users[0].connections, anonymous), (1, 2, 1));
        r.remove(tab1.id, DisconnectReason::ClientClosed);
        assert!(rx.try_recv().is_err(), "alice still has a tab open");
        r.remove(tab2.id, DisconnectReason::ClientClosed);
        let c = rx.try_recv().unwrap();
        assert!(!c.joined && c.user.as_str() == "alice");
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
            assert_eq!(r.deliver(seq, &Bytes::from_static(b"!"), &t).delivered, 2);
            assert_eq!(received(&fast), 1);
        }
        // slow's outbox (capacity 4) is now full: the next event evicts it.
        assert_eq!(r.deliver(5, &Bytes::from_static(b"!"), &t).delivered, 1);
        assert_eq!(received(&fast), 1);
        assert_eq!(r.counts().connections, 1);
        assert!(slow.outbox.is_closed());
    }
}
