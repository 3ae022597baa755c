//! This node's presence as Redis holds it: the routing index (users, channels and connection
//! ids with their counts, which the publish script reads to count `delivered` and to decide
//! `fallback: broadcast` for the whole cluster) and the figures behind cluster stats.
//!
//! Every `presence_interval` the node takes a snapshot of its connections, and writes only what
//! changed since the last report; after Redis lost the keys (a restart, a long stall past their
//! TTL) it writes everything again. Its keys carry a TTL that each report renews, so a node that
//! dies drops out of presence and routing within `node_ttl`.

use std::collections::{HashMap, HashSet};

use ::redis::aio::MultiplexedConnection;
use ::redis::{Pipeline, RedisResult};

use crate::broker::redis::keys::Keys;
use crate::presence::ConnectionInfo;

/// Most arguments in one command of a full write.
const CHUNK: usize = 512;

/// The local connections, indexed the way Redis holds them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// User → connections.
    pub(crate) users: HashMap<String, usize>,
    /// Channel → subscribers.
    pub(crate) channels: HashMap<String, usize>,
    /// Connection ids.
    pub(crate) connections: HashSet<String>,
    /// Connections without a user.
    pub(crate) anonymous: usize,
}

impl Index {
    pub(crate) fn of(snapshot: &[ConnectionInfo]) -> Self {
        let mut index = Index::default();
        for c in snapshot {
            index.connections.insert(c.id.to_string());
            match &c.user {
                Some(u) => *index.users.entry(u.as_str().to_owned()).or_default() += 1,
                None => index.anonymous += 1,
            }
            for ch in c.channels.iter() {
                *index.channels.entry(ch.as_str().to_owned()).or_default() += 1;
            }
        }
        index
    }
}

/// Adds to `pipe` the commands that turn `old` (what Redis holds) into `new`; `old = None`
/// rewrites everything.
pub(crate) fn write(pipe: &mut Pipeline, keys: &Keys, old: Option<&Index>, new: &Index) {
    let (users, channels, connections) = (
        keys.this_users(),
        keys.this_channels(),
        keys.this_connections(),
    );
    match old {
        None => {
            pipe.del(&[&users, &channels, &connections]).ignore();
            hset_all(pipe, &users, new.users.iter());
            hset_all(pipe, &channels, new.channels.iter());
            let ids: Vec<&String> = new.connections.iter().collect();
            for chunk in ids.chunks(CHUNK) {
                pipe.sadd(&connections, chunk).ignore();
            }
        }
        Some(old) => {
            hset_all(
                pipe,
                &users,
                new.users
                    .iter()
                    .filter(|(k, v)| old.users.get(*k) != Some(v)),
            );
            hdel_all(
                pipe,
                &users,
                old.users.keys().filter(|k| !new.users.contains_key(*k)),
            );
            hset_all(
                pipe,
                &channels,
                new.channels
                    .iter()
                    .filter(|(k, v)| old.channels.get(*k) != Some(v)),
            );
            hdel_all(
                pipe,
                &channels,
                old.channels
                    .keys()
                    .filter(|k| !new.channels.contains_key(*k)),
            );
            let added: Vec<&String> = new.connections.difference(&old.connections).collect();
            for chunk in added.chunks(CHUNK) {
                pipe.sadd(&connections, chunk).ignore();
            }
            let removed: Vec<&String> = old.connections.difference(&new.connections).collect();
            for chunk in removed.chunks(CHUNK) {
                pipe.srem(&connections, chunk).ignore();
            }
        }
    }
}

fn hset_all<'a>(
    pipe: &mut Pipeline,
    key: &str,
    fields: impl Iterator<Item = (&'a String, &'a usize)>,
) {
    let fields: Vec<(&String, &usize)> = fields.collect();
    for chunk in fields.chunks(CHUNK) {
        pipe.hset_multiple(key, chunk).ignore();
    }
}

fn hdel_all<'a>(pipe: &mut Pipeline, key: &str, fields: impl Iterator<Item = &'a String>) {
    let fields: Vec<&String> = fields.collect();
    for chunk in fields.chunks(CHUNK) {
        pipe.hdel(key, chunk).ignore();
    }
}

/// Runs `pipe` (if it holds anything).
pub(crate) async fn run(pipe: &Pipeline, conn: &mut MultiplexedConnection) -> RedisResult<()> {
    if pipe.is_empty() {
        return Ok(());
    }
    pipe.query_async::<()>(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{ChannelName, ConnectionId, UserId};
    use std::time::{Duration, UNIX_EPOCH};

    fn conn(user: Option<&str>, channels: &[&str], at: u64) -> ConnectionInfo {
        ConnectionInfo {
            id: ConnectionId::random(),
            user: user.map(|u| UserId::new(u).unwrap()),
            username: user.map(|u| format!("{u}!").into()),
            channels: channels
                .iter()
                .map(|c| ChannelName::new(c).unwrap())
                .collect::<Vec<_>>()
                .into(),
            connected_at: UNIX_EPOCH + Duration::from_millis(at),
        }
    }

    #[test]
    fn index_of_connections() {
        let snapshot = vec![
            conn(Some("alice"), &["news"], 20),
            conn(Some("alice"), &["news", "x"], 10),
            conn(None, &["news"], 5),
            conn(Some("bob"), &[], 1),
        ];
        let index = Index::of(&snapshot);
        assert_eq!(index.users["alice"], 2);
        assert_eq!(index.users["bob"], 1);
        assert_eq!(index.channels["news"], 3);
        assert_eq!(index.connections.len(), 4);
        assert_eq!(index.anonymous, 1);
    }
}
