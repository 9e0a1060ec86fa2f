//! The single writer: group commit of ledger commands.
//!
//! One std thread owns all mutable ledger state. It takes the first [`Command`] from the bounded
//! queue, drains up to `batch_max - 1` more without waiting, decides every command in arrival
//! order against *staged* state (committed state plus this batch's effects), writes the
//! batch's effects as one atomic, fsynced commit, and only then answers every command.
//! Decisions within a batch see earlier commands of the same batch, so the batch is equivalent
//! to running its commands one by one; one fsync pays for all of them. The decisions themselves
//! are the ledger's rules (`crate::ledger`), run over the batch's staged overlay.
//!
//! Leases (and the oldest-entry query) write nothing and are decided after the batch's commit,
//! against committed state. That is still a one-by-one order of the batch (all leases last): no
//! command of a batch can depend on a lease of the same batch, because its caller has not heard
//! of the lease yet.
//!
//! Failure: if the commit fails, every command of the batch gets `StoreError::Unavailable`, the
//! staged state is thrown away (committed counters never included it), and the writer stops
//! deciding: every later command gets the same error. fjall poisons a database whose journal
//! write or fsync failed, and the only safe recovery is a restart, which reloads the counters
//! from disk.
//!
//! The rooms, by job:
//!
//! - `protocol.rs`: the commands the store handle sends and the answers waiting for a commit;
//! - `backend.rs`: the writer's narrow view of the disk (keyspaces, reads, one atomic commit);
//! - `recovery.rs`: what an opening reads back (counters, queue depths, the Bloom filter);
//! - `shared.rs`: the counters published to the store handle;
//! - `staged.rs`: a batch's writes, held until its commit;
//! - `overlay.rs`: the ledger's view through the batch (staged over committed);
//! - `leases.rs`: leases, the per-game cursor and look-ahead, the oldest-entry query;
//! - `batch.rs`: the writer's state and one batch: decide, commit once, answer;
//! - `run.rs`: the thread's loop, with its linger.

mod backend;
mod batch;
mod leases;
mod overlay;
mod protocol;
mod recovery;
mod run;
mod shared;
mod staged;

pub(crate) use backend::{Backend, Durability, Space};
pub(crate) use batch::Ledger;
pub(crate) use protocol::{Command, Reply};
pub(crate) use recovery::{known, recover};
pub(crate) use run::run;
pub(crate) use shared::Shared;

#[cfg(test)]
mod tests;
