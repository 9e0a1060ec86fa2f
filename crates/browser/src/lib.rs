//! A harness for tests that drive a real browser: it starts `chromedriver` on a free loopback
//! port (a child process killed on drop), opens a headless Chromium session through WebDriver
//! (`fantoccini`), and offers the few helpers such tests need: bounded waits for a selector or a
//! text, screenshots, and an axe-core accessibility check.
//!
//! Deadlines here bound *waiting* (a page that never shows a thing fails instead of hanging);
//! nothing asserts on how fast anything is — the machines are shared and noisy.
//!
//! Used only as a dev-dependency. Where chromedriver or Chromium is missing, [`start`] answers
//! [`Start::Skip`] (tests print it and return), except under CI (`CI` set), where it is an error:
//! CI must run the browser tests (`.ci/run` installs `chromium` and `chromium-driver`).

mod axe;
mod driver;

use std::path::Path;
use std::time::Duration;

pub use axe::Violation;
pub use fantoccini::{Client, Locator, elements::Element};

use driver::Driver;

/// Where Debian's `chromium-driver` puts the driver.
pub const CHROMEDRIVER_PATH: &str = "/usr/bin/chromedriver";
/// Where Debian's `chromium` puts the browser.
pub const CHROMIUM_PATH: &str = "/usr/bin/chromium";
/// How long a wait for something on the page may last before it fails: generous, because six
/// builds may share the machine's two cores while a test runs.
pub const WAIT_MAX: Duration = Duration::from_secs(30);
/// How often a wait looks again.
const WAIT_PERIOD: Duration = Duration::from_millis(50);

/// What went wrong starting or driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the browser is not available and CI is set (CI must run browser tests): {0}")]
    MissingUnderCi(String),
    #[error("could not start chromedriver: {0}")]
    Driver(String),
    #[error("could not open a browser session: {0}")]
    Session(#[from] fantoccini::error::NewSessionError),
    #[error("WebDriver command failed: {0}")]
    Command(#[from] fantoccini::error::CmdError),
    #[error("waited {waited_ms} ms for {what}; last seen: {last_seen:?}")]
    Timeout { what: String, waited_ms: u128, last_seen: String },
    #[error("could not write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("axe-core answered something unexpected: {0}")]
    Axe(String),
}

/// The window a session opens with.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub width_px: u32,
    pub height_px: u32,
}

impl Options {
    /// A small phone held upright: the narrowest width the project's pages promise to work at.
    pub const PHONE: Options = Options { width_px: 360, height_px: 780 };
}

/// What [`start`] found.
pub enum Start {
    Ready(Browser),
    /// The browser is not installed here (and CI is not set): the reason, for the test to print.
    Skip(String),
}

/// A headless Chromium session and the chromedriver that serves it.
pub struct Browser {
    client: Client,
    /// Ends the session (if [`Browser::close`] did not) and kills the driver when dropped, also
    /// when a test panics: no browser outlives its test.
    driver: Driver,
}

/// Starts chromedriver and a headless Chromium session with the given window.
pub async fn start(options: Options) -> Result<Start, Error> {
    for path in [CHROMEDRIVER_PATH, CHROMIUM_PATH] {
        if !Path::new(path).exists() {
            let reason =
                format!("{path} is missing (Debian: apt-get install chromium chromium-driver)");
            if std::env::var_os("CI").is_some() {
                return Err(Error::MissingUnderCi(reason));
            }
            return Ok(Start::Skip(reason));
        }
    }
    let driver = Driver::spawn(CHROMEDRIVER_PATH).await?;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM_PATH,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                format!("--window-size={},{}", options.width_px, options.height_px),
            ],
        }),
    );
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await?;
    let mut driver = driver;
    driver.session = client.session_id().await?;
    let browser = Browser { client, driver };
    // `--window-size` sets the outer window; the viewport is what pages see, so set it exactly.
    set_viewport(&browser.client, options).await?;
    Ok(Start::Ready(browser))
}

/// [`start`] for a test: `None` (after printing why) when the browser is missing outside CI;
/// panics on any other failure, which is the test's failure.
pub async fn start_or_skip(options: Options) -> Option<Browser> {
    match start(options).await {
        Ok(Start::Ready(browser)) => Some(browser),
        Ok(Start::Skip(reason)) => {
            println!("skipped: {reason}");
            None
        }
        Err(e) => panic!("could not start the browser: {e}"),
    }
}

async fn set_viewport(client: &Client, options: Options) -> Result<(), Error> {
    let chrome: Vec<u64> = serde_json::from_value(
        client
            .execute(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await?,
    )
    .unwrap_or_default();
    let (dw, dh) = (chrome.first().copied(), chrome.get(1).copied());
    let extra = |d: Option<u64>| u32::try_from(d.unwrap_or(0)).unwrap_or(0);
    client.set_window_size(options.width_px + extra(dw), options.height_px + extra(dh)).await?;
    Ok(())
}

impl Browser {
    /// The WebDriver client, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) -> Result<(), Error> {
        Ok(self.client.goto(url).await?)
    }

    /// Waits (at most [`WAIT_MAX`]) until an element matches `css`, and returns it.
    pub async fn wait_for(&self, css: &str) -> Result<Element, Error> {
        let started = std::time::Instant::now();
        self.client
            .wait()
            .at_most(WAIT_MAX)
            .every(WAIT_PERIOD)
            .for_element(Locator::Css(css))
            .await
            .map_err(|e| match e {
                fantoccini::error::CmdError::WaitTimeout => Error::Timeout {
                    what: format!("an element matching {css:?}"),
                    waited_ms: started.elapsed().as_millis(),
                    last_seen: String::new(),
                },
                other => Error::Command(other),
            })
    }

    /// Waits (at most [`WAIT_MAX`]) until the text of the first element matching `css` contains
    /// `text`, and returns that whole text.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> Result<String, Error> {
        let started = std::time::Instant::now();
        let mut last_seen = String::new();
        while started.elapsed() < WAIT_MAX {
            if let Some(seen) = self.text_of(css).await? {
                if seen.contains(text) {
                    return Ok(seen);
                }
                last_seen = seen;
            }
            tokio::time::sleep(WAIT_PERIOD).await;
        }
        Err(Error::Timeout {
            what: format!("{text:?} in {css:?}"),
            waited_ms: started.elapsed().as_millis(),
            last_seen,
        })
    }

    /// The rendered text of the first element matching `css`, if there is one now.
    pub async fn text_of(&self, css: &str) -> Result<Option<String>, Error> {
        let value = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![serde_json::Value::from(css)],
            )
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Clicks the first element matching `css`, waiting for it first.
    pub async fn click(&self, css: &str) -> Result<(), Error> {
        self.wait_for(css).await?.click().await?;
        Ok(())
    }

    /// Saves a PNG of the viewport to `path` (its directory is created).
    pub async fn screenshot(&self, path: &Path) -> Result<(), Error> {
        let png = self.client.screenshot().await?;
        let write_error = |source| Error::Write { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        std::fs::write(path, png).map_err(write_error)
    }

    /// Runs axe-core on the current page and returns its violations (all impacts).
    pub async fn axe(&self) -> Result<Vec<Violation>, Error> {
        axe::run(&self.client).await
    }

    /// Ends the session cleanly (the driver is killed when `self` drops).
    pub async fn close(mut self) -> Result<(), Error> {
        self.driver.session = None;
        self.client.clone().close().await?;
        Ok(())
    }
}
