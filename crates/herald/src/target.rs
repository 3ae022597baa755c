//! Who an event is for: identifier newtypes and the [`Target`] enum.
//!
//! Strings from the outside world are parsed into these types once, at the edge (HTTP handlers,
//! library callers); everything inside the hub works with values that are already valid.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::InvalidInput;

/// Longest accepted user id, in characters.
pub const MAX_USER_ID_LEN: usize = 256;
/// Longest accepted channel name, in bytes.
pub const MAX_CHANNEL_NAME_LEN: usize = 128;
/// Longest accepted username, in characters.
pub const MAX_USERNAME_LEN: usize = 256;

/// The id of one SSE connection: 128 random bits from the operating system's CSPRNG, written as
/// 32 lowercase hex digits. Unguessable, so knowing one user's connection id tells nothing about
/// another's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u128);

impl ConnectionId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        ConnectionId(u128::from_be_bytes(bytes))
    }

    /// Which of `shards` shards this connection lives in.
    pub(crate) fn shard_index(self, shards: usize) -> usize {
        // The low bits are as random as the rest.
        (self.0 % shards.max(1) as u128) as usize
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

impl FromStr for ConnectionId {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match valid.then(|| u128::from_str_radix(s, 16)) {
            Some(Ok(v)) => Ok(ConnectionId(v)),
            _ => Err(InvalidInput::new(
                "connection",
                "a connection id is 32 hexadecimal digits",
            )),
        }
    }
}

impl Serialize for ConnectionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A user id as given by the application (from the query string on loopback, from a token's
/// `sub` claim): 1 to [`MAX_USER_ID_LEN`] characters without control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Validates and wraps a user id.
    ///
    /// # Errors
    /// When the id is empty, too long or holds a control character.
    pub fn new(s: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() || s.chars().count() > MAX_USER_ID_LEN {
            return Err(InvalidInput::new(
                "userId",
                format!("a user id is 1 to {MAX_USER_ID_LEN} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidInput::new(
                "userId",
                "a user id cannot contain control characters",
            ));
        }
        Ok(UserId(s.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({:?})", &*self.0)
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A channel name: 1 to [`MAX_CHANNEL_NAME_LEN`] characters of `[A-Za-z0-9_.:@/=-]`.
/// The set leaves out `*` and `,` on purpose: `*` is reserved for channel patterns in token
/// claims and `,` separates channels in the `channels` query parameter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates and wraps a channel name.
    ///
    /// # Errors
    /// When the name is empty, too long or holds a character outside the allowed set.
    pub fn new(s: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() || s.len() > MAX_CHANNEL_NAME_LEN {
            return Err(InvalidInput::new(
                "channels",
                format!("a channel name is 1 to {MAX_CHANNEL_NAME_LEN} characters"),
            ));
        }
        if let Some(c) = s.chars().find(|c| !is_channel_char(*c)) {
            return Err(InvalidInput::new(
                "channels",
                format!(
                    "channel name {:?} has the character {c:?}; allowed are A-Z a-z 0-9 and _ . : @ / = -",
                    s.escape_debug().to_string()
                ),
            ));
        }
        Ok(ChannelName(s.into()))
    }

    /// An internal channel: `~` and then 1 to [`MAX_CHANNEL_NAME_LEN`] - 1 characters of the
    /// channel set or `*`. No client can name one (`~` is outside the set [`ChannelName::new`]
    /// takes), so a protocol that maps its own subscriptions onto channels (Mercure's topics)
    /// routes through the channel index without a client of `/api/sse` ever joining them.
    ///
    /// # Errors
    /// When `s` is not of that form.
    pub(crate) fn internal(s: &str) -> Result<Self, InvalidInput> {
        let valid = s.len() <= MAX_CHANNEL_NAME_LEN
            && s.strip_prefix('~').is_some_and(|rest| {
                !rest.is_empty() && rest.chars().all(|c| is_channel_char(c) || c == '*')
            });
        if !valid {
            return Err(InvalidInput::new(
                "channels",
                "not an internal channel name",
            ));
        }
        Ok(ChannelName(s.into()))
    }

    /// A name read back from an engine's storage (a Redis stream, the durable file, another
    /// node's presence): a client's channel ([`ChannelName::new`]) or an internal one
    /// ([`ChannelName::internal`]).
    ///
    /// # Errors
    /// When it is neither.
    pub(crate) fn stored(s: &str) -> Result<Self, InvalidInput> {
        if s.starts_with('~') {
            Self::internal(s)
        } else {
            Self::new(s)
        }
    }

    /// Whether this is an internal channel (`~…`: a protocol's own, such as Mercure's topics;
    /// no client can name one).
    pub fn is_internal(&self) -> bool {
        self.0.starts_with('~')
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '/' | '=' | '-')
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({:?})", &*self.0)
    }
}

impl Serialize for ChannelName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A channel name or a prefix pattern: `orders` (exactly that channel), `orders:*` (every channel
/// starting with `orders:`), `*` (every channel). Used to opt channels into presence events and,
/// in tokens, to say which channels a subscriber may join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelPattern {
    /// One channel.
    Exact(ChannelName),
    /// Every channel starting with this prefix.
    Prefix(String),
}

impl ChannelPattern {
    /// True if `channel` matches.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        match self {
            ChannelPattern::Exact(c) => c == channel,
            ChannelPattern::Prefix(p) => channel.as_str().starts_with(p.as_str()),
        }
    }
}

impl FromStr for ChannelPattern {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_suffix('*') {
            Some(prefix) => {
                if !prefix.chars().all(is_channel_char) {
                    return Err(InvalidInput::new(
                        "channels",
                        format!("channel pattern {s:?}: only a trailing * is allowed"),
                    ));
                }
                Ok(ChannelPattern::Prefix(prefix.to_owned()))
            }
            None => ChannelName::new(s).map(ChannelPattern::Exact),
        }
    }
}

impl fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelPattern::Exact(c) => write!(f, "{c}"),
            ChannelPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// Validates a display name: up to [`MAX_USERNAME_LEN`] characters without control characters.
/// It only ever travels inside JSON, so no other character is dangerous.
///
/// # Errors
/// When the name is too long or holds a control character.
pub fn validate_username(s: &str) -> Result<Arc<str>, InvalidInput> {
    if s.chars().count() > MAX_USERNAME_LEN || s.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            "username",
            format!(
                "a username is at most {MAX_USERNAME_LEN} characters without control characters"
            ),
        ));
    }
    Ok(s.into())
}

/// One routing target of a published event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection of this user.
    User(UserId),
    /// This one connection.
    Connection(ConnectionId),
    /// Every connection subscribed to this channel.
    Channel(ChannelName),
    /// Every connection of the hub.
    Broadcast,
}

/// What to do when the explicit targets of an event match no connection. In JSON: `"none"` or
/// `"broadcast"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Deliver to nobody and answer `delivered: 0` (the default: never leak an event).
    #[default]
    None,
    /// Broadcast the event instead. Opt-in only.
    Broadcast,
}

/// The full routing of one event: a non-empty union of targets, and the fallback.
///
/// Invariant (kept by [`Targets::new`]): not empty, and [`Target::Broadcast`] only ever appears
/// alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    list: Vec<Target>,
    fallback: Fallback,
}

impl Targets {
    /// Builds a routing from a list of targets.
    ///
    /// # Errors
    /// When the list is empty, or when it mixes [`Target::Broadcast`] with other targets.
    pub fn new(mut list: Vec<Target>, fallback: Fallback) -> Result<Self, InvalidInput> {
        if list.is_empty() {
            return Err(InvalidInput::with_code(
                "missing_target",
                "targets",
                "name at least one target: users, connections, channels, or broadcast: true",
            ));
        }
        let broadcasts = list.iter().filter(|t| **t == Target::Broadcast).count();
        if broadcasts > 0 && list.len() > broadcasts {
            return Err(InvalidInput::with_code(
                "conflicting_targets",
                "broadcast",
                "broadcast: true cannot be combined with users, connections or channels",
            ));
        }
        list.dedup();
        Ok(Targets { list, fallback })
    }

    /// Every connection of the hub.
    pub fn broadcast() -> Self {
        Targets {
            list: vec![Target::Broadcast],
            fallback: Fallback::None,
        }
    }

    /// A single target.
    pub fn one(target: Target) -> Self {
        Targets {
            list: vec![target],
            fallback: Fallback::None,
        }
    }

    /// The targets, in the order given.
    pub fn list(&self) -> &[Target] {
        &self.list
    }

    /// The fallback policy.
    pub fn fallback(&self) -> Fallback {
        self.fallback
    }

    /// True when the event goes to every connection.
    pub fn is_broadcast(&self) -> bool {
        self.list.first() == Some(&Target::Broadcast)
    }
}

/// The JSON form of [`Targets`], one for every place that writes targets as JSON: the publish
/// body (`{"users", "connections", "channels", "broadcast", "fallback"}` beside `event` and
/// `data`) and the durable history's records. The fields hold plain strings, checked by
/// [`TargetFields::into_targets`], so that a reader can tell which field is wrong.
///
/// Empty fields are left out when written. Redis stores targets in a form of its own, one line
/// per target, that its Lua scripts can search (see `engine/redis/wire.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFields {
    /// User ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Channel names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Connection ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<String>,
    /// Every connection (alone: not with the fields above).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
    /// What to do when the targets match nobody.
    #[serde(default, skip_serializing_if = "Fallback::is_none")]
    pub fallback: Fallback,
}

impl Fallback {
    fn is_none(&self) -> bool {
        *self == Fallback::None
    }
}

impl TargetFields {
    /// Checks every id and name and builds the routing (users first, then connections,
    /// channels, broadcast, in the order given).
    ///
    /// # Errors
    /// An [`InvalidInput`] naming the field (`users`, `connections`, `channels`) of the first
    /// invalid entry, or the errors of [`Targets::new`] (no target; broadcast with others).
    pub fn into_targets(self) -> Result<Targets, InvalidInput> {
        self.into_targets_with(ChannelName::new)
    }

    /// [`TargetFields::into_targets`] for targets an engine stored: internal channels
    /// ([`ChannelName::internal`]) are accepted too.
    pub(crate) fn into_stored_targets(self) -> Result<Targets, InvalidInput> {
        self.into_targets_with(ChannelName::stored)
    }

    fn into_targets_with(
        self,
        channel_name: fn(&str) -> Result<ChannelName, InvalidInput>,
    ) -> Result<Targets, InvalidInput> {
        let field = |field: &'static str| {
            move |mut e: InvalidInput| {
                e.field = field.into();
                e
            }
        };
        let mut list =
            Vec::with_capacity(self.users.len() + self.connections.len() + self.channels.len() + 1);
        for user in &self.users {
            list.push(Target::User(UserId::new(user).map_err(field("users"))?));
        }
        for id in &self.connections {
            list.push(Target::Connection(
                id.parse::<ConnectionId>().map_err(field("connections"))?,
            ));
        }
        for channel in &self.channels {
            list.push(Target::Channel(
                channel_name(channel).map_err(field("channels"))?,
            ));
        }
        if self.broadcast {
            list.push(Target::Broadcast);
        }
        Targets::new(list, self.fallback)
    }
}

impl From<&Targets> for TargetFields {
    fn from(targets: &Targets) -> Self {
        let mut fields = TargetFields {
            fallback: targets.fallback(),
            ..TargetFields::default()
        };
        for target in targets.list() {
            match target {
                Target::User(u) => fields.users.push(u.as_str().to_owned()),
                Target::Channel(c) => fields.channels.push(c.as_str().to_owned()),
                Target::Connection(id) => fields.connections.push(id.to_string()),
                Target::Broadcast => fields.broadcast = true,
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_fields_round_trip_and_name_the_bad_field() {
        let id = ConnectionId::random();
        let targets = Targets::new(
            vec![
                Target::User(UserId::new("alice").unwrap()),
                Target::Connection(id),
                Target::Channel(ChannelName::new("orders:7").unwrap()),
            ],
            Fallback::Broadcast,
        )
        .unwrap();
        let fields = TargetFields::from(&targets);
        let text = serde_json::to_string(&fields).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"users":["alice"],"channels":["orders:7"],"connections":["{id}"],"fallback":"broadcast"}}"#
            )
        );
        let back: TargetFields = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_targets().unwrap(), targets);
        // Empty fields and the default fallback are left out.
        assert_eq!(
            serde_json::to_string(&TargetFields::from(&Targets::broadcast())).unwrap(),
            r#"{"broadcast":true}"#
        );
        for (fields, field) in [
            (r#"{"users":["a\nb"]}"#, "users"),
            (r#"{"connections":["nope"]}"#, "connections"),
            (r#"{"channels":["a b"]}"#, "channels"),
            (r#"{}"#, "targets"),
            (r#"{"users":["a"],"broadcast":true}"#, "broadcast"),
        ] {
            let fields: TargetFields = serde_json::from_str(fields).unwrap();
            assert_eq!(fields.into_targets().unwrap_err().field, field);
        }
        assert!(serde_json::from_str::<TargetFields>(r#"{"fallback":"all"}"#).is_err());
    }

    #[test]
    fn connection_ids_are_random_and_round_trip() {
        let a = ConnectionId::random();
        let b = ConnectionId::random();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<ConnectionId>().unwrap(), a);
        assert!("xyz".parse::<ConnectionId>().is_err());
        assert!("+0000000000000000000000000000001"
            .parse::<ConnectionId>()
            .is_err());
    }

    #[test]
    fn user_ids_reject_control_characters() {
        assert!(UserId::new("alice").is_ok());
        assert!(UserId::new("Zoë 42").is_ok());
        assert!(UserId::new("").is_err());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::new("a\rb").is_err());
        assert!(UserId::new("a\0b").is_err());
        assert!(UserId::new(&"x".repeat(MAX_USER_ID_LEN + 1)).is_err());
    }

    #[test]
    fn channel_names_allow_only_the_documented_set() {
        for ok in [
            "orders",
            "orders:42",
            "team/eng",
            "a.b-c_d",
            "user@x",
            "k=v",
        ] {
            assert!(ChannelName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a,b", "orders:*", "a\nb", "é"] {
            assert!(ChannelName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_patterns() {
        let c = |s| ChannelName::new(s).unwrap();
        let p: ChannelPattern = "room:*".parse().unwrap();
        assert!(p.matches(&c("room:1")) && !p.matches(&c("rooms")));
        let all: ChannelPattern = "*".parse().unwrap();
        assert!(all.matches(&c("anything")));
        let exact: ChannelPattern = "lobby".parse().unwrap();
        assert!(exact.matches(&c("lobby")) && !exact.matches(&c("lobby2")));
        assert!("a*b".parse::<ChannelPattern>().is_err());
        assert!("a b*".parse::<ChannelPattern>().is_err());
    }

    #[test]
    fn targets_reject_empty_and_mixed_broadcast() {
        assert_eq!(
            Targets::new(vec![], Fallback::None).unwrap_err().code,
            "missing_target"
        );
        let alice = Target::User(UserId::new("alice").unwrap());
        assert_eq!(
            Targets::new(vec![Target::Broadcast, alice.clone()], Fallback::None)
                .unwrap_err()
                .code,
            "conflicting_targets"
        );
        assert!(Targets::new(vec![alice], Fallback::Broadcast).is_ok());
        assert!(Targets::broadcast().is_broadcast());
    }
}
