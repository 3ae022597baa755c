//! `GET /api/sse`: open an event stream; and the checks every subscribe transport shares
//! (`admit`).

use axum::body::Body;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Version};
use axum::response::Response;
use axum::Extension;

use super::auth::{Decision, Identity, TokenCookie};
use super::auth_hook::{HookCall, Transport};
use super::{ApiError, AppState};
use crate::hub::{check_metadata, check_session_id, ConnectRequest, Metadata, MAX_METADATA_BYTES};
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
    /// `envelope=1`: every event as a default `message` carrying `{"id","event","data"}`
    /// ([`crate::sse::envelope`]). Only `GET /api/sse` reads it; the WebSocket's frames
    /// already have that shape.
    pub(crate) envelope: bool,
    /// `sessionId`: checked by [`check_session_id`](crate::hub::check_session_id).
    pub(crate) session_id: Option<std::sync::Arc<str>>,
    /// `metadata`: a JSON object of at most [`MAX_METADATA_BYTES`].
    pub(crate) metadata: Option<crate::hub::Metadata>,
}

/// Longest `Last-Event-ID` accepted; ids of this hub are far shorter.
const MAX_LAST_EVENT_ID_LEN: usize = 128;

/// Parses `userId`, `username`, `channels` (comma-separated and/or repeated), `lastEventId`,
/// `token`, `envelope` (`1`/`true` or `0`/`false`), `sessionId` and `metadata` (a URL-encoded
/// JSON object). Other parameters are ignored (cache busters).
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
            "envelope" => {
                q.envelope = match &*value {
                    "1" | "true" => true,
                    "0" | "false" | "" => false,
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_field",
                            "envelope: 1 (or true) for every event as an enveloped message, 0 (or false) for named events",
                        ))
                    }
                }
            }
            "sessionId" => {
                if q.session_id.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid_field",
                        "sessionId: give it at most once",
                    ));
                }
                check_session_id(&value)?;
                q.session_id = Some(value.into());
            }
            "metadata" => {
                if q.metadata.is_some() {
                    return Err(ApiError::bad_request(
                        "invalid_field",
                        "metadata: give it at most once",
                    ));
                }
                q.metadata = Some(metadata(&value)?);
            }
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

/// The `metadata` parameter: a JSON object of at most [`MAX_METADATA_BYTES`] (the text, before
/// parsing, is held to the same bound, so no large input is parsed).
fn metadata(value: &str) -> Result<Metadata, ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid_field", format!("metadata: {why}"));
    if value.len() > MAX_METADATA_BYTES {
        return Err(bad(&format!("at most {MAX_METADATA_BYTES} bytes of JSON")));
    }
    let parsed: serde_json::Value =
        serde_json::from_str(value).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let serde_json::Value::Object(object) = parsed else {
        return Err(bad("a JSON object, like {\"plan\":\"pro\"}"));
    };
    check_metadata(&object)?;
    Ok(object)
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
/// `lastEventId` parameter for clients that cannot set headers), then the identity (a token,
/// the auth hook's answer, or the query) and the channels it may join (`cookie`: whether the
/// token cookie counts; `transport`: what the auth hook is told). A subscriber with channel
/// grants that asks for no channel joins the exact names among its grants.
///
/// # Errors
/// `429 rate_limited`, `400` for a bad parameter, `401` for a missing or bad token, `403` when
/// identity from the query is not allowed or a channel is not; from the auth hook, `401`/`403
/// auth_hook_refused` and `503 auth_hook_unavailable`.
pub(crate) async fn admit(
    state: &AppState,
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    query: Option<&str>,
    cookie: TokenCookie,
    transport: Transport,
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
    let decision = super::auth::subscriber_identity(
        &state.config,
        state.auth_hook.as_deref(),
        headers,
        &q,
        cookie,
    )?;
    let identity = match decision {
        Decision::Known(identity) => identity,
        Decision::AskApp(hook) => {
            hook.ask(
                HookCall {
                    transport,
                    headers,
                    query,
                    ip: peer_ip,
                    cookie,
                },
                state.hub.metrics(),
            )
            .await?
        }
    };
    q.channels = identity.channels(std::mem::take(&mut q.channels))?;
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
            session_id: self.identity.session_id,
            metadata: self.identity.metadata,
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
/// from the query (or a channel) is not allowed, `401`/`403 auth_hook_refused` when the app
/// refuses (auth hook), `429` when the user holds too many connections or the address connects
/// or resumes too often (`connect_rate_per_ip`, `resume_rate_per_ip`), `503` when the hub is
/// full or shutting down, or `auth_hook_unavailable` when the app cannot be asked.
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
        Transport::Sse,
    )
    .await?;
    if method == Method::HEAD {
        // Nothing to stream: no connection, no replay.
        return Ok(stream_response(Body::empty()));
    }
    // Closing the transport is right for HTTP/1.1 (one stream per connection); an HTTP/2
    // connection carries other streams, so there only the stream ends.
    let closer = closer
        .filter(|_| version < Version::HTTP_2)
        .map(|Extension(c)| c);
    let format: &'static dyn WireFormat = if admission.query.envelope {
        &crate::sse::envelope::SSE_ENVELOPE
    } else {
        &crate::sse::frame::SSE
    };
    let request = admission.into_request(&state, format, closer)?;
    let stream = state.hub.connect(request).await?;
    // For the lean HTTP/1.1 writer, which writes idle connections' events from the publisher.
    let writer = stream.writer_handle();
    let mut response = stream_response(Body::new(stream));
    response.extensions_mut().insert(writer);
    Ok(response)
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
        assert!(parse_query(Some("envelope=yes")).is_err());
    }

    #[test]
    fn envelope_flag() {
        for (query, on) in [
            ("envelope=1", true),
            ("envelope=true", true),
            ("envelope=0", false),
            ("envelope=false", false),
            ("envelope=", false),
            ("userId=a", false),
        ] {
            assert_eq!(parse_query(Some(query)).unwrap().envelope, on, "{query}");
        }
    }

    #[test]
    fn session_id_and_metadata() {
        let q = parse_query(Some(
            "sessionId=s-1&metadata=%7B%22plan%22%3A%22pro%22%2C%22n%22%3A1%7D",
        ))
        .unwrap();
        assert_eq!(q.session_id.as_deref(), Some("s-1"));
        assert_eq!(
            serde_json::Value::Object(q.metadata.unwrap()),
            serde_json::json!({"plan": "pro", "n": 1})
        );
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_METADATA_BYTES));
        for bad in [
            "metadata=%5B1%5D".to_owned(), // an array
            "metadata=nope".to_owned(),    // not JSON
            "metadata=%7B%7D&metadata=%7B%7D".to_owned(),
            format!("metadata={big}"),
            "sessionId=".to_owned(),
            "sessionId=a%0Ab".to_owned(),
            "sessionId=a&sessionId=b".to_owned(),
        ] {
            assert!(parse_query(Some(&bad)).is_err(), "{bad}");
        }
    }
}
