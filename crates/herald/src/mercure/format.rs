//! What a Mercure subscriber receives: its wire format ([`MERCURE`]) and the filter that decides
//! which updates reach it (`TopicFilter`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;

use super::selector::{Selector, SelectorSpec};
use super::update::Update;
use crate::config::HeartbeatStyle;
use crate::event::{Event, EventId, EventName};
use crate::sse::frame;
use crate::transport::{slot, DeliveryFilter, FilterScratch, WireFormat};

/// Mercure's SSE: `id:` is the update's id (the publisher's), `event:` only when the update has
/// a `type`, `retry:` when it has one, then one `data:` line per line of its data. The stream
/// opens with a comment, and heartbeats are comments, as the Mercure hub writes them.
#[derive(Debug)]
pub struct MercureFormat;

/// The one instance of [`MercureFormat`].
pub static MERCURE: MercureFormat = MercureFormat;

impl WireFormat for MercureFormat {
    fn slot(&self) -> usize {
        slot::MERCURE
    }

    fn name(&self) -> &'static str {
        "mercure"
    }

    fn encode_event(&self, event: &Event) -> Bytes {
        // Only updates pass a Mercure connection's filter; anything else writes nothing.
        let Some(update) = Update::from_event(event) else {
            return Bytes::new();
        };
        encode_update(&update)
    }

    fn encode_control(&self, _: Option<&EventId>, name: &EventName, _: &str) -> Bytes {
        // The protocol has no events of the hub's own: `connected` opens the stream with an
        // empty comment (what flushes the headers in the Mercure hub), the rest are left out.
        match name.as_str() {
            "connected" => Bytes::from_static(b":\n"),
            _ => Bytes::new(),
        }
    }

    fn encode_heartbeat(&self, _: HeartbeatStyle, _: &str) -> Bytes {
        Bytes::from_static(b":\n")
    }

    fn encode_retry(&self, delay: Duration) -> Option<Bytes> {
        Some(frame::encode_retry(delay))
    }

    fn max_metadata_bytes(&self) -> usize {
        super::subscriptions::MAX_RECORD_BYTES
    }
}

/// The SSE frame of one update.
pub(crate) fn encode_update(update: &Update) -> Bytes {
    let mut buf = BytesMut::with_capacity(update.data.len() + update.id.len() + 64);
    buf.put_slice(b"id: ");
    buf.put_slice(update.id.as_bytes());
    buf.put_u8(b'\n');
    if let Some(t) = &update.event_type {
        buf.put_slice(b"event: ");
        buf.put_slice(t.as_bytes());
        buf.put_u8(b'\n');
    }
    if let Some(retry) = update.retry {
        buf.put_slice(format!("retry: {retry}\n").as_bytes());
    }
    // Always at least one `data:` line: an event without one is never dispatched.
    frame::put_data_lines(&mut buf, &update.data);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// What one subscriber listens to: its topic selectors (the `topic`, `match` or
/// `match_urlpattern` parameters) and, with a token, the selectors of its `mercure.subscribe`
/// claim or its `subscribe` authorization details that open private updates to it (`None`:
/// anonymous, never a private update).
///
/// It gets an update when one of the update's topics matches one of its selectors and, for a
/// private update, one of the topics (not necessarily the same) matches one of the claim's
/// selectors. Filters are interned ([`SelectorStore::filter`]): subscribers with the same
/// selectors and claim share one, which fan-out then asks once per update and shard.
#[derive(Debug)]
pub(crate) struct TopicFilter {
    pub(crate) selectors: Vec<Arc<Selector>>,
    pub(crate) allowed: Option<Vec<Arc<Selector>>>,
}

/// The per-update scratch of topic filters: the decoded update, and what each selector said.
struct Scratch {
    update: Option<Arc<Update>>,
    /// By selector (pointer): whether it matches one of the update's topics.
    matched: HashMap<usize, bool>,
}

impl TopicFilter {
    /// Whether this subscriber gets `update` (`matched` remembers each selector's answer).
    fn accepts_update(&self, update: &Update, matched: &mut HashMap<usize, bool>) -> bool {
        let mut any = |selectors: &[Arc<Selector>]| {
            selectors.iter().any(|s| {
                let key = Arc::as_ptr(s) as usize;
                *matched
                    .entry(key)
                    .or_insert_with(|| update.topics.iter().any(|t| s.matches(t)))
            })
        };
        if !any(&self.selectors) {
            return false;
        }
        if !update.private {
            return true;
        }
        match &self.allowed {
            Some(allowed) => any(allowed),
            None => false,
        }
    }

    /// Whether this subscriber gets `update`, on its own (replays, tests).
    #[cfg(test)]
    pub(crate) fn accepts_alone(&self, update: &Update) -> bool {
        self.accepts_update(update, &mut HashMap::new())
    }
}

impl DeliveryFilter for TopicFilter {
    fn accepts(&self, event: &Event, scratch: &mut FilterScratch) -> bool {
        let state = scratch.state(|| Scratch {
            update: Update::from_event(event),
            matched: HashMap::new(),
        });
        let Some(update) = state.update.clone() else {
            return false;
        };
        self.accepts_update(&update, &mut state.matched)
    }
}

/// Compiled selectors and filters, each kept once while someone uses it: compiling a template
/// or a URL Pattern costs far more than matching it, and a shared filter is asked once per
/// update and shard.
///
/// Relative URL Patterns and relative topics are resolved against one base URL, the hub's
/// resource identifier when `--mercure-resource-identifier` sets it (so `/books/:id` also
/// matches `https://that-host/books/1`), otherwise [`DEFAULT_BASE`]: relative patterns then
/// match relative topics (such as the hub's own `/.well-known/mercure/subscriptions/…`) and
/// absolute ones on that placeholder host only.
#[derive(Debug)]
pub(crate) struct SelectorStore {
    base: url::Url,
    selectors: Mutex<Interned<Selector>>,
    filters: Mutex<Interned<TopicFilter>>,
}

/// The base URL of relative URL Patterns when no resource identifier is configured.
pub(crate) const DEFAULT_BASE: &str = "https://mercure.invalid/.well-known/mercure";

impl Default for SelectorStore {
    fn default() -> Self {
        // A constant, valid URL.
        SelectorStore::new(url::Url::parse(DEFAULT_BASE).expect("a valid URL"))
    }
}

/// Values by key, held weakly: a value lives as long as its users.
#[derive(Debug)]
struct Interned<T> {
    map: HashMap<String, Weak<T>>,
    /// Forget dead entries when the map grows past this.
    next_sweep: usize,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Interned {
            map: HashMap::new(),
            next_sweep: 1024,
        }
    }
}

impl<T> Interned<T> {
    fn get_or_insert(&mut self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(live) = self.map.get(key).and_then(Weak::upgrade) {
            return live;
        }
        if self.map.len() >= self.next_sweep {
            self.map.retain(|_, v| v.strong_count() > 0);
            self.next_sweep = (self.map.len() * 2).max(1024);
        }
        let value = Arc::new(make());
        self.map.insert(key.to_owned(), Arc::downgrade(&value));
        value
    }
}

/// The interning key of one selector.
fn push_key(key: &mut String, spec: &SelectorSpec) {
    key.push_str(spec.kind.name());
    key.push('\0');
    key.push_str(&spec.text);
    key.push('\0');
}

impl SelectorStore {
    /// A store whose relative URL Patterns resolve against `base`.
    pub(crate) fn new(base: url::Url) -> Self {
        SelectorStore {
            base,
            selectors: Mutex::default(),
            filters: Mutex::default(),
        }
    }

    /// Whether `topic` addresses the hub's own namespace: its path, once resolved against the
    /// base URL as a URI reference, is `/.well-known/mercure` or below (whatever its scheme and
    /// host, as the 1.0 draft has it), where the hub publishes its subscription events.
    pub(crate) fn is_reserved(&self, topic: &str) -> bool {
        url::Url::options()
            .base_url(Some(&self.base))
            .parse(topic)
            .is_ok_and(|u| {
                let path = u.path();
                path == super::HUB_PATH
                    || path
                        .strip_prefix(super::HUB_PATH)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
    }

    /// The compiled form of `spec`, when it is already compiled (and in use).
    pub(crate) fn cached(&self, spec: &SelectorSpec) -> Option<Arc<Selector>> {
        let mut key = String::with_capacity(spec.text.len() + 16);
        push_key(&mut key, spec);
        self.selectors.lock().map.get(&key).and_then(Weak::upgrade)
    }

    /// The compiled form of `spec`.
    ///
    /// # Errors
    /// A URL Pattern that does not compile (see [`Selector::compile`]).
    pub(crate) fn try_selector(&self, spec: &SelectorSpec) -> Result<Arc<Selector>, String> {
        let mut key = String::with_capacity(spec.text.len() + 16);
        push_key(&mut key, spec);
        // Compiled outside the lock when new: a template can take a while.
        if let Some(live) = self.selectors.lock().map.get(&key).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let compiled = Selector::compile(spec, &self.base)?;
        Ok(self.selectors.lock().get_or_insert(&key, || compiled))
    }

    /// The compiled form of `spec`; a URL Pattern that does not compile (callers check them
    /// first, with [`try_selector`](Self::try_selector)) matches only its own text.
    pub(crate) fn selector(&self, spec: &SelectorSpec) -> Arc<Selector> {
        self.try_selector(spec)
            .unwrap_or_else(|_| Arc::new(Selector::Exact(spec.text.as_str().into())))
    }

    /// The filter of a subscriber with these selectors and claim (see [`TopicFilter`]).
    pub(crate) fn filter(
        &self,
        selectors: &[SelectorSpec],
        allowed: Option<&[SelectorSpec]>,
    ) -> Arc<TopicFilter> {
        fn sorted(list: &[SelectorSpec]) -> Vec<&SelectorSpec> {
            let mut list: Vec<&SelectorSpec> = list.iter().collect();
            list.sort_unstable();
            list.dedup();
            list
        }
        let mut key = String::new();
        for s in sorted(selectors) {
            push_key(&mut key, s);
        }
        match allowed {
            Some(allowed) => {
                key.push('\u{1}');
                for s in sorted(allowed) {
                    push_key(&mut key, s);
                }
            }
            None => key.push('\u{2}'),
        }
        if let Some(live) = self.filters.lock().map.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        let compile = |list: &[SelectorSpec]| {
            sorted(list)
                .into_iter()
                .map(|s| self.selector(s))
                .collect::<Vec<_>>()
        };
        let filter = TopicFilter {
            selectors: compile(selectors),
            allowed: allowed.map(compile),
        };
        self.filters.lock().get_or_insert(&key, || filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(topics: &[&str], private: bool) -> Update {
        Update {
            id: "urn:uuid:1".into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            private,
            event_type: None,
            retry: None,
            data: String::new(),
        }
    }

    fn strings(list: &[&str]) -> Vec<SelectorSpec> {
        list.iter().map(|s| SelectorSpec::template(*s)).collect()
    }

    #[test]
    fn the_hub_s_namespace() {
        let store = SelectorStore::default();
        for reserved in [
            "/.well-known/mercure",
            "/.well-known/mercure/subscriptions/exact/a/b",
            "https://anywhere.example/.well-known/mercure/subscriptions",
            "/x/../.well-known/mercure/",
        ] {
            assert!(store.is_reserved(reserved), "{reserved}");
        }
        for free in [
            "/.well-known/mercurex",
            "https://example.com/books/1",
            "urn:x:/.well-known/mercure",
            "/books/.well-known/mercure",
        ] {
            assert!(!store.is_reserved(free), "{free}");
        }
    }

    #[test]
    fn frames_are_exact() {
        let mut u = update(&["t"], false);
        u.id = "https://example.com/updates/1".into();
        u.data = "first\n\n  third\nlast".into();
        assert_eq!(
            encode_update(&u),
            "id: https://example.com/updates/1\ndata: first\ndata: \ndata:   third\ndata: last\n\n"
        );
        u.event_type = Some("book updated".into());
        u.retry = Some(2500);
        u.data = String::new();
        assert_eq!(
            encode_update(&u),
            "id: https://example.com/updates/1\nevent: book updated\nretry: 2500\ndata: \n\n"
        );
    }

    #[test]
    fn public_and_private_updates() {
        let store = SelectorStore::default();
        let books = store.filter(&strings(&["https://example.com/books/{id}"]), None);
        assert!(books.accepts_alone(&update(&["https://example.com/books/1"], false)));
        assert!(!books.accepts_alone(&update(&["https://example.com/authors/1"], false)));
        // Any of the topics (alternate IRIs) will do.
        assert!(books.accepts_alone(&update(&["urn:a", "https://example.com/books/1"], false)));
        // Anonymous: never a private update.
        assert!(!books.accepts_alone(&update(&["https://example.com/books/1"], true)));
        let claim = strings(&["https://example.com/books/1"]);
        let authorized = store.filter(&strings(&["https://example.com/books/{id}"]), Some(&claim));
        assert!(authorized.accepts_alone(&update(&["https://example.com/books/1"], true)));
        assert!(!authorized.accepts_alone(&update(&["https://example.com/books/2"], true)));
        // The claim may match another topic of the update than the subscription does.
        assert!(authorized.accepts_alone(&update(
            &["https://example.com/books/2", "https://example.com/books/1"],
            true
        )));
        let all = store.filter(&strings(&["*"]), Some(&strings(&["*"])));
        assert!(all.accepts_alone(&update(&["anything"], true)));
        // A token without a subscribe claim: no private update.
        let none = store.filter(&strings(&["*"]), Some(&[]));
        assert!(!none.accepts_alone(&update(&["anything"], true)));
        assert!(none.accepts_alone(&update(&["anything"], false)));
    }

    #[test]
    fn equal_subscriptions_share_one_filter_and_selector() {
        let store = SelectorStore::default();
        let a = store.filter(&strings(&["b", "a", "a"]), Some(&strings(&["x"])));
        let b = store.filter(&strings(&["a", "b"]), Some(&strings(&["x"])));
        assert!(Arc::ptr_eq(&a, &b));
        let anonymous = store.filter(&strings(&["a", "b"]), None);
        assert!(!Arc::ptr_eq(&a, &anonymous));
        assert!(Arc::ptr_eq(&a.selectors[0], &anonymous.selectors[0]));
        drop((a, b, anonymous));
        assert_eq!(
            store
                .filter(&strings(&["b", "a", "a"]), None)
                .selectors
                .len(),
            2
        );
        let again = store.filter(&strings(&["a"]), None);
        assert_eq!(again.selectors.len(), 1);
    }

    #[test]
    fn other_events_are_refused_and_write_nothing() {
        let store = SelectorStore::default();
        let f = store.filter(&strings(&["*"]), Some(&strings(&["*"])));
        let id = EventId {
            epoch: crate::event::Epoch::random(),
            seq: 1,
        };
        let herald = Event::new(
            id,
            EventName::new("note").unwrap(),
            crate::event::Payload::text("x"),
        );
        assert!(!f.accepts(&herald, &mut FilterScratch::default()));
        assert!(MERCURE.encode_event(&herald).is_empty());
    }
}
