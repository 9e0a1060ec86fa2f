//! What the store handle asks of the writer, and the answers that wait for their batch's
//! commit: each command carries its reply channel, and the writer answers only once the batch
//! holding it is durable (or failed).

use hongbao_domain::{GameIndex, OrderId};
use tokio::sync::oneshot;

use super::Durability;
use crate::claim::{ClaimOutcome, ClaimRequest};
use crate::ledger::{Prepared, SettleAction};
use crate::queue::{LeaseId, QueueEntry, RecordOutcome, RequeueOutcome, Settled};
use crate::{GrantOutcome, GrantRequest, StoreError};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A request to the writer.
#[derive(Debug)]
pub(crate) enum Command {
    Grant {
        req: GrantRequest,
        reply: Reply<GrantOutcome>,
    },
    Claim {
        claim: Box<(ClaimRequest, Prepared)>,
        reply: Reply<ClaimOutcome>,
    },
    Lease {
        game: GameIndex,
        max: usize,
        now_ms: u64,
        reply: Reply<Vec<QueueEntry>>,
    },
    Oldest {
        game: GameIndex,
        reply: Reply<Option<u64>>,
    },
    Settle {
        order_id: OrderId,
        lease: LeaseId,
        action: SettleAction,
        now_ms: u64,
        reply: Reply<Settled>,
    },
    Requeue {
        order_id: OrderId,
        now_ms: u64,
        deliver_by_ms: u64,
        reply: Reply<RequeueOutcome>,
    },
    RecordDelivered {
        order_id: OrderId,
        delivered_at_ms: u64,
        now_ms: u64,
        reply: Reply<RecordOutcome>,
    },
}

impl Command {
    /// How durable the batch holding this command must be before it is answered. Leases and
    /// the oldest-entry query write nothing; settlements need no fsync of their own (see
    /// [`Durability`]). Everything else is a promise to its caller.
    pub fn durability(&self) -> Durability {
        match self {
            Command::Settle { .. } | Command::Lease { .. } | Command::Oldest { .. } => {
                Durability::Buffered
            }
            _ => Durability::Synced,
        }
    }
}

/// An answer decided but not yet sent: it goes out after the batch's commit.
pub(crate) enum Pending {
    Grant { reply: Reply<GrantOutcome>, result: Result<GrantOutcome, StoreError> },
    Claim { reply: Reply<ClaimOutcome>, result: Result<ClaimOutcome, StoreError> },
    Settle { reply: Reply<Settled>, result: Result<Settled, StoreError> },
    Requeue { reply: Reply<RequeueOutcome>, result: Result<RequeueOutcome, StoreError> },
    Record { reply: Reply<RecordOutcome>, result: Result<RecordOutcome, StoreError> },
}

impl Pending {
    /// The batch's commit failed: whatever was decided did not happen.
    pub fn fail(&mut self, error: &StoreError) {
        match self {
            Pending::Grant { result, .. } => *result = Err(error.clone()),
            Pending::Claim { result, .. } => *result = Err(error.clone()),
            Pending::Settle { result, .. } => *result = Err(error.clone()),
            Pending::Requeue { result, .. } => *result = Err(error.clone()),
            Pending::Record { result, .. } => *result = Err(error.clone()),
        }
    }

    pub fn send(self) {
        // The caller may have gone away (its future dropped); what was decided stands.
        match self {
            Pending::Grant { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Claim { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Settle { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Requeue { reply, result } => {
                let _ = reply.send(result);
            }
            Pending::Record { reply, result } => {
                let _ = reply.send(result);
            }
        }
    }
}

/// A read-only queue command, decided after the batch's commit.
pub(crate) enum Deferred {
    Lease { game: GameIndex, max: usize, now_ms: u64, reply: Reply<Vec<QueueEntry>> },
    Oldest { game: GameIndex, reply: Reply<Option<u64>> },
}
