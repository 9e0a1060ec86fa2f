//! In-memory [`GrantLedger`]: the same decisions as the embedded store, without a disk.
//!
//! For tests of the services built on the ports. It keeps one count per (user, channel) ever
//! granted, so it is unbounded by design; production uses [`crate::EmbeddedStore`].

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{
    CHANNELS, Channel, GrantLedger, GrantOutcome, GrantRequest, StoreError, channel_index,
};

#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    user_counts: HashMap<(u64, Channel), u32>,
    granted: [u64; CHANNELS],
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn decide(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        // A poisoned lock means a panic while deciding (an invariant broke): refuse, do not guess.
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))?;
        let index = channel_index(req.channel);
        if state.granted[index] >= req.budget {
            return Ok(GrantOutcome::BudgetExhausted);
        }
        let count = state.user_counts.get(&(req.user, req.channel)).copied().unwrap_or(0);
        if count >= req.per_user_limit {
            return Ok(GrantOutcome::UserLimitReached);
        }
        let serial = count + 1;
        state.user_counts.insert((req.user, req.channel), serial);
        state.granted[index] += 1;
        Ok(GrantOutcome::Granted { serial })
    }
}

impl GrantLedger for MemoryStore {
    async fn grant(&self, req: GrantRequest) -> Result<GrantOutcome, StoreError> {
        self.decide(req)
    }

    fn granted(&self, channel: Channel) -> u64 {
        self.state.lock().map(|state| state.granted[channel_index(channel)]).unwrap_or(0)
    }
}
