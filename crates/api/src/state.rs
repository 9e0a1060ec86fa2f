//! What every handler can reach. Cheap to clone (all `Arc`s): axum clones it per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hongbao_domain::Campaign;

use crate::static_catalog::CatalogStore;

/// Shared state of an API node. Later slices add the stores, the queue, the role cache and the
/// metrics handles here, each behind an `Arc` built once at startup.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub campaign: Arc<Campaign>,
    pub catalog: Arc<CatalogStore>,
    /// `/readyz` answers 200 only while this is set: the app sets it once its dependencies
    /// answer and clears it when shutdown begins, so load balancers drain the node first.
    pub ready: Arc<AtomicBool>,
}

impl ApiState {
    /// State for `campaign`, with its catalog built in memory. Starts *not* ready.
    pub fn new(campaign: Arc<Campaign>) -> ApiState {
        let catalog = Arc::new(CatalogStore::from_campaign(&campaign));
        ApiState { campaign, catalog, ready: Arc::new(AtomicBool::new(false)) }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
