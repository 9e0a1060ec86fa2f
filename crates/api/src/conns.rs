//! What [`crate::serve_with`] counts: open connections (in all and per client address) and
//! requests in flight.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::ServeOptions;
use crate::error::ApiError;

/// Open connections, in all and per address. The map holds only addresses with an open
/// connection, so it is bounded by the global cap.
pub(crate) struct Connections {
    max: usize,
    per_addr_max: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_addr: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
pub(crate) struct Slot {
    connections: Arc<Connections>,
    addr: IpAddr,
}

impl Connections {
    pub fn new(options: &ServeOptions) -> Connections {
        Connections {
            max: options.connections_max,
            per_addr_max: options.connections_per_addr_max,
            open: Mutex::new(Open::default()),
        }
    }

    /// A place for a connection from `addr`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Slot> {
        // A poisoned lock means a panic while counting: refuse rather than guess.
        let mut open = self.open.lock().ok()?;
        let from_addr = open.by_addr.get(&addr).copied().unwrap_or(0);
        if open.total >= self.max || from_addr >= self.per_addr_max {
            tracing::debug!(%addr, total = open.total, from_addr, "connection over a cap closed");
            return None;
        }
        open.total += 1;
        open.by_addr.insert(addr, from_addr + 1);
        Some(Slot { connections: Arc::clone(self), addr })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Ok(mut open) = self.connections.open.lock() else { return };
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_addr.get_mut(&self.addr) {
            *count -= 1;
            if *count == 0 {
                open.by_addr.remove(&self.addr);
            }
        }
    }
}

/// The router as one connection's service: the peer's address in every request's extensions,
/// and the in-flight cap (503 `overloaded` with `Retry-After: 1` once `in_flight` has no permit
/// left; a permit is held until the handler has produced its response).
pub(crate) fn service(
    router: Router,
    peer: SocketAddr,
    in_flight: Arc<Semaphore>,
) -> impl tower::Service<
    axum::http::Request<hyper::body::Incoming>,
    Response = Response,
    Error = Infallible,
    Future = BoxFuture<'static, Result<Response, Infallible>>,
> + Clone {
    tower::service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            return std::future::ready(Ok(overloaded())).boxed();
        };
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(permit);
            response
        }
        .boxed()
    })
}

fn overloaded() -> Response {
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the node is handling as many requests as it may; try again shortly",
    );
    error.retry_after_s = Some(1);
    error.into_response()
}
