//! This node's presence as Redis holds it: the routing index (users, channels and connection
//! ids with their counts, which the publish script reads to count `delivered` and to decide
//! `fallback: broadcast` for the whole cluster) and the figures behind cluster stats.
//!
//! Every `presence_interval` the node takes a snapshot of its connections, and writes only what
//! changed since the last report; after Redis lost the keys (a restart, a long stall past their
//! TTL) it writes everything again. Its keys carry a TTL that each report renews, so a node that
//! dies drops out of presence and routing within `node_ttl`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use ::redis::{Pipeline, RedisResult};

use super::keys::Keys;
use super::wire::{ConnectionEntry, UserEntry};
use crate::engine::{ConnectionSnapshot, PresenceMember, PresenceUpdate};

/// Most arguments in one command of a full write.
const CHUNK: usize = 512;

/// The local connections, indexed the way Redis holds them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Index {
    /// User → connections.
    pub(super) users: HashMap<String, usize>,
    /// Channel → subscribers.
    pub(super) channels: HashMap<String, usize>,
    /// Connection ids.
    pub(super) connections: HashSet<String>,
    /// Connections without a user.
    pub(super) anonymous: usize,
}

impl Index {
    pub(super) fn of(snapshot: &[ConnectionSnapshot]) -> Self {
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
pub(super) fn write(pipe: &mut Pipeline, keys: &Keys, old: Option<&Index>, new: &Index) {
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
pub(super) async fn run(pipe: &Pipeline, conn: &mut MultiplexedConnection) -> RedisResult<()> {
    if pipe.is_empty() {
        return Ok(());
    }
    pipe.query_async::<()>(conn).await
}

/// This node's users in `channel`, for a presence query.
pub(super) fn channel_users(
    snapshot: &[ConnectionSnapshot],
    channel: &str,
) -> (Vec<UserEntry>, usize) {
    let mut users: BTreeMap<&str, UserEntry> = BTreeMap::new();
    let mut anonymous = 0;
    for c in snapshot
        .iter()
        .filter(|c| c.channels.iter().any(|ch| ch.as_str() == channel))
    {
        let Some(user) = &c.user else {
            anonymous += 1;
            continue;
        };
        let at = super::wire::to_ms(c.connected_at);
        let entry = users.entry(user.as_str()).or_insert_with(|| UserEntry {
            user: user.as_str().to_owned(),
            username: None,
            connections: 0,
            first_ms: at,
        });
        entry.connections += 1;
        if at <= entry.first_ms || entry.username.is_none() {
            if at <= entry.first_ms {
                entry.first_ms = at;
            }
            if let Some(name) = &c.username {
                entry.username = Some(name.to_string());
            }
        }
    }
    (users.into_values().collect(), anonymous)
}

/// This node's connections of `user`, for a presence query.
pub(super) fn user_connections(
    snapshot: &[ConnectionSnapshot],
    user: &str,
) -> Vec<ConnectionEntry> {
    snapshot
        .iter()
        .filter(|c| c.user.as_ref().is_some_and(|u| u.as_str() == user))
        .map(ConnectionEntry::from_snapshot)
        .collect()
}

/// A (channel, user) of this node's presence hash: `<channel>\n<user>`.
pub(super) fn member_field(member: &PresenceMember) -> String {
    format!("{}\n{}", member.channel.as_str(), member.user.as_str())
}

/// The member a field of a presence hash names (without display name).
pub(super) fn member_of(field: &str) -> Option<PresenceMember> {
    let (channel, user) = field.split_once('\n')?;
    Some(PresenceMember {
        channel: crate::target::ChannelName::new(channel).ok()?,
        user: crate::target::UserId::new(user).ok()?,
        username: None,
    })
}

/// One presence change for the `PRESENCE` script: its four arguments. `stored` is the storage
/// form of the change's event ([`crate::event::Event::stored_form`]).
pub(super) fn change_args(joined: bool, member: &PresenceMember, stored: &str) -> [Vec<u8>; 4] {
    let last = if joined {
        let mut both = stored.as_bytes().to_vec();
        both.extend_from_slice(b"\n\n");
        both.extend_from_slice(leave_prefix(member).as_bytes());
        both
    } else {
        Vec::new()
    };
    [
        if joined { b"j".to_vec() } else { b"l".to_vec() },
        member.channel.as_str().as_bytes().to_vec(),
        member.user.as_str().as_bytes().to_vec(),
        last,
    ]
}

/// The storage form of `member`'s `presence:leave` event up to its timestamp's value: the
/// scripts complete it with `"<RFC 3339 time>"}`. The same text as the storage form of the hub's
/// own leave event ([`crate::hub::presence_publication`]).
pub(super) fn leave_prefix(member: &PresenceMember) -> String {
    let data = serde_json::json!({
        "channel": member.channel,
        "userId": member.user,
        "username": member.username.as_deref(),
    });
    let mut text = data.to_string();
    text.pop(); // the closing brace
    format!("jpresence:leave\n{text},\"timestamp\":")
}

/// The storage form of `member`'s join or leave now, for changes the engine finds itself (a
/// node writing its presence again).
pub(super) fn stored_of(joined: bool, member: &PresenceMember) -> String {
    let update = PresenceUpdate {
        joined,
        member: member.clone(),
    };
    let p = crate::hub::presence_publication(&update, std::time::SystemTime::now());
    crate::event::Event::stored_form(&p.name, &p.payload)
}

/// The last snapshot, shared with the control loop (which answers presence queries from it).
pub(super) type Snapshot = Arc<Vec<ConnectionSnapshot>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{ChannelName, ConnectionId, UserId};
    use std::time::{Duration, UNIX_EPOCH};

    fn conn(user: Option<&str>, channels: &[&str], at: u64) -> ConnectionSnapshot {
        ConnectionSnapshot {
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
    fn index_and_queries() {
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
        let (users, anonymous) = channel_users(&snapshot, "news");
        assert_eq!(anonymous, 1);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].connections, 2);
        assert_eq!(users[0].first_ms, 10);
        assert_eq!(users[0].username.as_deref(), Some("alice!"));
        assert_eq!(user_connections(&snapshot, "alice").len(), 2);
        assert!(user_connections(&snapshot, "carol").is_empty());
    }

    #[test]
    fn kept_leave_events_match_the_hubs() {
        for username in [None, Some("Al \"i\"\nce")] {
            let member = PresenceMember {
                channel: ChannelName::new("room:1").unwrap(),
                user: UserId::new("alice").unwrap(),
                username: username.map(Into::into),
            };
            let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
            let update = PresenceUpdate {
                joined: false,
                member: member.clone(),
            };
            let p = crate::hub::presence_publication(&update, at);
            let stored = crate::event::Event::stored_form(&p.name, &p.payload);
            let kept = format!(
                "{}\"{}\"}}",
                leave_prefix(&member),
                crate::clock::rfc3339(at)
            );
            assert_eq!(kept, stored);
            let join = stored_of(true, &member);
            let [op, _, _, last] = change_args(true, &member, &join);
            assert_eq!(op, b"j");
            let last = String::from_utf8(last).unwrap();
            // The script cuts at the first blank line: the join's storage form, then the leave.
            let (first, rest) = last.split_once("\n\n").unwrap();
            assert_eq!(first, join);
            assert_eq!(rest, leave_prefix(&member));
        }
    }
}
