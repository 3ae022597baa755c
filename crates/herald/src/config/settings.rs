//! The schema of `herald serve`'s settings: each setting is one field of [`Settings`].
//!
//! One field gives a setting all its names, by one rule:
//!
//! | | Rule | Example |
//! |---|---|---|
//! | flag | the field name in kebab-case | `--heartbeat-interval` |
//! | environment | `HERALD_` + the field name in UPPER_SNAKE | `HERALD_HEARTBEAT_INTERVAL` |
//! | TOML key | the field name | `heartbeat_interval = "15s"` |
//!
//! The flag comes from the `clap` derive (feature `cli`), the TOML key from the `serde` derive, and
//! the environment name is given to every flag by the `herald` binary, which also accepts the
//! older names of a few settings as aliases (`SSE_RETRY` for `HERALD_RETRY`, …; see its
//! `settings.rs`). The library itself reads no environment variable.
//!
//! Every field is optional: `None` means "not set here". The binary fills one [`Settings`] from
//! the TOML file, overwrites each field given by a flag or an environment variable (clap's
//! `update_from_arg_matches`), and [`Settings::into_config`] turns the result into a [`Config`],
//! taking the documented default for whatever is still unset.
//!
//! ## Adding a setting
//!
//! 1. Add the field to the library structure it configures ([`HubConfig`], [`HttpConfig`] or
//!    [`Config`]), with its default (a `DEFAULT_*` constant) and any check in
//!    [`Config::validate`].
//! 2. Add an `Option<…>` field to [`Settings`], named as the flag without dashes, with a doc
//!    comment (the `--help` text, ending in `[default: …]`) and
//!    `#[cfg_attr(feature = "cli", arg(long))]`. Durations are [`HumanDuration`], sizes
//!    [`ByteSize`]; lists are `Option<Vec<…>>` with `arg(long, value_delimiter = ',')` and
//!    `#[serde(default, deserialize_with = "list")]`; booleans are `Option<bool>` with
//!    `arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg())`
//!    (copy `reuse_port`). The environment name and the TOML key follow from the field name:
//!    write neither.
//! 3. Map it in [`Settings::into_config`], one line: `set(&mut c.hub.foo, s.foo)` (or
//!    `s.foo.map(|d| d.0)` for a duration or a size).
//! 4. Add a row to the README's settings table (the test `every_setting_follows_the_naming_rule`
//!    in `tests/binary.rs` checks it is there) and a sample value to that test's
//!    `sample_value`.
//!
//! Tests that keep this honest: `every_setting_follows_the_naming_rule` (flags, environment
//! names, aliases, README rows, a TOML file setting every key) and
//! `help_defaults_are_the_library_defaults` (each `[default: …]` of `--help` is what
//! [`Settings::into_config`] gives when the setting is unset).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{
    AuthHookConfig, Config, ConfigError, EngineConfig, HeartbeatStyle, Rate, RedisConfig, Secret,
    TlsFiles, TokenExpiry,
};
#[cfg(doc)]
use super::{HttpConfig, HubConfig};
use crate::auth::{JwtVerifier, PublishScope, PublisherKey};
use crate::mercure::{JwtAlg, MercureConfig, MercureKey};
use crate::target::ChannelPattern;

/// A duration setting: `15s`, `500ms`, `2m`, `1h` (humantime); a bare number is milliseconds
/// (as in `SSE_HEARTBEAT_INTERVAL=3000`). In TOML, a string or an integer (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(HumanDuration)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrText::new(
            "a duration like \"15s\" or a number of milliseconds",
            |ms| Ok(HumanDuration(Duration::from_millis(ms))),
        ))
    }
}

/// Reads a number (given to `from_number`) or a string (parsed with `FromStr`).
struct NumberOrText<T> {
    expecting: &'static str,
    from_number: fn(u64) -> Result<T, String>,
}

impl<T> NumberOrText<T> {
    fn new(expecting: &'static str, from_number: fn(u64) -> Result<T, String>) -> Self {
        NumberOrText {
            expecting,
            from_number,
        }
    }
}

impl<T> serde::de::Visitor<'_> for NumberOrText<T>
where
    T: std::str::FromStr<Err = String>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<T, E> {
        (self.from_number)(n).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<T, E> {
        let n = u64::try_from(n).map_err(|_| E::custom(format!("{n} is negative")))?;
        self.visit_u64(n)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
        s.parse().map_err(E::custom)
    }
}

/// A size setting in bytes: a number, or one with `KB`/`KiB`/`MB`/`MiB` (all binary: 1KB =
/// 1024 bytes). In TOML, a string or an integer (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(ByteSize)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrText::new(
            "a size like \"64KiB\" or a number of bytes",
            |n| {
                usize::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| format!("{n} is too large"))
            },
        ))
    }
}

/// `15s`, `500ms`, `2m`, `1h`; a bare number is milliseconds.
///
/// # Errors
/// When `s` is neither.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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
///
/// # Errors
/// When `s` is not a size, or too large.
pub fn parse_size(s: &str) -> Result<usize, String> {
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

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Log output format of the `herald` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One publisher key: `name=key` on the command line (may publish anywhere and use the admin
/// endpoints), or a `[[publisher_keys]]` table in the TOML file with finer scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// A name for logs and metrics.
    pub name: String,
    /// The key.
    pub key: Secret,
    /// May publish (to any target, or only to `channels`).
    pub publish: bool,
    /// Restricts publishing to these channels (names or `prefix*`).
    pub channels: Option<Vec<String>>,
    /// May use admin endpoints.
    pub admin: bool,
}

impl std::str::FromStr for KeyEntry {
    type Err = String;

    fn from_str(pair: &str) -> Result<Self, String> {
        let Some((name, key)) = pair.split_once('=') else {
            return Err("publisher_keys: expected name=key pairs".into());
        };
        Ok(KeyEntry {
            name: name.trim().into(),
            key: Secret::new(key.trim()),
            publish: true,
            channels: None,
            admin: true,
        })
    }
}

impl<'de> Deserialize<'de> for KeyEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn yes() -> bool {
            true
        }
        /// A `[[publisher_keys]]` table.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            name: String,
            key: String,
            /// May publish (to any target, or only to `channels`). Default true.
            #[serde(default = "yes")]
            publish: bool,
            channels: Option<Vec<String>>,
            /// May use admin endpoints. Default false.
            #[serde(default)]
            admin: bool,
        }
        struct PairOrTable;
        impl<'de> serde::de::Visitor<'de> for PairOrTable {
            type Value = KeyEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"name=key\" or a table with name, key, publish, channels, admin")
            }

            fn visit_str<E: serde::de::Error>(self, pair: &str) -> Result<KeyEntry, E> {
                pair.parse().map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<KeyEntry, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(KeyEntry {
                    name: t.name,
                    key: Secret::new(t.key),
                    publish: t.publish,
                    channels: t.channels,
                    admin: t.admin,
                })
            }
        }
        d.deserialize_any(PairOrTable)
    }
}

/// A list in the TOML file: an array, or one comma-separated string.
///
/// # Errors
/// When an item does not parse.
pub fn list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + std::str::FromStr,
    T::Err: fmt::Display,
{
    struct ListOrText<T>(std::marker::PhantomData<T>);
    impl<'de, T> serde::de::Visitor<'de> for ListOrText<T>
    where
        T: Deserialize<'de> + std::str::FromStr,
        T::Err: fmt::Display,
    {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array or a comma-separated string")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<T>, E> {
            s.split(',')
                .map(|item| item.trim().parse().map_err(E::custom))
                .collect()
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_any(ListOrText(std::marker::PhantomData))
        .map(Some)
}

/// Every setting of `herald serve` (see the [module docs](self) for the naming rule). Durations
/// take `15s`, `500ms`, `2m` (a bare number is milliseconds); sizes take bytes or `64KiB`,
/// `1MiB`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on. Without a publisher key only loopback addresses are allowed.
    /// [default: 127.0.0.1:8080]
    #[cfg_attr(feature = "cli", arg(long))]
    pub listen: Option<SocketAddr>,
    /// Key that publish and admin endpoints require as `Authorization: Bearer <key>` (at least
    /// 16 characters). Required to listen on a non-loopback address.
    #[cfg_attr(feature = "cli", arg(long, hide_env_values = true))]
    pub publisher_key: Option<Secret>,
    /// More publisher keys, comma-separated `name=key` pairs (each may publish and use admin
    /// endpoints). Several keys let you rotate one without downtime. Finer scopes: the TOML
    /// file's `[[publisher_keys]]`.
    #[cfg_attr(
        feature = "cli",
        arg(long, hide_env_values = true, value_delimiter = ',')
    )]
    #[serde(default, deserialize_with = "list")]
    pub publisher_keys: Option<Vec<KeyEntry>>,
    /// HS256 secret for subscriber JWTs (at least 32 bytes). Turns token authentication on.
    #[cfg_attr(feature = "cli", arg(long, hide_env_values = true))]
    pub jwt_secret: Option<Secret>,
    /// PEM public key (RSA for RS256, P-256 EC for ES256) for subscriber JWTs: the path of a
    /// PEM file, or the PEM text itself (a value starting with `-----BEGIN`).
    #[cfg_attr(feature = "cli", arg(long))]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file ({"keys": [...]}) for subscriber JWTs; a token's kid picks the key.
    #[cfg_attr(feature = "cli", arg(long))]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` of tokens.
    #[cfg_attr(feature = "cli", arg(long))]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens.
    #[cfg_attr(feature = "cli", arg(long))]
    pub jwt_audience: Option<String>,
    /// Clock leeway for `exp`/`nbf`. [default: 5s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub jwt_leeway: Option<HumanDuration>,
    /// Cookie that may carry the subscriber token. [default: herald_token]
    #[cfg_attr(feature = "cli", arg(long))]
    pub token_cookie: Option<String>,
    /// With tokens on, accept subscribers without a token as anonymous connections. [default:
    /// false]
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg()))]
    pub allow_anonymous: Option<bool>,
    /// Channels (names or `prefix*`) anonymous connections may join. [default: none]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    #[serde(default, deserialize_with = "list")]
    pub anonymous_channels: Option<Vec<String>>,
    /// When a token expires mid-stream: `close` (disconnected, reason token_expired) or
    /// `tolerate`. [default: close]
    #[cfg_attr(feature = "cli", arg(long))]
    pub token_expiry: Option<TokenExpiry>,
    /// New connections per second per client IP, e.g. `20/s` or `20/s:100` (burst). [default:
    /// unlimited]
    #[cfg_attr(feature = "cli", arg(long))]
    pub connect_rate_per_ip: Option<Rate>,
    /// Events published per second per publisher key, e.g. `1000/s` (a batch costs one per
    /// event; a batch larger than the burst gets 413). [default: unlimited]
    #[cfg_attr(feature = "cli", arg(long))]
    pub publish_rate_per_key: Option<Rate>,
    /// Resumes (subscribes with a Last-Event-ID) per second per client IP, e.g. `10/s`; more
    /// get 429. [default: unlimited]
    #[cfg_attr(feature = "cli", arg(long))]
    pub resume_rate_per_ip: Option<Rate>,
    /// Proxies (IP addresses, comma-separated) whose X-Forwarded-For header gives the client
    /// address for per-IP limits. [default: none]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    #[serde(default, deserialize_with = "list")]
    pub trusted_proxies: Option<Vec<IpAddr>>,
    /// Let several herald processes listen on the same port (SO_REUSEPORT); the kernel spreads
    /// connections over them. [default: false]
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg()))]
    pub reuse_port: Option<bool>,
    /// Most open connections per client IP. [default: unlimited]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_connections_per_ip: Option<usize>,
    /// PEM certificate chain: serve HTTPS with HTTP/2 and HTTP/1.1 (needs --tls-key).
    #[cfg_attr(feature = "cli", arg(long, requires = "tls_key"))]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[cfg_attr(feature = "cli", arg(long, requires = "tls_cert"))]
    pub tls_key: Option<PathBuf>,
    /// Longest time to receive request headers. [default: 10s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub header_read_timeout: Option<HumanDuration>,
    /// Longest time to receive a request body. [default: 10s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub body_read_timeout: Option<HumanDuration>,
    /// Largest request head (request line + headers). [default: 16KiB]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_header_size: Option<ByteSize>,
    /// Interval between heartbeats. [default: 15s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub heartbeat_interval: Option<HumanDuration>,
    /// Heartbeat as an event `heartbeat` ({"ts": ms}) or as a comment line. [default: event]
    #[cfg_attr(feature = "cli", arg(long))]
    pub heartbeat_style: Option<HeartbeatStyle>,
    /// Interval of the sweep that removes dead and timed-out connections. [default: 30s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub cleanup_interval: Option<HumanDuration>,
    /// Close connections older than this (clients reconnect); 0 or unset keeps them. Checked at
    /// every sweep.
    #[cfg_attr(feature = "cli", arg(long))]
    pub connection_timeout: Option<HumanDuration>,
    /// Close connections to which nothing but heartbeats was sent, and from which nothing was
    /// received (WebSocket pongs and frames, Socket.IO packets), for this long (reason `idle`;
    /// clients reconnect and resume); 0 or unset keeps them. Checked at every sweep.
    #[cfg_attr(feature = "cli", arg(long))]
    pub idle_timeout: Option<HumanDuration>,
    /// The `retry:` reconnection hint sent to clients. [default: 3s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub retry: Option<HumanDuration>,
    /// Most connections at once; more get 503. [default: 10000]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_connections: Option<usize>,
    /// Most connections per user; more get 429. [default: 32]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_connections_per_user: Option<usize>,
    /// Most frames queued for one connection before it is evicted as too slow. [default: 1024]
    #[cfg_attr(feature = "cli", arg(long))]
    pub queue_capacity: Option<usize>,
    /// Most bytes queued for one connection before it is evicted as too slow. [default: 1MiB]
    #[cfg_attr(feature = "cli", arg(long))]
    pub queue_max_bytes: Option<ByteSize>,
    /// Largest publish body; larger gets 413. [default: 64KiB]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_body_size: Option<ByteSize>,
    /// Largest body of POST /api/sse/messages. [default: 1MiB]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_batch_body_size: Option<ByteSize>,
    /// Most events in one batch. [default: 1000]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_batch_len: Option<usize>,
    /// Accept `userId`/`username` from the subscribe query string. [default: true when
    /// listening on loopback with neither publisher keys nor trusted proxies, false otherwise]
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg()))]
    pub identity_from_query: Option<bool>,
    /// How long shutdown waits for connections to finish. [default: 10s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub shutdown_timeout: Option<HumanDuration>,
    /// On shutdown, clients are told to reconnect after a random delay within this window, so
    /// they do not all come back at once. [default: 10s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub shutdown_reconnect_window: Option<HumanDuration>,
    /// Most events kept for Last-Event-ID replay; 0 turns replay off. [default: 10000]
    #[cfg_attr(feature = "cli", arg(long))]
    pub history_size: Option<usize>,
    /// Oldest event kept for replay. [default: 1h]
    #[cfg_attr(feature = "cli", arg(long))]
    pub history_ttl: Option<HumanDuration>,
    /// Most bytes of events kept for replay. [default: 64MiB]
    #[cfg_attr(feature = "cli", arg(long))]
    pub history_max_bytes: Option<ByteSize>,
    /// Most events one resume may replay; a client that missed more gets `reset`
    /// (replay_too_large). [default: 1000]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_replay_events: Option<usize>,
    /// Most bytes of events one resume may replay. [default: 1MiB]
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_replay_bytes: Option<ByteSize>,
    /// Keep the replay window on disk in this directory (an embedded database), so that clients
    /// resume across a restart. [default: memory only]
    #[cfg_attr(feature = "cli", arg(long))]
    pub data_dir: Option<PathBuf>,
    /// How long a publish's idempotency key (`Idempotency-Key` header or `idempotencyKey`
    /// field) is remembered: a retry with the same key within it publishes nothing and gets the
    /// first answer again. `0s` turns the check off. [default: 10m]
    #[cfg_attr(feature = "cli", arg(long))]
    pub idempotency_window: Option<HumanDuration>,
    /// Most idempotency keys the memory engine remembers at once; beyond, the oldest are
    /// forgotten early. [default: 100000]
    #[cfg_attr(feature = "cli", arg(long))]
    pub idempotency_max_keys: Option<usize>,
    /// Channels whose subscribers get presence:join / presence:leave events: comma-separated
    /// names or prefix patterns (`room:*`; `*` for all). [default: none]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    #[serde(default, deserialize_with = "list")]
    pub presence_channels: Option<Vec<String>>,
    /// Where events travel: `memory` (this process only) or
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` to run several nodes as one hub, sharing
    /// events, replay window, presence and commands through Redis (see docs/deploy.md);
    /// `rediss://` for TLS; Redis Sentinel:
    /// `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]` (or
    /// `rediss+sentinel://`), the user and password being the master's. [default: memory]
    #[cfg_attr(feature = "cli", arg(long, hide_env_values = true))]
    pub engine: Option<Secret>,
    /// PEM file of the CA certificate(s) that sign Redis's (and the sentinels') TLS
    /// certificates, for a rediss:// engine with a private CA: only these are then trusted.
    /// [default: the Mozilla roots]
    #[cfg_attr(feature = "cli", arg(long))]
    pub redis_ca_file: Option<PathBuf>,
    /// Password of the Redis Sentinel nodes, with a redis+sentinel:// engine (the engine URL's
    /// password is the master's). [default: none]
    #[cfg_attr(feature = "cli", arg(long, hide_env_values = true))]
    pub redis_sentinel_password: Option<Secret>,
    /// Prefix of Herald's Redis keys and channels; every node of one cluster uses the same.
    /// [default: herald]
    #[cfg_attr(feature = "cli", arg(long))]
    pub redis_prefix: Option<String>,
    /// This node's id in the cluster (1 to 64 of A-Z a-z 0-9 _ . -), unique per process. By
    /// default `<hostname>-<pid>-<random>`.
    #[cfg_attr(feature = "cli", arg(long))]
    pub node_id: Option<String>,
    /// Origins allowed to use Herald from browser pages on other origins (CORS),
    /// comma-separated (`https://app.example.com`), or `*` for any. [default: none, same-origin
    /// only]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    #[serde(default, deserialize_with = "list")]
    pub cors_origins: Option<Vec<String>>,
    /// Allow credentials (cookies) on cross-origin requests; needs explicit origins. [default:
    /// false]
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg()))]
    pub cors_credentials: Option<bool>,
    /// Origins of browser pages that may call publish and admin endpoints besides the hub's
    /// own, comma-separated (`https://admin.example.com`). Requests with any other Origin
    /// header get 403 origin_not_allowed; requests without one (servers, curl) are not
    /// affected. --cors-origins never grants publishing. [default: none]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    #[serde(default, deserialize_with = "list")]
    pub publish_origins: Option<Vec<String>>,
    /// Interval of the server's pings on every WebSocket (GET /api/ws). [default: 25s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub ws_ping_interval: Option<HumanDuration>,
    /// How long a WebSocket peer has to answer a ping (a pong, or any frame) before it is
    /// dropped as dead. [default: 20s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub ws_pong_timeout: Option<HumanDuration>,
    /// Inbound webhook sources: the TOML file's `[[webhooks]]` tables only (no flag, no
    /// environment variable). See [`crate::webhooks::config`].
    #[cfg_attr(feature = "cli", arg(skip))]
    #[serde(default)]
    pub webhooks: Option<Vec<crate::webhooks::WebhookSettings>>,
    /// Ask the app who a subscriber is: on every subscribe without a JWT (SSE, WebSocket,
    /// Socket.IO), POST the subscriber's forwarded headers, query and address to this URL
    /// (http:// or https://); its answer admits (identity, channel grants) or refuses.
    /// [default: none]
    #[cfg_attr(feature = "cli", arg(long))]
    pub auth_hook_url: Option<String>,
    /// Headers of the subscribe request forwarded to the auth hook, comma-separated (e.g.
    /// `cookie,authorization`). [default: cookie]
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    #[serde(default, deserialize_with = "list")]
    pub auth_hook_forward_headers: Option<Vec<String>>,
    /// Longest wait for the auth hook's answer; then 503 auth_hook_unavailable. [default: 2s]
    #[cfg_attr(feature = "cli", arg(long))]
    pub auth_hook_timeout: Option<HumanDuration>,
    /// Reuse the auth hook's answer for the same forwarded credentials this long; 0 or unset
    /// asks on every connect. [default: none]
    #[cfg_attr(feature = "cli", arg(long))]
    pub auth_hook_cache_ttl: Option<HumanDuration>,
    /// Key of the X-Herald-Signature (sha256=<hex HMAC-SHA256 of the body>) on every auth hook
    /// call, so the app can tell the call is Herald's; strongly advised off loopback.
    #[cfg_attr(feature = "cli", arg(long, hide_env_values = true))]
    pub auth_hook_secret: Option<Secret>,
    /// Serve the Mercure protocol at /.well-known/mercure (publishers and subscribers of a
    /// Mercure hub work unchanged; see docs/guides/mercure.md). [default: false]
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg()))]
    pub mercure: Option<bool>,
    /// Key that verifies Mercure publishers' tokens: the HS256 secret, or the PEM text of the
    /// RS256/ES256 public key (as Mercure's MERCURE_PUBLISHER_JWT_KEY).
    #[cfg_attr(feature = "cli", arg(long, hide_env_values = true))]
    pub mercure_publisher_jwt_key: Option<Secret>,
    /// Key that verifies Mercure subscribers' tokens: the HS256 secret, or the PEM text of the
    /// RS256/ES256 public key (as Mercure's MERCURE_SUBSCRIBER_JWT_KEY).
    #[cfg_attr(feature = "cli", arg(long, hide_env_values = true))]
    pub mercure_subscriber_jwt_key: Option<Secret>,
    /// Algorithm of the Mercure publisher key: HS256, RS256 or ES256. [default: HS256]
    #[cfg_attr(feature = "cli", arg(long))]
    pub mercure_publisher_jwt_alg: Option<JwtAlg>,
    /// Algorithm of the Mercure subscriber key: HS256, RS256 or ES256. [default: HS256]
    #[cfg_attr(feature = "cli", arg(long))]
    pub mercure_subscriber_jwt_alg: Option<JwtAlg>,
    /// Let Mercure subscribers connect without a token (they never get private updates).
    /// [default: false]
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg()))]
    pub mercure_anonymous: Option<bool>,
    /// Publish Mercure subscription events (a private update when a subscription starts or
    /// ends) and serve /.well-known/mercure/subscriptions. [default: false]
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg()))]
    pub mercure_subscriptions: Option<bool>,
    /// The Mercure hub's OAuth resource identifier, e.g. https://example.com/.well-known/mercure:
    /// the aud every Mercure 1.0 access token must name, and the base of relative URL Patterns.
    /// Set it behind a proxy. [default: the hub URL as each request reached it]
    #[cfg_attr(feature = "cli", arg(long))]
    pub mercure_resource_identifier: Option<String>,
    /// Log format. Log levels come from HERALD_LOG or RUST_LOG (e.g. `info,herald=debug`).
    /// [default: text]
    #[cfg_attr(feature = "cli", arg(long))]
    pub log_format: Option<LogFormat>,
}

/// The parser of boolean settings: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
#[cfg(feature = "cli")]
pub fn bool_arg() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

impl Settings {
    /// Turns the settings into a [`Config`]: every unset field takes its documented default.
    /// Reads the JWT key files it names.
    ///
    /// # Errors
    /// A setting that does not make sense on its own or with another (a channel pattern that
    /// does not parse, `tls_cert` without `tls_key`, a Redis setting without a Redis engine,
    /// an unreadable key file). [`Config::validate`] checks the rest.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let s = self;
        let mut c = Config::default();
        if let Some(listen) = s.listen {
            c.listen = listen;
        }
        c.http.jwt = jwt(&s)?;
        c.http.mercure = mercure(&s)?;
        c.http.publisher_keys = publisher_keys(s.publisher_key, s.publisher_keys)?;
        if let Some(cookie) = s.token_cookie {
            c.http.token_cookie = cookie;
        }
        c.http.allow_anonymous = s.allow_anonymous.unwrap_or(false);
        c.http.anonymous_channels = patterns("anonymous_channels", s.anonymous_channels)?;
        c.http.token_expiry = s.token_expiry.unwrap_or_default();
        c.http.connect_rate_per_ip = s.connect_rate_per_ip;
        c.http.publish_rate_per_key = s.publish_rate_per_key;
        c.http.resume_rate_per_ip = s.resume_rate_per_ip;
        c.hub.max_connections_per_ip = s.max_connections_per_ip;
        c.http.trusted_proxies = s.trusted_proxies.unwrap_or_default();
        c.reuse_port = s.reuse_port.unwrap_or(false);
        c.tls = match (s.tls_cert, s.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(ConfigError("TLS needs both tls_cert and tls_key".into())),
        };
        set(
            &mut c.header_read_timeout,
            s.header_read_timeout.map(|d| d.0),
        );
        set(
            &mut c.http.body_read_timeout,
            s.body_read_timeout.map(|d| d.0),
        );
        set(&mut c.max_header_size, s.max_header_size.map(|n| n.0));
        let hub = &mut c.hub;
        set(
            &mut hub.heartbeat_interval,
            s.heartbeat_interval.map(|d| d.0),
        );
        hub.heartbeat_style = s.heartbeat_style.unwrap_or_default();
        set(&mut hub.cleanup_interval, s.cleanup_interval.map(|d| d.0));
        hub.connection_timeout = s.connection_timeout.map(|d| d.0).filter(|d| !d.is_zero());
        hub.idle_timeout = s.idle_timeout.map(|d| d.0).filter(|d| !d.is_zero());
        set(&mut hub.retry, s.retry.map(|d| d.0));
        set(&mut hub.max_connections, s.max_connections);
        set(
            &mut hub.max_connections_per_user,
            s.max_connections_per_user,
        );
        set(&mut hub.queue_capacity, s.queue_capacity);
        set(&mut hub.queue_max_bytes, s.queue_max_bytes.map(|n| n.0));
        set(
            &mut hub.shutdown_reconnect_window,
            s.shutdown_reconnect_window.map(|d| d.0),
        );
        set(&mut hub.history.max_events, s.history_size);
        set(&mut hub.history.max_age, s.history_ttl.map(|d| d.0));
        set(&mut hub.history.max_bytes, s.history_max_bytes.map(|n| n.0));
        set(&mut hub.max_replay_events, s.max_replay_events);
        set(&mut hub.max_replay_bytes, s.max_replay_bytes.map(|n| n.0));
        set(
            &mut hub.idempotency.window,
            s.idempotency_window.map(|d| d.0),
        );
        set(&mut hub.idempotency.max_keys, s.idempotency_max_keys);
        hub.presence_channels = patterns("presence_channels", s.presence_channels)?;
        set(&mut c.http.max_body_size, s.max_body_size.map(|n| n.0));
        set(
            &mut c.http.max_batch_body_size,
            s.max_batch_body_size.map(|n| n.0),
        );
        set(&mut c.http.max_batch_len, s.max_batch_len);
        // Off by default once anything but loopback clients may reach the hub: behind a proxy
        // (even on the same host) or with keyed publishing, `?userId=alice` would read alice's
        // stream.
        c.http.identity_from_query = s.identity_from_query.unwrap_or_else(|| {
            c.listen.ip().is_loopback()
                && c.http.publisher_keys.is_empty()
                && c.http.trusted_proxies.is_empty()
        });
        set(&mut c.shutdown_timeout, s.shutdown_timeout.map(|d| d.0));
        c.data_dir = s.data_dir;
        c.http.cors_origins = origins(s.cors_origins);
        c.http.publish_origins = origins(s.publish_origins);
        c.http.cors_credentials = s.cors_credentials.unwrap_or(false);
        set(
            &mut c.http.ws_ping_interval,
            s.ws_ping_interval.map(|d| d.0),
        );
        set(&mut c.http.ws_pong_timeout, s.ws_pong_timeout.map(|d| d.0));
        c.http.webhooks = crate::webhooks::config::webhooks(s.webhooks)?;
        c.http.auth_hook = auth_hook(
            s.auth_hook_url,
            s.auth_hook_forward_headers,
            s.auth_hook_timeout,
            s.auth_hook_cache_ttl,
            s.auth_hook_secret,
        )?;
        c.engine = EngineConfig::from_settings(
            s.engine.map(|url| url.expose().to_owned()),
            RedisConfig {
                prefix: s.redis_prefix,
                node_id: s.node_id,
                tls_ca: s
                    .redis_ca_file
                    .as_deref()
                    .map(super::engine::read_ca_file)
                    .transpose()?,
                sentinel_password: s.redis_sentinel_password,
                ..RedisConfig::new("")
            },
        )?;
        Ok(c)
    }
}

/// The auth hook's settings; an empty URL leaves the hook off.
fn auth_hook(
    url: Option<String>,
    forward_headers: Option<Vec<String>>,
    timeout: Option<HumanDuration>,
    cache_ttl: Option<HumanDuration>,
    secret: Option<Secret>,
) -> Result<AuthHookConfig, ConfigError> {
    let url = match url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => Some(
            u.parse()
                .map_err(|e| ConfigError(format!("auth_hook_url: {u:?} is not a URL ({e})")))?,
        ),
        None => None,
    };
    let mut c = AuthHookConfig {
        url,
        cache_ttl: cache_ttl.map(|d| d.0).filter(|d| !d.is_zero()),
        secret: secret.filter(|s| !s.expose().is_empty()),
        ..AuthHookConfig::default()
    };
    if let Some(names) = forward_headers {
        c.forward_headers = names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| {
                http::HeaderName::try_from(n.to_ascii_lowercase()).map_err(|_| {
                    ConfigError(format!(
                        "auth_hook_forward_headers: {n:?} is not a header name"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    set(&mut c.timeout, timeout.map(|d| d.0));
    Ok(c)
}

/// The Mercure settings, when `mercure` is on (the keys are checked here, their presence by
/// [`Config::validate`]).
fn mercure(s: &Settings) -> Result<Option<MercureConfig>, ConfigError> {
    if s.mercure != Some(true) {
        return Ok(None);
    }
    let key = |what: &str, text: &Option<Secret>, alg: Option<JwtAlg>| {
        text.as_ref()
            .filter(|k| !k.expose().is_empty())
            .map(|k| {
                MercureKey::new(alg.unwrap_or_default(), k.expose())
                    .map_err(|e| ConfigError(format!("mercure_{what}_jwt_key: {e}")))
            })
            .transpose()
    };
    Ok(Some(MercureConfig {
        publisher_key: key(
            "publisher",
            &s.mercure_publisher_jwt_key,
            s.mercure_publisher_jwt_alg,
        )?,
        subscriber_key: key(
            "subscriber",
            &s.mercure_subscriber_jwt_key,
            s.mercure_subscriber_jwt_alg,
        )?,
        anonymous: s.mercure_anonymous.unwrap_or(false),
        subscriptions: s.mercure_subscriptions.unwrap_or(false),
        resource_identifier: s
            .mercure_resource_identifier
            .as_deref()
            .map(|text| {
                let text = text.trim();
                url::Url::parse(text)
                    .ok()
                    .filter(|u| u.has_host() && text.len() <= crate::mercure::MAX_TOPIC_LEN)
                    .map(|_| text.to_owned())
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "mercure_resource_identifier: {text:?} is not an absolute URL \
                             (https://example.com/.well-known/mercure)"
                        ))
                    })
            })
            .transpose()?,
    }))
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

fn origins(list: Option<Vec<String>>) -> Vec<String> {
    list.unwrap_or_default()
        .into_iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect()
}

fn patterns(setting: &str, list: Option<Vec<String>>) -> Result<Vec<ChannelPattern>, ConfigError> {
    list.unwrap_or_default()
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|e: crate::InvalidInput| ConfigError(format!("{setting}: {}", e.message)))
        })
        .collect()
}

/// The single key (named `default`), then the `name=key` pairs and the file's scoped entries.
fn publisher_keys(
    single: Option<Secret>,
    entries: Option<Vec<KeyEntry>>,
) -> Result<Vec<PublisherKey>, ConfigError> {
    let mut keys = Vec::new();
    if let Some(key) = single.filter(|k| !k.expose().is_empty()) {
        keys.push(PublisherKey {
            name: "default".into(),
            key,
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
            key: e.key,
            publish,
            admin: e.admin,
        });
    }
    Ok(keys)
}

fn jwt(s: &Settings) -> Result<Option<Arc<JwtVerifier>>, ConfigError> {
    let secret = s.jwt_secret.as_ref().filter(|k| !k.expose().is_empty());
    if secret.is_none() && s.jwt_public_key.is_none() && s.jwks_file.is_none() {
        return Ok(None);
    }
    let key_error = |e: crate::auth::KeyError| ConfigError(e.to_string());
    let mut v = JwtVerifier::new();
    if let Some(secret) = secret {
        v = v.with_hs256_secret(secret).map_err(key_error)?;
    }
    if let Some(path) = &s.jwt_public_key {
        // The PEM text itself (as Mercure and many secret stores hand it over), or a file.
        let inline = path
            .to_str()
            .map(str::trim_start)
            .filter(|t| t.starts_with("-----BEGIN"));
        let (pem, what) = match inline {
            Some(text) => (text.as_bytes().to_vec(), "(inline PEM)".to_owned()),
            None => (
                std::fs::read(path).map_err(|e| {
                    ConfigError(format!(
                        "cannot read the JWT public key file {}: {e} (the value is a path, or \
                         the PEM text itself starting with -----BEGIN)",
                        path.display()
                    ))
                })?,
                path.display().to_string(),
            ),
        };
        v = v
            .with_public_key_pem(&pem)
            .map_err(|e| ConfigError(format!("JWT public key {what}: {e}")))?;
    }
    if let Some(path) = &s.jwks_file {
        let json = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("cannot read the JWKS file {}: {e}", path.display()))
        })?;
        v = v
            .with_jwks(&json)
            .map_err(|e| ConfigError(format!("JWKS file {}: {e}", path.display())))?;
    }
    if let Some(iss) = &s.jwt_issuer {
        v = v.with_issuer(iss.clone());
    }
    if let Some(aud) = &s.jwt_audience {
        v = v.with_audience(aud.clone());
    }
    if let Some(leeway) = s.jwt_leeway {
        v = v.with_leeway(leeway.0);
    }
    Ok(Some(Arc::new(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3000").unwrap(), Duration::from_millis(3000));
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
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
    fn unset_settings_give_the_defaults() {
        let c = Settings::default().into_config().unwrap();
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.hub.heartbeat_interval, d.hub.heartbeat_interval);
        assert_eq!(c.hub.history, d.hub.history);
        assert_eq!(c.hub.idempotency, d.hub.idempotency);
        assert_eq!(c.http.max_body_size, d.http.max_body_size);
        assert_eq!(c.engine, EngineConfig::Memory);
        assert!(c.http.identity_from_query, "on for loopback without keys");
    }

    #[test]
    fn identity_from_query_defaults_off_with_keys_or_proxies() {
        let identity = |s: Settings| s.into_config().unwrap().http.identity_from_query;
        assert!(identity(Settings::default()));
        assert!(!identity(Settings {
            publisher_key: Some(Secret::new("0123456789abcdef")),
            ..Settings::default()
        }));
        assert!(!identity(Settings {
            trusted_proxies: Some(vec!["127.0.0.1".parse().unwrap()]),
            ..Settings::default()
        }));
        assert!(!identity(Settings {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Settings::default()
        }));
        assert!(identity(Settings {
            trusted_proxies: Some(vec!["127.0.0.1".parse().unwrap()]),
            identity_from_query: Some(true),
            ..Settings::default()
        }));
    }

    #[test]
    fn secrets_in_settings_do_not_print() {
        let s = Settings {
            publisher_key: Some(Secret::new("hunter2hunter2hunter2")),
            publisher_keys: Some(vec!["a=hunter3hunter3hunter3".parse().unwrap()]),
            engine: Some(Secret::new("redis://:hunter4@10.0.0.5:6379/0")),
            redis_sentinel_password: Some(Secret::new("hunter5")),
            ..Settings::default()
        };
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter"), "{debug}");
    }
}
