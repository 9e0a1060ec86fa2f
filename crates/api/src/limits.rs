//! Abuse limits: per-address and per-user request rates (GCRA, the `governor` crate) from the
//! campaign's `[limits]`, answered 429 `rate_limited` with `Retry-After`.
//!
//! - The **address** limit is a router layer ([`with_rate_limits`]): the first thing a request
//!   meets, before its head is looked at further. The address is the socket's peer, or — only
//!   when the peer is a trusted proxy (`serve --trusted-proxy CIDR,…`) — the client named in
//!   `X-Forwarded-For` ([`client_addr`]).
//! - The **user** limit is taken where the user becomes known, in the [`crate::auth::Caller`]
//!   extractor, which finds these limits in the request's extensions: one ticket verification
//!   per request, and every authenticated endpoint shares the user's rate.
//!
//! Both limiters run on the node's injected clock (its monotonic reading), so tests drive them
//! on virtual time. Their keyed state is bounded by [`RateLimits::maintain`], an owned task that
//! forgets keys whose state is the same as a fresh one every [`RETAIN_INTERVAL_MS`] and stops
//! with the node.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use hongbao_clock::SharedClock;
use hongbao_domain::campaign::Limits;
use ipnet::IpNet;

use crate::error::ApiError;

/// How often the limiters forget keys that are back to a fresh state, in milliseconds. A key
/// idle for longer than its burst takes to refill is indistinguishable from a new one.
pub const RETAIN_INTERVAL_MS: u64 = 1_000;
/// Keys per limiter above which [`RateLimits::maintain`] warns: every key is a client seen
/// within the last refill period, so this many means a flood of distinct clients.
pub const KEYS_WARN: usize = 1_000_000;
/// Most `X-Forwarded-For` entries looked at from the right (proxies in front of the node).
pub const FORWARDED_HOPS_MAX: usize = 8;
/// Most CIDRs `--trusted-proxy` takes.
pub const TRUSTED_PROXIES_MAX: usize = 64;

/// The node's clock as governor reads it: the monotonic microseconds, for rates.
#[derive(Clone, Debug)]
struct InjectedClock(SharedClock);

impl GovernorClock for InjectedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Duration::from_micros(self.0.monotonic_us()))
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, InjectedClock, NoOpMiddleware<Nanos>>;

/// The node's two keyed limiters and the proxies whose `X-Forwarded-For` it believes.
pub struct RateLimits {
    users: Keyed<u64>,
    addrs: Keyed<IpAddr>,
    clock: InjectedClock,
    trusted: Vec<IpNet>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("trusted", &self.trusted).finish_non_exhaustive()
    }
}

impl RateLimits {
    /// Limits from the campaign's `[limits]` (rates and bursts are validated to be at least 1),
    /// believing `X-Forwarded-For` only from peers in `trusted`.
    pub fn new(limits: &Limits, trusted: Vec<IpNet>, clock: SharedClock) -> RateLimits {
        let clock = InjectedClock(clock);
        let quota = |rate: u32, burst: u32| {
            let one = NonZeroU32::MIN;
            Quota::per_second(NonZeroU32::new(rate).unwrap_or(one))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(one))
        };
        let user_quota = quota(limits.user_rate_per_s, limits.user_burst);
        let addr_quota = quota(limits.ip_rate_per_s, limits.ip_burst);
        RateLimits {
            users: RateLimiter::new(user_quota, DefaultKeyedStateStore::default(), clock.clone()),
            addrs: RateLimiter::new(addr_quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
            trusted,
        }
    }

    /// One request from `user`: `Err` (429) once they are over their rate.
    pub fn check_user(&self, user: u64) -> Result<(), ApiError> {
        self.users.check_key(&user).map_err(|wait| self.refusal("user", wait))
    }

    /// One request from `addr`: `Err` (429) once it is over its rate.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), ApiError> {
        self.addrs.check_key(&addr).map_err(|wait| self.refusal("address", wait))
    }

    fn refusal(&self, whose: &str, wait: governor::NotUntil<Nanos>) -> ApiError {
        let wait = wait.wait_time_from(self.clock.now());
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from this {whose}; slow down"),
        );
        // Whole seconds, at least one: a zero would invite a retry refused again.
        error.retry_after_s = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        error.retry_after_s = error.retry_after_s.map(|s| s.max(1));
        error
    }

    /// Keys each limiter holds now (users, addresses).
    pub fn keys(&self) -> (usize, usize) {
        (self.users.len(), self.addrs.len())
    }

    /// Forgets keys back at a fresh state, now.
    pub fn retain_recent(&self) {
        self.users.retain_recent();
        self.addrs.retain_recent();
        self.users.shrink_to_fit();
        self.addrs.shrink_to_fit();
    }

    /// Keeps the keyed state bounded until `stop` completes: [`RateLimits::retain_recent`]
    /// every [`RETAIN_INTERVAL_MS`]. Spawn it and await it on shutdown.
    pub async fn maintain(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(RETAIN_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.retain_recent();
                    let (users, addrs) = self.keys();
                    if users.max(addrs) > KEYS_WARN {
                        tracing::warn!(users, addrs, "rate limiters hold many recent clients");
                    }
                }
                () = &mut stop => return,
            }
        }
    }

    /// The client's address: see [`client_addr`].
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_addr(peer, headers, &self.trusted)
    }
}

/// The address a request comes from. The socket's `peer`, unless the peer is a trusted proxy:
/// then `X-Forwarded-For` is read from the right (each proxy appends the address it received
/// from), skipping trusted proxies, and the first address that is not one is the client. A
/// header that is missing, unreadable or names only trusted proxies leaves the last trusted
/// hop as the client: nothing a client writes into the header itself is believed.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|value| {
            let text = value.to_str().unwrap_or("");
            text.rsplit(',').map(str::trim).collect::<Vec<_>>()
        })
        .take(FORWARDED_HOPS_MAX);
    for hop in hops {
        let Ok(addr) = hop.parse::<IpAddr>() else { break };
        client = addr;
        if !is_trusted(&addr) {
            break;
        }
    }
    client
}

/// Parses `--trusted-proxy`'s comma-separated CIDRs (a bare address is a /32 or /128).
pub fn parse_trusted_proxies(text: &str) -> Result<Vec<IpNet>, String> {
    let nets: Vec<IpNet> = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{part}` is not a CIDR (e.g. 10.0.0.0/8) or an address"))
        })
        .collect::<Result<_, _>>()?;
    if nets.len() > TRUSTED_PROXIES_MAX {
        return Err(format!("at most {TRUSTED_PROXIES_MAX} trusted proxies"));
    }
    Ok(nets)
}

/// `router` with the address limit in front of everything, and `limits` handed to the
/// [`crate::auth::Caller`] extractor for the user limit.
pub fn with_rate_limits<S>(router: Router<S>, limits: Arc<RateLimits>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(from_fn(move |request, next| check_addr(Arc::clone(&limits), request, next)))
}

async fn check_addr(limits: Arc<RateLimits>, mut request: Request, next: Next) -> Response {
    // `serve` always sets the peer; a router driven without a socket (tests) is loopback.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let client = limits.client_addr(peer, request.headers());
    if let Err(refused) = limits.check_addr(client) {
        return refused.into_response();
    }
    request.extensions_mut().insert(limits);
    next.run(request).await
}

#[cfg(test)]
mod tests;
