//! Support for the tests that keep a router and its document in step (here so that the API's
//! tests and the binary's, for the admin router, check the same way): the operations a router
//! answers with a handler, and the operations a document describes.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

/// Methods a route could be registered for (HEAD comes with GET in axum).
pub const METHODS: [Method; 6] =
    [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS];

/// A (method, path template) pair, e.g. `("GET", "/v1/orders/{order_id}")`.
pub type Operation = (String, String);

/// The paths registered on `router`. axum offers no listing; its `Debug` output names each
/// route's path (`RouteId(n): "/path"`) before the fallback router's, which are left out.
///
/// # Panics
/// When axum's `Debug` layout no longer shows the paths: the test must be updated, not pass.
pub fn registered_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let routes = debug.split_once("fallback_router").map_or(debug.as_str(), |(routes, _)| routes);
    let mut paths = BTreeSet::new();
    for piece in routes.split("RouteId(").skip(1) {
        let Some((_, rest)) = piece.split_once("): \"") else { continue };
        if let Some(path) = rest.split('"').next() {
            paths.insert(path.to_string());
        }
    }
    assert!(!paths.is_empty(), "no route found in axum's Debug output: its layout changed");
    paths
}

/// The operations `router` answers with a handler: each registered path asked with every one of
/// [`METHODS`], its parameters filled in. A method the path does not have meets axum's 405
/// fallback; no handler of ours answers 405 itself, so any other status is a handler's.
pub async fn routed_operations(router: &Router) -> BTreeSet<Operation> {
    let mut operations = BTreeSet::new();
    for path in registered_paths(router) {
        let uri = fill_parameters(&path);
        for method in METHODS {
            let Ok(request) =
                Request::builder().method(method.clone()).uri(&uri).body(Body::empty())
            else {
                continue;
            };
            let Ok(response) = router.clone().oneshot(request).await;
            if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                operations.insert((method.to_string(), path.clone()));
            }
        }
    }
    operations
}

fn fill_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.starts_with('{') { "x" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// The operations a document (as JSON) describes.
pub fn documented_operations(doc: &serde_json::Value) -> BTreeSet<Operation> {
    let mut operations = BTreeSet::new();
    let Some(paths) = doc.get("paths").and_then(serde_json::Value::as_object) else {
        return operations;
    };
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method.as_str().to_ascii_lowercase()).is_some() {
                operations.insert((method.to_string(), path.clone()));
            }
        }
    }
    operations
}
