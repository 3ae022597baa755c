//! Stripe's scheme: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, where each `v1`
//! is the hex HMAC-SHA256 of `{t}.{body}` keyed with the endpoint's signing secret (used as
//! given, `whsec_` included). Other entries (`v0`, test-mode extras) are ignored. Stripe sends
//! no delivery id header: its event id is the body's `id`, which Herald de-duplicates by
//! default for this scheme.

use http::HeaderMap;

use super::{any_matches, header, hex, timestamp, SigningKey, Verified, VerifyError};

/// Most `v1` entries read from one header.
const MAX_SIGNATURES: usize = 16;

pub(super) fn verify(
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let value = header(headers, "stripe-signature")
        .ok_or(VerifyError::MissingHeader("Stripe-Signature"))?;
    let mut ts = None;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => ts = Some(t),
            Some(("v1", sig)) if signatures.len() < MAX_SIGNATURES => {
                if let Some(bytes) = hex(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let ts_text = ts.ok_or(VerifyError::InvalidSignature(
        "Stripe-Signature has no t=<timestamp>",
    ))?;
    let ts = timestamp(ts_text)?;
    if signatures.is_empty() {
        return Err(VerifyError::InvalidSignature(
            "Stripe-Signature has no v1=<hex> signature",
        ));
    }
    if !any_matches(keys, &[ts_text.as_bytes(), b".", body], &signatures) {
        return Err(VerifyError::InvalidSignature(
            "no signature matches a secret of this webhook",
        ));
    }
    Ok(Verified {
        id: None,
        timestamp: Some(ts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn signed_timestamp_and_body_verify() {
        let key = SigningKey::new(b"whsec_test".to_vec());
        let body = br#"{"id":"evt_1"}"#;
        let sig = hex_of(&key.mac(&[b"1700000000.", body]).finalize().into_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(
            "stripe-signature",
            format!("t=1700000000,v1=deadbeef,v1={sig},v0=abc")
                .parse()
                .unwrap(),
        );
        let v = verify(std::slice::from_ref(&key), &headers, body).unwrap();
        assert_eq!(v.timestamp, Some(1_700_000_000));
        assert!(verify(std::slice::from_ref(&key), &headers, b"{}").is_err());
        headers.insert(
            "stripe-signature",
            format!("t=1700000001,v1={sig}").parse().unwrap(),
        );
        assert!(
            verify(&[key], &headers, body).is_err(),
            "the timestamp is signed"
        );
    }
}
