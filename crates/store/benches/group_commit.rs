//! Throughput of the embedded store's group commit: concurrent grants and
//! claims against an `EmbeddedStore` in a temporary directory, each answered only after its
//! batch's fsync. Reported time is per operation (total wall time / operations), so at 64 tasks
//! it is the inverse of the throughput, not one caller's latency.
//!
//! Run: `cargo bench -p hongbao-store`. The store lives under `$HONGBAO_BENCH_DIR` if set, else the
//! system temp dir: put it on the disk you mean to measure (a tmpfs makes fsync free). After each
//! benchmark the writer's counters are printed: operations per fsync is the group commit's gain.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hongbao_domain::{Campaign, Coupon};
use hongbao_store::{
    CampaignBinding, Channel, ClaimLedger, ClaimOutcome, ClaimRequest, EmbeddedConfig,
    EmbeddedStats, EmbeddedStore, GrantLedger, GrantOutcome, GrantRequest,
};
use tokio::runtime::Runtime;

const CAMPAIGN: &str = include_str!("../../../config/spring-festival.toml");
/// Concurrent callers: 1 shows one fsync per operation, 64 what group commit makes of it.
const CONCURRENCY: [u64; 2] = [1, 64];
/// Claims go only to gifts with at least this much stock, so none runs out during a run.
const STOCK_MIN: u64 = 1_000_000;

struct Bench {
    campaign: Arc<Campaign>,
    store: Arc<EmbeddedStore>,
    runtime: Runtime,
    /// Every operation gets a fresh user, so no per-user limit is ever reached.
    next_user: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

fn setup() -> Bench {
    let campaign =
        Campaign::parse(CAMPAIGN, "spring-festival.toml", &|_| None).expect("shipped campaign");
    let parent =
        std::env::var_os("HONGBAO_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix("hongbao-bench-")
        .tempdir_in(&parent)
        .expect("temp dir for the store");
    let store = EmbeddedStore::open_with(
        dir.path(),
        EmbeddedConfig::default(),
        CampaignBinding::of(&campaign),
    )
    .expect("open store");
    let config = EmbeddedConfig::default();
    eprintln!(
        "store in {} (queue_max {}, batch_max {})",
        dir.path().display(),
        config.queue_max,
        config.batch_max
    );
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    Bench {
        campaign: Arc::new(campaign),
        store: Arc::new(store),
        runtime,
        next_user: Arc::new(AtomicU64::new(1)),
        _dir: dir,
    }
}

/// Runs `iters` operations split over `tasks` concurrent tasks; returns the wall time.
fn run<F, Fut>(b: &Bench, tasks: u64, iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    b.runtime.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let n = iters / tasks + u64::from(t < iters % tasks);
                let op = op.clone();
                let next_user = Arc::clone(&b.next_user);
                tokio::spawn(async move {
                    for _ in 0..n {
                        op(next_user.fetch_add(1, Ordering::Relaxed)).await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("benchmark task");
        }
        start.elapsed()
    })
}

fn report(name: &str, before: EmbeddedStats, after: EmbeddedStats) {
    let commands = after.commands - before.commands;
    let batches = after.batches - before.batches;
    let fsyncs = after.fsyncs - before.fsyncs;
    eprintln!(
        "{name}: {commands} commands, {batches} batches, {fsyncs} fsyncs: {:.1} commands/fsync, \
         {:.2} fsyncs/batch, largest batch so far {}",
        commands as f64 / fsyncs.max(1) as f64,
        fsyncs as f64 / batches.max(1) as f64,
        after.batch_len_max,
    );
}

fn group_commit(c: &mut Criterion) {
    let b = setup();
    let swipe = b.campaign.channel(Channel::Swipe).expect("swipe channel");
    let (per_user_limit, budget) = (swipe.coupons_per_user, swipe.budget);
    let gifts: Arc<Vec<usize>> = Arc::new(
        b.campaign
            .gifts
            .iter()
            .filter(|g| g.stock >= STOCK_MIN)
            .map(|g| usize::from(g.index.0))
            .collect(),
    );
    let now_ms = u64::try_from(b.campaign.starts_at_unix_s).expect("campaign after 1970") * 1_000
        + 86_400_000;

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for tasks in CONCURRENCY {
        let before = b.store.stats();
        g.bench_with_input(BenchmarkId::new("grant", tasks), &tasks, |bench, &tasks| {
            bench.iter_custom(|iters| {
                let store = Arc::clone(&b.store);
                run(&b, tasks, iters, move |user| {
                    let store = Arc::clone(&store);
                    async move {
                        let req =
                            GrantRequest { user, channel: Channel::Swipe, per_user_limit, budget };
                        let outcome = store.grant(req).await.expect("store available");
                        assert_eq!(black_box(outcome), GrantOutcome::Granted { serial: 1 });
                    }
                })
            })
        });
        report(&format!("store/grant/{tasks}"), before, b.store.stats());

        let before = b.store.stats();
        g.bench_with_input(BenchmarkId::new("claim", tasks), &tasks, |bench, &tasks| {
            bench.iter_custom(|iters| {
                let (store, campaign, gifts) =
                    (Arc::clone(&b.store), Arc::clone(&b.campaign), Arc::clone(&gifts));
                run(&b, tasks, iters, move |user| {
                    let (store, campaign, gifts) =
                        (Arc::clone(&store), Arc::clone(&campaign), Arc::clone(&gifts));
                    async move {
                        let gift = &campaign.gifts[gifts[(user % gifts.len() as u64) as usize]];
                        let coupon = Coupon {
                            campaign_id: campaign.id.clone(),
                            user,
                            channel: Channel::Swipe,
                            serial: 1,
                            expires_at_unix_s: campaign.ends_at_unix_s,
                        };
                        let req = ClaimRequest::new(
                            &campaign,
                            gift,
                            coupon,
                            hongbao_domain::ZoneId(3),
                            hongbao_domain::RoleId(4242),
                            now_ms,
                        );
                        let outcome = store.claim(req).await.expect("store available");
                        assert!(matches!(black_box(outcome), ClaimOutcome::Accepted(_)));
                    }
                })
            })
        });
        report(&format!("store/claim/{tasks}"), before, b.store.stats());
    }
    g.finish();

    let Bench { store, runtime, .. } = b;
    drop(runtime);
    Arc::into_inner(store).expect("benchmark tasks are done").close().expect("close store");
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
