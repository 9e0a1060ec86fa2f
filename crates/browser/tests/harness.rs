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

/// A test that panics drops its browser without `close`: the browser must still end with it.
#[tokio::test]
async fn dropping_the_browser_without_closing_ends_chromium() {
    let Some(browser) = start_or_skip(Options::PHONE).await else {
        return;
    };
    let profile = browser
        .client()
        .capabilities()
        .and_then(|c| c.get("chrome"))
        .and_then(|c| c.get("userDataDir"))
        .and_then(|d| d.as_str())
        .expect("chromedriver reports the profile directory")
        .to_owned();
    assert!(running_with(&profile), "Chromium runs with {profile}");
    drop(browser);
    // Processes may take a moment to be reaped; wait (bounded) rather than assert on speed.
    let deadline = std::time::Instant::now() + hongbao_browser::WAIT_MAX;
    while running_with(&profile) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!running_with(&profile), "Chromium outlived its Browser ({profile})");
}

/// Whether any process has `needle` on its command line.
fn running_with(needle: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.filter_map(Result::ok).any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
    })
}
