//! One node's writes: each second's readings as one pipeline, after admitting the series it
//! has not seen yet (one more pipeline, only in seconds that bring new series).

use std::collections::HashMap;

use hongbao_monitor::kv::{Reading, Resolution, Rollup, SeriesKey};
use hongbao_store::StoreError;
use redis::Pipeline;

use super::layout::{Layout, REGISTRY_TTL_S, SeriesName, chunk_of, chunk_ttl_s};
use crate::{RedisConn, store_error};

/// Admits one series unless the registry holds `cap` others. KEYS[1]: every series' id;
/// KEYS[2]: the metric's labels. ARGV: the id, the labels, the cap, the registry's TTL.
/// A script, so two nodes admitting at once cannot both take the last place.
const ADMIT_LUA: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
  end
  redis.call('SADD', KEYS[1], ARGV[1])
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
";

/// Series admitted (or asked about) in one second at most; the others wait for the next.
pub const ADMIT_PER_SECOND_MAX: usize = 256;
/// How often a node asks again about a series it knows: renews the registry's TTL, puts back a
/// series whose registry entry was lost, lets in one refused while the fleet was full, and sets
/// its current chunks' TTLs again.
pub const READMIT_INTERVAL_S: u64 = 600;
/// Distinct series a node remembers the fleet's answer for (its own recorder has at most
/// `hongbao_monitor::recorder::CELLS_MAX` cells, a histogram's making three series); readings
/// of series beyond it are dropped.
pub const KNOWN_SERIES_MAX: usize = 4 * hongbao_monitor::recorder::CELLS_MAX;

/// What the node knows of one series.
#[derive(Debug)]
struct Known {
    /// `None` when refused (over the cap) or not nameable (labels too long).
    name: Option<SeriesName>,
    asked_at_s: u64,
    /// The last chunk of each resolution (second, minute) whose TTL this node set.
    ttl_chunk: [Option<u64>; 2],
}

/// The writer's state: the connection and what it learned about each series.
pub(crate) struct Writer {
    conn: RedisConn,
    layout: Layout,
    series_max: usize,
    known: HashMap<SeriesKey, Known>,
    /// Whether the cap's refusal was logged (once per process).
    told_full: bool,
}

impl Writer {
    pub fn new(conn: RedisConn, layout: Layout, series_max: usize) -> Writer {
        Writer { conn, layout, series_max, known: HashMap::new(), told_full: false }
    }

    /// Writes second `at_s`'s readings: Sum adds (`ZINCRBY`), Max keeps the highest (`ZADD
    /// GT`), Last replaces (`ZADD`), in the second's and the minute's bucket alike, so several
    /// nodes' readings and a minute's seconds fold as the in-process store folds them. Readings
    /// that are not finite numbers are skipped (Redis refuses NaN; the query reads a gap).
    pub async fn write_second(
        &mut self,
        at_s: u64,
        readings: &[Reading],
    ) -> Result<(), StoreError> {
        self.admit(at_s, readings).await?;
        let mut pipe = redis::pipe();
        let mut ttl_set: Vec<(&SeriesKey, usize, u64)> = Vec::new();
        for reading in readings.iter().filter(|r| r.value.is_finite()) {
            let Some(known) = self.known.get(&reading.key) else { continue };
            let Some(name) = &known.name else { continue };
            let slots = [(Resolution::Second, at_s), (Resolution::Minute, at_s / 60)];
            for (index, (resolution, bucket)) in slots.into_iter().enumerate() {
                let (chunk, member) = chunk_of(bucket);
                let key = self.layout.chunk(name, resolution, chunk);
                add(&mut pipe, &key, reading.rollup, f64::from(reading.value), member);
                if known.ttl_chunk[index] != Some(chunk) {
                    pipe.cmd("EXPIRE").arg(&key).arg(chunk_ttl_s(resolution)).ignore();
                    ttl_set.push((&reading.key, index, chunk));
                }
            }
        }
        if pipe.is_empty() {
            return Ok(());
        }
        pipe.query_async::<()>(&mut self.conn).await.map_err(store_error)?;
        // Only once the pipeline went through: a chunk whose EXPIRE may have been lost gets
        // another next second.
        for (key, index, chunk) in ttl_set {
            if let Some(known) = self.known.get_mut(key) {
                known.ttl_chunk[index] = Some(chunk);
            }
        }
        Ok(())
    }

    /// Asks the registry about the series of `readings` never asked about, or last asked
    /// [`READMIT_INTERVAL_S`] ago, at most [`ADMIT_PER_SECOND_MAX`] of them.
    async fn admit(&mut self, at_s: u64, readings: &[Reading]) -> Result<(), StoreError> {
        let mut asking: Vec<(SeriesKey, SeriesName)> = Vec::new();
        for reading in readings {
            if asking.len() == ADMIT_PER_SECOND_MAX {
                break;
            }
            let due = match self.known.get(&reading.key) {
                Some(known) => at_s.saturating_sub(known.asked_at_s) >= READMIT_INTERVAL_S,
                None => self.known.len() < KNOWN_SERIES_MAX,
            };
            if !due || asking.iter().any(|(k, _)| *k == reading.key) {
                continue;
            }
            match SeriesName::new(&reading.key.metric, &reading.key.labels) {
                Some(name) => asking.push((reading.key.clone(), name)),
                None => {
                    tracing::warn!(metric = %reading.key.metric, "series labels too long; not stored");
                    self.known.insert(reading.key.clone(), refused(at_s));
                }
            }
        }
        if asking.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (_, name) in &asking {
            pipe.cmd("EVAL")
                .arg(ADMIT_LUA)
                .arg(2)
                .arg(self.layout.all())
                .arg(self.layout.metric(&name.metric))
                .arg(&name.id)
                .arg(&name.labels)
                .arg(self.series_max)
                .arg(REGISTRY_TTL_S);
        }
        let answers: Vec<i64> = pipe.query_async(&mut self.conn).await.map_err(store_error)?;
        for ((key, name), admitted) in asking.into_iter().zip(answers) {
            if admitted == 0 && !self.told_full {
                self.told_full = true;
                tracing::warn!(
                    metric = %key.metric,
                    series_max = self.series_max,
                    "the fleet's series store is full; this series and further new ones are not stored"
                );
            }
            // TTLs are set again after each ask too: a chunk that lost its TTL (a failover to a
            // replica that missed the EXPIRE) gets it back within the interval.
            let name = (admitted == 1).then_some(name);
            self.known.insert(key, Known { name, asked_at_s: at_s, ttl_chunk: [None; 2] });
        }
        Ok(())
    }
}

fn refused(at_s: u64) -> Known {
    Known { name: None, asked_at_s: at_s, ttl_chunk: [None; 2] }
}

/// One reading into one bucket, folded by its rollup in Redis itself.
fn add(pipe: &mut Pipeline, key: &str, rollup: Rollup, value: f64, member: u64) {
    match rollup {
        Rollup::Sum => pipe.cmd("ZINCRBY").arg(key).arg(value).arg(member),
        Rollup::Max => pipe.cmd("ZADD").arg(key).arg("GT").arg(value).arg(member),
        Rollup::Last => pipe.cmd("ZADD").arg(key).arg(value).arg(member),
    }
    .ignore();
}
