//! The `herald` binary as operators use it: configuration, signals, and the CLI client.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{HeraldProcess, SseClient, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

async fn subscribe(p: &HeraldProcess, query: &str) -> SseClient {
    let r = support::send(support::http_client().get(p.url(&format!("/api/sse?{query}")))).await;
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
        let data = serde_json::from_str::<Value>(&e.data).unwrap();
        assert_eq!(data["reason"], "server_shutdown");
        assert_eq!(data["reconnect"], "backoff");
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

/// One `--flag` block of `herald serve --help`: the flag, its environment variable and its
/// documented alias, if any.
#[derive(Debug)]
struct HelpEntry {
    flag: String,
    env: Option<String>,
    alias: Option<String>,
}

/// Every flag of `herald serve --help`, read from the real help text.
async fn serve_help() -> Vec<HelpEntry> {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(BIN)
            .args(["serve", "--help"])
            .output(),
    )
    .await
    .expect("--help timed out")
    .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            if line.len() - trimmed.len() <= 6 {
                let flag = rest.split([' ', '[', '<']).next().unwrap().to_owned();
                blocks.push((flag, String::new()));
                continue;
            }
        }
        if let Some((_, text)) = blocks.last_mut() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    let find = |text: &str, marker: &str| {
        let start = text.find(marker)? + marker.len();
        let name: String = text[start..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        Some(name)
    };
    blocks
        .into_iter()
        .filter(|(flag, _)| flag != "help")
        .map(|(flag, text)| {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            HelpEntry {
                env: find(&text, "[env:"),
                alias: find(&text, "[env alias:"),
                flag,
            }
        })
        .collect()
}

/// The environment names of aliases kept from earlier releases (issue 11), and the Mercure hub's
/// names of its keys (issue 14): never add another.
const ALIASES: &[(&str, &str)] = &[
    ("heartbeat-interval", "SSE_HEARTBEAT_INTERVAL"),
    ("heartbeat-style", "SSE_HEARTBEAT_STYLE"),
    ("cleanup-interval", "SSE_CLEANUP_INTERVAL"),
    ("connection-timeout", "SSE_CONNECTION_TIMEOUT"),
    ("retry", "SSE_RETRY"),
    ("max-connections", "SSE_MAX_CONNECTIONS"),
    ("max-connections-per-user", "SSE_MAX_CONNECTIONS_PER_USER"),
    ("max-connections-per-ip", "SSE_MAX_CONNECTIONS_PER_IP"),
    ("queue-capacity", "SSE_QUEUE_CAPACITY"),
    ("queue-max-bytes", "SSE_QUEUE_MAX_BYTES"),
    ("engine", "HERALD_REDIS_URL"),
    ("mercure-publisher-jwt-key", "MERCURE_PUBLISHER_JWT_KEY"),
    ("mercure-subscriber-jwt-key", "MERCURE_SUBSCRIBER_JWT_KEY"),
    ("mercure-publisher-jwt-alg", "MERCURE_PUBLISHER_JWT_ALG"),
    ("mercure-subscriber-jwt-alg", "MERCURE_SUBSCRIBER_JWT_ALG"),
];

/// A valid TOML value for each setting, so that one file can set them all.
fn sample_value(key: &str, fixtures: &std::path::Path, dir: &std::path::Path) -> Option<String> {
    let path = |p: std::path::PathBuf| format!("{:?}", p.to_str().unwrap());
    Some(match key {
        "listen" => "\"127.0.0.1:0\"".into(),
        "publisher_key" => "\"0123456789abcdef-default\"".into(),
        "publisher_keys" => "[\"rotated=0123456789abcdef-rotated\", { name = \"billing\", key = \
             \"0123456789abcdef-billing\", channels = [\"billing:*\"], admin = false }]"
            .into(),
        "jwt_secret" => "\"0123456789abcdef0123456789abcdef-secret\"".into(),
        "jwt_public_key" => path(fixtures.join("rsa_public.pem")),
        "jwks_file" => path(fixtures.join("jwks.json")),
        "jwt_issuer" => "\"https://issuer.example\"".into(),
        "jwt_audience" => "\"herald\"".into(),
        "jwt_leeway" => "\"5s\"".into(),
        "token_cookie" => "\"herald_token\"".into(),
        "allow_anonymous" => "true".into(),
        "anonymous_channels" => "[\"public:*\"]".into(),
        "token_expiry" => "\"tolerate\"".into(),
        "connect_rate_per_ip" => "\"20/s:100\"".into(),
        "publish_rate_per_key" => "\"1000/s\"".into(),
        "resume_rate_per_ip" => "\"10/s\"".into(),
        "trusted_proxies" => "[\"10.0.0.1\", \"::1\"]".into(),
        "reuse_port" => "false".into(),
        "max_connections_per_ip" => "100".into(),
        "tls_cert" => path(dir.join("cert.pem")),
        "tls_key" => path(dir.join("key.pem")),
        "header_read_timeout" => "\"10s\"".into(),
        "body_read_timeout" => "10000".into(),
        "max_header_size" => "\"16KiB\"".into(),
        "heartbeat_interval" => "\"15s\"".into(),
        "heartbeat_style" => "\"comment\"".into(),
        "cleanup_interval" => "\"30s\"".into(),
        "connection_timeout" => "\"1h\"".into(),
        "idle_timeout" => "\"10m\"".into(),
        "retry" => "3000".into(),
        "max_connections" => "10000".into(),
        "max_connections_per_user" => "32".into(),
        "queue_capacity" => "1024".into(),
        "queue_max_bytes" => "\"1MiB\"".into(),
        "max_body_size" => "65536".into(),
        "max_batch_body_size" => "\"1MiB\"".into(),
        "max_batch_len" => "1000".into(),
        "identity_from_query" => "false".into(),
        "shutdown_timeout" => "\"10s\"".into(),
        "shutdown_reconnect_window" => "\"10s\"".into(),
        "history_size" => "10000".into(),
        "history_ttl" => "\"1h\"".into(),
        "history_max_bytes" => "\"64MiB\"".into(),
        "max_replay_events" => "1000".into(),
        "max_replay_bytes" => "\"1MiB\"".into(),
        "data_dir" => path(dir.join("data")),
        "idempotency_window" => "\"10m\"".into(),
        "idempotency_max_keys" => "100000".into(),
        "presence_channels" => "\"room:*, lobby\"".into(),
        // A Sentinel URL with TLS, so that the CA file and the sentinels' password go with it.
        "engine" => "\"rediss+sentinel://app:pw@127.0.0.1:26379/mymaster/0\"".into(),
        "redis_ca_file" => path(dir.join("redis-ca.pem")),
        "redis_sentinel_password" => "\"sentinel-secret\"".into(),
        "redis_prefix" => "\"herald\"".into(),
        "node_id" => "\"node-1\"".into(),
        "cors_origins" => "[\"https://app.example.com\"]".into(),
        "cors_credentials" => "true".into(),
        "publish_origins" => "\"https://admin.example.com\"".into(),
        "ws_ping_interval" => "\"25s\"".into(),
        "ws_pong_timeout" => "20000".into(),
        "auth_hook_url" => "\"http://127.0.0.1:9/herald/auth\"".into(),
        "auth_hook_forward_headers" => "[\"cookie\", \"authorization\"]".into(),
        "auth_hook_timeout" => "\"2s\"".into(),
        "auth_hook_cache_ttl" => "\"30s\"".into(),
        "auth_hook_secret" => "\"0123456789abcdef-hook-secret\"".into(),
        "mercure" => "true".into(),
        "mercure_publisher_jwt_key" => "\"!ChangeThisMercureHubJWTSecretKey!\"".into(),
        "mercure_subscriber_jwt_key" => "\"!ChangeThisMercureHubJWTSecretKey!\"".into(),
        "mercure_publisher_jwt_alg" => "\"HS256\"".into(),
        "mercure_subscriber_jwt_alg" => "\"HS256\"".into(),
        "mercure_anonymous" => "true".into(),
        "mercure_subscriptions" => "true".into(),
        "mercure_resource_identifier" => "\"https://example.com/.well-known/mercure\"".into(),
        "log_format" => "\"text\"".into(),
        _ => return None,
    })
}

/// The flags of `herald serve` before issue 11 gave them one schema: every one still exists.
const FLAGS_OF_EARLIER_RELEASES: &str = "config listen publisher-key publisher-keys jwt-secret \
    jwt-public-key jwks-file jwt-issuer jwt-audience jwt-leeway token-cookie allow-anonymous \
    anonymous-channels token-expiry connect-rate-per-ip publish-rate-per-key resume-rate-per-ip \
    trusted-proxies reuse-port max-connections-per-ip tls-cert tls-key header-read-timeout \
    body-read-timeout max-header-size heartbeat-interval heartbeat-style cleanup-interval \
    connection-timeout retry max-connections max-connections-per-user queue-capacity \
    queue-max-bytes max-body-size max-batch-body-size max-batch-len identity-from-query \
    shutdown-timeout shutdown-reconnect-window history-size history-ttl history-max-bytes \
    max-replay-events max-replay-bytes data-dir idempotency-window idempotency-max-keys \
    presence-channels engine redis-prefix node-id cors-origins cors-credentials publish-origins \
    log-format";

#[tokio::test]
async fn every_setting_follows_the_naming_rule() {
    let entries = serve_help().await;
    for flag in FLAGS_OF_EARLIER_RELEASES.split_whitespace() {
        assert!(entries.iter().any(|e| e.flag == flag), "--{flag} is gone");
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for e in &entries {
        // Environment: HERALD_ + the flag in UPPER_SNAKE.
        let rule = format!("HERALD_{}", e.flag.replace('-', "_").to_ascii_uppercase());
        assert_eq!(e.env.as_deref(), Some(rule.as_str()), "--{}", e.flag);
        // An older name only where documented.
        let alias = ALIASES.iter().find(|(f, _)| *f == e.flag).map(|(_, a)| *a);
        assert_eq!(e.alias.as_deref(), alias, "alias of --{}", e.flag);
        // The README's settings table names the flag, its variable and its alias.
        let row = readme
            .lines()
            .find(|l| {
                // The row whose first cell names the flag.
                l.starts_with("| `--")
                    && l.split(" | ")
                        .next()
                        .unwrap()
                        .contains(&format!("`--{}`", e.flag))
            })
            .unwrap_or_else(|| panic!("README's settings table lacks --{}", e.flag));
        for name in std::iter::once(rule.as_str()).chain(alias) {
            assert!(
                row.contains(&format!("`{name}`")),
                "README row of --{} lacks {name}: {row}",
                e.flag
            );
        }
    }
    for (flag, _) in ALIASES {
        assert!(
            entries.iter().any(|e| e.flag == *flag),
            "alias of unknown --{flag}"
        );
    }

    // A TOML file may set every setting under the flag's snake_case name.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = std::env::temp_dir().join(format!("herald-every-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("redis-ca.pem"), ca.cert.pem()).unwrap();
    let mut text = String::new();
    for e in entries.iter().filter(|e| e.flag != "config") {
        let key = e.flag.replace('-', "_");
        let value = sample_value(&key, &fixtures, &dir)
            .unwrap_or_else(|| panic!("give --{} a sample value in this test", e.flag));
        text.push_str(&format!("{key} = {value}\n"));
    }
    let file = dir.join("every.toml");
    std::fs::write(&file, &text).unwrap();
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(BIN)
            .args(["serve", "--config", file.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .output(),
    )
    .await
    .expect("herald did not exit")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Every key parsed and every value converted: the only objection left is that a data_dir
    // and a Redis engine do not go together (checked last).
    assert!(!out.status.success());
    assert!(
        stderr.contains("data_dir keeps the memory engine's replay window on disk"),
        "file:\n{text}\nstderr: {stderr}"
    );
    // Without the Redis settings the same file serves.
    let text: String = text
        .lines()
        .filter(|l| {
            ![
                "engine",
                "redis_prefix",
                "node_id",
                "redis_ca_file",
                "redis_sentinel_password",
                "tls_cert",
                "tls_key",
            ]
            .contains(&l.split(' ').next().unwrap())
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, &text).unwrap();
    let p = HeraldProcess::start(&["--config", file.to_str().unwrap()], &[]).await;
    let log = p.log();
    assert!(
        log.contains("publisher_keys=3") && log.contains("jwt=true"),
        "{log}"
    );
    drop(p);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn old_environment_names_are_read_when_the_new_ones_are_unset() {
    // The alias alone is read: an invalid engine under its old name is refused.
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .env("HERALD_REDIS_URL", "mysql://db")
            .env_remove("HERALD_ENGINE")
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("engine: expected `memory`"), "{stderr}");
    // With both, the rule's name wins over the alias.
    let p = HeraldProcess::start(
        &[],
        &[
            ("HERALD_ENGINE", "memory"),
            ("HERALD_REDIS_URL", "mysql://db"),
            ("HERALD_RETRY", "1111"),
            ("SSE_RETRY", "999"),
        ],
    )
    .await;
    let a = subscribe(&p, "userId=alice").await;
    assert_eq!(a.retry, Some(Duration::from_millis(1111)));
}

#[tokio::test]
async fn boolean_environment_variables_take_yes_no_1_0() {
    for (value, allowed) in [("no", false), ("0", false), ("yes", true), ("1", true)] {
        let p = HeraldProcess::start(
            &["--publisher-key", "0123456789abcdef-key"],
            &[("HERALD_IDENTITY_FROM_QUERY", value)],
        )
        .await;
        let r = tokio::time::timeout(WAIT, reqwest::get(p.url("/api/sse?userId=alice")))
            .await
            .unwrap()
            .unwrap();
        let expected = if allowed { 200 } else { 403 };
        assert_eq!(r.status(), expected, "HERALD_IDENTITY_FROM_QUERY={value}");
    }
}

/// The engine by its rule name (`HERALD_ENGINE`) and the Redis settings from the file:
/// `Hub::from_config` starts a Redis node with that prefix and node id.
#[tokio::test]
async fn engine_from_the_environment_and_redis_settings_from_the_file() {
    let redis = redis_support::RedisServer::start().await;
    let dir = std::env::temp_dir().join(format!("herald-engine-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "redis_prefix = \"cfgtest\"\nnode_id = \"node-from-file\"\n",
    )
    .unwrap();
    let p = HeraldProcess::start(
        &["--config", file.to_str().unwrap()],
        &[("HERALD_ENGINE", &redis.url())],
    )
    .await;
    assert!(
        p.log().contains("engine=\"redis\"") || p.log().contains("engine=redis"),
        "{}",
        p.log()
    );
    let r = tokio::time::timeout(
        WAIT,
        reqwest::Client::new()
            .post(p.url("/api/sse/message"))
            .json(&json!({"event": "n", "data": 1, "broadcast": true}))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), 200);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .unwrap()
        .unwrap();
    let len: u64 = tokio::time::timeout(
        WAIT,
        redis::cmd("XLEN")
            .arg("cfgtest:events")
            .query_async(&mut conn),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(len, 1, "the event went to the file's prefix");
    let (_, stats) = support::read_json(
        tokio::time::timeout(WAIT, reqwest::get(p.url("/api/sse/stats")))
            .await
            .unwrap()
            .unwrap(),
    )
    .await;
    assert!(stats.to_string().contains("node-from-file"), "{stats}");
    drop(p);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `HERALD_JWT_PUBLIC_KEY` takes the PEM text itself as well as a path (issue 18): a token
/// signed with the matching private key is admitted either way.
#[tokio::test]
async fn jwt_public_key_takes_a_path_or_the_pem_itself() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let public = std::fs::read_to_string(fixtures.join("rsa_public.pem")).unwrap();
    let private = std::fs::read(fixtures.join("rsa_private.pem")).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "alice", "exp": exp}),
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let path = fixtures.join("rsa_public.pem");
    for value in [public.as_str(), path.to_str().unwrap()] {
        let p = HeraldProcess::start(&[], &[("HERALD_JWT_PUBLIC_KEY", value)]).await;
        let client = subscribe(&p, &format!("token={token}")).await;
        assert_eq!(client.connected["userId"], "alice");
    }
}
