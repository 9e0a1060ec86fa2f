//! One node's connection to the distributed backend, assembled once: what an API node needs
//! (grants, claims that publish, the shared role store) and what a worker needs (the queue, the
//! game leases, the sweeper), all of one campaign under one namespace.

use std::sync::Arc;

use hongbao_clock::SharedClock;
use hongbao_domain::Campaign;
use hongbao_jetstream::{DeliveryStream, JetStreamConfig, Names};
use hongbao_redis::{RedisGameLeases, RedisLedger, RedisNonceStore, RedisRoleStore};
use hongbao_store::{CampaignBinding, StoreError};

use crate::{DistributedClaims, DistributedLedger, JetStreamQueue, Sweeper, SweeperConfig};

/// Where the backend is and under which namespace this campaign's keys, stream and consumers
/// live (so a demo or a test never touches another's).
#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub redis_url: String,
    pub nats_url: String,
    pub namespace: String,
    pub jetstream: JetStreamConfig,
    pub sweeper: SweeperConfig,
    /// Claim shards asked for (see `hongbao_redis::keys`); `None` takes the campaign's stored
    /// layout, one shard for a new campaign.
    pub claim_shards: Option<u16>,
}

/// The distributed backend's adapters for one campaign.
pub struct Backend {
    pub ledger: Arc<RedisLedger>,
    /// The claim port: the script, then the publish.
    pub claims: Arc<DistributedClaims>,
    pub stream: Arc<DeliveryStream>,
    /// The role cache's shared second level.
    pub roles: Arc<RedisRoleStore>,
    /// Which worker delivers to which game.
    pub leases: Arc<RedisGameLeases>,
    /// The operator API's used nonces, for every node of the fleet.
    pub nonces: Arc<RedisNonceStore>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl Backend {
    /// Connects to Redis and NATS, and creates (or joins) the campaign's stream and consumers.
    /// Starts the claims' publisher: call inside a Tokio runtime.
    pub async fn connect(
        config: &BackendConfig,
        campaign: &Campaign,
    ) -> Result<Backend, StoreError> {
        let conn = hongbao_redis::connect(&config.redis_url).await?;
        let ns = &config.namespace;
        let ledger = Arc::new(
            RedisLedger::over(conn.clone(), ns, CampaignBinding::of(campaign), config.claim_shards)
                .await?,
        );
        let games: Vec<String> = campaign.games.iter().map(|g| g.id.clone()).collect();
        let names = Names::new(ns, &campaign.id, &games).map_err(jetstream_error)?;
        let stream = Arc::new(
            DeliveryStream::connect(&config.nats_url, names, config.jetstream.clone())
                .await
                .map_err(jetstream_error)?,
        );
        let claims = Arc::new(DistributedClaims::start(ledger.clone(), stream.clone()));
        let roles = Arc::new(RedisRoleStore::new(conn.clone(), ns, &campaign.id)?);
        let leases = Arc::new(RedisGameLeases::new(conn.clone(), ns, &campaign.id)?);
        let nonces = Arc::new(RedisNonceStore::new(conn, ns)?);
        Ok(Backend { ledger, claims, stream, roles, leases, nonces })
    }

    /// The delivery queue the workers lease from (starts its keep-alive task).
    pub fn queue(&self) -> JetStreamQueue {
        JetStreamQueue::new(self.ledger.clone(), self.stream.clone())
    }

    /// Reconciliation's ports over this backend.
    pub fn reconcile_ledger(&self) -> DistributedLedger {
        DistributedLedger::new(self.ledger.clone(), self.stream.clone())
    }

    /// Starts the sweeper that publishes orders a node recorded but did not get published.
    pub fn sweeper(
        &self,
        config: SweeperConfig,
        clock: SharedClock,
    ) -> Result<Sweeper, StoreError> {
        Sweeper::start(self.ledger.clone(), self.stream.clone(), config, clock)
    }
}

pub(crate) fn jetstream_error(e: hongbao_jetstream::JetStreamError) -> StoreError {
    match e {
        hongbao_jetstream::JetStreamError::InvalidConfig(m) => StoreError::InvalidConfig(m),
        hongbao_jetstream::JetStreamError::Unavailable(m) => StoreError::Unavailable(m),
    }
}
