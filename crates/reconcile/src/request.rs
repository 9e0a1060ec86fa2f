//! The body of the admin endpoint `POST /admin/v1/reconcile`. Here rather than in the binary so
//! that the request parser can be reached from outside it (the fuzz targets in `fuzz/`).

use std::path::PathBuf;

use serde::Deserialize;

/// The body of `POST /admin/v1/reconcile`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// Repair; without it the pass is a dry run that reports what it would do.
    #[serde(default)]
    pub apply: bool,
    /// Most share of the delivered orders `apply` may deliver again (default 0.05).
    pub max_requeue_share: Option<f64>,
    /// Apply even when a guard refuses.
    #[serde(default)]
    pub force: bool,
    /// A game log under the node's `--reconcile-dir` (relative to it, or absolute inside it).
    #[schema(value_type = Option<String>)]
    pub game_log: Option<PathBuf>,
    pub game_log_until_ms: Option<u64>,
    /// Where the files go, under the node's `--reconcile-dir`; without it only the summary is
    /// made.
    #[schema(value_type = Option<String>)]
    pub out: Option<PathBuf>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub stuck_after_s: Option<u64>,
    #[serde(default)]
    pub include_dead: bool,
    #[serde(default)]
    pub include_expired: bool,
}
