//! The replay window: a bounded buffer of recent events, with what each targeted, so that a
//! client that reconnects with `Last-Event-ID` gets what it missed.
//!
//! Bounded three ways (count, age, bytes); whichever bites first evicts the oldest events. Entries
//! hold the encoded frame (the same shared bytes live delivery used), so a replay copies nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use crate::event::{Epoch, EventId};
use crate::target::{ChannelName, Target, Targets, UserId};

/// Limits of the replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most events kept; `0` turns history off.
    pub max_events: usize,
    /// Oldest event kept.
    pub max_age: Duration,
    /// Most bytes of frames kept.
    pub max_bytes: usize,
}

/// One retained event.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// Position in the epoch.
    pub seq: u64,
    /// When it was published.
    pub published_at: SystemTime,
    /// Who it was for.
    pub targets: Targets,
    /// Whether its `fallback: broadcast` fired (it then went to everyone).
    pub fell_back: bool,
    /// The encoded SSE frame, as delivered live.
    pub frame: Bytes,
}

/// Who a new connection is, for choosing the retained events it would have received live.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Its user.
    pub user: Option<UserId>,
    /// Its channels, sorted.
    pub channels: Arc<[ChannelName]>,
}

impl ReplayFilter {
    /// True if a connection like this one would have received an event sent to `targets`.
    /// Events for single connection ids never match: a new connection has a new id.
    pub fn matches(&self, targets: &Targets, fell_back: bool) -> bool {
        if fell_back || targets.is_broadcast() {
            return true;
        }
        targets.list().iter().any(|t| match t {
            Target::User(u) => self.user.as_ref() == Some(u),
            Target::Channel(c) => self.channels.binary_search(c).is_ok(),
            Target::Connection(_) | Target::Broadcast => false,
        })
    }
}

/// Why a client cannot resume from its last event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The id is older than the replay window: events were dropped since.
    HistoryGap,
    /// The id comes from another epoch (a hub restarted without its history, or another hub).
    UnknownEpoch,
}

impl ResetReason {
    /// The reason as sent in the `reset` event.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::HistoryGap => "history_gap",
            ResetReason::UnknownEpoch => "unknown_epoch",
        }
    }
}

/// What a resume gets.
#[derive(Debug, Clone)]
pub enum Replay {
    /// Every retained event after the client's id that it would have received, oldest first;
    /// `head` is the newest id of the hub when the window was read.
    Events {
        /// `(seq, frame)` pairs in order.
        frames: Vec<(u64, Bytes)>,
        /// The hub's newest id.
        head: EventId,
    },
    /// The client cannot resume; it should refetch its state.
    Reset {
        /// Why.
        reason: ResetReason,
        /// The hub's newest id, from which the client continues.
        head: EventId,
    },
}

/// Figures of the replay window for `/api/sse/stats`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryStats {
    /// Events retained.
    pub events: usize,
    /// Bytes of frames retained.
    pub bytes: usize,
    /// Oldest retained id.
    pub oldest_id: Option<String>,
    /// Newest id assigned.
    pub newest_id: Option<String>,
    /// Limit on events.
    pub max_events: usize,
    /// Limit on bytes.
    pub max_bytes: usize,
    /// Limit on age, in seconds.
    pub max_age_seconds: u64,
    /// Whether the window is also kept on disk.
    pub durable: bool,
}

/// The bounded buffer itself. Not synchronized: its engine guards it.
#[derive(Debug)]
pub struct ReplayBuffer {
    epoch: Epoch,
    limits: HistoryLimits,
    entries: VecDeque<HistoryEntry>,
    bytes: usize,
    /// The newest seq ever assigned (whether or not still retained).
    head: u64,
    /// Ranges `(after, until]` of ids that were (or may have been) assigned but whose events are
    /// lost (not persisted before a crash, or a failed disk write): a resume from before `until`
    /// would walk across one, so it gets a reset instead.
    holes: Vec<(u64, u64)>,
}

impl ReplayBuffer {
    /// An empty window for `epoch` whose next event gets seq `head + 1`.
    pub fn new(epoch: Epoch, limits: HistoryLimits, head: u64) -> Self {
        ReplayBuffer {
            epoch,
            limits,
            entries: VecDeque::new(),
            bytes: 0,
            head,
            holes: Vec::new(),
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The newest id assigned.
    pub fn head(&self) -> EventId {
        EventId {
            epoch: self.epoch,
            seq: self.head,
        }
    }

    /// The limits.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// The retained entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.entries.iter()
    }

    /// Sets the newest id assigned (after restoring from disk).
    pub fn set_head(&mut self, head: u64) {
        self.head = self.head.max(head);
    }

    /// Marks ids in `(after, until]` as lost.
    pub fn add_hole(&mut self, after: u64, until: u64) {
        if after < until {
            self.holes.push((after, until));
        }
    }

    /// Assigns the next id.
    pub fn next_id(&mut self) -> EventId {
        self.head += 1;
        self.head()
    }

    /// Retains an event (whose seq must be the current head) and evicts what falls out of the
    /// window.
    pub fn push(&mut self, entry: HistoryEntry) {
        if self.limits.max_events == 0 {
            return;
        }
        self.bytes += entry.frame.len();
        self.entries.push_back(entry);
        self.evict(SystemTime::now());
    }

    /// Restores an entry read back from durable storage (oldest first).
    pub fn restore(&mut self, entry: HistoryEntry) {
        self.head = self.head.max(entry.seq);
        self.bytes += entry.frame.len();
        self.entries.push_back(entry);
    }

    /// Drops events beyond the limits; returns the lowest seq still retained.
    pub fn evict(&mut self, now: SystemTime) -> u64 {
        while let Some(first) = self.entries.front() {
            let too_many = self.entries.len() > self.limits.max_events;
            let too_big = self.bytes > self.limits.max_bytes && self.entries.len() > 1;
            let too_old = now
                .duration_since(first.published_at)
                .is_ok_and(|age| age > self.limits.max_age);
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= first.frame.len();
            self.entries.pop_front();
        }
        let oldest = self.entries.front().map_or(self.head + 1, |e| e.seq);
        // A hole that ends before the oldest retained event resets through the gap check anyway.
        self.holes.retain(|&(_, until)| until >= oldest);
        oldest
    }

    /// What a client that last saw `after` should get.
    pub fn replay(&self, after: EventId, filter: &ReplayFilter) -> Replay {
        let head = self.head();
        if after.epoch != self.epoch || after.seq > self.head {
            return Replay::Reset {
                reason: ResetReason::UnknownEpoch,
                head,
            };
        }
        // Lost events follow `after` when a hole ends after it: from inside the hole or from
        // before it, a replay would skip them.
        if self
            .holes
            .iter()
            .any(|&(_, lost_until)| after.seq < lost_until)
        {
            return Replay::Reset {
                reason: ResetReason::HistoryGap,
                head,
            };
        }
        // The first event the client lacks is `after.seq + 1`; it must still be retained (or
        // not exist yet).
        let oldest = self.entries.front().map_or(self.head + 1, |e| e.seq);
        if after.seq + 1 < oldest {
            return Replay::Reset {
                reason: ResetReason::HistoryGap,
                head,
            };
        }
        // Seqs are contiguous within the window, except where a hole was skipped over.
        let start = self.entries.partition_point(|e| e.seq <= after.seq);
        let frames = self
            .entries
            .range(start..)
            .filter(|e| filter.matches(&e.targets, e.fell_back))
            .map(|e| (e.seq, e.frame.clone()))
            .collect();
        Replay::Events { frames, head }
    }

    /// Figures for stats.
    pub fn stats(&self) -> HistoryStats {
        HistoryStats {
            events: self.entries.len(),
            bytes: self.bytes,
            oldest_id: self.entries.front().map(|e| {
                EventId {
                    epoch: self.epoch,
                    seq: e.seq,
                }
                .to_string()
            }),
            newest_id: (self.head > 0).then(|| self.head().to_string()),
            max_events: self.limits.max_events,
            max_bytes: self.limits.max_bytes,
            max_age_seconds: self.limits.max_age.as_secs(),
            durable: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_events: usize) -> HistoryLimits {
        HistoryLimits {
            max_events,
            max_age: Duration::from_secs(60),
            max_bytes: 1 << 20,
        }
    }

    fn user(u: &str) -> Targets {
        Targets::one(Target::User(UserId::new(u).unwrap()))
    }

    fn fill(buf: &mut ReplayBuffer, targets: &[Targets]) {
        for t in targets {
            let id = buf.next_id();
            buf.push(HistoryEntry {
                seq: id.seq,
                published_at: SystemTime::now(),
                targets: t.clone(),
                fell_back: false,
                frame: Bytes::from(id.seq.to_string()),
            });
        }
    }

    fn seqs(r: Replay) -> Vec<u64> {
        match r {
            Replay::Events { frames, .. } => frames.into_iter().map(|(s, _)| s).collect(),
            Replay::Reset { reason, .. } => panic!("unexpected reset {reason:?}"),
        }
    }

    fn alice() -> ReplayFilter {
        ReplayFilter {
            user: Some(UserId::new("alice").unwrap()),
            channels: Arc::from(vec![ChannelName::new("news").unwrap()]),
        }
    }

    #[test]
    fn replays_matching_events_after_the_id() {
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(epoch, limits(100), 0);
        let news = Targets::one(Target::Channel(ChannelName::new("news").unwrap()));
        let conn = Targets::one(Target::Connection(crate::target::ConnectionId::random()));
        fill(
            &mut buf,
            &[
                user("alice"),
                user("bob"),
                news,
                Targets::broadcast(),
                conn,
                user("alice"),
            ],
        );
        let after = |seq| EventId { epoch, seq };
        assert_eq!(seqs(buf.replay(after(0), &alice())), [1, 3, 4, 6]);
        assert_eq!(seqs(buf.replay(after(3), &alice())), [4, 6]);
        assert_eq!(seqs(buf.replay(after(6), &alice())), Vec::<u64>::new());
    }

    #[test]
    fn gaps_and_foreign_epochs_reset() {
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(epoch, limits(3), 0);
        fill(&mut buf, &vec![user("alice"); 5]);
        // Retained: 3, 4, 5.
        let after = |seq| EventId { epoch, seq };
        assert_eq!(seqs(buf.replay(after(2), &alice())), [3, 4, 5]);
        assert!(matches!(
            buf.replay(after(1), &alice()),
            Replay::Reset {
                reason: ResetReason::HistoryGap,
                ..
            }
        ));
        let other = EventId {
            epoch: Epoch::random(),
            seq: 4,
        };
        assert!(matches!(
            buf.replay(other, &alice()),
            Replay::Reset {
                reason: ResetReason::UnknownEpoch,
                ..
            }
        ));
        assert!(matches!(
            buf.replay(after(99), &alice()),
            Replay::Reset {
                reason: ResetReason::UnknownEpoch,
                ..
            }
        ));
    }

    #[test]
    fn bounded_by_bytes_and_age() {
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(
            epoch,
            HistoryLimits {
                max_events: 100,
                max_age: Duration::from_secs(60),
                max_bytes: 3,
            },
            0,
        );
        fill(&mut buf, &vec![user("alice"); 5]); // frames "1".."5", one byte each
        assert_eq!(buf.stats().events, 3);
        assert_eq!(buf.stats().bytes, 3);
        let later = SystemTime::now() + Duration::from_secs(120);
        assert_eq!(buf.evict(later), 6);
        assert_eq!(buf.stats().events, 0);
        // Up to date with an empty window is not a gap.
        assert_eq!(
            seqs(buf.replay(EventId { epoch, seq: 5 }, &alice())),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn history_off_still_tracks_the_head() {
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(epoch, limits(0), 0);
        fill(&mut buf, &[user("alice"), user("alice")]);
        assert_eq!(buf.head().seq, 2);
        assert_eq!(
            seqs(buf.replay(EventId { epoch, seq: 2 }, &alice())),
            Vec::<u64>::new()
        );
        assert!(matches!(
            buf.replay(EventId { epoch, seq: 1 }, &alice()),
            Replay::Reset { .. }
        ));
    }

    #[test]
    fn a_hole_resets() {
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(epoch, limits(100), 0);
        fill(&mut buf, &vec![user("alice"); 10]);
        buf.add_hole(10, 20);
        buf.head = 20;
        fill(&mut buf, &[user("alice")]);
        // From inside the hole, from its start and from before it: a replay would skip 11..=20.
        for lost in [10, 15, 5] {
            assert!(matches!(
                buf.replay(EventId { epoch, seq: lost }, &alice()),
                Replay::Reset {
                    reason: ResetReason::HistoryGap,
                    ..
                }
            ));
        }
        fill(&mut buf, &[user("alice")]);
        assert_eq!(
            seqs(buf.replay(EventId { epoch, seq: 20 }, &alice())),
            [21, 22]
        );
        assert_eq!(seqs(buf.replay(EventId { epoch, seq: 21 }, &alice())), [22]);
    }
}
