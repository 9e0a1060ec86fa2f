//! A namespace's whole footprint on the servers, for whoever made it for a while — a demo, a
//! test: how many Redis keys it holds, and removing them with the campaign's stream.
//!
//! Every key of a namespace starts with `<ns>:` (`hongbao_redis`'s key layout puts the namespace
//! first, outside any hash tag, and refuses glob characters in it), so `SCAN MATCH <ns>:*` finds
//! exactly them. Never pointed at a deployment's namespace: nothing here asks whether anyone
//! still uses it.

use hongbao_jetstream::{DeliveryStream, Names};
use hongbao_store::{CampaignBinding, GameIndex, StoreError};
use redis::aio::ConnectionManager;

use crate::BackendConfig;

/// Keys asked for per `SCAN` step and deleted per `UNLINK`.
pub const NAMESPACE_SCAN_BATCH: usize = 1_000;

/// What [`remove_namespace`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub keys: u64,
    /// Whether the campaign's stream existed (and is now deleted).
    pub stream: bool,
}

/// How many Redis keys `namespace` holds at `redis_url`.
pub async fn namespace_keys(redis_url: &str, namespace: &str) -> Result<u64, StoreError> {
    hongbao_redis::check_namespace(namespace)?;
    let mut conn = hongbao_redis::connect(redis_url).await?;
    let mut count = 0;
    scan(&mut conn, namespace, |keys| {
        count += keys.len() as u64;
        async { Ok(()) }
    })
    .await?;
    Ok(count)
}

/// Deletes every Redis key of `config.namespace` and the stream (with its consumers and
/// messages) of `campaign` under it. Idempotent: what is already gone is not an error.
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
    let mut conn = hongbao_redis::connect(&config.redis_url).await?;
    let mut removed = Removed::default();
    let unlink = conn.clone();
    scan(&mut conn, namespace, |keys| {
        removed.keys += keys.len() as u64;
        let mut conn = unlink.clone();
        async move {
            redis::cmd("UNLINK").arg(&keys).query_async::<u64>(&mut conn).await.map(|_| ())
        }
    })
    .await?;
    removed.stream = DeliveryStream::remove(&config.nats_url, &names)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(removed)
}

/// Runs `each` on every batch of `namespace`'s keys: `SCAN` visits every key present for the
/// whole scan at least once, and a key seen twice is harmless to count or unlink again.
async fn scan<F, Fut>(
    conn: &mut ConnectionManager,
    namespace: &str,
    mut each: F,
) -> Result<(), StoreError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: Future<Output = redis::RedisResult<()>>,
{
    let pattern = format!("{namespace}:*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(NAMESPACE_SCAN_BATCH)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        if !keys.is_empty() {
            each(keys).await.map_err(unavailable)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}
