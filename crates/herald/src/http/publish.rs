//! `POST /api/sse/message` (and its aliases) and `POST /api/sse/messages`: publish events.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

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
    if !value.is_object() {
        return Err(not_an_object());
    }
    let text = value.to_string();
    let fields: RawFields<'_> = serde_json::from_str(&text)
        .map_err(|e| InvalidInput::with_code("invalid_json", "body", e.to_string()))?;
    fields.into_publication()
}

/// Parses a publish body as it arrived: JSON bytes, read once into the event. The fields are
/// taken as raw JSON borrowed from the body and decoded one by one; `data` is kept as the text
/// the publisher sent (whitespace outside strings removed), not decoded into a tree and
/// encoded again.
fn parse_body(body: &[u8]) -> Result<Publication, ApiError> {
    if first_byte(body) != Some(b'{') {
        // Not an object (or not JSON): the decoded value says which, as it always did.
        let value: Value = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
        return Ok(parse_publication(value)?);
    }
    let fields: RawFields<'_> = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    Ok(fields.into_publication()?)
}

/// One item of a batch, already known to be valid JSON.
fn parse_item(item: &RawValue) -> Result<Publication, InvalidInput> {
    if first_byte(item.get().as_bytes()) != Some(b'{') {
        return Err(not_an_object());
    }
    let fields: RawFields<'_> = serde_json::from_str(item.get())
        .map_err(|e| InvalidInput::with_code("invalid_json", "body", e.to_string()))?;
    fields.into_publication()
}

fn not_an_object() -> InvalidInput {
    InvalidInput::with_code("invalid_json", "body", "the body must be a JSON object")
}

/// The first byte that is not JSON whitespace.
fn first_byte(json: &[u8]) -> Option<u8> {
    json.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Deepest nesting of arrays and objects in `data`: what a decoder of the whole body refused
/// beyond (serde_json's limit), and what subscribers' JSON parsers (Python's recursion limit,
/// say) can still read.
const MAX_DATA_DEPTH: usize = 128;

/// `json` (valid JSON) without the whitespace outside its strings: what goes on the wire must
/// be one line, and is compact as a re-encoding would be (numbers and escapes stay as sent).
///
/// # Errors
/// When arrays and objects are nested deeper than [`MAX_DATA_DEPTH`].
fn compact_json(json: &str) -> Result<Cow<'_, str>, InvalidInput> {
    let bytes = json.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut depth = 0usize;
    // Allocated at the first byte to drop: text that is already compact is returned as it is.
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        let drop = if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            false
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DATA_DEPTH {
                        return Err(InvalidInput::new(
                            "data",
                            format!("nested more than {MAX_DATA_DEPTH} levels deep"),
                        ));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            matches!(b, b' ' | b'\t' | b'\n' | b'\r')
        };
        match (&mut out, drop) {
            (None, true) => {
                let mut kept = Vec::with_capacity(bytes.len());
                kept.extend_from_slice(&bytes[..i]);
                out = Some(kept);
            }
            (Some(kept), false) => kept.push(b),
            _ => {}
        }
    }
    Ok(match out {
        None => Cow::Borrowed(json),
        // Only ASCII whitespace was removed, outside strings: still UTF-8.
        Some(kept) => {
            Cow::Owned(String::from_utf8(kept).expect("JSON minus ASCII whitespace is UTF-8"))
        }
    })
}

/// A publish object's fields as raw JSON borrowed from the body; decoded by
/// [`RawFields::into_publication`], in the order that decides which error a bad body gets. A
/// field given twice keeps its last value, as a decoded object would.
#[derive(Default)]
struct RawFields<'a> {
    /// The first field that is not one of [`FIELDS`].
    unknown: Option<String>,
    event: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    text: Option<&'a RawValue>,
    users: Option<&'a RawValue>,
    connections: Option<&'a RawValue>,
    channels: Option<&'a RawValue>,
    broadcast: Option<&'a RawValue>,
    fallback: Option<&'a RawValue>,
    idempotency_key: Option<&'a RawValue>,
}

/// A key of a publish object: one of [`FIELDS`], or another.
enum Field {
    Event,
    Data,
    Text,
    Users,
    Connections,
    Channels,
    Broadcast,
    Fallback,
    IdempotencyKey,
    Unknown(String),
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Field, E> {
                Ok(match key {
                    "event" => Field::Event,
                    "data" => Field::Data,
                    "text" => Field::Text,
                    "users" => Field::Users,
                    "connections" => Field::Connections,
                    "channels" => Field::Channels,
                    "broadcast" => Field::Broadcast,
                    "fallback" => Field::Fallback,
                    "idempotencyKey" => Field::IdempotencyKey,
                    other => Field::Unknown(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFields<'de>, A::Error> {
                let mut fields = RawFields::default();
                while let Some(key) = map.next_key::<Field>()? {
                    let value: &'de RawValue = map.next_value()?;
                    let slot = match key {
                        Field::Event => &mut fields.event,
                        Field::Data => &mut fields.data,
                        Field::Text => &mut fields.text,
                        Field::Users => &mut fields.users,
                        Field::Connections => &mut fields.connections,
                        Field::Channels => &mut fields.channels,
                        Field::Broadcast => &mut fields.broadcast,
                        Field::Fallback => &mut fields.fallback,
                        Field::IdempotencyKey => &mut fields.idempotency_key,
                        Field::Unknown(name) => {
                            fields.unknown.get_or_insert(name);
                            continue;
                        }
                    };
                    *slot = Some(value);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// The string a raw JSON value holds, if it is a string.
fn raw_string(raw: &RawValue) -> Option<String> {
    if raw.get().starts_with('"') {
        serde_json::from_str(raw.get()).ok()
    } else {
        None
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

impl RawFields<'_> {
    fn into_publication(self) -> Result<Publication, InvalidInput> {
        if let Some(unknown) = self.unknown {
            return Err(InvalidInput::new(
                unknown,
                format!("unknown field; expected one of {}", FIELDS.join(", ")),
            ));
        }
        let name = match self.event {
            None => EventName::new(EventName::DEFAULT)?,
            Some(raw) => match raw_string(raw) {
                Some(s) => EventName::new(&s)?,
                None => return Err(InvalidInput::new("event", "must be a string")),
            },
        };
        let payload = match (self.data, self.text) {
            (Some(data), None) => Payload::json_text(compact_json(data.get())?),
            (None, Some(text)) => match raw_string(text) {
                Some(text) => Payload::text(text),
                None => {
                    return Err(InvalidInput::new(
                        "text",
                        "must be a string (the raw text to send; use data for JSON)",
                    ))
                }
            },
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
        let idempotency = match self.idempotency_key {
            None => None,
            Some(raw) if is_null(raw) => None,
            Some(raw) => match raw_string(raw) {
                Some(key) => Some(IdempotencyKey::from_publisher(&key)?),
                None => return Err(InvalidInput::new("idempotencyKey", "must be a string")),
            },
        };

        // The targets' fields are read one by one (and user ids may be numbers), so that an
        // error names its field; then checked as every JSON form of targets is (`TargetFields`).
        let users = strings(self.users, "users", true)?;
        let connections = strings(self.connections, "connections", false)?;
        let channels = strings(self.channels, "channels", false)?;
        let broadcast = match self.broadcast.map(RawValue::get) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(InvalidInput::new("broadcast", "must be true or false")),
        };
        let fallback = match self.fallback.map(raw_string) {
            None => Fallback::None,
            Some(Some(s)) if s == "none" => Fallback::None,
            Some(Some(s)) if s == "broadcast" => Fallback::Broadcast,
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
}

fn rename(mut e: InvalidInput, field: &'static str) -> InvalidInput {
    e.field = field.into();
    e
}

/// Takes an optional array of strings (numbers too when `numbers` is set, as user ids often are).
fn strings(
    raw: Option<&RawValue>,
    field: &'static str,
    numbers: bool,
) -> Result<Vec<String>, InvalidInput> {
    let not_strings = || InvalidInput::new(field, "must be an array of strings");
    let raw = match raw {
        None => return Ok(Vec::new()),
        Some(raw) if is_null(raw) => return Ok(Vec::new()),
        Some(raw) if raw.get().starts_with('[') => raw,
        Some(_) => return Err(not_strings()),
    };
    let items: Vec<Value> = serde_json::from_str(raw.get()).map_err(|_| not_strings())?;
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            // Integer ids (as many databases hand them out) become their decimal text.
            Value::Number(n) if numbers && (n.is_i64() || n.is_u64()) => Ok(n.to_string()),
            _ => Err(not_strings()),
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
    let mut publication = parse_body(&body)?;
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
) -> Result<Json<BatchResponse>, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.config.max_batch_body_size))?;
    let items: Vec<&RawValue> = if first_byte(&body) == Some(b'[') {
        serde_json::from_slice(&body).map_err(|e| json_error(&e))?
    } else {
        // Not an array (or not JSON): say which.
        serde_json::from_slice::<Value>(&body).map_err(|e| json_error(&e))?;
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
            let p = parse_item(item)?;
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
    let results: Vec<BatchResult> = outcomes
        .into_iter()
        .map(|outcome| {
            let outcome = outcome.unwrap_or_else(|| match published.next() {
                Some(result) => result.map_err(ApiError::from),
                None => Err(ApiError::from(crate::Error::ShuttingDown)),
            });
            match outcome {
                Ok(published) => BatchResult::Published(PublishResponse::from(published)),
                Err(e) => BatchResult::Failed(e.body()),
            }
        })
        .collect();
    Ok(Json(BatchResponse { results }))
}

/// The answer to a batch: one result per item, in order.
#[derive(Debug, Serialize)]
pub struct BatchResponse {
    results: Vec<BatchResult>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum BatchResult {
    Published(PublishResponse),
    /// `{"error": {"code", "message"}}`.
    Failed(Value),
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
    fn a_body_is_read_once_and_data_kept_as_sent_but_on_one_line() {
        let body = br#"  {"ev\u0065nt": "a:b", "data": {"s": "two  words \" {x} ",
            "n": [1.50, 12345678901234567890123, -0, 1e2],
            "t": "tab\there"}, "users": [7, "x"], "channels": null, "event": "last:wins"} "#;
        let p = parse_body(body).unwrap();
        assert_eq!(p.name.as_str(), "last:wins");
        assert_eq!(
            p.payload.as_str(),
            r#"{"s":"two  words \" {x} ","n":[1.50,12345678901234567890123,-0,1e2],"t":"tab\there"}"#
        );
        assert_eq!(p.targets.list().len(), 2);
        // Already compact: the text itself, not a copy.
        assert!(matches!(
            compact_json(r#"{"a":"b c"}"#),
            Ok(Cow::Borrowed(_))
        ));
        // An escaped backslash ends before the quote that ends the string.
        assert_eq!(
            compact_json("[ 1 ,\n\t\"\\\\\" , \" ]\" ]").unwrap(),
            r#"[1,"\\"," ]"]"#
        );
    }

    #[test]
    fn a_body_gets_the_errors_a_decoded_one_got() {
        for (body, code, needle) in [
            (&b"[1]"[..], "invalid_json", "must be a JSON object"),
            (b"{\"data\": 1", "invalid_json", "EOF while parsing"),
            (b"{\"data\": 1} x", "invalid_json", "trailing characters"),
            (
                b"{\"data\": 1, \"nope\": 2, \"zap\": 3}",
                "invalid_field",
                "nope",
            ),
            (
                b"{\"data\": 1, \"users\": [\"a\"], \"event\": null}",
                "invalid_field",
                "event",
            ),
            (
                b"{\"text\": 5, \"users\": [\"a\"]}",
                "invalid_field",
                "text",
            ),
            (b"{\"data\": 1, \"users\": \"a\"}", "invalid_field", "users"),
            (
                b"{\"data\": 1, \"users\": [true]}",
                "invalid_field",
                "users",
            ),
            (
                b"{\"data\": 1, \"broadcast\": null}",
                "invalid_field",
                "broadcast",
            ),
            (
                b"{\"data\": 1, \"broadcast\": true, \"fallback\": 1}",
                "invalid_field",
                "fallback",
            ),
        ] {
            let e = parse_body(body).unwrap_err();
            let text = format!("{e:?}");
            assert!(
                text.contains(needle),
                "{}: {text}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
        }
        // Nesting: as deep as a decoder of the whole body took, no deeper (brackets inside
        // strings do not count).
        let nested = |depth: usize| {
            let open = "[".repeat(depth - 1);
            let close = "]".repeat(depth - 1);
            format!(r#"{{"broadcast": true, "data": {open}{{"s": "[[{{"}}{close}}}"#)
        };
        assert!(parse_body(nested(MAX_DATA_DEPTH).as_bytes()).is_ok());
        let e = parse_body(nested(MAX_DATA_DEPTH + 1).as_bytes()).unwrap_err();
        assert!(e.message.contains("nested more than 128"), "{}", e.message);
        let ok =
            parse_body(b"{\"data\": null, \"broadcast\": true, \"idempotencyKey\": null}").unwrap();
        assert_eq!(ok.payload.as_str(), "null");
        assert!(ok.idempotency.is_none());
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
