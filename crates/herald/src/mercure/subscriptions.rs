//! Active subscriptions (`--mercure-subscriptions`): a private update whenever a subscription
//! starts or ends, on the topic `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, and
//! the web API that lists them (JSON-LD), at `/.well-known/mercure/subscriptions`,
//! `…/subscriptions/{topic}` and `…/subscriptions/{topic}/{subscriber}`.
//!
//! This node's subscribers are listed (see `docs/guides/mercure.md`, "Limits", for a cluster).
//! A subscriber is one connection, named `urn:uuid:…`; each of its `topic` selectors is one
//! subscription.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::update::Update;
use super::{all_channel, auth, plain, topic_channel, MercureState, HUB_PATH};
use crate::broker::Publication;
use crate::http::AppState;
use crate::target::{Fallback, Target, Targets};
use crate::Hub;

/// The JSON-LD context of every answer and event.
const CONTEXT: &str = "https://mercure.rocks/";

/// One subscriber: its id, its selectors, and the `mercure.payload` of its token.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) payload: Option<Value>,
}

/// This node's subscribers, by id.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    by_id: Mutex<HashMap<String, Arc<Subscriber>>>,
}

/// `s` escaped as a query component (Go's `url.QueryEscape`, which the Mercure hub uses):
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

/// The id (and topic) of one subscription.
fn subscription_id(topic: &str, subscriber: &str) -> String {
    format!(
        "{HUB_PATH}/subscriptions/{}/{}",
        escape(topic),
        escape(subscriber)
    )
}

/// One subscription as JSON-LD (`with_context` for a document of its own).
fn subscription(s: &Subscriber, topic: &str, active: bool, with_context: bool) -> Value {
    let mut v = json!({
        "id": subscription_id(topic, &s.id),
        "type": "Subscription",
        "subscriber": s.id,
        "topic": topic,
        "active": active,
    });
    if let Some(payload) = &s.payload {
        v["payload"] = payload.clone();
    }
    if with_context {
        v["@context"] = json!(CONTEXT);
    }
    v
}

impl Subscribers {
    fn list(&self) -> Vec<Arc<Subscriber>> {
        let mut list: Vec<_> = self.by_id.lock().values().cloned().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }
}

/// Adds `subscriber` and publishes its subscriptions' `active` events. Returns the guard whose
/// drop removes it and publishes their end.
pub(crate) async fn joined(
    hub: &Hub,
    mercure: &Arc<MercureState>,
    subscriber: Subscriber,
) -> SubscriberGuard {
    let subscriber = Arc::new(subscriber);
    mercure
        .subscribers
        .by_id
        .lock()
        .insert(subscriber.id.clone(), subscriber.clone());
    publish_events(hub, mercure, &subscriber, true).await;
    SubscriberGuard {
        hub: hub.clone(),
        mercure: mercure.clone(),
        subscriber,
    }
}

/// Publishes one private update per subscription of `s`.
async fn publish_events(hub: &Hub, mercure: &MercureState, s: &Subscriber, active: bool) {
    for topic in &s.topics {
        let data = subscription(s, topic, active, true);
        let id = subscription_id(topic, &s.id);
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

/// Removes its subscriber when the stream ends (the body is dropped), and publishes the end of
/// its subscriptions in a task of the hub's.
#[derive(Debug)]
pub(crate) struct SubscriberGuard {
    hub: Hub,
    mercure: Arc<MercureState>,
    subscriber: Arc<Subscriber>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.mercure
            .subscribers
            .by_id
            .lock()
            .remove(&self.subscriber.id);
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

/// `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`: the active subscriptions,
/// for a token whose `mercure.subscribe` claim matches the requested path.
pub(crate) async fn list(
    State(state): State<AppState>,
    path: Option<Path<Vec<(String, String)>>>,
    request: Request,
) -> Response {
    let Some(mercure) = state.mercure.clone() else {
        return plain(StatusCode::NOT_FOUND, "Mercure is not enabled on this hub");
    };
    let query = request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.into_owned())
    });
    let claims = match auth::token(request.headers(), query.as_deref()) {
        Err(why) => return plain(StatusCode::UNAUTHORIZED, why),
        Ok(None) => return plain(StatusCode::UNAUTHORIZED, "a subscriber token is required"),
        Ok(Some((token, _))) => match &mercure.config.subscriber_key {
            None => return plain(StatusCode::UNAUTHORIZED, "this hub has no subscriber key"),
            Some(key) => match key.verify(token, &mercure.audience(&state.config, &request)) {
                Ok(claims) => claims,
                Err(why) => return plain(StatusCode::UNAUTHORIZED, why),
            },
        },
    };
    let requested = request.uri().path().to_owned();
    let allowed = claims.subscribe.unwrap_or_default();
    if !allowed
        .iter()
        .any(|s| mercure.selectors.selector(s).matches(&requested))
    {
        return plain(
            StatusCode::FORBIDDEN,
            "the token's mercure.subscribe claim does not match this URL",
        );
    }
    let params: HashMap<String, String> = path
        .map(|Path(p)| p)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let last_event_id = mercure.ids.lock().newest().unwrap_or("earliest").to_owned();
    let subscribers = mercure.subscribers.list();
    let body = match (params.get("topic"), params.get("subscriber")) {
        (Some(topic), Some(id)) => {
            let Some(s) = subscribers
                .iter()
                .find(|s| s.id == *id && s.topics.contains(topic))
            else {
                return plain(StatusCode::NOT_FOUND, "no such subscription");
            };
            let mut v = subscription(s, topic, true, true);
            v["lastEventID"] = json!(last_event_id);
            v
        }
        (topic, _) => {
            let list: Vec<Value> = subscribers
                .iter()
                .flat_map(|s| {
                    s.topics
                        .iter()
                        .filter(|t| topic.is_none_or(|want| want == *t))
                        .map(|t| subscription(s, t, true, false))
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
            subscription_id("https://example.com/{selector}", "urn:uuid:bb3d"),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3Abb3d"
        );
        assert_eq!(escape("a b~"), "a+b~");
    }
}
