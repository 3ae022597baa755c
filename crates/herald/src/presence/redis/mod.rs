//! The Redis presence store: this node's presence in Redis, and presence answers for the whole
//! cluster. It shares the broker's link to Redis ([`Shared`]: connections, supervisor, keys,
//! scripts).
//!
//! ## What it writes
//!
//! - **The routing index** ([`index`]): this node's users, channels and connection ids with
//!   their counts, and its figures (`<prefix>:node:<id>`, see [`keys`]).
//!   The broker's publish script reads every live node's to count `delivered` and decide
//!   `fallback: broadcast` for the whole cluster; cluster stats read the figures. The store
//!   keeps the index itself, from the joins and leaves the registry reports as they happen
//!   ([`PresenceStore::feed`]); every `presence_interval` it writes what changed since its last
//!   write and renews the keys' TTL, so a dead node drops out within `node_ttl`. After Redis
//!   lost the keys (a restart, a stall past their TTL), after a failed write and on a new
//!   session, it writes them all again, from the index: nothing copies the registry.
//! - **Presence events** (`presence:join` / `presence:leave`) mean the user's first connection
//!   to the channel on any node and their last. Each node records in Redis which (channel,
//!   user) it holds, and Redis counts per (channel, user) the nodes that hold it; one script
//!   updates both and appends the event to the stream only on 0 -> 1 and 1 -> 0 nodes, so two
//!   nodes racing cannot both announce (see [`scripts`](crate::broker::redis::scripts)). A node
//!   whose reports stop for `node_ttl` is taken out by the next live node's report (its users
//!   get their leave where it was their last node); a node that comes back, or finds Redis
//!   emptied, writes its presence again (the index knows its presence channels' users). A change
//!   that failed to reach Redis is made good at the next report (which then compares the
//!   index's users with what Redis holds); one the hub dropped (a full presence queue) within
//!   [`PRESENCE_CHECK_EVERY`] reports, when the node compares anyway.
//! - **Queries** (channel presence, a user's connections) go to every node over the control
//!   channel; each answers from its own registry.
//!
//! Every write to Redis of this node's presence (a report, an announced change, the leave at
//! shutdown) happens under one lock, one at a time, so that they reach Redis in order and none
//! follows the leave.

mod index;
mod members;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{RedisError, RedisResult, Value};
use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::index::Index;
use super::{
    ChannelPresence, ClusterStats, ConnectionQuery, LocalPresence, NodeConnection, NodeStats,
    PresenceFeed, PresenceMember, PresenceStore, PresenceUpdate, PresenceUser,
};
use crate::broker::redis::wire::{self, Op};
use crate::broker::redis::{epoch_of, flag, keys, millis, number, pairs, text, Commands, Shared};
use crate::broker::{Broker, Publication, Published};
use crate::clock;
use crate::engine::EngineError;
use crate::event::{Epoch, Event, EventId};
use crate::lifecycle::Lifecycle;
use crate::target::{ChannelName, UserId};

/// Most presence fields of dead nodes one report takes out.
const REAP_BUDGET: usize = 2000;
/// Every how many reports a node compares its presence with what it wrote to Redis, when it
/// has no reason to doubt it.
const PRESENCE_CHECK_EVERY: u64 = 30;
/// Most presence changes one report makes.
const PRESENCE_SYNC_BUDGET: usize = 4096;
/// Most presence changes in one script call.
const PRESENCE_BATCH: usize = 256;
/// Most user entries (summed over the live nodes) the cluster stats read to count distinct
/// users ([`ClusterStats::unique_users`]), in one script: about a microsecond each (measured:
/// 99 000 entries on three nodes took 90 to 120 ms), during which Redis serves nobody else.
/// Beyond, the count is left out.
const UNIQUE_USERS_SCAN: usize = 20_000;
/// How long a distinct-user count is reused while the summed entries stay the same (the stats
/// stream asks every second).
const UNIQUE_USERS_REUSE: Duration = Duration::from_secs(5);

/// Keeps this node's presence in Redis and answers presence for the whole cluster. Made by
/// [`RedisBroker::presence`](crate::broker::RedisBroker::presence), on the broker's link.
pub struct RedisPresence {
    shared: Arc<Shared>,
    state: Arc<State>,
    /// The report task and the token it stops on, once a hub started the store
    /// ([`PresenceStore::start`]); taken by [`PresenceStore::shutdown`].
    task: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    /// The last distinct-user count of the cluster stats: when, over how many summed user
    /// entries, and the count.
    unique_users: Mutex<Option<(tokio::time::Instant, u64, u64)>>,
}

impl fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.shared.options.prefix)
            .field("node_id", &self.shared.options.node_id)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        if let Some((token, _)) = &*self.task.lock() {
            token.cancel();
        }
    }
}

/// What the store and its report task share.
#[derive(Debug, Default)]
struct State {
    /// This node's presence, kept by the registry's joins and leaves (this is the feed).
    index: Arc<Mutex<Index>>,
    /// Held across every presence write to Redis (see the module docs).
    writer: tokio::sync::Mutex<Writer>,
    /// Reports since the start, to compare this node's presence with Redis now and then.
    checks: AtomicU64,
    /// The last report did not make all of this node's presence changes.
    unfinished: AtomicBool,
}

/// What this node last wrote to Redis.
#[derive(Debug, Default)]
struct Writer {
    /// The (channel, user) fields of this node's presence hash as this node last wrote them;
    /// `None` when unknown (read it from Redis).
    held: Option<HashSet<String>>,
    /// The session (see [`Commands::session`]) of the last report: a new one may be a Redis
    /// that lost the keys.
    session: u64,
    /// The node is leaving: nothing is written any more.
    leaving: bool,
}

impl RedisPresence {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        RedisPresence {
            shared,
            state: Arc::new(State::default()),
            task: Mutex::new(None),
            unique_users: Mutex::new(None),
        }
    }

    /// This node's registry, or [`EngineError::NotRunning`] before [`PresenceStore::start`].
    fn local(&self) -> Result<&Arc<dyn LocalPresence>, EngineError> {
        self.shared.local.get().ok_or(EngineError::NotRunning)
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    fn feed(&self) -> Option<Arc<dyn PresenceFeed>> {
        Some(self.state.index.clone())
    }

    fn start(&self, local: Arc<dyn LocalPresence>, lifecycle: &Lifecycle) {
        // The registry answers other nodes' queries; the index serves the reports.
        if self.shared.local.set(local).is_err() {
            return; // One store serves one hub.
        }
        let token = lifecycle.token().clone();
        let task = lifecycle.spawn(report_loop(
            self.shared.clone(),
            self.state.clone(),
            token.clone(),
        ));
        *self.task.lock() = Some((token, task));
    }

    async fn announce(
        &self,
        update: &PresenceUpdate,
        publication: Publication,
        _broker: &dyn Broker,
    ) -> Result<Option<Published>, EngineError> {
        // The script appends the event to the stream the broker reads, in the same step that
        // decides whether the change is news for the cluster: the broker is not needed.
        let shared = &self.shared;
        self.local()?;
        let mut link = shared.commands()?;
        let stored = Event::stored_form(&publication.name, &publication.payload);
        let mut writer = self.state.writer.lock().await;
        if writer.leaving {
            return Err(EngineError::NotRunning);
        }
        let changes = [(update.joined, &update.member, stored)];
        let call = presence_call(shared, &changes);
        let reply: Vec<Value> = match shared
            .run(link.session, call.invoke_async(&mut link.conn))
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                // It may have been applied: read what Redis holds at the next report.
                writer.held = None;
                return Err(e);
            }
        };
        if let Some(held) = writer.held.as_mut() {
            let field = members::member_field(&update.member);
            if update.joined {
                held.insert(field);
            } else {
                held.remove(&field);
            }
        }
        let bad = || EngineError::Unavailable("unexpected answer from the presence script".into());
        let epoch = reply.first().and_then(epoch_of).ok_or_else(bad)?;
        let seq = reply.get(1).and_then(number).ok_or_else(bad)?;
        Ok((seq > 0).then_some(Published {
            id: EventId { epoch, seq },
            delivered: 0,
            replayed: false,
        }))
    }

    async fn cluster_stats(&self) -> Result<Option<ClusterStats>, EngineError> {
        let shared = &self.shared;
        let mut link = shared.commands()?;
        let keys = &shared.keys;
        // A count of the same summed entries, recent enough, is not made again.
        let known = *self.unique_users.lock();
        let known = known.filter(|(at, _, _)| at.elapsed() < UNIQUE_USERS_REUSE);
        let mut call = shared.scripts.nodes.prepare_invoke();
        call.key(keys.nodes())
            .arg(millis(shared.options.node_ttl))
            .arg(keys.node_prefix())
            .arg(keys::CHANNELS)
            .arg(keys::USERS)
            .arg(UNIQUE_USERS_SCAN)
            .arg(known.map_or(-1, |(_, fields, _)| fields as i64));
        let reply: Vec<Value> = shared
            .run(link.session, call.invoke_async(&mut link.conn))
            .await?;
        let (unique, reply) = match reply.as_slice() {
            [distinct, fields, rest @ ..] => {
                let distinct = crate::broker::redis::signed(distinct);
                let fields = number(fields).unwrap_or(0);
                let unique = match distinct {
                    Some(-2) => known.map(|(_, _, n)| n),
                    Some(n) if n >= 0 => {
                        let n = n as u64;
                        *self.unique_users.lock() = Some((tokio::time::Instant::now(), fields, n));
                        Some(n)
                    }
                    _ => None,
                };
                (unique, rest)
            }
            _ => (None, &reply[..]),
        };
        let mut stats = ClusterStats {
            node_id: shared.options.node_id.clone(),
            connections: 0,
            users: 0,
            unique_users: unique.map(|n| n as usize),
            anonymous_connections: 0,
            channels: BTreeMap::new(),
            events_delivered: 0,
            nodes: Vec::new(),
        };
        for node in reply.chunks_exact(3) {
            let Some(id) = text(&node[0]) else { continue };
            let summary = pairs(&node[1]);
            let get = |name: &str| {
                summary
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let channels = pairs(&node[2]);
            let entry = NodeStats {
                node_id: id,
                connections: get("connections") as usize,
                users: get("users") as usize,
                anonymous_connections: get("anonymous") as usize,
                channels: get("channels") as usize,
                events_delivered: get("delivered"),
                reports_connections: get("presence") == 1,
                started_at: clock::rfc3339(wire::from_ms(get("started"))),
                updated_at: clock::rfc3339(wire::from_ms(get("updated"))),
            };
            stats.connections += entry.connections;
            stats.users += entry.users;
            stats.anonymous_connections += entry.anonymous_connections;
            stats.events_delivered += entry.events_delivered;
            for (channel, count) in channels {
                *stats.channels.entry(channel).or_default() += count.parse().unwrap_or(0);
            }
            stats.nodes.push(entry);
        }
        stats.nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(Some(stats))
    }

    async fn channel_presence(
        &self,
        channel: &ChannelName,
    ) -> Result<ChannelPresence, EngineError> {
        self.local()?;
        let replies = self
            .shared
            .request(Op::ChannelPresence {
                channel: channel.as_str().to_owned(),
            })
            .await?;
        let mut users: HashMap<String, PresenceUser> = HashMap::new();
        let mut anonymous = 0;
        for reply in replies {
            anonymous += reply.anonymous;
            for u in reply.users {
                let Ok(user) = UserId::new(&u.user) else {
                    continue;
                };
                let at = wire::from_ms(u.first_ms);
                let entry = users.entry(u.user).or_insert_with(|| PresenceUser {
                    user,
                    username: None,
                    connections: 0,
                    first_connected_at: at,
                });
                entry.connections += u.connections;
                if at <= entry.first_connected_at || entry.username.is_none() {
                    entry.first_connected_at = entry.first_connected_at.min(at);
                    if let Some(name) = u.username {
                        entry.username = Some(name.into());
                    }
                }
            }
        }
        let mut users: Vec<PresenceUser> = users.into_values().collect();
        users.sort_by(|a, b| {
            a.first_connected_at
                .cmp(&b.first_connected_at)
                .then_with(|| a.user.cmp(&b.user))
        });
        Ok(ChannelPresence {
            users,
            anonymous_connections: anonymous,
        })
    }

    async fn user_connections(&self, user: &UserId) -> Result<Vec<NodeConnection>, EngineError> {
        self.local()?;
        let replies = self
            .shared
            .request(Op::UserConnections {
                user: user.as_str().to_owned(),
            })
            .await?;
        Ok(node_connections(replies))
    }

    async fn connections(
        &self,
        query: &ConnectionQuery,
    ) -> Result<Vec<NodeConnection>, EngineError> {
        self.local()?;
        let replies = self
            .shared
            .request(Op::Connections {
                transport: query.transport.clone(),
                channels: query
                    .channels
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
            })
            .await?;
        Ok(node_connections(replies))
    }

    async fn shutdown(&self) {
        let shared = &self.shared;
        let task = self.task.lock().take();
        if let Some((token, task)) = task {
            token.cancel();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("the Redis presence store's report did not stop within 5s");
            }
        }
        let mut writer = self.state.writer.lock().await;
        if std::mem::replace(&mut writer.leaving, true) {
            return;
        }
        // Leave the cluster now rather than when the TTL runs out.
        let Ok(Commands { mut conn, .. }) = shared.commands() else {
            tracing::debug!("Redis is unreachable: this node's presence expires with its TTL");
            return;
        };
        let keys = &shared.keys;
        // This node's users leave (where it was their last node).
        let reap = tokio::time::timeout(
            shared.options.command_timeout,
            reap(shared, &mut conn, true),
        )
        .await;
        if !matches!(reap, Ok(Ok(_))) {
            tracing::debug!("could not take this node's presence out; the next node does");
        }
        let mut pipe = ::redis::pipe();
        pipe.del(&[
            keys.this_node(),
            keys.this_users(),
            keys.this_channels(),
            keys.this_connections(),
        ])
        .ignore()
        .zrem(keys.nodes(), &shared.options.node_id)
        .ignore();
        let left = tokio::time::timeout(
            shared.options.command_timeout,
            pipe.query_async::<()>(&mut conn),
        )
        .await;
        if !matches!(left, Ok(Ok(()))) {
            tracing::debug!("could not remove this node's presence from Redis; it expires");
        }
        tracing::info!(node = %shared.options.node_id, "Redis presence store left the cluster");
    }
}

/// The connections of every node's reply, oldest first, each with its node's id.
fn node_connections(replies: Vec<wire::Reply>) -> Vec<NodeConnection> {
    let mut list: Vec<NodeConnection> = replies
        .into_iter()
        .flat_map(|reply| {
            let node = reply.node;
            reply
                .connections
                .into_iter()
                .filter_map(|c| c.to_info())
                .map(move |connection| NodeConnection {
                    node_id: Some(node.clone()),
                    connection,
                })
        })
        .collect();
    list.sort_by_key(|c| (c.connection.connected_at, c.connection.id));
    list
}

/// Writes this node's presence every `presence_interval` until `cancel`. A report that fails
/// is logged (a broken connection also makes the supervisor reconnect) and the next one writes
/// everything again.
async fn report_loop(shared: Arc<Shared>, state: Arc<State>, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.options.presence_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // While Redis is down there is nothing to write to; the supervisor reconnects.
        let Ok(Commands {
            mut conn, session, ..
        }) = shared.commands()
        else {
            continue;
        };
        let report = report(&shared, &state, &mut conn, session);
        let done = tokio::select! {
            _ = cancel.cancelled() => return,
            done = shared.run_within(session, shared.options.command_timeout * 2, report) => done,
        };
        match done {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "could not write this node's presence to Redis");
            }
            Err(e) => tracing::debug!(error = %e, "still cannot write this node's presence"),
        }
    }
}

/// One report: this node's figures and TTLs, what changed in its connections since the last
/// report, and its presence hash made good where it must be.
async fn report(
    shared: &Shared,
    state: &State,
    conn: &mut MultiplexedConnection,
    session: u64,
) -> Result<(), RedisError> {
    let mut writer = state.writer.lock().await;
    if writer.leaving {
        return Ok(());
    }
    // A new session may be a Redis that lost the keys, or one that missed a write cut short:
    // write everything.
    let new_session = std::mem::replace(&mut writer.session, session) != session;
    let (figures, mut writes) = {
        let mut index = state.index.lock();
        let writes = if new_session {
            index.take_all()
        } else {
            index.take_writes()
        };
        (index.figures(), writes)
    };
    // Until this report succeeds, what it took may not be in Redis: if it fails, or is cut
    // short by its timeout, the next report rewrites everything.
    let mut unwritten = Unwritten(Some(&state.index));
    let keys = &shared.keys;
    let ttl = millis(shared.options.node_ttl);
    let mut touch = shared.scripts.touch.prepare_invoke();
    touch
        .key(keys.nodes())
        .key(keys.this_node())
        .key(keys.this_users())
        .key(keys.this_channels())
        .key(keys.this_connections())
        .arg(&shared.options.node_id)
        .arg(ttl)
        .arg(figures.connections)
        .arg(figures.users)
        .arg(figures.anonymous)
        .arg(figures.channels)
        // This store always reports its connections: the publish script may count them.
        .arg(flag(true))
        .arg(shared.started_ms)
        .arg(shared.delivered.load(Ordering::Relaxed));
    let existed: i64 = touch.invoke_async(conn).await?;
    if existed != 1 && !writes.reset {
        // Redis lost this node's keys (or they expired in a stall): write them all again.
        writes = state.index.lock().take_all();
    }
    sync_presence(shared, state, &mut writer.held, conn, writes.reset).await?;
    if !writes.is_empty() {
        let mut pipe = ::redis::pipe();
        writes.add_to(&mut pipe, keys);
        for key in [
            keys.this_users(),
            keys.this_channels(),
            keys.this_connections(),
        ] {
            pipe.pexpire(key, ttl as i64).ignore();
        }
        index::run(&pipe, conn).await?;
    }
    unwritten.0 = None;
    Ok(())
}

/// Marks the index for a full rewrite when dropped armed: a report that took its writes did
/// not finish.
struct Unwritten<'a>(Option<&'a Mutex<Index>>);

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.0 {
            index.lock().rewrite();
        }
    }
}

/// The `PRESENCE` script with `changes` (join or leave, who, the event's storage form).
fn presence_call<'a>(
    shared: &'a Shared,
    changes: &[(bool, &PresenceMember, String)],
) -> ::redis::ScriptInvocation<'a> {
    let keys = &shared.keys;
    let kept = shared.transport_limits();
    let mut call = shared.scripts.presence.prepare_invoke();
    call.key(keys.meta())
        .key(keys.events())
        .key(keys.presence_nodes())
        .key(keys.this_presence())
        .arg(Epoch::random().to_string())
        .arg(keys.presence_channel_prefix())
        .arg(&shared.options.node_id)
        .arg(kept.max_events)
        .arg(kept.max_bytes)
        .arg(millis(kept.max_age))
        .arg(clock::rfc3339(std::time::SystemTime::now()))
        .arg(millis(shared.options.node_ttl));
    for (joined, member, stored) in changes {
        for arg in members::change_args(*joined, member, stored) {
            call.arg(arg);
        }
    }
    call
}

/// The `REAP` script: renews this node among the nodes holding presence (or, `leaving`, takes
/// it out) and takes dead nodes out. Returns whether this node was missing (new, or taken out
/// as dead).
async fn reap(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    leaving: bool,
) -> Result<bool, RedisError> {
    let keys = &shared.keys;
    let kept = shared.transport_limits();
    let mut call = shared.scripts.reap.prepare_invoke();
    call.key(keys.meta())
        .key(keys.events())
        .key(keys.presence_nodes())
        .arg(Epoch::random().to_string())
        .arg(keys.presence_channel_prefix())
        .arg(keys.presence_node_prefix())
        .arg(&shared.options.node_id)
        .arg(millis(shared.options.node_ttl))
        .arg(REAP_BUDGET)
        .arg(flag(leaving))
        .arg(clock::rfc3339(std::time::SystemTime::now()))
        .arg(kept.max_events)
        .arg(kept.max_bytes)
        .arg(millis(kept.max_age));
    let reply: Vec<Value> = call.invoke_async(conn).await?;
    Ok(reply.first().and_then(number) == Some(1))
}

/// Part of the report: takes dead nodes' presence out, and makes this node's presence hash in
/// Redis what its index holds (after a failed write, a dropped change, a stall that got it
/// taken out, or Redis losing its data). `fresh`: read what Redis holds first. `held` is the
/// writer's (its lock is held).
async fn sync_presence(
    shared: &Shared,
    state: &State,
    held: &mut Option<HashSet<String>>,
    conn: &mut MultiplexedConnection,
    fresh: bool,
) -> Result<(), RedisError> {
    let missing = reap(shared, conn, false).await?;
    let reread = fresh || missing || held.is_none();
    // Without a reason to doubt what Redis holds, compare only now and then: a change the hub
    // dropped (its presence queue was full) is made good within that many reports.
    let checks = state.checks.fetch_add(1, Ordering::Relaxed);
    let unfinished = state.unfinished.swap(false, Ordering::Relaxed);
    if !reread && !unfinished && !checks.is_multiple_of(PRESENCE_CHECK_EVERY) {
        return Ok(());
    }
    let members = state.index.lock().members();
    if reread {
        let fields: Vec<String> = ::redis::cmd("HKEYS")
            .arg(shared.keys.this_presence())
            .query_async(conn)
            .await?;
        *held = Some(fields.into_iter().collect());
    }
    let Some(set) = held.as_mut() else {
        return Ok(());
    };
    let wanted: HashMap<String, &PresenceMember> = members
        .iter()
        .map(|m| (members::member_field(m), m))
        .collect();
    let mut changes: Vec<(bool, PresenceMember, String)> = Vec::new();
    for (field, member) in &wanted {
        if !set.contains(field) {
            changes.push((true, (*member).clone(), members::stored_of(true, member)));
        }
    }
    for field in set.iter().filter(|f| !wanted.contains_key(*f)) {
        let Some(member) = members::member_of(field) else {
            continue;
        };
        // A leave's event is the one Redis kept at the join.
        changes.push((false, member, String::new()));
    }
    // A bounded amount per report (a node rewriting a large presence after Redis lost it must
    // not hold up its report past the timeout); the rest follows at the next.
    if changes.len() > PRESENCE_SYNC_BUDGET {
        changes.truncate(PRESENCE_SYNC_BUDGET);
        state.unfinished.store(true, Ordering::Relaxed);
    }
    for chunk in changes.chunks(PRESENCE_BATCH) {
        let list: Vec<(bool, &PresenceMember, String)> =
            chunk.iter().map(|(j, m, f)| (*j, m, f.clone())).collect();
        let done: RedisResult<Vec<Value>> = presence_call(shared, &list).invoke_async(conn).await;
        if let Err(e) = done {
            // Some of it may have been applied: read what Redis holds next time.
            *held = None;
            return Err(e);
        }
        for (joined, member, _) in chunk {
            let field = members::member_field(member);
            if *joined {
                set.insert(field);
            } else {
                set.remove(&field);
            }
        }
    }
    Ok(())
}
