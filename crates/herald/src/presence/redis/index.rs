//! This node's presence as the Redis store keeps it: the routing index (users, channels and
//! connection ids with their counts, which the publish script reads to count `delivered` and to
//! decide `fallback: broadcast` for the whole cluster), the figures behind cluster stats, and
//! the users of presence channels.
//!
//! The index is kept up to date by the registry itself, which reports every join and leave as
//! it happens ([`PresenceFeed`], called under the registry's lock, so the index sees a
//! connection's join before its leave). Nothing ever copies the registry. Besides the current
//! state, the index remembers which users, channels and connection ids changed since Redis was
//! last written: every `presence_interval` the store takes those [`Writes`] (only the current
//! count of each key that changed, whatever happened in between) and writes them in one
//! pipeline. After Redis lost the keys (a restart, a long stall past their TTL) or a write
//! failed, the store takes a full rewrite instead, built from the index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use ::redis::{Pipeline, RedisResult};
use parking_lot::Mutex;

use crate::broker::redis::keys::Keys;
use crate::presence::{ConnectionInfo, PresenceFeed, PresenceMember, PresenceUpdate};
use crate::target::{ChannelName, ConnectionId, UserId};

/// Most arguments in one command of a write.
const CHUNK: usize = 512;

/// This node's connections, indexed the way Redis holds them, and what changed since the last
/// write to Redis.
#[derive(Debug)]
pub(crate) struct Index {
    connections: HashSet<ConnectionId>,
    /// User → connections (no entry at zero).
    users: HashMap<UserId, usize>,
    /// Channel → subscribers (no entry at zero).
    channels: HashMap<ChannelName, usize>,
    /// Connections without a user.
    anonymous: usize,
    /// (channel, user) of every presence channel's user on this node → the display name
    /// their first connection gave (what the registry's presence changes say).
    members: HashMap<(ChannelName, UserId), Option<Arc<str>>>,
    /// Changed since the last [`Index::take_writes`].
    changed: Changed,
    /// The next write must rewrite everything: nothing was written yet, or a write failed.
    rewrite: bool,
}

/// The keys whose value changed since the last write.
#[derive(Debug, Default)]
struct Changed {
    users: HashSet<UserId>,
    channels: HashSet<ChannelName>,
    /// Connections that joined since (and are still here).
    added: HashSet<ConnectionId>,
    /// Connections that left since, and were there at the last write.
    removed: HashSet<ConnectionId>,
}

/// This node's figures, for its entry in the cluster stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Figures {
    pub(crate) connections: usize,
    pub(crate) users: usize,
    pub(crate) anonymous: usize,
    pub(crate) channels: usize,
}

/// What to write to this node's routing keys: the current count of every user and channel
/// that changed (zero: delete the field), the connection ids to add and to remove; with `reset`,
/// the keys are deleted first and the lists hold everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Writes {
    pub(crate) reset: bool,
    pub(crate) users: Vec<(UserId, usize)>,
    pub(crate) channels: Vec<(ChannelName, usize)>,
    pub(crate) added: Vec<ConnectionId>,
    pub(crate) removed: Vec<ConnectionId>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            connections: HashSet::new(),
            users: HashMap::new(),
            channels: HashMap::new(),
            anonymous: 0,
            members: HashMap::new(),
            changed: Changed::default(),
            rewrite: true,
        }
    }
}

impl Index {
    /// `connection` joined; `updates` are the presence changes it made.
    fn join(&mut self, connection: &ConnectionInfo, updates: &[PresenceUpdate]) {
        if !self.connections.insert(connection.id) {
            return;
        }
        self.changed.added.insert(connection.id);
        match &connection.user {
            Some(user) => {
                *self.users.entry(user.clone()).or_default() += 1;
                self.changed.users.insert(user.clone());
            }
            None => self.anonymous += 1,
        }
        for channel in connection.channels.iter() {
            *self.channels.entry(channel.clone()).or_default() += 1;
            self.changed.channels.insert(channel.clone());
        }
        for u in updates.iter().filter(|u| u.joined) {
            let m = &u.member;
            self.members
                .insert((m.channel.clone(), m.user.clone()), m.username.clone());
        }
    }

    /// `connection` left; `updates` are the presence changes it made.
    fn leave(&mut self, connection: &ConnectionInfo, updates: &[PresenceUpdate]) {
        if !self.connections.remove(&connection.id) {
            return;
        }
        // Joined and left between two writes: Redis never needs to hear of it.
        if !self.changed.added.remove(&connection.id) {
            self.changed.removed.insert(connection.id);
        }
        match &connection.user {
            Some(user) => {
                decrement(&mut self.users, user);
                self.changed.users.insert(user.clone());
            }
            None => self.anonymous = self.anonymous.saturating_sub(1),
        }
        for channel in connection.channels.iter() {
            decrement(&mut self.channels, channel);
            self.changed.channels.insert(channel.clone());
        }
        for u in updates.iter().filter(|u| !u.joined) {
            self.members
                .remove(&(u.member.channel.clone(), u.member.user.clone()));
        }
    }

    pub(crate) fn figures(&self) -> Figures {
        Figures {
            connections: self.connections.len(),
            users: self.users.len(),
            anonymous: self.anonymous,
            channels: self.channels.len(),
        }
    }

    /// Every user of a presence channel on this node.
    pub(crate) fn members(&self) -> Vec<PresenceMember> {
        self.members
            .iter()
            .map(|((channel, user), username)| PresenceMember {
                channel: channel.clone(),
                user: user.clone(),
                username: username.clone(),
            })
            .collect()
    }

    /// What changed since the last call (everything, when a rewrite is due), and forgets it:
    /// the caller writes it, or calls [`Index::rewrite`] when it could not.
    pub(crate) fn take_writes(&mut self) -> Writes {
        if self.rewrite {
            return self.take_all();
        }
        let changed = std::mem::take(&mut self.changed);
        Writes {
            reset: false,
            users: changed
                .users
                .into_iter()
                .map(|u| {
                    let n = self.users.get(&u).copied().unwrap_or(0);
                    (u, n)
                })
                .collect(),
            channels: changed
                .channels
                .into_iter()
                .map(|c| {
                    let n = self.channels.get(&c).copied().unwrap_or(0);
                    (c, n)
                })
                .collect(),
            added: changed.added.into_iter().collect(),
            removed: changed.removed.into_iter().collect(),
        }
    }

    /// Everything, to write from scratch (Redis lost the keys, or a write failed), and forgets
    /// what changed since the last write.
    pub(crate) fn take_all(&mut self) -> Writes {
        self.rewrite = false;
        self.changed = Changed::default();
        Writes {
            reset: true,
            users: self.users.iter().map(|(u, n)| (u.clone(), *n)).collect(),
            channels: self.channels.iter().map(|(c, n)| (c.clone(), *n)).collect(),
            added: self.connections.iter().copied().collect(),
            removed: Vec::new(),
        }
    }

    /// The last writes taken may not have reached Redis: the next write rewrites everything.
    pub(crate) fn rewrite(&mut self) {
        self.rewrite = true;
    }
}

/// The registry reports to the index directly: a few hash map updates under this short mutex,
/// inside the registry's lock, never awaiting (see [`PresenceFeed`]).
impl PresenceFeed for Mutex<Index> {
    fn joined(&self, connection: &ConnectionInfo, updates: &[PresenceUpdate]) {
        self.lock().join(connection, updates);
    }

    fn left(&self, connection: &ConnectionInfo, updates: &[PresenceUpdate]) {
        self.lock().leave(connection, updates);
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Writes {
    pub(crate) fn is_empty(&self) -> bool {
        !self.reset
            && self.users.is_empty()
            && self.channels.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
    }

    /// Adds to `pipe` the commands that make these writes to this node's keys.
    pub(crate) fn add_to(&self, pipe: &mut Pipeline, keys: &Keys) {
        let (users, channels, connections) = (
            keys.this_users(),
            keys.this_channels(),
            keys.this_connections(),
        );
        if self.reset {
            pipe.del(&[&users, &channels, &connections]).ignore();
        }
        counts(pipe, &users, &self.users, |u| u.as_str());
        counts(pipe, &channels, &self.channels, |c| c.as_str());
        let added: Vec<String> = self.added.iter().map(ToString::to_string).collect();
        for chunk in added.chunks(CHUNK) {
            pipe.sadd(&connections, chunk).ignore();
        }
        let removed: Vec<String> = self.removed.iter().map(ToString::to_string).collect();
        for chunk in removed.chunks(CHUNK) {
            pipe.srem(&connections, chunk).ignore();
        }
    }
}

/// `HSET` of the non-zero counts, `HDEL` of the zero ones.
fn counts<K>(pipe: &mut Pipeline, key: &str, list: &[(K, usize)], name: impl Fn(&K) -> &str) {
    let set: Vec<(&str, usize)> = list
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (name(k), *n))
        .collect();
    for chunk in set.chunks(CHUNK) {
        pipe.hset_multiple(key, chunk).ignore();
    }
    let gone: Vec<&str> = list
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(k, _)| name(k))
        .collect();
    for chunk in gone.chunks(CHUNK) {
        pipe.hdel(key, chunk).ignore();
    }
}

/// Runs `pipe` (if it holds anything).
pub(crate) async fn run(pipe: &Pipeline, conn: &mut MultiplexedConnection) -> RedisResult<()> {
    if pipe.is_empty() {
        return Ok(());
    }
    pipe.query_async::<()>(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{DisconnectReason, Metrics};
    use crate::registry::{Connection, Limits, Registry};
    use crate::transport::outbox::Outbox;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;
    use std::time::{Instant, SystemTime};

    /// What Redis holds of one node's routing keys, as the writes leave it.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Model {
        users: HashMap<String, usize>,
        channels: HashMap<String, usize>,
        connections: HashSet<String>,
    }

    impl Model {
        /// What Redis should hold for these connections, counted from scratch.
        fn of(connections: &[ConnectionInfo]) -> Model {
            let mut m = Model::default();
            for c in connections {
                m.connections.insert(c.id.to_string());
                if let Some(u) = &c.user {
                    *m.users.entry(u.as_str().to_owned()).or_default() += 1;
                }
                for ch in c.channels.iter() {
                    *m.channels.entry(ch.as_str().to_owned()).or_default() += 1;
                }
            }
            m
        }

        /// Carries out `writes` as the pipeline would.
        fn apply(&mut self, writes: &Writes) {
            if writes.reset {
                *self = Model::default();
            }
            for (u, n) in &writes.users {
                match n {
                    0 => self.users.remove(u.as_str()),
                    n => self.users.insert(u.as_str().to_owned(), *n),
                };
            }
            for (c, n) in &writes.channels {
                match n {
                    0 => self.channels.remove(c.as_str()),
                    n => self.channels.insert(c.as_str().to_owned(), *n),
                };
            }
            for id in &writes.added {
                self.connections.insert(id.to_string());
            }
            for id in &writes.removed {
                self.connections.remove(&id.to_string());
            }
        }
    }

    fn info(c: &Connection) -> ConnectionInfo {
        ConnectionInfo {
            id: c.id,
            user: c.user.clone(),
            username: c.username.clone(),
            channels: c.channels.clone(),
            connected_at: c.opened_at_wall,
            transport: c.format.name(),
            session_id: None,
            metadata: None,
        }
    }

    /// A registry whose joins and leaves feed `index`, with presence events in `room:*`.
    fn registry(index: Arc<Mutex<Index>>) -> Registry {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx); // Presence events are not under test: the registry drops them.
        Registry::with_shards(
            Limits {
                max_connections: 1_000_000,
                max_connections_per_user: 1_000_000,
                max_connections_per_ip: None,
            },
            Arc::new(Metrics::new()),
            3,
        )
        .with_presence(vec!["room:*".parse().unwrap()], tx)
        .with_presence_feed(index)
    }

    const USERS: [&str; 6] = ["alice", "bob", "carol", "dan", "eve", "zoë"];
    const CHANNELS: [&str; 5] = ["room:1", "room:2", "news", "x", "y"];

    /// A connection of a random user (or none), with random channels and display name.
    fn random_connection(rng: &mut StdRng) -> Arc<Connection> {
        let user = (rng.random_range(0..5) > 0)
            .then(|| UserId::new(USERS[rng.random_range(0..USERS.len())]).unwrap());
        let mut channels: Vec<ChannelName> = CHANNELS
            .iter()
            .filter(|_| rng.random_bool(0.4))
            .map(|c| ChannelName::new(c).unwrap())
            .collect();
        channels.sort_unstable();
        let username: Option<Arc<str>> = match rng.random_range(0..3) {
            0 => None,
            n => Some(format!("name {n}").into()),
        };
        Arc::new(Connection {
            id: ConnectionId::random(),
            user,
            username,
            channels: channels.into(),
            opened_at: Instant::now(),
            opened_at_wall: SystemTime::now(),
            outbox: Outbox::new(4, 1 << 16),
            format: &crate::transport::test_format::LINES,
            closer: None,
            peer_ip: None,
            session_id: None,
            metadata: None,
            active: Default::default(),
            last_active_ms: Default::default(),
            filter: None,
        })
    }

    fn infos(open: &[Arc<Connection>]) -> Vec<ConnectionInfo> {
        open.iter().map(|c| info(c)).collect()
    }

    fn members(list: Vec<PresenceMember>) -> BTreeSet<(String, String, Option<String>)> {
        list.into_iter()
            .map(|m| {
                (
                    m.channel.as_str().to_owned(),
                    m.user.as_str().to_owned(),
                    m.username.as_deref().map(str::to_owned),
                )
            })
            .collect()
    }

    /// The index equals one built from scratch from the `open` connections (and agrees with
    /// the registry's own counts), and so does what its writes leave in Redis.
    fn check(
        registry: &Registry,
        open: &[Arc<Connection>],
        index: &Mutex<Index>,
        redis: &mut Model,
        seed: u64,
    ) {
        let now = infos(open);
        let scratch = Model::of(&now);
        let counts = registry.counts();
        let ix = index.lock();
        let figures = ix.figures();
        assert_eq!(
            (figures.connections, figures.users, figures.anonymous),
            (
                counts.connections,
                counts.users,
                counts.anonymous_connections
            ),
            "seed {seed}"
        );
        assert_eq!(figures.channels, counts.channels.len(), "seed {seed}");
        assert_eq!(figures.connections, now.len(), "seed {seed}");
        assert_eq!(figures.users, scratch.users.len(), "seed {seed}");
        assert_eq!(figures.channels, scratch.channels.len(), "seed {seed}");
        assert_eq!(
            figures.anonymous,
            now.iter().filter(|c| c.user.is_none()).count(),
            "seed {seed}"
        );
        assert_eq!(
            members(ix.members()),
            members(registry.presence_members()),
            "seed {seed}"
        );
        drop(ix);
        redis.apply(&index.lock().take_writes());
        assert_eq!(*redis, scratch, "seed {seed}");
    }

    /// Random joins and leaves, writes now and then (some of them lost, as when a write fails
    /// or Redis loses its data): the index always equals one built from scratch from the
    /// registry's connections, and its writes always leave Redis holding exactly that.
    #[test]
    fn the_index_stays_equal_to_one_built_from_scratch() {
        for seed in 0..16 {
            let mut rng = StdRng::seed_from_u64(seed);
            let index = Arc::new(Mutex::new(Index::default()));
            let registry = registry(index.clone());
            let mut open: Vec<Arc<Connection>> = Vec::new();
            let mut redis = Model::default();
            for _ in 0..3000 {
                match rng.random_range(0..100) {
                    0..55 => {
                        let c = random_connection(&mut rng);
                        registry.register(c.clone()).unwrap();
                        open.push(c);
                    }
                    55..93 if !open.is_empty() => {
                        let c = open.swap_remove(rng.random_range(0..open.len()));
                        registry.remove(c.id, DisconnectReason::ClientClosed);
                    }
                    93..97 => {
                        redis.apply(&index.lock().take_writes());
                        assert_eq!(redis, Model::of(&infos(&open)), "seed {seed}");
                    }
                    97 => {
                        // A write that failed: taken, never applied.
                        let _ = index.lock().take_writes();
                        index.lock().rewrite();
                    }
                    98 => {
                        // Redis lost the keys: the store finds out (TOUCH) and writes it all.
                        redis = Model::default();
                        redis.apply(&index.lock().take_all());
                    }
                    _ => check(&registry, &open, &index, &mut redis, seed),
                }
            }
            check(&registry, &open, &index, &mut redis, seed);
            for c in open.drain(..) {
                registry.remove(c.id, DisconnectReason::ClientClosed);
            }
            check(&registry, &open, &index, &mut redis, seed);
            assert!(redis.connections.is_empty() && redis.users.is_empty());
        }
    }

    /// Joins and leaves from several threads at once reach the index in an order it can
    /// follow (the registry reports them under its lock).
    #[test]
    fn concurrent_joins_and_leaves_keep_the_index_exact() {
        let index = Arc::new(Mutex::new(Index::default()));
        let registry = Arc::new(registry(index.clone()));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(100 + t);
                    let mut open: Vec<Arc<Connection>> = Vec::new();
                    for _ in 0..2000 {
                        if open.is_empty() || rng.random_bool(0.55) {
                            let c = random_connection(&mut rng);
                            registry.register(c.clone()).unwrap();
                            open.push(c);
                        } else {
                            let c = open.swap_remove(rng.random_range(0..open.len()));
                            registry.remove(c.id, DisconnectReason::ClientClosed);
                        }
                    }
                    open
                })
            })
            .collect();
        let mut redis = Model::default();
        for _ in 0..50 {
            redis.apply(&index.lock().take_writes());
            std::thread::yield_now();
        }
        let open: Vec<Arc<Connection>> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        check(&registry, &open, &index, &mut redis, 100);
    }

    #[test]
    fn writes_hold_only_what_changed() {
        let index = Mutex::new(Index::default());
        let c = |user: &str, channels: &[&str]| ConnectionInfo {
            id: ConnectionId::random(),
            user: Some(UserId::new(user).unwrap()),
            username: None,
            channels: channels
                .iter()
                .map(|c| ChannelName::new(c).unwrap())
                .collect::<Vec<_>>()
                .into(),
            connected_at: SystemTime::now(),
            transport: "sse",
            session_id: None,
            metadata: None,
        };
        let a = c("alice", &["news"]);
        index.joined(&a, &[]);
        let first = index.lock().take_writes();
        assert!(first.reset, "the first write is a full one");
        assert!(index.lock().take_writes().is_empty());
        // A tab that opens and closes between two writes costs Redis nothing.
        let b = c("bob", &["x"]);
        index.joined(&b, &[]);
        index.left(&b, &[]);
        let w = index.lock().take_writes();
        assert!(w.added.is_empty() && w.removed.is_empty(), "{w:?}");
        assert_eq!(w.users, vec![(UserId::new("bob").unwrap(), 0)]);
        index.left(&a, &[]);
        let w = index.lock().take_writes();
        assert_eq!(w.removed, vec![a.id]);
        assert_eq!(w.channels, vec![(ChannelName::new("news").unwrap(), 0)]);
    }
}
