//! The Mercure protocol on Herald's core: `/.well-known/mercure`, enabled by `--mercure`.
//!
//! Both generations are served side by side, so that a 0.x app and a 1.0 app share one hub:
//! the 0.x protocol that deployed hubs and clients speak (`topic=`, the `mercure` claim), and
//! Mercure 1.0 (`match=`, `match_urlpattern=`, `at+jwt` access tokens). A request's parameters
//! pick the generation of its names (`subscribe.rs`), a token's form how it is read
//! (`auth.rs`); an update published by either reaches the subscribers of both.
//!
//! Mercure's concepts are mapped onto the core's once, here at the edge:
//!
//! | Mercure | Herald |
//! |---|---|
//! | an update (topics, data, `id`, `type`, `retry`, `private`) | one event named `mercure:update` whose text payload is the update's record (`update`): every engine stores and carries it as it is |
//! | a topic (any IRI, up to [`MAX_TOPIC_LEN`] bytes) | an internal channel, `~m:` and 32 hex digits of the topic's SHA-256 (`topic_channel`); no `/api/sse` client can name one |
//! | a subscriber with exact topics only | a connection on those topics' channels: an update reaches it through the channel index, O(1) per topic |
//! | a subscriber with `*` or a URI Template | a connection on the one channel every update also targets (`all_channel`) |
//! | matching, private updates | the connection's [`DeliveryFilter`](crate::transport::DeliveryFilter) (`format::TopicFilter`): interned per distinct subscription, so fan-out asks each distinct set of selectors once per update and shard |
//! | the publisher's `id` | the SSE `id:` of the update (`format::MERCURE`); `ids` maps it to the event, for `Last-Event-ID` |
//!
//! | File | What |
//! |---|---|
//! | `publish.rs` | `POST`: the form, the publisher's token, the update |
//! | `subscribe.rs` | `GET`: the selectors, the subscriber's token, reconnection |
//! | `auth.rs` | tokens: keys, the `mercure` claim, 1.0 access tokens, where a request carries one |
//! | `selector.rs` | topic selectors: `*`, exact, URI Templates, URL Patterns |
//! | `format.rs` | the wire format and the topic filter |
//! | `subscriptions.rs` | subscription events and the subscriptions API (`--mercure-subscriptions`), for the whole cluster: a subscriber's subscriptions are its connection's metadata |
//! | `update.rs`, `ids.rs` | the update's record; Mercure ids to events |

pub mod auth;
pub mod format;
mod ids;
mod publish;
mod selector;
mod subscribe;
mod subscriptions;
mod update;

pub use auth::{JwtAlg, MercureKey};
pub use format::{MercureFormat, MERCURE};

use std::convert::Infallible;
use std::fmt::Write as _;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::http::AppState;
use crate::target::ChannelName;

/// The hub's URL path.
pub const HUB_PATH: &str = "/.well-known/mercure";

/// Whether `path` is the hub's or below it (its subscriptions API): where answers, errors too,
/// are Mercure's `text/plain` ones.
pub(crate) fn is_hub_path(path: &str) -> bool {
    path.strip_prefix(HUB_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Longest topic (and topic selector), in bytes.
pub const MAX_TOPIC_LEN: usize = 8192;

/// Most topics of one update.
pub const MAX_TOPICS_PER_UPDATE: usize = 64;

/// Most `topic` selectors of one subscription.
pub const MAX_SELECTORS: usize = 128;

/// Longest update id (and `Last-Event-ID`), in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// Longest `type`, in bytes.
pub const MAX_TYPE_LEN: usize = 1024;

/// The Mercure settings.
#[derive(Debug, Clone, Default)]
pub struct MercureConfig {
    /// Verifies publishers' tokens; without one, nobody can publish.
    pub publisher_key: Option<MercureKey>,
    /// Verifies subscribers' tokens; without one, a presented token is refused (subscribers are
    /// anonymous, when [`anonymous`](Self::anonymous) allows).
    pub subscriber_key: Option<MercureKey>,
    /// Accept subscribers without a token (they never get private updates).
    pub anonymous: bool,
    /// Publish subscription events and serve the subscriptions API.
    pub subscriptions: bool,
    /// The hub's OAuth 2.0 resource identifier (`--mercure-resource-identifier`): the `aud`
    /// every 1.0 access token must name, and the base URL of relative URL Patterns. `None`:
    /// the hub's URL as each request reached it (`{scheme}://{host}/.well-known/mercure`,
    /// with the scheme and host a trusted proxy forwards), which is not the public URL behind
    /// a proxy that Herald does not trust or that maps another path.
    /// An absolute URL (the settings check it); compared with `aud` as written.
    pub resource_identifier: Option<String>,
}

/// The Mercure side of a running hub: its settings, the compiled selectors and the ids.
#[derive(Debug)]
pub(crate) struct MercureState {
    pub(crate) config: MercureConfig,
    pub(crate) selectors: format::SelectorStore,
    pub(crate) ids: Mutex<ids::IdIndex>,
}

impl MercureState {
    pub(crate) fn new(config: MercureConfig) -> Self {
        let selectors = match config
            .resource_identifier
            .as_deref()
            .and_then(|id| url::Url::parse(id).ok())
        {
            Some(base) => format::SelectorStore::new(base),
            None => format::SelectorStore::default(),
        };
        MercureState {
            config,
            selectors,
            ids: Mutex::new(ids::IdIndex::new(ids::DEFAULT_MAX_IDS)),
        }
    }
}

impl MercureState {
    /// The compiled forms of `specs`, interned: what a subscription or a publish holds while it
    /// uses them. New ones are compiled on a blocking thread when any of them is not cached:
    /// a URL Pattern or a URI Template can take a millisecond or more to compile, and a
    /// request may bring dozens; the async threads keep serving meanwhile.
    ///
    /// # Errors
    /// The first selector that does not compile (a URL Pattern), or too many URL Patterns
    /// ([`selector::MAX_URL_PATTERNS`]).
    pub(crate) async fn compile(
        self: &std::sync::Arc<Self>,
        specs: &[selector::SelectorSpec],
    ) -> Result<Vec<std::sync::Arc<selector::Selector>>, String> {
        let patterns = specs
            .iter()
            .filter(|s| s.kind == selector::SelectorKind::UrlPattern)
            .count();
        if patterns > selector::MAX_URL_PATTERNS {
            return Err(format!(
                "at most {} URL Patterns",
                selector::MAX_URL_PATTERNS
            ));
        }
        let cached: Option<Vec<_>> = specs.iter().map(|s| self.selectors.cached(s)).collect();
        if let Some(all) = cached {
            return Ok(all);
        }
        let (state, specs) = (self.clone(), specs.to_vec());
        tokio::task::spawn_blocking(move || {
            specs
                .iter()
                .map(|s| state.selectors.try_selector(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap_or_else(|_| Err("the selectors could not be compiled".into()))
    }

    /// The resource identifier a 1.0 access token's `aud` must name on `request` (see
    /// [`MercureConfig::resource_identifier`]); empty when the request names no host.
    pub(crate) fn audience<B>(
        &self,
        config: &crate::config::HttpConfig,
        request: &axum::http::Request<B>,
    ) -> String {
        match &self.config.resource_identifier {
            Some(id) => id.clone(),
            None => crate::http::origin::own_origin(config, request)
                .map(|origin| format!("{origin}{HUB_PATH}"))
                .unwrap_or_default(),
        }
    }
}

/// The internal channel of `topic`: the same on every node, whatever the topic's length or
/// characters. A hash collision (128 bits) would only make fan-out ask one more connection's
/// filter, which compares the topics themselves.
pub(crate) fn topic_channel(topic: &str) -> ChannelName {
    let digest = Sha256::digest(topic.as_bytes());
    let mut name = String::with_capacity(35);
    name.push_str("~m:");
    for byte in &digest[..16] {
        // Writing to a String cannot fail.
        let _ = write!(name, "{byte:02x}");
    }
    // `~m:` and hex digits: a valid internal name.
    ChannelName::internal(&name).expect("a valid internal channel")
}

/// The channel every update also targets: subscribers with `*` or a template listen there.
pub(crate) fn all_channel() -> ChannelName {
    ChannelName::internal("~m:*").expect("a valid internal channel")
}

/// `/.well-known/mercure`: `GET` subscribes, `POST` publishes (its body bounded by
/// `max_body_size` and `body_read_timeout`).
pub(crate) fn endpoint(state: &AppState) -> MethodRouter<AppState> {
    let body_limit = DefaultBodyLimit::max(state.config.max_body_size);
    let body_timeout = RequestBodyTimeoutLayer::new(state.config.body_read_timeout);
    get(subscribe::subscribe)
        .merge(
            axum::routing::post(publish::publish)
                .layer::<_, Infallible>(body_limit)
                .layer::<_, Infallible>(body_timeout),
        )
        .fallback(|method: Method| async move {
            method_not_allowed(&method, "GET, HEAD, POST", "GET subscribes, POST publishes")
        })
}

/// The protocol's `405`, in `text/plain` like its other answers, with `Allow`.
fn method_not_allowed(method: &Method, allow: &'static str, what: &str) -> Response {
    let mut response = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed here: {what}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The paths of the subscriptions API (`--mercure-subscriptions`): 0.x `/{topic}` and
/// `/{topic}/{subscriber}`, 1.0 `/{matchType}/{match}` and `/{matchType}/{match}/{subscriber}`.
/// Everything below `/subscriptions` is the handler's, which reads the path itself (and tells
/// the two-segment forms apart), so that any other path gets the protocol's `404` too.
pub(crate) const SUBSCRIPTIONS_PATHS: [&str; 3] = [
    "/.well-known/mercure/subscriptions",
    "/.well-known/mercure/subscriptions/",
    "/.well-known/mercure/subscriptions/{*path}",
];

/// The subscriptions API: `GET` lists active subscriptions.
pub(crate) fn subscriptions_endpoint() -> MethodRouter<AppState> {
    get(subscriptions::list).fallback(|method: Method| async move {
        method_not_allowed(&method, "GET, HEAD", "GET lists the subscriptions")
    })
}

/// A protocol answer: `status` and a `text/plain` sentence.
pub(crate) fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut text = message.into();
    text.push('\n');
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An authorization refusal as RFC 6750 answers it: `status`, a `WWW-Authenticate: Bearer`
/// challenge with `error` when given (`invalid_token`, `insufficient_scope`,
/// `invalid_request`), and the sentence.
pub(crate) fn bearer(
    status: StatusCode,
    error: Option<&str>,
    message: impl Into<String>,
) -> Response {
    let mut response = plain(status, message);
    let challenge = match error {
        Some(code) => format!("Bearer error=\"{code}\""),
        None => "Bearer".to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The protocol answer to a hub error.
pub(crate) fn hub_error(e: crate::Error) -> Response {
    use crate::Error as E;
    let status = match &e {
        E::Invalid(_) => StatusCode::BAD_REQUEST,
        E::UserConnectionLimit { .. } | E::IpConnectionLimit { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        E::TooManyConnections { .. } | E::ShuttingDown | E::Engine(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::debug!(error = %e, "mercure request refused");
    }
    let mut response = plain(status, e.to_string());
    if status != StatusCode::BAD_REQUEST {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// An error of the HTTP layer (rate limits) as a protocol answer.
pub(crate) fn api_error(e: crate::http::ApiError) -> Response {
    let body = e.body();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("refused")
        .to_owned();
    let json = e.into_response();
    let mut response = plain(json.status(), message);
    if let Some(retry) = json.headers().get(header::RETRY_AFTER) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    response
}

/// Decodes one `application/x-www-form-urlencoded` component (a field of a publish, a
/// parameter of a subscription's query): `+` is a space, `%XX` a byte. Unlike a lenient decoder,
/// a `%` not followed by two hex digits and bytes that are not UTF-8 once decoded are refused
/// (`400`, as the Mercure hub answers them; the draft wants field names and values, and topic
/// matchers, to be UTF-8), so that what a subscriber gets is exactly what was sent.
///
/// # Errors
/// The end of a sentence for the `400` answer.
pub(crate) fn form_decode(part: &[u8]) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |at: usize| part.get(at).and_then(|b| (*b as char).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    // Two hex digits make a byte.
                    (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
                    _ => return Err("has a % not followed by two hex digits"),
                }
                i += 3;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once decoded")
}

/// Whether `s` holds a control character (C0, DEL or C1): none may be in a topic, an id, a
/// `type`, or a selector.
pub(crate) fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_components_are_decoded_strictly() {
        assert_eq!(
            form_decode(b"a+b%0A%25%C3%A9%2b").as_deref(),
            Ok("a b\n%é+")
        );
        assert_eq!(form_decode(b"").as_deref(), Ok(""));
        for bad in [
            &b"%"[..],
            b"%4",
            b"%ZZ",
            b"100%",
            b"%FF",
            b"%C3%28",
            b"\xff",
        ] {
            assert!(
                form_decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn topics_map_to_internal_channels() {
        let long = format!("https://example.com/{}", "é".repeat(2000));
        let a = topic_channel(&long);
        assert!(a.is_internal() && a.as_str().len() == 35, "{a:?}");
        assert_eq!(a, topic_channel(&long), "the same on every node");
        assert_ne!(a, topic_channel("https://example.com/x"));
        assert!(all_channel().is_internal());
        assert!(
            ChannelName::new(a.as_str()).is_err(),
            "no client can name it"
        );
        assert_eq!(ChannelName::stored(a.as_str()).unwrap(), a);
    }
}
