//! The one place where errors become HTTP responses: `{"error": {"code", "message"}}` with the
//! right status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::EngineError;
use crate::error::{Error, InvalidInput};

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds for a `Retry-After` header, if any.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A `400` with this code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::bad_request(e.code, e.to_string())
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(e) => e.into(),
            Error::TooManyConnections { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                e.to_string(),
            )
            .with_retry_after(5),
            Error::UserConnectionLimit { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "user_connection_limit",
                e.to_string(),
            )
            .with_retry_after(5),
            Error::IpConnectionLimit { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ip_connection_limit",
                e.to_string(),
            )
            .with_retry_after(5),
            Error::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            )
            .with_retry_after(5),
            Error::Engine(EngineError::Unavailable(detail)) => {
                // The engine logs an outage once; one line per refused publish would flood.
                tracing::debug!(%detail, "publish refused: engine unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "engine_unavailable",
                    "the hub's engine (Redis) is unavailable: nothing was sent or changed; retry \
                     shortly",
                )
                .with_retry_after(1)
            }
            Error::Engine(EngineError::OutcomeUnknown(detail)) => {
                tracing::warn!(%detail, "publish outcome unknown");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "outcome_unknown",
                    "the hub's engine did not confirm the publish: the event may or may not have \
                     been sent; retry with the same Idempotency-Key to publish it at most once",
                )
                .with_retry_after(1)
            }
            Error::Engine(EngineError::IdempotencyKeyReused) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this idempotency key was already used, within the idempotency window, for a \
                 different event; use a new key for a new event",
            ),
            Error::Engine(EngineError::Overloaded) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the hub is delivering a backlog of events; nothing was sent, retry shortly",
            )
            .with_retry_after(1),
            Error::Engine(EngineError::NotRunning) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                "the hub's engine is not running",
            ),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"herald\""),
            );
        }
        response
    }
}

/// Maps a rejected request body (too large, unreadable) to an API error.
pub(crate) fn body_rejection(
    rejection: axum::extract::rejection::BytesRejection,
    limit: usize,
) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            );
        }
        source = e.source();
    }
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    } else {
        ApiError::bad_request(
            "invalid_body",
            format!("could not read the request body: {rejection}"),
        )
    }
}

/// Maps a JSON parse failure to an API error.
pub(crate) fn json_error(e: &serde_json::Error) -> ApiError {
    let code = if e.is_data() {
        "invalid_field"
    } else {
        "invalid_json"
    };
    ApiError::bad_request(code, format!("invalid JSON body: {e}"))
}
