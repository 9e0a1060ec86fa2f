//! The monitor's routes answer bad input with a typed JSON error, never a panic.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hongbao_clock::ManualClock;
use hongbao_monitor::{Monitor, MonitorConfig, MonitorRecorder, SeriesStore, catalog};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(uri: &str) -> (StatusCode, serde_json::Value) {
    let recorder = MonitorRecorder::new();
    let clock = ManualClock::new(1_800_000_000_000);
    let monitor =
        Monitor::new(&recorder, clock, MonitorConfig::shipped(), Arc::new(SeriesStore::new()));
    let router = hongbao_monitor::http::routes(Arc::new(monitor));
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("a JSON body"))
}

/// Found by schemathesis: a window or step whose last byte is inside a multi-byte character
/// panicked the handler (the connection dropped) instead of being refused.
#[tokio::test]
async fn a_window_or_step_of_any_characters_is_refused_as_json() {
    let requests =
        [("window", "bad_window", "funnel"), ("step", "bad_step", catalog::HTTP_REQUESTS)];
    for (param, code, metric) in requests {
        for value in ["%C2%80", "5%C2%80", "%E4%BA%94m", "%C3%A9"] {
            let (status, body) =
                get(&format!("/monitor/v1/query?metric={metric}&{param}={value}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{param}={value}");
            assert_eq!(body["error"]["code"], code, "{param}={value}");
        }
    }
}
