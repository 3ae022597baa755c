//! The HTTP API: a thin layer that parses requests into the hub's types, calls the [`Hub`], and
//! turns results and errors into responses.
//!
//! | Route | Handler |
//! |---|---|
//! | `GET /api/sse` | [`subscribe`] |
//! | `GET /api/ws` | [`crate::ws::subscribe`]: the WebSocket transport |
//! | `POST /api/sse/message` (and `/api/sse/send`, `/api/sse`) | [`publish`] |
//! | `POST /api/sse/messages` | [`publish`] (batch) |
//! | `GET /api/sse/stats`, `GET /api/sse/stats/stream`, `POST /api/sse/disconnect`, `POST /api/sse/disconnect-all` | [`admin`] |
//! | `GET /api/sse/presence?channel=`, `GET /api/sse/presence/users/{id}` | [`admin`] |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | [`admin`] |
//! | `GET /sse-test` (alias `GET /sse-client`), `GET /admin`, `GET /api/openapi.json` | [`console`]: the browser test console, the admin dashboard, the OpenAPI description |
//! | `POST /api/webhooks/{name}` | [`webhooks`]: signed deliveries of the configured webhook sources (authenticated by their signatures, not by publisher keys) |
//!
//! Browser pages: every publish and admin route sits behind `auth::require_publisher` or
//! `auth::require_admin`, which first apply the Origin rule (`origin::check_origin`: `403
//! origin_not_allowed`); a new publish endpoint gets the rule by using one of them. The whole
//! router, the stream included, applies the Host rule of an open hub
//! (`origin::HostRuleLayer`: `403 host_not_allowed`).

pub mod admin;
pub(crate) mod auth;
pub(crate) mod auth_hook;
pub mod console;
pub mod error;
pub(crate) mod origin;
pub mod publish;
pub mod subscribe;
pub mod webhooks;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::config::HttpConfig;
use crate::hub::Hub;

pub use error::ApiError;
pub use origin::TlsConnection;

/// What every handler gets: the hub and the HTTP settings ([`AppParts`], through `Deref`).
/// One shared allocation: axum clones the state for every request, so a clone is one atomic
/// increment.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppParts>);

/// The parts of an [`AppState`].
#[derive(Debug)]
pub struct AppParts {
    /// The hub.
    pub hub: Hub,
    /// HTTP settings.
    pub config: Arc<HttpConfig>,
    pub(crate) limits: Arc<auth::RateLimits>,
    /// The configured webhook sources ([`HttpConfig::webhooks`]).
    pub(crate) webhooks: Arc<crate::webhooks::Webhooks>,
    /// The auth hook, when `auth_hook.url` is set.
    pub(crate) auth_hook: Option<Arc<auth_hook::AuthHook>>,
    /// The Mercure hub's state, when `config.mercure` turns it on.
    pub(crate) mercure: Option<Arc<crate::mercure::MercureState>>,
}

impl AppState {
    /// State for `hub` with these settings.
    pub fn new(hub: Hub, config: HttpConfig) -> Self {
        let webhooks = crate::webhooks::Webhooks::new(
            &config.webhooks,
            config.publish_rate_per_key,
            config.max_body_size,
        );
        for name in webhooks.names() {
            hub.metrics().webhooks().declare(name);
        }
        AppState(Arc::new(AppParts {
            hub,
            webhooks: Arc::new(webhooks),
            limits: Arc::new(auth::RateLimits::new(&config)),
            auth_hook: auth_hook::AuthHook::new(&config.auth_hook, config.token_expiry)
                .map(Arc::new),
            mercure: config
                .mercure
                .clone()
                .map(|m| Arc::new(crate::mercure::MercureState::new(m))),
            config: Arc::new(config),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The path of the event stream (`GET`; `POST` there is a publish alias). The lean HTTP/1.1
/// reader in [`crate::server`] picks out bodiless `GET`s of this path (it still runs them
/// through [`router`], then writes the stream itself) and leaves every other request to hyper,
/// so both read the path from here.
pub const STREAM_PATH: &str = "/api/sse";

/// Every route of the API, in one table: a path and what answers there (methods, handlers and
/// their layers). [`router`] is built from this table and from nothing else, so [`paths`] is the
/// list of what it serves (`tests/openapi.rs` compares it, and the methods the router answers at
/// each path, with the OpenAPI description). An endpoint, or a transport, defined in a module
/// of its own joins the API as one entry here.
fn routes(state: &AppState) -> Vec<(&'static str, MethodRouter<AppState>)> {
    let single_limit = DefaultBodyLimit::max(state.config.max_body_size);
    let batch_limit = DefaultBodyLimit::max(state.config.max_batch_body_size);
    // A client that trickles its body in cannot hold a request open for long. (The SSE stream is
    // a response body, which this does not limit.)
    let body_timeout = RequestBodyTimeoutLayer::new(state.config.body_read_timeout);
    let publisher = axum::middleware::from_fn_with_state(state.clone(), auth::require_publisher);
    let admin = axum::middleware::from_fn_with_state(state.clone(), auth::require_admin);
    // Publish and admin endpoints: the key check (and the Origin rule), then the body timeout
    // around it.
    let publishing = |endpoint: MethodRouter<AppState>| {
        endpoint
            .layer::<_, Infallible>(publisher.clone())
            .layer::<_, Infallible>(body_timeout.clone())
    };
    let administering = |endpoint: MethodRouter<AppState>| {
        endpoint
            .layer::<_, Infallible>(admin.clone())
            .layer::<_, Infallible>(body_timeout.clone())
    };
    let mut routes = vec![
        // The subscribe endpoint (GET, open) and a publish alias (POST, keyed).
        (
            STREAM_PATH,
            get(subscribe::subscribe).merge(
                post(publish::publish)
                    .layer::<_, Infallible>(single_limit)
                    .layer::<_, Infallible>(body_timeout.clone())
                    .route_layer(publisher.clone()),
            ),
        ),
        // The WebSocket transport (GET, open; checks its own Origin rule before the upgrade).
        (crate::ws::WS_PATH, get(crate::ws::subscribe)),
        // The Socket.IO transport (every method: Engine.IO polls with GET and POST; checks the
        // Origin rule and the subscribe rules at its namespace handshake).
        (
            crate::socketio::SOCKETIO_PATH,
            crate::socketio::endpoint(state),
        ),
        (
            "/api/sse/message",
            publishing(post(publish::publish).layer(single_limit)),
        ),
        (
            "/api/sse/send",
            publishing(post(publish::publish).layer(single_limit)),
        ),
        (
            "/api/sse/messages",
            publishing(post(publish::publish_batch).layer(batch_limit)),
        ),
        ("/api/sse/stats", administering(get(admin::stats))),
        (
            "/api/sse/stats/stream",
            administering(get(admin::stats_stream)),
        ),
        (
            "/api/sse/presence",
            administering(get(admin::channel_presence)),
        ),
        (
            "/api/sse/presence/users/{id}",
            administering(get(admin::user_presence)),
        ),
        (
            "/api/sse/disconnect",
            administering(post(admin::disconnect).layer(single_limit)),
        ),
        (
            "/api/sse/disconnect-all",
            administering(post(admin::disconnect_all)),
        ),
        ("/metrics", administering(get(admin::metrics))),
        ("/sse-test", get(console::page)),
        // Seed 003's name of the same console.
        ("/sse-client", get(console::page)),
        ("/admin", get(console::admin_page)),
        ("/api/openapi.json", get(console::openapi)),
        // Inbound webhooks (POST, authenticated by each source's signatures rather than by
        // publisher keys; each source bounds its own body size and rate).
        (
            crate::webhooks::WEBHOOK_PATH,
            post(webhooks::receive).layer::<_, Infallible>(body_timeout.clone()),
        ),
        ("/healthz", get(admin::healthz)),
        ("/readyz", get(admin::readyz)),
    ];
    // The Mercure hub (GET subscribes, POST publishes; its own tokens and refusals), when on.
    if let Some(mercure) = &state.mercure {
        routes.push((crate::mercure::HUB_PATH, crate::mercure::endpoint(state)));
        if mercure.config.subscriptions {
            for path in crate::mercure::SUBSCRIPTIONS_PATHS {
                routes.push((path, crate::mercure::subscriptions_endpoint()));
            }
        }
    }
    routes
}

/// The paths [`router`] serves (path parameters written `{name}`), in the order of its route
/// table. Which methods each answers is what the router does; `tests/openapi.rs` asks it.
pub fn paths(state: &AppState) -> Vec<&'static str> {
    routes(state).into_iter().map(|(path, _)| path).collect()
}

/// The whole HTTP API as an axum [`Router`], ready to serve or to merge into an application's
/// own router.
pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.config);
    // An open hub answers loopback names only (DNS rebinding): every endpoint, streams included.
    let host_rule = origin::HostRuleLayer {
        config: state.config.clone(),
    };
    // Routes come from the table only (see `routes`): add none here.
    let router = routes(&state)
        .into_iter()
        .fold(Router::new(), |router, (path, endpoint)| {
            router.route(path, endpoint)
        })
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
                // Mercure's answer to a reconnection (0.x, and 1.0's name).
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("mercure-last-event-id"),
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
