//! The campaign page at `/`: plain HTML, CSS and one ES module (no build step), embedded in the
//! binary so the demo works offline.
//!
//! The script and the stylesheet are served under content-hashed names
//! (`/page/app.<hash>.js`), computed once from the embedded bytes, so they may be cached forever
//! (`immutable`); the HTML, which names them, is revalidated on every load (`no-cache`) and is
//! a few KiB. Any other name under `/page/` is 404.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

const INDEX_HTML: &str = include_str!("../../assets/page/index.html");
const APP_JS: &[u8] = include_bytes!("../../assets/page/app.js");
const APP_CSS: &[u8] = include_bytes!("../../assets/page/app.css");
/// Hex characters of the SHA-256 kept in a hashed name: 64 bits, plenty for a handful of files.
const HASH_HEX_LEN: usize = 16;
/// A year, the longest lifetime caches honour; the name changes when the content does.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Only this origin's own files and API: no inline script, nothing from elsewhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

pub fn routes() -> Router<ApiState> {
    Router::new().route("/", get(index)).route("/page/{file}", get(asset))
}

/// One embedded asset under its hashed name.
struct Asset {
    name: String,
    bytes: &'static [u8],
    content_type: &'static str,
    etag: String,
}

struct Page {
    index: String,
    assets: [Asset; 2],
}

fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let js = hashed("app", "js", APP_JS, "text/javascript; charset=utf-8");
        let css = hashed("app", "css", APP_CSS, "text/css; charset=utf-8");
        let index = INDEX_HTML
            .replace("/page/app.js", &format!("/page/{}", js.name))
            .replace("/page/app.css", &format!("/page/{}", css.name));
        Page { index, assets: [js, css] }
    })
}

fn hashed(stem: &str, ext: &str, bytes: &'static [u8], content_type: &'static str) -> Asset {
    let hex = hex::encode(Sha256::digest(bytes));
    let hash = &hex[..HASH_HEX_LEN];
    Asset { name: format!("{stem}.{hash}.{ext}"), bytes, content_type, etag: format!("\"{hash}\"") }
}

/// The names the page's HTML refers to (for tests and size measurements).
pub fn asset_names() -> Vec<&'static str> {
    page().assets.iter().map(|a| a.name.as_str()).collect()
}

/// The campaign page (HTML; revalidated on every load, it names the hashed assets).
#[utoipa::path(
    get,
    path = "/",
    tag = "page",
    responses((status = 200, description = "the page", content_type = "text/html", body = String))
)]
pub async fn index() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    (StatusCode::OK, headers, page().index.clone()).into_response()
}

/// One of the page's assets under its content-hashed name (immutable).
#[utoipa::path(
    get,
    path = "/page/{file}",
    tag = "page",
    params(
        ("file" = String, Path, description = "`app.<hash>.js` or `app.<hash>.css`, as the page names them"),
        ("If-None-Match" = Option<String>, Header, description = "the asset's `ETag`: 304 when it matches"),
    ),
    responses(
        (status = 200, description = "the asset", content((String = "text/javascript"), (String = "text/css")),
            headers(("ETag" = String, description = "the asset's hash"))),
        (status = 304, description = "not modified", headers(("ETag" = String, description = "the asset's hash"))),
        (status = 404, description = "`not_found`: no such page file", body = ErrorBody),
    )
)]
pub async fn asset(Path(file): Path<String>, request: HeaderMap) -> Result<Response, ApiError> {
    let asset = page()
        .assets
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::not_found("no such page file"))?;
    let mut headers = HeaderMap::new();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(ETAG, etag);
    }
    let matches = request
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    Ok((StatusCode::OK, headers, asset.bytes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_html_names_every_asset_by_its_hash() {
        let page = page();
        for asset in &page.assets {
            assert!(page.index.contains(&format!("/page/{}", asset.name)), "{}", asset.name);
        }
        assert!(!page.index.contains("/page/app.js"), "unhashed script name left in the HTML");
        assert!(!page.index.contains("/page/app.css"), "unhashed style name left in the HTML");
    }
}
