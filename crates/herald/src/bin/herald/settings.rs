//! Configuration of `herald serve`: command-line flags, then environment variables, then an
//! optional TOML file, then the library's documented defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Deserialize;

use herald::auth::{JwtVerifier, PublishScope, PublisherKey};
use herald::config::{self, Config, HeartbeatStyle, Rate, Secret, TokenExpiry};
use herald::target::ChannelPattern;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenExpiryArg {
    Close,
    Tolerate,
}

/// A `[[publisher_keys]]` entry of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    key: String,
    /// May publish (to any target, or only to `channels`). Default true.
    #[serde(default = "yes")]
    publish: bool,
    /// Restricts publishing to these channels (names or `prefix*`).
    channels: Option<Vec<String>>,
    /// May use admin endpoints. Default false.
    #[serde(default)]
    admin: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HeartbeatArg {
    Event,
    Comment,
}

/// Every setting of `herald serve`. Durations take `15s`, `500ms`, `2m` (a bare number is
/// milliseconds); sizes take bytes or `64KiB`, `1MiB`.
#[derive(Debug, Args)]
#[command(
    after_help = "Every setting can also be given in the TOML file of --config, under its \
    snake_case name (e.g. heartbeat_interval = \"15s\"). Precedence: flag, then environment, then \
    file, then default."
)]
pub(crate) struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on. Without a publisher key only loopback addresses are allowed.
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "HERALD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Key that publish and admin endpoints require as `Authorization: Bearer <key>` (at least
    /// 16 characters). Required to listen on a non-loopback address.
    #[arg(long, env = "HERALD_PUBLISHER_KEY", hide_env_values = true)]
    publisher_key: Option<String>,
    /// More publisher keys, comma-separated `name=key` pairs (each may publish and use admin
    /// endpoints). Several keys let you rotate one without downtime. Finer scopes: the TOML
    /// file's [[publisher_keys]].
    #[arg(
        long,
        env = "HERALD_PUBLISHER_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    publisher_keys: Option<Vec<String>>,
    /// HS256 secret for subscriber JWTs (at least 32 bytes). Turns token authentication on.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM public key (RSA for RS256, P-256 EC for ES256) for subscriber JWTs.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// JWKS file ({"keys": [...]}) for subscriber JWTs; a token's kid picks the key.
    #[arg(long, env = "HERALD_JWKS_FILE")]
    jwks_file: Option<PathBuf>,
    /// Required `iss` of tokens.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Required `aud` of tokens.
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Clock leeway for `exp`/`nbf`. [default: 5s]
    #[arg(long, env = "HERALD_JWT_LEEWAY", value_parser = parse_duration)]
    jwt_leeway: Option<Duration>,
    /// Cookie that may carry the subscriber token. [default: herald_token]
    #[arg(long, env = "HERALD_TOKEN_COOKIE")]
    token_cookie: Option<String>,
    /// With tokens on, accept subscribers without a token as anonymous connections. [default:
    /// false]
    #[arg(long, env = "HERALD_ALLOW_ANONYMOUS")]
    allow_anonymous: Option<bool>,
    /// Channels (names or `prefix*`) anonymous connections may join. [default: none]
    #[arg(long, env = "HERALD_ANONYMOUS_CHANNELS", value_delimiter = ',')]
    anonymous_channels: Option<Vec<String>>,
    /// When a token expires mid-stream: `close` (disconnected, reason token_expired) or
    /// `tolerate`. [default: close]
    #[arg(long, env = "HERALD_TOKEN_EXPIRY")]
    token_expiry: Option<TokenExpiryArg>,
    /// New connections per second per client IP, e.g. `20/s` or `20/s:100` (burst). [default:
    /// unlimited]
    #[arg(long, env = "HERALD_CONNECT_RATE_PER_IP")]
    connect_rate_per_ip: Option<Rate>,
    /// Events published per second per publisher key, e.g. `1000/s` (a batch costs one per
    /// event; a batch larger than the burst gets 413). [default: unlimited]
    #[arg(long, env = "HERALD_PUBLISH_RATE_PER_KEY")]
    publish_rate_per_key: Option<Rate>,
    /// Resumes (subscribes with a Last-Event-ID) per second per client IP, e.g. `10/s`; more
    /// get 429. [default: unlimited]
    #[arg(long, env = "HERALD_RESUME_RATE_PER_IP")]
    resume_rate_per_ip: Option<Rate>,
    /// Proxies (IP addresses, comma-separated) whose X-Forwarded-For header gives the client
    /// address for per-IP limits. [default: none]
    #[arg(long, env = "HERALD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Option<Vec<std::net::IpAddr>>,
    /// Let several herald processes listen on the same port (SO_REUSEPORT); the kernel spreads
    /// connections over them. [default: false]
    #[arg(long, env = "HERALD_REUSE_PORT")]
    reuse_port: bool,
    /// Most open connections per client IP. [default: unlimited]
    #[arg(long, env = "SSE_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// PEM certificate chain: serve HTTPS with HTTP/2 and HTTP/1.1 (needs --tls-key).
    #[arg(long, env = "HERALD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Longest time to receive request headers. [default: 10s]
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    header_read_timeout: Option<Duration>,
    /// Longest time to receive a request body. [default: 10s]
    #[arg(long, env = "HERALD_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    body_read_timeout: Option<Duration>,
    /// Largest request head (request line + headers). [default: 16KiB]
    #[arg(long, env = "HERALD_MAX_HEADER_SIZE", value_parser = parse_size)]
    max_header_size: Option<usize>,
    /// Interval between heartbeats. [default: 15s]
    #[arg(long, env = "SSE_HEARTBEAT_INTERVAL", value_parser = parse_duration)]
    heartbeat_interval: Option<Duration>,
    /// Heartbeat as an event `heartbeat` ({"ts": ms}) or as a comment line. [default: event]
    #[arg(long, env = "SSE_HEARTBEAT_STYLE")]
    heartbeat_style: Option<HeartbeatArg>,
    /// Interval of the sweep that removes dead and timed-out connections. [default: 30s]
    #[arg(long, env = "SSE_CLEANUP_INTERVAL", value_parser = parse_duration)]
    cleanup_interval: Option<Duration>,
    /// Close connections older than this (clients reconnect); 0 or unset keeps them. Checked at
    /// every sweep.
    #[arg(long, env = "SSE_CONNECTION_TIMEOUT", value_parser = parse_duration)]
    connection_timeout: Option<Duration>,
    /// The `retry:` reconnection hint sent to clients. [default: 3s]
    #[arg(long, env = "SSE_RETRY", value_parser = parse_duration)]
    retry: Option<Duration>,
    /// Most connections at once; more get 503. [default: 10000]
    #[arg(long, env = "SSE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most connections per user; more get 429. [default: 32]
    #[arg(long, env = "SSE_MAX_CONNECTIONS_PER_USER")]
    max_connections_per_user: Option<usize>,
    /// Most frames queued for one connection before it is evicted as too slow. [default: 1024]
    #[arg(long, env = "SSE_QUEUE_CAPACITY")]
    queue_capacity: Option<usize>,
    /// Most bytes queued for one connection before it is evicted as too slow. [default: 1MiB]
    #[arg(long, env = "SSE_QUEUE_MAX_BYTES", value_parser = parse_size)]
    queue_max_bytes: Option<usize>,
    /// Largest publish body; larger gets 413. [default: 64KiB]
    #[arg(long, env = "HERALD_MAX_BODY_SIZE", value_parser = parse_size)]
    max_body_size: Option<usize>,
    /// Largest body of POST /api/sse/messages. [default: 1MiB]
    #[arg(long, env = "HERALD_MAX_BATCH_BODY_SIZE", value_parser = parse_size)]
    max_batch_body_size: Option<usize>,
    /// Most events in one batch. [default: 1000]
    #[arg(long, env = "HERALD_MAX_BATCH_LEN")]
    max_batch_len: Option<usize>,
    /// Accept `userId`/`username` from the subscribe query string. [default: true when
    /// listening on loopback, false otherwise]
    #[arg(long, env = "HERALD_IDENTITY_FROM_QUERY")]
    identity_from_query: Option<bool>,
    /// How long shutdown waits for connections to finish. [default: 10s]
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    shutdown_timeout: Option<Duration>,
    /// On shutdown, clients are told to reconnect after a random delay within this window, so
    /// they do not all come back at once. [default: 10s]
    #[arg(long, env = "HERALD_SHUTDOWN_RECONNECT_WINDOW", value_parser = parse_duration)]
    shutdown_reconnect_window: Option<Duration>,
    /// Most events kept for Last-Event-ID replay; 0 turns replay off. [default: 10000]
    #[arg(long, env = "HERALD_HISTORY_SIZE")]
    history_size: Option<usize>,
    /// Oldest event kept for replay. [default: 1h]
    #[arg(long, env = "HERALD_HISTORY_TTL", value_parser = parse_duration)]
    history_ttl: Option<Duration>,
    /// Most bytes of events kept for replay. [default: 64MiB]
    #[arg(long, env = "HERALD_HISTORY_MAX_BYTES", value_parser = parse_size)]
    history_max_bytes: Option<usize>,
    /// Most events one resume may replay; a client that missed more gets `reset`
    /// (replay_too_large). [default: 1000]
    #[arg(long, env = "HERALD_MAX_REPLAY_EVENTS")]
    max_replay_events: Option<usize>,
    /// Most bytes of events one resume may replay. [default: 1MiB]
    #[arg(long, env = "HERALD_MAX_REPLAY_BYTES", value_parser = parse_size)]
    max_replay_bytes: Option<usize>,
    /// Keep the replay window on disk in this directory (an embedded database), so that clients
    /// resume across a restart. [default: memory only]
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// How long a publish's idempotency key (`Idempotency-Key` header or `idempotencyKey`
    /// field) is remembered: a retry with the same key within it publishes nothing and gets the
    /// first answer again. `0s` turns the check off. [default: 10m]
    #[arg(long, env = "HERALD_IDEMPOTENCY_WINDOW", value_parser = parse_duration)]
    idempotency_window: Option<Duration>,
    /// Most idempotency keys the memory engine remembers at once; beyond, the oldest are
    /// forgotten early. [default: 100000]
    #[arg(long, env = "HERALD_IDEMPOTENCY_MAX_KEYS")]
    idempotency_max_keys: Option<usize>,
    /// Channels whose subscribers get presence:join / presence:leave events: comma-separated
    /// names or prefix patterns (`room:*`; `*` for all). [default: none]
    #[arg(long, env = "HERALD_PRESENCE_CHANNELS", value_delimiter = ',')]
    presence_channels: Option<Vec<String>>,
    /// Where events travel: `memory` (this process only) or
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]` to run several nodes as one hub, sharing events,
    /// replay window, presence and commands through Redis (see docs/deploy.md). [default:
    /// memory]
    #[arg(long, env = "HERALD_REDIS_URL", hide_env_values = true)]
    engine: Option<String>,
    /// Prefix of Herald's Redis keys and channels; every node of one cluster uses the same.
    /// [default: herald]
    #[arg(long, env = "HERALD_REDIS_PREFIX")]
    redis_prefix: Option<String>,
    /// This node's id in the cluster (1 to 64 of A-Z a-z 0-9 _ . -), unique per process.
    /// [default: <hostname>-<pid>-<random>]
    #[arg(long, env = "HERALD_NODE_ID")]
    node_id: Option<String>,
    /// Origins allowed to use Herald from browser pages on other origins (CORS), comma-separated
    /// (`https://app.example.com`), or `*` for any. [default: none, same-origin only]
    #[arg(long, env = "HERALD_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Option<Vec<String>>,
    /// Allow credentials (cookies) on cross-origin requests; needs explicit origins.
    /// [default: false]
    #[arg(long, env = "HERALD_CORS_CREDENTIALS")]
    cors_credentials: Option<bool>,
    /// Origins of browser pages that may call publish and admin endpoints besides the hub's own,
    /// comma-separated (`https://admin.example.com`). Requests with any other Origin header get
    /// 403 origin_not_allowed; requests without one (servers, curl) are not affected.
    /// --cors-origins never grants publishing. [default: none]
    #[arg(long, env = "HERALD_PUBLISH_ORIGINS", value_delimiter = ',')]
    publish_origins: Option<Vec<String>>,
    /// Log format. Log levels come from HERALD_LOG or RUST_LOG (e.g. `info,herald=debug`).
    /// [default: text]
    #[arg(long, env = "HERALD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

/// The TOML file: the same settings, snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    publisher_key: Option<String>,
    publisher_keys: Option<Vec<KeyEntry>>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    jwks_file: Option<PathBuf>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_leeway: Option<DurationValue>,
    token_cookie: Option<String>,
    allow_anonymous: Option<bool>,
    anonymous_channels: Option<Vec<String>>,
    token_expiry: Option<TokenExpiryArg>,
    connect_rate_per_ip: Option<String>,
    publish_rate_per_key: Option<String>,
    resume_rate_per_ip: Option<String>,
    max_connections_per_ip: Option<usize>,
    trusted_proxies: Option<Vec<std::net::IpAddr>>,
    reuse_port: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    header_read_timeout: Option<DurationValue>,
    body_read_timeout: Option<DurationValue>,
    max_header_size: Option<SizeValue>,
    heartbeat_interval: Option<DurationValue>,
    heartbeat_style: Option<HeartbeatStyle>,
    cleanup_interval: Option<DurationValue>,
    connection_timeout: Option<DurationValue>,
    retry: Option<DurationValue>,
    max_connections: Option<usize>,
    max_connections_per_user: Option<usize>,
    queue_capacity: Option<usize>,
    queue_max_bytes: Option<SizeValue>,
    max_body_size: Option<SizeValue>,
    max_batch_body_size: Option<SizeValue>,
    max_batch_len: Option<usize>,
    identity_from_query: Option<bool>,
    shutdown_timeout: Option<DurationValue>,
    shutdown_reconnect_window: Option<DurationValue>,
    history_size: Option<usize>,
    history_ttl: Option<DurationValue>,
    history_max_bytes: Option<SizeValue>,
    max_replay_events: Option<usize>,
    max_replay_bytes: Option<SizeValue>,
    data_dir: Option<PathBuf>,
    idempotency_window: Option<DurationValue>,
    idempotency_max_keys: Option<usize>,
    presence_channels: Option<Vec<String>>,
    engine: Option<String>,
    redis_prefix: Option<String>,
    node_id: Option<String>,
    cors_origins: Option<Vec<String>>,
    cors_credentials: Option<bool>,
    publish_origins: Option<ListValue>,
    log_format: Option<LogFormat>,
}

/// A list in the TOML file: an array of strings, or one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListValue {
    List(Vec<String>),
    Text(String),
}

impl ListValue {
    fn get(self) -> Vec<String> {
        match self {
            ListValue::List(items) => items,
            ListValue::Text(s) => s.split(',').map(str::to_owned).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Millis(u64),
    Text(String),
}

impl DurationValue {
    fn get(self) -> anyhow::Result<Duration> {
        match self {
            DurationValue::Millis(ms) => Ok(Duration::from_millis(ms)),
            DurationValue::Text(s) => parse_duration(&s).map_err(anyhow::Error::msg),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(usize),
    Text(String),
}

impl SizeValue {
    fn get(self) -> anyhow::Result<usize> {
        match self {
            SizeValue::Bytes(n) => Ok(n),
            SizeValue::Text(s) => parse_size(&s).map_err(anyhow::Error::msg),
        }
    }
}

/// `15s`, `500ms`, `2m`, `1h`; a bare number is milliseconds (as in `SSE_HEARTBEAT_INTERVAL=3000`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 15s or 500ms: {e}"))
}

/// Bytes, or a number with `KB`/`KiB`/`MB`/`MiB` (all binary: 1KB = 1024 bytes).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 65536 or 64KiB"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use B, KiB or MiB)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn patterns(setting: &str, list: Option<Vec<String>>) -> anyhow::Result<Vec<ChannelPattern>> {
    list.unwrap_or_default()
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|e: herald::InvalidInput| anyhow::anyhow!("{setting}: {}", e.message))
        })
        .collect()
}

/// The single key (`default`), `name=key` pairs, and the file's scoped entries.
fn publisher_keys(
    single: Option<String>,
    pairs: Option<Vec<String>>,
    entries: Option<Vec<KeyEntry>>,
) -> anyhow::Result<Vec<PublisherKey>> {
    let mut keys = Vec::new();
    if let Some(key) = single.filter(|k| !k.is_empty()) {
        keys.push(PublisherKey {
            name: "default".into(),
            key: Secret::new(key),
            publish: PublishScope::Any,
            admin: true,
        });
    }
    for pair in pairs.unwrap_or_default() {
        let Some((name, key)) = pair.split_once('=') else {
            anyhow::bail!("publisher_keys: expected name=key pairs");
        };
        keys.push(PublisherKey {
            name: name.trim().into(),
            key: Secret::new(key.trim()),
            publish: PublishScope::Any,
            admin: true,
        });
    }
    for e in entries.unwrap_or_default() {
        let publish = match (e.publish, e.channels) {
            (false, _) => PublishScope::None,
            (true, None) => PublishScope::Any,
            (true, Some(list)) => {
                PublishScope::Channels(patterns("publisher_keys.channels", Some(list))?)
            }
        };
        keys.push(PublisherKey {
            name: e.name,
            key: Secret::new(e.key),
            publish,
            admin: e.admin,
        });
    }
    Ok(keys)
}

/// Which engine carries events between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EngineSetting {
    /// One process (the default).
    Memory,
    /// A cluster of nodes sharing one Redis.
    Redis {
        /// `redis://...`.
        url: String,
        /// Key prefix, if not the default.
        prefix: Option<String>,
        /// Node id, if not the default.
        node_id: Option<String>,
    },
}

/// The engine from `--engine`, `--redis-prefix` and `--node-id`.
fn engine_setting(
    engine: Option<String>,
    prefix: Option<String>,
    node_id: Option<String>,
) -> anyhow::Result<EngineSetting> {
    let engine = engine.map(|e| e.trim().to_owned()).unwrap_or_default();
    if engine.is_empty() || engine == "memory" {
        if prefix.is_some() || node_id.is_some() {
            anyhow::bail!("redis_prefix and node_id need engine = redis://HOST:PORT/DB");
        }
        return Ok(EngineSetting::Memory);
    }
    if engine.starts_with("rediss://") {
        anyhow::bail!(
            "engine: TLS to Redis (rediss://) is not built in; reach Redis over a private network \
             or a TLS tunnel and use redis://"
        );
    }
    if !["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| engine.starts_with(scheme))
    {
        anyhow::bail!("engine: expected `memory` or a URL like redis://127.0.0.1:6379/0");
    }
    Ok(EngineSetting::Redis {
        url: engine,
        prefix,
        node_id,
    })
}

/// Merges flags/env (already merged by clap), the file and the defaults.
pub(crate) fn load(args: ServeArgs) -> anyhow::Result<(Config, LogFormat, EngineSetting)> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the configuration file {}", path.display())
            })?;
            toml::from_str::<FileSettings>(&text)
                .with_context(|| format!("invalid configuration file {}", path.display()))?
        }
        None => FileSettings::default(),
    };
    let dur =
        |flag: Option<Duration>, file: Option<DurationValue>| -> anyhow::Result<Option<Duration>> {
            match flag {
                Some(d) => Ok(Some(d)),
                None => file.map(DurationValue::get).transpose(),
            }
        };
    let size = |flag: Option<usize>, file: Option<SizeValue>| -> anyhow::Result<Option<usize>> {
        match flag {
            Some(n) => Ok(Some(n)),
            None => file.map(SizeValue::get).transpose(),
        }
    };
    let mut c = Config::default();
    if let Some(listen) = args.listen.or(file.listen) {
        c.listen = listen;
    }
    c.http.publisher_keys = publisher_keys(
        args.publisher_key.or(file.publisher_key),
        args.publisher_keys,
        file.publisher_keys,
    )?;
    let jwt_secret = args
        .jwt_secret
        .or(file.jwt_secret)
        .filter(|s| !s.is_empty());
    let jwt_public_key = args.jwt_public_key.or(file.jwt_public_key);
    let jwks_file = args.jwks_file.or(file.jwks_file);
    if jwt_secret.is_some() || jwt_public_key.is_some() || jwks_file.is_some() {
        let mut v = JwtVerifier::new();
        if let Some(secret) = jwt_secret {
            v = v.with_hs256_secret(&Secret::new(secret))?;
        }
        if let Some(path) = jwt_public_key {
            let pem = std::fs::read(&path)
                .with_context(|| format!("cannot read the JWT public key {}", path.display()))?;
            v = v
                .with_public_key_pem(&pem)
                .with_context(|| format!("JWT public key {}", path.display()))?;
        }
        if let Some(path) = jwks_file {
            let json = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the JWKS file {}", path.display()))?;
            v = v
                .with_jwks(&json)
                .with_context(|| format!("JWKS file {}", path.display()))?;
        }
        if let Some(iss) = args.jwt_issuer.or(file.jwt_issuer) {
            v = v.with_issuer(iss);
        }
        if let Some(aud) = args.jwt_audience.or(file.jwt_audience) {
            v = v.with_audience(aud);
        }
        if let Some(leeway) = dur(args.jwt_leeway, file.jwt_leeway)? {
            v = v.with_leeway(leeway);
        }
        c.http.jwt = Some(std::sync::Arc::new(v));
    }
    if let Some(cookie) = args.token_cookie.or(file.token_cookie) {
        c.http.token_cookie = cookie;
    }
    c.http.allow_anonymous = args
        .allow_anonymous
        .or(file.allow_anonymous)
        .unwrap_or(false);
    c.http.anonymous_channels = patterns(
        "anonymous_channels",
        args.anonymous_channels.or(file.anonymous_channels),
    )?;
    c.http.token_expiry = match args.token_expiry.or(file.token_expiry) {
        Some(TokenExpiryArg::Tolerate) => TokenExpiry::Tolerate,
        _ => TokenExpiry::Close,
    };
    c.http.connect_rate_per_ip = match args.connect_rate_per_ip {
        Some(r) => Some(r),
        None => file
            .connect_rate_per_ip
            .map(|s| s.parse::<Rate>().map_err(anyhow::Error::msg))
            .transpose()?,
    };
    c.http.publish_rate_per_key = match args.publish_rate_per_key {
        Some(r) => Some(r),
        None => file
            .publish_rate_per_key
            .map(|s| s.parse::<Rate>().map_err(anyhow::Error::msg))
            .transpose()?,
    };
    c.http.resume_rate_per_ip = match args.resume_rate_per_ip {
        Some(r) => Some(r),
        None => file
            .resume_rate_per_ip
            .map(|s| s.parse::<Rate>().map_err(anyhow::Error::msg))
            .transpose()?,
    };
    c.hub.max_connections_per_ip = args.max_connections_per_ip.or(file.max_connections_per_ip);
    c.http.trusted_proxies = args
        .trusted_proxies
        .or(file.trusted_proxies)
        .unwrap_or_default();
    c.reuse_port = args.reuse_port || file.reuse_port.unwrap_or(false);
    c.tls = match (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(config::TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both tls_cert and tls_key"),
    };
    if let Some(d) = dur(args.header_read_timeout, file.header_read_timeout)? {
        c.header_read_timeout = d;
    }
    if let Some(d) = dur(args.body_read_timeout, file.body_read_timeout)? {
        c.http.body_read_timeout = d;
    }
    if let Some(n) = size(args.max_header_size, file.max_header_size)? {
        c.max_header_size = n;
    }
    let hub = &mut c.hub;
    if let Some(d) = dur(args.heartbeat_interval, file.heartbeat_interval)? {
        hub.heartbeat_interval = d;
    }
    hub.heartbeat_style = match args.heartbeat_style {
        Some(HeartbeatArg::Event) => HeartbeatStyle::Event,
        Some(HeartbeatArg::Comment) => HeartbeatStyle::Comment,
        None => file.heartbeat_style.unwrap_or_default(),
    };
    if let Some(d) = dur(args.cleanup_interval, file.cleanup_interval)? {
        hub.cleanup_interval = d;
    }
    hub.connection_timeout =
        dur(args.connection_timeout, file.connection_timeout)?.filter(|d| !d.is_zero());
    if let Some(d) = dur(args.retry, file.retry)? {
        hub.retry = d;
    }
    hub.max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(config::DEFAULT_MAX_CONNECTIONS);
    hub.max_connections_per_user = args
        .max_connections_per_user
        .or(file.max_connections_per_user)
        .unwrap_or(config::DEFAULT_MAX_CONNECTIONS_PER_USER);
    hub.queue_capacity = args
        .queue_capacity
        .or(file.queue_capacity)
        .unwrap_or(config::DEFAULT_QUEUE_CAPACITY);
    if let Some(n) = size(args.queue_max_bytes, file.queue_max_bytes)? {
        hub.queue_max_bytes = n;
    }
    if let Some(d) = dur(
        args.shutdown_reconnect_window,
        file.shutdown_reconnect_window,
    )? {
        hub.shutdown_reconnect_window = d;
    }
    if let Some(n) = size(args.max_body_size, file.max_body_size)? {
        c.http.max_body_size = n;
    }
    if let Some(n) = size(args.max_batch_body_size, file.max_batch_body_size)? {
        c.http.max_batch_body_size = n;
    }
    if let Some(n) = args.max_batch_len.or(file.max_batch_len) {
        c.http.max_batch_len = n;
    }
    // Off by default once anything but loopback clients may reach the hub: behind a proxy (even
    // on the same host) or with keyed publishing, `?userId=alice` would read alice's stream.
    c.http.identity_from_query = args
        .identity_from_query
        .or(file.identity_from_query)
        .unwrap_or_else(|| {
            c.listen.ip().is_loopback()
                && c.http.publisher_keys.is_empty()
                && c.http.trusted_proxies.is_empty()
        });
    if let Some(d) = dur(args.shutdown_timeout, file.shutdown_timeout)? {
        c.shutdown_timeout = d;
    }
    let history = &mut c.hub.history;
    if let Some(n) = args.history_size.or(file.history_size) {
        history.max_events = n;
    }
    if let Some(d) = dur(args.history_ttl, file.history_ttl)? {
        history.max_age = d;
    }
    if let Some(n) = size(args.history_max_bytes, file.history_max_bytes)? {
        history.max_bytes = n;
    }
    if let Some(n) = args.max_replay_events.or(file.max_replay_events) {
        c.hub.max_replay_events = n;
    }
    if let Some(n) = size(args.max_replay_bytes, file.max_replay_bytes)? {
        c.hub.max_replay_bytes = n;
    }
    c.data_dir = args.data_dir.or(file.data_dir);
    if let Some(d) = dur(args.idempotency_window, file.idempotency_window)? {
        c.hub.idempotency.window = d;
    }
    if let Some(n) = args.idempotency_max_keys.or(file.idempotency_max_keys) {
        c.hub.idempotency.max_keys = n;
    }
    c.http.cors_origins = args
        .cors_origins
        .or(file.cors_origins)
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    c.http.publish_origins = args
        .publish_origins
        .or_else(|| file.publish_origins.map(ListValue::get))
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    c.http.cors_credentials = args
        .cors_credentials
        .or(file.cors_credentials)
        .unwrap_or(false);
    c.hub.presence_channels = args
        .presence_channels
        .or(file.presence_channels)
        .unwrap_or_default()
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse().map_err(|e: herald::InvalidInput| {
                anyhow::anyhow!("presence_channels: {}", e.message)
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let engine = engine_setting(
        args.engine.or(file.engine),
        args.redis_prefix.or(file.redis_prefix),
        args.node_id.or(file.node_id),
    )?;
    if engine != EngineSetting::Memory && c.data_dir.is_some() {
        anyhow::bail!(
            "data_dir keeps the memory engine's replay window on disk; with a Redis engine the \
             window lives in Redis: leave data_dir out"
        );
    }
    let log_format = args.log_format.or(file.log_format).unwrap_or_default();
    Ok((c, log_format, engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3000").unwrap(), Duration::from_millis(3000));
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert!(parse_size("1GB").is_err());
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn engines() {
        let url = "redis://127.0.0.1:6379/0".to_owned();
        assert_eq!(
            engine_setting(None, None, None).unwrap(),
            EngineSetting::Memory
        );
        assert_eq!(
            engine_setting(Some("memory".into()), None, None).unwrap(),
            EngineSetting::Memory
        );
        assert_eq!(
            engine_setting(Some(url.clone()), Some("p".into()), Some("n1".into())).unwrap(),
            EngineSetting::Redis {
                url,
                prefix: Some("p".into()),
                node_id: Some("n1".into())
            }
        );
        assert!(engine_setting(Some("rediss://h/0".into()), None, None).is_err());
        assert!(engine_setting(Some("mysql://h".into()), None, None).is_err());
        assert!(engine_setting(None, None, Some("n1".into())).is_err());
        let f: FileSettings =
            toml::from_str("engine = \"redis://h:6379/1\"\nnode_id = \"n2\"").unwrap();
        assert_eq!(f.node_id.as_deref(), Some("n2"));
    }

    fn serve_args(args: &[&str]) -> ServeArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut argv = vec!["herald"];
        argv.extend_from_slice(args);
        <Cli as clap::Parser>::parse_from(argv).serve
    }

    #[test]
    fn identity_from_query_defaults_off_with_keys_or_proxies() {
        let identity = |args: &[&str]| load(serve_args(args)).unwrap().0.http.identity_from_query;
        assert!(identity(&[]));
        assert!(!identity(&["--publisher-key", "0123456789abcdef"]));
        assert!(!identity(&["--trusted-proxies", "127.0.0.1"]));
        assert!(identity(&[
            "--trusted-proxies",
            "127.0.0.1",
            "--identity-from-query",
            "true"
        ]));
    }

    #[test]
    fn publish_origins_from_flags_and_file() {
        let c = load(serve_args(&[
            "--publish-origins",
            "https://a.example, https://b.example",
        ]))
        .unwrap()
        .0;
        assert_eq!(
            c.http.publish_origins,
            ["https://a.example", "https://b.example"]
        );
        for text in [
            "publish_origins = \"https://a.example,https://b.example\"",
            "publish_origins = [\"https://a.example\", \"https://b.example\"]",
        ] {
            let f: FileSettings = toml::from_str(text).unwrap();
            assert_eq!(
                f.publish_origins.unwrap().get(),
                ["https://a.example", "https://b.example"]
            );
        }
    }

    #[test]
    fn file_settings_parse() {
        let f: FileSettings = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nheartbeat_interval = \"5s\"\nretry = 1500\n\
             heartbeat_style = \"comment\"\nmax_body_size = \"128KiB\"",
        )
        .unwrap();
        assert_eq!(
            f.heartbeat_interval.unwrap().get().unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(f.retry.unwrap().get().unwrap(), Duration::from_millis(1500));
        assert_eq!(f.max_body_size.unwrap().get().unwrap(), 128 * 1024);
        assert!(toml::from_str::<FileSettings>("heartbeat = 1").is_err());
    }
}
