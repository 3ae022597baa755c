//! Presence on this node: who is in which channel, and the join and leave changes of channels
//! with presence events. The hub's presence store reads it ([`crate::presence::LocalPresence`]);
//! the joins and leaves themselves reach the store's feed from `register` and `remove`.

use std::collections::HashMap;

use super::Registry;
#[cfg(test)]
use crate::presence::PresenceMember;
use crate::presence::{
    ChannelPresence, ConnectionInfo, ConnectionQuery, PresenceUpdate, PresenceUser,
};
use crate::target::{ChannelName, UserId};

impl Registry {
    pub(super) fn has_presence_events(&self, channel: &ChannelName) -> bool {
        self.presence_channels.iter().any(|p| p.matches(channel))
    }

    pub(super) fn emit(&self, changes: Vec<PresenceUpdate>) {
        let Some(tx) = &self.presence_tx else { return };
        for change in changes {
            if tx.try_send(change).is_err() {
                tracing::warn!("presence queue full; a presence event was dropped");
            }
        }
    }

    /// The users connected to `channel`, with their connection counts, and how many anonymous
    /// connections it has.
    pub(crate) fn channel_presence(&self, channel: &ChannelName) -> ChannelPresence {
        let mut users: HashMap<UserId, PresenceUser> = HashMap::new();
        let mut anonymous = 0;
        for shard in self.shards.iter() {
            let ix = shard.indices.read();
            for conn in ix
                .by_channel
                .get(channel)
                .into_iter()
                .flat_map(HashMap::values)
            {
                let Some(user) = &conn.user else {
                    anonymous += 1;
                    continue;
                };
                let p = users.entry(user.clone()).or_insert_with(|| PresenceUser {
                    user: user.clone(),
                    username: conn.username.clone(),
                    connections: 0,
                    first_connected_at: conn.opened_at_wall,
                });
                p.connections += 1;
                // The oldest connection's display name, else any.
                if conn.opened_at_wall < p.first_connected_at {
                    p.first_connected_at = conn.opened_at_wall;
                    if conn.username.is_some() {
                        p.username = conn.username.clone();
                    }
                } else if p.username.is_none() {
                    p.username = conn.username.clone();
                }
            }
        }
        let mut list: Vec<PresenceUser> = users.into_values().collect();
        list.sort_by(|a, b| {
            a.first_connected_at
                .cmp(&b.first_connected_at)
                .then(a.user.cmp(&b.user))
        });
        ChannelPresence {
            users: list,
            anonymous_connections: anonymous,
        }
    }

    /// The connections `query` selects, oldest first: through the channel index when it names
    /// channels, else a walk over every connection.
    pub(crate) fn connections(&self, query: &ConnectionQuery) -> Vec<ConnectionInfo> {
        let mut list: Vec<ConnectionInfo> = Vec::new();
        let wanted = |c: &super::Connection| c.format.name() == query.transport;
        for shard in self.shards.iter() {
            let ix = shard.indices.read();
            if query.channels.is_empty() {
                list.extend(
                    ix.by_id
                        .values()
                        .filter(|c| wanted(c))
                        .map(|c| super::connection_info(c)),
                );
                continue;
            }
            let mut seen = std::collections::HashSet::new();
            for channel in &query.channels {
                for conn in ix
                    .by_channel
                    .get(channel)
                    .into_iter()
                    .flat_map(HashMap::values)
                {
                    if wanted(conn) && seen.insert(conn.id) {
                        list.push(super::connection_info(conn));
                    }
                }
            }
        }
        list.sort_by_key(|c| (c.connected_at, c.id));
        list
    }

    /// Every user of a presence channel on this node (what the Redis presence store's index
    /// must agree with).
    #[cfg(test)]
    pub(crate) fn presence_members(&self) -> Vec<PresenceMember> {
        let global = self.global.lock();
        global
            .presence
            .iter()
            .flat_map(|(channel, users)| {
                users
                    .iter()
                    .map(move |(user, (_, username))| PresenceMember {
                        channel: channel.clone(),
                        user: user.clone(),
                        username: username.clone(),
                    })
            })
            .collect()
    }
}
