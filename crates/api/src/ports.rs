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

/// [`hongbao_store::ClaimLedger`], boxed.
pub trait Claims: Send + Sync + 'static {
    fn claim(
        &self,
        req: hongbao_store::ClaimRequest,
    ) -> BoxFuture<'_, Result<hongbao_store::ClaimOutcome, StoreError>>;
    /// `user`'s order `id` (`None`: none, or another user's).
    fn user_order<'a>(
        &'a self,
        user: u64,
        id: &'a hongbao_domain::OrderId,
    ) -> BoxFuture<'a, Result<Option<hongbao_domain::Order>, StoreError>>;
    fn orders_of(
        &self,
        user: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<hongbao_domain::Order>, StoreError>>;
    fn stock_taken(&self, gift: hongbao_domain::GiftIndex) -> u64;
    fn high_value_usage(
        &self,
        user: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<hongbao_store::HighValueUsage, StoreError>>;
}

impl<T: hongbao_store::ClaimLedger> Claims for T {
    fn claim(
        &self,
        req: hongbao_store::ClaimRequest,
    ) -> BoxFuture<'_, Result<hongbao_store::ClaimOutcome, StoreError>> {
        Box::pin(hongbao_store::ClaimLedger::claim(self, req))
    }

    fn user_order<'a>(
        &'a self,
        user: u64,
        id: &'a hongbao_domain::OrderId,
    ) -> BoxFuture<'a, Result<Option<hongbao_domain::Order>, StoreError>> {
        Box::pin(hongbao_store::ClaimLedger::user_order(self, user, id))
    }

    fn orders_of(
        &self,
        user: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<hongbao_domain::Order>, StoreError>> {
        Box::pin(hongbao_store::ClaimLedger::orders_of(self, user, limit))
    }

    fn stock_taken(&self, gift: hongbao_domain::GiftIndex) -> u64 {
        hongbao_store::ClaimLedger::stock_taken(self, gift)
    }

    fn high_value_usage(
        &self,
        user: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<hongbao_store::HighValueUsage, StoreError>> {
        Box::pin(hongbao_store::ClaimLedger::high_value_usage(self, user, now_ms))
    }
}
