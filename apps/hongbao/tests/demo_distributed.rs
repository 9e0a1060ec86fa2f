//! `hongbao demo --redis --nats`: the demo's node on the machine's Redis and NATS JetStream. Its
//! printed lines grab and claim through HTTP, the order is delivered, and a clean stop leaves
//! nothing of the namespace behind. Without Redis or NATS the tests say they skipped; under CI
//! they fail instead.

mod support;

use std::io::BufRead;
use std::process::Command;
use std::time::Duration;

use hongbao_distributed::{BackendConfig, SweeperConfig};
use hongbao_jetstream::JetStreamConfig;
use hongbao_store::CampaignBinding;
use rand::{Rng, SeedableRng};
use support::services::{NATS_URL, REDIS_URL, services_answer};
use support::{BIN, Running};

/// Polls of 100 ms before the test gives up on a delivery that takes well under a second: a
/// liveness bound, never a timing assertion.
const DELIVERY_POLLS: usize = 600;

fn backend(namespace: &str) -> BackendConfig {
    BackendConfig {
        redis_url: REDIS_URL.to_string(),
        nats_url: NATS_URL.to_string(),
        namespace: namespace.to_string(),
        jetstream: JetStreamConfig::default(),
        sweeper: SweeperConfig::default(),
        claim_shards: None,
    }
}

/// Removes the namespace when the test ends, whatever the demo did (a failed test must not
/// leave keys behind).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let config = backend(&self.0);
        let campaign = hongbao_domain::Campaign::parse(
            &std::fs::read_to_string(support::campaign_path()).expect("the example campaign"),
            "spring-festival.toml",
            &|_| None,
        )
        .expect("the example campaign");
        let binding = CampaignBinding::of(&campaign);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(hongbao_distributed::remove_namespace(&config, &binding))
                .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(_))) {
            eprintln!("could not remove namespace {}: {done:?}", self.0);
        }
    }
}

/// Reads the demo's stdout up to its walkthrough: the lines before it and the shell lines.
fn demo_walkthrough(demo: &mut Running) -> (Vec<String>, Vec<String>) {
    let mut before = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(demo.stdout.read_line(&mut line).expect("read stdout") > 0, "{before:?}");
        if line.starts_with("Paste these lines into bash") {
            break;
        }
        before.push(line.trim_end().to_string());
    }
    let mut lines = Vec::new();
    loop {
        line.clear();
        assert!(demo.stdout.read_line(&mut line).expect("read stdout") > 0, "no end");
        if line.trim().is_empty() {
            return (before, lines);
        }
        lines.push(line.trim_end().to_string());
    }
}

/// Runs the printed lines in bash; the order's id and the ticket they used.
fn run_walkthrough(lines: &[String]) -> (String, String) {
    let script = format!("set -euo pipefail\n{}\n", lines.join("\n"));
    let out = Command::new("bash").arg("-c").arg(&script).output().expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the lines failed:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claim_line = stdout.lines().find(|l| l.contains("\"deliver_by\"")).unwrap_or_default();
    let claim: serde_json::Value = serde_json::from_str(claim_line).expect("the claim's answer");
    assert_eq!(claim["status"], "queued", "{stdout}");
    let ticket = lines
        .iter()
        .find_map(|l| l.strip_prefix("export T="))
        .expect("the ticket line")
        .to_string();
    (claim["order_id"].as_str().expect("an order id").to_string(), ticket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_demo_delivers_a_claim_and_removes_its_namespace_at_exit() {
    if !services_answer() {
        return;
    }
    let random: u64 = rand::rngs::StdRng::from_os_rng().random();
    let namespace = format!("hbdemo-{random:012x}");
    let _cleanup = Cleanup(namespace.clone());
    let data = tempfile::tempdir().expect("a directory");
    let mut demo = Running::spawn(&[
        "demo",
        "--addr",
        "127.0.0.1:0",
        "--users",
        "2000",
        "--no-load",
        "--data",
        data.path().to_str().expect("a UTF-8 path"),
        "--redis",
        REDIS_URL,
        "--nats",
        NATS_URL,
        "--namespace",
        &namespace,
    ]);
    let (before, lines) = demo_walkthrough(&mut demo);
    let backend_line = before.iter().find(|l| l.contains("backend")).expect("a backend line");
    assert!(backend_line.contains(&namespace), "{before:?}");
    let api = before.iter().find(|l| l.contains("  api ")).expect("the api line");
    let api = api.split_whitespace().nth(1).expect("a URL").trim_end_matches("/healthz");

    let (order_id, ticket) = run_walkthrough(&lines);
    let client = reqwest::Client::new();
    let mut order = serde_json::Value::Null;
    for _ in 0..DELIVERY_POLLS {
        let url = format!("{api}/v1/orders/{order_id}");
        let answer = client.get(&url).bearer_auth(&ticket).send().await.expect("GET the order");
        order = answer.json().await.expect("the order");
        if order["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(order["status"], "delivered", "{order}");
    let keys = hongbao_distributed::namespace_keys(REDIS_URL, &namespace).await.expect("redis");
    assert!(keys > 0, "the demo keeps its state under its namespace");

    let pid = demo.child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let status = demo.child.wait().expect("wait");
    assert!(status.success(), "the demo stopped with {status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut demo.stdout, &mut rest).expect("read stdout");
    assert!(rest.contains(&format!("removed namespace {namespace}")), "{rest}");
    assert!(rest.contains("and its JetStream stream"), "{rest}");
    let keys = hongbao_distributed::namespace_keys(REDIS_URL, &namespace).await.expect("redis");
    assert_eq!(keys, 0, "no key of the namespace is left");
    let nats = async_nats::connect(NATS_URL).await.expect("nats");
    let stream = format!("{namespace}_spring-2027");
    assert!(async_nats::jetstream::new(nats).get_stream(&stream).await.is_err(), "stream gone");
}

/// A namespace that already holds keys is refused before anything is generated: the demo
/// removes its namespace at exit, so it runs only on one it made.
#[test]
fn the_distributed_demo_refuses_a_namespace_in_use() {
    if !services_answer() {
        return;
    }
    let random: u64 = rand::rngs::StdRng::from_os_rng().random();
    let namespace = format!("hbdemo-{random:012x}");
    let _cleanup = Cleanup(namespace.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = redis::Client::open(REDIS_URL).expect("a URL");
        let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
        let key = format!("{namespace}:someone-else");
        redis::cmd("SET").arg(key).arg(1).query_async::<()>(&mut conn).await.expect("SET");
    });
    let data = tempfile::tempdir().expect("a directory");
    let out = Command::new(BIN)
        .args(["demo", "--addr", "127.0.0.1:0", "--no-load", "--namespace", &namespace])
        .args(["--redis", REDIS_URL, "--nats", NATS_URL, "--data"])
        .arg(data.path())
        .output()
        .expect("run the demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&namespace) && stderr.contains("already holds 1"), "{stderr}");
    assert!(!data.path().join("profiles.bin").exists(), "users were generated first");
    let left =
        rt.block_on(hongbao_distributed::namespace_keys(REDIS_URL, &namespace)).expect("redis");
    assert_eq!(left, 1, "the other's key is untouched");
}

/// Servers that do not answer: a clear error naming the flag and the address, before any user
/// is generated.
#[test]
fn the_distributed_demo_says_which_server_does_not_answer() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let redis = format!("redis://127.0.0.1:{port}");
    let data = tempfile::tempdir().expect("a directory");
    let out = Command::new(BIN)
        .args(["demo", "--addr", "127.0.0.1:0", "--no-load", "--redis", &redis])
        .args(["--nats", NATS_URL, "--data"])
        .arg(data.path())
        .output()
        .expect("run the demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&redis) && stderr.contains("--redis"), "{stderr}");
    assert!(!data.path().join("profiles.bin").exists(), "users were generated first");
}

/// NATS that does not answer (Redis does): the error names both flags and the address, and
/// the namespace is left as empty as it was found.
#[test]
fn the_distributed_demo_says_when_nats_does_not_answer() {
    if !services_answer() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let nats = format!("nats://127.0.0.1:{port}");
    let random: u64 = rand::rngs::StdRng::from_os_rng().random();
    let namespace = format!("hbdemo-{random:012x}");
    let data = tempfile::tempdir().expect("a directory");
    let out = Command::new(BIN)
        .args(["demo", "--addr", "127.0.0.1:0", "--no-load", "--users", "500"])
        .args(["--redis", REDIS_URL, "--nats", &nats, "--namespace", &namespace, "--data"])
        .arg(data.path())
        .output()
        .expect("run the demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&nats) && stderr.contains("--nats"), "{stderr}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let left =
        rt.block_on(hongbao_distributed::namespace_keys(REDIS_URL, &namespace)).expect("redis");
    assert_eq!(left, 0, "nothing left under the namespace");
}

/// A namespace that could not name the stream (or could match other keys) is refused before
/// any server is asked.
#[test]
fn the_distributed_demo_refuses_a_namespace_that_names_nothing_safely() {
    let data = tempfile::tempdir().expect("a directory");
    for bad in ["a.b", "x*", ""] {
        let out = Command::new(BIN)
            .args(["demo", "--addr", "127.0.0.1:0", "--no-load", "--namespace", bad])
            .args(["--redis", "redis://127.0.0.1:1", "--nats", "nats://127.0.0.1:1", "--data"])
            .arg(data.path())
            .output()
            .expect("run the demo");
        assert!(!out.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--namespace") && stderr.contains("[A-Za-z0-9_-]"), "{stderr}");
    }
}
