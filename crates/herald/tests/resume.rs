//! No lost notifications: event ids, the replay window and `Last-Event-ID` resume.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use herald::config::Config;
use serde_json::{json, Value};
use support::{SseClient, TestServer, WAIT};

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

fn data(e: &eventsource_stream::Event) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_would_have_received() {
    let srv = TestServer::start().await;
    let query = "userId=alice&channels=news";
    let mut a = srv.subscribe(query).await;
    assert!(
        a.start_id.ends_with("-0"),
        "a fresh hub starts at seq 0: {}",
        a.start_id
    );
    let old_connection = a.connection_id.clone();
    srv.publish_ok(json!({"event": "n", "data": 1, "users": ["alice"]}))
        .await;
    let last = a.next_event().await.id;
    drop(a);
    srv.wait_for_stats("alice to leave", |s| s["connections"] == 0)
        .await;

    // While alice is away:
    srv.publish_ok(json!({"event": "n", "data": 2, "users": ["alice"]}))
        .await;
    srv.publish_ok(json!({"event": "n", "data": 3, "channels": ["news"]}))
        .await;
    srv.publish_ok(json!({"event": "n", "data": "not for alice", "users": ["bob"]}))
        .await;
    srv.publish_ok(json!({"event": "n", "data": "sport", "channels": ["sport"]}))
        .await;
    srv.publish_ok(
        json!({"event": "n", "data": "old connection", "connections": [old_connection]}),
    )
    .await;
    srv.publish_ok(json!({"event": "n", "data": 4, "broadcast": true}))
        .await;
    srv.publish_ok(json!({"event": "n", "data": 5, "users": ["nobody"], "fallback": "broadcast"}))
        .await;
    srv.publish_ok(json!({"event": "n", "data": "no fallback", "users": ["nobody"]}))
        .await;

    for resume in [ResumeVia::Header, ResumeVia::Query] {
        let mut a = match resume {
            ResumeVia::Header => srv.resume(query, &last).await,
            ResumeVia::Query => srv.subscribe(&format!("{query}&lastEventId={last}")).await,
        };
        assert_eq!(
            a.start_id, "",
            "a resume's connected event carries no id: the position stays"
        );
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(data(&a.next_event().await));
        }
        assert_eq!(got, [json!(2), json!(3), json!(4), json!(5)], "{resume:?}");
        // Then live events, and nothing else in between.
        srv.publish_ok(
            json!({"event": "live", "data": resume as u8, "connections": [a.connection_id]}),
        )
        .await;
        let e = a.next_event().await;
        assert_eq!((e.event.as_str(), data(&e)), ("live", json!(resume as u8)));
    }
    let stats = srv.stats().await;
    assert!(stats["history"]["events"].as_u64().unwrap() >= 9, "{stats}");
    assert!(stats["history"]["bytes"].as_u64().unwrap() > 0);
}

#[derive(Debug, Clone, Copy)]
enum ResumeVia {
    Header = 1,
    Query = 2,
}

/// A publisher sends numbered events at a high rate to a user and to a channel while the client
/// is repeatedly cut off and reconnects with its last id. In the end it has seen every number
/// exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_resume_under_load_loses_and_repeats_nothing() {
    let srv = std::sync::Arc::new(TestServer::start().await);
    const ROUNDS: u64 = 4;
    const PER_ROUND: u64 = 1500;
    let query = "userId=soak&channels=feed";
    // The client's position before anything is published: the id its first `connected` carries.
    let mut last_id = srv.subscribe(query).await.start_id;
    let mut reconnects = 0u64;
    for round in 0..ROUNDS {
        let first = round * PER_ROUND;
        let end = first + PER_ROUND;
        let publisher = {
            let srv = srv.clone();
            tokio::spawn(async move {
                for n in first..end {
                    let target = if n % 2 == 0 {
                        json!({"users": ["soak"]})
                    } else {
                        json!({"channels": ["feed"]})
                    };
                    let mut body = json!({"event": "num", "data": n});
                    body.as_object_mut()
                        .unwrap()
                        .extend(target.as_object().unwrap().clone());
                    srv.publish_ok(body).await;
                }
            })
        };
        let mut next = first;
        let mut cut_after = 1u64;
        while next < end {
            let mut client = srv.resume(query, &last_id).await;
            // Read a varying number of events, then drop the connection mid-stream.
            let budget = (cut_after >> 33) % 97 + 1;
            cut_after = cut_after
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            for _ in 0..budget {
                if next == end {
                    break;
                }
                let e = client.next_event().await;
                assert_eq!(e.event, "num", "unexpected {e:?}");
                let n = data(&e).as_u64().unwrap();
                assert_eq!(
                    n, next,
                    "round {round}: expected {next}, got {n} (after {reconnects} reconnects)"
                );
                next += 1;
                last_id = e.id;
            }
            drop(client);
            reconnects += 1;
        }
        tokio::time::timeout(WAIT, publisher)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        reconnects > 50,
        "the test must reconnect often: {reconnects}"
    );
    let stats = srv.stats().await;
    assert_eq!(stats["evictedSlowConsumers"], 0);
}

#[tokio::test]
async fn an_evicted_slow_client_recovers_everything_still_in_the_window() {
    let srv = TestServer::with_config(config(|c| {
        c.hub.queue_capacity = 16;
        c.hub.queue_max_bytes = 256 * 1024;
    }))
    .await;
    let query = "userId=slow&channels=feed";
    // The client stops reading after the `connected` event.
    let mut slow = srv.subscribe(query).await;
    let filler = "f".repeat(8 * 1024);
    let mut published = 0u64;
    while srv.stats().await["evictedSlowConsumers"] == 0 {
        assert!(published < 5000, "never evicted");
        srv.publish_ok(
            json!({"event": "num", "data": {"n": published, "pad": filler}, "channels": ["feed"]}),
        )
        .await;
        published += 1;
    }
    // A few more while it is gone.
    for _ in 0..20 {
        srv.publish_ok(
            json!({"event": "num", "data": {"n": published, "pad": filler}, "users": ["slow"]}),
        )
        .await;
        published += 1;
    }
    // Now the client reads what reached it before the cut, then the stream fails.
    let mut seen = Vec::new();
    let mut last_id = slow.start_id.clone();
    while let Some(e) = slow.try_next().await {
        if e.event == "num" {
            seen.push(data(&e)["n"].as_u64().unwrap());
            last_id = e.id;
        }
    }
    assert!(
        (seen.len() as u64) < published,
        "the cut lost the tail of the stream"
    );
    // It resumes with its last id and gets the rest.
    let mut resumed = srv.resume(query, &last_id).await;
    while (seen.len() as u64) < published {
        let e = resumed.next_event().await;
        assert_eq!(e.event, "num", "{e:?}");
        seen.push(data(&e)["n"].as_u64().unwrap());
    }
    assert_eq!(seen, (0..published).collect::<Vec<_>>());
}

async fn expect_reset(client: &mut SseClient, reason: &str) -> String {
    let e = client.next_event().await;
    assert_eq!(e.event, "reset", "{e:?}");
    assert_eq!(data(&e)["reason"], reason);
    e.id
}

#[tokio::test]
async fn a_gap_older_than_the_window_or_a_foreign_epoch_yields_reset() {
    let srv = TestServer::with_config(config(|c| c.hub.history.max_events = 5)).await;
    let query = "userId=alice";
    let mut a = srv.subscribe(query).await;
    srv.publish_ok(json!({"event": "n", "data": 0, "users": ["alice"]}))
        .await;
    let old = a.next_event().await.id;
    drop(a);
    let mut last_published = String::new();
    for n in 1..=10 {
        last_published = srv
            .publish_ok(json!({"event": "n", "data": n, "users": ["alice"]}))
            .await
            .0;
    }
    let mut a = srv.resume(query, &old).await;
    let reset_id = expect_reset(&mut a, "history_gap").await;
    assert_eq!(
        reset_id, last_published,
        "the reset moves the client to the head"
    );
    // Live events follow the reset.
    srv.publish_ok(json!({"event": "n", "data": 11, "users": ["alice"]}))
        .await;
    assert_eq!(data(&a.next_event().await), json!(11));
    drop(a);

    // Resuming from the reset's id works: the client is up to date, nothing is replayed.
    let mut a = srv.resume(query, &reset_id).await;
    let e = a.next_event().await;
    assert_eq!((e.event.as_str(), data(&e)), ("n", json!(11)));

    // Another hub's id, or an id this hub cannot even read.
    let epoch_of = |id: &str| id.split('-').next().unwrap().to_owned();
    let foreign = if epoch_of(&old) == "000000000000" {
        "000000000001-3"
    } else {
        "000000000000-3"
    };
    for (id, reason) in [(foreign, "unknown_epoch"), ("garbage", "unknown_epoch")] {
        let mut c = srv.resume(query, id).await;
        expect_reset(&mut c, reason).await;
    }
    // An id from this epoch but in the future is not trusted either.
    let future = format!("{}-999999", epoch_of(&old));
    let mut c = srv.resume(query, &future).await;
    expect_reset(&mut c, "unknown_epoch").await;
    // Bad ids in the query are refused outright only when they are unreasonable.
    let r = srv
        .http
        .get(srv.url(&format!("/api/sse?lastEventId={}", "x".repeat(200))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn history_can_be_turned_off() {
    let srv = TestServer::with_config(config(|c| c.hub.history.max_events = 0)).await;
    let mut a = srv.subscribe("userId=alice").await;
    srv.publish_ok(json!({"event": "n", "data": 1, "users": ["alice"]}))
        .await;
    let last = a.next_event().await.id;
    drop(a);
    // Up to date: nothing to replay, no reset.
    let mut a = srv.resume("userId=alice", &last).await;
    srv.publish_ok(json!({"event": "n", "data": 2, "users": ["alice"]}))
        .await;
    assert_eq!(data(&a.next_event().await), json!(2));
    drop(a);
    srv.publish_ok(json!({"event": "n", "data": 3, "users": ["alice"]}))
        .await;
    let mut a = srv.resume("userId=alice", &last).await;
    expect_reset(&mut a, "history_gap").await;
}

#[tokio::test]
async fn durable_history_lets_clients_resume_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("herald-resume-{}", rand_suffix()));
    let with_dir = |dir: &std::path::Path| config(|c| c.data_dir = Some(dir.to_path_buf()));
    let srv = TestServer::with_config(with_dir(&dir)).await;
    let query = "userId=alice&channels=news";
    let mut a = srv.subscribe(query).await;
    srv.publish_ok(json!({"event": "n", "data": 1, "users": ["alice"]}))
        .await;
    let last = a.next_event().await.id;
    // The hub stops (alice is told so), after one more publish she misses.
    srv.publish_ok(json!({"event": "n", "data": 2, "channels": ["news"]}))
        .await;
    let stats = srv.stats().await;
    assert_eq!(stats["history"]["durable"], true);
    srv.stop().await;
    let events = a.until_end().await;
    assert!(events.iter().any(|e| e.event == "disconnected"));

    // A new hub process on the same directory.
    let srv = TestServer::with_config(with_dir(&dir)).await;
    srv.publish_ok(json!({"event": "n", "data": 3, "users": ["alice"]}))
        .await;
    let mut a = srv.resume(query, &last).await;
    let got: Vec<Value> = [a.next_event().await, a.next_event().await]
        .iter()
        .map(data)
        .collect();
    assert_eq!(got, [json!(2), json!(3)]);
    srv.stop().await;

    // Without the directory, the same id belongs to an unknown epoch.
    let srv = TestServer::start().await;
    let mut a = srv.resume(query, &last).await;
    expect_reset(&mut a, "unknown_epoch").await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn concurrent_resumes_while_publishing_see_consistent_streams() {
    // Many clients resume at once from different points while a publisher runs; each gets a
    // gapless, duplicate-free, ordered suffix.
    let srv = std::sync::Arc::new(TestServer::start().await);
    let mut ids = Vec::new();
    let mut c = srv.subscribe("channels=all").await;
    for n in 0..50u64 {
        srv.publish_ok(json!({"event": "n", "data": n, "channels": ["all"]}))
            .await;
        ids.push(c.next_event().await.id);
    }
    drop(c);
    let publisher = {
        let srv = srv.clone();
        tokio::spawn(async move {
            for n in 50..300u64 {
                srv.publish_ok(json!({"event": "n", "data": n, "channels": ["all"]}))
                    .await;
            }
        })
    };
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate().step_by(5) {
        let srv = srv.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = srv.resume("channels=all", &id).await;
            let mut expected = i as u64 + 1;
            let mut seen = BTreeSet::new();
            while expected < 300 {
                let e = c.next_event().await;
                let n = data(&e).as_u64().unwrap();
                assert_eq!(n, expected, "resumed after {i}");
                assert!(seen.insert(n));
                expected += 1;
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT * 3, t).await.unwrap().unwrap();
    }
    publisher.await.unwrap();
    let _ = Duration::ZERO;
}

fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
