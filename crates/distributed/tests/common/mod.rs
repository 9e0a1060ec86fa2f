//! What the distributed tests share: whether Redis and NATS answer (skip outside CI, fail in
//! CI), a random namespace per test whose Redis keys and JetStream stream are deleted when the
//! test ends (also on panic), and the campaign binding of the tests.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hongbao_domain::{Channel, Coupon, GameIndex, GiftIndex, RoleId, ZoneId};
use hongbao_jetstream::{DeliveryStream, JetStreamConfig, Names};
use hongbao_redis::RedisLedger;
use hongbao_store::{CampaignBinding, ClaimRequest};
use rand::{Rng, SeedableRng};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// A clock reading in 2027.
pub const NOW_MS: u64 = 1_800_000_000_000;
/// Polls of 50 ms before a test gives up waiting for something that takes milliseconds (or an
/// ack wait of a second or two): a liveness bound, never a timing assertion.
pub const LIVENESS_POLLS: usize = 1_200;

fn answers(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("an address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether both services answer; outside CI a test that gets `false` says it skipped.
pub fn services_answer() -> bool {
    let up = answers("127.0.0.1:6379") && answers("127.0.0.1:4222");
    if !up {
        assert!(std::env::var_os("CI").is_none(), "Redis or NATS missing, and CI is set");
        println!("skipped: Redis (6379) or NATS (4222) does not answer");
    }
    up
}

/// A test's Redis ledger and JetStream stream under a fresh namespace; both deleted on drop.
pub struct Env {
    pub namespace: String,
    pub ledger: Arc<RedisLedger>,
    pub stream: Arc<DeliveryStream>,
}

impl Env {
    pub async fn new(binding: CampaignBinding, config: JetStreamConfig) -> Env {
        Env::with_shards(binding, config, None).await
    }

    /// An environment whose campaign's claims are split into `shards` claim shards (`None`:
    /// the stored layout, one for a new namespace).
    pub async fn with_shards(
        binding: CampaignBinding,
        config: JetStreamConfig,
        shards: Option<u16>,
    ) -> Env {
        let namespace =
            format!("hbtest-{:016x}", rand::rngs::StdRng::from_os_rng().random::<u64>());
        let games: Vec<String> = (0..binding.games())
            .map(|i| binding.game_id(GameIndex(i as u8)).expect("a game").to_string())
            .collect();
        let names = Names::new(&namespace, binding.campaign_id(), &games).expect("names");
        let conn = hongbao_redis::connect(REDIS_URL).await.expect("redis");
        let ledger = RedisLedger::over(conn, &namespace, binding, shards).await.expect("redis");
        let stream = DeliveryStream::connect(NATS_URL, names, config).await.expect("jetstream");
        Env { namespace, ledger: Arc::new(ledger), stream: Arc::new(stream) }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Err(e) = delete_keys(&self.namespace) {
            eprintln!("could not delete the keys of {}: {e}", self.namespace);
        }
        let stream = self.stream.names().stream();
        // The drop may run on a runtime thread: delete from a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let client = async_nats::connect(NATS_URL).await?;
                async_nats::jetstream::new(client).delete_stream(stream).await?;
                Ok::<_, async_nats::Error>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not delete the stream of {}", self.namespace);
        }
    }
}

fn delete_keys(namespace: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(REDIS_URL)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query::<u64>(&mut conn)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Two games, three gifts (`a`, `b` of `g1`, `c` of `g2`).
pub fn binding() -> CampaignBinding {
    CampaignBinding::new(
        "spring",
        vec!["g1".into(), "g2".into()],
        vec![("a".into(), GameIndex(0)), ("b".into(), GameIndex(0)), ("c".into(), GameIndex(1))],
    )
    .expect("a valid binding")
}

/// A claim of `gift` with `user`'s first swipe coupon, plenty of stock.
pub fn claim_req(user: u64, gift: u16, now_ms: u64) -> ClaimRequest {
    ClaimRequest {
        high_value: None,
        coupon: Coupon {
            campaign_id: "spring".into(),
            user,
            channel: Channel::Swipe,
            serial: 1,
            expires_at_unix_s: i64::MAX,
        },
        gift: GiftIndex(gift),
        zone_id: ZoneId(1),
        role_id: RoleId(user),
        stock: 1_000_000,
        per_user_limit: 1,
        now_ms,
        deliver_by_ms: now_ms + 48 * 3600 * 1000,
        idempotency: None,
    }
}

/// Waits (a liveness bound) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..LIVENESS_POLLS {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}
