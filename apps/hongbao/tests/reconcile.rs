//! `hongbao reconcile` end to end on data from `hongbao bench seed-orders`: the summary agrees
//! with what was seeded, `--apply` is idempotent, and a locked store is refused clearly; and
//! `hongbao reconcile --redis --nats` on a fleet's Redis and JetStream (skipped, saying so,
//! without them outside CI).

mod support;

use std::path::Path;
use std::process::Command;

use hongbao_store::{CampaignBinding, EmbeddedConfig, EmbeddedStore};
use support::services::{NATS_URL, Namespace, REDIS_URL, services_answer};
use support::{BIN, campaign_path, run_ok};

/// The numbers of the seed's last line: "... N delivered (L lost at the game), Q queued (U in
/// the game log: unrecorded) ...".
fn seeded(line: &str) -> (u64, u64, u64, u64) {
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|w| w.parse::<u64>().ok())
        .collect();
    // orders, delivered, lost, queued, unrecorded (the elapsed seconds have a dot: skipped).
    assert!(numbers.len() >= 5, "{line}: {numbers:?}");
    (numbers[1], numbers[2], numbers[3], numbers[4])
}

fn summary(data: &Path, out: &str, extra: &[&str]) -> serde_json::Value {
    let config = campaign_path();
    let out = data.join(out);
    let mut args = vec![
        "reconcile",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--data",
        data.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--json",
    ];
    let log = data.join("game.log");
    args.extend(["--game-log", log.to_str().expect("utf-8 path")]);
    args.extend(extra);
    let stdout = run_ok(&args);
    serde_json::from_str(&stdout).expect("summary JSON")
}

#[test]
fn seeded_faults_are_found_applied_once_and_a_running_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = campaign_path();
    let config = config.to_str().unwrap();
    let out = run_ok(&[
        "bench",
        "seed-orders",
        "--config",
        config,
        "--data",
        data.to_str().unwrap(),
        "--orders",
        "3000",
        "--queued-share",
        "0.05",
        "--lost-share",
        "0.01",
        "--unrecorded-share",
        "0.2",
    ]);
    let (delivered, lost, queued, unrecorded) = seeded(out.lines().last().unwrap());
    assert_eq!(delivered + queued, 3000, "{out}");
    assert!(lost > 0 && unrecorded > 0, "{out}");

    let first = summary(&data, "first", &[]);
    assert_eq!(first["classes"]["lost_at_game"], lost);
    assert_eq!(first["classes"]["delivered_unrecorded"], unrecorded);
    assert_eq!(
        (first["resend"].as_u64(), first["record"].as_u64()),
        (Some(lost), Some(unrecorded))
    );
    assert_eq!(first["quiet"]["pending"], queued - unrecorded);
    assert_eq!(first["clean"], false);
    let resend = std::fs::read_to_string(data.join("first/resend.jsonl")).unwrap();
    assert_eq!(resend.lines().count() as u64, lost);
    let csv = std::fs::read_to_string(data.join("first/resend.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, lost + 1);
    let anomalies = std::fs::read_to_string(data.join("first/anomalies.jsonl")).unwrap();
    assert_eq!(anomalies.lines().count() as u64, unrecorded);

    // Apply refuses, changing nothing, a game log that does not cover the deliveries (an
    // empty one "lost" them all) and a share of re-deliveries above the stated one.
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let log = data.join("game.log");
    for (game_log, share, says) in
        [(&empty, "1", "does not cover"), (&log, "0.001", "delivered orders again")]
    {
        let refused = Command::new(BIN)
            .args(["reconcile", "--config", config, "--data", data.to_str().unwrap(), "--apply"])
            .args(["--game-log", game_log.to_str().unwrap(), "--max-requeue-share", share])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!refused.status.success(), "{share}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says) && stderr.contains("--force"), "{stderr}");
    }
    let unchanged = summary(&data, "unchanged", &[]);
    assert_eq!(unchanged["classes"], first["classes"], "a refused apply changed something");
    assert_eq!(unchanged["quiet"], first["quiet"]);

    let applied = summary(&data, "apply", &["--apply"]);
    assert_eq!(applied["applied"]["requeued"], lost);
    assert_eq!(applied["applied"]["recorded"], unrecorded);
    let again = summary(&data, "again", &["--apply"]);
    assert_eq!((again["resend"].as_u64(), again["record"].as_u64()), (Some(0), Some(0)));
    assert_eq!(again["applied"]["requeued"], 0);
    assert_eq!(again["quiet"]["pending"], queued - unrecorded + lost);
    // The reviewed list applied again: everything on it is already queued.
    let list = data.join("first/resend.jsonl");
    let tally = run_ok(&[
        "reconcile",
        "--config",
        config,
        "--data",
        data.to_str().unwrap(),
        "--apply-list",
        list.to_str().unwrap(),
    ]);
    let tally: serde_json::Value = serde_json::from_str(&tally).unwrap();
    assert_eq!((tally["unchanged"].as_u64(), tally["requeued"].as_u64()), (Some(lost), Some(0)));

    // The table by default, and files under DATA/reconcile/ when no --out is given.
    let table = run_ok(&["reconcile", "--config", config, "--data", data.to_str().unwrap()]);
    assert!(table.contains("lost_at_game") && table.contains("resend list"), "{table}");
    assert_eq!(std::fs::read_dir(data.join("reconcile")).unwrap().count(), 1);

    // A running node holds the store's lock: the CLI says to use the admin endpoint.
    let path = campaign_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let campaign =
        hongbao_domain::Campaign::parse(&text, &path.display().to_string(), &|_| None).unwrap();
    let store = EmbeddedStore::open_with(
        &data.join("store"),
        EmbeddedConfig::default(),
        CampaignBinding::of(&campaign),
    )
    .unwrap();
    let refused = Command::new(BIN)
        .args(["reconcile", "--config", config, "--data", data.to_str().unwrap()])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("the node is running: use the admin endpoint"), "{stderr}");
    store.close().unwrap();
}

/// Four orders claimed on a fleet and delivered through JetStream; the game's log lacks one.
/// Returns the lost order.
async fn seed_fleet(campaign: &hongbao_domain::Campaign, namespace: &str) -> hongbao_domain::Order {
    use hongbao_clock::Clock;
    use hongbao_queue::{DeliveryQueue, FinalState, Finish};
    use hongbao_store::{ClaimLedger, ClaimOutcome, ClaimRequest};

    let config = hongbao_distributed::BackendConfig {
        redis_url: REDIS_URL.into(),
        nats_url: NATS_URL.into(),
        namespace: namespace.into(),
        jetstream: Default::default(),
        sweeper: Default::default(),
        claim_shards: None,
    };
    let backend = hongbao_distributed::Backend::connect(&config, campaign).await.expect("fleet");
    let now = hongbao_clock::SystemClock.now_ms();
    let mut orders = Vec::new();
    for user in 1..=4u64 {
        let coupon = hongbao_domain::Coupon {
            campaign_id: campaign.id.clone(),
            user,
            channel: hongbao_domain::Channel::Swipe,
            serial: 1,
            expires_at_unix_s: i64::MAX,
        };
        let gift = &campaign.gifts[user as usize % campaign.gifts.len()];
        let zone = hongbao_domain::ZoneId(1);
        let mut req =
            ClaimRequest::new(campaign, gift, coupon, zone, hongbao_domain::RoleId(user), now);
        // Test data, not a campaign: no limit gets in the way.
        (req.stock, req.per_user_limit, req.high_value) = (u64::MAX, u32::MAX, None);
        match backend.claims.claim(req).await.expect("claim") {
            ClaimOutcome::Accepted(order) => orders.push(*order),
            other => panic!("{other:?}"),
        }
    }
    let queue = backend.queue();
    let mut delivered = 0;
    for _ in 0..1_200 {
        for game in &campaign.games {
            for entry in queue.lease(game.index, 100, now).await.expect("lease") {
                let done = Finish { state: FinalState::Delivered { duplicate: false }, at_ms: now };
                queue.finish(entry, done).await.expect("finish");
                delivered += 1;
            }
        }
        if delivered == orders.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, orders.len(), "every order delivered");
    let log: String = orders[..3]
        .iter()
        .map(|o| {
            format!(
                "{{\"serial\":\"{}\",\"game\":\"{}\",\"user\":{},\"applied_at_ms\":{now}}}\n",
                o.id, o.game_id, o.user
            )
        })
        .collect();
    std::fs::write(std::env::temp_dir().join(format!("{namespace}.log")), log).expect("log");
    orders[3].clone()
}

#[test]
fn a_fleet_is_reconciled_from_the_cli() {
    if !services_answer() {
        return;
    }
    let path = campaign_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let campaign =
        hongbao_domain::Campaign::parse(&text, &path.display().to_string(), &|_| None).unwrap();
    let ns = Namespace::new("hbrec", &campaign);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lost = rt.block_on(seed_fleet(&campaign, &ns.name));
    let dir = tempfile::tempdir().unwrap();
    let log = std::env::temp_dir().join(format!("{}.log", ns.name));
    let config = path.to_str().unwrap();
    let fleet = |out: &str, extra: &[&str]| -> std::process::Output {
        let out = dir.path().join(out);
        Command::new(BIN)
            .args(["reconcile", "--config", config, "--redis", REDIS_URL, "--nats", NATS_URL])
            .args(["--namespace", &ns.name, "--game-log", log.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--json"])
            .args(extra)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let json = |output: std::process::Output| -> serde_json::Value {
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{stderr}");
        serde_json::from_slice(&output.stdout).expect("summary JSON")
    };

    let dry = json(fleet("dry", &[]));
    assert_eq!((dry["orders_scanned"].as_u64(), dry["resend"].as_u64()), (Some(4), Some(1)));
    assert_eq!(dry["classes"]["lost_at_game"], 1);
    assert_eq!(dry["refusal"]["code"], "requeue_share_exceeded", "{dry}");
    let resend = std::fs::read_to_string(dir.path().join("dry/resend.jsonl")).unwrap();
    assert!(resend.contains(lost.id.as_str()), "{resend}");

    let refused = fleet("refused", &["--apply"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("delivered orders again") && stderr.contains("--force"), "{stderr}");

    let applied = json(fleet("apply", &["--apply", "--max-requeue-share", "0.5"]));
    assert_eq!(applied["applied"]["requeued"], 1, "{applied}");
    let again = json(fleet("again", &["--apply", "--max-requeue-share", "0.5"]));
    assert_eq!(
        (again["resend"].as_u64(), again["applied"]["requeued"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(again["quiet"]["pending"], 1, "the lost order waits for its worker: {again}");
    // The reviewed list applied again: its order is already queued.
    let list = dir.path().join("dry/resend.jsonl");
    let tally = run_ok(&[
        "reconcile",
        "--config",
        config,
        "--redis",
        REDIS_URL,
        "--nats",
        NATS_URL,
        "--namespace",
        &ns.name,
        "--apply-list",
        list.to_str().unwrap(),
    ]);
    let tally: serde_json::Value = serde_json::from_str(&tally).unwrap();
    assert_eq!((tally["unchanged"].as_u64(), tally["requeued"].as_u64()), (Some(1), Some(0)));
    let _ = std::fs::remove_file(&log);
}
