//! The contract cannot drift from the code: every route the API listener's router registers is a
//! documented operation of `/openapi.json` and every documented operation is a route, with and
//! without the demo's routes and the monitor's; and the document is OpenAPI 3.1 JSON that parses
//! back, whose every `$ref` resolves.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hongbao_api::openapi::drift::{documented_operations, routed_operations};
use hongbao_api::{ApiState, Extra, RouterOptions, router_with_extra};
use hongbao_clock::SystemClock;
use hongbao_domain::Campaign;
use hongbao_gateway::{MemoryRoleSource, RoleCache, RoleCacheConfig};
use hongbao_monitor::{Monitor, MonitorConfig, MonitorRecorder, SeriesStore};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use utoipa::OpenApi;

const SPRING: &str = include_str!("../../../config/spring-festival.toml");

fn state() -> ApiState {
    let campaign = Campaign::parse(SPRING, "spring-festival.toml", &|_| None).expect("campaign");
    let roles = Arc::new(RoleCache::new(
        Arc::new(MemoryRoleSource::new()),
        None,
        RoleCacheConfig::default(),
    ));
    ApiState::new(Arc::new(campaign), roles, SystemClock::shared())
}

fn monitor_extra() -> Extra {
    let recorder = MonitorRecorder::new();
    let monitor = Monitor::new(
        &recorder,
        SystemClock::shared(),
        MonitorConfig::shipped(),
        Arc::new(SeriesStore::new()),
    );
    Extra {
        router: hongbao_monitor::http::routes(Arc::new(monitor)),
        openapi: Some(hongbao_monitor::http::MonitorApi::openapi()),
        elsewhere: None,
    }
}

fn routers() -> Vec<(&'static str, Router)> {
    let demo = RouterOptions { demo: true, ..RouterOptions::default() };
    vec![
        ("api", router_with_extra(state(), RouterOptions::default(), Extra::default())),
        ("api+monitor", router_with_extra(state(), RouterOptions::default(), monitor_extra())),
        ("demo+monitor", router_with_extra(state(), demo, monitor_extra())),
    ]
}

async fn get_json(router: &Router, uri: &str) -> Value {
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), 200, "{uri}");
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("JSON")
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_a_route() {
    for (name, router) in routers() {
        let doc = get_json(&router, "/openapi.json").await;
        let registered = routed_operations(&router).await;
        let documented = documented_operations(&doc);
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "{name}: routes missing from the document: {undocumented:?}"
        );
        assert!(unrouted.is_empty(), "{name}: documented but not routed: {unrouted:?}");
        assert!(registered.contains(&("GET".into(), "/openapi.json".into())), "{name}");
    }
}

#[tokio::test]
async fn the_demo_routes_are_documented_only_where_they_are_served() {
    let routers = routers();
    let demo_paths = |doc: &Value| {
        doc["paths"].as_object().expect("paths").keys().filter(|p| p.starts_with("/demo/")).count()
    };
    for (name, router) in &routers {
        let doc = get_json(router, "/openapi.json").await;
        let expected = if name.starts_with("demo") { 2 } else { 0 };
        assert_eq!(demo_paths(&doc), expected, "{name}");
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_that_parses_back_and_every_ref_resolves() {
    for (name, router) in routers() {
        let doc = get_json(&router, "/openapi.json").await;
        assert_eq!(doc["openapi"], "3.1.0", "{name}");
        assert_eq!(doc["info"]["title"], "hongbao", "{name}");
        // utoipa's own model of the document reads it back without loss.
        let parsed: utoipa::openapi::OpenApi =
            serde_json::from_value(doc.clone()).expect("an OpenAPI document");
        assert_eq!(serde_json::to_value(&parsed).expect("serializes"), doc, "{name}");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty(), "{name}: no $ref at all");
        for reference in refs {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            assert!(doc.pointer(pointer).is_some(), "{name}: {reference} does not resolve");
        }
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(s) if key == "$ref" => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_documents_its_shared_refusals_and_its_authentication() {
    let (_, router) = routers().pop().expect("a router");
    let doc = get_json(&router, "/openapi.json").await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["ticket"]["type"], "http");
    assert_eq!(schemes["ticket"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let responses = &operation["responses"];
            for status in ["400", "408", "414", "431", "429", "503"] {
                assert!(responses.get(status).is_some(), "{method} {path}: no {status}");
            }
            let retry_after = &responses["429"]["headers"]["Retry-After"];
            assert!(retry_after.is_object(), "{method} {path}: 429 without Retry-After");
            let secured = operation.get("security").is_some();
            assert_eq!(
                secured,
                responses.get("401").is_some(),
                "{method} {path}: 401 and security"
            );
        }
    }
    let claim = &doc["paths"]["/v1/claims"]["post"];
    let parameters = claim["parameters"].as_array().expect("parameters");
    assert!(
        parameters.iter().any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
        "the claim's Idempotency-Key header"
    );
    for status in ["400", "413", "415", "422"] {
        assert!(claim["responses"].get(status).is_some(), "claim: no {status}");
    }
}

#[tokio::test]
async fn the_served_document_names_the_campaigns_ids_and_links_a_coupon_to_its_gifts() {
    let (_, router) = routers().pop().expect("a router");
    let doc = get_json(&router, "/openapi.json").await;
    let campaign = Campaign::parse(SPRING, "spring-festival.toml", &|_| None).expect("campaign");
    let schemas = &doc["components"]["schemas"];
    let channels: Vec<&str> = campaign.channels.iter().map(|c| c.channel.as_str()).collect();
    assert_eq!(schemas["GrabBody"]["properties"]["channel"]["enum"], serde_json::json!(channels));
    let gifts = schemas["ClaimBody"]["properties"]["gift_id"]["enum"].as_array().expect("enum");
    assert_eq!(gifts.len(), campaign.gifts.len());
    let roles = &doc["paths"]["/demo/v1/roles"]["get"]["parameters"][0];
    assert_eq!(roles["schema"]["enum"][0], campaign.games[0].id.as_str());
    let link = &doc["paths"]["/v1/coupons"]["post"]["responses"]["201"]["links"]["gifts"];
    assert_eq!(link["operationId"], "list_gifts");
    assert_eq!(link["parameters"]["coupon"], "$response.body#/coupon");
    let operation_ids: Vec<&Value> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("item").values())
        .map(|operation| &operation["operationId"])
        .collect();
    assert!(operation_ids.iter().any(|id| **id == "list_gifts"));
    assert!(operation_ids.iter().any(|id| **id == "get_order"));
}
