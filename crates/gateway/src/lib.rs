//! The game side, seen from the campaign: the IDIP HTTP client ([`IdipClient`]) and the
//! multi-level role cache with single-flight ([`RoleCache`]: L1 in-process → optional shared L2 →
//! the game side).
//!
//! Depends only on the domain. The API uses the cache for the gift list and the claim; the
//! delivery workers use [`IdipClient::deliver`].

pub mod cache;
pub mod error;
pub mod idip;
pub mod memory;

pub use cache::{
    BoxFuture, RoleCache, RoleCacheConfig, RoleCacheCounters, RoleCacheStats, RoleKey, RoleSource,
    RoleStoreL2,
};
pub use error::GatewayError;
pub use idip::{DeliveryOutcome, DeliveryRequest, IdipClient};
pub use memory::{MemoryRoleSource, MemoryRoleStore};
