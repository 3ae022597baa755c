//! Which browser pages may talk to the hub, against the real server: the Origin rule of publish
//! and admin endpoints (`403 origin_not_allowed`, `publish_origins`), the Host rule of an open
//! hub against DNS rebinding (`403 host_not_allowed`, on the lean stream path and on hyper's),
//! trusted proxies' forwarded origin, `identity_from_query` defaults of the binary, and the batch
//! publish rate limit counting events.

mod support;

use std::net::SocketAddr;

use herald::config::{Config, Rate};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{full_key, read_json, HeraldProcess, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const KEY: &str = "origin-test-key-0123456789";
const OTHER_KEY: &str = "origin-test-other-key-0123456789";
const EVIL: &str = "http://evil.example";

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

/// Every publish and admin endpoint, with a body it accepts.
fn guarded_endpoints() -> Vec<(&'static str, &'static str, Value)> {
    let event = json!({"event": "x", "data": "from a page", "users": ["alice"]});
    vec![
        ("POST", "/api/sse/message", event.clone()),
        ("POST", "/api/sse/send", event.clone()),
        ("POST", "/api/sse", event.clone()),
        ("POST", "/api/sse/messages", json!([event])),
        ("POST", "/api/sse/disconnect", json!({"users": ["alice"]})),
        ("POST", "/api/sse/disconnect-all", json!({})),
        ("GET", "/api/sse/stats", Value::Null),
        ("GET", "/api/sse/presence?channel=news", Value::Null),
        ("GET", "/api/sse/presence/users/alice", Value::Null),
        ("GET", "/metrics", Value::Null),
    ]
}

/// Sends `method path` the way a page's `fetch` without preflight would: `text/plain` body,
/// with these extra headers (and the key, if given).
async fn send(
    srv: &TestServer,
    method: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
    key: Option<&str>,
) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = srv
        .http
        .request(method.clone(), srv.url(path))
        .timeout(WAIT);
    if method == reqwest::Method::POST {
        req = req
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body.to_string());
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let response = req.send().await.expect("request failed");
    let status = response.status();
    let text = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("answer timed out")
        .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends raw bytes and reads the answer until `needle` shows up or the connection closes.
async fn raw(addr: SocketAddr, request: &[u8], needle: &str) -> String {
    let mut s = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within {WAIT:?}; got {:?}",
                    String::from_utf8_lossy(&seen)
                )
            })
            .unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn post_bytes(
    path: &str,
    host: Option<&str>,
    version: &str,
    body: &Value,
    key: Option<&str>,
) -> Vec<u8> {
    let body = body.to_string();
    let mut head = format!("POST {path} {version}\r\n");
    if let Some(host) = host {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    head.into_bytes()
}

/// The next event of `client` is the marker published last, so that nothing was delivered (or
/// disconnected) in between.
async fn expect_only_marker(srv: &TestServer, client: &mut support::SseClient, key: Option<&str>) {
    let (status, answer) = send(
        srv,
        "POST",
        "/api/sse/message",
        &json!({"event": "marker", "data": "end", "users": ["alice"]}),
        &[],
        key,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let event = client.next_event().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("marker", "\"end\""),
        "something reached alice before the marker"
    );
}

fn assert_refused(status: StatusCode, answer: &Value, code: &str, what: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {answer}");
    assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
    assert!(answer["error"]["message"].is_string(), "{what}: {answer}");
}

#[tokio::test]
async fn cross_origin_simple_requests_are_refused_on_every_publish_and_admin_endpoint() {
    let srv = TestServer::start().await;
    let mut alice = srv.subscribe("userId=alice&channels=news").await;
    for (method, path, body) in guarded_endpoints() {
        let (status, answer) = send(&srv, method, path, &body, &[("origin", EVIL)], None).await;
        assert_refused(
            status,
            &answer,
            "origin_not_allowed",
            &format!("{method} {path}"),
        );
    }
    for origin in ["null", "http://127.0.0.1", "https://127.0.0.1", "garbage"] {
        let (status, answer) = send(
            &srv,
            "POST",
            "/api/sse/message",
            &json!({"data": 1, "users": ["alice"]}),
            &[("origin", origin)],
            None,
        )
        .await;
        assert_refused(status, &answer, "origin_not_allowed", origin);
    }
    // Nothing was published and nobody was disconnected.
    expect_only_marker(&srv, &mut alice, None).await;
    srv.stop().await;
}

#[tokio::test]
async fn own_origin_listed_origins_and_requests_without_origin_may_publish() {
    let srv = TestServer::with_config(config(|c| {
        c.http.publish_origins = vec!["https://admin.example.com".into()];
    }))
    .await;
    let mut alice = srv.subscribe("userId=alice").await;
    let own = format!("http://{}", srv.addr);
    let own_upper = format!("HTTP://{}", srv.addr);
    for origin in [
        Some(own.as_str()),
        Some(own_upper.as_str()),
        Some("https://admin.example.com"),
        Some("https://admin.example.com:443"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        for (method, path, body) in guarded_endpoints() {
            if path.contains("disconnect") {
                continue;
            }
            let (status, answer) = send(&srv, method, path, &body, &headers, None).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{origin:?} {method} {path}: {answer}"
            );
        }
        // The publishes (single, send, alias, batch) reached alice.
        for _ in 0..4 {
            assert_eq!(alice.next_event().await.event, "x");
        }
    }
    // Another name of the same address is another origin; so is the listed host on http.
    let other_name = format!("http://localhost:{}", srv.addr.port());
    for origin in [
        other_name.as_str(),
        "http://admin.example.com",
        "https://evil.example",
    ] {
        let (status, answer) = send(
            &srv,
            "POST",
            "/api/sse/message",
            &json!({"event": "x", "data": 1, "users": ["alice"]}),
            &[("origin", origin)],
            None,
        )
        .await;
        assert_refused(status, &answer, "origin_not_allowed", origin);
    }
    // The README's plain curl publish (no Origin, form content type) still works.
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("curl")
            .args(["-sS", "-m", "5", "-X", "POST"])
            .arg(srv.url("/api/sse/message"))
            .args([
                "-d",
                r#"{"event":"x","data":{"via":"curl"},"users":["alice"]}"#,
            ])
            .output(),
    )
    .await
    .expect("curl timed out");
    if let Ok(out) = out {
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(answer["id"].is_string(), "curl: {out:?}");
        assert_eq!(alice.next_event().await.data, r#"{"via":"curl"}"#);
    }
    // The disconnect endpoints from the own origin work too.
    let (status, answer) = send(
        &srv,
        "POST",
        "/api/sse/disconnect-all",
        &json!({}),
        &[("origin", own.as_str())],
        None,
    )
    .await;
    assert_eq!(
        (status, &answer["disconnected"]),
        (StatusCode::OK, &json!(1))
    );
    srv.stop().await;
}

#[tokio::test]
async fn cors_wildcard_lets_any_page_subscribe_but_never_publish() {
    let srv = TestServer::with_config(config(|c| {
        c.http.cors_origins = vec!["*".into()];
    }))
    .await;
    let r = tokio::time::timeout(
        WAIT,
        srv.http
            .get(srv.url("/api/sse?userId=alice"))
            .header("origin", EVIL)
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let mut alice = support::SseClient::open(r).await;
    for (method, path, body) in guarded_endpoints() {
        let (status, answer) = send(&srv, method, path, &body, &[("origin", EVIL)], None).await;
        assert_refused(
            status,
            &answer,
            "origin_not_allowed",
            &format!("{method} {path}"),
        );
    }
    expect_only_marker(&srv, &mut alice, None).await;
    srv.stop().await;
}

/// A server like [`TestServer`] whose event streams go through hyper (no lean path).
async fn hyper_only_server(config: Config) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifecycle = herald::Lifecycle::new();
    let hub = herald::Hub::start_in_memory(config.hub.clone(), &lifecycle);
    let state = herald::http::AppState::new(hub, config.http.clone());
    let cancel = lifecycle.token().clone();
    let options = herald::server::ServerOptions {
        lean_event_streams: false,
        ..herald::server::ServerOptions::default()
    };
    tokio::spawn(herald::server::serve(listener, state, lifecycle, options));
    (addr, cancel)
}

#[tokio::test]
async fn open_hub_refuses_foreign_host_names_on_publish_and_on_both_stream_paths() {
    let srv = TestServer::start().await;
    let mut alice = srv.subscribe("userId=alice").await;
    let event = json!({"event": "x", "data": "rebound", "users": ["alice"]});
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "10.0.0.1",
    ] {
        let text = raw(
            srv.addr,
            &post_bytes("/api/sse/message", Some(host), "HTTP/1.1", &event, None),
            "}",
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 403"), "{host}: {text}");
        assert!(text.contains("host_not_allowed"), "{host}: {text}");
    }
    // Health and the console too: every endpoint.
    let text = raw(
        srv.addr,
        b"GET /sse-test HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "host_not_allowed",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    // The lean stream path (a bare GET /api/sse).
    let text = raw(
        srv.addr,
        b"GET /api/sse?userId=alice HTTP/1.1\r\nHost: evil.example:1234\r\n\r\n",
        "host_not_allowed",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "lean path: {text}");
    assert!(!text.contains("event: connected"), "{text}");
    // A stream request after another on the same connection is hyper's.
    let text = raw(
        srv.addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/sse?userId=alice HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        "host_not_allowed",
    )
    .await;
    assert!(text.contains("HTTP/1.1 403"), "pipelined: {text}");
    // Loopback names are answered.
    for host in [
        "localhost",
        "app.localhost:9",
        "127.0.0.1",
        "127.9.9.9:80",
        "[::1]:8080",
    ] {
        let text = raw(
            srv.addr,
            format!("GET /api/sse?userId=bob HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            "event: connected",
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 200"), "{host}: {text}");
    }
    expect_only_marker(&srv, &mut alice, None).await;
    srv.stop().await;

    // Streams served by hyper only.
    let (addr, cancel) = hyper_only_server(Config::default()).await;
    let text = raw(
        addr,
        b"GET /api/sse?userId=alice HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "host_not_allowed",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "hyper path: {text}");
    let text = raw(
        addr,
        b"GET /api/sse?userId=alice HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "event: connected",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "hyper path: {text}");
    cancel.cancel();
}

#[tokio::test]
async fn http_1_0_requests_without_host_are_answered() {
    let srv = TestServer::start().await;
    let mut alice = srv.subscribe("userId=alice").await;
    let text = raw(
        srv.addr,
        b"GET /api/sse?userId=old HTTP/1.0\r\n\r\n",
        "event: connected",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let event = json!({"event": "x", "data": "http/1.0", "users": ["alice"]});
    let text = raw(
        srv.addr,
        &post_bytes("/api/sse/message", None, "HTTP/1.0", &event, None),
        "delivered",
    )
    .await;
    assert!(text.contains(" 200 "), "{text}");
    assert_eq!(alice.next_event().await.data, "\"http/1.0\"");
    srv.stop().await;
}

#[tokio::test]
async fn a_keyed_hub_answers_any_host_name() {
    let srv = TestServer::with_config(config(|c| {
        c.http.publisher_keys = vec![full_key(KEY)];
    }))
    .await;
    let text = raw(
        srv.addr,
        b"GET /api/sse?userId=alice HTTP/1.1\r\nHost: hub.example.com\r\n\r\n",
        "event: connected",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let event = json!({"event": "x", "data": 1, "broadcast": true});
    let text = raw(
        srv.addr,
        &post_bytes(
            "/api/sse/message",
            Some("hub.example.com"),
            "HTTP/1.1",
            &event,
            Some(KEY),
        ),
        "delivered",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The Origin rule still holds with a key: a page holding the key is still another origin.
    let (status, answer) = send(
        &srv,
        "POST",
        "/api/sse/message",
        &event,
        &[("origin", EVIL)],
        Some(KEY),
    )
    .await;
    assert_refused(status, &answer, "origin_not_allowed", "keyed");
    srv.stop().await;
}

#[tokio::test]
async fn origins_forwarded_by_a_trusted_proxy_count_as_the_hubs_own() {
    let forwarded = [
        ("origin", "https://hub.example.com"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "hub.example.com"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    let body = json!({"event": "x", "data": 1, "broadcast": true});
    let proxied = TestServer::with_config(config(|c| {
        c.http.publisher_keys = vec![full_key(KEY)];
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    }))
    .await;
    let (status, answer) = send(
        &proxied,
        "POST",
        "/api/sse/message",
        &body,
        &forwarded,
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The forwarded values replace the request's own: the proxy's upstream origin is not it.
    let upstream = format!("http://{}", proxied.addr);
    let (status, answer) = send(
        &proxied,
        "POST",
        "/api/sse/message",
        &body,
        &[forwarded[1], forwarded[2], ("origin", upstream.as_str())],
        Some(KEY),
    )
    .await;
    assert_refused(status, &answer, "origin_not_allowed", "upstream origin");
    // A peer that is not a trusted proxy cannot claim an origin by forwarding headers.
    let direct = TestServer::with_config(config(|c| {
        c.http.publisher_keys = vec![full_key(KEY)];
    }))
    .await;
    let (status, answer) = send(
        &direct,
        "POST",
        "/api/sse/message",
        &body,
        &forwarded,
        Some(KEY),
    )
    .await;
    assert_refused(status, &answer, "origin_not_allowed", "untrusted peer");

    // An open hub behind a trusted proxy: the forwarded host must be loopback too, so a name
    // rebound to the proxy does not get through it.
    let open = TestServer::with_config(config(|c| {
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    }))
    .await;
    let (status, answer) = send(
        &open,
        "POST",
        "/api/sse/message",
        &body,
        &[("x-forwarded-host", "evil.example")],
        None,
    )
    .await;
    assert_refused(status, &answer, "host_not_allowed", "forwarded host");
    let (status, answer) = send(
        &open,
        "POST",
        "/api/sse/message",
        &body,
        &[
            ("x-forwarded-host", "localhost"),
            ("origin", "http://localhost"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn https_requests_have_an_https_own_origin() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "herald-origin-tls-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let srv = TestServer::with_config(Config {
        tls: Some(herald::config::TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }),
        ..Config::default()
    })
    .await;
    let base = format!("https://localhost:{}", srv.addr.port());
    let body = json!({"event": "x", "data": 1, "broadcast": true});
    for http1 in [false, true] {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .tls_built_in_root_certs(false)
            .timeout(WAIT);
        if http1 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        for (origin, ok) in [(base.clone(), true), (base.replace("https", "http"), false)] {
            let r = client
                .post(format!("{base}/api/sse/message"))
                .header("origin", &origin)
                .json(&body)
                .send()
                .await
                .unwrap();
            let version = r.version();
            let (status, answer) = read_json(r).await;
            assert_eq!(
                status == StatusCode::OK,
                ok,
                "{origin} over {version:?}: {status} {answer}"
            );
        }
    }
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn identity_from_query_is_off_by_default_with_keys_or_trusted_proxies() {
    async fn status(args: &[&str]) -> (StatusCode, Value) {
        let hub = HeraldProcess::start(args, &[]).await;
        let r = tokio::time::timeout(
            WAIT,
            support::http_client()
                .get(hub.url("/api/sse?userId=alice"))
                .send(),
        )
        .await
        .unwrap()
        .unwrap();
        let status = r.status();
        if status == StatusCode::OK {
            return (status, Value::Null);
        }
        read_json(r).await
    }
    assert_eq!(status(&[]).await.0, StatusCode::OK);
    for args in [
        &["--publisher-key", KEY][..],
        &["--trusted-proxies", "127.0.0.1"][..],
    ] {
        let (s, answer) = status(args).await;
        assert_refused(s, &answer, "identity_not_allowed", &args.join(" "));
    }
    let explicit = status(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--publisher-key",
        KEY,
        "--identity-from-query",
        "true",
    ])
    .await;
    assert_eq!(explicit.0, StatusCode::OK, "{}", explicit.1);
}

#[tokio::test]
async fn batch_publishes_cost_one_rate_limit_token_per_event() {
    let srv = TestServer::with_config(config(|c| {
        c.http.publisher_keys = vec![full_key(KEY), {
            let mut k = full_key(OTHER_KEY);
            k.name = "other".into();
            k
        }];
        // Slow enough that no token comes back during the test.
        c.http.publish_rate_per_key = Some(Rate {
            per_second: 1,
            burst: 5,
        });
    }))
    .await;
    let mut alice = srv.subscribe("userId=alice").await;
    let batch = |n: usize, tag: &str| {
        Value::Array(
            (0..n)
                .map(|i| json!({"event": "x", "data": format!("{tag}{i}"), "users": ["alice"]}))
                .collect(),
        )
    };
    // Larger than the burst: could never pass, so 413 and why.
    let (status, answer) = send(
        &srv,
        "POST",
        "/api/sse/messages",
        &batch(6, "big"),
        &[],
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["code"], "batch_too_large");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains('6') && message.contains('5'), "{message}");
    // 4 tokens left (the refused request paid one): a batch of 3 passes...
    let (status, answer) = send(
        &srv,
        "POST",
        "/api/sse/messages",
        &batch(3, "ok"),
        &[],
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // ...and one token is left: another batch of 3 is over the limit.
    let (status, answer) = send(
        &srv,
        "POST",
        "/api/sse/messages",
        &batch(3, "late"),
        &[],
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"]["code"], "rate_limited");
    // Alice got exactly the accepted batch, then the other publisher's marker.
    for i in 0..3 {
        assert_eq!(alice.next_event().await.data, format!("\"ok{i}\""));
    }
    expect_only_marker(&srv, &mut alice, Some(OTHER_KEY)).await;
    srv.stop().await;
}
