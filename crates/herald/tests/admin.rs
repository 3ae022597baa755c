//! The admin dashboard's server side: `GET /api/sse/stats/stream` (the figures of
//! `/api/sse/stats` as an SSE event `stats` every second, admin scope, not a subscriber, ends on
//! shutdown) and `GET /admin` (the embedded page). The page itself is tested in Chromium
//! (clients/js/e2e/admin.e2e.test.ts).

mod support;

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use herald::auth::{PublishScope, PublisherKey};
use herald::config::{Config, Secret};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{read_json, TestServer, WAIT};

#[path = "support/redis.rs"]
mod redis_support;
use redis_support::RedisServer;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const PUBLISH_KEY: &str = "publish-key-0123456789abcdef";

/// A hub with an admin key (first: the one `TestServer` uses) and a publish-only key.
async fn keyed_server() -> TestServer {
    let mut config = Config::default();
    config.http.publisher_keys = vec![
        support::full_key(ADMIN_KEY),
        PublisherKey {
            name: "backend".into(),
            key: Secret::new(PUBLISH_KEY),
            publish: PublishScope::Any,
            admin: false,
        },
    ];
    TestServer::with_config(config).await
}

type Events = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// An open stats stream.
struct StatsStream {
    events: Events,
}

impl StatsStream {
    /// Opens `GET /api/sse/stats/stream` at `url` with `key`, asserting a `200` event stream.
    async fn open(http: &reqwest::Client, url: &str, key: Option<&str>) -> Self {
        let mut req = http.get(url);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let response = support::send(req).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|r| r.map_err(|e| e.to_string()));
        StatsStream {
            events: Box::pin(events),
        }
    }

    /// The next `stats` event's data, failing after `within`.
    async fn next(&mut self, within: Duration) -> Value {
        let event = tokio::time::timeout(within, self.events.next())
            .await
            .unwrap_or_else(|_| panic!("no stats event within {within:?}"))
            .expect("the stats stream ended")
            .expect("the stats stream failed");
        assert_eq!(event.event, "stats", "{event:?}");
        serde_json::from_str(&event.data).expect("stats data is JSON")
    }

    /// Reads events until one satisfies `check` (each within 2 s, all within [`WAIT`]).
    async fn until(&mut self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = self.next(Duration::from_secs(2)).await;
            if check(&stats) {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no stats event showed {what}; last: {stats}"
            );
        }
    }

    /// Waits for the stream to end (bounded by `within`).
    async fn ends_within(&mut self, within: Duration) {
        let ended = tokio::time::timeout(within, async {
            loop {
                match self.events.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "the stats stream did not end within {within:?}"
        );
    }
}

/// Without the key, `401`; with a publish-only key, `403`; both with the JSON error. With the
/// admin key, an event stream.
#[tokio::test]
async fn the_stats_stream_needs_the_admin_scope() {
    let srv = keyed_server().await;
    let url = srv.url("/api/sse/stats/stream");
    let (status, body) = read_json(support::send(srv.http.get(&url)).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body) =
        read_json(support::send(srv.http.get(&url).bearer_auth(PUBLISH_KEY)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    // A page on another origin is refused too, key or not (the Origin rule of admin routes).
    let (status, body) = read_json(
        support::send(
            srv.http
                .get(&url)
                .bearer_auth(ADMIN_KEY)
                .header("origin", "https://evil.example"),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    let mut stream = StatsStream::open(&srv.http, &url, Some(ADMIN_KEY)).await;
    stream.next(Duration::from_secs(2)).await;
}

/// The figures the stream sends are those of `GET /api/sse/stats`, the first within 2 s and then
/// every second; a publish and a disconnect show in a later one; the stream itself is no
/// connection.
#[tokio::test]
async fn the_stats_stream_sends_the_figures_every_second() {
    let srv = keyed_server().await;
    let mut one = srv.subscribe("channels=news").await;
    let mut two = srv.subscribe("channels=news,sport").await;
    let url = srv.url("/api/sse/stats/stream");
    let mut stream = StatsStream::open(&srv.http, &url, Some(ADMIN_KEY)).await;
    let first = stream.next(Duration::from_secs(2)).await;
    let stats = srv.stats().await;
    // Everything but the uptime, which may have ticked between the two.
    let without_uptime = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("uptimeSeconds");
        v
    };
    assert_eq!(without_uptime(&first), without_uptime(&stats));
    // Not a subscriber: only the two subscribers count, with the stream open.
    assert_eq!(first["connections"], 2, "{first}");
    assert_eq!(first["channels"], json!({"news": 2, "sport": 1}));
    assert_eq!(first["disconnects"]["server_disconnect"], 0, "{first}");
    assert!(
        first["history"]["maxEvents"].as_u64().unwrap() > 0,
        "{first}"
    );

    // The next one about a second later.
    let started = tokio::time::Instant::now();
    stream.next(Duration::from_secs(2)).await;
    let gap = started.elapsed();
    assert!(
        gap >= Duration::from_millis(500),
        "sent again after {gap:?}"
    );

    // A publish shows: one more event, two more copies delivered, in the window.
    let (id, delivered) = srv
        .publish_ok(json!({"event": "n", "data": 1, "channels": ["news"]}))
        .await;
    assert_eq!(delivered, 2);
    one.expect("n").await;
    two.expect("n").await;
    let published = first["eventsPublished"].as_u64().unwrap();
    let copies = first["eventsDelivered"].as_u64().unwrap();
    let after = stream
        .until("the publish", |s| {
            s["eventsPublished"] == published + 1 && s["history"]["newestId"] == id.as_str()
        })
        .await;
    assert_eq!(after["eventsDelivered"], copies + 2, "{after}");

    // A disconnect shows, by reason.
    let (status, body) = srv
        .post(
            "/api/sse/disconnect",
            &json!({"connections": [two.connection_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = stream
        .until("the disconnect", |s| s["connections"] == 1)
        .await;
    assert_eq!(after["disconnects"]["server_disconnect"], 1, "{after}");
    assert_eq!(after["channels"], json!({"news": 1}));
    drop(one);
}

/// Shutting the server down ends the stream promptly, and the server does not wait on it.
#[tokio::test]
async fn the_stats_stream_ends_on_shutdown() {
    let srv = keyed_server().await;
    let url = srv.url("/api/sse/stats/stream");
    let mut stream = StatsStream::open(&srv.http, &url, Some(ADMIN_KEY)).await;
    stream.next(Duration::from_secs(2)).await;
    let started = tokio::time::Instant::now();
    let stop = tokio::spawn(srv.stop());
    stream.ends_within(Duration::from_secs(3)).await;
    tokio::time::timeout(Duration::from_secs(5), stop)
        .await
        .expect("serve did not return soon after shutdown with a stats stream open")
        .unwrap();
    // Well before the shutdown timeout (the server would otherwise wait for the stream).
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// On a keyless loopback hub the page and the stream are open (as every admin endpoint there).
#[tokio::test]
async fn the_dashboard_page_and_its_stream_on_an_open_hub() {
    let srv = TestServer::start().await;
    let response = support::send(srv.http.get(srv.url("/admin"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    let page = response.text().await.unwrap();
    assert!(page.contains("/api/sse/stats/stream"));
    // Self-contained: nothing loaded from elsewhere.
    for external in [
        "http://",
        "https://",
        "//cdn",
        "@import",
        "<link rel=\"stylesheet\"",
    ] {
        let found = page
            .match_indices(external)
            .any(|(i, _)| !page[i..].starts_with("http://www.w3.org/2000/svg"));
        assert!(!found, "the page refers to {external}");
    }
    let mut stream = StatsStream::open(&srv.http, &srv.url("/api/sse/stats/stream"), None).await;
    let stats = stream.next(Duration::from_secs(2)).await;
    assert_eq!(stats["connections"], 0);
}

/// On a two-node Redis cluster (the real binary), the stream carries every node's figures,
/// its deliveries included: what the dashboard's per-node rows show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_stream_of_a_cluster_has_every_node_and_its_deliveries() {
    let redis = RedisServer::start().await;
    let prefix = format!("t-admin-{:08x}", rand::random::<u32>());
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
    let response = support::send(http.get(one.url("/api/sse?channels=news"))).await;
    let mut reader = support::SseClient::open(response).await;
    let mut stream = StatsStream::open(&http, &two.url("/api/sse/stats/stream"), None).await;
    let cluster = stream
        .until("both nodes and the subscriber", |s| {
            s["cluster"]["nodes"].as_array().map(Vec::len) == Some(2)
                && s["cluster"]["connections"] == 1
        })
        .await;
    assert_eq!(cluster["cluster"]["nodeId"], "two");
    assert_eq!(cluster["connections"], 0, "node two itself has none");
    let response = support::send(
        http.post(two.url("/api/sse/message"))
            .json(&json!({"event": "n", "data": 1, "channels": ["news"]})),
    )
    .await;
    let (status, body) = read_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    reader.expect("n").await;
    let after = stream
        .until("node one's delivery", |s| {
            s["cluster"]["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["nodeId"] == "one"))
                .is_some_and(|n| n["eventsDelivered"] == 1)
        })
        .await;
    let nodes = after["cluster"]["nodes"].as_array().unwrap();
    let two_node = nodes.iter().find(|n| n["nodeId"] == "two").unwrap();
    assert_eq!(two_node["eventsDelivered"], 0, "{after}");
    assert_eq!(after["cluster"]["eventsDelivered"], 1, "{after}");
}
