//! The replay window: a bounded buffer of recent events, with what each targeted, so that a
//! client that reconnects with `Last-Event-ID` gets what it missed.
//!
//! Bounded three ways (count, age, bytes); whichever bites first evicts the oldest events. Entries
//! hold the shared [`Event`] live delivery used (with the encodings it made), so a replay copies
//! nothing and re-encodes nothing.
//!
//! Presence events (`presence:join` / `presence:leave`) are not retained (see [`is_retained`]):
//! presence is state that a reconnecting client reads again, and a churn of joins and leaves
//! must not push real events out of the window.
//!
//! A resume reads the window in chunks ([`ReplayBuffer::replay_start`],
//! [`ReplayBuffer::replay_chunk`]) so that its engine never holds its lock across a long scan,
//! and stops at a [`ReplayCap`]: beyond it the client gets `reset` (`replay_too_large`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::event::{Epoch, Event, EventId, EventName};
use crate::target::{ChannelName, Target, Targets, UserId};

/// Limits of the replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most events kept; `0` turns history off.
    pub max_events: usize,
    /// Oldest event kept.
    pub max_age: Duration,
    /// Most bytes kept (event names and payloads, [`Event::size`]).
    pub max_bytes: usize,
}

/// Whether an event with this name is kept in the replay window. Presence events are not: they
/// describe state (who is in a channel) that a reconnecting client reads again, and a churn of
/// joins and leaves would otherwise push real events out of the window. Users cannot publish
/// these names (they are reserved), so only the hub's own presence events are skipped.
pub fn is_retained(name: &EventName) -> bool {
    !matches!(name.as_str(), "presence:join" | "presence:leave")
}

/// The most one resume may replay: beyond either limit the client gets `reset`
/// (`replay_too_large`) instead of the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCap {
    /// Most events replayed.
    pub max_events: usize,
    /// Most bytes replayed (event names and payloads).
    pub max_bytes: usize,
}

impl ReplayCap {
    /// No cap (tests and library users that bound the window instead).
    pub const UNLIMITED: ReplayCap = ReplayCap {
        max_events: usize::MAX,
        max_bytes: usize::MAX,
    };
}

/// Collects replayed events up to a [`ReplayCap`].
#[derive(Debug)]
pub struct ReplayCollector {
    cap: ReplayCap,
    events: Vec<Arc<Event>>,
    bytes: usize,
}

impl ReplayCollector {
    /// An empty collection bounded by `cap`.
    pub fn new(cap: ReplayCap) -> Self {
        ReplayCollector {
            cap,
            events: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds an event; returns false (and keeps nothing more) once the cap is exceeded.
    pub fn push(&mut self, event: Arc<Event>) -> bool {
        if self.events.len() >= self.cap.max_events
            || self.bytes.saturating_add(event.size()) > self.cap.max_bytes
        {
            return false;
        }
        self.bytes += event.size();
        self.events.push(event);
        true
    }

    /// Events the cap still allows.
    pub fn events_left(&self) -> usize {
        self.cap.max_events - self.events.len()
    }

    /// Bytes the cap still allows.
    pub fn bytes_left(&self) -> usize {
        self.cap.max_bytes - self.bytes
    }

    /// The events collected, oldest first.
    pub fn into_events(self) -> Vec<Arc<Event>> {
        self.events
    }
}

/// Where a chunked replay of a [`ReplayBuffer`] stands.
#[derive(Debug, Clone, Copy)]
pub struct ReplayCursor {
    /// The hub's newest id when the replay started: the replay ends there.
    pub head: EventId,
    /// The next seq to read.
    next: u64,
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
    /// The event, as delivered live.
    pub event: Arc<Event>,
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
    /// More events (or bytes) were missed than one resume may replay (`max_replay_events`,
    /// `max_replay_bytes`).
    ReplayTooLarge,
}

impl ResetReason {
    /// The reason as sent in the `reset` event.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::HistoryGap => "history_gap",
            ResetReason::UnknownEpoch => "unknown_epoch",
            ResetReason::ReplayTooLarge => "replay_too_large",
        }
    }
}

/// What a resume gets.
#[derive(Debug, Clone)]
pub enum Replay {
    /// Every retained event after the client's id that it would have received, oldest first;
    /// `head` is the newest id of the hub when the window was read.
    Events {
        /// The events, in id order.
        events: Vec<Arc<Event>>,
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
    /// Bytes retained (event names and payloads).
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
    /// Oldest first. A replay reads them in chunks under the engine's lock and copies out
    /// (pointers to) the events it wants.
    entries: VecDeque<HistoryEntry>,
    bytes: usize,
    /// The newest seq ever assigned (whether or not still retained).
    head: u64,
    /// Every event at or below this seq that is not retained is lost: the seq of the newest
    /// event dropped from the window (evicted, or not kept because history is off). Events
    /// that are never retained by design (presence) do not move it.
    lost: u64,
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
            lost: head,
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
        if self.entries.is_empty() {
            // Nothing retained: whatever was assigned up to here is gone.
            self.lost = self.lost.max(self.head);
        }
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
            self.lost = self.lost.max(entry.seq);
            return;
        }
        self.bytes += entry.event.size();
        self.entries.push_back(entry);
        self.evict(SystemTime::now());
    }

    /// Restores an entry read back from durable storage (oldest first). Presence events (which
    /// the durable store keeps so that their ids are accounted for) only move the head.
    pub fn restore(&mut self, entry: HistoryEntry) {
        if !is_retained(&entry.event.name) {
            self.head = self.head.max(entry.seq);
            return;
        }
        if self.entries.is_empty() {
            // Whatever came before the first restored event is not on disk any more.
            self.lost = self.lost.max(entry.seq.saturating_sub(1));
        }
        self.head = self.head.max(entry.seq);
        self.bytes += entry.event.size();
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
            self.bytes -= first.event.size();
            self.lost = self.lost.max(first.seq);
            self.entries.pop_front();
        }
        let oldest = self.entries.front().map_or(self.head + 1, |e| e.seq);
        // A hole that ends before the oldest retained event resets through the gap check anyway.
        self.holes.retain(|&(_, until)| until >= oldest);
        oldest
    }

    /// What a client that last saw `after` should get, uncapped, in one go (for tests and
    /// small windows; engines use [`replay_start`](Self::replay_start) and
    /// [`replay_chunk`](Self::replay_chunk)).
    pub fn replay(&self, after: EventId, filter: &ReplayFilter) -> Replay {
        let mut cursor = match self.replay_start(after) {
            Ok(cursor) => cursor,
            Err(reset) => return reset,
        };
        let mut events = Vec::new();
        loop {
            let Some(done) = self.replay_chunk(&mut cursor, usize::MAX, filter, &mut events) else {
                return Replay::Reset {
                    reason: ResetReason::HistoryGap,
                    head: cursor.head,
                };
            };
            if done {
                return Replay::Events {
                    events,
                    head: cursor.head,
                };
            }
        }
    }

    /// Starts a replay for a client that last saw `after`: the `reset` it gets instead, or a
    /// cursor for [`replay_chunk`](Self::replay_chunk) that ends at the current head.
    ///
    /// # Errors
    /// The [`Replay::Reset`] to send when the client cannot resume.
    pub fn replay_start(&self, after: EventId) -> Result<ReplayCursor, Replay> {
        let head = self.head();
        if after.epoch != self.epoch || after.seq > self.head {
            return Err(Replay::Reset {
                reason: ResetReason::UnknownEpoch,
                head,
            });
        }
        // Lost events follow `after` when a hole ends after it: from inside the hole or from
        // before it, a replay would skip them.
        if self
            .holes
            .iter()
            .any(|&(_, lost_until)| after.seq < lost_until)
        {
            return Err(Replay::Reset {
                reason: ResetReason::HistoryGap,
                head,
            });
        }
        // The first event the client lacks is `after.seq + 1`: nothing from there on may have
        // been dropped.
        if after.seq < self.lost {
            return Err(Replay::Reset {
                reason: ResetReason::HistoryGap,
                head,
            });
        }
        Ok(ReplayCursor {
            head,
            next: after.seq + 1,
        })
    }

    /// Reads up to `max` retained entries of the replay at `cursor`, copies (pointers to) the
    /// events among them that `filter` matches into `out`, and moves the cursor past them.
    /// Returns `Some(true)` when the replay reached its head, `Some(false)` when there is more,
    /// and `None` when events the replay had not read yet were dropped from the window since it
    /// started (the client then gets `history_gap`).
    pub fn replay_chunk(
        &self,
        cursor: &mut ReplayCursor,
        max: usize,
        filter: &ReplayFilter,
        out: &mut Vec<Arc<Event>>,
    ) -> Option<bool> {
        if cursor.next > cursor.head.seq {
            return Some(true);
        }
        if cursor.head.epoch != self.epoch || self.lost >= cursor.next {
            return None;
        }
        // Seqs grow along the window (with holes where events were not retained).
        let start = self.entries.partition_point(|e| e.seq < cursor.next);
        for (read, entry) in self.entries.range(start..).enumerate() {
            if entry.seq > cursor.head.seq {
                cursor.next = cursor.head.seq + 1;
                return Some(true);
            }
            if read >= max {
                cursor.next = entry.seq;
                return Some(false);
            }
            if filter.matches(&entry.targets, entry.fell_back) {
                out.push(entry.event.clone());
            }
        }
        cursor.next = cursor.head.seq + 1;
        Some(true)
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

    /// An event named `n` whose payload is `payload`: `1 + payload.len()` bytes.
    fn event(id: EventId, payload: &str) -> Arc<Event> {
        Arc::new(Event::new(
            id,
            EventName::new("n").unwrap(),
            crate::event::Payload::text(payload),
        ))
    }

    fn fill(buf: &mut ReplayBuffer, targets: &[Targets]) {
        for t in targets {
            let id = buf.next_id();
            buf.push(HistoryEntry {
                seq: id.seq,
                published_at: SystemTime::now(),
                targets: t.clone(),
                fell_back: false,
                event: event(id, &id.seq.to_string()),
            });
        }
    }

    fn seqs(r: Replay) -> Vec<u64> {
        match r {
            Replay::Events { events, .. } => events.into_iter().map(|e| e.id.seq).collect(),
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
                max_bytes: 12,
            },
            0,
        );
        fill(&mut buf, &vec![user("alice"); 5]); // name "n", payloads "1".."5": 4 bytes each
        assert_eq!(buf.stats().events, 3);
        assert_eq!(buf.stats().bytes, 12);
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
        buf.set_head(20);
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

    #[test]
    fn events_not_retained_do_not_count_as_lost() {
        // Presence events get ids but are not retained: a client whose last id is just before
        // one of them, or is one of them, resumes without a gap.
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(epoch, limits(3), 0);
        fill(&mut buf, &[user("alice")]); // 1
        for _ in 0..10 {
            buf.next_id(); // 2..=11: not retained (presence)
        }
        fill(&mut buf, &[user("alice"), user("alice")]); // 12, 13
        let after = |seq| EventId { epoch, seq };
        assert_eq!(seqs(buf.replay(after(0), &alice())), [1, 12, 13]);
        assert_eq!(seqs(buf.replay(after(5), &alice())), [12, 13]);
        fill(&mut buf, &[user("alice"), user("alice")]); // 14, 15: 1 and 12 are evicted
        assert_eq!(seqs(buf.replay(after(12), &alice())), [13, 14, 15]);
        assert!(matches!(
            buf.replay(after(11), &alice()),
            Replay::Reset {
                reason: ResetReason::HistoryGap,
                ..
            }
        ));
    }

    #[test]
    fn chunks_cover_the_range_once_and_notice_eviction() {
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(epoch, limits(100), 0);
        fill(&mut buf, &vec![user("alice"); 10]);
        let mut cursor = buf.replay_start(EventId { epoch, seq: 2 }).unwrap();
        // Published after the start: not part of this replay.
        fill(&mut buf, &[user("alice")]);
        let mut got = Vec::new();
        let mut chunk = Vec::new();
        loop {
            chunk.clear();
            let done = buf
                .replay_chunk(&mut cursor, 3, &alice(), &mut chunk)
                .unwrap();
            assert!(chunk.len() <= 3);
            got.extend(chunk.iter().map(|e| e.id.seq));
            if done {
                break;
            }
        }
        assert_eq!(got, (3..=10).collect::<Vec<_>>());

        // Events the replay has not read yet fall out of the window: it cannot go on.
        let mut buf = ReplayBuffer::new(epoch, limits(5), 0);
        fill(&mut buf, &vec![user("alice"); 5]);
        let mut cursor = buf.replay_start(EventId { epoch, seq: 0 }).unwrap();
        chunk.clear();
        assert_eq!(
            buf.replay_chunk(&mut cursor, 2, &alice(), &mut chunk),
            Some(false)
        );
        fill(&mut buf, &vec![user("alice"); 3]); // evicts 1..=3; 3 was not read yet
        chunk.clear();
        assert_eq!(buf.replay_chunk(&mut cursor, 2, &alice(), &mut chunk), None);
    }

    #[test]
    fn the_collector_stops_at_its_cap() {
        let mut c = ReplayCollector::new(ReplayCap {
            max_events: 2,
            max_bytes: 100,
        });
        let epoch = Epoch::random();
        let id = |seq| EventId { epoch, seq };
        assert!(c.push(event(id(1), "a")));
        assert!(c.push(event(id(2), "b")));
        assert!(!c.push(event(id(3), "c")));
        let mut c = ReplayCollector::new(ReplayCap {
            max_events: 100,
            max_bytes: 6,
        });
        assert!(c.push(event(id(1), "ab")));
        assert!(!c.push(event(id(2), "cd")));
        assert_eq!(c.into_events().len(), 1);
    }

    #[test]
    fn presence_events_are_not_retained() {
        assert!(!is_retained(&EventName::system("presence:join")));
        assert!(!is_retained(&EventName::system("presence:leave")));
        assert!(is_retained(&EventName::new("message").unwrap()));
        assert!(is_retained(&EventName::new("presence").unwrap()));
    }

    #[test]
    fn restored_presence_events_only_move_the_head() {
        let epoch = Epoch::random();
        let mut buf = ReplayBuffer::new(epoch, limits(100), 0);
        let entry = |seq: u64, name: EventName| {
            let id = EventId { epoch, seq };
            HistoryEntry {
                seq,
                published_at: SystemTime::now(),
                targets: user("alice"),
                fell_back: false,
                event: Arc::new(Event::new(id, name, crate::event::Payload::text("{}"))),
            }
        };
        buf.restore(entry(1, EventName::new("n").unwrap()));
        buf.restore(entry(2, EventName::system("presence:join")));
        buf.restore(entry(3, EventName::system("presence:leave")));
        assert_eq!(buf.head().seq, 3);
        assert_eq!(buf.stats().events, 1);
        assert_eq!(seqs(buf.replay(EventId { epoch, seq: 0 }, &alice())), [1]);
        assert_eq!(
            seqs(buf.replay(EventId { epoch, seq: 2 }, &alice())),
            Vec::<u64>::new()
        );
    }
}
