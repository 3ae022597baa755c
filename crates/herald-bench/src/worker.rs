//! A worker: holds a share of the subscriber connections, reads their event streams and keeps
//! the books. It runs as a task of the main process or, to get past the per-process open-file
//! limit, as a child process (`herald-bench worker`) that talks JSON lines over stdin/stdout.
//! Either way it obeys the same protocol: `Start` → `Ready`, then any number of `Drain` →
//! `Drained`, then `Finish` → `Result`, with `Progress` reports throughout.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::http::{self, BodyDecoder, Framing};
use crate::sio;
use crate::sse::{scan_payload, SseParser};
use crate::target::{self, Endpoint, Name, Vars};
use crate::track::{self, Expect, Tracker};
use crate::util::{new_histogram, now_us};
use crate::ws::{self, WsReader};

/// What a worker's subscribers expect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum ExpectSpec {
    Nothing,
    /// Every subscriber gets every event `0..events`.
    All {
        events: u64,
    },
    /// Event `n` goes to user `target_user(seed, n, users)` only.
    Targeted {
        events: u64,
        users: u64,
        seed: u64,
    },
}

/// Everything a worker needs to open its connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerSpec {
    pub(crate) worker: usize,
    /// Global index of the first subscriber (subscriber `i` is user `<prefix><i>`).
    pub(crate) first: u64,
    pub(crate) count: u64,
    /// Subscribe URL templates; subscriber `i` uses `subscribe[i % len]`.
    pub(crate) subscribe: Vec<String>,
    pub(crate) source_addrs: u32,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) ready_event: Option<String>,
    pub(crate) channel: String,
    pub(crate) user_prefix: String,
    /// `{channel}` is the subscriber's user name rather than `channel`.
    pub(crate) per_user_channel: bool,
    pub(crate) expect: ExpectSpec,
    pub(crate) connect_timeout_ms: u64,
    pub(crate) connect_concurrency: usize,
    /// Subscribers not connected this long after `Start` give up.
    pub(crate) connect_deadline_ms: u64,
    /// Close with FIN rather than RST at the end.
    pub(crate) graceful_close: bool,
}

/// Parent → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum ToWorker {
    Start {
        spec: Box<WorkerSpec>,
    },
    /// Publishing is over: sequence numbers `0..issued` were handed out, `failed` (sorted) of
    /// them unconfirmed. Wait until every live subscriber has its events, or `timeout_ms`.
    Drain {
        issued: u64,
        failed: Vec<u64>,
        timeout_ms: u64,
    },
    /// Stop reading, close every connection, report.
    Finish,
}

/// Worker → parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub(crate) enum FromWorker {
    Progress(Counts),
    /// Every connection attempt is resolved.
    Ready {
        counts: Counts,
        failures: BTreeMap<String, u64>,
        /// When the first attempt started and the last connection became ready (µs since epoch).
        start_us: u64,
        end_us: u64,
    },
    Drained {
        counts: Counts,
        /// Every live subscriber got everything it should.
        complete: bool,
        last_rx_us: u64,
    },
    Result(Box<WorkerResult>),
    Error {
        message: String,
    },
}

/// Running totals of a worker.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    /// Streams that ended while they should have stayed open.
    pub(crate) ended: u64,
    pub(crate) received: u64,
    pub(crate) unique: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, o: &Counts) {
        self.connected += o.connected;
        self.failed += o.failed;
        self.ended += o.ended;
        self.received += o.received;
        self.unique += o.unique;
    }
}

/// A worker's final books.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    pub(crate) connected: u64,
    pub(crate) received: u64,
    pub(crate) unique: u64,
    pub(crate) expected: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    pub(crate) misdirected: u64,
    pub(crate) unconfirmed: u64,
    /// Other events (the hub's `connected`, heartbeats…), not counted anywhere else.
    pub(crate) other_events: u64,
    /// Events whose Herald id was not greater than the previous event's, on one connection.
    #[serde(default)]
    pub(crate) id_regressions: u64,
    pub(crate) subscribers_with_loss: u64,
    pub(crate) subscribers_ended_early: u64,
    pub(crate) end_reasons: BTreeMap<String, u64>,
    /// Order hash → subscribers, among complete subscribers (fan-out only).
    pub(crate) order_hashes: Vec<(u64, u64)>,
    /// Publish-to-receive latency (µs) as `(value, count)` pairs.
    pub(crate) latency: Vec<(u64, u64)>,
    pub(crate) first_rx_us: u64,
    pub(crate) last_rx_us: u64,
}

const PENDING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;
const ENDED: u8 = 3;
const HIST_SHARDS: usize = 8;
/// Most decoded bytes held without a complete line (SSE) or frame (WebSocket).
const MAX_PENDING: usize = 4 << 20;
/// Longest reason text kept (error messages can embed arbitrary bytes).
const MAX_REASON: usize = 120;

struct Shared {
    spec: WorkerSpec,
    endpoints: Vec<Endpoint>,
    lists: Option<Arc<Vec<Box<[u64]>>>>,
    connect_sem: Semaphore,
    give_up: CancellationToken,
    stop: CancellationToken,
    resolved: Notify,
    state: Box<[AtomicU8]>,
    unique: Box<[AtomicU32]>,
    connected: AtomicU64,
    failed: AtomicU64,
    ended: AtomicU64,
    received: AtomicU64,
    unique_total: AtomicU64,
    other_events: AtomicU64,
    first_rx_us: AtomicU64,
    last_rx_us: AtomicU64,
    last_ready_us: AtomicU64,
    hist: Vec<Mutex<Histogram<u64>>>,
    failures: Mutex<BTreeMap<String, u64>>,
    end_reasons: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn counts(&self) -> Counts {
        Counts {
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            ended: self.ended.load(Relaxed),
            received: self.received.load(Relaxed),
            unique: self.unique_total.load(Relaxed),
        }
    }
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, reason: String) {
    let mut reason = reason;
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    *map.lock().entry(reason).or_default() += 1;
}

/// Runs one worker until `Finish` (or until the parent goes away).
pub(crate) async fn run_worker(mut rx: mpsc::Receiver<ToWorker>, tx: mpsc::Sender<FromWorker>) {
    let spec = match rx.recv().await {
        Some(ToWorker::Start { spec }) => *spec,
        Some(other) => {
            let _ = tx
                .send(FromWorker::Error {
                    message: format!("worker: expected start, got {other:?}"),
                })
                .await;
            return;
        }
        None => return,
    };
    if let Err(e) = work(spec, &mut rx, &tx).await {
        let _ = tx
            .send(FromWorker::Error {
                message: format!("{e:#}"),
            })
            .await;
    }
}

async fn work(
    spec: WorkerSpec,
    rx: &mut mpsc::Receiver<ToWorker>,
    tx: &mpsc::Sender<FromWorker>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let start_us = now_us();
    let endpoints = spec
        .subscribe
        .iter()
        .map(|s| Endpoint::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!endpoints.is_empty(), "no subscribe URL");
    let lists = match spec.expect {
        ExpectSpec::Targeted {
            events,
            users,
            seed,
        } => Some(Arc::new(track::targeted_lists(
            spec.first, spec.count, events, users, seed,
        ))),
        _ => None,
    };
    let n = spec.count as usize;
    let shared = Arc::new(Shared {
        connect_sem: Semaphore::new(spec.connect_concurrency.max(1)),
        give_up: CancellationToken::new(),
        stop: CancellationToken::new(),
        resolved: Notify::new(),
        state: (0..n).map(|_| AtomicU8::new(PENDING)).collect(),
        unique: (0..n).map(|_| AtomicU32::new(0)).collect(),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        ended: AtomicU64::new(0),
        received: AtomicU64::new(0),
        unique_total: AtomicU64::new(0),
        other_events: AtomicU64::new(0),
        first_rx_us: AtomicU64::new(u64::MAX),
        last_rx_us: AtomicU64::new(0),
        last_ready_us: AtomicU64::new(0),
        hist: (0..HIST_SHARDS)
            .map(|_| Mutex::new(new_histogram()))
            .collect(),
        failures: Mutex::new(BTreeMap::new()),
        end_reasons: Mutex::new(BTreeMap::new()),
        endpoints,
        lists,
        spec,
    });
    let handles: Vec<_> = (0..n)
        .map(|local| tokio::spawn(subscriber(shared.clone(), local)))
        .collect();

    // Progress reports until the end.
    let ticker = {
        let shared = shared.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut last = (u64::MAX, 0, 0, 0);
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let c = shared.counts();
                let key = (c.connected, c.failed, c.received, c.ended);
                if key != last {
                    last = key;
                    if tx.send(FromWorker::Progress(c)).await.is_err() {
                        break;
                    }
                }
            }
        })
    };

    // Connect phase.
    let deadline = started + Duration::from_millis(shared.spec.connect_deadline_ms);
    loop {
        let notified = shared.resolved.notified();
        let c = shared.counts();
        if c.connected + c.failed >= n as u64 {
            break;
        }
        if Instant::now() >= deadline {
            shared.give_up.cancel();
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let counts = shared.counts();
    let failures = shared.failures.lock().clone();
    let end_us = match shared.last_ready_us.load(Relaxed) {
        0 => now_us(),
        t => t,
    };
    tx.send(FromWorker::Ready {
        counts,
        failures,
        start_us,
        end_us,
    })
    .await?;

    let mut issued = 0;
    let mut failed: Vec<u64> = Vec::new();
    loop {
        match rx.recv().await {
            Some(ToWorker::Drain {
                issued: i,
                failed: f,
                timeout_ms,
            }) => {
                issued = i;
                failed = f;
                failed.sort_unstable();
                let complete =
                    drain(&shared, issued, &failed, Duration::from_millis(timeout_ms)).await;
                tx.send(FromWorker::Drained {
                    counts: shared.counts(),
                    complete,
                    last_rx_us: shared.last_rx_us.load(Relaxed),
                })
                .await?;
            }
            Some(ToWorker::Finish) | None => break,
            Some(other) => anyhow::bail!("worker: unexpected {other:?}"),
        }
    }

    // Finish: stop every subscriber and gather the books.
    shared.give_up.cancel();
    shared.stop.cancel();
    ticker.abort();
    let mut result = WorkerResult {
        connected: shared.connected.load(Relaxed),
        ..WorkerResult::default()
    };
    let mut hashes: BTreeMap<u64, u64> = BTreeMap::new();
    let fanout = matches!(shared.spec.expect, ExpectSpec::All { .. });
    for handle in handles {
        let Ok(Some((tracker, ended_early))) = handle.await else {
            continue;
        };
        let v = tracker.verdict(issued, &failed);
        result.received += tracker.received;
        result.unique += tracker.unique;
        result.expected += v.expected;
        result.lost += v.lost;
        result.unconfirmed += v.unconfirmed;
        result.duplicates += tracker.duplicates;
        result.out_of_order += tracker.out_of_order;
        result.misdirected += tracker.misdirected;
        result.id_regressions += tracker.id_regressions;
        result.subscribers_with_loss += u64::from(v.lost > 0);
        result.subscribers_ended_early += u64::from(ended_early);
        if fanout
            && v.expected > 0
            && v.lost == 0
            && tracker.duplicates == 0
            && tracker.misdirected == 0
        {
            *hashes.entry(tracker.order_hash).or_default() += 1;
        }
    }
    result.order_hashes = hashes.into_iter().collect();
    result.other_events = shared.other_events.load(Relaxed);
    result.end_reasons = shared.end_reasons.lock().clone();
    result.first_rx_us = match shared.first_rx_us.load(Relaxed) {
        u64::MAX => 0,
        t => t,
    };
    result.last_rx_us = shared.last_rx_us.load(Relaxed);
    let mut merged = new_histogram();
    for shard in &shared.hist {
        merged.add(&*shard.lock()).ok();
    }
    result.latency = merged
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    tx.send(FromWorker::Result(Box::new(result))).await?;
    Ok(())
}

/// Waits until every live subscriber has all it should get, or `timeout`. Returns whether it
/// got there.
async fn drain(shared: &Shared, issued: u64, failed: &[u64], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let n = shared.spec.count as usize;
    // What each subscriber should have (the same for all in a fan-out).
    let expected: Vec<u64> = match (&shared.spec.expect, &shared.lists) {
        (ExpectSpec::Targeted { .. }, Some(lists)) => (0..n)
            .map(|i| {
                Tracker::new(Expect::Targeted {
                    lists: lists.clone(),
                    index: i,
                })
                .expected_count(issued, failed)
            })
            .collect(),
        (ExpectSpec::All { events }, _) => {
            let all = Tracker::new(Expect::All { events: *events }).expected_count(issued, failed);
            vec![all; n]
        }
        _ => vec![0; n],
    };
    let mut from = 0;
    loop {
        // Subscribers before `from` are known to be done (complete, failed or ended).
        while from < n {
            let state = shared.state[from].load(Relaxed);
            let done =
                state != READY || u64::from(shared.unique[from].load(Relaxed)) >= expected[from];
            if !done {
                break;
            }
            from += 1;
        }
        if from == n {
            if !failed.is_empty() {
                // Unconfirmed publishes may have been delivered and counted: give any
                // stragglers a moment.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One subscriber connection, once its response head is read.
struct Conn {
    stream: TcpStream,
    /// SSE: the body's framing. WebSocket: passes every byte through (close-delimited).
    decoder: BodyDecoder,
    /// Decoded body bytes not parsed yet (an incomplete line or frame).
    pending: Vec<u8>,
    parser: SseParser,
    /// WebSocket: the frame reader (SSE: `None`).
    ws: Option<WsReader>,
    /// Socket.IO: its handshake state (SSE and plain WebSocket: `None`).
    sio: Option<SioConn>,
    /// WebSocket: frames to send back (pongs), written after each read.
    reply: Vec<u8>,
    ready: bool,
}

/// A Socket.IO subscriber's handshake state.
struct SioConn {
    /// The namespace `CONNECT` packet, sent when the Engine.IO `open` arrives.
    connect: Option<Vec<u8>>,
}

thread_local! {
    /// One read buffer per runtime thread, shared by every connection that thread serves, so
    /// that an idle connection holds no read buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// A subscriber's life: connect, wait until ready, read until told to stop. Returns its
/// tracker and whether its stream ended before the stop, or `None` if it never connected.
async fn subscriber(sh: Arc<Shared>, local: usize) -> Option<(Tracker, bool)> {
    let global = sh.spec.first + local as u64;
    let endpoint = &sh.endpoints[(global % sh.endpoints.len() as u64) as usize];
    let source = target::source_addr(&endpoint.addr, sh.spec.source_addrs, global);
    let expect = match (&sh.spec.expect, &sh.lists) {
        (ExpectSpec::All { events }, _) => Expect::All { events: *events },
        (ExpectSpec::Targeted { .. }, Some(lists)) => Expect::Targeted {
            lists: lists.clone(),
            index: local,
        },
        _ => Expect::Nothing,
    };
    let mut tracker = Tracker::new(expect);
    let timeout = Duration::from_millis(sh.spec.connect_timeout_ms);
    let opened = tokio::select! {
        _ = sh.give_up.cancelled() => Err("not connected before the deadline".to_owned()),
        r = async {
            let _permit = sh.connect_sem.acquire().await;
            match tokio::time::timeout(timeout, open(&sh, endpoint, source, local, global, &mut tracker)).await {
                Ok(r) => r,
                Err(_) => Err("connect timeout".to_owned()),
            }
        } => r,
    };
    let mut conn = match opened {
        Ok(conn) => conn,
        Err(reason) => {
            bump(&sh.failures, reason);
            sh.state[local].store(FAILED, Relaxed);
            sh.failed.fetch_add(1, Relaxed);
            sh.resolved.notify_one();
            return None;
        }
    };
    sh.state[local].store(READY, Relaxed);
    sh.last_ready_us.fetch_max(now_us(), Relaxed);
    sh.connected.fetch_add(1, Relaxed);
    sh.resolved.notify_one();

    let mut ended_early = false;
    tokio::select! {
        _ = sh.stop.cancelled() => {}
        reason = read_loop(&sh, local, &mut conn, &mut tracker) => {
            ended_early = true;
            sh.state[local].store(ENDED, Relaxed);
            sh.ended.fetch_add(1, Relaxed);
            bump(&sh.end_reasons, reason);
        }
    }
    if !sh.spec.graceful_close {
        // RST: no TIME_WAIT left behind to eat the ephemeral ports of the next run.
        let _ = conn.stream.set_zero_linger();
    }
    drop(conn);
    Some((tracker, ended_early))
}

/// Connects, sends the request, reads the response head and waits for the ready event.
async fn open(
    sh: &Shared,
    endpoint: &Endpoint,
    source: Option<std::net::IpAddr>,
    local: usize,
    global: u64,
    tracker: &mut Tracker,
) -> Result<Conn, String> {
    let mut stream = http::connect(endpoint.addr, source)
        .await
        .map_err(|e| format!("connect: {}", io_reason(&e)))?;
    let mut request = Vec::with_capacity(256);
    let user = Name::numbered(&sh.spec.user_prefix, global);
    let vars = Vars {
        channel: if sh.spec.per_user_channel {
            user
        } else {
            Name::fixed(&sh.spec.channel)
        },
        user,
        index: global,
    };
    let mut path = Vec::with_capacity(128);
    endpoint.write_path(&mut path, &vars);
    let sio = endpoint.socketio.then(|| {
        let (target, connect) = sio::handshake(&path);
        path = target;
        SioConn {
            connect: Some(connect),
        }
    });
    let key = endpoint.websocket.then(|| ws::key_for(global));
    let mut headers = match &key {
        None => vec![
            ("Accept".to_owned(), "text/event-stream".to_owned()),
            ("Cache-Control".to_owned(), "no-cache".to_owned()),
        ],
        Some(key) => vec![
            ("Connection".to_owned(), "Upgrade".to_owned()),
            ("Upgrade".to_owned(), "websocket".to_owned()),
            ("Sec-WebSocket-Version".to_owned(), "13".to_owned()),
            ("Sec-WebSocket-Key".to_owned(), key.clone()),
        ],
    };
    headers.extend(sh.spec.headers.iter().cloned());
    http::write_request(&mut request, "GET", &endpoint.host, &path, &headers, None);
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("send: {}", io_reason(&e)))?;
    let mut raw = Vec::with_capacity(1024);
    let (head, len) = loop {
        if let Some(parsed) = http::parse_head(&raw, false).map_err(|e| e.to_string())? {
            break parsed;
        }
        raw.reserve(1024);
        match stream.read_buf(&mut raw).await {
            Ok(0) => return Err("closed before the response".to_owned()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {}", io_reason(&e))),
        }
    };
    let wanted = if key.is_some() { 101 } else { 200 };
    if head.status != wanted {
        let code = crate::util::json_str_field(&raw[len..], "code")
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        return Err(format!("HTTP {}{code}", head.status));
    }
    if let Some(key) = &key {
        if !head.upgrade.eq_ignore_ascii_case("websocket") {
            return Err(format!(
                "101 without Upgrade: websocket ({:?})",
                head.upgrade
            ));
        }
        if head.ws_accept != ws::accept_for(key) {
            return Err("wrong Sec-WebSocket-Accept".to_owned());
        }
    } else if !head.content_type.starts_with("text/event-stream") {
        return Err(format!(
            "not an event stream (content-type {:?})",
            head.content_type
        ));
    }
    let mut conn = Conn {
        stream,
        decoder: BodyDecoder::new(if key.is_some() {
            Framing::Close
        } else {
            head.framing
        }),
        pending: Vec::new(),
        parser: SseParser::default(),
        ws: key.is_some().then(WsReader::default),
        sio,
        reply: Vec::new(),
        // A Socket.IO subscriber is registered once the server acknowledges its namespace.
        ready: sh.spec.ready_event.is_none() && !endpoint.socketio,
    };
    conn.decoder
        .feed(&raw[len..], &mut conn.pending)
        .map_err(|e| e.to_string())?;
    drop(raw);
    process(sh, local, &mut conn, tracker)
        .await
        .map_err(|reason| format!("before the ready event: {reason}"))?;
    while !conn.ready {
        let read = read_some(&mut conn).await;
        match read {
            Ok(()) => process(sh, local, &mut conn, tracker).await,
            Err(reason) => Err(reason),
        }
        .map_err(|reason| format!("before the ready event: {reason}"))?;
    }
    Ok(conn)
}

/// Reads whatever the socket has into the connection's decoded buffer.
async fn read_some(conn: &mut Conn) -> Result<(), String> {
    let Conn {
        stream,
        decoder,
        pending,
        ..
    } = conn;
    loop {
        if decoder.is_done() {
            return Err("response ended".to_owned());
        }
        stream
            .readable()
            .await
            .map_err(|e| format!("read: {}", io_reason(&e)))?;
        let read = SCRATCH.with_borrow_mut(|buf| {
            // A read shorter than the buffer drained the socket: answering `WouldBlock` from
            // `try_io` then clears the readiness flag (unless an event came in meanwhile), which
            // saves the second `read` that would only have said `EAGAIN`. Half the syscalls
            // when every event arrives on its own.
            let mut short = None;
            let result = stream.try_io(Interest::READABLE, || {
                let n = stream.try_read(buf)?;
                if n > 0 && n < buf.len() {
                    short = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            let n = match (short, result) {
                (Some(n), _) => n,
                (None, Ok(0)) => return Err("closed by the server".to_owned()),
                (None, Ok(n)) => n,
                (None, Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(false)
                }
                (None, Err(e)) => return Err(format!("read: {}", io_reason(&e))),
            };
            decoder
                .feed(&buf[..n], pending)
                .map_err(|e| format!("bad body: {e}"))?;
            if pending.len() > MAX_PENDING {
                return Err(format!(
                    "an SSE line or WebSocket frame longer than {MAX_PENDING} bytes"
                ));
            }
            Ok(true)
        })?;
        if read {
            return Ok(());
        }
    }
}

/// Reads and books events until the stream ends; returns why it ended.
async fn read_loop(sh: &Shared, local: usize, conn: &mut Conn, tracker: &mut Tracker) -> String {
    loop {
        if let Err(reason) = read_some(conn).await {
            return reason;
        }
        if let Err(reason) = process(sh, local, conn, tracker).await {
            return reason;
        }
    }
}

/// Parses the complete events in the connection's buffer and books them; a WebSocket's answers
/// to pings are written before it returns. An error is why the stream must end (a close frame,
/// a bad frame, a failed write).
async fn process(
    sh: &Shared,
    local: usize,
    conn: &mut Conn,
    tracker: &mut Tracker,
) -> Result<(), String> {
    book(sh, local, conn, tracker)?;
    if !conn.reply.is_empty() {
        conn.stream
            .write_all(&conn.reply)
            .await
            .map_err(|e| format!("send pong: {}", io_reason(&e)))?;
        conn.reply = Vec::new();
    }
    Ok(())
}

fn book(sh: &Shared, local: usize, conn: &mut Conn, tracker: &mut Tracker) -> Result<(), String> {
    if conn.pending.is_empty() {
        return Ok(());
    }
    let now = now_us();
    let mut got = 0u64;
    let mut new = 0u32;
    let mut other = 0u64;
    let mut hist = None;
    let ready_event = sh.spec.ready_event.as_deref().map(str::as_bytes);
    let Conn {
        pending,
        parser,
        ws,
        sio,
        reply,
        ready,
        ..
    } = conn;
    let mut sio_out = Vec::new();
    let mut sio_end = None;
    let mut sio_connected = false;
    let mut on_event = |name: &[u8], id: Option<&[u8]>, data: &[u8]| {
        if let Some(id) = id {
            tracker.record_id(id);
        }
        if !*ready && Some(name) == ready_event {
            *ready = true;
            other += 1;
            return;
        }
        let Some((seq, ts)) = scan_payload(data) else {
            other += 1;
            return;
        };
        got += 1;
        new += u32::from(tracker.record(seq));
        hist.get_or_insert_with(|| sh.hist[local % HIST_SHARDS].lock())
            .saturating_record(now.saturating_sub(ts).max(1));
    };
    let ended = match ws {
        None => {
            parser.feed(pending, &mut on_event);
            Ok(())
        }
        Some(reader) => reader
            .feed(pending, reply, |message| {
                let Some(sio) = sio.as_mut() else {
                    let (name, id, data) = ws::split_message(message);
                    on_event(name, id, data);
                    return;
                };
                match sio::parse(message) {
                    sio::Packet::Event { name, data } => on_event(name, None, data),
                    sio::Packet::Ping => ws::write_frame(&mut sio_out, ws::TEXT, b"3"),
                    sio::Packet::Open => {
                        if let Some(connect) = sio.connect.take() {
                            ws::write_frame(&mut sio_out, ws::TEXT, &connect);
                        }
                    }
                    sio::Packet::Connected => sio_connected = true,
                    sio::Packet::ConnectError(why) => {
                        sio_end.get_or_insert_with(|| {
                            format!("Socket.IO connect_error {}", String::from_utf8_lossy(why))
                        });
                    }
                    sio::Packet::Disconnect => {
                        sio_end.get_or_insert_with(|| "disconnected by the server".to_owned());
                    }
                    sio::Packet::Other => {}
                }
            })
            .map(drop)
            .map_err(|end| end.to_string()),
    };
    reply.extend_from_slice(&sio_out);
    if sio_connected && ready_event.is_none() {
        *ready = true;
    }
    let ended = match (ended, sio_end) {
        (Ok(()), Some(why)) => Err(why),
        (ended, _) => ended,
    };
    if ws.as_ref().is_some_and(|r| r.held() > MAX_PENDING) {
        return Err(format!(
            "a fragmented WebSocket message longer than {MAX_PENDING} bytes"
        ));
    }
    drop(hist);
    if new > 0 {
        sh.unique[local].fetch_add(new, Relaxed);
        sh.unique_total.fetch_add(u64::from(new), Relaxed);
    }
    if got > 0 {
        sh.received.fetch_add(got, Relaxed);
        sh.last_rx_us.fetch_max(now, Relaxed);
        sh.first_rx_us.fetch_min(now, Relaxed);
    }
    if other > 0 {
        sh.other_events.fetch_add(other, Relaxed);
    }
    ended
}

/// A short, stable description of an I/O error for grouping failures.
fn io_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(_) => e.to_string(),
        None => format!("{:?}", e.kind()),
    }
}

/// `herald-bench worker`: runs one worker on stdin/stdout JSON lines.
pub(crate) async fn worker_process_main() -> anyhow::Result<()> {
    let (to_tx, to_rx) = mpsc::channel(16);
    let (from_tx, mut from_rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<ToWorker>(&line) {
                Ok(cmd) => {
                    if to_tx.send(cmd).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("herald-bench worker: bad command {line:?}: {e}");
                    break;
                }
            }
        }
        // stdin closed: the parent is gone or done; dropping `to_tx` ends the worker.
    });
    let worker = tokio::spawn(run_worker(to_rx, from_tx));
    let mut out = tokio::io::stdout();
    while let Some(msg) = from_rx.recv().await {
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        out.write_all(&line).await?;
        out.flush().await?;
    }
    worker.await?;
    Ok(())
}
