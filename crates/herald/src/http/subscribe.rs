//! `GET /api/sse`: open an event stream; and the checks every subscribe transport shares
//! (`admit`).

use axum::body::Body;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Version};
use axum::response::Response;
use axum::Extension;

use super::auth::{Identity, TokenCookie};
use super::{ApiError, AppState};
use crate::hub::ConnectRequest;
use crate::registry::TransportCloser;
use crate::target::{validate_username, ChannelName, UserId};
use crate::transport::WireFormat;

/// The query of a subscribe request, parsed and validated.
#[derive(Debug, Default)]
pub(crate) struct SubscribeQuery {
    pub(crate) user: Option<UserId>,
    pub(crate) username: Option<std::sync::Arc<str>>,
    pub(crate) channels: Vec<ChannelName>,
    pub(crate) last_event_id: Option<String>,
    pub(crate) token: Option<String>,
}

/// Longest `Last-Event-ID` accepted; ids of this hub are far shorter.
const MAX_LAST_EVENT_ID_LEN: usize = 128;

/// Parses `userId`, `username`, `channels` (comma-separated and/or repeated) and `lastEventId`.
/// Other parameters are ignored (cache busters).
pub(crate) fn parse_query(query: Option<&str>) -> Result<SubscribeQuery, ApiError> {
    let mut q = SubscribeQuery::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "userId" => {
                if q.user.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid_field",
                        "userId: give it at most once",
                    ));
                }
                q.user = Some(UserId::new(&value)?);
            }
            "username" => q.username = Some(validate_username(&value)?),
            "lastEventId" => q.last_event_id = Some(last_event_id(&value)?),
            "token" => q.token = Some(value.into_owned()),
            "channels" | "channel" => {
                // Spaces around names are forgiven; any other character is judged by the name.
                for name in value
                    .split(',')
                    .map(|s| s.trim_matches(' '))
                    .filter(|s| !s.is_empty())
                {
                    q.channels.push(ChannelName::new(name)?);
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

fn last_event_id(value: &str) -> Result<String, ApiError> {
    if value.len() > MAX_LAST_EVENT_ID_LEN || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "lastEventId: at most 128 characters without control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A subscriber that passed the checks every subscribe transport makes before it connects (the
/// SSE `GET` and the WebSocket upgrade alike): its address's connect rate, the query, its
/// identity and the channels that identity may join. [`Admission::into_request`] then makes the
/// hub's [`ConnectRequest`].
#[derive(Debug)]
pub(crate) struct Admission {
    /// Who the subscriber is.
    pub(crate) identity: Identity,
    /// The parsed query (channels, `lastEventId`).
    pub(crate) query: SubscribeQuery,
    /// The client's address (through trusted proxies).
    pub(crate) peer_ip: Option<IpAddr>,
}

/// Runs the shared checks of a subscribe request: the connect rate of the client's address, the
/// query, `Last-Event-ID` (the header, sent by browsers on their own reconnects, wins over the
/// `lastEventId` parameter for clients that cannot set headers), then the identity and the
/// channels it may join (`cookie`: whether the token cookie counts).
///
/// # Errors
/// `429 rate_limited`, `400` for a bad parameter, `401` for a missing or bad token, `403` when
/// identity from the query is not allowed or a channel is not.
pub(crate) fn admit(
    state: &AppState,
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    query: Option<&str>,
    cookie: TokenCookie,
) -> Result<Admission, ApiError> {
    let peer_ip = super::auth::client_ip(peer, headers, &state.config.trusted_proxies);
    if let Some(ip) = peer_ip {
        state.limits.check_connect(ip)?;
    }
    let mut q = parse_query(query)?;
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().map_err(|_| {
            ApiError::bad_request("invalid_field", "Last-Event-ID: must be visible ASCII")
        })?;
        q.last_event_id = Some(last_event_id(text)?);
    }
    let identity = super::auth::subscriber_identity(&state.config, headers, &q, cookie)?;
    Ok(Admission {
        identity,
        query: q,
        peer_ip,
    })
}

impl Admission {
    /// The hub's request for this subscriber, in `format`, closed through `closer` when the hub
    /// evicts it. A resume replays history, so its own budget per address
    /// (`resume_rate_per_ip`) is charged here: call this only once the connection will really
    /// be opened.
    ///
    /// # Errors
    /// `429 rate_limited` when the address resumes too often.
    pub(crate) fn into_request(
        self,
        state: &AppState,
        format: &'static dyn WireFormat,
        closer: Option<TransportCloser>,
    ) -> Result<ConnectRequest, ApiError> {
        let resuming = self
            .query
            .last_event_id
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        if let Some(ip) = self.peer_ip.filter(|_| resuming) {
            state.limits.check_resume(ip)?;
        }
        Ok(ConnectRequest {
            user: self.identity.user,
            username: self.identity.username,
            channels: self.query.channels,
            closer,
            last_event_id: self.query.last_event_id,
            peer_ip: self.peer_ip,
            expires_at: self.identity.expires_at,
            format: Some(format),
            ..ConnectRequest::default()
        })
    }
}

/// Opens an SSE stream. The answer is `200 text/event-stream` starting with a `retry:` line and
/// the `connected` event; then every event targeted at this connection, and heartbeats.
///
/// `HEAD /api/sse` checks the request the same way and answers with the same headers, but opens
/// no connection and replays nothing.
///
/// Errors: `400` for a bad parameter, `401` for a missing or bad token, `403` when identity
/// from the query (or a channel) is not allowed, `429` when the user holds too many
/// connections or the address connects or resumes too often (`connect_rate_per_ip`,
/// `resume_rate_per_ip`), `503` when the hub is full or shutting down.
pub async fn subscribe(
    State(state): State<AppState>,
    closer: Option<Extension<TransportCloser>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    version: Version,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let admission = admit(
        &state,
        peer.as_ref().map(|Extension(c)| c),
        &headers,
        query.as_deref(),
        TokenCookie::Read,
    )?;
    if method == Method::HEAD {
        // Nothing to stream: no connection, no replay.
        return Ok(stream_response(Body::empty()));
    }
    // Closing the transport is right for HTTP/1.1 (one stream per connection); an HTTP/2
    // connection carries other streams, so there only the stream ends.
    let closer = closer
        .filter(|_| version < Version::HTTP_2)
        .map(|Extension(c)| c);
    let request = admission.into_request(&state, &crate::sse::frame::SSE, closer)?;
    let stream = state.hub.connect(request).await?;
    Ok(stream_response(Body::new(stream)))
}

fn stream_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_comma_separated_and_repeated() {
        let q = parse_query(Some("userId=alice&channels=a,b&channels=c&channels=")).unwrap();
        assert_eq!(q.user.unwrap().as_str(), "alice");
        let names: Vec<_> = q.channels.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse_query(Some("userId=a%0Ab")).is_err());
        assert!(parse_query(Some("channels=a%20b")).is_err());
        assert!(parse_query(Some("userId=a&userId=b")).is_err());
        assert!(parse_query(Some("unknown=1&_=123")).is_ok());
    }
}
