//! The refusals hyper writes by itself, with the JSON body every other error has.
//!
//! When hyper cannot parse a request head (a malformed request line, a head larger than its
//! buffer) it answers 400, 414 or 431 with an empty body and closes the connection, before any
//! router layer sees a request. hyper offers no hook for that answer, so the connection's stream
//! is wrapped: a response head hyper writes with an error status and `content-length: 0` is
//! replaced by the same status with the JSON error body. The router never sends such a head (its
//! `json_errors` layer gives every error a body), so only hyper's own refusals match.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's stream whose writes pass through unchanged, except hyper's bodiless refusals.
pub(crate) struct JsonStackRefusals<S> {
    inner: S,
    /// A replacement being written: its bytes, how many went out, and the length of the
    /// original buffer to report once it is all out.
    replacing: Option<Replacement>,
}

struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    original_len: usize,
}

impl<S> JsonStackRefusals<S> {
    pub(crate) fn new(inner: S) -> Self {
        JsonStackRefusals { inner, replacing: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonStackRefusals<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonStackRefusals<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match bodiless_refusal(buf) {
                Some(status) => {
                    this.replacing = Some(Replacement {
                        bytes: json_refusal(status),
                        written: 0,
                        original_len: buf.len(),
                    });
                }
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        let Some(replacement) = this.replacing.as_mut() else {
            unreachable!("set just above");
        };
        while replacement.written < replacement.bytes.len() {
            let rest = &replacement.bytes[replacement.written..];
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            replacement.written += n;
        }
        let original_len = replacement.original_len;
        this.replacing = None;
        Poll::Ready(Ok(original_len))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then flattens each response into one buffer, so a head arrives whole in
    // one `poll_write` and can be recognised.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The status of `buf` when it is one whole response head with an error status and an empty
/// body, as hyper writes for a request it could not parse.
fn bodiless_refusal(buf: &[u8]) -> Option<StatusCode> {
    let head = buf.strip_prefix(b"HTTP/1.1 ")?;
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let status = StatusCode::from_bytes(head.get(..3)?).ok()?;
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let empty_body = head
        .split(|&b| b == b'\n')
        .any(|line| line.trim_ascii().eq_ignore_ascii_case(b"content-length: 0"));
    empty_body.then_some(status)
}

/// The whole replacement response: the same status, the JSON error body, and a close (hyper
/// closes the connection after a parse error).
fn json_refusal(status: StatusCode) -> Vec<u8> {
    let (code, message) = crate::error::status_code_text(status);
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let reason = status.canonical_reason().unwrap_or("");
    format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hypers_bodiless_refusal_only() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(bodiless_refusal(hyper_400), Some(StatusCode::BAD_REQUEST));
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n{\"error\":{}}";
        assert_eq!(bodiless_refusal(with_body), None);
        let empty_ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bodiless_refusal(empty_ok), None);
        let partial = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n";
        assert_eq!(bodiless_refusal(partial), None);
    }

    #[test]
    fn the_replacement_is_a_json_error_with_its_length() {
        let bytes = json_refusal(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");
    }
}
