//! Configuration of `herald serve`: command-line flags, then environment variables, then an
//! optional TOML file, then the library's documented defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Deserialize;

use herald::config::{self, Config, HeartbeatStyle, Secret};

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
    /// Keep the replay window on disk in this directory (an embedded database), so that clients
    /// resume across a restart. [default: memory only]
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Channels whose subscribers get presence:join / presence:leave events: comma-separated
    /// names or prefix patterns (`room:*`; `*` for all). [default: none]
    #[arg(long, env = "HERALD_PRESENCE_CHANNELS", value_delimiter = ',')]
    presence_channels: Option<Vec<String>>,
    /// Origins allowed to use Herald from browser pages on other origins (CORS), comma-separated
    /// (`https://app.example.com`), or `*` for any. [default: none, same-origin only]
    #[arg(long, env = "HERALD_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Option<Vec<String>>,
    /// Allow credentials (cookies) on cross-origin requests; needs explicit origins.
    /// [default: false]
    #[arg(long, env = "HERALD_CORS_CREDENTIALS")]
    cors_credentials: Option<bool>,
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
    data_dir: Option<PathBuf>,
    presence_channels: Option<Vec<String>>,
    cors_origins: Option<Vec<String>>,
    cors_credentials: Option<bool>,
    log_format: Option<LogFormat>,
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

/// Merges flags/env (already merged by clap), the file and the defaults.
pub(crate) fn load(args: ServeArgs) -> anyhow::Result<(Config, LogFormat)> {
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
    c.http.publisher_key = args
        .publisher_key
        .or(file.publisher_key)
        .filter(|k| !k.is_empty())
        .map(Secret::new);
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
    c.http.identity_from_query = args
        .identity_from_query
        .or(file.identity_from_query)
        .unwrap_or_else(|| c.listen.ip().is_loopback());
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
    c.data_dir = args.data_dir.or(file.data_dir);
    c.http.cors_origins = args
        .cors_origins
        .or(file.cors_origins)
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
    let log_format = args.log_format.or(file.log_format).unwrap_or_default();
    Ok((c, log_format))
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
