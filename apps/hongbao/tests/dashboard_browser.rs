//! The dashboard in a real browser (headless Chromium through `hongbao-browser`): opened during a
//! short journey load, it shows live data, and once the load has been delivered its funnel shows
//! exactly the counters the API reports on `/metrics`. Saves `docs/screenshots/dashboard.png`.
//! Skipped (with a message) where Chromium is missing, except under CI.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{BIN, Running, campaign_path};

fn sample(text: &str, name: &str, outcomes: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| outcomes.iter().any(|o| l.contains(&format!("=\"{o}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_data_and_the_funnel_equals_the_apis_counters() {
    let Some(browser) = hongbao_browser::start_or_skip(hongbao_browser::Options {
        width_px: 1400,
        height_px: 2200,
    })
    .await
    else {
        return;
    };
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_str().expect("utf-8").to_string();
    let mut demo = Running::spawn(&[
        "demo",
        "--addr",
        "127.0.0.1:0",
        "--users",
        "2000",
        "--no-load",
        "--data",
        &data_dir,
    ]);
    let sim = demo.wait_for_url("game side");
    let api = demo.wait_for_url("api ");
    browser.goto(&format!("{api}/dashboard")).await.expect("open the dashboard");
    browser.wait_for("#panel-funnel table.funnel").await.expect("the funnel is drawn");

    // A short journey load while the page is open.
    // The load reads role look-ups from the game side the campaign names: the demo's simulator.
    let text = std::fs::read_to_string(campaign_path()).expect("the campaign file");
    let campaign = data.path().join("campaign.toml");
    std::fs::write(&campaign, text.replace("http://127.0.0.1:9100", &sim)).expect("write");
    let load = Command::new(BIN)
        .args(["load", "--target", &api, "--config"])
        .arg(&campaign)
        .args(["--scenario", "journey", "--rate", "10", "--duration", "6s", "--users", "2000"])
        .output()
        .expect("run hongbao load");
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    browser.wait_for("#status[data-state='live']").await.expect("live updates");
    browser.wait_for("#panel-requests .uplot").await.expect("a chart of live requests");

    // Wait (bounded, nothing timed) until every accepted claim is delivered and the counters
    // hold still, then the funnel must show them.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        let text = client
            .get(format!("{api}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let accepted = sample(&text, "hongbao_claims_total", &["accepted"]);
        let delivered = sample(&text, "hongbao_deliveries_total", &["delivered", "duplicate"]);
        if accepted > 0.0 && accepted == delivered {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never caught up: {accepted} accepted, {delivered} delivered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let expected = [
        sample(&metrics, "hongbao_client_events_total", &["page_opened"]),
        sample(&metrics, "hongbao_grabs_total", &["granted"]),
        sample(&metrics, "hongbao_list_views_total", &["full", "degraded"]),
        sample(&metrics, "hongbao_claims_total", &["accepted"]),
        sample(&metrics, "hongbao_deliveries_total", &["delivered", "duplicate"]),
    ];
    for (step, count) in expected.iter().enumerate() {
        let css = format!("#panel-funnel tr[data-step='{step}'] td.count");
        browser
            .wait_for_text(&css, &format!("{count}"))
            .await
            .unwrap_or_else(|e| panic!("funnel step {step} never showed the API's {count}: {e}"));
    }
    let shot =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots/dashboard.png");
    std::fs::create_dir_all(shot.parent().expect("a parent")).expect("create docs/screenshots");
    browser.screenshot(&shot).await.expect("a screenshot");
    browser.close().await.expect("close the browser");
    assert!(demo.terminate().success());
}
