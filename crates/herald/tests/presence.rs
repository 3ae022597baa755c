//! Presence: who is connected to a channel, whether a user is online, and join/leave events
//! that follow users (not tabs) through connection churn.

mod support;

use herald::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{SseClient, TestServer};

async fn presence_server() -> TestServer {
    let mut c = Config::default();
    c.hub.presence_channels = vec!["room:*".parse().unwrap()];
    TestServer::with_config(c).await
}

/// Publishes a marker to `client` and returns every event before it (presence events included).
async fn events_before_marker(srv: &TestServer, client: &mut SseClient) -> Vec<(String, Value)> {
    srv.publish_ok(json!({"event": "marker", "data": 0, "connections": [client.connection_id]}))
        .await;
    let mut seen = Vec::new();
    loop {
        let e = client.next_event().await;
        if e.event == "marker" {
            return seen;
        }
        seen.push((e.event, serde_json::from_str(&e.data).unwrap()));
    }
}

#[tokio::test]
async fn join_and_leave_follow_the_first_and_last_tab() {
    let srv = presence_server().await;
    let mut watcher = srv.subscribe("userId=watcher&channels=room:1").await;
    let own = events_before_marker(&srv, &mut watcher).await;
    assert_eq!(own.len(), 1, "the watcher sees its own join: {own:?}");
    assert_eq!(own[0].0, "presence:join");

    let tab1 = srv
        .subscribe("userId=alice&username=Alice&channels=room:1")
        .await;
    let e = watcher.next_event().await;
    assert_eq!(e.event, "presence:join");
    let d: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(
        (
            d["channel"].as_str(),
            d["userId"].as_str(),
            d["username"].as_str()
        ),
        (Some("room:1"), Some("alice"), Some("Alice"))
    );

    // A second tab: no new join.
    let tab2 = srv.subscribe("userId=alice&channels=room:1").await;
    // Anonymous subscribers and channels without presence never cause presence events.
    let _anon = srv.subscribe("channels=room:1").await;
    let _elsewhere = srv.subscribe("userId=bob&channels=lobby").await;
    assert_eq!(events_before_marker(&srv, &mut watcher).await, vec![]);

    let (status, p) = srv.get_json("/api/sse/presence?channel=room:1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["channel"], "room:1");
    assert_eq!(p["anonymousConnections"], 1);
    let users = p["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["userId"], "watcher");
    assert_eq!(users[1]["userId"], "alice");
    assert_eq!(users[1]["username"], "Alice");
    assert_eq!(users[1]["connections"], 2);
    assert!(users[1]["firstConnectedAt"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    // Closing one tab: alice is still present.
    drop(tab1);
    srv.wait_for_stats("tab 1 to close", |s| s["channels"]["room:1"] == 3)
        .await;
    assert_eq!(events_before_marker(&srv, &mut watcher).await, vec![]);
    let (_, u) = srv.get_json("/api/sse/presence/users/alice").await;
    assert_eq!(u["online"], true);
    assert_eq!(u["connections"].as_array().unwrap().len(), 1);
    assert_eq!(
        u["connections"][0]["connectionId"],
        tab2.connection_id.as_str()
    );
    assert_eq!(u["channels"], json!(["room:1"]));

    // Closing the last tab: leave.
    drop(tab2);
    let e = watcher.next_event().await;
    assert_eq!(e.event, "presence:leave");
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap()["userId"],
        "alice"
    );
    let (_, u) = srv.get_json("/api/sse/presence/users/alice").await;
    assert_eq!(
        u,
        json!({"userId": "alice", "online": false, "connections": [], "channels": []})
    );
}

#[tokio::test]
async fn presence_survives_multi_tab_churn() {
    let srv = presence_server().await;
    let mut watcher = srv.subscribe("userId=watcher&channels=room:churn").await;
    watcher.next_event().await; // its own join
    let mut tabs: Vec<SseClient> = Vec::new();
    let mut opened = 0;
    // Open and close alice's tabs in a pattern that often drops to one tab but rarely to zero.
    for step in 0..60 {
        if tabs.is_empty() || step % 3 != 2 {
            tabs.push(srv.subscribe("userId=alice&channels=room:churn").await);
            opened += 1;
        } else {
            tabs.remove(0);
        }
        if step == 30 {
            tabs.clear();
        }
    }
    let open = tabs.len();
    srv.wait_for_stats("churn to settle", |s| {
        s["channels"]["room:churn"] == open as u64 + 1
    })
    .await;
    // Joins and leaves strictly alternate, starting with a join; the last says alice is here.
    let events = events_before_marker(&srv, &mut watcher).await;
    assert!(events.len() >= 3, "{events:?}");
    for (i, (name, data)) in events.iter().enumerate() {
        let expected = if i % 2 == 0 {
            "presence:join"
        } else {
            "presence:leave"
        };
        assert_eq!(name, expected, "event {i} of {events:?}");
        assert_eq!(data["userId"], "alice");
    }
    assert_eq!(events.last().unwrap().0, "presence:join");
    assert!(opened > 30);
    let (_, p) = srv.get_json("/api/sse/presence?channel=room:churn").await;
    let alice = p["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userId"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice["connections"], open);
    drop(tabs);
    let e = watcher.next_event().await;
    assert_eq!(e.event, "presence:leave");
}

#[tokio::test]
async fn presence_endpoints_validate_and_need_the_key() {
    let mut c = Config::default();
    c.http.publisher_keys = vec![support::full_key("presence-key-0123456789")];
    let srv = TestServer::with_config(c).await;
    let (status, body) = srv.get_json("/api/sse/presence").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_field");
    let (status, _) = srv.get_json("/api/sse/presence?channel=a%20b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = srv.get_json("/api/sse/presence?channel=empty").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["users"], json!([]));
    let r = srv
        .http
        .get(srv.url("/api/sse/presence?channel=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = srv
        .http
        .get(srv.url("/api/sse/presence/users/alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
