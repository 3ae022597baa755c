//! Shutdown of the real `herald` binary with a client that never reads (issue 10): the process
//! exits within `--shutdown-timeout`, requests that reach it while it drains get
//! `503 shutting_down`, and a second signal exits at once.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{HeraldProcess, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn signal(p: &HeraldProcess, sig: &str) {
    let pid = p.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts herald with room for a large backlog per connection (so the stuck client is not
/// evicted as a slow consumer: the server's writes to it just block).
async fn start(shutdown_timeout: &str) -> HeraldProcess {
    HeraldProcess::start(
        &[
            "--shutdown-timeout",
            shutdown_timeout,
            "--queue-capacity",
            "100000",
            "--queue-max-bytes",
            "64MiB",
        ],
        &[],
    )
    .await
}

/// Subscribes to `flood` from a socket with a tiny receive buffer and never reads it again;
/// then publishes about 8 MiB to `flood`, far more than the socket buffers hold, so the server
/// is stuck writing to it.
async fn stuck_client(p: &HeraldProcess) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = tokio::time::timeout(WAIT, socket.connect(p.addr))
        .await
        .unwrap()
        .unwrap();
    stuck
        .write_all(b"GET /api/sse?channels=flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let http = support::http_client();
    wait_for(&http, p, |s| s["connections"] == 1).await;
    let data = "x".repeat(4000);
    for _ in 0..10 {
        let batch: Vec<Value> = (0..200)
            .map(|_| json!({"event": "flood", "data": data, "channels": ["flood"]}))
            .collect();
        let r = tokio::time::timeout(
            WAIT,
            http.post(p.url("/api/sse/messages")).json(&batch).send(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    // Still connected: held up, not evicted.
    let stats = wait_for(&http, p, |s| s["connections"] == 1).await;
    assert_eq!(stats["evictedSlowConsumers"], 0, "{stats}");
    stuck
}

async fn wait_for(
    http: &reqwest::Client,
    p: &HeraldProcess,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let until = Instant::now() + WAIT;
    loop {
        let stats: Value = tokio::time::timeout(WAIT, async {
            http.get(p.url("/api/sse/stats"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
        .await
        .unwrap();
        if check(&stats) {
            return stats;
        }
        assert!(Instant::now() < until, "stats never matched: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connections accepted before the signal, whose request comes during the drain.
async fn accepted(p: &HeraldProcess) -> TcpStream {
    let s = tokio::time::timeout(WAIT, TcpStream::connect(p.addr))
        .await
        .unwrap()
        .unwrap();
    s
}

/// Sends `request` and reads the whole answer (the server closes after it).
async fn answer(mut s: TcpStream, request: &[u8]) -> String {
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("no answer during shutdown");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Waits until the listener is closed (the process has begun to shut down).
async fn wait_until_refused(p: &HeraldProcess) {
    let until = Instant::now() + WAIT;
    while TcpStream::connect(p.addr).await.is_ok() {
        assert!(Instant::now() < until, "herald still accepts after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_with_a_client_that_never_reads_ends_within_the_timeout() {
    let shutdown_timeout = Duration::from_secs(3);
    let mut p = start("3s").await;
    let _stuck = stuck_client(&p).await;
    let pending_subscribe = accepted(&p).await;
    let pending_publish = accepted(&p).await;
    let pending_ready = accepted(&p).await;
    // Let the server take them up (accepted, waiting for their head).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    signal(&p, "-TERM");
    wait_until_refused(&p).await;
    // Give the hub the moment between closing the listener and refusing work.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sub = answer(
        pending_subscribe,
        b"GET /api/sse?channels=news HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert!(
        sub.starts_with("HTTP/1.1 503"),
        "subscribe during shutdown: {sub:?}"
    );
    assert!(sub.contains("\"shutting_down\""), "{sub}");
    let body = br#"{"event":"late","data":1,"broadcast":true}"#;
    let publish = answer(
        pending_publish,
        &[
            format!(
                "POST /api/sse/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
            body,
        ]
        .concat(),
    )
    .await;
    assert!(
        publish.starts_with("HTTP/1.1 503"),
        "publish during shutdown: {publish:?}"
    );
    assert!(publish.contains("\"shutting_down\""), "{publish}");
    // And a load balancer's readiness check sees the node draining.
    let ready = answer(
        pending_ready,
        b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert!(
        ready.starts_with("HTTP/1.1 503"),
        "readyz during shutdown: {ready:?}"
    );
    let status = tokio::time::timeout(shutdown_timeout + Duration::from_secs(5), p.child.wait())
        .await
        .unwrap_or_else(|_| panic!("herald still runs; log:\n{}", p.log()))
        .unwrap();
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM");
    assert!(
        took <= shutdown_timeout + Duration::from_secs(2),
        "exited {took:?} after SIGTERM with --shutdown-timeout 3s; log:\n{}",
        p.log()
    );
    assert!(status.success(), "{status:?}; log:\n{}", p.log());
    let log = p.final_log().await;
    assert!(log.contains("herald stopped"), "log:\n{log}");
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    for second in ["-INT", "-TERM"] {
        let mut p = start("60s").await;
        let _stuck = stuck_client(&p).await;
        signal(&p, "-TERM");
        wait_until_refused(&p).await;
        // The drain would last a minute for the stuck client.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "exited before the second signal"
        );
        let signalled = Instant::now();
        signal(&p, second);
        let status = tokio::time::timeout(WAIT, p.child.wait())
            .await
            .unwrap_or_else(|_| panic!("herald ignored a second {second}; log:\n{}", p.log()))
            .unwrap();
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "second {second}: exited after {:?}",
            signalled.elapsed()
        );
        assert!(!status.success(), "{status:?}");
        let log = p.final_log().await;
        assert!(log.contains("second signal"), "log:\n{log}");
    }
}

/// A connection that never sends its request head (a browser's speculative connection) does not
/// hold the exit up for the header timeout: it gets a second once shutdown starts.
#[tokio::test]
async fn a_silent_connection_does_not_hold_up_the_exit() {
    let mut p = start("30s").await;
    let _silent = accepted(&p).await;
    // The server has accepted it (readyz answers on another connection).
    let ready = answer(
        accepted(&p).await,
        b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let signalled = Instant::now();
    signal(&p, "-TERM");
    let status = tokio::time::timeout(WAIT, p.child.wait())
        .await
        .unwrap_or_else(|_| panic!("herald still runs; log:\n{}", p.log()))
        .unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    // Without the grace it waits for the 10 s header timeout.
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
}
