//! The delivery stream against the machine's NATS server: a random namespace per test (stream
//! and consumer names derive from it), the stream deleted afterwards. Skipped with a message
//! when NATS does not answer, except under CI (`CI` set), where that fails.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use bytes::Bytes;
use hongbao_jetstream::{DeliveryStream, JetStreamConfig, Names, Outgoing};
use rand::{Rng, SeedableRng};

const NATS_ADDR: &str = "127.0.0.1:4222";
const NATS_URL: &str = "nats://127.0.0.1:4222";
/// Polls of 50 ms before a test gives up waiting for something that takes milliseconds: a
/// liveness bound, not a timing assertion.
const LIVENESS_POLLS: usize = 600;

fn nats_answers() -> bool {
    let addr: SocketAddr = NATS_ADDR.parse().expect("an address");
    let answers = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok();
    if !answers {
        assert!(std::env::var_os("CI").is_none(), "no NATS at {NATS_ADDR}, and CI is set");
        println!("skipped: no NATS at {NATS_ADDR}");
    }
    answers
}

/// A stream under a fresh namespace, deleted when the guard drops (also when the test panics).
async fn open(config: JetStreamConfig) -> (DeliveryStream, Cleanup) {
    let ns = format!("hbtest-{:016x}", rand::rngs::StdRng::from_os_rng().random::<u64>());
    let names = Names::new(&ns, "spring", &["g1".into(), "g2".into()]).expect("names");
    let cleanup = Cleanup(names.stream());
    (DeliveryStream::connect(NATS_URL, names, config).await.expect("open the stream"), cleanup)
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let stream = self.0.clone();
        // A drop may run on a runtime thread: delete from a thread and runtime of its own.
        let deleted = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let client = async_nats::connect(NATS_URL).await?;
                async_nats::jetstream::new(client).delete_stream(stream).await?;
                Ok::<_, async_nats::Error>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete stream {}", self.0);
        }
    }
}

fn out(game: usize, id: &str) -> Outgoing {
    Outgoing { game, msg_id: id.to_string(), payload: Bytes::from(id.to_string()) }
}

#[tokio::test]
async fn the_same_message_id_is_stored_once_within_the_window() {
    if !nats_answers() {
        return;
    }
    let (stream, _cleanup) = open(JetStreamConfig::default()).await;
    let first = stream.publish_all(&[out(0, "o1"), out(0, "o2")]).await;
    let again = stream.publish_all(&[out(0, "o1")]).await;
    let (first, again) = (first[0].clone().unwrap(), again[0].clone().unwrap());
    assert!(!first.duplicate);
    assert!(again.duplicate, "a second publish of o1 is a duplicate");
    assert_eq!(again.sequence, first.sequence, "the duplicate names the stored message");

    let got = stream.fetch(0, 10).await.expect("fetch");
    let ids: Vec<_> =
        got.iter().map(|m| String::from_utf8_lossy(&m.payload).into_owned()).collect();
    assert_eq!(ids, ["o1", "o2"], "each order once, in publish order");
    assert!(stream.fetch(1, 10).await.expect("fetch").is_empty(), "another game's subject");
}

#[tokio::test]
async fn a_batch_of_publishes_is_acknowledged_together_and_each_answer_is_its_own() {
    if !nats_answers() {
        return;
    }
    const BATCH: usize = 500;
    let (stream, _cleanup) = open(JetStreamConfig::default()).await;
    let batch: Vec<_> = (0..BATCH).map(|i| out(i % 2, &format!("o{i}"))).collect();
    let acks = stream.publish_all(&batch).await;
    assert_eq!(acks.len(), BATCH);
    let mut sequences: Vec<u64> = acks.iter().map(|a| a.clone().expect("acked").sequence).collect();
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(sequences.len(), BATCH, "every message stored once, with its own sequence");
    assert_eq!(stream.pending(0).await.expect("info"), (BATCH as u64 / 2, 0));

    // A game's consumer hands out its messages; ack, nak and term end them as JetStream says.
    let got = stream.fetch(1, 3).await.expect("fetch");
    assert_eq!(got.len(), 3);
    got[0].double_ack_with(AckKind::Ack).await.expect("ack");
    got[1].double_ack_with(AckKind::Nak(None)).await.expect("nak");
    got[2].double_ack_with(AckKind::Term).await.expect("term");
    // A nak is redelivered soon, not necessarily by the next fetch: fetch until it came back.
    let mut rest = Vec::new();
    for _ in 0..LIVENESS_POLLS {
        rest.extend(stream.fetch(1, BATCH).await.expect("fetch"));
        if rest.iter().any(|m| m.payload == got[1].payload) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rest.len(), BATCH / 2 - 2, "the acked and the terminated one are gone");
    let naked = rest.iter().find(|m| m.payload == got[1].payload).expect("the naked one is back");
    assert_eq!(naked.info().expect("info").delivered, 2);
}

#[tokio::test]
async fn publishing_to_a_game_the_campaign_does_not_have_is_refused() {
    if !nats_answers() {
        return;
    }
    let (stream, _cleanup) = open(JetStreamConfig::default()).await;
    let acks = stream.publish_all(&[out(9, "x")]).await;
    assert!(acks[0].is_err());
}
