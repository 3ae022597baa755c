//! Signature schemes: each checks that a delivery comes from the holder of one of the webhook's
//! secrets, and, where the scheme signs a timestamp, that it is recent.
//!
//! | Scheme | Headers | Signed content | Signature |
//! |---|---|---|---|
//! | [`Scheme::StandardWebhooks`] ([`standard`]) | `webhook-id`, `webhook-timestamp`, `webhook-signature` (or the `svix-*` names) | `id.timestamp.body` | `v1,<base64 HMAC-SHA256>`, several separated by spaces |
//! | [`Scheme::GitHub`] ([`github`]) | `X-Hub-Signature-256` (and `X-GitHub-Delivery`, the delivery id) | the body | `sha256=<hex HMAC-SHA256>` |
//! | [`Scheme::Stripe`] ([`stripe`]) | `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>…]` | `t.body` | hex HMAC-SHA256 |
//!
//! Every comparison of a computed signature with a given one is constant-time
//! ([`hmac::Mac::verify_slice`]). Every secret is tried against every signature, so that a
//! provider rotating its secret (signing with both for a while) and Herald holding the old and
//! the new one both work.

pub mod github;
pub mod standard;
pub mod stripe;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

/// How a webhook source signs its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// The Standard Webhooks specification (<https://www.standardwebhooks.com>), as Svix and
    /// the providers built on it send it. Secrets are `whsec_<base64>`.
    StandardWebhooks,
    /// GitHub's `X-Hub-Signature-256`. Secrets are the text given to GitHub.
    GitHub,
    /// Stripe's `Stripe-Signature`. Secrets are the endpoint's signing secret (`whsec_…`),
    /// used as given.
    Stripe,
}

impl Scheme {
    /// Every scheme, as configuration names them.
    pub const ALL: [Scheme; 3] = [Scheme::StandardWebhooks, Scheme::GitHub, Scheme::Stripe];

    /// The scheme's name in the configuration (`scheme = "…"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::GitHub => "github",
            Scheme::Stripe => "stripe",
        }
    }

    /// Whether the scheme signs a timestamp (which then must be within the tolerance).
    pub fn signs_timestamp(self) -> bool {
        !matches!(self, Scheme::GitHub)
    }

    /// Turns a configured secret into the HMAC key the scheme uses.
    ///
    /// # Errors
    /// A message (never containing the secret) when the secret is empty or, for Standard
    /// Webhooks, not `whsec_` followed by base64.
    pub fn key(self, secret: &str) -> Result<SigningKey, String> {
        match self {
            Scheme::StandardWebhooks => standard::key(secret),
            Scheme::GitHub | Scheme::Stripe => {
                if secret.is_empty() {
                    Err("a secret cannot be empty".into())
                } else {
                    Ok(SigningKey(secret.as_bytes().to_vec()))
                }
            }
        }
    }

    /// Verifies a delivery: `headers` and the raw `body` as received, at `now`.
    ///
    /// # Errors
    /// A [`VerifyError`] saying what is wrong: a missing header, no matching signature, or a
    /// timestamp outside `tolerance` (checked only once a signature matched, so that
    /// `stale_timestamp` always means a genuine but old delivery).
    pub fn verify(
        self,
        keys: &[SigningKey],
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<Verified, VerifyError> {
        let verified = match self {
            Scheme::StandardWebhooks => standard::verify(keys, headers, body)?,
            Scheme::GitHub => github::verify(keys, headers, body)?,
            Scheme::Stripe => stripe::verify(keys, headers, body)?,
        };
        if let Some(ts) = verified.timestamp {
            check_timestamp(ts, now, tolerance)?;
        }
        Ok(verified)
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scheme {s:?}; expected standard-webhooks, github or stripe")
            })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HMAC key, from one configured secret. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key of these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SigningKey(bytes)
    }

    /// HMAC-SHA256 keyed with this key over the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Whether any key's MAC over `parts` equals any of `signatures` (constant-time comparisons).
fn any_matches(keys: &[SigningKey], parts: &[&[u8]], signatures: &[Vec<u8>]) -> bool {
    keys.iter().any(|key| {
        let mac = key.mac(parts);
        signatures
            .iter()
            .any(|sig| mac.clone().verify_slice(sig).is_ok())
    })
}

/// What a verified delivery told about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The delivery's id, as the scheme's headers give it (`webhook-id`, `X-GitHub-Delivery`);
    /// Stripe sends none (its event id is in the body).
    pub id: Option<String>,
    /// The signed timestamp (Unix seconds), where the scheme signs one.
    pub timestamp: Option<i64>,
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent (or not text).
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// No signature matches any secret, or the signature header is malformed.
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
    /// The signature matches but the signed timestamp is outside the tolerance.
    #[error("the signed timestamp is {age} s away from this hub's clock, more than the tolerance of {tolerance} s (a replayed delivery, or a clock that is off)")]
    StaleTimestamp {
        /// Seconds between the timestamp and now (negative: in the future).
        age: i64,
        /// The tolerance, in seconds.
        tolerance: u64,
    },
}

impl VerifyError {
    /// The error code of the `401` answer and the `reason` of the refusal metric:
    /// `missing_signature`, `invalid_signature` or `stale_timestamp`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::InvalidSignature(_) => "invalid_signature",
            VerifyError::StaleTimestamp { .. } => "stale_timestamp",
        }
    }
}

fn check_timestamp(ts: i64, now: SystemTime, tolerance: Duration) -> Result<(), VerifyError> {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let age = now.saturating_sub(ts);
    let tolerance = tolerance.as_secs();
    if age.unsigned_abs() > tolerance {
        return Err(VerifyError::StaleTimestamp { age, tolerance });
    }
    Ok(())
}

/// The first value of `name` as text.
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Lowercase or uppercase hex to bytes; `None` for anything else.
fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// A signed timestamp: decimal Unix seconds.
fn timestamp(text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::InvalidSignature(
            "the timestamp is not a number of seconds",
        ));
    }
    text.parse()
        .map_err(|_| VerifyError::InvalidSignature("the timestamp is not a number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes() {
        assert_eq!(hex("00ff10Ab"), Some(vec![0, 255, 16, 171]));
        assert_eq!(hex("abc"), None);
        assert_eq!(hex("zz"), None);
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_stale_both_ways() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let t = Duration::from_secs(300);
        assert!(check_timestamp(10_000 - 300, now, t).is_ok());
        assert!(check_timestamp(10_000 + 300, now, t).is_ok());
        assert_eq!(
            check_timestamp(10_000 - 301, now, t),
            Err(VerifyError::StaleTimestamp {
                age: 301,
                tolerance: 300
            })
        );
        assert!(check_timestamp(10_000 + 301, now, t).is_err());
    }

    #[test]
    fn schemes_parse_by_name() {
        for s in Scheme::ALL {
            assert_eq!(s.as_str().parse::<Scheme>(), Ok(s));
        }
        assert!("svix".parse::<Scheme>().is_err());
    }

    #[test]
    fn keys_do_not_print() {
        let key = Scheme::GitHub.key("hunter2hunter2").unwrap();
        assert!(!format!("{key:?}").contains("hunter"));
    }
}
