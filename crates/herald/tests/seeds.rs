//! What the seeds' server side expects of the hub, on the real `herald` binary with real
//! clients: `--idle-timeout` (reason `idle`, distinct from the maximum age) on SSE and
//! WebSocket; connection metadata (`sessionId=`, `metadata=`, the token's `metadata` claim) in
//! presence answers, and its refusals; the `/sse-client` console alias; the stats' seed names
//! `totalConnections` and `uniqueUsers`.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{http_client, read_json, send, HeraldProcess, SseClient, WAIT};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "seeds-test-secret-0123456789abcdef0123";

async fn subscribe(herald: &HeraldProcess, query: &str) -> SseClient {
    let response = send(http_client().get(herald.url(&format!("/api/sse?{query}")))).await;
    assert_eq!(response.status(), StatusCode::OK, "subscribe {query}");
    SseClient::open(response).await
}

async fn get(herald: &HeraldProcess, path: &str) -> (StatusCode, Value) {
    read_json(send(http_client().get(herald.url(path))).await).await
}

async fn publish(herald: &HeraldProcess, body: Value) -> Value {
    let (status, answer) = read_json(
        send(
            http_client()
                .post(herald.url("/api/sse/message"))
                .json(&body),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// A WebSocket on `/api/ws?query`, read up to its `connected` frame.
async fn ws(
    herald: &HeraldProcess,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{}/api/ws?{query}", herald.addr);
    let (mut socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");
    let first = next_text(&mut socket).await.expect("a connected frame");
    assert_eq!(first["event"], "connected", "{first}");
    socket
}

/// The next text frame as JSON (pings and pongs skipped), `None` once the socket ends.
async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no frame and no end within the wait")
        {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            _ => return None,
        }
    }
}

/// Reads `socket` until its `disconnected` frame; returns it and the heartbeats seen before.
async fn ws_until_disconnected(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (Value, usize) {
    let mut heartbeats = 0;
    loop {
        let frame = next_text(socket).await.expect("ended without disconnected");
        match frame["event"].as_str() {
            Some("heartbeat") => heartbeats += 1,
            Some("disconnected") => return (frame, heartbeats),
            _ => panic!("unexpected frame {frame}"),
        }
    }
}

/// SSE: a subscriber that only gets heartbeats is closed with `disconnected` (reason `idle`)
/// once it was idle for `--idle-timeout`, never sooner; one that gets events stays open as
/// long as they come. The maximum age is another reason (`timeout`), not touched here.
#[tokio::test]
async fn sse_idle_connections_close_with_reason_idle_and_active_ones_stay() {
    let herald = HeraldProcess::start(
        &[
            "--idle-timeout",
            "1s",
            "--cleanup-interval",
            "100ms",
            "--heartbeat-interval",
            "150ms",
        ],
        &[],
    )
    .await;
    let idle_timeout = Duration::from_secs(1);
    let opened = Instant::now();
    let mut idle = subscribe(&herald, "userId=idle").await;
    let mut busy = subscribe(&herald, "userId=busy").await;

    // `busy` gets an event every 200 ms, for 2.5 idle timeouts.
    let feeder = {
        let url = herald.url("/api/sse/message");
        tokio::spawn(async move {
            let client = http_client();
            let mut last_sent = Instant::now();
            for n in 0..12 {
                let body = json!({"event": "tick", "data": n, "users": ["busy"]});
                last_sent = Instant::now();
                let r = send(client.post(&url).json(&body)).await;
                assert_eq!(r.status(), StatusCode::OK);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            last_sent
        })
    };

    let mut heartbeats = 0;
    let last = loop {
        let event = idle.next_any().await;
        match event.event.as_str() {
            "heartbeat" => heartbeats += 1,
            "disconnected" => break event,
            other => panic!("unexpected event {other}: {event:?}"),
        }
    };
    let after = opened.elapsed();
    assert!(
        after >= idle_timeout,
        "closed after {after:?}, before the idle timeout"
    );
    assert!(
        heartbeats >= 3,
        "heartbeats were sent meanwhile and did not count: {heartbeats}"
    );
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["reason"], "idle", "{data}");
    assert_eq!(data["reconnect"], "backoff", "{data}");
    assert!(
        idle.try_next().await.is_none(),
        "the stream ends after disconnected"
    );

    // `busy` got every tick and is still open while they come.
    let last_sent = feeder.await.unwrap();
    let mut ticks = 0;
    while ticks < 12 {
        let event = busy.next_event().await;
        assert_eq!(
            event.event, "tick",
            "busy was closed while active: {event:?}"
        );
        ticks += 1;
    }
    // Then it goes idle too, never sooner than the idle timeout after its last event (which
    // reached the hub after `last_sent`).
    let last = busy.next_event().await;
    assert_eq!(last.event, "disconnected");
    assert!(last.data.contains("\"reason\":\"idle\""), "{}", last.data);
    assert!(
        last_sent.elapsed() >= idle_timeout,
        "closed {:?} after its last event",
        last_sent.elapsed()
    );
    let (_, stats) = get(&herald, "/api/sse/stats").await;
    assert_eq!(stats["disconnects"]["idle"], 2, "{stats}");
    assert_eq!(stats["disconnects"]["timeout"], 0, "{stats}");
}

/// WebSocket: a silent client (no pings from the hub in this window, no frames of its own) is
/// closed as idle; one that sends client frames stays; on a hub that pings, the pongs a live
/// client answers keep it open.
#[tokio::test]
async fn websocket_client_frames_and_pongs_count_as_activity() {
    let herald = HeraldProcess::start(
        &[
            "--idle-timeout",
            "800ms",
            "--cleanup-interval",
            "100ms",
            "--heartbeat-interval",
            "150ms",
            "--ws-ping-interval",
            "60s",
        ],
        &[],
    )
    .await;
    let opened = Instant::now();
    let mut silent = ws(&herald, "userId=silent").await;
    let mut talker = ws(
        &herald,
        "userId=talker&sessionId=ws-1&metadata=%7B%22a%22%3A1%7D",
    )
    .await;
    let talking = tokio::spawn(async move {
        // A client frame every 200 ms for 2 s, reading all along.
        let until = Instant::now() + Duration::from_secs(2);
        let mut beat = tokio::time::interval(Duration::from_millis(200));
        while Instant::now() < until {
            tokio::select! {
                _ = beat.tick() => {
                    talker.send(Message::Text("{}".into())).await.unwrap();
                }
                frame = talker.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        assert!(!text.contains("\"disconnected\""), "closed while talking: {text}");
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the talking socket ended: {other:?}"),
                },
            }
        }
        talker
    });
    let (last, heartbeats) = ws_until_disconnected(&mut silent).await;
    assert!(opened.elapsed() >= Duration::from_millis(800));
    assert!(heartbeats >= 2, "{heartbeats}");
    assert_eq!(last["data"]["reason"], "idle", "{last}");
    // The talking socket is still open, with its session id and metadata.
    let (_, presence) = get(&herald, "/api/sse/presence/users/talker").await;
    let entry = &presence["connections"][0];
    assert_eq!(entry["transport"], "websocket", "{presence}");
    assert_eq!(entry["sessionId"], "ws-1", "{presence}");
    assert_eq!(entry["metadata"], json!({"a": 1}), "{presence}");
    let mut talker = talking.await.unwrap();
    // Silent from now on: it goes idle as well.
    let (last, _) = ws_until_disconnected(&mut talker).await;
    assert_eq!(last["data"]["reason"], "idle", "{last}");

    // A hub that pings every 150 ms: a client that only reads (and so answers the pings, as
    // tungstenite does) stays open past several idle timeouts.
    let pinging = HeraldProcess::start(
        &[
            "--idle-timeout",
            "600ms",
            "--cleanup-interval",
            "100ms",
            "--ws-ping-interval",
            "150ms",
            "--ws-pong-timeout",
            "2s",
        ],
        &[],
    )
    .await;
    let mut reader = ws(&pinging, "userId=reader").await;
    // The client reads all along (tungstenite answers a ping as it reads it).
    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
    let reading = tokio::spawn(async move {
        while let Some(frame) = next_text(&mut reader).await {
            if frames_tx.send(frame).is_err() {
                return;
            }
        }
    });
    let mut idle_sse = subscribe(&pinging, "userId=sse").await;
    // The SSE client on the same hub sends nothing (it cannot): it is closed as idle...
    let last = idle_sse.next_event().await;
    assert!(last.data.contains("\"reason\":\"idle\""), "{}", last.data);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ...while the WebSocket reader is still there: an event reaches it.
    let answer = publish(
        &pinging,
        json!({"event": "still", "data": 1, "users": ["reader"]}),
    )
    .await;
    assert_eq!(
        answer["delivered"], 1,
        "the pong-answering socket was closed: {answer}"
    );
    loop {
        let frame = tokio::time::timeout(WAIT, frames.recv())
            .await
            .expect("no frame")
            .expect("the socket ended");
        match frame["event"].as_str() {
            Some("still") => break,
            Some("heartbeat") => {}
            _ => panic!("unexpected frame {frame}"),
        }
    }
    reading.abort();
}

fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn exp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

/// `sessionId=` and `metadata=` in the query where query identity is allowed, shown on each
/// connection in `GET /api/sse/presence/users/{id}`; their refusals as JSON errors.
#[tokio::test]
async fn query_session_id_and_metadata_show_in_presence_and_bad_ones_are_refused() {
    let herald = HeraldProcess::start(&[], &[]).await;
    let meta = json!({"plan": "pro", "tab": 2});
    let query = format!(
        "userId=alice&sessionId=sess-1&metadata={}",
        urlencode(&meta.to_string())
    );
    let _tab1 = subscribe(&herald, &query).await;
    let _tab2 = subscribe(&herald, "userId=alice").await;
    let (status, presence) = get(&herald, "/api/sse/presence/users/alice").await;
    assert_eq!(status, StatusCode::OK, "{presence}");
    let connections = presence["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 2, "{presence}");
    assert_eq!(connections[0]["sessionId"], "sess-1", "{presence}");
    assert_eq!(connections[0]["metadata"], meta, "{presence}");
    assert_eq!(connections[1]["sessionId"], Value::Null, "{presence}");
    assert_eq!(connections[1]["metadata"], Value::Null, "{presence}");

    let too_big = json!({"x": "y".repeat(1100)}).to_string();
    for bad in [
        format!("userId=a&metadata={}", urlencode("[1,2]")),
        format!("userId=a&metadata={}", urlencode("{not json")),
        format!("userId=a&metadata={}", urlencode(&too_big)),
        format!("userId=a&sessionId={}", urlencode("a\nb")),
        "userId=a&sessionId=".to_owned(),
    ] {
        let (status, body) = get(&herald, &format!("/api/sse?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{bad}: {body}");
    }
    // Just under the bound is fine.
    let fits = json!({"x": "y".repeat(1000)}).to_string();
    assert!(fits.len() <= 1024);
    let _ok = subscribe(&herald, &format!("userId=b&metadata={}", urlencode(&fits))).await;

    // Where query identity is not allowed, neither are these.
    let strict = HeraldProcess::start(&["--identity-from-query", "false"], &[]).await;
    for q in ["sessionId=s", "metadata=%7B%7D"] {
        let (status, body) = get(&strict, &format!("/api/sse?{q}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{q}: {body}");
        assert_eq!(body["error"]["code"], "identity_not_allowed", "{q}: {body}");
    }
}

/// A token's `metadata` claim is the connection's metadata; the query cannot add any on a hub
/// with tokens; a claim that is not a small JSON object refuses the token.
#[tokio::test]
async fn the_metadata_claim_of_a_token_shows_in_presence() {
    let herald = HeraldProcess::start(
        &[
            "--jwt-secret",
            SECRET,
            "--publisher-key",
            "seeds-publisher-key-0123456789",
        ],
        &[],
    )
    .await;
    let token = hs256(json!({"sub": "carol", "exp": exp(), "metadata": {"role": "admin"}}));
    let _carol = subscribe(&herald, &format!("token={token}")).await;
    let presence = read_json(
        send(
            http_client()
                .get(herald.url("/api/sse/presence/users/carol"))
                .bearer_auth("seeds-publisher-key-0123456789"),
        )
        .await,
    )
    .await
    .1;
    assert_eq!(
        presence["connections"][0]["metadata"],
        json!({"role": "admin"}),
        "{presence}"
    );
    assert_eq!(presence["connections"][0]["sessionId"], Value::Null);
    let (status, body) = get(&herald, &format!("/api/sse?token={token}&sessionId=s")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "identity_not_allowed");
    for claim in [json!([1]), json!({"x": "y".repeat(1100)})] {
        let bad = hs256(json!({"sub": "dave", "exp": exp(), "metadata": claim}));
        let (status, body) = get(&herald, &format!("/api/sse?token={bad}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "invalid_claims", "{body}");
    }
}

/// `GET /sse-client` is the console of `GET /sse-test`; the stats carry the seeds' names.
#[tokio::test]
async fn console_alias_and_stats_seed_names() {
    let herald = HeraldProcess::start(&[], &[]).await;
    let page = |path: &'static str| {
        let url = herald.url(path);
        async move {
            let r = send(http_client().get(url)).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
            r.text().await.unwrap()
        }
    };
    assert_eq!(page("/sse-client").await, page("/sse-test").await);

    let _a1 = subscribe(&herald, "userId=alice").await;
    let _a2 = subscribe(&herald, "userId=alice").await;
    let _b = subscribe(&herald, "userId=bob").await;
    let _anon = subscribe(&herald, "").await;
    let (_, stats) = get(&herald, "/api/sse/stats").await;
    assert_eq!(stats["totalConnections"], 4, "{stats}");
    assert_eq!(stats["uniqueUsers"], 2, "{stats}");
    assert_eq!(stats["connections"], 4, "{stats}");
    assert_eq!(stats["users"], 2, "{stats}");
    assert_eq!(stats["disconnects"]["idle"], 0, "{stats}");
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Socket.IO client spoken by hand (Engine.IO v4 over a WebSocket): it answers the Engine.IO
/// pings (`2` → `3`) and connects to `/` with `auth`.
struct SocketIo {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl SocketIo {
    async fn connect(herald: &HeraldProcess, auth: Value) -> SocketIo {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", herald.addr);
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("handshake timed out")
            .expect("handshake failed");
        let mut client = SocketIo { socket };
        let open = client.packet().await.expect("an Engine.IO open packet");
        assert!(open.starts_with('0'), "{open}");
        client
            .socket
            .send(Message::Text(format!("40{auth}").into()))
            .await
            .unwrap();
        let connect = client.packet().await.expect("a namespace connect");
        assert!(connect.starts_with("40"), "{connect}");
        let (event, _) = client.event().await.expect("the connected event");
        assert_eq!(event, "connected");
        client
    }

    /// The next Engine.IO packet other than a ping (which it answers); `None` once closed.
    async fn packet(&mut self) -> Option<String> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("no packet within the wait");
            match frame {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    self.socket.send(Message::Text("3".into())).await.ok()?;
                }
                Some(Ok(Message::Text(text))) => return Some(text.as_str().to_owned()),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    }

    /// The next Socket.IO event (`42[name, data, …]`), as (name, data); `None` once closed.
    async fn event(&mut self) -> Option<(String, Value)> {
        loop {
            let packet = self.packet().await?;
            if let Some(body) = packet.strip_prefix("42") {
                let list: Vec<Value> = serde_json::from_str(body).unwrap();
                return Some((list[0].as_str().unwrap().to_owned(), list[1].clone()));
            }
            if packet.starts_with("41") {
                return None; // disconnected from the namespace
            }
        }
    }

    /// Reads until the `disconnected` event; returns its data.
    async fn until_disconnected(&mut self) -> Value {
        loop {
            match self.event().await {
                Some((name, data)) if name == "disconnected" => return data,
                Some((name, _)) if name == "heartbeat" => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// Socket.IO (a socket that opens a WebSocket directly, on Herald's own WebSocket path): a
/// client that sends nothing at all is closed as idle, one that emits events is not; and the
/// answers to Engine.IO's pings count as activity too, as WebSocket pongs do.
#[tokio::test]
async fn socketio_emitted_events_and_pongs_count_as_activity() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // Pings far apart: only the client's own packets can keep it.
        let herald = HeraldProcess::start(
            &[
                "--idle-timeout",
                "800ms",
                "--cleanup-interval",
                "100ms",
                "--ws-ping-interval",
                "30s",
            ],
            &[],
        )
        .await;
        let opened = Instant::now();
        let mut listener = SocketIo::connect(&herald, json!({"userId": "listener"})).await;
        let mut talker =
            SocketIo::connect(&herald, json!({"userId": "talker", "sessionId": "t-1"})).await;
        let talking = tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(2);
            let mut beat = tokio::time::interval(Duration::from_millis(200));
            while Instant::now() < until {
                tokio::select! {
                    _ = beat.tick() => {
                        talker.socket.send(Message::Text("42[\"typing\",{}]".into())).await.unwrap();
                    }
                    packet = talker.packet() => {
                        let packet = packet.expect("the talking socket ended");
                        assert!(!packet.contains("\"disconnected\""), "closed while talking: {packet}");
                    }
                }
            }
            talker
        });
        let data = listener.until_disconnected().await;
        assert!(opened.elapsed() >= Duration::from_millis(800));
        assert_eq!(data["reason"], "idle", "{data}");
        let (_, presence) = get(&herald, "/api/sse/presence/users/talker").await;
        assert_eq!(presence["connections"][0]["sessionId"], "t-1", "{presence}");
        let mut talker = talking.await.unwrap();
        let data = talker.until_disconnected().await;
        assert_eq!(data["reason"], "idle", "{data}");

        // Pings every 200 ms: a client that only answers them stays past the idle timeout.
        let herald = HeraldProcess::start(
            &[
                "--idle-timeout",
                "800ms",
                "--cleanup-interval",
                "100ms",
                "--ws-ping-interval",
                "200ms",
            ],
            &[],
        )
        .await;
        let mut answering = SocketIo::connect(&herald, json!({"userId": "answering"})).await;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            // `packet` answers pings; only a heartbeat or the `disconnected` event comes back.
            let packet = tokio::time::timeout_at(until.into(), answering.packet()).await;
            if let Ok(packet) = packet {
                let packet = packet.expect("the answering socket ended");
                assert!(!packet.contains("\"disconnected\""), "closed while answering pings: {packet}");
            }
        }
        let (_, presence) = get(&herald, "/api/sse/presence/users/answering").await;
        assert_eq!(presence["connections"].as_array().map(Vec::len), Some(1), "{presence}");
    })
    .await
    .expect("the test took longer than 30 s");
}
