//! The publisher key check of publish and admin endpoints.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Lets the request through when no key is configured, or when it carries
/// `Authorization: Bearer <key>`. The comparison takes the same time wherever the first wrong
/// byte is, and the key never reaches a log.
pub(crate) async fn require_publisher_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(key) = &state.config.publisher_key else {
        return Ok(next.run(request).await);
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs a publisher key: send Authorization: Bearer <key>",
        )),
        Some(given) if bool::from(given.trim().as_bytes().ct_eq(key.expose().as_bytes())) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the publisher key is not valid",
        )),
    }
}
