//! What the Redis tests share: whether Redis answers, a random namespace per test, and the
//! clean-up of that namespace (SERVICES.md: never flush, delete only what the test created).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hongbao_domain::{Channel, Coupon, GameIndex, GiftIndex, RoleId, ZoneId};
use hongbao_redis::RedisLedger;
use hongbao_store::{CampaignBinding, ClaimRequest};
use rand::{Rng, SeedableRng};

pub const REDIS_ADDR: &str = "127.0.0.1:6379";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// A clock reading in 2027, as the store's tests use.
pub const NOW_MS: u64 = 1_800_000_000_000;
/// Keys deleted per `DEL` when cleaning up.
const DEL_BATCH_MAX: usize = 500;

/// Whether Redis answers at [`REDIS_ADDR`]. When it does not, a test says it skipped and
/// returns — except under CI (the variable `CI` is set), which must run these tests: there the
/// absence is a failure.
pub fn redis_answers() -> bool {
    let addr: SocketAddr = REDIS_ADDR.parse().expect("an address");
    let answers = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        && redis::Client::open(REDIS_URL)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok();
    if !answers {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Redis at {REDIS_ADDR}, and CI is set: CI must run the Redis tests (.ci/run starts it)"
        );
        println!("skipped: no Redis at {REDIS_ADDR}");
    }
    answers
}

/// A namespace no other test (or test binary) uses, and its clean-up: every key under it is
/// deleted when the returned guard drops, also when the test panics.
pub fn namespace() -> (String, Cleanup) {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let namespace = format!("hbtest-{:016x}", rng.random::<u64>());
    (namespace.clone(), Cleanup(namespace))
}

pub struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = delete_namespace(&self.0) {
            eprintln!("could not delete the keys of namespace {}: {e}", self.0);
        }
    }
}

/// `SCAN MATCH <ns>:*` and `DEL`, on a plain synchronous connection (a guard's drop may run
/// outside any runtime).
pub fn delete_namespace(namespace: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(REDIS_URL)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let pattern = format!("{namespace}:*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        for batch in keys.chunks(DEL_BATCH_MAX) {
            redis::cmd("DEL").arg(batch).query::<u64>(&mut conn)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// How many keys the namespace holds.
pub fn keys_in(namespace: &str) -> usize {
    let client = redis::Client::open(REDIS_URL).expect("url");
    let mut conn = client.get_connection().expect("connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(&mut conn)
        .expect("KEYS on a test instance");
    keys.len()
}

/// The campaign of these tests: two games, three gifts (`a`, `b` of `g1`, `c` of `g2`).
pub fn binding() -> CampaignBinding {
    CampaignBinding::new(
        "spring",
        vec!["g1".into(), "g2".into()],
        vec![("a".into(), GameIndex(0)), ("b".into(), GameIndex(0)), ("c".into(), GameIndex(1))],
    )
    .expect("a valid binding")
}

pub async fn connect(namespace: &str) -> RedisLedger {
    RedisLedger::connect(REDIS_URL, namespace, binding()).await.expect("connect to Redis")
}

/// A ledger whose campaign's claims are split into `shards` claim shards.
pub async fn connect_sharded(namespace: &str, shards: u16) -> RedisLedger {
    let conn = hongbao_redis::connect(REDIS_URL).await.expect("connect to Redis");
    RedisLedger::over(conn, namespace, binding(), Some(shards)).await.expect("a sharded ledger")
}

/// A claim of `gift` with `user`'s `serial`-th coupon of `channel`.
pub fn claim_req(
    user: u64,
    channel: Channel,
    serial: u32,
    gift: u16,
    stock: u64,
    per_user_limit: u32,
    now_ms: u64,
) -> ClaimRequest {
    ClaimRequest {
        coupon: Coupon {
            campaign_id: "spring".into(),
            user,
            channel,
            serial,
            expires_at_unix_s: i64::MAX,
        },
        gift: GiftIndex(gift),
        zone_id: ZoneId(1),
        role_id: RoleId(user),
        stock,
        per_user_limit,
        now_ms,
        deliver_by_ms: now_ms + 48 * 3600 * 1000,
        idempotency: None,
        high_value: None,
    }
}

/// Stock of claims both scenarios below use, and the claimants of the stock scenario.
pub const STOCK: u64 = 25;
pub const CLAIMS: u64 = 200;

/// Stock 25, 200 users over both nodes at once (one server or a cluster): exactly 25 orders, and
/// each node's count lags until it reads the others' effect, never running ahead. Run it on a
/// fresh namespace.
pub async fn claims_take_exactly_the_stock(nodes: &[std::sync::Arc<RedisLedger>; 2]) {
    use hongbao_store::{ClaimLedger, ClaimOutcome};
    let mut tasks = tokio::task::JoinSet::new();
    for user in 1..=CLAIMS {
        let node = std::sync::Arc::clone(&nodes[(user % 2) as usize]);
        tasks.spawn(async move {
            node.claim(claim_req(user, Channel::Swipe, 1, 0, STOCK, 1, NOW_MS)).await
        });
    }
    let (mut accepted, mut out_of_stock) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("the task ran").expect("redis answers") {
            ClaimOutcome::Accepted(_) => accepted += 1,
            ClaimOutcome::OutOfStock => out_of_stock += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((accepted, out_of_stock), (STOCK, CLAIMS - STOCK));
    for node in nodes {
        assert!(node.stock_taken(GiftIndex(0)) <= STOCK);
        node.refresh_counters().await.expect("redis answers");
        assert_eq!(node.stock_taken(GiftIndex(0)), STOCK);
        assert_eq!(node.stock_taken(GiftIndex(1)), 0);
    }
    let mut orders = 0;
    for user in 1..=CLAIMS {
        orders += nodes[0].orders_of(user, 10).await.expect("read").len() as u64;
    }
    assert_eq!(orders, STOCK);
}

/// One coupon of user 9,000 claimed for each of three gifts at once, 30 times over both nodes:
/// one order, which every claim names, and one unit of stock taken for it.
pub async fn one_coupon_is_redeemed_once(nodes: &[std::sync::Arc<RedisLedger>; 2]) {
    use hongbao_store::{ClaimLedger, ClaimOutcome};
    const USER: u64 = 9_000;
    let taken = || -> u64 { (0..3).map(|g| nodes[0].stock_taken(GiftIndex(g))).sum() };
    nodes[0].refresh_counters().await.expect("redis answers");
    let taken_before = taken();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30u16 {
        let node = std::sync::Arc::clone(&nodes[usize::from(i % 2)]);
        tasks.spawn(async move {
            node.claim(claim_req(USER, Channel::ArMap, 1, i % 3, 1_000, 5, NOW_MS)).await
        });
    }
    let mut orders = Vec::new();
    let mut accepted = 0;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("the task ran").expect("redis answers");
        if matches!(outcome, ClaimOutcome::Accepted(_)) {
            accepted += 1;
        }
        orders.push(outcome.order().expect("every claim names the one order").clone());
    }
    assert_eq!(accepted, 1);
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one order: {orders:?}");
    assert_eq!(nodes[1].orders_of(USER, 10).await.expect("read").len(), 1);
    nodes[0].refresh_counters().await.expect("redis answers");
    assert_eq!(taken() - taken_before, 1, "one unit of stock for the one order");
}
