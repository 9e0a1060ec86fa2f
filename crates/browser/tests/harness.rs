//! The harness against the real chromedriver and Chromium: a page served from a data URL is
//! found, its text waited for, screenshotted, and checked by axe-core (which finds the missing
//! label it was built with).

use hongbao_browser::{Options, start_or_skip};

const PAGE: &str = "data:text/html,<!doctype html><html lang=en><title>t</title><main>\
<h1>Hello</h1><p id=late></p><input id=unlabelled></main>\
<script>setTimeout(()=>{document.getElementById('late').textContent='arrived'},100)</script>";

#[tokio::test]
async fn drives_a_page_screenshots_it_and_runs_axe() {
    let Some(browser) = start_or_skip(Options::PHONE).await else {
        return;
    };
    browser.goto(PAGE).await.expect("page opens");
    browser.wait_for("h1").await.expect("heading");
    let text = browser.wait_for_text("#late", "arrived").await.expect("late text");
    assert_eq!(text, "arrived");
    let width = browser.client().execute("return window.innerWidth;", vec![]).await.expect("width");
    assert_eq!(width, serde_json::json!(360));

    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("shot.png");
    browser.screenshot(&png).await.expect("screenshot");
    let bytes = std::fs::read(&png).expect("png written");
    assert_eq!(&bytes[1..4], b"PNG");

    let violations = browser.axe().await.expect("axe runs");
    assert!(
        violations.iter().any(|v| v.id == "label" && v.is_serious()),
        "axe should report the unlabelled input: {violations:?}"
    );
    browser.close().await.expect("session closes");
}
