//! Completeness bookkeeping for one subscriber: which sequence numbers arrived, how often and in
//! what order, checked against what was actually published.

use std::sync::Arc;

/// Which user the targeted publish of event `seq` goes to: a fixed pseudo-random function of
/// `(seed, seq)`, so that worker processes know each user's events without being told.
pub(crate) fn target_user(seed: u64, seq: u64, users: u64) -> u64 {
    splitmix64(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % users.max(1)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// For each of `count` subscribers starting at global index `first`, the sorted sequence
/// numbers (of `0..events`) that target it.
pub(crate) fn targeted_lists(
    first: u64,
    count: u64,
    events: u64,
    users: u64,
    seed: u64,
) -> Vec<Box<[u64]>> {
    let mut lists: Vec<Vec<u64>> = vec![Vec::new(); count as usize];
    for seq in 0..events {
        let user = target_user(seed, seq, users);
        if user >= first && user < first + count {
            lists[(user - first) as usize].push(seq);
        }
    }
    lists.into_iter().map(Vec::into_boxed_slice).collect()
}

/// What a subscriber expects to receive.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// Nothing (idle connections).
    Nothing,
    /// Every event `0..events` (fan-out on one channel).
    All { events: u64 },
    /// The events whose sequence numbers are in `lists[index]` (targeted publishes).
    Targeted {
        lists: Arc<Vec<Box<[u64]>>>,
        index: usize,
    },
}

impl Expect {
    fn slots(&self) -> usize {
        match self {
            Expect::Nothing => 0,
            Expect::All { events } => *events as usize,
            Expect::Targeted { lists, index } => lists[*index].len(),
        }
    }

    fn slot_of(&self, seq: u64) -> Option<usize> {
        match self {
            Expect::Nothing => None,
            Expect::All { events } => (seq < *events).then_some(seq as usize),
            Expect::Targeted { lists, index } => lists[*index].binary_search(&seq).ok(),
        }
    }

    /// How many of this subscriber's slots have a sequence number below `issued` (a prefix,
    /// since slots are in sequence order).
    fn issued_slots(&self, issued: u64) -> usize {
        match self {
            Expect::Nothing => 0,
            Expect::All { events } => issued.min(*events) as usize,
            Expect::Targeted { lists, index } => lists[*index].partition_point(|&s| s < issued),
        }
    }
}

/// Per-subscriber counters and the set of sequence numbers seen.
#[derive(Debug)]
pub(crate) struct Tracker {
    expect: Expect,
    seen: Vec<u64>,
    /// Benchmark events received (duplicates included).
    pub(crate) received: u64,
    /// Distinct expected sequence numbers received.
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    /// Events that arrived after one with a higher sequence number.
    pub(crate) out_of_order: u64,
    /// Events this subscriber should never have seen (another user's, or unknown numbers).
    pub(crate) misdirected: u64,
    max_seq: Option<u64>,
    /// A hash of the order events arrived in; equal across subscribers that saw the same order.
    pub(crate) order_hash: u64,
    /// The last Herald event id seen (`(epoch, seq)`), and how many ids did not grow.
    last_id: Option<(u64, u64)>,
    pub(crate) id_regressions: u64,
}

/// A Herald event id `<hex epoch>-<decimal seq>` as `(epoch, seq)`, ordered as the hub orders
/// them; `None` for any other id.
pub(crate) fn parse_event_id(id: &[u8]) -> Option<(u64, u64)> {
    let dash = memchr::memrchr(b'-', id)?;
    let (epoch, seq) = (&id[..dash], &id[dash + 1..]);
    let epoch = u64::from_str_radix(std::str::from_utf8(epoch).ok()?, 16).ok()?;
    if seq.is_empty() || !seq.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((epoch, std::str::from_utf8(seq).ok()?.parse().ok()?))
}

/// The verdict on one subscriber once publishing is over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) expected: u64,
    pub(crate) lost: u64,
    /// Events received whose publish was not confirmed (failed or abandoned): not an error.
    pub(crate) unconfirmed: u64,
}

impl Tracker {
    pub(crate) fn new(expect: Expect) -> Self {
        let words = expect.slots().div_ceil(64);
        Tracker {
            expect,
            seen: vec![0; words],
            received: 0,
            unique: 0,
            duplicates: 0,
            out_of_order: 0,
            misdirected: 0,
            max_seq: None,
            order_hash: 0xCBF2_9CE4_8422_2325,
            last_id: None,
            id_regressions: 0,
        }
    }

    /// Records the id of an event (any event, the `connected` one included): each must be
    /// greater than the one before. Ids that are not Herald's are ignored.
    #[inline]
    pub(crate) fn record_id(&mut self, id: &[u8]) {
        let Some(id) = parse_event_id(id) else {
            return;
        };
        if self.last_id.is_some_and(|last| id <= last) {
            self.id_regressions += 1;
        }
        self.last_id = Some(id);
    }

    /// Records one received event. Returns whether it was new and expected.
    #[inline]
    pub(crate) fn record(&mut self, seq: u64) -> bool {
        self.received += 1;
        self.order_hash = (self.order_hash ^ seq).wrapping_mul(0x0100_0000_01B3);
        let Some(slot) = self.expect.slot_of(seq) else {
            self.misdirected += 1;
            return false;
        };
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        match self.max_seq {
            Some(max) if seq < max => self.out_of_order += 1,
            _ => self.max_seq = Some(seq),
        }
        true
    }

    fn is_seen(&self, slot: usize) -> bool {
        self.seen[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// How many events this subscriber should get, given that sequence numbers `0..issued` were
    /// handed out and `failed` (sorted) of them were not confirmed.
    pub(crate) fn expected_count(&self, issued: u64, failed: &[u64]) -> u64 {
        let slots = self.expect.issued_slots(issued);
        let failed_here = failed
            .iter()
            .filter(|&&f| self.expect.slot_of(f).is_some_and(|s| s < slots))
            .count();
        (slots - failed_here) as u64
    }

    pub(crate) fn verdict(&self, issued: u64, failed: &[u64]) -> Verdict {
        let slots = self.expect.issued_slots(issued);
        let full_words = slots / 64;
        let mut seen_issued: u64 = self.seen[..full_words]
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        for slot in full_words * 64..slots {
            seen_issued += u64::from(self.is_seen(slot));
        }
        let mut failed_here = 0;
        for &f in failed {
            if let Some(slot) = self.expect.slot_of(f).filter(|&s| s < slots) {
                failed_here += 1;
                seen_issued -= u64::from(self.is_seen(slot));
            }
        }
        let expected = (slots - failed_here) as u64;
        Verdict {
            expected,
            lost: expected - seen_issued,
            unconfirmed: self.unique - seen_issued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_duplicates_and_reordering() {
        let mut t = Tracker::new(Expect::All { events: 10 });
        for seq in [0, 1, 3, 2, 3, 5, 4, 9, 42] {
            t.record(seq);
        }
        assert_eq!((t.received, t.unique, t.duplicates), (9, 7, 1));
        assert_eq!(t.out_of_order, 2); // 2 after 3, 4 after 5
        assert_eq!(t.misdirected, 1); // 42
        let v = t.verdict(10, &[]);
        assert_eq!((v.expected, v.lost, v.unconfirmed), (10, 3, 0)); // 6, 7, 8
                                                                     // 9 was handed out but its publish failed; 8 too, and never arrived.
        let v = t.verdict(10, &[8, 9]);
        assert_eq!((v.expected, v.lost, v.unconfirmed), (8, 2, 1));
        // Only 0..5 were handed out: 9 arrived anyway.
        let v = t.verdict(5, &[]);
        assert_eq!((v.expected, v.lost, v.unconfirmed), (5, 0, 2));
        assert_eq!(t.expected_count(10, &[8, 9]), 8);
    }

    #[test]
    fn order_hash_depends_on_order() {
        let mut a = Tracker::new(Expect::All { events: 3 });
        let mut b = Tracker::new(Expect::All { events: 3 });
        let mut c = Tracker::new(Expect::All { events: 3 });
        for s in [0, 1, 2] {
            a.record(s);
            b.record(s);
        }
        for s in [1, 0, 2] {
            c.record(s);
        }
        assert_eq!(a.order_hash, b.order_hash);
        assert_ne!(a.order_hash, c.order_hash);
    }

    #[test]
    fn targeted_lists_partition_the_events() {
        let (events, users, seed) = (5000, 37, 99);
        let all = targeted_lists(0, users, events, users, seed);
        assert_eq!(all.iter().map(|l| l.len() as u64).sum::<u64>(), events);
        let part = targeted_lists(10, 5, events, users, seed);
        assert_eq!(&part[..], &all[10..15]);
        assert!(
            all.iter().all(|l| !l.is_empty()),
            "every user gets some of 5000 events"
        );
        let lists = Arc::new(all);
        let mut t = Tracker::new(Expect::Targeted {
            lists: lists.clone(),
            index: 3,
        });
        for &seq in lists[3].iter() {
            assert!(t.record(seq));
        }
        assert!(!t.record(lists[4][0]));
        assert_eq!(t.misdirected, 1);
        let v = t.verdict(events, &[]);
        assert_eq!((v.expected, v.lost), (lists[3].len() as u64, 0));
        // Half the events handed out: the user expects only its share of those.
        let share = lists[3].iter().filter(|&&s| s < 2500).count() as u64;
        assert_eq!(t.verdict(2500, &[]).expected, share);
    }

    #[test]
    fn ids_must_grow() {
        assert_eq!(parse_event_id(b"000000000abc-7"), Some((0xabc, 7)));
        assert_eq!(parse_event_id(b"abc-"), None);
        assert_eq!(parse_event_id(b"x-1"), None);
        assert_eq!(parse_event_id(b"17"), None);
        let mut t = Tracker::new(Expect::Nothing);
        for id in [
            &b"a-1"[..],
            b"a-2",
            b"a-10",
            b"b-0",
            b"other",
            b"b-0",
            b"a-99",
            b"b-1",
        ] {
            t.record_id(id);
        }
        assert_eq!(t.id_regressions, 2); // b-0 again, then a-99
    }

    #[test]
    fn nothing_expected() {
        let mut t = Tracker::new(Expect::Nothing);
        assert!(!t.record(0));
        assert_eq!(t.verdict(0, &[]), Verdict::default());
    }
}
