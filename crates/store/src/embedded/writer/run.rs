//! The writer thread's loop: take a batch of commands off the bounded queue (lingering for a
//! busy runtime to add more, when configured), run it, repeat until every sender is gone.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{Backend, Command, Ledger};
use crate::embedded::idle::CommitLinger;

/// The writer thread's body: runs until every sender is gone and the queue is drained, so the
/// commands accepted before shutdown are all answered.
pub(crate) fn run<B: Backend>(
    mut ledger: Ledger<B>,
    mut queue: mpsc::Receiver<Command>,
    batch_max: usize,
    linger: Option<CommitLinger>,
) {
    let take_queued = |queue: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>| {
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
    };
    let mut batch = Vec::with_capacity(batch_max);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        take_queued(&mut queue, &mut batch);
        if let Some(linger) = &linger
            && batch.len() < batch_max
        {
            // How long to hold a batch open is scheduling, not a ledger decision: real time.
            linger.idle.wait_until_idle(Instant::now() + linger.max);
            take_queued(&mut queue, &mut batch);
        }
        ledger.run_batch(batch.drain(..));
    }
}
