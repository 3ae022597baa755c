//! [`Hub`]: the facade a transport or an application talks to. It knows nothing of HTTP.
//!
//! The hub holds the registry of live connections, the engine that carries events between
//! nodes, the metrics, and two background tasks (heartbeat, sweep). Everything else is in those
//! parts; the hub only wires them together.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock;
use crate::config::{HeartbeatStyle, HubConfig};
use crate::engine::{
    Command, Delivery, DeliveryReport, DurableHistory, Engine, EngineHealth, MemoryEngine,
    Publication, Published,
};
use crate::error::{Error, Result};
use crate::event::{EventId, EventName, Payload};
use crate::history::{HistoryStats, Replay, ReplayCap, ReplayFilter};
use crate::metrics::{DisconnectReason, Metrics};
use crate::registry::{
    Connection, ConnectionInfo, Limits, PresenceChange, Registry, TransportCloser, UserPresence,
};
use crate::sse::frame;
use crate::sse::outbox::Outbox;
use crate::sse::EventStream;
use crate::target::{ChannelName, ConnectionId, Target, Targets, UserId};

/// Most channels one connection may subscribe to.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 64;

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
}

/// Figures of `GET /api/sse/stats`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Open connections.
    pub connections: usize,
    /// Distinct connected users.
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
    /// Every node of the cluster (cluster engines only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::engine::ClusterStats>,
}

/// A cheap-to-clone handle to one hub.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    config: HubConfig,
    registry: Arc<Registry>,
    engine: Arc<dyn Engine>,
    metrics: Arc<Metrics>,
    started_at: Instant,
    /// Cancels the background tasks; cancelled by [`Hub::shutdown`] or when the last handle
    /// goes away.
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Connections to close when their credentials expire (see `expiry_loop`).
    expiries: tokio::sync::mpsc::Sender<(ConnectionId, Duration)>,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The hub's side of the engine: routes events and commands to this node's connections.
#[derive(Debug)]
struct LocalDelivery {
    registry: Arc<Registry>,
}

impl Delivery for LocalDelivery {
    fn deliver(&self, id: EventId, frame: &Bytes, targets: &Targets) -> DeliveryReport {
        self.registry.deliver(id, frame, targets)
    }

    fn is_overloaded(&self) -> bool {
        self.registry.is_overloaded()
    }

    fn connections(&self) -> Option<Vec<crate::engine::ConnectionSnapshot>> {
        Some(self.registry.snapshot())
    }

    fn presence_members(&self) -> Option<Vec<crate::engine::PresenceMember>> {
        Some(self.registry.presence_members())
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

/// The `disconnected` event for `reason`: its name, the advice on reconnecting, and a sentence.
fn disconnected_frame(reason: DisconnectReason) -> Bytes {
    let data = json!({
        "reason": reason.as_str(),
        "reconnect": reason.reconnect().as_str(),
        "message": reason.message(),
        "timestamp": clock::rfc3339(SystemTime::now()),
    });
    frame::encode_event(None, &EventName::system("disconnected"), &data.to_string())
}

fn close_all(registry: &Registry, ids: Vec<ConnectionId>, reason: DisconnectReason) -> usize {
    let last = disconnected_frame(reason);
    ids.into_iter()
        .filter(|id| registry.close(*id, reason, Some(last.clone())))
        .count()
}

impl Hub {
    /// A hub on the in-memory engine, with its replay window in memory.
    ///
    /// # Panics
    /// Outside a Tokio runtime (the hub starts its heartbeat and sweep tasks).
    pub fn new(config: HubConfig) -> Self {
        let engine = MemoryEngine::new(config.history).with_idempotency(config.idempotency);
        Self::with_engine(config, Arc::new(engine))
    }

    /// A hub on the in-memory engine whose replay window is also kept on disk in `data_dir`
    /// (and restored from it), so that clients resume across a restart.
    ///
    /// # Errors
    /// When the directory or its database cannot be opened.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn with_durable_history(
        config: HubConfig,
        data_dir: &std::path::Path,
    ) -> std::result::Result<Self, crate::engine::durable::DurableError> {
        let (window, durable) = DurableHistory::open(data_dir, config.history)?;
        let engine = MemoryEngine::with_durable_history(window, durable)
            .with_idempotency(config.idempotency);
        Ok(Self::with_engine(config, Arc::new(engine)))
    }

    /// A hub on the given engine.
    ///
    /// # Panics
    /// Outside a Tokio runtime (the hub starts its heartbeat and sweep tasks).
    pub fn with_engine(config: HubConfig, engine: Arc<dyn Engine>) -> Self {
        let mut metrics = Metrics::new();
        engine.register_metrics(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let (presence_tx, presence_rx) = tokio::sync::mpsc::channel(PRESENCE_QUEUE);
        let registry = Arc::new(
            Registry::new(
                Limits {
                    max_connections: config.max_connections,
                    max_connections_per_user: config.max_connections_per_user,
                    max_connections_per_ip: config.max_connections_per_ip,
                },
                metrics.clone(),
            )
            .with_presence(config.presence_channels.clone(), presence_tx),
        );
        engine.attach(Arc::new(LocalDelivery {
            registry: registry.clone(),
        }));
        let (expiries, expiry_rx) = tokio::sync::mpsc::channel(EXPIRY_QUEUE);
        let inner = Arc::new(HubInner {
            expiries,
            config,
            registry,
            engine,
            metrics,
            started_at: Instant::now(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        inner
            .tasks
            .spawn(heartbeat_loop(Arc::downgrade(&inner), inner.cancel.clone()));
        inner
            .tasks
            .spawn(sweep_loop(Arc::downgrade(&inner), inner.cancel.clone()));
        for shard in 0..inner.registry.shard_count() {
            inner.tasks.spawn(
                inner
                    .registry
                    .clone()
                    .run_shard(shard, inner.cancel.clone()),
            );
        }
        inner.tasks.spawn(expiry_loop(
            Arc::downgrade(&inner),
            expiry_rx,
            inner.cancel.clone(),
        ));
        inner.tasks.spawn(presence_loop(
            Arc::downgrade(&inner),
            presence_rx,
            inner.cancel.clone(),
        ));
        Hub { inner }
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Opens a connection: registers it and returns its stream, which starts with the `retry:`
    /// hint and the `connected` event. With [`ConnectRequest::last_event_id`] the stream then
    /// replays what the client missed (or sends `reset`), then continues live, with no gap and
    /// no duplicate between the two.
    ///
    /// # Errors
    /// [`Error::TooManyConnections`], [`Error::UserConnectionLimit`], [`Error::ShuttingDown`],
    /// [`Error::Engine`] when the engine cannot be read, or [`Error::Invalid`] with more than
    /// [`MAX_CHANNELS_PER_CONNECTION`] channels.
    pub async fn connect(&self, request: ConnectRequest) -> Result<EventStream> {
        let inner = &self.inner;
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
            opened_at: Instant::now(),
            opened_at_wall: now,
            outbox: Outbox::new(inner.config.queue_capacity, inner.config.queue_max_bytes),
            closer: request.closer,
            peer_ip: request.peer_ip,
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
        let connected_id = match resume_from {
            None => {
                // A fresh client starts right after the last event counted for delivery before
                // it registered: every later event was counted for it (`delivered`) and reaches
                // it live; earlier ones still being fanned out are dropped (they did not count
                // it). Its `connected` event carries that id, so even a client that has
                // received nothing yet resumes from the right place after a blip. Before this
                // node delivered its first event, nothing can be dropped: it starts at the
                // engine's head and keeps everything that arrives.
                let (start, floor) = match position {
                    Some(position) => (position, position.seq),
                    None => (inner.engine.head().await?, 0),
                };
                conn.outbox.release([], floor);
                Some(start)
            }
            Some(text) => {
                let filter = ReplayFilter {
                    user: conn.user.clone(),
                    channels: conn.channels.clone(),
                };
                // The engine pages through its history and stops at the cap, so a resume costs
                // at most that much, whatever id it names.
                let cap = ReplayCap {
                    max_events: inner.config.max_replay_events,
                    max_bytes: inner.config.max_replay_bytes,
                };
                let replay = match text.parse::<EventId>() {
                    Ok(after) => inner.engine.replay(after, &filter, cap).await?,
                    Err(_) => Replay::Reset {
                        reason: crate::history::ResetReason::UnknownEpoch,
                        head: inner.engine.head().await?,
                    },
                };
                match replay {
                    Replay::Events { frames, head } => {
                        inner.metrics.resumed(frames.len());
                        conn.outbox
                            .release(frames.into_iter().map(|(_, f)| f), head.seq);
                    }
                    Replay::Reset { reason, head } => {
                        inner.metrics.reset();
                        // The reset carries the head id: the client's next resume starts there.
                        // It is queued before any held live event (floor 0 keeps them all).
                        let data = json!({
                            "reason": reason.as_str(),
                            "lastEventId": text,
                            "message": "Events may have been missed; refetch your state",
                        });
                        let reset = frame::encode_event(
                            Some(&head),
                            &EventName::system("reset"),
                            &data.to_string(),
                        );
                        conn.outbox.release([reset], 0);
                    }
                }
                // A resuming client keeps its own last id until the replay or reset moves it.
                None
            }
        };
        let connected = json!({
            "connectionId": conn.id,
            "userId": conn.user,
            "username": conn.username.as_deref(),
            "channels": &*conn.channels,
            "serverTime": clock::rfc3339(now),
        });
        let mut opening = BytesMut::new();
        opening.put(frame::encode_retry(inner.config.retry));
        opening.put(frame::encode_event(
            connected_id.as_ref(),
            &EventName::system("connected"),
            &connected.to_string(),
        ));
        stream.set_opening(opening.freeze());
        tracing::debug!(connection = %conn.id, user = ?conn.user, "connected");
        Ok(stream)
    }

    /// Publishes an event: the engine gives it an id and queues it to every targeted connection.
    /// Returns once it is queued (not once clients have read it).
    ///
    /// # Errors
    /// [`Error::ShuttingDown`] during shutdown, [`Error::Engine`] when the engine cannot publish.
    pub async fn publish(&self, publication: Publication) -> Result<Published> {
        let inner = &self.inner;
        if inner.registry.is_closing() {
            return Err(Error::ShuttingDown);
        }
        let started = Instant::now();
        let published = inner.engine.publish(publication).await?;
        inner.metrics.events_published.inc();
        inner
            .metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(published)
    }

    async fn send(
        &self,
        name: &str,
        data: &(impl Serialize + ?Sized),
        targets: Targets,
    ) -> Result<Published> {
        self.publish(Publication {
            name: EventName::new(name)?,
            payload: Payload::json(data)?,
            targets,
            idempotency: None,
        })
        .await
    }

    /// Sends `data` as event `event` to one connection.
    ///
    /// # Errors
    /// As [`Hub::publish`], and [`Error::Invalid`] for a bad event name or unencodable data.
    pub async fn send_to_connection(
        &self,
        connection: ConnectionId,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::one(Target::Connection(connection)))
            .await
    }

    /// Sends to every connection of a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_to_user(
        &self,
        user: &UserId,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::one(Target::User(user.clone())))
            .await
    }

    /// Sends to every connection of these users, each once.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`], and [`Error::Invalid`] for an empty list.
    pub async fn send_to_users(
        &self,
        users: &[UserId],
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        let targets = Targets::new(
            users.iter().cloned().map(Target::User).collect(),
            Default::default(),
        )?;
        self.send(event, data, targets).await
    }

    /// Sends to every subscriber of a channel.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_to_channel(
        &self,
        channel: &ChannelName,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::one(Target::Channel(channel.clone())))
            .await
    }

    /// Sends to every connection.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn broadcast(
        &self,
        event: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send(event, data, Targets::broadcast()).await
    }

    /// Sends event `notification` with `{"message": message}` to a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn notify_user(&self, user: &UserId, message: &str) -> Result<Published> {
        self.send_to_user(user, "notification", &json!({ "message": message }))
            .await
    }

    /// Sends event `notification` with `{"message": message}` to everyone.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn notify_all(&self, message: &str) -> Result<Published> {
        self.broadcast("notification", &json!({ "message": message }))
            .await
    }

    /// Sends event `alert` with `{"message", "severity"}` to a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_alert(
        &self,
        user: &UserId,
        message: &str,
        severity: Severity,
    ) -> Result<Published> {
        self.send_to_user(
            user,
            "alert",
            &json!({ "message": message, "severity": severity }),
        )
        .await
    }

    /// Sends event `update` with `{"type": update_type, "payload": payload}` to a user.
    ///
    /// # Errors
    /// As [`Hub::send_to_connection`].
    pub async fn send_update(
        &self,
        user: &UserId,
        update_type: &str,
        payload: &(impl Serialize + ?Sized),
    ) -> Result<Published> {
        self.send_to_user(
            user,
            "update",
            &json!({ "type": update_type, "payload": payload }),
        )
        .await
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
            .engine
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
            .engine
            .command(Command::DisconnectAll {
                reason: DisconnectReason::ServerDisconnect,
            })
            .await?)
    }

    /// Figures of every node, for a cluster engine (`None` on one node).
    ///
    /// # Errors
    /// [`Error::Engine`] when the other nodes' figures cannot be read.
    pub async fn cluster_stats(&self) -> Result<Option<crate::engine::ClusterStats>> {
        Ok(self.inner.engine.cluster_stats().await?)
    }

    /// The users in `channel` on every node, for a cluster engine (`None` on one node).
    ///
    /// # Errors
    /// [`Error::Engine`] when the other nodes cannot be asked.
    pub async fn cluster_channel_presence(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<crate::engine::ChannelPresence>> {
        Ok(self.inner.engine.channel_presence(channel).await?)
    }

    /// The connections of `user` on every node, for a cluster engine (`None` on one node).
    ///
    /// # Errors
    /// [`Error::Engine`] when the other nodes cannot be asked.
    pub async fn cluster_user_connections(
        &self,
        user: &UserId,
    ) -> Result<Option<Vec<crate::engine::NodeConnection>>> {
        Ok(self.inner.engine.user_connections(user).await?)
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        let counts = self.inner.registry.counts();
        let m = &self.inner.metrics;
        Stats {
            connections: counts.connections,
            users: counts.users,
            anonymous_connections: counts.anonymous_connections,
            channels: counts.channels.into_iter().collect(),
            events_published: m.events_published(),
            events_delivered: m.events_delivered(),
            evicted_slow_consumers: m.evicted_slow_consumers(),
            disconnects: m.disconnects(),
            uptime_seconds: self.inner.started_at.elapsed().as_secs(),
            history: self.inner.engine.history_stats(),
            cluster: None,
        }
    }

    /// The users connected to `channel` on this node (with their connection counts and when
    /// they first connected), and the number of anonymous connections to it.
    pub fn channel_presence(&self, channel: &ChannelName) -> (Vec<UserPresence>, usize) {
        self.inner.registry.channel_presence(channel)
    }

    /// The connections of `user` on this node, oldest first; empty when offline.
    pub fn user_connections(&self, user: &UserId) -> Vec<ConnectionInfo> {
        self.inner.registry.user_connections(user)
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// The hub's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the hub can serve: its engine works and it is not shutting down.
    pub fn health(&self) -> EngineHealth {
        if self.inner.registry.is_closing() {
            return EngineHealth::Degraded("shutting down".into());
        }
        self.inner.engine.health()
    }

    /// True once [`Hub::shutdown`] has started.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.registry.is_closing()
    }

    /// Resolves once [`Hub::shutdown`] has closed the connections (or the hub is gone): for
    /// streams that are not subscriber connections, such as the stats stream, to end with them.
    pub fn shut_down(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.cancel.clone().cancelled_owned()
    }

    /// Shuts the hub down: refuses new connections and events, ends every stream with a
    /// `disconnected` event (reason `server_shutdown`) preceded by a `retry:` hint chosen at
    /// random between `retry` and `shutdown_reconnect_window` (so clients come back spread out
    /// over the window), stops the
    /// background tasks and the engine. Returns the number of connections it closed. Calling it
    /// again does nothing more.
    pub async fn shutdown(&self) -> usize {
        let inner = &self.inner;
        if inner.registry.is_closing() {
            return 0;
        }
        inner.registry.set_closing();
        let reason = DisconnectReason::ServerShutdown;
        let last = disconnected_frame(reason);
        // Every client comes back within the window, none sooner than the usual `retry:`
        // (a window shorter than it leaves `retry:` alone).
        let earliest = inner.config.retry;
        let latest = inner.config.shutdown_reconnect_window.max(earliest);
        let mut closed = 0;
        for id in inner.registry.all_ids() {
            let hint = rand::rng().random_range(earliest..=latest);
            let mut frame = BytesMut::new();
            frame.put(frame::encode_retry(hint));
            frame.put(last.clone());
            if inner.registry.close(id, reason, Some(frame.freeze())) {
                closed += 1;
            }
        }
        inner.cancel.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        inner.engine.shutdown().await;
        tracing::info!(closed, "hub shut down");
        closed
    }
}

/// Severity of an alert sent with [`Hub::send_alert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Success.
    Success,
    /// Needs attention.
    Warning,
    /// Something failed.
    Error,
}

/// Most expiry registrations waiting for the expiry task.
const EXPIRY_QUEUE: usize = 65_536;

/// Longest single wait of the expiry timer (its wheel holds up to 2^36 ms). Short enough that the
/// entries of connections that left long before their token expires are forgotten within it.
const MAX_EXPIRY_STEP: Duration = Duration::from_secs(3600);

/// Closes connections whose credentials expired, with one timer wheel for all of them
/// (`DelayQueue`), not a timer per connection. A connection that already went away is skipped.
async fn expiry_loop(
    hub: Weak<HubInner>,
    mut incoming: tokio::sync::mpsc::Receiver<(ConnectionId, Duration)>,
    cancel: CancellationToken,
) {
    use futures_util::StreamExt;
    let mut queue = tokio_util::time::DelayQueue::new();
    // The timer wheel holds deadlines up to about two years ahead and panics beyond; a token's
    // `exp` can lie anywhere up to the year 9999. A farther deadline waits in steps of
    // `MAX_EXPIRY_STEP`, the rest carried along with the id; after each step, an id whose
    // connection is gone is dropped (else every connection of a client reconnecting with a
    // year-long token would stay queued for a year).
    let schedule = |queue: &mut tokio_util::time::DelayQueue<(ConnectionId, Duration)>,
                    id: ConnectionId,
                    delay: Duration| {
        let step = delay.min(MAX_EXPIRY_STEP);
        queue.insert((id, delay - step), step);
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            next = incoming.recv() => match next {
                Some((id, delay)) => schedule(&mut queue, id, delay),
                None => return,
            },
            Some(expired) = queue.next(), if !queue.is_empty() => {
                let (id, rest) = expired.into_inner();
                let Some(hub) = hub.upgrade() else { return };
                if !rest.is_zero() {
                    if hub.registry.contains(id) {
                        schedule(&mut queue, id, rest);
                    }
                    continue;
                }
                let reason = DisconnectReason::TokenExpired;
                if hub.registry.close(id, reason, Some(disconnected_frame(reason))) {
                    tracing::debug!(connection = %id, "token expired");
                }
            }
        }
    }
}

/// Most presence changes waiting to be published.
const PRESENCE_QUEUE: usize = 4096;

/// Publishes `presence:join` / `presence:leave` to the channel, in the order the registry saw
/// the changes, through the engine like any event (so other nodes' subscribers get them too).
async fn presence_loop(
    hub: Weak<HubInner>,
    mut changes: tokio::sync::mpsc::Receiver<PresenceChange>,
    cancel: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            change = changes.recv() => match change {
                Some(c) => c,
                None => return,
            },
        };
        let Some(hub) = hub.upgrade() else { return };
        let update = crate::engine::PresenceUpdate {
            joined: change.joined,
            member: crate::engine::PresenceMember {
                channel: change.channel,
                user: change.user,
                username: change.username,
            },
        };
        let publication = presence_publication(&update, SystemTime::now());
        match hub.engine.publish_presence(&update, publication).await {
            Ok(Some(_)) => {
                hub.metrics.events_published.inc();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not publish a presence event"),
        }
    }
}

/// The `presence:join` or `presence:leave` event of `update`, stamped `at`.
pub(crate) fn presence_publication(
    update: &crate::engine::PresenceUpdate,
    at: SystemTime,
) -> Publication {
    let name = if update.joined {
        "presence:join"
    } else {
        "presence:leave"
    };
    let m = &update.member;
    let data = json!({
        "channel": m.channel,
        "userId": m.user,
        "username": m.username.as_deref(),
        "timestamp": clock::rfc3339(at),
    });
    Publication {
        name: EventName::system(name),
        payload: Payload::text(data.to_string()),
        targets: Targets::one(Target::Channel(m.channel.clone())),
        idempotency: None,
    }
}

/// One shared timer for every connection: each tick encodes a heartbeat once and queues the same
/// bytes to every outbox. No per-connection timers.
async fn heartbeat_loop(hub: Weak<HubInner>, cancel: CancellationToken) {
    let Some(period) = hub.upgrade().map(|h| h.config.heartbeat_interval) else {
        return;
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let comment = frame::encode_comment("heartbeat");
    let name = EventName::system("heartbeat");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(hub) = hub.upgrade() else { return };
        let bytes = match hub.config.heartbeat_style {
            HeartbeatStyle::Comment => comment.clone(),
            HeartbeatStyle::Event => {
                let data = format!("{{\"ts\":{}}}", clock::now_ms());
                frame::encode_event(None, &name, &data)
            }
        };
        hub.registry.push_all(&bytes);
    }
}

/// Removes connections whose stream already ended (stale) and closes those older than
/// `connection_timeout`.
async fn sweep_loop(hub: Weak<HubInner>, cancel: CancellationToken) {
    let Some(period) = hub.upgrade().map(|h| h.config.cleanup_interval) else {
        return;
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(hub) = hub.upgrade() else { return };
        let (stale, expired) = hub
            .registry
            .sweep_candidates(Instant::now(), hub.config.connection_timeout);
        for id in &stale {
            hub.registry.remove(*id, DisconnectReason::Stale);
        }
        let closed = close_all(&hub.registry, expired, DisconnectReason::Timeout);
        if !stale.is_empty() || closed > 0 {
            tracing::debug!(stale = stale.len(), timed_out = closed, "sweep");
        }
    }
}
