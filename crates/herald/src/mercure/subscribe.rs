//! `GET /.well-known/mercure`: subscribe, in either generation of the protocol.
//!
//! The request's parameters pick its generation: `match` (exact; also `matchExact`),
//! `match_urlpattern` (also `matchURLPattern`) or `last_event_id` make it a 1.0 request,
//! `topic`, `lastEventID` or `authorization` a 0.x one; a request with both kinds is refused.
//!
//! When the hub cannot send everything after the id asked for (an unknown or too old id, more
//! than the replay cap), it sends the newest updates that fit within the cap and the last-event-id
//! response header names the update before them, one this subscriber may see (`earliest` when
//! there is none, or when everything retained is sent), as the protocol asks (see
//! `transport::resume::start_lenient`).
//!
//! | | 0.x | 1.0 |
//! |---|---|---|
//! | selectors (OR'ed) | `topic`: `*`, exact, URI Templates | `match` (exact, `*`), `match_urlpattern` (URL Patterns) |
//! | resume from (the `Last-Event-ID` header wins) | `lastEventID` (or the older `Last-Event-ID`) query | `last_event_id` query |
//! | the token (`Authorization: Bearer` wins) | then `?authorization=`, then the `mercureAuthorization` cookie | then the `__Secure-mercure_access_token` cookie; `?authorization=` (and `?access_token=`) is refused |
//! | where the stream starts, when a resume was asked | `Last-Event-ID` response header | `Mercure-Last-Event-ID` response header |
//!
//! Either token form is accepted on either request (a token's form picks how it is read, see
//! `auth.rs`). A cookie counts only from a page the CORS settings let send it: the hub's own
//! origin, or one of `--cors-origins` with `--cors-credentials`; another listed origin's cookie
//! is ignored, an unlisted origin gets `403`. Without a token, only with
//! `--mercure-anonymous`. Reconnection: `earliest` asks for everything retained (see above for
//! what is sent when not everything after the id asked for can be).
//!
//! Refusals, in `text/plain`: `400` (no selector, too many or too long selectors, a URL
//! Pattern that does not compile or has too many parts, an unknown `match…` parameter, both
//! generations' parameters, `?authorization=` on a 1.0 request, a bad id, a parameter that is
//! not a valid percent-encoding of UTF-8), `401` (a bad token, with
//! `WWW-Authenticate: Bearer error="invalid_token"`; no token without `--mercure-anonymous`,
//! with `WWW-Authenticate: Bearer`), `403` (a cookie from an unlisted origin; a 1.0 access
//! token that grants no `subscribe` action, `error="insufficient_scope"`), `429` (connect or
//! resume rate, per-address limit), `503` (the hub is full or shutting down).

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::response::Response;
use axum::Extension;

use super::auth::{self, Generation, TokenSource};
use super::selector::SelectorSpec;
use super::update::Update;
use super::{
    all_channel, api_error, bearer, form_decode, has_control, hub_error, plain, topic_channel,
    MAX_ID_LEN, MAX_SELECTORS, MAX_TOPIC_LEN, MERCURE,
};
use crate::http::auth::TokenCookie;
use crate::http::AppState;
use crate::hub::{ConnectRequest, MAX_CHANNELS_PER_CONNECTION};
use crate::registry::TransportCloser;
use crate::transport::{LenientOutcome, LenientStart};

/// The reserved `Last-Event-ID` that asks for every retained update.
const EARLIEST: &str = "earliest";

/// The query of a subscribe request.
#[derive(Debug, Default)]
struct Query {
    generation: Generation,
    selectors: Vec<SelectorSpec>,
    last_event_id: Option<String>,
    legacy_last_event_id: Option<String>,
    authorization: Option<String>,
}

/// Why a query is refused (`400`).
#[derive(Debug, PartialEq, Eq)]
enum QueryError {
    /// A malformed query.
    Invalid(String),
    /// A token in the query of a 1.0 request (RFC 6750 `invalid_request`).
    TokenInQuery,
}

fn parse_query(query: Option<&str>) -> Result<Query, QueryError> {
    use QueryError::Invalid;
    let mut q = Query::default();
    // The parameters only one generation has.
    let (mut v0, mut v1): (Option<String>, Option<String>) = (None, None);
    let mut token_in_query = false;
    let pairs = query
        .unwrap_or("")
        .as_bytes()
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty());
    for pair in pairs {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        // Strictly: a selector that is not UTF-8 is refused, not mended into another topic.
        let key = form_decode(key).map_err(|e| Invalid(format!("a query parameter's name {e}")))?;
        let value =
            form_decode(value).map_err(|e| Invalid(format!("the {key:?} parameter {e}")))?;
        let (key, value) = (Cow::<str>::Owned(key), Cow::<str>::Owned(value));
        let spec = match &*key {
            "topic" => Some(SelectorSpec::template(value.as_ref())),
            "match" | "matchExact" => Some(SelectorSpec::exact(value.as_ref())),
            "match_urlpattern" | "matchURLPattern" => {
                Some(SelectorSpec::url_pattern(value.as_ref()))
            }
            // The draft reserves the whole `match` prefix: a misspelled matcher type fails
            // loudly instead of being ignored.
            k if k
                .as_bytes()
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"match")) =>
            {
                return Err(Invalid(format!(
                    "unknown matcher parameter {k:?}: use \"match\" or \"match_urlpattern\""
                )))
            }
            _ => None,
        };
        if let Some(spec) = spec {
            if value.len() > MAX_TOPIC_LEN || has_control(&value) {
                return Err(Invalid(format!(
                    "a {key:?} selector is at most {MAX_TOPIC_LEN} bytes without control \
                     characters"
                )));
            }
            q.selectors.push(spec);
            if q.selectors.len() > MAX_SELECTORS {
                return Err(Invalid(format!("at most {MAX_SELECTORS} selectors")));
            }
        }
        match &*key {
            "topic" | "lastEventID" | "Last-Event-ID" | "authorization" => {
                v0.get_or_insert_with(|| key.clone().into_owned());
            }
            "match" | "matchExact" | "match_urlpattern" | "matchURLPattern" | "last_event_id" => {
                v1.get_or_insert_with(|| key.clone().into_owned());
            }
            _ => {}
        }
        match &*key {
            "lastEventID" => q.last_event_id = Some(value.into_owned()),
            "last_event_id" => q.last_event_id = Some(value.into_owned()),
            "Last-Event-ID" => q.legacy_last_event_id = Some(value.into_owned()),
            "authorization" => q.authorization = Some(value.into_owned()),
            "access_token" => token_in_query = true,
            _ => {}
        }
    }
    if v1.is_some() {
        q.generation = Generation::V1;
        if token_in_query || q.authorization.is_some() {
            return Err(QueryError::TokenInQuery);
        }
    }
    if let (Some(old), Some(new)) = (&v0, &v1) {
        return Err(Invalid(format!(
            "{old:?} (Mercure 0.x) and {new:?} (Mercure 1.0) cannot be mixed in one request"
        )));
    }
    if q.selectors.is_empty() {
        return Err(Invalid(match q.generation {
            Generation::V0 => "Missing \"topic\" parameter.".into(),
            Generation::V1 => "Missing \"match\" or \"match_urlpattern\" parameter.".into(),
        }));
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
        Err(QueryError::Invalid(why)) => return plain(StatusCode::BAD_REQUEST, why),
        Err(QueryError::TokenInQuery) => {
            return bearer(
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                "Mercure 1.0 takes no token in the query (?authorization=, ?access_token=): \
                 send Authorization: Bearer, or the __Secure-mercure_access_token cookie",
            )
        }
    };
    let v1 = query.generation == Generation::V1;
    // Each selector compiled once (interned while this subscription holds it).
    let mut compiled = match mercure.compile(&query.selectors).await {
        Ok(compiled) => compiled,
        Err(why) => return plain(StatusCode::BAD_REQUEST, why),
    };
    // The token, and who may present it where.
    let cookie = if v1 { auth::COOKIE_V1 } else { auth::COOKIE };
    let token = match auth::token_in(headers, query.authorization.as_deref(), &[cookie]) {
        Ok(token) => token,
        Err(why) => return bearer(StatusCode::UNAUTHORIZED, Some("invalid_request"), why),
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
                        format!(
                            "the {cookie} cookie is not accepted from this page's origin; list \
                             it in --cors-origins with --cors-credentials"
                        ),
                    )
                }
            }
        }
        other => other,
    };
    let claims = match token {
        Some((token, _)) => {
            let Some(key) = &mercure.config.subscriber_key else {
                return bearer(
                    StatusCode::UNAUTHORIZED,
                    Some("invalid_token"),
                    "this hub has no subscriber key",
                );
            };
            let audience = mercure.audience(&state.config, &request);
            match key.verify(token, &audience) {
                Ok(claims) => Some(claims),
                Err(why) => return bearer(StatusCode::UNAUTHORIZED, Some("invalid_token"), why),
            }
        }
        None if mercure.config.anonymous => None,
        None => {
            let how = if v1 {
                "Authorization: Bearer <access token> or the __Secure-mercure_access_token cookie"
            } else {
                "Authorization: Bearer <jwt>, the mercureAuthorization cookie or ?authorization="
            };
            return bearer(
                StatusCode::UNAUTHORIZED,
                None,
                format!("a subscriber token is required: {how}"),
            );
        }
    };
    if let Some(c) = &claims {
        if c.generation == Generation::V1 {
            let Some(allowed) = &c.subscribe else {
                return bearer(
                    StatusCode::FORBIDDEN,
                    Some("insufficient_scope"),
                    "the access token grants no subscribe action",
                );
            };
            match mercure.compile(allowed).await {
                Ok(selectors) => compiled.extend(selectors),
                Err(why) => return bearer(StatusCode::UNAUTHORIZED, Some("invalid_token"), why),
            }
        }
    }
    // Where to start.
    let requested = match headers.get("last-event-id") {
        // UTF-8, not only ASCII: EventSource sends back the `id:` it last got, and a
        // publisher's id may be an IRI (`https://example.com/livres/été`).
        Some(v) => match std::str::from_utf8(v.as_bytes()) {
            Ok(v) => Some(v.to_owned()),
            Err(_) => return plain(StatusCode::BAD_REQUEST, "Last-Event-ID must be UTF-8"),
        },
        // 1.0's `last_event_id` or 0.x's `lastEventID` (the parser keeps them apart).
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
    let filter = mercure
        .selectors
        .filter(&query.selectors, allowed.as_deref());
    drop(compiled);
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
    // With subscription events, the subscriber's record rides on its connection (listed by
    // every node through presence).
    let subscriber = mercure.config.subscriptions.then(|| {
        use super::selector::SelectorKind;
        use super::subscriptions::MatchType;
        let subscriptions = query
            .selectors
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    SelectorKind::Template => MatchType::Topic,
                    SelectorKind::Exact => MatchType::Exact,
                    SelectorKind::UrlPattern => MatchType::UrlPattern,
                };
                (kind, s.text.clone())
            })
            .collect();
        super::subscriptions::Subscriber::new(
            subscriptions,
            claims.as_ref().and_then(|c| c.payload.clone()),
            allowed
                .as_ref()
                .map(|specs| specs.iter().map(|s| s.text.clone()).collect()),
        )
    });
    let connect = ConnectRequest {
        channels,
        closer,
        peer_ip,
        expires_at: claims.as_ref().and_then(|c| c.expires_at),
        format: Some(&MERCURE),
        filter: Some(filter),
        lenient_start,
        metadata: subscriber.as_ref().map(|s| s.metadata()),
        ..ConnectRequest::default()
    };
    let stream = match state.hub.connect(connect).await {
        Ok(stream) => stream,
        Err(e) => return hub_error(e),
    };
    // Not everything asked for could be sent: say where the stream starts (the newest update
    // before what it sends, one this subscriber may see; else `earliest`).
    let announced = requested.as_ref().map(|id| match stream.lenient_outcome() {
        Some(LenientOutcome::Complete) | None => id.clone(),
        Some(LenientOutcome::After(event)) => {
            Update::from_event(event).map_or_else(|| EARLIEST.to_owned(), |u| u.id.clone())
        }
        Some(LenientOutcome::FromOldest | LenientOutcome::Live) => EARLIEST.to_owned(),
    });
    let body = if let Some(subscriber) = subscriber {
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
        // Each generation's name (1.0 renamed it, so that it is not taken for the request's).
        let name = if v1 {
            "mercure-last-event-id"
        } else {
            "last-event-id"
        };
        response.headers_mut().insert(name, value);
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
        assert_eq!(q.generation, Generation::V0);
        assert_eq!(
            q.selectors,
            [
                SelectorSpec::template("https://example.com/books/{id}"),
                SelectorSpec::template("urn:a")
            ]
        );
        assert_eq!(q.last_event_id.as_deref(), Some("x"));
        assert_eq!(q.authorization.as_deref(), Some("t"));
        assert!(parse_query(Some("lastEventID=x")).is_err());
        assert!(parse_query(None).is_err());
        assert!(parse_query(Some("topic=a%0Ab")).is_err());
        let many: String = (0..=MAX_SELECTORS).map(|i| format!("topic={i}&")).collect();
        assert!(parse_query(Some(&many)).is_err());
    }

    #[test]
    fn the_1_0_query() {
        let q = parse_query(Some(
            "match=urn%3Aa&match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid&matchURLPattern=%2Fx%2F%3Ay&matchExact=b&last_event_id=x",
        ))
        .unwrap();
        assert_eq!(q.generation, Generation::V1);
        assert_eq!(
            q.selectors,
            [
                SelectorSpec::exact("urn:a"),
                SelectorSpec::url_pattern("https://example.com/books/:id"),
                SelectorSpec::url_pattern("/x/:y"),
                SelectorSpec::exact("b"),
            ]
        );
        assert_eq!(q.last_event_id.as_deref(), Some("x"));
        let invalid = |q: &str| matches!(parse_query(Some(q)), Err(QueryError::Invalid(_)));
        assert!(invalid("last_event_id=x"), "no selector");
        assert!(invalid("match=a&topic=b"), "both generations");
        assert!(invalid("match=a&lastEventID=b"), "both generations");
        assert!(invalid("topic=a&last_event_id=b"), "both generations");
        assert!(invalid("match=a&matchtemplate=b"), "the reserved prefix");
        assert!(invalid("MATCH_x=a&topic=b"), "the reserved prefix");
        assert!(invalid("match=a%C2%85b"), "C1 controls");
        assert!(invalid("match=%FF"), "not UTF-8");
        assert!(invalid("topic=%C3%28"), "not UTF-8");
        assert!(invalid("topic=a%ZZ"), "not a percent-encoding");
        assert!(
            invalid("topic=a&lastEventID=100%"),
            "not a percent-encoding"
        );
        assert!(invalid("topic=a&x%FF=1"), "a name that is not UTF-8");
        // Not a character boundary at byte 5: no panic, and not the reserved prefix.
        assert!(parse_query(Some("mat%C3%A9=x&match=a")).is_ok());
        assert!(parse_query(Some("%C3%A9%C3%A9%C3%A9=x&match=a")).is_ok());
        assert_eq!(
            parse_query(Some("match=a&authorization=t")).unwrap_err(),
            QueryError::TokenInQuery
        );
        assert_eq!(
            parse_query(Some("match=a&access_token=t")).unwrap_err(),
            QueryError::TokenInQuery
        );
        // `access_token` means nothing to 0.x.
        assert!(parse_query(Some("topic=a&access_token=t")).is_ok());
    }
}
