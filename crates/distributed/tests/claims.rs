//! Claims over Redis then JetStream, and the sweeper, against the machine's services.

mod common;

use common::{Env, NOW_MS, binding, claim_req, eventually, services_answer};
use futures_util::future::join_all;
use hongbao_clock::ManualClock;
use hongbao_distributed::{DistributedClaims, Sweeper, SweeperConfig, sweep_once};
use hongbao_jetstream::{JetStreamConfig, Outgoing};
use hongbao_store::{ClaimLedger, ClaimOutcome};

#[tokio::test]
async fn concurrent_claims_are_published_once_each_and_marked_published() {
    if !services_answer() {
        return;
    }
    const CLAIMS: u64 = 300;
    let env = Env::new(binding(), JetStreamConfig::default()).await;
    let claims = DistributedClaims::start(env.ledger.clone(), env.stream.clone());
    let outcomes =
        join_all((0..CLAIMS).map(|u| claims.claim(claim_req(u, (u % 3) as u16, NOW_MS)))).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(ClaimOutcome::Accepted(_)))), "{outcomes:?}");

    // The same claims again replay their orders and publish nothing.
    let replays =
        join_all((0..10).map(|u| claims.claim(claim_req(u, (u % 3) as u16, NOW_MS)))).await;
    assert!(replays.iter().all(|o| matches!(o, Ok(ClaimOutcome::Replayed(_)))));

    let ledger = env.ledger.clone();
    eventually("every accepted order marked published", || {
        let ledger = ledger.clone();
        async move { ledger.unpublished_count().await.expect("zcard") == 0 }
    })
    .await;
    let (g1, g2) = (env.stream.pending(0).await.unwrap(), env.stream.pending(1).await.unwrap());
    assert_eq!(g1.0 + g2.0, CLAIMS, "one message per accepted order");
    assert_eq!(g2.0, CLAIMS / 3, "gift c's orders on g2's subject");
    let stats = claims.publisher_stats();
    eprintln!("{stats:?}: {} publishes per acknowledged batch", stats.published / stats.batches);
    assert_eq!((stats.published, stats.failed), (CLAIMS, 0), "one publish per accepted claim");
    claims.shutdown().await;
}

#[tokio::test]
async fn an_order_recorded_but_never_published_is_published_by_the_sweeper_exactly_once() {
    if !services_answer() {
        return;
    }
    let env = Env::new(binding(), JetStreamConfig::default()).await;
    // The script alone, as if the API node died between it and the publish.
    let ClaimOutcome::Accepted(order) = env.ledger.claim(claim_req(7, 2, NOW_MS)).await.unwrap()
    else {
        panic!("accepted");
    };
    assert_eq!(env.ledger.unpublished_count().await.unwrap(), 1);

    let config = SweeperConfig::default();
    config.validate(env.stream.config().dedup_window_ms).expect("valid");
    let early = sweep_once(&env.ledger, &env.stream, &config, NOW_MS + config.grace_ms - 1).await;
    assert_eq!(early.unwrap().found, 0, "within the grace period a live claim may still publish");

    let later = NOW_MS + config.grace_ms + 1;
    let pass = sweep_once(&env.ledger, &env.stream, &config, later).await.unwrap();
    assert_eq!((pass.found, pass.published, pass.duplicates, pass.failed), (1, 1, 0, 0));
    assert_eq!(env.ledger.unpublished_count().await.unwrap(), 0, "marked published");
    let pass = sweep_once(&env.ledger, &env.stream, &config, later).await.unwrap();
    assert_eq!(pass.found, 0, "nothing left to sweep");

    // A publish that succeeded but whose mark was lost: the sweeper's publish is a duplicate.
    let again = Outgoing {
        game: 1,
        msg_id: order.id.as_str().to_string(),
        payload: order.id.as_str().as_bytes().to_vec().into(),
    };
    assert!(env.stream.publish_all(&[again]).await[0].clone().unwrap().duplicate);

    let messages = env.stream.fetch(1, 10).await.unwrap();
    assert_eq!(messages.len(), 1, "one message for the order");
    assert_eq!(messages[0].payload.as_ref(), order.id.as_str().as_bytes());
}

#[tokio::test]
async fn the_sweeper_refuses_a_grace_the_dedup_window_does_not_cover() {
    let config = SweeperConfig { grace_ms: 300_000, ..SweeperConfig::default() };
    assert!(config.validate(600_000).is_err());
    assert!(SweeperConfig::default().validate(600_000).is_ok());
    assert!(SweeperConfig { batch_max: 0, ..SweeperConfig::default() }.validate(600_000).is_err());
}

#[tokio::test]
async fn the_sweeper_task_publishes_orphans_on_its_clock_and_stops_on_shutdown() {
    if !services_answer() {
        return;
    }
    let env = Env::new(binding(), JetStreamConfig::default()).await;
    for user in 1..=3 {
        env.ledger.claim(claim_req(user, 0, NOW_MS)).await.expect("the script alone");
    }
    let clock = ManualClock::new(NOW_MS);
    let config = SweeperConfig::default();
    let sweeper =
        Sweeper::start(env.ledger.clone(), env.stream.clone(), config.clone(), clock.clone())
            .expect("start");
    let ledger = env.ledger.clone();
    // Passes run every interval on the manual clock; only past the grace do they find work.
    eventually("the orphans published", || {
        clock.advance_ms(config.interval_ms);
        let ledger = ledger.clone();
        async move { ledger.unpublished_count().await.expect("zcard") == 0 }
    })
    .await;
    sweeper.shutdown().await;
    assert_eq!(env.stream.pending(0).await.unwrap(), (3, 0), "three orders, one message each");
}
