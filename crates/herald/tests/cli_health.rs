//! `herald health`: the container HEALTHCHECK of the image (`debian:bookworm-slim` has no curl).
//! Exit 0 when `/healthz` (or `/readyz` with `--ready`) answers 2xx within 2 s, 1 otherwise,
//! against the real binary, a real Redis outage and a server that accepts but never answers.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use redis_support::RedisServer;
use support::{HeraldProcess, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// Runs `herald health ARGS` (bounded) and returns its output.
async fn health(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(BIN)
        .arg("health")
        .args(args)
        .env_remove("HERALD_URL")
        // The worst case for Docker's health log: even then, a failure is one line.
        .env("RUST_BACKTRACE", "1")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("herald health did not finish")
        .expect("run herald health")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

#[tokio::test]
async fn health_passes_against_a_running_hub_and_ready_asks_readyz() {
    let p = HeraldProcess::start(&[], &[]).await;
    let url = p.url("");
    let out = health(&["--url", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), r#"{"status":"ok"}"#);
    let out = health(&["--url", &url, "--ready"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), r#"{"status":"ready"}"#);
}

#[tokio::test]
async fn ready_fails_while_redis_is_down_and_health_still_passes() {
    let mut redis = RedisServer::start().await;
    let engine = redis.url();
    let p = HeraldProcess::start(&["--engine", &engine], &[]).await;
    let url = p.url("");
    // Listening is not ready: the node reports ready once its Redis session is up (bounded).
    let deadline = Instant::now() + WAIT;
    let out = loop {
        let out = health(&["--url", &url, "--ready"]).await;
        if out.status.code() == Some(0) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    redis.kill();
    // The node notices the outage within its reconnect loop: wait (bounded) for readiness to go.
    let deadline = Instant::now() + WAIT;
    let out = loop {
        let out = health(&["--url", &url, "--ready"]).await;
        if out.status.code() != Some(0) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with("unhealthy: "), "{err}");
    assert!(err.contains("503") && err.contains("degraded"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
    // Liveness is not readiness: the process is alive and must not be restarted for this.
    let out = health(&["--url", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test]
async fn health_fails_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = health(&["--url", &format!("http://127.0.0.1:{port}")]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("cannot reach the hub"),
        "{out:?}"
    );
}

#[tokio::test]
async fn health_gives_up_after_two_seconds_on_a_server_that_never_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold every connection without a byte of answer.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let out = health(&["--url", &url]).await;
    let took = started.elapsed();
    holder.abort();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
}
