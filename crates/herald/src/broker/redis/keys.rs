//! Every Redis key and pub/sub channel name the Redis broker and presence store use, built here
//! and nowhere else.
//!
//! | Name | Type | What it holds |
//! |---|---|---|
//! | `<prefix>:meta` | hash | `epoch` (12 hex digits), `seq` (the newest id's sequence), `base` (the epoch's first sequence minus one), `bytes` (frame bytes in the stream) |
//! | `<prefix>:events` | stream | one entry per event, id `<seq>-0`: `v` storage form (`f` the frame, from earlier releases), `z` bytes it counts for, `e` epoch, `t` targets, `b` "1" when it went to everyone, `ms` publish time, `o` origin node, `k` the publisher's id for it (a Mercure update's id), if any |
//! | `<prefix>:ids` | hash | publisher's id (`k`) → `<epoch> <seq>` of the newest retained event with that id; trimmed with the stream (`scripts::PRELUDE`'s `trim`), dropped with the epoch |
//! | `<prefix>:idem:<key>` | string, TTL | what a publish with idempotency key `<key>` published: `<fingerprint> <epoch> <seq> <delivered>` |
//! | `<prefix>:nodes` | sorted set | node id → time of its last report (ms, Redis clock) |
//! | `<prefix>:node:<id>` | hash, TTL | the node's figures: `connections`, `users`, `anonymous`, `channels`, `presence`, `started`, `updated` |
//! | `<prefix>:node:<id>:users` | hash, TTL | user → the node's connections of that user |
//! | `<prefix>:node:<id>:channels` | hash, TTL | channel → the node's subscribers of that channel |
//! | `<prefix>:node:<id>:connections` | set, TTL | the node's connection ids |
//! | `<prefix>:presence:nodes` | sorted set | node id → when its presence expires (last report + its node TTL, ms), kept until the node's presence was taken out (see `scripts::REAP`) |
//! | `<prefix>:presence:node:<id>` | hash, no TTL | `<channel>\n<user>` → the start of that user's `presence:leave` event, for every user of a presence channel on the node |
//! | `<prefix>:presence:channel:<channel>` | hash, no TTL | user → how many nodes hold a connection of the user to the channel |
//! | `<prefix>:control` | channel | commands and presence queries to every node |
//! | `<prefix>:reply:<id>` | channel | answers to the queries node `<id>` sent |
//!
//! The Lua scripts reach other nodes' keys by `<node prefix><id><suffix>`, with the prefix and
//! suffixes passed in from here.

/// Suffix of a node's users hash.
pub(crate) const USERS: &str = ":users";
/// Suffix of a node's channels hash.
pub(crate) const CHANNELS: &str = ":channels";
/// Suffix of a node's connections set.
pub(crate) const CONNECTIONS: &str = ":connections";

/// The names of one cluster (a key prefix) as seen from one node.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    node: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, node: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            node: node.to_owned(),
        }
    }

    /// Epoch, sequence and size of the stream.
    pub(crate) fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }

    /// The event stream.
    pub(crate) fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Publisher-chosen ids of retained events (`<epoch> <seq>` each). The scripts find it
    /// beside the meta key (`ids_of` in `scripts::PRELUDE`).
    pub(crate) fn ids(&self) -> String {
        format!("{}:ids", self.prefix)
    }

    /// What an idempotency key published (`<fingerprint> <epoch> <seq> <delivered>`), kept
    /// for the idempotency window.
    pub(crate) fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.prefix)
    }

    /// Live nodes by last report.
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// What precedes a node id in its keys.
    pub(crate) fn node_prefix(&self) -> String {
        format!("{}:node:", self.prefix)
    }

    /// A node's figures.
    pub(crate) fn node(&self, id: &str) -> String {
        format!("{}{id}", self.node_prefix())
    }

    /// This node's figures.
    pub(crate) fn this_node(&self) -> String {
        self.node(&self.node)
    }

    /// This node's users hash.
    pub(crate) fn this_users(&self) -> String {
        format!("{}{USERS}", self.this_node())
    }

    /// This node's channels hash.
    pub(crate) fn this_channels(&self) -> String {
        format!("{}{CHANNELS}", self.this_node())
    }

    /// This node's connections set.
    pub(crate) fn this_connections(&self) -> String {
        format!("{}{CONNECTIONS}", self.this_node())
    }

    /// Nodes holding presence, by last report.
    pub(crate) fn presence_nodes(&self) -> String {
        format!("{}:presence:nodes", self.prefix)
    }

    /// What precedes a node id in its presence hash.
    pub(crate) fn presence_node_prefix(&self) -> String {
        format!("{}:presence:node:", self.prefix)
    }

    /// This node's presence hash.
    pub(crate) fn this_presence(&self) -> String {
        format!("{}{}", self.presence_node_prefix(), self.node)
    }

    /// What precedes a channel in its presence counts.
    pub(crate) fn presence_channel_prefix(&self) -> String {
        format!("{}:presence:channel:", self.prefix)
    }

    /// The channel every node listens to for commands and queries.
    pub(crate) fn control(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// The channel answers to node `id`'s queries go to.
    pub(crate) fn reply(&self, id: &str) -> String {
        format!("{}:reply:{id}", self.prefix)
    }

    /// This node's reply channel.
    pub(crate) fn this_reply(&self) -> String {
        self.reply(&self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let k = Keys::new("herald", "n1");
        assert_eq!(k.meta(), "herald:meta");
        assert_eq!(k.events(), "herald:events");
        // The scripts derive it from the meta key.
        assert_eq!(
            k.ids(),
            format!("{}ids", k.meta().strip_suffix("meta").unwrap())
        );
        assert_eq!(k.this_node(), "herald:node:n1");
        assert_eq!(
            format!("{}{}{USERS}", k.node_prefix(), "n1"),
            k.this_users()
        );
        assert_eq!(k.this_channels(), "herald:node:n1:channels");
        assert_eq!(k.this_connections(), "herald:node:n1:connections");
        assert_eq!(k.this_reply(), "herald:reply:n1");
        assert_eq!(k.control(), "herald:control");
    }
}
