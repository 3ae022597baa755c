//! Inbound webhooks: `POST /api/webhooks/{name}` turns a signed delivery from a payment, job or
//! code-hosting service into Herald events.
//!
//! Each source is one `[[webhooks]]` table of the TOML file ([`config`]): a signature
//! [`Scheme`] with its secrets ([`verify`]), and rules that map the JSON payload to events
//! ([`rules`]). A delivery goes through, in order:
//!
//! 1. the source, by name (`404 unknown_webhook`), and its body, bounded by `max_body_size`
//!    (`413 payload_too_large`);
//! 2. the signature ([`Source::verify`]): `401` with `missing_signature`, `invalid_signature` or
//!    `stale_timestamp`;
//! 3. the source's rate limit (`429 rate_limited`), charged only to verified deliveries, so that
//!    forged requests cannot use up a provider's budget;
//! 4. the rules ([`Source::publications`]): every rule that applies makes one event; a payload
//!    that no rule maps (or that a rule cannot map: a target missing from it) is acknowledged
//!    with `200 {"published": [], "ignored": "<why>"}`, since providers disable endpoints that
//!    keep failing, and counted;
//! 5. publishing, each event with an idempotency key derived from the source, the delivery id
//!    and the rule ([`Source::publications`]): the broker's idempotency check (under the memory
//!    broker's lock, or inside the Redis publish script for a whole cluster) makes a repeated
//!    delivery answer the first result again and publish nothing, within the hub's
//!    `idempotency_window`.
//!
//! Nothing is half-published: when the engine is down the hub answers `503` before publishing
//! anything; should it fail between two events of one delivery, the provider's retry (same
//! delivery id, so the same keys) publishes the missing ones and only them.
//!
//! The HTTP handler is [`crate::http::webhooks`]; the metrics are [`WebhookMetrics`].

pub mod config;
pub mod rules;
pub mod verify;

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use http::HeaderMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use config::{IdSource, RuleSettings, WebhookConfig, WebhookSettings};
pub use verify::{Scheme, SigningKey, Verified, VerifyError};

use crate::broker::Publication;
use crate::config::Rate;
use crate::idempotency::IdempotencyKey;

/// The path of the webhook endpoint (`{name}`: a configured source).
pub const WEBHOOK_PATH: &str = "/api/webhooks/{name}";

/// The configured sources, by name. Built once, by [`crate::http::AppState::new`].
#[derive(Debug, Default)]
pub struct Webhooks {
    sources: HashMap<String, Source>,
}

impl Webhooks {
    /// The sources of `configs`; a source without a `rate` of its own gets `default_rate` (the
    /// hub's `publish_rate_per_key`). An event's data may be at most `max_data_bytes` (the
    /// hub's `max_body_size`: no larger than a publisher may send, so that one webhook event
    /// cannot fill a subscriber's outbox).
    pub fn new(
        configs: &[WebhookConfig],
        default_rate: Option<Rate>,
        max_data_bytes: usize,
    ) -> Self {
        Webhooks {
            sources: configs
                .iter()
                .map(|c| {
                    let source = Source::new(c.clone(), c.rate.or(default_rate), max_data_bytes);
                    (c.name.clone(), source)
                })
                .collect(),
        }
    }

    /// The source named `name`.
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    /// The names of every source.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }
}

/// One configured webhook source and its rate limiter.
pub struct Source {
    config: WebhookConfig,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Largest data of one event, in bytes of compact JSON.
    max_data_bytes: usize,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("config", &self.config)
            .field("rate_limited", &self.limiter.is_some())
            .finish()
    }
}

/// Why a verified delivery publishes nothing: acknowledged with `200`, with this text as
/// `ignored`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored(pub String);

impl Source {
    fn new(config: WebhookConfig, rate: Option<Rate>, max_data_bytes: usize) -> Self {
        let limiter = rate.map(|r| {
            // `Rate` values are positive when parsed; `max(1)` keeps that true for values built
            // in code.
            let per_second = NonZeroU32::new(r.per_second.max(1)).expect("positive");
            let burst = NonZeroU32::new(r.burst.max(1)).expect("positive");
            governor::RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
        });
        Source {
            config,
            limiter,
            max_data_bytes,
        }
    }

    /// The source's configuration.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Checks the delivery's signature (and signed timestamp) at `now`.
    ///
    /// # Errors
    /// The [`VerifyError`] of the source's scheme.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        self.config
            .scheme
            .verify(&self.config.keys, headers, body, now, self.config.tolerance)
    }

    /// Takes one delivery from the source's rate limit.
    ///
    /// # Errors
    /// How long to wait when the source is over its rate.
    pub fn check_rate(&self) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// The id that de-duplicates this delivery: the scheme's header, or the payload's field
    /// named by `id`. `None` when the delivery has none (it is then not de-duplicated).
    pub fn delivery_id(&self, verified: &Verified, payload: &Value) -> Option<String> {
        match &self.config.id {
            IdSource::Scheme => verified.id.clone(),
            IdSource::Pointer(p) => match payload.pointer(p) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
        }
    }

    /// The events of a verified delivery: one per rule that applies, in rule order, each with
    /// the idempotency key of (source, delivery id, rule) when the delivery has an id.
    ///
    /// # Errors
    /// [`Ignored`] when no rule applies, or when one that applies cannot make its event (then
    /// none is made: a delivery publishes all its events or none).
    pub fn publications(
        &self,
        delivery_id: Option<&str>,
        payload: &Value,
        headers: &HeaderMap,
    ) -> Result<Vec<Publication>, Ignored> {
        let mut out = Vec::new();
        for (i, rule) in self.config.rules.iter().enumerate() {
            if !rule.applies(payload, headers) {
                continue;
            }
            let mut publication = rule.publication(payload).map_err(|e| {
                Ignored(format!(
                    "rule {i} applies but cannot map the payload: {}",
                    e.0
                ))
            })?;
            let size = publication.payload.as_str().len();
            if size > self.max_data_bytes {
                return Err(Ignored(format!(
                    "rule {i}: its data is {size} bytes, more than an event may carry ({} bytes, \
                     max_body_size); send a part of the payload with data = \"/pointer\" or a \
                     template",
                    self.max_data_bytes
                )));
            }
            publication.idempotency = delivery_id.map(|id| self.key(id, i));
            out.push(publication);
        }
        if out.is_empty() {
            return Err(Ignored(
                match payload.pointer("/type").and_then(Value::as_str) {
                    Some(t) => format!("no rule applies to this payload (type {t:?})"),
                    None => "no rule applies to this payload".into(),
                },
            ));
        }
        Ok(out)
    }

    /// `wh:` + the SHA-256 of (source name, delivery id), shortened, + `:` + the rule's index:
    /// printable, bounded whatever the provider's id looks like, the same on every node.
    fn key(&self, delivery_id: &str, rule: usize) -> IdempotencyKey {
        let mut h = Sha256::new();
        h.update(self.config.name.as_bytes());
        h.update([0]);
        h.update(delivery_id.as_bytes());
        let digest = h.finalize();
        let mut text = String::with_capacity(3 + 40 + 4);
        text.push_str(crate::idempotency::RESERVED_PREFIX);
        for b in &digest[..20] {
            text.push_str(&format!("{b:02x}"));
        }
        text.push_str(&format!(":{rule}"));
        // At most 3 + 40 + 1 + 2 printable ASCII characters (rules are at most 64).
        IdempotencyKey::new(&text).expect("a valid idempotency key")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabel {
    webhook: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabel {
    webhook: String,
    reason: String,
}

/// Per-source counters (label `webhook`: a configured name, never a name from a request).
///
/// | Metric | Counts |
/// |---|---|
/// | `herald_webhook_accepted_total{webhook}` | deliveries that published their events |
/// | `herald_webhook_duplicates_total{webhook}` | repeated deliveries answered with the first answer |
/// | `herald_webhook_ignored_total{webhook}` | verified deliveries no rule mapped (`200`, `ignored`) |
/// | `herald_webhook_refused_total{webhook,reason}` | refused deliveries: `missing_signature`, `invalid_signature`, `stale_timestamp`, `payload_too_large`, `invalid_body`, `invalid_json`, `rate_limited`, `engine_unavailable`, `id_reused` |
/// | `herald_webhook_events_total{webhook}` | events published from webhooks |
/// | `herald_webhook_unknown_total` | requests to a name no source has |
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    accepted: Family<SourceLabel, Counter>,
    duplicates: Family<SourceLabel, Counter>,
    ignored: Family<SourceLabel, Counter>,
    refused: Family<RefusedLabel, Counter>,
    events: Family<SourceLabel, Counter>,
    unknown: Counter,
}

impl WebhookMetrics {
    /// Fresh counters, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = WebhookMetrics::default();
        registry.register(
            "webhook_accepted",
            "Webhook deliveries that published their events, by source",
            m.accepted.clone(),
        );
        registry.register(
            "webhook_duplicates",
            "Repeated webhook deliveries (same id) answered with the first answer, by source",
            m.duplicates.clone(),
        );
        registry.register(
            "webhook_ignored",
            "Verified webhook deliveries that no rule mapped, by source",
            m.ignored.clone(),
        );
        registry.register(
            "webhook_refused",
            "Refused webhook deliveries, by source and reason",
            m.refused.clone(),
        );
        registry.register(
            "webhook_events",
            "Events published from webhook deliveries, by source",
            m.events.clone(),
        );
        registry.register(
            "webhook_unknown",
            "Requests to a webhook name that is not configured",
            m.unknown.clone(),
        );
        m
    }

    fn label(webhook: &str) -> SourceLabel {
        SourceLabel {
            webhook: webhook.to_owned(),
        }
    }

    /// Shows a source's counters at zero before its first delivery.
    pub fn declare(&self, webhook: &str) {
        let l = Self::label(webhook);
        drop(self.accepted.get_or_create(&l));
        drop(self.duplicates.get_or_create(&l));
        drop(self.ignored.get_or_create(&l));
        drop(self.events.get_or_create(&l));
    }

    /// Counts a delivery that published `events` events.
    pub fn accepted(&self, webhook: &str, events: usize) {
        let l = Self::label(webhook);
        self.accepted.get_or_create(&l).inc();
        self.events.get_or_create(&l).inc_by(events as u64);
    }

    /// Counts a repeated delivery.
    pub fn duplicate(&self, webhook: &str) {
        self.duplicates.get_or_create(&Self::label(webhook)).inc();
    }

    /// Counts an ignored delivery.
    pub fn ignored(&self, webhook: &str) {
        self.ignored.get_or_create(&Self::label(webhook)).inc();
    }

    /// Counts a refused delivery.
    pub fn refused(&self, webhook: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabel {
                webhook: webhook.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a request to an unknown name.
    pub fn unknown(&self) {
        self.unknown.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> Source {
        let settings: WebhookSettings = serde_json::from_value(json!({
            "name": "payments",
            "scheme": "stripe",
            "secrets": ["whsec_x"],
            "rules": [
                {"when": {"/type": "payment.succeeded"}, "event": "payment", "users": "/data/customer"},
                {"when": {"/type": "payment.succeeded"}, "event": "sale", "channels": ["ops"]},
                {"when": {"/type": "refund"}, "event": "refund", "users": "/data/missing"}
            ]
        }))
        .unwrap();
        Source::new(
            settings.into_config(0).unwrap(),
            Some("1/s:1".parse().unwrap()),
            100,
        )
    }

    #[test]
    fn every_applying_rule_makes_an_event_with_its_own_key() {
        let s = source();
        let payload =
            json!({"id": "evt_1", "type": "payment.succeeded", "data": {"customer": "c1"}});
        let id = s.delivery_id(&Verified::default(), &payload);
        assert_eq!(id.as_deref(), Some("evt_1"));
        let p = s
            .publications(id.as_deref(), &payload, &HeaderMap::new())
            .unwrap();
        assert_eq!(p.len(), 2);
        let keys: Vec<_> = p.iter().map(|p| p.idempotency.clone().unwrap()).collect();
        assert_ne!(keys[0], keys[1]);
        assert!(keys[0].as_str().starts_with("wh:") && keys[0].as_str().ends_with(":0"));
        // The same delivery gives the same keys (on any node).
        let again = s
            .publications(id.as_deref(), &payload, &HeaderMap::new())
            .unwrap();
        assert_eq!(again[1].idempotency, Some(keys[1].clone()));
    }

    #[test]
    fn unmapped_and_unmappable_payloads_are_ignored_whole() {
        let s = source();
        let e = s
            .publications(None, &json!({"type": "other"}), &HeaderMap::new())
            .unwrap_err();
        assert!(
            e.0.contains("no rule applies") && e.0.contains("other"),
            "{e:?}"
        );
        let e = s
            .publications(None, &json!({"type": "refund"}), &HeaderMap::new())
            .unwrap_err();
        assert!(
            e.0.contains("rule 2") && e.0.contains("/data/missing"),
            "{e:?}"
        );
    }

    #[test]
    fn data_larger_than_a_publish_is_ignored() {
        let s = source();
        let payload = json!({"type": "payment.succeeded", "data": {"customer": "c1", "pad": "x".repeat(100)}});
        let e = s
            .publications(None, &payload, &HeaderMap::new())
            .unwrap_err();
        assert!(e.0.contains("more than an event may carry"), "{e:?}");
    }

    #[test]
    fn the_rate_limit_counts_deliveries() {
        let s = source();
        assert!(s.check_rate().is_ok());
        assert!(s.check_rate().is_err());
    }
}
