//! Connection lifecycle against the real server: heartbeats, clients leaving, slow consumers,
//! disconnects, limits, timeouts, keys, and graceful shutdown.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use herald::config::{Config, HeartbeatStyle};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

#[tokio::test]
async fn heartbeat_event_carries_a_timestamp() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.heartbeat_interval = Duration::from_millis(100);
    }))
    .await;
    let mut client = srv.subscribe("userId=alice").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for _ in 0..2 {
        let e = client.next_any().await;
        assert_eq!(e.event, "heartbeat");
        assert_eq!(
            e.id, client.start_id,
            "heartbeats carry no id, so they never move Last-Event-ID"
        );
        let ts = serde_json::from_str::<Value>(&e.data).unwrap()["ts"]
            .as_u64()
            .unwrap();
        assert!(
            ts + 1000 >= before && ts < before + 60_000,
            "ts {ts} vs {before}"
        );
    }
}

#[tokio::test]
async fn heartbeat_as_comment() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.heartbeat_interval = Duration::from_millis(50);
        c.hub.heartbeat_style = HeartbeatStyle::Comment;
    }))
    .await;
    let response = srv.http.get(srv.url("/api/sse")).send().await.unwrap();
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(": heartbeat\n") {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("no heartbeat comment")
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&chunk);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("event: heartbeat"));
}

#[tokio::test]
async fn a_client_that_leaves_is_removed_from_the_stats() {
    let srv = TestServer::with_config(config(|c| {
        // Far longer than the test: removal must not wait for a heartbeat write to fail.
        c.hub.heartbeat_interval = Duration::from_secs(3600);
    }))
    .await;
    let a = srv.subscribe("userId=alice&channels=news").await;
    let _b = srv.subscribe("userId=bob").await;
    let stats = srv.stats().await;
    assert_eq!(
        (stats["connections"].as_u64(), stats["users"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(stats["channels"]["news"], 1);
    drop(a);
    let stats = srv
        .wait_for_stats("alice to leave", |s| s["connections"] == 1)
        .await;
    assert_eq!(stats["users"], 1);
    assert_eq!(stats["channels"], json!({}));
    assert_eq!(
        srv.publish_ok(json!({"event": "x", "data": 1, "users": ["alice"]}))
            .await
            .1,
        0
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_evicted_and_others_receive_everything() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.queue_capacity = 64;
        c.hub.queue_max_bytes = 512 * 1024;
    }))
    .await;

    // The slow client: a raw socket with a tiny receive buffer that sends its request and never
    // reads a byte.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /api/sse?userId=slow&channels=feed HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    srv.wait_for_stats("the slow client to connect", |s| s["connections"] == 1)
        .await;

    // The good client reads everything, concurrently, and reports its progress.
    let good = srv.subscribe("userId=good&channels=feed").await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut good = good;
        let mut received = Vec::new();
        loop {
            let e = good.next_event().await;
            if e.event == "done" {
                return (received, good);
            }
            received.push(
                serde_json::from_str::<Value>(&e.data).unwrap()["n"]
                    .as_u64()
                    .unwrap(),
            );
            progress_tx.send_replace(received.len() as u64);
        }
    });

    let filler = "z".repeat(16 * 1024);
    let mut published = 0u64;
    while srv.stats().await["evictedSlowConsumers"] == 0 {
        assert!(published < 5000, "the slow client was never evicted");
        for _ in 0..16 {
            let (_, n) = srv
                .publish_ok(json!({"event": "feed", "data": {"n": published, "pad": filler}, "channels": ["feed"]}))
                .await;
            assert!(n >= 1);
            published += 1;
        }
        // Keep the good client within a few events of the publisher (by awaiting its progress,
        // not by sleeping), so only the client that never reads falls behind.
        tokio::time::timeout(WAIT, progress.wait_for(|n| *n == published))
            .await
            .expect("the good client stalled")
            .unwrap();
    }
    srv.publish_ok(json!({"event": "done", "data": 0, "users": ["good"]}))
        .await;
    let (received, _good) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(
        received,
        (0..published).collect::<Vec<_>>(),
        "the good client got every event in order"
    );

    let stats = srv.stats().await;
    assert_eq!(stats["evictedSlowConsumers"], 1);
    assert_eq!(stats["connections"], 1);
    // The server dropped the slow client's socket: reading it reaches the end.
    let mut sink = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(WAIT, async {
        loop {
            match slow.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the evicted connection was not closed");
    let metrics = srv
        .http
        .get(srv.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_disconnects_total{reason=\"slow_consumer\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn disconnect_users_and_connections_and_all() {
    let srv = TestServer::start().await;
    let mut a1 = srv.subscribe("userId=alice").await;
    let mut a2 = srv.subscribe("userId=alice").await;
    let mut b = srv.subscribe("userId=bob").await;
    let mut c = srv.subscribe("userId=carol").await;
    let mut anon = srv.subscribe("").await;

    let (status, answer) = srv
        .post("/api/sse/disconnect", &json!({"users": ["alice"]}))
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"disconnected": 2}))
    );
    for a in [&mut a1, &mut a2] {
        let d = a.expect("disconnected").await;
        assert_eq!(d["reason"], "server_disconnect");
        // The advice clients follow (docs/api.md): come back, after a backoff.
        assert_eq!(d["reconnect"], "backoff");
        assert!(d["message"].is_string() && d["timestamp"].is_string());
        assert!(
            a.until_end().await.is_empty(),
            "the stream ends after disconnected"
        );
    }

    let (status, answer) = srv
        .post(
            "/api/sse/disconnect",
            &json!({"connections": [b.connection_id]}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"disconnected": 1}))
    );
    assert_eq!(
        b.expect("disconnected").await["reason"],
        "server_disconnect"
    );
    b.until_end().await;

    // carol is still connected and receives events.
    srv.publish_ok(json!({"event": "still", "data": 1, "users": ["carol"]}))
        .await;
    assert_eq!(c.expect("still").await, 1);

    for bad in [
        json!({}),
        json!({"users": "alice"}),
        json!({"connections": ["x"]}),
        json!({"user": ["a"]}),
    ] {
        let (status, answer) = srv.post("/api/sse/disconnect", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(answer["error"]["code"].is_string());
    }

    let (status, answer) = srv.post("/api/sse/disconnect-all", &json!({})).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"disconnected": 2}))
    );
    for client in [&mut c, &mut anon] {
        assert_eq!(
            client.expect("disconnected").await["reason"],
            "server_disconnect"
        );
        client.until_end().await;
    }
    assert_eq!(srv.stats().await["connections"], 0);
}

#[tokio::test]
async fn connection_limits() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.max_connections = 3;
        c.hub.max_connections_per_user = 2;
    }))
    .await;
    let _a1 = srv.subscribe("userId=alice").await;
    let _a2 = srv.subscribe("userId=alice").await;
    let r = srv
        .http
        .get(srv.url("/api/sse?userId=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let (_, answer) = support::read_json(r).await;
    assert_eq!(answer["error"]["code"], "user_connection_limit");

    let _b = srv.subscribe("userId=bob").await;
    let r = srv
        .http
        .get(srv.url("/api/sse?userId=carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (_, answer) = support::read_json(r).await;
    assert_eq!(answer["error"]["code"], "too_many_connections");
    assert_eq!(srv.stats().await["connections"], 3);
}

#[tokio::test]
async fn old_connections_time_out() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.connection_timeout = Some(Duration::from_millis(200));
        c.hub.cleanup_interval = Duration::from_millis(50);
    }))
    .await;
    let mut a = srv.subscribe("userId=alice").await;
    let d = a.expect("disconnected").await;
    assert_eq!(d["reason"], "timeout");
    assert_eq!(d["reconnect"], "now");
    a.until_end().await;
    srv.wait_for_stats("the timed-out connection to go", |s| s["connections"] == 0)
        .await;
}

#[tokio::test]
async fn publisher_key_protects_publish_and_admin_but_not_subscribe() {
    let key = "a-very-secret-publisher-key";
    let srv = TestServer::with_config(config(|c| {
        c.http.publisher_keys = vec![support::full_key(key)];
    }))
    .await;
    let mut a = srv.subscribe("userId=alice").await;
    let body = json!({"event": "k", "data": 1, "users": ["alice"]});
    for (path, method) in [
        ("/api/sse/message", "POST"),
        ("/api/sse/send", "POST"),
        ("/api/sse", "POST"),
        ("/api/sse/messages", "POST"),
        ("/api/sse/disconnect-all", "POST"),
        ("/api/sse/disconnect", "POST"),
        ("/api/sse/stats", "GET"),
        ("/metrics", "GET"),
    ] {
        for auth in [None, Some("Bearer wrong-key"), Some(key), Some("Bearer ")] {
            let mut req = srv
                .http
                .request(method.parse().unwrap(), srv.url(path))
                .json(&body);
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let r = req.send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            assert!(r.headers().contains_key("www-authenticate"));
            let (_, answer) = support::read_json(r).await;
            assert_eq!(answer["error"]["code"], "unauthorized");
            assert!(
                !answer.to_string().contains(key),
                "the key never appears in answers"
            );
        }
    }
    // With the key (the helper adds it), everything works.
    assert_eq!(srv.publish_ok(body).await.1, 1);
    assert_eq!(a.expect("k").await, 1);
    assert_eq!(srv.stats().await["connections"], 1);
    // Health endpoints stay open.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            srv.http.get(srv.url(path)).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn identity_from_query_can_be_refused() {
    let srv = TestServer::with_config(config(|c| {
        c.http.identity_from_query = false;
    }))
    .await;
    let r = srv
        .http
        .get(srv.url("/api/sse?userId=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, answer) = support::read_json(r).await;
    assert_eq!(answer["error"]["code"], "identity_not_allowed");
    // Anonymous subscriptions still work.
    let client = srv.subscribe("channels=news").await;
    assert_eq!(client.connected["userId"], Value::Null);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let srv = TestServer::start().await;
    let (status, answer) = srv.get_json("/api/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["code"], "not_found");
    let r = srv
        .http
        .delete(srv.url("/api/sse/message"))
        .send()
        .await
        .unwrap();
    let (status, answer) = support::read_json(r).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn stats_health_and_metrics() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice&channels=news").await;
    let mut anon = srv.subscribe("channels=news,sport").await;
    srv.publish_ok(json!({"event": "m", "data": 1, "channels": ["news"]}))
        .await;
    a.expect("m").await;
    anon.expect("m").await;
    let stats = srv.stats().await;
    assert_eq!(stats["connections"], 2);
    assert_eq!(stats["users"], 1);
    assert_eq!(stats["anonymousConnections"], 1);
    assert_eq!(stats["channels"], json!({"news": 2, "sport": 1}));
    assert_eq!(stats["eventsPublished"], 1);
    assert_eq!(stats["eventsDelivered"], 2);
    assert_eq!(stats["evictedSlowConsumers"], 0);
    assert!(stats["uptimeSeconds"].is_u64());

    let (status, health) = srv.get_json("/healthz").await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
    let (status, ready) = srv.get_json("/readyz").await;
    assert_eq!(
        (status, ready),
        (StatusCode::OK, json!({"status": "ready"}))
    );

    let metrics = srv
        .http
        .get(srv.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "herald_connections 2",
        "herald_users 1",
        "herald_events_published_total 1",
        "herald_events_delivered_total 2",
        "herald_publish_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        !metrics.contains("alice") && !metrics.contains("news"),
        "no ids in labels"
    );
}

#[tokio::test]
async fn graceful_shutdown_tells_clients_and_spreads_their_return() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.retry = Duration::from_secs(1);
        c.hub.shutdown_reconnect_window = Duration::from_secs(4);
    }))
    .await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(srv.subscribe(&format!("userId=u{i}")).await);
    }
    let hub = srv.hub.clone();
    srv.cancel();
    let mut retries = Vec::new();
    for client in &mut clients {
        let e = client.next_event().await;
        assert_eq!(e.event, "disconnected");
        let data: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["reason"], "server_shutdown");
        let retry = e.retry.expect("a retry hint comes with the shutdown");
        assert!(
            // Within the window (4 s), never sooner than `retry` (1 s).
            retry >= Duration::from_secs(1) && retry <= Duration::from_secs(4),
            "{retry:?}"
        );
        retries.push(retry);
        client.until_end().await;
    }
    retries.sort();
    retries.dedup();
    assert!(retries.len() > 1, "retry hints are jittered: {retries:?}");
    assert!(hub.is_shutting_down());
    srv.stop().await;
}

#[tokio::test]
async fn cors_allows_listed_origins_only_and_security_headers_are_set() {
    let srv = TestServer::with_config(config(|c| {
        c.http.cors_origins = vec!["https://app.example.com".into()];
    }))
    .await;
    let preflight = srv
        .http
        .request(reqwest::Method::OPTIONS, srv.url("/api/sse/message"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("last-event-id"));

    let r = srv
        .http
        .get(srv.url("/api/sse?userId=alice"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    drop(r);

    let r = srv
        .http
        .get(srv.url("/healthz"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
}

/// Sends a raw request and reads the response until `needle` shows up (or the stream ends).
async fn raw_until(srv: &TestServer, request: &[u8], needle: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn event_streams_over_raw_http_1_0_and_1_1() {
    let srv = TestServer::start().await;
    // HTTP/1.1: chunked framing around the event stream.
    let text = raw_until(
        &srv,
        b"GET /api/sse?userId=raw HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "event: connected",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(text
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    // HTTP/1.0 has no chunked encoding: the body runs until the connection closes.
    let text = raw_until(
        &srv,
        b"GET /api/sse?userId=raw10 HTTP/1.0\r\n\r\n",
        "event: connected",
    )
    .await;
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
    assert!(text.contains("\r\n\r\nretry: 3000\n"), "{text}");
    // Errors on the stream path are complete JSON answers.
    let text = raw_until(
        &srv,
        b"GET /api/sse?channels=a%20b HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "}}",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("invalid_field"), "{text}");
    // Other requests on a fresh connection still go to the full HTTP server, keep-alive and all.
    let text = raw_until(
        &srv,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "ok\"}",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}
