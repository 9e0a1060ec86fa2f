//! Handles for the other crates, registered once against the installed recorder (see
//! [`crate::Monitor::install`]) and kept by their owner: a component asks for its handles when it
//! is built and makes one call on a stored handle per event. Where a label value is known only
//! when it first happens (a route, a refusal code), a [`LabelMap`] registers it on first use and
//! looks the handle up afterwards; its keys are bounded.
//!
//! A handle taken before the recorder is installed does nothing, forever: the binary installs
//! the monitor before it builds anything else, and tests that read metrics do the same.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata};

use crate::catalog::{self, MetricKind};

static METADATA: Metadata<'static> = Metadata::new("hongbao", Level::INFO, None);

fn key(id: &'static str, labels: &[(&'static str, &str)], kind: MetricKind) -> Key {
    debug_assert!(
        catalog::find(id).is_some_and(|m| m.kind == kind
            && m.labels.len() == labels.len()
            && labels.iter().all(|(name, _)| m.labels.contains(name))),
        "{id} with {labels:?} is not as the catalog describes it"
    );
    let labels: Vec<Label> =
        labels.iter().map(|(name, value)| Label::new(*name, value.to_string())).collect();
    Key::from_parts(id, labels)
}

/// A counter of the catalog.
pub fn counter(id: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    let key = key(id, labels, MetricKind::Counter);
    metrics::with_recorder(|r| r.register_counter(&key, &METADATA))
}

/// A gauge of the catalog.
pub fn gauge(id: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
    let key = key(id, labels, MetricKind::Gauge);
    metrics::with_recorder(|r| r.register_gauge(&key, &METADATA))
}

/// A histogram of the catalog.
pub fn histogram(id: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
    let key = key(id, labels, MetricKind::Histogram);
    metrics::with_recorder(|r| r.register_histogram(&key, &METADATA))
}

/// Distinct values one [`LabelMap`] registers; later values share the handle of `other`.
pub const LABEL_VALUES_MAX: usize = 64;

/// A bounded set of handles, each made once and never removed, read without a lock: a reader
/// scans the filled slots (a handful in practice) and writes nothing shared. A lock on every
/// request (even a read lock, whose counter every thread writes) made the API's two runtime
/// threads fight over one cache line per look-up; these reads stay in each core's cache.
struct Slots<K, H> {
    slots: Box<[OnceLock<(K, H)>]>,
    /// Slots filled, published after the slot is set.
    filled: AtomicUsize,
    /// Serialises the (rare) first uses.
    insert: Mutex<()>,
}

impl<K, H> std::fmt::Debug for Slots<K, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots").field("filled", &self.filled).finish_non_exhaustive()
    }
}

impl<K, H> Slots<K, H> {
    fn new(capacity: usize) -> Self {
        Slots {
            slots: (0..capacity).map(|_| OnceLock::new()).collect(),
            filled: AtomicUsize::new(0),
            insert: Mutex::new(()),
        }
    }

    fn find(&self, matches: impl Fn(&K) -> bool) -> Option<&H> {
        let filled = self.filled.load(Ordering::Acquire);
        self.slots[..filled]
            .iter()
            .filter_map(OnceLock::get)
            .find(|(k, _)| matches(k))
            .map(|(_, h)| h)
    }

    /// The handle whose key `matches`, or a new one from `make` in a free slot; `None` when the
    /// key is new and every slot is taken.
    fn get_or_insert(
        &self,
        matches: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, H),
    ) -> Option<&H> {
        if let Some(h) = self.find(&matches) {
            return Some(h);
        }
        let _insert = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = self.find(&matches) {
            return Some(h);
        }
        let filled = self.filled.load(Ordering::Acquire);
        let slot = self.slots.get(filled)?;
        let (_, h) = slot.get_or_init(make);
        self.filled.store(filled + 1, Ordering::Release);
        Some(h)
    }
}

/// Handles of one metric by one label whose values are static or small (a refusal code, an
/// HTTP status), registered on first use.
pub struct LabelMap<K, H> {
    handles: Slots<K, H>,
    make: Box<dyn Fn(&str) -> H + Send + Sync>,
    other: OnceLock<H>,
}

impl<K, H> std::fmt::Debug for LabelMap<K, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelMap").finish_non_exhaustive()
    }
}

impl<K: Eq + Copy + ToString, H> LabelMap<K, H> {
    pub fn new(make: impl Fn(&str) -> H + Send + Sync + 'static) -> Self {
        LabelMap {
            handles: Slots::new(LABEL_VALUES_MAX),
            make: Box::new(make),
            other: OnceLock::new(),
        }
    }

    /// The handle of `value`.
    pub fn get(&self, value: K) -> &H {
        self.handles
            .get_or_insert(|k| *k == value, || (value, (self.make)(&value.to_string())))
            .unwrap_or_else(|| self.other.get_or_init(|| (self.make)("other")))
    }
}

/// The three steps of a user's journey on the API, by outcome: `granted`/`full`/`degraded`/
/// `accepted`/`replayed` or the refusal's error code. Counted by the API's request layer.
#[derive(Debug)]
pub struct FlowMetrics {
    pub grabs: LabelMap<&'static str, Counter>,
    pub lists: LabelMap<&'static str, Counter>,
    pub claims: LabelMap<&'static str, Counter>,
}

/// The process's flow handles.
pub fn flow() -> &'static FlowMetrics {
    static FLOW: OnceLock<FlowMetrics> = OnceLock::new();
    FLOW.get_or_init(|| FlowMetrics {
        grabs: LabelMap::new(|v| counter(catalog::GRABS, &[("outcome", v)])),
        lists: LabelMap::new(|v| counter(catalog::LIST_VIEWS, &[("outcome", v)])),
        claims: LabelMap::new(|v| counter(catalog::CLAIMS, &[("outcome", v)])),
    })
}

/// One route's handles: latency, answers by status and refusals by code.
#[derive(Debug)]
pub struct RouteMetrics {
    pub duration: Histogram,
    pub statuses: LabelMap<u16, Counter>,
    pub refusals: LabelMap<&'static str, Counter>,
}

/// Most routes [`HttpMetrics`] tells apart; the router has about twenty.
pub const ROUTES_MAX: usize = 64;

/// The API's per-route handles, by route template.
#[derive(Debug)]
pub struct HttpMetrics {
    routes: Slots<Box<str>, RouteMetrics>,
    other: OnceLock<RouteMetrics>,
}

impl HttpMetrics {
    /// The handles of `route` (a template such as `/v1/coupons/{coupon}/gifts`, or `unmatched`).
    pub fn route(&self, route: &str) -> &RouteMetrics {
        self.routes
            .get_or_insert(|k| **k == *route, || (route.into(), route_metrics(route)))
            .unwrap_or_else(|| self.other.get_or_init(|| route_metrics("other")))
    }
}

fn route_metrics(route: &str) -> RouteMetrics {
    let (for_statuses, for_refusals) = (route.to_string(), route.to_string());
    RouteMetrics {
        duration: histogram(catalog::HTTP_DURATION, &[("route", route)]),
        statuses: LabelMap::new(move |status| {
            counter(catalog::HTTP_REQUESTS, &[("route", &for_statuses), ("status", status)])
        }),
        refusals: LabelMap::new(move |reason| {
            counter(catalog::HTTP_REFUSALS, &[("route", &for_refusals), ("reason", reason)])
        }),
    }
}

/// The process's per-route handles.
pub fn http() -> &'static HttpMetrics {
    static HTTP: OnceLock<HttpMetrics> = OnceLock::new();
    HTTP.get_or_init(|| HttpMetrics { routes: Slots::new(ROUTES_MAX), other: OnceLock::new() })
}

/// The store writer's handles.
#[derive(Debug)]
pub struct StoreMetrics {
    pub batches: Counter,
    pub fsyncs: Counter,
    pub commit_duration: Histogram,
}

/// The process's store handles.
pub fn store() -> &'static StoreMetrics {
    static STORE: OnceLock<StoreMetrics> = OnceLock::new();
    STORE.get_or_init(|| StoreMetrics {
        batches: counter(catalog::STORE_BATCHES, &[]),
        fsyncs: counter(catalog::STORE_FSYNCS, &[]),
        commit_duration: histogram(catalog::STORE_COMMIT_DURATION, &[]),
    })
}

/// The distributed mode's publisher: `published / batches` is the publishes per ack wait.
#[derive(Debug)]
pub struct PublisherMetrics {
    pub batches: Counter,
    pub acked: Counter,
    pub failed: Counter,
}

/// The process's publisher handles.
pub fn publisher() -> &'static PublisherMetrics {
    static PUBLISHER: OnceLock<PublisherMetrics> = OnceLock::new();
    PUBLISHER.get_or_init(|| PublisherMetrics {
        batches: counter(catalog::PUBLISH_BATCHES, &[]),
        acked: counter(catalog::PUBLISHES, &[("outcome", "acked")]),
        failed: counter(catalog::PUBLISHES, &[("outcome", "failed")]),
    })
}

/// Role look-ups by the level that answered.
#[derive(Debug)]
pub struct RoleCacheMetrics {
    pub l1: Counter,
    pub l2: Counter,
    pub idip: Counter,
}

/// The process's role-cache handles.
pub fn role_cache() -> &'static RoleCacheMetrics {
    static CACHE: OnceLock<RoleCacheMetrics> = OnceLock::new();
    CACHE.get_or_init(|| RoleCacheMetrics {
        l1: counter(catalog::ROLE_LOOKUPS, &[("level", "l1")]),
        l2: counter(catalog::ROLE_LOOKUPS, &[("level", "l2")]),
        idip: counter(catalog::ROLE_LOOKUPS, &[("level", "idip")]),
    })
}

/// One game's delivery handles; its worker builds them once.
#[derive(Debug, Clone)]
pub struct GameMetrics {
    pub delivered: Counter,
    pub duplicate: Counter,
    pub busy: Counter,
    pub retry: Counter,
    pub dead: Counter,
    pub expired: Counter,
    pub call_duration: Histogram,
    pub queue_depth: Gauge,
    pub queue_oldest_age: Gauge,
    pub capacity: Gauge,
}

impl GameMetrics {
    pub fn new(game: &str) -> GameMetrics {
        let outcome = |o| counter(catalog::DELIVERIES, &[("game", game), ("outcome", o)]);
        GameMetrics {
            delivered: outcome("delivered"),
            duplicate: outcome("duplicate"),
            busy: outcome("busy"),
            retry: outcome("retry"),
            dead: outcome("dead"),
            expired: outcome("expired"),
            call_duration: histogram(catalog::GAME_CALL_DURATION, &[("game", game)]),
            queue_depth: gauge(catalog::QUEUE_DEPTH, &[("game", game)]),
            queue_oldest_age: gauge(catalog::QUEUE_OLDEST, &[("game", game)]),
            capacity: gauge(catalog::GAME_CAPACITY, &[("game", game)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{LABEL_VALUES_MAX, LabelMap};

    /// A map whose handles are the label they were made for, counting how often it made one.
    fn counting() -> (Arc<AtomicUsize>, LabelMap<u16, String>) {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let map = LabelMap::new(move |label| {
            counter.fetch_add(1, Ordering::SeqCst);
            label.to_string()
        });
        (made, map)
    }

    #[test]
    fn each_value_gets_one_handle_made_once_even_from_many_threads() {
        let (made, map) = counting();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for value in [200u16, 404, 429, 200, 404] {
                        assert_eq!(map.get(value), &value.to_string());
                    }
                });
            }
        });
        assert_eq!(made.load(Ordering::SeqCst), 3);
        assert!(std::ptr::eq(map.get(200), map.get(200)), "the same handle each time");
    }

    #[test]
    fn values_past_the_bound_share_one_other_handle() {
        let (made, map) = counting();
        let bound = u16::try_from(LABEL_VALUES_MAX).unwrap();
        for value in 0..bound {
            assert_eq!(map.get(value), &value.to_string());
        }
        assert_eq!(map.get(bound), "other");
        assert_eq!(map.get(bound + 1), "other");
        assert!(std::ptr::eq(map.get(bound), map.get(bound + 7)));
        assert_eq!(map.get(5), "5", "values seen before keep their own handle");
        assert_eq!(made.load(Ordering::SeqCst), LABEL_VALUES_MAX + 1);
    }
}
