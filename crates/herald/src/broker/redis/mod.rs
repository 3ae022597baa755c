//! The Redis broker: several Herald nodes behave as one hub. This module also holds the link to
//! Redis (connections, supervisor, keys, scripts) that the broker shares with the Redis presence
//! store ([`RedisPresence`], made with [`RedisBroker::presence`]): one set of connections per
//! node for both.
//!
//! ## Design
//!
//! - **One stream carries every event.** A publish on any node runs in one Lua script
//!   ([`scripts`]) that gives the event the next sequence of the epoch, appends it to the
//!   stream `<prefix>:events` with entry id `<seq>-0` (its storage form, targets and whether it
//!   went to everyone), trims the stream to the replay window, and decides `fallback: broadcast`
//!   for the whole cluster from the nodes' presence. The event is retained before any node
//!   sees it. The publishes that arrive together on a node share one call of that script
//!   (group commit, by the publish writer on its own thread: [`writer`]); the script's cost
//!   per event does not grow with the event's audience or the stream's length.
//! - **Each node reads the stream** with one blocking `XREAD` loop on its own connection and
//!   hands every event, in order, to its [`Delivery`]: one delivery path for one node or many,
//!   and one total order that every connection on every node sees. After a Redis blip the loop
//!   picks up where it stopped, so nothing published meanwhile is skipped.
//! - **Ids stay `<epoch>-<seq>`.** The epoch lives in Redis (created once by whichever node
//!   needs it first); a Redis that lost its data gets a new epoch, so clients' old ids become
//!   `unknown_epoch`. A new epoch's sequences start at the Redis clock (ms × 1000), above those
//!   of any epoch before, because connections drop events at or below their start position.
//! - **Replay** first reads the head and where the replay starts in one small script (so replay
//!   and live delivery meet without gap or duplicate), then pages through the stream
//!   (`XRANGE … COUNT`), one short script per page that returns only the matching events; a
//!   resume beyond its cap stops early with `reset` (`replay_too_large`).
//! - **Commands and presence queries** go to every node over one pub/sub channel
//!   (`<prefix>:control`); each node answers on the asker's reply channel (presence queries
//!   from its own registry, [`LocalPresence`]). `PUBLISH` says how many nodes listen, so the
//!   asker knows how many answers to wait for.
//! - **Presence** (this node's routing counts and presence events in Redis) is the presence
//!   store's: see [`crate::presence::redis`]. The broker reads what every node's store wrote
//!   when its publish script counts `delivered` and decides `fallback: broadcast`.
//! - **Connections to Redis**: per node, one multiplexed connection for commands (shared by
//!   replays, commands and the presence store), one for the publish writer, one for the
//!   blocking reader and one pub/sub subscription; never one per client. They go to one server
//!   (`redis://`, `rediss://`) or to the master Redis Sentinel names, asked again for every new
//!   session ([`endpoint`]).
//! - **Failures**: a supervisor task ([`link`]) owns those connections. When Redis goes away it
//!   logs once, reports [`EngineHealth::Degraded`], makes publishes fail with
//!   [`EngineError::Unavailable`] (those of the outage's first `command_timeout` wait for it
//!   first), and reconnects with capped exponential backoff; SSE
//!   connections and their heartbeats are untouched. The supervisor starts with the hub
//!   ([`Broker::start`], on the hub's [`Lifecycle`]) and stops when that lifecycle is
//!   cancelled; [`Broker::shutdown`] awaits it. The engine reports
//!   [`EngineHealth::Ok`] only once a session is open: the reader, the control subscription and
//!   the publish writer's connection (until the first, "connecting").

mod endpoint;
pub(crate) mod keys;
mod link;
pub(crate) mod scripts;
pub(crate) mod wire;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ::redis::aio::{MultiplexedConnection, PubSub};
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use self::endpoint::Endpoint;
use self::keys::Keys;
use self::scripts::Scripts;
use self::wire::{ConnectionEntry, Op, Reply, Request, UserEntry};
use super::{Broker, Command, Delivery, Publication, Published};
use crate::clock;
use crate::engine::{EngineError, EngineHealth};
use crate::event::Event;
use crate::event::{Epoch, EventId};
use crate::history::{
    HistoryLimits, HistoryStats, Replay, ReplayCap, ReplayCollector, ReplayFilter, ResetReason,
};
use crate::lifecycle::Lifecycle;
use crate::metrics::DisconnectReason;
use crate::presence::{LocalPresence, RedisPresence};
use crate::target::{Fallback, Targets, UserId};

/// Events one `XREAD` returns at most.
const READ_BATCH: usize = 512;
/// How long one `XREAD` blocks; on timeout the reader checks the epoch and the stream's start.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// The stream keeps at least this many events (even with a smaller or no replay window), so that
/// a node that reads a little late still finds them.
const TRANSPORT_MIN_EVENTS: usize = 1000;
/// ... and at least this many bytes of them ...
const TRANSPORT_MIN_BYTES: usize = 1 << 20;
/// ... and every event younger than this, beyond the count (not beyond the bytes): at a high
/// publish rate the count alone would leave a node that reads a second late no margin.
const TRANSPORT_MIN_AGE: Duration = Duration::from_secs(10);
/// Stream entries one replay page reads by default.
const DEFAULT_REPLAY_PAGE_SIZE: usize = 256;
/// Most events one maintenance pass trims.
const TRIM_BUDGET: usize = 1000;

/// Settings of a [`RedisBroker`] and its [`RedisPresence`]. [`RedisOptions::new`] fills in the
/// defaults.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS), or Redis Sentinel:
    /// `redis+sentinel://[[user]:password@]host:port[,host:port…]/master_name[/db]` (or
    /// `rediss+sentinel://`), where the user and password are the master's. Details:
    /// `docs/deploy.md`, "Production Redis".
    pub url: String,
    /// PEM certificates of the CA(s) that sign the TLS certificates of Redis (and of the
    /// sentinels): with them, only these are trusted. `None`: the Mozilla roots. Needs a TLS URL.
    pub tls_ca: Option<Vec<u8>>,
    /// The sentinels' password (`AUTH` to each sentinel), for a Sentinel URL.
    pub sentinel_password: Option<crate::config::Secret>,
    /// Prefix of every key and channel (default `herald`). The nodes of one cluster share it;
    /// separate clusters on one Redis need separate prefixes.
    pub prefix: String,
    /// This node's id, unique within the cluster: letters, digits, `_`, `.`, `-`, at most 64.
    /// Default: `<hostname>-<pid>-<random>`.
    pub node_id: String,
    /// The replay window (the same limits as the memory broker's).
    pub history: HistoryLimits,
    /// How often the node writes what changed in its connections to Redis (presence, stats,
    /// and the routing data that counts `delivered` and decides `fallback: broadcast`), and
    /// renews their TTL. Default 1 s.
    pub presence_interval: Duration,
    /// How long a node's report lives: a node that stops reporting drops out of presence and
    /// routing after this. Default 5 s.
    pub node_ttl: Duration,
    /// Longest wait for one Redis command (a publish, a replay). Default 2 s.
    pub command_timeout: Duration,
    /// Longest wait for the other nodes' answers to a disconnect or a presence query.
    /// Default 2 s.
    pub request_timeout: Duration,
    /// Longest pause between reconnection attempts; the pause doubles from 100 ms up to this.
    /// Default 5 s.
    pub max_backoff: Duration,
    /// How long an idempotency key is remembered, for the whole cluster. Default 10 minutes.
    pub idempotency_window: Duration,
    /// Stream entries one replay page reads (one short script per page). Default 256.
    pub replay_page_size: usize,
}

impl RedisOptions {
    /// Defaults for Redis at `url` with this replay window.
    pub fn new(url: impl Into<String>, history: HistoryLimits) -> Self {
        RedisOptions {
            url: url.into(),
            tls_ca: None,
            sentinel_password: None,
            prefix: "herald".into(),
            node_id: default_node_id(),
            history,
            presence_interval: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
            idempotency_window: crate::idempotency::DEFAULT_WINDOW,
            replay_page_size: DEFAULT_REPLAY_PAGE_SIZE,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 64
            && !self
                .prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if !prefix_ok {
            return Err(format!(
                "Redis key prefix {:?}: 1 to 64 characters without spaces",
                self.prefix
            ));
        }
        if !valid_node_id(&self.node_id) {
            return Err(format!(
                "node id {:?}: 1 to 64 of A-Z a-z 0-9 _ . -",
                self.node_id
            ));
        }
        if self.presence_interval.is_zero() || self.node_ttl <= self.presence_interval {
            return Err("the node TTL must be longer than the presence interval".into());
        }
        Ok(())
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redacted_url(&self.url))
            .field("tls_ca", &self.tls_ca.as_ref().map(|pem| pem.len()))
            .field("sentinel_password", &self.sentinel_password)
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `<hostname>-<pid>-<4 hex digits>`: unique per process, readable in stats.
fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "herald".into()
    } else {
        host
    };
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The URL with any password replaced by `***` (the user name stays), for logs and errors.
pub(crate) fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// Runs several Herald nodes as one hub through Redis: one stream carries every event to every
/// node in one order and keeps the replay window; commands reach every node. Its presence store
/// ([`RedisBroker::presence`]) shares its connections. How it works, what it costs and how it
/// fails: `docs/deploy.md`.
pub struct RedisBroker {
    shared: Arc<Shared>,
    /// The supervisor task and the token it stops on, once a hub started the broker
    /// ([`Broker::start`]); taken by [`Broker::shutdown`].
    supervisor: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    /// Resolves when the writer's thread has ended; taken by [`Broker::shutdown`].
    writer_done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &redacted_url(&self.shared.options.url))
            .field("prefix", &self.shared.options.prefix)
            .field("node_id", &self.shared.options.node_id)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        if let Some((token, _)) = &*self.supervisor.lock() {
            token.cancel();
        }
    }
}

/// Whether Redis is reachable.
#[derive(Debug)]
enum Health {
    /// Connected, but the supervisor has not opened its first session yet (the reader, the
    /// control subscription and the publish writer's connection): not ready.
    Starting {
        since: Instant,
    },
    Up,
    Down {
        reason: String,
        since: Instant,
    },
}

/// The link to Redis of one node: what the broker, the presence store and their background
/// tasks share.
pub(crate) struct Shared {
    pub(crate) options: RedisOptions,
    pub(crate) keys: Keys,
    /// The server (or, with Sentinel, the master) each session connects to.
    endpoint: endpoint::Endpoint,
    pub(crate) scripts: Scripts,
    /// When this node started (ms since the Unix epoch), for the cluster's per-node figures.
    pub(crate) started_ms: u64,
    delivery: OnceLock<Arc<dyn Delivery>>,
    /// This node's registry, for presence queries from other nodes; set when the presence store
    /// starts ([`crate::presence::PresenceStore::start`]).
    pub(crate) local: OnceLock<Arc<dyn LocalPresence>>,
    /// The connection for commands; `None` while Redis is unreachable.
    commands: RwLock<Option<Commands>>,
    /// Numbers the supervisor's sessions (see [`Commands::session`]).
    sessions: AtomicU64,
    health: Mutex<Health>,
    /// Woken when a session is up.
    up_notify: Notify,
    /// The publish writer ([`writer`]), once the broker started: the supervisor has it
    /// connect for every session before reporting the session up.
    writer: OnceLock<writer::Handle>,
    /// The newest event this node handed to its delivery (set before handing it over): where
    /// a connection that registers now starts.
    position: Mutex<EventId>,
    history: Mutex<Option<HistoryStats>>,
    /// Queries this node is waiting on, by request id.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Reply>>>,
    /// Wakes the supervisor when a command found the connection broken.
    broken: Notify,
    stopped: AtomicBool,
    warned_no_presence: AtomicBool,
    /// Event copies this node queued to its connections (for the cluster's per-node figures).
    pub(crate) delivered: AtomicU64,
}

/// The command connection of one session.
#[derive(Clone)]
pub(crate) struct Commands {
    pub(crate) conn: MultiplexedConnection,
    /// Which session opened it: a failure on the connection of an earlier session (a command
    /// still in flight when Redis came back) must not take the new one down.
    pub(crate) session: u64,
}

/// Where the stream stands (the `INFO` script's answer).
#[derive(Debug, Clone, Copy)]
struct StreamInfo {
    epoch: Epoch,
    head: u64,
    base: u64,
    len: usize,
    bytes: usize,
    first: Option<u64>,
    next: Option<u64>,
}

/// One event read from the stream.
#[derive(Debug)]
struct Entry {
    seq: u64,
    epoch: Option<Epoch>,
    /// The event, as [`wire::decode_event`] reads it.
    event: String,
    targets: String,
    everyone: bool,
}

impl RedisBroker {
    /// Connects to Redis (once, to fail fast on a wrong URL or an unreachable server), reads or
    /// creates the epoch, and returns the broker. It spawns nothing: its background tasks start
    /// with the hub it is given to ([`crate::Hub::start`], which calls [`Broker::start`]).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] when the options are invalid or Redis cannot be reached.
    pub async fn connect(options: RedisOptions) -> Result<Self, EngineError> {
        options.validate().map_err(EngineError::Unavailable)?;
        let endpoint = endpoint::Endpoint::new(
            &options.url,
            options.tls_ca.as_deref(),
            options.sentinel_password.as_ref().map(|p| p.expose()),
        )
        .map_err(EngineError::Unavailable)?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&options.prefix, &options.node_id),
            endpoint,
            scripts: Scripts::new(),
            started_ms: clock::now_ms(),
            delivery: OnceLock::new(),
            local: OnceLock::new(),
            commands: RwLock::new(None),
            sessions: AtomicU64::new(0),
            health: Mutex::new(Health::Starting {
                since: Instant::now(),
            }),
            up_notify: Notify::new(),
            writer: OnceLock::new(),
            position: Mutex::new(EventId {
                epoch: Epoch::from_u64(0),
                seq: 0,
            }),
            history: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            broken: Notify::new(),
            stopped: AtomicBool::new(false),
            warned_no_presence: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            options,
        });
        let url = redacted_url(&shared.options.url);
        let unreachable = |e: String| EngineError::Unavailable(format!("Redis at {url}: {e}"));
        let client = shared.resolve().await.map_err(unreachable)?;
        let mut conn = shared
            .open_connection(&client, shared.options.command_timeout)
            .await
            .map_err(unreachable)?;
        let info = shared
            .info(&mut conn, None)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        *shared.position.lock() = EventId {
            epoch: info.epoch,
            seq: info.head,
        };
        shared.update_history(&info);
        *shared.commands.write() = Some(Commands { conn, session: 0 });
        tracing::info!(
            redis = %url,
            server = %client.get_connection_info().addr(),
            prefix = %shared.options.prefix,
            node = %shared.options.node_id,
            epoch = %info.epoch,
            "Redis broker connected"
        );
        Ok(RedisBroker {
            shared,
            supervisor: Mutex::new(None),
            writer_done: Mutex::new(None),
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.shared.options.node_id
    }

    /// The presence store of this node on the same link to Redis (its connections and
    /// supervisor): the one to pair this broker with ([`crate::engine::Engine::redis`]).
    pub fn presence(&self) -> RedisPresence {
        RedisPresence::new(self.shared.clone())
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn start(&self, delivery: Arc<dyn Delivery>, lifecycle: &Lifecycle) {
        if self.shared.delivery.set(delivery).is_err() {
            return; // One broker serves one hub.
        }
        let token = lifecycle.token().clone();
        match writer::spawn(self.shared.clone(), token.clone()) {
            Ok((handle, done)) => {
                let _ = self.shared.writer.set(handle);
                *self.writer_done.lock() = Some(done);
            }
            // Publishes then answer 503 (`engine_unavailable`); everything else works.
            Err(e) => tracing::error!(error = %e, "cannot start the Redis publish writer"),
        }
        let task = lifecycle.spawn(link::supervise(self.shared.clone(), token.clone()));
        *self.supervisor.lock() = Some((token, task));
    }

    async fn publish(&self, publication: Publication) -> Result<Published, EngineError> {
        self.publish_keyed(publication, "").await
    }

    /// The key goes into the stream entry and into the ids hash (`<prefix>:ids`) in the same
    /// script, and leaves the hash when the entry is trimmed.
    async fn publish_keyed(
        &self,
        publication: Publication,
        key: &str,
    ) -> Result<Published, EngineError> {
        let shared = &self.shared;
        let delivery = shared.running()?;
        if delivery.is_overloaded() {
            return Err(EngineError::Overloaded);
        }
        // While Redis is (re)connecting, wait a little for it; then fail (nothing sent).
        shared.ready().await?;
        let queue = &shared
            .writer
            .get()
            .ok_or_else(|| {
                EngineError::Unavailable("the Redis publish writer is not running".into())
            })?
            .queue;
        let keys = &shared.keys;
        let (idempotency_key, fingerprint) = match &publication.idempotency {
            Some(key) => (
                keys.idempotency(key.as_str()),
                crate::idempotency::fingerprint(&publication),
            ),
            // Unused by the script without a fingerprint; any key of ours will do.
            None => (keys.meta(), String::new()),
        };
        let everyone = publication.targets.is_broadcast();
        let fallback = publication.targets.fallback() == Fallback::Broadcast;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = writer::Pending {
            idempotency_key,
            fingerprint,
            stored: Event::stored_form(&publication.name, &publication.payload),
            targets: wire::encode_targets(&publication.targets),
            everyone,
            fallback,
            size: Event::size_of(&publication.name, &publication.payload),
            key: key.to_owned(),
            queued: Instant::now(),
            reply,
        };
        queue.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EngineError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => EngineError::NotRunning,
        })?;
        // The writer answers every publish it took; a writer gone mid-batch may have sent it.
        let outcome = answer.await.map_err(|_| {
            EngineError::OutcomeUnknown("the Redis publish writer stopped".into())
        })??;
        let (epoch, seq, delivered, without_presence) = match outcome.kind {
            writer::OutcomeKind::Reused => return Err(EngineError::IdempotencyKeyReused),
            _ => (
                outcome.epoch,
                outcome.seq,
                outcome.delivered,
                outcome.without_presence,
            ),
        };
        let replayed = outcome.kind == writer::OutcomeKind::Replayed;
        if without_presence > 0
            && fallback
            && !everyone
            && !shared.warned_no_presence.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                nodes = without_presence,
                "some nodes do not report their connections, so `fallback: broadcast` cannot be \
                 decided for the cluster and is not applied; `delivered` leaves those nodes out"
            );
        }
        Ok(Published {
            id: EventId { epoch, seq },
            delivered: delivered as usize,
            replayed,
        })
    }

    /// One `HGET` of the ids hash.
    async fn find_key(&self, key: &str) -> Result<Option<EventId>, EngineError> {
        let shared = &self.shared;
        let mut link = shared.commands()?;
        let mut get = ::redis::cmd("HGET");
        get.arg(shared.keys.ids()).arg(key);
        let value: Option<String> = shared
            .run(link.session, get.query_async(&mut link.conn))
            .await?;
        Ok(value.and_then(|v| {
            let (epoch, seq) = v.split_once(' ')?;
            Some(EventId {
                epoch: epoch_of(&Value::SimpleString(epoch.to_owned()))?,
                seq: seq.parse().ok()?,
            })
        }))
    }

    /// Runs `command` on every node that listens to the control channel; returns the
    /// connections it closed on the nodes that answered within `request_timeout`.
    async fn command(&self, command: Command) -> Result<usize, EngineError> {
        self.shared.running()?;
        let op = match command {
            Command::Disconnect {
                users,
                connections,
                reason,
            } => Op::Disconnect {
                users: users.iter().map(|u| u.as_str().to_owned()).collect(),
                connections: connections.iter().map(ToString::to_string).collect(),
                reason: wire::reason_text(reason),
            },
            Command::DisconnectAll { reason } => Op::DisconnectAll {
                reason: wire::reason_text(reason),
            },
        };
        let replies = self.shared.request(op).await?;
        Ok(replies.iter().map(|r| r.count).sum())
    }

    /// The newest event this node's reader has handed to its connections: a connection that
    /// registers now receives every later event live. Answered without Redis, so new clients
    /// can connect during an outage (they get the events published after it).
    async fn head(&self) -> Result<EventId, EngineError> {
        Ok(*self.shared.position.lock())
    }

    /// Pages through the stream: one small script finds where the replay starts (and reads
    /// the head, so replay and live delivery meet without gap or duplicate), then one script
    /// per page of `replay_page_size` entries returns the matching events of that page only.
    /// No script copies the window, Redis serves other commands between pages, and the replay
    /// stops (with `reset`, `replay_too_large`) as soon as it would exceed `cap`.
    async fn replay(
        &self,
        after: EventId,
        filter: &ReplayFilter,
        cap: ReplayCap,
    ) -> Result<Replay, EngineError> {
        let shared = &self.shared;
        let position = *shared.position.lock();
        if after == position {
            // Up to date with this node: nothing to read (common when a node's clients all come
            // back at once).
            return Ok(Replay::Events {
                events: Vec::new(),
                head: position,
            });
        }
        let keys = &shared.keys;
        let limits = shared.options.history;
        let kept = shared.transport_limits();
        let mut link = shared.commands()?;
        let mut call = shared.scripts.replay.prepare_invoke();
        call.key(keys.meta())
            .key(keys.events())
            .arg(Epoch::random().to_string())
            .arg(after.epoch.to_string())
            .arg(after.seq.to_string())
            .arg(limits.max_events)
            .arg(millis(limits.max_age))
            .arg(kept.max_events)
            .arg(kept.max_bytes)
            .arg(millis(kept.max_age));
        let reply: Vec<Value> = shared
            .run(link.session, call.invoke_async(&mut link.conn))
            .await?;
        let bad = || EngineError::Unavailable("unexpected answer from the replay script".into());
        let epoch = reply.first().and_then(epoch_of).ok_or_else(bad)?;
        let head = EventId {
            epoch,
            seq: reply.get(1).and_then(number).ok_or_else(bad)?,
        };
        let reason = match reply.get(2).and_then(text).as_deref() {
            Some("ok") => None,
            Some("unknown_epoch") => Some(ResetReason::UnknownEpoch),
            Some("history_gap") => Some(ResetReason::HistoryGap),
            _ => return Err(bad()),
        };
        if let Some(reason) = reason {
            return Ok(Replay::Reset { reason, head });
        }
        let mut from = reply.get(3).and_then(number).ok_or_else(bad)?;
        let user = filter.user.as_ref().map_or("", UserId::as_str);
        let channels = wire::encode_channels(&filter.channels);
        let page = shared.options.replay_page_size.max(1);
        let mut collected = ReplayCollector::new(cap);
        while from <= head.seq {
            let mut call = shared.scripts.replay_page.prepare_invoke();
            call.key(keys.events())
                .arg(from.to_string())
                .arg(head.seq.to_string())
                .arg(page)
                .arg(user)
                .arg(&channels)
                .arg(collected.events_left())
                .arg(collected.bytes_left());
            let reply: Vec<Value> = shared
                .run(link.session, call.invoke_async(&mut link.conn))
                .await?;
            let reason = match reply.first().and_then(text).as_deref() {
                Some("ok") => None,
                Some("history_gap") => Some(ResetReason::HistoryGap),
                Some("replay_too_large") => Some(ResetReason::ReplayTooLarge),
                _ => return Err(bad()),
            };
            if let Some(reason) = reason {
                return Ok(Replay::Reset { reason, head });
            }
            let next = reply.get(1).and_then(number).ok_or_else(bad)?;
            if next <= from {
                return Err(bad());
            }
            for pair in reply[2..].chunks_exact(2) {
                let seq = number(&pair[0]).ok_or_else(bad)?;
                let id = EventId { epoch, seq };
                let Some(event) = text(&pair[1]).and_then(|t| wire::decode_event(id, &t)) else {
                    tracing::warn!(%id, "skipping a retained event that cannot be read");
                    continue;
                };
                if !collected.push(Arc::new(event)) {
                    return Ok(Replay::Reset {
                        reason: ResetReason::ReplayTooLarge,
                        head,
                    });
                }
            }
            from = next;
            // A broken connection was replaced meanwhile: go on with the current one.
            link = shared.commands()?;
        }
        Ok(Replay::Events {
            events: collected.into_events(),
            head,
        })
    }

    fn history_stats(&self) -> Option<HistoryStats> {
        self.shared.history.lock().clone()
    }

    /// Reads the stream's figures now (the cached ones are refreshed only now and then).
    async fn oldest(&self) -> Result<Option<EventId>, EngineError> {
        let shared = &self.shared;
        let mut link = shared.commands()?;
        let session = link.session;
        let info = shared
            .run(session, shared.info(&mut link.conn, None))
            .await?;
        shared.update_history(&info);
        Ok(shared
            .history
            .lock()
            .as_ref()
            .and_then(|h| h.oldest_id.as_deref())
            .and_then(|id| id.parse().ok()))
    }

    fn health(&self) -> EngineHealth {
        match &*self.shared.health.lock() {
            Health::Up => EngineHealth::Ok,
            Health::Starting { .. } => EngineHealth::Degraded(
                "connecting to Redis (the stream reader, the control channel and the publish \
                 writer are not all up yet)"
                    .into(),
            ),
            Health::Down { reason, .. } => {
                EngineHealth::Degraded(format!("Redis is unreachable: {reason}"))
            }
        }
    }

    async fn shutdown(&self) {
        let shared = &self.shared;
        if shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let supervisor = self.supervisor.lock().take();
        if let Some((token, task)) = supervisor {
            token.cancel();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("the Redis broker's tasks did not stop within 5s");
            }
        }
        let writer = self.writer_done.lock().take();
        if let Some(done) = writer {
            // The writer answers the batch it has at Redis first (within `command_timeout`).
            let limit = shared.options.command_timeout + Duration::from_secs(1);
            if tokio::time::timeout(limit, done).await.is_err() {
                tracing::warn!("the Redis publish writer did not stop within {limit:?}");
            }
        }
        // Release the command connection (the presence store already left the cluster).
        shared.commands.write().take();
        tracing::info!(node = %shared.options.node_id, "Redis broker stopped");
    }
}

impl Shared {
    /// The delivery, or [`EngineError::NotRunning`] before [`Broker::start`] or after shutdown.
    fn running(&self) -> Result<&Arc<dyn Delivery>, EngineError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(EngineError::NotRunning);
        }
        self.delivery.get().ok_or(EngineError::NotRunning)
    }

    /// The command connection, or why there is none.
    pub(crate) fn commands(&self) -> Result<Commands, EngineError> {
        if let Some(link) = self.commands.read().as_ref() {
            return Ok(link.clone());
        }
        Err(EngineError::Unavailable(match &*self.health.lock() {
            Health::Down { reason, .. } => format!("Redis is unreachable: {reason}"),
            Health::Up | Health::Starting { .. } => "not connected to Redis".into(),
        }))
    }

    /// Resolves once a session is up (the publish writer is connected). While Redis is
    /// (re)connecting it waits, until `command_timeout` after the outage (or the start) began:
    /// a publish during a blip or a session's turnover waits for it, one during a longer outage
    /// is refused at once ([`EngineError::Unavailable`]; nothing is sent either way).
    async fn ready(&self) -> Result<(), EngineError> {
        let grace = self.options.command_timeout;
        loop {
            let notified = self.up_notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so that an `up` in between is not missed.
            notified.as_mut().enable();
            let since = match &*self.health.lock() {
                Health::Up => None,
                Health::Starting { since } | Health::Down { since, .. } => Some(*since),
            };
            let Some(since) = since else {
                return self.commands().map(drop);
            };
            let deadline = tokio::time::Instant::from_std(since + grace);
            if self.stopped.load(Ordering::Acquire)
                || tokio::time::Instant::now() >= deadline
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return match &*self.health.lock() {
                    Health::Up => Ok(()),
                    Health::Down { reason, .. } => Err(EngineError::Unavailable(format!(
                        "Redis is unreachable: {reason}"
                    ))),
                    Health::Starting { .. } => Err(EngineError::Unavailable(
                        "not connected to Redis yet".into(),
                    )),
                };
            }
        }
    }

    /// What the stream physically keeps: the replay window, plus a margin for nodes that read
    /// late (the replay script still answers by the window's own limits).
    pub(crate) fn transport_limits(&self) -> HistoryLimits {
        let h = self.options.history;
        HistoryLimits {
            max_events: h.max_events.max(TRANSPORT_MIN_EVENTS),
            max_bytes: h.max_bytes.max(TRANSPORT_MIN_BYTES),
            max_age: h.max_age.max(TRANSPORT_MIN_AGE),
        }
    }

    /// Awaits one Redis call on the command connection of `session` within `command_timeout`,
    /// turning failures into [`EngineError::Unavailable`] (and a broken connection into a
    /// reconnect).
    pub(crate) async fn run<T>(
        &self,
        session: u64,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, EngineError> {
        self.run_within(session, self.options.command_timeout, call)
            .await
    }

    /// [`Shared::run`] for a call of several commands, within `limit`.
    pub(crate) async fn run_within<T>(
        &self,
        session: u64,
        limit: Duration,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, EngineError> {
        let reason = match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if !is_connection_error(&e) => {
                return Err(EngineError::Unavailable(e.to_string()))
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("Redis did not answer within {limit:?}"),
        };
        let current = self.commands.read().as_ref().map(|c| c.session);
        if current == Some(session) {
            self.down(&reason);
            self.broken.notify_waiters();
        }
        Err(EngineError::Unavailable(reason))
    }

    /// A new session's number.
    fn next_session(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Redis is reachable (again): commands go through `conn`, and the publish writer is
    /// connected for `session`.
    fn up(&self, session: u64, conn: MultiplexedConnection) {
        *self.commands.write() = Some(Commands { conn, session });
        let mut health = self.health.lock();
        if let Health::Down { since, .. } = &*health {
            tracing::info!(
                node = %self.options.node_id,
                after = ?since.elapsed(),
                "Redis is reachable again: publishing, delivery and resume work again"
            );
        }
        *health = Health::Up;
        drop(health);
        self.up_notify.notify_waiters();
    }

    /// Redis is unreachable: logged once per outage, then quietly retried.
    fn down(&self, reason: &str) {
        *self.commands.write() = None;
        let mut health = self.health.lock();
        match &mut *health {
            Health::Starting { since } => {
                tracing::error!(
                    node = %self.options.node_id,
                    redis = %redacted_url(&self.options.url),
                    %reason,
                    "cannot open the Redis session: publishes get 503 until it is open; \
                     retrying with backoff"
                );
                *health = Health::Down {
                    reason: reason.to_owned(),
                    since: *since,
                };
            }
            Health::Up => {
                tracing::error!(
                    node = %self.options.node_id,
                    redis = %redacted_url(&self.options.url),
                    %reason,
                    "lost Redis: SSE connections stay open with their heartbeats, publishes get \
                     503 until it is back; reconnecting with backoff"
                );
                *health = Health::Down {
                    reason: reason.to_owned(),
                    since: Instant::now(),
                };
            }
            Health::Down { reason: r, .. } => {
                tracing::debug!(%reason, "Redis still unreachable");
                reason.clone_into(r);
            }
        }
    }

    /// The client of the server to connect to now: see [`endpoint::Endpoint::resolve`].
    async fn resolve(&self) -> Result<Client, String> {
        self.endpoint
            .resolve(self.options.command_timeout * 2)
            .await
    }

    async fn open_connection(
        &self,
        client: &Client,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.command_timeout))
            .set_response_timeout(Some(response_timeout));
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let mut conn = match tokio::time::timeout(self.options.command_timeout * 2, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connecting timed out".into()),
        };
        endpoint::ping(&mut conn, self.options.command_timeout).await?;
        Ok(conn)
    }

    async fn open_pubsub(&self, client: &Client) -> Result<PubSub, String> {
        let timeout = self.options.command_timeout;
        let mut pubsub = match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connecting timed out".into()),
        };
        for channel in [self.keys.control(), self.keys.this_reply()] {
            match tokio::time::timeout(timeout, pubsub.subscribe(&channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("subscribing timed out".into()),
            }
        }
        Ok(pubsub)
    }

    /// Runs the `INFO` script: epoch (created if missing), head, and a trimming pass.
    async fn info(
        &self,
        conn: &mut MultiplexedConnection,
        after: Option<EventId>,
    ) -> Result<StreamInfo, RedisError> {
        let kept = self.transport_limits();
        let mut call = self.scripts.info.prepare_invoke();
        call.key(self.keys.meta())
            .key(self.keys.events())
            .arg(Epoch::random().to_string())
            .arg(kept.max_events)
            .arg(kept.max_bytes)
            .arg(millis(kept.max_age))
            .arg(TRIM_BUDGET)
            .arg(after.map_or(-1, |id| id.seq as i64))
            .arg(after.map_or(String::new(), |id| id.epoch.to_string()));
        let reply: Vec<Value> = call.invoke_async(conn).await?;
        let get = |i: usize| reply.get(i).and_then(signed);
        let parsed = (|| {
            Some(StreamInfo {
                epoch: reply.first().and_then(epoch_of)?,
                head: u64::try_from(get(1)?).ok()?,
                base: u64::try_from(get(2)?).ok()?,
                len: usize::try_from(get(3)?).ok()?,
                bytes: usize::try_from(get(4)?).ok()?,
                first: u64::try_from(get(5)?).ok(),
                next: u64::try_from(get(6)?).ok(),
            })
        })();
        parsed.ok_or_else(|| {
            RedisError::from((
                ::redis::ErrorKind::Parse,
                "unexpected answer from the info script",
            ))
        })
    }

    fn update_history(&self, info: &StreamInfo) {
        let limits = self.options.history;
        let id = |seq| {
            EventId {
                epoch: info.epoch,
                seq,
            }
            .to_string()
        };
        let events = info.len.min(limits.max_events);
        let oldest = info.first.filter(|_| events > 0).map(|first| {
            let window_start = (info.head + 1).saturating_sub(limits.max_events as u64);
            first.max(window_start)
        });
        *self.history.lock() = Some(HistoryStats {
            events,
            bytes: info.bytes,
            oldest_id: oldest.map(id),
            newest_id: (info.head > info.base).then(|| id(info.head)),
            max_events: limits.max_events,
            max_bytes: limits.max_bytes,
            max_age_seconds: limits.max_age.as_secs(),
            durable: false,
        });
    }

    /// Checks the reader's position against Redis: a new epoch (Redis lost its data) moves it
    /// to the new epoch's start; events trimmed before this node read them are a gap.
    async fn check_position(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let position = *self.position.lock();
        let info = self.info(conn, Some(position)).await?;
        self.update_history(&info);
        if info.epoch != position.epoch {
            tracing::warn!(
                old = %position.epoch,
                new = %info.epoch,
                "Redis has a new epoch (it lost its data, or events this node had delivered): \
                 delivery continues in the new epoch; clients resuming from older ids get a reset"
            );
            *self.position.lock() = EventId {
                epoch: info.epoch,
                seq: info.base,
            };
            return Ok(());
        }
        if info.head > position.seq && info.next.is_none() {
            self.gap(position.seq, info.head + 1);
            *self.position.lock() = EventId {
                epoch: info.epoch,
                seq: info.head,
            };
        }
        Ok(())
    }

    /// Events after `last` up to `next` were trimmed before this node read them: its clients
    /// missed them. They are closed, so that they resume (and get what is left, or a reset).
    fn gap(&self, last: u64, next: u64) {
        tracing::warn!(
            last,
            next,
            "this node fell behind the event stream and missed events Redis no longer keeps; \
             closing its connections so that clients resume and learn what they missed"
        );
        if let Some(delivery) = self.delivery.get() {
            delivery.apply(&Command::DisconnectAll {
                reason: DisconnectReason::ServerDisconnect,
            });
        }
    }

    /// Moves the reader past `seq` without delivering it.
    fn step_over(&self, seq: u64) {
        let mut position = self.position.lock();
        position.seq = position.seq.max(seq);
    }

    /// Hands one event from the stream to this node's connections. Returns false when the
    /// event belongs to another epoch (the reader must check where Redis stands).
    fn take(&self, entry: Entry) -> bool {
        let position = *self.position.lock();
        if entry.epoch != Some(position.epoch) {
            return false;
        }
        if entry.seq <= position.seq {
            return true;
        }
        if entry.seq > position.seq + 1 {
            self.gap(position.seq, entry.seq);
        }
        let id = EventId {
            epoch: position.epoch,
            seq: entry.seq,
        };
        // Before delivering: `head()` must never be below an event already handed over.
        *self.position.lock() = id;
        let targets = if entry.everyone {
            Some(Targets::broadcast())
        } else {
            wire::decode_targets(&entry.targets)
        };
        let event = wire::decode_event(id, &entry.event).map(Arc::new);
        match (targets.zip(event), self.delivery.get()) {
            (Some((targets, event)), Some(delivery)) => {
                // Sends to idle sockets after the shards' locks, as in memory.
                let report = crate::registry::deferring(|| delivery.deliver(&event, &targets));
                self.delivered
                    .fetch_add(report.delivered as u64, Ordering::Relaxed);
            }
            (None, _) => tracing::warn!(%id, "skipping an event that cannot be read"),
            (_, None) => {}
        }
        true
    }

    /// Sends `op` to every node and collects the answers that arrive within
    /// `request_timeout`.
    pub(crate) async fn request(&self, op: Op) -> Result<Vec<Reply>, EngineError> {
        let mut link = self.commands()?;
        let req = format!("{:016x}", rand::random::<u64>());
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.lock().insert(req.clone(), tx);
        let _pending = PendingGuard {
            shared: self,
            req: &req,
        };
        let message = Request {
            from: self.options.node_id.clone(),
            req: req.clone(),
            op,
        };
        let text = serde_json::to_string(&message)
            .map_err(|e| EngineError::Unavailable(format!("cannot encode a request: {e}")))?;
        let mut publish = ::redis::cmd("PUBLISH");
        publish.arg(self.keys.control()).arg(text);
        let listeners: usize = self
            .run(link.session, publish.query_async(&mut link.conn))
            .await?;
        let deadline = tokio::time::Instant::now() + self.options.request_timeout;
        let mut replies = Vec::with_capacity(listeners);
        while replies.len() < listeners {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(reply)) => replies.push(reply),
                _ => break,
            }
        }
        if replies.len() < listeners {
            tracing::warn!(
                answered = replies.len(),
                nodes = listeners,
                "not every node answered within {:?}",
                self.options.request_timeout
            );
        }
        Ok(replies)
    }

    /// This node's answer to a control message.
    fn answer(&self, request: &Request) -> Reply {
        let mut reply = Reply::new(&request.req, &self.options.node_id);
        let Some(delivery) = self.delivery.get() else {
            return reply;
        };
        match &request.op {
            Op::Disconnect {
                users,
                connections,
                reason,
            } => {
                let command = Command::Disconnect {
                    users: users.iter().filter_map(|u| UserId::new(u).ok()).collect(),
                    connections: connections.iter().filter_map(|c| c.parse().ok()).collect(),
                    reason: wire::reason_from(reason),
                };
                reply.count = delivery.apply(&command);
            }
            Op::DisconnectAll { reason } => {
                reply.count = delivery.apply(&Command::DisconnectAll {
                    reason: wire::reason_from(reason),
                });
            }
            // Presence queries: answered from this node's registry, once its presence store
            // started (until then this node holds no connection).
            Op::ChannelPresence { channel } => {
                let (Some(local), Ok(channel)) =
                    (self.local.get(), crate::target::ChannelName::new(channel))
                else {
                    return reply;
                };
                let presence = local.channel_presence(&channel);
                reply.users = presence.users.iter().map(UserEntry::from_user).collect();
                reply.anonymous = presence.anonymous_connections;
            }
            Op::UserConnections { user } => {
                let (Some(local), Ok(user)) = (self.local.get(), UserId::new(user)) else {
                    return reply;
                };
                reply.connections = local
                    .user_connections(&user)
                    .iter()
                    .map(ConnectionEntry::from_info)
                    .collect();
            }
            Op::Connections {
                transport,
                channels,
            } => {
                let Some(local) = self.local.get() else {
                    return reply;
                };
                // Internal channels too (a protocol's own): `stored` accepts both forms.
                let query = crate::presence::ConnectionQuery {
                    transport: transport.clone(),
                    channels: channels
                        .iter()
                        .filter_map(|c| crate::target::ChannelName::stored(c).ok())
                        .collect(),
                };
                if query.channels.len() < channels.len() {
                    return reply; // A channel this node cannot read: nobody is on it here.
                }
                reply.connections = local
                    .connections(&query)
                    .iter()
                    .map(ConnectionEntry::from_info)
                    .collect();
            }
        }
        reply
    }

    /// The broker's periodic maintenance (every `presence_interval`): trims the stream by age
    /// while nobody publishes, and refreshes the replay window's figures.
    async fn maintain(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let info = self.info(conn, None).await?;
        self.update_history(&info);
        Ok(())
    }
}

/// Removes a request from the pending map when its caller is done (or gave up).
struct PendingGuard<'a> {
    shared: &'a Shared,
    req: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(self.req);
    }
}

pub(crate) fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("READONLY" | "LOADING" | "MASTERDOWN"))
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

pub(crate) fn signed(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

pub(crate) fn number(v: &Value) -> Option<u64> {
    signed(v).and_then(|n| u64::try_from(n).ok())
}

pub(crate) fn epoch_of(v: &Value) -> Option<Epoch> {
    let t = text(v)?;
    (t.len() == 12)
        .then(|| u64::from_str_radix(&t, 16).ok())
        .flatten()
        .map(Epoch::from_u64)
}

/// A flat `[k, v, k, v...]` answer as pairs of text.
pub(crate) fn pairs(v: &Value) -> Vec<(String, String)> {
    let Value::Array(list) = v else {
        return Vec::new();
    };
    list.chunks_exact(2)
        .filter_map(|p| Some((text(&p[0])?, text(&p[1])?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redacted_url("redis://:secret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(redacted_url("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redacted_url("redis://u:p@ss@h/1"), "redis://u:***@h/1");
        assert_eq!(redacted_url("rediss://secret@h/1"), "rediss://:***@h/1");
        assert_eq!(
            redacted_url("redis+sentinel://app:pw@s1:26379,s2:26379/main/2"),
            "redis+sentinel://app:***@s1:26379,s2:26379/main/2"
        );
    }

    #[test]
    fn options_are_checked() {
        let limits = crate::config::HubConfig::default().history;
        let ok = RedisOptions::new("redis://127.0.0.1/", limits);
        assert!(ok.validate().is_ok(), "{:?}", ok.node_id);
        assert!(valid_node_id(&default_node_id()));
        let mut bad = ok.clone();
        bad.node_id = "a b".into();
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.prefix = String::new();
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.node_ttl = bad.presence_interval;
        assert!(bad.validate().is_err());
    }
}
