//! `GET /.well-known/mercure`: subscribe.
//!
//! One or more `topic` selectors (OR'ed); the token from `Authorization: Bearer`, the
//! `authorization` query parameter or the `mercureAuthorization` cookie (a cookie counts only
//! from a page the CORS settings let send it: the hub's own origin, or one of `--cors-origins`
//! with `--cors-credentials`; another listed origin's cookie is ignored, an unlisted origin gets
//! `403`); without one, only with `--mercure-anonymous`. Reconnection: `Last-Event-ID` (the
//! header, or the `lastEventID` query parameter, or the older `Last-Event-ID` one), `earliest`
//! for everything retained. When the hub cannot send everything after the id asked for (an
//! unknown or too old id, more than the replay cap), the stream starts live and the
//! `Last-Event-ID` response header names the newest update before it (`earliest` when there
//! is none), as the protocol asks.
//!
//! Refusals, in `text/plain`: `400` (no `topic`, too many or too long selectors, a bad id),
//! `401` (a bad token; no token without `--mercure-anonymous`), `403` (a cookie from an
//! unlisted origin), `429` (connect or resume rate, per-address limit), `503` (the hub is full
//! or shutting down).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::response::Response;
use axum::Extension;

use super::auth::{self, TokenSource};
use super::update::Update;
use super::{
    all_channel, api_error, has_control, hub_error, plain, topic_channel, MAX_ID_LEN,
    MAX_SELECTORS, MAX_TOPIC_LEN, MERCURE,
};
use crate::http::auth::TokenCookie;
use crate::http::AppState;
use crate::hub::{ConnectRequest, MAX_CHANNELS_PER_CONNECTION};
use crate::registry::TransportCloser;
use crate::transport::LenientStart;

/// The reserved `Last-Event-ID` that asks for every retained update.
const EARLIEST: &str = "earliest";

/// The query of a subscribe request.
#[derive(Debug, Default)]
struct Query {
    topics: Vec<String>,
    last_event_id: Option<String>,
    legacy_last_event_id: Option<String>,
    authorization: Option<String>,
}

fn parse_query(query: Option<&str>) -> Result<Query, String> {
    let mut q = Query::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "topic" => {
                if value.len() > MAX_TOPIC_LEN || has_control(&value) {
                    return Err(format!(
                        "a \"topic\" selector is at most {MAX_TOPIC_LEN} bytes without control \
                         characters"
                    ));
                }
                q.topics.push(value.into_owned());
                if q.topics.len() > MAX_SELECTORS {
                    return Err(format!("at most {MAX_SELECTORS} \"topic\" selectors"));
                }
            }
            "lastEventID" => q.last_event_id = Some(value.into_owned()),
            "Last-Event-ID" => q.legacy_last_event_id = Some(value.into_owned()),
            "authorization" => q.authorization = Some(value.into_owned()),
            _ => {}
        }
    }
    if q.topics.is_empty() {
        return Err("Missing \"topic\" parameter.".into());
    }
    Ok(q)
}

/// Opens a Mercure event stream; see the module docs.
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    closer: Option<Extension<TransportCloser>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    version: Version,
    request: Request,
) -> Response {
    let Some(mercure) = state.mercure.clone() else {
        return plain(StatusCode::NOT_FOUND, "Mercure is not enabled on this hub");
    };
    let headers = request.headers();
    let peer_ip = crate::http::auth::client_ip(
        peer.as_ref().map(|Extension(c)| c),
        headers,
        &state.config.trusted_proxies,
    );
    if let Some(ip) = peer_ip {
        if let Err(e) = state.limits.check_connect(ip) {
            return api_error(e);
        }
    }
    let query = match parse_query(request.uri().query()) {
        Ok(q) => q,
        Err(why) => return plain(StatusCode::BAD_REQUEST, why),
    };
    // The token, and who may present it where.
    let token = match auth::token(headers, query.authorization.as_deref()) {
        Ok(token) => token,
        Err(why) => return plain(StatusCode::UNAUTHORIZED, why),
    };
    let token = match token {
        Some((_, TokenSource::Cookie)) => {
            match crate::http::origin::check_socket_origin(&state.config, &request) {
                Ok(TokenCookie::Read) => token,
                // A listed origin that CORS lets send no credentials: the cookie does not count.
                Ok(TokenCookie::Ignored) => None,
                Err(_) => {
                    return plain(
                        StatusCode::FORBIDDEN,
                        "the mercureAuthorization cookie is not accepted from this page's \
                         origin; list it in --cors-origins with --cors-credentials",
                    )
                }
            }
        }
        other => other,
    };
    let claims = match token {
        Some((token, _)) => {
            let Some(key) = &mercure.config.subscriber_key else {
                return plain(StatusCode::UNAUTHORIZED, "this hub has no subscriber key");
            };
            match key.verify(token) {
                Ok(claims) => Some(claims),
                Err(why) => return plain(StatusCode::UNAUTHORIZED, why),
            }
        }
        None if mercure.config.anonymous => None,
        None => {
            return plain(
                StatusCode::UNAUTHORIZED,
                "a subscriber token is required: Authorization: Bearer <jwt>, the \
                 mercureAuthorization cookie or ?authorization=",
            )
        }
    };
    // Where to start.
    let requested = match headers.get("last-event-id") {
        Some(v) => match v.to_str() {
            Ok(v) => Some(v.to_owned()),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "Last-Event-ID must be visible ASCII",
                )
            }
        },
        None => query
            .last_event_id
            .clone()
            .or(query.legacy_last_event_id.clone()),
    }
    .filter(|id| !id.is_empty());
    if let Some(id) = &requested {
        if id.len() > MAX_ID_LEN || has_control(id) {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("Last-Event-ID is at most {MAX_ID_LEN} bytes without control characters"),
            );
        }
        if let Some(ip) = peer_ip {
            if let Err(e) = state.limits.check_resume(ip) {
                return api_error(e);
            }
        }
    }
    // This node's own ids first, then the engine's (Redis: one lookup for the whole cluster).
    let known = match requested.as_deref() {
        None | Some(EARLIEST) => None,
        Some(id) => {
            let local = mercure.ids.lock().get(id);
            match local {
                Some(event) => Some(event),
                None => state.hub.find_key(id).await,
            }
        }
    };
    let lenient_start = match requested.as_deref() {
        None => None,
        Some(EARLIEST) => Some(LenientStart::Earliest),
        Some(id) => Some(match known {
            Some(event) => LenientStart::After(event),
            // Published before a restart, or on a node of an engine that keeps no ids: found
            // in the history itself, among what this subscriber would have received (bounded
            // by the replay cap).
            None => {
                let id = id.to_owned();
                LenientStart::AfterMatching(std::sync::Arc::new(move |e| {
                    Update::from_event(e).is_some_and(|u| u.id == id)
                }))
            }
        }),
    };
    // What it listens to: exact topics through their channels, anything else through the
    // channel every update targets; the filter decides.
    let allowed = claims
        .as_ref()
        .map(|c| c.subscribe.clone().unwrap_or_default());
    let filter = mercure.selectors.filter(&query.topics, allowed.as_deref());
    let exact: Option<Vec<&str>> = filter.selectors.iter().map(|s| s.as_exact()).collect();
    let channels = match exact {
        Some(topics) if topics.len() <= MAX_CHANNELS_PER_CONNECTION => {
            topics.into_iter().map(topic_channel).collect()
        }
        _ => vec![all_channel()],
    };
    if request.method() == axum::http::Method::HEAD {
        // The checks only: no connection, no replay, no subscription.
        return stream_headers(Response::new(Body::empty()));
    }
    // As for /api/sse: on HTTP/1.1 an eviction closes the connection; HTTP/2 only the stream.
    let closer = closer
        .filter(|_| version < Version::HTTP_2)
        .map(|Extension(c)| c);
    let connect = ConnectRequest {
        channels,
        closer,
        peer_ip,
        expires_at: claims.as_ref().and_then(|c| c.expires_at),
        format: Some(&MERCURE),
        filter: Some(filter),
        lenient_start,
        ..ConnectRequest::default()
    };
    let stream = match state.hub.connect(connect).await {
        Ok(stream) => stream,
        Err(e) => return hub_error(e),
    };
    let announced = requested.as_ref().map(|id| {
        if stream.replayed() == Some(true) {
            id.clone()
        } else {
            // Not everything asked for could be sent: say where the stream starts.
            mercure.ids.lock().newest().unwrap_or(EARLIEST).to_owned()
        }
    });
    let body = if mercure.config.subscriptions {
        let subscriber = super::subscriptions::Subscriber {
            id: super::publish::generated_id(),
            topics: query.topics.clone(),
            payload: claims.as_ref().and_then(|c| c.payload.clone()),
        };
        let guard = super::subscriptions::joined(&state.hub, &mercure, subscriber).await;
        Body::new(Guarded {
            body: stream,
            _guard: guard,
        })
    } else {
        Body::new(stream)
    };
    let mut response = stream_headers(Response::new(body));
    if let Some(value) = announced.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert("last-event-id", value);
    }
    response
}

/// The headers of an event stream, as the Mercure hub sends them.
fn stream_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A stream that holds its subscriber's guard: the subscriptions end with the stream.
struct Guarded<B> {
    body: B,
    _guard: super::subscriptions::SubscriberGuard,
}

impl<B: http_body::Body + Unpin> http_body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query() {
        let q = parse_query(Some(
            "topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D&topic=urn%3Aa&lastEventID=x&authorization=t&_=1",
        ))
        .unwrap();
        assert_eq!(q.topics, ["https://example.com/books/{id}", "urn:a"]);
        assert_eq!(q.last_event_id.as_deref(), Some("x"));
        assert_eq!(q.authorization.as_deref(), Some("t"));
        assert!(parse_query(Some("lastEventID=x")).is_err());
        assert!(parse_query(None).is_err());
        assert!(parse_query(Some("topic=a%0Ab")).is_err());
        let many: String = (0..=MAX_SELECTORS).map(|i| format!("topic={i}&")).collect();
        assert!(parse_query(Some(&many)).is_err());
    }
}
