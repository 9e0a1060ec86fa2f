//! Front-end beacons (`POST /v1/events`): the page a user opened, the red packet shown, the gift
//! details viewed. Counted into the same series as the API's own metrics, so the funnel starts
//! where the user does. Bounded: a small body, a few events per batch, and a node-wide rate.

use std::sync::Mutex;
use std::sync::PoisonError;

use metrics::{Counter, Key, Label, Level, Metadata, Recorder};
use serde::Deserialize;

use crate::catalog;
use crate::recorder::MonitorRecorder;

/// The events a client may send.
pub const EVENTS: &[&str] = &["page_opened", "packet_shown", "gift_viewed"];
/// Most events in one batch.
pub const BATCH_MAX: usize = 32;
/// Largest body, in bytes (a batch of [`BATCH_MAX`] events is about 1 KiB).
pub const BODY_MAX_BYTES: usize = 4 * 1024;
/// Events a node accepts per second, all clients together; beyond it batches are refused 429
/// (beacons are best-effort: a client drops them rather than retrying).
pub const EVENTS_PER_S_MAX: u64 = 20_000;

static METADATA: Metadata<'static> = Metadata::new("hongbao", Level::INFO, None);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub events: Vec<Event>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event: String,
    /// Client time (Unix ms), accepted for the client's own bookkeeping; the series count by
    /// the node's clock.
    #[serde(default)]
    pub at_ms: Option<u64>,
}

/// A refused batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Empty,
    TooMany(usize),
    Unknown(String),
    RateLimited,
}

/// The events' counters and the node-wide rate window.
#[derive(Debug)]
pub(crate) struct Events {
    counters: Vec<Counter>,
    /// (second, events accepted in it).
    window: Mutex<(u64, u64)>,
}

impl Events {
    pub(crate) fn new(recorder: &MonitorRecorder) -> Events {
        let counters = EVENTS
            .iter()
            .map(|e| {
                let key = Key::from_parts(catalog::EVENTS, vec![Label::new("event", *e)]);
                recorder.register_counter(&key, &METADATA)
            })
            .collect();
        Events { counters, window: Mutex::new((0, 0)) }
    }

    /// Validates the whole batch, then counts it (all or nothing).
    pub(crate) fn accept(&self, batch: &Batch, now_s: u64) -> Result<usize, Refused> {
        if batch.events.is_empty() {
            return Err(Refused::Empty);
        }
        if batch.events.len() > BATCH_MAX {
            return Err(Refused::TooMany(batch.events.len()));
        }
        let mut indexes = Vec::with_capacity(batch.events.len());
        for e in &batch.events {
            let index = EVENTS.iter().position(|known| *known == e.event);
            indexes
                .push(index.ok_or_else(|| Refused::Unknown(e.event.chars().take(64).collect()))?);
        }
        {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            if window.0 != now_s {
                *window = (now_s, 0);
            }
            let n = indexes.len() as u64;
            if window.1 + n > EVENTS_PER_S_MAX {
                return Err(Refused::RateLimited);
            }
            window.1 += n;
        }
        for index in &indexes {
            self.counters[*index].increment(1);
        }
        Ok(indexes.len())
    }
}
