//! Reconciliation's game-log reader: any bytes are read into records or reported lines, never
//! a panic. Checks: the records come out in (order id, applied at) order, as many as counted;
//! every unusable line is reported once. A first byte below 16 sorts in runs of one to four
//! records (spilled to temporary files and merged, in passes when there are more than 64
//! runs); otherwise everything stays in memory.
#![no_main]

use std::io::Cursor;

use hongbao_reconcile::gamelog::{LogEvent, sort_reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (run_len, log) = match data.split_first() {
        Some((&b, rest)) if b < 16 => (1 + usize::from(b % 4), rest),
        _ => (1024, data),
    };
    let (mut malformed, mut foreign) = (0u64, 0u64);
    let mut report = |event: LogEvent| {
        match event {
            LogEvent::Malformed { .. } => malformed += 1,
            LogEvent::ForeignSerial { .. } => foreign += 1,
        }
        Ok(())
    };
    let sorted = sort_reader(Cursor::new(log), run_len, None, &mut report)
        .expect("reading memory and the temporary directory does not fail");
    let stats = sorted.stats.clone();
    let names = sorted.names.clone();
    let records: Vec<_> = sorted.map(|r| r.expect("the runs read back")).collect();
    assert_eq!(records.len() as u64, stats.records);
    assert!(records.windows(2).all(|w| w[0] <= w[1]), "records out of order");
    for r in &records {
        assert!(!names.name(r.game).is_empty());
    }
    assert_eq!((malformed, foreign), (stats.malformed, stats.foreign_serials));
    let lines = log.split(|&b| b == b'\n').count() as u64;
    assert!(stats.records + stats.malformed + stats.foreign_serials + stats.torn_tail <= lines);
});
