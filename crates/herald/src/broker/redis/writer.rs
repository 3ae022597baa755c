//! The publish writer: every publish of this node goes through one task that sends the
//! publishes that arrived together as one batch, in one call of the publish script
//! ([`super::scripts`]), and hands each publisher its own answer.
//!
//! - **Group commit.** While one batch is at Redis, the publishes that arrive queue up (in a
//!   bounded queue: beyond [`QUEUE`] waiting publishes a publish is refused with
//!   [`EngineError::Overloaded`] before anything is sent); the next batch takes all of them, up
//!   to [`MAX_BATCH`]. One publisher with one request in flight gets a batch of one, so
//!   batching adds no wait; many publishers share a round trip and the script's fixed cost.
//! - **Off the fan-out's runtime.** The writer runs on a thread of its own with its own
//!   connection to Redis, so the answer from Redis is read at once, never after the thousands
//!   of event-stream tasks that a fan-out wakes on the main runtime. (The publisher's own task
//!   runs on the API runtime, see [`crate::server::ServerOptions::api_runtime`].)
//! - **Nothing acknowledged is lost, nothing refused is published.** The script runs a batch
//!   atomically: all of it or none of it. A batch that fails before it is sent is answered
//!   [`EngineError::Unavailable`] (nothing published); once it has been sent, a timeout or a
//!   lost connection answers every publish of it [`EngineError::OutcomeUnknown`] (it may have
//!   run: Redis holds it or lost it with its data, and a new epoch tells the nodes). Redis's
//!   `NOREPLICAS` is the exception: Redis refuses the script's first write before it makes
//!   any, so it is answered `Unavailable`. A publish waits at most `command_timeout` in the
//!   queue (then it is refused, unsent) plus one round trip of `command_timeout`.
//! - **Connected with the session.** The writer opens its connection when the supervisor opens
//!   a session, before the session is reported up ([`Handle::open`]): a node that is ready
//!   has its writer connected, and no publish pays a connect. A publish that arrives while
//!   Redis reconnects waits for the new session (bounded, see `Shared::ready`).
//! - **Order.** The queue is first in, first out and the script gives the events of a batch
//!   their sequences in that order, so one publisher's events keep the order it published them
//!   in.

use std::sync::Arc;
use std::time::Instant;

use ::redis::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{epoch_of, flag, millis, number, text, Commands, Shared};
use crate::engine::EngineError;
use crate::event::Epoch;

/// Publishes waiting for the writer, at most; beyond, a publish is refused (`503 overloaded`).
pub(super) const QUEUE: usize = 8192;
/// Publishes in one script call, at most (Redis runs a script without serving anything else:
/// a batch this size takes a few milliseconds there).
pub(super) const MAX_BATCH: usize = 256;

/// One publish, ready for the script.
#[derive(Debug)]
pub(super) struct Pending {
    /// Its idempotency key's Redis key (the meta key when it has none).
    pub(super) idempotency_key: String,
    /// The fingerprint of the publication ("" without an idempotency key).
    pub(super) fingerprint: String,
    /// `Event::stored_form`.
    pub(super) stored: String,
    /// `wire::encode_targets`.
    pub(super) targets: String,
    pub(super) everyone: bool,
    pub(super) fallback: bool,
    /// `Event::size_of`.
    pub(super) size: usize,
    /// The publisher's id for the event (`Broker::publish_keyed`), "" for none.
    pub(super) key: String,
    pub(super) queued: Instant,
    pub(super) reply: oneshot::Sender<Result<Outcome, EngineError>>,
}

/// What the script did with one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) epoch: Epoch,
    pub(super) seq: u64,
    pub(super) delivered: u64,
    /// Live nodes that do not report their connections (for a targeted publish).
    pub(super) without_presence: u64,
    pub(super) kind: OutcomeKind,
}

/// How the script answered one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutcomeKind {
    /// Published now.
    New,
    /// The idempotency key's first answer; nothing published.
    Replayed,
    /// The idempotency key was used for another event; nothing published.
    Reused,
}

/// A request of the supervisor: connect the writer for a new session (before the session is
/// reported up, so that the first publish of a session pays no connect and cannot find Redis
/// unreachable once the engine said it was up).
pub(super) struct Open {
    pub(super) session: u64,
    /// The session's server (with Sentinel, the master the supervisor found).
    pub(super) client: ::redis::Client,
    /// Answered once the writer's connection for `session` is open, or why it is not.
    pub(super) done: oneshot::Sender<Result<(), String>>,
}

/// The running writer: its queue of publishes and its queue of session changes.
#[derive(Debug, Clone)]
pub(super) struct Handle {
    pub(super) queue: mpsc::Sender<Pending>,
    sessions: mpsc::Sender<Open>,
}

impl Handle {
    /// Has the writer open its connection for `session` on `client`'s server; resolves when it
    /// is open. Bounded: the writer first answers the batch it may have at Redis (at most
    /// `command_timeout`), then connects (at most twice that).
    pub(super) async fn open(
        &self,
        shared: &Shared,
        session: u64,
        client: ::redis::Client,
    ) -> Result<(), String> {
        let (done, opened) = oneshot::channel();
        let open = Open {
            session,
            client,
            done,
        };
        if self.sessions.send(open).await.is_err() {
            return Err("the Redis publish writer stopped".into());
        }
        let limit = shared.options.command_timeout * 4;
        match tokio::time::timeout(limit, opened).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the Redis publish writer stopped".into()),
            Err(_) => Err(format!(
                "the Redis publish writer did not connect within {limit:?}"
            )),
        }
    }
}

/// Starts the writer on a thread of its own; returns its handle and a receiver that resolves
/// when the thread has ended (after `cancel`, once the batch at Redis is answered).
pub(super) fn spawn(
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> std::io::Result<(Handle, oneshot::Receiver<()>)> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (sessions_tx, sessions) = mpsc::channel(4);
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("herald-redis-pub".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(run(&shared, rx, sessions, cancel)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the Redis publish writer's runtime");
                    refuse_all(rx, || {
                        EngineError::Unavailable("the Redis publish writer did not start".into())
                    });
                }
            }
            let _ = done_tx.send(());
        })?;
    let handle = Handle {
        queue: tx,
        sessions: sessions_tx,
    };
    Ok((handle, done_rx))
}

/// Takes the queue's publishes in batches, and opens the connection of each new session when
/// the supervisor asks, until `cancel`; then refuses what is still queued.
async fn run(
    shared: &Shared,
    mut rx: mpsc::Receiver<Pending>,
    mut sessions: mpsc::Receiver<Open>,
    cancel: CancellationToken,
) {
    // The writer's own connection, and the supervisor's session it was opened for.
    let mut link: Option<Commands> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            // Before the publishes: they are for the session being opened.
            Some(open) = sessions.recv() => {
                let opened = connect(shared, &mut link, open.session, open.client).await;
                let _ = open.done.send(opened);
                continue;
            }
            next = rx.recv() => match next {
                Some(p) => p,
                None => break,
            },
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // Not raced against `cancel`: a batch that was sent is answered.
        write(shared, &mut link, &mut batch).await;
    }
    refuse_all(rx, || EngineError::NotRunning);
}

/// Opens the writer's connection for `session` (dropping the one of an earlier session).
async fn connect(
    shared: &Shared,
    link: &mut Option<Commands>,
    session: u64,
    client: ::redis::Client,
) -> Result<(), String> {
    *link = None;
    let conn = shared
        .open_connection(&client, shared.options.command_timeout)
        .await?;
    *link = Some(Commands { conn, session });
    Ok(())
}

fn refuse_all(mut rx: mpsc::Receiver<Pending>, error: impl Fn() -> EngineError) {
    rx.close();
    while let Ok(p) = rx.try_recv() {
        let _ = p.reply.send(Err(error()));
    }
}

/// Sends one batch and answers each of its publishes; leaves `batch` empty.
async fn write(shared: &Shared, link: &mut Option<Commands>, batch: &mut Vec<Pending>) {
    let limit = shared.options.command_timeout;
    // A publisher that gave up (its request was cancelled) publishes nothing, as when its own
    // call was dropped before sending; one that waited too long is refused, unsent.
    let mut ready = Vec::with_capacity(batch.len());
    for p in batch.drain(..) {
        if p.reply.is_closed() {
            continue;
        }
        if p.queued.elapsed() > limit {
            let _ = p.reply.send(Err(EngineError::Unavailable(format!(
                "the publish waited {limit:?} for Redis"
            ))));
            continue;
        }
        ready.push(p);
    }
    *batch = ready;
    if batch.is_empty() {
        return;
    }
    let answers = match connection(shared, link).await {
        Ok(conn) => send(shared, conn, batch).await,
        Err(e) => Err(e),
    };
    match answers {
        Ok(outcomes) => {
            for (p, outcome) in batch.drain(..).zip(outcomes) {
                let _ = p.reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            for p in batch.drain(..) {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

/// The writer's connection for the supervisor's current session. The supervisor has the
/// writer connect before it reports a session up ([`Handle::open`]), so this only finds it
/// missing when that session has already ended; nothing is sent before the supervisor has
/// checked where the stream stands ([`Shared::commands`] is empty until then).
async fn connection<'a>(
    shared: &Shared,
    link: &'a mut Option<Commands>,
) -> Result<&'a mut Commands, EngineError> {
    let session = shared.commands()?.session;
    match link {
        Some(l) if l.session == session => Ok(l),
        _ => Err(EngineError::Unavailable(
            "Redis is reconnecting (the publish writer has no connection for this session)".into(),
        )),
    }
}

/// One script call for the batch; one outcome per publish, in order.
async fn send(
    shared: &Shared,
    link: &mut Commands,
    batch: &[Pending],
) -> Result<Vec<Outcome>, EngineError> {
    let keys = &shared.keys;
    let kept = shared.transport_limits();
    let mut call = shared.scripts.publish.prepare_invoke();
    call.key(keys.meta()).key(keys.events()).key(keys.nodes());
    for p in batch {
        call.key(&p.idempotency_key);
    }
    call.arg(Epoch::random().to_string())
        .arg(kept.max_events)
        .arg(kept.max_bytes)
        .arg(millis(kept.max_age))
        .arg(millis(shared.options.node_ttl))
        .arg(keys.node_prefix())
        .arg(&shared.options.node_id)
        .arg(super::keys::USERS)
        .arg(super::keys::CHANNELS)
        .arg(super::keys::CONNECTIONS)
        .arg(millis(shared.options.idempotency_window).max(1));
    for p in batch {
        call.arg(&p.stored)
            .arg(&p.targets)
            .arg(flag(p.everyone))
            .arg(flag(p.fallback))
            .arg(&p.fingerprint)
            .arg(p.size)
            .arg(&p.key);
    }
    // Once the script has been sent, a timeout or a lost connection leaves its outcome
    // unknown: it may have run. Only a failure before sending is "nothing was sent", and so is
    // Redis's `NOREPLICAS` (`min-replicas-to-write`): Redis refuses the script's first write
    // before it makes any, so the batch wrote nothing.
    let session = link.session;
    let conn = &mut link.conn;
    let refused_or_reply = shared
        .run(session, async {
            match call.invoke_async::<Vec<Value>>(conn).await {
                Err(e) if e.code() == Some("NOREPLICAS") => Ok(Err(e.to_string())),
                other => other.map(Ok),
            }
        })
        .await
        .map_err(|e| match e {
            EngineError::Unavailable(reason) => EngineError::OutcomeUnknown(reason),
            other => other,
        })?;
    let reply = refused_or_reply.map_err(|reason| {
        EngineError::Unavailable(format!(
            "Redis refused the write, nothing was published: {reason}"
        ))
    })?;
    parse(&reply, batch.len()).ok_or_else(|| {
        EngineError::OutcomeUnknown("unexpected answer from the publish script".into())
    })
}

/// The script's answer: six values per publish.
fn parse(reply: &[Value], n: usize) -> Option<Vec<Outcome>> {
    if reply.len() != n * 6 {
        return None;
    }
    reply
        .chunks_exact(6)
        .map(|v| {
            let kind = match text(&v[5])?.as_str() {
                "new" => OutcomeKind::New,
                "replayed" => OutcomeKind::Replayed,
                "reused" => OutcomeKind::Reused,
                _ => return None,
            };
            if kind == OutcomeKind::Reused {
                return Some(Outcome {
                    epoch: Epoch::from_u64(0),
                    seq: 0,
                    delivered: 0,
                    without_presence: 0,
                    kind,
                });
            }
            Some(Outcome {
                epoch: epoch_of(&v[0])?,
                seq: number(&v[1])?,
                delivered: number(&v[3]).unwrap_or(0),
                without_presence: number(&v[4]).unwrap_or(0),
                kind,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_per_publish() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = vec![
            bulk("0123456789ab"),
            bulk("17"),
            Value::Int(0),
            Value::Int(3),
            Value::Int(1),
            bulk("new"),
            bulk(""),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            bulk("reused"),
            bulk("0123456789ab"),
            bulk("12"),
            Value::Int(0),
            Value::Int(2),
            Value::Int(0),
            bulk("replayed"),
        ];
        let out = parse(&reply, 3).unwrap();
        assert_eq!(out[0].seq, 17);
        assert_eq!(out[0].delivered, 3);
        assert_eq!(out[0].without_presence, 1);
        assert_eq!(out[0].kind, OutcomeKind::New);
        assert_eq!(out[1].kind, OutcomeKind::Reused);
        assert_eq!((out[2].seq, out[2].kind), (12, OutcomeKind::Replayed));
        assert!(
            parse(&reply, 2).is_none(),
            "a short or long answer is refused"
        );
        let mut bad = reply.clone();
        bad[5] = bulk("odd");
        assert!(parse(&bad, 3).is_none());
    }
}
