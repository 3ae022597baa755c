//! Admin and operations endpoints: stats (and their stream), disconnects, health, readiness,
//! metrics.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{body_rejection, json_error};
use super::{ApiError, AppState};
use crate::engine::EngineHealth;
use crate::hub::Stats;
use crate::target::{ChannelName, ConnectionId, UserId};

/// `GET /api/sse/stats`: the hub's figures, with every node's on a cluster ([`Stats::cluster`]).
pub async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(state.hub.stats().await)
}

/// How often the stats stream sends the figures.
pub const STATS_STREAM_INTERVAL: Duration = Duration::from_secs(1);

/// `GET /api/sse/stats/stream`: the figures of `GET /api/sse/stats` as an SSE event `stats`
/// now and then every [`STATS_STREAM_INTERVAL`], for the admin dashboard.
///
/// It is not a subscriber connection: the registry does not know it, so it counts in no figure
/// and gets no events. It ends when the hub shuts down (and when the client goes away).
pub async fn stats_stream(State(state): State<AppState>) -> Response {
    let hub = state.hub.clone();
    let mut ticks = tokio::time::interval(STATS_STREAM_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shut_down = Box::pin(hub.shut_down());
    let stream = futures_util::stream::unfold(
        (hub, ticks, shut_down),
        |(hub, mut ticks, mut shut_down)| async move {
            tokio::select! {
                _ = &mut shut_down => return None,
                _ = ticks.tick() => {}
            }
            if hub.is_shutting_down() {
                return None;
            }
            let stats = tokio::select! {
                _ = &mut shut_down => return None,
                stats = hub.stats() => stats,
            };
            // JSON has no raw line breaks: one `data:` line.
            let json = serde_json::to_string(&stats).unwrap_or_else(|_| "{}".to_owned());
            let frame = Bytes::from(format!("event: stats\ndata: {json}\n\n"));
            Some((
                Ok::<_, std::convert::Infallible>(frame),
                (hub, ticks, shut_down),
            ))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    connections: Vec<String>,
}

/// `POST /api/sse/disconnect` with `{"users": [...]}` and/or `{"connections": [...]}`: those
/// connections get a `disconnected` event and their streams end. Answers `{"disconnected": n}`.
pub async fn disconnect(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.config.max_body_size))?;
    let body: DisconnectBody = serde_json::from_slice(&body).map_err(|e| json_error(&e))?;
    if body.users.is_empty() && body.connections.is_empty() {
        return Err(ApiError::bad_request(
            "missing_target",
            "name the users and/or connections to disconnect",
        ));
    }
    let users = body
        .users
        .iter()
        .map(|u| UserId::new(u))
        .collect::<Result<Vec<_>, _>>()?;
    let connections = body
        .connections
        .iter()
        .map(|c| c.parse::<ConnectionId>())
        .collect::<Result<Vec<_>, _>>()?;
    let n = state.hub.disconnect(users, connections).await?;
    Ok(Json(json!({ "disconnected": n })))
}

/// `POST /api/sse/disconnect-all`: every client gets a `disconnected` event (reason
/// `server_disconnect`) and its stream ends. Answers `{"disconnected": n}`.
pub async fn disconnect_all(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let n = state.hub.disconnect_all().await?;
    Ok(Json(json!({ "disconnected": n })))
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: `200` when the hub can serve, `503` with the reason when its engine is degraded
/// or it is shutting down.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.hub.health() {
        EngineHealth::Ok => Json(json!({ "status": "ready" })).into_response(),
        EngineHealth::Degraded(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "degraded", "reason": reason })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.hub.metrics().encode(),
    )
        .into_response()
}

/// `GET /api/sse/presence?channel=NAME`: the users connected to a channel.
///
/// Answers `{"channel", "users": [{"userId", "username", "connections", "firstConnectedAt"}],
/// "anonymousConnections"}`, users ordered by when they first connected.
pub async fn channel_presence(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let channel = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "channel")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::bad_request("invalid_field", "channel: give ?channel=NAME"))?;
    let channel = ChannelName::new(&channel)?;
    let presence = state.hub.channel_presence(&channel).await?;
    let users: Vec<Value> = presence
        .users
        .iter()
        .map(|u| {
            json!({
                "userId": u.user,
                "username": u.username.as_deref(),
                "connections": u.connections,
                "firstConnectedAt":
                    humantime::format_rfc3339_millis(u.first_connected_at).to_string(),
            })
        })
        .collect();
    let anonymous = presence.anonymous_connections;
    Ok(Json(json!({
        "channel": channel,
        "users": users,
        "anonymousConnections": anonymous,
    })))
}

/// `GET /api/sse/presence/users/{id}`: whether a user is online, their connections (each with
/// its `sessionId` and `metadata`, `null` when none) and the union of their channels.
pub async fn user_presence(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = UserId::new(&user)?;
    let connections = state.hub.user_connections(&user).await?;
    let mut channels: Vec<&ChannelName> = connections
        .iter()
        .flat_map(|n| n.connection.channels.iter())
        .collect();
    channels.sort();
    channels.dedup();
    let list: Vec<Value> = connections
        .iter()
        .map(|n| {
            let c = &n.connection;
            let mut entry = json!({
                "connectionId": c.id,
                "username": c.username.as_deref(),
                "channels": &*c.channels,
                "connectedAt": humantime::format_rfc3339_millis(c.connected_at).to_string(),
                "transport": c.transport,
                "sessionId": c.session_id.as_deref(),
                "metadata": c.metadata.as_deref(),
            });
            // The node that holds it, when the hub has several.
            if let Some(node) = &n.node_id {
                entry["nodeId"] = json!(node);
            }
            entry
        })
        .collect();
    Ok(Json(json!({
        "userId": user,
        "online": !connections.is_empty(),
        "connections": list,
        "channels": channels,
    })))
}
