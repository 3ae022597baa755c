//! Mercure's authorization (0.x): a JWS whose `mercure` claim lists the topic selectors its
//! holder may `publish` to and `subscribe` to (privately), signed with the publisher's or the
//! subscriber's key (HS256, RS256 or ES256), and where a request carries it.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};

/// The cookie browsers send the token in (the 0.x protocol's name).
pub(crate) const COOKIE: &str = "mercureAuthorization";

/// Clock leeway for `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(5);

/// The signature algorithm of a Mercure key (`--mercure-publisher-jwt-alg`,
/// `--mercure-subscriber-jwt-alg`; Mercure's `*_JWT_ALG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JwtAlg {
    /// HMAC with SHA-256: the key is the shared secret (the default, as in Mercure).
    #[default]
    Hs256,
    /// RSA with SHA-256: the key is an RSA public key in PEM.
    Rs256,
    /// ECDSA P-256 with SHA-256: the key is a P-256 public key in PEM.
    Es256,
}

impl FromStr for JwtAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HS256" => Ok(JwtAlg::Hs256),
            "RS256" => Ok(JwtAlg::Rs256),
            "ES256" => Ok(JwtAlg::Es256),
            other => Err(format!(
                "unsupported JWT algorithm {other:?}: use HS256, RS256 or ES256"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for JwtAlg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for JwtAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwtAlg::Hs256 => "HS256",
            JwtAlg::Rs256 => "RS256",
            JwtAlg::Es256 => "ES256",
        })
    }
}

/// A key that verifies Mercure tokens.
#[derive(Clone)]
pub struct MercureKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for MercureKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MercureKey({:?}, <redacted>)", self.algorithm)
    }
}

impl MercureKey {
    /// The key of `alg` from `text`: the secret itself for HS256, the PEM text of the public
    /// key for RS256 and ES256 (as Mercure takes them).
    ///
    /// # Errors
    /// An empty secret, or text that is not a PEM key of that kind.
    pub fn new(alg: JwtAlg, text: &str) -> Result<Self, String> {
        let (algorithm, key) = match alg {
            JwtAlg::Hs256 => {
                if text.is_empty() {
                    return Err("the HS256 secret is empty".into());
                }
                (Algorithm::HS256, DecodingKey::from_secret(text.as_bytes()))
            }
            JwtAlg::Rs256 => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(text.trim().as_bytes())
                    .map_err(|e| format!("not an RSA public key in PEM: {e}"))?,
            ),
            JwtAlg::Es256 => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(text.trim().as_bytes())
                    .map_err(|e| format!("not a P-256 public key in PEM: {e}"))?,
            ),
        };
        Ok(MercureKey { algorithm, key })
    }

    /// Verifies `token` (signature, algorithm, `exp` and `nbf` when present) and returns its
    /// `mercure` claim.
    ///
    /// # Errors
    /// A sentence saying why the token is refused.
    pub(crate) fn verify(&self, token: &str) -> Result<MercureClaims, String> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        // Mercure tokens need not expire, and carry no audience in the 0.x protocol.
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<RawClaims>(token, &self.key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => "the token has expired".to_owned(),
                    K::ImmatureSignature => "the token is not valid yet".to_owned(),
                    K::InvalidSignature => "the token's signature is not valid".to_owned(),
                    K::InvalidAlgorithm => {
                        format!("the token is not signed with {:?}", self.algorithm)
                    }
                    K::Json(e) => format!("the token's claims cannot be read: {e}"),
                    _ => "the token cannot be read".to_owned(),
                }
            })?;
        let raw = data.claims;
        let strings = |list: Option<Vec<serde_json::Value>>| {
            list.map(|l| {
                l.into_iter()
                    .filter_map(|v| match v {
                        serde_json::Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mercure = raw.mercure.unwrap_or_default();
        Ok(MercureClaims {
            publish: strings(mercure.publish),
            subscribe: strings(mercure.subscribe),
            payload: mercure.payload,
            subject: match raw.sub {
                Some(serde_json::Value::String(s)) => Some(s),
                _ => None,
            },
            expires_at: raw
                .exp
                .filter(|e| e.is_finite() && *e >= 0.0)
                .map(|e| UNIX_EPOCH + Duration::from_secs_f64(e.min(1e11))),
        })
    }
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    mercure: Option<RawMercure>,
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMercure {
    #[serde(default)]
    publish: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    subscribe: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// What a verified token allows.
#[derive(Debug, Clone, Default)]
pub(crate) struct MercureClaims {
    /// `mercure.publish`: `None` when absent (publishing refused).
    pub(crate) publish: Option<Vec<String>>,
    /// `mercure.subscribe`: the selectors of private updates the holder may receive.
    pub(crate) subscribe: Option<Vec<String>>,
    /// `exp`: the subscriber's stream ends then.
    pub(crate) expires_at: Option<SystemTime>,
    /// `mercure.payload`: shown in the subscriber's subscriptions.
    pub(crate) payload: Option<serde_json::Value>,
    /// `sub`, when it is a string: names the publisher in rate limits.
    pub(crate) subject: Option<String>,
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// The `authorization` query parameter.
    Query,
    /// The `mercureAuthorization` cookie.
    Cookie,
}

/// The token of a request: the `Authorization` header wins, then `query` (the `authorization`
/// parameter, subscribers only), then the cookie.
///
/// # Errors
/// An `Authorization` header that is not `Bearer <token>`.
pub(crate) fn token<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<(&'a str, TokenSource)>, &'static str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && values.next().is_none());
        return match token {
            Some(t) => Ok(Some((t, TokenSource::Header))),
            None => Err("the Authorization header must be one \"Bearer <token>\""),
        };
    }
    if let Some(t) = query.filter(|t| !t.is_empty()) {
        return Ok(Some((t, TokenSource::Query)));
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=') {
                if name == COOKIE && !v.is_empty() {
                    return Ok(Some((v, TokenSource::Cookie)));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    pub(crate) const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";

    pub(crate) fn hs256(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn claims_are_read() {
        let key = MercureKey::new(JwtAlg::Hs256, SECRET).unwrap();
        let t = hs256(
            serde_json::json!({"mercure": {"publish": ["*"], "subscribe": ["a", {"match": "b"}]}}),
        );
        let c = key.verify(&t).unwrap();
        assert_eq!(c.publish.unwrap(), ["*"]);
        assert_eq!(c.subscribe.unwrap(), ["a"], "only string selectors (0.x)");
        assert!(c.expires_at.is_none(), "exp is optional");
        let c = key.verify(&hs256(serde_json::json!({"sub": "x"}))).unwrap();
        assert!(c.publish.is_none() && c.subscribe.is_none());
        let expired = hs256(serde_json::json!({"exp": 1000}));
        assert_eq!(key.verify(&expired).unwrap_err(), "the token has expired");
        let other = MercureKey::new(JwtAlg::Hs256, "another secret").unwrap();
        assert!(other.verify(&t).is_err());
        assert!(key.verify("not.a.token").is_err());
        assert!(MercureKey::new(JwtAlg::Rs256, "not pem").is_err());
        assert!(MercureKey::new(JwtAlg::Hs256, "").is_err());
        assert_eq!("es256".parse::<JwtAlg>().unwrap(), JwtAlg::Es256);
        assert!("none".parse::<JwtAlg>().is_err());
    }

    #[test]
    fn the_header_wins_then_the_query_then_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("a=1; {COOKIE}=c").parse().unwrap());
        assert_eq!(token(&h, None).unwrap(), Some(("c", TokenSource::Cookie)));
        assert_eq!(
            token(&h, Some("q")).unwrap(),
            Some(("q", TokenSource::Query))
        );
        h.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(
            token(&h, Some("q")).unwrap(),
            Some(("h", TokenSource::Header))
        );
        h.insert(header::AUTHORIZATION, "Basic x".parse().unwrap());
        assert!(token(&h, None).is_err());
        assert_eq!(token(&HeaderMap::new(), None).unwrap(), None);
    }
}
