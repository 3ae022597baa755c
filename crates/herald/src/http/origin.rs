//! Which browser pages may talk to the hub.
//!
//! - **Origin rule** (every publish and admin endpoint): a request that carries an `Origin`
//!   header other than the hub's own (the scheme and host the client used, or those a trusted
//!   proxy forwards) and not listed in `publish_origins` is refused with `403
//!   origin_not_allowed`. Browsers send `Origin` on every cross-origin request, including the
//!   "simple" `text/plain` POSTs that need no CORS preflight; requests without one (curl,
//!   backends) are not browser requests and pass. CORS (`cors_origins`, even `*`) never lets a
//!   page publish.
//! - **Host rule** (open hub, every endpoint, the stream included): with neither publisher keys
//!   nor JWT configured, only loopback host names are answered (`localhost`, `*.localhost`,
//!   `127.0.0.0/8`, `[::1]`); any other `Host` gets `403 host_not_allowed`. That defeats DNS
//!   rebinding, where a page on `evil.example` re-points its name at 127.0.0.1 and then talks to
//!   the hub as if it were its own origin. A request without a host (HTTP/1.0) passes.
//!
//! - **Socket rule** (the WebSocket upgrade, `GET /api/ws`): browsers open a WebSocket from any
//!   page and send the user's cookies with it, and no CORS check protects the answer (cross-site
//!   WebSocket hijacking). So the upgrade accepts the pages that CORS would let read an SSE
//!   stream, no more: its `Origin` must be the hub's own or listed in `cors_origins` (or
//!   `cors_origins` is `*`), else `403 origin_not_allowed`; and the token cookie counts only
//!   where CORS would let the page send it, the hub's own origin or a listed one with
//!   `cors_credentials` (a token in the query or the `Authorization` header still counts).
//!   Requests without `Origin` (servers, native clients) pass.
//!
//! [`check_origin`] is the reusable check: the publisher and admin middlewares call it first, so
//! every endpoint they guard follows the rule; [`check_socket_origin`] is the socket rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::auth::TokenCookie;
use super::ApiError;
use crate::config::HttpConfig;

/// Request extension: the request arrived over TLS. The server adds it to the requests of its
/// HTTPS connections, so that the hub's own origin is `https://…`. An application that
/// terminates TLS itself and serves Herald's router can add it too.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsConnection;

/// An origin, normalized: lowercase scheme and host, port made explicit.
#[derive(Debug, PartialEq, Eq)]
struct Site {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (a `Host` header, an authority) without user info.
fn authority(text: &str) -> Option<Authority> {
    if text.is_empty() || text.contains('@') {
        return None;
    }
    text.parse().ok()
}

impl Site {
    /// `scheme://host[:port]`, exactly (no path, no user info); `None` for anything else,
    /// `null` included.
    fn parse_origin(text: &str) -> Option<Site> {
        let (scheme, rest) = text.trim().split_once("://")?;
        if scheme.is_empty() || rest.contains(['/', '?', '#']) {
            return None;
        }
        Site::new(scheme, rest)
    }

    fn new(scheme: &str, host: &str) -> Option<Site> {
        let scheme = scheme.to_ascii_lowercase();
        let authority = authority(host)?;
        Some(Site {
            port: authority.port_u16().or_else(|| default_port(&scheme)),
            host: authority.host().to_ascii_lowercase(),
            scheme,
        })
    }
}

/// Whether `text` is an origin `publish_origins` accepts (`https://app.example.com`).
pub(crate) fn is_valid_origin(text: &str) -> bool {
    text == text.trim()
        && !text.ends_with('/')
        && (text.starts_with("http://") || text.starts_with("https://"))
        && Site::parse_origin(text).is_some()
}

/// The first value of a header that may hold a comma-separated list, trimmed.
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

fn from_trusted_proxy<B>(config: &HttpConfig, request: &axum::http::Request<B>) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| config.trusted_proxies.contains(&peer.ip()))
}

fn host_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// The hub's own origin as this request's client sees it: the scheme and host it used, or the
/// ones a trusted proxy forwards (`X-Forwarded-Proto`, `X-Forwarded-Host`).
fn own_site<B>(config: &HttpConfig, request: &axum::http::Request<B>) -> Option<Site> {
    let headers = request.headers();
    let trusted = from_trusted_proxy(config, request);
    let forwarded = |name| trusted.then(|| first_value(headers, name)).flatten();
    let scheme = forwarded("x-forwarded-proto")
        .or(request.uri().scheme_str())
        .unwrap_or(if request.extensions().get::<TlsConnection>().is_some() {
            "https"
        } else {
            "http"
        });
    let authority = request.uri().authority().map(Authority::as_str);
    let host = forwarded("x-forwarded-host")
        .or_else(|| host_header(headers))
        .or(authority)?;
    Site::new(scheme, host)
}

/// The hub's own origin as this request's client sees it (see `own_site`), as text:
/// `scheme://host`, with `:port` only when it is not the scheme's default. The Mercure hub's
/// default resource identifier starts with it.
pub(crate) fn own_origin<B>(
    config: &HttpConfig,
    request: &axum::http::Request<B>,
) -> Option<String> {
    let site = own_site(config, request)?;
    Some(match site.port {
        Some(port) if Some(port) != default_port(&site.scheme) => {
            format!("{}://{}:{port}", site.scheme, site.host)
        }
        _ => format!("{}://{}", site.scheme, site.host),
    })
}

fn origin_allowed<B>(config: &HttpConfig, request: &axum::http::Request<B>, origin: &str) -> bool {
    let Some(site) = Site::parse_origin(origin) else {
        return false;
    };
    own_site(config, request).as_ref() == Some(&site)
        || config
            .publish_origins
            .iter()
            .any(|listed| Site::parse_origin(listed).as_ref() == Some(&site))
}

/// The Origin rule of publish and admin endpoints: a request from a browser page on another
/// origin than the hub's, not listed in `publish_origins`, gets `403 origin_not_allowed`.
/// Requests without `Origin` pass.
///
/// # Errors
/// `403 origin_not_allowed`.
pub(crate) fn check_origin<B>(
    config: &HttpConfig,
    request: &axum::http::Request<B>,
) -> Result<(), ApiError> {
    for origin in request.headers().get_all(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("");
        if !origin_allowed(config, request, text) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!(
                    "pages on {text:?} may not publish or use admin endpoints of this hub; list \
                     the origin in publish_origins (--publish-origins) to allow it"
                ),
            ));
        }
    }
    Ok(())
}

/// The socket rule (see the module docs): whether a page on the request's `Origin` may open a
/// WebSocket, and whether its token cookie then counts. Requests without `Origin` pass, cookie
/// included.
///
/// # Errors
/// `403 origin_not_allowed`.
pub(crate) fn check_socket_origin<B>(
    config: &HttpConfig,
    request: &axum::http::Request<B>,
) -> Result<TokenCookie, ApiError> {
    let mut cookie = TokenCookie::Read;
    for origin in request.headers().get_all(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("");
        let site = Site::parse_origin(text);
        let listed = site.is_some()
            && config
                .cors_origins
                .iter()
                .any(|listed| Site::parse_origin(listed) == site);
        if site.is_some() && own_site(config, request) == site {
            continue;
        }
        if listed {
            if !config.cors_credentials {
                cookie = TokenCookie::Ignored;
            }
            continue;
        }
        if config.cors_origins.iter().any(|o| o == "*") {
            // CORS `*` never carries credentials.
            cookie = TokenCookie::Ignored;
            continue;
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "pages on {text:?} may not open WebSockets to this hub; list the origin in \
                 cors_origins (--cors-origins) to allow it"
            ),
        ));
    }
    Ok(cookie)
}

/// Whether a host name (as in `Host`, without the port) is a loopback name or address.
fn is_loopback_name(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        });
    }
    host.parse::<Ipv4Addr>()
        .is_ok_and(|ip| IpAddr::V4(ip).is_loopback())
}

/// `localhost`, `127.0.0.1` or `[::1]`, with or without a port: the names a local client sends.
fn is_plain_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// An open hub: publishing needs no credential.
fn is_open(config: &HttpConfig) -> bool {
    config.publisher_keys.is_empty() && config.jwt.is_none()
}

/// The Host rule of an open hub: every host the request names (its `Host`, the authority of its
/// URI, a trusted proxy's `X-Forwarded-Host`) must be a loopback name. A request naming none
/// (HTTP/1.0) passes. A hub with a publisher key or JWT answers any host.
///
/// # Errors
/// `403 host_not_allowed`.
pub(crate) fn check_host<B>(
    config: &HttpConfig,
    request: &axum::http::Request<B>,
) -> Result<(), ApiError> {
    if !is_open(config) {
        return Ok(());
    }
    let headers = request.headers();
    // The common case, allocation-free: one `Host` that is plainly a loopback name, no URI
    // authority (HTTP/1.1), no proxy.
    if request.uri().authority().is_none() && !from_trusted_proxy(config, request) {
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => return Ok(()),
            (Some(host), None) if host.to_str().is_ok_and(is_plain_loopback) => return Ok(()),
            _ => {}
        }
    }
    let mut names: Vec<&str> = headers
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .collect();
    names.extend(request.uri().authority().map(Authority::as_str));
    if from_trusted_proxy(config, request) {
        names.extend(first_value(headers, "x-forwarded-host"));
    }
    for name in names {
        let loopback = authority(name).is_some_and(|a| is_loopback_name(a.host()));
        if !loopback {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!(
                    "this hub has no publisher key, so it answers only to loopback names \
                     (localhost, 127.0.0.1, [::1]), not to {name:?}; configure a publisher key \
                     to serve it under another name"
                ),
            ));
        }
    }
    Ok(())
}

/// Layer of the whole router: the Host rule of an open hub. A plain tower service (no boxing
/// of the inner router's future, unlike an axum `from_fn` middleware): every request passes here.
#[derive(Clone, Debug)]
pub(crate) struct HostRuleLayer {
    pub(crate) config: std::sync::Arc<HttpConfig>,
}

impl<S> tower::Layer<S> for HostRuleLayer {
    type Service = HostRule<S>;
    fn layer(&self, inner: S) -> HostRule<S> {
        HostRule {
            config: self.config.clone(),
            inner,
        }
    }
}

/// The service of [`HostRuleLayer`].
#[derive(Clone, Debug)]
pub(crate) struct HostRule<S> {
    config: std::sync::Arc<HttpConfig>,
    inner: S,
}

impl<S> tower::Service<Request> for HostRule<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response, std::convert::Infallible>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use axum::response::IntoResponse;
        match check_host(&self.config, &request) {
            Ok(()) => futures_util::future::Either::Right(self.inner.call(request)),
            Err(e) => {
                // The Mercure hub answers in its protocol's form (`text/plain`), not Herald's JSON.
                let response = if crate::mercure::is_hub_path(request.uri().path()) {
                    crate::mercure::plain(e.status, e.message)
                } else {
                    e.into_response()
                };
                futures_util::future::Either::Left(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_loopback_hosts_take_the_fast_path_and_nothing_else_does() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_plain_loopback(ok), "{ok}");
        }
        for other in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1:",
            "[::1]:x",
            "localhost:80:80",
            "",
        ] {
            assert!(!is_plain_loopback(other), "{other}");
        }
    }

    #[test]
    fn origins_are_compared_normalized() {
        let site = |s| Site::parse_origin(s);
        assert_eq!(
            site("https://App.Example.com"),
            site("https://app.example.com:443")
        );
        assert_eq!(site("http://127.0.0.1"), site("http://127.0.0.1:80"));
        assert_ne!(site("http://example.com"), site("https://example.com"));
        assert_ne!(
            site("http://example.com:8080"),
            site("http://example.com:8081")
        );
        assert_eq!(site("http://[::1]:8080"), Site::new("http", "[::1]:8080"));
        for bad in [
            "null",
            "",
            "example.com",
            "http://a@b",
            "http://a/b",
            "http://",
        ] {
            assert_eq!(site(bad), None, "{bad}");
        }
        assert!(is_valid_origin("https://app.example.com"));
        assert!(is_valid_origin("http://localhost:5173"));
        for bad in [
            "*",
            "https://app.example.com/",
            "app.example.com",
            "ftp://x",
            "null",
        ] {
            assert!(!is_valid_origin(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_names() {
        for ok in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "128.0.0.1",
            "0.0.0.0",
            "[::2]",
            "127.1",
            "10.0.0.1",
            "",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }
}
