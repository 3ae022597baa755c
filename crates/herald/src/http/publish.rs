//! `POST /api/sse/message` (and its aliases) and `POST /api/sse/messages`: publish events.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{body_rejection, json_error};
use super::{ApiError, AppState};
use crate::auth::Publisher;
use crate::broker::{Publication, Published};
use crate::error::InvalidInput;
use crate::event::{EventName, Payload};
use crate::idempotency::IdempotencyKey;
use crate::target::{Fallback, TargetFields};

/// Fields a publish body may have.
const FIELDS: &[&str] = &[
    "event",
    "data",
    "text",
    "users",
    "connections",
    "channels",
    "broadcast",
    "fallback",
    "idempotencyKey",
];

/// The request header that carries a single publish's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header set on the remembered answer of a repeated idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The answer to a publish.
#[derive(Debug, Serialize)]
pub struct PublishResponse {
    /// The event's id.
    pub id: String,
    /// How many connections it was queued to; `0` means nobody targeted is online.
    pub delivered: usize,
    /// Present (and true) when this is the remembered answer of an earlier publish with the
    /// same idempotency key: nothing was published this time.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

impl From<Published> for PublishResponse {
    fn from(p: Published) -> Self {
        PublishResponse {
            id: p.id.to_string(),
            delivered: p.delivered,
            replayed: p.replayed,
        }
    }
}

/// Parses one publish body (an already-decoded JSON value) into a [`Publication`].
///
/// # Errors
/// An [`InvalidInput`] naming the first bad field.
pub fn parse_publication(value: Value) -> Result<Publication, InvalidInput> {
    let Value::Object(mut body) = value else {
        return Err(InvalidInput::with_code(
            "invalid_json",
            "body",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(InvalidInput::new(
            unknown.clone(),
            format!("unknown field; expected one of {}", FIELDS.join(", ")),
        ));
    }
    let name = match body.remove("event") {
        None => EventName::new(EventName::DEFAULT)?,
        Some(Value::String(s)) => EventName::new(&s)?,
        Some(_) => return Err(InvalidInput::new("event", "must be a string")),
    };
    let payload = match (body.remove("data"), body.remove("text")) {
        (Some(data), None) => Payload::json(&data)?,
        (None, Some(Value::String(text))) => Payload::text(text),
        (None, Some(_)) => {
            return Err(InvalidInput::new(
                "text",
                "must be a string (the raw text to send; use data for JSON)",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(InvalidInput::new(
                "text",
                "give either data (any JSON value) or text (raw text), not both",
            ))
        }
        (None, None) => {
            return Err(InvalidInput::new(
                "data",
                "data (any JSON value) or text (raw text) is required",
            ))
        }
    };
    let idempotency = match body.remove("idempotencyKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(IdempotencyKey::from_publisher(&key)?),
        Some(_) => return Err(InvalidInput::new("idempotencyKey", "must be a string")),
    };

    // The targets' fields are read one by one (and user ids may be numbers), so that an error
    // names its field; then checked as every JSON form of targets is (`TargetFields`).
    let users = strings(&mut body, "users", true)?;
    let connections = strings(&mut body, "connections", false)?;
    let channels = strings(&mut body, "channels", false)?;
    let broadcast = match body.remove("broadcast") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(InvalidInput::new("broadcast", "must be true or false")),
    };
    let fallback = match body.remove("fallback") {
        None => Fallback::None,
        Some(Value::String(s)) if s == "none" => Fallback::None,
        Some(Value::String(s)) if s == "broadcast" => Fallback::Broadcast,
        Some(_) => {
            return Err(InvalidInput::new(
                "fallback",
                "must be \"none\" or \"broadcast\"",
            ))
        }
    };
    let targets = TargetFields {
        users,
        channels,
        connections,
        broadcast,
        fallback,
    }
    .into_targets()?;
    Ok(Publication {
        name,
        payload,
        targets,
        idempotency,
    })
}

fn rename(mut e: InvalidInput, field: &'static str) -> InvalidInput {
    e.field = field.into();
    e
}

/// Takes an optional array of strings (numbers too when `numbers` is set, as user ids often are).
fn strings(
    body: &mut Map<String, Value>,
    field: &'static str,
    numbers: bool,
) -> Result<Vec<String>, InvalidInput> {
    let items = match body.remove(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(InvalidInput::new(field, "must be an array of strings")),
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            // Integer ids (as many databases hand them out) become their decimal text.
            Value::Number(n) if numbers && (n.is_i64() || n.is_u64()) => Ok(n.to_string()),
            _ => Err(InvalidInput::new(field, "must be an array of strings")),
        })
        .collect()
}

/// Refuses an event whose targets the publisher's scope does not cover.
fn check_scope(publisher: &Publisher, publication: &Publication) -> Result<(), ApiError> {
    publisher
        .publish
        .check(&publication.targets)
        .map_err(|message| ApiError::new(StatusCode::FORBIDDEN, "forbidden", message))
}

/// Publishes one event. Body: `{"event", "data", "users", "connections", "channels",
/// "broadcast", "fallback"}`; answer `200 {"id", "delivered"}`.
///
/// An `Idempotency-Key` header (or an `idempotencyKey` field) makes it safe to retry: the same
/// key within the idempotency window publishes once and answers the first result again, with
/// `Idempotent-Replayed: true`.
pub async fn publish(
    State(state): State<AppState>,
    Extension(publisher): Extension<Publisher>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.config.max_body_size))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
    let mut publication = parse_publication(value)?;
    if let Some(header) = headers.get(IDEMPOTENCY_KEY) {
        let key = header
            .to_str()
            .map_err(|_| InvalidInput::new("Idempotency-Key", "must be printable ASCII"))
            .and_then(|text| {
                IdempotencyKey::from_publisher(text).map_err(|e| rename(e, "Idempotency-Key"))
            })?;
        match &publication.idempotency {
            Some(field) if *field != key => {
                return Err(InvalidInput::new(
                    "idempotencyKey",
                    "the Idempotency-Key header and the idempotencyKey field differ",
                )
                .into())
            }
            _ => publication.idempotency = Some(key),
        }
    }
    check_scope(&publisher, &publication)?;
    let published = state.hub.publish(publication).await?;
    let mut response = Json(PublishResponse::from(published)).into_response();
    if published.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Publishes a JSON array of events, in order. Answers `200 {"results": [...]}` with, for each
/// item, either `{"id", "delivered"}` or `{"error": {"code", "message"}}`: one bad item does not
/// stop the others.
pub async fn publish_batch(
    State(state): State<AppState>,
    Extension(publisher): Extension<Publisher>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.config.max_batch_body_size))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
    let Value::Array(items) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON array of publish objects",
        ));
    };
    if items.len() > state.config.max_batch_len {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!(
                "a batch holds at most {} events; this one has {}",
                state.config.max_batch_len,
                items.len()
            ),
        ));
    }
    // The rate limit counts events, not requests: a batch of 100 costs 100.
    state
        .limits
        .check_publish_batch(&publisher.name, items.len())?;
    // Checked first, published together (in order), answered in the items' order.
    let checked: Vec<Result<Publication, ApiError>> = items
        .into_iter()
        .map(|item| {
            let p = parse_publication(item)?;
            check_scope(&publisher, &p)?;
            Ok(p)
        })
        .collect();
    let mut valid = Vec::with_capacity(checked.len());
    let mut outcomes: Vec<Option<Result<Published, ApiError>>> = Vec::with_capacity(checked.len());
    for item in checked {
        match item {
            Ok(p) => {
                valid.push(p);
                outcomes.push(None);
            }
            Err(e) => outcomes.push(Some(Err(e))),
        }
    }
    let mut published = state.hub.publish_batch(valid).await.into_iter();
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|outcome| {
            let outcome = outcome.unwrap_or_else(|| match published.next() {
                Some(result) => result.map_err(ApiError::from),
                None => Err(ApiError::from(crate::Error::ShuttingDown)),
            });
            match outcome {
                Ok(published) => {
                    serde_json::to_value(PublishResponse::from(published)).unwrap_or(Value::Null)
                }
                Err(e) => e.body(),
            }
        })
        .collect();
    Ok(Json(serde_json::json!({ "results": results })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_body() {
        let p = parse_publication(json!({
            "event": "order:shipped",
            "data": {"id": 7},
            "users": ["alice", 42],
            "channels": ["orders"],
            "fallback": "broadcast"
        }))
        .unwrap();
        assert_eq!(p.name.as_str(), "order:shipped");
        assert_eq!(p.payload.as_str(), r#"{"id":7}"#);
        assert_eq!(p.targets.list().len(), 3);
        assert_eq!(p.targets.fallback(), Fallback::Broadcast);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"data": 1}), "missing_target", "targets"),
            (json!({"broadcast": true}), "invalid_field", "data"),
            (
                json!({"data": 1, "broadcast": true, "users": ["a"]}),
                "conflicting_targets",
                "broadcast",
            ),
            (
                json!({"data": 1, "broadcast": true, "user": "a"}),
                "invalid_field",
                "user",
            ),
            (
                json!({"event": "a\nb", "data": 1, "broadcast": true}),
                "invalid_field",
                "event",
            ),
            (
                json!({"event": "connected", "data": 1, "broadcast": true}),
                "reserved_event",
                "event",
            ),
            (
                json!({"data": 1, "users": "alice"}),
                "invalid_field",
                "users",
            ),
            (
                json!({"data": 1, "connections": ["nope"]}),
                "invalid_field",
                "connections",
            ),
            (
                json!({"data": 1, "channels": ["a b"]}),
                "invalid_field",
                "channels",
            ),
            (
                json!({"data": 1, "broadcast": "yes"}),
                "invalid_field",
                "broadcast",
            ),
            (
                json!({"data": 1, "broadcast": true, "fallback": "all"}),
                "invalid_field",
                "fallback",
            ),
            (json!([1]), "invalid_json", "body"),
            (
                json!({"data": 1, "text": "x", "broadcast": true}),
                "invalid_field",
                "text",
            ),
            (
                json!({"text": {"a": 1}, "broadcast": true}),
                "invalid_field",
                "text",
            ),
            (
                json!({"text": null, "broadcast": true}),
                "invalid_field",
                "text",
            ),
        ];
        for (body, code, field) in cases {
            let e = parse_publication(body.clone()).unwrap_err();
            assert_eq!((e.code, &*e.field), (code, field), "{body}");
        }
    }

    #[test]
    fn null_data_is_data() {
        let p = parse_publication(json!({"data": null, "broadcast": true})).unwrap();
        assert_eq!(p.payload.as_str(), "null");
        assert_eq!(p.name.as_str(), "message");
    }

    #[test]
    fn text_is_raw_text_and_data_is_json() {
        let p = parse_publication(json!({"text": "Hello\n\"world\"", "broadcast": true})).unwrap();
        assert_eq!(p.payload.as_str(), "Hello\n\"world\"");
        assert_eq!(p.payload.kind(), crate::event::PayloadKind::Text);
        let p = parse_publication(json!({"data": "Hello", "broadcast": true})).unwrap();
        assert_eq!(p.payload.as_str(), "\"Hello\"");
        assert_eq!(p.payload.kind(), crate::event::PayloadKind::Json);
        let json = parse_publication(json!({"data": {"a": 1}, "broadcast": true})).unwrap();
        let text = parse_publication(json!({"text": "{\"a\":1}", "broadcast": true})).unwrap();
        assert_ne!(
            crate::idempotency::fingerprint(&json),
            crate::idempotency::fingerprint(&text),
            "the same text as JSON and as text are different events"
        );
    }
}
