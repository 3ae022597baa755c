//! The `herald` binary as operators use it: configuration, signals, and the CLI client.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{HeraldProcess, SseClient, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

async fn subscribe(p: &HeraldProcess, query: &str) -> SseClient {
    let r = reqwest::get(p.url(&format!("/api/sse?{query}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseClient::open(r).await
}

fn signal(p: &HeraldProcess, sig: &str) {
    let pid = p.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut p = HeraldProcess::start(&["--shutdown-reconnect-window", "2s"], &[]).await;
    let mut a = subscribe(&p, "userId=alice").await;
    let mut b = subscribe(&p, "channels=news").await;
    signal(&p, "-TERM");
    for client in [&mut a, &mut b] {
        let e = client.next_event().await;
        assert_eq!(e.event, "disconnected");
        assert_eq!(
            serde_json::from_str::<Value>(&e.data).unwrap()["reason"],
            "server_shutdown"
        );
        assert!(e.retry.is_some());
        client.until_end().await;
    }
    let status = tokio::time::timeout(WAIT, p.child.wait())
        .await
        .expect("herald did not exit after SIGTERM")
        .unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        p.log()
    );
    let log = p.final_log().await;
    assert!(log.contains("herald stopped"), "log:\n{log}");
}

#[tokio::test]
async fn refuses_a_public_address_without_a_key() {
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("HERALD_PUBLISHER_KEY")
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("publisher key"), "{stderr}");
    // With a key it starts.
    let p = HeraldProcess::start(
        &["--listen", "0.0.0.0:0"],
        &[("HERALD_PUBLISHER_KEY", "0123456789abcdef-key")],
    )
    .await;
    assert!(p.log().contains("publisher_keys=1"), "{}", p.log());
}

#[tokio::test]
async fn flags_beat_env_beat_file() {
    let dir = std::env::temp_dir().join(format!("herald-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "heartbeat_interval = \"1h\"\nretry = \"7s\"\nmax_connections_per_user = 5\n",
    )
    .unwrap();
    let p = HeraldProcess::start(
        &["--config", file.to_str().unwrap(), "--retry", "1234"],
        &[("SSE_HEARTBEAT_INTERVAL", "50"), ("SSE_RETRY", "999")],
    )
    .await;
    let mut a = subscribe(&p, "userId=alice").await;
    assert_eq!(
        a.retry,
        Some(Duration::from_millis(1234)),
        "the flag wins over env and file"
    );
    assert_eq!(
        a.next_any().await.event,
        "heartbeat",
        "env (50ms) wins over the file (1h)"
    );
    // The file's per-user limit applies (nothing overrides it).
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(subscribe(&p, "userId=alice").await);
    }
    let r = reqwest::get(p.url("/api/sse?userId=alice")).await.unwrap();
    assert_eq!(r.status(), 429);

    std::fs::write(&file, "heartbeat_intervl = \"1s\"\n").unwrap();
    let out = tokio::process::Command::new(BIN)
        .args([
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("heartbeat_intervl"),
        "a typo in the file is named: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn help_documents_every_setting() {
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "--listen",
        "HERALD_LISTEN",
        "HERALD_PUBLISHER_KEY",
        "SSE_HEARTBEAT_INTERVAL",
        "SSE_CLEANUP_INTERVAL",
        "SSE_CONNECTION_TIMEOUT",
        "SSE_MAX_CONNECTIONS",
        "SSE_MAX_CONNECTIONS_PER_USER",
        "SSE_QUEUE_CAPACITY",
        "HERALD_MAX_BODY_SIZE",
        "HERALD_SHUTDOWN_RECONNECT_WINDOW",
        "HERALD_LOG_FORMAT",
        "HERALD_PUBLISH_ORIGINS",
        "--config",
    ] {
        assert!(help.contains(name), "--help lacks {name}:\n{help}");
    }
}

#[tokio::test]
async fn cli_publish_and_stats() {
    let key = "cli-test-publisher-key";
    let p = HeraldProcess::start(
        &["--publisher-key", key, "--identity-from-query", "true"],
        &[],
    )
    .await;
    let mut a = subscribe(&p, "userId=alice&channels=news").await;
    let url = p.url("");
    let out = tokio::process::Command::new(BIN)
        .args([
            "publish",
            "--url",
            &url,
            "--user",
            "alice",
            "--event",
            "notification",
        ])
        .args(["--data", r#"{"msg":"hi"}"#])
        .env("HERALD_PUBLISHER_KEY", key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["delivered"], 1);
    assert_eq!(a.expect("notification").await, json!({"msg": "hi"}));

    let out = tokio::process::Command::new(BIN)
        .args([
            "publish",
            "--url",
            &url,
            "--key",
            key,
            "--channel",
            "news",
            "--data",
            "\"x\"",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(a.expect("notification").await, json!("x"));

    // Without the key: a clear error and a failing exit status.
    let out = tokio::process::Command::new(BIN)
        .args(["publish", "--url", &url, "--broadcast", "--data", "1"])
        .env_remove("HERALD_PUBLISHER_KEY")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));

    // Data that is not JSON is refused before anything is sent.
    let out = tokio::process::Command::new(BIN)
        .args([
            "publish",
            "--url",
            &url,
            "--key",
            key,
            "--broadcast",
            "--data",
            "hello",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data must be JSON"));

    let out = tokio::process::Command::new(BIN)
        .args(["stats", "--url", &url, "--key", key])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["eventsPublished"], 2);
}

#[tokio::test]
async fn data_dir_keeps_the_replay_window_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("herald-bin-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().unwrap().to_owned();
    let publish = |p: &HeraldProcess, n: u64| {
        let url = p.url("/api/sse/message");
        async move {
            let r = support::http_client()
                .post(url)
                .json(&json!({"event": "n", "data": n, "users": ["alice"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let mut p = HeraldProcess::start(&["--data-dir", &dir_arg], &[]).await;
    let mut a = subscribe(&p, "userId=alice").await;
    publish(&p, 1).await;
    let last = a.next_event().await.id;
    drop(a);
    publish(&p, 2).await;
    signal(&p, "-TERM");
    assert!(tokio::time::timeout(WAIT, p.child.wait())
        .await
        .unwrap()
        .unwrap()
        .success());

    let p = HeraldProcess::start(&["--data-dir", &dir_arg], &[]).await;
    publish(&p, 3).await;
    let r = support::http_client()
        .get(p.url("/api/sse?userId=alice"))
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    let mut a = SseClient::open(r).await;
    assert_eq!(a.expect("n").await, 2);
    assert_eq!(a.expect("n").await, 3);
    drop(p);
    std::fs::remove_dir_all(&dir).unwrap();
}
