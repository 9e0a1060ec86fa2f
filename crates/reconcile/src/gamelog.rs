//! The game side's delivery log, sorted by serial in bounded memory.
//!
//! The log is in the order the game applied deliveries (time order); the merge needs it in
//! order-id order. [`sort_game_log`] reads it once, cuts it into runs of at most `run_len`
//! records, sorts each run in memory and writes it to a temporary file (34 bytes a record), then
//! [`SortedGameLog`] merges the runs k-way. More than [`MERGE_FAN_IN_MAX`] runs are first merged
//! in passes of that many, so the merge never holds more than `MERGE_FAN_IN_MAX` open files and
//! read buffers. A log of at most `run_len` records never touches the disk.
//!
//! Lines the reader cannot use are not errors: they are what reconciliation reports
//! ([`LogEvent`]): a malformed line, or a serial that is not an order id (an over-delivery by
//! construction: no order can have it). A torn last line (no newline, not JSON: a write in
//! progress or cut by a crash) is skipped and counted, as the simulator's own replay does.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use hongbao_domain::OrderId;
use hongbao_domain::order::ORDER_ID_BYTES;
use serde::Deserialize;

/// Default records per sorted run: 262,144 × 40 bytes in memory ≈ 10 MiB.
pub const SORT_RUN_LEN_DEFAULT: usize = 262_144;
/// Largest accepted run length (≈ 160 MiB of records in memory).
pub const SORT_RUN_LEN_MAX: usize = 1 << 22;
/// Most runs merged at once (open files, each with a [`RUN_READ_BUFFER_BYTES`] buffer).
pub const MERGE_FAN_IN_MAX: usize = 64;
/// Read buffer per run during a merge.
pub const RUN_READ_BUFFER_BYTES: usize = 64 * 1024;
/// Longest log line read; a longer one is reported malformed (a delivery line is < 4 KiB).
pub const GAME_LOG_LINE_BYTES_MAX: usize = 1 << 20;
/// Distinct game names remembered for reports; further names show as [`GAME_NAME_OVERFLOW`].
pub const GAME_NAMES_MAX: usize = 1_024;
pub const GAME_NAME_OVERFLOW: &str = "(too many game names)";
/// Longest serial text quoted in a report.
const SERIAL_QUOTE_MAX: usize = 64;

/// Bytes of one record in a run file: order id (16), applied at (8), user (8), game name (2).
const RECORD_BYTES: usize = ORDER_ID_BYTES + 8 + 8 + 2;

/// One applied delivery from the game's log, reduced to what reconciliation needs. Ordered by
/// (order id, applied at): the merge order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Applied {
    pub order_id: OrderId,
    pub applied_at_ms: u64,
    pub user: u64,
    /// Index into [`GameNames`].
    pub game: u16,
}

impl Applied {
    fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut out = [0u8; RECORD_BYTES];
        out[..16].copy_from_slice(&self.order_id.to_bytes());
        out[16..24].copy_from_slice(&self.applied_at_ms.to_be_bytes());
        out[24..32].copy_from_slice(&self.user.to_be_bytes());
        out[32..34].copy_from_slice(&self.game.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; RECORD_BYTES]) -> Applied {
        let mut id = [0u8; ORDER_ID_BYTES];
        id.copy_from_slice(&bytes[..16]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Applied {
            order_id: OrderId::from_bytes(id),
            applied_at_ms: u64_at(16),
            user: u64_at(24),
            game: u16::from_be_bytes([bytes[32], bytes[33]]),
        }
    }
}

/// Game names seen in the log, interned (a log names a handful of games; bounded anyway).
#[derive(Clone, Debug, Default)]
pub struct GameNames {
    names: Vec<String>,
}

impl GameNames {
    fn intern(&mut self, name: &str) -> u16 {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as u16;
        }
        if self.names.len() >= GAME_NAMES_MAX {
            return u16::MAX;
        }
        self.names.push(name.to_string());
        (self.names.len() - 1) as u16
    }

    pub fn name(&self, index: u16) -> &str {
        self.names.get(usize::from(index)).map_or(GAME_NAME_OVERFLOW, String::as_str)
    }
}

/// A line of the log that is not a usable record: reconciliation reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// Not a delivery record (bad JSON, a missing field, an over-long line).
    Malformed { line: u64, reason: String },
    /// A delivery whose serial is not an order id: no order can have it.
    ForeignSerial { line: u64, serial: String, user: u64, game: String, applied_at_ms: u64 },
}

/// What reading the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct GameLogStats {
    /// Usable records (sorted and merged).
    pub records: u64,
    pub malformed: u64,
    pub foreign_serials: u64,
    /// 1 when the last line was incomplete and skipped.
    pub torn_tail: u64,
    /// Sorted runs written to disk (0: sorted in memory).
    pub runs: u64,
    /// Intermediate merge passes (runs beyond [`MERGE_FAN_IN_MAX`]).
    pub merge_passes: u64,
    /// Earliest `applied_at_ms` in the log: with the latest, the span of time the log can
    /// speak for (the guard of `apply` compares it with the deliveries it judges).
    pub first_applied_at_ms: Option<u64>,
    /// Latest `applied_at_ms` in the log.
    pub last_applied_at_ms: Option<u64>,
}

/// The fields of a log line reconciliation reads (the simulator's `LogRecord` has more; they
/// are skipped).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    serial: Cow<'a, str>,
    #[serde(borrow)]
    game: Cow<'a, str>,
    user: u64,
    applied_at_ms: u64,
}

/// The log's records in (order id, applied at) order, read from memory or merged from runs.
pub struct SortedGameLog {
    source: Source,
    pub names: GameNames,
    pub stats: GameLogStats,
    /// Holds the run files; deleted on drop.
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SortedGameLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedGameLog").field("stats", &self.stats).finish_non_exhaustive()
    }
}

enum Source {
    Memory(std::vec::IntoIter<Applied>),
    Runs(Merge),
}

impl Iterator for SortedGameLog {
    type Item = io::Result<Applied>;

    fn next(&mut self) -> Option<io::Result<Applied>> {
        match &mut self.source {
            Source::Memory(records) => records.next().map(Ok),
            Source::Runs(merge) => merge.next(),
        }
    }
}

/// Reads the log at `path` and sorts it (see the module doc). `temp_dir`: where run files go
/// (default: the system's). `report` hears every unusable line, in log order.
pub fn sort_game_log(
    path: &Path,
    run_len: usize,
    temp_dir: Option<&Path>,
    report: &mut dyn FnMut(LogEvent) -> io::Result<()>,
) -> io::Result<SortedGameLog> {
    let file = File::open(path)?;
    sort_reader(BufReader::with_capacity(RUN_READ_BUFFER_BYTES, file), run_len, temp_dir, report)
}

/// [`sort_game_log`] over any reader.
pub fn sort_reader(
    mut reader: impl BufRead,
    run_len: usize,
    temp_dir: Option<&Path>,
    report: &mut dyn FnMut(LogEvent) -> io::Result<()>,
) -> io::Result<SortedGameLog> {
    assert!((1..=SORT_RUN_LEN_MAX).contains(&run_len), "run length {run_len} out of range");
    let mut names = GameNames::default();
    let mut stats = GameLogStats::default();
    let mut run: Vec<Applied> = Vec::with_capacity(run_len.min(SORT_RUN_LEN_DEFAULT));
    let mut dir: Option<tempfile::TempDir> = None;
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n =
            (&mut reader).take(GAME_LOG_LINE_BYTES_MAX as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = line.last() == Some(&b'\n');
        if !complete && n > GAME_LOG_LINE_BYTES_MAX {
            skip_rest_of_line(&mut reader)?;
            stats.malformed += 1;
            let reason = format!("line longer than {GAME_LOG_LINE_BYTES_MAX} bytes");
            report(LogEvent::Malformed { line: line_no, reason })?;
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = match serde_json::from_slice::<Line<'_>>(text) {
            Ok(parsed) => parsed,
            Err(_) if !complete => {
                stats.torn_tail = 1;
                break;
            }
            Err(e) => {
                stats.malformed += 1;
                report(LogEvent::Malformed { line: line_no, reason: e.to_string() })?;
                continue;
            }
        };
        stats.last_applied_at_ms = stats.last_applied_at_ms.max(Some(parsed.applied_at_ms));
        stats.first_applied_at_ms = Some(
            stats.first_applied_at_ms.map_or(parsed.applied_at_ms, |f| f.min(parsed.applied_at_ms)),
        );
        let Ok(order_id) = OrderId::parse(&parsed.serial) else {
            stats.foreign_serials += 1;
            report(LogEvent::ForeignSerial {
                line: line_no,
                serial: quote(&parsed.serial),
                user: parsed.user,
                game: parsed.game.into_owned(),
                applied_at_ms: parsed.applied_at_ms,
            })?;
            continue;
        };
        // Spill a full run only when one more record comes: a log of exactly `run_len`
        // records stays in memory.
        if run.len() == run_len {
            let dir = match &mut dir {
                Some(dir) => dir,
                None => dir.insert(temp_in(temp_dir)?),
            };
            runs.push(write_run(dir.path(), runs.len(), &mut run)?);
        }
        let game = names.intern(&parsed.game);
        run.push(Applied {
            order_id,
            applied_at_ms: parsed.applied_at_ms,
            user: parsed.user,
            game,
        });
        stats.records += 1;
    }
    let source = match dir {
        None => {
            run.sort_unstable();
            Source::Memory(run.into_iter())
        }
        Some(ref d) => {
            if !run.is_empty() {
                runs.push(write_run(d.path(), runs.len(), &mut run)?);
            }
            drop(run);
            stats.runs = runs.len() as u64;
            stats.merge_passes = merge_to_fan_in(d.path(), &mut runs)?;
            Source::Runs(Merge::open(&runs)?)
        }
    };
    Ok(SortedGameLog { source, names, stats, _dir: dir })
}

/// Reads past the rest of an over-long line, in bounded pieces.
fn skip_rest_of_line(reader: &mut impl BufRead) -> io::Result<()> {
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let m = reader.take(GAME_LOG_LINE_BYTES_MAX as u64).read_until(b'\n', &mut rest)?;
        if m == 0 || rest.last() == Some(&b'\n') {
            return Ok(());
        }
    }
}

/// Merges sorted runs in `dir`, oldest first, until one k-way merge can take them all;
/// returns the passes made.
fn merge_to_fan_in(dir: &Path, runs: &mut Vec<PathBuf>) -> io::Result<u64> {
    let mut passes = 0;
    let mut next_name = runs.len();
    while runs.len() > MERGE_FAN_IN_MAX {
        let group: Vec<PathBuf> = runs.drain(..MERGE_FAN_IN_MAX).collect();
        let merged = dir.join(format!("run-{next_name:06}"));
        next_name += 1;
        let mut out = BufWriter::with_capacity(RUN_READ_BUFFER_BYTES, File::create(&merged)?);
        for record in Merge::open(&group)? {
            out.write_all(&record?.encode())?;
        }
        out.flush()?;
        for path in group {
            std::fs::remove_file(path)?;
        }
        runs.push(merged);
        passes += 1;
    }
    Ok(passes)
}

fn temp_in(temp_dir: Option<&Path>) -> io::Result<tempfile::TempDir> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("hongbao-reconcile-");
        b
    };
    match temp_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
}

/// Sorts `run`, writes it as `dir/run-NNNNNN` and empties it.
fn write_run(dir: &Path, index: usize, run: &mut Vec<Applied>) -> io::Result<PathBuf> {
    run.sort_unstable();
    let path = dir.join(format!("run-{index:06}"));
    let mut out = BufWriter::with_capacity(RUN_READ_BUFFER_BYTES, File::create(&path)?);
    for record in run.iter() {
        out.write_all(&record.encode())?;
    }
    out.flush()?;
    run.clear();
    Ok(path)
}

fn quote(serial: &str) -> String {
    match serial.char_indices().nth(SERIAL_QUOTE_MAX) {
        Some((cut, _)) => format!("{}…", &serial[..cut]),
        None => serial.to_string(),
    }
}

/// A k-way merge of sorted run files.
struct Merge {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(Applied, usize)>>,
    failed: bool,
}

impl Merge {
    fn open(paths: &[PathBuf]) -> io::Result<Merge> {
        assert!(paths.len() <= MERGE_FAN_IN_MAX, "merge fan-in is bounded");
        let mut merge = Merge {
            readers: Vec::with_capacity(paths.len()),
            heap: BinaryHeap::with_capacity(paths.len()),
            failed: false,
        };
        for (i, path) in paths.iter().enumerate() {
            merge.readers.push(BufReader::with_capacity(RUN_READ_BUFFER_BYTES, File::open(path)?));
            if let Some(record) = read_record(&mut merge.readers[i])? {
                merge.heap.push(Reverse((record, i)));
            }
        }
        Ok(merge)
    }
}

impl Iterator for Merge {
    type Item = io::Result<Applied>;

    fn next(&mut self) -> Option<io::Result<Applied>> {
        if self.failed {
            return None;
        }
        let Reverse((record, i)) = self.heap.pop()?;
        match read_record(&mut self.readers[i]) {
            Ok(Some(next)) => {
                debug_assert!(next >= record, "runs are sorted");
                self.heap.push(Reverse((next, i)));
            }
            Ok(None) => {}
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        }
        Some(Ok(record))
    }
}

fn read_record(reader: &mut impl Read) -> io::Result<Option<Applied>> {
    let mut bytes = [0u8; RECORD_BYTES];
    let mut filled = 0;
    while filled < RECORD_BYTES {
        match reader.read(&mut bytes[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated run file"));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(Applied::decode(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u64) -> OrderId {
        OrderId::derive("c", n, "swipe-1")
    }

    fn line(serial: &str, game: &str, user: u64, at: u64) -> String {
        format!(
            r#"{{"serial":"{serial}","game":"{game}","user":{user},"zone_id":1,"role_id":2,"items":[{{"item":"x","count":1}}],"applied_at_ms":{at}}}"#
        )
    }

    fn sort_text(text: &str, run_len: usize) -> (Vec<Applied>, SortedGameLog, Vec<LogEvent>) {
        let mut events = Vec::new();
        let mut sorted = sort_reader(text.as_bytes(), run_len, None, &mut |e| {
            events.push(e);
            Ok(())
        })
        .expect("sort");
        let records: Vec<Applied> = sorted.by_ref().map(|r| r.expect("record")).collect();
        (records, sorted, events)
    }

    #[test]
    fn records_come_out_by_order_id_then_time_whatever_the_run_length() {
        let mut text = String::new();
        let mut expected = Vec::new();
        for n in 0..200u64 {
            // Time order in the file; ids in hash order.
            let at = 1_000 + n;
            text.push_str(&line(id(n % 150).as_str(), if n % 2 == 0 { "g1" } else { "g2" }, n, at));
            text.push('\n');
            expected.push((id(n % 150), at, n));
        }
        expected.sort();
        for run_len in [1, 2, 3, 7, 64, 199, 200, 1_000] {
            let (records, sorted, events) = sort_text(&text, run_len);
            assert!(events.is_empty());
            let got: Vec<_> =
                records.iter().map(|a| (a.order_id, a.applied_at_ms, a.user)).collect();
            assert_eq!(got, expected, "run length {run_len}");
            assert_eq!(sorted.stats.records, 200);
            let runs = if run_len >= 200 { 0 } else { 200u64.div_ceil(run_len as u64) };
            assert_eq!(sorted.stats.runs, runs, "run length {run_len}");
            assert_eq!(sorted.stats.merge_passes > 0, runs > MERGE_FAN_IN_MAX as u64);
            assert_eq!(sorted.stats.last_applied_at_ms, Some(1_199));
            assert_eq!(sorted.names.name(records[0].game).len(), 2);
        }
    }

    #[test]
    fn bad_lines_are_reported_and_a_torn_tail_is_skipped() {
        let good = line(id(1).as_str(), "g1", 7, 5);
        let text = format!(
            "{good}\nnot json\n\n{}\n{}\n{{\"serial\":\"{}\",\"gam",
            line("ORDER-1", "g2", 8, 6),
            r#"{"serial":"x"}"#,
            id(2)
        );
        let (records, sorted, events) = sort_text(&text, 1);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].order_id, id(1));
        assert_eq!(sorted.stats.malformed, 2);
        assert_eq!(sorted.stats.foreign_serials, 1);
        assert_eq!(sorted.stats.torn_tail, 1);
        assert!(matches!(&events[0], LogEvent::Malformed { line: 2, .. }), "{events:?}");
        assert!(
            matches!(&events[1], LogEvent::ForeignSerial { line: 4, serial, user: 8, game, .. }
                if serial == "ORDER-1" && game == "g2"),
            "{events:?}"
        );
        assert!(matches!(&events[2], LogEvent::Malformed { line: 5, .. }), "{events:?}");
    }

    #[test]
    fn a_complete_last_line_without_newline_counts() {
        let text = line(id(3).as_str(), "g1", 1, 9);
        let (records, sorted, _) = sort_text(&text, 4);
        assert_eq!(records.len(), 1);
        assert_eq!(sorted.stats.torn_tail, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn external_sort_equals_an_in_memory_sort(
            entries in proptest::collection::vec((0u64..50, 0u64..1_000), 0..300),
            run_len in 1usize..40,
        ) {
            let mut text = String::new();
            for (n, at) in &entries {
                text.push_str(&line(id(*n).as_str(), "g", *n, *at));
                text.push('\n');
            }
            let (records, _, _) = sort_text(&text, run_len);
            let mut expected: Vec<_> = entries.iter().map(|(n, at)| (id(*n), *at)).collect();
            expected.sort();
            let got: Vec<_> = records.iter().map(|a| (a.order_id, a.applied_at_ms)).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
