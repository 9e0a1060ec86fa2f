//! Extractors whose rejections are [`ApiError`]s, so a bad request gets the same JSON error
//! shape as everything else. Routes use these instead of axum's `Json` and `Query`.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body (or response). Rejections: malformed JSON → 400 `invalid_json`; missing
/// or wrong `Content-Type` → 415 `unsupported_media_type`; body over
/// [`BODY_LIMIT_BYTES`](crate::BODY_LIMIT_BYTES) → 413 `body_too_large`; valid JSON of the wrong
/// shape (unknown field with `deny_unknown_fields`, missing field, wrong type) → 422
/// `invalid_body`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// Query-string parameters. Rejection: 400 `invalid_query`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// Path parameters. Rejection: 400 `invalid_path` (a segment whose percent-encoding does not
/// decode to UTF-8, or that does not parse as `T`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// The request's `Idempotency-Key` header, if any: the one header the claim reads, taken without
/// copying the whole header map as the `HeaderMap` extractor does on every request.
#[derive(Debug)]
pub struct IdempotencyKeyHeader(pub Option<axum::http::HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyKeyHeader(parts.headers.get("idempotency-key").cloned()))
    }
}
