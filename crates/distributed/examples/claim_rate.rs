//! Claims/s on the local Redis, by the script alone and by the distributed claim path (script,
//! batched publish to the local NATS, mark published), with `CONCURRENCY` claims in flight; and
//! the publishes per acknowledged batch. Uses a throw-away namespace, deleted afterwards.
//! `cargo run -p hongbao-distributed --example claim_rate [N]` (default 20000 each way).

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use hongbao_distributed::DistributedClaims;
use hongbao_domain::{Channel, Coupon, GameIndex, GiftIndex, RoleId, ZoneId};
use hongbao_jetstream::{DeliveryStream, JetStreamConfig, Names};
use hongbao_redis::RedisLedger;
use hongbao_store::{CampaignBinding, ClaimLedger, ClaimRequest};

const CONCURRENCY: usize = 256;
const NOW_MS: u64 = 1_800_000_000_000;

fn request(user: u64) -> ClaimRequest {
    ClaimRequest {
        high_value: None,
        coupon: Coupon {
            campaign_id: "rate".into(),
            user,
            channel: Channel::Swipe,
            serial: 1,
            expires_at_unix_s: i64::MAX,
        },
        gift: GiftIndex(0),
        zone_id: ZoneId(1),
        role_id: RoleId(user),
        stock: u64::MAX,
        per_user_limit: 1,
        now_ms: NOW_MS,
        deliver_by_ms: NOW_MS + 1,
        idempotency: None,
    }
}

async fn run<L: ClaimLedger>(ledger: &L, users: std::ops::Range<u64>) -> f64 {
    let n = users.end - users.start;
    let started = Instant::now();
    let users: Vec<u64> = users.collect();
    for chunk in users.chunks(CONCURRENCY) {
        for outcome in join_all(chunk.iter().map(|&u| ledger.claim(request(u)))).await {
            outcome.expect("claim");
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let ns = format!("hbbench-{}", std::process::id());
    let binding =
        CampaignBinding::new("rate", vec!["g1".into()], vec![("a".into(), GameIndex(0))])?;
    let ledger = Arc::new(RedisLedger::connect("redis://127.0.0.1:6379", &ns, binding).await?);
    let names = Names::new(&ns, "rate", &["g1".into()])?;
    let stream = Arc::new(
        DeliveryStream::connect("nats://127.0.0.1:4222", names, JetStreamConfig::default()).await?,
    );

    let script = run(&*ledger, 0..n).await;
    let claims = DistributedClaims::start(ledger.clone(), stream.clone());
    let full = run(&claims, n..2 * n).await;
    let stats = claims.publisher_stats();
    claims.shutdown().await;
    println!(
        "{n} claims, {CONCURRENCY} in flight: script alone {script:.0}/s; script + publish + mark \
         {full:.0}/s; {:.1} publishes per acknowledged batch",
        stats.published as f64 / stats.batches.max(1) as f64
    );

    stream.delete().await?;
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{ns}:*")).query_async(&mut conn).await?;
    for chunk in keys.chunks(500) {
        redis::cmd("DEL").arg(chunk).query_async::<u64>(&mut conn).await?;
    }
    Ok(())
}
