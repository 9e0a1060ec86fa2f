//! A namespace's whole footprint on the servers, for whoever made it for a while — a demo, a
//! test: how many Redis keys it holds, and removing them with the campaign's stream.
//!
//! Every key of a namespace starts with `<ns>:` (`hongbao_redis`'s key layout puts the namespace
//! first, outside any hash tag, and refuses glob characters in it), so `SCAN MATCH <ns>:*` finds
//! exactly them. Never pointed at a deployment's namespace: nothing here asks whether anyone
//! still uses it.

use hongbao_jetstream::{DeliveryStream, Names};
use hongbao_store::{CampaignBinding, GameIndex, StoreError};

use crate::BackendConfig;

/// What [`remove_namespace`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub keys: u64,
    /// Whether the campaign's stream existed (and is now deleted).
    pub stream: bool,
}

/// How many Redis keys `namespace` holds at `redis_url` (on every master of a cluster).
pub async fn namespace_keys(redis_url: &str, namespace: &str) -> Result<u64, StoreError> {
    hongbao_redis::check_namespace(namespace)?;
    let conn = hongbao_redis::connect(redis_url).await?;
    let mut scan = conn.scan(&format!("{namespace}:*")).await?;
    let mut count = 0;
    while let Some(keys) = scan.next_page().await? {
        count += keys.len() as u64;
    }
    Ok(count)
}

/// Deletes every Redis key of `config.namespace` (on every master of a cluster) and the stream
/// (with its consumers and messages) of `campaign` under it. Idempotent: what is already gone is
/// not an error.
pub async fn remove_namespace(
    config: &BackendConfig,
    campaign: &CampaignBinding,
) -> Result<Removed, StoreError> {
    let namespace = &config.namespace;
    hongbao_redis::check_namespace(namespace)?;
    let games: Vec<String> = (0..campaign.games())
        .filter_map(|i| u8::try_from(i).ok())
        .filter_map(|i| campaign.game_id(GameIndex(i)).map(str::to_string))
        .collect();
    let names = Names::new(namespace, campaign.campaign_id(), &games)
        .map_err(|e| StoreError::InvalidConfig(e.to_string()))?;
    let conn = hongbao_redis::connect(&config.redis_url).await?;
    let keys = conn.delete_namespace(namespace).await?;
    let stream = DeliveryStream::remove(&config.nats_url, &names)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(Removed { keys, stream })
}
