//! `GET /static/catalog/{file}`: the static catalog from memory, as a CDN origin.
//!
//! - `manifest.json`: `Cache-Control: public, max-age=5` (it names the current version).
//! - `catalog.<v>.json`: immutable; negotiated on `Accept-Encoding` (the client's highest
//!   q-value wins; on a tie `br`, then `gzip`, then identity) and answered from the
//!   precompressed bytes with `Content-Encoding` and `Vary: Accept-Encoding`.
//! - `catalog.<v>.json.gz` / `.br` asked for directly: immutable, served as they would be from
//!   an object store — `Content-Type: application/json` with `Content-Encoding: gzip` / `br`,
//!   whatever the request's `Accept-Encoding` (the client named the encoded file itself).
//!
//! Every response carries a strong `ETag` of the exact bytes sent; a matching
//! `If-None-Match` gets 304 without a body. Any other name — including `..`, `%2e%2e` or an
//! encoded slash — is simply not a key of the in-memory map: 404, no filesystem access.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;
use crate::static_catalog::StaticFile;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/static/catalog/{file}", get(catalog_file))
}

/// A catalog file: `manifest.json` (names the current version, cached 5 s) or the immutable
/// `catalog.<v>.json` (negotiated on `Accept-Encoding`) and its `.gz` / `.br` files.
#[utoipa::path(
    get,
    path = "/static/catalog/{file}",
    tag = "catalog",
    params(
        ("file" = String, Path, description = "`manifest.json`, `catalog.<version>.json`, or that with `.gz` / `.br`"),
        ("If-None-Match" = Option<String>, Header, description = "an `ETag` seen before: 304 when it still matches"),
        ("Accept-Encoding" = Option<String>, Header, description = "`br` and `gzip` are served precompressed"),
    ),
    responses(
        (status = 200, description = "the file (JSON; `Content-Encoding` for the compressed ones)",
            content_type = "application/json", body = Object,
            headers(
                ("ETag" = String, description = "strong tag of the bytes sent"),
                ("Cache-Control" = String, description = "`public, max-age=5` for the manifest, immutable otherwise"),
            )),
        (status = 304, description = "not modified: the `If-None-Match` tag matches",
            headers(("ETag" = String, description = "strong tag of the bytes"))),
        (status = 404, description = "`not_found`: no such catalog file", body = ErrorBody),
    )
)]
pub async fn catalog_file(
    State(state): State<ApiState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A name that does not even decode (invalid UTF-8) cannot be one of ours either.
    let Ok(Path(name)) = name else { return Err(no_such_file()) };
    let store = &state.catalog;
    let file = store.get(&name).ok_or_else(no_such_file)?;
    if name != store.json_name() {
        return Ok(respond(file, &headers, false));
    }
    let file = match negotiate(&headers) {
        Encoding::Br => store.br(),
        Encoding::Gzip => store.gzip(),
        Encoding::Identity => file,
    };
    Ok(respond(file, &headers, true))
}

fn no_such_file() -> ApiError {
    ApiError::not_found("no such catalog file")
}

fn respond(file: &StaticFile, request: &HeaderMap, vary: bool) -> Response {
    let not_modified = if_none_match(request, &file.etag);
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Body::from(file.bytes.clone()).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, file.etag.clone());
    headers.insert(CACHE_CONTROL, file.cache_control.clone());
    if vary {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    if !not_modified {
        headers.insert(CONTENT_TYPE, file.content_type.clone());
        if let Some(encoding) = &file.content_encoding {
            headers.insert(CONTENT_ENCODING, encoding.clone());
        }
    }
    response
}

/// `If-None-Match` (RFC 9110 §13.1.2): `*` or a list of tags, compared weakly.
fn if_none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request.get_all(IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|list| {
        list.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours)
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Br,
    Gzip,
    Identity,
}

/// Picks the variant of the catalog JSON for `Accept-Encoding`. Unparsable q-values make their
/// entry unacceptable rather than failing the request; `*` covers codings not named.
fn negotiate(request: &HeaderMap) -> Encoding {
    // q-values in thousandths, as the RFC limits them to three decimals.
    let (mut br, mut gzip, mut star) = (None, None, None);
    for list in request.get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()) {
        for entry in list.split(',') {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("q").then(|| parse_q(v.trim()))
                })
                .unwrap_or(Some(1000))
                .unwrap_or(0);
            if coding.eq_ignore_ascii_case("br") {
                br = Some(q);
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(q);
            } else if coding == "*" {
                star = Some(q);
            }
        }
    }
    let br = br.or(star).unwrap_or(0);
    let gzip = gzip.or(star).unwrap_or(0);
    if br > 0 && br >= gzip {
        Encoding::Br
    } else if gzip > 0 {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// `0`, `1`, `0.5`, `1.000` → thousandths; anything else → `None`.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let frac_value = if frac.is_empty() {
        0
    } else {
        frac.parse::<u16>().ok()? * 10u16.pow(3 - frac.len() as u32)
    };
    let q = whole + frac_value;
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Encoding {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).expect("header"));
        negotiate(&h)
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()), Encoding::Identity);
        assert_eq!(accept("gzip, deflate, br"), Encoding::Br);
        assert_eq!(accept("gzip"), Encoding::Gzip);
        assert_eq!(accept("br;q=0, gzip"), Encoding::Gzip);
        assert_eq!(accept("br;q=0.5, gzip;q=0.8"), Encoding::Gzip);
        assert_eq!(accept("br;q=0.8, gzip;q=0.8"), Encoding::Br);
        assert_eq!(accept("*"), Encoding::Br);
        assert_eq!(accept("*;q=0"), Encoding::Identity);
        assert_eq!(accept("identity"), Encoding::Identity);
        assert_eq!(accept("BR"), Encoding::Br);
        assert_eq!(accept("br;q=banana, gzip"), Encoding::Gzip);
        assert_eq!(accept("deflate"), Encoding::Identity);
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("2"), None);
        assert_eq!(parse_q("0.0001"), None);
        assert_eq!(parse_q(""), None);
    }

    #[test]
    fn etag_matching() {
        let ours = HeaderValue::from_static("\"abc\"");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(IF_NONE_MATCH, HeaderValue::from_str(v).expect("header"));
            if_none_match(&h, &ours)
        };
        assert!(!if_none_match(&HeaderMap::new(), &ours));
        assert!(with("\"abc\""));
        assert!(with("W/\"abc\""));
        assert!(with("\"x\", \"abc\""));
        assert!(with("*"));
        assert!(!with("\"abcd\""));
        assert!(!with("abc"));
    }
}
