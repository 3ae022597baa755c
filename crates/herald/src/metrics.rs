//! Prometheus metrics of one hub, in a registry the hub owns (no global recorder, so several hubs
//! in one process, as in tests, keep separate figures).
//!
//! Labels stay low-cardinality: disconnect reasons and rejection kinds are small enums; user ids,
//! channel names and connection ids never become labels.

use std::fmt::{self, Write as _};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Why the hub ended a connection: the one list of reasons, shared by the `disconnected` event,
/// the `herald_disconnects_total{reason}` metric, the stats and the cluster's control messages.
///
/// Each reason says whether a client should come back ([`DisconnectReason::reconnect`]), and the
/// `disconnected` event carries that advice as its `reconnect` field, so that clients follow it
/// instead of guessing from the reason's name (a reason added later needs no client change).
/// Whatever the advice, a client that reconnects sends its last event id and misses nothing the
/// history still holds.
///
/// Some reasons never reach the client as an event (it is gone, or could not read one): they are
/// still documented here, because the metrics count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The client went away: it closed the socket, or a write to it failed. No event is sent
    /// (nobody would read it). Advice: [`Reconnect::Now`], nothing is wrong on the hub's side.
    ClientClosed,
    /// The client read too slowly: its outbox (`queue_capacity` frames or `queue_max_bytes`)
    /// filled up and it was evicted, without an event (it could not have read one). Advice:
    /// [`Reconnect::Backoff`], resuming with its last event id; coming back at once would only
    /// fill the outbox again.
    SlowConsumer,
    /// An operator or the backend asked for it (`POST /api/sse/disconnect`,
    /// `/api/sse/disconnect-all`). Advice: [`Reconnect::Backoff`]: a kick ends a connection, it
    /// does not ban; a backend that wants a user gone must also stop issuing it tokens.
    ServerDisconnect,
    /// The hub is shutting down (a deploy or a restart). The event comes after a `retry:` hint
    /// spread over `shutdown_reconnect_window`. Advice: [`Reconnect::Backoff`], no sooner than
    /// that hint, so that clients do not all come back in the same instant.
    ServerShutdown,
    /// The connection reached its maximum age, `connection_timeout` (routine rotation, for
    /// example to rebalance a cluster). Advice: [`Reconnect::Now`].
    Timeout,
    /// The periodic sweep found the connection's stream already ended. No event is sent (the
    /// stream is gone). Advice: [`Reconnect::Now`].
    Stale,
    /// The subscriber's token expired (its `exp` passed, with `token_expiry = close`). Advice:
    /// [`Reconnect::NewToken`]: the same token would be refused.
    TokenExpired,
    /// The connection was idle for `idle_timeout`: nothing but heartbeats was sent to it and
    /// nothing was received from it (WebSocket pongs and frames, Socket.IO packets). Distinct
    /// from [`DisconnectReason::Timeout`], which is about age, not activity. Advice:
    /// [`Reconnect::Backoff`]: a page still open comes back after a delay and resumes with its
    /// last event id; one nobody looks at any more is gone.
    Idle,
}

/// Whether and when a client should reconnect after a [`DisconnectReason`]: the `reconnect`
/// field of the `disconnected` event, one of `"now"`, `"backoff"`, `"new_token"` or `"no"`.
///
/// A client that does not know a value (a later version may add one) treats it as `backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconnect {
    /// Reconnect at once (with the last event id): the connection ended for a routine reason.
    Now,
    /// Reconnect after a delay, growing (with jitter) while attempts fail, and no sooner than
    /// the `retry:` hint the stream carried.
    Backoff,
    /// Reconnect only with a fresh token (after a delay, as for `backoff`); with the same token
    /// the hub would refuse the connection.
    NewToken,
    /// Do not reconnect. No reason of this version uses it; clients must honour it for the
    /// reasons a later version may add.
    No,
}

impl Reconnect {
    /// The advice as it appears in the `reconnect` field of `disconnected` events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reconnect::Now => "now",
            Reconnect::Backoff => "backoff",
            Reconnect::NewToken => "new_token",
            Reconnect::No => "no",
        }
    }
}

impl DisconnectReason {
    /// Every reason, in the order the stats list them.
    pub const ALL: [DisconnectReason; 8] = [
        DisconnectReason::ClientClosed,
        DisconnectReason::SlowConsumer,
        DisconnectReason::ServerDisconnect,
        DisconnectReason::ServerShutdown,
        DisconnectReason::Timeout,
        DisconnectReason::Stale,
        DisconnectReason::TokenExpired,
        DisconnectReason::Idle,
    ];

    /// The reason as it appears in `disconnected` events (`reason`), metrics and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed => "client_closed",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::ServerDisconnect => "server_disconnect",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::Timeout => "timeout",
            DisconnectReason::Stale => "stale",
            DisconnectReason::TokenExpired => "token_expired",
            DisconnectReason::Idle => "idle",
        }
    }

    /// The reason [`as_str`](Self::as_str) names, or `None` for a name this version does not
    /// know (a message from a newer node, for example).
    pub fn from_name(name: &str) -> Option<DisconnectReason> {
        DisconnectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
    }

    /// Whether and when the client should reconnect (the `reconnect` field of the
    /// `disconnected` event). See each variant for why.
    pub fn reconnect(self) -> Reconnect {
        match self {
            DisconnectReason::ClientClosed
            | DisconnectReason::Timeout
            | DisconnectReason::Stale => Reconnect::Now,
            DisconnectReason::SlowConsumer
            | DisconnectReason::ServerDisconnect
            | DisconnectReason::ServerShutdown
            | DisconnectReason::Idle => Reconnect::Backoff,
            DisconnectReason::TokenExpired => Reconnect::NewToken,
        }
    }

    /// A sentence for people (the `message` field of the `disconnected` event). Clients decide
    /// on `reason` and `reconnect`, never on this text, which may change.
    pub fn message(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed | DisconnectReason::Stale => "Connection closed",
            DisconnectReason::SlowConsumer => "The client did not keep up; reconnect",
            DisconnectReason::ServerDisconnect => "Disconnected by the server",
            DisconnectReason::ServerShutdown => "The server is shutting down; reconnect later",
            DisconnectReason::Timeout => "The connection reached its maximum age; reconnect",
            DisconnectReason::TokenExpired => "The token expired; reconnect with a fresh one",
            DisconnectReason::Idle => "The connection was idle; reconnect when needed",
        }
    }
}

impl EncodeLabelValue for DisconnectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `max_connections` reached.
    MaxConnections,
    /// `max_connections_per_user` reached.
    MaxConnectionsPerUser,
    /// `max_connections_per_ip` reached.
    MaxConnectionsPerIp,
    /// Shutting down.
    ShuttingDown,
}

impl RejectReason {
    /// The reason as it appears in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MaxConnections => "max_connections",
            RejectReason::MaxConnectionsPerUser => "max_connections_per_user",
            RejectReason::MaxConnectionsPerIp => "max_connections_per_ip",
            RejectReason::ShuttingDown => "shutting_down",
        }
    }
}

impl EncodeLabelValue for RejectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: DisconnectReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectLabel {
    reason: RejectReason,
}

/// What the auth hook decided about one subscriber (`herald_auth_hook_answers_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthHookOutcome {
    /// The app admitted it.
    Admitted,
    /// The app refused it (`401`/`403`).
    Refused,
    /// The app could not be asked, or its answer could not be used (`503`).
    Unavailable,
}

impl EncodeLabelValue for AuthHookOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        encoder.write_str(match self {
            AuthHookOutcome::Admitted => "admitted",
            AuthHookOutcome::Refused => "refused",
            AuthHookOutcome::Unavailable => "unavailable",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuthHookLabel {
    outcome: AuthHookOutcome,
    /// `true`: a cached answer; `false`: a call to the app.
    cached: bool,
}

/// The hub's counters and gauges. Cheap to update from any thread (atomics).
pub struct Metrics {
    registry: Registry,
    pub(crate) connections: Gauge,
    pub(crate) users: Gauge,
    pub(crate) channels: Gauge,
    pub(crate) events_published: Counter,
    pub(crate) events_delivered: Counter,
    pub(crate) evicted_slow_consumers: Counter,
    disconnects: Family<ReasonLabel, Counter>,
    rejected: Family<RejectLabel, Counter>,
    pub(crate) publish_seconds: Histogram,
    resumes: Counter,
    replayed_events: Counter,
    resets: Counter,
    pub(crate) transport_connections: Counter,
    webhooks: crate::webhooks::WebhookMetrics,
    auth_hook_answers: Family<AuthHookLabel, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("connections", &self.connections.get())
            .field("events_published", &self.events_published.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let connections = Gauge::default();
        let users = Gauge::default();
        let channels = Gauge::default();
        let events_published = Counter::default();
        let events_delivered = Counter::default();
        let evicted_slow_consumers = Counter::default();
        let disconnects = Family::<ReasonLabel, Counter>::default();
        let rejected = Family::<RejectLabel, Counter>::default();
        // 50µs .. ~1.6s: publishes are usually well under a millisecond.
        let publish_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16),
        );
        registry.register("connections", "Open SSE connections", connections.clone());
        registry.register(
            "users",
            "Distinct users with at least one connection",
            users.clone(),
        );
        registry.register(
            "channels",
            "Channels with at least one subscriber",
            channels.clone(),
        );
        registry.register(
            "events_published",
            "Events accepted for publishing",
            events_published.clone(),
        );
        registry.register(
            "events_delivered",
            "Event copies queued to connections",
            events_delivered.clone(),
        );
        registry.register(
            "evicted_slow_consumers",
            "Connections disconnected because they read too slowly",
            evicted_slow_consumers.clone(),
        );
        registry.register(
            "disconnects",
            "Connections ended, by reason",
            disconnects.clone(),
        );
        registry.register(
            "connections_rejected",
            "New connections refused, by reason",
            rejected.clone(),
        );
        let transport_connections = Counter::default();
        registry.register(
            "transport_connections_accepted",
            "TCP connections accepted by the server (several requests or HTTP/2 streams may share one)",
            transport_connections.clone(),
        );
        let resumes = Counter::default();
        let replayed_events = Counter::default();
        let resets = Counter::default();
        registry.register(
            "resumes",
            "Connections that resumed from a Last-Event-ID",
            resumes.clone(),
        );
        registry.register(
            "replayed_events",
            "Events replayed to resuming connections",
            replayed_events.clone(),
        );
        registry.register(
            "resets",
            "Resumes answered with a reset event (gap, unknown epoch, or a replay over the cap)",
            resets.clone(),
        );
        registry.register(
            "publish_duration_seconds",
            "Time to accept and route one published event",
            publish_seconds.clone(),
        );
        let webhooks = crate::webhooks::WebhookMetrics::register(&mut registry);
        let auth_hook_answers = Family::<AuthHookLabel, Counter>::default();
        registry.register(
            "auth_hook_answers",
            "Subscribers decided by the auth hook, by outcome and whether the answer was cached",
            auth_hook_answers.clone(),
        );
        Metrics {
            webhooks,
            registry,
            connections,
            users,
            channels,
            events_published,
            events_delivered,
            evicted_slow_consumers,
            disconnects,
            rejected,
            publish_seconds,
            resumes,
            replayed_events,
            resets,
            transport_connections,
            auth_hook_answers,
        }
    }

    /// Counts one subscriber decided by the auth hook.
    pub(crate) fn auth_hook_answered(&self, outcome: AuthHookOutcome, cached: bool) {
        self.auth_hook_answers
            .get_or_create(&AuthHookLabel { outcome, cached })
            .inc();
    }

    pub(crate) fn resumed(&self, replayed: usize) {
        self.resumes.inc();
        self.replayed_events.inc_by(replayed as u64);
    }

    /// Counts a TCP connection accepted by the server.
    pub fn transport_connection_accepted(&self) {
        self.transport_connections.inc();
    }

    pub(crate) fn reset(&self) {
        self.resets.inc();
    }

    pub(crate) fn disconnected(&self, reason: DisconnectReason) {
        self.disconnects
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if reason == DisconnectReason::SlowConsumer {
            self.evicted_slow_consumers.inc();
        }
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        self.rejected.get_or_create(&RejectLabel { reason }).inc();
    }

    /// The counters of inbound webhooks.
    pub fn webhooks(&self) -> &crate::webhooks::WebhookMetrics {
        &self.webhooks
    }

    /// Events accepted for publishing since start.
    pub fn events_published(&self) -> u64 {
        self.events_published.get()
    }

    /// Event copies queued to connections since start.
    pub fn events_delivered(&self) -> u64 {
        self.events_delivered.get()
    }

    /// Connections evicted as slow consumers since start.
    pub fn evicted_slow_consumers(&self) -> u64 {
        self.evicted_slow_consumers.get()
    }

    /// Connections ended since start, by reason (every reason, zeros included).
    pub fn disconnects(&self) -> std::collections::BTreeMap<&'static str, u64> {
        DisconnectReason::ALL
            .iter()
            .map(|&reason| {
                let n = self
                    .disconnects
                    .get(&ReasonLabel { reason })
                    .map_or(0, |c| c.get());
                (reason.as_str(), n)
            })
            .collect()
    }

    /// The registry, for an engine to add its own metrics at start.
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The advice each reason gives is part of the wire contract (docs/api.md, the JS client):
    /// a change here is a change for every client.
    #[test]
    fn every_reason_names_itself_and_its_reconnect_advice() {
        let expected = [
            ("client_closed", "now"),
            ("slow_consumer", "backoff"),
            ("server_disconnect", "backoff"),
            ("server_shutdown", "backoff"),
            ("timeout", "now"),
            ("stale", "now"),
            ("token_expired", "new_token"),
            ("idle", "backoff"),
        ];
        let seen: Vec<_> = DisconnectReason::ALL
            .iter()
            .map(|r| (r.as_str(), r.reconnect().as_str()))
            .collect();
        assert_eq!(seen, expected);
        for reason in DisconnectReason::ALL {
            assert_eq!(DisconnectReason::from_name(reason.as_str()), Some(reason));
            assert!(!reason.message().is_empty());
            // The serde form is the wire text.
            assert_eq!(
                serde_json::to_value(reason.reconnect()).unwrap(),
                reason.reconnect().as_str()
            );
        }
        assert_eq!(DisconnectReason::from_name("token_revoked"), None);
        for advice in [
            Reconnect::Now,
            Reconnect::Backoff,
            Reconnect::NewToken,
            Reconnect::No,
        ] {
            let text = serde_json::to_string(&advice).unwrap();
            assert_eq!(text, format!("\"{}\"", advice.as_str()));
            assert_eq!(serde_json::from_str::<Reconnect>(&text).unwrap(), advice);
        }
    }
}
