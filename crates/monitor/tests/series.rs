//! The series store on a manual clock: the sampler reads on the clock's seconds, and a long run
//! never grows the store past its stated bounds.

use std::sync::Arc;
use std::time::Duration;

use hongbao_clock::ManualClock;
use hongbao_monitor::catalog;
use hongbao_monitor::kv::{RangeRequest, Resolution};
use hongbao_monitor::series::{MINUTE_BUCKETS, SECOND_BUCKETS, SERIES_BYTES};
use hongbao_monitor::{Monitor, MonitorConfig, MonitorRecorder, SeriesStore};
use metrics::{Key, Label, Level, Metadata, Recorder};

static META: Metadata<'static> = Metadata::new("test", Level::INFO, None);

fn key(id: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    Key::from_parts(id, labels.iter().map(|(k, v)| Label::new(*k, *v)).collect::<Vec<_>>())
}

fn request(metric: &str, resolution: Resolution, from: u64, to: u64) -> RangeRequest {
    RangeRequest {
        metric: metric.into(),
        filter: vec![],
        resolution,
        from_bucket: from,
        to_bucket: to,
    }
}

const START_S: u64 = 1_800_000_000;

#[tokio::test(start_paused = true)]
async fn the_sampler_reads_each_second_of_the_injected_clock() {
    let clock = ManualClock::new(START_S * 1000);
    let recorder = MonitorRecorder::new();
    let store = Arc::new(SeriesStore::new());
    let monitor =
        Arc::new(Monitor::new(&recorder, clock.clone(), MonitorConfig::shipped(), store.clone()));
    let claims =
        recorder.register_counter(&key(catalog::CLAIMS, &[("outcome", "accepted")]), &META);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(monitor.clone().run(async move {
        let _ = stop_rx.await;
    }));
    for second in 0..5u64 {
        claims.increment(second);
        tokio::time::sleep(Duration::from_millis(1)).await;
        clock.advance_ms(1000);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = stop_tx.send(());
    task.await.expect("the sampler stops");
    let got = store.read(&request(catalog::CLAIMS, Resolution::Second, START_S, START_S + 4));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].values, vec![0.0, 1.0, 2.0, 3.0, 4.0], "one increase per second");
}

#[test]
fn a_long_run_keeps_the_stated_bounds() {
    let recorder = MonitorRecorder::new();
    let store = Arc::new(SeriesStore::new());
    let clock = ManualClock::new(START_S * 1000);
    let monitor = Monitor::new(&recorder, clock.clone(), MonitorConfig::shipped(), store.clone());
    let depth = recorder.register_gauge(&key(catalog::QUEUE_DEPTH, &[("game", "g1")]), &META);
    let fsyncs = recorder.register_counter(&key(catalog::STORE_FSYNCS, &[]), &META);
    let latency = recorder.register_histogram(&key(catalog::STORE_COMMIT_DURATION, &[]), &META);
    // Eight days of seconds: longer than both rings.
    let seconds = 8 * 24 * 3600u64;
    for s in 0..seconds {
        depth.set((s % 1000) as f64);
        fsyncs.increment(2);
        latency.record(0.002);
        clock.advance_ms(1000);
        monitor.sample(START_S + s);
    }
    let usage = store.usage();
    // The gauge, the counter, the histogram's count and its two quantiles, and the three
    // client-event counters every monitor registers.
    assert_eq!(usage.series, 8);
    assert!(usage.buckets <= usage.series * (SECOND_BUCKETS + MINUTE_BUCKETS));
    assert_eq!(usage.buckets, usage.series * (SECOND_BUCKETS + MINUTE_BUCKETS), "full rings");
    assert!(usage.capacity * 4 <= usage.series * SERIES_BYTES, "nothing allocated past the rings");

    let end = START_S + seconds - 1;
    let minutes =
        store.read(&request(catalog::STORE_FSYNCS, Resolution::Minute, end / 60 - 2, end / 60 - 1));
    assert_eq!(minutes[0].values, vec![120.0, 120.0], "a minute sums its seconds' increases");
    let old =
        store.read(&request(catalog::STORE_FSYNCS, Resolution::Second, end - 7200, end - 7200));
    assert!(old[0].values[0].is_nan(), "older than two hours: gone from the second ring");
    let kept =
        store.read(&request(catalog::STORE_FSYNCS, Resolution::Second, end - 7199, end - 7199));
    assert_eq!(kept[0].values, vec![2.0]);
}
