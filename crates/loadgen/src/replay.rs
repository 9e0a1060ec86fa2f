//! The `replay` scenario's input: recorded requests, loaded into memory up front so the send
//! loop does no I/O and little work per request.
//!
//! One request per line, in one of two forms (tab-separated, `\n` or `\r\n` line ends, empty
//! lines skipped):
//! - `ticket<TAB>json-body`, as `hongbao bench claims` writes: `POST /v1/claims` with
//!   `Authorization: Bearer <ticket>` and that body;
//! - `METHOD<TAB>PATH<TAB>ticket-or-dash<TAB>body-or-empty`: any request to the target, e.g.
//!   `POST<TAB>/v1/coupons<TAB><ticket><TAB>{"channel":"swipe"}` or
//!   `GET<TAB>/v1/coupons/<coupon>/gifts<TAB><ticket><TAB>`. A `-` ticket sends no
//!   `Authorization`.
//!
//! A body must be JSON and goes out with `Content-Type: application/json`. Lines are checked
//! when loaded; a malformed one refuses the whole file, naming its line number.
//!
//! The file stays in memory as one buffer; each request is a few offsets into it, and its body
//! is sent as a slice of that buffer without copying.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder};

/// Most requests a file may hold; a longer one is refused (split it, or lower rate × duration).
pub const REPLAY_LINES_MAX: usize = 5_000_000;
/// Largest file accepted, in bytes (2 GiB; about 5 million claim lines).
pub const REPLAY_BYTES_MAX: u64 = 1 << 31;
/// The path of the `ticket<TAB>json-body` form.
pub const CLAIM_PATH: &str = "/v1/claims";

/// Methods the general form accepts, by their index in [`Line::method`].
const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];
const BEARER: &[u8] = b"Bearer ";

/// A byte range of the buffer; an empty one means absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(start: usize, len: usize) -> Span {
        // `parse` refuses buffers whose offsets would not fit.
        Span { start: start as u32, len: len as u32 }
    }

    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }

    fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// One request: 28 bytes, whatever its size in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Line {
    method: u8,
    /// Empty: [`CLAIM_PATH`].
    path: Span,
    /// Empty: no `Authorization` header.
    ticket: Span,
    /// Empty: no body.
    body: Span,
}

/// The requests of a replay file, in file order.
pub struct ReplayRequests {
    file: String,
    buf: Bytes,
    lines: Vec<Line>,
}

impl std::fmt::Debug for ReplayRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayRequests")
            .field("file", &self.file)
            .field("requests", &self.lines.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("read {file}: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file} is larger than the maximum of {max} bytes (REPLAY_BYTES_MAX); split it")]
    TooLarge { file: String, max: u64 },
    #[error("{file} has more than {max} requests (REPLAY_LINES_MAX); split it")]
    TooManyLines { file: String, max: usize },
    #[error("{file} line {line}: {reason}")]
    Malformed { file: String, line: usize, reason: String },
    #[error("{file} has no requests")]
    Empty { file: String },
}

impl ReplayRequests {
    /// Reads and checks a whole file (see the module documentation for its format).
    pub fn load(path: &Path) -> Result<ReplayRequests, ReplayError> {
        let file = path.display().to_string();
        let read = |error| ReplayError::Read { file: file.clone(), error };
        let handle = std::fs::File::open(path).map_err(read)?;
        let len = handle.metadata().map_err(read)?.len();
        if len > REPLAY_BYTES_MAX {
            return Err(ReplayError::TooLarge { file, max: REPLAY_BYTES_MAX });
        }
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // Bounded even if the file grows while it is read.
        handle.take(REPLAY_BYTES_MAX + 1).read_to_end(&mut buf).map_err(read)?;
        ReplayRequests::parse(file, buf)
    }

    /// Checks the requests of `text`; `file` names it in errors and the report.
    pub fn parse(
        file: impl Into<String>,
        text: impl Into<Bytes>,
    ) -> Result<ReplayRequests, ReplayError> {
        parse_bounded(file.into(), text.into(), REPLAY_LINES_MAX)
    }

    /// The file the requests came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The method and path of request `index` (0-based, file order).
    pub fn method_and_path(&self, index: usize) -> (&Method, &str) {
        let line = &self.lines[index];
        (&METHODS[usize::from(line.method)], self.path(line))
    }

    fn path(&self, line: &Line) -> &str {
        if line.path.is_empty() {
            return CLAIM_PATH;
        }
        // Checked to be printable ASCII when loaded.
        std::str::from_utf8(&self.buf[line.path.range()]).unwrap_or(CLAIM_PATH)
    }

    /// Request `index` against `target` (a base URL without a trailing slash).
    pub(crate) fn request(
        &self,
        client: &reqwest::Client,
        target: &str,
        index: usize,
    ) -> RequestBuilder {
        let line = &self.lines[index];
        let path = self.path(line);
        let mut url = String::with_capacity(target.len() + path.len());
        url.push_str(target);
        url.push_str(path);
        let mut request = client.request(METHODS[usize::from(line.method)].clone(), url);
        if let Some(value) = self.authorization(line) {
            request = request.header(AUTHORIZATION, value);
        }
        if !line.body.is_empty() {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(self.buf.slice(line.body.range()));
        }
        request
    }

    /// Request `index` as a plain HTTP/1.1 request with the path as its URI (the connection
    /// adds `Host`), for [`crate::conns::TargetConns`]. `None` when the path is not a valid
    /// request target as it stands (reqwest's URL parser would percent-encode it instead).
    pub(crate) fn plain_request(&self, index: usize) -> Option<http::Request<Full<Bytes>>> {
        let line = &self.lines[index];
        // The path as a slice of the loaded file (no copy per request), or the claim path.
        let uri = if line.path.is_empty() {
            http::Uri::from_static(CLAIM_PATH)
        } else {
            http::Uri::from_maybe_shared(self.buf.slice(line.path.range())).ok()?
        };
        let mut request = http::Request::builder()
            .method(METHODS[usize::from(line.method)].clone())
            .uri(uri)
            .body(Full::new(self.buf.slice(line.body.range())))
            .ok()?;
        let headers = request.headers_mut();
        if let Some(value) = self.authorization(line) {
            headers.insert(AUTHORIZATION, value);
        }
        if !line.body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Some(request)
    }

    /// `Bearer <ticket>` of a line that has a ticket.
    fn authorization(&self, line: &Line) -> Option<HeaderValue> {
        if line.ticket.is_empty() {
            return None;
        }
        let ticket = &self.buf[line.ticket.range()];
        let mut value = Vec::with_capacity(BEARER.len() + ticket.len());
        value.extend_from_slice(BEARER);
        value.extend_from_slice(ticket);
        // Checked to be visible ASCII when loaded: always a valid header value.
        HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
    }
}

fn parse_bounded(
    file: String,
    buf: Bytes,
    max_lines: usize,
) -> Result<ReplayRequests, ReplayError> {
    if buf.len() as u64 > REPLAY_BYTES_MAX {
        return Err(ReplayError::TooLarge { file, max: REPLAY_BYTES_MAX });
    }
    let mut lines = Vec::new();
    let mut start = 0;
    let mut number = 0;
    while start < buf.len() {
        number += 1;
        let end = buf[start..].iter().position(|&b| b == b'\n').map_or(buf.len(), |i| start + i);
        let mut text = &buf[start..end];
        if let [rest @ .., b'\r'] = text {
            text = rest;
        }
        if !text.is_empty() {
            if lines.len() == max_lines {
                return Err(ReplayError::TooManyLines { file, max: max_lines });
            }
            match parse_line(text, start) {
                Ok(line) => lines.push(line),
                Err(reason) => return Err(ReplayError::Malformed { file, line: number, reason }),
            }
        }
        start = end + 1;
    }
    if lines.is_empty() {
        return Err(ReplayError::Empty { file });
    }
    lines.shrink_to_fit();
    Ok(ReplayRequests { file, buf, lines })
}

/// One non-empty line that starts at `offset` in the buffer.
fn parse_line(text: &[u8], offset: usize) -> Result<Line, String> {
    let span = |field: &[u8]| {
        // `field` is a sub-slice of `text`.
        Span::of(offset + (field.as_ptr() as usize - text.as_ptr() as usize), field.len())
    };
    let Some(tab) = text.iter().position(|&b| b == b'\t') else {
        return Err("no tab: expected `ticket<TAB>json-body` or \
                    `METHOD<TAB>PATH<TAB>ticket-or-dash<TAB>body-or-empty`"
            .into());
    };
    let (first, rest) = (&text[..tab], &text[tab + 1..]);
    let Some(method) = METHODS.iter().position(|m| m.as_str().as_bytes() == first) else {
        // `ticket<TAB>json-body`.
        check_ticket(first)?;
        if rest.is_empty() {
            return Err("empty body: a claim line is `ticket<TAB>json-body`".into());
        }
        check_json(rest)?;
        return Ok(Line {
            method: 1,
            path: Span::default(),
            ticket: span(first),
            body: span(rest),
        });
    };
    let mut fields = rest.splitn(3, |&b| b == b'\t');
    let (Some(path), Some(ticket), Some(body)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(format!(
            "{} line with {} fields: expected `METHOD<TAB>PATH<TAB>ticket-or-dash<TAB>\
             body-or-empty`",
            METHODS[method],
            rest.split(|&b| b == b'\t').count() + 1
        ));
    };
    if !path.starts_with(b"/") || !path.iter().all(u8::is_ascii_graphic) {
        return Err(format!(
            "path `{}` must start with `/` and be printable ASCII without spaces",
            String::from_utf8_lossy(path)
        ));
    }
    let ticket = if ticket == b"-" {
        Span::default()
    } else {
        check_ticket(ticket)?;
        span(ticket)
    };
    let body = if body.is_empty() {
        Span::default()
    } else {
        check_json(body)?;
        span(body)
    };
    Ok(Line { method: method as u8, path: span(path), ticket, body })
}

fn check_ticket(ticket: &[u8]) -> Result<(), String> {
    if ticket.is_empty() || !ticket.iter().all(u8::is_ascii_graphic) {
        return Err(format!(
            "ticket `{}` must be printable ASCII without spaces (or `-` for none, in the \
             METHOD<TAB>PATH form)",
            String::from_utf8_lossy(ticket)
        ));
    }
    Ok(())
}

fn check_json(body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| format!("body is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReplayRequests, ReplayError> {
        ReplayRequests::parse("t.tsv", text.to_string())
    }

    fn malformed_line(text: &str) -> usize {
        match parse(text) {
            Err(ReplayError::Malformed { line, .. }) => line,
            other => panic!("expected a malformed line, got {other:?}"),
        }
    }

    #[test]
    fn both_forms_parse_in_order() {
        let r = parse(
            "tk1\t{\"coupon\":\"c\"}\r\n\
             \n\
             POST\t/v1/coupons\ttk2\t{\"channel\":\"swipe\"}\n\
             GET\t/v1/coupons/c/gifts\t-\t\n\
             DELETE\t/x?a=b\ttk3\t[1,\t2]",
        )
        .expect("parse");
        assert_eq!(r.len(), 4);
        let lines: Vec<_> = (0..4)
            .map(|i| {
                let l = r.lines[i];
                let s = |s: Span| String::from_utf8_lossy(&r.buf[s.range()]).into_owned();
                let (method, path) = r.method_and_path(i);
                (method.to_string(), path.to_string(), s(l.ticket), s(l.body))
            })
            .collect();
        let own = |m: &str, p: &str, t: &str, b: &str| {
            (m.to_string(), p.to_string(), t.to_string(), b.to_string())
        };
        assert_eq!(
            lines,
            [
                own("POST", "/v1/claims", "tk1", "{\"coupon\":\"c\"}"),
                own("POST", "/v1/coupons", "tk2", "{\"channel\":\"swipe\"}"),
                own("GET", "/v1/coupons/c/gifts", "", ""),
                own("DELETE", "/x?a=b", "tk3", "[1,\t2]"),
            ]
        );
        assert_eq!(std::mem::size_of::<Line>(), 28);
    }

    #[test]
    fn malformed_lines_name_their_line_number() {
        let ok = "tk\t{}\n";
        assert_eq!(malformed_line(&format!("{ok}\nno tab here\n")), 3);
        assert_eq!(malformed_line(&format!("{ok}tk\tnot json\n")), 2);
        assert_eq!(malformed_line("tk\t\n"), 1);
        assert_eq!(malformed_line(&format!("{ok}{ok}GET\t/v1/x\t-\n")), 3);
        assert_eq!(malformed_line("GET\tv1/x\t-\t\n"), 1);
        assert_eq!(malformed_line("GET\t/v1/a b\t-\t\n"), 1);
        assert_eq!(malformed_line("POST\t/v1/claims\tt k\t{}\n"), 1);
        assert_eq!(malformed_line("GET\t/v1/x\t-\t{oops\n"), 1);
        assert_eq!(malformed_line("t k\t{}\n"), 1);
        let message = parse("tk\t{}\nbad\n").expect_err("malformed").to_string();
        assert!(message.contains("t.tsv line 2"), "{message}");
    }

    #[test]
    fn empty_and_oversized_files_are_refused() {
        assert!(matches!(parse(""), Err(ReplayError::Empty { .. })));
        assert!(matches!(parse("\n\r\n"), Err(ReplayError::Empty { .. })));
        let three = Bytes::from_static(b"a\t{}\nb\t{}\n\nc\t{}\n");
        assert_eq!(parse_bounded("t".into(), three.clone(), 3).expect("three").len(), 3);
        assert!(matches!(
            parse_bounded("t".into(), three, 2),
            Err(ReplayError::TooManyLines { max: 2, .. })
        ));
    }
}
