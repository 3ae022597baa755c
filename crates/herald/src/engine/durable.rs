//! The replay window on disk (`--data-dir`), in an embedded [redb] database, so that a hub
//! restarted between two publishes still lets its clients resume.
//!
//! Writes never slow publishing down: the engine hands each retained event to a writer thread
//! through a bounded channel, and the thread commits whatever has queued up in one transaction
//! (group commit), pruning what fell out of the window in the same transaction. A graceful
//! shutdown flushes everything and marks the store clean. After a crash the last few
//! milliseconds of events may be missing from disk; the restarted hub then skips a block of ids
//! and answers a resume from inside it with `reset` (`history_gap`) instead of pretending nothing
//! was lost.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::EngineHealth;
use crate::event::Epoch;
use crate::history::{HistoryEntry, HistoryLimits, ReplayBuffer};
use crate::target::{ChannelName, ConnectionId, Fallback, Target, Targets, UserId};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_EPOCH: &str = "epoch";
const META_CLEAN: &str = "clean_shutdown";
/// Ids skipped after an unclean shutdown; far more than can be published between two commits.
const CRASH_ID_GAP: u64 = 1_000_000;
/// Most events waiting for the writer; a publisher waits when the disk falls this far behind.
const QUEUE: usize = 65_536;
/// Most events per transaction.
const MAX_BATCH: usize = 4096;

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

/// The on-disk form of one event.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// Published at, ms since the Unix epoch.
    t: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fell_back: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    connections: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    broadcast: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fallback_broadcast: bool,
    frame: String,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Record {
    fn from_entry(e: &HistoryEntry) -> Self {
        let mut r = Record {
            t: millis(e.published_at),
            fell_back: e.fell_back,
            users: Vec::new(),
            channels: Vec::new(),
            connections: Vec::new(),
            broadcast: false,
            fallback_broadcast: e.targets.fallback() == Fallback::Broadcast,
            frame: String::from_utf8_lossy(&e.frame).into_owned(),
        };
        for t in e.targets.list() {
            match t {
                Target::User(u) => r.users.push(u.to_string()),
                Target::Channel(c) => r.channels.push(c.to_string()),
                Target::Connection(c) => r.connections.push(c.to_string()),
                Target::Broadcast => r.broadcast = true,
            }
        }
        r
    }

    fn into_entry(self, seq: u64) -> Option<HistoryEntry> {
        let mut list = Vec::new();
        for u in &self.users {
            list.push(Target::User(UserId::new(u).ok()?));
        }
        for c in &self.channels {
            list.push(Target::Channel(ChannelName::new(c).ok()?));
        }
        for c in &self.connections {
            list.push(Target::Connection(c.parse::<ConnectionId>().ok()?));
        }
        if self.broadcast {
            list.push(Target::Broadcast);
        }
        let fallback = if self.fallback_broadcast {
            Fallback::Broadcast
        } else {
            Fallback::None
        };
        Some(HistoryEntry {
            seq,
            published_at: UNIX_EPOCH + Duration::from_millis(self.t),
            targets: Targets::new(list, fallback).ok()?,
            fell_back: self.fell_back,
            frame: Bytes::from(self.frame),
        })
    }
}

/// The writer side of the durable history, held by the engine.
#[derive(Debug)]
pub struct DurableHistory {
    sender: Mutex<Option<SyncSender<HistoryEntry>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl DurableHistory {
    /// Opens (or creates) the store in `dir`, restores the window from it, and starts the
    /// writer thread.
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

        let txn = db.begin_write().map_err(|e| err(e.to_string()))?;
        let window = {
            let mut meta = txn.open_table(META).map_err(|e| err(e.to_string()))?;
            let events = txn.open_table(EVENTS).map_err(|e| err(e.to_string()))?;
            let stored_epoch = meta
                .get(META_EPOCH)
                .map_err(|e| err(e.to_string()))?
                .map(|v| v.value());
            let clean = meta
                .get(META_CLEAN)
                .map_err(|e| err(e.to_string()))?
                .is_some_and(|v| v.value() == 1);
            let epoch = match stored_epoch {
                Some(e) => Epoch::from_u64(e),
                None => {
                    let e = Epoch::random();
                    meta.insert(META_EPOCH, e.as_u64())
                        .map_err(|e| err(e.to_string()))?;
                    e
                }
            };
            let last_seq = events
                .last()
                .map_err(|e| err(e.to_string()))?
                .map_or(0, |(k, _)| k.value());
            let mut window = ReplayBuffer::new(epoch, limits, 0);
            for row in events.iter().map_err(|e| err(e.to_string()))? {
                let (k, v) = row.map_err(|e| err(e.to_string()))?;
                let Ok(record) = serde_json::from_slice::<Record>(v.value()) else {
                    tracing::warn!(seq = k.value(), "skipping an unreadable history record");
                    continue;
                };
                if let Some(entry) = record.into_entry(k.value()) {
                    window.restore(entry);
                }
            }
            window.evict(SystemTime::now());
            let mut head = last_seq.max(window.head().seq);
            if stored_epoch.is_some() && !clean {
                // The last run did not shut down cleanly: ids after `head` may have been given
                // out without reaching the disk. Skip past them so none is ever reused.
                window.set_hole(head, head + CRASH_ID_GAP);
                tracing::warn!(
                    last_persisted = head,
                    "durable history was not closed cleanly; resumes from later ids get a reset"
                );
                head += CRASH_ID_GAP;
            }
            window.set_head(head);
            meta.insert(META_CLEAN, 0).map_err(|e| err(e.to_string()))?;
            window
        };
        txn.commit().map_err(|e| err(e.to_string()))?;
        tracing::info!(
            path = %path.display(),
            epoch = %window.epoch(),
            restored = window.stats().events,
            "durable history opened"
        );

        let (sender, receiver) = sync_channel(QUEUE);
        let failure = Arc::new(Mutex::new(None));
        let retained: VecDeque<(u64, u64, usize)> = window
            .entries()
            .map(|e| (e.seq, millis(e.published_at), e.frame.len()))
            .collect();
        let writer = {
            let failure = failure.clone();
            std::thread::Builder::new()
                .name("herald-history".into())
                .spawn(move || write_loop(db, receiver, limits, retained, failure))
                .map_err(|e| err(e.to_string()))?
        };
        Ok((
            window,
            DurableHistory {
                sender: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                failure,
            },
        ))
    }

    /// Queues an event for the disk. Returns at once unless the writer is `QUEUE` (65,536) events
    /// behind, in which case it waits for room (backpressure rather than silent loss).
    pub fn append(&self, entry: &HistoryEntry) {
        if let Some(sender) = &*self.sender.lock() {
            if sender.send(entry.clone()).is_err() {
                tracing::error!("durable history writer is gone; event not persisted");
            }
        }
    }

    /// Degraded when the last write failed.
    pub fn health(&self) -> EngineHealth {
        match &*self.failure.lock() {
            Some(message) => EngineHealth::Degraded(format!("durable history: {message}")),
            None => EngineHealth::Ok,
        }
    }

    /// Flushes everything queued, marks the store cleanly closed and stops the writer.
    pub async fn close(&self) {
        drop(self.sender.lock().take());
        let writer = self.writer.lock().take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

// The closures return `redb::Error` as is; its size does not matter off the hot path.
#[allow(clippy::result_large_err)]
fn write_loop(
    db: Database,
    receiver: Receiver<HistoryEntry>,
    limits: HistoryLimits,
    mut retained: VecDeque<(u64, u64, usize)>,
    failure: Arc<Mutex<Option<String>>>,
) {
    let mut bytes: usize = retained.iter().map(|r| r.2).sum();
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let result = (|| -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut events = txn.open_table(EVENTS)?;
                for entry in &batch {
                    let record = serde_json::to_vec(&Record::from_entry(entry))
                        .expect("a record always serializes");
                    events.insert(entry.seq, record.as_slice())?;
                    retained.push_back((entry.seq, millis(entry.published_at), entry.frame.len()));
                    bytes += entry.frame.len();
                }
                let now = millis(SystemTime::now());
                let max_age = limits.max_age.as_millis() as u64;
                let mut cutoff = None;
                while let Some(&(seq, t, len)) = retained.front() {
                    let over = retained.len() > limits.max_events
                        || (bytes > limits.max_bytes && retained.len() > 1)
                        || now.saturating_sub(t) > max_age;
                    if !over {
                        break;
                    }
                    cutoff = Some(seq);
                    bytes -= len;
                    retained.pop_front();
                }
                if let Some(cutoff) = cutoff {
                    events.retain_in(..=cutoff, |_, _| false)?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        let mut failed = failure.lock();
        match result {
            Ok(()) => *failed = None,
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "durable history write failed");
                *failed = Some(e.to_string());
            }
        }
    }
    // The channel closed: a graceful shutdown. Everything queued is written; mark it clean.
    let result = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(META)?.insert(META_CLEAN, 1)?;
        txn.commit()?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::error!(error = %e, "could not mark the durable history clean");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use crate::history::{Replay, ReplayFilter};

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
            frame: Bytes::from(format!("id: {id}\ndata: 1\n\n")),
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
        let (mut window, durable) = DurableHistory::open(&dir, limits()).unwrap();
        let epoch = window.epoch();
        for user in ["alice", "bob", "alice"] {
            let e = entry(&mut window, user);
            durable.append(&e);
            window.push(e);
        }
        durable.close().await;
        drop(durable);

        let (window, durable) = DurableHistory::open(&dir, limits()).unwrap();
        assert_eq!(window.epoch(), epoch);
        assert_eq!(window.head().seq, 3);
        match window.replay(EventId { epoch, seq: 1 }, &alice()) {
            Replay::Events { frames, .. } => {
                assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), [3])
            }
            other => panic!("{other:?}"),
        }
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unclean_stop_skips_ids() {
        let dir = std::env::temp_dir().join(format!("herald-durable-{}", rand::random::<u64>()));
        {
            let (mut window, durable) = DurableHistory::open(&dir, limits()).unwrap();
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
        let (mut window, durable) = DurableHistory::open(&dir, limits()).unwrap();
        assert_eq!(window.next_id().seq, 1 + CRASH_ID_GAP + 1);
        let epoch = window.epoch();
        assert!(matches!(
            window.replay(EventId { epoch, seq: 5 }, &alice()),
            Replay::Reset { .. }
        ));
        durable.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
