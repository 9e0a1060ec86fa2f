//! The API's JSON request bodies, parsed as the handlers parse them: the grab and claim bodies
//! and the admin reconcile request through the `ApiJson` extractor (its refusals are the
//! API's typed errors), the events batch with `serde_json` as its handler does. Every input is
//! tried as all four. Checks: a refusal is 400 `invalid_json` or 422 `invalid_body`, never a
//! panic; an accepted body is a JSON object holding only the type's fields (strict: unknown
//! fields refused). The events batch may also be a list of field values by position (serde's
//! default for structs, docs/SECURITY.md "Fuzzing"): checked for unknown fields where it is an
//! object.
#![no_main]

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, StatusCode, header};
use futures_util::FutureExt;
use hongbao_api::ApiJson;
use hongbao_api::routes::claims::ClaimBody;
use hongbao_api::routes::coupons::GrabBody;
use hongbao_monitor::events::Batch;
use hongbao_reconcile::ReconcileRequest;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;

const GRAB: &[&str] = &["channel"];
const CLAIM: &[&str] = &["coupon", "gift_id", "zone_id", "role_id"];
const RECONCILE: &[&str] = &[
    "apply",
    "max_requeue_share",
    "force",
    "game_log",
    "game_log_until_ms",
    "out",
    "from_ms",
    "to_ms",
    "stuck_after_s",
    "include_dead",
    "include_expired",
];
const BATCH: &[&str] = &["events"];
const EVENT: &[&str] = &["event", "at_ms"];

/// Runs the API's extractor on `data` as a JSON request body.
fn extract<T: DeserializeOwned>(data: &[u8]) -> bool {
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(data.to_vec()))
        .expect("a valid request");
    let outcome = ApiJson::<T>::from_request(request, &()).now_or_never();
    match outcome.expect("an in-memory body is read at once") {
        Ok(_) => true,
        Err(e) => {
            let typed = matches!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "invalid_json")
                    | (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
            );
            assert!(typed, "{} {}: {}", e.status, e.code, e.message);
            false
        }
    }
}

/// An accepted body's object and its keys: only `allowed` ones, each once.
fn only_fields<'v>(value: &'v Value, allowed: &[&str]) -> &'v serde_json::Map<String, Value> {
    let object = value.as_object().expect("an accepted body is a JSON object");
    for key in object.keys() {
        assert!(allowed.contains(&key.as_str()), "unknown field `{key}` accepted");
    }
    object
}

fuzz_target!(|data: &[u8]| {
    let value = serde_json::from_slice::<Value>(data);
    let accepted = [
        (extract::<GrabBody>(data), GRAB),
        (extract::<ClaimBody>(data), CLAIM),
        (extract::<ReconcileRequest>(data), RECONCILE),
    ];
    for (ok, fields) in accepted {
        if ok {
            let value = value.as_ref().expect("an accepted body is JSON");
            only_fields(value, fields);
        }
    }
    if serde_json::from_slice::<Batch>(data).is_ok() {
        let value = value.as_ref().expect("an accepted body is JSON");
        if value.is_object() {
            let batch = only_fields(value, BATCH);
            let events = batch["events"].as_array().expect("events is a list");
            for event in events.iter().filter(|e| e.is_object()) {
                only_fields(event, EVENT);
            }
        }
    }
});
