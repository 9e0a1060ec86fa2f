//! Operator access on a real node: signed requests (each refusal its own code, and a refused
//! pause leaves the game running), the CLI's signed commands end to end, the allow-list and
//! mTLS on the admin listener.

mod support;

use std::io::{Read, Write};

use hongbao_auth::{OperatorKey, Scope, Secret};
use serde_json::Value;
use support::{Running, campaign_path, nonce, now_s, run_ok, test_operator_key, write_keys_file};

const GAME: &str = "lantern-heroes";

/// A key that may only read.
fn viewer_key() -> OperatorKey {
    OperatorKey {
        id: "viewer".into(),
        secret: Secret::from_bytes(vec![9; 32]).expect("secret"),
        scopes: vec![Scope::Read],
    }
}

/// A key that may read and operate, not reconcile.
fn operator_key() -> OperatorKey {
    OperatorKey {
        id: "operator".into(),
        secret: Secret::from_bytes(vec![5; 32]).expect("secret"),
        scopes: vec![Scope::Read, Scope::Operate],
    }
}

/// A running node (API and workers) with the test key and the viewer key; its admin URL.
struct Node {
    _dir: tempfile::TempDir,
    _node: Running,
    admin: String,
    keys: String,
}

fn spawn_node(extra: &[&str]) -> Node {
    let dir = tempfile::tempdir().expect("dir");
    let keys = write_keys_file(dir.path(), &[test_operator_key(), viewer_key(), operator_key()]);
    let data = dir.path().join("data");
    let config = campaign_path();
    let mut args = vec!["serve", "--rehearsal", "--no-profiles"];
    args.extend(["--config", config.to_str().expect("utf-8")]);
    args.extend(["--data", data.to_str().expect("utf-8")]);
    args.extend(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"]);
    if !extra.contains(&"--admin-unsigned") {
        args.extend(["--operator-keys", &keys]);
    }
    args.extend(extra);
    let mut node = Running::spawn(&args);
    node.wait_for_url("api listening");
    let admin = node.wait_for_url("admin listening");
    Node { _dir: dir, _node: node, admin, keys }
}

/// What is sent, and (separately) what is signed: tests change one to tamper.
#[derive(Clone)]
struct Req {
    method: &'static str,
    path: String,
    query: &'static str,
    body: Vec<u8>,
}

impl Req {
    fn pause(game: &str) -> Req {
        Req {
            method: "POST",
            path: format!("/admin/v1/delivery/{game}/pause"),
            query: "",
            body: Vec::new(),
        }
    }
}

/// Sends `sent` with headers signing `signed` by `key` at `at_s` with `nonce`; status and body.
async fn send(
    node: &Node,
    sent: &Req,
    signed: &Req,
    key: &OperatorKey,
    at_s: u64,
    nonce: &str,
) -> (u16, Value) {
    let headers = hongbao_auth::sign_headers(
        key,
        signed.method,
        &signed.path,
        signed.query,
        &signed.body,
        at_s,
        nonce,
    );
    let query = if sent.query.is_empty() { String::new() } else { format!("?{}", sent.query) };
    let url = format!("{}{}{query}", node.admin, sent.path);
    let method = reqwest::Method::from_bytes(sent.method.as_bytes()).expect("method");
    let mut request = reqwest::Client::new().request(method, url).body(sent.body.clone());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Sends `req` signed as is by the test key, now.
async fn send_good(node: &Node, req: &Req) -> (u16, Value) {
    send(node, req, req, &test_operator_key(), now_s() as u64, &nonce()).await
}

/// Whether `game`'s delivery is paused, read with a good signature.
async fn paused(node: &Node, game: &str) -> bool {
    let get = Req { method: "GET", path: "/admin/v1/delivery".into(), query: "", body: vec![] };
    let (status, body) = send_good(node, &get).await;
    assert_eq!(status, 200, "{body}");
    let games = body["games"].as_array().expect("games");
    games.iter().find(|g| g["game"] == game).expect("the game")["paused"] == true
}

/// Asserts a refusal with `code` and that the game still delivers.
async fn assert_refused(node: &Node, (status, body): (u16, Value), want: (u16, &str)) {
    assert_eq!((status, body["error"]["code"].as_str()), (want.0, Some(want.1)), "{body}");
    assert!(!paused(node, GAME).await, "a refused pause paused the game");
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let pause = Req::pause(GAME);
    let at = now_s() as u64 - hongbao_auth::WINDOW_S - 60;
    let answer = send(&node, &pause, &pause, &test_operator_key(), at, &nonce()).await;
    assert_refused(&node, answer, (401, "timestamp_stale")).await;
}

#[tokio::test]
async fn a_future_timestamp_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let pause = Req::pause(GAME);
    let at = now_s() as u64 + hongbao_auth::WINDOW_S + 60;
    let answer = send(&node, &pause, &pause, &test_operator_key(), at, &nonce()).await;
    assert_refused(&node, answer, (401, "timestamp_future")).await;
}

/// A captured pause, replayed after the operator resumed the game, does not pause it again.
#[tokio::test]
async fn a_reused_nonce_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let (pause, key, at, once) = (Req::pause(GAME), test_operator_key(), now_s() as u64, nonce());
    assert_eq!(send(&node, &pause, &pause, &key, at, &once).await.0, 200);
    assert!(paused(&node, GAME).await);
    let resume = Req { path: format!("/admin/v1/delivery/{GAME}/resume"), ..pause.clone() };
    assert_eq!(send_good(&node, &resume).await.0, 200);
    let replay = send(&node, &pause, &pause, &key, at, &once).await;
    assert_refused(&node, replay, (401, "nonce_reused")).await;
}

#[tokio::test]
async fn a_tampered_method_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let sent = Req::pause(GAME);
    let signed = Req { method: "GET", ..sent.clone() };
    let answer = send(&node, &sent, &signed, &test_operator_key(), now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (401, "bad_signature")).await;
}

/// A pause signed for one game, sent for another.
#[tokio::test]
async fn a_tampered_path_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let (sent, signed) = (Req::pause(GAME), Req::pause("another-game"));
    let answer = send(&node, &sent, &signed, &test_operator_key(), now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (401, "bad_signature")).await;
}

#[tokio::test]
async fn a_tampered_query_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let sent = Req { query: "reason=maintenance", ..Req::pause(GAME) };
    let signed = Req { query: "reason=other", ..sent.clone() };
    let answer = send(&node, &sent, &signed, &test_operator_key(), now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (401, "bad_signature")).await;
}

#[tokio::test]
async fn a_tampered_body_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let sent = Req { body: b"{\"why\":\"x\"}".to_vec(), ..Req::pause(GAME) };
    let signed = Req { body: b"{}".to_vec(), ..sent.clone() };
    let answer = send(&node, &sent, &signed, &test_operator_key(), now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (401, "bad_signature")).await;
}

/// An unknown key id, and a known id signed with the wrong secret.
#[tokio::test]
async fn a_wrong_key_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let pause = Req::pause(GAME);
    let stranger = OperatorKey { id: "stranger".into(), ..test_operator_key() };
    let answer = send(&node, &pause, &pause, &stranger, now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (401, "unknown_key")).await;
    let forged = OperatorKey {
        secret: Secret::from_bytes(vec![8; 32]).expect("secret"),
        ..test_operator_key()
    };
    let answer = send(&node, &pause, &pause, &forged, now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (401, "bad_signature")).await;
}

/// A read-only key may read the status but not pause.
#[tokio::test]
async fn a_wrong_scope_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let pause = Req::pause(GAME);
    let answer = send(&node, &pause, &pause, &viewer_key(), now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (403, "scope_missing")).await;
    let status = Req { method: "GET", path: "/admin/v1/delivery".into(), query: "", body: vec![] };
    let answer = send(&node, &status, &status, &viewer_key(), now_s() as u64, &nonce()).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    // An operating key: no reconciliation (admin), but the pause it may make goes through.
    let reconcile =
        Req { method: "POST", path: "/admin/v1/reconcile".into(), query: "", body: b"{}".to_vec() };
    let answer =
        send(&node, &reconcile, &reconcile, &operator_key(), now_s() as u64, &nonce()).await;
    assert_refused(&node, answer, (403, "scope_missing")).await;
    let answer = send(&node, &pause, &pause, &operator_key(), now_s() as u64, &nonce()).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(paused(&node, GAME).await);
}

#[tokio::test]
async fn an_unsigned_request_is_refused_and_changes_nothing() {
    let node = spawn_node(&[]);
    let url = format!("{}/admin/v1/delivery/{GAME}/pause", node.admin);
    let response = reqwest::Client::new().post(url).send().await.expect("an answer");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_refused(&node, (status, body), (401, "signature_missing")).await;
}

/// The CLI's operator commands sign with --key-file: status, pause, resume and a reconcile
/// pass on the running node; without a key they refuse before sending anything.
#[tokio::test]
async fn the_cli_signed_commands_work_end_to_end_against_a_real_node() {
    let node = spawn_node(&[]);
    let (admin, keys) = (node.admin.as_str(), node.keys.as_str());
    let key = ["--key-file", keys, "--key-id", "test-ops"];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter().chain(key.iter()).map(|a| a.to_string()).collect()
    };
    run_ok_owned(&with(&["delivery", "pause", "--admin", admin, "--game", GAME]));
    assert!(paused(&node, GAME).await);
    let status: Value = serde_json::from_str(&run_ok_owned(&with(&[
        "delivery", "status", "--admin", admin, "--json",
    ])))
    .expect("JSON");
    assert!(status["games"].as_array().is_some_and(|g| !g.is_empty()), "{status}");
    run_ok_owned(&with(&["delivery", "resume", "--admin", admin, "--game", GAME]));
    assert!(!paused(&node, GAME).await);
    let summary: Value =
        serde_json::from_str(&run_ok_owned(&with(&["reconcile", "--node", admin]))).expect("JSON");
    assert!(summary.is_object(), "{summary}");

    let unsigned = std::process::Command::new(support::BIN)
        .args(["delivery", "pause", "--admin", admin, "--game", GAME])
        .env_remove(hongbao_keys_env())
        .output()
        .expect("run");
    assert!(!unsigned.status.success());
    assert!(String::from_utf8_lossy(&unsigned.stderr).contains("--key-file"));
    let viewer = std::process::Command::new(support::BIN)
        .args(["delivery", "pause", "--admin", admin, "--game", GAME, "--key-file", keys])
        .args(["--key-id", "viewer"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&viewer.stderr).contains("scope_missing"));
    assert!(!paused(&node, GAME).await);
}

/// With no --key-file, the CLI signs with the keys file's text in $HONGBAO_OPERATOR_KEYS.
#[tokio::test]
async fn the_cli_signs_with_keys_from_the_environment() {
    let node = spawn_node(&[]);
    let text = std::fs::read_to_string(&node.keys).expect("the keys file");
    let out = std::process::Command::new(support::BIN)
        .args(["delivery", "pause", "--admin", &node.admin, "--game", GAME])
        .args(["--key-id", "test-ops"])
        .env(hongbao_keys_env(), text)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(paused(&node, GAME).await);
}

/// `serve` without --operator-keys reads the keys file's text from $HONGBAO_OPERATOR_KEYS; both
/// keys in it are active at once (rotation).
#[tokio::test]
async fn serve_reads_operator_keys_from_the_environment_with_several_active() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = write_keys_file(dir.path(), &[test_operator_key(), viewer_key()]);
    let config = campaign_path();
    let mut child = std::process::Command::new(support::BIN)
        .args(["serve", "--rehearsal", "--no-profiles", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env(hongbao_keys_env(), std::fs::read_to_string(&keys).expect("keys"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut running = Running { child, stdout };
    running.wait_for_url("api listening");
    let admin = running.wait_for_url("admin listening");
    let node = Node { _dir: dir, _node: running, admin, keys };
    let status = Req { method: "GET", path: "/admin/v1/delivery".into(), query: "", body: vec![] };
    for key in [test_operator_key(), viewer_key()] {
        let (code, body) = send(&node, &status, &status, &key, now_s() as u64, &nonce()).await;
        assert_eq!(code, 200, "{}: {body}", key.id);
    }
}

fn run_ok_owned(args: &[String]) -> String {
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn hongbao_keys_env() -> &'static str {
    "HONGBAO_OPERATOR_KEYS"
}

/// `serve` without keys refuses to start, naming both ways out.
#[test]
fn serve_without_operator_keys_refuses_naming_the_flag() {
    let dir = tempfile::tempdir().expect("dir");
    let config = campaign_path();
    let out = std::process::Command::new(support::BIN)
        .args(["serve", "--rehearsal", "--no-profiles", "--config"])
        .arg(config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env_remove(hongbao_keys_env())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--operator-keys")
            && stderr.contains("--admin-unsigned")
            && stderr.contains("HONGBAO_OPERATOR_KEYS"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "a refused node created its data directory");
}

/// A client outside --admin-allow is closed at accept: not a byte comes back, even for a
/// request that an admitted client would have had answered (the node is unsigned here, so the
/// allow-list is the only barrier).
#[test]
fn a_client_outside_the_allow_list_never_reaches_an_operator_endpoint() {
    let node = spawn_node(&["--admin-unsigned", "--admin-allow", "10.255.255.0/24"]);
    let authority = node.admin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    let request = format!(
        "POST /admin/v1/delivery/{GAME}/pause HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    // The write may already fail (the node closed first); the read must find nothing.
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.is_empty(), "answered: {}", String::from_utf8_lossy(&answer));

    let admitted = spawn_node(&["--admin-unsigned"]);
    let authority = admitted.admin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    write!(stream, "GET /admin/v1/delivery HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The operator commands the demo prints (status, pause, a reconcile dry run) work as printed:
/// they sign with the key the demo made for its run.
#[test]
fn the_demo_operator_commands_work_as_printed() {
    use std::io::BufRead;
    let data = tempfile::tempdir().expect("dir");
    let mut demo = Running::spawn(&[
        "demo",
        "--addr",
        "127.0.0.1:0",
        "--users",
        "2000",
        "--no-load",
        "--data",
        data.path().to_str().expect("utf-8"),
    ]);
    let mut line = String::new();
    while !line.starts_with("Operators") {
        line.clear();
        assert!(demo.stdout.read_line(&mut line).expect("stdout") > 0, "no operator lines");
    }
    let mut commands = Vec::new();
    loop {
        line.clear();
        assert!(demo.stdout.read_line(&mut line).expect("stdout") > 0, "they never end");
        if line.trim().is_empty() {
            break;
        }
        commands.push(line.trim().to_string());
    }
    assert_eq!(commands.len(), 3, "{commands:?}");
    for command in &commands {
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("set -euo pipefail\n{command}")])
            .env_remove(hongbao_keys_env())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{command}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(commands[0].contains("--key-file"), "{commands:?}");
    assert!(demo.terminate().success());
}

/// The admin listener serves at most 32 connections at once (`ADMIN_CONNECTIONS_MAX`): the
/// next one is closed unanswered, and once the idle ones go, requests are served again.
#[test]
fn the_admin_listener_closes_connections_beyond_its_maximum() {
    const MAX: usize = 32;
    let node = spawn_node(&["--admin-unsigned"]);
    let authority = node.admin.trim_start_matches("http://").to_string();
    let get = |authority: &str| -> String {
        let mut stream = std::net::TcpStream::connect(authority).expect("connect");
        let request = "GET /admin/v1/delivery HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    // Idle connections, each answered once so it is known to hold a slot.
    let mut idle = Vec::new();
    for _ in 0..MAX {
        let mut stream = std::net::TcpStream::connect(&authority).expect("connect");
        write!(stream, "GET /admin/v1/delivery HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).expect("an answer");
        assert_eq!(&first, b"HTTP/1.1 200");
        idle.push(stream);
    }
    assert_eq!(get(&authority), "", "a connection beyond the maximum was answered");
    drop(idle);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if get(&authority).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
