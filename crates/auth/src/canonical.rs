//! The canonical request: the exact bytes both sides sign. Changing it breaks every client.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Secret;

/// The first line of the canonical request: names the scheme, so a signature made for another
/// purpose with the same secret never verifies here.
pub const SIGNATURE_SCHEME: &str = "HONGBAO-HMAC-SHA256";

/// Lowercase hex SHA-256 of the body (of the empty string when there is none).
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The query as signed: its `&`-separated parameters exactly as sent (no decoding), empty ones
/// dropped, each split at its first `=` (none: an empty value), sorted by name then value
/// bytewise, joined back with `&` as `name=value`.
pub fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// The canonical request: eight lines joined by `\n` (no trailing newline): the scheme, the key
/// id, the method in upper case, the path as sent (no query), the canonical query, the
/// timestamp, the nonce, the body's SHA-256 in lowercase hex.
pub fn canonical_request(
    key_id: &str,
    method: &str,
    path: &str,
    raw_query: &str,
    timestamp: &str,
    nonce: &str,
    body_sha256_hex: &str,
) -> String {
    [
        SIGNATURE_SCHEME,
        key_id,
        &method.to_ascii_uppercase(),
        path,
        &canonical_query(raw_query),
        timestamp,
        nonce,
        body_sha256_hex,
    ]
    .join("\n")
}

/// The raw HMAC-SHA256 of `canonical` under `secret`.
pub(crate) fn mac(secret: &Secret, canonical: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `Secret` enforces the minimum.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(canonical.as_bytes());
    mac
}

/// Lowercase hex HMAC-SHA256 of `canonical` under `secret`: the signature header's value.
pub fn sign(secret: &Secret, canonical: &str) -> String {
    hex::encode(mac(secret, canonical).finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_sorted_by_name_then_value_and_kept_as_sent() {
        assert_eq!(canonical_query("b=2&a=%20x&&a=1&c"), "a=%20x&a=1&b=2&c=");
        assert_eq!(canonical_query(""), "");
    }

    #[test]
    fn the_canonical_request_has_eight_lines_in_order() {
        let c = canonical_request("k1", "post", "/admin/v1/x", "b=1&a=2", "1700000000", "n", "h");
        assert_eq!(c, "HONGBAO-HMAC-SHA256\nk1\nPOST\n/admin/v1/x\na=2&b=1\n1700000000\nn\nh");
    }

    /// A fixed vector (docs/SECURITY.md repeats it) so clients in other languages can check
    /// their implementation.
    #[test]
    fn the_documented_test_vector_signs_as_documented() {
        let secret = Secret::from_text(
            "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        )
        .expect("a secret");
        let body = br#"{"apply":false}"#;
        let c = canonical_request(
            "ops-1",
            "POST",
            "/admin/v1/reconcile",
            "",
            "1767225600",
            "c2lnbmVkLW5vbmNlLTAx",
            &body_sha256_hex(body),
        );
        assert_eq!(sign(&secret, &c), DOCUMENTED_SIGNATURE);
    }

    /// docs/SECURITY.md's example signature.
    const DOCUMENTED_SIGNATURE: &str =
        "9fba06caa47e8932b77f9428dc239fb7e9118edc93a393154124e6766b1b816b";
}
