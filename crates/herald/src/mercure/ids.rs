//! Which Herald event carries the update of each Mercure id, so that a subscriber resuming from
//! a publisher's id (`Last-Event-ID: https://example.com/updates/42`) resumes from that event.
//!
//! Kept by the node that published the update, right after its broker gave it an id, and
//! bounded (the oldest ids are forgotten first). An id not found here (published on another
//! node of a Redis cluster, before a restart, or forgotten) is asked of the engine (Redis keeps
//! each publisher's id for the whole cluster: [`Hub::find_key`](crate::Hub::find_key)), then
//! looked for in the history itself, among what the subscriber would have received, within
//! the replay cap ([`LenientStart::AfterMatching`](crate::transport::LenientStart::AfterMatching));
//! when it is not there either, the subscriber gets what is retained (within the cap) and
//! `Last-Event-ID` says where that starts.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::event::EventId;

/// Ids remembered by default: the default replay window's size and more.
pub(crate) const DEFAULT_MAX_IDS: usize = 100_000;

/// Mercure ids of recent updates, and the event of each.
#[derive(Debug)]
pub(crate) struct IdIndex {
    by_id: HashMap<Arc<str>, EventId>,
    /// Oldest first, with the event each entry was made for (an id published again moves).
    order: VecDeque<(Arc<str>, EventId)>,
    /// The newest update's id.
    newest: Option<Arc<str>>,
    max: usize,
}

impl IdIndex {
    /// An empty index of at most `max` ids.
    pub(crate) fn new(max: usize) -> Self {
        IdIndex {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            newest: None,
            max: max.max(1),
        }
    }

    /// Remembers that `id` is the update of `event` (a newer update with the same id wins).
    pub(crate) fn insert(&mut self, id: &str, event: EventId) {
        let id: Arc<str> = id.into();
        let newer = self
            .newest
            .as_ref()
            .and_then(|n| self.by_id.get(n))
            .is_none_or(|n| n.epoch != event.epoch || n.seq <= event.seq);
        if newer {
            self.newest = Some(id.clone());
        }
        self.by_id.insert(id.clone(), event);
        self.order.push_back((id, event));
        while self.order.len() > self.max {
            if let Some((old, at)) = self.order.pop_front() {
                if self.by_id.get(&old) == Some(&at) {
                    self.by_id.remove(&old);
                }
            }
        }
    }

    /// The event of update `id`.
    pub(crate) fn get(&self, id: &str) -> Option<EventId> {
        self.by_id.get(id).copied()
    }

    /// The id of the newest update, if any is remembered.
    pub(crate) fn newest(&self) -> Option<&str> {
        self.newest.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Epoch;

    #[test]
    fn bounded_and_the_newest_wins() {
        let epoch = Epoch::random();
        let at = |seq| EventId { epoch, seq };
        let mut ix = IdIndex::new(2);
        assert_eq!(ix.newest(), None);
        ix.insert("a", at(1));
        ix.insert("b", at(2));
        assert_eq!((ix.get("a"), ix.get("b")), (Some(at(1)), Some(at(2))));
        assert_eq!(ix.newest(), Some("b"));
        ix.insert("a", at(3));
        assert_eq!(ix.get("a"), Some(at(3)), "published again");
        assert_eq!(ix.newest(), Some("a"));
        ix.insert("c", at(4));
        assert_eq!(ix.get("b"), None, "the oldest is forgotten");
        assert_eq!(ix.get("a"), Some(at(3)), "its newer entry stays");
        assert_eq!(ix.get("c"), Some(at(4)));
    }
}
