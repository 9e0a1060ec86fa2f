//! One reconciliation pass: a streaming merge by order id, the decision per id, re-checks, the
//! report, and (with `apply`) the repairs through the store's normal paths.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hongbao_domain::{GameIndex, Order, OrderId, OrderStatus};
use hongbao_store::{
    ClaimLedger, LedgerRepair, LedgerScan, QueuedRef, RecordOutcome, RequeueOutcome, SCAN_PAGE_MAX,
    SentRecord, StoreError,
};

use crate::classify::{
    Action, Class, Facts, Finding, GameFacts, Quiet, Rules, SentFacts, classify,
};
use crate::gamelog::{self, Applied, GameNames, LogEvent, SORT_RUN_LEN_DEFAULT, SortedGameLog};
use crate::guard::{self, Guards, Refusal};
use crate::report::{ApplyTally, GameLogSummary, Report, Row, Summary};

/// Rows per page of the store's scans (at most [`SCAN_PAGE_MAX`]).
pub const PAGE_LEN_DEFAULT: usize = 4_096;
/// Repairs (requeue, record) in flight at once during `apply`: enough to fill the store's group
/// commits, few enough to hold (each is one small boxed future).
pub const APPLY_IN_FLIGHT_MAX: usize = 256;

/// Every port a pass needs, in one bound.
pub trait Ledger: ClaimLedger + LedgerScan + LedgerRepair {}
impl<T: ClaimLedger + LedgerScan + LedgerRepair> Ledger for T {}

/// How to run a pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The pass's clock (Unix ms): the stuck test and the repairs' time.
    pub now_ms: u64,
    /// Game ids by index (the campaign's order, as the store is bound): the queues to scan.
    pub games: Vec<String>,
    /// Examine orders created in `[from_ms, to_ms)`.
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    /// The game side's delivery log (JSON lines with `serial`, `game`, `user`,
    /// `applied_at_ms`).
    pub game_log: Option<PathBuf>,
    /// The game log is complete up to this time; default `now_ms`. A log copied from the game
    /// side earlier must say when, or our later deliveries would look lost.
    pub game_log_until_ms: Option<u64>,
    pub stuck_after_ms: u64,
    pub include_dead: bool,
    pub include_expired: bool,
    /// Requeue the resend list and record what the game has. Without it the pass is a dry
    /// run: it reports what it would do and changes nothing.
    pub apply: bool,
    /// What `apply` refuses to do unless forced (see [`crate::guard`]).
    pub guards: Guards,
    /// A resent order's new deadline is `now_ms + resend_deliver_within_ms`.
    pub resend_deliver_within_ms: u64,
    /// Where the files go; `None`: count only.
    pub out: Option<PathBuf>,
    /// Where the game log's sort runs go; default: the system's temporary directory.
    pub temp_dir: Option<PathBuf>,
    pub sort_run_len: usize,
    pub page_len: usize,
}

impl Options {
    /// Defaults: everything, no game log, stuck after 10 minutes, no repairs, count only.
    pub fn new(now_ms: u64, games: Vec<String>, resend_deliver_within_ms: u64) -> Options {
        Options {
            now_ms,
            games,
            from_ms: None,
            to_ms: None,
            game_log: None,
            game_log_until_ms: None,
            stuck_after_ms: 600_000,
            include_dead: false,
            include_expired: false,
            apply: false,
            guards: Guards::default(),
            resend_deliver_within_ms,
            out: None,
            temp_dir: None,
            sort_run_len: SORT_RUN_LEN_DEFAULT,
            page_len: PAGE_LEN_DEFAULT,
        }
    }

    fn rules(&self) -> Rules {
        Rules {
            now_ms: self.now_ms,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            game_log_until_ms: self.game_log_until_ms.unwrap_or(self.now_ms),
            stuck_after_ms: self.stuck_after_ms,
            include_dead: self.include_dead,
            include_expired: self.include_expired,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read the game log {}: {source}", path.display())]
    GameLog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write the report: {0}")]
    Output(#[source] io::Error),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// `apply` without `force`, and the dry run before it failed a guard: nothing was changed.
    #[error("apply refused: {0}")]
    Refused(Refusal),
    /// A stream the merge relies on was not in key order: a store bug, never guessed around.
    #[error("{0} came out of order")]
    Unsorted(&'static str),
}

fn output(e: io::Error) -> ReconcileError {
    ReconcileError::Output(e)
}

/// Runs one pass over `store` (see the crate doc). Returns the summary; the rows are in
/// `options.out`. With `apply` (and without `guards.force`), a dry run goes first, and a guard
/// it fails refuses the pass before anything is changed ([`ReconcileError::Refused`]).
pub async fn reconcile<S: Ledger>(store: &S, options: &Options) -> Result<Summary, ReconcileError> {
    let share = options.guards.max_requeue_share;
    if !(0.0..=1.0).contains(&share) {
        return Err(ReconcileError::InvalidOptions(format!(
            "the largest requeue share {share} is outside 0..=1"
        )));
    }
    if options.apply && !options.guards.force {
        let dry = Options { apply: false, out: None, ..options.clone() };
        if let Some(refusal) = pass(store, &dry).await?.refusal {
            return Err(ReconcileError::Refused(refusal));
        }
    }
    pass(store, options).await
}

/// Refuses options no pass can run with, before anything is read.
fn check_options(options: &Options) -> Result<(), ReconcileError> {
    if options.page_len == 0 || options.page_len > SCAN_PAGE_MAX {
        return Err(ReconcileError::InvalidOptions(format!(
            "page length {} is outside 1..={SCAN_PAGE_MAX}",
            options.page_len
        )));
    }
    if !(1..=gamelog::SORT_RUN_LEN_MAX).contains(&options.sort_run_len) {
        return Err(ReconcileError::InvalidOptions(format!(
            "sort run length {} is outside 1..={}",
            options.sort_run_len,
            gamelog::SORT_RUN_LEN_MAX
        )));
    }
    if options.games.len() > usize::from(u8::MAX) + 1 {
        return Err(ReconcileError::InvalidOptions("more games than indexes".into()));
    }
    Ok(())
}

async fn pass<S: Ledger>(store: &S, options: &Options) -> Result<Summary, ReconcileError> {
    let started = Instant::now();
    check_options(options)?;
    let rules = options.rules();
    let mut summary = Summary::new(options.now_ms, options.from_ms, options.to_ms, options.apply);
    let mut report = Report::create(options.out.as_deref()).map_err(output)?;
    summary.out = report.dir().map(Path::to_path_buf);

    // 1. The game log, sorted by serial (blocking file work off the async threads).
    let mut game = GameStream::default();
    if let Some(path) = &options.game_log {
        let (back, sorted) = sort_log(path, options, rules, report, &mut summary).await?;
        report = back;
        summary.game_log = Some(GameLogSummary {
            path: path.clone(),
            covered_until_ms: rules.game_log_until_ms,
            stats: sorted.stats.clone(),
        });
        game.log = Some(sorted);
        game.path = path.clone();
    }

    // 2. The merge: orders, send log and game log, each in order-id order.
    let mut orders = OrderStream::new(options.page_len);
    let mut sent = SentStream::new(options.page_len);
    let mut apply = Apply::default();
    loop {
        let heads = [orders.peek(store).await?, sent.peek(store).await?, game.peek()?];
        let Some(id) = heads.into_iter().flatten().min() else { break };
        let order = (heads[0] == Some(id)).then(|| orders.pop());
        let mut sent_facts = SentFacts::default();
        while sent.peek(store).await? == Some(id) {
            let row = sent.pop();
            sent_facts.rows += 1;
            sent_facts.last_at_ms = sent_facts.last_at_ms.max(Some(row.delivered_at_ms));
        }
        let mut game_facts = game.log.as_ref().map(|_| GameFacts::default());
        let mut first_applied: Option<Applied> = None;
        while game.peek()? == Some(id) {
            let record = game.pop();
            if let Some(g) = &mut game_facts {
                g.applied += 1;
                // Records of one id come in time order: the first is the earliest.
                g.first_at_ms.get_or_insert(record.applied_at_ms);
            }
            first_applied.get_or_insert(record);
        }
        let entry_present = match &order {
            Some(o) if o.status.is_in_queue() && rules.in_window(o.created_at_ms) => {
                Some(store.in_queue(o).await?)
            }
            _ => None,
        };
        if let Some(o) = &order
            && o.status == OrderStatus::Delivered
            && rules.in_window(o.created_at_ms)
        {
            summary.exposure.delivered += 1;
            // The time classify judges a delivery by against the log's coverage.
            let at_ms = sent_facts.last_at_ms.max(o.delivered_at_ms).unwrap_or(0);
            if game.log.is_some() && at_ms <= rules.game_log_until_ms {
                summary.exposure.judged(at_ms);
            }
        }
        let facts =
            Facts { order: order.as_ref(), sent: sent_facts, game: game_facts, entry_present };
        let verdict = classify(&facts, &rules);
        if verdict.findings.is_empty() {
            summary.count_quiet(verdict.quiet.unwrap_or(Quiet::Delivered));
            continue;
        }
        if !still_true(store, id, order.as_ref(), &verdict.findings).await? {
            summary.count_quiet(Quiet::ChangedDuringScan);
            continue;
        }
        let names = game.log.as_ref().map(|l| &l.names);
        for finding in &verdict.findings {
            let row = finding_row(id, &facts, first_applied.as_ref(), names, finding);
            let ctx = EmitCtx { store, options, id, first_applied };
            emit(&ctx, &mut summary, &mut report, &mut apply, row, finding).await?;
        }
    }
    summary.orders_scanned = orders.scanned;
    summary.sent_rows_scanned = sent.scanned;
    summary.exposure.redeliver = summary.classes.get(&Class::LostAtGame).copied().unwrap_or(0);
    let log_span = summary
        .game_log
        .as_ref()
        .map(|g| (g.stats.first_applied_at_ms, g.stats.last_applied_at_ms));
    summary.refusal = guard::check(&summary.exposure, log_span, options.guards.max_requeue_share);

    // The repairs end before the queue pass, so it sees their entries settled.
    apply.drain(&mut summary, &mut report).await?;

    // 3. Queue entries that no waiting order accounts for.
    orphan_entries(store, options, &mut summary, &mut report).await?;
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.finish(&summary).map_err(output)?;
    Ok(summary)
}

/// Sorts the game log on a blocking thread; unusable lines become anomalies.
async fn sort_log(
    path: &Path,
    options: &Options,
    rules: Rules,
    mut report: Report,
    summary: &mut Summary,
) -> Result<(Report, SortedGameLog), ReconcileError> {
    let path = path.to_path_buf();
    let temp_dir = options.temp_dir.clone();
    let run_len = options.sort_run_len;
    let task = tokio::task::spawn_blocking(move || {
        let (mut malformed, mut foreign) = (0u64, 0u64);
        let sorted = gamelog::sort_game_log(&path, run_len, temp_dir.as_deref(), &mut |event| {
            match log_event_row(event, &rules) {
                Some((class, row)) => {
                    if class == Class::GameLogMalformed {
                        malformed += 1;
                    } else {
                        foreign += 1;
                    }
                    report.anomaly(&row)
                }
                None => Ok(()),
            }
        });
        (report, sorted, malformed, foreign, path)
    });
    let (report, sorted, malformed, foreign, path) =
        task.await.map_err(|e| ReconcileError::GameLog {
            path: options.game_log.clone().unwrap_or_default(),
            source: io::Error::other(e),
        })?;
    let sorted = sorted.map_err(|source| ReconcileError::GameLog { path, source })?;
    summary.count_n(Class::GameLogMalformed, malformed);
    summary.count_n(Class::AppliedWithoutOrder, foreign);
    Ok((report, sorted))
}

/// The anomaly row of an unusable game-log line, if it is reported (foreign serials outside
/// the window are not).
fn log_event_row(event: LogEvent, rules: &Rules) -> Option<(Class, Row)> {
    Some(match event {
        LogEvent::Malformed { line, reason } => (
            Class::GameLogMalformed,
            Row {
                class: Some(Class::GameLogMalformed),
                action: Some(Action::List),
                detail: Some(format!("line {line}: {reason}")),
                fix: Some(Class::GameLogMalformed.fix()),
                ..Row::default()
            },
        ),
        LogEvent::ForeignSerial { line, serial, user, game, applied_at_ms } => {
            if !rules.in_window(applied_at_ms) {
                return None;
            }
            (
                Class::AppliedWithoutOrder,
                Row {
                    class: Some(Class::AppliedWithoutOrder),
                    action: Some(Action::List),
                    order_id: Some(serial),
                    user: Some(user),
                    game: Some(game),
                    game_applied: Some(1),
                    first_applied_at_ms: Some(applied_at_ms),
                    detail: Some(format!("line {line}: the serial is not an order id")),
                    fix: Some(Class::AppliedWithoutOrder.fix()),
                    ..Row::default()
                },
            )
        }
    })
}

/// Re-reads what a finding rests on: the live store may have moved on since the pages were
/// read (an order delivered between the order scan and the send-log scan, say).
async fn still_true<S: Ledger>(
    store: &S,
    id: OrderId,
    order: Option<&Order>,
    findings: &[Finding],
) -> Result<bool, StoreError> {
    let now = store.order(&id).await?;
    if now.as_ref() != order {
        return Ok(false);
    }
    if findings.iter().any(|f| f.class == Class::SendRowMissing) {
        let after = SentRecord { order_id: id, delivered_at_ms: 0 };
        let rows = store.scan_sent(Some(after), 1).await?;
        if rows.first().is_some_and(|r| r.order_id == id) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn finding_row(
    id: OrderId,
    facts: &Facts<'_>,
    first_applied: Option<&Applied>,
    names: Option<&GameNames>,
    finding: &Finding,
) -> Row {
    let mut row = match facts.order {
        Some(order) => Row::of_order(order),
        None => Row {
            order_id: Some(id.as_str().to_string()),
            user: first_applied.map(|a| a.user),
            game: first_applied.zip(names).map(|(a, n)| n.name(a.game).to_string()),
            ..Row::default()
        },
    };
    row.sent_rows = Some(facts.sent.rows);
    row.last_sent_at_ms = facts.sent.last_at_ms;
    row.game_applied = facts.game.map(|g| g.applied);
    row.first_applied_at_ms = facts.game.and_then(|g| g.first_at_ms);
    row.detail = Some(detail(finding.class, facts));
    if finding.action == Action::Resend {
        row.why = Some(finding.class);
    } else {
        row.class = Some(finding.class);
        row.action = Some(finding.action);
        row.fix = Some(finding.class.fix());
    }
    row
}

fn detail(class: Class, facts: &Facts<'_>) -> String {
    let status = facts.order.map_or("none", |o| o.status.as_str());
    match class {
        Class::NotSentNorQueued => {
            let at = facts.order.and_then(|o| o.ready_at_ms).unwrap_or(0);
            format!("status {status}, its queue entry (due {at}) is missing")
        }
        Class::LostAtGame => {
            format!("our send log has {} row(s), the game's log none", facts.sent.rows)
        }
        Class::DeliveredUnrecorded => format!("status {status}, the game's log has it"),
        Class::AppliedTwice => {
            format!("the game's log has the serial {} times", facts.game.map_or(0, |g| g.applied))
        }
        Class::SentWithoutOrder => format!("{} send-log row(s), no order", facts.sent.rows),
        Class::AppliedWithoutOrder => "in the game's log, no order".to_string(),
        Class::SendRowMissing => "status delivered, no send-log row".to_string(),
        Class::Stuck => {
            let at = facts.order.and_then(|o| o.ready_at_ms).unwrap_or(0);
            format!("status {status}, due since {at}")
        }
        Class::Dead | Class::Expired => {
            let error = facts.order.and_then(|o| o.last_error.clone()).unwrap_or_default();
            format!("status {status}; last error: {error}")
        }
        Class::OrphanQueueEntry | Class::GameLogMalformed => String::new(),
    }
}

/// What [`emit`] needs to know about the id besides its row.
struct EmitCtx<'a, 'o, S> {
    store: &'a S,
    options: &'o Options,
    id: OrderId,
    first_applied: Option<Applied>,
}

/// Reports a finding, and with `apply` starts its repair (the row is written when it ends).
async fn emit<'a, S: Ledger>(
    ctx: &EmitCtx<'a, '_, S>,
    summary: &mut Summary,
    report: &mut Report,
    apply: &mut Apply<'a>,
    row: Row,
    finding: &Finding,
) -> Result<(), ReconcileError> {
    summary.count(finding.class);
    let EmitCtx { store, options, id, first_applied } = *ctx;
    match finding.action {
        Action::Resend => {
            summary.resend += 1;
            if options.apply {
                let (now_ms, deliver_by_ms) = (
                    options.now_ms,
                    options.now_ms.saturating_add(options.resend_deliver_within_ms),
                );
                apply
                    .start(
                        summary,
                        report,
                        Box::pin(async move {
                            let outcome = store
                                .requeue(&id, now_ms, deliver_by_ms)
                                .await
                                .map(Repair::Requeue);
                            (row, outcome)
                        }),
                    )
                    .await?;
            } else {
                report.resend(&row).map_err(output)?;
            }
        }
        Action::Record => {
            summary.record += 1;
            let applied_at_ms = first_applied.map_or(options.now_ms, |a| a.applied_at_ms);
            if options.apply {
                let now_ms = options.now_ms;
                apply
                    .start(
                        summary,
                        report,
                        Box::pin(async move {
                            let outcome = store
                                .record_delivered(&id, applied_at_ms, now_ms)
                                .await
                                .map(Repair::Record);
                            (row, outcome)
                        }),
                    )
                    .await?;
            } else {
                report.anomaly(&row).map_err(output)?;
            }
        }
        Action::List => report.anomaly(&row).map_err(output)?,
    }
    Ok(())
}

/// A store's answer to a repair.
enum Repair {
    Requeue(RequeueOutcome),
    Record(RecordOutcome),
}

type RepairFuture<'a> =
    Pin<Box<dyn Future<Output = (Row, Result<Repair, StoreError>)> + Send + 'a>>;

/// Repairs in flight, at most [`APPLY_IN_FLIGHT_MAX`].
#[derive(Default)]
struct Apply<'a> {
    in_flight: FuturesUnordered<RepairFuture<'a>>,
}

impl<'a> Apply<'a> {
    async fn start(
        &mut self,
        summary: &mut Summary,
        report: &mut Report,
        repair: RepairFuture<'a>,
    ) -> Result<(), ReconcileError> {
        while self.in_flight.len() >= APPLY_IN_FLIGHT_MAX {
            self.settle_one(summary, report).await?;
        }
        self.in_flight.push(repair);
        Ok(())
    }

    async fn drain(
        &mut self,
        summary: &mut Summary,
        report: &mut Report,
    ) -> Result<(), ReconcileError> {
        while !self.in_flight.is_empty() {
            self.settle_one(summary, report).await?;
        }
        Ok(())
    }

    async fn settle_one(
        &mut self,
        summary: &mut Summary,
        report: &mut Report,
    ) -> Result<(), ReconcileError> {
        let Some((mut row, outcome)) = self.in_flight.next().await else { return Ok(()) };
        let tally = summary.applied.get_or_insert_with(ApplyTally::default);
        let label = match outcome {
            Ok(repair) => tally_repair(tally, &repair).to_string(),
            Err(error) => {
                tally.errors += 1;
                tracing::warn!(order = row.order_id.as_deref(), %error, "repair failed");
                format!("error: {error}")
            }
        };
        row.outcome = Some(label);
        if row.why.is_some() {
            report.resend(&row).map_err(output)
        } else {
            report.anomaly(&row).map_err(output)
        }
    }
}

fn tally_repair(tally: &mut ApplyTally, repair: &Repair) -> &'static str {
    match repair {
        Repair::Requeue(RequeueOutcome::Requeued(_)) => {
            tally.requeued += 1;
            "requeued"
        }
        Repair::Requeue(RequeueOutcome::Repaired(_)) => {
            tally.repaired += 1;
            "repaired"
        }
        Repair::Requeue(RequeueOutcome::Unchanged(_)) => {
            tally.unchanged += 1;
            "unchanged"
        }
        Repair::Requeue(RequeueOutcome::NotFound) | Repair::Record(RecordOutcome::NotFound) => {
            tally.not_found += 1;
            "not_found"
        }
        Repair::Record(RecordOutcome::Recorded(_)) => {
            tally.recorded += 1;
            "recorded"
        }
        Repair::Record(RecordOutcome::Unchanged(_)) => {
            tally.already_delivered += 1;
            "already_delivered"
        }
        Repair::Record(RecordOutcome::InFlight(_)) => {
            tally.in_flight += 1;
            "in_flight"
        }
    }
}

/// Requeues a list of order ids (e.g. a reviewed `resend.jsonl`) through the normal delivery
/// path, [`APPLY_IN_FLIGHT_MAX`] at a time. Idempotent: orders already queued answer
/// `unchanged`; applying the same list twice queues nothing the second time (unless an order
/// was delivered in between, which is then resent again — review before applying twice).
pub async fn requeue_list<S: LedgerRepair>(
    store: &S,
    ids: impl IntoIterator<Item = OrderId>,
    now_ms: u64,
    deliver_by_ms: u64,
) -> ApplyTally {
    let mut tally = ApplyTally::default();
    let mut in_flight = FuturesUnordered::new();
    let settle = |tally: &mut ApplyTally, outcome: Result<RequeueOutcome, StoreError>| match outcome
    {
        Ok(outcome) => {
            tally_repair(tally, &Repair::Requeue(outcome));
        }
        Err(error) => {
            tally.errors += 1;
            tracing::warn!(%error, "requeue failed");
        }
    };
    for id in ids {
        if in_flight.len() >= APPLY_IN_FLIGHT_MAX
            && let Some(outcome) = in_flight.next().await
        {
            settle(&mut tally, outcome);
        }
        in_flight.push(async move { store.requeue(&id, now_ms, deliver_by_ms).await });
    }
    while let Some(outcome) = in_flight.next().await {
        settle(&mut tally, outcome);
    }
    tally
}

/// Reads the order ids of a `resend.jsonl` (or any JSON lines with `order_id`).
pub fn read_order_ids(path: &Path) -> io::Result<Vec<OrderId>> {
    #[derive(serde::Deserialize)]
    struct Line {
        order_id: OrderId,
    }
    let text = std::fs::read_to_string(path)?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {e}", n + 1))
        })?;
        ids.push(parsed.order_id);
    }
    Ok(ids)
}

/// Scans every game's queue for entries no waiting order accounts for.
async fn orphan_entries<S: Ledger>(
    store: &S,
    options: &Options,
    summary: &mut Summary,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    for (index, game_id) in options.games.iter().enumerate() {
        let game = GameIndex(u8::try_from(index).unwrap_or(u8::MAX));
        let mut after: Option<QueuedRef> = None;
        loop {
            let page = store.scan_queue(game, after, options.page_len).await?;
            let Some(last) = page.last().copied() else { break };
            if after.is_some_and(|a| last <= a) {
                return Err(ReconcileError::Unsorted("queue entries"));
            }
            after = Some(last);
            for entry in page {
                summary.queue_entries_scanned += 1;
                let order = store.order(&entry.order_id).await?;
                let accounted = order.as_ref().is_some_and(|o| {
                    o.status.is_in_queue()
                        && o.ready_at_ms == Some(entry.ready_at_ms)
                        && &o.game_id == game_id
                });
                if accounted {
                    continue;
                }
                // Still there? (A finish or retry between the page and the read moves it.)
                let probe = probe_order(entry, game_id, order.as_ref());
                if !store.in_queue(&probe).await? {
                    continue;
                }
                summary.count(Class::OrphanQueueEntry);
                let mut row = match &order {
                    Some(o) => Row::of_order(o),
                    None => Row {
                        order_id: Some(entry.order_id.as_str().to_string()),
                        ..Row::default()
                    },
                };
                row.game = Some(game_id.clone());
                row.ready_at_ms = Some(entry.ready_at_ms);
                row.class = Some(Class::OrphanQueueEntry);
                row.action = Some(Action::List);
                row.fix = Some(Class::OrphanQueueEntry.fix());
                row.detail = Some(match &order {
                    Some(o) => format!(
                        "entry due {} in {game_id}; the order is {} (due {:?}, game {})",
                        entry.ready_at_ms, o.status, o.ready_at_ms, o.game_id
                    ),
                    None => format!("entry due {} in {game_id}; no such order", entry.ready_at_ms),
                });
                report.anomaly(&row).map_err(output)?;
            }
        }
    }
    Ok(())
}

/// An order value naming exactly `entry` (for [`LedgerScan::in_queue`], which reads the
/// entry at the order's game, due time and id).
fn probe_order(entry: QueuedRef, game_id: &str, order: Option<&Order>) -> Order {
    let base = order.cloned().unwrap_or_else(|| Order {
        id: entry.order_id,
        campaign_id: String::new(),
        user: 0,
        coupon_id: String::new(),
        gift_id: String::new(),
        game_id: String::new(),
        zone_id: hongbao_domain::ZoneId(0),
        role_id: hongbao_domain::RoleId(0),
        status: OrderStatus::Queued,
        created_at_ms: 0,
        deliver_by_ms: 0,
        updated_at_ms: 0,
        attempts: 0,
        last_error: None,
        delivered_at_ms: None,
        ready_at_ms: None,
    });
    Order { game_id: game_id.to_string(), ready_at_ms: Some(entry.ready_at_ms), ..base }
}

/// Orders in id order, one page at a time.
struct OrderStream {
    page: VecDeque<Order>,
    after: Option<OrderId>,
    done: bool,
    page_len: usize,
    scanned: u64,
}

impl OrderStream {
    fn new(page_len: usize) -> Self {
        Self { page: VecDeque::new(), after: None, done: false, page_len, scanned: 0 }
    }

    async fn peek<S: LedgerScan>(&mut self, store: &S) -> Result<Option<OrderId>, ReconcileError> {
        if self.page.is_empty() && !self.done {
            // A store's scan may answer without ever suspending: give the runtime's other tasks
            // a turn once a page, so a pass beside a serving node does not hog a worker.
            tokio::task::yield_now().await;
            let page = store.scan_orders(self.after, self.page_len).await?;
            self.done = page.is_empty();
            for order in page {
                if self.after.is_some_and(|a| order.id <= a) {
                    return Err(ReconcileError::Unsorted("orders"));
                }
                self.after = Some(order.id);
                self.page.push_back(order);
            }
        }
        Ok(self.page.front().map(|o| o.id))
    }

    fn pop(&mut self) -> Order {
        self.scanned += 1;
        self.page.pop_front().expect("peeked")
    }
}

/// The send log in (order id, time) order, one page at a time.
struct SentStream {
    page: VecDeque<SentRecord>,
    after: Option<SentRecord>,
    done: bool,
    page_len: usize,
    scanned: u64,
}

impl SentStream {
    fn new(page_len: usize) -> Self {
        Self { page: VecDeque::new(), after: None, done: false, page_len, scanned: 0 }
    }

    async fn peek<S: LedgerScan>(&mut self, store: &S) -> Result<Option<OrderId>, ReconcileError> {
        if self.page.is_empty() && !self.done {
            let page = store.scan_sent(self.after, self.page_len).await?;
            self.done = page.is_empty();
            for row in page {
                if self.after.is_some_and(|a| row <= a) {
                    return Err(ReconcileError::Unsorted("send-log rows"));
                }
                self.after = Some(row);
                self.page.push_back(row);
            }
        }
        Ok(self.page.front().map(|r| r.order_id))
    }

    fn pop(&mut self) -> SentRecord {
        self.scanned += 1;
        self.page.pop_front().expect("peeked")
    }
}

/// The sorted game log with a one-record look-ahead.
#[derive(Default)]
struct GameStream {
    log: Option<SortedGameLog>,
    path: PathBuf,
    head: Option<Applied>,
    last: Option<Applied>,
}

impl GameStream {
    fn peek(&mut self) -> Result<Option<OrderId>, ReconcileError> {
        if self.head.is_none()
            && let Some(log) = &mut self.log
        {
            match log.next() {
                Some(Ok(record)) => {
                    if self.last.is_some_and(|l| record < l) {
                        return Err(ReconcileError::Unsorted("game-log records"));
                    }
                    self.head = Some(record);
                }
                Some(Err(source)) => {
                    return Err(ReconcileError::GameLog { path: self.path.clone(), source });
                }
                None => {}
            }
        }
        Ok(self.head.map(|a| a.order_id))
    }

    fn pop(&mut self) -> Applied {
        let record = self.head.take().expect("peeked");
        self.last = Some(record);
        record
    }
}
