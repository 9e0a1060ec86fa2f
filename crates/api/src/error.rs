//! The one place where failures become HTTP responses.
//!
//! Every handler and extractor returns [`ApiError`]; its body is always
//! `{"error":{"code":"snake_case","message":"…"}}` (DESIGN.md §4). Clients branch on `code`,
//! humans read `message`. The axum rejections (JSON, query, path) are mapped here too, so no
//! route ever answers with axum's plain-text defaults.

use std::fmt;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::claim_service::ClaimError;

/// An error answered to the client. `code` is a stable snake_case identifier (part of the API
/// contract); `message` is for humans and may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// A machine-readable refinement of `code` (e.g. `not_eligible` because `role_level_too_low`).
    pub reason: Option<&'static str>,
    /// When what was refused opens (unix seconds): a client can wait for it instead of
    /// retrying blindly.
    pub opens_at: Option<i64>,
    /// When the campaign ended (unix seconds): nothing to wait for.
    pub ended_at: Option<i64>,
    /// Seconds until a retry can succeed, sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        debug_assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "error codes are snake_case: {code:?}"
        );
        ApiError {
            status,
            code,
            message: message.into(),
            reason: None,
            opens_at: None,
            ended_at: None,
            retry_after_s: None,
        }
    }

    /// The same error with `Retry-After` counted from `now_unix_s` to its `opens_at`, at least
    /// one second (a zero would invite a retry that is refused again). Errors without an
    /// `opens_at` are returned unchanged. The conversions from domain errors cannot do this
    /// themselves: they do not know the node's clock.
    pub fn retry_from(mut self, now_unix_s: i64) -> ApiError {
        if let Some(opens_at) = self.opens_at {
            let wait_s = opens_at.saturating_sub(now_unix_s).max(1);
            self.retry_after_s = Some(u64::try_from(wait_s).unwrap_or(1));
        }
        self
    }

    /// The same error with a `reason` for clients to branch on.
    pub fn with_reason(mut self, reason: &'static str) -> ApiError {
        self.reason = Some(reason);
        self
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 503 `not_ready`: the node is up but not (yet, or no longer) taking traffic.
    pub fn not_ready(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
    }

    /// 500 `internal`. The message is sent to the client: keep internals out of it and log
    /// the details where the error happens.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

// Wire layout of an error. WARNING: clients parse this; changing it breaks them.
/// Every refusal: clients branch on `error.code`; `error.message` is for humans.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable snake_case identifier: clients branch on it.
    pub code: &'a str,
    /// For humans; may change.
    pub message: &'a str,
    /// A refinement of `code` (`not_eligible` because `role_level_too_low`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Unix seconds when what was refused opens (then `Retry-After` is sent too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<i64>,
    /// Unix seconds when the campaign ended: nothing to wait for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
}

/// The code of an error response, carried in its extensions so the metrics layer counts
/// refusals by code without parsing bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                reason: self.reason,
                opens_at: self.opens_at,
                ended_at: self.ended_at,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let message = rejection.body_text();
        match rejection {
            // Well-formed JSON of the wrong shape: unknown field, missing field, wrong type.
            JsonRejection::JsonDataError(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
            }
            JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("invalid_json", message),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body larger than {} bytes", crate::BODY_LIMIT_BYTES),
            ),
            // The body could not be read (client went away, broken chunking, …).
            other => ApiError::new(other.status(), "unreadable_body", message),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        match rejection {
            // A segment that is not valid percent-encoding of UTF-8, or not of the right type.
            PathRejection::FailedToDeserializePathParams(e) => {
                ApiError::bad_request("invalid_path", e.body_text())
            }
            other => {
                tracing::error!(error = %other, "a route reads path parameters it does not have");
                ApiError::internal("the route could not read its path")
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

/// The last word on every response: an error status whose body is not JSON (one of axum's or
/// tower's own refusals that no extractor of ours maps, e.g. a `Path` that does not decode) is
/// answered again as an [`ApiError`] with a code for its status. Headers the refusal set (such
/// as `Allow`) are kept.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let (code, message) = status_code_text(status);
    let error = ApiError::new(status, code, message).into_response();
    let (fresh, body) = error.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    if let Some(code) = fresh.extensions.get::<ErrorCode>() {
        parts.extensions.insert(*code);
    }
    for (name, value) in &fresh.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, body)
}

/// A code and message for a bare status, as the stack's own refusals carry nothing else.
pub(crate) fn status_code_text(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad_request", "the request could not be understood"),
        404 => ("not_found", "no such resource"),
        405 => ("method_not_allowed", "this method is not allowed on this resource"),
        408 => ("request_timeout", "the request took too long"),
        413 => ("body_too_large", "request body too large"),
        414 => ("uri_too_long", "request target too long"),
        415 => ("unsupported_media_type", "unsupported content type"),
        422 => ("invalid_request", "the request could not be processed"),
        429 => ("too_many_requests", "too many requests; slow down"),
        431 => ("headers_too_large", "request header fields too large"),
        503 => ("unavailable", "the service is unavailable; try again shortly"),
        _ if status.is_server_error() => ("internal", "the request failed"),
        _ => ("request_refused", "the request was refused"),
    }
}

/// Fallback for paths no route matches.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

/// Fallback for a known path with a method it does not accept. axum still adds the `Allow`
/// header naming the accepted methods.
pub(crate) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed on this resource"),
    )
}

impl From<hongbao_domain::Ineligible> for ApiError {
    /// The campaign's window and waves answer with their own codes and the time that matters:
    /// `opens_at` for one not open yet (add `Retry-After` with [`ApiError::retry_from`]),
    /// `ended_at` for one that is over. A sold-out gift is a conflict with the stock (409
    /// `out_of_stock`, as the store says it); any other rule is 403 `not_eligible` with the
    /// rule's code as `reason`.
    fn from(e: hongbao_domain::Ineligible) -> ApiError {
        use hongbao_domain::Ineligible as E;
        match e {
            E::CampaignNotOpen { starts_at_unix_s: opens_at }
            | E::WaveNotOpen { opens_at_unix_s: opens_at } => {
                let mut error = ApiError::new(StatusCode::FORBIDDEN, e.code(), e.to_string());
                error.opens_at = Some(opens_at);
                error
            }
            E::CampaignClosed { ended_at_unix_s } => {
                let mut error = ApiError::new(StatusCode::FORBIDDEN, e.code(), e.to_string());
                error.ended_at = Some(ended_at_unix_s);
                error
            }
            E::SoldOut => ClaimError::OutOfStock.into(),
            other => ApiError::new(StatusCode::FORBIDDEN, "not_eligible", other.to_string())
                .with_reason(other.code()),
        }
    }
}

impl From<ClaimError> for ApiError {
    fn from(e: ClaimError) -> ApiError {
        let message = e.to_string();
        match e {
            ClaimError::Coupon(e) => e.into(),
            ClaimError::Ineligible(e) => e.into(),
            ClaimError::Store(e) => e.into(),
            ClaimError::GiftNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "gift_not_found", message)
            }
            ClaimError::RoleNotFound { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "role_not_found", message)
            }
            ClaimError::GameSideUnavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "game_side_unavailable",
                "the game could not confirm your role; try again",
            ),
            ClaimError::CouponAlreadyRedeemed { .. } => {
                ApiError::new(StatusCode::CONFLICT, "coupon_already_redeemed", message)
            }
            ClaimError::OutOfStock => ApiError::new(StatusCode::CONFLICT, "out_of_stock", message),
            ClaimError::LimitReached { .. } => {
                ApiError::new(StatusCode::CONFLICT, "limit_reached", message)
            }
            // The user's own allowance: a conflict with what they already hold, like
            // `limit_reached`, renewing at the next UTC midnight.
            ClaimError::HighValueDailyLimit { resets_at_unix_s, retry_after_s, .. } => {
                let mut error =
                    ApiError::new(StatusCode::CONFLICT, "high_value_daily_limit", message);
                error.opens_at = Some(resets_at_unix_s);
                error.retry_after_s = Some(retry_after_s);
                error
            }
            // Everyone's hourly budget: too many requests for now, with when it frees up.
            ClaimError::HighValueBudgetExhausted { resets_at_unix_s, retry_after_s } => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "high_value_budget_exhausted",
                    message,
                );
                error.opens_at = Some(resets_at_unix_s);
                error.retry_after_s = Some(retry_after_s);
                error
            }
            ClaimError::IdempotencyKeyReused => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message)
            }
            ClaimError::InvalidIdempotencyKey => {
                ApiError::bad_request("invalid_idempotency_key", message)
            }
        }
    }
}

impl From<hongbao_domain::CouponError> for ApiError {
    /// A coupon that is not the caller's is reported as not found, like one that never existed,
    /// so coupons cannot be probed.
    fn from(e: hongbao_domain::CouponError) -> ApiError {
        use hongbao_domain::CouponError as E;
        match e {
            E::Malformed(_) => ApiError::bad_request(e.code(), e.to_string()),
            E::Forged => ApiError::new(StatusCode::FORBIDDEN, e.code(), e.to_string()),
            E::Expired { .. } => ApiError::new(StatusCode::GONE, e.code(), e.to_string()),
            E::WrongCampaign | E::NotOwner => {
                ApiError::new(StatusCode::NOT_FOUND, "coupon_not_found", "no such coupon")
            }
        }
    }
}

impl From<hongbao_store::StoreError> for ApiError {
    /// Store failures are ours, not the caller's: 503 so clients retry, details in the log.
    fn from(e: hongbao_store::StoreError) -> ApiError {
        use hongbao_store::StoreError as E;
        match e {
            // The request carried something the store refuses (a zone or role id out of bounds).
            E::InvalidRequest(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            }
            E::InvalidConfig(_) | E::Corrupt(_) => {
                tracing::error!(error = %e, "store misconfigured or corrupt");
                ApiError::internal("the store cannot serve this request")
            }
            E::Unavailable(_) => {
                tracing::error!(error = %e, "store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "try again shortly",
                )
            }
        }
    }
}
