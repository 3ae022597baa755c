//! The HTTP API: a thin layer that parses requests into the hub's types, calls the [`Hub`], and
//! turns results and errors into responses.
//!
//! | Route | Handler |
//! |---|---|
//! | `GET /api/sse` | [`subscribe`] |
//! | `POST /api/sse/message` (and `/api/sse/send`, `/api/sse`) | [`publish`] |
//! | `POST /api/sse/messages` | [`publish`] (batch) |
//! | `GET /api/sse/stats`, `GET /api/sse/stats/stream`, `POST /api/sse/disconnect`, `POST /api/sse/disconnect-all` | [`admin`] |
//! | `GET /api/sse/presence?channel=`, `GET /api/sse/presence/users/{id}` | [`admin`] |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | [`admin`] |
//! | `GET /sse-test`, `GET /admin`, `GET /api/openapi.json` | [`console`]: the browser test console, the admin dashboard, the OpenAPI description |
//!
//! Browser pages: every publish and admin route sits behind `auth::require_publisher` or
//! `auth::require_admin`, which first apply the Origin rule (`origin::check_origin`: `403
//! origin_not_allowed`); a new publish endpoint gets the rule by using one of them. The whole
//! router, the stream included, applies the Host rule of an open hub
//! (`origin::HostRuleLayer`: `403 host_not_allowed`).

pub mod admin;
mod auth;
pub mod console;
pub mod error;
pub(crate) mod origin;
pub mod publish;
pub mod subscribe;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::config::HttpConfig;
use crate::hub::Hub;

pub use error::ApiError;
pub use origin::TlsConnection;

/// What every handler gets: the hub and the HTTP settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The hub.
    pub hub: Hub,
    /// HTTP settings.
    pub config: Arc<HttpConfig>,
    pub(crate) limits: Arc<auth::RateLimits>,
}

impl AppState {
    /// State for `hub` with these settings.
    pub fn new(hub: Hub, config: HttpConfig) -> Self {
        AppState {
            hub,
            limits: Arc::new(auth::RateLimits::new(&config)),
            config: Arc::new(config),
        }
    }
}

/// The whole HTTP API as an axum [`Router`], ready to serve or to merge into an application's
/// own router.
pub fn router(state: AppState) -> Router {
    let single_limit = state.config.max_body_size;
    let batch_limit = state.config.max_batch_body_size;
    let publish = Router::new()
        .route(
            "/api/sse/message",
            post(publish::publish).layer(DefaultBodyLimit::max(single_limit)),
        )
        .route(
            "/api/sse/send",
            post(publish::publish).layer(DefaultBodyLimit::max(single_limit)),
        )
        .route(
            "/api/sse/messages",
            post(publish::publish_batch).layer(DefaultBodyLimit::max(batch_limit)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_publisher,
        ));
    let admin = Router::new()
        .route("/api/sse/stats", get(admin::stats))
        .route("/api/sse/stats/stream", get(admin::stats_stream))
        .route("/api/sse/presence", get(admin::channel_presence))
        .route("/api/sse/presence/users/{id}", get(admin::user_presence))
        .route(
            "/api/sse/disconnect",
            post(admin::disconnect).layer(DefaultBodyLimit::max(single_limit)),
        )
        .route("/api/sse/disconnect-all", post(admin::disconnect_all))
        .route("/metrics", get(admin::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    // A client that trickles its body in cannot hold a request open for long. (The SSE stream is
    // a response body, which this does not limit.)
    let body_timeout = RequestBodyTimeoutLayer::new(state.config.body_read_timeout);
    // `/api/sse` is both the subscribe endpoint (GET, open) and a publish alias (POST, keyed).
    let sse_root = Router::new().route(
        "/api/sse",
        get(subscribe::subscribe).merge(
            post(publish::publish)
                .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(single_limit))
                .layer::<_, std::convert::Infallible>(body_timeout.clone())
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    auth::require_publisher,
                )),
        ),
    );
    let cors = cors_layer(&state.config);
    let publish = publish.layer(body_timeout.clone());
    let admin = admin.layer(body_timeout);
    // An open hub answers loopback names only (DNS rebinding): every endpoint, streams included.
    let host_rule = origin::HostRuleLayer {
        config: state.config.clone(),
    };
    let router = Router::new()
        .merge(publish)
        .merge(admin)
        .merge(sse_root)
        .route("/sse-test", get(console::page))
        .route("/admin", get(console::admin_page))
        .route("/api/openapi.json", get(console::openapi))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(host_rule);
    // CORS inside the security headers, so that preflight answers carry them too.
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}

/// CORS for the configured origins: simple GET/POST with the headers Herald reads
/// (`Authorization`, `Content-Type`, `Last-Event-ID`), preflights cached for an hour.
fn cors_layer(config: &HttpConfig) -> Option<CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins = if config.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                header::CACHE_CONTROL,
                HeaderName::from_static(publish::IDEMPOTENCY_KEY),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                HeaderName::from_static(publish::IDEMPOTENT_REPLAYED),
            ])
            .allow_credentials(config.cors_credentials)
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", method, uri.path()),
    )
}
