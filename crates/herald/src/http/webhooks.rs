//! `POST /api/webhooks/{name}`: a signed delivery from a configured source becomes events (see
//! [`crate::webhooks`] for the steps, the schemes and the rules).
//!
//! Answers: `200 {"published": [{"id", "delivered"}…]}` (a repeated delivery id: the first
//! answer again, with `Idempotent-Replayed: true`, and nothing published); `200 {"published":
//! [], "ignored": "<why>"}` when no rule maps the payload; `401` (`missing_signature`,
//! `invalid_signature`, `stale_timestamp`); `404 unknown_webhook`; `409 webhook_id_reused`
//! (the same delivery id with other content); `413 payload_too_large`; `429 rate_limited`;
//! `503` when the engine cannot publish (with `Retry-After`; the provider retries later).
//!
//! The endpoint is authenticated by the signatures, not by publisher keys: it sits outside the
//! publisher middleware, and has its own rate limit per source.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::json_error;
use super::publish::IDEMPOTENT_REPLAYED;
use super::{ApiError, AppState};
use crate::engine::{EngineError, EngineHealth};
use crate::error::Error;

/// Receives one webhook delivery.
pub async fn receive(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let metrics = state.hub.metrics().webhooks();
    let source = name
        .ok()
        .and_then(|Path(name)| state.webhooks.get(&name))
        .ok_or_else(|| {
            metrics.unknown();
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_webhook",
                "no webhook of this name is configured (see [[webhooks]] in the configuration \
                 file)",
            )
        })?;
    let name = source.config().name.as_str();
    let refuse = |reason: &str, e: ApiError| {
        metrics.refused(name, reason);
        tracing::debug!(webhook = name, reason, "webhook refused");
        e
    };
    let (parts, body) = request.into_parts();
    let limit = source.config().max_body_size;
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| read_error(&e, limit))
        .map_err(|e| {
            let reason = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "invalid_body"
            };
            refuse(reason, e)
        })?;
    let verified = source
        .verify(&parts.headers, &body, SystemTime::now())
        .map_err(|e| {
            refuse(
                e.code(),
                ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
            )
        })?;
    source.check_rate().map_err(|wait| {
        refuse(
            "rate_limited",
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many deliveries from this webhook source; slow down",
            )
            .with_retry_after(wait.as_secs().max(1)),
        )
    })?;
    let payload: Value =
        serde_json::from_slice(&body).map_err(|e| refuse("invalid_json", json_error(&e)))?;
    let delivery_id = source.delivery_id(&verified, &payload);
    let publications = match source.publications(delivery_id.as_deref(), &payload, &parts.headers) {
        Ok(p) => p,
        Err(ignored) => {
            metrics.ignored(name);
            tracing::info!(webhook = name, delivery = ?delivery_id, why = %ignored.0, "webhook ignored");
            return Ok(Json(json!({"published": [], "ignored": ignored.0})).into_response());
        }
    };
    // Before the first event: a delivery the engine cannot take publishes nothing.
    if let EngineHealth::Degraded(_) = state.hub.health() {
        return Err(refuse(
            "engine_unavailable",
            Error::Engine(EngineError::Unavailable("degraded".into())).into(),
        ));
    }
    let total = publications.len();
    let mut published = Vec::with_capacity(total);
    for publication in publications {
        match state.hub.publish(publication).await {
            Ok(p) => published.push(p),
            Err(Error::Engine(EngineError::IdempotencyKeyReused)) => {
                return Err(refuse(
                    "id_reused",
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "webhook_id_reused",
                        "a delivery with this id but other content was already processed \
                         within the idempotency window; nothing was published",
                    ),
                ))
            }
            Err(e) => {
                let mut e = ApiError::from(e);
                if !published.is_empty() {
                    e.message = format!(
                        "{} of the {total} events of this delivery were published, then: {}; \
                         retry the same delivery (same id) to publish the rest, once",
                        published.len(),
                        e.message
                    );
                }
                return Err(refuse("engine_unavailable", e));
            }
        }
    }
    let replayed = published.iter().all(|p| p.replayed);
    if replayed {
        metrics.duplicate(name);
    } else {
        metrics.accepted(name, published.iter().filter(|p| !p.replayed).count());
    }
    let list: Vec<Value> = published
        .iter()
        .map(|p| json!({"id": p.id.to_string(), "delivered": p.delivered}))
        .collect();
    let mut response = Json(json!({ "published": list })).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A body that could not be read: too large, too slow, or broken.
fn read_error(e: &axum::Error, limit: usize) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the webhook body is larger than this webhook's limit of {limit} bytes"),
            );
        }
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            );
        }
        source = err.source();
    }
    ApiError::bad_request(
        "invalid_body",
        format!("could not read the request body: {e}"),
    )
}
