//! Test helpers: a real Herald server on an ephemeral loopback port, and an SSE client that reads
//! it with an independent spec-compliant parser (`eventsource-stream`).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use herald::config::Config;
use herald::http::AppState;
use herald::Hub;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A publisher key with every scope, for tests.
pub fn full_key(key: &str) -> herald::auth::PublisherKey {
    herald::auth::PublisherKey {
        name: "test".into(),
        key: herald::config::Secret::new(key),
        publish: herald::auth::PublishScope::Any,
        admin: true,
    }
}

/// How long any single awaited thing may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A Herald server running in this process on 127.0.0.1:<ephemeral>. Stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub http: reqwest::Client,
    key: Option<String>,
    cancel: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(Config::default()).await
    }

    pub async fn with_config(mut config: Config) -> Self {
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.validate().expect("test configuration is valid");
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lifecycle = herald::Lifecycle::new();
        let hub = Hub::from_config(&config, &lifecycle)
            .await
            .expect("start the hub");
        let key = config
            .http
            .publisher_keys
            .first()
            .map(|k| k.key.expose().to_owned());
        let state = AppState::new(hub.clone(), config.http.clone());
        let cancel = lifecycle.token().clone();
        let options = herald::server::ServerOptions::from_config(&config).unwrap();
        let task = tokio::spawn(herald::server::serve(listener, state, lifecycle, options));
        TestServer {
            addr,
            hub,
            http: http_client(),
            key,
            cancel,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Opens `GET /api/sse?<query>` with `Last-Event-ID: last_id` and reads up to `connected`.
    pub async fn resume(&self, query: &str, last_id: &str) -> SseClient {
        let response = tokio::time::timeout(
            WAIT,
            self.http
                .get(self.url(&format!("/api/sse?{query}")))
                .header("last-event-id", last_id)
                .send(),
        )
        .await
        .expect("subscribe timed out")
        .expect("subscribe request failed");
        assert_eq!(response.status(), StatusCode::OK, "resume {query}");
        SseClient::open(response).await
    }

    /// Opens `GET /api/sse?<query>` and reads up to the `connected` event.
    pub async fn subscribe(&self, query: &str) -> SseClient {
        let response = tokio::time::timeout(
            WAIT,
            self.http.get(self.url(&format!("/api/sse?{query}"))).send(),
        )
        .await
        .expect("subscribe timed out")
        .expect("subscribe request failed");
        assert_eq!(response.status(), StatusCode::OK, "subscribe {query}");
        SseClient::open(response).await
    }

    /// `POST path` with a JSON body (and the publisher key, if the server has one).
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        read_json(send(req).await).await
    }

    /// `POST /api/sse/message`.
    pub async fn publish(&self, body: Value) -> (StatusCode, Value) {
        self.post("/api/sse/message", &body).await
    }

    /// Publishes and asserts success; returns `(id, delivered)`.
    pub async fn publish_ok(&self, body: Value) -> (String, u64) {
        let (status, answer) = self.publish(body.clone()).await;
        assert_eq!(status, StatusCode::OK, "publish {body}: {answer}");
        (
            answer["id"].as_str().unwrap().to_owned(),
            answer["delivered"].as_u64().unwrap(),
        )
    }

    /// `GET path` as JSON (with the publisher key, if any).
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        read_json(send(req).await).await
    }

    pub async fn stats(&self) -> Value {
        let (status, stats) = self.get_json("/api/sse/stats").await;
        assert_eq!(status, StatusCode::OK);
        stats
    }

    /// Polls the stats until `check` holds; fails after [`WAIT`]. For state that changes in the
    /// background (a client went away) and has no event to await.
    pub async fn wait_for_stats(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = self.stats().await;
            if check(&stats) {
                return stats;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; stats: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels the server and waits for `serve` to return.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("serve did not return after shutdown")
                .unwrap()
                .unwrap();
        }
    }

    /// Cancels the server without waiting.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An HTTP client whose every call is bounded: connecting, and each read of an answer (an
/// event stream that stays silent for [`WAIT`] fails instead of hanging the test).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(WAIT)
        .read_timeout(WAIT)
        .build()
        .expect("build the test HTTP client")
}

/// Sends `req`, failing the test if no answer (head) arrives within [`WAIT`].
pub async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    tokio::time::timeout(WAIT, req.send())
        .await
        .unwrap_or_else(|_| panic!("no answer within {WAIT:?}"))
        .expect("request failed")
}

pub async fn read_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = tokio::time::timeout(WAIT, response.text())
        .await
        .unwrap_or_else(|_| panic!("a {status} answer did not finish within {WAIT:?}"))
        .unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text:?}"));
    (status, value)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// An open SSE stream.
pub struct SseClient {
    events: EventStream,
    pub headers: reqwest::header::HeaderMap,
    pub connected: Value,
    pub connection_id: String,
    pub retry: Option<Duration>,
    /// The id the `connected` event carried (the hub's head for a fresh connection; empty for a
    /// resume).
    pub start_id: String,
}

impl SseClient {
    pub async fn open(response: reqwest::Response) -> Self {
        let headers = response.headers().clone();
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|r| r.map_err(|e| e.to_string()));
        let mut client = SseClient {
            events: Box::pin(events),
            headers,
            connected: Value::Null,
            connection_id: String::new(),
            retry: None,
            start_id: String::new(),
        };
        let first = client.next_any().await;
        assert_eq!(first.event, "connected", "first event: {first:?}");
        client.retry = first.retry;
        client.start_id = first.id.clone();
        client.connected = serde_json::from_str(&first.data).unwrap();
        client.connection_id = client.connected["connectionId"]
            .as_str()
            .unwrap()
            .to_owned();
        client
    }

    /// The next event, or `None` if the stream ends (or fails) first.
    pub async fn try_next(&mut self) -> Option<Event> {
        match tokio::time::timeout(WAIT, self.events.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            Ok(Some(Err(_))) | Ok(None) => None,
            Err(_) => panic!("no event and no end within {WAIT:?}"),
        }
    }

    /// The next event of any kind, heartbeats included.
    pub async fn next_any(&mut self) -> Event {
        match tokio::time::timeout(WAIT, self.events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => panic!("stream ended while an event was expected"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }

    /// The next event that is not a heartbeat.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let event = self.next_any().await;
            if event.event != "heartbeat" {
                return event;
            }
        }
    }

    /// The next non-heartbeat event's data as JSON, asserting its name.
    pub async fn expect(&mut self, name: &str) -> Value {
        let event = self.next_event().await;
        assert_eq!(event.event, name, "unexpected event {event:?}");
        serde_json::from_str(&event.data).expect("event data is JSON")
    }

    /// Waits for the stream to end (after any remaining events, which are returned).
    pub async fn until_end(&mut self) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.events.next()).await {
                Ok(Some(Ok(event))) => seen.push(event),
                Ok(Some(Err(_))) | Ok(None) => return seen,
                Err(_) => panic!("stream did not end within {WAIT:?}; saw {seen:?}"),
            }
        }
    }
}

/// A `herald` binary process started by a test, with its stderr log collected.
pub struct HeraldProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
}

impl HeraldProcess {
    /// Starts `herald` with `args` (plus `--listen 127.0.0.1:0` unless given) and waits for its
    /// "listening" line.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env("HERALD_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env_remove("HERALD_PUBLISHER_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start herald");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let log2 = log.clone();
        let log_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(pos) = line.find("listening on http") {
                    let rest = &line[pos + 17..];
                    let rest = rest.trim_start_matches('s').trim_start_matches("://");
                    let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = log2.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!("herald did not start; log:\n{}", log.lock().unwrap()),
        };
        HeraldProcess {
            child,
            addr,
            log,
            log_reader: Some(log_reader),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills the process with SIGKILL (`Child::kill`): no signal handler, no shutdown, no flush,
    /// as a crash or the OOM killer leaves it. Waits (bounded) until it is gone.
    pub async fn sigkill(&mut self) {
        tokio::time::timeout(WAIT, self.child.kill())
            .await
            .expect("herald did not die within the wait")
            .expect("SIGKILL herald");
    }

    /// Waits until the process closed its stderr (it exited) and returns the whole log.
    pub async fn final_log(&mut self) -> String {
        if let Some(reader) = self.log_reader.take() {
            tokio::time::timeout(WAIT, reader)
                .await
                .expect("stderr was not closed")
                .unwrap();
        }
        self.log()
    }
}
