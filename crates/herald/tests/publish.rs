//! Publishing and targeting, against the real server over HTTP.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{SseClient, TestServer};

/// Publishes a marker to `client`'s connection and asserts it is the next event the client sees:
/// proof that nothing else was queued to it before the marker.
async fn assert_nothing_before_marker(srv: &TestServer, client: &mut SseClient) {
    let marker = json!({"marker": client.connection_id});
    srv.publish_ok(json!({
        "event": "marker", "data": marker, "connections": [client.connection_id]
    }))
    .await;
    assert_eq!(client.expect("marker").await, marker);
}

#[tokio::test]
async fn connect_sends_headers_retry_and_connected() {
    let srv = TestServer::start().await;
    let client = srv
        .subscribe("userId=alice&username=Alice%20A&channels=news,orders&channels=news")
        .await;
    let h = &client.headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(client.retry, Some(std::time::Duration::from_secs(3)));
    let c = &client.connected;
    assert_eq!(c["userId"], "alice");
    assert_eq!(c["username"], "Alice A");
    assert_eq!(c["channels"], json!(["news", "orders"]));
    assert!(c["serverTime"].as_str().unwrap().ends_with('Z'));
    let id = c["connectionId"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    let other = srv.subscribe("").await;
    assert_ne!(other.connection_id, client.connection_id);
    assert_eq!(other.connected["userId"], Value::Null);
}

#[tokio::test]
async fn user_target_reaches_all_of_alices_connections_and_none_of_bobs() {
    let srv = TestServer::start().await;
    let mut a1 = srv.subscribe("userId=alice").await;
    let mut a2 = srv.subscribe("userId=alice").await;
    let mut bob = srv.subscribe("userId=bob").await;
    let (id, delivered) = srv
        .publish_ok(json!({"event": "notification", "data": {"n": 1}, "users": ["alice"]}))
        .await;
    assert_eq!(delivered, 2);
    for a in [&mut a1, &mut a2] {
        let e = a.next_event().await;
        assert_eq!(
            (e.event.as_str(), e.id.as_str()),
            ("notification", id.as_str())
        );
        assert_eq!(
            serde_json::from_str::<Value>(&e.data).unwrap(),
            json!({"n": 1})
        );
    }
    assert_nothing_before_marker(&srv, &mut bob).await;
}

#[tokio::test]
async fn connection_channel_users_and_broadcast_targets() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice&channels=news").await;
    let mut b = srv.subscribe("userId=bob&channels=sport").await;
    let mut c = srv.subscribe("userId=carol").await;
    let mut anon = srv.subscribe("channels=news").await;

    // One connection.
    let (_, n) = srv
        .publish_ok(json!({"event": "e", "data": "to-b", "connections": [b.connection_id]}))
        .await;
    assert_eq!(n, 1);
    assert_eq!(b.expect("e").await, "to-b");

    // A channel: alice and the anonymous subscriber.
    let (_, n) = srv
        .publish_ok(json!({"event": "e", "data": "news", "channels": ["news"]}))
        .await;
    assert_eq!(n, 2);
    assert_eq!(a.expect("e").await, "news");
    assert_eq!(anon.expect("e").await, "news");

    // A list of users.
    let (_, n) = srv
        .publish_ok(json!({"event": "e", "data": "users", "users": ["bob", "carol", "nobody"]}))
        .await;
    assert_eq!(n, 2);
    assert_eq!(b.expect("e").await, "users");
    assert_eq!(c.expect("e").await, "users");

    // Broadcast reaches everyone, anonymous included.
    let (_, n) = srv
        .publish_ok(json!({"event": "all", "data": 1, "broadcast": true}))
        .await;
    assert_eq!(n, 4);
    for client in [&mut a, &mut b, &mut c, &mut anon] {
        assert_eq!(client.expect("all").await, 1);
    }
    // Nothing else was queued to anyone.
    for client in [&mut a, &mut b, &mut c, &mut anon] {
        assert_nothing_before_marker(&srv, client).await;
    }
}

#[tokio::test]
async fn a_union_of_targets_is_delivered_once_per_connection() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice&channels=news,sport").await;
    let (_, n) = srv
        .publish_ok(json!({
            "event": "u", "data": 1,
            "users": ["alice", "alice"], "channels": ["news", "sport"],
            "connections": [a.connection_id]
        }))
        .await;
    assert_eq!(n, 1);
    assert_eq!(a.expect("u").await, 1);
    assert_nothing_before_marker(&srv, &mut a).await;
}

#[tokio::test]
async fn fallback_broadcast_is_opt_in() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice").await;
    let (_, n) = srv
        .publish_ok(json!({"event": "f", "data": 0, "users": ["nobody"]}))
        .await;
    assert_eq!(n, 0, "no fallback by default");
    let (_, n) = srv
        .publish_ok(json!({"event": "f", "data": 1, "users": ["nobody"], "fallback": "broadcast"}))
        .await;
    assert_eq!(n, 1);
    assert_eq!(
        a.expect("f").await,
        1,
        "the fallback broadcast arrives, the first did not"
    );
    // Targets that match somebody do not fall back.
    let mut b = srv.subscribe("userId=bob").await;
    let (_, n) = srv
        .publish_ok(json!({"event": "f", "data": 2, "users": ["bob"], "fallback": "broadcast"}))
        .await;
    assert_eq!(n, 1);
    assert_eq!(b.expect("f").await, 2);
    assert_nothing_before_marker(&srv, &mut a).await;
}

#[tokio::test]
async fn payloads_arrive_intact() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice").await;
    let big = "x".repeat(60 * 1024);
    let payloads = [
        json!("line one\nline two\r\nline three\rfour"),
        json!({"text": "a\n\nb", "nested": {"list": [1, 2.5, null, true]}}),
        json!("unicode ✓ 🎉 Zoë — 漢字 \u{2028}\u{2029}"),
        json!(" leading space and trailing \n"),
        json!("event: injected\n\ndata: nope\nid: 999"),
        json!(big),
        json!(null),
        json!(12.5),
    ];
    let limit_ok = TestServer::with_config({
        let mut c = herald::config::Config::default();
        c.http.max_body_size = 128 * 1024;
        c
    })
    .await;
    let mut big_client = limit_ok.subscribe("userId=alice").await;
    for p in &payloads {
        let (_, n) = limit_ok
            .publish_ok(json!({"event": "p", "data": p, "users": ["alice"]}))
            .await;
        assert_eq!(n, 1);
        let e = big_client.next_event().await;
        assert_eq!(e.event, "p");
        assert_eq!(&serde_json::from_str::<Value>(&e.data).unwrap(), p);
    }
    // The default limit (64 KiB) still takes a 60 KiB payload.
    srv.publish_ok(json!({"event": "p", "data": big, "users": ["alice"]}))
        .await;
    assert_eq!(a.expect("p").await, json!(big));
}

#[tokio::test]
async fn bad_publishes_get_json_errors_and_change_nothing() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice").await;
    let cases = [
        (
            json!({"event": "bad\nname", "data": 1, "users": ["alice"]}),
            "invalid_field",
        ),
        (
            json!({"event": "bad\r\nevent: x", "data": 1, "users": ["alice"]}),
            "invalid_field",
        ),
        (
            json!({"event": "", "data": 1, "users": ["alice"]}),
            "invalid_field",
        ),
        (
            json!({"event": "x".repeat(65), "data": 1, "users": ["alice"]}),
            "invalid_field",
        ),
        (
            json!({"event": "disconnected", "data": 1, "users": ["alice"]}),
            "reserved_event",
        ),
        (json!({"event": "ok", "users": ["alice"]}), "invalid_field"),
        (json!({"event": "ok", "data": 1}), "missing_target"),
        (
            json!({"event": "ok", "data": 1, "broadcast": true, "users": ["alice"]}),
            "conflicting_targets",
        ),
        (
            json!({"event": "ok", "data": 1, "users": ["al\nice"]}),
            "invalid_field",
        ),
        (
            json!({"event": "ok", "data": 1, "userz": ["alice"]}),
            "invalid_field",
        ),
        (
            json!({"event": "ok", "data": 1, "channels": ["a,b"]}),
            "invalid_field",
        ),
        (
            json!({"event": "ok", "data": 1, "connections": ["short"]}),
            "invalid_field",
        ),
        (
            json!({"event": "ok", "data": 1, "users": ["alice"], "fallback": "everyone"}),
            "invalid_field",
        ),
        (json!(["not", "an", "object"]), "invalid_json"),
    ];
    for (body, code) in cases {
        let (status, answer) = srv.publish(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Malformed JSON, invalid UTF-8, empty body.
    for raw in [&b"{\"event\": "[..], b"\xff\xfe{}", b""] {
        let r = srv
            .http
            .post(srv.url("/api/sse/message"))
            .header("content-type", "application/json")
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        let (status, answer) = support::read_json(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}");
        assert_eq!(answer["error"]["code"], "invalid_json", "{raw:?}: {answer}");
    }
    // Too large: 413, whether or not the client announced the length.
    let huge = json!({"event": "x", "data": "y".repeat(70 * 1024), "broadcast": true});
    let (status, answer) = srv.publish(huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"]["code"], "payload_too_large");
    let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter(
        (0..70).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])),
    ));
    let r = srv
        .http
        .post(srv.url("/api/sse/message"))
        .body(chunked)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // None of it reached the client, and nothing was counted as published.
    assert_eq!(srv.stats().await["eventsPublished"], 0);
    assert_nothing_before_marker(&srv, &mut a).await;
}

#[tokio::test]
async fn aliases_and_batch_publish() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice").await;
    for path in ["/api/sse/send", "/api/sse"] {
        let (status, answer) = srv
            .post(
                path,
                &json!({"event": "alias", "data": path, "users": ["alice"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(answer["delivered"], 1);
        assert_eq!(a.expect("alias").await, path);
    }
    let (status, answer) = srv
        .post(
            "/api/sse/messages",
            &json!([
                {"event": "b", "data": 1, "users": ["alice"]},
                {"event": "b", "data": 2},
                {"event": "b", "data": 3, "users": ["nobody"]},
                {"event": "b", "data": 4, "users": ["alice"]}
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["delivered"], 1);
    assert_eq!(results[1]["error"]["code"], "missing_target");
    assert_eq!(results[2]["delivered"], 0);
    assert_eq!(results[3]["delivered"], 1);
    assert_eq!(a.expect("b").await, 1);
    assert_eq!(a.expect("b").await, 4);
    let (status, answer) = srv.post("/api/sse/messages", &json!({"data": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn events_arrive_in_publish_order_with_increasing_ids() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice&channels=c").await;
    // Two publishers racing: every connection still sees ids in increasing order, and each
    // publisher's events in the order it sent them.
    let publish_many = |source: &'static str, target: Value| {
        let srv = &srv;
        async move {
            for i in 0..100 {
                let mut body = json!({"event": "seq", "data": {"src": source, "i": i}});
                body.as_object_mut()
                    .unwrap()
                    .extend(target.as_object().unwrap().clone());
                srv.publish_ok(body).await;
            }
        }
    };
    tokio::join!(
        publish_many("user", json!({"users": ["alice"]})),
        publish_many("channel", json!({"channels": ["c"]}))
    );
    let mut last_seq = 0u64;
    let mut next = std::collections::HashMap::from([("user", 0), ("channel", 0)]);
    for _ in 0..200 {
        let e = a.next_event().await;
        let seq: u64 = e.id.rsplit('-').next().unwrap().parse().unwrap();
        assert!(seq > last_seq, "ids must increase: {seq} after {last_seq}");
        last_seq = seq;
        let data: Value = serde_json::from_str(&e.data).unwrap();
        let expected = next.get_mut(data["src"].as_str().unwrap()).unwrap();
        assert_eq!(data["i"], *expected, "publisher order");
        *expected += 1;
    }
    assert_eq!(next["user"], 100);
    assert_eq!(next["channel"], 100);
}

#[tokio::test]
async fn subscribe_rejects_bad_parameters() {
    let srv = TestServer::start().await;
    for query in [
        "userId=a%0Ab",
        "channels=a%20b",
        "channels=orders:*",
        "userId=&x=1",
        "username=a%07",
    ] {
        let r = srv
            .http
            .get(srv.url(&format!("/api/sse?{query}")))
            .send()
            .await
            .unwrap();
        let (status, answer) = support::read_json(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer["error"]["code"], "invalid_field", "{query}");
    }
    let too_many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    let r = srv
        .http
        .get(srv.url(&format!("/api/sse?channels={}", too_many.join(","))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(srv.stats().await["connections"], 0);
}

/// `text` sends raw text, exactly as published (line breaks included), live and on a resume;
/// `data` sends JSON. Exactly one of the two.
#[tokio::test]
async fn text_payloads_arrive_as_raw_text() {
    let srv = TestServer::start().await;
    let mut a = srv.subscribe("userId=alice").await;
    let start = a.start_id.clone();
    let texts = [
        "Hello",
        "two\nlines",
        "{\"looks\":\"like json\"}",
        "  spaced  ",
        "",
    ];
    for text in texts {
        srv.publish_ok(json!({"event": "t", "text": text, "users": ["alice"]}))
            .await;
        let e = a.next_event().await;
        assert_eq!((e.event.as_str(), e.data.as_str()), ("t", text));
    }
    srv.publish_ok(json!({"event": "j", "data": "Hello", "users": ["alice"]}))
        .await;
    assert_eq!(a.next_event().await.data, "\"Hello\"");
    let mut resumed = srv.resume("userId=alice", &start).await;
    for text in texts {
        assert_eq!(resumed.next_event().await.data, text);
    }
    assert_eq!(resumed.next_event().await.data, "\"Hello\"");
    for (body, field) in [
        (json!({"data": 1, "text": "x", "broadcast": true}), "text"),
        (json!({"text": 5, "broadcast": true}), "text"),
        (json!({"broadcast": true}), "data"),
    ] {
        let (status, answer) = srv.publish(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{body}: {answer}");
    }
    assert_nothing_before_marker(&srv, &mut a).await;
}
