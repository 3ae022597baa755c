//! Herald inside your own Rust web app: build a `Hub`, mount Herald's HTTP API next to your own
//! routes, and notify users straight from your handlers.
//!
//! ```sh
//! cargo run -p herald --example embed
//! curl -N 'http://127.0.0.1:3000/api/sse?userId=alice'       # terminal 1: alice listens
//! curl -X POST http://127.0.0.1:3000/orders/42/ship?user=alice   # terminal 2: your app acts
//! ```

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::post;
use axum::{Json, Router};
use herald::config::{HttpConfig, HubConfig};
use herald::http::{self, AppState};
use herald::server::ServerOptions;
use herald::{Hub, Lifecycle, Severity, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct ShipQuery {
    user: String,
}

/// Your application's own endpoint: it ships an order and tells the customer at once.
async fn ship_order(
    State(hub): State<Hub>,
    Path(order): Path<u64>,
    Query(q): Query<ShipQuery>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let bad = |e: herald::Error| (axum::http::StatusCode::BAD_REQUEST, e.to_string());
    let user = UserId::new(&q.user).map_err(|e| bad(e.into()))?;
    let sent = hub
        .send_update(&user, "order_shipped", &json!({ "orderId": order }))
        .await
        .map_err(bad)?;
    hub.send_alert(&user, "Your order is on its way", Some(Severity::Success))
        .await
        .map_err(bad)?;
    Ok(Json(
        json!({ "order": order, "notifiedConnections": sent.delivered }),
    ))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // One root for every task: the hub's loops run on a child of it, the connections on it.
    let lifecycle = Lifecycle::new();
    let hub = Hub::start_in_memory(
        HubConfig {
            heartbeat_interval: Duration::from_secs(20),
            ..HubConfig::default()
        },
        &lifecycle,
    );
    let app = Router::new()
        .route("/orders/{id}/ship", post(ship_order))
        .with_state(hub.clone())
        .merge(http::router(AppState::new(
            hub.clone(),
            HttpConfig::default(),
        )));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let on_ctrl_c = lifecycle.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_ctrl_c.cancel();
    });
    // Until Ctrl-C; then stops accepting, ends the streams, stops the hub, waits for the rest.
    herald::server::serve_router(listener, app, hub, lifecycle, ServerOptions::default()).await
}
