//! The broker's background work: a supervisor keeps one session of Redis connections up (the
//! command connection, the blocking stream reader, the pub/sub subscription, and the publish
//! writer's connection on the writer's thread) and runs the
//! reader, the control loop and the periodic maintenance on it; when any of them fails it marks
//! Redis down, waits (capped exponential backoff with jitter) and opens a new session. Every
//! loop ends when the broker's cancellation token fires. The presence store writes through the
//! session's command connection ([`Shared::commands`]) from its own task.
//!
//! Every session starts by resolving where Redis is ([`Shared::resolve`]): with Redis Sentinel,
//! the sentinels are asked for the master again, so that after a failover all three
//! connections, and with them the presence store's writes, go to the newly promoted master,
//! never back to the old address.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::{MultiplexedConnection, PubSub};
use ::redis::Value;

use futures_util::StreamExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::wire::{Reply, Request};
use super::{epoch_of, text, Entry, Shared, READ_BATCH, READ_BLOCK};

/// First pause before reconnecting.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// How long the reader waits before looking again whether this node's fan-out caught up.
const OVERLOAD_PAUSE: Duration = Duration::from_millis(10);

/// Capped exponential backoff with jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: MIN_BACKOFF,
            max: max.max(MIN_BACKOFF),
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

/// The broker's background work: keeps a session (commands, reader, subscription,
/// maintenance) up, reconnecting with backoff whenever it fails, until `cancel`.
pub(super) async fn supervise(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut backoff = Backoff::new(shared.options.max_backoff);
    // Where the last session was, to log a move to another server (a Sentinel failover).
    let mut last_server: Option<String> = None;
    loop {
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            opened = Session::open(&shared) => opened,
        };
        // Before this node publishes again: if Redis lost its data (or events this node already
        // delivered), move to the new epoch first, so that no new event reuses an old id.
        let opened = match opened {
            Ok(mut session) => {
                let checked = tokio::select! {
                    _ = cancel.cancelled() => return,
                    checked = shared.check_position(&mut session.reader) => checked,
                };
                checked.map(|()| session).map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        // The publish writer connects as part of the session: once the session is up, a
        // publish pays no connect and cannot find Redis unreachable.
        let number = shared.next_session();
        let opened = match (opened, shared.writer.get()) {
            (Ok(session), Some(writer)) => {
                let connected = tokio::select! {
                    _ = cancel.cancelled() => return,
                    connected = writer.open(&shared, number, session.client.clone()) => connected,
                };
                connected.map(|()| session)
            }
            (opened, _) => opened,
        };
        match opened {
            Ok(session) => {
                if last_server.as_ref().is_some_and(|s| *s != session.server) {
                    tracing::warn!(
                        node = %shared.options.node_id,
                        from = last_server.as_deref().unwrap_or_default(),
                        to = %session.server,
                        "Redis moved to another server (a Sentinel failover): connected to the \
                         new master"
                    );
                }
                last_server = Some(session.server.clone());
                // The control subscription was confirmed when the session opened
                // (`open_pubsub`): a node reports ready only once commands reach it.
                shared.up(number, session.commands.clone());
                let started = Instant::now();
                let failure = tokio::select! {
                    _ = cancel.cancelled() => return,
                    failure = session.run(&shared) => failure,
                };
                shared.down(&failure);
                if started.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
            }
            Err(e) => shared.down(&e),
        }
        let delay = backoff.next();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The connections of one stretch of Redis availability.
struct Session {
    /// The server's address (`host:port`), for logs.
    server: String,
    /// The server (with Sentinel, the master found for this session).
    client: redis::Client,
    commands: MultiplexedConnection,
    reader: MultiplexedConnection,
    pubsub: PubSub,
}

impl Session {
    /// Finds the server (asking the sentinels again, with Sentinel) and opens the session's
    /// three connections to it.
    async fn open(shared: &Shared) -> Result<Session, String> {
        let client = shared.resolve().await?;
        let commands = shared
            .open_connection(&client, shared.options.command_timeout)
            .await?;
        let reader = shared
            .open_connection(&client, READ_BLOCK + shared.options.command_timeout)
            .await?;
        let pubsub = shared.open_pubsub(&client).await?;
        Ok(Session {
            server: client.get_connection_info().addr().to_string(),
            client,
            commands,
            reader,
            pubsub,
        })
    }

    /// Runs the reader, the control loop and the maintenance until one fails; returns why.
    async fn run(self, shared: &Shared) -> String {
        let Session {
            server: _,
            client: _,
            commands,
            mut reader,
            pubsub,
        } = self;
        let broken = shared.broken.notified();
        tokio::select! {
            failure = read_loop(shared, &mut reader) => failure,
            failure = control_loop(shared, pubsub, commands.clone()) => failure,
            failure = maintenance_loop(shared, commands) => failure,
            _ = broken => "a command found the connection broken".into(),
        }
    }
}

/// Reads the stream and delivers every event, in order; returns why it stopped.
async fn read_loop(shared: &Shared, conn: &mut MultiplexedConnection) -> String {
    let events = shared.keys.events();
    // The supervisor checked the position when it opened the session.
    let mut check = false;
    loop {
        if check {
            if let Err(e) = shared.check_position(conn).await {
                return e.to_string();
            }
            check = false;
        }
        // This node's fan-out is far behind: let the events wait in Redis rather than in memory
        // (a node that falls behind the stream's window resets its clients; see `Shared::gap`).
        while shared.delivery.get().is_some_and(|d| d.is_overloaded()) {
            tokio::time::sleep(OVERLOAD_PAUSE).await;
        }
        let cursor = shared.position.lock().seq;
        let mut read = ::redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(READ_BATCH)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&events)
            .arg(format!("{cursor}-0"));
        let reply: Value = match read.query_async(conn).await {
            Ok(v) => v,
            Err(e) => return e.to_string(),
        };
        let entries = parse_xread(reply);
        if entries.is_empty() {
            // Quiet: check that Redis still has our epoch and that we are not behind its start.
            check = true;
            continue;
        }
        for entry in entries {
            let (seq, epoch) = (entry.seq, entry.epoch);
            if shared.take(entry) {
                continue;
            }
            // An event of another epoch: Redis may have lost its data (and got a new epoch).
            let before = shared.position.lock().epoch;
            if let Err(e) = shared.check_position(conn).await {
                return e.to_string();
            }
            if shared.position.lock().epoch != before {
                break; // Read the new epoch's stream from its start.
            }
            // Redis still has our epoch: the event is not one of ours (written by hand, or by
            // something that is not Herald). Step over it rather than read it forever.
            tracing::warn!(
                seq,
                ?epoch,
                "skipping an event of an epoch Redis does not have"
            );
            shared.step_over(seq);
        }
    }
}

/// Carries out commands and answers queries from other nodes, and routes answers to this
/// node's queries; returns why it stopped.
async fn control_loop(shared: &Shared, pubsub: PubSub, mut conn: MultiplexedConnection) -> String {
    let control = shared.keys.control();
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let payload = message.get_payload_bytes();
        if message.get_channel_name() == control {
            let request: Request = match serde_json::from_slice(payload) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a control message this node cannot read");
                    continue;
                }
            };
            let reply = shared.answer(&request);
            let Ok(text) = serde_json::to_string(&reply) else {
                continue;
            };
            let mut publish = ::redis::cmd("PUBLISH");
            publish.arg(shared.keys.reply(&request.from)).arg(text);
            let sent = tokio::time::timeout(
                shared.options.command_timeout,
                publish.query_async::<i64>(&mut conn),
            )
            .await;
            match sent {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return e.to_string(),
                Err(_) => return "Redis did not answer in time".into(),
            }
        } else {
            match serde_json::from_slice::<Reply>(payload) {
                Ok(reply) => {
                    if let Some(tx) = shared.pending.lock().get(&reply.req) {
                        let _ = tx.send(reply);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "ignoring an answer this node cannot read"),
            }
        }
    }
    "the pub/sub connection closed".into()
}

/// Trims the stream by age and refreshes the window's figures every `presence_interval`;
/// returns why it stopped.
async fn maintenance_loop(shared: &Shared, mut conn: MultiplexedConnection) -> String {
    let mut ticker = tokio::time::interval(shared.options.presence_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let done =
            tokio::time::timeout(shared.options.command_timeout, shared.maintain(&mut conn)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e.to_string(),
            Err(_) => return "Redis did not answer in time".into(),
        }
    }
}

/// The entries of an `XREAD` answer (none when it timed out).
fn parse_xread(reply: Value) -> Vec<Entry> {
    let streams = match reply {
        Value::Array(streams) => streams,
        Value::Map(streams) => streams
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect::<Vec<_>>()
            .chunks(2)
            .map(|pair| Value::Array(pair.to_vec()))
            .collect(),
        _ => return Vec::new(),
    };
    let mut entries = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(list)) = parts.pop() else {
            continue;
        };
        for item in list {
            if let Some(entry) = parse_entry(item) {
                entries.push(entry);
            }
        }
    }
    entries
}

fn parse_entry(item: Value) -> Option<Entry> {
    let Value::Array(mut parts) = item else {
        return None;
    };
    let fields = parts.pop()?;
    let id = text(parts.first()?)?;
    let seq = id.split('-').next()?.parse().ok()?;
    let mut entry = Entry {
        seq,
        epoch: None,
        event: String::new(),
        targets: String::new(),
        everyone: false,
    };
    let list = match fields {
        Value::Array(list) => list,
        Value::Map(map) => map.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return None,
    };
    // Every node reads every event of the cluster: the names are compared as bytes and the
    // values taken, not copied.
    let mut fields = list.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match field_name(&name) {
            // The storage form, or the SSE frame of an earlier release.
            Some(b"v" | b"f") => entry.event = into_text(value)?,
            Some(b"e") => entry.epoch = epoch_of(&value),
            Some(b"t") => entry.targets = into_text(value)?,
            Some(b"b") => entry.everyone = field_name(&value) == Some(b"1"),
            _ => {}
        }
    }
    Some(entry)
}

fn field_name(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn into_text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        other => text(&other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Epoch;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let delays: Vec<Duration> = (0..6).map(|_| b.next()).collect();
        assert!(delays[0] < Duration::from_millis(130));
        assert!(delays[5] <= Duration::from_millis(600));
        assert!(delays[5] >= Duration::from_millis(400));
        b.reset();
        assert!(b.next() < Duration::from_millis(130));
    }

    #[test]
    fn xread_answers_parse() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("herald:events"),
            Value::Array(vec![Value::Array(vec![
                bulk("1752000000000001-0"),
                Value::Array(vec![
                    bulk("f"),
                    bulk("id: 0123456789ab-1752000000000001\nevent: x\ndata: 1\n\n"),
                    bulk("e"),
                    bulk("0123456789ab"),
                    bulk("t"),
                    bulk("\nu:alice\n"),
                    bulk("b"),
                    bulk("0"),
                ]),
            ])]),
        ])]);
        let entries = parse_xread(reply);
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.seq, 1_752_000_000_000_001);
        assert_eq!(e.epoch, Some(Epoch::from_u64(0x0123_4567_89ab)));
        assert!(!e.everyone);
        assert_eq!(e.targets, "\nu:alice\n");
        assert!(parse_xread(Value::Nil).is_empty());
    }
}
