//! Signed operator and service requests (docs/SECURITY.md, "Signed operator requests").
//!
//! A client holding an operator key signs each request: an HMAC-SHA256, keyed by the key's
//! secret, over a canonical form of the key id, method, path, sorted query, timestamp, nonce and
//! the body's SHA-256. The node verifies before any handler runs: the key is known, the
//! timestamp within [`WINDOW_S`] of the node's clock, the signature equal (in constant time),
//! the key holds the endpoint's scope, and the nonce never seen before (remembered for longer
//! than the window in a bounded [`NonceStore`], so a replay inside or outside the window fails).
//!
//! Pure: no file, socket or environment access. The binary reads the keys file and maps
//! [`AuthError`] to HTTP.

mod canonical;
mod keys;
mod nonce;
mod verify;

pub use canonical::{SIGNATURE_SCHEME, body_sha256_hex, canonical_query, canonical_request, sign};
pub use keys::{KeyError, KeyRing, OperatorKey, Scope, Secret};
pub use nonce::{
    InProcessNonceStore, NONCE_STORE_MAX_DEFAULT, NonceError, NonceFuture, NonceStore,
};
pub use verify::{AuthError, RequestParts, SignedHeaders, Verified, sign_headers, verify};

/// Key id header.
pub const HEADER_KEY: &str = "x-hongbao-key";
/// Unix seconds at signing, decimal.
pub const HEADER_TIMESTAMP: &str = "x-hongbao-timestamp";
/// A value the client never uses twice with the same key.
pub const HEADER_NONCE: &str = "x-hongbao-nonce";
/// Lowercase hex of the HMAC-SHA256 over the canonical request.
pub const HEADER_SIGNATURE: &str = "x-hongbao-signature";

/// How far a request's timestamp may be from the node's clock, either way, in seconds: wide
/// enough for clocks a little apart, narrow enough that a captured request soon goes stale.
pub const WINDOW_S: u64 = 300;

/// How long a nonce is remembered, in seconds: longer than the whole window on both sides
/// (2 × [`WINDOW_S`]), so a request can never be replayed while its timestamp is still accepted.
pub const NONCE_RETAIN_S: u64 = 2 * WINDOW_S + 60;

/// Nonce length bounds, in characters of `[A-Za-z0-9_-]`: at least 16 (a random 96-bit value in
/// base64url), at most 64 (the store's memory per entry stays bounded).
pub const NONCE_LEN_MIN: usize = 16;
pub const NONCE_LEN_MAX: usize = 64;

/// Key id length bound, characters of `[A-Za-z0-9_.-]`.
pub const KEY_ID_LEN_MAX: usize = 64;
