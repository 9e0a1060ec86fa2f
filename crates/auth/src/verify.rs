//! Verifying a signed request, and signing one (the client's side).

use hmac::Mac;
use hongbao_clock::Clock;

use crate::canonical::{body_sha256_hex, canonical_request, mac, sign};
use crate::keys::valid_id;
use crate::{
    HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, KeyRing, NONCE_LEN_MAX,
    NONCE_LEN_MIN, NONCE_RETAIN_S, NonceError, NonceStore, OperatorKey, Scope, WINDOW_S,
};

/// The four signature headers as received (absent: `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SignedHeaders<'a> {
    pub key: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// What is signed of a request: method, path and raw query as received, the whole body.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    pub headers: SignedHeaders<'a>,
}

/// A request that passed: which key signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
}

/// Why a request was refused; each has its own code (docs/SECURITY.md lists them). Messages
/// never include a secret or the expected signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("unsigned request: missing {0}")]
    MissingHeaders(String),
    #[error("{header}: {reason}")]
    Malformed { header: &'static str, reason: &'static str },
    #[error("no active key `{0}`")]
    UnknownKey(String),
    #[error("the timestamp is {0} s old; at most {WINDOW_S} s are accepted (check the clock)")]
    StaleTimestamp(u64),
    #[error("the timestamp is {0} s ahead; at most {WINDOW_S} s are accepted (check the clock)")]
    FutureTimestamp(u64),
    #[error(
        "the signature does not match the request (see docs/SECURITY.md for the canonical form)"
    )]
    BadSignature,
    #[error("key `{key}` lacks the `{}` scope this endpoint needs", needs.as_str())]
    MissingScope { key: String, needs: Scope },
    #[error("this nonce was already used with key `{0}`: a replay")]
    NonceReused(String),
    #[error("{0}")]
    NonceStoreFull(NonceError),
    #[error("{0}")]
    NonceStoreUnavailable(NonceError),
}

impl AuthError {
    /// The error's code in the API's JSON errors: one per refusal, so a client and a test can
    /// tell them apart.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingHeaders(_) => "signature_missing",
            AuthError::Malformed { .. } => "signature_malformed",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::StaleTimestamp(_) => "timestamp_stale",
            AuthError::FutureTimestamp(_) => "timestamp_future",
            AuthError::BadSignature => "bad_signature",
            AuthError::MissingScope { .. } => "scope_missing",
            AuthError::NonceReused(_) => "nonce_reused",
            AuthError::NonceStoreFull(_) => "nonce_store_full",
            AuthError::NonceStoreUnavailable(_) => "nonce_store_unavailable",
        }
    }
}

/// Verifies `request` against `ring` for an endpoint needing `needs`, at `clock`'s time, and
/// records its nonce. Order: headers present and well-formed, key known, timestamp in the
/// window, signature (constant time), scope, nonce; only a request signed by a key holder
/// reaches the nonce store, so nobody else can fill it.
pub async fn verify(
    ring: &KeyRing,
    request: &RequestParts<'_>,
    needs: Scope,
    clock: &dyn Clock,
    nonces: &dyn NonceStore,
) -> Result<Verified, AuthError> {
    let h = request.headers;
    let (Some(key_id), Some(timestamp), Some(nonce), Some(signature)) =
        (h.key, h.timestamp, h.nonce, h.signature)
    else {
        let missing: Vec<&str> = [
            (h.key, HEADER_KEY),
            (h.timestamp, HEADER_TIMESTAMP),
            (h.nonce, HEADER_NONCE),
            (h.signature, HEADER_SIGNATURE),
        ]
        .iter()
        .filter(|(v, _)| v.is_none())
        .map(|(_, name)| *name)
        .collect();
        return Err(AuthError::MissingHeaders(missing.join(", ")));
    };
    let at_s = parse_timestamp(timestamp)?;
    check_nonce_form(nonce)?;
    let given = parse_signature(signature)?;
    if !valid_id(key_id) {
        return Err(AuthError::Malformed { header: HEADER_KEY, reason: "not a key id" });
    }
    check_request_line(request)?;
    let key = ring.get(key_id).ok_or_else(|| AuthError::UnknownKey(key_id.to_string()))?;
    let now_s = u64::try_from(clock.now_unix_s()).unwrap_or(0);
    if at_s.saturating_add(WINDOW_S) < now_s {
        return Err(AuthError::StaleTimestamp(now_s - at_s));
    }
    if at_s > now_s.saturating_add(WINDOW_S) {
        return Err(AuthError::FutureTimestamp(at_s - now_s));
    }
    let canonical = canonical_request(
        key_id,
        request.method,
        request.path,
        request.query,
        timestamp,
        nonce,
        &body_sha256_hex(request.body),
    );
    // `verify_slice` compares in constant time (the `subtle` crate underneath).
    mac(&key.secret, &canonical).verify_slice(&given).map_err(|_| AuthError::BadSignature)?;
    if !key.has(needs) {
        return Err(AuthError::MissingScope { key: key.id.clone(), needs });
    }
    let expires_at_s = now_s.saturating_add(NONCE_RETAIN_S);
    nonces.remember(key_id, nonce, now_s, expires_at_s).await.map_err(|e| match e {
        NonceError::Reused => AuthError::NonceReused(key_id.to_string()),
        full @ NonceError::Full(_) => AuthError::NonceStoreFull(full),
        down @ NonceError::Unavailable(_) => AuthError::NonceStoreUnavailable(down),
    })?;
    Ok(Verified { key_id: key_id.to_string() })
}

/// Longest timestamp text: a u64 in decimal.
const TIMESTAMP_LEN_MAX: usize = 20;

fn parse_timestamp(text: &str) -> Result<u64, AuthError> {
    let malformed =
        AuthError::Malformed { header: HEADER_TIMESTAMP, reason: "Unix seconds in decimal digits" };
    if text.is_empty()
        || text.len() > TIMESTAMP_LEN_MAX
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed);
    }
    text.parse().map_err(|_| malformed)
}

fn check_nonce_form(nonce: &str) -> Result<(), AuthError> {
    let ok = (NONCE_LEN_MIN..=NONCE_LEN_MAX).contains(&nonce.len())
        && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AuthError::Malformed {
            header: HEADER_NONCE,
            reason: "16 to 64 characters of A-Z a-z 0-9 _ -",
        })
    }
}

/// The canonical form joins its fields with line breaks, so a method, path or query holding one
/// could shift text between fields: a request signed for path `/a\n/b` would verify as method
/// `POST\n/A` and path `/b`. HTTP forbids line breaks there and hyper refuses them, but this
/// function takes any text, so it refuses them too and the canonical form stays unambiguous.
fn check_request_line(request: &RequestParts<'_>) -> Result<(), AuthError> {
    if [request.method, request.path, request.query].iter().any(|part| part.contains('\n')) {
        return Err(AuthError::Malformed {
            header: "request line",
            reason: "a line break in the method, path or query",
        });
    }
    Ok(())
}

fn parse_signature(text: &str) -> Result<Vec<u8>, AuthError> {
    let malformed =
        AuthError::Malformed { header: HEADER_SIGNATURE, reason: "64 lowercase hex digits" };
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(malformed);
    }
    hex::decode(text).map_err(|_| malformed)
}

/// The four headers (name, value) a client sends with a request signed by `key` at `now_s`
/// with `nonce` (the caller makes it random: 16 to 64 characters of `[A-Za-z0-9_-]`).
pub fn sign_headers(
    key: &OperatorKey,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    now_s: u64,
    nonce: &str,
) -> [(&'static str, String); 4] {
    let timestamp = now_s.to_string();
    let canonical =
        canonical_request(&key.id, method, path, query, &timestamp, nonce, &body_sha256_hex(body));
    [
        (HEADER_KEY, key.id.clone()),
        (HEADER_TIMESTAMP, timestamp),
        (HEADER_NONCE, nonce.to_string()),
        (HEADER_SIGNATURE, sign(&key.secret, &canonical)),
    ]
}
