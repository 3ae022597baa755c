//! Admin and operations endpoints: stats, disconnects, health, readiness, metrics.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{body_rejection, json_error};
use super::{ApiError, AppState};
use crate::engine::{ConnectionSnapshot, EngineHealth};
use crate::hub::Stats;
use crate::target::{ChannelName, ConnectionId, UserId};

/// `GET /api/sse/stats`.
pub async fn stats(State(state): State<AppState>) -> Json<Stats> {
    let mut stats = state.hub.stats();
    // On a cluster: every node's figures too (left out, not an error, while Redis is down).
    stats.cluster = state.hub.cluster_stats().await.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "cluster stats unavailable");
        None
    });
    Json(stats)
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
    let user_json = |user: &UserId, username: Option<&str>, connections: usize, first| {
        json!({
            "userId": user,
            "username": username,
            "connections": connections,
            "firstConnectedAt": humantime::format_rfc3339_millis(first).to_string(),
        })
    };
    let (users, anonymous): (Vec<Value>, usize) =
        match state.hub.cluster_channel_presence(&channel).await? {
            Some(p) => (
                p.users
                    .iter()
                    .map(|u| {
                        user_json(
                            &u.user,
                            u.username.as_deref(),
                            u.connections,
                            u.first_connected_at,
                        )
                    })
                    .collect(),
                p.anonymous_connections,
            ),
            None => {
                let (users, anonymous) = state.hub.channel_presence(&channel);
                (
                    users
                        .iter()
                        .map(|u| {
                            user_json(
                                &u.user,
                                u.username.as_deref(),
                                u.connections,
                                u.first_connected_at,
                            )
                        })
                        .collect(),
                    anonymous,
                )
            }
        };
    Ok(Json(json!({
        "channel": channel,
        "users": users,
        "anonymousConnections": anonymous,
    })))
}

/// `GET /api/sse/presence/users/{id}`: whether a user is online, their connections and the
/// union of their channels.
pub async fn user_presence(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = UserId::new(&user)?;
    // On a cluster, every node's connections (with the node's id); on one node, the registry's.
    let connections: Vec<(Option<String>, ConnectionSnapshot)> =
        match state.hub.cluster_user_connections(&user).await? {
            Some(list) => list
                .into_iter()
                .map(|n| (Some(n.node_id), n.connection))
                .collect(),
            None => state
                .hub
                .user_connections(&user)
                .into_iter()
                .map(|c| {
                    let snapshot = ConnectionSnapshot {
                        id: c.id,
                        user: Some(user.clone()),
                        username: c.username,
                        channels: c.channels,
                        connected_at: c.connected_at,
                    };
                    (None, snapshot)
                })
                .collect(),
        };
    let mut channels: Vec<&ChannelName> = connections
        .iter()
        .flat_map(|(_, c)| c.channels.iter())
        .collect();
    channels.sort();
    channels.dedup();
    let list: Vec<Value> = connections
        .iter()
        .map(|(node, c)| {
            let mut entry = json!({
                "connectionId": c.id,
                "username": c.username.as_deref(),
                "channels": &*c.channels,
                "connectedAt": humantime::format_rfc3339_millis(c.connected_at).to_string(),
            });
            if let Some(node) = node {
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
