//! [`Hub`]: the facade a transport or an application talks to. It knows nothing of HTTP.
//!
//! The hub holds the registry of live connections, the broker that carries events between
//! nodes, the presence store that knows who is connected where, and the metrics; its background
//! loops (heartbeat, sweep, expiry, presence events) are in `tasks`. Everything else is in those
//! parts; the hub only wires them together, and asks them the same way on one node and on many.
//!
//! A hub is started, not just constructed: [`Hub::start`] (and [`Hub::start_in_memory`],
//! [`Hub::start_with_durable_history`], [`Hub::from_config`]) spawns its loops and its
//! engine's on a child of the [`Lifecycle`] it is given, and [`Hub::shutdown`] stops them.

mod tasks;

pub(crate) use tasks::presence_publication;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::broker::{
    Broker, Command, Delivery, DeliveryReport, DurableHistory, MemoryBroker, Publication, Published,
};
use crate::clock;
use crate::config::HubConfig;
use crate::engine::{Engine, EngineHealth};
use crate::error::{Error, Result};
use crate::event::{Event, EventId, EventName};
use crate::history::{HistoryStats, ReplayCap};
use crate::lifecycle::Lifecycle;
use crate::metrics::{DisconnectReason, Metrics};
use crate::presence::{
    ChannelPresence, ClusterStats, ConnectionInfo, ConnectionQuery, LocalPresence, MemoryPresence,
    NodeConnection, PresenceStore,
};
use crate::registry::{Connection, Limits, Registry, TransportCloser};
use crate::sse::frame;
use crate::sse::EventStream;
use crate::target::{ChannelName, ConnectionId, Targets, UserId};
use crate::transport::outbox::Outbox;
use crate::transport::{resume, DeliveryFilter, LenientStart, WireFormat};

/// Longest wait at shutdown for the fan-out of events already published to finish before the
/// streams end.
const FAN_OUT_DRAIN: Duration = Duration::from_secs(2);

/// Most channels one connection may subscribe to.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 64;

/// Most bytes of a connection's metadata, as compact JSON: it is kept with the connection and
/// copied into every presence answer that lists it, so it stays small.
pub const MAX_METADATA_BYTES: usize = 1024;

/// Most characters of a connection's session id.
pub const MAX_SESSION_ID_LEN: usize = 256;

/// Connection metadata: a JSON object of at most [`MAX_METADATA_BYTES`] (compact JSON), shown
/// with the connection in presence answers (`GET /api/sse/presence/users/{id}`).
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Checks a session id: 1 to [`MAX_SESSION_ID_LEN`] characters, no control characters.
///
/// # Errors
/// [`InvalidInput`](crate::InvalidInput) on field `sessionId`.
pub fn check_session_id(id: &str) -> std::result::Result<(), crate::InvalidInput> {
    if id.is_empty() || id.chars().count() > MAX_SESSION_ID_LEN {
        return Err(crate::InvalidInput::new(
            "sessionId",
            format!("a session id is 1 to {MAX_SESSION_ID_LEN} characters"),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(crate::InvalidInput::new(
            "sessionId",
            "a session id has no control characters",
        ));
    }
    Ok(())
}

/// Checks connection metadata: at most [`MAX_METADATA_BYTES`] as compact JSON.
///
/// # Errors
/// [`InvalidInput`](crate::InvalidInput) on field `metadata`.
pub fn check_metadata(metadata: &Metadata) -> std::result::Result<(), crate::InvalidInput> {
    check_metadata_within(metadata, MAX_METADATA_BYTES)
}

/// Checks connection metadata against `limit` bytes of compact JSON (a transport's
/// [`WireFormat::max_metadata_bytes`]).
fn check_metadata_within(
    metadata: &Metadata,
    limit: usize,
) -> std::result::Result<(), crate::InvalidInput> {
    // Counted without building the text (a serializer that only counts).
    struct Count(usize, usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            if self.0 > self.1 {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0, limit);
    if serde_json::to_writer(&mut count, metadata).is_err() || count.0 > limit {
        return Err(crate::InvalidInput::new(
            "metadata",
            format!("connection metadata is at most {limit} bytes of JSON"),
        ));
    }
    Ok(())
}

/// Who is connecting and what they listen to.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    /// The user, or `None` for an anonymous connection.
    pub user: Option<UserId>,
    /// A display name, echoed in the `connected` event.
    pub username: Option<Arc<str>>,
    /// Channels to subscribe to (duplicates are ignored).
    pub channels: Vec<ChannelName>,
    /// Closes the transport when the hub evicts the connection (set by the server).
    pub closer: Option<TransportCloser>,
    /// Where the client left off (`Last-Event-ID`): it first gets every retained event after
    /// this that it would have received, or a `reset` event if that is impossible. The text is
    /// parsed leniently: an id the hub cannot read is treated as an unknown epoch.
    pub last_event_id: Option<String>,
    /// The client's address, for `max_connections_per_ip`.
    pub peer_ip: Option<std::net::IpAddr>,
    /// When the credentials behind this connection expire: the hub then closes it with
    /// `disconnected` (reason `token_expired`).
    pub expires_at: Option<SystemTime>,
    /// The wire format of the connection's transport; `None` is SSE ([`frame::SSE`]).
    pub format: Option<&'static dyn WireFormat>,
    /// The client's session id (seed 001's `sessionId`), shown in presence answers; checked
    /// by [`check_session_id`].
    pub session_id: Option<Arc<str>>,
    /// Metadata shown with the connection in presence answers; checked by [`check_metadata`].
    pub metadata: Option<Metadata>,
    /// Decides per event whether the connection gets it, beyond its channels (a protocol's own
    /// matching, such as Mercure's topic selectors); `None` takes everything its targets
    /// select. Applies to the replay too.
    pub filter: Option<Arc<dyn DeliveryFilter>>,
    /// For protocols without a `reset` event: where the stream starts, replaying what can be
    /// replayed and otherwise starting live ([`Subscription::replayed`](crate::Subscription::replayed)
    /// tells which). Takes the place of [`last_event_id`](Self::last_event_id).
    pub lenient_start: Option<LenientStart>,
}

impl ConnectRequest {
    /// An anonymous connection with no channels.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A connection of `user`.
    pub fn user(user: UserId) -> Self {
        ConnectRequest {
            user: Some(user),
            ..Self::default()
        }
    }

    /// Adds channels.
    pub fn with_channels(mut self, channels: impl IntoIterator<Item = ChannelName>) -> Self {
        self.channels.extend(channels);
        self
    }

    /// Sets the display name.
    pub fn with_username(mut self, username: impl Into<Arc<str>>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Resumes after this event id.
    pub fn resuming_after(mut self, last_event_id: impl Into<String>) -> Self {
        self.last_event_id = Some(last_event_id.into());
        self
    }

    /// Sets the wire format of the connection's transport (SSE when not set).
    pub fn with_format(mut self, format: &'static dyn WireFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// Sets the session id.
    pub fn with_session_id(mut self, session_id: impl Into<Arc<str>>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// Figures of `GET /api/sse/stats`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// The seeds' name (`totalConnections`): open connections in the whole hub, on every node
    /// of a cluster ([`ClusterStats::connections`]), else [`Stats::connections`].
    pub total_connections: usize,
    /// The seeds' name (`uniqueUsers`): distinct connected users in the whole hub, a user with
    /// tabs on two nodes of a cluster counted once ([`ClusterStats::unique_users`]); else
    /// [`Stats::users`]. On a cluster too large to count them cheaply (more than 20 000 users
    /// summed over the nodes) it is the sum over nodes, [`ClusterStats::users`], an upper bound.
    pub unique_users: usize,
    /// Open connections on this node.
    pub connections: usize,
    /// Distinct connected users on this node.
    pub users: usize,
    /// Connections without a user.
    pub anonymous_connections: usize,
    /// Subscribers per channel.
    pub channels: BTreeMap<String, usize>,
    /// Events published since start.
    pub events_published: u64,
    /// Event copies queued to connections since start.
    pub events_delivered: u64,
    /// Connections evicted for reading too slowly since start.
    pub evicted_slow_consumers: u64,
    /// Connections ended since start on this node, by reason (every reason, zeros included).
    pub disconnects: BTreeMap<&'static str, u64>,
    /// Seconds since the hub started.
    pub uptime_seconds: u64,
    /// The replay window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryStats>,
    /// Every node of the cluster, as the presence store tells it: left out on one node, and
    /// while the other nodes' figures cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
}

/// Longest wait for the other nodes' figures in [`Hub::stats`].
const CLUSTER_STATS_TIMEOUT: Duration = Duration::from_secs(3);

/// A cheap-to-clone handle to one hub.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    config: HubConfig,
    registry: Arc<Registry>,
    broker: Arc<dyn Broker>,
    presence: Arc<dyn PresenceStore>,
    metrics: Arc<Metrics>,
    started_at: Instant,
    /// The hub's node of the lifecycle tree (a graceful child of the one it was started on):
    /// its token stops the background loops, and the broker's and presence store's tasks below
    /// them. Cancelled by [`Hub::shutdown`] (which the parent's cancel starts) or when the last
    /// handle goes away.
    lifecycle: Lifecycle,
    /// The background loops ([`tasks::spawn`]), awaited by [`Hub::shutdown`] before it stops
    /// the presence store and the broker; empty once it has.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Connections to close when their credentials expire (see `tasks::expiry_loop`).
    expiries: tokio::sync::mpsc::Sender<(ConnectionId, Duration)>,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        self.lifecycle.cancel();
    }
}

/// This node's registry as the engine sees it: the broker delivers events and commands through
/// it, the presence store reads this node's connections from it.
#[derive(Debug)]
struct Local {
    registry: Arc<Registry>,
}

impl Delivery for Local {
    fn deliver(&self, event: &Arc<Event>, targets: &Targets) -> DeliveryReport {
        self.registry.deliver(event, targets)
    }

    fn is_overloaded(&self) -> bool {
        self.registry.is_overloaded()
    }

    fn apply(&self, command: &Command) -> usize {
        match command {
            Command::Disconnect {
                users,
                connections,
                reason,
            } => {
                let ids = self.registry.select(users, connections);
                close_all(&self.registry, ids, *reason)
            }
            Command::DisconnectAll { reason } => {
                close_all(&self.registry, self.registry.all_ids(), *reason)
            }
        }
    }
}

impl LocalPresence for Local {
    fn channel_presence(&self, channel: &ChannelName) -> ChannelPresence {
        self.registry.channel_presence(channel)
    }

    fn user_connections(&self, user: &UserId) -> Vec<ConnectionInfo> {
        self.registry.user_connections(user)
    }

    fn connections(&self, query: &ConnectionQuery) -> Vec<ConnectionInfo> {
        self.registry.connections(query)
    }
}

/// The data of the `disconnected` event for `reason`: its name, the advice on reconnecting, and
/// a sentence.
fn disconnected_data(reason: DisconnectReason) -> String {
    let data = json!({
        "reason": reason.as_str(),
        "reconnect": reason.reconnect().as_str(),
        "message": reason.message(),
        "timestamp": clock::rfc3339(SystemTime::now()),
    });
    data.to_string()
}

/// The `disconnected` event for `reason`, in `format`.
fn disconnected_event(format: &dyn WireFormat, data: &str) -> Bytes {
    format.encode_control(None, &EventName::system("disconnected"), data)
}

fn close_all(registry: &Registry, ids: Vec<ConnectionId>, reason: DisconnectReason) -> usize {
    let data = disconnected_data(reason);
    // Encoded once per wire format, shared by every connection of it.
    let encoded: std::cell::RefCell<[Option<Bytes>; crate::event::FORMAT_SLOTS]> =
        Default::default();
    let last = |format: &dyn WireFormat| match encoded.borrow_mut().get_mut(format.slot()) {
        Some(slot) => slot
            .get_or_insert_with(|| disconnected_event(format, &data))
            .clone(),
        None => disconnected_event(format, &data),
    };
    ids.into_iter()
        .filter(|id| registry.close(*id, reason, Some(&last)))
        .count()
}

impl Hub {
    /// Starts a hub on the memory engine ([`MemoryBroker`], [`MemoryPresence`]), with its replay
    /// window in memory. See [`Hub::start`].
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start_in_memory(config: HubConfig, lifecycle: &Lifecycle) -> Self {
        let broker = MemoryBroker::new(config.history).with_idempotency(config.idempotency);
        let engine = Engine::new(Arc::new(broker), Arc::new(MemoryPresence::new()));
        Self::start(config, engine, lifecycle)
    }

    /// Starts a hub on the memory engine whose replay window is also kept on disk in
    /// `data_dir` (and restored from it), so that clients resume across a restart. See
    /// [`Hub::start`]; the broker's writer thread starts with the hub.
    ///
    /// # Errors
    /// When the directory or its database cannot be opened.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start_with_durable_history(
        config: HubConfig,
        data_dir: &std::path::Path,
        lifecycle: &Lifecycle,
    ) -> std::result::Result<Self, crate::broker::durable::DurableError> {
        let (window, durable) = DurableHistory::open(data_dir, config.history)?;
        let broker = MemoryBroker::with_durable_history(window, durable)
            .with_idempotency(config.idempotency);
        let engine = Engine::new(Arc::new(broker), Arc::new(MemoryPresence::new()));
        Ok(Self::start(config, engine, lifecycle))
    }

    /// Starts a hub on `engine`: builds its registry, starts the broker and the presence store
    /// on it ([`Broker::start`], [`PresenceStore::start`]), and spawns the hub's background
    /// loops (heartbeat, sweep, token expiry, presence events, fan-out shards). Everything runs
    /// below `lifecycle`: cancelling it starts [`Hub::shutdown`], which lets fan-out finish,
    /// ends every stream, then stops the loops, the presence store and the broker. One engine
    /// serves one hub.
    ///
    /// # Panics
    /// Outside a Tokio runtime (it spawns tasks).
    pub fn start(config: HubConfig, engine: Engine, lifecycle: &Lifecycle) -> Self {
        let parent = lifecycle.clone();
        // Not a plain child: the parent's cancel must not stop fan-out before the streams are
        // ended (events counted as delivered would never be written). It starts the shutdown.
        let lifecycle = lifecycle.graceful_child();
        let (broker, presence) = engine.into_parts();
        let mut metrics = Metrics::new();
        broker.register_metrics(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let (presence_tx, presence_rx) = tokio::sync::mpsc::channel(tasks::PRESENCE_QUEUE);
        let mut registry = Registry::new(
            Limits {
                max_connections: config.max_connections,
                max_connections_per_user: config.max_connections_per_user,
                max_connections_per_ip: config.max_connections_per_ip,
            },
            metrics.clone(),
        )
        .with_presence(config.presence_channels.clone(), presence_tx);
        if let Some(feed) = presence.feed() {
            registry = registry.with_presence_feed(feed);
        }
        let registry = Arc::new(registry);
        let local = Arc::new(Local {
            registry: registry.clone(),
        });
        broker.start(local.clone(), &lifecycle.child());
        presence.start(local, &lifecycle.child());
        let (expiries, expiry_rx) = tokio::sync::mpsc::channel(tasks::EXPIRY_QUEUE);
        let inner = Arc::new(HubInner {
            expiries,
            config,
            registry,
            broker,
            presence,
            metrics,
            started_at: Instant::now(),
            lifecycle,
            tasks: Mutex::new(Vec::new()),
        });
        *inner.tasks.lock() = tasks::spawn(&inner, expiry_rx, presence_rx);
        let weak = Arc::downgrade(&inner);
        let own = inner.lifecycle.token().clone();
        let parent_token = parent.token().clone();
        parent.spawn(async move {
            tokio::select! {
                _ = parent_token.cancelled() => {}
                // Shut down (or dropped) by itself: nothing left to do.
                _ = own.cancelled() => return,
            }
            if let Some(inner) = weak.upgrade() {
                Hub { inner }.shutdown().await;
            }
        });
        Hub { inner }
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The hub's node of the lifecycle tree. A transport whose connections run outside the
    /// server's own tasks (a WebSocket after its upgrade) counts each in its tracker, so that
    /// shutdown waits for them like for any other connection.
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// Opens a connection: registers it and returns its stream, which starts with the `retry:`
    /// hint and the `connected` event. With [`ConnectRequest::last_event_id`] the stream then
    /// replays what the client missed (or sends `reset`), then continues live, with no gap and
    /// no duplicate between the two.
    ///
    /// # Errors
    /// [`Error::TooManyConnections`], [`Error::UserConnectionLimit`], [`Error::ShuttingDown`],
    /// [`Error::Engine`] when the broker cannot be read, or [`Error::Invalid`] with more than
    /// [`MAX_CHANNELS_PER_CONNECTION`] channels, a session id [`check_session_id`] refuses or
    /// metadata [`check_metadata`] refuses.
    pub async fn connect(&self, request: ConnectRequest) -> Result<EventStream> {
        let inner = &self.inner;
        if let Some(id) = &request.session_id {
            check_session_id(id)?;
        }
        if let Some(metadata) = &request.metadata {
            let format = request.format.unwrap_or(&frame::SSE);
            check_metadata_within(metadata, format.max_metadata_bytes())?;
        }
        let mut channels = request.channels;
        channels.sort_unstable();
        channels.dedup();
        if channels.len() > MAX_CHANNELS_PER_CONNECTION {
            return Err(crate::error::InvalidInput::new(
                "channels",
                format!("at most {MAX_CHANNELS_PER_CONNECTION} channels per connection"),
            )
            .into());
        }
        let now = SystemTime::now();
        let conn = Arc::new(Connection {
            id: ConnectionId::random(),
            user: request.user,
            username: request.username,
            channels: channels.into(),
            opened_at: clock::monotonic_now(),
            opened_at_wall: now,
            outbox: Outbox::new(inner.config.queue_capacity, inner.config.queue_max_bytes),
            format: request.format.unwrap_or(&frame::SSE),
            closer: request.closer,
            peer_ip: request.peer_ip,
            session_id: request.session_id,
            metadata: request.metadata.map(Arc::new),
            active: Default::default(),
            last_active_ms: Default::default(),
            filter: request.filter,
        });
        let resume_from = request.last_event_id.filter(|s| !s.is_empty());
        // Live events wait until the stream's start position is known (and, for a resume, the
        // replay is queued); see `Outbox::release`.
        conn.outbox.hold();
        let position = inner.registry.register(conn.clone())?;
        if let Some(at) = request.expires_at {
            let delay = at.duration_since(now).unwrap_or(Duration::ZERO);
            if inner.expiries.try_send((conn.id, delay)).is_err() {
                tracing::warn!("expiry queue full; closing the connection now");
                inner
                    .registry
                    .remove(conn.id, DisconnectReason::TokenExpired);
                return Err(Error::ShuttingDown);
            }
        }
        // From here on, dropping `stream` (an error below, or the client leaving) unregisters.
        let mut stream = EventStream::new(conn.clone(), inner.registry.clone());
        let cap = ReplayCap {
            max_events: inner.config.max_replay_events,
            max_bytes: inner.config.max_replay_bytes,
        };
        let connected_id = match request.lenient_start {
            Some(start) => {
                let replayed = resume::start_lenient(
                    &conn,
                    position,
                    start,
                    inner.broker.as_ref(),
                    cap,
                    &inner.metrics,
                )
                .await?;
                stream.set_replayed(replayed);
                None
            }
            None => {
                resume::start(
                    &conn,
                    position,
                    resume_from,
                    inner.broker.as_ref(),
                    cap,
                    &inner.metrics,
                )
                .await?
            }
        };
        // A struct, not `json!`: every connect builds one, and a `Value` map costs an
        // allocation per key before it is written out.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Connected<'a> {
            connection_id: ConnectionId,
            user_id: &'a Option<UserId>,
            username: Option<&'a str>,
            channels: &'a [ChannelName],
            server_time: String,
        }
        let connected = serde_json::to_string(&Connected {
            connection_id: conn.id,
            user_id: &conn.user,
            username: conn.username.as_deref(),
            channels: &conn.channels,
            server_time: clock::rfc3339(now),
        })
        .expect("the connected event serializes");
        let mut opening = BytesMut::with_capacity(connected.len() + 64);
        if let Some(retry) = conn.format.encode_retry(inner.config.retry) {
            opening.put(retry);
        }
        opening.put(conn.format.encode_control(
            connected_id.as_ref(),
            &EventName::system("connected"),
            &connected,
        ));
        stream.set_opening(opening.freeze());
        tracing::debug!(connection = %conn.id, user = ?conn.user, "connected");
        Ok(stream)
    }

    /// Publishes an event: the broker gives it an id and queues it to every targeted connection.
    /// Returns once it is queued (not once clients have read it).
    ///
    /// # Errors
    /// [`Error::ShuttingDown`] during shutdown, [`Error::Engine`] when the broker cannot publish.
    pub async fn publish(&self, publication: Publication) -> Result<Published> {
        self.publish_inner(publication, None).await
    }

    /// [`Hub::publish`], remembering that `key` (an id the publisher chose, such as a Mercure
    /// update's id) names the event, for [`Hub::find_key`], where the broker keeps keys
    /// (Redis: beside the stream, for the whole cluster, trimmed with it).
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub async fn publish_keyed(&self, publication: Publication, key: &str) -> Result<Published> {
        self.publish_inner(publication, Some(key)).await
    }

    /// The retained event `key` names ([`Hub::publish_keyed`]) in one lookup, if the broker
    /// knows it; `None` otherwise (unknown, trimmed, a broker that keeps no keys, or the
    /// broker cannot be reached now).
    pub async fn find_key(&self, key: &str) -> Option<EventId> {
        match self.inner.broker.find_key(key).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look up a publisher's id");
                None
            }
        }
    }

    async fn publish_inner(
        &self,
        publication: Publication,
        key: Option<&str>,
    ) -> Result<Published> {
        let inner = &self.inner;
        if inner.registry.is_closing() {
            return Err(Error::ShuttingDown);
        }
        let started = Instant::now();
        let published = match key {
            Some(key) => inner.broker.publish_keyed(publication, key).await?,
            None => inner.broker.publish(publication).await?,
        };
        inner.metrics.events_published.inc();
        inner
            .metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(published)
    }

    /// Publishes several events, in order, each with its own outcome: what
    /// [`publish`](Self::publish) would answer for each, in one call to the broker (the memory
    /// broker takes its lock once per chunk of events, not once per event).
    pub async fn publish_batch(&self, publications: Vec<Publication>) -> Vec<Result<Published>> {
        let inner = &self.inner;
        if inner.registry.is_closing() {
            return publications
                .iter()
                .map(|_| Err(Error::ShuttingDown))
                .collect();
        }
        let started = Instant::now();
        let results = inner.broker.publish_batch(publications).await;
        let seconds = started.elapsed().as_secs_f64();
        results
            .into_iter()
            .map(|result| {
                let published = result?;
                inner.metrics.events_published.inc();
                inner.metrics.publish_seconds.observe(seconds);
                Ok(published)
            })
            .collect()
    }

    /// Ends the connections of these users and these connection ids, each with a
    /// `disconnected` event (reason `server_disconnect`). Returns how many ended.
    ///
    /// # Errors
    /// [`Error::Engine`] when the command cannot reach the other nodes.
    pub async fn disconnect(
        &self,
        users: Vec<UserId>,
        connections: Vec<ConnectionId>,
    ) -> Result<usize> {
        Ok(self
            .inner
            .broker
            .command(Command::Disconnect {
                users,
                connections,
                reason: DisconnectReason::ServerDisconnect,
            })
            .await?)
    }

    /// Ends every connection with a `disconnected` event (reason `server_disconnect`).
    ///
    /// # Errors
    /// [`Error::Engine`] when the command cannot reach the other nodes.
    pub async fn disconnect_all(&self) -> Result<usize> {
        Ok(self
            .inner
            .broker
            .command(Command::DisconnectAll {
                reason: DisconnectReason::ServerDisconnect,
            })
            .await?)
    }

    /// Current figures: this node's, and every node's in [`Stats::cluster`] as the presence
    /// store tells them (left out on one node, and while they cannot be read: a cluster that
    /// does not answer within a few seconds does not hold up the local figures).
    pub async fn stats(&self) -> Stats {
        let counts = self.inner.registry.counts();
        let m = &self.inner.metrics;
        let cluster =
            match tokio::time::timeout(CLUSTER_STATS_TIMEOUT, self.inner.presence.cluster_stats())
                .await
            {
                Ok(Ok(cluster)) => cluster,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cluster stats unavailable");
                    None
                }
                Err(_) => {
                    tracing::debug!("cluster stats timed out");
                    None
                }
            };
        let (total_connections, unique_users) = match &cluster {
            Some(c) => (c.connections, c.unique_users.unwrap_or(c.users)),
            None => (counts.connections, counts.users),
        };
        Stats {
            total_connections,
            unique_users,
            connections: counts.connections,
            users: counts.users,
            anonymous_connections: counts.anonymous_connections,
            channels: counts.channels.into_iter().collect(),
            events_published: m.events_published(),
            events_delivered: m.events_delivered(),
            evicted_slow_consumers: m.evicted_slow_consumers(),
            disconnects: m.disconnects(),
            uptime_seconds: self.inner.started_at.elapsed().as_secs(),
            history: self.inner.broker.history_stats(),
            cluster,
        }
    }

    /// The users connected to `channel` on every node (with their connection counts and when
    /// they first connected), and the number of anonymous connections to it.
    ///
    /// # Errors
    /// [`Error::Engine`] when the other nodes cannot be asked.
    pub async fn channel_presence(&self, channel: &ChannelName) -> Result<ChannelPresence> {
        Ok(self.inner.presence.channel_presence(channel).await?)
    }

    /// The connections of `user` on every node, oldest first (each with its node's id on a
    /// cluster); empty when offline.
    ///
    /// # Errors
    /// [`Error::Engine`] when the other nodes cannot be asked.
    pub async fn user_connections(&self, user: &UserId) -> Result<Vec<NodeConnection>> {
        Ok(self.inner.presence.user_connections(user).await?)
    }

    /// The connections `query` selects on every node, oldest first, with their metadata.
    ///
    /// # Errors
    /// [`Error::Engine`] when the other nodes cannot be asked.
    pub async fn connections(&self, query: &ConnectionQuery) -> Result<Vec<NodeConnection>> {
        Ok(self.inner.presence.connections(query).await?)
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// The hub's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the hub can serve: its broker works and it is not shutting down.
    pub fn health(&self) -> EngineHealth {
        if self.inner.registry.is_closing() {
            return EngineHealth::Degraded("shutting down".into());
        }
        self.inner.broker.health()
    }

    /// True once [`Hub::shutdown`] has started.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.registry.is_closing()
    }

    /// Resolves once the hub stops: [`Hub::shutdown`] has closed the connections, the
    /// lifecycle it was started on was cancelled, or the hub is gone. For streams that are not
    /// subscriber connections, such as the stats stream, to end with them.
    pub fn shut_down(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.lifecycle.token().clone().cancelled_owned()
    }

    /// Shuts the hub down: refuses new connections and events, ends every stream with a
    /// `disconnected` event (reason `server_shutdown`) preceded by a `retry:` hint chosen at
    /// random between `retry` and `shutdown_reconnect_window` (so clients come back spread out
    /// over the window), then stops the background loops (cancelling the hub's lifecycle and
    /// awaiting them), the presence store ([`PresenceStore::shutdown`]: this node leaves the
    /// cluster's presence) and the broker ([`Broker::shutdown`]). Returns the number of
    /// connections it closed. Calling it again does nothing more.
    ///
    /// Connection tasks are not the hub's: whoever runs them waits for them afterwards
    /// ([`server::serve`](crate::server::serve) does, under its shutdown timeout).
    pub async fn shutdown(&self) -> usize {
        let inner = &self.inner;
        if inner.registry.is_closing() {
            return 0;
        }
        inner.registry.set_closing();
        // Events already counted as delivered are still being fanned out: let the shards push
        // them before the streams end, so that a client gets them live and not only on resume.
        let deadline = tokio::time::Instant::now() + FAN_OUT_DRAIN;
        while !inner.registry.fan_out_is_idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let reason = DisconnectReason::ServerShutdown;
        let data = disconnected_data(reason);
        // Every client comes back within the window, none sooner than the usual `retry:`
        // (a window shorter than it leaves `retry:` alone).
        let earliest = inner.config.retry;
        let latest = inner.config.shutdown_reconnect_window.max(earliest);
        let mut closed = 0;
        for id in inner.registry.all_ids() {
            let hint = rand::rng().random_range(earliest..=latest);
            let last = |format: &dyn WireFormat| {
                let mut frame = BytesMut::new();
                if let Some(retry) = format.encode_retry(hint) {
                    frame.put(retry);
                }
                frame.put(disconnected_event(format, &data));
                frame.freeze()
            };
            if inner.registry.close(id, reason, Some(&last)) {
                closed += 1;
            }
        }
        inner.lifecycle.cancel();
        let loops = std::mem::take(&mut *inner.tasks.lock());
        for task in loops {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a background task of the hub failed");
            }
        }
        inner.presence.shutdown().await;
        inner.broker.shutdown().await;
        tracing::info!(closed, "hub shut down");
        closed
    }
}
