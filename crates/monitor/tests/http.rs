//! The monitor's routes answer bad input, and a series store that cannot answer, with a typed
//! JSON error, never a panic.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hongbao_clock::ManualClock;
use hongbao_monitor::kv::{KvError, RangeFuture, RangeRequest, Reading};
use hongbao_monitor::{Monitor, MonitorConfig, MonitorRecorder, SeriesKv, SeriesStore, catalog};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(uri: &str) -> (StatusCode, serde_json::Value) {
    get_over(Arc::new(SeriesStore::new()), uri).await
}

async fn get_over(series: Arc<dyn SeriesKv>, uri: &str) -> (StatusCode, serde_json::Value) {
    let recorder = MonitorRecorder::new();
    let clock = ManualClock::new(1_800_000_000_000);
    let monitor = Monitor::new(&recorder, clock, MonitorConfig::shipped(), series);
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

/// A shared store that cannot answer (its server is gone), or answers with what it never wrote.
#[derive(Debug)]
struct Failing(KvError);

impl SeriesKv for Failing {
    fn put(&self, _at_s: u64, _readings: &[Reading]) {}

    fn range<'a>(&'a self, _request: &'a RangeRequest) -> RangeFuture<'a> {
        Box::pin(std::future::ready(Err(self.0.clone())))
    }
}

#[tokio::test]
async fn a_store_that_cannot_answer_is_a_typed_error_not_an_empty_series() {
    let cases = [
        (
            KvError::Unavailable("redis: refused".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "series_unavailable",
        ),
        (
            KvError::Corrupt("redis: WRONGTYPE".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "series_corrupt",
        ),
    ];
    for (error, status, code) in cases {
        let failing: Arc<dyn SeriesKv> = Arc::new(Failing(error));
        for metric in [catalog::CLAIMS, "funnel"] {
            let uri = format!("/monitor/v1/query?metric={metric}");
            let (got, body) = get_over(failing.clone(), &uri).await;
            assert_eq!(got, status, "{metric}: {body}");
            assert_eq!(body["error"]["code"], code, "{metric}");
        }
    }
}
