//! What one resume may cost: replays are paged and capped (`max_replay_events`,
//! `max_replay_bytes` -> `reset` `replay_too_large`), resumes are rate-limited per client IP,
//! `HEAD /api/sse` replays nothing, publishes keep flowing while big replays run, a large
//! allowed replay does not get its client evicted, and presence churn does not push real events
//! out of the window. Each runs against the real in-process server on the memory engine and,
//! where the engine matters, on the Redis engine against a real `redis-server`.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::broker::RedisOptions;
use herald::config::Config;
use herald::http::AppState;
use herald::{Hub, Lifecycle};
use redis_support::RedisServer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{read_json, SseClient, WAIT};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A Herald server in this process on the memory engine or on a real Redis.
struct Srv {
    base: String,
    http: reqwest::Client,
    hub: Hub,
    cancel: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _redis: Option<RedisServer>,
}

#[derive(Clone, Copy, Debug)]
enum Engine {
    Memory,
    /// Redis with this many stream entries per replay page.
    Redis(usize),
}

impl Srv {
    async fn start(engine: Engine, mut config: Config) -> Srv {
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.validate().expect("test configuration is valid");
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lifecycle = Lifecycle::new();
        let (hub, redis) = match engine {
            Engine::Memory => (Hub::start_in_memory(config.hub.clone(), &lifecycle), None),
            Engine::Redis(page) => {
                let redis = RedisServer::start().await;
                let mut o = RedisOptions::new(redis.url(), config.hub.history);
                o.prefix = format!("t-replay-{:08x}", rand::random::<u32>());
                o.node_id = "a".into();
                o.presence_interval = Duration::from_millis(100);
                o.node_ttl = Duration::from_secs(1);
                o.replay_page_size = page;
                let engine = tokio::time::timeout(WAIT, herald::Engine::redis(o))
                    .await
                    .expect("connecting to Redis timed out")
                    .expect("connect to the test's Redis");
                (
                    Hub::start(config.hub.clone(), engine, &lifecycle),
                    Some(redis),
                )
            }
        };
        let state = AppState::new(hub.clone(), config.http.clone());
        let cancel = lifecycle.token().clone();
        let options = herald::server::ServerOptions::from_config(&config).unwrap();
        let task = tokio::spawn(herald::server::serve(listener, state, lifecycle, options));
        Srv {
            base: format!("http://{addr}"),
            http: support::http_client(),
            hub,
            cancel,
            task: Some(task),
            _redis: redis,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, query: &str, last_id: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(&format!("/api/sse?{query}")));
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        tokio::time::timeout(WAIT, request.send())
            .await
            .expect("subscribe timed out")
            .expect("subscribe failed")
    }

    async fn subscribe(&self, query: &str) -> SseClient {
        let response = self.get(query, None).await;
        assert_eq!(response.status(), StatusCode::OK, "subscribe {query}");
        SseClient::open(response).await
    }

    async fn resume(&self, query: &str, last_id: &str) -> SseClient {
        let response = self.get(query, Some(last_id)).await;
        assert_eq!(response.status(), StatusCode::OK, "resume {query}");
        SseClient::open(response).await
    }

    async fn publish(&self, body: &Value) -> (StatusCode, Value) {
        let response = tokio::time::timeout(
            WAIT,
            self.http
                .post(self.url("/api/sse/message"))
                .json(body)
                .send(),
        )
        .await
        .expect("publish timed out")
        .expect("publish failed");
        read_json(response).await
    }

    async fn publish_ok(&self, body: Value) -> String {
        let (status, answer) = self.publish(&body).await;
        assert_eq!(status, StatusCode::OK, "publish {body}: {answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    async fn stats(&self) -> Value {
        let response = tokio::time::timeout(WAIT, self.http.get(self.url("/api/sse/stats")).send())
            .await
            .expect("stats timed out")
            .expect("stats failed");
        let (status, body) = read_json(response).await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    /// A counter of `/metrics` (0 when it has not been counted yet).
    fn counter(&self, name: &str) -> u64 {
        let text = self.hub.metrics().encode();
        text.lines()
            .find_map(|l| {
                let (key, value) = l.split_once(' ')?;
                (key.ends_with(name)).then(|| value.trim().parse::<f64>().ok())?
            })
            .map_or(0, |v| v as u64)
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

fn data(e: &eventsource_stream::Event) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

/// Reads `{"n": …}` events until the marker event `end`; asserts nothing arrived twice and
/// returns the numbers in order of arrival.
async fn read_until_marker(client: &mut SseClient) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut ids = BTreeSet::new();
    loop {
        let e = client.next_event().await;
        assert!(ids.insert(e.id.clone()), "event {} arrived twice", e.id);
        match e.event.as_str() {
            "n" => seen.push(data(&e)["n"].as_u64().unwrap()),
            "end" => return seen,
            other => panic!("unexpected event {other}: {e:?}"),
        }
    }
}

async fn expect_reset(client: &mut SseClient, reason: &str) -> (String, Value) {
    let e = client.next_event().await;
    assert_eq!(e.event, "reset", "{e:?}");
    let d = data(&e);
    assert_eq!(d["reason"], reason, "{e:?}");
    (e.id, d)
}

// --- The cap -------------------------------------------------------------------------------

/// Up to the cap a resume replays everything (events for others do not count); one event more
/// and the client gets `reset` (`replay_too_large`) with the head id, from which it resumes.
async fn cap_by_events(engine: Engine) {
    let srv = Srv::start(engine, config(|c| c.hub.max_replay_events = 10)).await;
    let query = "userId=alice";
    let start = srv.subscribe(query).await.start_id;
    for n in 0..10u64 {
        srv.publish_ok(json!({"event": "n", "data": {"n": n}, "users": ["alice"]}))
            .await;
        // Not alice's: scanned, not counted.
        srv.publish_ok(json!({"event": "n", "data": {"n": n}, "users": ["bob"]}))
            .await;
    }
    let mut a = srv.resume(query, &start).await;
    srv.publish_ok(json!({"event": "end", "data": {}, "users": ["alice"]}))
        .await;
    assert_eq!(read_until_marker(&mut a).await, (0..10).collect::<Vec<_>>());
    drop(a);

    srv.publish_ok(json!({"event": "n", "data": {"n": 10}, "users": ["alice"]}))
        .await;
    let head = srv
        .publish_ok(json!({"event": "n", "data": {"n": 0}, "users": ["bob"]}))
        .await;
    let resets = srv.counter("resets_total");
    let mut a = srv.resume(query, &start).await;
    let (id, reset) = expect_reset(&mut a, "replay_too_large").await;
    assert_eq!(id, head, "the reset carries the head id");
    assert_eq!(reset["lastEventId"], start.as_str());
    assert_eq!(srv.counter("resets_total"), resets + 1);
    // Live events follow the reset, and a resume from the reset's id replays nothing more.
    srv.publish_ok(json!({"event": "n", "data": {"n": 11}, "users": ["alice"]}))
        .await;
    let e = a.next_event().await;
    assert_eq!(data(&e)["n"], 11);
    drop(a);
    let mut a = srv.resume(query, &id).await;
    srv.publish_ok(json!({"event": "end", "data": {}, "users": ["alice"]}))
        .await;
    assert_eq!(read_until_marker(&mut a).await, [11]);
}

#[tokio::test]
async fn a_resume_beyond_max_replay_events_gets_reset_replay_too_large() {
    cap_by_events(Engine::Memory).await;
}

#[tokio::test]
async fn a_resume_beyond_max_replay_events_gets_reset_replay_too_large_on_redis() {
    cap_by_events(Engine::Redis(4)).await;
}

/// The byte cap counts the frames' bytes.
async fn cap_by_bytes(engine: Engine) {
    let srv = Srv::start(engine, config(|c| c.hub.max_replay_bytes = 4000)).await;
    let query = "channels=news";
    let start = srv.subscribe(query).await.start_id;
    let pad = "x".repeat(900);
    for n in 0..4u64 {
        srv.publish_ok(json!({"event": "n", "data": {"n": n, "pad": pad}, "channels": ["news"]}))
            .await;
    }
    // Four frames of a little under 1000 bytes fit into 4000.
    let mut a = srv.resume(query, &start).await;
    srv.publish_ok(json!({"event": "end", "data": {}, "channels": ["news"]}))
        .await;
    assert_eq!(read_until_marker(&mut a).await, [0, 1, 2, 3]);
    drop(a);
    // The marker and one more do not.
    srv.publish_ok(json!({"event": "n", "data": {"n": 4, "pad": pad}, "channels": ["news"]}))
        .await;
    let mut a = srv.resume(query, &start).await;
    expect_reset(&mut a, "replay_too_large").await;
}

#[tokio::test]
async fn a_resume_beyond_max_replay_bytes_gets_reset_replay_too_large() {
    cap_by_bytes(Engine::Memory).await;
}

#[tokio::test]
async fn a_resume_beyond_max_replay_bytes_gets_reset_replay_too_large_on_redis() {
    cap_by_bytes(Engine::Redis(3)).await;
}

/// The byte cap counts what SSE sends for a text payload (each line break starts another
/// `data: ` line: 7 more bytes), the same on both engines, to the byte: four text events of 100
/// lines fill a cap of exactly their size; a fifth makes the resume a reset.
async fn cap_counts_line_breaks_the_same_everywhere(engine: Engine) {
    let text = "l\n".repeat(100);
    // Name "n", 200 bytes of text and 2 (the storage form), plus 7 per line break.
    let size = 1 + text.len() + 2 + 7 * 100;
    let srv = Srv::start(engine, config(|c| c.hub.max_replay_bytes = 4 * size)).await;
    let query = "channels=news";
    let start = srv.subscribe(query).await.start_id;
    for _ in 0..4 {
        srv.publish_ok(json!({"event": "n", "text": text, "channels": ["news"]}))
            .await;
    }
    let mut a = srv.resume(query, &start).await;
    for _ in 0..4 {
        let e = a.next_event().await;
        assert_eq!((e.event.as_str(), e.data.as_str()), ("n", text.as_str()));
    }
    srv.publish_ok(json!({"event": "end", "data": {}, "channels": ["news"]}))
        .await;
    assert_eq!(
        a.next_event().await.event,
        "end",
        "nothing twice, nothing else"
    );
    drop(a);
    // The end marker (9 bytes) is past the cap now.
    let mut a = srv.resume(query, &start).await;
    expect_reset(&mut a, "replay_too_large").await;
}

#[tokio::test]
async fn the_byte_cap_counts_line_breaks_of_text() {
    cap_counts_line_breaks_the_same_everywhere(Engine::Memory).await;
}

#[tokio::test]
async fn the_byte_cap_counts_line_breaks_of_text_on_redis() {
    cap_counts_line_breaks_the_same_everywhere(Engine::Redis(3)).await;
}

// --- Paging --------------------------------------------------------------------------------

/// With pages of 3 stream entries, resumes from every position, while a publisher runs, get
/// exactly the events for them after their id, in order, then the live ones, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_redis_replay_is_exact_across_page_boundaries() {
    let srv = Arc::new(Srv::start(Engine::Redis(3), Config::default()).await);
    let query = "userId=alice&channels=news";
    let mut ids = vec![srv.subscribe(query).await.start_id];
    let mut mine = Vec::new();
    // Alice's events interleaved with others' so that pages hold a varying number of hers.
    for n in 0..40u64 {
        let target = match n % 4 {
            0 => json!({"users": ["alice"]}),
            1 => json!({"users": ["bob"]}),
            2 => json!({"channels": ["news"]}),
            _ => json!({"channels": ["sport"]}),
        };
        let mut body = json!({"event": "n", "data": {"n": n}});
        body.as_object_mut()
            .unwrap()
            .extend(target.as_object().unwrap().clone());
        let id = srv.publish_ok(body).await;
        if n % 4 == 0 || n % 4 == 2 {
            mine.push(n);
            ids.push(id);
        }
    }
    let publisher = {
        let srv = srv.clone();
        tokio::spawn(async move {
            for n in 40..100u64 {
                srv.publish_ok(json!({"event": "n", "data": {"n": n}, "users": ["alice"]}))
                    .await;
            }
            srv.publish_ok(json!({"event": "end", "data": {}, "users": ["alice"]}))
                .await;
        })
    };
    let mut tasks = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let srv = srv.clone();
        let expected: Vec<u64> = mine[i..].iter().copied().chain(40..100).collect();
        tasks.push(tokio::spawn(async move {
            let mut c = srv.resume(query, &id).await;
            assert_eq!(
                read_until_marker(&mut c).await,
                expected,
                "resumed after {id}"
            );
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT * 3, t).await.unwrap().unwrap();
    }
    tokio::time::timeout(WAIT, publisher)
        .await
        .unwrap()
        .unwrap();
}

// --- Rate limit and HEAD -------------------------------------------------------------------

#[tokio::test]
async fn resumes_are_rate_limited_per_ip() {
    let srv = Srv::start(
        Engine::Memory,
        config(|c| c.http.resume_rate_per_ip = Some("1/s:2".parse().unwrap())),
    )
    .await;
    let start = srv.subscribe("userId=alice").await.start_id;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(srv.resume("userId=alice", &start).await);
    }
    let response = srv.get("userId=alice", Some(&start)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let (_, body) = read_json(response).await;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // ... and via the query parameter.
    let response = srv
        .get(&format!("userId=alice&lastEventId={start}"), None)
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Plain connects are not resumes.
    srv.subscribe("userId=alice").await;
}

#[tokio::test]
async fn head_api_sse_replays_nothing() {
    let srv = Srv::start(Engine::Memory, Config::default()).await;
    let start = srv.subscribe("userId=alice").await.start_id;
    for n in 0..5u64 {
        srv.publish_ok(json!({"event": "n", "data": {"n": n}, "users": ["alice"]}))
            .await;
    }
    let before = (
        srv.counter("resumes_total"),
        srv.counter("replayed_events_total"),
    );
    for _ in 0..3 {
        let response = tokio::time::timeout(
            WAIT,
            srv.http
                .head(srv.url("/api/sse?userId=alice"))
                .header("last-event-id", &start)
                .send(),
        )
        .await
        .expect("HEAD timed out")
        .expect("HEAD failed");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
    }
    assert_eq!(
        (
            srv.counter("resumes_total"),
            srv.counter("replayed_events_total")
        ),
        before,
        "HEAD resumed"
    );
    assert_eq!(srv.stats().await["connections"], 0);
    // A bad parameter still answers 400.
    let response =
        tokio::time::timeout(WAIT, srv.http.head(srv.url("/api/sse?userId=a%0Ab")).send())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

// --- Starvation ----------------------------------------------------------------------------

/// 20 clients resume over and over across a window of 10,000 events for them while a publisher
/// publishes: every publish completes within a generous bound, and afterwards a resume still
/// gets everything in order.
async fn publishes_flow_during_big_replays(engine: Engine) {
    const WINDOW: u64 = 10_000;
    let srv = Arc::new(
        Srv::start(
            engine,
            config(|c| {
                c.hub.history.max_events = 20_000;
                c.hub.max_replay_events = 20_000;
                c.hub.max_replay_bytes = 64 << 20;
            }),
        )
        .await,
    );
    let query = "channels=all";
    let start = srv.subscribe(query).await.start_id;
    let all = [herald::ChannelName::new("all").unwrap()];
    for n in 0..WINDOW {
        tokio::time::timeout(
            WAIT,
            srv.hub.send_to_channel(&all[0], "n", &json!({"n": n})),
        )
        .await
        .expect("filling the window timed out")
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut resumers = Vec::new();
    for _ in 0..20 {
        let srv = srv.clone();
        let stop = stop.clone();
        let start = start.clone();
        resumers.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // The whole replay is read before the stream starts; take its first event.
                let mut c = srv.resume(query, &start).await;
                let e = c.next_event().await;
                assert_eq!(data(&e)["n"], 0);
                rounds += 1;
            }
            rounds
        }));
    }
    // Let the resumes get going.
    let deadline = Instant::now() + WAIT;
    while srv.counter("resumes_total") < 20 {
        assert!(Instant::now() < deadline, "resumes did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bound = Duration::from_secs(3);
    let mut slowest = Duration::ZERO;
    for n in WINDOW..WINDOW + 20 {
        let began = Instant::now();
        let published = tokio::time::timeout(
            bound,
            srv.publish(&json!({"event": "n", "data": {"n": n}, "channels": ["all"]})),
        )
        .await;
        let took = began.elapsed();
        slowest = slowest.max(took);
        let (status, body) = published
            .unwrap_or_else(|_| panic!("publish {n} took over {bound:?} while replays ran"));
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut rounds = 0;
    for r in resumers {
        rounds += tokio::time::timeout(WAIT * 6, r).await.unwrap().unwrap();
    }
    assert!(rounds >= 20, "resumes ran: {rounds}");
    eprintln!("{engine:?}: slowest publish {slowest:?} during {rounds} resumes of {WINDOW}");
    // Still exact afterwards.
    let mut c = srv.resume(query, &start).await;
    srv.publish_ok(json!({"event": "end", "data": {}, "channels": ["all"]}))
        .await;
    let got = tokio::time::timeout(WAIT * 3, read_until_marker(&mut c))
        .await
        .unwrap();
    assert_eq!(got, (0..WINDOW + 20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_flow_while_many_big_resumes_run() {
    publishes_flow_during_big_replays(Engine::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_flow_while_many_big_resumes_run_on_redis() {
    publishes_flow_during_big_replays(Engine::Redis(256)).await;
}

// --- Outbox limits -------------------------------------------------------------------------

/// A replay larger than the outbox limits (queue_capacity 16 frames, 1 MiB) but within the
/// replay cap: the client is not evicted when live events arrive behind it, reads everything,
/// then the live events.
#[tokio::test]
async fn a_large_allowed_replay_is_not_evicted_by_the_next_live_event() {
    let srv = Srv::start(
        Engine::Memory,
        config(|c| {
            c.hub.queue_capacity = 16;
            c.hub.queue_max_bytes = 1 << 20;
            c.hub.max_replay_events = 1000;
            c.hub.max_replay_bytes = 32 << 20;
        }),
    )
    .await;
    let query = "userId=alice";
    let start = srv.subscribe(query).await.start_id;
    // 16 MiB: more than the loopback socket buffers hold, so most of the replay is still
    // queued in the outbox when the live events arrive.
    let pad = "p".repeat(16 * 1024);
    for n in 0..1000u64 {
        srv.publish_ok(json!({"event": "n", "data": {"n": n, "pad": pad}, "users": ["alice"]}))
            .await;
    }
    let mut a = srv.resume(query, &start).await;
    // The client reads nothing yet; live events queue behind the replay.
    for n in 1000..1010u64 {
        srv.publish_ok(json!({"event": "n", "data": {"n": n}, "users": ["alice"]}))
            .await;
    }
    srv.publish_ok(json!({"event": "end", "data": {}, "users": ["alice"]}))
        .await;
    let got = tokio::time::timeout(WAIT * 3, read_until_marker(&mut a))
        .await
        .unwrap();
    assert_eq!(got, (0..1010).collect::<Vec<_>>());
    assert_eq!(srv.stats().await["evictedSlowConsumers"], 0);
}

// --- Presence churn ------------------------------------------------------------------------

/// Join/leave churn of several times the window's size does not push real events out of it: a client
/// resuming from before the churn gets its events, not `history_gap`, and no presence events.
#[tokio::test]
async fn presence_churn_does_not_push_real_events_out_of_the_window() {
    const HISTORY: usize = 20;
    let srv = Srv::start(
        Engine::Memory,
        config(|c| {
            c.hub.history.max_events = HISTORY;
            c.hub.presence_channels = vec!["room".parse().unwrap()];
        }),
    )
    .await;
    let query = "userId=carol&channels=room";
    let mut carol = srv.subscribe(query).await;
    srv.publish_ok(json!({"event": "n", "data": {"n": 0}, "channels": ["room"]}))
        .await;
    let last = loop {
        let e = carol.next_event().await;
        if e.event == "n" {
            break e.id;
        }
    };
    // An observer sees the churn, so the test knows when it is over.
    let mut observer = srv.subscribe("userId=observer&channels=room").await;
    drop(carol);
    let mut presence = 0;
    for i in 0..2 * HISTORY {
        let churner = srv
            .subscribe(&format!("userId=churn{i}&channels=room"))
            .await;
        drop(churner);
        let who = format!("churn{i}");
        loop {
            let e = observer.next_event().await;
            assert!(e.event.starts_with("presence:"), "{e:?}");
            presence += 1;
            if e.event == "presence:leave" && data(&e)["userId"] == who.as_str() {
                break;
            }
        }
    }
    // Joins and leaves: four times the window.
    assert!(presence >= 4 * HISTORY, "{presence}");
    srv.publish_ok(json!({"event": "n", "data": {"n": 1}, "channels": ["room"]}))
        .await;
    let mut carol = srv.resume(query, &last).await;
    srv.publish_ok(json!({"event": "end", "data": {}, "channels": ["room"]}))
        .await;
    // Only real events: no presence events replayed (carol's own join is live and comes
    // first or mixed in; skip it).
    let mut seen = Vec::new();
    loop {
        let e = carol.next_event().await;
        match e.event.as_str() {
            "n" => seen.push(data(&e)["n"].as_u64().unwrap()),
            "end" => break,
            "presence:join" => {
                assert_eq!(
                    data(&e)["userId"],
                    "carol",
                    "only carol's own live join: {e:?}"
                )
            }
            _ => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(seen, [1]);
}
