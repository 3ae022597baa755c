//! Idempotent publishing: a publisher that is not sure whether its publish went through (a
//! timeout, a dropped connection, `503 outcome_unknown`) retries with the same
//! [`IdempotencyKey`], and the hub publishes the event once and answers the first result again.
//!
//! The check happens inside the broker, atomically with giving the event its id: under the
//! memory broker's lock ([`IdempotencyCache`]), and inside the Redis publish script across a
//! cluster. A key is remembered for [`IdempotencyLimits::window`] together with a fingerprint of
//! what was published under it, so that a key reused for a different event is refused
//! ([`EngineError::IdempotencyKeyReused`](crate::engine::EngineError::IdempotencyKeyReused))
//! instead of silently answering another event's result.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::broker::{Publication, Published};
use crate::error::InvalidInput;
use crate::target::{Fallback, Target};

/// Longest idempotency key, in characters.
pub const MAX_KEY_LEN: usize = 128;

/// Default time a key is remembered.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);

/// Default most keys one memory broker remembers at once.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The prefix of the keys inbound webhooks publish under; publishers may not use it.
pub const RESERVED_PREFIX: &str = "wh:";

/// A publisher-chosen key that makes a publish safe to retry: 1 to 128 printable ASCII
/// characters without spaces (a UUID fits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// Validates `key`.
    ///
    /// # Errors
    /// An [`InvalidInput`] for field `idempotencyKey` when it is empty, too long or has a
    /// character outside `!`..=`~`.
    pub fn new(key: &str) -> Result<Self, InvalidInput> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(InvalidInput::new(
                "idempotencyKey",
                format!("must be 1 to {MAX_KEY_LEN} characters"),
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidInput::new(
                "idempotencyKey",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(IdempotencyKey(key.into()))
    }

    /// A key a publisher gave (`idempotencyKey`, `Idempotency-Key`): as [`new`](Self::new),
    /// and not under [`RESERVED_PREFIX`], which the inbound webhooks' keys use (a publisher
    /// that took a delivery's key first would make that delivery answer `409`).
    ///
    /// # Errors
    /// Those of [`new`](Self::new), and one for a reserved key.
    pub fn from_publisher(key: &str) -> Result<Self, InvalidInput> {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(InvalidInput::new(
                "idempotencyKey",
                format!("keys starting with {RESERVED_PREFIX:?} are reserved for inbound webhooks"),
            ));
        }
        Self::new(key)
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", &*self.0)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long, and how many, keys a broker remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyLimits {
    /// A key is remembered this long after its first publish.
    pub window: Duration,
    /// Most keys remembered at once by a memory broker; beyond, the oldest are forgotten early
    /// (counted in `herald_idempotency_keys_forgotten_total`). Redis keeps every key for the
    /// whole window (they expire by TTL).
    pub max_keys: usize,
}

impl Default for IdempotencyLimits {
    fn default() -> Self {
        IdempotencyLimits {
            window: DEFAULT_WINDOW,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

/// The SHA-256 of what a publication sends (event name, payload, targets, fallback), in hex:
/// what a key is bound to. The same body always gives the same fingerprint, on every node.
pub fn fingerprint(publication: &Publication) -> String {
    let mut h = Sha256::new();
    h.update(publication.name.as_str().as_bytes());
    h.update([0]);
    h.update(publication.payload.as_str().as_bytes());
    // A text payload differs from JSON with the same text (a JSON one hashes as before).
    if publication.payload.kind() == crate::event::PayloadKind::Text {
        h.update(b"t");
    }
    h.update([0]);
    for target in publication.targets.list() {
        match target {
            Target::User(u) => {
                h.update(b"u:");
                h.update(u.as_str().as_bytes());
            }
            Target::Channel(c) => {
                h.update(b"c:");
                h.update(c.as_str().as_bytes());
            }
            Target::Connection(id) => {
                h.update(b"k:");
                h.update(id.to_string().as_bytes());
            }
            Target::Broadcast => h.update(b"*"),
        }
        h.update([b'\n']);
    }
    h.update(match publication.targets.fallback() {
        Fallback::None => b"f:none".as_slice(),
        Fallback::Broadcast => b"f:broadcast".as_slice(),
    });
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What looking a key up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or forgotten): publish, then [`IdempotencyCache::remember`].
    New,
    /// Published before with the same fingerprint: answer this again.
    Published(Published),
    /// Published before with another fingerprint.
    Reused,
}

#[derive(Debug)]
struct Remembered {
    fingerprint: String,
    published: Published,
    at: Instant,
}

/// The keys a memory broker remembers, oldest first. Not synchronized: the broker keeps it
/// under the same lock that assigns ids.
#[derive(Debug)]
pub struct IdempotencyCache {
    limits: IdempotencyLimits,
    entries: HashMap<IdempotencyKey, Remembered>,
    order: VecDeque<(Instant, IdempotencyKey)>,
    forgotten_early: u64,
}

impl IdempotencyCache {
    /// An empty cache.
    pub fn new(limits: IdempotencyLimits) -> Self {
        IdempotencyCache {
            limits,
            entries: HashMap::new(),
            order: VecDeque::new(),
            forgotten_early: 0,
        }
    }

    /// Looks `key` up for a publication with `fingerprint`, at `now`.
    pub fn check(&mut self, key: &IdempotencyKey, fingerprint: &str, now: Instant) -> Seen {
        self.expire(now);
        match self.entries.get(key) {
            None => Seen::New,
            Some(r) if r.fingerprint == fingerprint => Seen::Published(Published {
                replayed: true,
                ..r.published
            }),
            Some(_) => Seen::Reused,
        }
    }

    /// Remembers that `key` published `published`.
    pub fn remember(
        &mut self,
        key: IdempotencyKey,
        fingerprint: String,
        published: Published,
        now: Instant,
    ) {
        if self.limits.max_keys == 0 || self.limits.window.is_zero() {
            return;
        }
        while self.entries.len() >= self.limits.max_keys {
            match self.order.pop_front() {
                Some((_, old)) => {
                    if self.entries.remove(&old).is_some() {
                        self.forgotten_early += 1;
                    }
                }
                None => break,
            }
        }
        self.order.push_back((now, key.clone()));
        self.entries.insert(
            key,
            Remembered {
                fingerprint,
                published,
                at: now,
            },
        );
    }

    /// Keys dropped before their window ended because the cache was full.
    pub fn forgotten_early(&self) -> u64 {
        self.forgotten_early
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.limits.window {
                break;
            }
            let Some((at, key)) = self.order.pop_front() else {
                break;
            };
            // Only drop the entry this queue slot was made for (keys are never re-inserted
            // while remembered, but be exact anyway).
            if self.entries.get(&key).is_some_and(|r| r.at == at) {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, EventName, Payload};
    use crate::target::{Targets, UserId};

    fn publication(data: &str) -> Publication {
        Publication {
            name: EventName::new("n").unwrap(),
            payload: Payload::json(&data).unwrap(),
            targets: Targets::new(
                vec![Target::User(UserId::new("alice").unwrap())],
                Fallback::None,
            )
            .unwrap(),
            idempotency: None,
        }
    }

    fn published(seq: u64) -> Published {
        Published {
            id: EventId {
                epoch: crate::event::Epoch::from_u64(0xabc),
                seq,
            },
            delivered: 1,
            replayed: false,
        }
    }

    #[test]
    fn keys_are_validated() {
        assert!(IdempotencyKey::new("550e8400-e29b-41d4-a716-446655440000").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("a b").is_err());
        assert!(IdempotencyKey::new("é").is_err());
        assert!(IdempotencyKey::new(&"k".repeat(129)).is_err());
        assert!(IdempotencyKey::new(&"k".repeat(128)).is_ok());
        assert!(IdempotencyKey::from_publisher("wh:abc:0").is_err());
        assert!(IdempotencyKey::new("wh:abc:0").is_ok());
        assert!(IdempotencyKey::from_publisher("whole").is_ok());
    }

    #[test]
    fn fingerprints_bind_the_content() {
        assert_eq!(
            fingerprint(&publication("a")),
            fingerprint(&publication("a"))
        );
        assert_ne!(
            fingerprint(&publication("a")),
            fingerprint(&publication("b"))
        );
        assert_eq!(fingerprint(&publication("a")).len(), 64);
    }

    #[test]
    fn same_key_answers_the_first_result_until_the_window_ends() {
        let limits = IdempotencyLimits {
            window: Duration::from_secs(10),
            max_keys: 10,
        };
        let mut cache = IdempotencyCache::new(limits);
        let t0 = Instant::now();
        let key = IdempotencyKey::new("k1").unwrap();
        assert_eq!(cache.check(&key, "fp", t0), Seen::New);
        cache.remember(key.clone(), "fp".into(), published(7), t0);
        let again = cache.check(&key, "fp", t0 + Duration::from_secs(9));
        assert_eq!(
            again,
            Seen::Published(Published {
                replayed: true,
                ..published(7)
            })
        );
        assert_eq!(cache.check(&key, "other", t0), Seen::Reused);
        assert_eq!(
            cache.check(&key, "fp", t0 + Duration::from_secs(10)),
            Seen::New
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_forgets_its_oldest_keys() {
        let mut cache = IdempotencyCache::new(IdempotencyLimits {
            window: Duration::from_secs(60),
            max_keys: 2,
        });
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            cache.remember(
                IdempotencyKey::new(k).unwrap(),
                "fp".into(),
                published(i as u64),
                t0,
            );
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.forgotten_early(), 1);
        assert_eq!(
            cache.check(&IdempotencyKey::new("a").unwrap(), "fp", t0),
            Seen::New
        );
    }
}
