//! GitHub's scheme: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, keyed with the
//! webhook's secret. GitHub signs no timestamp and not its `X-GitHub-Delivery` id either: the id
//! de-duplicates GitHub's own retries, but a captured delivery stays valid under any new id (a
//! source can de-duplicate on a payload field instead, `id = "/after"` for pushes).

use http::HeaderMap;

use super::{any_matches, header, hex, SigningKey, Verified, VerifyError};

pub(super) fn verify(
    keys: &[SigningKey],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let value = header(headers, "x-hub-signature-256")
        .ok_or(VerifyError::MissingHeader("X-Hub-Signature-256"))?;
    let signature =
        value
            .strip_prefix("sha256=")
            .and_then(hex)
            .ok_or(VerifyError::InvalidSignature(
                "X-Hub-Signature-256 is not sha256=<hex>",
            ))?;
    if !any_matches(keys, &[body], &[signature]) {
        return Err(VerifyError::InvalidSignature(
            "the signature does not match a secret of this webhook",
        ));
    }
    Ok(Verified {
        id: header(headers, "x-github-delivery")
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        timestamp: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of GitHub's documentation ("Validating webhook deliveries").
    #[test]
    fn the_documented_example_verifies() {
        let key = SigningKey::new(b"It's a Secret to Everybody".to_vec());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
                .parse()
                .unwrap(),
        );
        headers.insert(
            "x-github-delivery",
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().unwrap(),
        );
        let v = verify(std::slice::from_ref(&key), &headers, b"Hello, World!").unwrap();
        assert_eq!(
            v.id.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert!(verify(std::slice::from_ref(&key), &headers, b"Hello, World?").is_err());
        headers.insert("x-hub-signature-256", "sha1=abcd".parse().unwrap());
        assert_eq!(
            verify(&[key], &headers, b"Hello, World!")
                .unwrap_err()
                .code(),
            "invalid_signature"
        );
    }
}
