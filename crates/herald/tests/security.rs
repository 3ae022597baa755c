//! Hostile tests against the real server: every refused token, key and input gets its documented
//! status and JSON error, and no good client loses an event meanwhile.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::auth::{JwtVerifier, PublishScope, PublisherKey};
use herald::config::{Config, Rate, Secret, TokenExpiry};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{read_json, SseClient, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "hs256-secret-for-the-security-tests-0123456789";
const PUBLISH_KEY: &str = "publisher-key-0123456789";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs256(claims: Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap(),
    )
    .unwrap()
}

fn es256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&fixture("ec_private.pem")).unwrap(),
    )
    .unwrap()
}

fn alice(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "name": "Alice", "channels": ["orders:*", "news"], "exp": now() + 600});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn keys() -> Vec<PublisherKey> {
    vec![
        PublisherKey {
            name: "backend".into(),
            key: Secret::new(PUBLISH_KEY),
            publish: PublishScope::Any,
            admin: true,
        },
        PublisherKey {
            name: "rotated-in".into(),
            key: Secret::new("second-publisher-key-0123456789"),
            publish: PublishScope::Any,
            admin: true,
        },
        PublisherKey {
            name: "billing".into(),
            key: Secret::new("billing-only-key-0123456789"),
            publish: PublishScope::Channels(vec!["billing:*".parse().unwrap()]),
            admin: false,
        },
    ]
}

async fn secured(f: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = Config::default();
    c.http.jwt = Some(std::sync::Arc::new(
        JwtVerifier::new()
            .with_hs256_secret(&Secret::new(SECRET))
            .unwrap()
            .with_audience("herald"),
    ));
    c.http.publisher_keys = keys();
    f(&mut c);
    TestServer::with_config(c).await
}

async fn get(srv: &TestServer, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = srv.http.get(srv.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = tokio::time::timeout(WAIT, req.send())
        .await
        .unwrap()
        .unwrap();
    let is_stream = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream {
        let client = SseClient::open(r).await;
        return (StatusCode::OK, client.connected);
    }
    read_json(r).await
}

async fn expect_error(
    srv: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    code: &str,
) -> Value {
    let (s, body) = get(srv, path, headers).await;
    assert_eq!(s.as_u16(), status, "{path} {headers:?}: {body}");
    assert_eq!(body["error"]["code"], code, "{path} {headers:?}: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    body
}

#[tokio::test]
async fn subscriber_token_matrix() {
    let srv = secured(|_| {}).await;
    let aud = json!({"aud": "herald"});
    let good = hs256(alice(aud.clone()));

    // Accepted from the header, the cookie and the query.
    let (s, c) = get(
        &srv,
        "/api/sse?channels=news",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(
        (s, c["userId"].as_str(), c["username"].as_str()),
        (StatusCode::OK, Some("alice"), Some("Alice"))
    );
    let (s, _) = get(
        &srv,
        "/api/sse?channels=orders:7",
        &[("cookie", &format!("theme=dark; herald_token={good}"))],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get(&srv, &format!("/api/sse?token={good}"), &[]).await;
    assert_eq!(s, StatusCode::OK);

    let none_alg = {
        use std::fmt::Write;
        let b64 = |s: &str| {
            let mut out = String::new();
            let t = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            for chunk in s.as_bytes().chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |a, (i, &x)| a | (x as u32) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    let _ = write!(out, "{}", t[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        };
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&alice(aud.clone()).to_string())
        )
    };
    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &alice(aud.clone()),
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough-000000"),
    )
    .unwrap();
    // The classic confusion: an HS256 token "signed" with the RSA public key as the secret.
    let key_confusion = encode(
        &Header::new(Algorithm::HS256),
        &alice(aud.clone()),
        &EncodingKey::from_secret(&fixture("rsa_public.pem")),
    )
    .unwrap();
    let rsa_token = rs256(alice(aud.clone()), None);
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let other = hs256(alice(json!({"aud": "herald", "sub": "mallory"})));
        let forged_payload = other.split('.').nth(1).unwrap().to_owned();
        format!("{}.{}.{}", parts[0], forged_payload, parts[2])
    };
    let cases: Vec<(String, u16, &str)> = vec![
        (none_alg, 401, "invalid_token"),
        (wrong_secret, 401, "invalid_signature"),
        (key_confusion, 401, "invalid_signature"),
        (rsa_token, 401, "unsupported_algorithm"),
        (
            hs256(alice(json!({"aud": "herald", "exp": now() - 600}))),
            401,
            "token_expired",
        ),
        (
            hs256(alice(json!({"aud": "herald", "nbf": now() + 600}))),
            401,
            "token_not_yet_valid",
        ),
        (
            hs256(alice(json!({"aud": "someone-else"}))),
            401,
            "invalid_audience",
        ),
        (
            hs256(json!({"sub": "alice", "aud": "herald"})),
            401,
            "invalid_claims",
        ),
        (
            hs256(json!({"aud": "herald", "exp": now() + 60})),
            401,
            "invalid_claims",
        ),
        (
            hs256(alice(json!({"aud": "herald", "sub": "bad\nuser"}))),
            401,
            "invalid_claims",
        ),
        (tampered, 401, "invalid_signature"),
        ("not-a-token".into(), 401, "invalid_token"),
        ("a.b.c".into(), 401, "invalid_token"),
    ];
    for (token, status, code) in &cases {
        expect_error(
            &srv,
            "/api/sse?channels=news",
            &[("authorization", &format!("Bearer {token}"))],
            *status,
            code,
        )
        .await;
        expect_error(&srv, &format!("/api/sse?token={token}"), &[], *status, code).await;
    }

    // A token for alice cannot be combined with userId=bob (or any identity in the query).
    let body = expect_error(
        &srv,
        "/api/sse?userId=bob",
        &[("authorization", &format!("Bearer {good}"))],
        403,
        "identity_not_allowed",
    )
    .await;
    assert!(body["error"]["message"].as_str().unwrap().contains("token"));
    expect_error(
        &srv,
        "/api/sse?userId=bob",
        &[],
        403,
        "identity_not_allowed",
    )
    .await;
    // A channel outside the claim is named in the answer.
    let body = expect_error(
        &srv,
        "/api/sse?channels=news,admin:secrets",
        &[("authorization", &format!("Bearer {good}"))],
        403,
        "channel_forbidden",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("admin:secrets"));
    // No token, no anonymous access.
    expect_error(&srv, "/api/sse", &[], 401, "missing_token").await;
    assert_eq!(
        srv.stats().await["connections"],
        0,
        "no refused request left a connection"
    );
}

#[tokio::test]
async fn public_keys_and_jwks() {
    let srv = {
        let mut c = Config::default();
        c.http.jwt = Some(std::sync::Arc::new(
            JwtVerifier::new()
                .with_public_key_pem(&fixture("rsa_public.pem"))
                .unwrap()
                .with_public_key_pem(&fixture("ec_public.pem"))
                .unwrap()
                .with_issuer("https://auth.example"),
        ));
        TestServer::with_config(c).await
    };
    let iss = json!({"iss": "https://auth.example"});
    for token in [rs256(alice(iss.clone()), None), es256(alice(iss.clone()))] {
        let (s, c) = get(&srv, &format!("/api/sse?token={token}"), &[]).await;
        assert_eq!((s, c["userId"].as_str()), (StatusCode::OK, Some("alice")));
    }
    expect_error(
        &srv,
        &format!(
            "/api/sse?token={}",
            rs256(alice(json!({"iss": "evil"})), None)
        ),
        &[],
        401,
        "invalid_issuer",
    )
    .await;
    // HS256 is not accepted by a hub that only has public keys.
    expect_error(
        &srv,
        &format!("/api/sse?token={}", hs256(alice(iss.clone()))),
        &[],
        401,
        "unsupported_algorithm",
    )
    .await;
    // A private key is refused as a verification key.
    assert!(JwtVerifier::new()
        .with_public_key_pem(&fixture("rsa_private.pem"))
        .is_err());

    let jwks = String::from_utf8(fixture("jwks.json")).unwrap();
    let mut c = Config::default();
    c.http.jwt = Some(std::sync::Arc::new(
        JwtVerifier::new().with_jwks(&jwks).unwrap(),
    ));
    let srv = TestServer::with_config(c).await;
    let (s, _) = get(
        &srv,
        &format!(
            "/api/sse?token={}",
            rs256(alice(json!({})), Some("test-rsa-1"))
        ),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    expect_error(
        &srv,
        &format!(
            "/api/sse?token={}",
            rs256(alice(json!({})), Some("unknown-kid"))
        ),
        &[],
        401,
        "unknown_key",
    )
    .await;
}

#[tokio::test]
async fn anonymous_access_only_where_configured() {
    let srv = secured(|c| {
        c.http.allow_anonymous = true;
        c.http.anonymous_channels = vec!["public:*".parse().unwrap()];
    })
    .await;
    let (s, c) = get(&srv, "/api/sse?channels=public:news", &[]).await;
    assert_eq!((s, &c["userId"]), (StatusCode::OK, &Value::Null));
    let body = expect_error(
        &srv,
        "/api/sse?channels=private:x",
        &[],
        403,
        "channel_forbidden",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("private:x"));
    // A bad token is still refused, not downgraded to anonymous.
    expect_error(&srv, "/api/sse?token=garbage", &[], 401, "invalid_token").await;
}

#[tokio::test]
async fn a_token_that_expires_mid_stream_closes_it_unless_tolerated() {
    let srv = secured(|_| {}).await;
    let token = hs256(alice(json!({"aud": "herald", "exp": now() + 2})));
    let r = srv
        .http
        .get(srv.url(&format!("/api/sse?token={token}")))
        .send()
        .await
        .unwrap();
    let mut a = SseClient::open(r).await;
    let d = a.expect("disconnected").await;
    assert_eq!(d["reason"], "token_expired");
    a.until_end().await;

    let srv = secured(|c| c.http.token_expiry = TokenExpiry::Tolerate).await;
    let r = srv
        .http
        .get(srv.url(&format!("/api/sse?token={token}")))
        .send()
        .await
        .unwrap();
    let mut a = SseClient::open(r).await;
    // Wait until the token is past its exp (plus the leeway), then prove the stream still works.
    tokio::time::sleep(Duration::from_secs(3)).await;
    srv.post(
        "/api/sse/message",
        &json!({"event": "still", "data": 1, "users": ["alice"]}),
    )
    .await;
    assert_eq!(a.expect("still").await, 1);
}

async fn post_with(
    srv: &TestServer,
    path: &str,
    auth: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = srv.http.post(srv.url(path)).json(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    read_json(req.send().await.unwrap()).await
}

#[tokio::test]
async fn publisher_keys_scopes_and_tokens() {
    let srv = secured(|_| {}).await;
    let token = hs256(alice(json!({"aud": "herald"})));
    let r = srv
        .http
        .get(srv.url(&format!("/api/sse?token={token}&channels=news")))
        .send()
        .await
        .unwrap();
    let mut a = SseClient::open(r).await;
    let to_alice = json!({"event": "n", "data": 1, "users": ["alice"]});

    for (auth, status, code) in [
        (None, 401, "unauthorized"),
        (
            Some("Bearer revoked-publisher-key-0123456789".to_string()),
            401,
            "unauthorized",
        ),
        (Some(format!("Basic {PUBLISH_KEY}")), 401, "unauthorized"),
        (Some(format!("Bearer {PUBLISH_KEY}x")), 401, "unauthorized"),
        // A subscriber's token has no publish claim.
        (Some(format!("Bearer {token}")), 403, "forbidden"),
    ] {
        let (s, body) = post_with(&srv, "/api/sse/message", auth.as_deref(), &to_alice).await;
        assert_eq!(
            (s.as_u16(), body["error"]["code"].as_str()),
            (status, Some(code)),
            "{auth:?}"
        );
        assert!(!body.to_string().contains(PUBLISH_KEY));
    }
    // Both keys of a rotation work.
    for key in [PUBLISH_KEY, "second-publisher-key-0123456789"] {
        let (s, body) = post_with(
            &srv,
            "/api/sse/message",
            Some(&format!("Bearer {key}")),
            &to_alice,
        )
        .await;
        assert_eq!((s, &body["delivered"]), (StatusCode::OK, &json!(1)));
        assert_eq!(a.expect("n").await, 1);
    }
    // A channel-scoped key: its channels only, and no admin.
    let billing_auth = "Bearer billing-only-key-0123456789";
    let billing = Some(billing_auth);
    let (s, _) = post_with(
        &srv,
        "/api/sse/message",
        billing,
        &json!({"event": "b", "data": 1, "channels": ["billing:7"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for body in [
        json!({"event": "b", "data": 1, "channels": ["news"]}),
        json!({"event": "b", "data": 1, "users": ["alice"]}),
        json!({"event": "b", "data": 1, "broadcast": true}),
        json!({"event": "b", "data": 1, "channels": ["billing:1"], "fallback": "broadcast"}),
    ] {
        let (s, e) = post_with(&srv, "/api/sse/message", billing, &body).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{body}"
        );
    }
    let (s, batch) = post_with(
        &srv,
        "/api/sse/messages",
        billing,
        &json!([
            {"event": "b", "data": 1, "channels": ["billing:1"]},
            {"event": "b", "data": 2, "channels": ["news"]}
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(batch["results"][0]["delivered"], 0);
    assert_eq!(batch["results"][1]["error"]["code"], "forbidden");
    for path in [
        "/api/sse/stats",
        "/metrics",
        "/api/sse/presence?channel=news",
    ] {
        let r = srv
            .http
            .get(srv.url(path))
            .header("authorization", billing_auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let (s, _) = post_with(&srv, "/api/sse/disconnect-all", billing, &json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A backend token with a publish claim for some channels.
    let publisher_token =
        hs256(json!({"sub": "svc", "aud": "herald", "exp": now() + 60, "publish": ["news"]}));
    let auth = format!("Bearer {publisher_token}");
    let (s, _) = post_with(
        &srv,
        "/api/sse/message",
        Some(&auth),
        &json!({"event": "t", "data": 2, "channels": ["news"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a.expect("t").await, 2);
    let (s, _) = post_with(&srv, "/api/sse/message", Some(&auth), &to_alice).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let expired =
        hs256(json!({"sub": "svc", "aud": "herald", "exp": now() - 600, "publish": true}));
    let (s, e) = post_with(
        &srv,
        "/api/sse/message",
        Some(&format!("Bearer {expired}")),
        &to_alice,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_expired"))
    );
}

#[tokio::test]
async fn control_characters_in_every_field_are_refused() {
    let srv = TestServer::start().await;
    let mut good = srv.subscribe("userId=good&channels=c").await;
    for query in [
        "userId=a%0D%0Aevent:%20x",
        "userId=a%00",
        "username=a%0Ab",
        "channels=a%0Db",
        "channels=ok,a%0A",
        "lastEventId=1%0D%0Aid:%202",
        "lastEventId=%00",
    ] {
        expect_error(
            &srv,
            &format!("/api/sse?{query}"),
            &[],
            400,
            "invalid_field",
        )
        .await;
    }
    for body in [
        json!({"event": "a\r\nevent: x", "data": 1, "broadcast": true}),
        json!({"event": "a\u{0}", "data": 1, "broadcast": true}),
        json!({"event": "ok", "data": 1, "users": ["a\r\nb"]}),
        json!({"event": "ok", "data": 1, "users": ["a\u{7f}"]}),
        json!({"event": "ok", "data": 1, "channels": ["a\nb"]}),
        json!({"event": "ok", "data": 1, "connections": ["\r\n"]}),
    ] {
        let (s, e) = srv.publish(body.clone()).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_field")),
            "{body}"
        );
    }
    // Data may hold anything: it is JSON-encoded, so it cannot break the framing.
    let nasty = json!("x\r\n\r\nevent: disconnected\ndata: {}\n\nid: 999\r\n\u{0}");
    srv.publish_ok(json!({"event": "ok", "data": nasty, "users": ["good"]}))
        .await;
    let e = good.next_event().await;
    assert_eq!(
        (
            e.event.as_str(),
            serde_json::from_str::<Value>(&e.data).unwrap()
        ),
        ("ok", nasty)
    );
}

#[tokio::test]
async fn oversized_headers_and_bodies() {
    let srv = TestServer::start().await;
    let big = "x".repeat(32 * 1024);
    let r = srv
        .http
        .get(srv.url("/api/sse"))
        .header("x-filler", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let r = srv
        .http
        .get(srv.url(&format!("/api/sse?userId={big}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let (s, e) = srv
        .publish(json!({"event": "x", "data": "y".repeat(100 * 1024), "broadcast": true}))
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    assert_eq!(srv.stats().await["connections"], 0);
}

#[tokio::test]
async fn slow_requests_are_cut_off() {
    let mut c = Config {
        header_read_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    c.http.body_read_timeout = Duration::from_millis(300);
    let srv = TestServer::with_config(c).await;
    // Headers that never finish: the server closes the connection.
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"GET /api/sse HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a slow-header connection open"
    );
    // A body that never finishes: 408.
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"POST /api/sse/message HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event\"")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn rate_limits_and_per_ip_connection_limit() {
    let mut c = Config::default();
    c.http.connect_rate_per_ip = Some(Rate {
        per_second: 1,
        burst: 3,
    });
    c.http.publish_rate_per_key = Some(Rate {
        per_second: 1,
        burst: 2,
    });
    c.http.publisher_keys = keys();
    let srv = TestServer::with_config(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(srv.subscribe("").await);
    }
    let r = srv.http.get(srv.url("/api/sse")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(read_json(r).await.1["error"]["code"], "rate_limited");

    let body = json!({"event": "x", "data": 1, "broadcast": true});
    let auth = format!("Bearer {PUBLISH_KEY}");
    for _ in 0..2 {
        assert_eq!(
            post_with(&srv, "/api/sse/message", Some(&auth), &body)
                .await
                .0,
            StatusCode::OK
        );
    }
    let (s, e) = post_with(&srv, "/api/sse/message", Some(&auth), &body).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    // Another key has its own budget.
    let other = "Bearer second-publisher-key-0123456789";
    assert_eq!(
        post_with(&srv, "/api/sse/message", Some(other), &body)
            .await
            .0,
        StatusCode::OK
    );

    let mut c = Config::default();
    c.hub.max_connections_per_ip = Some(2);
    let srv = TestServer::with_config(c).await;
    let a = srv.subscribe("").await;
    let _b = srv.subscribe("").await;
    expect_error(&srv, "/api/sse", &[], 429, "ip_connection_limit").await;
    drop(a);
    srv.wait_for_stats("a to leave", |s| s["connections"] == 1)
        .await;
    let _c = srv.subscribe("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_bad_requests_do_not_cost_a_good_client_any_event() {
    let srv = std::sync::Arc::new(secured(|_| {}).await);
    let token = hs256(alice(json!({"aud": "herald"})));
    let r = srv
        .http
        .get(srv.url(&format!("/api/sse?token={token}&channels=news")))
        .send()
        .await
        .unwrap();
    let mut good = SseClient::open(r).await;
    let attackers: Vec<_> = (0..4)
        .map(|i| {
            let srv = srv.clone();
            tokio::spawn(async move {
                let http = support::http_client();
                let mut refused = 0u32;
                for n in 0..600u32 {
                    let r = match (n + i) % 6 {
                        0 => {
                            http.get(srv.url("/api/sse?token=forged.token.here"))
                                .send()
                                .await
                        }
                        1 => http.get(srv.url("/api/sse?userId=bob")).send().await,
                        2 => {
                            http.post(srv.url("/api/sse/message"))
                                .body("{not json")
                                .send()
                                .await
                        }
                        3 => {
                            http.post(srv.url("/api/sse/message"))
                                .bearer_auth("wrong-key-0123456789")
                                .json(&json!({"event": "x", "data": 1, "broadcast": true}))
                                .send()
                                .await
                        }
                        4 => {
                            http.post(srv.url("/api/sse/message"))
                                .bearer_auth(PUBLISH_KEY)
                                .body(vec![0xff, 0xfe, 0x00])
                                .send()
                                .await
                        }
                        _ => http.get(srv.url("/api/sse?channels=a%0Ab")).send().await,
                    };
                    if r.map(|r| r.status().is_client_error()).unwrap_or(false) {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    for n in 0..300u64 {
        srv.publish_ok(json!({"event": "n", "data": n, "channels": ["news"]}))
            .await;
    }
    let mut refused = 0;
    for a in attackers {
        refused += tokio::time::timeout(WAIT * 6, a).await.unwrap().unwrap();
    }
    assert_eq!(refused, 2400, "every bad request was refused");
    for n in 0..300u64 {
        let e = good.next_event().await;
        assert_eq!(serde_json::from_str::<u64>(&e.data).unwrap(), n);
    }
    let stats = srv.stats().await;
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["evictedSlowConsumers"], 0);
}

#[tokio::test]
async fn https_with_http2_multiplexes_many_streams_on_one_connection() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("herald-tls-{}-{}", std::process::id(), now()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let c = Config {
        tls: Some(herald::config::TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }),
        ..Config::default()
    };
    let srv = TestServer::with_config(c).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", srv.addr.port());
    const STREAMS: usize = 24;
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let r = client
            .get(format!("{base}/api/sse?userId=u{i}&channels=all"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        streams.push(SseClient::open(r).await);
    }
    let r = client
        .post(format!("{base}/api/sse/message"))
        .json(&json!({"event": "h2", "data": "over one connection", "channels": ["all"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(read_json(r).await.1["delivered"], STREAMS);
    for s in &mut streams {
        assert_eq!(s.expect("h2").await, "over one connection");
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_transport_connections_accepted_total 1\n"),
        "all streams and requests shared one connection:\n{metrics}"
    );
    // Plain HTTP to the TLS port fails instead of leaking anything.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", srv.addr.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    std::fs::remove_dir_all(&dir).unwrap();
}
