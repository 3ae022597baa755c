//! Fan-out: each shard's queue of events and the task that pushes them into its connections'
//! outboxes, in queue order, each in its connection's wire format.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::indices::{count_targets, push_to_targets, Indices};
use super::{Encode, Registry};
use crate::broker::DeliveryReport;
use crate::event::{Event, FORMAT_SLOTS};
use crate::target::{Fallback, Targets};
use crate::transport::outbox::PushError;

/// An event waiting for a shard's fan-out.
#[derive(Debug)]
pub(super) struct Dispatch {
    event: Arc<Event>,
    targets: Arc<Targets>,
    /// Everyone gets it (a broadcast, or a fallback that fired).
    everyone: bool,
}

/// One shard: its connections and its queue of events to fan out.
#[derive(Debug, Default)]
pub(super) struct Shard {
    pub(super) indices: RwLock<Indices>,
    queue: Mutex<ShardQueue>,
    queued: Notify,
    /// The queue's length as of its last change, read without the lock by the overload check
    /// that every publish makes.
    backlog: AtomicUsize,
}

/// A shard's pending events, and whether its task is pushing a batch right now.
#[derive(Debug, Default)]
pub(super) struct ShardQueue {
    events: VecDeque<Dispatch>,
    busy: bool,
}

/// Events for at most this many connections of a shard are pushed by the publisher itself when
/// the shard is idle, saving a task wake-up per targeted publish; larger audiences go through
/// the shard's task.
const INLINE_FAN_OUT: usize = 16;

/// Most events waiting in one shard's queue; beyond, publishing answers "overloaded".
const MAX_QUEUED_EVENTS: usize = 65_536;

impl Registry {
    /// True when a shard's fan-out queue is so long that publishing should pause.
    pub(crate) fn is_overloaded(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.backlog.load(Ordering::Relaxed) >= MAX_QUEUED_EVENTS)
    }

    /// True when no shard has events waiting or being pushed: everything delivered so far is
    /// in the outboxes.
    pub(crate) fn fan_out_is_idle(&self) -> bool {
        self.shards.iter().all(|s| {
            let queue = s.queue.lock();
            queue.events.is_empty() && !queue.busy
        })
    }

    /// Counts the connections `targets` selects (each once) and queues `event` for every
    /// shard's fan-out. Returns at once; the shards' tasks do the pushing (each connection gets
    /// the event in its wire format, encoded once per format). Callers queue events in id order.
    pub(crate) fn deliver(&self, event: &Arc<Event>, targets: &Targets) -> DeliveryReport {
        let id = event.id;
        let everyone_targeted = targets.is_broadcast();
        // Counted under the global lock, which `register` also holds: a connection is either
        // counted for this event (and gets it: it registered before, so its start position is
        // older) or not (and drops it: its start position is this event or newer).
        let mut global = self.global.lock();
        global.position = Some(id);
        // Per shard, so that only shards holding a targeted connection are woken: a publish to
        // one user wakes one shard task, not all of them.
        let per_shard: Vec<usize> = if everyone_targeted {
            Vec::new()
        } else {
            self.shards
                .iter()
                .map(|s| count_targets(&s.indices.read(), targets.list()))
                .collect()
        };
        let matched: usize = if everyone_targeted {
            global.connections
        } else {
            per_shard.iter().sum()
        };
        let fell_back =
            !everyone_targeted && matched == 0 && targets.fallback() == Fallback::Broadcast;
        let everyone = everyone_targeted || fell_back;
        let report = DeliveryReport {
            delivered: if fell_back {
                global.connections
            } else {
                matched
            },
            fell_back,
        };
        drop(global);
        if report.delivered == 0 {
            return report;
        }
        let mut shared_targets: Option<Arc<Targets>> = None;
        for (i, shard) in self.shards.iter().enumerate() {
            if !everyone && per_shard[i] == 0 {
                continue;
            }
            let mut queue = shard.queue.lock();
            if !everyone && per_shard[i] <= INLINE_FAN_OUT && !queue.busy && queue.events.is_empty()
            {
                // Nothing older is pending or being pushed in this shard (checked under its
                // queue lock, which its task needs to start a batch): pushing now keeps order.
                let mut slow = Vec::new();
                let pushed = {
                    let ix = shard.indices.read();
                    push_to_targets(&ix, event, targets, false, true, &mut slow)
                };
                drop(queue);
                for conn in &slow {
                    self.evict(conn);
                }
                self.metrics.events_delivered.inc_by(pushed);
                continue;
            }
            let targets = shared_targets
                .get_or_insert_with(|| Arc::new(targets.clone()))
                .clone();
            queue.events.push_back(Dispatch {
                event: event.clone(),
                targets,
                everyone,
            });
            shard.backlog.store(queue.events.len(), Ordering::Relaxed);
            drop(queue);
            shard.queued.notify_one();
        }
        report
    }

    /// The fan-out task of shard `index`: pushes queued events into its connections' outboxes,
    /// in queue order, until `cancel`.
    pub(crate) async fn run_shard(self: Arc<Self>, index: usize, cancel: CancellationToken) {
        loop {
            let shard = &self.shards[index];
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = shard.queued.notified() => {}
            }
            self.fan_out(index);
        }
    }

    /// Pushes everything queued in shard `index` (also used directly by tests).
    pub(crate) fn fan_out(&self, index: usize) {
        let shard = &self.shards[index];
        loop {
            let batch = {
                let mut queue = shard.queue.lock();
                if queue.events.is_empty() {
                    queue.busy = false;
                    return;
                }
                queue.busy = true;
                shard.backlog.store(0, Ordering::Relaxed);
                std::mem::take(&mut queue.events)
            };
            let mut slow = Vec::new();
            let mut pushed = 0u64;
            {
                let ix = shard.indices.read();
                for d in &batch {
                    pushed +=
                        push_to_targets(&ix, &d.event, &d.targets, d.everyone, false, &mut slow);
                }
            }
            for conn in &slow {
                self.evict(conn);
            }
            self.metrics.events_delivered.inc_by(pushed);
        }
    }

    /// Queues what `encode` makes to every connection (heartbeats), encoded once per wire
    /// format. Full outboxes are evicted.
    pub(crate) fn push_all(&self, encode: &Encode<'_>) {
        let mut encoded: [Option<Bytes>; FORMAT_SLOTS] = Default::default();
        for shard in self.shards.iter() {
            let mut slow = Vec::new();
            {
                let ix = shard.indices.read();
                for conn in ix.by_id.values() {
                    let frame = match encoded.get_mut(conn.format.slot()) {
                        Some(slot) => slot.get_or_insert_with(|| encode(conn.format)).clone(),
                        None => encode(conn.format),
                    };
                    if conn.outbox.push(frame) == Err(PushError::Full) {
                        slow.push(conn.clone());
                    }
                }
            }
            for conn in &slow {
                self.evict(conn);
            }
        }
    }
}
