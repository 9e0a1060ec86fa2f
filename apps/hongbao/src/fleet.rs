//! A node on the distributed backend (`serve --redis URL --nats URL`): any number of API nodes
//! and workers share one Redis (grabs, claims, orders, the role cache's L2, the game leases)
//! and one JetStream stream (the deliveries), and hold nothing of their own but caches.
//!
//! - API roles answer grabs and claims through Redis's scripts; a new order is published to
//!   JetStream before the claim is answered.
//! - Worker roles lease from JetStream, each game delivered by the one worker holding its lease
//!   (global pacing), and run the sweeper that publishes what a dead API node recorded but never
//!   published.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use hongbao_api::ApiState;
use hongbao_clock::SharedClock;
use hongbao_delivery::{Dispatcher, DispatcherConfig, GAME_LEASE_TTL_MS_DEFAULT, SharedGames};
use hongbao_distributed::{Backend, BackendConfig, DistributedClaims, DistributedLedger, Sweeper};
use hongbao_domain::{Campaign, ProfileTable};
use hongbao_gateway::{IdipClient, RoleCache, RoleCacheConfig, RoleStoreL2};
use hongbao_redis::RedisSeries;
use rand::Rng;

use crate::node::{Node, NodeRole};

/// What a distributed node stops at shutdown, after serving and the workers have stopped.
pub(crate) struct FleetParts {
    claims: Arc<DistributedClaims>,
    /// Reconciliation's ports over the fleet (the admin endpoint's).
    pub(crate) reconcile: Arc<DistributedLedger>,
    /// The operator API's used nonces, shared by the fleet (a replay to another node is
    /// refused too).
    pub(crate) nonces: Arc<dyn hongbao_auth::NonceStore>,
    sweeper: Option<Sweeper>,
    /// The fleet's series store, when the monitor writes there (`serve`, `demo` on the
    /// distributed backend).
    pub(crate) series: Option<Arc<RedisSeries>>,
}

impl FleetParts {
    pub(crate) async fn shutdown(self) {
        // First: its last second is written before a demo removes the namespace.
        if let Some(series) = &self.series {
            series.shutdown().await;
        }
        if let Some(sweeper) = self.sweeper {
            sweeper.shutdown().await;
        }
        match Arc::try_unwrap(self.claims) {
            // Answers the claims whose publishes it holds.
            Ok(claims) => claims.shutdown().await,
            Err(_) => tracing::warn!(
                "claims still referenced at shutdown; the sweeper publishes what they recorded"
            ),
        }
    }
}

/// The fleet's series store under `namespace` at `redis_url`, on a connection of its own (made
/// before the monitor is installed, which is before the node's parts connect).
pub async fn series_store(redis_url: &str, namespace: &str) -> Result<Arc<RedisSeries>> {
    let conn = hongbao_redis::connect(redis_url).await.with_context(|| {
        format!("connect to Redis for the fleet's series (--redis {redis_url})")
    })?;
    let series = RedisSeries::start(conn, namespace, hongbao_redis::SERIES_MAX)
        .context("start the fleet's series store")?;
    Ok(Arc::new(series))
}

/// Set (to anything), an API node aborts right after the claim script accepts its first claim,
/// before publishing it: how the fleet tests make the crash the sweeper is for.
pub const CRASH_AFTER_CLAIM_SCRIPT: &str = "HONGBAO_CRASH_AFTER_CLAIM_SCRIPT";

/// This process's name in the game leases: the host, the pid and a random part, so two
/// processes never take each other for one.
pub fn lease_holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    let random: u32 = rand::rng().random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

impl Node {
    /// Connects to the distributed backend and starts what `role` runs there.
    pub async fn open_distributed(
        campaign: Arc<Campaign>,
        profiles: ProfileTable,
        backend: &BackendConfig,
        role: NodeRole,
        delivery: DispatcherConfig,
        clock: SharedClock,
    ) -> Result<Node> {
        let parts = Backend::connect(backend, &campaign).await.with_context(|| {
            format!(
                "connect to the distributed backend (--redis {}, --nats {})",
                backend.redis_url, backend.nats_url
            )
        })?;
        if std::env::var_os(CRASH_AFTER_CLAIM_SCRIPT).is_some() {
            tracing::warn!(
                "{CRASH_AFTER_CLAIM_SCRIPT} is set: the first accepted claim aborts the process"
            );
            parts.claims.crash_after_the_script();
        }
        let idip = IdipClient::new(&campaign).context("build the game-side client")?;
        let (dispatcher, sweeper) = match role {
            NodeRole::Api => (None, None),
            NodeRole::All | NodeRole::Worker => {
                let shared = SharedGames {
                    leases: parts.leases.clone(),
                    holder: lease_holder_name(),
                    lease_ttl_ms: GAME_LEASE_TTL_MS_DEFAULT,
                };
                tracing::info!(holder = %shared.holder, "delivery worker sharing the games");
                let queue = Arc::new(parts.queue());
                let dispatcher = Dispatcher::start_shared(
                    &campaign,
                    idip.clone(),
                    queue,
                    delivery,
                    clock.clone(),
                    shared,
                )
                .context("start the delivery workers")?;
                let sweeper = parts
                    .sweeper(backend.sweeper.clone(), clock.clone())
                    .context("start the sweeper")?;
                (Some(Arc::new(dispatcher)), Some(sweeper))
            }
        };
        let l2: Arc<dyn RoleStoreL2> = parts.roles.clone();
        let roles = Arc::new(
            RoleCache::new(Arc::new(idip), Some(l2), RoleCacheConfig::default())
                .with_clock(clock.clone()),
        );
        let state = ApiState::new(campaign, roles, clock)
            .with_profiles(Arc::new(profiles))
            .with_grants(parts.ledger.clone())
            .with_claims(parts.claims.clone());
        state.mark_store_open();
        let mut node = Node {
            state,
            store: None,
            fleet: Some(FleetParts {
                reconcile: Arc::new(parts.reconcile_ledger()),
                nonces: parts.nonces.clone(),
                claims: parts.claims,
                sweeper,
                series: None,
            }),
            dispatcher,
            reconcile_dir: PathBuf::new(),
            router_options: hongbao_api::RouterOptions::default(),
            admin_auth: crate::admin::AdminAuth::default(),
            admin_access: crate::admin_listener::ListenerAccess::default(),
            serve_options: hongbao_api::ServeOptions::default(),
            rate_limits: None,
            monitor: None,
        };
        // Per node, as in the embedded mode: each node holds its own buckets, so a fleet's
        // per-user rate is up to the number of nodes times the campaign's (a shared limiter in
        // Redis would cost a round trip per request).
        node.rate_limits = Some(node.rate_limits_trusting(Vec::new()));
        Ok(node)
    }
}
