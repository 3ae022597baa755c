//! Active subscriptions (`--mercure-subscriptions`): a private update whenever a subscription
//! starts or ends, and the web API that lists them (JSON-LD), in both protocol generations:
//!
//! | | 0.x (`topic=` selectors) | 1.0 (`match=`, `matchURLPattern=` matchers) |
//! |---|---|---|
//! | one subscription (its event's topic and id) | `…/subscriptions/{topic}/{subscriber}` | `…/subscriptions/{matchType}/{match}/{subscriber}` |
//! | per selector | `…/subscriptions/{topic}` | `…/subscriptions/{matchType}/{match}` |
//! | every subscription | `/.well-known/mercure/subscriptions` | the same |
//!
//! `{matchType}` is `Exact` or `URLPattern` (the draft's names; `match` and `match_urlpattern`,
//! the query parameters' names in earlier 1.0 drafts, are read as the same). A subscriber is one
//! connection, named `urn:uuid:…`; each of its selectors is one subscription.
//!
//! **Across a cluster.** A subscriber's subscriptions are its connection's metadata (the
//! record `{"mercure": {...}}`, see [`Subscriber::metadata`]): presence already carries
//! metadata to every node, so the listing asks the presence store for the Mercure connections
//! of every node ([`Hub::connections`]) and there is no second store to keep in step. A node
//! that dies drops out of the listing as soon as it stops answering presence queries (at once
//! when its Redis connection closes, at the latest within the presence store's request
//! timeout); its subscribers' `active: false` events are not sent (nobody is left to send
//! them). Subscription events are ordinary updates: the broker carries them to every node.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::update::Update;
use super::{all_channel, auth, plain, topic_channel, MercureState, HUB_PATH, MERCURE};
use crate::broker::Publication;
use crate::http::AppState;
use crate::presence::ConnectionQuery;
use crate::target::{Fallback, Target, Targets};
use crate::transport::WireFormat;
use crate::Hub;

/// The JSON-LD context of every answer and event.
const CONTEXT: &str = "https://mercure.rocks/";

/// The key of the subscriber's record in its connection's metadata.
const RECORD_KEY: &str = "mercure";

/// Most bytes of one subscriber's record (compact JSON): its selectors (at most
/// [`MAX_SELECTORS`](super::MAX_SELECTORS) of [`MAX_TOPIC_LEN`](super::MAX_TOPIC_LEN) bytes,
/// twice that once escaped) and its token's payload. A larger subscription is refused (`400`)
/// while `--mercure-subscriptions` is on.
pub(crate) const MAX_RECORD_BYTES: usize = 4 << 20;

/// How a subscription's selector matches topics: the generation and the matcher type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchType {
    /// A 0.x `topic` selector (`*`, exact, or a URI Template).
    Topic,
    /// A 1.0 exact matcher (`match=`).
    Exact,
    /// A 1.0 URL Pattern (`matchURLPattern=`).
    UrlPattern,
}

impl MatchType {
    /// Its name in 1.0 documents and paths; `None` for 0.x.
    fn name(self) -> Option<&'static str> {
        match self {
            MatchType::Topic => None,
            MatchType::Exact => Some("Exact"),
            MatchType::UrlPattern => Some("URLPattern"),
        }
    }

    /// The key of its selectors in a subscriber's record.
    fn record_key(self) -> &'static str {
        match self {
            MatchType::Topic => "topic",
            MatchType::Exact => "match",
            MatchType::UrlPattern => "matchURLPattern",
        }
    }

    /// A 1.0 path segment's matcher type.
    fn from_segment(s: &str) -> Option<MatchType> {
        match s {
            "Exact" | "match" | "matchExact" => Some(MatchType::Exact),
            "URLPattern" | "match_urlpattern" | "matchURLPattern" => Some(MatchType::UrlPattern),
            _ => None,
        }
    }

    const ALL: [MatchType; 3] = [MatchType::Topic, MatchType::Exact, MatchType::UrlPattern];
}

/// One subscriber: its id, its subscriptions, the `payload` of its token, and what its token
/// lets it receive of private updates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscriber {
    pub(crate) id: String,
    /// Each selector, with how it matches.
    pub(crate) subscriptions: Vec<(MatchType, String)>,
    pub(crate) payload: Option<Value>,
    /// The selectors of private updates its token allows (the `subscribe` claim); `None` for
    /// an anonymous subscriber.
    pub(crate) allowed: Option<Vec<String>>,
}

impl Subscriber {
    /// A new subscriber (a new `urn:uuid:` id) with these selectors, of either generation.
    pub(crate) fn new(
        subscriptions: Vec<(MatchType, String)>,
        payload: Option<Value>,
        allowed: Option<Vec<String>>,
    ) -> Self {
        Subscriber {
            id: super::publish::generated_id(),
            subscriptions,
            payload,
            allowed,
        }
    }

    /// Its record, as its connection's metadata: `{"mercure": {"subscriber", "topic": [...],
    /// "match": [...], "matchURLPattern": [...], "payload", "subscribe": [...]}}`.
    pub(crate) fn metadata(&self) -> crate::hub::Metadata {
        let mut record = Map::new();
        record.insert("subscriber".into(), json!(self.id));
        for kind in MatchType::ALL {
            let list: Vec<&str> = self
                .subscriptions
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, s)| s.as_str())
                .collect();
            if !list.is_empty() {
                record.insert(kind.record_key().into(), json!(list));
            }
        }
        if let Some(payload) = &self.payload {
            record.insert("payload".into(), payload.clone());
        }
        if let Some(allowed) = &self.allowed {
            record.insert("subscribe".into(), json!(allowed));
        }
        let mut metadata = Map::new();
        metadata.insert(RECORD_KEY.into(), Value::Object(record));
        metadata
    }

    /// The subscriber a connection's metadata records; `None` for anything else.
    fn from_metadata(metadata: &crate::hub::Metadata) -> Option<Subscriber> {
        let record = metadata.get(RECORD_KEY)?.as_object()?;
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let mut subscriptions = Vec::new();
        for kind in MatchType::ALL {
            if let Some(list) = record.get(kind.record_key()) {
                subscriptions.extend(strings(list)?.into_iter().map(|s| (kind, s)));
            }
        }
        Some(Subscriber {
            id: record.get("subscriber")?.as_str()?.to_owned(),
            subscriptions,
            payload: record.get("payload").cloned(),
            allowed: match record.get("subscribe") {
                None => None,
                Some(v) => Some(strings(v)?),
            },
        })
    }
}

/// `s` escaped as a query component (Go's `url.QueryEscape`, which the 0.x Mercure hub uses):
/// letters, digits and `-_.~` stay, a space is `+`, everything else `%XX`.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `s` percent-encoded once as an RFC 6570 simple expansion (the 1.0 draft's rule): unreserved
/// characters stay, every other byte is `%XX` (a space too).
fn escape_1_0(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A path segment percent-decoded (`+` stays a `+`); `None` when it is not UTF-8 then.
fn unescape(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The id (and topic) of one subscription.
fn subscription_id(kind: MatchType, selector: &str, subscriber: &str) -> String {
    match kind.name() {
        None => format!(
            "{HUB_PATH}/subscriptions/{}/{}",
            escape(selector),
            escape(subscriber)
        ),
        Some(name) => format!(
            "{HUB_PATH}/subscriptions/{name}/{}/{}",
            escape_1_0(selector),
            escape_1_0(subscriber)
        ),
    }
}

/// One subscription as JSON-LD (`with_context` for a document of its own).
fn subscription(
    s: &Subscriber,
    kind: MatchType,
    selector: &str,
    active: bool,
    with_context: bool,
) -> Value {
    let mut v = json!({
        "id": subscription_id(kind, selector, &s.id),
        "type": "Subscription",
        "subscriber": s.id,
        "active": active,
    });
    match kind.name() {
        None => v["topic"] = json!(selector),
        Some(name) => {
            v["matchType"] = json!(name);
            v["match"] = json!(selector);
        }
    }
    if let Some(payload) = &s.payload {
        v["payload"] = payload.clone();
    }
    if with_context {
        v["@context"] = json!(CONTEXT);
    }
    v
}

/// Publishes `subscriber`'s `active` events. Returns the guard whose drop publishes their end.
/// The subscriber itself is listed from its connection's metadata ([`Subscriber::metadata`]).
pub(crate) async fn joined(
    hub: &Hub,
    mercure: &Arc<MercureState>,
    subscriber: Subscriber,
) -> SubscriberGuard {
    let subscriber = Arc::new(subscriber);
    publish_events(hub, mercure, &subscriber, true).await;
    SubscriberGuard {
        hub: hub.clone(),
        mercure: mercure.clone(),
        subscriber,
    }
}

/// Publishes one private update per subscription of `s`, to every node.
async fn publish_events(hub: &Hub, mercure: &MercureState, s: &Subscriber, active: bool) {
    for (kind, selector) in &s.subscriptions {
        let data = subscription(s, *kind, selector, active, true);
        let id = subscription_id(*kind, selector, &s.id);
        let update = Update {
            id: super::publish::generated_id(),
            topics: vec![id.clone()],
            private: true,
            event_type: None,
            retry: None,
            // A JSON value always serializes.
            data: serde_json::to_string_pretty(&data).expect("JSON"),
        };
        let (name, payload) = update.to_event_parts();
        let targets = Targets::new(
            vec![
                Target::Channel(topic_channel(&id)),
                Target::Channel(all_channel()),
            ],
            Fallback::None,
        )
        .expect("channel targets");
        match hub
            .publish(Publication {
                name,
                payload,
                targets,
                idempotency: None,
            })
            .await
        {
            Ok(published) => mercure.ids.lock().insert(&update.id, published.id),
            Err(e) => tracing::debug!(error = %e, "subscription event not published"),
        }
    }
}

/// Publishes the end of its subscriber's subscriptions, in a task of the hub's, when the stream
/// ends (the body is dropped).
#[derive(Debug)]
pub(crate) struct SubscriberGuard {
    hub: Hub,
    mercure: Arc<MercureState>,
    subscriber: Arc<Subscriber>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        if self.hub.is_shutting_down() {
            return;
        }
        let (hub, mercure, subscriber) = (
            self.hub.clone(),
            self.mercure.clone(),
            self.subscriber.clone(),
        );
        self.hub.lifecycle().spawn(async move {
            publish_events(&hub, &mercure, &subscriber, false).await;
        });
    }
}

/// What a request of the subscriptions API asks for.
#[derive(Debug, PartialEq)]
enum Wanted {
    /// Every subscription.
    All,
    /// The subscriptions of one selector.
    Selector(MatchType, String),
    /// One subscription.
    One(MatchType, String, String),
}

/// Reads the path after `/.well-known/mercure/subscriptions`; `None` for a path of neither
/// generation.
fn wanted(path: &str) -> Option<Wanted> {
    let rest = path
        .strip_prefix(HUB_PATH)?
        .strip_prefix("/subscriptions")?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let segments: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').map(unescape).collect::<Option<_>>()?
    };
    let one_dot_o = segments.first().and_then(|s| MatchType::from_segment(s));
    Some(match (segments.as_slice(), one_dot_o) {
        ([], _) => Wanted::All,
        ([topic], _) => Wanted::Selector(MatchType::Topic, topic.clone()),
        // Two segments: a 1.0 collection when the first names a matcher type, else a 0.x
        // subscription.
        ([_, selector], Some(kind)) => Wanted::Selector(kind, selector.clone()),
        ([topic, subscriber], None) => {
            Wanted::One(MatchType::Topic, topic.clone(), subscriber.clone())
        }
        ([_, selector, subscriber], Some(kind)) => {
            Wanted::One(kind, selector.clone(), subscriber.clone())
        }
        _ => return None,
    })
}

/// The protocol's refusal of the request, unless its token may read the requested URL. The
/// token comes from `Authorization: Bearer`, `?authorization=`, or either generation's cookie
/// (`__Secure-mercure_access_token`, then `mercureAuthorization`).
async fn refusal(
    config: &crate::config::HttpConfig,
    mercure: &Arc<MercureState>,
    request: &axum::http::Request<()>,
) -> Option<Response> {
    let query = request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.into_owned())
    });
    let cookies = [auth::COOKIE_V1, auth::COOKIE];
    let claims = match auth::token_in(request.headers(), query.as_deref(), &cookies) {
        Err(why) => return Some(plain(StatusCode::UNAUTHORIZED, why)),
        Ok(None) => {
            return Some(plain(
                StatusCode::UNAUTHORIZED,
                "a subscriber token is required",
            ))
        }
        Ok(Some((token, _))) => match &mercure.config.subscriber_key {
            None => {
                return Some(plain(
                    StatusCode::UNAUTHORIZED,
                    "this hub has no subscriber key",
                ))
            }
            Some(key) => match key.verify(token, &mercure.audience(config, request)) {
                Ok(claims) => claims,
                Err(why) => return Some(plain(StatusCode::UNAUTHORIZED, why)),
            },
        },
    };
    // The requested URL in relative form, as the subscription events' topics are written.
    let requested = request.uri().path();
    // Compiled off the async threads, as a subscription's are (a token may carry patterns).
    let allowed = match mercure.compile(&claims.subscribe.unwrap_or_default()).await {
        Ok(allowed) => allowed,
        Err(why) => return Some(plain(StatusCode::UNAUTHORIZED, why)),
    };
    if !allowed.iter().any(|s| s.matches(requested)) {
        return Some(plain(
            StatusCode::FORBIDDEN,
            "the token's mercure.subscribe claim does not match this URL",
        ));
    }
    None
}

/// `GET /.well-known/mercure/subscriptions[/…]`: the active subscriptions of every node, for a
/// token whose `subscribe` claim matches the requested path.
pub(crate) async fn list(State(state): State<AppState>, request: Request) -> Response {
    let Some(mercure) = state.mercure.clone() else {
        return plain(StatusCode::NOT_FOUND, "Mercure is not enabled on this hub");
    };
    // The head only (a `GET` has no body to read), which the checks may hold across awaits.
    let request = axum::http::Request::from_parts(request.into_parts().0, ());
    if let Some(refusal) = refusal(&state.config, &mercure, &request).await {
        return refusal;
    }
    let requested = request.uri().path().to_owned();
    let Some(wanted) = wanted(&requested) else {
        return plain(StatusCode::NOT_FOUND, "no such subscriptions resource");
    };
    // Subscribers whose selectors are all exact listen on their topics' channels, the others
    // on the channel every update targets: a selector's subscribers are on one of the two.
    let channels = match &wanted {
        Wanted::All => Vec::new(),
        Wanted::Selector(_, s) | Wanted::One(_, s, _) => vec![topic_channel(s), all_channel()],
    };
    let query = ConnectionQuery {
        transport: MERCURE.name().to_owned(),
        channels,
    };
    let connections = match state.hub.connections(&query).await {
        Ok(list) => list,
        Err(e) => return super::hub_error(e),
    };
    let mut subscribers: Vec<Subscriber> = connections
        .iter()
        .filter_map(|c| c.connection.metadata.as_deref())
        .filter_map(Subscriber::from_metadata)
        .collect();
    subscribers.sort_by(|a, b| a.id.cmp(&b.id));
    let last_event_id = mercure.ids.lock().newest().unwrap_or("earliest").to_owned();
    let body = match &wanted {
        Wanted::One(kind, selector, id) => {
            let Some(s) = subscribers.iter().find(|s| {
                s.id == *id
                    && s.subscriptions
                        .iter()
                        .any(|(k, t)| k == kind && t == selector)
            }) else {
                return plain(StatusCode::NOT_FOUND, "no such subscription");
            };
            let mut v = subscription(s, *kind, selector, true, true);
            v["lastEventID"] = json!(last_event_id);
            v
        }
        _ => {
            let list: Vec<Value> = subscribers
                .iter()
                .flat_map(|s| {
                    s.subscriptions
                        .iter()
                        .filter(|(k, t)| match &wanted {
                            Wanted::Selector(kind, selector) => k == kind && t == selector,
                            _ => true,
                        })
                        .map(|(k, t)| subscription(s, *k, t, true, false))
                        .collect::<Vec<_>>()
                })
                .collect();
            json!({
                "@context": CONTEXT,
                "id": requested,
                "type": "Subscriptions",
                "lastEventID": last_event_id,
                "subscriptions": list,
            })
        }
    };
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_escape_like_the_mercure_hub() {
        assert_eq!(
            subscription_id(MatchType::Topic, "https://example.com/{selector}", "urn:uuid:bb3d"),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3Abb3d"
        );
        assert_eq!(escape("a b~"), "a+b~");
        // 1.0: the draft's example, encoded once (a `%` too), a space as %20.
        assert_eq!(
            subscription_id(MatchType::UrlPattern, "https://example.com/:selector", "urn:uuid:bb3d"),
            "/.well-known/mercure/subscriptions/URLPattern/https%3A%2F%2Fexample.com%2F%3Aselector/urn%3Auuid%3Abb3d"
        );
        assert_eq!(escape_1_0("a b%2F"), "a%20b%252F");
    }

    #[test]
    fn records_round_trip_through_metadata() {
        let s = Subscriber {
            id: "urn:uuid:1".into(),
            subscriptions: vec![
                (MatchType::Topic, "https://example.com/{id}".into()),
                (MatchType::Exact, "urn:a".into()),
                (MatchType::UrlPattern, "https://example.com/:id".into()),
            ],
            payload: Some(json!({"user": 7})),
            allowed: Some(vec!["*".into()]),
        };
        let m = s.metadata();
        assert_eq!(Subscriber::from_metadata(&m), Some(s.clone()));
        let anonymous = Subscriber {
            payload: None,
            allowed: None,
            ..s
        };
        assert_eq!(
            Subscriber::from_metadata(&anonymous.metadata()),
            Some(anonymous)
        );
        let mut other = crate::hub::Metadata::new();
        other.insert("room".into(), json!("x"));
        assert_eq!(Subscriber::from_metadata(&other), None);
    }

    #[test]
    fn paths_of_both_generations() {
        let w = |p: &str| wanted(p);
        assert_eq!(w("/.well-known/mercure/subscriptions"), Some(Wanted::All));
        assert_eq!(w("/.well-known/mercure/subscriptions/"), Some(Wanted::All));
        assert_eq!(
            w("/.well-known/mercure/subscriptions/https%3A%2F%2Fa%2F%7Bid%7D"),
            Some(Wanted::Selector(MatchType::Topic, "https://a/{id}".into()))
        );
        assert_eq!(
            w("/.well-known/mercure/subscriptions/urn%3Aa/urn%3Auuid%3A1"),
            Some(Wanted::One(
                MatchType::Topic,
                "urn:a".into(),
                "urn:uuid:1".into()
            ))
        );
        assert_eq!(
            w("/.well-known/mercure/subscriptions/Exact/urn%3Aa"),
            Some(Wanted::Selector(MatchType::Exact, "urn:a".into()))
        );
        for name in ["URLPattern", "match_urlpattern", "matchURLPattern"] {
            assert_eq!(
                w(&format!("/.well-known/mercure/subscriptions/{name}/https%3A%2F%2Fa%2F%3Aid/urn%3Auuid%3A1")),
                Some(Wanted::One(MatchType::UrlPattern, "https://a/:id".into(), "urn:uuid:1".into()))
            );
        }
        assert_eq!(
            w("/.well-known/mercure/subscriptions/match/a+b/s"),
            Some(Wanted::One(MatchType::Exact, "a+b".into(), "s".into()))
        );
        assert_eq!(w("/.well-known/mercure/subscriptions/nope/a/b"), None);
        assert_eq!(w("/.well-known/mercure/subscriptions/a/b/c/d"), None);
        assert_eq!(w("/.well-known/mercure/subscriptions/%FF"), None);
    }
}
