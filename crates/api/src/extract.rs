//! Extractors whose rejections are [`ApiError`]s, so a bad request gets the same JSON error
//! shape as everything else. Routes use these instead of axum's `Json` and `Query`.

use std::fmt;
use std::marker::PhantomData;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ApiError;

/// A JSON request body (or response). Rejections: malformed JSON → 400 `invalid_json`; missing
/// or wrong `Content-Type` → 415 `unsupported_media_type`; body over
/// [`BODY_LIMIT_BYTES`](crate::BODY_LIMIT_BYTES) → 413 `body_too_large`; valid JSON of the wrong
/// shape (unknown field with `deny_unknown_fields`, missing field, wrong type, anything but an
/// object) → 422 `invalid_body`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(JsonObject(value)) = Json::<JsonObject<T>>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// `T` read from a JSON object only. serde's derived structs also accept a list of their field
/// values in order (`["c1…","gift",1,2]`), which no client sends and no field name checks; a
/// request body is an object with named fields.
struct JsonObject<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(JsonObject)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
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
