//! The machine's Redis and NATS JetStream for the tests of the distributed mode: whether they
//! answer (a skip outside CI, a failure under it), and a namespace of a test's own.

use std::net::TcpStream;
use std::time::Duration;

use hongbao_domain::Campaign;
use rand::Rng;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// Whether Redis and NATS answer; when not, says the test skipped, or fails when `CI` is set
/// (CI must run the distributed tests).
pub fn services_answer() -> bool {
    let up = |addr: &str| {
        TcpStream::connect_timeout(&addr.parse().expect("an address"), Duration::from_millis(500))
            .is_ok()
    };
    let answer = up("127.0.0.1:6379") && up("127.0.0.1:4222");
    if !answer {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Redis at 6379 or NATS at 4222, and CI is set: CI must run the distributed tests"
        );
        println!("skipped: no Redis at 127.0.0.1:6379 or NATS at 127.0.0.1:4222");
    }
    answer
}

/// A namespace of a test's own: its Redis keys and its JetStream stream go when it drops.
pub struct Namespace {
    pub name: String,
    pub stream: String,
}

impl Namespace {
    /// A new random namespace starting with `prefix`, for `campaign`'s stream.
    pub fn new(prefix: &str, campaign: &Campaign) -> Namespace {
        let name = format!("{prefix}-{:012x}", rand::rng().random::<u64>() >> 16);
        let stream = format!("{name}_{}", campaign.id);
        Namespace { name, stream }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let (name, stream) = (self.name.clone(), self.stream.clone());
        // Drops may run on a runtime thread: clean up from a thread and runtime of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let client = redis::Client::open(REDIS_URL)?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                let keys: Vec<String> =
                    redis::cmd("KEYS").arg(format!("{name}:*")).query_async(&mut conn).await?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(&keys).query_async::<u64>(&mut conn).await?;
                }
                let nats = async_nats::connect(NATS_URL).await?;
                async_nats::jetstream::new(nats).delete_stream(stream).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not clean up namespace {}", self.name);
        }
    }
}
