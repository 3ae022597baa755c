//! The lean event-stream writer with direct writes: a publisher writes an idle connection's event
//! straight to its socket, and when the socket does not take it whole, the connection's own task
//! sends the rest before anything newer. These tests stall a real client's reads (a tiny receive
//! buffer, nothing read) so that the socket fills mid-event, then check that every event arrives
//! once, whole, in order, on plain HTTP/1.1 chunked streams.

mod support;

use std::time::Duration;

use herald::config::Config;
use serde_json::json;
use support::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Events published while the client does not read, each `PAD` bytes of payload: far more than
/// the client's receive buffer and the server's send buffer hold, far less than its outbox.
const EVENTS: usize = 400;
const PAD: usize = 20_000;

/// Opens `GET /api/sse?userId=<user>` on a socket with a small receive buffer and reads until the
/// `connected` event; returns the socket and what was read after the response head.
async fn stalled_subscriber(server: &TestServer, user: &str) -> (TcpStream, Vec<u8>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = tokio::time::timeout(WAIT, socket.connect(server.addr))
        .await
        .expect("connect in time")
        .unwrap();
    let head = format!("GET /api/sse?userId={user} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&buf).contains("event: connected") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream ended before `connected`");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("`connected` in time");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    let body_at = text.find("\r\n\r\n").unwrap() + 4;
    (stream, buf[body_at..].to_vec())
}

/// Decodes the whole HTTP/1.1 chunks at the start of `raw`; returns their body bytes and how
/// many bytes of `raw` they took. Panics on malformed framing: a direct write that broke
/// a chunk would show here.
fn dechunk(raw: &[u8]) -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            return (body, at);
        };
        let size_text = std::str::from_utf8(&raw[at..at + line_end]).expect("chunk size is text");
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        assert!(size > 0, "the stream ended (zero-length chunk)");
        let data_at = at + line_end + 2;
        if raw.len() < data_at + size + 2 {
            return (body, at);
        }
        body.extend_from_slice(&raw[data_at..data_at + size]);
        assert_eq!(
            &raw[data_at + size..data_at + size + 2],
            b"\r\n",
            "chunk not followed by CRLF"
        );
        at = data_at + size + 2;
    }
}

/// The `data:` of every `event: <name>` in an SSE body, in order.
fn events_named(body: &str, name: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|block| block.lines().any(|l| l == format!("event: {name}")))
        .filter_map(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("data: ").map(str::to_owned))
        })
        .collect()
}

#[tokio::test]
async fn a_stalled_reader_gets_every_event_once_whole_and_in_order() {
    let mut config = Config::default();
    config.hub.queue_capacity = 4 * EVENTS;
    config.hub.queue_max_bytes = 64 << 20;
    let server = TestServer::with_config(config).await;
    let (mut stream, mut raw) = stalled_subscriber(&server, "slow").await;

    // The client reads nothing while these go out: the first ones are written straight to the
    // socket by the publisher, until it is full mid-event; the rest wait in the outbox.
    let pad = "x".repeat(PAD);
    for i in 0..EVENTS {
        let (_, delivered) = server
            .publish_ok(json!({"event": "bulk", "text": format!("{i}:{pad}"), "users": ["slow"]}))
            .await;
        assert_eq!(delivered, 1, "event {i} reached the stalled connection");
    }

    // The trailing marker goes last; then read everything up to it.
    server
        .publish_ok(json!({"event": "marker", "text": "end", "users": ["slow"]}))
        .await;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut decoded = Vec::new();
    let mut at = 0;
    let body = tokio::time::timeout(WAIT * 2, async {
        loop {
            let (more, used) = dechunk(&raw[at..]);
            at += used;
            let seen = decoded.len();
            decoded.extend_from_slice(&more);
            let from = seen.saturating_sub(32);
            if decoded[from..].windows(13).any(|w| w == b"event: marker") {
                return String::from_utf8(decoded).expect("UTF-8 stream");
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream ended early");
            raw.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("every event and the marker in time");
    // (A chunk holds whole events: the marker's data came with its name.)
    let bulk = events_named(&body, "bulk");
    assert_eq!(bulk.len(), EVENTS, "each event exactly once");
    for (i, data) in bulk.iter().enumerate() {
        assert_eq!(data, &format!("{i}:{pad}"), "event {i} whole and in order");
    }
    // Ids strictly increase over the whole stream.
    let ids: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .filter_map(|id| id.rsplit('-').next()?.parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    assert_eq!(events_named(&body, "marker"), vec!["end".to_owned()]);
}

#[tokio::test]
async fn concurrent_publishers_to_one_connection_keep_its_stream_intact() {
    let server = TestServer::start().await;
    let (mut stream, mut raw) = stalled_subscriber(&server, "busy").await;
    // Eight publishers at once to one connection: direct writes, queued frames and the writer
    // task's flushes interleave; the stream must stay well-framed and complete.
    let mut tasks = Vec::new();
    for p in 0..8 {
        let http = server.http.clone();
        let url = server.url("/api/sse/message");
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let response = tokio::time::timeout(
                    WAIT,
                    http.post(&url)
                        .header("host", "localhost")
                        .json(&json!({"event": "e", "text": format!("{p}-{i}"), "users": ["busy"]}))
                        .send(),
                )
                .await
                .expect("publish in time")
                .unwrap();
                assert!(response.status().is_success());
            }
        }));
    }
    let mut chunk = vec![0u8; 16 * 1024];
    let text = tokio::time::timeout(WAIT * 2, async {
        loop {
            let (body, _) = dechunk(&raw);
            let text = String::from_utf8_lossy(&body).into_owned();
            if events_named(&text, "e").len() >= 400 {
                return text;
            }
            // Read slowly at first, so that the socket is full some of the time.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream ended early");
            raw.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("all 400 events in time");
    for t in tasks {
        t.await.unwrap();
    }
    let mut got = events_named(&text, "e");
    assert_eq!(got.len(), 400, "each event exactly once");
    // Each publisher's events in its own order.
    for p in 0..8 {
        let mine: Vec<_> = got
            .iter()
            .filter(|d| d.starts_with(&format!("{p}-")))
            .cloned()
            .collect();
        let expected: Vec<_> = (0..50).map(|i| format!("{p}-{i}")).collect();
        assert_eq!(mine, expected, "publisher {p}'s events in order");
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 400, "no duplicates");
}
