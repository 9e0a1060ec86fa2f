//! Spawning the real `hongbao` binary in tests.

#![allow(dead_code)]

pub mod services;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hongbao_domain::Campaign;

pub const BIN: &str = env!("CARGO_BIN_EXE_hongbao");

pub fn campaign_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/spring-festival.toml")
}

/// A child process killed when dropped, so a failing test never leaks a server.
pub struct Running {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        Running::spawn_with_env(args, &[])
    }

    /// [`Running::spawn`] with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hongbao");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Running { child, stdout }
    }

    /// Reads stdout lines until one contains `marker`; returns the first `http://host:port` in it.
    pub fn wait_for_url(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("read stdout");
            assert!(n > 0, "hongbao exited before printing {marker:?}");
            if line.contains(marker) {
                let start = line.find("http://").expect("a URL on the line");
                let rest = &line[start..];
                let end = rest[7..]
                    .find(|c: char| c == '/' || c.is_whitespace())
                    .map_or(rest.len(), |i| i + 7);
                return rest[..end].to_string();
            }
        }
        panic!("no line with {marker:?}");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }
}

pub fn run_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run hongbao");
    assert!(
        out.status.success(),
        "hongbao {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

pub fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// The example campaign written into `dir`, opened two hours ago (every release wave open), its
/// games at `sim`, with `edit` applied to the text; returns the file's path and the campaign.
pub fn open_campaign_file(
    dir: &std::path::Path,
    sim: &str,
    edit: impl Fn(String) -> String,
) -> (String, Campaign) {
    let start = time::OffsetDateTime::from_unix_timestamp(now_s() - 7200).expect("a valid time");
    let start = start.format(&time::format_description::well_known::Rfc3339).expect("formattable");
    let text = std::fs::read_to_string(campaign_path())
        .expect("the example campaign")
        .replacen(
            "starts_at = \"2027-02-10T00:00:00+08:00\"",
            &format!("starts_at = \"{start}\""),
            1,
        )
        .replace("http://127.0.0.1:9100", sim);
    let text = edit(text);
    let path = dir.join("campaign.toml");
    std::fs::write(&path, &text).expect("write the campaign");
    let campaign = Campaign::parse(&text, "campaign.toml", &|_| None).expect("a valid campaign");
    (path.to_str().expect("a UTF-8 path").to_string(), campaign)
}

/// Starts `hongbao game-sim` for the example campaign on a free port with the synthetic users of
/// `seed` and `users`, role look-ups without delay, plus `extra` flags; returns it and its URL.
pub fn spawn_sim(seed: u64, users: u64, extra: &[&str]) -> (Running, String) {
    let config = campaign_path();
    let (seed, users) = (seed.to_string(), users.to_string());
    let mut args = vec![
        "game-sim",
        "--config",
        config.to_str().expect("a UTF-8 path"),
        "--addr",
        "127.0.0.1:0",
        "--seed",
        &seed,
        "--users",
        &users,
        "--role-latency-ms",
        "0",
    ];
    args.extend_from_slice(extra);
    let mut sim = Running::spawn(&args);
    let url = sim.wait_for_url("listening");
    (sim, url)
}

/// GET `url` and parse its JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.expect("GET").json().await.expect("a JSON body")
}

/// The operator key tests sign with: every scope, a fixed secret (tests only).
pub fn test_operator_key() -> hongbao_auth::OperatorKey {
    use hongbao_auth::{OperatorKey, Scope, Secret};
    OperatorKey {
        id: "test-ops".to_string(),
        secret: Secret::from_bytes(vec![7; 32]).expect("a secret"),
        scopes: vec![Scope::Read, Scope::Operate, Scope::Admin],
    }
}

/// Writes a keys file holding `keys` into `dir`; returns its path.
pub fn write_keys_file(dir: &std::path::Path, keys: &[hongbao_auth::OperatorKey]) -> String {
    let mut ring = hongbao_auth::KeyRing::default();
    for key in keys {
        ring.insert(key.clone()).expect("a valid key");
    }
    let path = dir.join("operator-keys.toml");
    std::fs::write(&path, ring.to_toml()).expect("write the keys file");
    path.to_str().expect("a UTF-8 path").to_string()
}

/// A random nonce for a signed test request.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{:016x}{:08x}",
        now_s(),
        NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000
    )
}

/// `request` signed by `key` now (for `url`, with `body`).
pub fn sign(
    request: reqwest::RequestBuilder,
    key: &hongbao_auth::OperatorKey,
    method: &str,
    url: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let url = reqwest::Url::parse(url).expect("a URL");
    let headers = hongbao_auth::sign_headers(
        key,
        method,
        url.path(),
        url.query().unwrap_or(""),
        body,
        now_s() as u64,
        &nonce(),
    );
    headers.into_iter().fold(request, |r, (name, value)| r.header(name, value))
}

/// GET an admin endpoint signed by the test key; its JSON.
pub async fn admin_get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    sign(client.get(url), &test_operator_key(), "GET", url, b"")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON body")
}
