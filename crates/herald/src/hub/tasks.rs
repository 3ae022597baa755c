//! The hub's background loops: the shared heartbeat, the sweep (stale, too-old and idle
//! connections), token expiry, and presence events. [`spawn`] starts them, with the registry's
//! fan-out shard tasks, when a hub starts ([`Hub::start`](super::Hub::start)); they stop when
//! the hub's lifecycle is cancelled ([`Hub::shutdown`](super::Hub::shutdown), or the root above
//! it).
//!
//! Each loop holds the hub weakly, so a hub whose handles are all dropped goes away (its `Drop`
//! then cancels the loops). Every timer here is Tokio's, so the loops run on a paused clock in
//! tests (`tokio::time::pause`/`advance`) and connection ages are measured on the same clock
//! ([`clock::monotonic_now`]).

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{close_all, disconnected_data, disconnected_event, HubInner};
use crate::broker::Publication;
use crate::clock;
use crate::event::{EventName, Payload};
use crate::metrics::DisconnectReason;
use crate::presence::PresenceUpdate;
use crate::target::{ConnectionId, Target, Targets};
use crate::transport::WireFormat;

/// Spawns every background task of the hub `inner` on its lifecycle: heartbeat, sweep, one
/// fan-out task per registry shard, expiry (fed by `expiries`) and presence (fed by
/// `presence`). Returns their handles, which [`Hub::shutdown`](super::Hub::shutdown) awaits
/// before it shuts the presence store and the broker down (so that no loop still uses them).
pub(super) fn spawn(
    inner: &Arc<HubInner>,
    expiries: mpsc::Receiver<(ConnectionId, Duration)>,
    presence: mpsc::Receiver<PresenceUpdate>,
) -> Vec<JoinHandle<()>> {
    let lifecycle = &inner.lifecycle;
    let token = || lifecycle.token().clone();
    let mut handles = vec![
        lifecycle.spawn(heartbeat_loop(Arc::downgrade(inner), token())),
        lifecycle.spawn(sweep_loop(Arc::downgrade(inner), token())),
        lifecycle.spawn(expiry_loop(Arc::downgrade(inner), expiries, token())),
        lifecycle.spawn(presence_loop(Arc::downgrade(inner), presence, token())),
    ];
    for shard in 0..inner.registry.shard_count() {
        handles.push(lifecycle.spawn(inner.registry.clone().run_shard(shard, token())));
    }
    handles
}

/// Most expiry registrations waiting for the expiry task.
pub(super) const EXPIRY_QUEUE: usize = 65_536;

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
                let data = disconnected_data(reason);
                let last = |format: &dyn WireFormat| disconnected_event(format, &data);
                if hub.registry.close(id, reason, Some(&last)) {
                    tracing::debug!(connection = %id, "token expired");
                }
            }
        }
    }
}

/// Most presence changes waiting to be published.
pub(super) const PRESENCE_QUEUE: usize = 4096;

/// Publishes `presence:join` / `presence:leave` to the channel, in the order the registry saw
/// the changes, through the presence store (which publishes only changes that are news for the
/// whole hub) and the broker, like any event (so other nodes' subscribers get them too).
async fn presence_loop(
    hub: Weak<HubInner>,
    mut updates: tokio::sync::mpsc::Receiver<PresenceUpdate>,
    cancel: CancellationToken,
) {
    loop {
        let update = tokio::select! {
            _ = cancel.cancelled() => return,
            update = updates.recv() => match update {
                Some(u) => u,
                None => return,
            },
        };
        let Some(hub) = hub.upgrade() else { return };
        let publication = presence_publication(&update, SystemTime::now());
        match hub
            .presence
            .announce(&update, publication, hub.broker.as_ref())
            .await
        {
            Ok(Some(_)) => {
                hub.metrics.events_published.inc();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not publish a presence event"),
        }
    }
}

/// The `presence:join` or `presence:leave` event of `update`, stamped `at`.
pub(crate) fn presence_publication(update: &PresenceUpdate, at: SystemTime) -> Publication {
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
        payload: Payload::json(&data).expect("a JSON value encodes"),
        targets: Targets::one(Target::Channel(m.channel.clone())),
        idempotency: None,
    }
}

/// One shared timer for every connection: each tick encodes a heartbeat once per wire format and
/// queues the same bytes to every outbox of that format. No per-connection timers.
async fn heartbeat_loop(hub: Weak<HubInner>, cancel: CancellationToken) {
    let Some(period) = hub.upgrade().map(|h| h.config.heartbeat_interval) else {
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
        let style = hub.config.heartbeat_style;
        let data = format!("{{\"ts\":{}}}", clock::now_ms());
        hub.registry
            .push_all(&|format: &dyn WireFormat| format.encode_heartbeat(style, &data));
    }
}

/// Removes connections whose stream already ended (stale), closes those older than
/// `connection_timeout` (reason `timeout`) and those idle for `idle_timeout` (reason `idle`:
/// see [`Registry::sweep_candidates`](crate::registry::Registry::sweep_candidates)).
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
        let found = hub.registry.sweep_candidates(
            clock::monotonic_now(),
            hub.config.connection_timeout,
            hub.config.idle_timeout,
        );
        for id in &found.stale {
            hub.registry.remove(*id, DisconnectReason::Stale);
        }
        let closed = close_all(&hub.registry, found.expired, DisconnectReason::Timeout);
        let idle = close_all(&hub.registry, found.idle, DisconnectReason::Idle);
        if !found.stale.is_empty() || closed > 0 || idle > 0 {
            tracing::debug!(stale = found.stale.len(), timed_out = closed, idle, "sweep");
        }
    }
}

/// The loops on a paused Tokio clock: time moves only with `advance`, so each test checks both
/// that a loop ran and that it ran at its time, not before. The runtime is single-threaded, so
/// after `advance` a few yields let every woken task run.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use futures_util::{FutureExt, StreamExt};

    use crate::clock;
    use crate::config::{HeartbeatStyle, HubConfig};
    use crate::hub::{ConnectRequest, Hub};
    use crate::lifecycle::Lifecycle;
    use crate::registry::Connection;
    use crate::sse::EventStream;
    use crate::target::ConnectionId;
    use crate::transport::outbox::Outbox;

    const DAY: Duration = Duration::from_secs(24 * 3600);
    const MS: Duration = Duration::from_millis(1);

    /// Hub settings whose loops tick once a day unless a test sets them.
    fn quiet() -> HubConfig {
        HubConfig {
            heartbeat_interval: DAY,
            cleanup_interval: DAY,
            ..HubConfig::default()
        }
    }

    /// Lets every task that is ready run (the clock stays where it is).
    async fn settle() {
        for _ in 0..32 {
            tokio::task::yield_now().await;
        }
    }

    /// Moves the paused clock on by `by`, then lets every task that became ready run.
    async fn advance(by: Duration) {
        tokio::time::advance(by).await;
        settle().await;
    }

    /// Starts a hub on a fresh lifecycle, and lets its loops start their timers (at time 0).
    async fn start(config: HubConfig) -> Hub {
        let hub = Hub::start_in_memory(config, &Lifecycle::new());
        settle().await;
        hub
    }

    /// What the stream holds right now, without waiting: `None` when nothing is queued,
    /// `Some(None)` once it has ended.
    fn queued(stream: &mut EventStream) -> Option<Option<String>> {
        stream
            .next()
            .now_or_never()
            .map(|item| item.map(|bytes| String::from_utf8(bytes.unwrap().to_vec()).unwrap()))
    }

    /// Opens a connection and reads its opening (`retry:` and `connected`).
    async fn connect(hub: &Hub, request: ConnectRequest) -> EventStream {
        let mut stream = hub.connect(request).await.unwrap();
        settle().await; // the expiry loop takes the connection's deadline
        let opening = queued(&mut stream).flatten().unwrap();
        assert!(opening.contains("event: connected"), "{opening}");
        assert_eq!(queued(&mut stream), None, "nothing after the opening yet");
        stream
    }

    fn disconnects(hub: &Hub, reason: &str) -> u64 {
        hub.metrics().disconnects()[reason]
    }

    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_ticks_every_interval_and_never_before() {
        let config = HubConfig {
            heartbeat_interval: Duration::from_secs(10),
            ..quiet()
        };
        let hub = start(config).await;
        let mut stream = connect(&hub, ConnectRequest::anonymous()).await;
        for tick in 1..=3 {
            advance(Duration::from_secs(10) - MS).await;
            assert_eq!(queued(&mut stream), None, "a heartbeat before tick {tick}");
            advance(MS).await;
            let beat = queued(&mut stream).flatten().expect("no heartbeat on time");
            assert_eq!(beat.matches("event: heartbeat\n").count(), 1, "{beat}");
            assert!(beat.contains("data: {\"ts\":"), "{beat}");
            assert!(!beat.contains("id:"), "a heartbeat carries no id: {beat}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_comment_heartbeat_is_one_comment_line() {
        let config = HubConfig {
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_style: HeartbeatStyle::Comment,
            ..quiet()
        };
        let hub = start(config).await;
        let mut stream = connect(&hub, ConnectRequest::anonymous()).await;
        advance(Duration::from_secs(5) - MS).await;
        assert_eq!(queued(&mut stream), None);
        advance(MS).await;
        assert_eq!(queued(&mut stream).flatten().unwrap(), ": heartbeat\n\n");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_a_connection_at_its_maximum_age() {
        // The age reaches the timeout exactly at the third sweep: a connection age measured on
        // another clock than the sweep's timer would be a little short there, and wait a sweep.
        let config = HubConfig {
            cleanup_interval: Duration::from_secs(10),
            connection_timeout: Some(Duration::from_secs(30)),
            ..quiet()
        };
        let hub = start(config).await;
        let mut stream = connect(&hub, ConnectRequest::anonymous()).await;
        // One sweep at a time: the timer's missed-tick behaviour (`Delay`) would move the
        // sweeps after one long jump.
        for _ in 0..2 {
            advance(Duration::from_secs(10)).await;
            assert_eq!(queued(&mut stream), None, "closed before its maximum age");
        }
        advance(Duration::from_secs(10) - MS).await;
        assert_eq!(queued(&mut stream), None, "closed before its maximum age");
        assert_eq!(hub.connection_count(), 1);
        advance(MS).await;
        let last = queued(&mut stream)
            .flatten()
            .expect("not closed at its maximum age");
        assert!(last.contains("event: disconnected"), "{last}");
        assert!(last.contains("\"reason\":\"timeout\""), "{last}");
        assert_eq!(queued(&mut stream), Some(None), "the stream ends");
        assert_eq!(hub.connection_count(), 0);
        assert_eq!(disconnects(&hub, "timeout"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_maximum_age_the_sweep_keeps_connections() {
        let config = HubConfig {
            cleanup_interval: Duration::from_secs(10),
            connection_timeout: None,
            ..quiet()
        };
        let hub = start(config).await;
        let mut stream = connect(&hub, ConnectRequest::anonymous()).await;
        for _ in 0..100 {
            advance(Duration::from_secs(10)).await;
        }
        assert_eq!(queued(&mut stream), None);
        assert_eq!(hub.connection_count(), 1);
    }

    /// Everything queued right now, and whether the stream has ended.
    fn drain(stream: &mut EventStream) -> (String, bool) {
        let mut all = String::new();
        loop {
            match queued(stream) {
                None => return (all, false),
                Some(None) => return (all, true),
                Some(Some(text)) => all.push_str(&text),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_and_heartbeats_do_not_keep_it() {
        let config = HubConfig {
            heartbeat_interval: Duration::from_secs(5),
            cleanup_interval: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(30)),
            ..quiet()
        };
        let hub = start(config).await;
        let mut idle = connect(&hub, ConnectRequest::anonymous()).await;
        let mut busy = connect(&hub, ConnectRequest::user(crate::UserId::new("u").unwrap())).await;
        // Nothing but heartbeats (every 5 s) for `idle`; one event at 5 s for `busy`.
        advance(Duration::from_secs(5)).await;
        hub.send_to_user(&crate::UserId::new("u").unwrap(), "n", &1)
            .await
            .unwrap();
        // The sweeps of 10 s and 20 s; then up to just before the one of 30 s.
        advance(Duration::from_secs(5)).await;
        advance(Duration::from_secs(10)).await;
        advance(Duration::from_secs(10) - MS).await;
        let (seen, ended) = drain(&mut idle);
        assert!(!ended, "closed before it was idle for 30 s: {seen}");
        assert!(
            seen.contains("event: heartbeat"),
            "heartbeats were sent: {seen}"
        );
        advance(MS).await;
        let (last, ended) = drain(&mut idle);
        assert!(last.contains("event: disconnected"), "{last}");
        assert!(last.contains("\"reason\":\"idle\""), "{last}");
        assert!(last.contains("\"reconnect\":\"backoff\""), "{last}");
        assert!(ended, "the idle stream ends");
        // `busy` had an event at 5 s, which the sweep of 10 s saw: it is closed at the sweep of
        // 40 s, 30 s after that one, never sooner.
        let (seen, ended) = drain(&mut busy);
        assert!(seen.contains("event: n"), "{seen}");
        assert!(!ended, "closed with the idle one: {seen}");
        advance(Duration::from_secs(10) - MS).await;
        assert!(!drain(&mut busy).1, "closed before 30 s without activity");
        advance(MS).await;
        let (last, ended) = drain(&mut busy);
        assert!(last.contains("\"reason\":\"idle\""), "{last}");
        assert!(ended);
        assert_eq!(hub.connection_count(), 0);
        assert_eq!(disconnects(&hub, "idle"), 2);
        assert_eq!(disconnects(&hub, "timeout"), 0, "idle is not the age limit");
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_idle_timeout_idle_connections_stay() {
        let config = HubConfig {
            cleanup_interval: Duration::from_secs(10),
            ..quiet()
        };
        assert_eq!(config.idle_timeout, None, "off by default");
        let hub = start(config).await;
        let mut stream = connect(&hub, ConnectRequest::anonymous()).await;
        for _ in 0..100 {
            advance(Duration::from_secs(10)).await;
        }
        assert_eq!(queued(&mut stream), None);
        assert_eq!(hub.connection_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_removes_a_stale_connection_at_its_next_tick() {
        let config = HubConfig {
            cleanup_interval: Duration::from_secs(10),
            ..quiet()
        };
        let hub = start(config).await;
        // A connection whose stream ended without unregistering it.
        let stale = Arc::new(Connection {
            id: ConnectionId::random(),
            user: None,
            username: None,
            channels: Arc::from([]),
            opened_at: clock::monotonic_now(),
            opened_at_wall: SystemTime::now(),
            outbox: Outbox::new(4, 1 << 20),
            format: &crate::sse::frame::SSE,
            closer: None,
            peer_ip: None,
            session_id: None,
            metadata: None,
            active: Default::default(),
            last_active_ms: Default::default(),
            filter: None,
        });
        hub.inner.registry.register(stale.clone()).unwrap();
        stale.outbox.close(None);
        advance(Duration::from_secs(10) - MS).await;
        assert!(
            hub.inner.registry.contains(stale.id),
            "removed before the sweep"
        );
        advance(MS).await;
        assert!(
            !hub.inner.registry.contains(stale.id),
            "the sweep did not remove it"
        );
        assert_eq!(hub.connection_count(), 0);
        assert_eq!(disconnects(&hub, "stale"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn each_token_expires_at_its_own_time() {
        let hub = start(quiet()).await;
        let expiring = |after: Duration| ConnectRequest {
            expires_at: Some(SystemTime::now() + after),
            ..ConnectRequest::anonymous()
        };
        let mut soon = connect(&hub, expiring(Duration::from_secs(30))).await;
        let mut later = connect(&hub, expiring(Duration::from_secs(90))).await;
        let mut never = connect(&hub, ConnectRequest::anonymous()).await;
        // The deadline is wall-clock time; the few microseconds between `SystemTime::now()`
        // here and in `connect` move it earlier, never later: check a little on each side.
        advance(Duration::from_secs(30) - 50 * MS).await;
        assert_eq!(queued(&mut soon), None, "expired early");
        advance(100 * MS).await;
        let last = queued(&mut soon)
            .flatten()
            .expect("the token did not expire");
        assert!(last.contains("\"reason\":\"token_expired\""), "{last}");
        assert_eq!(queued(&mut soon), Some(None), "the stream ends");
        assert_eq!(
            queued(&mut later),
            None,
            "the later token expired with the first"
        );
        assert_eq!(hub.connection_count(), 2);

        advance(Duration::from_secs(60) - 100 * MS).await;
        assert_eq!(queued(&mut later), None, "expired early");
        advance(100 * MS).await;
        let last = queued(&mut later)
            .flatten()
            .expect("the token did not expire");
        assert!(last.contains("\"reason\":\"token_expired\""), "{last}");
        assert_eq!(queued(&mut never), None);
        assert_eq!(hub.connection_count(), 1);
        assert_eq!(disconnects(&hub, "token_expired"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_token_of_a_connection_that_left_closes_nothing() {
        let hub = start(quiet()).await;
        let gone = connect(
            &hub,
            ConnectRequest {
                expires_at: Some(SystemTime::now() + Duration::from_secs(5)),
                ..ConnectRequest::anonymous()
            },
        )
        .await;
        drop(gone);
        let mut other = connect(&hub, ConnectRequest::anonymous()).await;
        advance(Duration::from_secs(10)).await;
        assert_eq!(queued(&mut other), None);
        assert_eq!(disconnects(&hub, "token_expired"), 0);
        assert_eq!(disconnects(&hub, "client_closed"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_every_loop_and_cancelling_the_root_does_too() {
        let config = HubConfig {
            heartbeat_interval: Duration::from_secs(1),
            cleanup_interval: Duration::from_secs(1),
            ..HubConfig::default()
        };
        // Shut down through the hub: the loops end, and nothing of the tree is left running.
        let root = Lifecycle::new();
        let hub = Hub::start_in_memory(config.clone(), &root);
        settle().await;
        assert!(root.tasks().len() >= 5, "the loops run on the given tree");
        hub.shutdown().await;
        assert!(root.tasks().is_empty(), "{} tasks left", root.tasks().len());
        assert!(!root.is_cancelled(), "the hub stops its own subtree only");

        // Cancel the root instead: the hub shuts down as gracefully (streams end with
        // `disconnected` first), the loops end too, and no heartbeat is sent any more.
        let root = Lifecycle::new();
        let hub = Hub::start_in_memory(config, &root);
        settle().await;
        let mut stream = connect(&hub, ConnectRequest::anonymous()).await;
        root.cancel();
        assert!(
            root.wait(Duration::from_secs(1)).await,
            "a loop outlived the root"
        );
        let last = queued(&mut stream).flatten().unwrap_or_default();
        assert!(
            last.contains("event: disconnected") && last.contains("server_shutdown"),
            "the stream ends with disconnected: {last:?}"
        );
        assert_eq!(queued(&mut stream), Some(None), "then it ends");
        advance(Duration::from_secs(5)).await;
        assert!(hub.is_shutting_down());
    }

    /// Events already counted as delivered reach their streams before the `disconnected` of a
    /// shutdown, when the root is cancelled right after they were published (fan-out through
    /// the shards' queues, not inline: 64 connections).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_root_delivers_what_was_published_before_the_streams_end() {
        let root = Lifecycle::new();
        let hub = Hub::start_in_memory(quiet(), &root);
        let mut streams = Vec::new();
        for _ in 0..64 {
            let mut stream = hub.connect(ConnectRequest::anonymous()).await.unwrap();
            let _opening = stream.next().await;
            streams.push(stream);
        }
        for n in 0..20 {
            let published = hub.broadcast("n", &n).await.unwrap();
            assert_eq!(published.delivered, 64);
        }
        root.cancel();
        assert!(root.wait(Duration::from_secs(10)).await, "the tree stops");
        for mut stream in streams {
            let mut all = String::new();
            while let Some(Some(bytes)) = stream.next().now_or_never() {
                all.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
            }
            let events = all.matches("event: n\n").count();
            let end = all
                .find("event: disconnected")
                .expect("ends with disconnected");
            assert_eq!(events, 20, "{all}");
            assert!(all.rfind("event: n\n").unwrap() < end);
        }
    }
}
