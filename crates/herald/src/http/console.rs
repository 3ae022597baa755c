//! Static documents: `GET /sse-test` (also `GET /sse-client`, seed 003's name), a test console
//! for trying Herald in a browser, and `GET /admin`,
//! the admin dashboard, both embedded in the binary (plain
//! HTML and JavaScript, no build step). It connects, shows the live event log, publishes, and
//! watches stats, all through the public API.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page, compiled into the binary.
const PAGE: &str = include_str!("../../assets/sse-test.html");

/// Serves the console page.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// The admin dashboard, compiled into the binary.
const ADMIN_PAGE: &str = include_str!("../../assets/admin.html");

/// `GET /admin`: the admin dashboard. The page itself is public (it holds no data); everything it
/// shows comes from the admin endpoints, with the key the operator signs in with.
pub async fn admin_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
        ],
        ADMIN_PAGE,
    )
        .into_response()
}

/// The OpenAPI description of the HTTP API, compiled into the binary.
const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// `GET /api/openapi.json`: the OpenAPI 3.1 description of this API (kept true by a test).
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
