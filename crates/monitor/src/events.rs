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

/// Reads a batch as the document describes it, objects only: serde's derived structs also take
/// a list of field values by position (`{"events":[["page_opened"]]}`), which skips the field
/// names and so the refusal of unknown ones.
pub(crate) fn parse_batch(body: &[u8]) -> Result<Batch, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(batch) = value.as_object() else {
        return Err("the batch is a JSON object".to_string());
    };
    if let Some(events) = batch.get("events").and_then(serde_json::Value::as_array)
        && !events.iter().all(serde_json::Value::is_object)
    {
        return Err("each event is a JSON object".to_string());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::parse_batch;

    #[test]
    fn a_batch_and_its_events_are_objects_with_known_fields() {
        let batch = parse_batch(br#"{"events":[{"event":"page_opened","at_ms":1}]}"#).unwrap();
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].event, "page_opened");
        for positional in
            [&br#"{"events":[["page_opened"]]}"#[..], br#"[[{"event":"page_opened"}]]"#]
        {
            assert!(parse_batch(positional).is_err(), "{}", String::from_utf8_lossy(positional));
        }
        assert!(parse_batch(br#"{"events":[{"event":"page_opened","who":7}]}"#).is_err());
        assert!(parse_batch(br#"{"events":"page_opened"}"#).is_err());
    }
}
