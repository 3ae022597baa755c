//! The replay window on disk (`--data-dir`), in an embedded [redb] database, so that a hub
//! restarted between two publishes still lets its clients resume.
//!
//! Writes never slow publishing down: the memory broker hands each retained event to a writer
//! thread through a queue, and the thread commits whatever has queued up in one transaction
//! (group commit), pruning what fell out of the window in the same transaction. The thread starts with
//! the hub ([`DurableHistory::start`], from [`Broker::start`](super::Broker::start)), not when
//! the store is opened. A graceful shutdown flushes everything and marks the store clean.
//!
//! What the disk does not hold is never papered over:
//! - **Ids are reserved before they are issued.** Every transaction also records
//!   `reserved_until`, a block of ids ahead of the newest one written; the broker issues no id
//!   above the last committed reservation. After a crash the restarted hub continues above the
//!   reservation (recording `(last on disk, reservation]` as a hole) and reserves a new block in
//!   the same transaction that opens the store, so two crashes in a row never reuse an id.
//! - **Failed writes leave a hole that is found again.** A batch that cannot be committed is not
//!   on disk (its events stay in the memory window and were delivered live, so this run still
//!   replays them). Ids on disk are otherwise contiguous (pruning only drops the oldest), so on
//!   the next start every jump between two stored ids is a hole, and so is `(last stored id,
//!   head]`, where head is the newest id issued (written by a clean shutdown) or, after a crash,
//!   the reservation. While writes fail `/readyz` is degraded, each failure is logged and counted
//!   (`herald_durable_history_write_failures_total`, `..._unpersisted_events_total`), and the
//!   writer retries every second until the disk takes writes again.
//! - **A resume never walks across a hole**: from before or inside one it gets `reset`
//!   (`history_gap`).
//! - **Publishing never waits for the disk.** When the writer is [`QUEUE`] events behind, a
//!   publish is refused with `503 overloaded` before it takes an id; when the reservation runs
//!   out because writes keep failing, with `503 engine_unavailable`. Nothing is lost silently.
//!
//! The format is the release's (`events`, `meta` with `epoch` and `clean_shutdown`) plus the
//! `reserved_until` and `head` meta keys, which an older release ignores; a store without them
//! (written by an older release) opens as before: after an unclean stop its ids continue
//! 1,000,000 above the last one on disk.
//!
//! Each record holds the event in its storage form (`event`, [`Event::stored_form`], the same
//! form a Redis stream holds) with its targets. Records written before events became
//! transport-neutral hold the SSE frame instead (`frame`); they are read back as events (a
//! payload that parses as JSON is JSON, as every publish of those releases was). A store this
//! release wrote cannot be opened by an earlier one (it would skip every record as unreadable):
//! keep a copy of the directory if you may need to downgrade.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, EngineHealth};
use crate::event::{Epoch, Event, EventId};
#[cfg(test)]
use crate::event::{EventName, Payload};
use crate::history::{HistoryEntry, HistoryLimits, ReplayBuffer};
use crate::lifecycle::Lifecycle;
use crate::sse::frame;
use crate::target::{Fallback, TargetFields};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_EPOCH: &str = "epoch";
const META_CLEAN: &str = "clean_shutdown";

/// Longest wait at shutdown for the writer to flush what it holds.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// No id above this one was issued (written before any such id is).
const META_RESERVED: &str = "reserved_until";
/// The newest id issued, written by a clean shutdown.
const META_HEAD: &str = "head";
/// Ids skipped after an unclean shutdown of a store without a reservation (older releases).
const CRASH_ID_GAP: u64 = 1_000_000;
/// Ids reserved ahead of the newest one written. Far more than [`QUEUE`], so the reservation only
/// runs out when writes keep failing.
const RESERVE_BLOCK: u64 = 1_000_000;
/// Most events waiting for the writer; beyond, publishes are refused (`503 overloaded`).
pub const QUEUE: usize = 65_536;
/// Most events per transaction.
const MAX_BATCH: usize = 4096;
/// How often a failing writer tries the disk again when no event arrives.
const RETRY: Duration = Duration::from_secs(1);

/// Failures opening the durable history.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// The directory or database could not be opened or read.
    #[error("durable history in {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The on-disk form of one event. Its targets are the JSON form every JSON writer of targets
/// shares ([`TargetFields`]: `users`, `channels`, `connections`, `broadcast`, `fallback`).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// Published at, ms since the Unix epoch.
    t: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fell_back: bool,
    #[serde(flatten)]
    targets: TargetFields,
    /// How releases before `TargetFields` wrote `"fallback": "broadcast"`: still read, no
    /// longer written.
    #[serde(default, skip_serializing)]
    fallback_broadcast: bool,
    /// The event's storage form ([`Event::stored_form`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    /// Written by releases before transport-neutral events: the event's SSE frame, read back
    /// with [`frame::decode_stored_frame`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame: Option<String>,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Record {
    fn from_entry(e: &HistoryEntry) -> Self {
        Record {
            t: millis(e.published_at),
            fell_back: e.fell_back,
            targets: TargetFields::from(&e.targets),
            fallback_broadcast: false,
            event: Some(Event::stored_form(&e.event.name, &e.event.payload)),
            frame: None,
        }
    }

    fn into_entry(self, id: EventId) -> Option<HistoryEntry> {
        let mut targets = self.targets;
        if self.fallback_broadcast {
            targets.fallback = Fallback::Broadcast;
        }
        let event = match (self.event, self.frame) {
            (Some(stored), _) => Event::from_stored_form(id, &stored)?,
            (None, Some(frame)) => {
                let (_, name, payload) = frame::decode_stored_frame(&frame)?;
                Event::new(id, name, payload)
            }
            (None, None) => return None,
        };
        Some(HistoryEntry {
            seq: id.seq,
            published_at: UNIX_EPOCH + Duration::from_millis(self.t),
            targets: targets.into_stored_targets().ok()?,
            fell_back: self.fell_back,
            event: Arc::new(event),
        })
    }
}

/// State shared by the broker side and the writer thread.
#[derive(Debug, Default)]
struct Shared {
    /// Why the last write failed, while writes fail.
    failure: Mutex<Option<String>>,
    /// The newest id the committed reservation covers: no id above it may be issued.
    reserved: AtomicU64,
    /// Events handed to the writer and not yet taken by it.
    queue: Gauge,
    /// Transactions that failed.
    write_failures: Counter,
    /// Events that could not be written.
    unpersisted: Counter,
    /// Publishes refused because the writer is behind or the reservation ran out.
    refused: Counter,
    /// True while publishes are being refused (to log the first refusal only).
    refusing: std::sync::atomic::AtomicBool,
}

/// The writer side of the durable history, held by the broker.
#[derive(Debug)]
pub struct DurableHistory {
    sender: Mutex<Option<Sender<HistoryEntry>>>,
    /// The writer and its queue, until [`DurableHistory::start`] hands them to their thread.
    idle: Mutex<Option<IdleWriter>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

/// A writer whose thread has not started yet.
struct IdleWriter {
    writer: Writer,
    queue: Receiver<HistoryEntry>,
}

impl std::fmt::Debug for IdleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleWriter")
            .field("path", &self.writer.path)
            .finish_non_exhaustive()
    }
}

// The closures return `redb::Error` as is; its size does not matter off the hot path.
#[allow(clippy::result_large_err)]
fn open_store(
    db: &Database,
    limits: HistoryLimits,
) -> Result<(ReplayBuffer, u64, u64), redb::Error> {
    let txn = db.begin_write()?;
    let (window, head, reserved) = {
        let mut meta = txn.open_table(META)?;
        let events = txn.open_table(EVENTS)?;
        let get = |key: &str| -> Result<Option<u64>, redb::Error> {
            Ok(meta.get(key)?.map(|v| v.value()))
        };
        let stored_epoch = get(META_EPOCH)?;
        let clean = get(META_CLEAN)? == Some(1);
        let stored_head = get(META_HEAD)?.unwrap_or(0);
        let stored_reservation = get(META_RESERVED)?;
        let epoch = match stored_epoch {
            Some(e) => Epoch::from_u64(e),
            None => Epoch::random(),
        };
        let mut window = ReplayBuffer::new(epoch, limits, 0);
        // Stored ids are contiguous but for lost ones: a jump is a hole.
        let mut last_seq: Option<u64> = None;
        for row in events.iter()? {
            let (k, v) = row?;
            let seq = k.value();
            if let Some(prev) = last_seq {
                if seq > prev + 1 {
                    tracing::warn!(
                        after = prev,
                        until = seq - 1,
                        "durable history lacks these ids; resumes from before them get a reset"
                    );
                    window.add_hole(prev, seq - 1);
                }
            }
            last_seq = Some(seq);
            let Ok(record) = serde_json::from_slice::<Record>(v.value()) else {
                tracing::warn!(seq, "skipping an unreadable history record");
                window.add_hole(seq - 1, seq);
                continue;
            };
            match record.into_entry(EventId {
                epoch: window.epoch(),
                seq,
            }) {
                Some(entry) => window.restore(entry),
                None => {
                    tracing::warn!(seq, "skipping an invalid history record");
                    window.add_hole(seq - 1, seq);
                }
            }
        }
        let last_seq = last_seq.unwrap_or(0);
        let mut head = last_seq.max(window.head().seq).max(stored_head);
        if stored_epoch.is_some() && !clean {
            // The last run did not shut down cleanly: ids up to its reservation may have been
            // given out without reaching the disk. Continue above them so none is reused.
            head = match stored_reservation {
                Some(reserved) => head.max(reserved),
                None => head + CRASH_ID_GAP,
            };
            tracing::warn!(
                last_persisted = last_seq,
                continuing_after = head,
                "durable history was not closed cleanly; resumes from earlier ids get a reset"
            );
        }
        // Issued but not on disk (a crash, or writes that failed before a clean shutdown).
        window.add_hole(last_seq, head);
        window.set_head(head);
        window.evict(SystemTime::now());
        let reserved = head + RESERVE_BLOCK;
        meta.insert(META_EPOCH, epoch.as_u64())?;
        meta.insert(META_RESERVED, reserved)?;
        meta.insert(META_CLEAN, 0)?;
        (window, head, reserved)
    };
    txn.commit()?;
    Ok((window, head, reserved))
}

impl DurableHistory {
    /// Opens (or creates) the store in `dir` and restores the window from it. Events appended
    /// before [`DurableHistory::start`] wait in the queue for the writer.
    ///
    /// # Errors
    /// When the directory cannot be created or the database cannot be opened or read.
    pub fn open(dir: &Path, limits: HistoryLimits) -> Result<(ReplayBuffer, Self), DurableError> {
        let path = dir.join("history.redb");
        let err = |message: String| DurableError::Open {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| err(e.to_string()))?;
        let (window, head, reserved) = open_store(&db, limits).map_err(|e| err(e.to_string()))?;
        tracing::info!(
            path = %path.display(),
            epoch = %window.epoch(),
            restored = window.stats().events,
            head,
            "durable history opened"
        );

        let (sender, receiver) = channel();
        let shared = Arc::new(Shared::default());
        shared.reserved.store(reserved, Ordering::Release);
        let retained: VecDeque<(u64, u64, usize)> = window
            .entries()
            .map(|e| (e.seq, millis(e.published_at), e.event.size()))
            .collect();
        let writer = Writer {
            bytes: retained.iter().map(|r| r.2).sum(),
            retained,
            path: path.clone(),
            db: Some(db),
            limits,
            highest: head,
            reserved,
            failing: false,
            last_attempt: std::time::Instant::now(),
            lost_in_outage: 0,
            shared: shared.clone(),
        };
        Ok((
            window,
            DurableHistory {
                sender: Mutex::new(Some(sender)),
                idle: Mutex::new(Some(IdleWriter {
                    writer,
                    queue: receiver,
                })),
                writer: Mutex::new(None),
                shared,
            },
        ))
    }

    /// Starts the writer thread, and a task on `lifecycle` that ends with it, so that waiting
    /// for the lifecycle's tasks also waits for the writer. The thread stops at
    /// [`DurableHistory::close`] (or when this is dropped), not on the lifecycle's token: it
    /// must first flush what is queued. Calling it again does nothing.
    ///
    /// When the thread cannot be started, writes are reported as failing (`/readyz` degraded)
    /// and the events stay in the memory window only.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(&self, lifecycle: &Lifecycle) {
        if let Some(finished) = self.spawn_writer() {
            lifecycle.spawn(async move {
                // Resolves (with an error) when the thread drops the sender: it has finished.
                let _ = finished.await;
            });
        }
    }

    /// Spawns the writer thread if it has not run yet; returns what resolves when it ends.
    fn spawn_writer(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let IdleWriter { writer, queue } = self.idle.lock().take()?;
        let (running, finished) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("herald-history".into())
            .spawn(move || {
                let _running = running;
                writer.run(queue)
            });
        match spawned {
            Ok(thread) => {
                *self.writer.lock() = Some(thread);
                Some(finished)
            }
            Err(e) => {
                tracing::error!(error = %e, "durable history: cannot start the writer thread");
                *self.shared.failure.lock() = Some(format!("cannot start the writer thread: {e}"));
                None
            }
        }
    }

    /// Whether the event that would get seq `seq` may be published now. Called under the
    /// broker's lock before the id is taken; never waits.
    ///
    /// # Errors
    /// [`EngineError::Overloaded`] when the writer is [`QUEUE`] events behind;
    /// [`EngineError::Unavailable`] when `seq` lies beyond the committed reservation (writes have
    /// been failing for a long while); [`EngineError::NotRunning`] after [`DurableHistory::close`].
    pub fn admit(&self, seq: u64) -> Result<(), EngineError> {
        let shared = &*self.shared;
        let refusal = if self.sender.lock().is_none() {
            return Err(EngineError::NotRunning);
        } else if shared.queue.get() >= QUEUE as i64 {
            EngineError::Overloaded
        } else if seq > shared.reserved.load(Ordering::Acquire) {
            let why = shared
                .failure
                .lock()
                .clone()
                .unwrap_or_else(|| "the writer is behind".into());
            EngineError::Unavailable(format!(
                "durable history cannot reserve more event ids: {why}"
            ))
        } else {
            if shared.refusing.load(Ordering::Relaxed) {
                shared.refusing.store(false, Ordering::Relaxed);
                tracing::info!("durable history accepts publishes again");
            }
            return Ok(());
        };
        shared.refused.inc();
        if !shared.refusing.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %refusal, "durable history refuses publishes");
        }
        Err(refusal)
    }

    /// Queues an event for the disk. Never waits: [`DurableHistory::admit`] keeps the queue
    /// bounded.
    pub fn append(&self, entry: &HistoryEntry) {
        if let Some(sender) = &*self.sender.lock() {
            self.shared.queue.inc();
            if sender.send(entry.clone()).is_err() {
                self.shared.queue.dec();
                self.shared.unpersisted.inc();
                *self.shared.failure.lock() = Some("the writer thread stopped".into());
                tracing::error!(
                    seq = entry.seq,
                    "durable history writer is gone; event not persisted"
                );
            }
        }
    }

    /// Degraded while writes fail, and while the writer is so far behind that publishes are
    /// refused.
    pub fn health(&self) -> EngineHealth {
        if let Some(message) = &*self.shared.failure.lock() {
            return EngineHealth::Degraded(format!("durable history: {message}"));
        }
        let queued = self.shared.queue.get();
        if queued >= QUEUE as i64 {
            return EngineHealth::Degraded(format!(
                "durable history: the writer is {queued} events behind; publishes are refused"
            ));
        }
        EngineHealth::Ok
    }

    /// Adds this store's figures to `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let s = &self.shared;
        registry.register(
            "durable_history_write_failures",
            "Durable history transactions that failed (the disk is full or failing)",
            s.write_failures.clone(),
        );
        registry.register(
            "durable_history_unpersisted_events",
            "Events that could not be written to the durable history (a resume across them \
             after a restart gets a reset)",
            s.unpersisted.clone(),
        );
        registry.register(
            "durable_history_refused_publishes",
            "Publishes refused because the durable history writer is behind or cannot reserve ids",
            s.refused.clone(),
        );
        registry.register(
            "durable_history_queue",
            "Events waiting for the durable history writer",
            s.queue.clone(),
        );
    }

    /// Flushes everything queued, marks the store cleanly closed and stops the writer (also a
    /// writer that was never started: it runs once, to do this).
    pub async fn close(&self) {
        let _ = self.spawn_writer();
        drop(self.sender.lock().take());
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            // Bounded: a hung disk must not keep the process from exiting. Without the
            // clean-shutdown mark the next start treats the stop as a crash (ids continue above
            // the reservation, resumes across the unwritten tail get `reset`): nothing is lost
            // silently.
            let joined = tokio::time::timeout(
                CLOSE_TIMEOUT,
                tokio::task::spawn_blocking(move || writer.join()),
            )
            .await;
            if joined.is_err() {
                tracing::error!(
                    timeout = ?CLOSE_TIMEOUT,
                    "durable history: the writer did not finish in time (is the disk hung?); \
                     exiting without the clean-shutdown mark"
                );
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    /// `None` after a failed write: redb refuses further writes on a handle that saw an I/O
    /// error, so the next attempt reopens (and repairs) the file.
    db: Option<Database>,
    limits: HistoryLimits,
    /// `(seq, published at ms, frame bytes)` of the events on disk, oldest first.
    retained: VecDeque<(u64, u64, usize)>,
    bytes: usize,
    /// The newest id handed to the writer.
    highest: u64,
    /// The reservation on disk.
    reserved: u64,
    failing: bool,
    /// When the disk was last tried.
    last_attempt: std::time::Instant,
    /// Events that missed the disk since writes began to fail.
    lost_in_outage: u64,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, receiver: Receiver<HistoryEntry>) {
        loop {
            let first = if self.failing {
                match receiver.recv_timeout(RETRY) {
                    Ok(e) => Some(e),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match receiver.recv() {
                    Ok(e) => Some(e),
                    Err(_) => break,
                }
            };
            let mut batch: Vec<HistoryEntry> = first.into_iter().collect();
            while !batch.is_empty() && batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.shared.queue.dec_by(batch.len() as i64);
            self.write(&batch);
        }
        // The channel closed: a graceful shutdown. Everything queued is written; mark it clean.
        let result = self.transaction(&[], true);
        if let Err(e) = result {
            tracing::error!(error = %e, "could not mark the durable history clean");
        }
    }

    /// Writes `batch` (possibly empty: a retry while failing) and the reservation.
    fn write(&mut self, batch: &[HistoryEntry]) {
        if let Some(last) = batch.last() {
            self.highest = self.highest.max(last.seq);
        }
        // While the disk fails, try it at most every `RETRY` (reopening a store repairs it,
        // which is not free); what arrives in between misses the disk like a failed batch.
        let throttled = self.failing && self.last_attempt.elapsed() < RETRY;
        let result = if throttled {
            Err(None)
        } else {
            self.last_attempt = std::time::Instant::now();
            self.transaction(batch, false).map_err(Some)
        };
        match result {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    *self.shared.failure.lock() = None;
                    tracing::info!(
                        unpersisted = self.lost_in_outage,
                        "durable history writes succeed again; the events that missed the disk \
                         meanwhile reset resumes across them after a restart"
                    );
                    self.lost_in_outage = 0;
                }
            }
            Err(error) => {
                if let Some(e) = &error {
                    self.db = None;
                    self.shared.write_failures.inc();
                    *self.shared.failure.lock() = Some(format!("writes fail: {e}"));
                }
                self.shared.unpersisted.inc_by(batch.len() as u64);
                self.lost_in_outage += batch.len() as u64;
                let first_failure = !self.failing;
                self.failing = true;
                let (Some(e), Some(first), Some(last)) = (&error, batch.first(), batch.last())
                else {
                    return;
                };
                if first_failure {
                    tracing::error!(
                        error = %e,
                        first = first.seq,
                        last = last.seq,
                        "durable history write failed; events are kept in memory and delivered, \
                         but not on disk: after a restart a resume across them gets a reset. \
                         Retrying every second"
                    );
                } else {
                    tracing::warn!(
                        error = %e,
                        unpersisted = self.lost_in_outage,
                        last = last.seq,
                        "durable history writes still fail"
                    );
                }
            }
        }
    }

    /// One transaction: `batch`, the pruning it causes and a fresh reservation; on `close`, the
    /// head and the clean mark too. Updates the retention bookkeeping only once committed.
    #[allow(clippy::result_large_err)]
    fn transaction(&mut self, batch: &[HistoryEntry], close: bool) -> Result<(), redb::Error> {
        fault::check(&self.path)?;
        let db = match self.db.take() {
            Some(db) => db,
            None => Database::create(&self.path)?,
        };
        let db = self.db.insert(db);
        let txn = db.begin_write()?;
        let reserve = self.reserved.max(self.highest + RESERVE_BLOCK);
        let pops;
        {
            let mut events = txn.open_table(EVENTS)?;
            for entry in batch {
                let record = serde_json::to_vec(&Record::from_entry(entry))
                    .map_err(|e| redb::Error::Io(std::io::Error::other(e)))?;
                events.insert(entry.seq, record.as_slice())?;
            }
            // What falls out of the window once `batch` is in.
            let now = millis(SystemTime::now());
            let max_age = self.limits.max_age.as_millis() as u64;
            let mut len = self.retained.len() + batch.len();
            let mut bytes = self.bytes + batch.iter().map(|e| e.event.size()).sum::<usize>();
            let mut cutoff = None;
            let mut n = 0;
            let incoming = batch
                .iter()
                .map(|e| (e.seq, millis(e.published_at), e.event.size()));
            for (seq, t, size) in self.retained.iter().copied().chain(incoming) {
                let over = len > self.limits.max_events
                    || (bytes > self.limits.max_bytes && len > 1)
                    || now.saturating_sub(t) > max_age;
                if !over {
                    break;
                }
                cutoff = Some(seq);
                bytes -= size;
                len -= 1;
                n += 1;
            }
            if let Some(cutoff) = cutoff {
                events.retain_in(..=cutoff, |_, _| false)?;
            }
            pops = n;
            let mut meta = txn.open_table(META)?;
            meta.insert(META_RESERVED, reserve)?;
            if close {
                meta.insert(META_HEAD, self.highest)?;
                meta.insert(META_CLEAN, 1)?;
            }
        }
        txn.commit()?;
        for e in batch {
            self.retained
                .push_back((e.seq, millis(e.published_at), e.event.size()));
            self.bytes += e.event.size();
        }
        for _ in 0..pops {
            if let Some((_, _, size)) = self.retained.pop_front() {
                self.bytes -= size;
            }
        }
        self.reserved = reserve;
        self.shared.reserved.store(reserve, Ordering::Release);
        Ok(())
    }
}

/// Injected disk faults, for tests of a failing or stalled disk. Costs one relaxed load per
/// transaction when unused.
#[doc(hidden)]
pub mod fault {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Plan {
        /// Fail this many more transactions.
        Fail(u64),
        /// Hang every transaction until healed, as a disk that stopped answering.
        Stall,
    }

    static ANY: AtomicBool = AtomicBool::new(false);
    static PLANS: Mutex<Vec<(PathBuf, Plan)>> = Mutex::new(Vec::new());

    fn set(data_dir: &Path, plan: Plan) {
        let path = data_dir.join("history.redb");
        let mut plans = PLANS.lock().unwrap_or_else(|e| e.into_inner());
        plans.retain(|(p, _)| *p != path);
        plans.push((path, plan));
        ANY.store(true, Ordering::Release);
    }

    /// Makes the next `count` write transactions of the store in `data_dir` fail with an I/O
    /// error (`u64::MAX`: until [`heal`]), as a full or failing disk would.
    pub fn fail_writes(data_dir: &Path, count: u64) {
        set(data_dir, Plan::Fail(count));
    }

    /// Makes every write transaction of the store in `data_dir` hang until [`heal`].
    pub fn stall(data_dir: &Path) {
        set(data_dir, Plan::Stall);
    }

    /// Lets the store in `data_dir` write again.
    pub fn heal(data_dir: &Path) {
        set(data_dir, Plan::Fail(0));
    }

    #[allow(clippy::result_large_err)]
    pub(super) fn check(path: &Path) -> Result<(), redb::Error> {
        if !ANY.load(Ordering::Acquire) {
            return Ok(());
        }
        loop {
            let mut plans = PLANS.lock().unwrap_or_else(|e| e.into_inner());
            match plans.iter_mut().find(|(p, _)| p == path) {
                Some((_, Plan::Stall)) => {}
                Some((_, Plan::Fail(n))) if *n > 0 => {
                    *n -= 1;
                    return Err(redb::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::StorageFull,
                        "injected write failure (no space left on device)",
                    )));
                }
                _ => return Ok(()),
            }
            drop(plans);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use crate::history::{Replay, ReplayFilter};
    use crate::target::{ChannelName, Target, Targets, UserId};

    /// Opens the store in `dir` and starts its writer, as a hub does.
    fn open_started(
        dir: &Path,
        limits: HistoryLimits,
    ) -> Result<(ReplayBuffer, DurableHistory), DurableError> {
        let (window, durable) = DurableHistory::open(dir, limits)?;
        durable.start(&Lifecycle::new());
        Ok((window, durable))
    }

    fn limits() -> HistoryLimits {
        HistoryLimits {
            max_events: 100,
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 20,
        }
    }

    fn entry(window: &mut ReplayBuffer, user: &str) -> HistoryEntry {
        let id = window.next_id();
        HistoryEntry {
            seq: id.seq,
            published_at: SystemTime::now(),
            targets: Targets::one(Target::User(UserId::new(user).unwrap())),
            fell_back: false,
            event: Arc::new(Event::new(
                id,
                EventName::new("message").unwrap(),
                Payload::json(&1).unwrap(),
            )),
        }
    }

    fn alice() -> ReplayFilter {
        ReplayFilter {
            user: Some(UserId::new("alice").unwrap()),
            channels: Arc::from(Vec::new()),
        }
    }

    #[tokio::test]
    async fn survives_a_clean_restart() {
        let dir = std::env::temp_dir().join(format!("herald-durable-{}", rand::random::<u64>()));
        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        let epoch = window.epoch();
        for user in ["alice", "bob", "alice"] {
            let e = entry(&mut window, user);
            durable.append(&e);
            window.push(e);
        }
        durable.close().await;
        drop(durable);

        let (window, durable) = open_started(&dir, limits()).unwrap();
        assert_eq!(window.epoch(), epoch);
        assert_eq!(window.head().seq, 3);
        match window.replay(EventId { epoch, seq: 1 }, &alice()) {
            Replay::Events { events, .. } => {
                assert_eq!(events.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [3])
            }
            other => panic!("{other:?}"),
        }
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_writer_starts_with_start_not_with_open() {
        let dir = temp_dir();
        let (mut window, durable) = DurableHistory::open(&dir, limits()).unwrap();
        assert!(
            durable.writer.lock().is_none(),
            "open started the writer thread"
        );
        let lifecycle = Lifecycle::new();
        durable.start(&lifecycle);
        assert!(durable.writer.lock().is_some(), "start did not start it");
        assert_eq!(
            lifecycle.tasks().len(),
            1,
            "the writer is in the lifecycle's tracker"
        );
        let e = entry(&mut window, "alice");
        durable.append(&e);
        durable.close().await;
        assert!(
            lifecycle.wait(Duration::from_secs(5)).await,
            "the lifecycle still waits for the writer after close"
        );
        drop(durable);
        let (window, durable) = open_started(&dir, limits()).unwrap();
        assert_eq!(window.head().seq, 1, "written, and closed cleanly");
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_history_never_started_still_closes_cleanly() {
        let dir = temp_dir();
        let (mut window, durable) = DurableHistory::open(&dir, limits()).unwrap();
        let e = entry(&mut window, "alice");
        durable.append(&e);
        durable.close().await;
        drop(durable);
        let (window, durable) = open_started(&dir, limits()).unwrap();
        assert_eq!(
            window.head().seq,
            1,
            "ids continue as after a clean stop, not a crash"
        );
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unclean_stop_skips_ids() {
        let dir = std::env::temp_dir().join(format!("herald-durable-{}", rand::random::<u64>()));
        {
            let (mut window, durable) = open_started(&dir, limits()).unwrap();
            let e = entry(&mut window, "alice");
            durable.append(&e);
            // Simulate a crash: stop the writer without marking the store clean.
            let sender = durable.sender.lock().take().unwrap();
            drop(sender);
            let writer = durable.writer.lock().take().unwrap();
            writer.join().unwrap();
        }
        // The writer marked it clean on channel close; make it look like a crash.
        {
            let db = Database::create(dir.join("history.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(META_CLEAN, 0).unwrap();
            txn.commit().unwrap();
        }
        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        assert_eq!(window.next_id().seq, 1 + CRASH_ID_GAP + 1);
        let epoch = window.epoch();
        assert!(matches!(
            window.replay(EventId { epoch, seq: 5 }, &alice()),
            Replay::Reset { .. }
        ));
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("herald-durable-{}", rand::random::<u64>()))
    }

    /// Marks a closed store as not cleanly shut down, as a SIGKILL leaves it.
    fn as_if_killed(dir: &Path) {
        let db = Database::create(dir.join("history.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(META_CLEAN, 0).unwrap();
        txn.commit().unwrap();
    }

    /// Waits (bounded) for the writer thread to reach a state.
    fn wait_until(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_gap(r: Replay) -> bool {
        matches!(
            r,
            Replay::Reset {
                reason: crate::history::ResetReason::HistoryGap,
                ..
            }
        )
    }

    #[tokio::test]
    async fn two_crashes_in_a_row_never_reuse_ids() {
        let dir = temp_dir();
        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        let e = entry(&mut window, "alice");
        durable.append(&e);
        window.push(e);
        durable.close().await;
        as_if_killed(&dir);

        // The restarted hub issues ids (delivered live) that never reach the disk: it is
        // killed before its writer commits them.
        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        let issued: Vec<u64> = (0..3).map(|_| window.next_id().seq).collect();
        durable.close().await;
        as_if_killed(&dir);

        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        let next = window.next_id().seq;
        assert!(
            next > *issued.last().unwrap(),
            "id {next} was already issued before the second crash ({issued:?})"
        );
        let epoch = window.epoch();
        for held in [1, issued[0], issued[2]] {
            assert!(is_gap(
                window.replay(EventId { epoch, seq: held }, &alice())
            ));
        }
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_leaves_a_hole_that_a_restart_finds() {
        let dir = temp_dir();
        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        let epoch = window.epoch();
        let publish = |window: &mut ReplayBuffer| {
            durable.admit(window.head().seq + 1).unwrap();
            let e = entry(window, "alice");
            durable.append(&e);
            window.push(e);
        };
        for _ in 0..3 {
            publish(&mut window);
        }
        wait_until("3 events written", || durable.shared.queue.get() == 0);
        assert_eq!(durable.health(), EngineHealth::Ok);

        fault::fail_writes(&dir, u64::MAX);
        publish(&mut window);
        publish(&mut window);
        wait_until("2 writes failed", || durable.shared.unpersisted.get() == 2);
        assert!(matches!(durable.health(), EngineHealth::Degraded(m) if m.contains("injected")));
        assert!(durable.shared.write_failures.get() >= 1);
        // This run still has them in memory.
        match window.replay(EventId { epoch, seq: 3 }, &alice()) {
            Replay::Events { events, .. } => assert_eq!(events.len(), 2),
            other => panic!("{other:?}"),
        }

        fault::heal(&dir);
        wait_until("writes recover", || durable.health() == EngineHealth::Ok);
        publish(&mut window);
        durable.close().await;

        let (window, durable) = open_started(&dir, limits()).unwrap();
        assert_eq!(window.head().seq, 6);
        for held in [1, 3, 4] {
            assert!(
                is_gap(window.replay(EventId { epoch, seq: held }, &alice())),
                "a resume from {held} walks across the lost 4..=5"
            );
        }
        match window.replay(EventId { epoch, seq: 5 }, &alice()) {
            Replay::Events { events, .. } => {
                assert_eq!(events.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [6])
            }
            other => panic!("{other:?}"),
        }
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn failed_writes_before_a_clean_stop_leave_a_hole_at_the_end() {
        let dir = temp_dir();
        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        let epoch = window.epoch();
        let e = entry(&mut window, "alice");
        durable.append(&e);
        window.push(e);
        wait_until("written", || durable.shared.queue.get() == 0);
        fault::fail_writes(&dir, 1);
        let e = entry(&mut window, "alice");
        durable.append(&e);
        window.push(e);
        wait_until("failed", || durable.shared.unpersisted.get() == 1);
        durable.close().await;
        let (mut window, durable) = open_started(&dir, limits()).unwrap();
        assert!(is_gap(window.replay(EventId { epoch, seq: 1 }, &alice())));
        assert_eq!(window.next_id().seq, 3);
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_writer_far_behind_refuses_before_the_id_is_taken() {
        let dir = temp_dir();
        let (window, durable) = open_started(&dir, limits()).unwrap();
        let next = window.head().seq + 1;
        durable.shared.queue.set(QUEUE as i64);
        assert!(matches!(durable.admit(next), Err(EngineError::Overloaded)));
        durable.shared.queue.set(0);
        durable.admit(next).unwrap();
        // Beyond the reservation: refused, whatever the queue.
        let reserved = durable.shared.reserved.load(Ordering::Acquire);
        assert!(matches!(
            durable.admit(reserved + 1),
            Err(EngineError::Unavailable(_))
        ));
        assert_eq!(durable.shared.refused.get(), 2);
        durable.close().await;
        assert!(matches!(durable.admit(next), Err(EngineError::NotRunning)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A store as the release before reservations wrote it: the same tables, records as that
    /// release serialized them (copied from a store it wrote).
    fn write_release_store(dir: &Path, clean: bool) -> Epoch {
        let epoch = Epoch::from_u64(0x430e_a96a_bf60);
        std::fs::create_dir_all(dir).unwrap();
        let old_events: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
        let old_meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
        let db = Database::create(dir.join("history.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn.open_table(old_events).unwrap();
            let records = [
                r#"{"t":1790000000000,"users":["alice"],"frame":"id: 430ea96abf60-1\nevent: note\ndata: {\"n\":1}\n\n"}"#,
                r#"{"t":1790000001000,"users":["bob"],"frame":"id: 430ea96abf60-2\nevent: note\ndata: {\"n\":2}\n\n"}"#,
                r#"{"t":1790000002000,"broadcast":true,"frame":"id: 430ea96abf60-3\nevent: note\ndata: {\"n\":3}\n\n"}"#,
                r#"{"t":1790000003000,"channels":["news"],"frame":"id: 430ea96abf60-4\nevent: note\ndata: {\"n\":4}\n\n"}"#,
            ];
            for (i, r) in records.iter().enumerate() {
                events.insert(i as u64 + 1, r.as_bytes()).unwrap();
            }
            let mut meta = txn.open_table(old_meta).unwrap();
            meta.insert("epoch", epoch.as_u64()).unwrap();
            meta.insert("clean_shutdown", u64::from(clean)).unwrap();
        }
        txn.commit().unwrap();
        epoch
    }

    #[tokio::test]
    async fn opens_a_store_written_by_the_previous_release() {
        let forever = HistoryLimits {
            max_age: Duration::from_secs(100 * 365 * 24 * 3600),
            ..limits()
        };
        for clean in [true, false] {
            let dir = temp_dir();
            let epoch = write_release_store(&dir, clean);
            let (mut window, durable) = open_started(&dir, forever).unwrap();
            assert_eq!(window.epoch(), epoch);
            assert_eq!(window.stats().events, 4);
            if clean {
                match window.replay(EventId { epoch, seq: 0 }, &alice()) {
                    Replay::Events { events, .. } => {
                        assert_eq!(events.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [1, 3]);
                        assert_eq!(events[0].name.as_str(), "note");
                        assert_eq!(events[0].payload.as_str(), r#"{"n":1}"#);
                        assert_eq!(events[0].payload.kind(), crate::event::PayloadKind::Json);
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(window.next_id().seq, 5);
            } else {
                assert!(is_gap(window.replay(EventId { epoch, seq: 4 }, &alice())));
                assert_eq!(window.next_id().seq, 4 + CRASH_ID_GAP + 1);
            }
            let e = entry(&mut window, "alice");
            let seq = e.seq;
            durable.append(&e);
            window.push(e);
            durable.close().await;
            // Reopened by this release: the new event and the old ones are there.
            let (window, durable) = open_started(&dir, forever).unwrap();
            assert_eq!(window.stats().events, 5);
            assert_eq!(window.head().seq, seq);
            durable.close().await;
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Records keep the target bytes the previous release wrote (its targets are the shared
    /// `TargetFields` form), and its `fallback_broadcast` still reads as the fallback; the event
    /// is written in its storage form.
    #[test]
    fn records_read_the_previous_target_fields() {
        let id = |seq| EventId {
            epoch: Epoch::from_u64(1),
            seq,
        };
        let frame = r#""frame":"id: 000000000001-1\nevent: note\ndata: 1\n\n""#;
        let old = format!(
            r#"{{"t":1790000000000,"users":["alice"],"channels":["news"],"fallback_broadcast":true,{frame}}}"#
        );
        let record: Record = serde_json::from_str(&old).unwrap();
        let entry = record.into_entry(id(1)).unwrap();
        assert_eq!(entry.targets.fallback(), Fallback::Broadcast);
        assert_eq!(
            entry.targets,
            Targets::new(
                vec![
                    Target::User(UserId::new("alice").unwrap()),
                    Target::Channel(ChannelName::new("news").unwrap()),
                ],
                Fallback::Broadcast,
            )
            .unwrap()
        );
        let written = serde_json::to_string(&Record::from_entry(&entry)).unwrap();
        assert_eq!(
            written,
            r#"{"t":1790000000000,"users":["alice"],"channels":["news"],"fallback":"broadcast","event":"jnote\n1"}"#
        );
        let again: Record = serde_json::from_str(&written).unwrap();
        assert_eq!(again.into_entry(id(1)).unwrap().targets, entry.targets);
        // Without a fallback the target bytes are exactly the previous release's.
        let plain = format!(r#"{{"t":1790000000000,"fell_back":true,"broadcast":true,{frame}}}"#);
        let entry = serde_json::from_str::<Record>(&plain)
            .unwrap()
            .into_entry(id(2))
            .unwrap();
        assert_eq!(
            serde_json::to_string(&Record::from_entry(&entry)).unwrap(),
            r#"{"t":1790000000000,"fell_back":true,"broadcast":true,"event":"jnote\n1"}"#
        );
    }
}
