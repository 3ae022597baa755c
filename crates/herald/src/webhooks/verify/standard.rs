//! The Standard Webhooks scheme (<https://www.standardwebhooks.com>): `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` headers; the signed content is
//! `{id}.{timestamp}.{body}`; the signature header is a space-separated list of
//! `v{n},<base64>` entries, of which Herald checks the `v1` (HMAC-SHA256) ones. The `svix-id`,
//! `svix-timestamp` and `svix-signature` headers of Svix-based providers are read too.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::HeaderMap;

use super::{any_matches, header, timestamp, SigningKey, Verified, VerifyError};

/// Longest signature header read (each entry is about 48 characters).
const MAX_SIGNATURES: usize = 16;

/// `whsec_<base64>` (the prefix may be left out) to the key bytes.
pub(super) fn key(secret: &str) -> Result<SigningKey, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match STANDARD.decode(encoded) {
        Ok(bytes) if !bytes.is_empty() => Ok(SigningKey::new(bytes)),
        Ok(_) => Err("a secret cannot be empty".into()),
        Err(_) => Err(
            "a standard-webhooks secret is whsec_ followed by base64 (as the provider shows it)"
                .into(),
        ),
    }
}

fn either(
    headers: &HeaderMap,
    name: &'static str,
    svix: &'static str,
) -> Result<String, VerifyError> {
    header(headers, name)
        .or_else(|| header(headers, svix))
        .map(str::to_owned)
        .ok_or(VerifyError::MissingHeader(name))
}

pub(super) fn verify(
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let id = either(headers, "webhook-id", "svix-id")?;
    let ts_text = either(headers, "webhook-timestamp", "svix-timestamp")?;
    let signatures = either(headers, "webhook-signature", "svix-signature")?;
    let ts = timestamp(&ts_text)?;
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .take(MAX_SIGNATURES)
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::InvalidSignature(
            "webhook-signature holds no v1,<base64> signature",
        ));
    }
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
    if !any_matches(keys, &parts, &candidates) {
        return Err(VerifyError::InvalidSignature(
            "no signature matches a secret of this webhook",
        ));
    }
    Ok(Verified {
        id: Some(id),
        timestamp: Some(ts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    /// The example of the specification's reference libraries.
    #[test]
    fn the_reference_example_verifies() {
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "webhook-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
        );
        headers.insert("webhook-timestamp", "1614265330".parse().unwrap());
        headers.insert(
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .unwrap(),
        );
        let body = br#"{"test": 2432232314}"#;
        let verified = verify(std::slice::from_ref(&key), &headers, body).unwrap();
        assert_eq!(verified.id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert_eq!(verified.timestamp, Some(1614265330));
        // Tampered body, another secret, several signatures with one right.
        assert!(verify(std::slice::from_ref(&key), &headers, b"{}").is_err());
        let other = SigningKey::new(b"other".to_vec());
        assert!(verify(std::slice::from_ref(&other), &headers, body).is_err());
        headers.insert(
            "webhook-signature",
            "v1a,xyz v1,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .unwrap(),
        );
        assert!(verify(&[other, key.clone()], &headers, body).is_ok());
        let mac = key.mac(&[b"x"]).finalize().into_bytes();
        assert_eq!(mac.len(), 32);
    }

    #[test]
    fn svix_header_names_are_read_too() {
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap());
        headers.insert("svix-timestamp", "1614265330".parse().unwrap());
        headers.insert(
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .unwrap(),
        );
        assert!(verify(
            std::slice::from_ref(&key),
            &headers,
            br#"{"test": 2432232314}"#
        )
        .is_ok());
        headers.remove("svix-id");
        assert_eq!(
            verify(&[key], &headers, b"{}"),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(key("whsec_not base64!").is_err());
        assert!(key("whsec_").is_err());
    }
}
