//! The binary end to end: gen agrees with game-sim, catalog builds are reproducible, the demo
//! serves, bad input gets clear errors.

mod support;

use std::collections::HashMap;
use std::process::Command;

use hongbao_domain::profile::read_roles;
use hongbao_domain::synth::region_of_zone;
use support::{BIN, Running, campaign_path, get_json, run_ok, spawn_sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_files_agree_with_the_simulator_for_the_same_seed() {
    let dir = tempfile::tempdir().unwrap();
    let config = campaign_path();
    let config = config.to_str().unwrap();
    let out = dir.path().to_str().unwrap();
    let users = 3_000u64;
    run_ok(&[
        "gen",
        "--config",
        config,
        "--users",
        &users.to_string(),
        "--out",
        out,
        "--seed",
        "7",
    ]);

    // Every stored role (zone, role id, level), by (user, game index).
    type Roles = Vec<(u16, u64, u32)>;
    let mut stored: HashMap<(u64, u8), Roles> = HashMap::new();
    let file = std::fs::File::open(dir.path().join("roles.bin")).unwrap();
    let (seed, count) = read_roles(std::io::BufReader::new(file), |user, roles| {
        for r in roles {
            stored.entry((user, r.game.0)).or_default().push((
                u16::from(r.zone_id),
                r.role_id,
                u32::from(r.level),
            ));
        }
    })
    .unwrap();
    assert_eq!((seed, count), (7, users));

    let (_sim, base) = spawn_sim(7, users, &[]);
    let client = reqwest::Client::new();
    let path = campaign_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let campaign =
        hongbao_domain::Campaign::parse(&text, &path.display().to_string(), &|_| None).unwrap();
    let mut compared_roles = 0;
    // Every 7th user over the whole range and every game: registered or not, both sides agree.
    for user in (10_000..10_000 + users).step_by(7) {
        for game in &campaign.games {
            let body =
                get_json(&client, &format!("{base}/idip/v1/roles?user={user}&game={}", game.id))
                    .await;
            let answered: Roles = body["roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let zone = r["zone_id"].as_u64().unwrap() as u16;
                    assert_eq!(r["region"].as_str(), region_of_zone(zone));
                    (zone, r["role_id"].as_u64().unwrap(), r["level"].as_u64().unwrap() as u32)
                })
                .collect();
            let expected = stored.get(&(user, game.index.0)).cloned().unwrap_or_default();
            compared_roles += expected.len();
            assert_eq!(answered, expected, "user {user} game {}", game.id);
        }
    }
    assert!(compared_roles > 500, "too few roles compared: {compared_roles}");
}

#[test]
fn catalog_build_is_reproducible_and_private() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let config = campaign_path();
    for dir in [&a, &b] {
        run_ok(&[
            "catalog",
            "build",
            "--config",
            config.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ]);
    }
    let mut names: Vec<_> =
        std::fs::read_dir(a.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in &names {
        let x = std::fs::read(a.path().join(name)).unwrap();
        let y = std::fs::read(b.path().join(name)).unwrap();
        assert_eq!(x, y, "{name:?} differs between two builds");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("manifest.json")).unwrap()).unwrap();
    let json_name = manifest["files"]["json"].as_str().unwrap();
    let json = std::fs::read_to_string(a.path().join(json_name)).unwrap();
    assert!(json.contains("lh-legend"));
    for secret in ["dev-only-change-me", "127.0.0.1:9100", "3000000", "\"stock\""] {
        assert!(!json.contains(secret), "catalog leaks {secret}");
    }
}

#[test]
fn bad_campaign_file_is_refused_with_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(campaign_path()).unwrap().replacen(
        "stock = 3000000",
        "stock = 0",
        1,
    );
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args([
            "catalog",
            "build",
            "--config",
            path.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.toml")
            && stderr.contains("gifts[0].stock")
            && stderr.contains("positive"),
        "{stderr}"
    );
    let missing = Command::new(BIN)
        .args(["gen", "--config", "/nonexistent.toml", "--users", "1", "--out", "/tmp/x"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.toml"));
}

/// Out-of-range node settings are refused with the flag and its range, before any data is made.
#[test]
fn serve_refuses_out_of_range_settings_before_touching_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = campaign_path();
    for (flag, value, says) in [
        ("--store-linger-ms", "1001", "0..=1000"),
        ("--store-batch-max", "0", "1..=65536"),
        ("--pacing-headroom", "1.5", "pacing_headroom"),
        ("--capacity-scale", "0", "capacity_scale"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--rehearsal", "--config", config.to_str().unwrap(), "--data"])
            .arg(&data)
            .args(["--addr", "127.0.0.1:0", "--role", "worker", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
    assert!(!data.exists(), "a refused setting created the data directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_health_and_catalog_with_no_files() {
    let data = tempfile::tempdir().unwrap();
    let mut demo = Running::spawn(&[
        "demo",
        "--addr",
        "127.0.0.1:0",
        "--users",
        "1000",
        "--no-load",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    let api = demo.wait_for_url("api ");
    let client = reqwest::Client::new();
    let health = client.get(format!("{api}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{api}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let manifest: serde_json::Value = client
        .get(format!("{api}/static/catalog/manifest.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file = manifest["files"]["json"].as_str().unwrap();
    let catalog = client.get(format!("{api}/static/catalog/{file}")).send().await.unwrap();
    assert_eq!(catalog.status(), 200);
    assert!(catalog.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    let body: serde_json::Value = catalog.json().await.unwrap();
    assert_eq!(body["gifts"].as_array().unwrap().len(), 26);
    assert!(data.path().join("profiles.bin").exists());
    let status = demo.terminate();
    assert!(status.success(), "demo exited with {status}");
}

/// `bench in-memory` (the benchmarks' claim path without its durable write) decides claims as
/// `serve` does: a new claim 202, the same claim again 200 with the same order, the coupon with
/// another gift 409. Otherwise its figures would not say what a claim costs without the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_in_memory_decides_claims_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let users = "500";
    let (_sim, sim_url) = spawn_sim(42, 500, &[]);
    let (config, campaign) = support::open_campaign_file(dir.path(), &sim_url, |text| text);
    let profiles = dir.path().join("profiles");
    let profiles = profiles.to_str().unwrap();
    run_ok(&["gen", "--config", &config, "--users", users, "--out", profiles, "--seed", "42"]);
    let claims = dir.path().join("claims.txt");
    let claims = claims.to_str().unwrap();
    run_ok(&["bench", "claims", "--config", &config, "--users", users, "--out", claims]);
    let mut api = Running::spawn(&[
        "bench",
        "in-memory",
        "--config",
        &config,
        "--profiles",
        profiles,
        "--addr",
        "127.0.0.1:0",
    ]);
    let url = api.wait_for_url("listening");

    let text = std::fs::read_to_string(claims).unwrap();
    let (ticket, body) = text.lines().next().unwrap().split_once('\t').unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        client.post(format!("{url}/v1/claims")).bearer_auth(ticket).json(&body).send()
    };
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = post(body.clone()).await.unwrap();
    assert_eq!(again.status(), 200);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["order_id"], first["order_id"]);

    let mut other = body.clone();
    other["gift_id"] = serde_json::json!(
        campaign.gifts.iter().map(|g| &g.id).find(|id| body["gift_id"] != id.as_str()).unwrap()
    );
    let conflict = post(other).await.unwrap();
    assert_eq!(conflict.status(), 409);
    let conflict: serde_json::Value = conflict.json().await.unwrap();
    assert_eq!(conflict["error"]["code"], "coupon_already_redeemed");
}

/// Reads the demo's stdout up to its walkthrough and returns the first line and the shell lines.
fn demo_walkthrough(demo: &mut Running) -> (String, Vec<String>) {
    use std::io::BufRead;
    let mut first = String::new();
    demo.stdout.read_line(&mut first).expect("read stdout");
    let mut line = String::new();
    loop {
        line.clear();
        assert!(demo.stdout.read_line(&mut line).expect("read stdout") > 0, "no walkthrough");
        if line.starts_with("Paste these lines into bash") {
            break;
        }
    }
    let mut lines = Vec::new();
    loop {
        line.clear();
        assert!(
            demo.stdout.read_line(&mut line).expect("read stdout") > 0,
            "the walkthrough never ends"
        );
        if line.trim().is_empty() {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    (first, lines)
}

/// The demo's printed lines, pasted into bash in order, claim a gift and find the order; a
/// restart on the same data keeps the campaign's clock.
#[test]
fn demo_walkthrough_runs_as_pasted_and_a_restart_keeps_the_clock() {
    let data = tempfile::tempdir().unwrap();
    let args = [
        "demo",
        "--addr",
        "127.0.0.1:0",
        "--users",
        "2000",
        "--no-load",
        "--data",
        data.path().to_str().unwrap(),
    ];
    let mut demo = Running::spawn(&args);
    let (first, lines) = demo_walkthrough(&mut demo);
    assert!(first.contains("clock new"), "{first}");
    assert!(lines.iter().any(|l| l.contains("POST") && l.contains("/idip/v1/roles")), "{lines:?}");
    let script = format!("set -euo pipefail\n{}\n", lines.join("\n"));
    let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the lines failed:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The claim's answer, then the order itself (found: its id, not a 404 error).
    let claim_line = stdout.lines().find(|l| l.contains("\"deliver_by\"")).unwrap_or_default();
    let claim: serde_json::Value = serde_json::from_str(claim_line).expect("the claim's answer");
    assert_eq!(claim["status"], "queued", "{stdout}");
    let order: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("the order");
    assert_eq!(order["order_id"], claim["order_id"], "{stdout}");
    assert!(demo.terminate().success());
    // The role the lines created is in the simulator's role log, which a restart replays.
    let roles = std::fs::read_to_string(data.path().join("game-created-roles.jsonl")).unwrap();
    assert_eq!(roles.lines().count(), 1, "{roles}");

    let mut again = Running::spawn(&args);
    let (first, _) = demo_walkthrough(&mut again);
    assert!(first.contains("clock kept"), "{first}");
    let opened_ago: i64 = first
        .split("opened ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("opened N s ago");
    assert!(opened_ago >= 60, "{first}");
    let kept = std::fs::read_to_string(data.path().join("demo-campaign-start")).unwrap();
    assert!(kept.trim().parse::<i64>().is_ok());
    assert!(again.terminate().success());
}

/// A taken port fails the demo before it generates anything, naming the address.
#[test]
fn demo_fails_fast_on_a_taken_port_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--addr", &addr, "--no-load", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr) && stderr.contains("--addr"), "{stderr}");
    assert!(!data.path().join("profiles.bin").exists(), "users were generated first");
}
