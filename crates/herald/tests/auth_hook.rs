//! The auth hook against the real `herald` binary: a small app in the test (axum on an
//! ephemeral loopback port) answers Herald's calls from its "sessions" (cookies), and every
//! outcome is checked where a subscriber sees it: the `connected` event, the presence API,
//! the refusal's status and JSON, on SSE, WebSocket and Socket.IO.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{read_json, send, HeraldProcess, SseClient, WAIT};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

const HOOK_SECRET: &str = "auth-hook-secret-0123456789abcdef";
const KEY: &str = "auth-hook-test-publisher-key";
const JWT_SECRET: &str = "hs256-secret-for-the-auth-hook-tests-0123456789";

/// How the app answers.
#[derive(Clone)]
enum Mode {
    /// From its sessions: the cookie `session=<id>`.
    Sessions,
    /// This status and body, whatever is asked.
    Fixed(u16, String),
    /// Never (the request is read, the answer never comes).
    Hang,
}

/// One call the app received.
#[derive(Clone, Debug)]
struct Call {
    body: Value,
    /// Whether `X-Herald-Signature` was the HMAC of the body bytes.
    signed: bool,
}

#[derive(Clone)]
struct App {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<Mutex<Vec<Call>>>,
    sessions: Arc<HashMap<&'static str, Value>>,
}

/// The test app, listening on a loopback port until `stop`.
struct AppServer {
    app: App,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sessions() -> HashMap<&'static str, Value> {
    HashMap::from([
        (
            "s-alice",
            json!({"userId": "alice", "username": "Alice", "channels": ["orders:*", "news"],
                   "metadata": {"plan": "pro"}}),
        ),
        (
            "s-bob",
            json!({"userId": "bob", "username": "Bob", "channels": ["news", "team:*"]}),
        ),
        (
            "s-brief",
            json!({"userId": "carol", "channels": ["news"], "expiresAt": now() + 2}),
        ),
    ])
}

async fn answer(State(app): State<App>, headers: HeaderMap, raw: Bytes) -> Response {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(&raw);
    let expected = format!("sha256={}", hex(&mac.finalize().into_bytes()));
    let signed = headers
        .get("x-herald-signature")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    let body: Value = serde_json::from_slice(&raw).expect("Herald sends JSON");
    app.calls.lock().unwrap().push(Call {
        body: body.clone(),
        signed,
    });
    let mode = app.mode.lock().unwrap().clone();
    match mode {
        Mode::Hang => std::future::pending().await,
        Mode::Fixed(status, text) => (StatusCode::from_u16(status).unwrap(), text).into_response(),
        Mode::Sessions => {
            if !signed {
                // A real app refuses unsigned calls; Herald would turn this into a 503.
                return (StatusCode::BAD_REQUEST, "bad signature").into_response();
            }
            let cookie = body["headers"]["cookie"].as_str().unwrap_or("");
            let session = cookie
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("session="))
                .next();
            match session {
                Some("s-banned") => (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({"message": "banned\r\nuntil further notice"})),
                )
                    .into_response(),
                Some(id) if app.sessions.contains_key(id) => {
                    axum::Json(app.sessions[id].clone()).into_response()
                }
                _ => (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"message": "no session; log in first"})),
                )
                    .into_response(),
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AppServer {
    async fn start(mode: Mode) -> Self {
        let app = App {
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::default(),
            sessions: Arc::new(sessions()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/herald/auth", axum::routing::post(answer))
            .with_state(app.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            // A hanging answer would hold graceful shutdown: stop at once instead.
            tokio::select! {
                _ = axum::serve(listener, router) => {}
                _ = stopped.cancelled() => {}
            }
        });
        AppServer {
            app,
            addr,
            stop,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/herald/auth", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.app.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> Vec<Call> {
        self.app.calls.lock().unwrap().clone()
    }

    /// Kills the app: its port refuses connections from here on.
    async fn kill(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
    }
}

/// `herald` asking `app`, signed, with a publisher key (so admin and publish are keyed), plus
/// `extra` flags.
async fn herald(app: &AppServer, extra: &[&str]) -> HeraldProcess {
    let url = app.url();
    let mut args = vec![
        "--auth-hook-url",
        &url,
        "--auth-hook-secret",
        HOOK_SECRET,
        "--publisher-key",
        KEY,
    ];
    args.extend_from_slice(extra);
    HeraldProcess::start(&args, &[]).await
}

fn client() -> reqwest::Client {
    support::http_client()
}

/// `GET /api/sse?query` with this cookie: the open stream, or the refusal.
async fn sse(
    herald: &HeraldProcess,
    query: &str,
    cookie: Option<&str>,
) -> Result<SseClient, (u16, Value, reqwest::header::HeaderMap)> {
    let mut request = client()
        .get(herald.url(&format!("/api/sse?{query}")))
        .header("user-agent", "test-browser/1.0")
        .header("authorization", "Basic not-for-the-app");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = send(request).await;
    if response.status() == StatusCode::OK {
        return Ok(SseClient::open(response).await);
    }
    let headers = response.headers().clone();
    let (status, body) = read_json(response).await;
    Err((status.as_u16(), body, headers))
}

async fn sse_ok(herald: &HeraldProcess, query: &str, cookie: Option<&str>) -> SseClient {
    match sse(herald, query, cookie).await {
        Ok(c) => c,
        Err((status, body, _)) => panic!("{query} {cookie:?}: {status} {body}"),
    }
}

async fn sse_refused(herald: &HeraldProcess, query: &str, cookie: Option<&str>) -> (u16, Value) {
    match sse(herald, query, cookie).await {
        Ok(c) => panic!("{query} {cookie:?} was admitted: {}", c.connected),
        Err((status, body, headers)) => {
            if status == 503 {
                assert!(
                    headers.get("retry-after").is_some(),
                    "503 without Retry-After"
                );
            }
            (status, body)
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `ws://…/api/ws?query` with this cookie: the socket and its `connected` data, or the
/// refusal's status and JSON.
async fn ws(
    herald: &HeraldProcess,
    query: &str,
    cookie: Option<&str>,
) -> Result<(Socket, Value), (u16, Value)> {
    ws_from(herald, query, cookie, None).await
}

/// [`ws`] from a page on `origin`.
async fn ws_from(
    herald: &HeraldProcess,
    query: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<(Socket, Value), (u16, Value)> {
    let mut request = format!("ws://{}/api/ws?{query}", herald.addr)
        .into_client_request()
        .unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let handshake = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake timed out");
    match handshake {
        Ok((mut socket, _)) => {
            let connected = ws_next(&mut socket).await;
            assert_eq!(connected["event"], "connected", "{connected}");
            Ok((socket, connected["data"].clone()))
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            Err((status, serde_json::from_slice(&body).unwrap()))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The next text message that is not a heartbeat.
async fn ws_next(socket: &mut Socket) -> Value {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no message in time")
            .expect("the socket ended")
            .expect("socket error");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["event"] != "heartbeat" {
                return value;
            }
        }
    }
}

async fn publish(herald: &HeraldProcess, body: Value) {
    let response = send(
        client()
            .post(herald.url("/api/sse/message"))
            .bearer_auth(KEY)
            .json(&body),
    )
    .await;
    let (status, answer) = read_json(response).await;
    assert_eq!(status, 200, "{answer}");
}

async fn admin_get(herald: &HeraldProcess, path: &str) -> Value {
    let response = send(client().get(herald.url(path)).bearer_auth(KEY)).await;
    let (status, body) = read_json(response).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The value of `herald_auth_hook_answers_total` for this outcome, cached or not.
async fn answers(herald: &HeraldProcess, outcome: &str, cached: bool) -> u64 {
    let response = send(client().get(herald.url("/metrics")).bearer_auth(KEY)).await;
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(WAIT, response.text())
        .await
        .unwrap()
        .unwrap();
    let series =
        format!("herald_auth_hook_answers_total{{outcome=\"{outcome}\",cached=\"{cached}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn the_app_s_session_admits_with_its_identity_and_grants_on_sse_and_websocket() {
    let app = AppServer::start(Mode::Sessions).await;
    let herald = herald(&app, &[]).await;

    // No channels asked for: the exact names among the grants ("news"; "orders:*" names none).
    let mut alice = sse_ok(&herald, "", Some("theme=dark; session=s-alice")).await;
    assert_eq!(alice.connected["userId"], "alice");
    assert_eq!(alice.connected["username"], "Alice");
    assert_eq!(alice.connected["channels"], json!(["news"]));
    // Channels asked for must match a grant.
    let orders = sse_ok(&herald, "channels=orders:7", Some("session=s-alice")).await;
    assert_eq!(orders.connected["channels"], json!(["orders:7"]));
    let (status, body) = sse_refused(
        &herald,
        "channels=orders:7,payroll",
        Some("session=s-alice"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("channel_forbidden")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("payroll"),
        "{body}"
    );
    // The identity comes from the app: the query cannot name one.
    let (status, body) = sse_refused(&herald, "userId=mallory", Some("session=s-alice")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("identity_not_allowed"))
    );

    // What the app was sent: the transport, only the cookie among the headers, the query and
    // the address, signed.
    let calls = app.calls();
    // The one naming a user in the query was refused before the hook; the one asking for
    // payroll after it.
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.signed), "{calls:?}");
    assert_eq!(
        calls[1].body,
        json!({"transport": "sse", "headers": {"cookie": "session=s-alice"},
               "query": {"channels": "orders:7"}, "ip": "127.0.0.1"})
    );

    // The same on a WebSocket; the presence API sees both users on "news".
    let (mut bob, connected) = ws(&herald, "", Some("session=s-bob")).await.unwrap();
    assert_eq!(connected["userId"], "bob");
    assert_eq!(connected["channels"], json!(["news"]));
    assert_eq!(app.calls().last().unwrap().body["transport"], "websocket");
    let presence = admin_get(&herald, "/api/sse/presence?channel=news").await;
    let mut users: Vec<(&str, &str)> = presence["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["userId"].as_str().unwrap(),
                u["username"].as_str().unwrap(),
            )
        })
        .collect();
    users.sort();
    assert_eq!(users, [("alice", "Alice"), ("bob", "Bob")], "{presence}");
    let bob_presence = admin_get(&herald, "/api/sse/presence/users/bob").await;
    assert_eq!(bob_presence["connections"][0]["transport"], "websocket");

    // Events reach them by user and by channel.
    publish(
        &herald,
        json!({"users": ["alice"], "event": "for-alice", "data": 1}),
    )
    .await;
    publish(
        &herald,
        json!({"channels": ["news"], "event": "headline", "data": 2}),
    )
    .await;
    assert_eq!(alice.expect("for-alice").await, 1);
    assert_eq!(alice.expect("headline").await, 2);
    assert_eq!(ws_next(&mut bob).await["event"], "headline");
}

#[tokio::test]
async fn refusals_pass_on_with_the_app_s_status_and_message() {
    let app = AppServer::start(Mode::Sessions).await;
    let herald = herald(&app, &[]).await;
    let (status, body) = sse_refused(&herald, "", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "auth_hook_refused");
    assert_eq!(body["error"]["message"], "no session; log in first");
    // The message loses its control characters.
    let (status, body) = sse_refused(&herald, "", Some("session=s-banned")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "auth_hook_refused");
    assert_eq!(body["error"]["message"], "banned  until further notice");
    // The same before a WebSocket upgrade.
    let (status, body) = ws(&herald, "", Some("session=s-banned")).await.unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("auth_hook_refused"))
    );
    let (status, _) = ws(&herald, "", Some("session=nobody")).await.unwrap_err();
    assert_eq!(status, 401);
}

/// A browser sends the user's cookies with a WebSocket opened by any page. Where CORS would not
/// let that page send them (here `--cors-origins '*'`, which never carries credentials), the
/// cookies are not forwarded: the app cannot admit a foreign page as the user.
#[tokio::test]
async fn a_foreign_page_s_websocket_does_not_forward_the_user_s_cookies() {
    let app = AppServer::start(Mode::Sessions).await;
    let herald = herald(&app, &["--cors-origins", "*"]).await;
    let foreign = Some("https://evil.example");
    let (status, body) = ws_from(&herald, "", Some("session=s-alice"), foreign)
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("auth_hook_refused"))
    );
    assert_eq!(app.calls().last().unwrap().body["headers"], json!({}));
    // Without an Origin (not a browser page), the cookie counts.
    let (_, connected) = ws(&herald, "", Some("session=s-alice")).await.unwrap();
    assert_eq!(connected["userId"], "alice");
}

#[tokio::test]
async fn an_app_that_never_answers_is_unavailable_after_the_timeout() {
    let app = AppServer::start(Mode::Hang).await;
    let herald = herald(&app, &["--auth-hook-timeout", "300ms"]).await;
    let started = Instant::now();
    let (status, body) = sse_refused(&herald, "", Some("session=s-alice")).await;
    let waited = started.elapsed();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("auth_hook_unavailable"))
    );
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    assert_eq!(app.calls().len(), 1);
    // The WebSocket too: refused before the upgrade, never admitted anonymously.
    let (status, _) = ws(&herald, "", Some("session=s-alice")).await.unwrap_err();
    assert_eq!(status, 503);
}

#[tokio::test]
async fn an_app_that_fails_is_unavailable_never_an_anonymous_admission() {
    let mut app = AppServer::start(Mode::Fixed(500, "oops".into())).await;
    let herald = herald(&app, &[]).await;
    let unavailable = |(status, body): (u16, Value)| {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "auth_hook_unavailable");
    };
    unavailable(sse_refused(&herald, "", Some("session=s-alice")).await);
    for garbage in [
        "not json",
        "{}",
        r#"{"userId": 7}"#,
        r#"{"userId": "a\u0000b"}"#,
        r#"{"userId": "alice", "channels": ["no spaces allowed"]}"#,
    ] {
        app.set(Mode::Fixed(200, garbage.into()));
        unavailable(sse_refused(&herald, "", Some("session=s-alice")).await);
    }
    // A status the hook does not define (a wrong URL, say) is a failure too, not a refusal.
    app.set(Mode::Fixed(404, "not found".into()));
    unavailable(sse_refused(&herald, "", Some("session=s-alice")).await);
    // The app comes back, then dies: its port refuses connections.
    app.set(Mode::Sessions);
    sse_ok(&herald, "", Some("session=s-alice")).await;
    app.kill().await;
    unavailable(sse_refused(&herald, "", Some("session=s-alice")).await);
    unavailable(sse_refused(&herald, "", Some("session=s-alice")).await);
    assert_eq!(answers(&herald, "unavailable", false).await, 9);
    assert_eq!(answers(&herald, "admitted", false).await, 1);
    let log = herald.log();
    assert!(log.contains("auth hook unavailable"), "{log}");
    assert!(
        !log.contains("s-alice"),
        "credentials are not logged: {log}"
    );
}

#[tokio::test]
async fn the_cache_asks_once_per_ttl_and_never_keeps_a_failure() {
    let app = AppServer::start(Mode::Fixed(500, "down".into())).await;
    let herald = herald(&app, &["--auth-hook-cache-ttl", "1m"]).await;
    sse_refused(&herald, "", Some("session=s-alice")).await;
    assert_eq!(app.calls().len(), 1);
    app.set(Mode::Sessions);
    // The failure was not kept: this asks again, and the answer is kept.
    let first = sse_ok(&herald, "", Some("session=s-alice")).await;
    assert_eq!(app.calls().len(), 2);
    // The same credentials on another transport, with another query: the kept answer.
    let (_socket, connected) = ws(&herald, "channels=orders:1", Some("session=s-alice"))
        .await
        .unwrap();
    assert_eq!(connected["userId"], "alice");
    assert_eq!(connected["channels"], json!(["orders:1"]));
    // The grants still apply to a kept answer.
    let (status, _) = sse_refused(&herald, "channels=payroll", Some("session=s-alice")).await;
    assert_eq!(status, 403);
    assert_eq!(app.calls().len(), 2, "{:?}", app.calls());
    // Other credentials are asked about; a refusal is kept for the ttl as well.
    sse_ok(&herald, "", Some("session=s-bob")).await;
    sse_refused(&herald, "", Some("session=nobody")).await;
    sse_refused(&herald, "", Some("session=nobody")).await;
    assert_eq!(app.calls().len(), 4, "{:?}", app.calls());
    assert_eq!(answers(&herald, "admitted", false).await, 2);
    assert_eq!(answers(&herald, "admitted", true).await, 2);
    assert_eq!(answers(&herald, "refused", false).await, 1);
    assert_eq!(answers(&herald, "refused", true).await, 1);
    assert_eq!(answers(&herald, "unavailable", false).await, 1);
    drop(first);
}

#[tokio::test]
async fn expires_at_closes_the_connection_as_a_token_s_exp_does() {
    let app = AppServer::start(Mode::Sessions).await;
    let herald = herald(&app, &[]).await;
    let mut carol = sse_ok(&herald, "", Some("session=s-brief")).await;
    assert_eq!(carol.connected["userId"], "carol");
    let d = carol.expect("disconnected").await;
    assert_eq!(d["reason"], "token_expired");
    carol.until_end().await;
}

fn jwt(claims: Value) -> String {
    let mut all = json!({"exp": now() + 600});
    all.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    encode(
        &Header::new(Algorithm::HS256),
        &all,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn with_jwt_a_token_decides_without_the_app_and_no_token_asks_it() {
    let app = AppServer::start(Mode::Sessions).await;
    let herald = herald(&app, &["--jwt-secret", JWT_SECRET]).await;
    let token = jwt(json!({"sub": "dave", "channels": ["orders:*", "news", "alerts"]}));
    // A valid token: admitted without the app, and the grants rule holds for its claim too.
    let dave = sse_ok(&herald, &format!("token={token}"), Some("session=s-alice")).await;
    assert_eq!(dave.connected["userId"], "dave");
    assert_eq!(dave.connected["channels"], json!(["alerts", "news"]));
    let (status, body) =
        sse_refused(&herald, &format!("token={token}&channels=payroll"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("channel_forbidden"))
    );
    // An invalid one: 401, and the app is not asked either.
    let (status, body) =
        sse_refused(&herald, &format!("token={token}x"), Some("session=s-alice")).await;
    assert_eq!(status, 401, "{body}");
    assert_ne!(body["error"]["code"], "auth_hook_refused");
    let (_, connected) = ws(&herald, &format!("token={token}"), None).await.unwrap();
    assert_eq!(connected["userId"], "dave");
    assert!(app.calls().is_empty(), "{:?}", app.calls());
    // No token at all: the app decides.
    let alice = sse_ok(&herald, "", Some("session=s-alice")).await;
    assert_eq!(alice.connected["userId"], "alice");
    assert_eq!(app.calls().len(), 1);
}

/// One Engine.IO polling request's packets (split on the record separator).
async fn polling(request: reqwest::RequestBuilder) -> Vec<String> {
    let response = send(request).await;
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(WAIT, response.text())
        .await
        .unwrap()
        .unwrap();
    text.split('\u{1e}').map(str::to_owned).collect()
}

/// Connects a Socket.IO client (Engine.IO v4 long polling, the transport socket.io-client
/// starts with) with this cookie and `auth`: the namespace's answer packet (`40…` connected,
/// `44…` connect_error).
async fn socketio_connect(herald: &HeraldProcess, cookie: &str, auth: Value) -> String {
    let http = client();
    let base = herald.url("/socket.io/?EIO=4&transport=polling");
    let open = polling(http.get(&base).header("cookie", cookie)).await;
    let handshake: Value = serde_json::from_str(open[0].strip_prefix('0').unwrap()).unwrap();
    let sid = handshake["sid"].as_str().unwrap();
    let url = format!("{base}&sid={sid}");
    let ok = polling(
        http.post(&url)
            .header("cookie", cookie)
            .body(format!("40{auth}")),
    )
    .await;
    assert_eq!(ok, ["ok"]);
    let deadline = Instant::now() + WAIT;
    loop {
        let packets = polling(http.get(&url).header("cookie", cookie)).await;
        if let Some(p) = packets
            .into_iter()
            .find(|p| p.starts_with("40") || p.starts_with("44"))
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no connect answer");
    }
}

#[tokio::test]
async fn socket_io_handshakes_ask_the_app_and_a_refusal_is_the_connect_error() {
    let app = AppServer::start(Mode::Sessions).await;
    let herald = herald(&app, &[]).await;
    let refused = socketio_connect(&herald, "session=s-banned", json!({})).await;
    let error: Value = serde_json::from_str(refused.strip_prefix("44").unwrap()).unwrap();
    assert_eq!(
        error["message"],
        "auth_hook_refused: banned  until further notice"
    );
    let admitted =
        socketio_connect(&herald, "session=s-bob", json!({"channels": ["team:1"]})).await;
    assert!(admitted.starts_with("40{"), "{admitted}");
    let call = app.calls().last().unwrap().body.clone();
    assert_eq!(call["transport"], "socket.io");
    assert_eq!(call["query"], json!({"channels": "team:1"}));
    let presence = admin_get(&herald, "/api/sse/presence/users/bob").await;
    assert_eq!(presence["channels"], json!(["team:1"]), "{presence}");
}

/// The hook holds nothing a cluster would share: two `herald` nodes on one real Redis each ask
/// the app for their own subscribers, and events and presence cross between them as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_cluster_asks_the_app_for_its_own_subscribers() {
    let redis = redis_support::RedisServer::start().await;
    let prefix = format!("t-authhook-{:08x}", rand::random::<u32>());
    let app = AppServer::start(Mode::Sessions).await;
    let url = redis.url();
    let node = |id: &'static str| {
        let flags = ["--engine", &url, "--redis-prefix", &prefix, "--node-id", id];
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let app = &app;
        async move {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            herald(app, &flags).await
        }
    };
    let one = node("one").await;
    let two = node("two").await;
    let mut alice = sse_ok(&one, "", Some("session=s-alice")).await;
    let (mut bob, connected) = ws(&two, "", Some("session=s-bob")).await.unwrap();
    assert_eq!(connected["userId"], "bob");
    let (status, _) = sse_refused(&two, "", Some("session=nobody")).await;
    assert_eq!(status, 401);
    assert_eq!(app.calls().len(), 3);
    publish(
        &two,
        json!({"users": ["alice"], "event": "for-alice", "data": 1}),
    )
    .await;
    publish(
        &one,
        json!({"channels": ["news"], "event": "headline", "data": 2}),
    )
    .await;
    assert_eq!(alice.expect("for-alice").await, 1);
    assert_eq!(alice.expect("headline").await, 2);
    assert_eq!(ws_next(&mut bob).await["event"], "headline");
    // Presence is the cluster's: node two sees alice, who is on node one.
    let deadline = Instant::now() + WAIT;
    loop {
        let presence = admin_get(&two, "/api/sse/presence?channel=news").await;
        if presence["users"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "presence never showed both: {presence}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
