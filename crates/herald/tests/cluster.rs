//! Cluster mode: several Herald nodes (in this process, each with its own HTTP server) share one
//! real `redis-server`, started by the test on a free loopback port, through the Redis engine.
//! Every test has its own Redis and its own key prefix.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use herald::broker::RedisOptions;
use herald::config::Config;
use herald::http::AppState;
use herald::presence::ClusterStats;
use herald::Engine;
use herald::{ConnectRequest, Hub, Lifecycle, UserId};
use redis_support::RedisServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{read_json, SseClient, WAIT};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A key prefix no other test uses.
fn prefix(test: &str) -> String {
    format!("t-{test}-{:08x}", rand::random::<u32>())
}

/// Engine settings for tests: quick reports, quick expiry, quick reconnects.
fn options(redis: &RedisServer, prefix: &str, node: &str, config: &Config) -> RedisOptions {
    let mut o = RedisOptions::new(redis.url(), config.hub.history);
    o.prefix = prefix.into();
    o.node_id = node.into();
    o.presence_interval = Duration::from_millis(100);
    o.node_ttl = Duration::from_secs(1);
    o.max_backoff = Duration::from_millis(300);
    o
}

/// The HTTP side of a node, cheap to clone into a publishing task.
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = tokio::time::timeout(WAIT, self.http.post(self.url(path)).json(body).send())
            .await
            .expect("POST timed out")
            .expect("POST failed");
        read_json(response).await
    }

    async fn publish(&self, body: Value) -> (StatusCode, Value) {
        self.post("/api/sse/message", &body).await
    }

    /// `GET path` as JSON, asserting 200.
    async fn get(&self, path: &str) -> Value {
        let response = tokio::time::timeout(WAIT, self.http.get(self.url(path)).send())
            .await
            .expect("GET timed out")
            .expect("GET failed");
        let (status, body) = read_json(response).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Publishes and asserts success; returns `(id, delivered)`.
    async fn publish_ok(&self, body: Value) -> (String, u64) {
        let (status, answer) = self.publish(body.clone()).await;
        assert_eq!(status, StatusCode::OK, "publish {body}: {answer}");
        (
            answer["id"].as_str().unwrap().to_owned(),
            answer["delivered"].as_u64().unwrap(),
        )
    }
}

/// One Herald node on the Redis engine.
struct Node {
    api: Api,
    engine: Engine,
    hub: Hub,
    cancel: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Node {
    async fn start(redis: &RedisServer, prefix: &str, name: &str) -> Node {
        Self::with_config(redis, prefix, name, Config::default()).await
    }

    async fn with_config(redis: &RedisServer, prefix: &str, name: &str, config: Config) -> Node {
        let engine = Engine::redis(options(redis, prefix, name, &config))
            .await
            .expect("connect to the test's Redis");
        Self::with_engine(engine, config).await
    }

    /// A node on an engine already connected.
    async fn with_engine(engine: Engine, mut config: Config) -> Node {
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.validate().expect("test configuration is valid");
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lifecycle = Lifecycle::new();
        let hub = Hub::start(config.hub.clone(), engine.clone(), &lifecycle);
        let state = AppState::new(hub.clone(), config.http.clone());
        let cancel = lifecycle.token().clone();
        let server_options = herald::server::ServerOptions::from_config(&config).unwrap();
        let task = tokio::spawn(herald::server::serve(
            listener,
            state,
            lifecycle,
            server_options,
        ));
        Node {
            api: Api {
                base: format!("http://{addr}"),
                http: support::http_client(),
            },
            engine,
            hub,
            cancel,
            task: Some(task),
        }
    }

    async fn subscribe(&self, query: &str) -> SseClient {
        self.open(query, None).await
    }

    async fn resume(&self, query: &str, last_id: &str) -> SseClient {
        self.open(query, Some(last_id)).await
    }

    async fn open(&self, query: &str, last_id: Option<&str>) -> SseClient {
        let mut request = self
            .api
            .http
            .get(self.api.url(&format!("/api/sse?{query}")));
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("subscribe timed out")
            .expect("subscribe failed");
        assert_eq!(response.status(), StatusCode::OK, "subscribe {query}");
        SseClient::open(response).await
    }

    async fn publish_ok(&self, body: Value) -> (String, u64) {
        self.api.publish_ok(body).await
    }

    /// Polls `GET /readyz` until it answers `want`; fails after [`WAIT`].
    async fn wait_ready(&self, want: StatusCode) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let response = self.api.http.get(self.api.url("/readyz")).send().await;
            if let Ok(response) = response {
                let (status, body) = read_json(response).await;
                if status == want {
                    return body;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz did not answer {want} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Shuts the node down as SIGTERM would, without waiting for its connections.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the server to return after [`Node::cancel`].
    async fn stopped(&mut self) {
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("serve did not return after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Nodes `a`, `b` and `c` of a new cluster, each ready; and its key prefix. A ready node
/// listens on the control channel (commands and presence queries reach it).
async fn three_nodes(redis: &RedisServer, test: &str) -> (String, [Node; 3]) {
    let prefix = prefix(test);
    let nodes = [
        Node::start(redis, &prefix, "a").await,
        Node::start(redis, &prefix, "b").await,
        Node::start(redis, &prefix, "c").await,
    ];
    for node in &nodes {
        node.wait_ready(StatusCode::OK).await;
    }
    (prefix, nodes)
}

/// A connection of the test's own to `redis`, to look at and limit it.
async fn admin(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("connect to redis in time")
        .unwrap()
}

async fn redis_query<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    cmd: &redis::Cmd,
) -> T {
    tokio::time::timeout(WAIT, cmd.query_async(conn))
        .await
        .expect("redis answered in time")
        .unwrap()
}

/// How many connections listen on `channel`.
async fn numsub(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let (_, count): (String, i64) =
        redis_query(conn, redis::cmd("PUBSUB").arg("NUMSUB").arg(channel)).await;
    count
}

/// Lets Redis take `more` connections beyond those it has now, and no others.
async fn allow_connections(conn: &mut redis::aio::MultiplexedConnection, more: usize) {
    let list: String = redis_query(conn, redis::cmd("CLIENT").arg("LIST")).await;
    let now = list.lines().filter(|l| !l.trim().is_empty()).count();
    let () = redis_query(
        conn,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxclients")
            .arg(now + more),
    )
    .await;
}

async fn unlimit_connections(conn: &mut redis::aio::MultiplexedConnection) {
    let () = redis_query(
        conn,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxclients")
            .arg(10_000),
    )
    .await;
}

/// A node is ready (`/readyz`) only once its whole Redis session is open: the control-channel
/// subscription (so a command published from then on reaches it) and the publish writer's
/// connection (so the first publish after "ready" pays no connect and cannot find Redis
/// unreachable). The engine connects, then Redis freezes before the node's session opens: not
/// ready. Redis's `maxclients` then forbids new connections once it is ready: its publishes
/// need none. After a Redis restart, a publish sent while the node reconnects waits for it
/// instead of failing, and once the node is ready again its first publish needs no new
/// connection either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_node_listens_for_commands_and_publishes_without_connecting() {
    let mut redis = RedisServer::start().await;
    let prefix = prefix("ready");
    let control = format!("{prefix}:control");
    let mut conn = admin(&redis).await;

    let config = Config::default();
    let engine = Engine::redis(options(&redis, &prefix, "a", &config))
        .await
        .expect("connect to the test's Redis");
    redis.pause();
    let a = Node::with_engine(engine, config).await;
    // Asked at once, and again a little later: the session cannot open while Redis is frozen.
    for pause in [0, 300] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let response = support::send(a.api.http.get(a.api.url("/readyz"))).await;
        let (status, body) = read_json(response).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body["reason"].as_str().unwrap().contains("Redis"), "{body}");
    }
    redis.resume();
    a.wait_ready(StatusCode::OK).await;
    // No polling: ready means listening.
    assert_eq!(numsub(&mut conn, &control).await, 1, "ready, so subscribed");
    let mut on_a = a.subscribe("channels=news").await;
    // No new connection to Redis from here on: the publish writer already has its own.
    allow_connections(&mut conn, 0).await;
    for n in 0..3 {
        a.publish_ok(json!({"event": "first", "data": n, "channels": ["news"]}))
            .await;
    }
    unlimit_connections(&mut conn).await;
    expect_events(&mut on_a, &["first", "first", "first"]).await;

    // Redis restarts (empty): a publish sent at once waits for the node's new session.
    redis.restart().await;
    let (status, body) = a
        .api
        .publish(json!({"event": "waited", "data": 0, "channels": ["news"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "waited for the new session: {body}");
    a.wait_ready(StatusCode::OK).await;

    // Once more, and this time no new connection once the node is ready again.
    redis.restart().await;
    let mut conn = admin(&redis).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while numsub(&mut conn, &control).await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "never resubscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.wait_ready(StatusCode::OK).await;
    allow_connections(&mut conn, 0).await;
    let (status, body) = a
        .api
        .publish(json!({"event": "again", "data": 1, "channels": ["news"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "the writer was connected: {body}");
    unlimit_connections(&mut conn).await;
    a.publish_ok(json!({"event": "marker", "data": 2, "channels": ["news"]}))
        .await;
    // Each event once, in order (new epochs after each restart), then the marker.
    let mut got = Vec::new();
    loop {
        let event = on_a.next_event().await;
        if event.event == "marker" {
            break;
        }
        got.push(event.event);
    }
    assert_eq!(got, ["waited", "again"]);
}

/// The sequence of an event id (`<epoch>-<seq>`).
fn seq(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

fn epoch(id: &str) -> &str {
    id.split_once('-').unwrap().0
}

/// Reads the next events (heartbeats skipped) and checks their names, in order, with growing
/// ids.
async fn expect_events(client: &mut SseClient, names: &[&str]) {
    let mut last = 0;
    for name in names {
        let event = client.next_event().await;
        assert_eq!(
            event.event, *name,
            "connection {} expected {names:?}, got {event:?}",
            client.connection_id
        );
        let s = seq(&event.id);
        assert!(s > last, "ids must grow: {event:?}");
        last = s;
    }
}

/// Every target kind, published on one node, reaches the targeted connections on every node,
/// each exactly once (the closing `marker` broadcast proves nothing else arrived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_kind_reaches_every_node_exactly_once() {
    let redis = RedisServer::start().await;
    let (_, [a, b, c]) = three_nodes(&redis, "kinds").await;
    let mut alice_a = a.subscribe("userId=alice").await;
    let mut alice_c = c.subscribe("userId=alice").await;
    let mut bob_b = b.subscribe("userId=bob").await;
    let mut carol_c = c.subscribe("userId=carol&channels=news").await;
    let mut dave_a = a.subscribe("userId=dave&channels=news,sport").await;
    let mut anon_b = b.subscribe("channels=news").await;
    let mut frank_b = b.subscribe("userId=frank").await;

    b.publish_ok(json!({"event": "to-user", "data": 1, "users": ["alice"]}))
        .await;
    c.publish_ok(json!({"event": "to-users", "data": 2, "users": ["alice", "bob"]}))
        .await;
    a.publish_ok(json!({"event": "to-channel", "data": 3, "channels": ["news"]}))
        .await;
    a.publish_ok(json!({
        "event": "to-connection", "data": 4, "connections": [bob_b.connection_id]
    }))
    .await;
    // Dave is both a target user and in a target channel: he still gets it once.
    b.publish_ok(json!({
        "event": "union", "data": 5, "users": ["alice", "dave"], "channels": ["news", "sport"]
    }))
    .await;
    c.publish_ok(json!({"event": "to-all", "data": 6, "broadcast": true}))
        .await;
    a.publish_ok(json!({"event": "marker", "data": 7, "broadcast": true}))
        .await;

    for alice in [&mut alice_a, &mut alice_c] {
        expect_events(alice, &["to-user", "to-users", "union", "to-all", "marker"]).await;
    }
    expect_events(
        &mut bob_b,
        &["to-users", "to-connection", "to-all", "marker"],
    )
    .await;
    for news in [&mut carol_c, &mut anon_b] {
        expect_events(news, &["to-channel", "union", "to-all", "marker"]).await;
    }
    expect_events(&mut dave_a, &["to-channel", "union", "to-all", "marker"]).await;
    expect_events(&mut frank_b, &["to-all", "marker"]).await;
}

/// The same ids and order on every node: two publishers on two nodes, subscribers on all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_total_order_across_nodes() {
    const EACH: u64 = 60;
    let redis = RedisServer::start().await;
    let (_, [a, b, c]) = three_nodes(&redis, "order").await;
    let mut subscribers = vec![
        c.subscribe("channels=o").await,
        c.subscribe("userId=sam&channels=o").await,
        a.subscribe("channels=o").await,
        b.subscribe("channels=o").await,
    ];
    let publishers: Vec<JoinHandle<()>> = [("a", a.api.clone()), ("b", b.api.clone())]
        .into_iter()
        .map(|(tag, api)| {
            tokio::spawn(async move {
                for n in 0..EACH {
                    api.publish_ok(json!({
                        "event": "o", "data": {"from": tag, "n": n}, "channels": ["o"]
                    }))
                    .await;
                }
            })
        })
        .collect();
    let mut seen: Vec<Vec<(String, String, u64)>> = Vec::new();
    for s in &mut subscribers {
        let mut list = Vec::new();
        while list.len() < 2 * EACH as usize {
            let event = s.next_event().await;
            assert_eq!(event.event, "o", "{event:?}");
            let data: Value = serde_json::from_str(&event.data).unwrap();
            list.push((
                event.id.clone(),
                data["from"].as_str().unwrap().to_owned(),
                data["n"].as_u64().unwrap(),
            ));
        }
        seen.push(list);
    }
    for p in publishers {
        p.await.unwrap();
    }
    let first = &seen[0];
    for list in &seen {
        assert_eq!(
            list, first,
            "every subscriber sees the same events in the same order"
        );
    }
    assert!(
        first.windows(2).all(|w| seq(&w[0].0) < seq(&w[1].0)),
        "ids grow along the stream"
    );
    for tag in ["a", "b"] {
        let ns: Vec<u64> = first
            .iter()
            .filter(|(_, t, _)| t == tag)
            .map(|e| e.2)
            .collect();
        assert_eq!(
            ns,
            (0..EACH).collect::<Vec<_>>(),
            "publisher {tag} in its own order"
        );
    }
}

/// A node shuts down mid-stream while another keeps publishing: its clients resume on a third
/// node with their last id and get every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_stopped_node_resume_on_another_without_loss() {
    const TOTAL: u64 = 150;
    let redis = RedisServer::start().await;
    let (_, [a, mut b, c]) = three_nodes(&redis, "failover").await;
    let queries = ["userId=u1&channels=feed", "channels=feed"];
    let mut clients = Vec::new();
    for q in queries {
        clients.push(b.subscribe(q).await);
    }
    let api = a.api.clone();
    let publisher = tokio::spawn(async move {
        for n in 0..TOTAL {
            api.publish_ok(json!({"event": "tick", "data": {"n": n}, "channels": ["feed"]}))
                .await;
            // Paced, so that the shutdown falls in the middle of the sequence.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });

    // Each client reads a few events, then its node goes away.
    let mut received: Vec<Vec<u64>> = vec![Vec::new(); clients.len()];
    let mut last_ids = vec![String::new(); clients.len()];
    for (i, client) in clients.iter_mut().enumerate() {
        while received[i].len() < 20 {
            let event = client.next_event().await;
            assert_eq!(event.event, "tick");
            let data: Value = serde_json::from_str(&event.data).unwrap();
            received[i].push(data["n"].as_u64().unwrap());
            last_ids[i] = event.id.clone();
        }
    }
    b.cancel();
    for (i, client) in clients.iter_mut().enumerate() {
        for event in client.until_end().await {
            match event.event.as_str() {
                "tick" => {
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    received[i].push(data["n"].as_u64().unwrap());
                    last_ids[i] = event.id.clone();
                }
                "disconnected" | "heartbeat" => {}
                other => panic!("unexpected {other} while node b shut down"),
            }
        }
    }
    b.stopped().await;

    // They come back on node c with their last ids, once node c has handed over events they
    // missed: a connection that registers later starts after those, so only the replay can
    // bring them.
    let newest_seen = last_ids.iter().map(|id| seq(id)).max().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while c.engine.broker().head().await.unwrap().seq <= newest_seen {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node c never got past {newest_seen}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut resumed = Vec::new();
    for (i, query) in queries.iter().enumerate() {
        let replayable = c.engine.broker().head().await.unwrap().seq;
        let mut client = c.resume(query, &last_ids[i]).await;
        let mut replayed = 0;
        while received[i].last() != Some(&(TOTAL - 1)) {
            let event = client.next_event().await;
            assert_eq!(event.event, "tick", "{event:?}");
            let data: Value = serde_json::from_str(&event.data).unwrap();
            received[i].push(data["n"].as_u64().unwrap());
            if seq(&event.id) <= replayable {
                replayed += 1;
            }
        }
        assert!(
            replayed > 0,
            "client {query}: nothing came from the replay (last id {}, node c at {replayable} \
             before the resume)",
            last_ids[i]
        );
        assert_eq!(
            received[i],
            (0..TOTAL).collect::<Vec<_>>(),
            "client {query}: every event once, in order"
        );
        resumed.push(client);
    }
    tokio::time::timeout(WAIT, publisher)
        .await
        .expect("the publisher did not finish")
        .unwrap();
    // Nothing arrives twice: the next event after the last tick is the marker.
    a.publish_ok(json!({"event": "marker", "data": 0, "channels": ["feed"]}))
        .await;
    for client in &mut resumed {
        expect_events(client, &["marker"]).await;
    }
}

/// The sequences of a publisher's answered publishes, in order, shared with the test.
#[derive(Clone, Default)]
struct Sequence(Arc<std::sync::Mutex<Vec<u64>>>);

impl Sequence {
    fn push(&self, seq: u64) {
        self.0.lock().unwrap().push(seq);
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Disconnect and disconnect-all reach the connections of every node, and count them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_reach_every_node() {
    let redis = RedisServer::start().await;
    let (_, [a, b, c]) = three_nodes(&redis, "disconnect").await;
    let mut alice_a = a.subscribe("userId=alice").await;
    let mut alice_c = c.subscribe("userId=alice").await;
    let mut bob_b = b.subscribe("userId=bob").await;
    let mut carol_c = c.subscribe("userId=carol").await;
    let mut dan_a = a.subscribe("userId=dan").await;

    let (status, body) = b
        .api
        .post("/api/sse/disconnect", &json!({"users": ["alice"]}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"disconnected": 2})));
    for alice in [&mut alice_a, &mut alice_c] {
        let rest = alice.until_end().await;
        let last = rest.last().expect("a disconnected event");
        assert_eq!(last.event, "disconnected");
        assert!(last.data.contains("server_disconnect"), "{last:?}");
    }

    let (status, body) = a
        .api
        .post(
            "/api/sse/disconnect",
            &json!({"connections": [bob_b.connection_id]}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"disconnected": 1})));
    assert_eq!(
        bob_b.until_end().await.last().unwrap().event,
        "disconnected"
    );

    // Carol and Dan were left alone so far.
    a.publish_ok(json!({"event": "still-here", "data": 1, "broadcast": true}))
        .await;
    expect_events(&mut carol_c, &["still-here"]).await;
    expect_events(&mut dan_a, &["still-here"]).await;

    let (status, body) = c.api.post("/api/sse/disconnect-all", &json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"disconnected": 2})));
    for client in [&mut carol_c, &mut dan_a] {
        assert_eq!(
            client.until_end().await.last().unwrap().event,
            "disconnected"
        );
    }
}

/// Redis dies and comes back (empty): nodes keep their SSE connections and heartbeats, say
/// they are degraded, refuse publishes with 503, then deliver and resume again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_survive_a_redis_restart() {
    let mut redis = RedisServer::start().await;
    let prefix = prefix("restart");
    let mut config = Config::default();
    config.hub.heartbeat_interval = Duration::from_millis(200);
    let a = Node::with_config(&redis, &prefix, "a", config.clone()).await;
    let b = Node::with_config(&redis, &prefix, "b", config).await;
    let mut on_a = a.subscribe("userId=alice").await;
    let mut on_b = b.subscribe("userId=alice").await;
    let (before, _) = a
        .publish_ok(json!({"event": "before", "data": 1, "users": ["alice"]}))
        .await;
    expect_events(&mut on_a, &["before"]).await;
    expect_events(&mut on_b, &["before"]).await;

    redis.kill();
    for node in [&a, &b] {
        let body = node.wait_ready(StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["status"], "degraded", "{body}");
        assert!(body["reason"].as_str().unwrap().contains("Redis"), "{body}");
    }
    let (status, body) = b
        .api
        .publish(json!({"event": "lost", "data": 2, "users": ["alice"]}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "engine_unavailable", "{body}");
    // The streams stay open and keep beating.
    for client in [&mut on_a, &mut on_b] {
        for _ in 0..2 {
            assert_eq!(client.next_any().await.event, "heartbeat");
        }
    }

    redis.restart().await;
    for node in [&a, &b] {
        node.wait_ready(StatusCode::OK).await;
    }
    let (after, _) = b
        .publish_ok(json!({"event": "after", "data": 3, "users": ["alice"]}))
        .await;
    assert_ne!(
        epoch(&after),
        epoch(&before),
        "Redis lost its data: a new epoch"
    );
    expect_events(&mut on_a, &["after"]).await;
    expect_events(&mut on_b, &["after"]).await;

    // An id from before the loss cannot be resumed from: reset.
    let mut old = b.resume("userId=alice", &before).await;
    let reset = old.next_event().await;
    assert_eq!(reset.event, "reset", "{reset:?}");
    let data: Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["reason"], "unknown_epoch");
    // An id from after it resumes with what followed.
    a.publish_ok(json!({"event": "later", "data": 4, "users": ["alice"]}))
        .await;
    let mut resumed = a.resume("userId=alice", &after).await;
    expect_events(&mut resumed, &["later"]).await;
    for client in [&mut on_a, &mut on_b, &mut old] {
        expect_events(client, &["later"]).await;
    }
}

/// Presence is shared: `delivered` counts every node's connections, `fallback: broadcast` fires
/// only when nobody on any node matched, stats and presence queries see the whole cluster, and
/// a node that dies without a goodbye drops out after its TTL.
///
/// Presence answers come through the hub (`Hub::stats`, `Hub::channel_presence`,
/// `Hub::user_connections`), as on one node: the presence store asks every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_fallback_and_stats_span_the_cluster() {
    let redis = RedisServer::start().await;
    let (prefix, [a, b, c]) = three_nodes(&redis, "presence").await;
    let mut alice_b = b
        .subscribe("userId=alice&username=Alice&channels=room")
        .await;
    let mut anon_a = a.subscribe("channels=room").await;
    let mut yves_c = c.subscribe("userId=yves").await;

    let stats = wait_for_cluster(&a, "3 connections on 3 nodes", |s| {
        s.connections == 3 && s.nodes.len() == 3
    })
    .await;
    assert_eq!(stats.anonymous_connections, 1);
    assert_eq!(stats.channels.get("room"), Some(&2));
    assert!(stats.nodes.iter().all(|n| n.connections == 1));

    // Nobody is "ghost": the fallback fires, for everyone on every node.
    let (_, delivered) = a
        .publish_ok(json!({
            "event": "fb-ghost", "data": 1, "users": ["ghost"], "fallback": "broadcast"
        }))
        .await;
    assert_eq!(delivered, 3);
    // Alice is on node b only: nodes a and c must not fall back.
    let (_, delivered) = a
        .publish_ok(json!({
            "event": "fb-alice", "data": 2, "users": ["alice"], "fallback": "broadcast"
        }))
        .await;
    assert_eq!(delivered, 1);
    let (_, delivered) = c
        .publish_ok(json!({"event": "room", "data": 3, "channels": ["room"]}))
        .await;
    assert_eq!(delivered, 2);
    a.publish_ok(json!({"event": "marker", "data": 4, "broadcast": true}))
        .await;
    expect_events(&mut alice_b, &["fb-ghost", "fb-alice", "room", "marker"]).await;
    expect_events(&mut anon_a, &["fb-ghost", "room", "marker"]).await;
    expect_events(&mut yves_c, &["fb-ghost", "marker"]).await;

    let room = herald::ChannelName::new("room").unwrap();
    let presence = c.hub.channel_presence(&room).await.unwrap();
    assert_eq!(presence.anonymous_connections, 1);
    assert_eq!(presence.users.len(), 1);
    assert_eq!(presence.users[0].user.as_str(), "alice");
    assert_eq!(presence.users[0].username.as_deref(), Some("Alice"));
    let alice = UserId::new("alice").unwrap();
    let connections = a.hub.user_connections(&alice).await.unwrap();
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0].node_id.as_deref(), Some("b"));
    assert_eq!(
        connections[0].connection.id.to_string(),
        alice_b.connection_id
    );

    // The same over HTTP, from any node.
    let stats = a.api.get("/api/sse/stats").await;
    assert_eq!(stats["connections"], 1, "this node's own figures: {stats}");
    assert_eq!(stats["cluster"]["connections"], 3, "{stats}");
    assert_eq!(
        stats["cluster"]["nodes"].as_array().unwrap().len(),
        3,
        "{stats}"
    );
    assert_eq!(stats["cluster"]["channels"]["room"], 2, "{stats}");
    let room = c.api.get("/api/sse/presence?channel=room").await;
    assert_eq!(room["users"][0]["userId"], "alice", "{room}");
    assert_eq!(room["anonymousConnections"], 1, "{room}");
    let alice = a.api.get("/api/sse/presence/users/alice").await;
    assert_eq!(alice["online"], true, "{alice}");
    assert_eq!(alice["connections"][0]["nodeId"], "b", "{alice}");

    // A fourth node dies without leaving: its connection disappears once its TTL runs out.
    {
        let config = Config::default();
        let engine = Engine::redis(options(&redis, &prefix, "d", &config))
            .await
            .unwrap();
        let hub = Hub::start(config.hub.clone(), engine, &Lifecycle::new());
        let _stream = hub
            .connect(ConnectRequest::user(UserId::new("dora").unwrap()))
            .await
            .unwrap();
        wait_for_cluster(&a, "node d", |s| {
            s.connections == 4 && s.nodes.iter().any(|n| n.node_id == "d")
        })
        .await;
        // Dropped without `shutdown`: like a crash, nothing tells Redis.
    }
    wait_for_cluster(&a, "node d gone", |s| {
        s.connections == 3 && s.nodes.iter().all(|n| n.node_id != "d")
    })
    .await;
}

/// The seeds' `uniqueUsers` on a cluster: a user with tabs on two nodes counts once (where the
/// per-node `users` figures add up to twice), and `totalConnections` is every node's; the
/// connection metadata (`sessionId`, `metadata`) of one node shows in presence answers from
/// another (through the Redis presence store's queries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_users_count_a_user_on_two_nodes_once_and_metadata_crosses_nodes() {
    let redis = RedisServer::start().await;
    let (_prefix, [a, b, c]) = three_nodes(&redis, "unique").await;
    let _alice_a = a.subscribe("userId=alice&sessionId=tab-a").await;
    let mut alice_b = b
        .subscribe("userId=alice&sessionId=tab-b&metadata=%7B%22plan%22%3A%22pro%22%7D")
        .await;
    let _bob_b = b.subscribe("userId=bob").await;
    let _anon_c = c.subscribe("").await;
    let stats = wait_for_cluster(&c, "4 connections, 2 distinct users", |s| {
        s.connections == 4 && s.unique_users == Some(2)
    })
    .await;
    assert_eq!(
        stats.users, 3,
        "the per-node figures count alice twice: {stats:?}"
    );

    let http = c.api.get("/api/sse/stats").await;
    assert_eq!(http["totalConnections"], 4, "{http}");
    assert_eq!(http["uniqueUsers"], 2, "{http}");
    assert_eq!(http["connections"], 1, "this node's own figure: {http}");
    assert_eq!(http["users"], 0, "this node's own figure: {http}");
    assert_eq!(http["cluster"]["uniqueUsers"], 2, "{http}");
    assert_eq!(http["cluster"]["users"], 3, "{http}");

    let alice = c.api.get("/api/sse/presence/users/alice").await;
    let list = alice["connections"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{alice}");
    let on = |node: &str| list.iter().find(|e| e["nodeId"] == node).unwrap();
    assert_eq!(on("a")["sessionId"], "tab-a", "{alice}");
    assert_eq!(on("a")["metadata"], Value::Null, "{alice}");
    assert_eq!(on("b")["sessionId"], "tab-b", "{alice}");
    assert_eq!(on("b")["metadata"], json!({"plan": "pro"}), "{alice}");

    // Alice's tab on b closes: she is still one user (on a), bob the other.
    b.api
        .post(
            "/api/sse/disconnect",
            &json!({"connections": [alice_b.connection_id]}),
        )
        .await;
    assert_eq!(
        alice_b.expect("disconnected").await["reason"],
        "server_disconnect"
    );
    let stats = wait_for_cluster(&c, "3 connections", |s| s.connections == 3).await;
    assert_eq!((stats.users, stats.unique_users), (2, Some(2)), "{stats:?}");
}

/// Polls the cluster stats of `node` (its presence store's, as `Hub::stats` gets them) until
/// `check` holds; fails after [`WAIT`] (with a hint when a node does not report its connections).
async fn wait_for_cluster(
    node: &Node,
    what: &str,
    check: impl Fn(&ClusterStats) -> bool,
) -> ClusterStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = node
            .engine
            .presence()
            .cluster_stats()
            .await
            .expect("cluster stats")
            .expect("the Redis presence store has cluster stats");
        if check(&stats) {
            return stats;
        }
        if tokio::time::Instant::now() >= deadline {
            let silent: BTreeSet<&str> = stats
                .nodes
                .iter()
                .filter(|n| !n.reports_connections)
                .map(|n| n.node_id.as_str())
                .collect();
            panic!(
                "timed out waiting for {what}; cluster stats: {stats:?}{}",
                if silent.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nnodes {silent:?} do not report their connections: their presence \
                         store was never started"
                    )
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `herald` binary in cluster mode: `--engine redis://...`, `--redis-prefix`, `--node-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_processes_form_a_cluster() {
    let redis = RedisServer::start().await;
    let prefix = prefix("binary");
    let url = redis.url();
    let start = |node: &'static str| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            support::HeraldProcess::start(
                &["--redis-prefix", &prefix, "--node-id", node],
                &[("HERALD_REDIS_URL", &url)],
            )
            .await
        }
    };
    let one = start("one").await;
    let two = start("two").await;
    let http = support::http_client();
    let response = http
        .get(one.url("/api/sse?userId=alice"))
        .send()
        .await
        .unwrap();
    let mut alice = SseClient::open(response).await;
    let response = http
        .post(two.url("/api/sse/message"))
        .json(&json!({"event": "hello", "data": {"from": "two"}, "users": ["alice"]}))
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event = alice.next_event().await;
    assert_eq!(event.event, "hello");
    assert_eq!(event.id, body["id"].as_str().unwrap());
    assert!(one.log().contains("engine=\"redis\"") || one.log().contains("engine=redis"));
}

/// Redis loses an event it had already handed out (as after a failover to a replica that
/// lagged): the nodes move to a new epoch instead of giving new events ids clients have seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_delivered_events_starts_a_new_epoch() {
    let redis = RedisServer::start().await;
    let prefix = prefix("rewind");
    let a = Node::start(&redis, &prefix, "a").await;
    let mut alice = a.subscribe("userId=alice").await;
    let (first, _) = a
        .publish_ok(json!({"event": "one", "data": 1, "users": ["alice"]}))
        .await;
    let (second, _) = a
        .publish_ok(json!({"event": "two", "data": 2, "users": ["alice"]}))
        .await;
    expect_events(&mut alice, &["one", "two"]).await;

    // Redis forgets the second event.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HSET")
        .arg(format!("{prefix}:meta"))
        .arg("seq")
        .arg(seq(&first))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("XDEL")
        .arg(format!("{prefix}:events"))
        .arg(format!("{}-0", seq(&second)))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    // The node notices while idle (it checks once a second without events).
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.engine.broker().head().await.unwrap().epoch.to_string() == epoch(&first) {
        assert!(tokio::time::Instant::now() < deadline, "no new epoch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (third, _) = a
        .publish_ok(json!({"event": "three", "data": 3, "users": ["alice"]}))
        .await;
    assert_ne!(epoch(&third), epoch(&first));
    assert!(
        seq(&third) > seq(&second),
        "sequences keep growing across epochs"
    );
    expect_events(&mut alice, &["three"]).await;
    let mut resumed = a.resume("userId=alice", &second).await;
    assert_eq!(resumed.next_event().await.event, "reset");
}

/// A hub configuration with presence events on `room:*`.
fn presence_config() -> Config {
    let mut config = Config::default();
    config.hub.presence_channels = vec!["room:*".parse().unwrap()];
    config
}

/// The next event that is not a heartbeat, as `(name, userId)` for presence events and
/// `(name, "")` for others.
async fn next_named(client: &mut SseClient) -> (String, String) {
    let event = client.next_event().await;
    let user = if event.event.starts_with("presence:") {
        let data: Value = serde_json::from_str(&event.data).unwrap();
        data["userId"].as_str().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    (event.event, user)
}

fn pair(name: &str, user: &str) -> (String, String) {
    (name.to_owned(), user.to_owned())
}

/// `presence:join` means a user's first connection to the channel anywhere in the cluster and
/// `presence:leave` their last: alice with a tab on node a and one on node b is announced
/// once, and leaves once, when her last tab closes. A node killed with SIGKILL (a real
/// `herald` process) takes its users' presence with it once its node TTL runs out: they get
/// their leave, unless another node still holds them.
///
/// Each "nothing else arrived" is proven by a later event of the same node's presence queue (a
/// sentinel user joining after the change in question), or a trailing marker event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_mean_first_and_last_connection_in_the_cluster() {
    let redis = RedisServer::start().await;
    let prefix = prefix("presence-events");
    let a = Node::with_config(&redis, &prefix, "a", presence_config()).await;
    let b = Node::with_config(&redis, &prefix, "b", presence_config()).await;
    let mut watcher = b.subscribe("channels=room:1").await;

    let alice_a = a.subscribe("userId=alice&channels=room:1").await;
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:join", "alice")
    );
    // Her second tab, on another node: no join. The sentinel joins on the same node after
    // her, so a join of hers would arrive first.
    let alice_b = b.subscribe("userId=alice&channels=room:1").await;
    let s1 = b.subscribe("userId=s1&channels=room:1").await;
    assert_eq!(next_named(&mut watcher).await, pair("presence:join", "s1"));

    // Closing the tab on a: she is still on b, no leave.
    drop(alice_a);
    wait_for_local(&a, "alice's tab on a to close", 0).await;
    let _s2 = a.subscribe("userId=s2&channels=room:1").await;
    assert_eq!(next_named(&mut watcher).await, pair("presence:join", "s2"));
    // Closing her last tab: one leave.
    drop(alice_b);
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:leave", "alice")
    );
    drop(s1);
    assert_eq!(next_named(&mut watcher).await, pair("presence:leave", "s1"));

    // A real node joins: alice on a and on d, bob on d only.
    let d = support::HeraldProcess::start(
        &[
            "--engine",
            &redis.url(),
            "--redis-prefix",
            &prefix,
            "--node-id",
            "d",
            "--presence-channels",
            "room:*",
        ],
        &[],
    )
    .await;
    let _alice_a = a.subscribe("userId=alice&channels=room:1").await;
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:join", "alice")
    );
    let http = support::http_client();
    let mut on_d = Vec::new();
    for user in ["alice", "bob"] {
        let response = tokio::time::timeout(
            WAIT,
            http.get(d.url(&format!("/api/sse?userId={user}&channels=room:1")))
                .send(),
        )
        .await
        .expect("subscribe on d timed out")
        .unwrap();
        on_d.push(SseClient::open(response).await);
    }
    assert_eq!(next_named(&mut watcher).await, pair("presence:join", "bob"));
    wait_for_cluster(&a, "node d's report", |s| {
        s.nodes
            .iter()
            .any(|n| n.node_id == "d" && n.connections == 2)
    })
    .await;

    // SIGKILL: d says nothing to anyone. Within its node TTL (5 s by default) plus a report
    // of a live node, bob leaves; alice, still on a, does not.
    let mut d = d;
    d.child.start_kill().unwrap();
    tokio::time::timeout(WAIT, d.child.wait())
        .await
        .expect("d did not exit after SIGKILL")
        .unwrap();
    let killed = tokio::time::Instant::now();
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:leave", "bob")
    );
    let took = killed.elapsed();
    eprintln!("bob's leave came {took:?} after the SIGKILL");
    assert!(
        took < Duration::from_secs(5) + Duration::from_secs(2),
        "bob's leave took {took:?}"
    );
    a.publish_ok(json!({"event": "marker", "data": 0, "channels": ["room:1"]}))
        .await;
    assert_eq!(next_named(&mut watcher).await, pair("marker", ""));
    let presence = b.api.get("/api/sse/presence?channel=room:1").await;
    let users: BTreeSet<&str> = presence["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap())
        .collect();
    assert_eq!(users, BTreeSet::from(["alice", "s2"]), "{presence}");
}

/// Waits until `node` itself holds `connections` connections.
async fn wait_for_local(node: &Node, what: &str, connections: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = node.api.get("/api/sse/stats").await;
        if stats["connections"] == connections {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `herald` process of the cluster on `redis` (default presence interval 1 s and node TTL
/// 5 s, as deployed).
async fn herald_node(redis: &RedisServer, prefix: &str, node: &str) -> support::HeraldProcess {
    support::HeraldProcess::start(
        &[
            "--engine",
            &redis.url(),
            "--redis-prefix",
            prefix,
            "--node-id",
            node,
        ],
        &[],
    )
    .await
}

/// A node crashes (SIGKILL of the real binary) holding SSE clients while another node
/// publishes a numbered sequence; the clients resume with their last id on a third node and get
/// every number exactly once, in order, part of it from the replay (events answered before the
/// resume was sent), and nothing twice (a trailing marker comes right after the last number).
/// The dead node drops out of the cluster's stats and presence within its node TTL (5 s) plus
/// one report (1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_resume_on_another_without_loss() {
    const TOTAL: u64 = 300;
    let redis = RedisServer::start().await;
    let prefix = prefix("sigkill");
    let a = herald_node(&redis, &prefix, "a").await;
    let mut b = herald_node(&redis, &prefix, "b").await;
    let c = herald_node(&redis, &prefix, "c").await;
    let http = support::http_client();
    let api = |node: &support::HeraldProcess| Api {
        base: format!("http://{}", node.addr),
        http: http.clone(),
    };
    let (api_a, api_b, api_c) = (api(&a), api(&b), api(&c));
    let open = |api: &Api, query: &str, last_id: Option<&str>| {
        let mut request = api.http.get(api.url(&format!("/api/sse?{query}")));
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        async move {
            let response = tokio::time::timeout(WAIT, request.send())
                .await
                .expect("subscribe timed out")
                .expect("subscribe failed");
            assert_eq!(response.status(), StatusCode::OK);
            SseClient::open(response).await
        }
    };
    let queries = ["userId=u1&channels=feed", "channels=feed"];
    let mut clients = Vec::new();
    for q in queries {
        clients.push(open(&api_b, q, None).await);
    }
    // Every node sees b's two connections before the crash.
    wait_for_nodes(&api_a, "b's connections", |s| {
        s["cluster"]["connections"] == 2 && s["cluster"]["nodes"].as_array().unwrap().len() == 3
    })
    .await;
    let u1 = api_a.get("/api/sse/presence/users/u1").await;
    assert_eq!(u1["connections"][0]["nodeId"], "b", "{u1}");

    let published = Sequence::default();
    let log = published.clone();
    let publisher_api = api_a.clone();
    let publisher = tokio::spawn(async move {
        for n in 0..TOTAL {
            let (id, _) = publisher_api
                .publish_ok(json!({"event": "tick", "data": {"n": n}, "channels": ["feed"]}))
                .await;
            log.push(seq(&id));
            // Paced, so that the crash falls in the middle of the sequence.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    let mut received: Vec<Vec<u64>> = vec![Vec::new(); clients.len()];
    let mut last_ids = vec![String::new(); clients.len()];
    for (i, client) in clients.iter_mut().enumerate() {
        while received[i].len() < 20 {
            let event = client.next_event().await;
            assert_eq!(event.event, "tick", "{event:?}");
            let data: Value = serde_json::from_str(&event.data).unwrap();
            received[i].push(data["n"].as_u64().unwrap());
            last_ids[i] = event.id.clone();
        }
    }
    // SIGKILL: no goodbye to clients, Redis or the other nodes.
    b.child.start_kill().unwrap();
    tokio::time::timeout(WAIT, b.child.wait())
        .await
        .expect("b did not exit after SIGKILL")
        .unwrap();
    let killed = tokio::time::Instant::now();
    // From now on, watch for b to drop out of the cluster's figures (while the rest goes on).
    let dropped_out = {
        let api = api_a.clone();
        tokio::spawn(async move {
            wait_for_nodes(&api, "b to drop out", |s| {
                s["cluster"]["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["nodeId"] != "b")
            })
            .await;
            killed.elapsed()
        })
    };
    let at_kill = published.len();
    for (i, client) in clients.iter_mut().enumerate() {
        // Whatever the kernel had already received is still read; then the stream breaks.
        for event in client.until_end().await {
            match event.event.as_str() {
                "tick" => {
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    received[i].push(data["n"].as_u64().unwrap());
                    last_ids[i] = event.id.clone();
                }
                "heartbeat" => {}
                other => panic!("unexpected {other} from a killed node"),
            }
        }
    }
    drop(clients);
    assert!(
        received.iter().all(|r| r.len() < TOTAL as usize),
        "the crash came after the whole sequence"
    );

    // Events published after the crash exist before anyone resumes, and node c has handed
    // them over (a new connection's `connected` id is c's head): a connection that registers
    // later starts after them, so only the replay can bring them.
    let newest_seen = last_ids.iter().map(|id| seq(id)).max().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while published.len() < at_kill + 10 {
        assert!(tokio::time::Instant::now() < deadline, "publishing stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let head_of_c = || async { seq(&open(&api_c, "channels=probe", None).await.start_id) };
    while head_of_c().await <= newest_seen {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node c never got past {newest_seen}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut resumed = Vec::new();
    for (i, query) in queries.iter().enumerate() {
        let replayable = head_of_c().await;
        let mut client = open(&api_c, query, Some(&last_ids[i])).await;
        let mut replayed = 0;
        while received[i].last() != Some(&(TOTAL - 1)) {
            let event = client.next_event().await;
            assert_eq!(event.event, "tick", "{event:?}");
            let data: Value = serde_json::from_str(&event.data).unwrap();
            received[i].push(data["n"].as_u64().unwrap());
            if seq(&event.id) <= replayable {
                replayed += 1;
            }
        }
        assert!(
            replayed > 0,
            "client {query}: nothing came from the replay (last id {}, node c at {replayable} \
             before the resume)",
            last_ids[i]
        );
        assert_eq!(
            received[i],
            (0..TOTAL).collect::<Vec<_>>(),
            "client {query}: every event once, in order"
        );
        resumed.push(client);
    }
    tokio::time::timeout(WAIT * 2, publisher)
        .await
        .expect("the publisher did not finish")
        .unwrap();
    api_a
        .publish_ok(json!({"event": "marker", "data": 0, "channels": ["feed"]}))
        .await;
    for client in &mut resumed {
        expect_events(client, &["marker"]).await;
    }

    // The dead node was gone from the cluster's figures within its TTL (its keys expire 5 s
    // after its last report, which came before the crash); its connections and presence went
    // with it: the resumed connections are counted on c.
    let took = tokio::time::timeout(WAIT, dropped_out)
        .await
        .expect("b never dropped out of the cluster stats")
        .unwrap();
    eprintln!("b dropped out of the cluster stats {took:?} after the SIGKILL");
    assert!(
        took <= Duration::from_millis(5500),
        "b's presence lasted {took:?} after the crash"
    );
    let stats = api_a.get("/api/sse/stats").await;
    assert_eq!(stats["cluster"]["connections"], 2, "{stats}");
    let u1 = api_a.get("/api/sse/presence/users/u1").await;
    let nodes: Vec<&str> = u1["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["nodeId"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["c"], "{u1}");
    let feed = api_a.get("/api/sse/presence?channel=feed").await;
    assert_eq!(feed["anonymousConnections"], 1, "{feed}");
    drop(api_b);
}

/// Polls `GET /api/sse/stats` of a node until `check` holds; fails after [`WAIT`].
async fn wait_for_nodes(api: &Api, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = api.get("/api/sse/stats").await;
        if check(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What one publish answered.
#[derive(Debug, Clone)]
enum Outcome {
    /// 200, with the event's id.
    Published(String),
    /// `503 engine_unavailable`: nothing was sent, it must never be delivered.
    NotSent,
    /// `503 outcome_unknown`: the engine cannot tell; delivered at most once.
    Unknown,
}

/// Redis with an append-only file synced on every write (`--appendonly yes --appendfsync
/// always`) is killed with SIGKILL during a stream of publishes and restarted on the same port
/// and directory: the cluster continues in the same epoch (ids keep growing with the same
/// epoch prefix), every publish that answered 200 reaches the subscriber that stayed connected
/// exactly once and in order, and again a client that resumes afterwards from before the
/// crash; a publish that answered `engine_unavailable` ("nothing was sent") never arrives, and
/// one that answered `outcome_unknown` arrives at most once. A trailing marker proves nothing
/// else arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_survive_a_redis_crash_with_an_append_only_file() {
    let mut redis = RedisServer::start_persistent().await;
    let prefix = prefix("aof");
    let a = Node::start(&redis, &prefix, "a").await;
    let b = Node::start(&redis, &prefix, "b").await;
    let mut subscriber = b.subscribe("channels=feed").await;

    let outcomes: Arc<std::sync::Mutex<Vec<Outcome>>> = Arc::default();
    let stop = CancellationToken::new();
    let publisher = {
        let (api, outcomes, stop) = (a.api.clone(), outcomes.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let (status, body) = api
                    .publish(json!({"event": "tick", "data": {"n": n}, "channels": ["feed"]}))
                    .await;
                let outcome = match (status, body["error"]["code"].as_str()) {
                    (StatusCode::OK, _) => Outcome::Published(body["id"].as_str().unwrap().into()),
                    (StatusCode::SERVICE_UNAVAILABLE, Some("engine_unavailable")) => {
                        Outcome::NotSent
                    }
                    (StatusCode::SERVICE_UNAVAILABLE, Some("outcome_unknown")) => Outcome::Unknown,
                    _ => panic!("publish {n}: unexpected answer {status} {body}"),
                };
                outcomes.lock().unwrap().push(outcome);
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let count = |f: fn(&Outcome) -> bool| outcomes.lock().unwrap().iter().filter(|o| f(o)).count();
    let published = |o: &Outcome| matches!(o, Outcome::Published(_));
    let failed = |o: &Outcome| !matches!(o, Outcome::Published(_));
    wait_until("50 publishes", || count(published) >= 50).await;
    redis.kill();
    wait_until("publishes refused while Redis is down", || {
        count(failed) >= 5
    })
    .await;
    redis.restart().await;
    let before = count(published);
    wait_until("50 publishes after the restart", || {
        count(published) >= before + 50
    })
    .await;
    stop.cancel();
    tokio::time::timeout(WAIT, publisher)
        .await
        .expect("the publisher did not stop")
        .unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    let (marker, _) = a
        .publish_ok(json!({"event": "marker", "data": 0, "channels": ["feed"]}))
        .await;

    // The ids of the answered publishes: one epoch, growing.
    let ids: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Published(id) => Some(id),
            _ => None,
        })
        .collect();
    let the_epoch = epoch(ids[0]).to_owned();
    let other = ids.iter().find(|id| epoch(id) != the_epoch);
    assert!(
        other.is_none(),
        "the epoch changed across the Redis restart: {} then {other:?}",
        ids[0]
    );
    assert!(
        ids.windows(2).all(|w| seq(w[0]) < seq(w[1])),
        "ids must keep growing: {ids:?}"
    );
    assert!(seq(&marker) > seq(ids[ids.len() - 1]));

    // What the subscriber that stayed connected got, up to the marker.
    // What the subscriber that stayed connected got, up to the marker.
    let got = read_until_marker(&mut subscriber).await;
    check_delivery(&outcomes, &got, &the_epoch, "the subscriber that stayed");

    // A client that resumes afterwards from the first event (before the crash) gets the same.
    let (first_n, first_id) = got[0].clone();
    let mut resumed = a.resume("channels=feed", &first_id).await;
    let replayed = read_until_marker(&mut resumed).await;
    assert_eq!(
        replayed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        got.iter().skip(1).map(|(n, _)| *n).collect::<Vec<_>>(),
        "a resume from {first_n}, before the crash, replays the same"
    );
}

/// The publish writer sends the publishes that arrive together as one batch (one script call).
/// Redis (with an append-only file synced on every write) is killed with SIGKILL while 32
/// publishers keep publishing, so batches are at Redis when it dies, then restarted: every
/// publish that answered 200 reaches the subscriber exactly once, in id order, and each
/// publisher's events in the order it sent them; one that answered `engine_unavailable` never
/// arrives, one that answered `outcome_unknown` at most once. Nothing acknowledged is lost with
/// its batch. A trailing marker proves nothing else arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_when_redis_is_killed_are_refused_or_delivered_once() {
    const PUBLISHERS: u64 = 32;
    let mut redis = RedisServer::start_persistent().await;
    let prefix = prefix("batch-kill");
    let a = Node::start(&redis, &prefix, "a").await;
    let b = Node::start(&redis, &prefix, "b").await;
    let mut subscriber = b.subscribe("channels=feed").await;

    // (publisher, its n-th publish) -> what it answered.
    type Answers = Arc<std::sync::Mutex<Vec<((u64, u64), Outcome)>>>;
    let answers: Answers = Arc::default();
    let stop = CancellationToken::new();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (api, answers, stop) = (a.api.clone(), answers.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.is_cancelled() {
                    let (status, body) = api
                        .publish(json!({"event": "tick", "data": {"p": p, "n": n}, "channels": ["feed"]}))
                        .await;
                    let outcome = match (status, body["error"]["code"].as_str()) {
                        (StatusCode::OK, _) => {
                            Outcome::Published(body["id"].as_str().unwrap().into())
                        }
                        (StatusCode::SERVICE_UNAVAILABLE, Some("engine_unavailable")) => {
                            Outcome::NotSent
                        }
                        (StatusCode::SERVICE_UNAVAILABLE, Some("outcome_unknown")) => {
                            Outcome::Unknown
                        }
                        _ => panic!("publisher {p}, publish {n}: unexpected {status} {body}"),
                    };
                    let refused = !matches!(outcome, Outcome::Published(_));
                    answers.lock().unwrap().push(((p, n), outcome));
                    n += 1;
                    if refused {
                        // Redis is down: do not spin.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();
    let count =
        |f: fn(&Outcome) -> bool| answers.lock().unwrap().iter().filter(|(_, o)| f(o)).count();
    let published = |o: &Outcome| matches!(o, Outcome::Published(_));
    let failed = |o: &Outcome| !matches!(o, Outcome::Published(_));
    wait_until("2,000 publishes", || count(published) >= 2000).await;
    redis.kill();
    wait_until("publishes refused while Redis is down", || {
        count(failed) >= PUBLISHERS as usize
    })
    .await;
    redis.restart().await;
    let before = count(published);
    wait_until("500 publishes after the restart", || {
        count(published) >= before + 500
    })
    .await;
    stop.cancel();
    for publisher in publishers {
        tokio::time::timeout(WAIT, publisher)
            .await
            .expect("a publisher did not stop")
            .unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let (marker, _) = a
        .publish_ok(json!({"event": "marker", "data": 0, "channels": ["feed"]}))
        .await;

    // Read everything up to the marker.
    let mut got: Vec<((u64, u64), String)> = Vec::new();
    loop {
        let event = subscriber.next_event().await;
        match event.event.as_str() {
            "marker" => {
                assert_eq!(event.id, marker);
                break;
            }
            "tick" => {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                let key = (data["p"].as_u64().unwrap(), data["n"].as_u64().unwrap());
                got.push((key, event.id));
            }
            other => panic!("unexpected {other}: {event:?}"),
        }
    }
    let the_epoch = epoch(&marker).to_owned();
    assert!(
        got.iter().all(|(_, id)| epoch(id) == the_epoch),
        "one epoch across the Redis restart"
    );
    assert!(
        got.windows(2).all(|w| seq(&w[0].1) < seq(&w[1].1)),
        "events arrive in id order, each once"
    );
    let mut received = std::collections::BTreeMap::new();
    for (key, id) in &got {
        assert!(
            received.insert(*key, id.clone()).is_none(),
            "publish {key:?} was delivered twice"
        );
    }
    for p in 0..PUBLISHERS {
        let mine: Vec<u64> = got
            .iter()
            .filter(|((q, _), _)| *q == p)
            .map(|((_, n), _)| *n)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "publisher {p}'s events arrive in the order it published them: {mine:?}"
        );
    }
    let (mut not_sent, mut unknown, mut unknown_delivered) = (0, 0, 0);
    for (key, outcome) in &answers {
        match outcome {
            Outcome::Published(id) => assert_eq!(
                received.get(key),
                Some(id),
                "publish {key:?} answered 200 ({id}) but was not delivered with that id"
            ),
            Outcome::NotSent => {
                not_sent += 1;
                assert!(
                    !received.contains_key(key),
                    "publish {key:?} answered engine_unavailable (nothing sent) but arrived"
                );
            }
            Outcome::Unknown => {
                unknown += 1;
                unknown_delivered += usize::from(received.contains_key(key));
            }
        }
    }
    assert_eq!(
        got.len(),
        answers.iter().filter(|(_, o)| published(o)).count() + unknown_delivered,
        "nothing arrived that was not published"
    );
    eprintln!(
        "{} delivered, {not_sent} refused unsent, {unknown} uncertain ({unknown_delivered} of them \
         delivered)",
        got.len()
    );
}

/// Polls `done` until it holds; fails after [`WAIT`].
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `tick` events (number and id) up to the next `marker`.
async fn read_until_marker(client: &mut SseClient) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    loop {
        let event = client.next_event().await;
        match event.event.as_str() {
            "marker" => return got,
            "tick" => {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                got.push((data["n"].as_u64().unwrap(), event.id));
            }
            other => panic!("unexpected {other}: {event:?}"),
        }
    }
}

/// Checks what a client received against what the publishes answered.
fn check_delivery(outcomes: &[Outcome], got: &[(u64, String)], the_epoch: &str, who: &str) {
    let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "{who}: every event once, in order: {numbers:?}"
    );
    assert!(
        got.iter().all(|(_, id)| epoch(id) == the_epoch),
        "{who}: every id in epoch {the_epoch}"
    );
    let received: BTreeSet<u64> = numbers.iter().copied().collect();
    let mut unknown = 0;
    for (n, outcome) in outcomes.iter().enumerate() {
        let n = n as u64;
        match outcome {
            Outcome::Published(id) => {
                let at = got.iter().find(|(m, _)| *m == n);
                assert_eq!(
                    at.map(|(_, i)| i),
                    Some(id),
                    "{who}: publish {n} answered 200 ({id}) but was not delivered with that id"
                );
            }
            Outcome::NotSent => assert!(
                !received.contains(&n),
                "{who}: publish {n} answered engine_unavailable (nothing was sent) but was \
                 delivered"
            ),
            Outcome::Unknown => unknown += 1,
        }
    }
    let not_sent = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::NotSent))
        .count();
    eprintln!(
        "{who}: {} events, {not_sent} refused, {unknown} uncertain",
        got.len()
    );
}

/// Under races: alice opens a tab on node a and one on node b at the same moment and closes
/// both at the same moment, twenty times. Her presence events strictly alternate, join first,
/// and end with a leave: two nodes never both announce her, nor both say goodbye.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_tabs_on_two_nodes_alternate_join_and_leave() {
    let redis = RedisServer::start().await;
    let prefix = prefix("presence-race");
    let a = Node::with_config(&redis, &prefix, "a", presence_config()).await;
    let b = Node::with_config(&redis, &prefix, "b", presence_config()).await;
    let mut watcher = a.subscribe("channels=room:1").await;
    for _ in 0..20 {
        let (tab_a, tab_b) = tokio::join!(
            a.subscribe("userId=alice&channels=room:1"),
            b.subscribe("userId=alice&channels=room:1"),
        );
        tokio::join!(async { drop(tab_a) }, async { drop(tab_b) });
    }
    wait_for_local(&a, "alice's tabs on a to close", 1).await;
    wait_for_local(&b, "alice's tabs on b to close", 0).await;
    // Sentinels join after every change of alice's on each node's presence queue.
    let _s1 = a.subscribe("userId=s1&channels=room:1").await;
    let _s2 = b.subscribe("userId=s2&channels=room:1").await;
    let mut alice = Vec::new();
    let mut sentinels = 0;
    while sentinels < 2 {
        let (name, user) = next_named(&mut watcher).await;
        match user.as_str() {
            "alice" => alice.push(name),
            "s1" | "s2" => sentinels += 1,
            other => panic!("unexpected {name} of {other:?}"),
        }
    }
    assert!(!alice.is_empty());
    for (i, name) in alice.iter().enumerate() {
        let want = if i % 2 == 0 {
            "presence:join"
        } else {
            "presence:leave"
        };
        assert_eq!(name, want, "alice's presence events: {alice:?}");
    }
    assert_eq!(
        alice.last().map(String::as_str),
        Some("presence:leave"),
        "{alice:?}"
    );
}

/// Redis loses its data (a restart without persistence): the nodes write their presence again,
/// so alice, still connected, is announced again in the new epoch, and so is bob, who arrived
/// while Redis was down, and `delivered` counts them again; their leaves still come when they
/// close their tabs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_written_again_after_redis_loses_it() {
    let mut redis = RedisServer::start().await;
    let prefix = prefix("presence-lost");
    let a = Node::with_config(&redis, &prefix, "a", presence_config()).await;
    let b = Node::with_config(&redis, &prefix, "b", presence_config()).await;
    let mut watcher = b.subscribe("channels=room:1").await;
    let alice = a.subscribe("userId=alice&channels=room:1").await;
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:join", "alice")
    );

    // Bob arrives while Redis is down: his join cannot be written then.
    redis.kill();
    let bob = a.subscribe("userId=bob&channels=room:1").await;
    redis.restart().await;
    let joins = BTreeSet::from([
        next_named(&mut watcher).await,
        next_named(&mut watcher).await,
    ]);
    assert_eq!(
        joins,
        BTreeSet::from([pair("presence:join", "alice"), pair("presence:join", "bob")])
    );
    // The routing keys are back too, written again in full from node a's own record (bob, who
    // arrived during the outage, included): a publish on b counts both of them on a.
    wait_for_cluster(&a, "both nodes' connections after the restart", |s| {
        s.connections == 3 && s.nodes.len() == 2
    })
    .await;
    let (_, delivered) = b
        .publish_ok(json!({"event": "count", "data": 0, "users": ["alice", "bob"]}))
        .await;
    assert_eq!(delivered, 2);
    drop(alice);
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:leave", "alice")
    );
    drop(bob);
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:leave", "bob")
    );
    a.publish_ok(json!({"event": "marker", "data": 0, "channels": ["room:1"]}))
        .await;
    assert_eq!(next_named(&mut watcher).await, pair("marker", ""));
}

/// Redis loses its data under a connected cluster (`FLUSHALL`: no reconnect, no failed write,
/// only the next report finds the node's keys gone): each node writes its routing keys again in
/// full from its own record, so `delivered` counts the connections that were there before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_is_written_again_when_redis_is_emptied() {
    let redis = RedisServer::start().await;
    let prefix = prefix("routing-flushed");
    let a = Node::start(&redis, &prefix, "a").await;
    let b = Node::start(&redis, &prefix, "b").await;
    let _alice = a.subscribe("userId=alice&channels=news").await;
    let _bob = b.subscribe("userId=bob").await;
    wait_for_cluster(&a, "both connections", |s| s.connections == 2).await;
    let (_, delivered) = a
        .publish_ok(json!({"event": "before", "data": 0, "users": ["alice", "bob"]}))
        .await;
    assert_eq!(delivered, 2);

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .unwrap()
        .unwrap();
    let () = tokio::time::timeout(WAIT, redis::cmd("FLUSHALL").query_async(&mut conn))
        .await
        .unwrap()
        .unwrap();
    // Counted again once both nodes wrote their keys again (within a report or two).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, delivered) = b
            .publish_ok(
                json!({"event": "after", "data": 0, "users": ["alice"], "channels": ["news"]}),
            )
            .await;
        let (_, bob) = a
            .publish_ok(json!({"event": "after", "data": 0, "users": ["bob"]}))
            .await;
        if (delivered, bob) == (2, 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the routing keys were not written again: delivered {delivered} and {bob}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node that stalls past its node TTL (SIGSTOP of a real `herald` process) is taken for dead:
/// its users leave. When it wakes up (SIGCONT) it writes its presence again: they join again,
/// and leave once when they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_writes_its_presence_again() {
    let redis = RedisServer::start().await;
    let prefix = prefix("presence-stall");
    let a = Node::with_config(&redis, &prefix, "a", presence_config()).await;
    let mut watcher = a.subscribe("channels=room:1").await;
    let mut d = support::HeraldProcess::start(
        &[
            "--engine",
            &redis.url(),
            "--redis-prefix",
            &prefix,
            "--node-id",
            "d",
            "--presence-channels",
            "room:*",
        ],
        &[],
    )
    .await;
    let http = support::http_client();
    let response = tokio::time::timeout(
        WAIT,
        http.get(d.url("/api/sse?userId=bob&channels=room:1"))
            .send(),
    )
    .await
    .expect("subscribe on d timed out")
    .unwrap();
    let bob = SseClient::open(response).await;
    assert_eq!(next_named(&mut watcher).await, pair("presence:join", "bob"));

    let pid = d.child.id().unwrap().to_string();
    let signal = |which: &str| {
        let status = std::process::Command::new("kill")
            .args([which, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} {pid}");
    };
    signal("-STOP");
    let stopped = tokio::time::Instant::now();
    let left = next_named(&mut watcher).await;
    signal("-CONT");
    assert_eq!(left, pair("presence:leave", "bob"));
    assert!(
        stopped.elapsed() < Duration::from_secs(7),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(next_named(&mut watcher).await, pair("presence:join", "bob"));
    drop(bob);
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:leave", "bob")
    );
    a.publish_ok(json!({"event": "marker", "data": 0, "channels": ["room:1"]}))
        .await;
    assert_eq!(next_named(&mut watcher).await, pair("marker", ""));
    d.child.start_kill().unwrap();
    let _ = tokio::time::timeout(WAIT, d.child.wait()).await;
}

/// A node that stops cleanly (as on SIGTERM) takes its presence out of Redis before it exits:
/// bob, only there, leaves; alice, also on node a, does not; and nothing of node b's presence
/// is left in Redis for a reaper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_takes_its_presence_with_it() {
    let redis = RedisServer::start().await;
    let prefix = prefix("presence-stop");
    let a = Node::with_config(&redis, &prefix, "a", presence_config()).await;
    let mut b = Node::with_config(&redis, &prefix, "b", presence_config()).await;
    let mut watcher = a.subscribe("channels=room:1").await;
    let _alice_a = a.subscribe("userId=alice&channels=room:1").await;
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:join", "alice")
    );
    let mut alice_b = b.subscribe("userId=alice&channels=room:1").await;
    let mut bob_b = b.subscribe("userId=bob&channels=room:1").await;
    assert_eq!(next_named(&mut watcher).await, pair("presence:join", "bob"));

    b.cancel();
    for client in [&mut alice_b, &mut bob_b] {
        client.until_end().await;
    }
    b.stopped().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .unwrap()
        .unwrap();
    let left: (i64, Option<f64>, Option<i64>) = tokio::time::timeout(
        WAIT,
        redis::pipe()
            .cmd("EXISTS")
            .arg(format!("{prefix}:presence:node:b"))
            .cmd("ZSCORE")
            .arg(format!("{prefix}:presence:nodes"))
            .arg("b")
            .cmd("HGET")
            .arg(format!("{prefix}:presence:channel:room:1"))
            .arg("alice")
            .query_async(&mut conn),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(left, (0, None, Some(1)), "node b's presence in Redis");
    assert_eq!(
        next_named(&mut watcher).await,
        pair("presence:leave", "bob")
    );
    a.publish_ok(json!({"event": "marker", "data": 0, "channels": ["room:1"]}))
        .await;
    assert_eq!(next_named(&mut watcher).await, pair("marker", ""));
}

/// A text payload crosses nodes as text (not wrapped in quotes), and an event that a release
/// before transport-neutral events left in the stream (its SSE frame in field `f`) is still
/// delivered and replayed by this release's nodes. The trailing marker proves nothing came twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_payloads_and_events_of_the_previous_format_cross_nodes_and_replay() {
    let redis = RedisServer::start().await;
    let prefix = prefix("formats");
    let a = Node::start(&redis, &prefix, "a").await;
    let b = Node::start(&redis, &prefix, "b").await;
    let mut alice_b = b.subscribe("userId=alice").await;
    let start = alice_b.start_id.clone();

    a.publish_ok(json!({"event": "note", "text": "line one\nline \"two\"", "users": ["alice"]}))
        .await;
    let e = alice_b.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("note", "line one\nline \"two\"")
    );
    a.publish_ok(json!({"event": "note", "data": "quoted", "users": ["alice"]}))
        .await;
    assert_eq!(alice_b.next_event().await.data, "\"quoted\"");

    // What the previous release's publish script wrote, by hand.
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .unwrap()
        .unwrap();
    let meta = format!("{prefix}:meta");
    let the_epoch: String = ::redis::cmd("HGET")
        .arg(&meta)
        .arg("epoch")
        .query_async(&mut conn)
        .await
        .unwrap();
    let legacy: u64 = ::redis::cmd("HINCRBY")
        .arg(&meta)
        .arg("seq")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let frame = format!("id: {the_epoch}-{legacy}\nevent: legacy\ndata: {{\"old\":true}}\n\n");
    let _: String = ::redis::cmd("XADD")
        .arg(format!("{prefix}:events"))
        .arg(format!("{legacy}-0"))
        .arg(&[
            ("f", frame.as_str()),
            ("e", &the_epoch),
            ("t", "\nu:alice\n"),
            ("b", "0"),
        ])
        .arg(&[("ms", "0"), ("o", "old-node")])
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = alice_b.next_event().await;
    assert_eq!(e.event, "legacy");
    assert_eq!(seq(&e.id), legacy);
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap(),
        json!({"old": true})
    );

    // A resume on the other node replays all three as they were, then the marker, once each.
    a.publish_ok(json!({"event": "marker", "data": 0, "users": ["alice"]}))
        .await;
    assert_eq!(alice_b.next_event().await.event, "marker");
    let mut resumed = a.resume("userId=alice", &start).await;
    let mut got = Vec::new();
    loop {
        let e = resumed.next_event().await;
        let done = e.event == "marker";
        got.push((e.event, e.data));
        if done {
            break;
        }
    }
    assert_eq!(
        got,
        [
            ("note".to_owned(), "line one\nline \"two\"".to_owned()),
            ("note".to_owned(), "\"quoted\"".to_owned()),
            ("legacy".to_owned(), "{\"old\":true}".to_owned()),
            ("marker".to_owned(), "0".to_owned()),
        ]
    );
    a.publish_ok(json!({"event": "after", "data": 1, "users": ["alice"]}))
        .await;
    assert_eq!(resumed.next_event().await.event, "after", "nothing twice");
}
