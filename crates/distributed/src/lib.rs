//! The distributed mode's composed adapters (DESIGN.md §3): Redis decides and records, NATS
//! JetStream buffers the deliveries.
//!
//! - [`DistributedClaims`] implements the store's [`hongbao_store::ClaimLedger`]: the claim
//!   script runs in Redis (which records each new order in `should_send`), then the new order
//!   is published to its game's subject with `Nats-Msg-Id` = order id, and only when JetStream
//!   acknowledged it is the claim `Accepted` (202). Replays publish nothing. Publishes go
//!   through the [`Publisher`]: concurrent claims' publishes are sent as one batch and their
//!   acknowledgements awaited together, then the batch is marked published in Redis with one
//!   command.
//! - [`Sweeper`]: an owned task that re-publishes orders recorded longer than a grace period
//!   ago and still not marked published (the API node died between script and publish, or the
//!   publish failed); the same message id makes a repeat within the dedup window harmless.
//! - [`JetStreamQueue`] implements [`hongbao_queue::DeliveryQueue`] for the workers: a lease is
//!   a fetched message (kept alive with in-progress acks while held), checked against the
//!   order's state in Redis; `finish`/`retry` record the outcome in Redis first (one
//!   conditional, idempotent script) and then ack / nak with delay; `release` naks at once.
//!
//! - [`DistributedLedger`] implements reconciliation's ports (`LedgerScan`, `LedgerRepair`)
//!   over Redis and the stream: what "in the queue" means on JetStream, and a requeue that
//!   publishes under a new message id, are documented there.
//!
//! - [`Backend`]: the adapters above, with the role cache's shared store and the game leases,
//!   connected once for one campaign under one namespace (what `serve --redis --nats` opens).
//! - [`remove_namespace`]: a namespace's keys and stream deleted, for what made it for a while
//!   (`demo --redis --nats`, the tests); [`namespace_keys`] counts what it holds.
//!
//! Dependencies point domain ← stores/queue (`hongbao-redis`, `hongbao-jetstream`,
//! `hongbao-queue`) ← this crate ← the app, which wires it (`serve --redis --nats`).

mod backend;
mod claims;
mod message;
mod namespace;
mod publisher;
mod queue;
mod reconcile;
mod sweeper;

pub use backend::{Backend, BackendConfig};
pub use claims::{COUNTERS_REFRESH_MS, DistributedClaims};
pub use namespace::{Removed, namespace_keys, remove_namespace};
pub use publisher::{
    PUBLISH_BATCH_MAX, PUBLISH_BATCHES_IN_FLIGHT, PUBLISH_QUEUE_MAX, Publisher, PublisherStats,
};
pub use queue::{JetStreamLease, JetStreamQueue};
pub use reconcile::DistributedLedger;
pub use sweeper::{
    SWEEP_BATCH_MAX_DEFAULT, SWEEP_GRACE_MS_DEFAULT, SWEEP_INTERVAL_MS_DEFAULT, SweepPass, Sweeper,
    SweeperConfig, sweep_once,
};
