//! Monitoring end to end on the real binary: a scripted journey (a beacon, a grab, a list, a
//! claim and its delivery) moves every counter by exactly what it should, read through
//! `/metrics` and through the query model; bad query parameters and bad beacons get typed errors;
//! the dashboard and its assets are served by the binary.

mod support;

use std::io::BufRead;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Running;

/// The demo without load, its API's URL and the walkthrough's shell lines.
fn start_demo(data: &std::path::Path) -> (Running, String, Vec<String>) {
    let mut demo = Running::spawn(&[
        "demo",
        "--addr",
        "127.0.0.1:0",
        "--users",
        "2000",
        "--no-load",
        "--data",
        data.to_str().expect("utf-8 path"),
    ]);
    let api = demo.wait_for_url("api ");
    let mut line = String::new();
    loop {
        line.clear();
        assert!(demo.stdout.read_line(&mut line).expect("read stdout") > 0, "no walkthrough");
        if line.starts_with("Paste these lines into bash") {
            break;
        }
    }
    let mut lines = Vec::new();
    loop {
        line.clear();
        assert!(demo.stdout.read_line(&mut line).expect("read stdout") > 0, "no end");
        if line.trim().is_empty() {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    (demo, api, lines)
}

/// The value of one sample line of the Prometheus text (0 when absent: not yet registered).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(client: &reqwest::Client, api: &str) -> String {
    let response = client.get(format!("{api}/metrics")).send().await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Polls `check` until it holds; the limit only bounds a failing run (nothing is timed).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_scripted_journey_moves_each_counter_by_exactly_its_steps() {
    let data = tempfile::tempdir().expect("tempdir");
    let (demo, api, lines) = start_demo(data.path());
    let client = reqwest::Client::new();
    let journey = [
        ("hongbao_grabs_total", ("outcome", "granted")),
        ("hongbao_list_views_total", ("outcome", "full")),
        ("hongbao_claims_total", ("outcome", "accepted")),
        ("hongbao_client_events_total", ("event", "page_opened")),
    ];
    let before = metrics(&client, &api).await;
    // Registered at start (each game's worker), and described from the catalog.
    assert!(before.contains("# HELP hongbao_deliveries_total"), "{before}");
    let delivered_before = sample(&before, "hongbao_deliveries_total", &[("outcome", "delivered")]);

    // The user opens the page: a beacon.
    let beacon = client
        .post(format!("{api}/v1/events"))
        .json(&json!({"events": [{"event": "page_opened"}]}))
        .send()
        .await
        .expect("POST /v1/events");
    assert_eq!(beacon.status(), 202);
    // Then grabs, lists, claims as the walkthrough's lines do.
    let script = format!("set -euo pipefail\n{}\n", lines.join("\n"));
    let out = Command::new("bash").arg("-c").arg(&script).output().expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{script}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let ticket = lines.iter().find_map(|l| l.strip_prefix("export T=")).expect("a ticket line");
    let claim_line = stdout.lines().find(|l| l.contains("\"deliver_by\"")).expect("a claim");
    let claim: Value = serde_json::from_str(claim_line).expect("the claim's answer");
    let order_url = format!("{api}/v1/orders/{}", claim["order_id"].as_str().expect("order id"));
    eventually("the order is delivered", || async {
        let response = client.get(&order_url).bearer_auth(ticket).send().await.expect("order");
        let order: Value = response.json().await.expect("order body");
        order["status"] == "delivered"
    })
    .await;

    // /metrics: each step once.
    let after = metrics(&client, &api).await;
    for (name, label) in journey {
        let moved = sample(&after, name, &[label]) - sample(&before, name, &[label]);
        assert_eq!(moved, 1.0, "{name}{{{}={}}}", label.0, label.1);
    }
    let delivered = sample(&after, "hongbao_deliveries_total", &[("outcome", "delivered")]);
    assert_eq!(delivered - delivered_before, 1.0, "one delivery");
    let claims_202 = sample(
        &after,
        "hongbao_http_requests_total",
        &[("route", "/v1/claims"), ("status", "202")],
    );
    assert_eq!(claims_202, 1.0);

    // The query model: the funnel counts the same journey once at every step, once the sampler
    // has read the second of the delivery.
    let funnel_url = format!("{api}/monitor/v1/query?metric=funnel&window=15m");
    eventually("the sampler reads the delivery", || async {
        let (_, funnel) = get_json(&client, &funnel_url).await;
        funnel["steps"][4]["count"] == json!(1.0)
    })
    .await;
    let (status, funnel) = get_json(&client, &funnel_url).await;
    assert_eq!(status, 200);
    let counts: Vec<f64> = funnel["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["count"].as_f64().unwrap_or(-1.0))
        .collect();
    assert_eq!(counts, vec![1.0; 5], "{funnel}");
    let url = format!(
        "{api}/monitor/v1/query?metric=hongbao_claims_total&labels=outcome:accepted&window=5m&step=10s"
    );
    let (_, claims) = get_json(&client, &url).await;
    assert_eq!(claims["series"][0]["total"], json!(1.0), "{claims}");
    assert_eq!(claims["step_s"], json!(10));
    assert_eq!(claims["series"][0]["points"].as_array().map(Vec::len), Some(30));
    assert!(demo.terminate().success());
}

#[tokio::test]
async fn bad_queries_and_beacons_get_typed_errors_and_the_dashboard_is_served() {
    let data = tempfile::tempdir().expect("tempdir");
    let (demo, api, _) = start_demo(data.path());
    let client = reqwest::Client::new();
    let bad_queries = [
        ("", "missing_metric"),
        ("metric=hongbao_nope_total", "unknown_metric"),
        ("metric=hongbao_claims_total&labels=user:7", "unknown_label"),
        ("metric=hongbao_claims_total&labels=outcome", "bad_labels"),
        ("metric=hongbao_claims_total&by=user", "unknown_label"),
        ("metric=hongbao_claims_total&window=9d", "bad_window"),
        ("metric=hongbao_claims_total&window=5m&step=1h", "bad_step"),
        ("metric=hongbao_claims_total&window=2h&step=1s", "too_many_points"),
        ("metric=hongbao_claims_total&window=1d&step=30s", "bad_step"),
        ("metric=hongbao_claims_total&colour=red", "unknown_parameter"),
        ("metric=hongbao_claims_total&metric=hongbao_grabs_total", "duplicate_parameter"),
    ];
    for (query, code) in bad_queries {
        let (status, body) = get_json(&client, &format!("{api}/monitor/v1/query?{query}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{query}: {body}");
    }
    let too_many: Vec<Value> = (0..33).map(|_| json!({"event": "page_opened"})).collect();
    let bad_beacons = [
        (json!({"events": []}).to_string(), 400, "no_events"),
        (json!({"events": too_many}).to_string(), 400, "too_many_events"),
        (json!({"events": [{"event": "bought_a_car"}]}).to_string(), 400, "unknown_event"),
        (json!({"events": [{"event": "page_opened", "user": 7}]}).to_string(), 400, "invalid_json"),
        ("{".to_string(), 400, "invalid_json"),
        ("x".repeat(5000), 413, "body_too_large"),
    ];
    for (body, status, code) in bad_beacons {
        let response =
            client.post(format!("{api}/v1/events")).body(body.clone()).send().await.expect("POST");
        let got = response.status().as_u16();
        let answer: Value = response.json().await.expect("JSON error");
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{body:.80}");
    }
    // Refused batches count nothing.
    let text = metrics(&client, &api).await;
    assert_eq!(sample(&text, "hongbao_client_events_total", &[]), 0.0);

    let page = client.get(format!("{api}/dashboard")).send().await.expect("dashboard");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    for asset in ["uPlot.iife.min.js", "uPlot.min.css", "dashboard.js", "dashboard.css"] {
        assert!(html.contains(&format!("/dashboard/assets/{asset}")), "{asset}");
        let response =
            client.get(format!("{api}/dashboard/assets/{asset}")).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
    }
    let (status, config) = get_json(&client, &format!("{api}/dashboard/config.json")).await;
    assert_eq!(status, 200);
    assert!(config["refresh_ms"].as_u64().is_some_and(|ms| ms <= 2000));
    assert!(demo.terminate().success());
}
