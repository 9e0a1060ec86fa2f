//! The delivery queue: the one port between an accepted claim and the delivery workers.
//!
//! It is defined here, beside its consumer's needs and apart from any engine, so that the workers
//! (`hongbao-delivery`) depend on the port only, and every backend implements the same trait:
//!
//! - [`MemoryQueue`]: in memory, for tests of the workers (it can "crash", forgetting leases);
//! - the embedded store's durable per-game queues (`hongbao-store`), which a claim fills in the
//!   same atomic step that records the order;
//! - the JetStream consumer of the distributed mode.
//!
//! The workers lease ready orders and end each lease with exactly one of
//! [`DeliveryQueue::finish`] (delivered, dead or expired), [`DeliveryQueue::retry`] or
//! [`DeliveryQueue::release`]; see the trait for the contract.

pub mod leases;
mod memory;
mod port;

pub use leases::{GameLeases, Held, MemoryGameLeases};
pub use memory::{MemoryLease, MemoryQueue};
pub use port::{
    DeliveryQueue, FinalState, Finish, Leased, QueueDepth, QueueError, QueuedOrder, Retry,
};
