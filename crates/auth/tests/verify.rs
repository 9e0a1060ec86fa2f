//! Each refusal of a signed request has its own error, and a good request passes once.

use hongbao_auth::{
    AuthError, InProcessNonceStore, KeyRing, OperatorKey, RequestParts, Scope, Secret,
    SignedHeaders, WINDOW_S, sign_headers, verify,
};
use hongbao_clock::ManualClock;

/// The result of a verification over the in-process nonce store, which never waits.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    futures_util::FutureExt::now_or_never(future).expect("the in-process store never waits")
}

const NOW_S: u64 = 1_767_225_600;
const NONCE: &str = "0123456789abcdef";

fn key(id: &str, fill: u8, scopes: &[Scope]) -> OperatorKey {
    OperatorKey {
        id: id.into(),
        secret: Secret::from_bytes(vec![fill; 32]).expect("secret"),
        scopes: scopes.to_vec(),
    }
}

fn ring() -> KeyRing {
    let mut ring = KeyRing::default();
    ring.insert(key("ops", 1, &[Scope::Read, Scope::Operate])).expect("insert");
    ring.insert(key("viewer", 2, &[Scope::Read])).expect("insert");
    ring
}

/// A request to pause a game, signed by `key` at `at_s`, then `tamper`ed with.
struct Signed {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
    headers: [(&'static str, String); 4],
}

impl Signed {
    fn new(key: &OperatorKey, at_s: u64) -> Signed {
        let (method, path, query, body) = ("POST", "/admin/v1/delivery/g/pause", "a=1&b=2", b"{}");
        Signed {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            body: body.to_vec(),
            headers: sign_headers(key, method, path, query, body, at_s, NONCE),
        }
    }

    fn check(&self, needs: Scope, store: &InProcessNonceStore) -> Result<String, AuthError> {
        let header = |i: usize| Some(self.headers[i].1.as_str());
        let request = RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            body: &self.body,
            headers: SignedHeaders {
                key: header(0),
                timestamp: header(1),
                nonce: header(2),
                signature: header(3),
            },
        };
        let clock = ManualClock::new(NOW_S * 1000);
        ready(verify(&ring(), &request, needs, &*clock, store)).map(|v| v.key_id)
    }
}

fn ops() -> OperatorKey {
    key("ops", 1, &[Scope::Read, Scope::Operate])
}

#[test]
fn a_good_request_passes_and_its_replay_is_refused() {
    let store = InProcessNonceStore::default();
    let signed = Signed::new(&ops(), NOW_S);
    assert_eq!(signed.check(Scope::Operate, &store), Ok("ops".into()));
    assert_eq!(signed.check(Scope::Operate, &store), Err(AuthError::NonceReused("ops".into())));
}

#[test]
fn timestamps_at_the_window_pass_and_beyond_it_are_stale_or_future() {
    let store = InProcessNonceStore::default();
    let mut edge = Signed::new(&ops(), NOW_S - WINDOW_S);
    assert!(edge.check(Scope::Read, &store).is_ok());
    edge = Signed::new(&ops(), NOW_S - WINDOW_S - 1);
    assert_eq!(edge.check(Scope::Read, &store), Err(AuthError::StaleTimestamp(WINDOW_S + 1)));
    let future = Signed::new(&ops(), NOW_S + WINDOW_S + 1);
    assert_eq!(future.check(Scope::Read, &store), Err(AuthError::FutureTimestamp(WINDOW_S + 1)));
}

#[test]
fn tampering_with_any_signed_part_breaks_the_signature() {
    let store = InProcessNonceStore::default();
    let tampers: [fn(&mut Signed); 5] = [
        |s| s.method = "GET".into(),
        |s| s.path = "/admin/v1/delivery/h/pause".into(),
        |s| s.query = "a=1&b=3".into(),
        |s| s.body = b"{\"x\":1}".to_vec(),
        |s| s.headers[2].1 = "fedcba9876543210".into(),
    ];
    for tamper in tampers {
        let mut signed = Signed::new(&ops(), NOW_S);
        tamper(&mut signed);
        assert_eq!(signed.check(Scope::Read, &store), Err(AuthError::BadSignature));
    }
    assert!(store.is_empty(), "no refused request's nonce is remembered");
    // The query's order is not signed, its content is.
    let mut reordered = Signed::new(&ops(), NOW_S);
    reordered.query = "b=2&a=1".into();
    assert!(reordered.check(Scope::Read, &store).is_ok());
}

#[test]
fn a_wrong_secret_an_unknown_key_and_a_missing_scope_are_told_apart() {
    let store = InProcessNonceStore::default();
    let forged = Signed::new(&key("ops", 9, &[Scope::Operate]), NOW_S);
    assert_eq!(forged.check(Scope::Read, &store), Err(AuthError::BadSignature));
    let unknown = Signed::new(&key("intruder", 1, &[Scope::Admin]), NOW_S);
    assert_eq!(unknown.check(Scope::Read, &store), Err(AuthError::UnknownKey("intruder".into())));
    let viewer = Signed::new(&key("viewer", 2, &[Scope::Read]), NOW_S);
    assert_eq!(
        viewer.check(Scope::Operate, &store),
        Err(AuthError::MissingScope { key: "viewer".into(), needs: Scope::Operate })
    );
    assert!(store.is_empty());
}

#[test]
fn missing_and_malformed_headers_are_refused_before_any_key_is_looked_up() {
    let store = InProcessNonceStore::default();
    let mut signed = Signed::new(&ops(), NOW_S);
    signed.headers[3].1 = "XYZ".into();
    assert!(matches!(signed.check(Scope::Read, &store), Err(AuthError::Malformed { .. })));
    signed.headers[2].1 = "short".into();
    assert!(matches!(signed.check(Scope::Read, &store), Err(AuthError::Malformed { .. })));
    let request = RequestParts {
        method: "GET",
        path: "/",
        query: "",
        body: b"",
        headers: SignedHeaders { key: Some("ops"), ..SignedHeaders::default() },
    };
    let clock = ManualClock::new(NOW_S * 1000);
    let error = ready(verify(&ring(), &request, Scope::Read, &*clock, &store)).unwrap_err();
    assert_eq!(error.code(), "signature_missing");
    assert!(error.to_string().contains("x-hongbao-signature"), "{error}");
}

/// Fields are joined by line breaks in the canonical form: one inside a field would let text
/// move between fields under the same signature (signed for path `/1\n/2`, it verified as
/// method `POST\n/1` and path `/2`). Refused, even when correctly signed.
#[test]
fn a_line_break_in_the_method_path_or_query_is_refused_even_when_signed() {
    let store = InProcessNonceStore::default();
    let sign = |(method, path, query): (&str, &str, &str)| {
        sign_headers(&ops(), method, path, query, b"{}", NOW_S, NONCE)
    };
    let shifted = sign(("POST", "/1\n/2", ""));
    for ((method, path, query), headers) in [
        (("POST\n/1", "/2", ""), shifted),
        (("POST", "/1\n/2", ""), sign(("POST", "/1\n/2", ""))),
        (("POST", "/admin/v1/x", "a=1\nb=2"), sign(("POST", "/admin/v1/x", "a=1\nb=2"))),
    ] {
        let signed = Signed {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            body: b"{}".to_vec(),
            headers,
        };
        let refused = signed.check(Scope::Operate, &store);
        assert!(
            matches!(refused, Err(AuthError::Malformed { header: "request line", .. })),
            "{method:?} {path:?} {query:?}: {refused:?}"
        );
    }
}

#[test]
fn every_refusal_has_its_own_code() {
    let errors = [
        AuthError::MissingHeaders(String::new()),
        AuthError::Malformed { header: "h", reason: "r" },
        AuthError::UnknownKey(String::new()),
        AuthError::StaleTimestamp(0),
        AuthError::FutureTimestamp(0),
        AuthError::BadSignature,
        AuthError::MissingScope { key: String::new(), needs: Scope::Read },
        AuthError::NonceReused(String::new()),
        AuthError::NonceStoreFull(hongbao_auth::NonceError::Full(1)),
        AuthError::NonceStoreUnavailable(hongbao_auth::NonceError::Unavailable(String::new())),
    ];
    let codes: std::collections::HashSet<&str> = errors.iter().map(AuthError::code).collect();
    assert_eq!(codes.len(), errors.len());
}
