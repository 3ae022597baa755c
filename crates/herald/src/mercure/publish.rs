//! `POST /.well-known/mercure`: publish an update.
//!
//! The body is `application/x-www-form-urlencoded`: `topic` (one or more; the first is the
//! canonical topic, the others alternates), `data` (kept byte for byte), `private` (present:
//! private), `id` (the publisher's; otherwise the hub makes a `urn:uuid:`), `type` and `retry`.
//! Answers `200 text/plain` with the update's id, or, in `text/plain` too: `400` (a bad or
//! missing field), `401` (no valid publisher token, or a 0.x one without a `mercure.publish`
//! claim; with `WWW-Authenticate: Bearer`), `403` (a topic the token does not allow, a 1.0
//! access token that grants no `publish` action, a 1.0 token's topic in the hub's namespace:
//! `error="insufficient_scope"`; or a page on an origin `--publish-origins` does not list),
//! `413` (a body over `max_body_size`), `429` (`--publish-rate-per-key`, counted per token
//! `sub`), `503` (shutting down, overloaded, the engine is unavailable).
//!
//! Both generations publish the same form, but a 1.0 update has exactly one `topic` (`400`
//! for more); the token's form picks how it is read (`auth.rs`):
//! a 0.x token's `mercure.publish` selectors or a 1.0 token's `publish` authorization details
//! must allow every topic of the update, and a 1.0 token may not publish in the hub's own
//! namespace (a topic whose path is `/.well-known/mercure` or below). The token comes from
//! `Authorization: Bearer`, or else the `__Secure-mercure_access_token` (1.0) or
//! `mercureAuthorization` (0.x) cookie, under the Origin rule.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use rand::RngCore;

use super::auth::{self, Generation, TokenSource};
use super::update::Update;
use super::{
    all_channel, bearer, form_decode, has_control, hub_error, plain, topic_channel, MAX_ID_LEN,
    MAX_TOPICS_PER_UPDATE, MAX_TOPIC_LEN, MAX_TYPE_LEN,
};
use crate::broker::Publication;
use crate::http::AppState;
use crate::target::{Fallback, Target, Targets};

/// The fields of a publish request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Form {
    pub(crate) topics: Vec<String>,
    pub(crate) data: Option<String>,
    pub(crate) private: bool,
    pub(crate) id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) retry: Option<u64>,
}

/// Parses and checks the form; the first value of a field counts (but every `topic`).
///
/// # Errors
/// A sentence for the `400` answer.
pub(crate) fn parse_form(body: &[u8]) -> Result<Form, String> {
    let mut form = Form::default();
    let (mut id, mut event_type, mut retry) = (None, None, None);
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let key = form_decode(key).map_err(|e| format!("a field name {e}"))?;
        let value = || form_decode(value).map_err(|e| format!("{key:?} {e}"));
        match key.as_str() {
            "topic" => form.topics.push(value()?),
            "data" if form.data.is_none() => form.data = Some(value()?),
            "private" => form.private = true,
            "id" if id.is_none() => id = Some(value()?),
            "type" if event_type.is_none() => event_type = Some(value()?),
            "retry" if retry.is_none() => retry = Some(value()?),
            _ => {}
        }
    }
    if form.topics.is_empty() {
        return Err("Missing \"topic\" parameter.".into());
    }
    if form.topics.len() > MAX_TOPICS_PER_UPDATE {
        return Err(format!(
            "at most {MAX_TOPICS_PER_UPDATE} \"topic\" fields per update"
        ));
    }
    for topic in &form.topics {
        if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || has_control(topic) {
            return Err(format!(
                "a \"topic\" is 1 to {MAX_TOPIC_LEN} bytes without control characters"
            ));
        }
    }
    let field = |name: &str, value: Option<String>, max: usize| match value {
        Some(v) if v.len() > max || has_control(&v) => Err(format!(
            "\"{name}\" is at most {max} bytes without control characters"
        )),
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    };
    form.id = field("id", id, MAX_ID_LEN)?;
    form.event_type = field("type", event_type, MAX_TYPE_LEN)?;
    form.retry = match retry.filter(|r| !r.is_empty()) {
        None => None,
        Some(r) if r.bytes().all(|b| b.is_ascii_digit()) => Some(
            r.parse()
                .map_err(|_| "Invalid \"retry\" parameter.".to_owned())?,
        ),
        Some(_) => return Err("Invalid \"retry\" parameter.".into()),
    };
    Ok(form)
}

/// A fresh `urn:uuid:` (version 4) for an update the publisher gave no id.
pub(crate) fn generated_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Publishes an update; see the module docs.
pub(crate) async fn publish(State(state): State<AppState>, request: Request) -> Response {
    let Some(mercure) = state.mercure.clone() else {
        return plain(StatusCode::NOT_FOUND, "Mercure is not enabled on this hub");
    };
    // The Origin rule of every publisher (`--publish-origins`), cookie or not.
    if let Err(e) = crate::http::origin::check_origin(&state.config, &request) {
        return super::api_error(e);
    }
    let headers = request.headers().clone();
    let claims = match auth::token_in(&headers, None, &[auth::COOKIE_V1, auth::COOKIE]) {
        Err(why) => return bearer(StatusCode::UNAUTHORIZED, Some("invalid_request"), why),
        Ok(None) => {
            return bearer(
                StatusCode::UNAUTHORIZED,
                None,
                "a publisher token is required: Authorization: Bearer <jwt>",
            )
        }
        Ok(Some((token, source))) => {
            debug_assert_ne!(source, TokenSource::Query);
            let Some(key) = &mercure.config.publisher_key else {
                return bearer(
                    StatusCode::UNAUTHORIZED,
                    Some("invalid_token"),
                    "this hub has no publisher key",
                );
            };
            let audience = mercure.audience(&state.config, &request);
            match key.verify(token, &audience) {
                Ok(claims) => claims,
                Err(why) => return bearer(StatusCode::UNAUTHORIZED, Some("invalid_token"), why),
            }
        }
    };
    // `--publish-rate-per-key`, per token subject (tokens without one share a budget).
    let publisher = format!("mercure:{}", claims.subject.as_deref().unwrap_or(""));
    if let Err(e) = state.limits.check_publish(&publisher) {
        return super::api_error(e);
    }
    let Some(allowed) = claims.publish else {
        return match claims.generation {
            Generation::V0 => bearer(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the token has no mercure.publish claim",
            ),
            Generation::V1 => bearer(
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                "the access token grants no publish action",
            ),
        };
    };
    let selectors = match mercure.compile(&allowed).await {
        Ok(selectors) => selectors,
        Err(why) => return bearer(StatusCode::UNAUTHORIZED, Some("invalid_token"), why),
    };
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if form_type.is_some_and(|t| t != "application/x-www-form-urlencoded") {
        return plain(
            StatusCode::BAD_REQUEST,
            "publish with Content-Type: application/x-www-form-urlencoded",
        );
    }
    let body = match <Bytes as axum::extract::FromRequest<AppState>>::from_request(request, &state)
        .await
    {
        Ok(body) => body,
        Err(rejection) => return plain(rejection.status(), rejection.body_text()),
    };
    let form = match parse_form(&body) {
        Ok(form) => form,
        Err(why) => return plain(StatusCode::BAD_REQUEST, why),
    };
    // 1.0 updates have exactly one topic (the draft: a request with more is a 400); 0.x
    // publishers keep their alternates.
    if claims.generation == Generation::V1 && form.topics.len() > 1 {
        return plain(
            StatusCode::BAD_REQUEST,
            "a Mercure 1.0 update has exactly one \"topic\" field (alternate topics are 0.x)",
        );
    }
    // 1.0 reserves the hub's namespace to the hub (its subscription events): a publisher with
    // a 1.0 token cannot forge them. 0.x hubs had no such rule, so 0.x tokens keep theirs.
    if claims.generation == Generation::V1 {
        if let Some(topic) = form
            .topics
            .iter()
            .find(|t| mercure.selectors.is_reserved(t))
        {
            return bearer(
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                format!("the topic {topic:?} is in the hub's namespace, /.well-known/mercure"),
            );
        }
    }
    // Every topic must be allowed by the token (the 0.x rule, kept for 1.0 tokens).
    if let Some(topic) = form
        .topics
        .iter()
        .find(|t| !selectors.iter().any(|s| s.matches(t)))
    {
        return bearer(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            format!("the token may not publish to the topic {topic:?}"),
        );
    }
    let update = Update {
        id: form.id.unwrap_or_else(generated_id),
        topics: form.topics,
        private: form.private,
        event_type: form.event_type,
        retry: form.retry,
        data: form.data.unwrap_or_default(),
    };
    let mut channels: Vec<_> = update.topics.iter().map(|t| topic_channel(t)).collect();
    channels.push(all_channel());
    channels.sort_unstable();
    channels.dedup();
    // Channels only: never empty, never a broadcast.
    let targets = Targets::new(
        channels.into_iter().map(Target::Channel).collect(),
        Fallback::None,
    )
    .expect("channel targets");
    let (name, payload) = update.to_event_parts();
    let published = match state
        .hub
        .publish_keyed(
            Publication {
                name,
                payload,
                targets,
                idempotency: None,
            },
            &update.id,
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return hub_error(e),
    };
    mercure.ids.lock().insert(&update.id, published.id);
    plain(StatusCode::OK, update.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_decoded_byte_for_byte() {
        let f = parse_form(
            b"topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&topic=urn%3Aalt&data=a+b%0A%0Ac%0D%0A%25&private=on&id=%2Fupdates%2F1&type=book+updated&retry=1500&other=x",
        )
        .unwrap();
        assert_eq!(f.topics, ["https://example.com/books/1", "urn:alt"]);
        assert_eq!(f.data.as_deref(), Some("a b\n\nc\r\n%"));
        assert!(f.private);
        assert_eq!(f.id.as_deref(), Some("/updates/1"));
        assert_eq!(f.event_type.as_deref(), Some("book updated"));
        assert_eq!(f.retry, Some(1500));
        let f = parse_form(b"topic=t&data=&id=").unwrap();
        assert_eq!(
            (f.data.as_deref(), f.id, f.private),
            (Some(""), None, false)
        );
    }

    #[test]
    fn bad_forms_are_refused() {
        for bad in [
            &b""[..],
            b"data=x",
            b"topic=",
            b"topic=a%0Ab",
            b"topic=t&id=a%0Aid: forged",
            b"topic=t&type=a%0Db",
            b"topic=t&retry=-1",
            b"topic=t&retry=1.5",
            b"topic=t&retry=99999999999999999999999",
            b"topic=t&data=%FF",
            b"topic=t&data=%ZZ",
            b"topic=t&data=100%",
            b"topic=t&data=%4",
            b"topic=t&id=%C3%28",
            b"topic=t&data=\xff",
        ] {
            assert!(parse_form(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let many: String = (0..=MAX_TOPICS_PER_UPDATE)
            .map(|i| format!("topic={i}&"))
            .collect();
        assert!(parse_form(many.as_bytes()).is_err());
    }

    #[test]
    fn generated_ids_are_uuids() {
        let id = generated_id();
        assert!(id.starts_with("urn:uuid:") && id.len() == 45, "{id}");
        assert_eq!(&id[23..24], "4");
        assert_ne!(id, generated_id());
    }
}
