//! Reconciliation (DESIGN.md §1): should-send − actually-sent − still queued = the
//! resend list, checked against the game side's own delivery log.
//!
//! # Inputs, all streamed in order-id order
//!
//! - the should-send records: every order, through [`LedgerScan::scan_orders`] pages;
//! - our actual-send log: [`LedgerScan::scan_sent`] pages, (order id, time) order;
//! - what is still queued: a point read ([`LedgerScan::in_queue`]) per waiting order, and one
//!   pass over every game's queue ([`LedgerScan::scan_queue`]) for entries nobody accounts for;
//! - optionally the game's log (JSON lines in time order), external-sorted by serial
//!   ([`gamelog`]).
//!
//! The merge takes the smallest id at the head of the three streams, gathers everything about
//! it, and [`classify`] decides (see [`Class`] for the exact semantics of each class). Every
//! finding is re-checked with point reads before it is reported, because pages are not one
//! snapshot: a pass over a running node sees orders move under it, and reports such an order as
//! `changed_during_scan` (quiet) instead of guessing. Then, with `apply`, the repairs go
//! through the store's normal paths: [`LedgerRepair::requeue`] for the resend list (idempotent:
//! a queued order answers `Unchanged`), [`LedgerRepair::record_delivered`] for what the game
//! has and we do not (idempotent: a delivered order answers `Unchanged`; a leased one is left
//! to its worker).
//!
//! # Memory bound
//!
//! Independent of the number of orders, log lines and findings:
//!
//! - one page of orders and one of send-log rows: `page_len` ≤ [`SCAN_PAGE_MAX`] rows each
//!   (default [`PAGE_LEN_DEFAULT`]: ≈ 4,096 × 0.4 KB ≈ 2 MB of orders);
//! - the game log's sort: one run of `sort_run_len` records of 40 bytes while reading
//!   (default [`SORT_RUN_LEN_DEFAULT`] = 262,144: ≈ 10 MiB), then at most
//!   [`MERGE_FAN_IN_MAX`] open runs with a [`RUN_READ_BUFFER_BYTES`] buffer each (4 MiB),
//!   plus at most [`GAME_NAMES_MAX`] interned game names;
//! - at most [`APPLY_IN_FLIGHT_MAX`] repairs in flight;
//! - one 8 KiB buffer per output file; rows are streamed to disk.
//!
//! So about 20 MiB with the defaults, plus the store's own caches (fjall's block cache and
//! memtables), which the store bounds. The disk needs 34 bytes per game-log line for the runs
//! (in the temporary directory, deleted at the end) and the size of the findings for the files.
//!
//! [`LedgerScan::scan_orders`]: hongbao_store::LedgerScan::scan_orders
//! [`LedgerScan::scan_sent`]: hongbao_store::LedgerScan::scan_sent
//! [`LedgerScan::in_queue`]: hongbao_store::LedgerScan::in_queue
//! [`LedgerScan::scan_queue`]: hongbao_store::LedgerScan::scan_queue
//! [`LedgerRepair::requeue`]: hongbao_store::LedgerRepair::requeue
//! [`LedgerRepair::record_delivered`]: hongbao_store::LedgerRepair::record_delivered
//! [`SCAN_PAGE_MAX`]: hongbao_store::SCAN_PAGE_MAX

pub mod classify;
mod engine;
pub mod gamelog;
pub mod guard;
pub mod report;
mod request;

pub use classify::{Action, Class, Quiet, classify};
pub use engine::{
    APPLY_IN_FLIGHT_MAX, Ledger, Options, PAGE_LEN_DEFAULT, ReconcileError, read_order_ids,
    reconcile, requeue_list,
};
pub use gamelog::{
    GAME_NAMES_MAX, MERGE_FAN_IN_MAX, RUN_READ_BUFFER_BYTES, SORT_RUN_LEN_DEFAULT, SORT_RUN_LEN_MAX,
};
pub use guard::{Exposure, Guards, MAX_REQUEUE_SHARE_DEFAULT, Refusal};
pub use report::{ApplyTally, Row, Summary};
pub use request::ReconcileRequest;
