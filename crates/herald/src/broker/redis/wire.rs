//! What travels through Redis besides events: the targets stored with each event, and the
//! messages of the control channel (commands, and the presence queries of
//! [`RedisPresence`](crate::presence::RedisPresence)).
//!
//! Targets are one line each (`u:<user>`, `c:<channel>`, `k:<connection>`, or `*` for a
//! broadcast) between newlines, so that a Lua script can test "is user X a target" with a plain
//! substring search. No user id or channel name can hold a newline (both exclude control
//! characters), so the framing is unambiguous.
//!
//! This is the one place targets are not the JSON form the publish body and the durable history
//! share (`target::TargetFields`): in JSON a script would have to parse every stored event to
//! filter a replay (a substring search cannot tell `"alice"` among the users from a channel of
//! that name, and JSON escapes change the bytes of some ids), and nodes of the previous release
//! on the same Redis read these lines during a rolling upgrade.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventId};
use crate::metrics::DisconnectReason;
use crate::presence::{ConnectionInfo, PresenceUser};
use crate::target::{ChannelName, ConnectionId, Fallback, Target, Targets, UserId};

/// The event a stream entry (or a replay page) holds: its storage form
/// ([`Event::stored_form`]), or the SSE frame a release before transport-neutral events wrote.
/// `None` for text no Herald node wrote.
pub(crate) fn decode_event(id: EventId, text: &str) -> Option<Event> {
    if let Some(event) = Event::from_stored_form(id, text) {
        return Some(event);
    }
    let (_, name, payload) = crate::sse::frame::decode_stored_frame(text)?;
    Some(Event::new(id, name, payload))
}

/// Encodes the targets of an event as `\n`-framed lines.
pub(crate) fn encode_targets(targets: &Targets) -> String {
    let mut out = String::from("\n");
    for target in targets.list() {
        match target {
            Target::User(u) => {
                out.push_str("u:");
                out.push_str(u.as_str());
            }
            Target::Channel(c) => {
                out.push_str("c:");
                out.push_str(c.as_str());
            }
            Target::Connection(id) => {
                out.push_str("k:");
                out.push_str(&id.to_string());
            }
            Target::Broadcast => out.push('*'),
        }
        out.push('\n');
    }
    out
}

/// Decodes what [`encode_targets`] wrote, without fallback (the publisher decided it for the
/// whole cluster). `None` for text no Herald node wrote.
pub(crate) fn decode_targets(text: &str) -> Option<Targets> {
    let mut list = Vec::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let target = match line.split_at_checked(2) {
            _ if line == "*" => Target::Broadcast,
            Some(("u:", user)) => Target::User(UserId::new(user).ok()?),
            Some(("c:", channel)) => Target::Channel(ChannelName::stored(channel).ok()?),
            Some(("k:", id)) => Target::Connection(id.parse::<ConnectionId>().ok()?),
            _ => return None,
        };
        list.push(target);
    }
    Targets::new(list, Fallback::None).ok()
}

/// Channels as the replay script wants them: joined by newlines.
pub(crate) fn encode_channels(channels: &[ChannelName]) -> String {
    channels
        .iter()
        .map(ChannelName::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message on the control channel, to every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    /// The asking node.
    pub(crate) from: String,
    /// The id its answers carry.
    pub(crate) req: String,
    /// What to do.
    #[serde(flatten)]
    pub(crate) op: Op,
}

/// What a control message asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    /// Close these users' connections and these connections.
    Disconnect {
        users: Vec<String>,
        connections: Vec<String>,
        reason: String,
    },
    /// Close every connection.
    DisconnectAll { reason: String },
    /// Who is in this channel.
    ChannelPresence { channel: String },
    /// Which connections this user has.
    UserConnections { user: String },
    /// Which connections of this transport (on these channels, or on any) there are, with their
    /// metadata ([`PresenceStore::connections`](crate::presence::PresenceStore::connections)).
    Connections {
        transport: String,
        #[serde(default)]
        channels: Vec<String>,
    },
}

/// A node's answer to a [`Request`], on the asker's reply channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// The request it answers.
    pub(crate) req: String,
    /// The answering node.
    pub(crate) node: String,
    /// Connections a command affected.
    #[serde(default)]
    pub(crate) count: usize,
    /// Users of a channel (channel presence).
    #[serde(default)]
    pub(crate) users: Vec<UserEntry>,
    /// Anonymous connections to a channel (channel presence).
    #[serde(default)]
    pub(crate) anonymous: usize,
    /// A user's connections (user presence).
    #[serde(default)]
    pub(crate) connections: Vec<ConnectionEntry>,
}

impl Reply {
    pub(crate) fn new(req: &str, node: &str) -> Self {
        Reply {
            req: req.to_owned(),
            node: node.to_owned(),
            count: 0,
            users: Vec::new(),
            anonymous: 0,
            connections: Vec::new(),
        }
    }
}

/// One user in a channel, on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserEntry {
    pub(crate) user: String,
    pub(crate) username: Option<String>,
    pub(crate) connections: usize,
    /// Milliseconds since the Unix epoch.
    pub(crate) first_ms: u64,
}

/// One connection, on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConnectionEntry {
    pub(crate) id: String,
    pub(crate) user: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) channels: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub(crate) connected_ms: u64,
    /// Its transport (absent from nodes before transports had names: `sse`).
    #[serde(default = "sse")]
    pub(crate) transport: String,
    /// The client's session id (absent from older nodes, and when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) session_id: Option<String>,
    /// The connection's metadata object (absent from older nodes, and when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<crate::hub::Metadata>,
}

fn sse() -> String {
    "sse".to_owned()
}

impl UserEntry {
    pub(crate) fn from_user(u: &PresenceUser) -> Self {
        UserEntry {
            user: u.user.as_str().to_owned(),
            username: u.username.as_deref().map(str::to_owned),
            connections: u.connections,
            first_ms: to_ms(u.first_connected_at),
        }
    }
}

impl ConnectionEntry {
    pub(crate) fn from_info(c: &ConnectionInfo) -> Self {
        ConnectionEntry {
            id: c.id.to_string(),
            user: c.user.as_ref().map(|u| u.as_str().to_owned()),
            username: c.username.as_deref().map(str::to_owned),
            channels: c.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            connected_ms: to_ms(c.connected_at),
            transport: c.transport.to_owned(),
            session_id: c.session_id.as_deref().map(str::to_owned),
            metadata: c.metadata.as_deref().cloned(),
        }
    }

    /// Back to a connection; `None` if a field is not valid (another version wrote it).
    pub(crate) fn to_info(&self) -> Option<ConnectionInfo> {
        Some(ConnectionInfo {
            id: self.id.parse().ok()?,
            user: self.user.as_deref().map(UserId::new).transpose().ok()?,
            username: self.username.as_deref().map(Into::into),
            channels: self
                .channels
                .iter()
                .map(|c| ChannelName::stored(c))
                .collect::<Result<Vec<_>, _>>()
                .ok()?
                .into(),
            connected_at: from_ms(self.connected_ms),
            transport: crate::transport::name_of(&self.transport),
            session_id: self.session_id.as_deref().map(Into::into),
            metadata: self.metadata.clone().map(std::sync::Arc::new),
        })
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The reason as text, for a control message.
pub(crate) fn reason_text(reason: DisconnectReason) -> String {
    reason.as_str().to_owned()
}

/// The reason a control message names (`server_disconnect` for one this version does not know).
pub(crate) fn reason_from(text: &str) -> DisconnectReason {
    DisconnectReason::from_name(text).unwrap_or(DisconnectReason::ServerDisconnect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip() {
        let id = ConnectionId::random();
        let targets = Targets::new(
            vec![
                Target::User(UserId::new("Zoë: 42 *").unwrap()),
                Target::Channel(ChannelName::new("orders:7").unwrap()),
                Target::Connection(id),
            ],
            Fallback::Broadcast,
        )
        .unwrap();
        let text = encode_targets(&targets);
        assert_eq!(text, format!("\nu:Zoë: 42 *\nc:orders:7\nk:{id}\n"));
        let back = decode_targets(&text).unwrap();
        assert_eq!(back.list(), targets.list());
        assert_eq!(back.fallback(), Fallback::None);
        assert!(decode_targets(&encode_targets(&Targets::broadcast()))
            .unwrap()
            .is_broadcast());
        assert!(decode_targets("\nx:what\n").is_none());
        assert!(decode_targets("").is_none());
    }

    #[test]
    fn control_messages_round_trip() {
        let request = Request {
            from: "a".into(),
            req: "1".into(),
            op: Op::Disconnect {
                users: vec!["alice".into()],
                connections: vec![],
                reason: reason_text(DisconnectReason::ServerDisconnect),
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        assert!(text.contains("\"op\":\"disconnect\""), "{text}");
        let back: Request = serde_json::from_str(&text).unwrap();
        assert!(matches!(back.op, Op::Disconnect { .. }));
        assert_eq!(
            reason_from("server_shutdown"),
            DisconnectReason::ServerShutdown
        );
        assert_eq!(reason_from("??"), DisconnectReason::ServerDisconnect);
    }
}
