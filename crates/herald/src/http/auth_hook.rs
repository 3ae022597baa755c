//! The auth hook (`--auth-hook-url`): the app decides who a subscriber is, from its own session.
//!
//! When a subscriber connects without a JWT (on any transport: SSE, WebSocket, Socket.IO),
//! Herald POSTs to the app:
//!
//! ```json
//! {"transport": "sse", "headers": {"cookie": "session=…"}, "query": {"channels": "a,b"}, "ip": "203.0.113.7"}
//! ```
//!
//! `headers` holds only the headers named by `auth_hook_forward_headers` (the cookies by
//! default); `query` the subscribe query (for Socket.IO, the handshake's `auth` payload written
//! as that query), a repeated parameter's values joined with `,`; `ip` the client's address
//! (through trusted proxies) or `null`. With `auth_hook_secret` set, the call carries
//! `X-Herald-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`.
//!
//! The app answers `200 {"userId", "username"?, "channels"?, "expiresAt"?, "metadata"?}` to
//! admit (`userId` `null` admits an anonymous subscriber; its absence is a malformed answer),
//! or `401`/`403` with an optional `{"message"}` to refuse: the subscriber then gets the same
//! status with code `auth_hook_refused` and that message (control characters removed, at most
//! [`MAX_MESSAGE_CHARS`] characters). Anything else (no connection, no answer within
//! `auth_hook_timeout`, another status, a body that is not such an answer) is `503
//! auth_hook_unavailable` with `Retry-After`: never an anonymous admission.
//!
//! The answer's fields follow the rules of a JWT's claims: `userId` those of `sub`, `username`
//! those of `name`, `channels` those of `channels` (grants: names or `prefix*`), `expiresAt`
//! those of `exp` (Unix seconds; the connection is closed then, as when a token expires).
//!
//! With `auth_hook_cache_ttl`, answers (admissions and refusals, never failures) are reused for
//! that long for the same credentials: the forwarded headers and the `token` query parameter.
//! The app's answer should depend on those only (Herald checks the requested channels against
//! the grants itself). The cache is small and bounded ([`MAX_CACHE_ENTRIES`]), keyed by a
//! SHA-256 of the credentials (it holds no cookie), and never keeps an admission past its
//! `expiresAt`. Each node has its own cache and asks the app on its own: the hook holds no
//! state a cluster would need to share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::auth::{Identity, TokenCookie};
use super::ApiError;
use crate::config::{AuthHookConfig, Secret, TokenExpiry};
use crate::metrics::{AuthHookOutcome, Metrics};
use crate::target::{validate_username, ChannelPattern, UserId};

/// Longest answer body read from the app; a longer one is a malformed answer.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most characters of a refusal's message passed on to the subscriber.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;
/// Most answers the cache holds. When full, expired entries go first, then arbitrary ones.
pub(crate) const MAX_CACHE_ENTRIES: usize = 10_000;
/// Most calls to the app at once on one node; a subscriber beyond gets `503
/// auth_hook_unavailable` right away rather than queueing behind a slow app.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = 256;
/// `Retry-After` of `503 auth_hook_unavailable`, in seconds.
const RETRY_AFTER_SECS: u64 = 2;
/// How long an idle connection to the app is kept for the next call.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which transport a subscriber connects with: the `transport` of the hook's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `GET /api/sse`.
    Sse,
    /// `GET /api/ws`.
    WebSocket,
    /// `/socket.io/`.
    SocketIo,
}

impl Transport {
    /// The name the app sees.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
            Transport::SocketIo => "socket.io",
        }
    }
}

/// What the hook is asked about one subscriber.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HookCall<'a> {
    pub(crate) transport: Transport,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) query: Option<&'a str>,
    pub(crate) ip: Option<IpAddr>,
    /// Whether the cookies count ([`TokenCookie::Ignored`]: a WebSocket from a page that CORS
    /// would not let send them). Ignored cookies are not forwarded: the app would otherwise
    /// admit a foreign page as the user whose browser it runs in.
    pub(crate) cookie: TokenCookie,
}

impl HookCall<'_> {
    /// The forwarded headers: those named, that the request has, and that count.
    fn forwarded<'n>(&self, names: &'n [HeaderName]) -> Vec<(&'n HeaderName, Option<String>)> {
        names
            .iter()
            .map(|name| {
                let counts = name != header::COOKIE || self.cookie == TokenCookie::Read;
                (name, joined_header(self.headers, name).filter(|_| counts))
            })
            .collect()
    }
}

/// The app's decision.
#[derive(Debug, Clone)]
enum Verdict {
    /// Admitted as this identity; the second field is the app's `expiresAt`, which bounds how
    /// long the answer is cached even where the connection tolerates expiry
    /// (`token_expiry = tolerate` leaves the identity without one).
    Admit(Identity, Option<SystemTime>),
    Refuse {
        status: StatusCode,
        message: String,
    },
}

impl Verdict {
    fn outcome(&self) -> AuthHookOutcome {
        match self {
            Verdict::Admit(..) => AuthHookOutcome::Admitted,
            Verdict::Refuse { .. } => AuthHookOutcome::Refused,
        }
    }

    fn into_result(self) -> Result<Identity, ApiError> {
        match self {
            Verdict::Admit(identity, _) => Ok(identity),
            Verdict::Refuse { status, message } => {
                Err(ApiError::new(status, "auth_hook_refused", message))
            }
        }
    }
}

struct Cached {
    until: Instant,
    verdict: Verdict,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The hook of one node: its client (a pool of connections to the app), its answer cache and
/// its bound on calls in flight.
pub(crate) struct AuthHook {
    url: Uri,
    /// `url` without its user info and query, which may hold credentials: for logs.
    shown_url: String,
    forward_headers: Vec<HeaderName>,
    timeout: Duration,
    cache_ttl: Option<Duration>,
    secret: Option<Secret>,
    token_expiry: TokenExpiry,
    client: HttpsClient,
    /// Answers by SHA-256 of the credentials. A `parking_lot` mutex: short sections, never
    /// held across an `.await`.
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    in_flight: Semaphore,
}

impl std::fmt::Debug for AuthHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthHook")
            .field("url", &self.shown_url)
            .field("forward_headers", &self.forward_headers)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the app's answer could not be used (logged; the subscriber gets `503`).
type Failure = String;

impl AuthHook {
    /// The hook configured in `config`, or `None` when it has no URL.
    pub(crate) fn new(config: &AuthHookConfig, token_expiry: TokenExpiry) -> Option<Self> {
        let url = config.url.clone()?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        // ring's default provider supports the default protocol versions.
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        let on_loopback = url
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .is_some_and(|h| {
                h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            });
        let shown_url = format!(
            "{}://{}{}{}",
            url.scheme_str().unwrap_or("http"),
            url.host().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path()
        );
        if config.secret.is_none() && !on_loopback {
            tracing::warn!(
                url = %shown_url,
                "the auth hook is not on loopback and has no auth_hook_secret: the app cannot \
                 tell Herald's calls from anyone else's (see docs/security.md)"
            );
        }
        Some(AuthHook {
            url,
            shown_url,
            forward_headers: config.forward_headers.clone(),
            timeout: config.timeout,
            cache_ttl: config.cache_ttl,
            secret: config.secret.clone(),
            token_expiry,
            client,
            cache: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(MAX_CALLS_IN_FLIGHT),
        })
    }

    /// Asks the app who this subscriber is (or takes a cached answer).
    ///
    /// # Errors
    /// `401`/`403 auth_hook_refused` when the app refuses; `503 auth_hook_unavailable` (with
    /// `Retry-After`) when it cannot be asked or its answer cannot be used.
    pub(crate) async fn ask(
        &self,
        call: HookCall<'_>,
        metrics: &Metrics,
    ) -> Result<Identity, ApiError> {
        let key = self.cache_ttl.map(|_| self.cache_key(&call));
        if let Some(verdict) = key.as_ref().and_then(|k| self.cached(k)) {
            metrics.auth_hook_answered(verdict.outcome(), true);
            return verdict.into_result();
        }
        let verdict = match self.fresh(&call).await {
            Ok(verdict) => verdict,
            Err(why) => {
                tracing::warn!(url = %self.shown_url, "auth hook unavailable: {why}");
                metrics.auth_hook_answered(AuthHookOutcome::Unavailable, false);
                return Err(unavailable());
            }
        };
        metrics.auth_hook_answered(verdict.outcome(), false);
        if let (Some(key), Some(ttl)) = (key, self.cache_ttl) {
            self.remember(key, &verdict, ttl);
        }
        verdict.into_result()
    }

    /// Asks the app, within the bound on calls in flight and the timeout.
    async fn fresh(&self, call: &HookCall<'_>) -> Result<Verdict, Failure> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(format!(
                "{MAX_CALLS_IN_FLIGHT} calls in flight already; refusing more"
            ));
        };
        match tokio::time::timeout(self.timeout, self.call(self.body(call))).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// The JSON body of a call.
    fn body(&self, call: &HookCall<'_>) -> Bytes {
        let mut headers = Map::new();
        for (name, value) in call.forwarded(&self.forward_headers) {
            if let Some(value) = value {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
        let mut query: Map<String, Value> = Map::new();
        for (key, value) in form_urlencoded::parse(call.query.unwrap_or("").as_bytes()) {
            match query.get_mut(&*key) {
                Some(Value::String(joined)) => {
                    joined.push(',');
                    joined.push_str(&value);
                }
                _ => {
                    query.insert(key.into_owned(), Value::String(value.into_owned()));
                }
            }
        }
        let body = serde_json::json!({
            "transport": call.transport.as_str(),
            "headers": headers,
            "query": query,
            "ip": call.ip.map(|ip| ip.to_string()),
        });
        // A `Value` always serializes.
        Bytes::from(serde_json::to_vec(&body).expect("JSON value serializes"))
    }

    /// One call to the app, and its answer read (bounded) and judged.
    async fn call(&self, body: Bytes) -> Result<Verdict, Failure> {
        let mut request = http::Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("herald/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(secret) = &self.secret {
            request = request.header("x-herald-signature", signature(secret, &body));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the {status} answer failed: {e}"))?
            .to_bytes();
        match status {
            StatusCode::OK => {
                admission(&answer, SystemTime::now(), self.token_expiry).map_err(|why| {
                    format!("the 200 answer is not {{\"userId\", \"channels\", …}}: {why}")
                })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Verdict::Refuse {
                status,
                message: refusal_message(&answer),
            }),
            other => Err(format!("the app answered {other}")),
        }
    }

    fn cache_key(&self, call: &HookCall<'_>) -> [u8; 32] {
        let mut hash = Sha256::new();
        for (name, value) in call.forwarded(&self.forward_headers) {
            hash.update(name.as_str());
            hash.update([0]);
            if let Some(value) = value {
                hash.update([1]);
                hash.update(value);
            }
            hash.update([0]);
        }
        let token = form_urlencoded::parse(call.query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        if let Some(token) = token {
            hash.update("token\0\x01");
            hash.update(token);
        }
        hash.finalize().into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Verdict> {
        let mut cache = self.cache.lock();
        let entry = cache.get(key)?;
        if entry.until > Instant::now() {
            return Some(entry.verdict.clone());
        }
        cache.remove(key);
        None
    }

    /// Keeps `verdict` for `ttl`, and an admission no longer than its `expiresAt`.
    fn remember(&self, key: [u8; 32], verdict: &Verdict, ttl: Duration) {
        let now = Instant::now();
        let mut until = now + ttl;
        if let Verdict::Admit(_, Some(at)) = verdict {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            until = until.min(now + left);
        }
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.retain(|_, c| c.until > now);
        }
        if cache.len() >= MAX_CACHE_ENTRIES {
            // Still full of live answers: one goes (whichever the map yields first).
            if let Some(victim) = cache.keys().next().copied() {
                cache.remove(&victim);
            }
        }
        cache.insert(
            key,
            Cached {
                until,
                verdict: verdict.clone(),
            },
        );
    }
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "auth_hook_unavailable",
        "the app that authorizes subscribers could not be asked; try again shortly",
    )
    .with_retry_after(RETRY_AFTER_SECS)
}

/// Every value of header `name`, joined (`; ` for cookies, `, ` otherwise); bytes that are not
/// UTF-8 are replaced.
fn joined_header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let separator = if name == header::COOKIE { "; " } else { ", " };
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(separator))
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`.
fn signature(secret: &Secret, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The message of a refusal: the answer's `message`, without control characters and cut to
/// [`MAX_MESSAGE_CHARS`]; a default when there is none.
fn refusal_message(answer: &[u8]) -> String {
    let given = serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let clean: String = given
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "the app refused this subscriber".to_owned()
    } else {
        clean.to_owned()
    }
}

/// Judges a `200` answer: the identity it admits, or a refusal when its `expiresAt` has
/// passed already.
fn admission(answer: &[u8], now: SystemTime, expiry: TokenExpiry) -> Result<Verdict, Failure> {
    let value: Value = serde_json::from_slice(answer).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("not a JSON object".into());
    };
    let user = match fields.get("userId") {
        None => return Err("no userId (give null to admit an anonymous subscriber)".into()),
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(UserId::new(s).map_err(|e| e.to_string())?),
        Some(_) => return Err("userId: must be a string or null".into()),
    };
    let username = match fields.get("username") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(validate_username(s).map_err(|e| e.to_string())?),
        Some(_) => return Err("username: must be a string".into()),
    };
    let grants = match fields.get("channels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|c| match c {
                Value::String(s) => s.parse::<ChannelPattern>().map_err(|e| e.to_string()),
                _ => Err("channels: must be an array of names or prefix* patterns".into()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("channels: must be an array of names or prefix* patterns".into()),
    };
    let expires_at = match fields.get("expiresAt") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(secs) => Some(crate::auth::expiry_time(secs)),
            None => return Err("expiresAt: must be Unix seconds (a whole number)".into()),
        },
        Some(_) => return Err("expiresAt: must be Unix seconds (a number)".into()),
    };
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(Verdict::Refuse {
            status: StatusCode::UNAUTHORIZED,
            message: "the app's admission has expired already (expiresAt is past)".into(),
        });
    }
    let metadata = match fields.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(object)) => {
            crate::hub::check_metadata(object).map_err(|e| e.to_string())?;
            Some(object.clone())
        }
        Some(_) => return Err("metadata: must be a JSON object".into()),
    };
    Ok(Verdict::Admit(
        Identity {
            user,
            username,
            expires_at: match expiry {
                TokenExpiry::Close => expires_at,
                TokenExpiry::Tolerate => None,
            },
            grants: Some(super::auth::Grants::new(grants, "by the app")),
            session_id: None,
            metadata,
        },
        expires_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(json: &str) -> Result<Verdict, Failure> {
        admission(json.as_bytes(), SystemTime::now(), TokenExpiry::Close)
    }

    #[test]
    fn an_answer_is_held_to_the_rules_of_claims() {
        let Ok(Verdict::Admit(id, _)) = admit(
            r#"{"userId": "alice", "username": "Alice", "channels": ["orders:*", "news"],
                "expiresAt": 99999999999, "metadata": {"plan": "pro"}}"#,
        ) else {
            panic!("admitted")
        };
        assert_eq!(id.user.unwrap().as_str(), "alice");
        assert_eq!(id.username.as_deref(), Some("Alice"));
        assert!(id.expires_at.is_some());
        assert_eq!(id.metadata.unwrap()["plan"], "pro");
        // With expiry tolerated the connection keeps no deadline, but the cache still does.
        let Ok(Verdict::Admit(id, at)) = admission(
            br#"{"userId": "a", "expiresAt": 99999999999}"#,
            SystemTime::now(),
            TokenExpiry::Tolerate,
        ) else {
            panic!("admitted")
        };
        assert!(id.expires_at.is_none());
        assert!(at.is_some());
        assert!(matches!(
            admit(r#"{"userId": null}"#),
            Ok(Verdict::Admit(Identity { user: None, .. }, _))
        ));
        for bad in [
            "{}",
            "[]",
            "garbage",
            r#"{"userId": 7}"#,
            r#"{"userId": ""}"#,
            r#"{"userId": "a\nb"}"#,
            r#"{"userId": "a", "username": "x\u0000"}"#,
            r#"{"userId": "a", "channels": ["a b"]}"#,
            r#"{"userId": "a", "channels": ["a*b"]}"#,
            r#"{"userId": "a", "channels": "a"}"#,
            r#"{"userId": "a", "expiresAt": -1}"#,
            r#"{"userId": "a", "expiresAt": "soon"}"#,
            r#"{"userId": "a", "metadata": [1]}"#,
        ] {
            assert!(admit(bad).is_err(), "{bad} was accepted");
        }
        let big = format!(
            r#"{{"userId": "a", "metadata": {{"x": "{}"}}}}"#,
            "y".repeat(crate::hub::MAX_METADATA_BYTES)
        );
        assert!(admit(&big).is_err());
        assert!(matches!(
            admit(r#"{"userId": "a", "expiresAt": 1}"#),
            Ok(Verdict::Refuse {
                status: StatusCode::UNAUTHORIZED,
                ..
            })
        ));
    }

    #[test]
    fn refusal_messages_are_cleaned_and_bounded() {
        assert_eq!(
            refusal_message(br#"{"message": "log in\r\nfirst"}"#),
            "log in  first"
        );
        assert_eq!(
            refusal_message(b"<html>"),
            "the app refused this subscriber"
        );
        let long = format!(r#"{{"message": "{}"}}"#, "é".repeat(500));
        assert_eq!(
            refusal_message(long.as_bytes()).chars().count(),
            MAX_MESSAGE_CHARS
        );
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_body() {
        // RFC 4231, test case 2.
        let secret = Secret::new("Jefe");
        assert_eq!(
            signature(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_body_forwards_only_the_named_headers_and_joins_repeated_parameters() {
        let config = AuthHookConfig {
            url: Some("http://127.0.0.1:9/auth".parse().unwrap()),
            ..AuthHookConfig::default()
        };
        let hook = AuthHook::new(&config, TokenExpiry::Close).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        let call = HookCall {
            transport: Transport::WebSocket,
            headers: &headers,
            query: Some("channels=a&channels=b,c&lastEventId=7"),
            ip: Some("203.0.113.7".parse().unwrap()),
            cookie: TokenCookie::Read,
        };
        let body: Value = serde_json::from_slice(&hook.body(&call)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "transport": "websocket",
                "headers": {"cookie": "a=1; b=2"},
                "query": {"channels": "a,b,c", "lastEventId": "7"},
                "ip": "203.0.113.7",
            })
        );
        // The cache key is the credentials: the same cookies with another query hit.
        let other = HookCall {
            query: Some("channels=z"),
            ip: None,
            ..call
        };
        assert_eq!(hook.cache_key(&call), hook.cache_key(&other));
        let mut headers2 = headers.clone();
        headers2.insert(header::COOKIE, "a=2".parse().unwrap());
        let third = HookCall {
            headers: &headers2,
            ..call
        };
        assert_ne!(hook.cache_key(&call), hook.cache_key(&third));
        // Cookies that do not count are neither sent nor part of the key.
        let foreign = HookCall {
            cookie: TokenCookie::Ignored,
            ..call
        };
        let body: Value = serde_json::from_slice(&hook.body(&foreign)).unwrap();
        assert_eq!(body["headers"], serde_json::json!({}));
        assert_ne!(hook.cache_key(&call), hook.cache_key(&foreign));
    }
}
