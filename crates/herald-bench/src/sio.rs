//! Socket.IO subscribers (protocol v5 over Engine.IO v4, WebSocket transport only): the request
//! target of the upgrade, the namespace `CONNECT` packet carrying the handshake `auth`, and the
//! packets a subscriber reads (open, ping, connect, connect error, event, disconnect).
//!
//! A Socket.IO subscribe URL is written `sio://host:port/socket.io/?userId={user}&channels={channel}`:
//! the path is the Engine.IO endpoint, and the query becomes the `auth` object of the
//! `CONNECT` packet (`channels` split on commas into an array, every other parameter a string),
//! which is how both Herald's `/socket.io/` and a Node `socket.io` server read a client's
//! identity. The upgrade itself goes to `path?EIO=4&transport=websocket`.

/// The request target of the WebSocket upgrade and the `CONNECT` packet (`40{auth}`) for the
/// substituted subscribe path `path_and_query`.
pub(crate) fn handshake(path_and_query: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (path, query) = match memchr::memchr(b'?', path_and_query) {
        Some(at) => (&path_and_query[..at], &path_and_query[at + 1..]),
        None => (path_and_query, &b""[..]),
    };
    let mut target = path.to_vec();
    target.extend_from_slice(b"?EIO=4&transport=websocket");
    let mut auth = serde_json::Map::new();
    for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let key = String::from_utf8_lossy(key).into_owned();
        let value = String::from_utf8_lossy(value).into_owned();
        let value = if key == "channels" {
            serde_json::Value::Array(
                value
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(|c| serde_json::Value::String(c.to_owned()))
                    .collect(),
            )
        } else {
            serde_json::Value::String(value)
        };
        auth.insert(key, value);
    }
    let mut connect = b"40".to_vec();
    serde_json::to_writer(&mut connect, &auth).expect("a map of strings serializes");
    (target, connect)
}

/// One Engine.IO message as a subscriber sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// Engine.IO `open` (`0{...}`): the client sends its `CONNECT` now.
    Open,
    /// Engine.IO `ping` (`2`): answer `3`.
    Ping,
    /// Socket.IO `CONNECT` of the namespace (`40{"sid":…}`): connected.
    Connected,
    /// Socket.IO `CONNECT_ERROR` (`44{"message":…}`): the server refused the namespace.
    ConnectError(&'a [u8]),
    /// Socket.IO `EVENT` (`42["name",data,…]`): the name and everything after it (the data and
    /// any further arguments, such as Herald's event id).
    Event { name: &'a [u8], data: &'a [u8] },
    /// Engine.IO `close` (`1`) or Socket.IO `DISCONNECT` (`41`).
    Disconnect,
    /// Anything else (a `noop`, an `upgrade` probe's answer, a binary event).
    Other,
}

/// Parses one Engine.IO text message. Events of the main namespace only (`42[`); an event of
/// another namespace (`42/ns,[`) or with an ack id (`421[`) is `Other`.
pub(crate) fn parse(msg: &[u8]) -> Packet<'_> {
    match msg {
        [b'0', ..] => Packet::Open,
        [b'1', ..] => Packet::Disconnect,
        [b'2', ..] => Packet::Ping,
        [b'4', b'0', ..] => Packet::Connected,
        [b'4', b'1', ..] => Packet::Disconnect,
        [b'4', b'4', rest @ ..] => Packet::ConnectError(rest),
        [b'4', b'2', b'[', b'"', rest @ ..] => {
            let Some(end) = memchr::memchr(b'"', rest) else {
                return Packet::Other;
            };
            let name = &rest[..end];
            let after = &rest[end + 1..];
            let data = after.strip_prefix(b",").unwrap_or(after);
            let data = data.strip_suffix(b"]").unwrap_or(data);
            Packet::Event { name, data }
        }
        _ => Packet::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_becomes_the_auth_of_the_connect_packet() {
        let (target, connect) = handshake(b"/socket.io/?userId=u7&channels=a,b&token=t");
        assert_eq!(target, b"/socket.io/?EIO=4&transport=websocket");
        let auth: serde_json::Value = serde_json::from_slice(&connect[2..]).unwrap();
        assert_eq!(&connect[..2], b"40");
        assert_eq!(
            auth,
            serde_json::json!({"userId": "u7", "channels": ["a", "b"], "token": "t"})
        );
        let (target, connect) = handshake(b"/socket.io/");
        assert_eq!(target, b"/socket.io/?EIO=4&transport=websocket");
        assert_eq!(connect, b"40{}");
    }

    #[test]
    fn packets() {
        assert_eq!(parse(br#"0{"sid":"x","pingInterval":25000}"#), Packet::Open);
        assert_eq!(parse(b"2"), Packet::Ping);
        assert_eq!(parse(br#"40{"sid":"y"}"#), Packet::Connected);
        assert_eq!(
            parse(br#"44{"message":"unauthorized: no"}"#),
            Packet::ConnectError(br#"{"message":"unauthorized: no"}"#)
        );
        assert_eq!(
            parse(br#"42["bench",{"seq":3,"ts":9},"0000-7"]"#),
            Packet::Event {
                name: b"bench",
                data: br#"{"seq":3,"ts":9},"0000-7""#
            }
        );
        assert_eq!(
            parse(br#"42["connected",{"connectionId":"c"}]"#),
            Packet::Event {
                name: b"connected",
                data: br#"{"connectionId":"c"}"#
            }
        );
        assert_eq!(parse(b"41"), Packet::Disconnect);
        assert_eq!(parse(b"1"), Packet::Disconnect);
        for other in [
            &b"6"[..],
            b"42/admin,[\"x\",1]",
            b"421[\"x\"]",
            b"42[\"unclosed",
            b"",
        ] {
            assert_eq!(parse(other), Packet::Other, "{other:?}");
        }
    }
}
