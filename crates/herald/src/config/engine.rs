//! Which engine a [`Config`] runs on, and [`Hub::from_config`], which builds it and starts the
//! hub on it.

use std::fmt;
use std::path::Path;

use super::{Config, ConfigError, Secret};
use crate::broker::redis::{redacted_url, Endpoint};
use crate::broker::{durable::DurableError, RedisOptions};
use crate::engine::{Engine, EngineError};
use crate::{Hub, Lifecycle};

/// Where events travel between the nodes of a hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EngineConfig {
    /// This process only (the default); the replay window is in memory, or also on disk with
    /// [`Config::data_dir`].
    #[default]
    Memory,
    /// Several nodes sharing one Redis: events, replay window, presence and commands.
    Redis(RedisConfig),
}

/// How to reach Redis, and this node's place in the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host[:port][/db]` (or `redis+unix://`, `unix://`),
    /// `rediss://…` for TLS, or Redis Sentinel:
    /// `redis+sentinel://[[user]:password@]host:port[,host:port…]/master_name[/db]`
    /// (`rediss+sentinel://` for TLS), where the user and password are the master's.
    pub url: String,
    /// Prefix of every key and channel; `None`: `herald`.
    pub prefix: Option<String>,
    /// This node's id; `None`: `<hostname>-<pid>-<random>`.
    pub node_id: Option<String>,
    /// The PEM certificates of a private CA (`redis_ca_file`): TLS to Redis and the sentinels
    /// then trusts these only. `None`: the Mozilla roots.
    pub tls_ca: Option<Vec<u8>>,
    /// The sentinels' password (`redis_sentinel_password`), with a Sentinel URL.
    pub sentinel_password: Option<Secret>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted_url(&self.url))
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .field("tls_ca", &self.tls_ca.as_ref().map(|_| "<PEM>"))
            .field("sentinel_password", &self.sentinel_password)
            .finish()
    }
}

impl RedisConfig {
    /// Redis at `url` (see [`RedisConfig::url`]), with the defaults for the rest.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: None,
            node_id: None,
            tls_ca: None,
            sentinel_password: None,
        }
    }

    /// Checks what can be checked without connecting: the URL's form (the sentinel list, the
    /// master's name), the CA certificates, and that each setting goes with the URL (a CA
    /// with a TLS URL, a sentinel password with a Sentinel URL).
    ///
    /// # Errors
    /// A [`ConfigError`] saying what is wrong; it never holds a password.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.endpoint().map(|_| ())
    }

    fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        Endpoint::new(
            &self.url,
            self.tls_ca.as_deref(),
            self.sentinel_password.as_ref().map(Secret::expose),
        )
        .map_err(|e| ConfigError(format!("engine: {e}")))
    }
}

/// Reads `redis_ca_file`: PEM certificates.
///
/// # Errors
/// The file cannot be read.
pub(super) fn read_ca_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError(format!("cannot read redis_ca_file {}: {e}", path.display())))
}

impl EngineConfig {
    /// The engine of `engine` (`memory` or a Redis URL) and the Redis settings, checked
    /// ([`RedisConfig::check`]).
    ///
    /// # Errors
    /// An unknown scheme, a malformed Redis URL, an unreadable or empty CA file, or a Redis
    /// setting without a Redis engine (or one it does not go with).
    pub fn from_settings(engine: Option<String>, redis: RedisConfig) -> Result<Self, ConfigError> {
        let engine = engine.map(|e| e.trim().to_owned()).unwrap_or_default();
        if engine.is_empty() || engine == "memory" {
            let RedisConfig {
                prefix,
                node_id,
                tls_ca,
                sentinel_password,
                ..
            } = &redis;
            if prefix.is_some()
                || node_id.is_some()
                || tls_ca.is_some()
                || sentinel_password.is_some()
            {
                return Err(ConfigError(
                    "redis_prefix, node_id, redis_ca_file and redis_sentinel_password need a \
                     Redis engine (engine = redis://HOST:PORT/DB)"
                        .into(),
                ));
            }
            return Ok(EngineConfig::Memory);
        }
        if ![
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "redis+sentinel://",
            "rediss+sentinel://",
        ]
        .iter()
        .any(|scheme| engine.starts_with(scheme))
        {
            return Err(ConfigError(
                "engine: expected `memory` or a URL like redis://127.0.0.1:6379/0 (also \
                 rediss:// for TLS, redis+sentinel://HOST:PORT/MASTER_NAME for Sentinel)"
                    .into(),
            ));
        }
        let redis = RedisConfig {
            url: engine,
            ..redis
        };
        redis.check()?;
        Ok(EngineConfig::Redis(redis))
    }
}

/// Why [`Hub::from_config`] could not build a hub.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot be served (see [`Config::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory (`data_dir`) cannot be opened.
    #[error(transparent)]
    Durable(#[from] DurableError),
    /// The Redis engine (its broker and presence store) did not start.
    #[error("starting the Redis engine")]
    Redis(#[source] EngineError),
}

impl Hub {
    /// Starts the hub a configuration describes on `lifecycle` (see [`Hub::start`]): on the
    /// memory engine (with its replay window on disk when [`Config::data_dir`] is set) or on
    /// Redis ([`Config::engine`]), with the hub settings of [`Config::hub`]. Call
    /// [`Config::validate`] first; this checks only what it needs.
    ///
    /// # Errors
    /// When the data directory cannot be opened, Redis cannot be reached, or `data_dir` is set
    /// with a Redis engine.
    ///
    /// # Panics
    /// Outside a Tokio runtime (the hub starts its background tasks).
    pub async fn from_config(config: &Config, lifecycle: &Lifecycle) -> Result<Hub, StartError> {
        match &config.engine {
            EngineConfig::Memory => Ok(match &config.data_dir {
                Some(dir) => Hub::start_with_durable_history(config.hub.clone(), dir, lifecycle)?,
                None => Hub::start_in_memory(config.hub.clone(), lifecycle),
            }),
            EngineConfig::Redis(redis) => {
                if config.data_dir.is_some() {
                    return Err(ConfigError(DATA_DIR_WITH_REDIS.into()).into());
                }
                let mut options = RedisOptions::new(redis.url.clone(), config.hub.history);
                options.tls_ca.clone_from(&redis.tls_ca);
                options
                    .sentinel_password
                    .clone_from(&redis.sentinel_password);
                options.idempotency_window = config.hub.idempotency.window;
                if let Some(prefix) = &redis.prefix {
                    options.prefix = prefix.clone();
                }
                if let Some(id) = &redis.node_id {
                    options.node_id = id.clone();
                }
                let engine = Engine::redis(options).await.map_err(StartError::Redis)?;
                Ok(Hub::start(config.hub.clone(), engine, lifecycle))
            }
        }
    }
}

pub(super) const DATA_DIR_WITH_REDIS: &str =
    "data_dir keeps the memory engine's replay window on disk; with a Redis engine the window \
     lives in Redis: leave data_dir out";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines() {
        let url = "redis://127.0.0.1:6379/0".to_owned();
        let none = || RedisConfig::new("");
        assert_eq!(
            EngineConfig::from_settings(None, none()).unwrap(),
            EngineConfig::Memory
        );
        assert_eq!(
            EngineConfig::from_settings(Some("memory".into()), none()).unwrap(),
            EngineConfig::Memory
        );
        let named = RedisConfig {
            prefix: Some("p".into()),
            node_id: Some("n1".into()),
            ..none()
        };
        assert_eq!(
            EngineConfig::from_settings(Some(url.clone()), named).unwrap(),
            EngineConfig::Redis(RedisConfig {
                url,
                prefix: Some("p".into()),
                node_id: Some("n1".into()),
                tls_ca: None,
                sentinel_password: None,
            })
        );
        for ok in [
            "rediss://h:6380/0",
            "redis://app:pw@h/1",
            "redis+sentinel://s1:26379,s2:26379/mymaster",
            "rediss+sentinel://:pw@s1/mymaster/2",
        ] {
            assert!(
                matches!(
                    EngineConfig::from_settings(Some(ok.into()), none()),
                    Ok(EngineConfig::Redis(_))
                ),
                "{ok}"
            );
        }
        assert!(EngineConfig::from_settings(Some("mysql://h".into()), none()).is_err());
        let id = RedisConfig {
            node_id: Some("n1".into()),
            ..none()
        };
        assert!(EngineConfig::from_settings(None, id).is_err());
        let password = RedisConfig {
            sentinel_password: Some(Secret::new("pw")),
            ..none()
        };
        assert!(EngineConfig::from_settings(None, password).is_err());
    }

    #[test]
    fn malformed_redis_settings_are_clear_config_errors() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem()
            .into_bytes();
        let check = |url: &str, ca: Option<&[u8]>, sentinel: Option<&str>| {
            let redis = RedisConfig {
                tls_ca: ca.map(<[u8]>::to_vec),
                sentinel_password: sentinel.map(Secret::new),
                ..RedisConfig::new("")
            };
            let e = EngineConfig::from_settings(Some(url.into()), redis)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2"), "{e}");
            e
        };
        let e = check("redis+sentinel://:hunter2@h1,,h2/m", None, None);
        assert!(e.contains("not a sentinel address"), "{e}");
        let e = check("redis+sentinel://:hunter2@h1:26379", None, None);
        assert!(e.contains("master's name is missing"), "{e}");
        let e = check("redis://:hunter2@h/0", Some(&ca), None);
        assert!(e.contains("redis_ca_file needs a TLS engine URL"), "{e}");
        let e = check("rediss://:hunter2@h/0", Some(b"garbage"), None);
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = check("rediss://:hunter2@h/0", None, Some("hunter2"));
        assert!(e.contains("redis_sentinel_password needs"), "{e}");
        let e = read_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn redis_settings_do_not_print_secrets() {
        let c = RedisConfig {
            sentinel_password: Some(Secret::new("hunter5")),
            ..RedisConfig::new("rediss+sentinel://app:hunter6@s1:26379/main")
        };
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter"), "{debug}");
        assert!(debug.contains("app:***@s1:26379/main"), "{debug}");
    }
}
