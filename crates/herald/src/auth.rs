//! Who may subscribe to what, and who may publish: JWT verification for subscribers (and
//! publishers), named publisher keys, and the scopes that limit them. No HTTP here: the HTTP
//! layer finds the token or key in a request and asks this module what it allows.
//!
//! Tokens are verified with [jsonwebtoken]. A token's header names its algorithm; Herald only
//! tries keys made for that algorithm (so `alg: none`, or an RS256 public key used as an HS256
//! secret, can never verify), requires `exp`, checks `nbf` when present, `iss` and `aud` when
//! configured, and allows a small clock leeway.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::target::{ChannelName, ChannelPattern, Target, Targets, UserId};

/// Default clock leeway for `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(5);
/// Default name of the cookie that may carry a subscriber's token.
pub const DEFAULT_TOKEN_COOKIE: &str = "herald_token";

/// Why a token was refused. Every variant maps to `401` with its [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a JWT at all, or its parts do not decode.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The header names an algorithm Herald has no key for (including `none`).
    #[error("the token's algorithm {0} is not accepted by this hub")]
    UnsupportedAlgorithm(String),
    /// The token's `kid` names no key of the hub's (JWKS) key set for its algorithm.
    #[error("the token's key id {0:?} is not one of this hub's keys")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` is not the configured audience.
    #[error("the token is for another audience")]
    WrongAudience,
    /// `iss` is not the configured issuer.
    #[error("the token is from another issuer")]
    WrongIssuer,
    /// A required claim is missing or malformed.
    #[error("the token's claims are not acceptable: {0}")]
    BadClaims(String),
}

impl AuthError {
    /// The stable error code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "invalid_token",
            AuthError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::BadSignature => "invalid_signature",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::WrongAudience => "invalid_audience",
            AuthError::WrongIssuer => "invalid_issuer",
            AuthError::BadClaims(_) => "invalid_claims",
        }
    }
}

/// A key or key set that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("JWT key: {0}")]
pub struct KeyError(pub String);

struct VerifyKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies JWTs against one or more keys.
pub struct JwtVerifier {
    keys: Vec<VerifyKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<_> = self.keys.iter().map(|k| k.algorithm).collect();
        f.debug_struct("JwtVerifier")
            .field("algorithms", &algs)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Default for JwtVerifier {
    fn default() -> Self {
        JwtVerifier {
            keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway: DEFAULT_JWT_LEEWAY,
        }
    }
}

impl JwtVerifier {
    /// A verifier with no keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts HS256 tokens signed with `secret`.
    ///
    /// # Errors
    /// When the secret is shorter than 32 bytes (RFC 7518 asks for at least the hash size).
    pub fn with_hs256_secret(mut self, secret: &Secret) -> Result<Self, KeyError> {
        if secret.expose().len() < 32 {
            return Err(KeyError(
                "an HS256 secret must be at least 32 bytes long".into(),
            ));
        }
        self.keys.push(VerifyKey {
            kid: None,
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
        });
        Ok(self)
    }

    /// Accepts tokens signed by the private half of this PEM public key: RS256 for an RSA key,
    /// ES256 for a P-256 EC key.
    ///
    /// # Errors
    /// When the PEM is neither an RSA nor an EC public key.
    pub fn with_public_key_pem(mut self, pem: &[u8]) -> Result<Self, KeyError> {
        let text = String::from_utf8_lossy(pem);
        if text.contains("PRIVATE KEY") {
            return Err(KeyError(
                "this is a private key; give Herald the public key only".into(),
            ));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            self.keys.push(VerifyKey {
                kid: None,
                algorithm: Algorithm::RS256,
                key,
            });
            return Ok(self);
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            self.keys.push(VerifyKey {
                kid: None,
                algorithm: Algorithm::ES256,
                key,
            });
            return Ok(self);
        }
        Err(KeyError(
            "not a PEM RSA or EC public key (-----BEGIN PUBLIC KEY-----)".into(),
        ))
    }

    /// Accepts tokens signed by any key of a JWKS document (`{"keys": [...]}`). A token's `kid`
    /// selects the key when both have one.
    ///
    /// # Errors
    /// When the document does not parse or a key is unusable.
    pub fn with_jwks(mut self, json: &str) -> Result<Self, KeyError> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(json).map_err(|e| KeyError(format!("JWKS: {e}")))?;
        for jwk in &set.keys {
            let algorithm = match jwk.common.key_algorithm {
                Some(a) => Algorithm::from_str_lossy(&a.to_string())?,
                None => match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => return Err(KeyError("JWKS: only RSA and EC keys are supported".into())),
                },
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError(format!("JWKS: {e}")))?;
            self.keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if set.keys.is_empty() {
            return Err(KeyError("JWKS: no keys".into()));
        }
        Ok(self)
    }

    /// Requires `iss` to be this issuer.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to contain this audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the clock leeway ([`DEFAULT_JWT_LEEWAY`]).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// True when at least one key is configured.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verifies a token and returns its claims.
    ///
    /// # Errors
    /// An [`AuthError`] saying why the token is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let same_algorithm = self.keys.iter().filter(|k| k.algorithm == header.alg);
        let candidates: Vec<&VerifyKey> = same_algorithm
            .clone()
            .filter(|k| match (&k.kid, &header.kid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            if same_algorithm.count() > 0 {
                // The algorithm is fine; the key id is not one of ours (a rotated-out key, or a
                // token for another service).
                return Err(AuthError::UnknownKey(
                    header.kid.clone().unwrap_or_default(),
                ));
            }
            return Err(AuthError::UnsupportedAlgorithm(format!("{:?}", header.alg)));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let mut last = AuthError::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<RawClaims>(token, &key.key, &validation) {
                Ok(data) => return data.claims.into_claims(),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::InvalidSignature => AuthError::BadSignature,
                        K::ExpiredSignature => return Err(AuthError::Expired),
                        K::ImmatureSignature => return Err(AuthError::NotYetValid),
                        K::InvalidAudience => return Err(AuthError::WrongAudience),
                        K::InvalidIssuer => return Err(AuthError::WrongIssuer),
                        K::MissingRequiredClaim(c) => {
                            return Err(AuthError::BadClaims(format!("{c} is required")))
                        }
                        K::InvalidAlgorithm => {
                            AuthError::UnsupportedAlgorithm(format!("{:?}", header.alg))
                        }
                        K::Json(e) => return Err(AuthError::BadClaims(e.to_string())),
                        other => AuthError::Malformed(format!("{other:?}")),
                    };
                }
            }
        }
        Err(last)
    }
}

trait AlgorithmExt: Sized {
    fn from_str_lossy(s: &str) -> Result<Self, KeyError>;
}

impl AlgorithmExt for Algorithm {
    fn from_str_lossy(s: &str) -> Result<Self, KeyError> {
        s.parse::<Algorithm>()
            .map_err(|_| KeyError(format!("JWKS: unsupported algorithm {s}")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PublishClaim {
    All(bool),
    Channels(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    sub: Option<String>,
    name: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    exp: u64,
    #[serde(default)]
    publish: Option<PublishClaim>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, AuthError> {
        let bad = |e: crate::InvalidInput| AuthError::BadClaims(e.to_string());
        let channels = self
            .channels
            .iter()
            .map(|c| c.parse::<ChannelPattern>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let publish = match self.publish {
            None | Some(PublishClaim::All(false)) => PublishScope::None,
            Some(PublishClaim::All(true)) => PublishScope::Any,
            Some(PublishClaim::Channels(list)) => PublishScope::Channels(
                list.iter()
                    .map(|c| c.parse::<ChannelPattern>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?,
            ),
        };
        Ok(Claims {
            user: self
                .sub
                .as_deref()
                .map(UserId::new)
                .transpose()
                .map_err(bad)?,
            // Held to the rules of the `username` query parameter: it reaches other clients
            // (presence, connection lists), so no control characters and a bounded length.
            username: self
                .name
                .as_deref()
                .map(crate::target::validate_username)
                .transpose()
                .map_err(|e| AuthError::BadClaims(format!("name: {}", e.message)))?
                .map(|name| name.to_string()),
            channels,
            expires_at: expiry_time(self.exp),
            publish,
            admin: self.admin,
            metadata: match self.metadata {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::Object(m)) => {
                    crate::hub::check_metadata(&m)
                        .map_err(|e| AuthError::BadClaims(format!("metadata: {}", e.message)))?;
                    Some(m)
                }
                Some(_) => return Err(AuthError::BadClaims("metadata: a JSON object".to_owned())),
            },
        })
    }
}

/// The time of an `exp` claim. Values too large for the system clock (`exp` near `u64::MAX`)
/// mean "never", like any date past the year 9999, where they are clamped.
pub(crate) fn expiry_time(exp: u64) -> SystemTime {
    /// 9999-12-31T23:59:59Z.
    const LATEST: u64 = 253_402_300_799;
    UNIX_EPOCH + Duration::from_secs(exp.min(LATEST))
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Claims {
    /// `sub`: the user.
    pub user: Option<UserId>,
    /// `name`: the display name.
    pub username: Option<String>,
    /// `channels`: the channels (names or `prefix*` patterns) the holder may subscribe to.
    pub channels: Vec<ChannelPattern>,
    /// `exp`.
    pub expires_at: SystemTime,
    /// `publish`: `true` (any target) or a list of channel patterns.
    pub publish: PublishScope,
    /// `admin`: may use the admin endpoints.
    pub admin: bool,
    /// `metadata`: a JSON object of at most [`MAX_METADATA_BYTES`](crate::hub::MAX_METADATA_BYTES),
    /// shown with the subscriber's connections in presence answers.
    pub metadata: Option<crate::hub::Metadata>,
}

impl Claims {
    /// The first of `requested` that the token does not allow, if any.
    pub fn forbidden_channel<'a>(&self, requested: &'a [ChannelName]) -> Option<&'a ChannelName> {
        first_unmatched(&self.channels, requested)
    }
}

/// The first channel of `requested` that no pattern matches.
pub fn first_unmatched<'a>(
    patterns: &[ChannelPattern],
    requested: &'a [ChannelName],
) -> Option<&'a ChannelName> {
    requested
        .iter()
        .find(|c| !patterns.iter().any(|p| p.matches(c)))
}

/// What a publisher may publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishScope {
    /// Nothing.
    None,
    /// Any target: users, connections, channels, broadcast.
    Any,
    /// Only channels matching these patterns (no users, connections or broadcast).
    Channels(Vec<ChannelPattern>),
}

impl PublishScope {
    /// Checks that every target of an event is allowed; returns the first one that is not.
    ///
    /// # Errors
    /// A description of the first forbidden target.
    pub fn check(&self, targets: &Targets) -> Result<(), String> {
        match self {
            PublishScope::Any => Ok(()),
            PublishScope::None => Err("this publisher may not publish".into()),
            PublishScope::Channels(patterns) => {
                for t in targets.list() {
                    match t {
                        Target::Channel(c) if patterns.iter().any(|p| p.matches(c)) => {}
                        Target::Channel(c) => {
                            return Err(format!("this publisher may not publish to channel {c}"))
                        }
                        Target::User(_) | Target::Connection(_) | Target::Broadcast => {
                            return Err("this publisher may only publish to its channels".into())
                        }
                    }
                }
                if targets.fallback() == crate::target::Fallback::Broadcast {
                    return Err("this publisher may not use fallback: broadcast".into());
                }
                Ok(())
            }
        }
    }
}

/// A named publisher key and what it allows.
#[derive(Debug, Clone)]
pub struct PublisherKey {
    /// A name for logs and metrics (never the key itself).
    pub name: String,
    /// The key.
    pub key: Secret,
    /// What it may publish.
    pub publish: PublishScope,
    /// Whether it may use the admin endpoints.
    pub admin: bool,
}

/// An authenticated publisher.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The key's name, or `jwt:<sub>` for a token.
    pub name: String,
    /// What it may publish.
    pub publish: PublishScope,
    /// Whether it may use the admin endpoints.
    pub admin: bool,
}

impl Publisher {
    /// A publisher that may do everything (the loopback default when no key is configured).
    pub fn unrestricted() -> Self {
        Publisher {
            name: "local".into(),
            publish: PublishScope::Any,
            admin: true,
        }
    }
}

/// Finds the key equal to `given`. Every configured key is compared, each in constant time, so
/// the answer's timing says nothing about how close a guess was.
pub fn match_key<'a>(keys: &'a [PublisherKey], given: &str) -> Option<&'a PublisherKey> {
    let mut found = None;
    for key in keys {
        if bool::from(key.key.expose().as_bytes().ct_eq(given.as_bytes())) {
            found = Some(key);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new()
            .with_hs256_secret(&Secret::new(SECRET))
            .unwrap()
    }

    #[test]
    fn valid_token_gives_claims() {
        let c = verifier()
            .verify(&token(json!({"sub": "alice", "name": "Alice", "channels": ["orders:*", "news"], "exp": now() + 60})))
            .unwrap();
        assert_eq!(c.user.unwrap().as_str(), "alice");
        assert_eq!(c.channels.len(), 2);
        assert_eq!(c.publish, PublishScope::None);
    }

    #[test]
    fn refusals() {
        let v = verifier();
        assert_eq!(
            v.verify(&token(json!({"sub": "a", "exp": now() - 3600})))
                .unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(
            v.verify(&token(json!({"sub": "a"}))).unwrap_err().code(),
            "invalid_claims"
        );
        assert_eq!(
            v.verify(&token(
                json!({"sub": "a", "exp": now() + 60, "nbf": now() + 3600})
            ))
            .unwrap_err(),
            AuthError::NotYetValid
        );
        assert_eq!(v.verify("not.a.jwt").unwrap_err().code(), "invalid_token");
        // alg: none
        let none = format!(
            "{}.{}.",
            base64url(r#"{"alg":"none","typ":"JWT"}"#),
            base64url(&json!({"sub": "a", "exp": now() + 60}).to_string())
        );
        assert!(v.verify(&none).is_err());
        // Tampered payload.
        let good = token(json!({"sub": "alice", "exp": now() + 60}));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64url(&json!({"sub": "admin", "exp": now() + 60}).to_string()),
            parts[2]
        );
        assert_eq!(v.verify(&forged).unwrap_err(), AuthError::BadSignature);
        let aud = verifier().with_audience("herald");
        assert_eq!(
            aud.verify(&token(
                json!({"sub": "a", "exp": now() + 60, "aud": "other"})
            ))
            .unwrap_err(),
            AuthError::WrongAudience
        );
        assert!(aud
            .verify(&token(
                json!({"sub": "a", "exp": now() + 60, "aud": "herald"})
            ))
            .is_ok());
        let iss = verifier().with_issuer("https://auth.example");
        assert_eq!(
            iss.verify(&token(
                json!({"sub": "a", "exp": now() + 60, "iss": "evil"})
            ))
            .unwrap_err(),
            AuthError::WrongIssuer
        );
    }

    fn base64url(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &x)| acc | (x as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn scopes() {
        let c = |s| Target::Channel(ChannelName::new(s).unwrap());
        let scope = PublishScope::Channels(vec!["billing:*".parse().unwrap()]);
        assert!(scope.check(&Targets::one(c("billing:42"))).is_ok());
        assert!(scope.check(&Targets::one(c("orders:1"))).is_err());
        assert!(scope.check(&Targets::broadcast()).is_err());
        assert!(scope
            .check(&Targets::one(Target::User(UserId::new("a").unwrap())))
            .is_err());
        assert!(PublishScope::None.check(&Targets::broadcast()).is_err());
    }

    #[test]
    fn key_matching() {
        let keys = vec![
            PublisherKey {
                name: "old".into(),
                key: Secret::new("k1-0123456789abcdef"),
                publish: PublishScope::Any,
                admin: false,
            },
            PublisherKey {
                name: "new".into(),
                key: Secret::new("k2-0123456789abcdef"),
                publish: PublishScope::Any,
                admin: true,
            },
        ];
        assert_eq!(match_key(&keys, "k2-0123456789abcdef").unwrap().name, "new");
        assert!(match_key(&keys, "k2-0123456789abcdeX").is_none());
        assert!(match_key(&keys, "").is_none());
    }
}
