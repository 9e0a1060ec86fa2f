//! What a pass writes: `resend.jsonl` and `resend.csv` (the resend list), `anomalies.jsonl`
//! (everything else found), `summary.json`, and the summary table for a terminal. Rows are
//! streamed as they are found: the files are as large as the findings, the memory is not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use hongbao_domain::{Order, RoleId, ZoneId};
use serde::Serialize;

use crate::classify::{Action, Class, Quiet};
use crate::gamelog::GameLogStats;
use crate::guard::{Exposure, Refusal};

pub const RESEND_JSONL: &str = "resend.jsonl";
pub const RESEND_CSV: &str = "resend.csv";
pub const ANOMALIES_JSONL: &str = "anomalies.jsonl";
pub const SUMMARY_JSON: &str = "summary.json";
const CSV_HEADER: &str = "order_id,user,game,gift,zone,role,why,status,outcome";

/// One row of `resend.jsonl` or `anomalies.jsonl`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `resend.jsonl` only: why it is resent (the class).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Class>,
    /// `anomalies.jsonl` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The order id, or the game's serial for a serial that is not one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub game: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gift: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Our send-log rows for the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_rows: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sent_at_ms: Option<u64>,
    /// Times the game's log has the serial (absent without a game log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub game_applied: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_applied_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<&'static str>,
    /// With `--apply`: what the store answered (`requeued`, `repaired`, `unchanged`, `recorded`,
    /// `in_flight`, `not_found`, `error: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl Row {
    /// The order's fields every row carries.
    pub fn of_order(order: &Order) -> Row {
        Row {
            order_id: Some(order.id.as_str().to_string()),
            user: Some(order.user),
            game: Some(order.game_id.clone()),
            gift: Some(order.gift_id.clone()),
            zone: Some(order.zone_id),
            role: Some(order.role_id),
            status: Some(order.status.as_str().to_string()),
            created_at_ms: Some(order.created_at_ms),
            ready_at_ms: order.ready_at_ms,
            last_error: order.last_error.clone(),
            ..Row::default()
        }
    }

    fn csv_line(&self) -> String {
        let fields = [
            self.order_id.clone().unwrap_or_default(),
            self.user.map(|u| u.to_string()).unwrap_or_default(),
            self.game.clone().unwrap_or_default(),
            self.gift.clone().unwrap_or_default(),
            self.zone.map(|z| z.to_string()).unwrap_or_default(),
            self.role.map(|r| r.to_string()).unwrap_or_default(),
            self.why.map(|c| c.as_str().to_string()).unwrap_or_default(),
            self.status.clone().unwrap_or_default(),
            self.outcome.clone().unwrap_or_default(),
        ];
        let mut line = String::new();
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&csv_field(field));
        }
        line
    }
}

/// RFC 4180 quoting: fields with a comma, quote or line break are quoted, quotes doubled.
pub fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// The output files of a pass, or nowhere (a pass that only counts).
pub struct Report {
    files: Option<Files>,
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report").field("dir", &self.files.as_ref().map(|x| &x.dir)).finish()
    }
}

struct Files {
    dir: PathBuf,
    resend_jsonl: BufWriter<File>,
    resend_csv: BufWriter<File>,
    anomalies: BufWriter<File>,
}

impl Report {
    /// Creates `dir` (if needed) and the three row files in it, truncating earlier ones.
    pub fn create(dir: Option<&Path>) -> io::Result<Report> {
        let Some(dir) = dir else {
            return Ok(Report { files: None });
        };
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| File::create(dir.join(name)).map(BufWriter::new);
        let mut files = Files {
            dir: dir.to_path_buf(),
            resend_jsonl: open(RESEND_JSONL)?,
            resend_csv: open(RESEND_CSV)?,
            anomalies: open(ANOMALIES_JSONL)?,
        };
        writeln!(files.resend_csv, "{CSV_HEADER}")?;
        Ok(Report { files: Some(files) })
    }

    pub fn dir(&self) -> Option<&Path> {
        self.files.as_ref().map(|f| f.dir.as_path())
    }

    pub fn resend(&mut self, row: &Row) -> io::Result<()> {
        if let Some(files) = &mut self.files {
            serde_json::to_writer(&mut files.resend_jsonl, row)?;
            files.resend_jsonl.write_all(b"\n")?;
            writeln!(files.resend_csv, "{}", row.csv_line())?;
        }
        Ok(())
    }

    pub fn anomaly(&mut self, row: &Row) -> io::Result<()> {
        if let Some(files) = &mut self.files {
            serde_json::to_writer(&mut files.anomalies, row)?;
            files.anomalies.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Flushes the row files and writes `summary.json`.
    pub fn finish(mut self, summary: &Summary) -> io::Result<()> {
        if let Some(files) = &mut self.files {
            files.resend_jsonl.flush()?;
            files.resend_csv.flush()?;
            files.anomalies.flush()?;
            let mut out = BufWriter::new(File::create(files.dir.join(SUMMARY_JSON))?);
            serde_json::to_writer_pretty(&mut out, summary)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        Ok(())
    }
}

/// What `--apply` did, per store answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApplyTally {
    /// Delivered, dead or expired orders queued again with a new deadline.
    pub requeued: u64,
    /// Waiting orders whose missing queue entry was restored.
    pub repaired: u64,
    /// Already queued (or held): nothing done. A second `--apply` of the same list ends here.
    pub unchanged: u64,
    /// Recorded as delivered at the game's time.
    pub recorded: u64,
    /// Already delivered when recording: nothing done.
    pub already_delivered: u64,
    /// Leased by a worker right now: left to it.
    pub in_flight: u64,
    pub not_found: u64,
    pub errors: u64,
}

/// The game log's part of a summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GameLogSummary {
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// The log is taken as complete up to here (see `Options::game_log_until_ms`).
    pub covered_until_ms: u64,
    #[serde(flatten)]
    pub stats: GameLogStats,
}

/// The result of a pass: counts only (the rows are in the files).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub started_at_ms: u64,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<u64>,
    pub apply: bool,
    pub orders_scanned: u64,
    pub sent_rows_scanned: u64,
    pub queue_entries_scanned: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub game_log: Option<GameLogSummary>,
    /// Findings per class (every class present, zeros included).
    pub classes: BTreeMap<Class, u64>,
    /// Orders without findings, per category.
    pub quiet: BTreeMap<Quiet, u64>,
    /// Rows in the resend list.
    pub resend: u64,
    /// Orders to record as delivered.
    pub record: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<ApplyTally>,
    /// What the guards of `apply` look at.
    pub exposure: Exposure,
    /// The guard `apply` fails on this pass's findings (a dry run says so beforehand; a forced
    /// apply went ahead anyway).
    pub refusal: Option<Refusal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub out: Option<PathBuf>,
    /// No finding of any class.
    pub clean: bool,
}

impl Summary {
    pub fn new(started_at_ms: u64, from_ms: Option<u64>, to_ms: Option<u64>, apply: bool) -> Self {
        Summary {
            started_at_ms,
            elapsed_ms: 0,
            from_ms,
            to_ms,
            apply,
            orders_scanned: 0,
            sent_rows_scanned: 0,
            queue_entries_scanned: 0,
            game_log: None,
            classes: Class::ALL.into_iter().map(|c| (c, 0)).collect(),
            quiet: Quiet::ALL.into_iter().map(|q| (q, 0)).collect(),
            resend: 0,
            record: 0,
            applied: apply.then(ApplyTally::default),
            exposure: Exposure::default(),
            refusal: None,
            out: None,
            clean: true,
        }
    }

    pub fn count(&mut self, class: Class) {
        self.count_n(class, 1);
    }

    pub fn count_n(&mut self, class: Class, n: u64) {
        if n > 0 {
            *self.classes.entry(class).or_insert(0) += n;
            self.clean = false;
        }
    }

    pub fn count_quiet(&mut self, quiet: Quiet) {
        *self.quiet.entry(quiet).or_insert(0) += 1;
    }

    pub fn findings(&self) -> u64 {
        self.classes.values().sum()
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "reconciliation: {} orders, {} send-log rows, {} queue entries in {:.1} s{}",
            self.orders_scanned,
            self.sent_rows_scanned,
            self.queue_entries_scanned,
            self.elapsed_ms as f64 / 1000.0,
            if self.apply { " (--apply)" } else { "" }
        );
        match &self.game_log {
            Some(g) => {
                let _ = writeln!(
                    t,
                    "game log {}: {} records ({} malformed, {} foreign serials, {} sort runs), covered until {} ms",
                    g.path.display(),
                    g.stats.records,
                    g.stats.malformed,
                    g.stats.foreign_serials,
                    g.stats.runs,
                    g.covered_until_ms
                );
            }
            None => {
                let _ =
                    writeln!(t, "no game log: lost_at_game and delivered_unrecorded not checked");
            }
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "{:<24} {:>10}  action", "class", "count");
        for (class, count) in &self.classes {
            let action = match class {
                Class::NotSentNorQueued | Class::LostAtGame => "resend",
                Class::DeliveredUnrecorded => "record delivered",
                Class::Dead | Class::Expired => "list (resend when included)",
                Class::Stuck | Class::GameLogMalformed => "list",
                _ => "ALERT",
            };
            let _ = writeln!(t, "{:<24} {:>10}  {action}", class.as_str(), count);
        }
        let _ = writeln!(t);
        let _ = writeln!(t, "{:<24} {:>10}", "without findings", "count");
        for (quiet, count) in &self.quiet {
            let name = serde_json::to_value(quiet)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(t, "{name:<24} {count:>10}");
        }
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "resend list: {} orders; to record as delivered: {}",
            self.resend, self.record
        );
        if let Some(a) = &self.applied {
            let _ = writeln!(
                t,
                "applied: requeued {} repaired {} unchanged {} recorded {} already delivered {} in flight {} not found {} errors {}",
                a.requeued,
                a.repaired,
                a.unchanged,
                a.recorded,
                a.already_delivered,
                a.in_flight,
                a.not_found,
                a.errors
            );
        }
        if !self.apply {
            let _ = writeln!(t, "dry run: nothing changed (--apply repairs)");
        }
        if let Some(refusal) = &self.refusal {
            let verb = if self.apply { "applied although" } else { "--apply would refuse:" };
            let _ = writeln!(t, "{verb} {refusal}");
        }
        if let Some(out) = &self.out {
            let _ = writeln!(
                t,
                "files: {}/{{{RESEND_JSONL},{RESEND_CSV},{ANOMALIES_JSONL},{SUMMARY_JSON}}}",
                out.display()
            );
        }
        let _ = writeln!(t, "{}", if self.clean { "CLEAN" } else { "FINDINGS: see the files" });
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("abc"), "abc");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn a_summary_serialises_every_class_by_name() {
        let mut s = Summary::new(1, None, None, true);
        assert!(s.clean);
        s.count(Class::LostAtGame);
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["classes"]["lost_at_game"], 1);
        assert_eq!(json["classes"]["not_sent_nor_queued"], 0);
        assert_eq!(json["quiet"]["awaiting_game_log"], 0);
        assert_eq!(json["clean"], false);
        assert!(s.table().contains("lost_at_game"));
    }
}
