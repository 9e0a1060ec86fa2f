//! Every metric hongbao exports, described once: its id (Prometheus naming, base units), kind,
//! help text and the only label names it may carry. Monitor files, the query endpoint, the alert
//! rules and the Grafana dashboard are all checked against this list, so a metric that is not
//! here does not exist.
//!
//! Label *values* come from bounded sets only (routes of the router, HTTP statuses, error codes,
//! games and gifts of the campaign, fixed outcome names); never a user, coupon or order id.

/// What a metric's readings mean, and so how a series of them is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up; a series holds the running total, read as a rate or an increase.
    Counter,
    /// A level (queue depth, stock); read as it is.
    Gauge,
    /// A distribution (latency); the series holds per-second quantiles and counts.
    Histogram,
}

/// One exported metric.
#[derive(Clone, Copy, Debug)]
pub struct MetricDesc {
    pub id: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    /// The label names it carries, always all of them.
    pub labels: &'static [&'static str],
}

macro_rules! metric {
    ($id:expr, $kind:ident, [$($label:expr),*], $help:expr) => {
        MetricDesc { id: $id, kind: MetricKind::$kind, help: $help, labels: &[$($label),*] }
    };
}

pub const HTTP_REQUESTS: &str = "hongbao_http_requests_total";
pub const HTTP_DURATION: &str = "hongbao_http_request_duration_seconds";
pub const HTTP_REFUSALS: &str = "hongbao_http_refusals_total";
pub const GRABS: &str = "hongbao_grabs_total";
pub const LIST_VIEWS: &str = "hongbao_list_views_total";
pub const CLAIMS: &str = "hongbao_claims_total";
pub const EVENTS: &str = "hongbao_client_events_total";
pub const GIFT_STOCK: &str = "hongbao_gift_stock_remaining";
pub const QUEUE_DEPTH: &str = "hongbao_delivery_queue_depth";
pub const QUEUE_OLDEST: &str = "hongbao_delivery_queue_oldest_age_seconds";
pub const DELIVERIES: &str = "hongbao_deliveries_total";
pub const GAME_CALL_DURATION: &str = "hongbao_game_call_duration_seconds";
pub const GAME_CAPACITY: &str = "hongbao_game_capacity_per_second";
pub const ROLE_LOOKUPS: &str = "hongbao_role_lookups_total";
pub const STORE_BATCHES: &str = "hongbao_store_batches_total";
pub const STORE_FSYNCS: &str = "hongbao_store_fsyncs_total";
pub const STORE_COMMIT_DURATION: &str = "hongbao_store_commit_duration_seconds";
pub const PUBLISH_BATCHES: &str = "hongbao_publish_batches_total";
pub const PUBLISHES: &str = "hongbao_publishes_total";

/// The whole list.
pub const METRICS: &[MetricDesc] = &[
    metric!(
        HTTP_REQUESTS,
        Counter,
        ["route", "status"],
        "API requests answered, by route template and HTTP status"
    ),
    metric!(
        HTTP_DURATION,
        Histogram,
        ["route"],
        "API request latency from head read to response, by route template"
    ),
    metric!(
        HTTP_REFUSALS,
        Counter,
        ["route", "reason"],
        "API requests answered with an error, by route template and error code"
    ),
    metric!(
        GRABS,
        Counter,
        ["outcome"],
        "red-packet grabs by outcome (granted or the refusal's code)"
    ),
    metric!(
        LIST_VIEWS,
        Counter,
        ["outcome"],
        "gift lists answered: full, degraded (game side slow), or the refusal's code"
    ),
    metric!(
        CLAIMS,
        Counter,
        ["outcome"],
        "claims by outcome: accepted (new order), replayed (same claim again) or the refusal's code"
    ),
    metric!(EVENTS, Counter, ["event"], "front-end beacons accepted by POST /v1/events, by event"),
    metric!(GIFT_STOCK, Gauge, ["gift"], "stock left per gift pack"),
    metric!(QUEUE_DEPTH, Gauge, ["game"], "orders queued for delivery per game"),
    metric!(QUEUE_OLDEST, Gauge, ["game"], "age of the oldest order queued for delivery per game"),
    metric!(
        DELIVERIES,
        Counter,
        ["game", "outcome"],
        "delivery attempts by game and outcome (delivered, duplicate, busy, retry, dead, expired)"
    ),
    metric!(
        GAME_CALL_DURATION,
        Histogram,
        ["game"],
        "the game side's answer time to a delivery call"
    ),
    metric!(
        GAME_CAPACITY,
        Gauge,
        ["game"],
        "deliveries per second the game accepts (the campaign's capacity, scaled)"
    ),
    metric!(
        ROLE_LOOKUPS,
        Counter,
        ["level"],
        "role look-ups by the level that answered: l1 (in-process cache), l2 (shared cache), idip (the game side)"
    ),
    metric!(STORE_BATCHES, Counter, [], "store writer batches committed"),
    metric!(STORE_FSYNCS, Counter, [], "fsyncs of the store's journal"),
    metric!(
        STORE_COMMIT_DURATION,
        Histogram,
        [],
        "time from a batch's first command to its fsynced commit"
    ),
    metric!(
        PUBLISH_BATCHES,
        Counter,
        [],
        "batches of claims' publishes to JetStream whose acknowledgements were awaited together (distributed mode)"
    ),
    metric!(
        PUBLISHES,
        Counter,
        ["outcome"],
        "claims' publishes to JetStream by outcome: acked (stored or a duplicate) or failed (left to the sweeper)"
    ),
];

/// The description of `id`, if hongbao exports it.
pub fn find(id: &str) -> Option<&'static MetricDesc> {
    METRICS.iter().find(|m| m.id == id)
}

/// Every name the Prometheus exposition can carry: counters and gauges as they are, histograms
/// with `_bucket`, `_sum` and `_count`. For checking alert rules and dashboards.
pub fn exposition_names() -> Vec<String> {
    let mut names = Vec::new();
    for m in METRICS {
        match m.kind {
            MetricKind::Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.push(format!("{}{suffix}", m.id));
                }
            }
            MetricKind::Counter | MetricKind::Gauge => names.push(m.id.to_string()),
        }
    }
    names
}

/// Bucket bounds of every latency histogram, in seconds: from 100 µs (a claim's fsync on a fast
/// disk) to 10 s (the request timeout).
pub const LATENCY_BUCKETS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_prometheus_conventions() {
        for m in METRICS {
            assert!(m.id.starts_with("hongbao_"), "{}", m.id);
            assert!(m.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", m.id);
            assert_eq!(m.kind == MetricKind::Counter, m.id.ends_with("_total"), "{}", m.id);
            assert!(find(m.id).is_some());
        }
        let mut ids: Vec<_> = METRICS.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), METRICS.len(), "ids are unique");
    }
}
