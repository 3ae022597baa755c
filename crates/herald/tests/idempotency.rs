//! Publishing safely retried: idempotency keys on one node and across a Redis cluster, the
//! `outcome_unknown` answer when Redis stops answering after a publish was sent (a real
//! SIGSTOP of redis-server), and a fresh connection counted for an event is always sent it.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use herald::broker::{Broker, Delivery, MemoryBroker, Publication, Published, RedisOptions};
use herald::config::Config;
use herald::engine::{Engine, EngineError, EngineHealth};
use herald::history::{HistoryLimits, HistoryStats, Replay, ReplayCap, ReplayFilter};
use herald::http::AppState;
use herald::presence::MemoryPresence;
use herald::{ConnectRequest, EventId, Hub, Lifecycle, UserId};
use redis_support::RedisServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{read_json, SseClient, TestServer, WAIT};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// `POST /api/sse/message` with `body` and, if given, an `Idempotency-Key` header.
async fn publish_with_key(
    http: &reqwest::Client,
    base: &str,
    body: &Value,
    key: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = http.post(format!("{base}/api/sse/message")).json(body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let response = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("publish timed out")
        .expect("publish failed");
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = read_json(response).await;
    (status, body, replayed)
}

/// Reads events until `marker` arrives; returns the `n` field of every `tick` before it.
async fn ticks_until_marker(client: &mut SseClient) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let event = client.next_event().await;
        match event.event.as_str() {
            "tick" => {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                seen.push(data["n"].as_u64().unwrap());
            }
            "marker" => return seen,
            other => panic!("unexpected event {other}: {event:?}"),
        }
    }
}

#[tokio::test]
async fn same_key_publishes_once_and_answers_the_first_result_again() {
    let server = TestServer::start().await;
    let base = server.url("");
    let mut alice = server.subscribe("userId=alice").await;
    let body = json!({"event": "tick", "data": {"n": 1}, "users": ["alice"]});

    let (status, first, replayed) = publish_with_key(&server.http, &base, &body, Some("k-1")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["delivered"], 1);
    assert_eq!(replayed, None);
    for _ in 0..3 {
        let (status, again, replayed) =
            publish_with_key(&server.http, &base, &body, Some("k-1")).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["id"], first["id"], "the first answer again");
        assert_eq!(again["delivered"], first["delivered"]);
        assert_eq!(again["replayed"], true);
        assert_eq!(replayed.as_deref(), Some("true"));
    }
    // The key in the body works the same, and matches the header's.
    let mut in_body = body.clone();
    in_body["idempotencyKey"] = json!("k-1");
    let (status, again, _) = publish_with_key(&server.http, &base, &in_body, None).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &first["id"]));
    // Another key is another event.
    let second = json!({"event": "tick", "data": {"n": 2}, "users": ["alice"]});
    let (status, other, _) = publish_with_key(&server.http, &base, &second, Some("k-2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(other["id"], first["id"]);
    server
        .publish_ok(json!({"event": "marker", "data": {}, "users": ["alice"]}))
        .await;
    assert_eq!(ticks_until_marker(&mut alice).await, vec![1, 2]);
}

#[tokio::test]
async fn a_key_reused_for_another_event_is_refused_and_bad_keys_are_named() {
    let server = TestServer::start().await;
    let base = server.url("");
    let body = json!({"event": "tick", "data": {"n": 1}, "broadcast": true});
    let (status, _, _) = publish_with_key(&server.http, &base, &body, Some("same")).await;
    assert_eq!(status, StatusCode::OK);
    let other = json!({"event": "tick", "data": {"n": 999}, "broadcast": true});
    let (status, answer, _) = publish_with_key(&server.http, &base, &other, Some("same")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "idempotency_key_reused");

    // `wh:` keys are the inbound webhooks': a publisher may not take one first.
    for bad in ["", "has space", &"k".repeat(129), "wh:0123:0"] {
        let (status, answer, _) = publish_with_key(&server.http, &base, &body, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field");
    }
    let mut both = body.clone();
    both["idempotencyKey"] = json!("one");
    let (status, answer, _) = publish_with_key(&server.http, &base, &both, Some("two")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let mut wrong_type = body.clone();
    wrong_type["idempotencyKey"] = json!(5);
    let (status, _, _) = publish_with_key(&server.http, &base, &wrong_type, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut reserved = body.clone();
    reserved["idempotencyKey"] = json!("wh:0123:0");
    let (status, answer, _) = publish_with_key(&server.http, &base, &reserved, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn a_repeated_batch_publishes_each_keyed_item_once() {
    let server = TestServer::start().await;
    let mut alice = server.subscribe("userId=alice").await;
    let batch = json!([
        {"event": "tick", "data": {"n": 1}, "users": ["alice"], "idempotencyKey": "b-1"},
        {"event": "tick", "data": {"n": 2}, "users": ["alice"], "idempotencyKey": "b-2"},
        {"event": "tick", "data": {"n": 3}, "users": ["alice"], "idempotencyKey": "b-3"}
    ]);
    let (status, first) = server.post("/api/sse/messages", &batch).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = server.post("/api/sse/messages", &batch).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    for i in 0..3 {
        assert_eq!(again["results"][i]["id"], first["results"][i]["id"]);
        assert_eq!(again["results"][i]["replayed"], true);
    }
    server
        .publish_ok(json!({"event": "marker", "data": {}, "users": ["alice"]}))
        .await;
    assert_eq!(ticks_until_marker(&mut alice).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn the_window_ends_and_zero_turns_the_check_off() {
    let mut config = Config::default();
    config.hub.idempotency.window = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let base = server.url("");
    let body = json!({"event": "tick", "data": {"n": 1}, "broadcast": true});
    let (_, first, _) = publish_with_key(&server.http, &base, &body, Some("w")).await;
    let (_, again, _) = publish_with_key(&server.http, &base, &body, Some("w")).await;
    assert_eq!(again["id"], first["id"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, later, _) = publish_with_key(&server.http, &base, &body, Some("w")).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(
        later["id"], first["id"],
        "a key is forgotten after the window"
    );

    let mut config = Config::default();
    config.hub.idempotency.window = Duration::ZERO;
    let server = TestServer::with_config(config).await;
    let base = server.url("");
    let (_, a, _) = publish_with_key(&server.http, &base, &body, Some("w")).await;
    let (_, b, _) = publish_with_key(&server.http, &base, &body, Some("w")).await;
    assert_ne!(a["id"], b["id"]);
}

/// The `herald publish` CLI passes its key: the second run answers the first result.
#[tokio::test]
async fn the_cli_sends_its_idempotency_key() {
    let server = TestServer::start().await;
    let run = || async {
        let out = tokio::time::timeout(
            WAIT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
                .args([
                    "publish",
                    "--url",
                    &server.url(""),
                    "--broadcast",
                    "--data",
                    "1",
                    "--idempotency-key",
                    "cli-1",
                ])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("herald publish timed out")
        .expect("run herald publish");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = run().await;
    let second = run().await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["replayed"], true);
}

// ---------------------------------------------------------------------------------------------
// Redis: across nodes, and a publish whose answer never came back.

struct RedisNode {
    base: String,
    hub: Hub,
    cancel: CancellationToken,
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn redis_node(redis: &RedisServer, prefix: &str, name: &str, timeout: Duration) -> RedisNode {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.validate().unwrap();
    let mut options = RedisOptions::new(redis.url(), config.hub.history);
    options.prefix = prefix.into();
    options.node_id = name.into();
    options.presence_interval = Duration::from_millis(100);
    options.node_ttl = Duration::from_secs(1);
    options.max_backoff = Duration::from_millis(200);
    options.command_timeout = timeout;
    let engine = Engine::redis(options).await.expect("connect to Redis");
    let lifecycle = Lifecycle::new();
    let hub = Hub::start(config.hub.clone(), engine, &lifecycle);
    let listener = TcpListener::bind(config.listen).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = lifecycle.token().clone();
    let server_options = herald::server::ServerOptions::from_config(&config).unwrap();
    tokio::spawn(herald::server::serve(
        listener,
        AppState::new(hub.clone(), config.http.clone()),
        lifecycle,
        server_options,
    ));
    RedisNode { base, hub, cancel }
}

async fn subscribe(base: &str, query: &str) -> SseClient {
    let response = tokio::time::timeout(
        WAIT,
        support::http_client()
            .get(format!("{base}/api/sse?{query}"))
            .send(),
    )
    .await
    .expect("subscribe timed out")
    .expect("subscribe failed");
    assert_eq!(response.status(), StatusCode::OK);
    SseClient::open(response).await
}

/// Waits until every node sees `n` connections in the cluster.
async fn wait_for_cluster(nodes: &[&RedisNode], n: usize) {
    tokio::time::timeout(WAIT, async {
        loop {
            let mut all = true;
            for node in nodes {
                let seen = node.hub.stats().await.cluster;
                all &= seen.is_some_and(|s| s.connections == n);
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the cluster did not see every connection");
}

#[tokio::test]
async fn a_key_publishes_once_across_a_redis_cluster() {
    let redis = RedisServer::start().await;
    let prefix = format!("idem-{:08x}", rand::random::<u32>());
    let a = redis_node(&redis, &prefix, "a", Duration::from_secs(2)).await;
    let b = redis_node(&redis, &prefix, "b", Duration::from_secs(2)).await;
    let mut on_a = subscribe(&a.base, "userId=alice").await;
    let mut on_b = subscribe(&b.base, "userId=alice").await;
    wait_for_cluster(&[&a, &b], 2).await;
    let http = support::http_client();
    let body = json!({"event": "tick", "data": {"n": 1}, "users": ["alice"]});
    let (status, first, _) = publish_with_key(&http, &a.base, &body, Some("cluster-1")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["delivered"], 2);
    // The retry lands on the other node: still the first answer, nothing published.
    let (status, again, replayed) =
        publish_with_key(&http, &b.base, &body, Some("cluster-1")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["delivered"], 2);
    assert_eq!(replayed.as_deref(), Some("true"));
    let other = json!({"event": "tick", "data": {"n": 2}, "users": ["alice"]});
    let (status, answer, _) = publish_with_key(&http, &b.base, &other, Some("cluster-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let marker = json!({"event": "marker", "data": {}, "users": ["alice"]});
    let (status, _, _) = publish_with_key(&http, &b.base, &marker, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ticks_until_marker(&mut on_a).await, vec![1]);
    assert_eq!(ticks_until_marker(&mut on_b).await, vec![1]);
}

/// Redis is frozen (SIGSTOP) while a publish is in flight: the script was sent but no answer
/// comes, so the hub cannot know whether it ran and says `outcome_unknown`, not "nothing was
/// sent". Redis then thaws and runs it; the retry with the same key answers the first result
/// and the subscriber gets the event exactly once.
#[tokio::test]
async fn an_unanswered_publish_is_outcome_unknown_and_a_keyed_retry_delivers_once() {
    let redis = RedisServer::start().await;
    let prefix = format!("unknown-{:08x}", rand::random::<u32>());
    let node = redis_node(&redis, &prefix, "a", Duration::from_millis(500)).await;
    let mut alice = subscribe(&node.base, "userId=alice").await;
    wait_for_cluster(&[&node], 1).await;
    let http = support::http_client();
    let body = json!({"event": "tick", "data": {"n": 1}, "users": ["alice"]});
    // One publish first, as on any running hub (it also loads the script into Redis).
    let warm = json!({"event": "tick", "data": {"n": 0}, "users": ["alice"]});
    let (status, _, _) = publish_with_key(&http, &node.base, &warm, None).await;
    assert_eq!(status, StatusCode::OK);

    redis.pause();
    let (status, answer, _) = publish_with_key(&http, &node.base, &body, Some("u-1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "outcome_unknown", "{answer}");
    // While Redis is known to be down, a publish is refused before sending: certain.
    let (status, answer, _) = publish_with_key(&http, &node.base, &body, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "engine_unavailable", "{answer}");
    redis.resume();

    // Retry (as a publisher would, with backoff) until Redis is back.
    let retried = tokio::time::timeout(WAIT, async {
        loop {
            let (status, answer, replayed) =
                publish_with_key(&http, &node.base, &body, Some("u-1")).await;
            if status == StatusCode::OK {
                return (answer, replayed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the hub did not recover after Redis resumed");
    assert_eq!(
        retried.1.as_deref(),
        Some("true"),
        "Redis ran the frozen script when it thawed, so the retry must be the first answer: {:?}",
        retried.0
    );
    let marker = json!({"event": "marker", "data": {}, "users": ["alice"]});
    let (status, _, _) = publish_with_key(&http, &node.base, &marker, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ticks_until_marker(&mut alice).await,
        vec![0, 1],
        "exactly once"
    );
}

// ---------------------------------------------------------------------------------------------
// Counted for a connection means sent to it (issue 10, item 8).

/// A memory broker whose `head` waits for the test: an event can be published in the gap
/// between a connection registering and the head being read.
#[derive(Debug)]
struct SlowHead {
    inner: MemoryBroker,
    head_called: Notify,
    release: Notify,
}

#[async_trait]
impl Broker for SlowHead {
    fn start(&self, delivery: Arc<dyn Delivery>, lifecycle: &Lifecycle) {
        self.inner.start(delivery, lifecycle);
    }
    async fn publish(&self, p: Publication) -> Result<Published, EngineError> {
        self.inner.publish(p).await
    }
    async fn command(&self, c: herald::broker::Command) -> Result<usize, EngineError> {
        self.inner.command(c).await
    }
    async fn head(&self) -> Result<EventId, EngineError> {
        self.head_called.notify_one();
        self.release.notified().await;
        self.inner.head().await
    }
    async fn replay(
        &self,
        after: EventId,
        filter: &ReplayFilter,
        cap: ReplayCap,
    ) -> Result<Replay, EngineError> {
        self.inner.replay(after, filter, cap).await
    }
    fn history_stats(&self) -> Option<HistoryStats> {
        self.inner.history_stats()
    }
    fn health(&self) -> EngineHealth {
        EngineHealth::Ok
    }
    async fn shutdown(&self) {}
}

#[tokio::test]
async fn an_event_counted_for_a_starting_connection_reaches_it() {
    let config = Config::default();
    let engine = Arc::new(SlowHead {
        inner: MemoryBroker::new(HistoryLimits {
            max_events: 100,
            max_age: Duration::from_secs(60),
            max_bytes: 1 << 20,
        }),
        head_called: Notify::new(),
        release: Notify::new(),
    });
    let hub = Hub::start(
        config.hub.clone(),
        Engine::new(engine.clone(), Arc::new(MemoryPresence::new())),
        &Lifecycle::new(),
    );
    let alice = UserId::new("alice").unwrap();
    // Something was published before, as on any running hub.
    hub.send_to_user(&UserId::new("bob").unwrap(), "tick", &json!({"n": 0}))
        .await
        .unwrap();

    let connecting = tokio::spawn({
        let hub = hub.clone();
        let alice = alice.clone();
        async move { hub.connect(ConnectRequest::user(alice)).await }
    });
    // Wait until alice is registered (and, on the old code path, stuck reading the head).
    tokio::time::timeout(WAIT, async {
        while hub.stats().await.connections == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("alice never registered");
    let published = hub
        .send_to_user(&alice, "tick", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(
        published.delivered, 1,
        "alice is registered: she is counted"
    );
    engine.release.notify_one();
    let mut stream = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect did not finish")
        .unwrap()
        .unwrap();
    hub.send_to_user(&alice, "marker", &json!({}))
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while !text.contains("event: marker") {
            let chunk = stream.next().await.expect("stream ended").unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no marker; the stream so far: {text}"));
    assert!(
        text.contains(r#"{"n":1}"#),
        "the event counted for alice was dropped: {text}"
    );
    assert_eq!(text.matches(r#"{"n":1}"#).count(), 1);
}
