//! The admin listener: only allowed machines, optionally only over mTLS, then the signed admin
//! router (`admin.rs`).
//!
//! A client outside the allow-list is refused at accept: its connection is closed before a byte
//! is read. Nothing is parsed and no TLS handshake is made for it, so an unknown machine costs
//! the node one accept and learns nothing (not even that this is HTTP); a typed 403 would need
//! the node to read and parse the request of a machine it does not trust, and under mTLS to
//! finish a handshake first. The refusal is logged at debug level only: a scan must not flood
//! the log.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Default `--admin-allow`: this machine only.
pub const ADMIN_ALLOW_DEFAULT: &str = "127.0.0.0/8,::1/128";
/// Most networks in an allow-list.
pub const ADMIN_ALLOW_MAX: usize = 64;
/// Most admin connections served at once; more are closed at accept. Operators are a handful.
pub const ADMIN_CONNECTIONS_MAX: usize = 32;
/// Longest a TLS handshake may take before the connection is closed, in milliseconds.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Longest a connection may take to send a request head, in milliseconds.
const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Pause after a failed `accept`, in milliseconds.
const ACCEPT_RETRY_MS: u64 = 50;

/// The networks whose clients may connect (`--admin-allow`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl FromStr for AllowList {
    type Err = String;

    /// `CIDR[,CIDR…]`; a bare address is that one address.
    fn from_str(text: &str) -> Result<AllowList, String> {
        let mut nets = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => part.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("`{part}` is neither a CIDR network (10.0.0.0/8) nor an address")
                })?,
            };
            nets.push(net.trunc());
        }
        if nets.is_empty() {
            return Err("an empty allow-list admits nobody; name at least one network".into());
        }
        if nets.len() > ADMIN_ALLOW_MAX {
            return Err(format!("at most {ADMIN_ALLOW_MAX} networks"));
        }
        Ok(AllowList(nets))
    }
}

impl AllowList {
    /// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4 one) is in a network.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl Default for AllowList {
    fn default() -> AllowList {
        ADMIN_ALLOW_DEFAULT.parse().expect("the default allow-list parses")
    }
}

/// Who may connect to the admin listener, and how.
#[derive(Clone, Default)]
pub struct ListenerAccess {
    pub allow: AllowList,
    /// mTLS: the server's certificate and the CA client certificates must chain to.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `router` on `listener` to allowed clients until `shutdown`; then stops accepting and
/// waits for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    access: ListenerAccess,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let slots = Arc::new(tokio::sync::Semaphore::new(ADMIN_CONNECTIONS_MAX));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting an admin connection failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if !access.allow.admits(peer.ip()) {
            tracing::debug!(%peer, "admin connection from outside --admin-allow closed");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "admin connection closed: {ADMIN_CONNECTIONS_MAX} already open");
            continue;
        };
        let (router, tls, stop) = (router.clone(), access.tls.clone(), stop_rx.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, router, stop).await,
                Some(acceptor) => {
                    let timeout = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, router, stop).await,
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "admin TLS handshake refused")
                        }
                        Err(_) => tracing::info!(%peer, "admin TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    drop(stop_rx);
    // Every connection holds a receiver: `closed` completes when the last one is done.
    stop_tx.closed().await;
    Ok(())
}

/// One HTTP/1.1 connection, shut down gracefully when `stop` fires.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        router.map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(axum::body::Body::new)
        });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS))
        .max_headers(hongbao_api::HYPER_HEADERS_MAX)
        .max_buf_size(hongbao_api::HYPER_BUF_MAX_BYTES);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "admin connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_admits_its_networks_only() {
        let list: AllowList = "10.1.0.0/16, 192.168.1.7".parse().expect("parses");
        assert!(list.admits("10.1.200.3".parse().expect("ip")));
        assert!(list.admits("192.168.1.7".parse().expect("ip")));
        assert!(!list.admits("192.168.1.8".parse().expect("ip")));
        assert!(!list.admits("127.0.0.1".parse().expect("ip")));
        let default = AllowList::default();
        assert!(default.admits("127.0.0.1".parse().expect("ip")));
        assert!(default.admits("::1".parse().expect("ip")));
        assert!(default.admits("::ffff:127.0.0.1".parse().expect("ip")), "IPv4-mapped");
        assert!(!default.admits("10.0.0.1".parse().expect("ip")));
        assert!("".parse::<AllowList>().is_err());
        assert!("10.0.0.0/33".parse::<AllowList>().is_err());
    }
}
