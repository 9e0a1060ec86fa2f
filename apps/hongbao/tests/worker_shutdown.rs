//! A delivery worker (`serve --role worker`) whose Redis and NATS have gone away still stops on
//! SIGTERM. The servers are the test's own (started on free loopback ports, killed by the test),
//! never the machine's shared ones. Skipped without `redis-server` or `nats-server`, except under
//! CI.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, open_campaign_file};

/// Generous bounds: the assertions are "it comes up" and "it exits", not how fast.
const READY_LIMIT: Duration = Duration::from_secs(60);
const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// A child process killed when dropped (also when the test fails).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port()
}

/// `program` with `args`, or `None` (after saying so) when it is not installed outside CI.
fn start_or_skip(program: &str, args: &[&str], dir: &Path) -> Option<Killed> {
    let spawned = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Some(Killed(child)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(std::env::var_os("CI").is_none(), "{program} missing, and CI is set");
            println!("skipped: {program} not installed");
            None
        }
        Err(e) => panic!("start {program}: {e}"),
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY_LIMIT;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} not within {READY_LIMIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the worker holds at least one game's delivery lease (its keeper's loop runs).
fn holds_a_lease(redis_port: u16, namespace: &str) -> bool {
    let url = format!("redis://127.0.0.1:{redis_port}");
    let keys: redis::RedisResult<Vec<String>> = redis::Client::open(url).and_then(|c| {
        let mut conn = c.get_connection_with_timeout(Duration::from_secs(1))?;
        redis::cmd("KEYS").arg(format!("{namespace}:*game-lease:*")).query(&mut conn)
    });
    keys.is_ok_and(|k| !k.is_empty())
}

#[test]
fn a_worker_whose_redis_and_nats_are_gone_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (redis_port, nats_port) = (free_port(), free_port());
    let (redis_p, nats_p) = (redis_port.to_string(), nats_port.to_string());
    let redis_args =
        ["--port", &redis_p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    let Some(redis) = start_or_skip("redis-server", &redis_args, dir.path()) else { return };
    let store = dir.path().join("jetstream");
    let nats_args =
        ["-a", "127.0.0.1", "-p", &nats_p, "-js", "-sd", store.to_str().expect("utf-8")];
    let Some(nats) = start_or_skip("nats-server", &nats_args, dir.path()) else { return };
    let answers = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    wait_until("redis-server", || answers(redis_port));
    wait_until("nats-server", || answers(nats_port));

    // Nothing listens at the game side's address: the worker has nothing to deliver anyway.
    let (config, _) = open_campaign_file(dir.path(), "http://127.0.0.1:9", |text| text);
    let (redis_url, nats_url) =
        (format!("redis://127.0.0.1:{redis_port}"), format!("nats://127.0.0.1:{nats_port}"));
    let log = std::fs::File::create(dir.path().join("worker.log")).expect("a log file");
    let mut args = vec!["serve", "--rehearsal", "--admin-unsigned", "--role", "worker"];
    args.extend(["--config", &config, "--redis", &redis_url, "--nats", &nats_url]);
    args.extend(["--namespace", "hbstop", "--admin-addr", "127.0.0.1:0"]);
    let mut worker = Killed(
        Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn hongbao"),
    );
    // Kept open to the end: a node printing into a closed pipe would fail for that reason.
    let mut stdout = BufReader::new(worker.0.stdout.take().expect("stdout"));
    let listening =
        stdout.by_ref().lines().map_while(Result::ok).any(|l| l.contains("admin listening"));
    assert!(listening, "the worker exited before serving");
    wait_until("a game's lease held", || holds_a_lease(redis_port, "hbstop"));

    drop(redis);
    drop(nats);
    let pid = worker.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(sent.success());
    let signalled = Instant::now();
    let deadline = signalled + EXIT_LIMIT;
    let status = loop {
        if let Some(status) = worker.0.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let logs = std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default();
    assert!(status.is_some(), "still running {EXIT_LIMIT:?} after SIGTERM; its log:\n{logs}");
    println!("exited ({:?}) {:?} after SIGTERM", status, signalled.elapsed());
    drop(stdout);
}
