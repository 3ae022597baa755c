//! Hostile clients against the real server (issue 10): absurd token claims, half-sent and
//! trickled request heads on plain TCP and TLS, stray bytes after a stream request, slow publish
//! bodies on the subscribe path, and IPv6 clients that spread over their /64.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::auth::{JwtVerifier, PublishScope, PublisherKey};
use herald::config::{Config, Rate, Secret};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{read_json, SseClient, TestServer, WAIT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const SECRET: &str = "hs256-secret-for-the-hostile-tests-0123456789";
const PUBLISH_KEY: &str = "publisher-key-0123456789";

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

async fn secured(f: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = Config::default();
    c.http.jwt = Some(Arc::new(
        JwtVerifier::new()
            .with_hs256_secret(&Secret::new(SECRET))
            .unwrap(),
    ));
    c.http.publisher_keys = vec![PublisherKey {
        name: "backend".into(),
        key: Secret::new(PUBLISH_KEY),
        publish: PublishScope::Any,
        admin: true,
    }];
    f(&mut c);
    TestServer::with_config(c).await
}

/// `GET /api/sse?token=…`: the status, and the stream when it opened.
async fn subscribe_with(srv: &TestServer, token: &str) -> (StatusCode, Option<SseClient>, Value) {
    let r = tokio::time::timeout(
        WAIT,
        srv.http
            .get(srv.url(&format!("/api/sse?token={token}&channels=news")))
            .send(),
    )
    .await
    .expect("subscribe timed out")
    .expect("subscribe failed");
    if r.status() == StatusCode::OK {
        (StatusCode::OK, Some(SseClient::open(r).await), Value::Null)
    } else {
        let (s, body) = read_json(r).await;
        (s, None, body)
    }
}

/// Item 1: no `exp` is too far ahead for the expiry timer. Before the fix, `exp` in the year
/// 3000 (or `i64::MAX`) panicked the expiry task, and every later token subscribe answered
/// `503 shutting_down`; `exp = u64::MAX` panicked the request handler itself.
#[tokio::test]
async fn absurd_token_expiries_neither_panic_nor_stop_sign_in() {
    let srv = secured(|_| {}).await;
    let year_3000 = 32_503_680_000u64;
    let mut held = Vec::new();
    for exp in [json!(year_3000), json!(i64::MAX), json!(u64::MAX)] {
        let token = hs256(json!({"sub": "far", "channels": ["news"], "exp": exp}));
        let (status, stream, body) = subscribe_with(&srv, &token).await;
        // Admitted (the token is valid; it never expires within the process's life).
        assert_eq!(status, StatusCode::OK, "exp {exp}: {body}");
        held.push(stream.unwrap());
    }
    // Absurd nbf / iat: refused cleanly, or admitted; never a panic.
    for extra in [
        json!({"nbf": u64::MAX}),
        json!({"iat": u64::MAX}),
        json!({"nbf": -1}),
        json!({"exp": -1}),
        json!({"exp": 1e300}),
    ] {
        let mut claims = json!({"sub": "odd", "channels": ["news"], "exp": now() + 600});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, _stream, body) = subscribe_with(&srv, &hs256(claims)).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "{extra}: {status} {body}"
        );
        if status != StatusCode::OK {
            assert!(body["error"]["code"].is_string(), "{extra}: {body}");
        }
    }
    // The expiry task is alive: a token expiring now still closes its stream.
    let soon = hs256(json!({"sub": "soon", "channels": ["news"], "exp": now() + 1}));
    let (status, stream, body) = subscribe_with(&srv, &soon).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut soon = stream.unwrap();
    let expired = soon.expect("disconnected").await;
    assert_eq!(expired["reason"], "token_expired");
    assert_eq!(expired["reconnect"], "new_token");
    // A normal token still signs in, and events reach everyone.
    let normal = hs256(json!({"sub": "bob", "channels": ["news"], "exp": now() + 600}));
    let (status, stream, body) = subscribe_with(&srv, &normal).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut bob = stream.unwrap();
    let (s, _) = srv
        .post(
            "/api/sse/message",
            &json!({"event": "still", "data": 1, "channels": ["news"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bob.expect("still").await, 1);
    for far in &mut held {
        assert_eq!(far.expect("still").await, 1);
    }
}

/// Item 9: the `name` claim is held to the rules of the `username` parameter.
#[tokio::test]
async fn a_token_name_with_control_characters_or_too_long_is_refused() {
    let srv = secured(|_| {}).await;
    for name in ["a\u{7}b", "line\nbreak", &"n".repeat(300)] {
        let token =
            hs256(json!({"sub": "eve", "name": name, "channels": ["news"], "exp": now() + 600}));
        let (status, _, body) = subscribe_with(&srv, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_claims", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("name"),
            "{body}"
        );
    }
    let token = hs256(
        json!({"sub": "eve", "name": "Eve Écrivain", "channels": ["news"], "exp": now() + 600}),
    );
    let (status, _, body) = subscribe_with(&srv, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn short_heads() -> Config {
    Config {
        header_read_timeout: HEAD_TIMEOUT,
        ..Config::default()
    }
}

const HEAD_TIMEOUT: Duration = Duration::from_millis(1000);
/// How much later than the head timeout the server may close (a loaded test machine). Less than
/// the timeout itself, so a head that gets the timeout twice fails.
const MARGIN: Duration = Duration::from_millis(700);

/// Reads until the server closes (end of stream or reset), bounded; returns when it closed.
async fn closed_at<S: AsyncRead + Unpin>(stream: &mut S) -> Instant {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Instant::now(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept a half-sent head open for {WAIT:?}"),
        }
    }
}

/// Sends `bytes` (at once, or one byte every `gap`), then nothing; asserts the server closes
/// within the head timeout (plus a margin) from `started`, and not before the timeout.
async fn assert_closed_in_time<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    started: Instant,
    bytes: &[u8],
    gap: Option<Duration>,
    what: &str,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let send = async {
        match gap {
            None => {
                let _ = writer.write_all(bytes).await;
                let _ = writer.flush().await;
            }
            Some(gap) => {
                for b in bytes {
                    if writer.write_all(&[*b]).await.is_err() || writer.flush().await.is_err() {
                        break;
                    }
                    tokio::time::sleep(gap).await;
                }
            }
        }
        std::future::pending::<()>().await;
    };
    let at = tokio::select! {
        at = closed_at(&mut reader) => at,
        _ = send => unreachable!(),
    };
    let took = at - started;
    assert!(
        took <= HEAD_TIMEOUT + MARGIN,
        "{what}: closed after {took:?}, more than {HEAD_TIMEOUT:?} + {MARGIN:?}"
    );
    assert!(
        took >= HEAD_TIMEOUT - Duration::from_millis(50),
        "{what}: closed after {took:?}, before the head timeout"
    );
}

/// A request head that grows forever, to trickle in.
fn endless_head() -> Vec<u8> {
    let mut head = b"GET /api/sse?channels=news HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1000));
    head
}

const PARTIAL_HEADS: [(&str, &[u8]); 5] = [
    ("P", b"P"),
    ("HTTP/2 preface line", b"PRI * HTTP/2.0\r\n"),
    ("whole HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    (
        "stream head without end",
        b"GET /api/sse HTTP/1.1\r\nHost: localhost\r\n",
    ),
    (
        "publish head without end",
        b"POST /api/sse/message HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n",
    ),
];

/// Item 2, plain TCP: every partial head is closed at the head timeout, trickled or not, however
/// the server reads it (the lean reader, hyper's version detection, HTTP/2, HTTP/1.1).
#[tokio::test]
async fn half_sent_heads_are_closed_at_the_header_timeout() {
    let srv = TestServer::with_config(short_heads()).await;
    let mut checks = Vec::new();
    for (what, bytes) in PARTIAL_HEADS {
        let addr = srv.addr;
        checks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            assert_closed_in_time(stream, Instant::now(), bytes, None, what).await;
        }));
    }
    // One byte every 50-60 ms: each read within the timeout, the head never complete.
    for (what, bytes, gap) in [
        ("trickled stream head", endless_head(), 50),
        (
            "trickled HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            60,
        ),
    ] {
        let addr = srv.addr;
        checks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let gap = Some(Duration::from_millis(gap));
            assert_closed_in_time(stream, Instant::now(), &bytes, gap, what).await;
        }));
    }
    // A head that goes to hyper after the lean reader spent most of the budget on it (a
    // publish trickled in): the two together get one timeout, not two.
    {
        let addr = srv.addr;
        checks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            stream
                .write_all(b"POST /api/sse/message HTTP/1.1\r\nHost: localhost\r\n")
                .await
                .unwrap();
            tokio::time::sleep(HEAD_TIMEOUT * 3 / 5).await;
            // Not a stream request once complete, but complete only after this:
            assert_closed_in_time(
                stream,
                started,
                b"X-A: 1\r\nX-B: ",
                None,
                "slow publish head",
            )
            .await;
        }));
    }
    for check in checks {
        check.await.unwrap();
    }
    // Good clients are unaffected.
    let mut ok = srv.subscribe("channels=news").await;
    srv.publish(json!({"event": "fine", "data": 1, "channels": ["news"]}))
        .await;
    assert_eq!(ok.expect("fine").await, 1);
}

struct TlsServer {
    srv: TestServer,
    connector: tokio_rustls::TlsConnector,
    dir: std::path::PathBuf,
}

async fn tls_server() -> TlsServer {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "herald-hostile-tls-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let mut c = short_heads();
    c.tls = Some(herald::config::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    });
    let srv = TestServer::with_config(c).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsServer {
        srv,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        dir,
    }
}

impl TlsServer {
    async fn connect(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.srv.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(WAIT, self.connector.connect(name, tcp))
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake failed")
    }
}

/// Item 2, after a TLS handshake: the same partial heads are closed at the head timeout (counted
/// from the end of the handshake).
#[tokio::test]
async fn half_sent_heads_after_a_tls_handshake_are_closed_at_the_header_timeout() {
    let tls = Arc::new(tls_server().await);
    let mut checks = Vec::new();
    for (what, bytes) in PARTIAL_HEADS {
        let tls = tls.clone();
        checks.push(tokio::spawn(async move {
            let stream = tls.connect().await;
            assert_closed_in_time(stream, Instant::now(), bytes, None, what).await;
        }));
    }
    {
        let tls = tls.clone();
        checks.push(tokio::spawn(async move {
            let stream = tls.connect().await;
            let gap = Some(Duration::from_millis(50));
            assert_closed_in_time(
                stream,
                Instant::now(),
                &endless_head(),
                gap,
                "trickled head",
            )
            .await;
        }));
    }
    {
        // Handshake, then nothing at all.
        let tls = tls.clone();
        checks.push(tokio::spawn(async move {
            let stream = tls.connect().await;
            assert_closed_in_time(stream, Instant::now(), b"", None, "nothing").await;
        }));
    }
    for check in checks {
        check.await.unwrap();
    }
    // A real request still works, and so does keep-alive within the timeout.
    let mut stream = tls.connect().await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // An idle keep-alive connection is closed after the head timeout too.
    let answered = Instant::now();
    let took = closed_at(&mut stream).await - answered;
    assert!(
        took <= HEAD_TIMEOUT + MARGIN,
        "idle keep-alive closed after {took:?}"
    );
    std::fs::remove_dir_all(&tls.dir).unwrap();
}

/// Item 2, the same class for HTTP/2: a connection with no request in progress is closed after
/// the header timeout, as hyper closes an idle HTTP/1.1 keep-alive connection; one carrying an
/// event stream is not.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_but_one_carrying_a_stream_is_not() {
    let tls = tls_server().await;
    let pem = std::fs::read(tls.dir.join("cert.pem")).unwrap();
    let client = || {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .tls_built_in_root_certs(false)
            .build()
            .unwrap()
    };
    let base = format!("https://localhost:{}", tls.srv.addr.port());
    let streaming = client();
    let r = tokio::time::timeout(
        WAIT,
        streaming
            .get(format!("{base}/api/sse?channels=news"))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let mut stream = SseClient::open(r).await;
    let idle = client();
    let r = tokio::time::timeout(WAIT, idle.get(format!("{base}/healthz")).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(HEAD_TIMEOUT + MARGIN + Duration::from_millis(300)).await;
    // The idle client's connection is gone: this request needs a new one (the third).
    let r = tokio::time::timeout(
        WAIT,
        idle.post(format!("{base}/api/sse/message"))
            .json(&json!({"event": "late", "data": 1, "channels": ["news"]}))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(read_json(r).await.1["delivered"], 1);
    assert_eq!(stream.expect("late").await, 1);
    let metrics = tokio::time::timeout(WAIT, idle.get(format!("{base}/metrics")).send())
        .await
        .unwrap()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_transport_connections_accepted_total 3\n"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("accepted"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::fs::remove_dir_all(&tls.dir).unwrap();
}

/// Item 9: stray bytes (an empty line too many) after a stream request do not end the stream,
/// whether they come with the head or later.
#[tokio::test]
async fn a_stray_empty_line_after_a_stream_request_does_not_end_it() {
    let srv = TestServer::start().await;
    let head = b"GET /api/sse?channels=news HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // With the head, in one write.
    let mut with_head = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    with_head
        .write_all(&[&head[..], b"\r\n"].concat())
        .await
        .unwrap();
    // After the stream began.
    let mut later = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    later.write_all(head).await.unwrap();
    let mut seen = [Vec::new(), Vec::new()];
    read_until(&mut with_head, &mut seen[0], "event: connected").await;
    read_until(&mut later, &mut seen[1], "event: connected").await;
    later.write_all(b"\r\n").await.unwrap();
    later.write_all(b"\n").await.unwrap();
    srv.wait_for_stats("both connected", |s| s["connections"] == 2)
        .await;
    // Give the server the time to read the stray bytes before the event.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, _) = srv
        .publish(json!({"event": "after-stray", "data": 1, "channels": ["news"]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    read_until(&mut with_head, &mut seen[0], "event: after-stray").await;
    read_until(&mut later, &mut seen[1], "event: after-stray").await;
    assert_eq!(srv.stats().await["connections"], 2);
}

/// The same over TLS, where hyper serves the stream.
#[tokio::test]
async fn a_stray_empty_line_after_a_stream_request_over_tls_does_not_end_it() {
    let tls = tls_server().await;
    let mut s = tls.connect().await;
    s.write_all(b"GET /api/sse?channels=news HTTP/1.1\r\nHost: localhost\r\n\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, "event: connected").await;
    s.write_all(b"\r\n").await.unwrap();
    s.flush().await.unwrap();
    // Longer than the header timeout: the stray line starts no head timer.
    tokio::time::sleep(HEAD_TIMEOUT + MARGIN).await;
    let pem = std::fs::read(tls.dir.join("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let r = tokio::time::timeout(
        WAIT,
        client
            .post(format!(
                "https://localhost:{}/api/sse/message",
                tls.srv.addr.port()
            ))
            .json(&json!({"event": "after-stray", "data": 1, "channels": ["news"]}))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(read_json(r).await.1["delivered"], 1);
    read_until(&mut s, &mut seen, "event: after-stray").await;
    std::fs::remove_dir_all(&tls.dir).unwrap();
}

async fn read_until<S: AsyncRead + Unpin>(stream: &mut S, seen: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within {WAIT:?}"))
            .unwrap();
        assert!(
            n > 0,
            "the stream ended before {needle:?}: {}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Item 9: a publish to the `POST /api/sse` alias whose body never finishes gets `408`, like the
/// other publish endpoints.
#[tokio::test]
async fn a_slow_publish_body_on_the_subscribe_path_gets_408() {
    let mut c = Config::default();
    c.http.body_read_timeout = Duration::from_millis(300);
    let srv = TestServer::with_config(c).await;
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(b"POST /api/sse HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event\"")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut buf))
        .await
        .expect("the server waited for the body forever")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    // Answers keep their length (not chunked) through the server's connection bookkeeping.
    assert!(
        text.to_ascii_lowercase().contains("content-length: "),
        "{text}"
    );
}

async fn subscribe_from(srv: &TestServer, ip: &str) -> (StatusCode, Value) {
    let r = tokio::time::timeout(
        WAIT,
        srv.http
            .get(srv.url("/api/sse"))
            .header("x-forwarded-for", ip)
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    if r.status() == StatusCode::OK {
        // Keep the stream open by leaking it into a task that holds it until the test ends.
        let client = SseClient::open(r).await;
        tokio::spawn(async move {
            let _hold = client;
            std::future::pending::<()>().await;
        });
        return (StatusCode::OK, Value::Null);
    }
    read_json(r).await
}

/// Item 9: per-address limits key an IPv6 client by its /64 (and an IPv4-mapped address as the
/// IPv4 address).
#[tokio::test]
async fn ipv6_clients_of_one_slash_64_share_their_limits() {
    // The connection limit.
    let mut c = Config::default();
    c.hub.max_connections_per_ip = Some(2);
    c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let srv = TestServer::with_config(c).await;
    for ip in ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"] {
        assert_eq!(subscribe_from(&srv, ip).await.0, StatusCode::OK, "{ip}");
    }
    let (s, e) = subscribe_from(&srv, "2001:db8:1:2:abcd::9").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("ip_connection_limit"))
    );
    // The next /64 is another client.
    assert_eq!(
        subscribe_from(&srv, "2001:db8:1:3::1").await.0,
        StatusCode::OK
    );
    // IPv4 written IPv4-mapped is the IPv4 client.
    assert_eq!(subscribe_from(&srv, "198.51.100.7").await.0, StatusCode::OK);
    assert_eq!(
        subscribe_from(&srv, "::ffff:198.51.100.7").await.0,
        StatusCode::OK
    );
    let (s, e) = subscribe_from(&srv, "198.51.100.7").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("ip_connection_limit"))
    );

    // The connect rate.
    let mut c = Config::default();
    c.http.connect_rate_per_ip = Some(Rate {
        per_second: 1,
        burst: 2,
    });
    c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let srv = TestServer::with_config(c).await;
    for ip in ["2001:db8:5:6::1", "2001:db8:5:6::2"] {
        assert_eq!(subscribe_from(&srv, ip).await.0, StatusCode::OK, "{ip}");
    }
    let (s, e) = subscribe_from(&srv, "2001:db8:5:6::3").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert_eq!(
        subscribe_from(&srv, "2001:db8:5:7::1").await.0,
        StatusCode::OK
    );
}

/// Item 9, the same class: on a dual-stack listener an IPv4 proxy arrives as `::ffff:a.b.c.d`;
/// it is still the trusted proxy named `127.0.0.1`, so the clients behind it are told apart.
#[tokio::test]
async fn a_trusted_ipv4_proxy_on_a_dual_stack_listener_is_recognised() {
    // An IPv6 socket bound to the IPv4-mapped loopback address: loopback only, and its peers
    // are IPv4-mapped.
    let listener = match tokio::net::TcpListener::bind("[::ffff:127.0.0.1]:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("no dual-stack listener here ({e}); skipped");
            return;
        }
    };
    let port = listener.local_addr().unwrap().port();
    let mut c = Config::default();
    c.hub.max_connections_per_ip = Some(1);
    c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    c.http.publisher_keys = vec![support::full_key(PUBLISH_KEY)];
    let lifecycle = herald::Lifecycle::new();
    let hub = herald::Hub::start_in_memory(c.hub.clone(), &lifecycle);
    let state = herald::http::AppState::new(hub, c.http.clone());
    let _stop = lifecycle.token().clone().drop_guard();
    tokio::spawn(herald::server::serve(
        listener,
        state,
        lifecycle,
        herald::server::ServerOptions::default(),
    ));
    let http = support::http_client();
    let mut held = Vec::new();
    for client in ["198.51.100.1", "198.51.100.2"] {
        let r = tokio::time::timeout(
            WAIT,
            http.get(format!("http://127.0.0.1:{port}/api/sse"))
                .header("x-forwarded-for", client)
                .send(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{client}: {:?}", r.text().await);
        held.push(SseClient::open(r).await);
    }
    // The same client twice is one too many.
    let r = tokio::time::timeout(
        WAIT,
        http.get(format!("http://127.0.0.1:{port}/api/sse"))
            .header("x-forwarded-for", "198.51.100.1")
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(read_json(r).await.1["error"]["code"], "ip_connection_limit");
}

/// Item 1, the expiry timer's steps: a deadline beyond one step of the timer (an hour) is waited
/// for in steps and still fires on time; a far one keeps its connection open. (Virtual time.)
#[tokio::test(start_paused = true)]
async fn a_token_expiry_beyond_the_timer_step_still_fires_on_time() {
    use futures_util::StreamExt;
    let config = herald::config::HubConfig {
        heartbeat_interval: Duration::from_secs(24 * 3600),
        cleanup_interval: Duration::from_secs(24 * 3600),
        ..Default::default()
    };
    let hub = herald::Hub::start_in_memory(config, &herald::Lifecycle::new());
    let started = tokio::time::Instant::now();
    let expiring = |at: SystemTime| herald::hub::ConnectRequest {
        expires_at: Some(at),
        ..herald::hub::ConnectRequest::anonymous()
    };
    let mut soon = hub
        .connect(expiring(SystemTime::now() + Duration::from_secs(150 * 60)))
        .await
        .unwrap();
    let _far = hub
        .connect(expiring(UNIX_EPOCH + Duration::from_secs(32_503_680_000)))
        .await
        .unwrap();
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(5 * 3600), async {
        while let Some(Ok(bytes)) = soon.next().await {
            seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    })
    .await;
    assert!(ended.is_ok(), "the token never expired; saw {seen}");
    assert!(seen.contains("token_expired"), "{seen}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(149 * 60) && took <= Duration::from_secs(151 * 60),
        "expired after {took:?}, not after 150 minutes"
    );
    assert_eq!(hub.stats().await.connections, 1, "the far one stays");
}
