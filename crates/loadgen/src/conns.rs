//! Plain HTTP/1.1 connections to the target for the replay scenario, without a general client.
//!
//! A replay run sends tens of thousands of pre-made requests a second from one core, to measure
//! the server at a share of its maximum. Through reqwest each request paid for a URL parse (with
//! IDNA), header-map building, the pool's bookkeeping and its layered futures: the generator
//! topped out near 13,000–15,000 claims/s on a core where the server took more. Here a request is
//! an `http::Request` with a path and a `Host` header, sent on a kept-alive hyper connection
//! taken from an idle list; nothing is parsed per request.
//!
//! Only `http://` targets: `https://` (and anything unusual) keeps the reqwest path.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The connection could not be made.
    Connect,
    /// No whole answer within the request timeout.
    Timeout,
    /// Anything else on the way (reset, malformed response, body cut short).
    Io,
}

/// Idle kept-alive connections to one `http://host:port` target.
pub(crate) struct TargetConns {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header every request carries.
    host: HeaderValue,
    /// Connections between requests. At most the run's connection limit: a connection is only
    /// taken by a request holding one of the run's connection permits, and given back by it.
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    timeout: Duration,
}

impl TargetConns {
    /// Connections for `target` (`http://host[:port]`, nothing after it); `None` for anything
    /// else (https, a path prefix, credentials), which then goes through reqwest.
    pub(crate) fn for_target(target: &str, timeout: Duration) -> Option<TargetConns> {
        let url = reqwest::Url::parse(target).ok()?;
        let bare = url.scheme() == "http"
            && url.path() == "/"
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none();
        if !bare {
            return None;
        }
        // `host_str` keeps an IPv6 literal's brackets, as both the address and `Host` need.
        let host = url.host_str()?;
        let addr = format!("{host}:{}", url.port_or_known_default()?);
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Some(TargetConns {
            addr,
            host: HeaderValue::from_str(&authority).ok()?,
            idle: Mutex::new(Vec::new()),
            timeout,
        })
    }

    /// Sends `request` (its URI a path, e.g. `/v1/claims`) and reads the whole answer.
    ///
    /// A kept-alive connection the server has closed is dropped when it is taken, so the
    /// request goes on a new one. Should the server close it in the moment between that check
    /// and the write, the request fails and is counted as an I/O error; it is never sent twice.
    pub(crate) async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), SendError> {
        request.headers_mut().insert(HOST, self.host.clone());
        let exchange = async {
            let mut sender = match self.take_idle() {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            sender.ready().await.map_err(|_| SendError::Io)?;
            let response = sender.send_request(request).await.map_err(|_| SendError::Io)?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|_| SendError::Io)?;
            Ok((sender, status, body.to_bytes()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(SendError::Timeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok((sender, status, body))) => {
                if !sender.is_closed() {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(sender);
                }
                Ok((status, body))
            }
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let stream = TcpStream::connect(&self.addr).await.map_err(|_| SendError::Connect)?;
        stream.set_nodelay(true).map_err(|_| SendError::Connect)?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|_| SendError::Connect)?;
        // The connection's task ends when its sender is dropped (the request that holds it
        // finishes or is cancelled, or the idle list goes with the run) or the server closes it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_targets_only() {
        let t = Duration::from_secs(1);
        let of = |target: &str| {
            TargetConns::for_target(target, t)
                .map(|c| (c.addr, c.host.to_str().expect("ASCII").to_string()))
        };
        let both = |addr: &str, host: &str| Some((addr.to_string(), host.to_string()));
        assert_eq!(of("http://127.0.0.1:8080"), both("127.0.0.1:8080", "127.0.0.1:8080"));
        assert_eq!(of("http://localhost"), both("localhost:80", "localhost"));
        assert_eq!(of("http://[::1]:9000"), both("[::1]:9000", "[::1]:9000"));
        assert_eq!(of("http://[::1]"), both("[::1]:80", "[::1]"));
        assert_eq!(of("https://127.0.0.1:8443"), None);
        assert_eq!(of("http://user@host:80"), None);
        assert_eq!(of("http://host/prefix"), None);
        assert_eq!(of("http://"), None);
    }
}
