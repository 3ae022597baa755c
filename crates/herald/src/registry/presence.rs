//! Presence on this node: who is in which channel, the join and leave changes of channels with
//! presence events, and the snapshots cluster engines share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::Registry;
use crate::target::{ChannelName, UserId};

/// A user's first connection to a presence channel opened, or their last one closed.
#[derive(Debug, Clone)]
pub(crate) struct PresenceChange {
    pub(crate) joined: bool,
    pub(crate) channel: ChannelName,
    pub(crate) user: UserId,
    pub(crate) username: Option<Arc<str>>,
}

/// One user in a channel's presence list.
#[derive(Debug, Clone)]
pub struct UserPresence {
    /// The user.
    pub user: UserId,
    /// Their display name, if a connection gave one.
    pub username: Option<Arc<str>>,
    /// Their connections to the channel.
    pub connections: usize,
    /// When their oldest connection to the channel opened.
    pub first_connected_at: SystemTime,
}

impl Registry {
    pub(super) fn has_presence_events(&self, channel: &ChannelName) -> bool {
        self.presence_channels.iter().any(|p| p.matches(channel))
    }

    pub(super) fn emit(&self, changes: Vec<PresenceChange>) {
        let Some(tx) = &self.presence_tx else { return };
        for change in changes {
            if tx.try_send(change).is_err() {
                tracing::warn!("presence queue full; a presence event was dropped");
            }
        }
    }

    /// The users connected to `channel`, with their connection counts, and how many anonymous
    /// connections it has.
    pub(crate) fn channel_presence(&self, channel: &ChannelName) -> (Vec<UserPresence>, usize) {
        let mut users: HashMap<UserId, UserPresence> = HashMap::new();
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
                let p = users.entry(user.clone()).or_insert_with(|| UserPresence {
                    user: user.clone(),
                    username: None,
                    connections: 0,
                    first_connected_at: conn.opened_at_wall,
                });
                p.connections += 1;
                p.first_connected_at = p.first_connected_at.min(conn.opened_at_wall);
                if p.username.is_none() {
                    p.username = conn.username.clone();
                }
            }
        }
        let mut list: Vec<UserPresence> = users.into_values().collect();
        list.sort_by(|a, b| {
            a.first_connected_at
                .cmp(&b.first_connected_at)
                .then(a.user.cmp(&b.user))
        });
        (list, anonymous)
    }

    /// Every user of a presence channel on this node, for engines that share presence events
    /// between nodes.
    pub(crate) fn presence_members(&self) -> Vec<crate::engine::PresenceMember> {
        let global = self.global.lock();
        global
            .presence
            .iter()
            .flat_map(|(channel, users)| {
                users
                    .iter()
                    .map(move |(user, (_, username))| crate::engine::PresenceMember {
                        channel: channel.clone(),
                        user: user.clone(),
                        username: username.clone(),
                    })
            })
            .collect()
    }

    /// Every connection, for engines that share presence between nodes.
    pub(crate) fn snapshot(&self) -> Vec<crate::engine::ConnectionSnapshot> {
        let mut list = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let ix = shard.indices.read();
            list.extend(
                ix.by_id
                    .values()
                    .map(|c| crate::engine::ConnectionSnapshot {
                        id: c.id,
                        user: c.user.clone(),
                        username: c.username.clone(),
                        channels: c.channels.clone(),
                        connected_at: c.opened_at_wall,
                    }),
            );
        }
        list
    }
}
