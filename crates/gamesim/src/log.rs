//! The simulator's append-only JSON-lines files: the game's own delivery log (the game's truth for
//! reconciliation, and what lets a restarted simulator still answer `duplicate` for serials
//! applied before the restart) and the log of roles players created (so a restart keeps them).
//!
//! One JSON line per record, appended and flushed before the request is answered, so a simulator
//! that dies (even by SIGKILL) never acknowledged what it did not log. A write cut short by a
//! crash leaves a torn last line; replay drops it and truncates the file to the last complete
//! line so the next append starts on a fresh line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{SimError, lock};

/// Longest log line replay accepts; a longer one is corruption, not a delivery (a delivery's
/// body is bounded by the HTTP body limit, far below this).
const LOG_LINE_BYTES_MAX: usize = 1 << 20;

/// One item of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryItem {
    pub item: String,
    pub count: u32,
}

/// One line of the delivery log.
///
/// WARNING: this is a persisted layout read by reconciliation and by replay after a restart;
/// renaming or removing a field breaks every log already written. Add fields only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The caller's serial: hongbao's order id.
    pub serial: String,
    /// The game id (as in the campaign file).
    pub game: String,
    pub user: u64,
    pub zone_id: u16,
    pub role_id: u64,
    pub items: Vec<DeliveryItem>,
    /// When the game applied it, milliseconds since the Unix epoch.
    pub applied_at_ms: u64,
}

/// One line of the created-roles log: a role a player created at runtime.
///
/// WARNING: a persisted layout replayed after a restart; add fields only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedRoleRecord {
    /// The game id (as in the campaign file).
    pub game: String,
    pub user: u64,
    pub zone_id: u16,
    pub role_id: u64,
}

/// The game's delivery log.
pub(crate) type DeliveryLog = JsonLinesLog<LogRecord>;
/// The log of roles created at runtime.
pub(crate) type RoleLog = JsonLinesLog<CreatedRoleRecord>;

/// An open log of `R` records: appends go through one mutex so lines never interleave.
#[derive(Debug)]
pub(crate) struct JsonLinesLog<R> {
    /// What the log holds, for messages ("delivery log", "role log").
    what: &'static str,
    path: PathBuf,
    writer: Mutex<BufWriter<File>>,
    /// Set after a failed write: the file may now end in a partial line, and appending after it
    /// would corrupt the middle of the log, so every later append is refused.
    failed: AtomicBool,
    records: std::marker::PhantomData<fn(&R)>,
}

impl<R: Serialize + DeserializeOwned> JsonLinesLog<R> {
    /// Opens (creating if missing) the log at `path`, calling `each` for every complete record in
    /// order. A torn last line is dropped and cut off; any other malformed line is an error.
    pub(crate) fn open(
        what: &'static str,
        path: &Path,
        mut each: impl FnMut(R, u64) -> Result<(), SimError>,
    ) -> Result<Self, SimError> {
        let io_err = |source: io::Error| SimError::LogIo { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;

        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        let mut line_no = 0u64;
        // Byte offset just past the last line we keep.
        let mut good_len = 0u64;
        let mut needs_newline = false;
        loop {
            line.clear();
            let n = (&mut reader)
                .take(LOG_LINE_BYTES_MAX as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(io_err)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let complete = line.last() == Some(&b'\n');
            if !complete && n > LOG_LINE_BYTES_MAX {
                return Err(SimError::LogCorrupt {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason: format!("line longer than {LOG_LINE_BYTES_MAX} bytes"),
                });
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                if complete {
                    good_len += n as u64;
                }
                continue;
            }
            match serde_json::from_slice::<R>(text) {
                Ok(record) => {
                    each(record, line_no)?;
                    good_len += n as u64;
                    needs_newline = !complete;
                }
                // The last line without its newline: a write the crash cut short. Its request
                // was never answered, so dropping it loses nothing acknowledged.
                Err(_) if !complete => {
                    tracing::warn!(path = %path.display(), line = line_no, log = what, "dropping torn last line");
                }
                Err(e) => {
                    return Err(SimError::LogCorrupt {
                        path: path.to_path_buf(),
                        line: line_no,
                        reason: e.to_string(),
                    });
                }
            }
        }
        drop(reader);

        file.set_len(good_len).map_err(io_err)?;
        file.seek(SeekFrom::End(0)).map_err(io_err)?;
        let mut writer = BufWriter::new(file);
        if needs_newline {
            writer.write_all(b"\n").and_then(|()| writer.flush()).map_err(io_err)?;
        }
        Ok(JsonLinesLog {
            what,
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            failed: AtomicBool::new(false),
            records: std::marker::PhantomData,
        })
    }

    /// Appends one record and flushes it to the operating system before returning, so a process
    /// crash after an `applied` answer cannot lose the line.
    pub(crate) fn append(&self, record: &R) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut writer = lock(&self.writer);
        if self.failed.load(Ordering::Acquire) {
            return Err(io::Error::other(format!("an earlier write to the {} failed", self.what)));
        }
        let result = writer.write_all(&line).and_then(|()| writer.flush());
        if let Err(e) = &result {
            self.failed.store(true, Ordering::Release);
            tracing::error!(path = %self.path.display(), log = self.what, error = %e, "log write failed; refusing further appends");
        }
        result
    }

    /// Flushes and syncs the log to disk (graceful shutdown).
    pub(crate) fn sync(&self) -> io::Result<()> {
        let mut writer = lock(&self.writer);
        writer.flush()?;
        writer.get_ref().sync_data()
    }
}
