//! Signed operator requests (crates/auth): arbitrary method, path, query, body and signature
//! headers are refused with a typed error, never a panic, never accepted; a request signed by a
//! key verifies (inside the window, with the scope) and replays are refused; after any change
//! to what was signed, it verifies only if the change is one the canonical form declares
//! meaningless (method case, query parameter order, empty parameters, `a` = `a=`); a line break
//! in the method, path or query is refused even when signed.
#![no_main]

use arbitrary::Arbitrary;
use futures_util::FutureExt;
use hongbao_auth::{
    AuthError, InProcessNonceStore, KeyRing, OperatorKey, RequestParts, Scope, Secret,
    SignedHeaders, Verified, WINDOW_S, canonical_query, sign_headers,
};
use hongbao_clock::ManualClock;
use hongbao_fuzz::NOW_UNIX_S;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Clone, Debug)]
struct Parts {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
}

#[derive(Arbitrary, Clone, Debug)]
struct Headers {
    key: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    signature: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum Change {
    Method(String),
    Path(String),
    Query(String),
    Body(Vec<u8>),
    Key(Option<String>),
    Timestamp(Option<String>),
    Nonce(Option<String>),
    Signature(Option<String>),
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Everything arbitrary, headers included.
    Raw { parts: Parts, headers: Headers, scope: u8 },
    /// Signed by a key of the ring, then changed.
    Signed {
        parts: Parts,
        reader_key: bool,
        skew_s: i16,
        nonce: Vec<u8>,
        scope: u8,
        changes: Vec<Change>,
    },
}

const SCOPES: [Scope; 3] = [Scope::Read, Scope::Operate, Scope::Admin];

fn ring() -> KeyRing {
    let mut ring = KeyRing::default();
    let key = |id: &str, fill: u8, scopes: Vec<Scope>| OperatorKey {
        id: id.to_string(),
        secret: Secret::from_bytes(vec![fill; 32]).expect("32 bytes is a valid secret"),
        scopes,
    };
    ring.insert(key("ops-1", 7, SCOPES.to_vec())).expect("a new id");
    ring.insert(key("reader", 9, vec![Scope::Read])).expect("a new id");
    ring
}

fn now_s() -> u64 {
    NOW_UNIX_S as u64
}

fn verify(
    ring: &KeyRing,
    parts: &Parts,
    h: &Headers,
    needs: Scope,
    nonces: &InProcessNonceStore,
) -> Result<Verified, AuthError> {
    let clock = ManualClock::new(now_s() * 1000);
    let request = RequestParts {
        method: &parts.method,
        path: &parts.path,
        query: &parts.query,
        body: &parts.body,
        headers: SignedHeaders {
            key: h.key.as_deref(),
            timestamp: h.timestamp.as_deref(),
            nonce: h.nonce.as_deref(),
            signature: h.signature.as_deref(),
        },
    };
    let verified = hongbao_auth::verify(ring, &request, needs, &*clock, nonces).now_or_never();
    let verified = verified.expect("the in-process nonce store never waits");
    if let Err(e) = &verified {
        assert!(!e.code().is_empty() && !e.to_string().is_empty());
    }
    verified
}

/// A nonce of the accepted form made from arbitrary bytes.
fn nonce_from(seed: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut nonce: String =
        seed.iter().take(64).map(|b| ALPHABET[usize::from(b % 64)] as char).collect();
    while nonce.len() < 16 {
        nonce.push('A');
    }
    nonce
}

/// What a signature vouches for, once canonicalised.
fn meaning(p: &Parts, h: &Headers) -> impl PartialEq + std::fmt::Debug {
    (
        p.method.to_ascii_uppercase(),
        p.path.clone(),
        canonical_query(&p.query),
        p.body.clone(),
        h.key.clone(),
        h.timestamp.clone(),
        h.nonce.clone(),
        h.signature.clone(),
    )
}

fn signed(
    ring: &KeyRing,
    parts: Parts,
    reader_key: bool,
    skew_s: i16,
    nonce: &[u8],
    scope: u8,
    changes: Vec<Change>,
) {
    let key = ring.get(if reader_key { "reader" } else { "ops-1" }).expect("in the ring");
    let needs = SCOPES[usize::from(scope) % SCOPES.len()];
    let at_s = now_s().saturating_add_signed(i64::from(skew_s));
    let nonce = nonce_from(nonce);
    let [k, t, n, s] =
        sign_headers(key, &parts.method, &parts.path, &parts.query, &parts.body, at_s, &nonce);
    let headers =
        Headers { key: Some(k.1), timestamp: Some(t.1), nonce: Some(n.1), signature: Some(s.1) };

    let nonces = InProcessNonceStore::new(16);
    let got = verify(ring, &parts, &headers, needs, &nonces);
    let in_window = u64::from(skew_s.unsigned_abs()) <= WINDOW_S;
    // A line break would shift text between the canonical lines: refused before anything else.
    let line_break = [&parts.method, &parts.path, &parts.query].iter().any(|p| p.contains('\n'));
    match (&got, line_break, in_window, key.has(needs)) {
        (Err(AuthError::Malformed { header: "request line", .. }), true, _, _) => {}
        (Ok(v), false, true, true) => assert_eq!(v.key_id, key.id),
        (Err(AuthError::StaleTimestamp(_) | AuthError::FutureTimestamp(_)), false, false, _) => {}
        (Err(AuthError::MissingScope { .. }), false, true, false) => {}
        _ => panic!("a signed request: {got:?} (line break {line_break}, in window {in_window})"),
    }
    if got.is_ok() {
        let replay = verify(ring, &parts, &headers, needs, &nonces);
        assert!(matches!(replay, Err(AuthError::NonceReused(_))), "{replay:?}");
    }

    let (mut p, mut h) = (parts.clone(), headers.clone());
    for change in changes {
        match change {
            Change::Method(m) => p.method = m,
            Change::Path(x) => p.path = x,
            Change::Query(q) => p.query = q,
            Change::Body(b) => p.body = b,
            Change::Key(x) => h.key = x,
            Change::Timestamp(x) => h.timestamp = x,
            Change::Nonce(x) => h.nonce = x,
            Change::Signature(x) => h.signature = x,
        }
    }
    let changed = verify(ring, &p, &h, needs, &InProcessNonceStore::new(16));
    if changed.is_ok() {
        assert_eq!(meaning(&p, &h), meaning(&parts, &headers), "a changed request verified");
    }
}

fuzz_target!(|input: Input| {
    let ring = ring();
    match input {
        Input::Raw { parts, headers, scope } => {
            let needs = SCOPES[usize::from(scope) % SCOPES.len()];
            let got = verify(&ring, &parts, &headers, needs, &InProcessNonceStore::new(16));
            assert!(got.is_err(), "an unsigned request verified: {parts:?} {headers:?}");
        }
        Input::Signed { parts, reader_key, skew_s, nonce, scope, changes } => {
            signed(&ring, parts, reader_key, skew_s, &nonce, scope, changes);
        }
    }
});
