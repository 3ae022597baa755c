//! Where the load goes: `http://` (and, for WebSocket subscribers, `ws://`) URL templates, the loopback-only rule, the source addresses
//! connections are spread over, and the per-target presets (herald, nchan, generic).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// One piece of a URL path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Channel,
    User,
    Index,
}

/// Values substituted into a template: `{channel}`, `{user}` and `{i}`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vars<'a> {
    pub(crate) channel: Name<'a>,
    pub(crate) user: Name<'a>,
    pub(crate) index: u64,
}

/// A name written as a prefix and an optional number (`u` + `17` = `u17`), so that rendering
/// one never allocates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Name<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) number: Option<u64>,
}

impl<'a> Name<'a> {
    pub(crate) fn fixed(s: &'a str) -> Self {
        Name {
            prefix: s,
            number: None,
        }
    }

    pub(crate) fn numbered(prefix: &'a str, n: u64) -> Self {
        Name {
            prefix,
            number: Some(n),
        }
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.prefix.as_bytes());
        if let Some(n) = self.number {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
    }
}

/// A parsed `http://host:port/path?query` (or `ws://…`) whose path and query may hold
/// `{channel}`, `{user}` and `{i}`. The host must be a loopback address.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The template as given, for reports.
    pub(crate) raw: String,
    /// `ws://`: a WebSocket subscriber (opening handshake, then one event per message).
    /// `sio://` too: Socket.IO rides on a WebSocket.
    pub(crate) websocket: bool,
    /// `sio://`: a Socket.IO subscriber (Engine.IO v4 over WebSocket; see the `sio` module).
    pub(crate) socketio: bool,
    pub(crate) addr: SocketAddr,
    /// The `Host` header value.
    pub(crate) host: String,
    parts: Vec<Part>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Endpoint {
    /// Parses a URL template, refusing anything that is not plain HTTP (or plain WebSocket) to
    /// a loopback address.
    pub(crate) fn parse(template: &str) -> anyhow::Result<Self> {
        let (rest, websocket, socketio) = if let Some(rest) = template.strip_prefix("http://") {
            (rest, false, false)
        } else if let Some(rest) = template.strip_prefix("ws://") {
            (rest, true, false)
        } else if let Some(rest) = template.strip_prefix("sio://") {
            (rest, true, true)
        } else if template.starts_with("https://") || template.starts_with("wss://") {
            bail!("{template}: TLS is not supported (loopback benchmarks use plain http and ws)")
        } else {
            bail!("{template}: expected a URL starting with http:// (or ws://, sio://)")
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('{') {
            bail!("{template}: placeholders are only allowed in the path and query");
        }
        if authority.contains('@') {
            bail!("{template}: user info in URLs is not supported");
        }
        let (host, port) =
            split_host_port(authority).with_context(|| format!("{template}: bad host or port"))?;
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{template}: host {host:?} is not an IP address; herald-bench only loads \
                     loopback addresses (127.0.0.0/8, ::1 or localhost)"
                )
            })?
        };
        if !ip.is_loopback() {
            bail!(
                "refusing to load {template}: {ip} is not a loopback address. herald-bench only \
                 sends traffic to 127.0.0.0/8, ::1 or localhost"
            );
        }
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Endpoint {
            raw: template.to_owned(),
            websocket,
            socketio,
            addr: SocketAddr::new(ip, port),
            host: authority.to_owned(),
            parts: parse_parts(&path).with_context(|| format!("{template}: bad template"))?,
        })
    }

    /// Writes the request target (path and query) with `vars` substituted.
    pub(crate) fn write_path(&self, out: &mut Vec<u8>, vars: &Vars<'_>) {
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Part::Channel => vars.channel.write_to(out),
                Part::User => vars.user.write_to(out),
                Part::Index => {
                    out.extend_from_slice(itoa::Buffer::new().format(vars.index).as_bytes())
                }
            }
        }
    }

    pub(crate) fn uses_user(&self) -> bool {
        self.parts.contains(&Part::User)
    }

    pub(crate) fn uses_channel(&self) -> bool {
        self.parts.contains(&Part::Channel)
    }
}

fn split_host_port(authority: &str) -> anyhow::Result<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').context("unclosed [")?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => 80,
            p => p.strip_prefix(':').context("junk after ]")?.parse()?,
        };
        return Ok((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, port.parse()?)),
        Some(_) => bail!("IPv6 addresses must be written in brackets, like [::1]:8080"),
        None if authority.is_empty() => bail!("empty host"),
        None => Ok((authority, 80)),
    }
}

fn parse_parts(path: &str) -> anyhow::Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        lit.push_str(&rest[..open]);
        let close = rest[open..].find('}').context("unclosed {")? + open;
        let part = match &rest[open + 1..close] {
            "channel" => Part::Channel,
            "user" => Part::User,
            "i" => Part::Index,
            other => bail!("unknown placeholder {{{other}}} (known: {{channel}}, {{user}}, {{i}})"),
        };
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(part);
        rest = &rest[close + 1..];
    }
    lit.push_str(rest);
    if lit.bytes().any(|b| b <= b' ' || b == 0x7f) {
        bail!("the path must not contain spaces or control characters");
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// Checks a name substituted into URLs and JSON: it must need no escaping in either.
pub(crate) fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@=-".contains(&b));
    if !ok {
        bail!("{what} {name:?} must be 1 to 128 characters of A-Z a-z 0-9 _ . : @ = -");
    }
    Ok(())
}

/// The `i`-th source address (0-based) of `count`, for a connection to `target`: 127.0.0.1,
/// 127.0.0.2, … for an IPv4 target; none (the kernel picks) for IPv6 or a single address.
pub(crate) fn source_addr(target: &SocketAddr, count: u32, i: u64) -> Option<IpAddr> {
    if count <= 1 || !target.is_ipv4() {
        return None;
    }
    let k = (i % u64::from(count)) as u32;
    Some(IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(127, 0, 0, 1)) + k,
    )))
}

/// The most source addresses allowed: all of 127.0.0.1 to 127.255.255.254 would do, but nobody
/// needs more than this.
pub(crate) const MAX_SOURCE_ADDRS: u32 = 1024;

/// Which kind of server is loaded; sets the URL templates, the publish body and how a
/// subscriber knows it is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TargetKind {
    /// Herald: `/api/sse`, `/api/sse/message`, ready on the `connected` event, `/api/sse/stats`.
    Herald,
    /// nginx + nchan: `GET /sub/{channel}`, `POST /pub/{channel}` with the raw payload, ready on
    /// the response headers.
    Nchan,
    /// Anything else: give `--subscribe-url` and `--publish-url`; Herald-style publish body,
    /// ready on the response headers.
    Generic,
}

/// How subscribers receive events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    /// Server-Sent Events: `GET` a `text/event-stream` response.
    Sse,
    /// WebSocket: an opening handshake (`101`), then one event per message (Herald: `GET
    /// /api/ws`, `{"id","event","data"}` text messages).
    Websocket,
    /// Socket.IO v5 over a WebSocket (`sio://` URLs; Herald: `/socket.io/` with the identity in
    /// the handshake `auth`), one `42["name",data]` packet per event.
    Socketio,
    /// Mercure (Herald's `/.well-known/mercure`, started with `--mercure --mercure-anonymous`):
    /// SSE subscribers on `?topic={channel}` (`?topic={user}` for `publish`), ready on the
    /// response headers; updates POSTed as forms (`--publish-body mercure`) with the
    /// publisher's JWT from `--key`.
    Mercure,
}

impl Transport {
    fn of(endpoint: &Endpoint) -> Transport {
        match (endpoint.websocket, endpoint.socketio) {
            (_, true) => Transport::Socketio,
            (true, false) => Transport::Websocket,
            (false, false) => Transport::Sse,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Websocket => "websocket",
            Transport::Socketio => "socketio",
            Transport::Mercure => "mercure",
        }
    }
}

/// The shape of a publish request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BodyMode {
    /// `{"event": NAME, "data": PAYLOAD, "channels": [C]}` (or `"users": [U]`).
    Herald,
    /// The payload JSON itself (nchan: the event data is exactly the POSTed body).
    Raw,
    /// A Mercure update: a form with `topic` (the channel), `type` (the event name) and `data`
    /// (the payload JSON); give the publisher's JWT with `--key`.
    Mercure,
}

impl BodyMode {
    /// The `Content-Type` of a publish request.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            BodyMode::Herald | BodyMode::Raw => "application/json",
            BodyMode::Mercure => "application/x-www-form-urlencoded",
        }
    }
}

/// Where each event goes when several publish URLs are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PublishTo {
    /// Every event is POSTed to every publish URL (independent server processes).
    All,
    /// Every event is POSTed to the first publish URL only (a cluster that relays it).
    First,
}

/// Everything about the target after presets and overrides are applied.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) kind: TargetKind,
    pub(crate) transport: Transport,
    pub(crate) subscribe: Vec<Endpoint>,
    pub(crate) publish: Vec<Endpoint>,
    /// Herald-style stats URLs (one per server), summed.
    pub(crate) stats: Vec<Endpoint>,
    pub(crate) body: BodyMode,
    pub(crate) ready_event: Option<String>,
}

/// The inputs [`Target::resolve`] combines.
#[derive(Debug)]
pub(crate) struct TargetInput<'a> {
    pub(crate) kind: TargetKind,
    /// `None`: from the subscribe URLs' scheme (SSE for presets).
    pub(crate) transport: Option<Transport>,
    pub(crate) bases: &'a [String],
    pub(crate) subscribe: &'a [String],
    pub(crate) publish: &'a [String],
    pub(crate) stats: &'a [String],
    pub(crate) body: Option<BodyMode>,
    pub(crate) ready_event: Option<&'a str>,
    pub(crate) ready_on_headers: bool,
    pub(crate) publish_to: PublishTo,
    /// `publish` command: every user has its own channel, so nchan's templates use `{user}`.
    pub(crate) per_user: bool,
}

impl Target {
    pub(crate) fn resolve(input: &TargetInput<'_>) -> anyhow::Result<Target> {
        let bases: Vec<&str> = input
            .bases
            .iter()
            .map(|b| b.trim_end_matches('/'))
            .collect();
        let chan = if input.per_user {
            "{user}"
        } else {
            "{channel}"
        };
        let ws = input.transport == Some(Transport::Websocket);
        let sio = input.transport == Some(Transport::Socketio);
        let mercure = input.transport == Some(Transport::Mercure);
        let (sub_default, pub_default, stats_default): (&str, &str, Option<&str>) = match input.kind
        {
            // Mercure: the topic is the channel (the user, for targeted publishes).
            TargetKind::Herald if mercure => (
                if input.per_user {
                    "/.well-known/mercure?topic={user}"
                } else {
                    "/.well-known/mercure?topic={channel}"
                },
                "/.well-known/mercure",
                Some("/api/sse/stats"),
            ),
            // Targeted publishes go to users: no channel to join.
            TargetKind::Herald if input.per_user => (
                if ws {
                    "/api/ws?userId={user}"
                } else if sio {
                    "/socket.io/?userId={user}"
                } else {
                    "/api/sse?userId={user}"
                },
                "/api/sse/message",
                Some("/api/sse/stats"),
            ),
            TargetKind::Herald => (
                if ws {
                    "/api/ws?channels={channel}&userId={user}"
                } else if sio {
                    "/socket.io/?channels={channel}&userId={user}"
                } else {
                    "/api/sse?channels={channel}&userId={user}"
                },
                "/api/sse/message",
                Some("/api/sse/stats"),
            ),
            TargetKind::Nchan => ("/sub/", "/pub/", None),
            TargetKind::Generic => ("", "", None),
        };
        let with_chan = |base: &str, path: &str| {
            if input.kind == TargetKind::Nchan {
                format!("{base}{path}{chan}")
            } else {
                format!("{base}{path}")
            }
        };
        let subscribe: Vec<String> = if !input.subscribe.is_empty() {
            input.subscribe.to_vec()
        } else if input.kind == TargetKind::Generic {
            bail!("--target generic needs --subscribe-url (and --publish-url)");
        } else {
            bases
                .iter()
                .map(|b| {
                    let url = with_chan(b, sub_default);
                    match url.strip_prefix("http://") {
                        Some(rest) if ws => format!("ws://{rest}"),
                        Some(rest) if sio => format!("sio://{rest}"),
                        _ => url,
                    }
                })
                .collect()
        };
        let mut publish: Vec<String> = if !input.publish.is_empty() {
            input.publish.to_vec()
        } else if input.kind == TargetKind::Generic {
            bail!("--target generic needs --publish-url");
        } else {
            bases.iter().map(|b| with_chan(b, pub_default)).collect()
        };
        if input.publish_to == PublishTo::First {
            publish.truncate(1);
        }
        let stats = match input.stats {
            [one] if one == "none" || one.is_empty() => Vec::new(),
            [] => match (stats_default, input.subscribe.is_empty()) {
                (Some(path), true) => bases.iter().map(|b| format!("{b}{path}")).collect(),
                _ => Vec::new(),
            },
            given => given.to_vec(),
        };
        let body = input.body.unwrap_or(match input.kind {
            _ if mercure => BodyMode::Mercure,
            TargetKind::Herald | TargetKind::Generic => BodyMode::Herald,
            TargetKind::Nchan => BodyMode::Raw,
        });
        // A Mercure stream has no `connected` event: ready once its headers arrive.
        let ready_event = if input.ready_on_headers || (mercure && input.ready_event.is_none()) {
            None
        } else {
            match (input.ready_event, input.kind) {
                (Some(e), _) => Some(e.to_owned()),
                (None, TargetKind::Herald) => Some("connected".to_owned()),
                (None, _) => None,
            }
        };
        let subscribe: Vec<Endpoint> = subscribe
            .iter()
            .map(|s| Endpoint::parse(s))
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(!subscribe.is_empty(), "no subscribe URL");
        let mut transport = Transport::of(&subscribe[0]);
        if let Some(e) = subscribe.iter().find(|e| Transport::of(e) != transport) {
            bail!("{e}: all subscribe URLs must use the same transport (http:// for SSE, ws:// for WebSocket, sio:// for Socket.IO)");
        }
        // Mercure subscribers are SSE subscribers.
        if mercure && transport == Transport::Sse {
            transport = Transport::Mercure;
        }
        if let Some(given) = input.transport.filter(|&t| t != transport) {
            bail!(
                "--transport {} does not match the subscribe URL {} (http:// is SSE, ws:// is WebSocket, sio:// is Socket.IO)",
                given.name(),
                subscribe[0]
            );
        }
        Ok(Target {
            kind: input.kind,
            transport,
            subscribe,
            publish: publish
                .iter()
                .map(|s| Endpoint::parse(s))
                .collect::<anyhow::Result<_>>()?,
            stats: stats
                .iter()
                .map(|s| Endpoint::parse(s))
                .collect::<anyhow::Result<_>>()?,
            body,
            ready_event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(e: &Endpoint, vars: &Vars<'_>) -> String {
        let mut out = Vec::new();
        e.write_path(&mut out, vars);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_and_renders_templates() {
        let e =
            Endpoint::parse("http://127.0.0.1:8080/api/sse?channels={channel}&userId={user}&n={i}")
                .unwrap();
        assert_eq!(e.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(e.host, "127.0.0.1:8080");
        let vars = Vars {
            channel: Name::fixed("news"),
            user: Name::numbered("u", 42),
            index: 7,
        };
        assert_eq!(render(&e, &vars), "/api/sse?channels=news&userId=u42&n=7");
        assert!(e.uses_user() && e.uses_channel());
    }

    #[test]
    fn defaults_and_ipv6() {
        let e = Endpoint::parse("http://localhost").unwrap();
        assert_eq!(e.addr, "127.0.0.1:80".parse().unwrap());
        let vars = Vars {
            channel: Name::fixed("c"),
            user: Name::fixed("u"),
            index: 0,
        };
        assert_eq!(render(&e, &vars), "/");
        let e = Endpoint::parse("http://[::1]:9000?x=1").unwrap();
        assert_eq!(e.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(render(&e, &vars), "/?x=1");
        let e = Endpoint::parse("http://127.3.4.5:1/sub/{channel}").unwrap();
        assert_eq!(render(&e, &vars), "/sub/c");
    }

    #[test]
    fn refuses_non_loopback_and_bad_urls() {
        for bad in [
            "http://10.0.0.1:8080/",
            "http://192.168.1.2/",
            "http://8.8.8.8/",
            "http://example.com/",
            "http://[2001:db8::1]:80/",
            "https://127.0.0.1/",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/{nope}",
            "http://127.0.0.1:8080/{channel",
            "wss://127.0.0.1:8080/api/ws",
            "ws://10.0.0.1:8080/api/ws",
            "http://127.0.0.1:99999/",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} should be refused");
        }
        let err = Endpoint::parse("http://10.1.2.3:80/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn source_addresses_rotate_over_127_0_0_x() {
        let t: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(source_addr(&t, 1, 5), None);
        assert_eq!(source_addr(&t, 3, 0), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_addr(&t, 3, 4), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(
            source_addr(&t, 300, 299),
            Some("127.0.1.44".parse().unwrap())
        );
        let t6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(source_addr(&t6, 4, 1), None);
    }

    #[test]
    fn presets() {
        let bases = vec!["http://127.0.0.1:8080".to_owned()];
        let input = |kind, per_user| TargetInput {
            kind,
            transport: None,
            bases: &bases,
            subscribe: &[],
            publish: &[],
            stats: &[],
            body: None,
            ready_event: None,
            ready_on_headers: false,
            publish_to: PublishTo::All,
            per_user,
        };
        let h = Target::resolve(&input(TargetKind::Herald, false)).unwrap();
        assert_eq!(h.body, BodyMode::Herald);
        assert_eq!(h.ready_event.as_deref(), Some("connected"));
        assert_eq!(h.stats.len(), 1);
        let n = Target::resolve(&input(TargetKind::Nchan, true)).unwrap();
        assert_eq!(n.subscribe[0].raw, "http://127.0.0.1:8080/sub/{user}");
        assert_eq!(n.publish[0].raw, "http://127.0.0.1:8080/pub/{user}");
        assert_eq!(n.body, BodyMode::Raw);
        assert_eq!(n.ready_event, None);
        assert!(Target::resolve(&input(TargetKind::Generic, false)).is_err());
        assert_eq!(h.transport, Transport::Sse);
        assert!(!h.subscribe[0].websocket);
    }

    #[test]
    fn websocket_presets_and_schemes() {
        let bases = vec!["http://127.0.0.1:8080".to_owned()];
        let ws_url = vec!["ws://127.0.0.1:9000/live?u={user}".to_owned()];
        let input = |kind, transport, subscribe: &'static [String], per_user| TargetInput {
            kind,
            transport,
            bases: &[],
            subscribe,
            publish: &[],
            stats: &[],
            body: None,
            ready_event: None,
            ready_on_headers: false,
            publish_to: PublishTo::All,
            per_user,
        };
        let leak = |v: Vec<String>| -> &'static [String] { Vec::leak(v) };
        let bases = leak(bases);
        let mut i = input(TargetKind::Herald, Some(Transport::Websocket), &[], false);
        i.bases = bases;
        let h = Target::resolve(&i).unwrap();
        assert_eq!(h.transport, Transport::Websocket);
        assert_eq!(
            h.subscribe[0].raw,
            "ws://127.0.0.1:8080/api/ws?channels={channel}&userId={user}"
        );
        assert!(h.subscribe[0].websocket);
        assert_eq!(h.publish[0].raw, "http://127.0.0.1:8080/api/sse/message");
        assert_eq!(h.stats[0].raw, "http://127.0.0.1:8080/api/sse/stats");
        assert_eq!(h.ready_event.as_deref(), Some("connected"));
        i.per_user = true;
        assert_eq!(
            Target::resolve(&i).unwrap().subscribe[0].raw,
            "ws://127.0.0.1:8080/api/ws?userId={user}"
        );
        // A generic target: the scheme says which transport.
        let mut g = input(TargetKind::Generic, None, leak(ws_url), false);
        g.publish = bases;
        assert_eq!(Target::resolve(&g).unwrap().transport, Transport::Websocket);
        g.transport = Some(Transport::Sse);
        let err = Target::resolve(&g).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn mercure_preset() {
        let bases = vec!["http://127.0.0.1:8080".to_owned()];
        let mut i = TargetInput {
            kind: TargetKind::Herald,
            transport: Some(Transport::Mercure),
            bases: &bases,
            subscribe: &[],
            publish: &[],
            stats: &[],
            body: None,
            ready_event: None,
            ready_on_headers: false,
            publish_to: PublishTo::All,
            per_user: false,
        };
        let m = Target::resolve(&i).unwrap();
        assert_eq!(m.transport, Transport::Mercure);
        assert_eq!(
            m.subscribe[0].raw,
            "http://127.0.0.1:8080/.well-known/mercure?topic={channel}"
        );
        assert!(!m.subscribe[0].websocket);
        assert_eq!(
            m.publish[0].raw,
            "http://127.0.0.1:8080/.well-known/mercure"
        );
        assert_eq!(m.body, BodyMode::Mercure);
        assert_eq!(m.ready_event, None, "ready on the headers");
        assert_eq!(m.stats[0].raw, "http://127.0.0.1:8080/api/sse/stats");
        i.per_user = true;
        assert_eq!(
            Target::resolve(&i).unwrap().subscribe[0].raw,
            "http://127.0.0.1:8080/.well-known/mercure?topic={user}"
        );
    }
}
