//! Operator endpoints under `/admin/v1/` on the admin address. Every request is signed by an
//! operator key (`hongbao-auth`, docs/SECURITY.md) and verified before any handler runs; the
//! listener itself admits only allowed addresses, over mTLS if configured (`admin_listener.rs`).
//! Delivery: status per game, pause and resume. Reconciliation: `POST /admin/v1/reconcile` (see
//! `reconcile.rs`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hongbao_api::{ApiError, ApiJson};
use hongbao_auth::{AuthError, KeyRing, NonceStore, RequestParts, Scope, SignedHeaders};
use hongbao_delivery::{Dispatcher, DispatcherStatus};
use hongbao_domain::Campaign;
use hongbao_reconcile::Summary;
use hongbao_store::EmbeddedStore;
use serde::Serialize;

#[derive(Clone)]
pub struct AdminState {
    pub dispatcher: Option<Arc<Dispatcher>>,
    /// The embedded store, on an embedded node; `None` on a distributed one (its figures are
    /// the embedded store's).
    pub store: Option<Arc<EmbeddedStore>>,
    /// Reconciliation's ports over the fleet's Redis and stream, on a distributed node.
    pub fleet: Option<Arc<hongbao_distributed::DistributedLedger>>,
    pub campaign: Arc<Campaign>,
    /// The node's clock: reconciliation passes run at its time.
    pub clock: hongbao_clock::SharedClock,
    /// Canonical; reconciliation reads game logs and writes reports only under it: an admin
    /// request must not make the node read or overwrite any file it can reach.
    pub reconcile_dir: std::path::PathBuf,
    pub auth: AdminAuth,
}

/// How the admin endpoints check who asks.
#[derive(Clone, Debug)]
pub struct AdminAuth {
    /// The active operator keys; `None` only when `serve --admin-unsigned` said so.
    pub keys: Option<Arc<KeyRing>>,
    pub nonces: Arc<dyn NonceStore>,
}

impl AdminAuth {
    pub fn signed(keys: KeyRing) -> AdminAuth {
        AdminAuth {
            keys: Some(Arc::new(keys)),
            nonces: Arc::new(hongbao_auth::InProcessNonceStore::default()),
        }
    }

    /// No signature checked: for tests and `--admin-unsigned` only.
    pub fn unsigned() -> AdminAuth {
        AdminAuth { keys: None, nonces: Arc::new(hongbao_auth::InProcessNonceStore::default()) }
    }
}

impl Default for AdminAuth {
    /// No keys at all: every request is refused (`unknown_key`) until keys are given.
    fn default() -> AdminAuth {
        AdminAuth::signed(KeyRing::default())
    }
}

/// Largest admin request body, in bytes: the signature covers the whole body, so it is read
/// before the handler; reconciliation requests are well under 1 KiB.
pub const ADMIN_BODY_MAX_BYTES: usize = 16 * 1024;

/// The operator API's part of the contract: these operations, the signed scheme, the refusals
/// of the admin listener. Merged into the API listener's `/openapi.json`; served here on no
/// route (the admin listener answers only signed requests).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(store_stats, delivery_status, pause, resume, reconcile),
    tags((name = "operator", description = "On the admin listener (`--admin-addr`), not the API's: \
        every request signed with an operator key (docs/SECURITY.md). The signature is \
        HMAC-SHA256, lowercase hex, over eight lines joined by `\\n`: `HONGBAO-HMAC-SHA256`, the \
        key id, the method, the path, the query (pairs sorted), the timestamp, the nonce, and the \
        body's SHA-256 in lowercase hex."))
)]
struct OperatorApi;

/// The operator API's document, with its security schemes and the admin listener's refusals.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
    let mut doc = OperatorApi::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    for (scheme, header, what) in OPERATOR_HEADERS {
        components.add_security_scheme(
            scheme,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(header, what))),
        );
    }
    hongbao_api::openapi::add_shared_refusals(&mut doc, hongbao_api::openapi::Listener::Admin);
    doc
}

/// The four headers of a signed request, each a security scheme that every operation requires
/// together with the other three: (scheme, header, what it holds).
const OPERATOR_HEADERS: [(&str, &str, &str); 4] = [
    ("operator_key", hongbao_auth::HEADER_KEY, "the operator key's id"),
    (
        "operator_timestamp",
        hongbao_auth::HEADER_TIMESTAMP,
        "unix seconds at signing, within 300 s of the node's clock",
    ),
    (
        "operator_nonce",
        hongbao_auth::HEADER_NONCE,
        "16 to 64 characters of `[A-Za-z0-9_-]`, never reused with the key",
    ),
    (
        "operator_signature",
        hongbao_auth::HEADER_SIGNATURE,
        "lowercase hex HMAC-SHA256 of the canonical request",
    ),
];

pub fn router(state: AdminState) -> Router {
    let routes = Router::new()
        .route("/admin/v1/store", get(store_stats))
        .route("/admin/v1/delivery", get(delivery_status))
        .route("/admin/v1/delivery/{game}/pause", post(pause))
        .route("/admin/v1/delivery/{game}/resume", post(resume))
        .route("/admin/v1/reconcile", post(reconcile))
        .route_layer(from_fn_with_state(state.clone(), verify_signature));
    hongbao_api::with_common_layers(routes).with_state(state)
}

/// The scope each endpoint needs, by its route: figures are `read`, pausing and resuming a game
/// `operate`, reconciliation (which may requeue orders) `admin`. A route not listed here needs
/// `admin`, so a new endpoint is closed until someone decides otherwise.
pub fn required_scope(method: &Method, route: &str) -> Scope {
    match (method, route) {
        (&Method::GET, "/admin/v1/store" | "/admin/v1/delivery") => Scope::Read,
        (&Method::POST, "/admin/v1/delivery/{game}/pause" | "/admin/v1/delivery/{game}/resume") => {
            Scope::Operate
        }
        _ => Scope::Admin,
    }
}

/// Verifies the request's signature before any handler runs; a refusal is a typed JSON error
/// and the handler never sees the request.
async fn verify_signature(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(keys) = state.auth.keys.clone() else { return next.run(request).await };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, ADMIN_BODY_MAX_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("an admin request body is at most {ADMIN_BODY_MAX_BYTES} bytes"),
            )
            .into_response();
        }
    };
    let headers = signed_headers(&parts.headers);
    let request = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        body: &body,
        headers,
    };
    // The route as registered, not the path as sent: no spelling of a path changes its scope.
    let route = parts.extensions.get::<MatchedPath>().map_or("", MatchedPath::as_str);
    let needs = required_scope(&parts.method, route);
    let verified =
        hongbao_auth::verify(&keys, &request, needs, &*state.clock, &*state.auth.nonces).await;
    match verified {
        Ok(verified) => {
            tracing::info!(key = %verified.key_id, method = %parts.method, path = %parts.uri.path(), "admin request");
            next.run(Request::from_parts(parts, axum::body::Body::from(body))).await
        }
        Err(error) => {
            tracing::warn!(code = error.code(), path = %parts.uri.path(), "admin request refused");
            refusal(error).into_response()
        }
    }
}

/// The four signature headers; a value that is not visible ASCII counts as present but
/// malformed (empty), never as missing.
fn signed_headers(headers: &HeaderMap) -> SignedHeaders<'_> {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or(""));
    SignedHeaders {
        key: get(hongbao_auth::HEADER_KEY),
        timestamp: get(hongbao_auth::HEADER_TIMESTAMP),
        nonce: get(hongbao_auth::HEADER_NONCE),
        signature: get(hongbao_auth::HEADER_SIGNATURE),
    }
}

/// Authentication refusals as HTTP, in one place: 400 for a malformed header, 403 for a key
/// without the scope, 503 (retry later) for a full nonce store, 401 for the rest.
fn refusal(error: AuthError) -> ApiError {
    let status = match &error {
        AuthError::Malformed { .. } => StatusCode::BAD_REQUEST,
        AuthError::MissingScope { .. } => StatusCode::FORBIDDEN,
        AuthError::NonceStoreFull(_) | AuthError::NonceStoreUnavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        AuthError::MissingHeaders(_)
        | AuthError::UnknownKey(_)
        | AuthError::StaleTimestamp(_)
        | AuthError::FutureTimestamp(_)
        | AuthError::BadSignature
        | AuthError::NonceReused(_) => StatusCode::UNAUTHORIZED,
    };
    let mut api = ApiError::new(status, error.code(), error.to_string());
    if matches!(error, AuthError::NonceStoreFull(_)) {
        api.retry_after_s = Some(NONCE_FULL_RETRY_AFTER_S);
    }
    api
}

/// `Retry-After` of a full nonce store: about when the oldest nonces start expiring.
const NONCE_FULL_RETRY_AFTER_S: u64 = 60;

/// The embedded store's writer: commands, batches, fsyncs (group commit at work), and how long
/// its synced commits took: `synced_commits_by_ms[i]` took at most `synced_commit_bounds_ms[i]`
/// ms, the last entry longer than the last bound.
#[derive(Serialize, utoipa::ToSchema)]
struct StoreStats {
    commands: u64,
    batches: u64,
    fsyncs: u64,
    commit_failures: u64,
    batch_len_max: u64,
    synced_commit_bounds_ms: [u64; hongbao_store::SYNCED_COMMIT_BOUNDS_MS.len()],
    synced_commits_by_ms: [u64; hongbao_store::SYNCED_COMMIT_BUCKETS],
    synced_commit_max_us: u64,
}

/// The embedded store's writer figures. Scope `read`.
#[utoipa::path(
    get,
    path = "/admin/v1/store",
    tag = "operator",
    security(("operator_key" = [], "operator_timestamp" = [], "operator_nonce" = [], "operator_signature" = [])),
    responses(
        (status = 200, description = "the figures", body = StoreStats),
        (status = 409, description = "`not_on_this_backend`: a distributed node", body = hongbao_api::error::ErrorBody),
    )
)]
async fn store_stats(State(state): State<AdminState>) -> Result<ApiJson<StoreStats>, ApiError> {
    let s = embedded_store(&state)?.stats();
    Ok(ApiJson(StoreStats {
        commands: s.commands,
        batches: s.batches,
        fsyncs: s.fsyncs,
        commit_failures: s.commit_failures,
        batch_len_max: s.batch_len_max,
        synced_commit_bounds_ms: hongbao_store::SYNCED_COMMIT_BOUNDS_MS,
        synced_commits_by_ms: s.synced_commits_by_ms,
        synced_commit_max_us: s.synced_commit_max_us,
    }))
}

fn embedded_store(state: &AdminState) -> Result<&Arc<EmbeddedStore>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_on_this_backend",
            "this node runs on the distributed backend (Redis and JetStream); this endpoint is \
             the embedded store's",
        )
    })
}

fn dispatcher(state: &AdminState) -> Result<&Arc<Dispatcher>, ApiError> {
    state.dispatcher.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_delivery_here",
            "this node runs no delivery workers (--role api)",
        )
    })
}

/// Every game's delivery status. Scope `read`.
#[utoipa::path(
    get,
    path = "/admin/v1/delivery",
    tag = "operator",
    security(("operator_key" = [], "operator_timestamp" = [], "operator_nonce" = [], "operator_signature" = [])),
    responses(
        (status = 200, description = "the status", body = DispatcherStatus),
        (status = 409, description = "`no_delivery_here`: a node without workers", body = hongbao_api::error::ErrorBody),
    )
)]
async fn delivery_status(
    State(state): State<AdminState>,
) -> Result<ApiJson<DispatcherStatus>, ApiError> {
    Ok(ApiJson(dispatcher(&state)?.status().await))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Paused {
    game: String,
    paused: bool,
}

/// Pause a game's deliveries (the fleet's, on a distributed node). Scope `operate`.
#[utoipa::path(
    post,
    path = "/admin/v1/delivery/{game}/pause",
    tag = "operator",
    security(("operator_key" = [], "operator_timestamp" = [], "operator_nonce" = [], "operator_signature" = [])),
    params(("game" = String, Path, description = "a game id of the campaign")),
    responses(
        (status = 200, description = "the game and whether it is paused now", body = Paused),
        (status = 404, description = "`unknown_game`", body = hongbao_api::error::ErrorBody),
        (status = 409, description = "`no_delivery_here`: a node without workers", body = hongbao_api::error::ErrorBody),
        (status = 500, description = "`internal`: the dispatcher failed", body = hongbao_api::error::ErrorBody),
        (status = 503, description = "`shared_store_unavailable`: the pause could not be shared with the other workers", body = hongbao_api::error::ErrorBody),
    )
)]
async fn pause(
    State(state): State<AdminState>,
    Path(game): Path<String>,
) -> Result<ApiJson<Paused>, ApiError> {
    set_paused(&state, game, true).await
}

/// Resume a game's deliveries. Scope `operate`.
#[utoipa::path(
    post,
    path = "/admin/v1/delivery/{game}/resume",
    tag = "operator",
    security(("operator_key" = [], "operator_timestamp" = [], "operator_nonce" = [], "operator_signature" = [])),
    params(("game" = String, Path, description = "a game id of the campaign")),
    responses(
        (status = 200, description = "the game and whether it is paused now", body = Paused),
        (status = 404, description = "`unknown_game`", body = hongbao_api::error::ErrorBody),
        (status = 409, description = "`no_delivery_here`: a node without workers", body = hongbao_api::error::ErrorBody),
        (status = 500, description = "`internal`: the dispatcher failed", body = hongbao_api::error::ErrorBody),
        (status = 503, description = "`shared_store_unavailable`: the pause could not be shared with the other workers", body = hongbao_api::error::ErrorBody),
    )
)]
async fn resume(
    State(state): State<AdminState>,
    Path(game): Path<String>,
) -> Result<ApiJson<Paused>, ApiError> {
    set_paused(&state, game, false).await
}

/// On a distributed node the pause is the fleet's: every worker takes it on within a second.
async fn set_paused(
    state: &AdminState,
    game: String,
    paused: bool,
) -> Result<ApiJson<Paused>, ApiError> {
    let d = dispatcher(state)?;
    let index = d.game_index(&game).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_game", format!("no game `{game}`"))
    })?;
    d.set_paused(index, paused).await.map_err(|e| match e {
        hongbao_delivery::DispatchError::Shared(reason) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shared_store_unavailable",
            format!("the pause could not be shared with the other workers: {reason}"),
        ),
        other => ApiError::internal(other.to_string()),
    })?;
    Ok(ApiJson(Paused { game, paused }))
}

/// A reconciliation pass over the embedded store (a dry run unless `apply`): game logs read and
/// reports written only under the node's `--reconcile-dir`. Scope `admin`.
#[utoipa::path(
    post,
    path = "/admin/v1/reconcile",
    tag = "operator",
    request_body = hongbao_reconcile::ReconcileRequest,
    security(("operator_key" = [], "operator_timestamp" = [], "operator_nonce" = [], "operator_signature" = [])),
    responses(
        (status = 200, description = "the pass's summary", body = Summary),
        (status = 400, description = "`invalid_reconcile_request`: options that do not fit, or a game log that cannot be read", body = hongbao_api::error::ErrorBody),
        (status = 403, description = "`path_outside_reconcile_dir`", body = hongbao_api::error::ErrorBody),
        (status = 409, description = "`not_on_this_backend`, `reconcile_running`, or the guard of `apply` that refused (`game_log_does_not_cover`, `requeue_share_exceeded`)", body = hongbao_api::error::ErrorBody),
        (status = 500, description = "`internal`: the pass failed", body = hongbao_api::error::ErrorBody),
        (status = 503, description = "`store_unavailable`", body = hongbao_api::error::ErrorBody),
    )
)]
async fn reconcile(
    State(state): State<AdminState>,
    ApiJson(req): ApiJson<hongbao_reconcile::ReconcileRequest>,
) -> Result<ApiJson<Summary>, ApiError> {
    let ledger = match (&state.store, &state.fleet) {
        (Some(store), _) => crate::reconcile::NodeLedger::Embedded(store.clone()),
        (None, Some(fleet)) => crate::reconcile::NodeLedger::Fleet(fleet.clone()),
        // Every node has one or the other; a state built without either is a bug.
        (None, None) => return Err(ApiError::internal("this node has no ledger to reconcile")),
    };
    crate::reconcile::admin(&ledger, &state.campaign, &state.reconcile_dir, req, &*state.clock)
        .await
        .map(ApiJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator API's document and its router cannot drift: the same operations both ways.
    #[tokio::test]
    async fn every_admin_route_is_documented_and_every_documented_one_is_routed() {
        use hongbao_api::openapi::drift::{documented_operations, routed_operations};
        let campaign = Campaign::parse(crate::demo::EXAMPLE_CAMPAIGN, "example.toml", &|_| None)
            .expect("the example campaign");
        let router = router(AdminState {
            dispatcher: None,
            store: None,
            fleet: None,
            campaign: Arc::new(campaign),
            clock: hongbao_clock::SystemClock::shared(),
            reconcile_dir: std::env::temp_dir(),
            auth: AdminAuth::unsigned(),
        });
        let doc = serde_json::to_value(openapi()).expect("the document serializes");
        assert_eq!(routed_operations(&router).await, documented_operations(&doc));
        let schemes = &doc["components"]["securitySchemes"];
        for (scheme, header, _) in OPERATOR_HEADERS {
            assert_eq!(schemes[scheme]["in"], "header", "{scheme}");
            assert_eq!(schemes[scheme]["name"], header, "{scheme}");
        }
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                let security = &operation["security"][0];
                assert_eq!(security.as_object().map(|s| s.len()), Some(4), "{method} {path}");
                for status in ["400", "401", "403", "408", "413", "503"] {
                    assert!(
                        operation["responses"].get(status).is_some(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    #[test]
    fn each_route_needs_its_scope_and_unknown_ones_need_admin() {
        let cases = [
            (Method::GET, "/admin/v1/store", Scope::Read),
            (Method::GET, "/admin/v1/delivery", Scope::Read),
            (Method::POST, "/admin/v1/delivery/{game}/pause", Scope::Operate),
            (Method::POST, "/admin/v1/delivery/{game}/resume", Scope::Operate),
            (Method::POST, "/admin/v1/reconcile", Scope::Admin),
            (Method::POST, "/admin/v1/delivery", Scope::Admin),
            (Method::GET, "/admin/v1/something-new", Scope::Admin),
        ];
        for (method, route, scope) in cases {
            assert_eq!(required_scope(&method, route), scope, "{method} {route}");
        }
    }
}
