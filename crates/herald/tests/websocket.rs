//! The WebSocket transport (`GET /api/ws`) against the real server, with `tokio-tungstenite` as
//! the client (and raw TCP where a client must misbehave): one JSON text message per event,
//! targeting across SSE and WebSocket connections of one user, text and JSON payloads, resume
//! after a forced disconnect, `reset`, the JSON refusals before the upgrade (auth, channels,
//! Origin), eviction of a reader that never reads, a dead peer dropped after the pong deadline
//! (on the binary, with its settings), client frames, shutdown, and two binaries on one Redis.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use herald::auth::JwtVerifier;
use herald::config::{Config, Secret};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{full_key, read_json, HeraldProcess, SseClient, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

/// An open WebSocket, read up to its `connected` event.
struct WsClient {
    socket: Socket,
    /// The `connected` event's data.
    connected: Value,
    /// The `connected` event's id, if it had one.
    start_id: Option<String>,
    connection_id: String,
}

/// Opens `ws://addr/api/ws?query` with these extra headers: the client, or the refusal's status
/// and JSON body.
async fn try_open(
    addr: SocketAddr,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<WsClient, (u16, Value)> {
    let mut request = format!("ws://{addr}/api/ws?{query}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let handshake = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake timed out");
    match handshake {
        Ok((socket, response)) => {
            assert_eq!(response.status(), 101);
            assert!(
                response.headers().get("sec-websocket-extensions").is_none(),
                "no permessage-deflate"
            );
            let mut client = WsClient {
                socket,
                connected: Value::Null,
                start_id: None,
                connection_id: String::new(),
            };
            let first = client.next_any().await;
            assert_eq!(first["event"], "connected", "first frame: {first}");
            client.start_id = first.get("id").map(|id| id.as_str().unwrap().to_owned());
            client.connected = first["data"].clone();
            client.connection_id = client.connected["connectionId"]
                .as_str()
                .unwrap()
                .to_owned();
            Ok(client)
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "a refusal is JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            });
            Err((status, body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

async fn open(addr: SocketAddr, query: &str) -> WsClient {
    try_open(addr, query, &[])
        .await
        .unwrap_or_else(|(status, body)| panic!("open {query}: {status} {body}"))
}

async fn refused(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    match try_open(addr, query, headers).await {
        Ok(c) => panic!("{query} {headers:?} was accepted: {}", c.connected),
        Err(refusal) => refusal,
    }
}

impl WsClient {
    /// The next text message as JSON (pings and pongs skipped), or `None` once the socket ends.
    async fn try_next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no message and no end within {WAIT:?}"));
            match message {
                Some(Ok(Message::Text(text))) => {
                    assert!(!text.contains('\n'), "one frame per message: {text:?}");
                    return Some(serde_json::from_str(&text).expect("every message is JSON"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(other)) => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The next frame of any kind, heartbeats included.
    async fn next_any(&mut self) -> Value {
        self.try_next()
            .await
            .expect("the socket ended while a frame was expected")
    }

    /// The next frame that is not a heartbeat.
    async fn next_event(&mut self) -> Value {
        loop {
            let frame = self.next_any().await;
            if frame["event"] != "heartbeat" {
                return frame;
            }
        }
    }

    /// The next non-heartbeat frame, asserting its name.
    async fn expect(&mut self, name: &str) -> Value {
        let frame = self.next_event().await;
        assert_eq!(frame["event"], name, "unexpected frame {frame}");
        frame
    }

    /// Reads until the server closes: the frames before, and its close frame (if it sent one).
    async fn until_close(&mut self) -> (Vec<Value>, Option<CloseFrame>) {
        let mut frames = Vec::new();
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("the socket did not end within {WAIT:?}: {frames:?}"));
            match message {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => return (frames, frame),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }
}

/// The `n` of every event up to the first `end` event (heartbeats skipped), from a socket.
async fn ws_numbers_until_end(client: &mut WsClient) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let frame = client.next_event().await;
        if frame["event"] == "end" {
            return seen;
        }
        assert_eq!(frame["event"], "n", "{frame}");
        assert!(frame["id"].is_string(), "an event carries its id: {frame}");
        seen.push(frame["data"].as_u64().unwrap());
    }
}

/// The same, from an SSE stream.
async fn sse_numbers_until_end(client: &mut SseClient) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let e = client.next_event().await;
        if e.event == "end" {
            return seen;
        }
        assert_eq!(e.event, "n", "{e:?}");
        seen.push(e.data.parse().unwrap());
    }
}

/// Sends a WebSocket handshake for `GET /api/ws?query` on a raw socket and reads the `101`
/// head; the socket is then a WebSocket that this test drives (or neglects) byte by byte.
async fn raw_upgrade(mut socket: TcpStream, query: &str) -> TcpStream {
    let head = format!(
        "GET /api/ws?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // Byte by byte, so that nothing after the head is taken off the socket.
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(WAIT, socket.read(&mut byte))
            .await
            .expect("no handshake answer")
            .unwrap();
        assert_eq!(n, 1, "closed during the handshake: {answer:?}");
        answer.push(byte[0]);
    }
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{answer}"
    );
    socket
}

/// The opcodes and payloads of the (unmasked) frames a server wrote.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, header) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        if bytes.len() < header + len {
            break;
        }
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_PING: u8 = 0x9;

#[tokio::test]
async fn a_socket_gets_connected_heartbeats_and_events_one_message_each() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.heartbeat_interval = Duration::from_millis(100);
    }))
    .await;
    let mut a = open(srv.addr, "userId=alice&username=Alice&channels=news,sport").await;
    assert_eq!(a.connected["userId"], "alice");
    assert_eq!(a.connected["username"], "Alice");
    assert_eq!(a.connected["channels"], json!(["news", "sport"]));
    assert!(a.connected["serverTime"].is_string());

    // The heartbeat event, with no id (it moves no resume position).
    let heartbeat = a.next_any().await;
    assert_eq!(heartbeat["event"], "heartbeat", "{heartbeat}");
    assert!(heartbeat["data"]["ts"].is_u64(), "{heartbeat}");
    assert!(heartbeat.get("id").is_none(), "{heartbeat}");

    // Text from the client is ignored; the socket stays open.
    a.socket.send(Message::text("hello hub")).await.unwrap();
    let (id, delivered) = srv
        .publish_ok(json!({"event": "note", "data": {"k": [1, 2]}, "users": ["alice"]}))
        .await;
    assert_eq!(delivered, 1);
    let frame = a.expect("note").await;
    assert_eq!(
        frame,
        json!({"id": id, "event": "note", "data": {"k": [1, 2]}})
    );

    // A burst, coalesced by the outbox, still arrives as one message per event, in order.
    for n in 0..50 {
        srv.publish_ok(json!({"event": "n", "data": n, "channels": ["sport"]}))
            .await;
    }
    srv.publish_ok(json!({"event": "end", "data": 0, "users": ["alice"]}))
        .await;
    assert_eq!(
        ws_numbers_until_end(&mut a).await,
        (0..50).collect::<Vec<_>>()
    );

    // A plain GET is not a handshake: a JSON 426.
    let r = support::send(srv.http.get(srv.url("/api/ws?userId=alice"))).await;
    assert_eq!(r.headers()["upgrade"], "websocket");
    assert_eq!(r.headers()["sec-websocket-version"], "13");
    let (status, body) = read_json(r).await;
    assert_eq!(status.as_u16(), 426);
    assert_eq!(body["error"]["code"], "upgrade_required");
    // The stats count the socket like any connection.
    let stats = srv.stats().await;
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["channels"]["news"], 1);
}

#[tokio::test]
async fn every_connection_of_either_transport_gets_a_targeted_event_once() {
    let srv = TestServer::start().await;
    let mut alice_sse = srv.subscribe("userId=alice&channels=news").await;
    let mut alice_ws = open(srv.addr, "userId=alice").await;
    let mut bob_ws = open(srv.addr, "userId=bob&channels=news").await;
    let mut anon_ws = open(srv.addr, "channels=news").await;
    let mut carol_sse = srv.subscribe("userId=carol").await;
    assert_eq!(anon_ws.connected["userId"], Value::Null);

    let publish = |n: u64, targets: Value| {
        let mut body = json!({"event": "n", "data": n});
        body.as_object_mut()
            .unwrap()
            .extend(targets.as_object().unwrap().clone());
        body
    };
    let cases = [
        (1, json!({"users": ["alice"]}), 2),
        (2, json!({"channels": ["news"]}), 3),
        (3, json!({"connections": [alice_ws.connection_id]}), 1),
        (4, json!({"broadcast": true}), 5),
        // A user named twice (directly and through a channel) gets it once per connection.
        (
            5,
            json!({"users": ["alice", "bob"], "channels": ["news"]}),
            4,
        ),
        (
            6,
            json!({"connections": [alice_ws.connection_id, alice_sse.connection_id]}),
            2,
        ),
    ];
    for (n, targets, expected) in cases {
        let (_, delivered) = srv.publish_ok(publish(n, targets.clone())).await;
        assert_eq!(delivered, expected, "{targets}");
    }
    srv.publish_ok(json!({"event": "end", "data": 0, "broadcast": true}))
        .await;
    assert_eq!(sse_numbers_until_end(&mut alice_sse).await, [1, 2, 4, 5, 6]);
    assert_eq!(ws_numbers_until_end(&mut alice_ws).await, [1, 3, 4, 5, 6]);
    assert_eq!(ws_numbers_until_end(&mut bob_ws).await, [2, 4, 5]);
    assert_eq!(ws_numbers_until_end(&mut anon_ws).await, [2, 4, 5]);
    assert_eq!(sse_numbers_until_end(&mut carol_sse).await, [4]);
    // The admin look-up says which transport each of alice's connections uses.
    let (status, body) = srv.get_json("/api/sse/presence/users/alice").await;
    assert_eq!(status, 200, "{body}");
    let mut transports: Vec<(String, String)> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["connectionId"].as_str().unwrap().to_owned(),
                c["transport"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    transports.sort();
    let mut expected = vec![
        (alice_sse.connection_id.clone(), "sse".to_owned()),
        (alice_ws.connection_id.clone(), "websocket".to_owned()),
    ];
    expected.sort();
    assert_eq!(transports, expected);
}

#[tokio::test]
async fn text_payloads_are_strings_and_json_payloads_are_values() {
    let srv = TestServer::start().await;
    let mut ws = open(srv.addr, "userId=alice").await;
    let mut sse = srv.subscribe("userId=alice").await;
    let text = "two\nlines, \"quotes\" and \\ ✓";
    srv.publish_ok(json!({"event": "t", "text": text, "users": ["alice"]}))
        .await;
    srv.publish_ok(json!({"event": "j", "data": "a JSON string", "users": ["alice"]}))
        .await;
    srv.publish_ok(
        json!({"event": "j", "data": {"nested": [1, null, {"x": "y\nz"}]}, "users": ["alice"]}),
    )
    .await;
    assert_eq!(ws.expect("t").await["data"], json!(text));
    assert_eq!(ws.expect("j").await["data"], json!("a JSON string"));
    assert_eq!(
        ws.expect("j").await["data"],
        json!({"nested": [1, null, {"x": "y\nz"}]})
    );
    // SSE sends the same events as they are: the text raw, the JSON as JSON text.
    assert_eq!(sse.next_event().await.data, text);
    assert_eq!(sse.next_event().await.data, "\"a JSON string\"");
}

#[tokio::test]
async fn resume_after_a_forced_disconnect_loses_nothing_and_repeats_nothing() {
    let srv = TestServer::start().await;
    let mut a = open(srv.addr, "userId=alice").await;
    let mut last = String::new();
    for n in 1..=3 {
        srv.publish_ok(json!({"event": "n", "data": n, "users": ["alice"]}))
            .await;
        let frame = a.expect("n").await;
        assert_eq!(frame["data"], n);
        last = frame["id"].as_str().unwrap().to_owned();
    }
    let (status, answer) = srv
        .post(
            "/api/sse/disconnect",
            &json!({"connections": [a.connection_id]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (frames, close) = a.until_close().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["event"], "disconnected");
    assert!(frames[0].get("id").is_none());
    assert_eq!(frames[0]["data"]["reason"], "server_disconnect");
    assert_eq!(frames[0]["data"]["reconnect"], "backoff");
    assert_eq!(close.expect("a close frame").code, CloseCode::Normal);
    srv.wait_for_stats("the socket to go", |s| s["connections"] == 0)
        .await;

    // Missed while away.
    for n in 4..=6 {
        srv.publish_ok(json!({"event": "n", "data": n, "users": ["alice"]}))
            .await;
    }
    let mut b = open(srv.addr, &format!("userId=alice&lastEventId={last}")).await;
    // Live after the replay: the trailing marker comes after the replay, each event once.
    srv.publish_ok(json!({"event": "n", "data": 7, "users": ["alice"]}))
        .await;
    srv.publish_ok(json!({"event": "end", "data": 0, "users": ["alice"]}))
        .await;
    assert_eq!(ws_numbers_until_end(&mut b).await, [4, 5, 6, 7]);
}

#[tokio::test]
async fn an_id_the_hub_cannot_resume_from_yields_reset() {
    let srv = TestServer::start().await;
    srv.publish_ok(json!({"event": "n", "data": 1, "broadcast": true}))
        .await;
    let fresh = open(srv.addr, "userId=alice").await;
    let head = fresh
        .start_id
        .clone()
        .expect("a fresh socket starts at the head");
    let epoch = head.split('-').next().unwrap();
    let foreign = if epoch == "000000000000" {
        "000000000001-3"
    } else {
        "000000000000-3"
    };
    for id in [foreign, "garbage"] {
        let mut c = open(srv.addr, &format!("userId=alice&lastEventId={id}")).await;
        let reset = c.expect("reset").await;
        assert_eq!(reset["data"]["reason"], "unknown_epoch", "{reset}");
        assert_eq!(
            reset["id"],
            head.as_str(),
            "the reset moves the client to the head"
        );
    }
    // A resume from the head is up to date: no reset, live events follow.
    let mut c = open(srv.addr, &format!("userId=alice&lastEventId={head}")).await;
    srv.publish_ok(json!({"event": "n", "data": 2, "users": ["alice"]}))
        .await;
    assert_eq!(c.next_event().await["data"], 2);
}

const SECRET: &str = "hs256-secret-for-the-websocket-tests-0123456789";

fn token(claims: Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut all = json!({"aud": "herald", "exp": exp});
    all.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    encode(
        &Header::new(Algorithm::HS256),
        &all,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn secured(f: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with_config(config(|c| {
        c.http.jwt = Some(std::sync::Arc::new(
            JwtVerifier::new()
                .with_hs256_secret(&Secret::new(SECRET))
                .unwrap()
                .with_audience("herald"),
        ));
        c.http.publisher_keys = vec![full_key("websocket-test-key-0123456789")];
        f(c);
    }))
    .await
}

#[tokio::test]
async fn refusals_come_before_the_upgrade_as_json_with_the_statuses_of_sse() {
    let srv = secured(|_| {}).await;
    let alice = token(json!({"sub": "alice", "channels": ["orders:*"]}));
    let cases = [
        ("channels=orders:1".to_owned(), 401, "missing_token"),
        (format!("token={alice}x"), 401, ""),
        (
            format!("userId=mallory&token={alice}"),
            403,
            "identity_not_allowed",
        ),
        (
            format!("token={alice}&channels=payroll"),
            403,
            "channel_forbidden",
        ),
        ("channels=a%20b".to_owned(), 400, "invalid_field"),
    ];
    for (query, status, code) in cases {
        let (got, body) = refused(srv.addr, &query, &[]).await;
        assert_eq!(got, status, "{query}: {body}");
        if !code.is_empty() {
            assert_eq!(body["error"]["code"], code, "{query}: {body}");
        }
    }
    let bad_header = format!("Bearer {alice}x");
    let (status, _) = refused(srv.addr, "", &[("authorization", &bad_header)]).await;
    assert_eq!(status, 401);
    // The same token through each place a subscriber may put it.
    let by_query = open(srv.addr, &format!("token={alice}&channels=orders:1")).await;
    assert_eq!(by_query.connected["userId"], "alice");
    for header in [
        ("authorization", format!("Bearer {alice}")),
        ("cookie", format!("herald_token={alice}")),
    ] {
        let c = try_open(srv.addr, "channels=orders:2", &[(header.0, &header.1)])
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", header.0));
        assert_eq!(c.connected["userId"], "alice");
        assert_eq!(c.connected["channels"], json!(["orders:2"]));
    }
}

#[tokio::test]
async fn the_upgrade_follows_the_origin_rule_and_a_foreign_page_gets_no_cookie() {
    let alice = token(json!({"sub": "alice"}));
    let cookie = format!("herald_token={alice}");
    let with_token = format!("token={alice}");

    // No CORS list: only the hub's own pages (and clients without Origin).
    let srv = secured(|_| {}).await;
    let own = format!("http://{}", srv.addr);
    let (status, body) = refused(
        srv.addr,
        "",
        &[("origin", "https://evil.example"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    // Refused before anything else: even with a token in the query.
    let (status, _) = refused(srv.addr, &with_token, &[("origin", "null")]).await;
    assert_eq!(status, 403);
    let c = try_open(srv.addr, "", &[("origin", &own), ("cookie", &cookie)])
        .await
        .expect("the hub's own page, with its cookie");
    assert_eq!(c.connected["userId"], "alice");
    drop(c);

    // A listed origin without cors_credentials: allowed, but its cookie does not count.
    let srv = secured(|c| c.http.cors_origins = vec!["https://app.example".into()]).await;
    let app = [
        ("origin", "https://app.example"),
        ("cookie", cookie.as_str()),
    ];
    let (status, body) = refused(srv.addr, "", &app).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("missing_token"))
    );
    let c = try_open(srv.addr, &with_token, &app)
        .await
        .expect("a token in the query");
    assert_eq!(c.connected["userId"], "alice");
    let (status, _) = refused(srv.addr, &with_token, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);

    // With cors_credentials, the listed origin's cookie counts.
    let srv = secured(|c| {
        c.http.cors_origins = vec!["https://app.example".into()];
        c.http.cors_credentials = true;
    })
    .await;
    let c = try_open(srv.addr, "", &app)
        .await
        .expect("cookie with credentials");
    assert_eq!(c.connected["userId"], "alice");

    // `*`: any page, never with its cookie.
    let srv = secured(|c| c.http.cors_origins = vec!["*".into()]).await;
    let evil = [
        ("origin", "https://evil.example"),
        ("cookie", cookie.as_str()),
    ];
    let (status, _) = refused(srv.addr, "", &evil).await;
    assert_eq!(status, 401);
    let c = try_open(srv.addr, &with_token, &evil)
        .await
        .expect("`*` and a token");
    assert_eq!(c.connected["userId"], "alice");
}

#[tokio::test]
async fn a_socket_that_never_reads_is_evicted_and_closed_while_others_receive_everything() {
    // An outbox larger than what the kernel buffers take in before the server's writes block
    // for good: the socket is then evicted while its writer is stuck on the full socket, where
    // only dropping the socket (the registry's closer) ends it.
    let srv = TestServer::with_config(config(|c| {
        c.hub.queue_capacity = 1024;
        c.hub.queue_max_bytes = 2 * 1024 * 1024;
        c.shutdown_timeout = Duration::from_secs(60);
    }))
    .await;
    // The slow client: a raw socket with a tiny receive buffer that upgrades and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let slow = socket.connect(srv.addr).await.unwrap();
    let mut slow = raw_upgrade(slow, "userId=slow&channels=feed").await;
    srv.wait_for_stats("the slow socket to connect", |s| s["connections"] == 1)
        .await;

    // Two good clients, one per transport, read everything concurrently.
    let ws = open(srv.addr, "userId=good&channels=feed").await;
    let sse = srv.subscribe("userId=good&channels=feed").await;
    let (ws_tx, mut ws_progress) = tokio::sync::watch::channel(0u64);
    let (sse_tx, mut sse_progress) = tokio::sync::watch::channel(0u64);
    let ws_reader = tokio::spawn(async move {
        let mut ws = ws;
        let mut seen = Vec::new();
        loop {
            let frame = ws.next_event().await;
            if frame["event"] == "done" {
                return (seen, ws);
            }
            seen.push(frame["data"]["n"].as_u64().unwrap());
            ws_tx.send_replace(seen.len() as u64);
        }
    });
    let sse_reader = tokio::spawn(async move {
        let mut sse = sse;
        let mut seen = Vec::new();
        loop {
            let e = sse.next_event().await;
            if e.event == "done" {
                return (seen, sse);
            }
            seen.push(
                serde_json::from_str::<Value>(&e.data).unwrap()["n"]
                    .as_u64()
                    .unwrap(),
            );
            sse_tx.send_replace(seen.len() as u64);
        }
    });

    let filler = "z".repeat(16 * 1024);
    let mut published = 0u64;
    while srv.stats().await["evictedSlowConsumers"] == 0 {
        assert!(published < 5000, "the slow socket was never evicted");
        for _ in 0..16 {
            let (_, n) = srv
                .publish_ok(json!({"event": "feed", "data": {"n": published, "pad": filler}, "channels": ["feed"]}))
                .await;
            assert!(n >= 2);
            published += 1;
        }
        // Keep the good clients within a few events of the publisher (by awaiting their
        // progress, not by sleeping), so only the client that never reads falls behind.
        for progress in [&mut ws_progress, &mut sse_progress] {
            tokio::time::timeout(WAIT, progress.wait_for(|n| *n == published))
                .await
                .expect("a good client stalled")
                .unwrap();
        }
    }
    srv.publish_ok(json!({"event": "done", "data": 0, "users": ["good"]}))
        .await;
    let everything: Vec<u64> = (0..published).collect();
    let (ws_seen, _ws) = tokio::time::timeout(WAIT, ws_reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ws_seen, everything,
        "the good socket got every event in order"
    );
    let (sse_seen, _sse) = tokio::time::timeout(WAIT, sse_reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sse_seen, everything,
        "the good stream got every event in order"
    );

    let stats = srv.stats().await;
    assert_eq!(stats["evictedSlowConsumers"], 1);
    assert_eq!(
        stats["connections"], 2,
        "the good clients stay, the slow one is gone"
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
    assert!(
        metrics.contains("herald_disconnects_total{reason=\"slow_consumer\"} 1"),
        "{metrics}"
    );
    // The server dropped the slow socket at once, though its writes were stuck on the full
    // socket: its task is over, so shutdown (which waits for every connection task, here for
    // a minute) is prompt, with the slow client still not reading.
    drop((_ws, _sse));
    srv.stop().await;
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
    assert!(drained.is_ok(), "the evicted socket was not closed");
}

#[tokio::test]
async fn a_peer_that_answers_no_ping_is_dropped_after_the_pong_deadline_and_a_live_one_stays() {
    // The binary, with its settings: a ping every 300 ms, 700 ms to answer (room for a
    // loaded machine to answer in time on the live client's side).
    let herald = HeraldProcess::start(
        &["--ws-ping-interval", "300ms", "--ws-pong-timeout", "700ms"],
        &[],
    )
    .await;
    let patience = Duration::from_millis(1000);

    // A live client, reading (and so answering pings) all along; it counts the pings.
    let mut live = open(herald.addr, "userId=live").await;
    let (pings_tx, mut pings) = tokio::sync::watch::channel(0usize);
    let live_reader = tokio::spawn(async move {
        loop {
            match live.socket.next().await {
                Some(Ok(Message::Ping(_))) => {
                    pings_tx.send_modify(|n| *n += 1);
                }
                Some(Ok(_)) => {}
                other => return format!("the live socket ended: {other:?}"),
            }
        }
    });

    // The dead peer upgrades, then goes silent: it reads nothing and answers no ping.
    let started = Instant::now();
    let dead = TcpStream::connect(herald.addr).await.unwrap();
    let mut dead = raw_upgrade(dead, "userId=dead").await;
    // Its end: everything the server wrote before it dropped the socket.
    let mut written = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match dead.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => written.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the dead peer was never dropped");
    let dropped_after = started.elapsed();
    assert!(
        dropped_after >= patience - Duration::from_millis(100),
        "dropped after {dropped_after:?}, before its pong deadline"
    );
    let frames = server_frames(&written);
    assert_eq!(frames.first().map(|f| f.0), Some(OPCODE_TEXT), "{frames:?}");
    let connected: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(connected["event"], "connected");
    assert!(
        frames.iter().any(|f| f.0 == OPCODE_PING),
        "the server pinged before it gave up: {frames:?}"
    );

    // The live client answered every ping meanwhile, and goes on past several more deadlines.
    let seen = *pings.borrow();
    tokio::time::timeout(WAIT, pings.wait_for(|n| *n >= seen + 4))
        .await
        .expect("the live socket stopped getting pings")
        .unwrap();
    assert!(!live_reader.is_finished(), "{:?}", live_reader.await);
    let stats = support::read_json(
        support::send(support::http_client().get(herald.url("/api/sse/stats"))).await,
    )
    .await
    .1;
    assert_eq!(stats["connections"], 1, "only the live socket: {stats}");
    live_reader.abort();
}

#[tokio::test]
async fn a_binary_message_closes_the_socket_with_1003() {
    let srv = TestServer::start().await;
    let mut a = open(srv.addr, "userId=alice").await;
    a.socket
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    let (_, close) = a.until_close().await;
    assert_eq!(close.expect("a close frame").code, CloseCode::Unsupported);
    srv.wait_for_stats("the socket to go", |s| s["connections"] == 0)
        .await;
}

/// A client message far larger than the socket's small read buffer (but under the 16 KiB
/// limit) is read whole and ignored; the socket keeps working.
#[tokio::test]
async fn a_large_client_message_is_read_and_ignored() {
    let srv = TestServer::start().await;
    let mut a = open(srv.addr, "userId=alice").await;
    a.socket
        .send(Message::text("x".repeat(15_000)))
        .await
        .unwrap();
    a.socket
        .send(Message::Ping(vec![7u8; 100].into()))
        .await
        .unwrap();
    srv.publish_ok(json!({"event": "after", "data": 1, "users": ["alice"]}))
        .await;
    assert_eq!(a.expect("after").await["data"], json!(1));
}

#[tokio::test]
async fn a_client_that_closes_is_unregistered() {
    let srv = TestServer::start().await;
    let mut a = open(srv.addr, "userId=alice&channels=news").await;
    srv.wait_for_stats("the socket", |s| s["connections"] == 1)
        .await;
    a.socket
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    // The server answers the close handshake (echoing the code), then the registry forgets the
    // connection.
    let (_, close) = a.until_close().await;
    assert_eq!(
        close.expect("the server answered the close").code,
        CloseCode::Away
    );
    let stats = srv
        .wait_for_stats("the socket to go", |s| s["connections"] == 0)
        .await;
    assert_eq!(stats["channels"], json!({}));
    assert_eq!(stats["disconnects"]["client_closed"], 1);
}

#[tokio::test]
async fn shutdown_ends_every_socket_with_disconnected_and_a_close_frame() {
    let srv = TestServer::start().await;
    let mut a = open(srv.addr, "userId=alice").await;
    let reader = tokio::spawn(async move { a.until_close().await });
    srv.wait_for_stats("the socket", |s| s["connections"] == 1)
        .await;
    // `stop` returns once serve has, which waits for the socket's task.
    srv.stop().await;
    let (frames, close) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    let last = frames.last().expect("a disconnected frame");
    assert_eq!(last["event"], "disconnected", "{frames:?}");
    assert_eq!(last["data"]["reason"], "server_shutdown");
    assert_eq!(close.expect("a close frame").code, CloseCode::Normal);
}

/// `GET url` until it answers 200; fails after [`WAIT`]. For a node's readiness, which no event
/// announces.
async fn until_ready(http: &reqwest::Client, url: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_nodes_on_redis_deliver_to_sockets_and_resume_them_across_nodes() {
    let redis = redis_support::RedisServer::start().await;
    let prefix = format!("t-ws-{:08x}", rand::random::<u32>());
    let engine = redis.url();
    let args = [
        "--engine",
        engine.as_str(),
        "--redis-prefix",
        prefix.as_str(),
    ];
    let a = HeraldProcess::start(&args, &[]).await;
    let b = HeraldProcess::start(&args, &[]).await;
    let http = support::http_client();
    for node in [&a, &b] {
        until_ready(&http, &node.url("/readyz")).await;
    }
    let publish = |body: Value| {
        let http = http.clone();
        let url = a.url("/api/sse/message");
        async move {
            let (status, answer) = read_json(support::send(http.post(url).json(&body)).await).await;
            assert_eq!(status, 200, "{answer}");
            answer
        }
    };
    // Alice: a socket on node b, an SSE stream on node a. Published on a.
    let mut socket = open(b.addr, "userId=alice").await;
    let response = support::send(http.get(a.url("/api/sse?userId=alice"))).await;
    let mut stream = SseClient::open(response).await;
    for n in 1..=2 {
        publish(json!({"event": "n", "data": n, "users": ["alice"]})).await;
    }
    let mut last = String::new();
    for n in 1..=2 {
        let frame = socket.expect("n").await;
        assert_eq!(frame["data"], n);
        last = frame["id"].as_str().unwrap().to_owned();
        assert_eq!(stream.next_event().await.data, n.to_string());
    }
    // The socket goes away; what it misses is replayed by the other node.
    drop(socket);
    publish(json!({"event": "n", "data": 3, "users": ["alice"]})).await;
    let mut resumed = open(a.addr, &format!("userId=alice&lastEventId={last}")).await;
    publish(json!({"event": "end", "data": 0, "users": ["alice"]})).await;
    assert_eq!(ws_numbers_until_end(&mut resumed).await, [3]);
}
