//! Mercure's authorization: a JWS signed with the publisher's or the subscriber's key (HS256,
//! RS256 or ES256), in either generation's form, and where a request carries it.
//!
//! - **0.x**: a `mercure` claim lists the topic selectors its holder may `publish` to and
//!   `subscribe` to (privately): strings (0.x selectors), or 1.0's `{"match": …}` objects;
//!   `exp` and `nbf` are checked when present, `aud` is not.
//! - **1.0** (the form of the token picks it: a `typ: at+jwt` header, or an
//!   `authorization_details` claim): an OAuth 2.0 JWT access token (RFC 9068). Its `typ` must be
//!   `at+jwt`, its `aud` (a string, or an array of them) must name the hub's resource
//!   identifier, `exp` is required (and `nbf` checked), `iss` must be a string when present
//!   (it is not compared: Herald advertises no authorization server, so tokens are
//!   self-issued, which the draft allows). Rights are RFC 9396 `authorization_details` entries
//!   of type [`AUTHORIZATION_DETAIL_TYPE`] (or `mercure`, as draft 08 spells it): `actions`
//!   (`publish`, `subscribe`), `topics` (`{"match": …}`, `{"match_urlpattern": …}`, or draft
//!   08's `{"match": …, "matchType": "URLPattern"}`) and an optional `payload`. Entries of
//!   other types are ignored; a Mercure entry that is not well formed refuses the whole token,
//!   as the draft asks (no partial acceptance).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};

use super::selector::SelectorSpec;
use super::{has_control, MAX_SELECTORS, MAX_TOPIC_LEN};

/// The cookie browsers send the token in (the 0.x protocol's name).
pub(crate) const COOKIE: &str = "mercureAuthorization";

/// The cookie of the 1.0 protocol. Browsers keep a `__Secure-` cookie only from an HTTPS
/// answer with `Secure`, so a page on plain HTTP cannot set it (`localhost` included).
pub(crate) const COOKIE_V1: &str = "__Secure-mercure_access_token";

/// The `type` of Mercure's RFC 9396 authorization details.
pub(crate) const AUTHORIZATION_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// Draft 08's spelling of [`AUTHORIZATION_DETAIL_TYPE`], accepted too.
const AUTHORIZATION_DETAIL_TYPE_SHORT: &str = "mercure";

/// Most Mercure authorization details in one token.
pub(crate) const MAX_AUTHORIZATION_DETAILS: usize = 64;

/// Most topic matchers in one token, all details together.
pub(crate) const MAX_TOKEN_MATCHERS: usize = 4 * MAX_SELECTORS;

/// The generation of the protocol a request or a token speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Generation {
    /// The deployed protocol: `topic=`, the `mercure` claim.
    #[default]
    V0,
    /// Mercure 1.0: `match=`, `at+jwt` access tokens.
    V1,
}

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

    /// Verifies `token` and returns what it allows: a 0.x token (signature, algorithm, `exp`
    /// and `nbf` when present) by its `mercure` claim, a 1.0 token (the same, and `typ`, `aud`
    /// = `audience`, `exp` required) by its authorization details; see the module docs.
    ///
    /// # Errors
    /// A sentence saying why the token is refused (`401 invalid_token`).
    pub(crate) fn verify(&self, token: &str, audience: &str) -> Result<MercureClaims, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "the token cannot be read".to_owned())?;
        let at_jwt = header.typ.as_deref().is_some_and(is_at_jwt);
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        // Mercure 0.x tokens need not expire and carry no audience; 1.0's are checked below.
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
        let subject = match &raw.sub {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let expires_at = raw
            .exp
            .filter(|e| e.is_finite() && *e >= 0.0)
            .map(|e| UNIX_EPOCH + Duration::from_secs_f64(e.min(1e11)));
        if at_jwt || raw.authorization_details.is_some() {
            return verify_access_token(raw, at_jwt, audience, subject, expires_at);
        }
        // Strings are 0.x selectors; the objects of 1.0 (`{"match": …}`, which Mercure 1.0
        // writes in a `mercure` claim too) are read as in authorization details; anything else
        // is skipped, as the 0.x hub does.
        let strings = |list: Option<Vec<serde_json::Value>>| {
            list.map(|l| {
                l.into_iter()
                    .filter_map(|v| match v {
                        serde_json::Value::String(s) => Some(SelectorSpec::template(s)),
                        other => topic_matcher(&other).ok(),
                    })
                    .take(MAX_TOKEN_MATCHERS)
                    .collect::<Vec<_>>()
            })
        };
        let mercure = raw.mercure.unwrap_or_default();
        Ok(MercureClaims {
            generation: Generation::V0,
            publish: strings(mercure.publish),
            subscribe: strings(mercure.subscribe),
            payload: mercure.payload,
            subject,
            expires_at,
        })
    }
}

/// `at+jwt`, case-insensitively, with or without `application/` (RFC 9068).
fn is_at_jwt(typ: &str) -> bool {
    let typ = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    typ.eq_ignore_ascii_case("at+jwt")
}

/// The checks and the rights of a 1.0 access token (its signature, `exp` and `nbf` already
/// checked).
fn verify_access_token(
    raw: RawClaims,
    at_jwt: bool,
    audience: &str,
    subject: Option<String>,
    expires_at: Option<SystemTime>,
) -> Result<MercureClaims, String> {
    if !at_jwt {
        return Err(
            "a token with authorization_details is an access token: its typ header must be \
             at+jwt"
                .into(),
        );
    }
    let audience_ok = match &raw.aud {
        Some(serde_json::Value::String(a)) => a == audience,
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(format!(
            "the token's aud does not name this hub's resource identifier {audience:?} (set \
             --mercure-resource-identifier behind a proxy)"
        ));
    }
    if raw.exp.is_none() {
        return Err("an at+jwt access token must have exp".into());
    }
    if raw.iss.as_ref().is_some_and(|i| !i.is_string()) {
        return Err("the token's iss is not a string".into());
    }
    let details = match raw.authorization_details {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(list)) => list,
        Some(_) => return Err("authorization_details is not an array".into()),
    };
    let (mut publish, mut subscribe, mut payload) = (None::<Vec<_>>, None::<Vec<_>>, None);
    let (mut count, mut matchers) = (0, 0);
    for detail in details {
        let Some(object) = detail.as_object() else {
            return Err("an authorization_details entry is not an object".into());
        };
        let kind = object.get("type").and_then(|t| t.as_str());
        if !matches!(
            kind,
            Some(AUTHORIZATION_DETAIL_TYPE | AUTHORIZATION_DETAIL_TYPE_SHORT)
        ) {
            // Another API's rights (RFC 9396 allows several types in one token).
            continue;
        }
        count += 1;
        if count > MAX_AUTHORIZATION_DETAILS {
            return Err(format!(
                "at most {MAX_AUTHORIZATION_DETAILS} Mercure authorization details"
            ));
        }
        let bad = |why: &str| format!("a Mercure authorization detail {why}");
        let actions = object
            .get("actions")
            .and_then(|a| a.as_array())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad("has no actions array"))?;
        let (mut may_publish, mut may_subscribe) = (false, false);
        for action in actions {
            match action.as_str() {
                Some("publish") => may_publish = true,
                Some("subscribe") => may_subscribe = true,
                _ => return Err(bad("has an action other than publish and subscribe")),
            }
        }
        let topics = object
            .get("topics")
            .and_then(|t| t.as_array())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("has no topics array"))?;
        matchers += topics.len();
        if matchers > MAX_TOKEN_MATCHERS {
            return Err(format!(
                "at most {MAX_TOKEN_MATCHERS} topic matchers per token"
            ));
        }
        let topics = topics
            .iter()
            .map(topic_matcher)
            .collect::<Result<Vec<_>, _>>()?;
        if may_publish {
            publish
                .get_or_insert_with(Vec::new)
                .extend(topics.iter().cloned());
        }
        if may_subscribe {
            if payload.is_none() {
                payload = object.get("payload").cloned();
            }
            subscribe.get_or_insert_with(Vec::new).extend(topics);
        }
    }
    Ok(MercureClaims {
        generation: Generation::V1,
        publish,
        subscribe,
        payload,
        subject,
        expires_at,
    })
}

/// One entry of an authorization detail's `topics`.
fn topic_matcher(value: &serde_json::Value) -> Result<SelectorSpec, String> {
    let bad = || {
        "a topic matcher is {\"match\": …} or {\"match_urlpattern\": …}, a string without \
         control characters"
            .to_owned()
    };
    let object = value.as_object().ok_or_else(bad)?;
    let text = |key| match object.get(key) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) if s.len() <= MAX_TOPIC_LEN && !has_control(s) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad()),
    };
    let kind = object
        .get("matchType")
        .or_else(|| object.get("match_type"))
        .map(|k| k.as_str().ok_or_else(bad))
        .transpose()?;
    match (text("match")?, text("match_urlpattern")?, kind) {
        (Some(m), None, None | Some("Exact" | "exact")) => Ok(SelectorSpec::exact(m)),
        (Some(m), None, Some("URLPattern" | "urlpattern")) => Ok(SelectorSpec::url_pattern(m)),
        (None, Some(p), None | Some("URLPattern" | "urlpattern")) => {
            Ok(SelectorSpec::url_pattern(p))
        }
        _ => Err(bad()),
    }
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    mercure: Option<RawMercure>,
    #[serde(default)]
    authorization_details: Option<serde_json::Value>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    iss: Option<serde_json::Value>,
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
    /// The token's form: a `mercure` claim (0.x) or an `at+jwt` access token (1.0).
    pub(crate) generation: Generation,
    /// `mercure.publish`, or the topics of the `publish` authorization details: `None` when
    /// absent (publishing refused).
    pub(crate) publish: Option<Vec<SelectorSpec>>,
    /// `mercure.subscribe`, or the topics of the `subscribe` authorization details: the
    /// selectors of private updates the holder may receive; `None` when absent.
    pub(crate) subscribe: Option<Vec<SelectorSpec>>,
    /// `exp`: the subscriber's stream ends then.
    pub(crate) expires_at: Option<SystemTime>,
    /// `mercure.payload`, or the `payload` of the first `subscribe` authorization detail that
    /// has one: shown in the subscriber's subscriptions.
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

/// The token of a 0.x request: the `Authorization` header wins, then `query` (the
/// `authorization` parameter, subscribers only), then the `mercureAuthorization` cookie.
///
/// # Errors
/// An `Authorization` header that is not `Bearer <token>`.
#[cfg(test)]
pub(crate) fn token<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<(&'a str, TokenSource)>, &'static str> {
    token_in(headers, query, &[COOKIE])
}

/// The token of a request: the `Authorization` header wins, then `query`, then the first of
/// `cookies` present.
///
/// # Errors
/// An `Authorization` header that is not `Bearer <token>`.
pub(crate) fn token_in<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    cookies: &[&str],
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
    for wanted in cookies {
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                if let Some((name, v)) = pair.trim().split_once('=') {
                    if name == *wanted && !v.is_empty() {
                        return Ok(Some((v, TokenSource::Cookie)));
                    }
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

    const AUD: &str = "https://hub.example.com/.well-known/mercure";

    fn access_token(typ: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        encode(
            &header,
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn detail(actions: &[&str], topics: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"type": AUTHORIZATION_DETAIL_TYPE, "actions": actions, "topics": topics})
    }

    #[test]
    fn access_tokens_are_read() {
        let key = MercureKey::new(JwtAlg::Hs256, SECRET).unwrap();
        let claims = |details: serde_json::Value| {
            serde_json::json!({"aud": AUD, "exp": 4_000_000_000u64, "iss": "https://app.example.com",
                "sub": "u1", "authorization_details": details})
        };
        let t = access_token(
            Some("at+jwt"),
            claims(serde_json::json!([
                detail(&["publish"], serde_json::json!([{"match": "urn:a"}])),
                {"type": "https://other.example/api", "actions": ["read"]},
                {"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["subscribe", "publish"],
                 "topics": [{"match_urlpattern": "https://example.com/books/:id"}, {"match": "*"}],
                 "payload": {"user": 1}},
                detail(&["subscribe"], serde_json::json!([{"match": "/x/:y", "matchType": "URLPattern"}])),
            ])),
        );
        let c = key.verify(&t, AUD).unwrap();
        assert_eq!(c.generation, Generation::V1);
        assert_eq!(
            c.publish.unwrap(),
            [
                SelectorSpec::exact("urn:a"),
                SelectorSpec::url_pattern("https://example.com/books/:id"),
                SelectorSpec::exact("*"),
            ]
        );
        assert_eq!(
            c.subscribe.unwrap(),
            [
                SelectorSpec::url_pattern("https://example.com/books/:id"),
                SelectorSpec::exact("*"),
                SelectorSpec::url_pattern("/x/:y"),
            ]
        );
        assert_eq!(c.payload, Some(serde_json::json!({"user": 1})));
        assert_eq!(c.subject.as_deref(), Some("u1"));
        assert!(c.expires_at.is_some());
        // `aud` as an array, `typ` with its media type prefix.
        let mut array = claims(serde_json::json!([detail(
            &["subscribe"],
            serde_json::json!([{"match": "a"}])
        )]));
        array["aud"] = serde_json::json!(["https://other.example", AUD]);
        let c = key
            .verify(&access_token(Some("application/AT+JWT"), array), AUD)
            .unwrap();
        assert!(c.publish.is_none(), "no publish action");
        // An at+jwt token without authorization_details grants nothing.
        let mut bare = claims(serde_json::Value::Null);
        bare.as_object_mut()
            .unwrap()
            .remove("authorization_details");
        let c = key
            .verify(&access_token(Some("at+jwt"), bare), AUD)
            .unwrap();
        assert!(c.publish.is_none() && c.subscribe.is_none() && c.generation == Generation::V1);
    }

    #[test]
    fn access_tokens_are_refused() {
        let key = MercureKey::new(JwtAlg::Hs256, SECRET).unwrap();
        let good = serde_json::json!({"aud": AUD, "exp": 4_000_000_000u64,
            "authorization_details": [detail(&["publish"], serde_json::json!([{"match": "*"}]))]});
        assert!(key
            .verify(&access_token(Some("at+jwt"), good.clone()), AUD)
            .is_ok());
        let refused = |typ: Option<&str>, claims: serde_json::Value| {
            key.verify(&access_token(typ, claims), AUD).unwrap_err()
        };
        assert!(
            refused(Some("JWT"), good.clone()).contains("at+jwt"),
            "wrong typ"
        );
        assert!(refused(None, good.clone()).contains("at+jwt"), "no typ");
        let with = |key: &str, value: serde_json::Value| {
            let mut c = good.clone();
            c[key] = value;
            c
        };
        let without = |key: &str| {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(key);
            c
        };
        assert!(refused(
            Some("at+jwt"),
            with(
                "aud",
                serde_json::json!("https://other.example/.well-known/mercure")
            )
        )
        .contains("aud"));
        assert!(refused(Some("at+jwt"), without("aud")).contains("aud"));
        assert!(refused(Some("at+jwt"), without("exp")).contains("exp"));
        assert!(refused(Some("at+jwt"), with("iss", serde_json::json!(7))).contains("iss"));
        for details in [
            serde_json::json!({"type": AUTHORIZATION_DETAIL_TYPE}),
            serde_json::json!(["x"]),
            serde_json::json!([{"type": AUTHORIZATION_DETAIL_TYPE, "topics": [{"match": "a"}]}]),
            serde_json::json!([detail(&[], serde_json::json!([{"match": "a"}]))]),
            serde_json::json!([detail(&["read"], serde_json::json!([{"match": "a"}]))]),
            serde_json::json!([detail(&["publish"], serde_json::json!([]))]),
            serde_json::json!([detail(&["publish"], serde_json::json!(["a"]))]),
            serde_json::json!([detail(&["publish"], serde_json::json!([{"match": 1}]))]),
            serde_json::json!([detail(&["publish"], serde_json::json!([{"match": "a\nb"}]))]),
            serde_json::json!([detail(
                &["publish"],
                serde_json::json!([{"match": "a", "match_urlpattern": "b"}])
            )]),
            serde_json::json!([detail(
                &["publish"],
                serde_json::json!([{"match": "a", "matchType": "Template"}])
            )]),
            // One bad entry refuses the token, whatever the others grant.
            serde_json::json!([
                detail(&["publish"], serde_json::json!([{"match": "*"}])),
                detail(&["publish"], serde_json::json!([{}]))
            ]),
        ] {
            assert!(
                key.verify(
                    &access_token(
                        Some("at+jwt"),
                        with("authorization_details", details.clone())
                    ),
                    AUD
                )
                .is_err(),
                "{details}"
            );
        }
        let many: Vec<_> = (0..=MAX_AUTHORIZATION_DETAILS)
            .map(|_| detail(&["subscribe"], serde_json::json!([{"match": "a"}])))
            .collect();
        assert!(refused(
            Some("at+jwt"),
            with("authorization_details", serde_json::json!(many))
        )
        .contains("at most"));
        // A token that is not an access token but carries authorization_details is refused
        // rather than read as 0.x.
        assert!(key
            .verify(&hs256(good), AUD)
            .unwrap_err()
            .contains("at+jwt"));
    }

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
            serde_json::json!({"mercure": {"publish": ["*"], "subscribe": ["a", {"match": "b"}, {"x": 1}, 7]}}),
        );
        let c = key.verify(&t, AUD).unwrap();
        assert_eq!(c.generation, Generation::V0);
        assert_eq!(c.publish.unwrap(), [SelectorSpec::template("*")]);
        assert_eq!(
            c.subscribe.unwrap(),
            [SelectorSpec::template("a"), SelectorSpec::exact("b")],
            "strings are 0.x selectors, 1.0 objects are read too, the rest is skipped"
        );
        assert!(c.expires_at.is_none(), "exp is optional");
        let c = key
            .verify(&hs256(serde_json::json!({"sub": "x"})), AUD)
            .unwrap();
        assert!(c.publish.is_none() && c.subscribe.is_none());
        let expired = hs256(serde_json::json!({"exp": 1000}));
        assert_eq!(
            key.verify(&expired, AUD).unwrap_err(),
            "the token has expired"
        );
        let other = MercureKey::new(JwtAlg::Hs256, "another secret").unwrap();
        assert!(other.verify(&t, AUD).is_err());
        assert!(key.verify("not.a.token", AUD).is_err());
        assert!(MercureKey::new(JwtAlg::Rs256, "not pem").is_err());
        assert!(MercureKey::new(JwtAlg::Hs256, "").is_err());
        assert_eq!("es256".parse::<JwtAlg>().unwrap(), JwtAlg::Es256);
        assert!("none".parse::<JwtAlg>().is_err());
    }

    #[test]
    fn the_1_0_cookie_and_the_first_cookie_wanted() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("{COOKIE}=old; {COOKIE_V1}=new").parse().unwrap(),
        );
        assert_eq!(
            token_in(&h, None, &[COOKIE_V1]).unwrap(),
            Some(("new", TokenSource::Cookie))
        );
        assert_eq!(
            token_in(&h, None, &[COOKIE]).unwrap(),
            Some(("old", TokenSource::Cookie))
        );
        assert_eq!(
            token_in(&h, None, &[COOKIE_V1, COOKIE]).unwrap(),
            Some(("new", TokenSource::Cookie))
        );
        assert_eq!(token_in(&h, None, &["other"]).unwrap(), None);
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
