//! The library's seed-style helpers (`herald::helpers`), each called on the hub of a real server
//! and read by a real SSE client: the event name, the exact data, the id and `delivered` the
//! call answered, and nothing else after it (a trailing marker comes next).

mod support;

use futures_util::future::BoxFuture;
use herald::broker::Published;
use herald::helpers::{EntityKind, Recipients};
use herald::{ChannelName, ConnectionId, Hub, Severity, UserId};
use serde_json::{json, Value};
use support::TestServer;

fn user(u: &str) -> UserId {
    UserId::new(u).unwrap()
}

type Call = Box<dyn Fn(Hub, ConnectionId) -> BoxFuture<'static, herald::Result<Published>>>;

/// One case: a name, the call, the event the subscriber must get and its data.
fn case(
    name: &'static str,
    call: impl Fn(Hub, ConnectionId) -> BoxFuture<'static, herald::Result<Published>> + 'static,
    event: &'static str,
    data: Value,
) -> (&'static str, Call, &'static str, Value) {
    (name, Box::new(call), event, data)
}

fn cases() -> Vec<(&'static str, Call, &'static str, Value)> {
    let order = json!({"orderId": "123", "status": "shipped"});
    vec![
        // Seed 001.
        case(
            "notify_user type given",
            |h, _| {
                Box::pin(async move {
                    h.notify_user(
                        &user("u1"),
                        "Your order has been processed!",
                        Some("notification"),
                        None,
                    )
                    .await
                })
            },
            "notification",
            json!({"message": "Your order has been processed!"}),
        ),
        case(
            "notify_user default type",
            |h, _| Box::pin(async move { h.notify_user(&user("u1"), "Hi", None, None).await }),
            "notification",
            json!({"message": "Hi"}),
        ),
        case(
            "notify_user object data merged",
            move |h, _| {
                let order = order.clone();
                Box::pin(async move {
                    h.notify_user(&user("u1"), "Shipped", Some("order_update"), Some(order))
                        .await
                })
            },
            "order_update",
            json!({"message": "Shipped", "orderId": "123", "status": "shipped"}),
        ),
        case(
            "notify_user other data nested",
            |h, _| {
                Box::pin(async move {
                    h.notify_user(&user("u1"), "m", None, Some(json!([1, 2])))
                        .await
                })
            },
            "notification",
            json!({"message": "m", "data": [1, 2]}),
        ),
        case(
            "notify_all",
            |h, _| {
                Box::pin(async move {
                    h.notify_all("System maintenance in 5 minutes", Some("alert"), None)
                        .await
                })
            },
            "alert",
            json!({"message": "System maintenance in 5 minutes"}),
        ),
        case(
            "notify_all with data",
            |h, _| {
                Box::pin(async move {
                    h.notify_all("Down", Some("maintenance"), Some(json!({"minutes": 5})))
                        .await
                })
            },
            "maintenance",
            json!({"message": "Down", "minutes": 5}),
        ),
        case(
            "send_update",
            |h, _| {
                Box::pin(async move {
                    h.send_update(&user("u1"), "profile", &json!({"field": "avatar"}))
                        .await
                })
            },
            "update",
            json!({"type": "profile", "payload": {"field": "avatar"}}),
        ),
        case(
            "send_alert",
            |h, _| {
                Box::pin(async move {
                    h.send_alert(&user("u1"), "Disk almost full", Some(Severity::Warning))
                        .await
                })
            },
            "alert",
            json!({"message": "Disk almost full", "severity": "warning"}),
        ),
        case(
            "send_alert default severity",
            |h, _| Box::pin(async move { h.send_alert(&user("u1"), "FYI", None).await }),
            "alert",
            json!({"message": "FYI", "severity": "info"}),
        ),
        case(
            "send_to_user",
            |h, _| {
                Box::pin(async move {
                    h.send_to_user(&user("u1"), "profile:updated", &json!({"field": "avatar"}))
                        .await
                })
            },
            "profile:updated",
            json!({"field": "avatar"}),
        ),
        case(
            "send_to_connection",
            |h, c| {
                Box::pin(async move {
                    h.send_to_connection(
                        c,
                        "user:message",
                        &json!({"message": "Hello from server!"}),
                    )
                    .await
                })
            },
            "user:message",
            json!({"message": "Hello from server!"}),
        ),
        case(
            "send_to_client",
            |h, c| Box::pin(async move { h.send_to_client(c, "user:message", "Hi").await }),
            "user:message",
            json!("Hi"),
        ),
        // Seed 003.
        case(
            "send_to_users in seed 003 order",
            |h, _| {
                Box::pin(async move {
                    h.send_to_users(
                        "notification",
                        &json!({"title": "New Message", "content": "You have a new message"}),
                        &[user("u1"), user("u2")],
                    )
                    .await
                })
            },
            "notification",
            json!({"title": "New Message", "content": "You have a new message"}),
        ),
        case(
            "send_notification",
            |h, _| {
                Box::pin(async move {
                    h.send_notification(
                        &user("u1"),
                        "Welcome!",
                        "Welcome to our platform",
                        Some("success"),
                    )
                    .await
                })
            },
            "notification",
            json!({"title": "Welcome!", "message": "Welcome to our platform", "type": "success"}),
        ),
        case(
            "send_notification default type",
            |h, _| Box::pin(async move { h.send_notification(&user("u1"), "T", "M", None).await }),
            "notification",
            json!({"title": "T", "message": "M", "type": "info"}),
        ),
        case(
            "broadcast_message",
            |h, _| {
                Box::pin(async move {
                    h.broadcast_message(
                        "system-update",
                        &json!({"message": "Soon", "type": "warning"}),
                    )
                    .await
                })
            },
            "system-update",
            json!({"message": "Soon", "type": "warning"}),
        ),
        case(
            "send_to_channel",
            |h, _| {
                Box::pin(async move {
                    h.send_to_channel(&ChannelName::new("content-updates").unwrap(), "price", &9.5)
                        .await
                })
            },
            "price",
            json!(9.5),
        ),
        // Seed 002's domain helpers, every target type.
        case(
            "send_payment_notification user",
            |h, _| {
                Box::pin(async move {
                    h.send_payment_notification(
                        "payment123",
                        "completed",
                        Some(json!({"amount": 99.99, "currency": "USD", "customerId": "u1"})),
                        Recipients::User(user("u1")),
                    )
                    .await
                })
            },
            "payment",
            json!({"paymentId": "payment123", "status": "completed", "amount": 99.99, "currency": "USD", "customerId": "u1"}),
        ),
        case(
            "send_job_notification users",
            |h, _| {
                Box::pin(async move {
                    h.send_job_notification(
                        "video-processing",
                        "completed",
                        Some(json!({"videoId": "video123"})),
                        Recipients::from_seed("users", &["u1", "u9"])?,
                    )
                    .await
                })
            },
            "job",
            json!({"jobType": "video-processing", "status": "completed", "videoId": "video123"}),
        ),
        case(
            "send_user_account_notification",
            |h, _| {
                Box::pin(async move {
                    h.send_user_account_notification(
                        "u1",
                        "created",
                        Some(json!({"email": "john@example.com"})),
                        Recipients::from_seed("user", &["u1"])?,
                    )
                    .await
                })
            },
            "account",
            json!({"userId": "u1", "status": "created", "email": "john@example.com"}),
        ),
        case(
            "send_system_health_notification channel",
            |h, _| {
                Box::pin(async move {
                    h.send_system_health_notification(
                        "database",
                        "warning",
                        Some(json!({"metrics": {"memoryUsage": "85%"}})),
                        Recipients::from_seed("channel", &["content-updates"])?,
                    )
                    .await
                })
            },
            "system_health",
            json!({"component": "database", "status": "warning", "metrics": {"memoryUsage": "85%"}}),
        ),
        case(
            "send_video_processing_notification",
            |h, _| {
                Box::pin(async move {
                    h.send_video_processing_notification(
                        "video123",
                        "completed",
                        Some(json!({"quality": "4K"})),
                        Recipients::User(user("u1")),
                    )
                    .await
                })
            },
            "video_processing",
            json!({"videoId": "video123", "status": "completed", "quality": "4K"}),
        ),
        case(
            "send_data_export_notification",
            |h, _| {
                Box::pin(async move {
                    h.send_data_export_notification(
                        "export123",
                        "completed",
                        Some(json!({"recordCount": 1000})),
                        Recipients::User(user("u1")),
                    )
                    .await
                })
            },
            "data_export",
            json!({"exportId": "export123", "status": "completed", "recordCount": 1000}),
        ),
        case(
            "send_post_update_notification broadcast",
            |h, _| {
                Box::pin(async move {
                    h.send_post_update_notification(
                        "post123",
                        "created",
                        Some(json!({"title": "New"})),
                        Recipients::from_seed("broadcast", &[])?,
                    )
                    .await
                })
            },
            "post",
            json!({"postId": "post123", "status": "created", "title": "New"}),
        ),
        case(
            "send_profile_update_notification",
            |h, _| {
                Box::pin(async move {
                    h.send_profile_update_notification(
                        "u1",
                        "avatar_changed",
                        None,
                        Recipients::User(user("u1")),
                    )
                    .await
                })
            },
            "profile",
            json!({"userId": "u1", "status": "avatar_changed"}),
        ),
        case(
            "send_entity_notification numeric id",
            |h, _| {
                Box::pin(async move {
                    h.send_entity_notification(
                        EntityKind::Payment,
                        &7,
                        "failed",
                        Some(Value::Null),
                        Recipients::Users(vec![user("u1")]),
                    )
                    .await
                })
            },
            "payment",
            json!({"paymentId": 7, "status": "failed"}),
        ),
    ]
}

#[tokio::test]
async fn every_helper_sends_the_seeds_event_and_data_and_answers_id_and_delivered() {
    let srv = TestServer::start().await;
    // One subscriber, which every case targets exactly once; another user, whom only the
    // broadcasts reach.
    let mut sub = srv.subscribe("userId=u1&channels=content-updates").await;
    let mut other = srv.subscribe("userId=u3").await;
    let connection: ConnectionId = sub.connection_id.parse().unwrap();
    for (name, call, event, data) in cases() {
        let published = call(srv.hub.clone(), connection)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let broadcast = matches!(
            name,
            "notify_all"
                | "notify_all with data"
                | "broadcast_message"
                | "send_post_update_notification broadcast"
        );
        assert_eq!(
            published.delivered,
            if broadcast { 2 } else { 1 },
            "{name}: delivered"
        );
        let got = sub.next_event().await;
        assert_eq!(got.event, event, "{name}: event name");
        let got_data: Value = serde_json::from_str(&got.data).unwrap();
        assert_eq!(got_data, data, "{name}: data");
        assert_eq!(got.id, published.id.to_string(), "{name}: id");
        if broadcast {
            assert_eq!(
                other.next_event().await.id,
                got.id,
                "{name}: the other user"
            );
        }
        // Nothing else came with it: the next event is this marker.
        srv.hub
            .send_to_user(&user("u1"), "marker", &json!({}))
            .await
            .unwrap();
        assert_eq!(sub.next_event().await.event, "marker", "{name}: trailing");
    }
    srv.hub.broadcast("end", &0).await.unwrap();
    assert_eq!(
        other.next_event().await.event,
        "end",
        "only the broadcasts reached u3"
    );
}

#[tokio::test]
async fn helper_arguments_are_validated_before_anything_is_sent() {
    let srv = TestServer::start().await;
    let mut sub = srv.subscribe("userId=u1").await;
    let hub = &srv.hub;
    let invalid = |r: herald::Result<Published>| match r {
        Err(herald::Error::Invalid(e)) => e,
        other => panic!("expected an invalid-input error, got {other:?}"),
    };
    let e = invalid(
        hub.send_payment_notification("p", "paid", Some(json!([1])), Recipients::User(user("u1")))
            .await,
    );
    assert_eq!(e.field, "data");
    let e = invalid(hub.send_to_users("n", &1, &[]).await);
    assert_eq!(e.code, "missing_target");
    let e = invalid(
        hub.send_job_notification("j", "done", None, Recipients::Users(vec![]))
            .await,
    );
    assert_eq!(e.code, "missing_target");
    // A hub's own event name is refused.
    invalid(
        hub.notify_user(&user("u1"), "m", Some("connected"), None)
            .await,
    );
    invalid(
        hub.notify_user(&user("u1"), "m", Some("bad\nname"), None)
            .await,
    );
    assert!(Recipients::from_seed("team", &["t"]).is_err());
    assert!("invoice".parse::<EntityKind>().is_err());
    // None of that reached the subscriber: the next event is this marker.
    hub.send_to_user(&user("u1"), "marker", &0).await.unwrap();
    assert_eq!(sub.next_event().await.event, "marker");
}
