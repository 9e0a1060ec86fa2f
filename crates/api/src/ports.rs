//! Object-safe views of the store ports, so [`crate::ApiState`] holds one `Arc<dyn …>` whatever
//! the mode (embedded fjall, in-memory for tests, Redis later) instead of a type parameter that
//! would spread through every handler. The cost is one boxed future per call.

use std::future::Future;
use std::pin::Pin;

use hongbao_domain::Channel;
use hongbao_store::{GrantLedger, GrantOutcome, GrantRequest, StoreError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`GrantLedger`], boxed.
pub trait Grants: Send + Sync + 'static {
    fn grant(&self, req: GrantRequest) -> BoxFuture<'_, Result<GrantOutcome, StoreError>>;
    fn granted(&self, channel: Channel) -> u64;
}

impl<T: GrantLedger> Grants for T {
    fn grant(&self, req: GrantRequest) -> BoxFuture<'_, Result<GrantOutcome, StoreError>> {
        Box::pin(GrantLedger::grant(self, req))
    }

    fn granted(&self, channel: Channel) -> u64 {
        GrantLedger::granted(self, channel)
    }
}
