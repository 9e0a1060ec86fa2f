//! Publishes N messages to a throw-away stream on the local NATS twice — one ack awaited per
//! publish, then batches whose acks are awaited together — and prints messages/s of each.
//! `cargo run -p hongbao-jetstream --example publish_rate [N]` (default 20000).

use std::time::Instant;

use bytes::Bytes;
use hongbao_jetstream::{DeliveryStream, JetStreamConfig, Names, Outgoing};

const BATCH: usize = 512;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let ns = format!("hbbench-{}", std::process::id());
    let names = Names::new(&ns, "rate", &["g1".into()])?;
    let stream =
        DeliveryStream::connect("nats://127.0.0.1:4222", names, JetStreamConfig::default()).await?;
    let msg = |i: usize| Outgoing {
        game: 0,
        msg_id: format!("{i:032x}"),
        payload: Bytes::from(format!("{i:032x}")),
    };

    let started = Instant::now();
    for i in 0..n {
        stream.publish_all(&[msg(i)]).await[0].clone()?;
    }
    let one = n as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let all: Vec<_> = (n..2 * n).map(msg).collect();
    for batch in all.chunks(BATCH) {
        for ack in stream.publish_all(batch).await {
            ack?;
        }
    }
    let batched = n as f64 / started.elapsed().as_secs_f64();
    stream.delete().await?;
    println!("{n} publishes: one ack at a time {one:.0}/s; batches of {BATCH} {batched:.0}/s");
    Ok(())
}
