//! Which engine a [`Config`] runs on, and [`Hub::from_config`], which builds it and starts the
//! hub on it.

use std::fmt;

use super::{Config, ConfigError};
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
    /// `redis://[[user]:password@]host[:port][/db]` (or `redis+unix://`, `unix://`).
    pub url: String,
    /// Prefix of every key and channel; `None`: `herald`.
    pub prefix: Option<String>,
    /// This node's id; `None`: `<hostname>-<pid>-<random>`.
    pub node_id: Option<String>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        let url = match self.url.rsplit_once('@') {
            Some((_, host)) => format!("<redacted>@{host}"),
            None => self.url.clone(),
        };
        f.debug_struct("RedisConfig")
            .field("url", &url)
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .finish()
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
