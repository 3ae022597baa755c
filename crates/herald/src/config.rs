//! Settings of the hub, its HTTP API and its server, with their documented defaults.
//!
//! The library never reads the environment. Library users build a [`Config`] in code, usually
//! from [`Config::default`], or from a [`Settings`] (the schema of every `herald serve` setting,
//! with one naming rule for its flag, environment variable and TOML key; see [`settings`]). The
//! `herald` binary merges flags, environment and an optional TOML file into one [`Settings`],
//! turns it into a [`Config`] ([`Settings::into_config`]), calls [`Config::validate`] and builds
//! the hub with [`Hub::from_config`](crate::Hub::from_config).

mod engine;
pub mod settings;

pub use engine::{EngineConfig, RedisConfig, StartError};
pub use settings::{ByteSize, HumanDuration, KeyEntry, LogFormat, Settings};

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{JwtVerifier, PublisherKey};
use crate::history::HistoryLimits;
use crate::idempotency::IdempotencyLimits;
use crate::target::ChannelPattern;

/// Default interval between heartbeats on every connection.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// Default interval of the sweep that removes stale and timed-out connections.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(30);
/// Default `retry:` hint sent at the start of every stream.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(3);
/// Default most connections the hub holds at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default most connections one user may hold at once (tabs, devices).
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 32;
/// Default most frames queued for one connection before it counts as a slow consumer.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default most bytes queued for one connection before it counts as a slow consumer.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 1024 * 1024;
/// Default window over which shutdown spreads clients' reconnects (the `retry:` jitter).
pub const DEFAULT_SHUTDOWN_RECONNECT_WINDOW: Duration = Duration::from_secs(10);
/// Default most events in the replay window.
pub const DEFAULT_HISTORY_SIZE: usize = 10_000;
/// Default oldest event in the replay window: a laptop that slept for less than this resumes.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(3600);
/// Default most bytes of encoded events in the replay window.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Default most events one resume may replay; a client that missed more gets `reset`
/// (`replay_too_large`) and refetches its state. The same as the outbox's frame limit
/// ([`DEFAULT_QUEUE_CAPACITY`], rounded): the replay is queued on top of the outbox limits, so a
/// resuming connection holds at most about twice its outbox while it catches up.
pub const DEFAULT_MAX_REPLAY_EVENTS: usize = 1000;
/// Default most bytes of events one resume may replay: the outbox's byte limit
/// ([`DEFAULT_QUEUE_MAX_BYTES`]).
pub const DEFAULT_MAX_REPLAY_BYTES: usize = 1024 * 1024;
/// Default largest publish body, in bytes.
pub const DEFAULT_MAX_BODY_SIZE: usize = 64 * 1024;
/// Default largest body of a batch publish (`POST /api/sse/messages`), in bytes.
pub const DEFAULT_MAX_BATCH_BODY_SIZE: usize = 1024 * 1024;
/// Default most events in one batch publish.
pub const DEFAULT_MAX_BATCH_LEN: usize = 1000;
/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default longest time to receive request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest time to receive a request body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest request head in bytes.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 16 * 1024;
/// Default interval of the server's WebSocket pings (`GET /api/ws`). Under the 30 to 60 s after
/// which common proxies and load balancers drop an idle connection.
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Default time a WebSocket peer has to answer a ping (with its pong, or any frame) before it
/// counts as dead and is dropped.
pub const DEFAULT_WS_PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// Default longest wait for the auth hook's answer ([`AuthHookConfig::timeout`]): a subscriber
/// waits this long at most before it gets `503 auth_hook_unavailable`.
pub const DEFAULT_AUTH_HOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Default headers of the subscribe request forwarded to the auth hook
/// ([`AuthHookConfig::forward_headers`]): the cookies, which carry the app's session.
pub const DEFAULT_AUTH_HOOK_FORWARD_HEADERS: &[&str] = &["cookie"];

/// Certificate chain and private key files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
}

/// Default time graceful shutdown waits for connections to finish before exiting anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How heartbeats look on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatStyle {
    /// An event `heartbeat` with `{"ts": <ms since epoch>}`: browser code can see it and use it
    /// as a liveness signal.
    #[default]
    Event,
    /// A comment line (`: heartbeat`): invisible to `EventSource` listeners, keeps proxies happy.
    Comment,
}

/// Behaviour of the hub core.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Interval between heartbeats ([`DEFAULT_HEARTBEAT_INTERVAL`]).
    pub heartbeat_interval: Duration,
    /// What a heartbeat looks like.
    pub heartbeat_style: HeartbeatStyle,
    /// Interval of the stale-connection sweep ([`DEFAULT_CLEANUP_INTERVAL`]).
    pub cleanup_interval: Duration,
    /// Close connections older than this (with reason `timeout`); `None` keeps them open.
    pub connection_timeout: Option<Duration>,
    /// Close connections that were idle this long (with reason `idle`): nothing but heartbeats
    /// was sent to them and nothing was received from them (WebSocket pongs and frames,
    /// Socket.IO packets). `None` (the default) keeps idle connections. Checked at every sweep
    /// (`cleanup_interval`), from a flag each connection sets when it is active: no timer per
    /// connection.
    pub idle_timeout: Option<Duration>,
    /// The `retry:` hint at the start of every stream ([`DEFAULT_RETRY`]).
    pub retry: Duration,
    /// Most connections at once ([`DEFAULT_MAX_CONNECTIONS`]); more get `503`.
    pub max_connections: usize,
    /// Most connections of one user ([`DEFAULT_MAX_CONNECTIONS_PER_USER`]); more get `429`.
    pub max_connections_per_user: usize,
    /// Most connections from one IP address; more get `429`. `None` (the default): no limit.
    pub max_connections_per_ip: Option<usize>,
    /// Most frames queued per connection ([`DEFAULT_QUEUE_CAPACITY`]).
    pub queue_capacity: usize,
    /// Most bytes queued per connection ([`DEFAULT_QUEUE_MAX_BYTES`]).
    pub queue_max_bytes: usize,
    /// On shutdown, clients are told to reconnect after a random delay of up to this much
    /// ([`DEFAULT_SHUTDOWN_RECONNECT_WINDOW`]), so that a deploy does not bring them all back in
    /// the same instant.
    pub shutdown_reconnect_window: Duration,
    /// The replay window for `Last-Event-ID` resumes ([`DEFAULT_HISTORY_SIZE`] events,
    /// [`DEFAULT_HISTORY_TTL`], [`DEFAULT_HISTORY_MAX_BYTES`]); `max_events: 0` turns it off.
    pub history: HistoryLimits,
    /// Most events one resume may replay ([`DEFAULT_MAX_REPLAY_EVENTS`]); a client that missed
    /// more gets `reset` (`replay_too_large`).
    pub max_replay_events: usize,
    /// Most bytes of events one resume may replay ([`DEFAULT_MAX_REPLAY_BYTES`]).
    pub max_replay_bytes: usize,
    /// Channels whose subscribers get `presence:join` and `presence:leave` events (none by
    /// default).
    pub presence_channels: Vec<ChannelPattern>,
    /// How long, and how many, publish idempotency keys are remembered (10 minutes, 100,000
    /// keys on the memory engine).
    pub idempotency: IdempotencyLimits,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_style: HeartbeatStyle::Event,
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
            connection_timeout: None,
            idle_timeout: None,
            retry: DEFAULT_RETRY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            max_connections_per_ip: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            shutdown_reconnect_window: DEFAULT_SHUTDOWN_RECONNECT_WINDOW,
            history: HistoryLimits {
                max_events: DEFAULT_HISTORY_SIZE,
                max_age: DEFAULT_HISTORY_TTL,
                max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            },
            max_replay_events: DEFAULT_MAX_REPLAY_EVENTS,
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
            presence_channels: Vec::new(),
            idempotency: IdempotencyLimits::default(),
        }
    }
}

/// A secret (a publisher key, a JWT secret, a Redis URL with its password) whose `Debug` output
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A rate: `per_second` on average, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `20/s` (burst = 2 × rate), or `20/s:100` (burst 100).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rate like 20/s or 20/s:100");
        let (rate, burst) = match s.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let per_second: u32 = rate
            .trim()
            .strip_suffix("/s")
            .ok_or_else(bad)?
            .trim()
            .parse()
            .map_err(|_| bad())?;
        let burst = match burst {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => per_second.saturating_mul(2),
        };
        if per_second == 0 || burst == 0 {
            return Err(format!("{s:?}: a rate must be positive"));
        }
        Ok(Rate { per_second, burst })
    }
}

/// What happens when a subscriber's token expires while it is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum TokenExpiry {
    /// Close the stream with `disconnected` (reason `token_expired`); the client reconnects
    /// with a fresh token.
    #[default]
    Close,
    /// Keep the stream open: the token was checked when it connected.
    Tolerate,
}

/// Behaviour of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Keys that publish and admin endpoints accept as `Authorization: Bearer <key>`. With none
    /// (and no JWT keys) those endpoints are open, which [`Config::validate`] allows on loopback
    /// only.
    pub publisher_keys: Vec<PublisherKey>,
    /// Verifies subscribers' JWTs (and publishers' tokens with a `publish` claim). When set,
    /// identity comes from tokens only.
    pub jwt: Option<std::sync::Arc<JwtVerifier>>,
    /// Cookie that may carry a subscriber's token ([`crate::auth::DEFAULT_TOKEN_COOKIE`]).
    pub token_cookie: String,
    /// With JWTs on: accept subscribers without a token, as anonymous connections.
    pub allow_anonymous: bool,
    /// Channels anonymous connections may join (patterns); none by default.
    pub anonymous_channels: Vec<ChannelPattern>,
    /// What to do when a token expires mid-stream.
    pub token_expiry: TokenExpiry,
    /// Proxies whose `X-Forwarded-For` is believed: for requests from these addresses, the
    /// client address (for per-IP limits) is the last forwarded address that is not itself a
    /// trusted proxy. Empty by default: the peer address is the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Longest time a client may take to send a request body ([`DEFAULT_BODY_READ_TIMEOUT`]);
    /// slower gets `408`.
    pub body_read_timeout: Duration,
    /// New SSE connections per second per client IP; `None`: unlimited.
    pub connect_rate_per_ip: Option<Rate>,
    /// Events published per second per publisher (key or token); a batch costs one per event.
    /// `None`: unlimited.
    pub publish_rate_per_key: Option<Rate>,
    /// Resumes (subscribes with a `Last-Event-ID`) per second per client IP; more get `429`.
    /// `None` (the default): unlimited.
    pub resume_rate_per_ip: Option<Rate>,
    /// Whether subscribers may name themselves with `?userId=` and `?username=`. True in
    /// [`HttpConfig::default`]; [`Settings::into_config`] (and so the `herald` binary) turns it
    /// on by default only when it listens on loopback with neither publisher keys nor trusted
    /// proxies (behind a proxy, or once publishing is keyed, anyone who can reach the hub could
    /// claim any user id).
    pub identity_from_query: bool,
    /// Largest publish body ([`DEFAULT_MAX_BODY_SIZE`]); larger gets `413`.
    pub max_body_size: usize,
    /// Largest batch publish body ([`DEFAULT_MAX_BATCH_BODY_SIZE`]).
    pub max_batch_body_size: usize,
    /// Most events in one batch ([`DEFAULT_MAX_BATCH_LEN`]).
    pub max_batch_len: usize,
    /// Origins allowed to call Herald from a browser on another origin (CORS), e.g.
    /// `https://app.example.com`; `*` allows any origin (without credentials). Empty (the
    /// default) sends no CORS headers: only same-origin pages can read the streams.
    pub cors_origins: Vec<String>,
    /// Let allowed origins send credentials (cookies) with their requests. Needs an explicit
    /// origin list, not `*`.
    pub cors_credentials: bool,
    /// Origins of browser pages that may call publish and admin endpoints, besides the hub's
    /// own (e.g. `https://admin.example.com`). A request carrying any other `Origin` gets `403
    /// origin_not_allowed`; requests without `Origin` (servers, curl) are not affected. Empty
    /// by default. [`cors_origins`](Self::cors_origins) never grants publishing, not even `*`.
    pub publish_origins: Vec<String>,
    /// Interval of the server's pings on every WebSocket ([`DEFAULT_WS_PING_INTERVAL`]).
    pub ws_ping_interval: Duration,
    /// How long a WebSocket peer has to answer a ping before it is dropped as dead
    /// ([`DEFAULT_WS_PONG_TIMEOUT`]).
    pub ws_pong_timeout: Duration,
    /// Inbound webhook sources (`POST /api/webhooks/{name}`), from the TOML file's
    /// `[[webhooks]]` tables. None by default.
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    /// Asking the app who a subscriber is (`--auth-hook-url`); off unless its `url` is set.
    pub auth_hook: AuthHookConfig,
    /// The Mercure hub at `/.well-known/mercure`; `None` (the default) leaves it off.
    pub mercure: Option<crate::mercure::MercureConfig>,
}

/// The auth hook: on each subscribe without a JWT, Herald POSTs the subscriber's credentials
/// (the forwarded headers, the query, the address) to the app at `url`, and the app's answer
/// decides who it is and which channels it may join (see `http::auth_hook`).
#[derive(Debug, Clone)]
pub struct AuthHookConfig {
    /// Where to POST; `None` (the default) turns the hook off. `http://` or `https://`.
    pub url: Option<http::Uri>,
    /// Request headers forwarded to the app, lowercase
    /// ([`DEFAULT_AUTH_HOOK_FORWARD_HEADERS`]).
    pub forward_headers: Vec<http::HeaderName>,
    /// Longest wait for the whole answer ([`DEFAULT_AUTH_HOOK_TIMEOUT`]).
    pub timeout: Duration,
    /// How long an answer is reused for the same credentials; `None` (the default) asks the
    /// app on every connect.
    pub cache_ttl: Option<Duration>,
    /// Key of the `X-Herald-Signature` HMAC-SHA256 over each call's body; `None` sends no
    /// signature.
    pub secret: Option<Secret>,
}

impl Default for AuthHookConfig {
    fn default() -> Self {
        AuthHookConfig {
            url: None,
            forward_headers: DEFAULT_AUTH_HOOK_FORWARD_HEADERS
                .iter()
                .map(|h| http::HeaderName::from_static(h))
                .collect(),
            timeout: DEFAULT_AUTH_HOOK_TIMEOUT,
            cache_ttl: None,
            secret: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            publisher_keys: Vec::new(),
            jwt: None,
            token_cookie: crate::auth::DEFAULT_TOKEN_COOKIE.into(),
            allow_anonymous: false,
            anonymous_channels: Vec::new(),
            token_expiry: TokenExpiry::Close,
            trusted_proxies: Vec::new(),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            connect_rate_per_ip: None,
            publish_rate_per_key: None,
            resume_rate_per_ip: None,
            identity_from_query: true,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_batch_body_size: DEFAULT_MAX_BATCH_BODY_SIZE,
            max_batch_len: DEFAULT_MAX_BATCH_LEN,
            cors_origins: Vec::new(),
            cors_credentials: false,
            publish_origins: Vec::new(),
            ws_ping_interval: DEFAULT_WS_PING_INTERVAL,
            ws_pong_timeout: DEFAULT_WS_PONG_TIMEOUT,
            webhooks: Vec::new(),
            auth_hook: AuthHookConfig::default(),
            mercure: None,
        }
    }
}

/// Everything `herald serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on ([`DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// How long graceful shutdown waits for connections ([`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub shutdown_timeout: Duration,
    /// Bind with `SO_REUSEPORT`, so that several processes share the port.
    pub reuse_port: bool,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Longest time a client may take to send its request headers ([`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes ([`DEFAULT_MAX_HEADER_SIZE`]).
    pub max_header_size: usize,
    /// Keep the replay window on disk in this directory, so that a restarted hub still resumes
    /// its clients. `None` (the default) keeps it in memory only. Memory engine only.
    pub data_dir: Option<std::path::PathBuf>,
    /// Where events travel: this process only (the default) or a Redis cluster.
    pub engine: EngineConfig,
    /// Hub behaviour.
    pub hub: HubConfig,
    /// HTTP API behaviour.
    pub http: HttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // The constant is a valid address literal.
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            reuse_port: false,
            tls: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            data_dir: None,
            engine: EngineConfig::Memory,
            hub: HubConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// A configuration that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Checks the settings against each other.
    ///
    /// # Errors
    /// - listening on a non-loopback address with neither a publisher key nor JWT verification
    ///   (anyone on the network could publish to your users);
    /// - zero intervals, capacities or limits;
    /// - a `data_dir` with a Redis engine.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let publishing_secured = !self.http.publisher_keys.is_empty() || self.http.jwt.is_some();
        if !self.listen.ip().is_loopback() && !publishing_secured {
            return Err(ConfigError(format!(
                "refusing to listen on {} without a publisher key: anyone who can reach it could \
                 publish to your users. Set HERALD_PUBLISHER_KEY (or --publisher-key), or JWT \
                 verification (publishers then need a token with a publish claim), or listen \
                 on 127.0.0.1",
                self.listen
            )));
        }
        for key in &self.http.publisher_keys {
            if key.key.expose().len() < 16 {
                return Err(ConfigError(format!(
                    "publisher key {:?} must be at least 16 characters long",
                    key.name
                )));
            }
        }
        let mut names: Vec<&str> = self
            .http
            .publisher_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError("publisher key names must be unique".into()));
        }
        if self.http.jwt.as_ref().is_some_and(|j| !j.has_keys()) {
            return Err(ConfigError(
                "JWT authentication is on but has no key".into(),
            ));
        }
        if self.max_header_size < 1024 {
            return Err(ConfigError(
                "max_header_size must be at least 1024 bytes".into(),
            ));
        }
        for origin in &self.http.cors_origins {
            if origin == "*" {
                if self.http.cors_credentials {
                    return Err(ConfigError(
                        "cors_credentials needs an explicit list of origins, not *".into(),
                    ));
                }
                continue;
            }
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && origin.is_ascii()
                && !origin.contains(char::is_whitespace);
            if !valid {
                return Err(ConfigError(format!(
                    "cors_origins: {origin:?} is not an origin like https://app.example.com"
                )));
            }
        }
        for origin in &self.http.publish_origins {
            if !crate::http::origin::is_valid_origin(origin) {
                return Err(ConfigError(format!(
                    "publish_origins: {origin:?} is not an origin like https://admin.example.com \
                     (`*` is not allowed: list the pages that may publish)"
                )));
            }
        }
        if let Some(m) = &self.http.mercure {
            if m.publisher_key.is_none() {
                return Err(ConfigError(
                    "mercure is on but has no publisher key: set --mercure-publisher-jwt-key \
                     (MERCURE_PUBLISHER_JWT_KEY)"
                        .into(),
                ));
            }
            if m.subscriber_key.is_none() && !m.anonymous {
                return Err(ConfigError(
                    "mercure is on but no subscriber could connect: set \
                     --mercure-subscriber-jwt-key (MERCURE_SUBSCRIBER_JWT_KEY) or \
                     --mercure-anonymous"
                        .into(),
                ));
            }
        }
        let hub = &self.hub;
        for (name, d) in [
            ("heartbeat_interval", hub.heartbeat_interval),
            ("cleanup_interval", hub.cleanup_interval),
            ("ws_ping_interval", self.http.ws_ping_interval),
            ("ws_pong_timeout", self.http.ws_pong_timeout),
        ] {
            if d < Duration::from_millis(10) {
                return Err(ConfigError(format!("{name} must be at least 10ms")));
            }
        }
        if hub.connection_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError(
                "connection_timeout must be positive (leave it unset to keep connections)".into(),
            ));
        }
        if hub.idle_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError(
                "idle_timeout must be positive (leave it unset to keep idle connections)".into(),
            ));
        }
        for (name, v) in [
            ("max_connections", hub.max_connections),
            ("max_connections_per_user", hub.max_connections_per_user),
            ("queue_capacity", hub.queue_capacity),
            ("queue_max_bytes", hub.queue_max_bytes),
            ("max_replay_events", hub.max_replay_events),
            ("max_replay_bytes", hub.max_replay_bytes),
            ("max_body_size", self.http.max_body_size),
            ("max_batch_body_size", self.http.max_batch_body_size),
            ("max_batch_len", self.http.max_batch_len),
        ] {
            if v == 0 {
                return Err(ConfigError(format!("{name} must be at least 1")));
            }
        }
        self.validate_webhooks()?;
        self.http.auth_hook.validate()?;
        if self.data_dir.is_some() && self.engine != EngineConfig::Memory {
            return Err(ConfigError(engine::DATA_DIR_WITH_REDIS.into()));
        }
        Ok(())
    }
}

impl Config {
    /// Webhooks de-duplicate deliveries through the idempotency window: it must be on, and at
    /// least as long as every signed-timestamp tolerance (else a replayed delivery, still
    /// within its tolerance but past the window, would publish again).
    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let window = self.hub.idempotency.window;
        for w in &self.http.webhooks {
            if window.is_zero() || self.hub.idempotency.max_keys == 0 {
                return Err(ConfigError(format!(
                    "webhooks {:?}: webhooks need the idempotency window to de-duplicate                      deliveries: idempotency_window and idempotency_max_keys must be positive",
                    w.name
                )));
            }
            if w.scheme.signs_timestamp() && w.tolerance > window {
                return Err(ConfigError(format!(
                    "webhooks {:?}: tolerance: {} is longer than idempotency_window ({}): a                      delivery replayed after the window, still within the tolerance, would                      publish again; shorten the tolerance or lengthen the window",
                    w.name,
                    humantime::format_duration(w.tolerance),
                    humantime::format_duration(window)
                )));
            }
        }
        Ok(())
    }
}

impl AuthHookConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let scheme_ok = matches!(url.scheme_str(), Some("http" | "https"));
        if !scheme_ok || url.host().is_none_or(str::is_empty) {
            return Err(ConfigError(format!(
                "auth_hook_url: {url} is not an http:// or https:// URL with a host"
            )));
        }
        if self.timeout < Duration::from_millis(10) {
            return Err(ConfigError(
                "auth_hook_timeout must be at least 10ms".into(),
            ));
        }
        if self.secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
            return Err(ConfigError(
                "auth_hook_secret must be at least 16 characters long (32 random bytes advised)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn the_auth_hook_needs_an_http_url_and_a_real_secret() {
        let hook = |url: &str, secret: Option<&str>| {
            let mut c = Config::default();
            c.http.auth_hook.url = Some(url.parse().unwrap());
            c.http.auth_hook.secret = secret.map(Secret::new);
            c.validate()
        };
        hook("http://127.0.0.1:3000/api/herald/auth", None).unwrap();
        hook("https://app.example.com/auth", Some("0123456789abcdef")).unwrap();
        assert!(hook("ftp://app.example.com/auth", None).is_err());
        assert!(hook("/api/herald/auth", None).is_err());
        let err = hook("https://app.example.com/auth", Some("short")).unwrap_err();
        assert!(err.0.contains("auth_hook_secret"), "{err}");
    }

    #[test]
    fn public_listen_needs_a_key() {
        let mut c = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.0.contains("publisher key"), "{err}");
        c.http.publisher_keys = vec![key("0123456789abcdef")];
        c.validate().unwrap();
        c.http.publisher_keys = vec![key("short")];
        assert!(c.validate().is_err());
    }

    fn key(k: &str) -> PublisherKey {
        PublisherKey {
            name: "k".into(),
            key: Secret::new(k),
            publish: crate::auth::PublishScope::Any,
            admin: true,
        }
    }

    #[test]
    fn publish_origins_must_be_origins() {
        let mut c = Config::default();
        c.http.publish_origins = vec!["https://admin.example.com".into()];
        c.validate().unwrap();
        for bad in [
            "*",
            "https://admin.example.com/",
            "admin.example.com",
            "null",
        ] {
            c.http.publish_origins = vec![bad.into()];
            let err = c.validate().unwrap_err();
            assert!(err.0.contains("publish_origins"), "{bad}: {err}");
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            "20/s".parse::<Rate>().unwrap(),
            Rate {
                per_second: 20,
                burst: 40
            }
        );
        assert_eq!(
            "5/s:100".parse::<Rate>().unwrap(),
            Rate {
                per_second: 5,
                burst: 100
            }
        );
        assert!("0/s".parse::<Rate>().is_err());
        assert!("20".parse::<Rate>().is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
