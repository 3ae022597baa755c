//! Where the link's connections go: one Redis server (`redis://`, `rediss://` for TLS,
//! `redis+unix://`), or the master that Redis Sentinel names (`redis+sentinel://`,
//! `rediss+sentinel://`). With Sentinel, every new session asks the sentinels again
//! ([`Endpoint::resolve`]), so that after a failover the node reconnects to the newly promoted
//! master rather than to the old address.
//!
//! Herald's Sentinel URL:
//!
//! ```text
//! redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/MASTER_NAME[/DB]
//! ```
//!
//! The user and password are the master's (and its replicas'); the sentinels' own password is a
//! separate setting (`redis_sentinel_password`), since the sentinels usually have none or
//! another. A sentinel without a port is at 26379. `rediss+sentinel://` speaks TLS to the
//! sentinels and to the master, both verified against the same roots.
//!
//! TLS goes through redis-rs's rustls support (ring, like Herald's HTTPS server and its auth
//! hook client). It trusts the Mozilla roots (webpki-roots) by default, or, with a CA file
//! (`redis_ca_file`), only the certificates that file holds. The server's certificate must name
//! the host Herald connects to: the URL's host, or with Sentinel the address the sentinels
//! announce for the master (often an IP address, which then needs an IP SAN).

use std::fmt;
use std::time::Duration;

use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{Client, ConnectionAddr, TlsCertificates, TlsMode};

/// The port of a sentinel given without one.
pub(crate) const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// How the link reaches Redis.
pub(crate) enum Endpoint {
    /// One server, always the same address.
    Direct(Client),
    /// The master of `master`, as the sentinels name it now. The client keeps its connections
    /// to the sentinels between lookups; the lock serialises lookups (one session opens at a
    /// time anyway).
    Sentinel {
        client: Box<tokio::sync::Mutex<SentinelClient>>,
        sentinels: String,
        master: String,
    },
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Direct(client) => f
                .debug_tuple("Direct")
                .field(&client.get_connection_info().addr().to_string())
                .finish(),
            Endpoint::Sentinel {
                sentinels, master, ..
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master", master)
                .finish(),
        }
    }
}

impl Endpoint {
    /// Reads `url` (see the module docs) with the CA certificates `ca_pem` (PEM; `None`: the
    /// Mozilla roots) and the sentinels' password. Connects to nothing.
    ///
    /// # Errors
    /// A URL that does not parse, a CA file that holds no certificate, a CA or a sentinel
    /// password given for a URL that has no use for it. The message never holds a password.
    pub(crate) fn new(
        url: &str,
        ca_pem: Option<&[u8]>,
        sentinel_password: Option<&str>,
    ) -> Result<Self, String> {
        if let Some(pem) = ca_pem {
            check_ca(pem)?;
        }
        let certificates = |pem: &[u8]| TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        };
        if let Some(sentinel) = SentinelUrl::parse(url)? {
            if ca_pem.is_some() && !sentinel.tls {
                return Err(CA_WITHOUT_TLS.into());
            }
            let addrs = sentinel.sentinels.iter().map(|(host, port)| {
                if sentinel.tls {
                    ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    ConnectionAddr::Tcp(host.clone(), *port)
                }
            });
            let mut builder =
                SentinelClientBuilder::new(addrs, &sentinel.master, SentinelServerType::Master)
                    .map_err(|e| format!("Redis Sentinel: {e}"))?
                    .set_client_to_redis_db(sentinel.db);
            if let Some(user) = &sentinel.user {
                builder = builder.set_client_to_redis_username(user);
            }
            if let Some(password) = &sentinel.password {
                builder = builder.set_client_to_redis_password(password);
            }
            if let Some(password) = sentinel_password.filter(|p| !p.is_empty()) {
                builder = builder.set_client_to_sentinel_password(password);
            }
            if sentinel.tls {
                builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
                if let Some(pem) = ca_pem {
                    builder = builder
                        .set_client_to_sentinel_certificates(certificates(pem))
                        .set_client_to_redis_certificates(certificates(pem));
                }
            }
            let client = builder
                .build()
                .map_err(|e| format!("Redis Sentinel: {e}"))?;
            return Ok(Endpoint::Sentinel {
                client: Box::new(tokio::sync::Mutex::new(client)),
                sentinels: sentinel.list(),
                master: sentinel.master,
            });
        }
        if sentinel_password.is_some_and(|p| !p.is_empty()) {
            return Err(
                "redis_sentinel_password needs a redis+sentinel:// or rediss+sentinel:// engine"
                    .into(),
            );
        }
        let tls = url.starts_with("rediss://");
        let client = match ca_pem {
            Some(_) if !tls => return Err(CA_WITHOUT_TLS.into()),
            Some(pem) => Client::build_with_tls(url, certificates(pem)),
            None => Client::open(url),
        };
        // redis-rs's messages say what is wrong without repeating the URL.
        client
            .map(Endpoint::Direct)
            .map_err(|e| format!("invalid Redis URL {}: {e}", super::redacted_url(url)))
    }

    /// A client for the server to open this session's connections to: the one server, or the
    /// master the sentinels name now (asked again every time), within `limit`.
    ///
    /// # Errors
    /// No sentinel answered, none knows a healthy master of that name, or the master they name
    /// refused the connection or the credentials.
    pub(crate) async fn resolve(&self, limit: Duration) -> Result<Client, String> {
        let (client, sentinels, master) = match self {
            Endpoint::Direct(client) => return Ok(client.clone()),
            Endpoint::Sentinel {
                client,
                sentinels,
                master,
            } => (client, sentinels, master),
        };
        let lookup = async {
            let mut client = client.lock().await;
            client.async_get_client().await
        };
        match tokio::time::timeout(limit, lookup).await {
            Ok(Ok(client)) => {
                tracing::debug!(
                    %master,
                    at = %client.get_connection_info().addr(),
                    "Redis Sentinel named the master"
                );
                Ok(client)
            }
            Ok(Err(e)) => Err(format!(
                "Redis Sentinel ({sentinels}) gave no usable master {master:?}: {e}"
            )),
            Err(_) => Err(format!(
                "Redis Sentinel ({sentinels}) did not name master {master:?} within {limit:?}"
            )),
        }
    }
}

/// `PING` on a new connection: a server that wants a password (`requirepass`, an ACL user)
/// answers it with `NOAUTH`, which says more than the protocol error its first large command
/// would get.
///
/// # Errors
/// The server's answer, or a timeout.
pub(crate) async fn ping(
    conn: &mut ::redis::aio::MultiplexedConnection,
    limit: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, ::redis::cmd("PING").query_async::<()>(conn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.code() == Some("NOAUTH") => Err(format!(
            "{e} (the server wants a password: redis://USER:PASSWORD@HOST…, or \
             redis://:PASSWORD@HOST… for requirepass)"
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("Redis did not answer PING in time".into()),
    }
}

const CA_WITHOUT_TLS: &str =
    "redis_ca_file needs a TLS engine URL: rediss://… or rediss+sentinel://…";

/// Checks that `pem` holds at least one certificate, all of them readable.
fn check_ca(pem: &[u8]) -> Result<(), String> {
    let mut count = 0;
    for item in rustls_pemfile::certs(&mut &pem[..]) {
        item.map_err(|e| format!("redis_ca_file: not a PEM certificate file ({e})"))?;
        count += 1;
    }
    if count == 0 {
        return Err("redis_ca_file: no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(())
}

/// Herald's `redis+sentinel://` URL, read.
#[derive(PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    pub(crate) tls: bool,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) sentinels: Vec<(String, u16)>,
    pub(crate) master: String,
    pub(crate) db: i64,
}

impl fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .finish()
    }
}

impl SentinelUrl {
    /// `Ok(None)` when `url` is not a Sentinel URL.
    ///
    /// # Errors
    /// A Sentinel URL with an empty or malformed sentinel list, no master name, a database
    /// that is not a number, or a query string. Never repeats the password.
    pub(crate) fn parse(url: &str) -> Result<Option<SentinelUrl>, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Ok(None);
        };
        let shape = "expected redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/\
                     MASTER_NAME[/DB]";
        if rest.contains(['?', '#']) {
            return Err(format!(
                "Sentinel URL {}: no query or fragment; {shape}",
                super::redacted_url(url)
            ));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let shown = super::redacted_url(url);
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => {
                let (user, password) = match c.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (c, None),
                };
                let user = Some(percent_decode(user)).filter(|u| !u.is_empty());
                let password = password.map(percent_decode).filter(|p| !p.is_empty());
                (user, password)
            }
        };
        let mut sentinels = Vec::new();
        for entry in hosts.split(',') {
            let sentinel = parse_host_port(entry.trim()).ok_or_else(|| {
                format!(
                    "Sentinel URL {shown}: {entry:?} is not a sentinel address (HOST:PORT, \
                     comma-separated); {shape}"
                )
            })?;
            sentinels.push(sentinel);
        }
        let mut parts = path.split('/');
        let master = percent_decode(parts.next().unwrap_or(""));
        if master.is_empty() {
            return Err(format!(
                "Sentinel URL {shown}: the master's name is missing; {shape}"
            ));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(db) => db.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| {
                format!("Sentinel URL {shown}: database {db:?} is not a number; {shape}")
            })?,
        };
        if parts.any(|p| !p.is_empty()) {
            return Err(format!(
                "Sentinel URL {shown}: too many path segments; {shape}"
            ));
        }
        Ok(Some(SentinelUrl {
            tls,
            user,
            password,
            sentinels,
            master,
            db,
        }))
    }

    /// `host:port,host:port`, for messages.
    fn list(&self) -> String {
        self.sentinels
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    Some((host.to_owned(), port))
}

/// `%XX` escapes decoded (as in any URL's user, password and path); other bytes kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> SentinelUrl {
        SentinelUrl::parse(url).unwrap().unwrap()
    }

    #[test]
    fn sentinel_urls_parse() {
        let s = parsed("redis+sentinel://s1:26380,s2,[::1]:5000/mymaster");
        assert!(!s.tls);
        assert_eq!(
            s.sentinels,
            vec![
                ("s1".into(), 26380),
                ("s2".into(), DEFAULT_SENTINEL_PORT),
                ("::1".into(), 5000)
            ]
        );
        assert_eq!((s.master.as_str(), s.db), ("mymaster", 0));
        assert_eq!((s.user, s.password), (None, None));
        assert_eq!(s.sentinels.len(), 3);

        let s = parsed("rediss+sentinel://app:p%40ss%3Aw@10.0.0.1:26379/main/3");
        assert!(s.tls);
        assert_eq!(s.user.as_deref(), Some("app"));
        assert_eq!(s.password.as_deref(), Some("p@ss:w"));
        assert_eq!((s.master.as_str(), s.db), ("main", 3));

        let s = parsed("redis+sentinel://:secret@h:1/m/");
        assert_eq!((s.user, s.password.as_deref()), (None, Some("secret")));
        assert_eq!(s.db, 0);

        assert_eq!(SentinelUrl::parse("redis://h:6379/0").unwrap(), None);
    }

    #[test]
    fn malformed_sentinel_urls_are_refused_without_the_password() {
        for (url, says) in [
            (
                "redis+sentinel://:hunter2@h1:26379",
                "master's name is missing",
            ),
            (
                "redis+sentinel://:hunter2@h1:26379/",
                "master's name is missing",
            ),
            ("redis+sentinel://:hunter2@/m", "not a sentinel address"),
            (
                "redis+sentinel://:hunter2@h1,,h2/m",
                "not a sentinel address",
            ),
            (
                "redis+sentinel://:hunter2@h1:port/m",
                "not a sentinel address",
            ),
            (
                "redis+sentinel://:hunter2@h1:99999/m",
                "not a sentinel address",
            ),
            ("redis+sentinel://:hunter2@h1:0/m", "not a sentinel address"),
            ("redis+sentinel://:hunter2@h/m/x", "is not a number"),
            (
                "redis+sentinel://:hunter2@h/m/1/2",
                "too many path segments",
            ),
            ("redis+sentinel://:hunter2@h/m?db=1", "no query"),
            ("redis+sentinel://:hunter2@[::1/m", "not a sentinel address"),
        ] {
            let e = SentinelUrl::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn endpoints_check_what_goes_with_what() {
        assert!(matches!(
            Endpoint::new("redis://127.0.0.1:6379/0", None, None),
            Ok(Endpoint::Direct(_))
        ));
        assert!(matches!(
            Endpoint::new("rediss://127.0.0.1:6379/0", None, None),
            Ok(Endpoint::Direct(_))
        ));
        assert!(matches!(
            Endpoint::new("redis+sentinel://127.0.0.1/m", None, Some("pw")),
            Ok(Endpoint::Sentinel { .. })
        ));
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem();
        assert!(Endpoint::new("rediss://localhost/0", Some(ca.as_bytes()), None).is_ok());
        assert!(Endpoint::new("rediss+sentinel://localhost/m", Some(ca.as_bytes()), None).is_ok());
        let e = Endpoint::new("redis://:hunter2@h/0", Some(ca.as_bytes()), None).unwrap_err();
        assert!(e.contains("rediss://"), "{e}");
        let e = Endpoint::new("redis+sentinel://h/m", Some(ca.as_bytes()), None).unwrap_err();
        assert!(e.contains("rediss"), "{e}");
        let e = Endpoint::new("rediss://h/0", Some(b"not a certificate"), None).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = Endpoint::new("redis://h/0", None, Some("pw")).unwrap_err();
        assert!(e.contains("redis+sentinel://"), "{e}");
        let e = Endpoint::new("redis://:hunter2@h:notaport/0", None, None).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%20b%2F%zz%4"), "a b/%zz%4");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
