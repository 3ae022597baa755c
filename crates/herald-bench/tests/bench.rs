//! End-to-end: a real Herald server in this process, loaded by the `herald-bench` binary with
//! `--json`. Checks that every event is accounted for and that the figures are sane; never how
//! fast anything is.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use herald::config::Config;
use herald::http::AppState;
use herald::{Hub, UserId};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest any single bench run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);

struct Server {
    addr: SocketAddr,
    hub: Hub,
    cancel: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        adjust(&mut config);
        config.validate().expect("valid configuration");
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lifecycle = herald::Lifecycle::new();
        let hub = Hub::start_in_memory(config.hub.clone(), &lifecycle);
        let state = AppState::new(hub.clone(), config.http.clone());
        let cancel = lifecycle.token().clone();
        let options = herald::server::ServerOptions::from_config(&config).unwrap();
        let task = tokio::spawn(herald::server::serve(listener, state, lifecycle, options));
        Server {
            addr,
            hub,
            cancel,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

struct Run {
    code: Option<i32>,
    json: Value,
    stderr: String,
}

fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald-bench"));
    cmd.args(args)
        .env_remove("HERALD_PUBLISHER_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `herald-bench <args> --json --no-progress` and parses its report.
async fn bench(args: &[&str]) -> Run {
    let mut cmd = command(args);
    cmd.args(["--json", "--no-progress"]);
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .expect("herald-bench did not finish")
        .expect("herald-bench did not start");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}\nstderr: {stderr}"));
    Run {
        code: out.status.code(),
        json,
        stderr,
    }
}

fn u(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

fn f(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

/// Every event reached every subscriber exactly once.
fn assert_complete(run: &Run, subscribers: u64, expected: u64) {
    let j = &run.json;
    assert_eq!(run.code, Some(0), "stderr: {}\n{j:#}", run.stderr);
    assert_eq!(j["ok"], true, "{j:#}");
    assert_eq!(u(j, "connections.connected"), subscribers, "{j:#}");
    assert_eq!(u(j, "connections.failed"), 0, "{j:#}");
    assert_eq!(u(j, "delivery.expected"), expected, "{j:#}");
    assert_eq!(u(j, "delivery.received"), expected, "{j:#}");
    assert_eq!(u(j, "delivery.unique"), expected, "{j:#}");
    assert_eq!(u(j, "delivery.lost"), 0, "{j:#}");
    assert_eq!(u(j, "delivery.duplicates"), 0, "{j:#}");
    assert_eq!(u(j, "delivery.misdirected"), 0, "{j:#}");
    assert_eq!(u(j, "delivery.latency_us.count"), expected, "{j:#}");
    assert!(u(j, "delivery.latency_us.max") >= u(j, "delivery.latency_us.p50"));
    assert!(f(j, "delivery.per_sec") > 0.0, "{j:#}");
    assert!(f(j, "publish.per_sec") > 0.0, "{j:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_smoke_counts_every_event() {
    let srv = Server::start().await;
    let pid = std::process::id().to_string();
    let run = bench(&[
        "fanout",
        "--url",
        &srv.url(),
        "--subscribers",
        "5",
        "--events",
        "10",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_complete(&run, 5, 50);
    let j = &run.json;
    assert_eq!(j["command"], "fanout");
    assert_eq!(u(j, "publish.ok"), 10);
    assert_eq!(u(j, "publish.failed"), 0);
    assert_eq!(u(j, "publish.latency_us.count"), 10);
    // Herald's own accounting agrees.
    assert_eq!(u(j, "publish.server_reported_deliveries"), 50);
    assert_eq!(u(j, "server_stats.events_delivered"), 50);
    assert_eq!(u(j, "server_stats.connections_after"), 5);
    assert_eq!(u(j, "delivery.out_of_order"), 0);
    assert_eq!(u(j, "delivery.order_divergent_subscribers"), 0);
    // The server is this process: its figures were read from /proc.
    assert!(u(j, "server.rss_kib_idle") > 0, "{j:#}");
    assert!(f(j, "server.publish_cpu_secs") >= 0.0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_with_a_rate_concurrency_and_source_addresses() {
    let srv = Server::start().await;
    let run = bench(&[
        "fanout",
        "--url",
        &srv.url(),
        "--subscribers",
        "30",
        "--events",
        "200",
        "--rate",
        "2000",
        "--concurrency",
        "4",
        "--source-addrs",
        "3",
        "--payload-bytes",
        "400",
    ])
    .await;
    assert_complete(&run, 30, 6000);
    let j = &run.json;
    assert_eq!(u(j, "connections.source_addrs"), 3);
    // Publishes race each other, but every subscriber sees the hub's one order.
    assert_eq!(u(j, "delivery.order_divergent_subscribers"), 0, "{j:#}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_two_worker_processes_then_fanout() {
    let srv = Server::start().await;
    let pid = std::process::id().to_string();
    let run = bench(&[
        "connections",
        "--url",
        &srv.url(),
        "--connections",
        "40",
        "--processes",
        "2",
        "--source-addrs",
        "2",
        "--hold",
        "0.5",
        "--then-fanout-events",
        "7",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_complete(&run, 40, 280);
    let j = &run.json;
    assert_eq!(j["command"], "connections");
    assert_eq!(u(j, "connections.processes"), 2);
    assert_eq!(u(j, "connections.ended_early"), 0);
    assert!(f(j, "connections.connects_per_sec") > 0.0);
    assert!(j["server"]["rss_kib_per_connection"].is_number(), "{j:#}");
    assert!(u(j, "server.rss_kib_after_close") > 0);
    assert_eq!(u(j, "server_stats.connections_after"), 40);
    // Everything is closed afterwards.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while srv.hub.stats().await.connections > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections left open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_without_events() {
    let srv = Server::start().await;
    let run = bench(&[
        "connections",
        "--url",
        &srv.url(),
        "--connections",
        "25",
        "--processes",
        "2",
    ])
    .await;
    let j = &run.json;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(j["ok"], true, "{j:#}");
    assert_eq!(u(j, "connections.connected"), 25);
    assert!(j.get("delivery").is_none());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_publishes_reach_exactly_their_user() {
    let srv = Server::start().await;
    let run = bench(&[
        "publish",
        "--url",
        &srv.url(),
        "--users",
        "30",
        "--events",
        "300",
        "--concurrency",
        "8",
        "--seed",
        "7",
    ])
    .await;
    assert_complete(&run, 30, 300);
    let j = &run.json;
    assert_eq!(j["command"], "publish");
    assert_eq!(u(j, "publish.ok"), 300);
    assert_eq!(u(j, "publish.latency_us.count"), 300);
    assert_eq!(u(j, "publish.server_reported_deliveries"), 300);
    assert!(u(j, "publish.http_connections") <= 8);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_early_counts_as_loss() {
    let srv = Server::start().await;
    let child = command(&[
        "fanout",
        "--url",
        &srv.url(),
        "--subscribers",
        "4",
        "--events",
        "60",
        "--rate",
        "20",
        "--check",
        "--json",
        "--no-progress",
    ])
    .spawn()
    .unwrap();
    // Once publishing is under way, cut user u2 off.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while srv.hub.stats().await.events_published < 3 {
        assert!(tokio::time::Instant::now() < deadline, "nothing published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended = srv
        .hub
        .disconnect(vec![UserId::new("u2").unwrap()], vec![])
        .await
        .unwrap();
    assert_eq!(ended, 1);
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("herald-bench did not finish")
        .unwrap();
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "--check fails the run: {j:#}");
    assert_eq!(j["ok"], false);
    assert_eq!(u(&j, "connections.ended_early"), 1, "{j:#}");
    assert_eq!(u(&j, "delivery.subscribers_with_loss"), 1, "{j:#}");
    let lost = u(&j, "delivery.lost");
    assert!(lost > 0 && lost < 60, "{j:#}");
    assert_eq!(u(&j, "delivery.expected"), 240);
    assert_eq!(u(&j, "delivery.unique") + lost, 240, "{j:#}");
    assert_eq!(u(&j, "delivery.duplicates"), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_fanout_counts_every_event() {
    let srv = Server::start().await;
    let pid = std::process::id().to_string();
    let run = bench(&[
        "fanout",
        "--url",
        &srv.url(),
        "--transport",
        "websocket",
        "--subscribers",
        "5",
        "--events",
        "10",
        "--payload-bytes",
        "300",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_complete(&run, 5, 50);
    let j = &run.json;
    assert_eq!(j["transport"], "websocket", "{j:#}");
    let sub = j["subscribe_urls"][0].as_str().unwrap();
    assert!(
        sub.starts_with("ws://") && sub.contains("/api/ws?channels="),
        "{sub}"
    );
    // The hub counted WebSocket deliveries like SSE ones, and ids grew on every socket.
    assert_eq!(u(j, "server_stats.events_delivered"), 50);
    assert_eq!(u(j, "server_stats.connections_after"), 5);
    assert_eq!(u(j, "delivery.id_regressions"), 0);
    assert_eq!(u(j, "delivery.out_of_order"), 0);
    assert_eq!(u(j, "delivery.order_divergent_subscribers"), 0);
    // Each socket's `connected` message was its ready signal.
    assert!(u(j, "delivery.other_events") >= 5, "{j:#}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_over_two_processes_and_targeted_publishes() {
    let srv = Server::start().await;
    let run = bench(&[
        "connections",
        "--url",
        &srv.url(),
        "--transport",
        "websocket",
        "--connections",
        "40",
        "--processes",
        "2",
        "--source-addrs",
        "2",
        "--hold",
        "0.3",
        "--then-fanout-events",
        "7",
    ])
    .await;
    assert_complete(&run, 40, 280);
    assert_eq!(u(&run.json, "connections.ended_early"), 0);
    let run = bench(&[
        "publish",
        "--url",
        &srv.url(),
        "--transport",
        "websocket",
        "--users",
        "30",
        "--events",
        "300",
        "--concurrency",
        "8",
        "--seed",
        "7",
    ])
    .await;
    assert_complete(&run, 30, 300);
    let sub = run.json["subscribe_urls"][0].as_str().unwrap().to_owned();
    assert!(sub.ends_with("/api/ws?userId={user}"), "{sub}");
    srv.stop().await;
}

/// The hub pings every socket and drops one that does not answer: the client's pongs keep
/// them all open across several ping rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscribers_answer_the_hubs_pings() {
    let srv = Server::start_with(|c| {
        c.http.ws_ping_interval = Duration::from_millis(100);
        c.http.ws_pong_timeout = Duration::from_millis(300);
    })
    .await;
    let run = bench(&[
        "connections",
        "--url",
        &srv.url(),
        "--transport",
        "websocket",
        "--connections",
        "10",
        "--hold",
        "1.5",
        "--then-fanout-events",
        "3",
    ])
    .await;
    assert_complete(&run, 10, 30);
    let j = &run.json;
    assert_eq!(u(j, "connections.ended_early"), 0, "{j:#}");
    assert_eq!(u(j, "server_stats.connections_after"), 10, "{j:#}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_the_hub_closes_counts_as_loss() {
    let srv = Server::start().await;
    let child = command(&[
        "fanout",
        "--url",
        &srv.url(),
        "--transport",
        "websocket",
        "--subscribers",
        "4",
        "--events",
        "60",
        "--rate",
        "20",
        "--check",
        "--json",
        "--no-progress",
    ])
    .spawn()
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while srv.hub.stats().await.events_published < 3 {
        assert!(tokio::time::Instant::now() < deadline, "nothing published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended = srv
        .hub
        .disconnect(vec![UserId::new("u2").unwrap()], vec![])
        .await
        .unwrap();
    assert_eq!(ended, 1);
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("herald-bench did not finish")
        .unwrap();
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "--check fails the run: {j:#}");
    assert_eq!(u(&j, "connections.ended_early"), 1, "{j:#}");
    let reasons = j["connections"]["end_reasons"].as_object().unwrap();
    assert!(
        reasons.keys().any(|r| r.contains("closed by the server")),
        "{j:#}"
    );
    let lost = u(&j, "delivery.lost");
    assert!(lost > 0 && lost < 60, "{j:#}");
    assert_eq!(u(&j, "delivery.unique") + lost, 240, "{j:#}");
    assert_eq!(u(&j, "delivery.duplicates"), 0);
    srv.stop().await;
}

#[tokio::test]
async fn refuses_targets_off_loopback() {
    for url in [
        "http://10.1.2.3:8080",
        "http://example.com:80",
        "https://127.0.0.1:8080",
        "ws://10.1.2.3:8080",
    ] {
        let out = command(&[
            "fanout",
            "--url",
            url,
            "--subscribers",
            "1",
            "--events",
            "1",
        ])
        .output()
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{url}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("loopback") || err.contains("https"),
            "{url}: {err}"
        );
    }
    let out = command(&[
        "publish",
        "--target",
        "generic",
        "--subscribe-url",
        "http://127.0.0.1:1/sse?u={user}",
        "--publish-url",
        "http://192.168.0.1/pub",
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[tokio::test]
async fn a_server_that_is_not_there_is_reported_not_hung() {
    // Port 1 on loopback: nothing listens, every connection is refused.
    let run = bench(&[
        "fanout",
        "--url",
        "http://127.0.0.1:1",
        "--subscribers",
        "3",
        "--events",
        "5",
        "--timeout",
        "5",
    ])
    .await;
    let j = &run.json;
    assert_eq!(
        run.code,
        Some(0),
        "without --check a run with problems still exits 0"
    );
    assert_eq!(j["ok"], false);
    assert_eq!(u(j, "connections.failed"), 3, "{j:#}");
    assert!(j["problems"].as_array().unwrap().len() >= 2, "{j:#}");
}
