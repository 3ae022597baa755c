//! `GET /api/sse?envelope=1`: every event, the hub's own included, arrives as a default
//! `message` whose data is `{"id","event","data"}`, so a client that listens only to `message`
//! misses nothing; the `id:` lines stay where plain SSE has them, so `Last-Event-ID` resume
//! works unchanged.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use herald::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{read_json, send, TestServer, WAIT};

/// An enveloped SSE stream, read with an independent parser.
struct Enveloped {
    events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>,
}

/// One event as the stream carried it: the SSE `id:` (sticky, as an EventSource keeps it), the
/// SSE type, and the envelope.
#[derive(Debug)]
struct Got {
    sse_id: String,
    sse_type: String,
    envelope: Value,
    retry: Option<Duration>,
}

impl Got {
    fn name(&self) -> &str {
        self.envelope["event"]
            .as_str()
            .expect("envelope.event is a string")
    }
}

impl Enveloped {
    async fn open(srv: &TestServer, query: &str, last_id: Option<&str>) -> Self {
        let mut req = srv
            .http
            .get(srv.url(&format!("/api/sse?envelope=1&{query}")));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let response = send(req).await;
        assert_eq!(response.status(), StatusCode::OK, "subscribe {query}");
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|r| r.map_err(|e| e.to_string()));
        Enveloped {
            events: Box::pin(events),
        }
    }

    async fn next_any(&mut self) -> Got {
        let e = match tokio::time::timeout(WAIT, self.events.next()).await {
            Ok(Some(Ok(e))) => e,
            other => panic!("expected an event, got {other:?}"),
        };
        let envelope: Value = serde_json::from_str(&e.data)
            .unwrap_or_else(|err| panic!("data is not a JSON envelope ({err}): {:?}", e.data));
        Got {
            sse_id: e.id,
            sse_type: e.event,
            envelope,
            retry: e.retry,
        }
    }

    /// The next event that is not a heartbeat.
    async fn next(&mut self) -> Got {
        loop {
            let got = self.next_any().await;
            if got.name() != "heartbeat" {
                return got;
            }
        }
    }

    async fn until_end(&mut self) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.events.next()).await {
                Ok(Some(Ok(e))) => seen.push(e),
                Ok(Some(Err(_))) | Ok(None) => return seen,
                Err(_) => panic!("stream did not end within {WAIT:?}; saw {seen:?}"),
            }
        }
    }
}

/// Every envelope is a default `message` (no `event:` line), and its `id` is exactly the SSE
/// `id:` line of that event when it has one.
fn check_shape(got: &Got) {
    assert_eq!(got.sse_type, "message", "no event: line: {got:?}");
    let keys: BTreeSet<&str> = got
        .envelope
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys == BTreeSet::from(["event", "data"])
            || keys == BTreeSet::from(["id", "event", "data"]),
        "{got:?}"
    );
    if let Some(id) = got.envelope.get("id") {
        assert_eq!(id.as_str(), Some(got.sse_id.as_str()), "{got:?}");
    }
}

#[tokio::test]
async fn every_event_is_an_enveloped_message() {
    let mut config = Config::default();
    config.hub.presence_channels = vec!["room:*".parse().unwrap()];
    config.hub.heartbeat_interval = Duration::from_millis(200);
    let srv = TestServer::with_config(config).await;
    let mut alice =
        Enveloped::open(&srv, "userId=alice&username=Alice&channels=room:1", None).await;

    let connected = alice.next_any().await;
    check_shape(&connected);
    assert_eq!(connected.name(), "connected");
    assert_eq!(connected.envelope["data"]["userId"], "alice");
    let connection_id = connected.envelope["data"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        connected.envelope["id"]
            .as_str()
            .is_some_and(|id| id.ends_with("-0")),
        "a new connection's connected carries the head id: {connected:?}"
    );

    // A heartbeat event, enveloped, without an id.
    let heartbeat = loop {
        let got = alice.next_any().await;
        if got.name() == "heartbeat" {
            break got;
        }
    };
    check_shape(&heartbeat);
    assert!(heartbeat.envelope.get("id").is_none());
    assert!(
        heartbeat.envelope["data"]["ts"].is_number(),
        "{heartbeat:?}"
    );

    // Published events of any name, JSON and text.
    let (id1, _) = srv
        .publish_ok(
            json!({"event": "order_update", "data": {"orderId": "123"}, "users": ["alice"]}),
        )
        .await;
    let (id2, _) = srv
        .publish_ok(
            json!({"event": "dashboardUpdate", "text": "two\nlines", "channels": ["room:1"]}),
        )
        .await;
    let e1 = alice.next().await;
    check_shape(&e1);
    assert_eq!(
        e1.envelope,
        json!({"id": id1, "event": "order_update", "data": {"orderId": "123"}})
    );
    let e2 = alice.next().await;
    check_shape(&e2);
    assert_eq!(
        e2.envelope,
        json!({"id": id2, "event": "dashboardUpdate", "data": "two\nlines"})
    );

    // Presence, enveloped.
    let bob = srv.subscribe("userId=bob&channels=room:1").await;
    let join = alice.next().await;
    check_shape(&join);
    assert_eq!(
        (join.name(), &join.envelope["data"]["userId"]),
        ("presence:join", &json!("bob"))
    );
    drop(bob);
    let leave = alice.next().await;
    check_shape(&leave);
    assert_eq!(leave.name(), "presence:leave");

    // `disconnected`, enveloped, then the end.
    let (status, body) = srv
        .post(
            "/api/sse/disconnect",
            &json!({"connections": [connection_id]}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"disconnected": 1})));
    let bye = alice.next().await;
    check_shape(&bye);
    assert_eq!(bye.name(), "disconnected");
    assert_eq!(bye.envelope["data"]["reason"], "server_disconnect");
    assert!(bye.envelope.get("id").is_none());
    let rest = alice.until_end().await;
    assert!(
        rest.iter().all(|e| e.data.contains("\"heartbeat\"")),
        "nothing after disconnected: {rest:?}"
    );
}

#[tokio::test]
async fn resume_with_the_envelope_ids_and_reset() {
    let srv = TestServer::start().await;
    let mut alice = Enveloped::open(&srv, "userId=alice", None).await;
    assert_eq!(alice.next().await.name(), "connected");
    srv.publish_ok(json!({"event": "n", "data": 1, "users": ["alice"]}))
        .await;
    let first = alice.next().await;
    let last = first.envelope["id"].as_str().unwrap().to_owned();
    drop(alice);
    srv.wait_for_stats("alice to leave", |s| s["connections"] == 0)
        .await;
    for n in [2, 3] {
        srv.publish_ok(json!({"event": "n", "data": n, "users": ["alice"]}))
            .await;
    }

    // Resume with the header (as a browser's EventSource does from the `id:` lines).
    let mut alice = Enveloped::open(&srv, "userId=alice", Some(&last)).await;
    let connected = alice.next().await;
    assert_eq!(connected.name(), "connected");
    assert!(
        connected.envelope.get("id").is_none(),
        "a resume's connected carries no id"
    );
    let mut seen = Vec::new();
    let mut ids = BTreeSet::new();
    srv.publish_ok(json!({"event": "marker", "data": "end", "users": ["alice"]}))
        .await;
    loop {
        let got = alice.next().await;
        check_shape(&got);
        assert!(
            ids.insert(got.envelope["id"].as_str().unwrap().to_owned()),
            "nothing twice: {got:?}"
        );
        if got.name() == "marker" {
            break;
        }
        seen.push(got.envelope["data"].clone());
    }
    assert_eq!(seen, [json!(2), json!(3)]);

    // Resume from an epoch this hub never had: an enveloped `reset` carrying the hub's newest id.
    let mut lost = Enveloped::open(&srv, "userId=alice&lastEventId=000000000001-5", None).await;
    assert_eq!(lost.next().await.name(), "connected");
    let reset = lost.next().await;
    check_shape(&reset);
    assert_eq!(reset.name(), "reset");
    assert_eq!(reset.envelope["data"]["reason"], "unknown_epoch");
    assert!(!reset.sse_id.is_empty(), "reset moves the position");
}

/// A plain and an enveloped connection of the same user each get the event in their own format
/// (an event is encoded once per format, in slots that do not mix).
#[tokio::test]
async fn plain_and_enveloped_tabs_each_get_their_format() {
    let srv = TestServer::start().await;
    let mut plain = srv.subscribe("userId=alice").await;
    let mut enveloped = Enveloped::open(&srv, "userId=alice", None).await;
    assert_eq!(enveloped.next().await.name(), "connected");
    let (id, delivered) = srv
        .publish_ok(json!({"event": "note", "data": {"n": 1}, "users": ["alice"]}))
        .await;
    assert_eq!(delivered, 2);
    let e = plain.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.id.as_str(), e.data.as_str()),
        ("note", id.as_str(), r#"{"n":1}"#)
    );
    let got = enveloped.next().await;
    assert_eq!(
        got.envelope,
        json!({"id": id, "event": "note", "data": {"n": 1}})
    );
    // And the other way round, in the other order.
    let (id, _) = srv
        .publish_ok(json!({"event": "note", "text": "t", "users": ["alice"]}))
        .await;
    assert_eq!(
        enveloped.next().await.envelope,
        json!({"id": id, "event": "note", "data": "t"})
    );
    let e = plain.next_event().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("note", "t"));
}

/// At shutdown an enveloped client gets `disconnected` (reason `server_shutdown`) with the
/// spread `retry:` hint, then the end, as a plain one does.
#[tokio::test]
async fn shutdown_is_enveloped_with_its_retry_hint() {
    let mut config = Config::default();
    config.hub.retry = Duration::from_secs(1);
    config.hub.shutdown_reconnect_window = Duration::from_secs(4);
    let srv = TestServer::with_config(config).await;
    let mut alice = Enveloped::open(&srv, "userId=alice", None).await;
    let connected = alice.next().await;
    assert_eq!(connected.name(), "connected");
    assert_eq!(
        connected.retry,
        Some(Duration::from_secs(1)),
        "the stream's first retry hint"
    );
    srv.cancel();
    let bye = alice.next().await;
    check_shape(&bye);
    assert_eq!(bye.name(), "disconnected");
    assert_eq!(bye.envelope["data"]["reason"], "server_shutdown");
    let retry = bye.retry.expect("a retry hint comes with the shutdown");
    assert!(
        retry >= Duration::from_secs(1) && retry <= Duration::from_secs(4),
        "{retry:?}"
    );
    let rest = alice.until_end().await;
    assert!(
        rest.iter().all(|e| e.data.contains("\"heartbeat\"")),
        "nothing after disconnected: {rest:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_bad_envelope_value_is_refused() {
    let srv = TestServer::start().await;
    let response = send(srv.http.get(srv.url("/api/sse?envelope=yes"))).await;
    let (status, body) = read_json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_field");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("envelope"));
}
