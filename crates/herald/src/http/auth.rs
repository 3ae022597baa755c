//! Authentication at the HTTP edge: which publisher sent a request (publisher keys, or JWTs with
//! a `publish` claim), whether it may use admin endpoints, who a subscriber is (JWT from the
//! `Authorization` header, a cookie or `?token=`), and the rate limits on both.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::{ApiError, AppState};
use crate::auth::{self, PublishScope, Publisher};
use crate::config::{HttpConfig, Rate, TokenExpiry};
use crate::target::{ChannelName, ChannelPattern, UserId};

/// Keyed token buckets: new connections and resumes per client address, publishes per
/// publisher.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    connects: Option<DefaultKeyedRateLimiter<IpAddr>>,
    resumes: Option<DefaultKeyedRateLimiter<IpAddr>>,
    publishes: Option<DefaultKeyedRateLimiter<String>>,
    /// The burst of `publishes`: the most events one batch may hold.
    publish_burst: u32,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rate: Rate) -> DefaultKeyedRateLimiter<K> {
    // `Rate` values are validated positive when parsed; `max(1)` keeps that true for values
    // built in code.
    let per_second = NonZeroU32::new(rate.per_second.max(1)).expect("positive");
    let burst = NonZeroU32::new(rate.burst.max(1)).expect("positive");
    governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
}

/// Keyed limiters keep a bucket per key; forget idle ones once there are many.
const MAX_TRACKED_KEYS: usize = 100_000;

impl RateLimits {
    pub(crate) fn new(config: &HttpConfig) -> Self {
        RateLimits {
            connects: config.connect_rate_per_ip.map(limiter),
            resumes: config.resume_rate_per_ip.map(limiter),
            publishes: config.publish_rate_per_key.map(limiter),
            publish_burst: config
                .publish_rate_per_key
                .map_or(u32::MAX, |r| r.burst.max(1)),
        }
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
        what: &str,
    ) -> Result<(), ApiError> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED_KEYS {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many {what}; slow down"),
            )
            .with_retry_after(wait.as_secs().max(1))
        })
    }

    pub(crate) fn check_connect(&self, ip: IpAddr) -> Result<(), ApiError> {
        let key = crate::registry::ip_key(ip);
        Self::check(&self.connects, &key, "new connections from this address")
    }

    /// A subscribe with a `Last-Event-ID` replays history: that costs more than a plain
    /// connect, so it has its own budget.
    pub(crate) fn check_resume(&self, ip: IpAddr) -> Result<(), ApiError> {
        let key = crate::registry::ip_key(ip);
        Self::check(&self.resumes, &key, "resumes from this address")
    }

    pub(crate) fn check_publish(&self, publisher: &str) -> Result<(), ApiError> {
        Self::check(
            &self.publishes,
            &publisher.to_owned(),
            "requests from this publisher",
        )
    }

    /// Charges a batch of `events` to its publisher: one token per event. The request itself
    /// already paid one ([`require_publisher`]); this takes the rest. A batch larger than the
    /// burst could never pass, so it is refused (`413 batch_too_large`) rather than told to wait.
    pub(crate) fn check_publish_batch(
        &self,
        publisher: &str,
        events: usize,
    ) -> Result<(), ApiError> {
        let Some(limiter) = &self.publishes else {
            return Ok(());
        };
        let burst = self.publish_burst;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!(
                    "this batch holds {events} events, more than the publish rate limit lets one \
                     publisher send at once ({burst} events, publish_rate_per_key); split it into \
                     batches of at most {burst}"
                ),
            )
        };
        if events > burst as usize {
            return Err(too_large());
        }
        // `events <= burst`, a u32.
        let Some(rest) = NonZeroU32::new(events.saturating_sub(1) as u32) else {
            return Ok(());
        };
        match limiter.check_key_n(&publisher.to_owned(), rest) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "too many events from this publisher: this batch of {events} needs \
                         {events} tokens of the publish rate limit; slow down"
                    ),
                )
                .with_retry_after(wait.as_secs().max(1)))
            }
            Err(_) => Err(too_large()),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Who is publishing: with neither keys nor JWT configured, anyone (the hub then listens on
/// loopback only); otherwise the holder of a configured key or of a token with a `publish` or
/// `admin` claim.
fn authenticate_publisher(state: &AppState, headers: &HeaderMap) -> Result<Publisher, ApiError> {
    let config = &state.config;
    if config.publisher_keys.is_empty() && config.jwt.is_none() {
        return Ok(Publisher::unrestricted());
    }
    let Some(given) = bearer(headers) else {
        return Err(unauthorized(
            "this endpoint needs a publisher key: send Authorization: Bearer <key>",
        ));
    };
    if let Some(key) = auth::match_key(&config.publisher_keys, given) {
        return Ok(Publisher {
            name: key.name.clone(),
            publish: key.publish.clone(),
            admin: key.admin,
        });
    }
    if let Some(jwt) = &config.jwt {
        if given.split('.').count() == 3 {
            let claims = jwt.verify(given)?;
            if claims.publish == PublishScope::None && !claims.admin {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this token has no publish or admin claim",
                ));
            }
            let name = match &claims.user {
                Some(u) => format!("jwt:{u}"),
                None => "jwt".to_owned(),
            };
            return Ok(Publisher {
                name,
                publish: claims.publish,
                admin: claims.admin,
            });
        }
    }
    Err(unauthorized("the publisher key is not valid"))
}

/// Middleware of the publish endpoints: refuses pages on other origins
/// ([`super::origin::check_origin`]), authenticates the publisher, applies its rate limit and
/// hands it to the handler (which checks its scope against the event's targets).
pub(crate) async fn require_publisher(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    super::origin::check_origin(&state.config, &request)?;
    let publisher = authenticate_publisher(&state, request.headers())?;
    state.limits.check_publish(&publisher.name)?;
    request.extensions_mut().insert(publisher);
    Ok(next.run(request).await)
}

/// Middleware of the admin endpoints (stats, disconnect, presence, metrics): refuses pages on
/// other origins ([`super::origin::check_origin`]); the publisher must have the admin scope.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    super::origin::check_origin(&state.config, &request)?;
    let publisher = authenticate_publisher(&state, request.headers())?;
    if !publisher.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("publisher {:?} may not use admin endpoints", publisher.name),
        ));
    }
    Ok(next.run(request).await)
}

/// Who a subscriber is and what it may join.
#[derive(Debug, Default, Clone)]
pub(crate) struct Identity {
    pub(crate) user: Option<UserId>,
    pub(crate) username: Option<Arc<str>>,
    pub(crate) expires_at: Option<SystemTime>,
    /// The channels it may join (a token's `channels` claim, the auth hook's `channels`);
    /// `None`: whatever it asks for (identity from the query, or none at all).
    pub(crate) grants: Option<Grants>,
    /// The client's session id (`sessionId` in the query, where query identity is allowed).
    pub(crate) session_id: Option<Arc<str>>,
    /// Metadata shown with the connection in presence answers: the query's `metadata` (where
    /// query identity is allowed), the token's `metadata` claim or the auth hook's `metadata`;
    /// checked by [`check_metadata`](crate::hub::check_metadata).
    pub(crate) metadata: Option<crate::hub::Metadata>,
}

/// Channel grants (names or `prefix*`) and who gave them, for the error message.
#[derive(Debug, Clone)]
pub(crate) struct Grants {
    patterns: Vec<ChannelPattern>,
    /// "by this token", "by the app".
    by: &'static str,
}

impl Grants {
    pub(crate) fn new(patterns: Vec<ChannelPattern>, by: &'static str) -> Self {
        Grants { patterns, by }
    }
}

impl Identity {
    /// The channels this subscriber joins, given those it asked for: with grants, each asked
    /// for must match one (`403 channel_forbidden` otherwise), and one that asks for none joins
    /// the exact names among its grants (`prefix*` grants name no channel to join). Without
    /// grants, what it asked for.
    ///
    /// # Errors
    /// `403 channel_forbidden` for a channel no grant matches.
    pub(crate) fn channels(
        &self,
        requested: Vec<ChannelName>,
    ) -> Result<Vec<ChannelName>, ApiError> {
        let Some(grants) = &self.grants else {
            return Ok(requested);
        };
        if requested.is_empty() {
            return Ok(grants
                .patterns
                .iter()
                .filter_map(|p| match p {
                    ChannelPattern::Exact(name) => Some(name.clone()),
                    ChannelPattern::Prefix(_) => None,
                })
                .collect());
        }
        if let Some(c) = auth::first_unmatched(&grants.patterns, &requested) {
            return Err(forbidden_channel(c, grants.by));
        }
        Ok(requested)
    }
}

fn forbidden_channel(c: &ChannelName, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "channel_forbidden",
        format!("channel {c} is not allowed {why}"),
    )
}

/// How a subscriber's identity is decided: already, or by asking the app.
#[derive(Debug)]
pub(crate) enum Decision<'a> {
    /// Decided (from a token, the query, or as anonymous).
    Known(Identity),
    /// No token: the auth hook decides.
    AskApp(&'a super::auth_hook::AuthHook),
}

/// Whether a subscriber's token may come from the token cookie. A browser sends cookies with
/// every WebSocket it opens, from whatever page; the upgrade reads the cookie only when CORS
/// would have let that page send it ([`super::origin::check_socket_origin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCookie {
    /// The cookie counts.
    Read,
    /// The cookie is ignored (the header and the query still count).
    Ignored,
}

/// Finds a subscriber's token: `Authorization: Bearer`, then the token cookie (unless
/// ignored), then `?token=`.
fn subscriber_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
    cookie_name: &str,
    cookie: TokenCookie,
) -> Option<&'a str> {
    if let Some(t) = bearer(headers) {
        return Some(t);
    }
    let cookies = headers.get_all(header::COOKIE);
    for value in cookies.iter().filter(|_| cookie == TokenCookie::Read) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=') {
                if name == cookie_name && !v.is_empty() {
                    return Some(v);
                }
            }
        }
    }
    query_token.filter(|t| !t.is_empty())
}

/// Decides a subscriber's identity. With JWT on, a valid token names the user and grants its
/// `channels` claim (an invalid one is refused: the auth hook is not asked); without a token,
/// the auth hook decides when it is on, else the subscriber is anonymous (restricted to
/// `anonymous_channels`, when `allow_anonymous` is on) or refused. The auth hook without JWT
/// decides for every subscriber. Where a token or the app decides, the `userId`/`username`
/// query parameters are refused. Without JWT or hook, the query names the user where the
/// configuration allows it. `cookie` says whether the token cookie counts.
pub(crate) fn subscriber_identity<'a>(
    config: &HttpConfig,
    hook: Option<&'a super::auth_hook::AuthHook>,
    headers: &HeaderMap,
    query: &super::subscribe::SubscribeQuery,
    cookie: TokenCookie,
) -> Result<Decision<'a>, ApiError> {
    // `sessionId` and `metadata` describe the subscriber too: the same rule as `userId`.
    let named_in_query = query.user.is_some()
        || query.username.is_some()
        || query.session_id.is_some()
        || query.metadata.is_some();
    let Some(jwt) = &config.jwt else {
        if let Some(hook) = hook {
            if named_in_query {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "identity_not_allowed",
                    "userId/username/sessionId/metadata cannot be given in the query: the \
                     identity comes from the app (the auth hook)",
                ));
            }
            return Ok(Decision::AskApp(hook));
        }
        if named_in_query && !config.identity_from_query {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "identity_not_allowed",
                "this hub does not accept userId/username/sessionId/metadata from the query string",
            ));
        }
        return Ok(Decision::Known(Identity {
            user: query.user.clone(),
            username: query.username.clone(),
            session_id: query.session_id.clone(),
            metadata: query.metadata.clone(),
            ..Identity::default()
        }));
    };
    if named_in_query {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "identity_not_allowed",
            "userId/username/sessionId/metadata cannot be given in the query: the identity \
             comes from the token",
        ));
    }
    match subscriber_token(
        headers,
        query.token.as_deref(),
        &config.token_cookie,
        cookie,
    ) {
        Some(token) => {
            let claims = jwt.verify(token)?;
            let Some(user) = claims.user.clone() else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_claims",
                    "the token has no sub (user id)",
                ));
            };
            Ok(Decision::Known(Identity {
                user: Some(user),
                username: claims.username.map(Arc::from),
                expires_at: match config.token_expiry {
                    TokenExpiry::Close => Some(claims.expires_at),
                    TokenExpiry::Tolerate => None,
                },
                grants: Some(Grants::new(claims.channels, "by this token")),
                session_id: None,
                metadata: claims.metadata,
            }))
        }
        None => match hook {
            Some(hook) => Ok(Decision::AskApp(hook)),
            None => anonymous(config, query),
        },
    }
}

/// A subscriber without a token and no auth hook: anonymous where allowed.
fn anonymous(
    config: &HttpConfig,
    query: &super::subscribe::SubscribeQuery,
) -> Result<Decision<'static>, ApiError> {
    if !config.allow_anonymous {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "this hub needs a token: Authorization: Bearer <jwt>, the token cookie, or ?token=",
        ));
    }
    if let Some(c) = auth::first_unmatched(&config.anonymous_channels, &query.channels) {
        return Err(forbidden_channel(c, "without a token"));
    }
    Ok(Decision::Known(Identity::default()))
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not a trusted proxy itself (addresses further left were written by
/// the client and cannot be believed).
pub(crate) fn client_ip(
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: compare them as IPv4.
    let peer = peer.map(|ConnectInfo(addr)| addr.ip().to_canonical())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *ip);
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let peer = |ip: IpAddr| Some(ConnectInfo(SocketAddr::new(ip, 1234)));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        let ip = |p: IpAddr, trusted: &[IpAddr]| client_ip(peer(p).as_ref(), &headers, trusted);
        assert_eq!(ip(proxy, &[proxy]), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(ip(proxy, &[]), Some(proxy));
        let stranger: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(ip(stranger, &[proxy]), Some(stranger));
    }
}
