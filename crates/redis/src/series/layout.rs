//! The fleet series store's keys and encodings.
//!
//! WARNING: persisted. Renaming a key, changing the chunk size, the series id's hash or the
//! labels' encoding orphans every series already written (queries answer gaps until the old
//! keys expire, at most [`MINUTE_CHUNK_TTL_S`]). Add keys; never change these.
//!
//! `<ns>` is the deployment's namespace; every key carries the hash tag `{<ns>:series}` (so on a
//! Redis Cluster all of them lie in one slot, and a node's second is one pipeline to one master):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<ns>:series:{<ns>:series}:all` | set | every admitted series' id: the series cap is its size |
//! | `<ns>:series:{<ns>:series}:m:<metric>` | set | the metric's series, as their labels' JSON (`[["name","value"],…]`, sorted by name) |
//! | `<ns>:series:{<ns>:series}:1s:<metric>:<id>:<chunk>` | zset | one-second buckets `chunk × 120 + offset`: member `offset` (0..120), score the fleet's reading |
//! | `<ns>:series:{<ns>:series}:1m:<metric>:<id>:<chunk>` | zset | the same of one-minute buckets (bucket = Unix second ÷ 60) |
//!
//! `<id>` is FNV-1a 64 of the metric id, a 0xFF byte and the labels' JSON, in 16 hex digits:
//! short keys whatever the labels hold, and the same on every node and every build (std's
//! hasher is not stable across Rust releases).
//!
//! The namespace comes first and outside the tag, as in [`crate::keys`]: `SCAN MATCH <ns>:*`
//! finds these keys too, so removing a namespace removes its series. The third segment,
//! `series:{`, never starts another key of the namespace (campaign keys there are `<c>:roles:`,
//! `<c>:game-lease:`, `{<c>}:…`, `nonce:`, and a key segment never starts with a brace).

use hongbao_monitor::kv::Resolution;
use hongbao_monitor::recorder::Labels;
use hongbao_monitor::series::{MINUTE_BUCKETS, SECOND_BUCKETS};

/// Buckets per chunk key. Under Redis's default `zset-max-listpack-entries` (128), so a full
/// chunk stays in the compact listpack encoding (0.6 to 2.1 KB measured for 120 readings)
/// instead of a skiplist (several times more).
pub const CHUNK_BUCKETS: u64 = 120;
/// Lifetime of a one-second chunk from the last time a node set it: the two hours the
/// in-process store keeps, plus the chunk's own span, so its last bucket lives two hours.
pub const SECOND_CHUNK_TTL_S: u64 = SECOND_BUCKETS as u64 + CHUNK_BUCKETS;
/// Lifetime of a one-minute chunk: seven days plus its span (two hours).
pub const MINUTE_CHUNK_TTL_S: u64 = (MINUTE_BUCKETS as u64 + CHUNK_BUCKETS) * 60;
/// Lifetime of the registry's sets, renewed whenever a node (re-)admits a series: as long as the
/// longest-lived data.
pub const REGISTRY_TTL_S: u64 = MINUTE_CHUNK_TTL_S;
/// Longest labels' JSON stored: far above any catalog metric's labels (bounded sets of short
/// values), and a bound on what a stray or hostile registry member costs a reader.
pub const LABELS_BYTES_MAX: usize = 1024;

/// One series as it is named in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeriesName {
    pub metric: String,
    /// The labels' JSON: the registry member.
    pub labels: String,
    /// See the module doc.
    pub id: String,
}

impl SeriesName {
    /// The name of `metric` with `labels`, or `None` when the labels' JSON is over
    /// [`LABELS_BYTES_MAX`].
    pub fn new(metric: &str, labels: &Labels) -> Option<SeriesName> {
        // Pairs of strings always serialize.
        let json = serde_json::to_string(labels).ok()?;
        SeriesName::from_member(metric, json)
    }

    /// The name of a registry member read back (`None` over [`LABELS_BYTES_MAX`]).
    pub fn from_member(metric: &str, labels: String) -> Option<SeriesName> {
        if labels.len() > LABELS_BYTES_MAX {
            return None;
        }
        let id = format!("{:016x}", fnv1a64(&[metric.as_bytes(), &[0xff], labels.as_bytes()]));
        Some(SeriesName { metric: metric.to_string(), labels, id })
    }
}

/// Decodes a registry member's labels.
pub(crate) fn parse_labels(json: &str) -> Option<Labels> {
    serde_json::from_str(json).ok()
}

/// The chunk holding `bucket`, and the bucket's member in it.
pub(crate) fn chunk_of(bucket: u64) -> (u64, u64) {
    (bucket / CHUNK_BUCKETS, bucket % CHUNK_BUCKETS)
}

/// How long a chunk of `resolution` lives after a node sets its TTL.
pub(crate) fn chunk_ttl_s(resolution: Resolution) -> u64 {
    match resolution {
        Resolution::Second => SECOND_CHUNK_TTL_S,
        Resolution::Minute => MINUTE_CHUNK_TTL_S,
    }
}

/// The keys of one namespace's series.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// `<ns>:series:{<ns>:series}:`
    prefix: String,
}

impl Layout {
    /// The layout of `namespace`, already checked ([`crate::check_namespace`]).
    pub fn new(namespace: &str) -> Layout {
        Layout { prefix: format!("{namespace}:series:{{{namespace}:series}}:") }
    }

    pub fn all(&self) -> String {
        format!("{}all", self.prefix)
    }

    pub fn metric(&self, metric: &str) -> String {
        format!("{}m:{metric}", self.prefix)
    }

    pub fn chunk(&self, series: &SeriesName, resolution: Resolution, chunk: u64) -> String {
        let res = match resolution {
            Resolution::Second => "1s",
            Resolution::Minute => "1m",
        };
        format!("{}{res}:{}:{}:{chunk}", self.prefix, series.metric, series.id)
    }
}

/// FNV-1a, 64 bits, over the parts in order.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_key_is_under_the_namespace_with_one_tag() {
        let layout = Layout::new("hb-test.1");
        let name = SeriesName::new("m", &labels(&[("route", "/v1/{x}")])).unwrap();
        let keys = [
            layout.all(),
            layout.metric("m"),
            layout.chunk(&name, Resolution::Second, 7),
            layout.chunk(&name, Resolution::Minute, 7),
        ];
        for key in &keys {
            assert!(key.starts_with("hb-test.1:series:{hb-test.1:series}:"), "{key}");
        }
    }

    #[test]
    fn ids_are_stable_and_tell_metrics_and_labels_apart() {
        // Persisted: this value must never change (see the module doc).
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        let a = SeriesName::new("m", &labels(&[("g", "1")])).unwrap();
        let b = SeriesName::new("n", &labels(&[("g", "1")])).unwrap();
        let c = SeriesName::new("m", &labels(&[("g", "2")])).unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a, SeriesName::from_member("m", a.labels.clone()).unwrap());
        assert_eq!(parse_labels(&a.labels), Some(labels(&[("g", "1")])));
    }

    #[test]
    fn oversized_or_undecodable_labels_are_refused() {
        let long = "x".repeat(LABELS_BYTES_MAX);
        assert_eq!(SeriesName::new("m", &labels(&[("k", &long)])), None);
        assert_eq!(parse_labels("not json"), None);
        assert_eq!(chunk_of(CHUNK_BUCKETS * 3 + 5), (3, 5));
    }
}
