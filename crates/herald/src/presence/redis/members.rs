//! The presence hash's fields and the `PRESENCE` script's arguments: how a (channel, user) of a
//! presence channel, and its join and leave events, are written to Redis.

use crate::presence::{PresenceMember, PresenceUpdate};

/// A (channel, user) of this node's presence hash: `<channel>\n<user>`.
pub(crate) fn member_field(member: &PresenceMember) -> String {
    format!("{}\n{}", member.channel.as_str(), member.user.as_str())
}

/// The member a field of a presence hash names (without display name).
pub(crate) fn member_of(field: &str) -> Option<PresenceMember> {
    let (channel, user) = field.split_once('\n')?;
    Some(PresenceMember {
        channel: crate::target::ChannelName::stored(channel).ok()?,
        user: crate::target::UserId::new(user).ok()?,
        username: None,
    })
}

/// One presence change for the `PRESENCE` script: its four arguments. `stored` is the storage
/// form of the change's event ([`crate::event::Event::stored_form`]).
pub(crate) fn change_args(joined: bool, member: &PresenceMember, stored: &str) -> [Vec<u8>; 4] {
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
pub(crate) fn leave_prefix(member: &PresenceMember) -> String {
    let data = serde_json::json!({
        "channel": member.channel,
        "userId": member.user,
        "username": member.username.as_deref(),
    });
    let mut text = data.to_string();
    text.pop(); // the closing brace
    format!("jpresence:leave\n{text},\"timestamp\":")
}

/// The storage form of `member`'s join or leave now, for changes the store finds itself (a
/// node writing its presence again).
pub(crate) fn stored_of(joined: bool, member: &PresenceMember) -> String {
    let update = PresenceUpdate {
        joined,
        member: member.clone(),
    };
    let p = crate::hub::presence_publication(&update, std::time::SystemTime::now());
    crate::event::Event::stored_form(&p.name, &p.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{ChannelName, UserId};
    use std::time::{Duration, UNIX_EPOCH};

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
