//! A range read: the metric's series from the registry, then every chunk the range touches,
//! pipelined.
//!
//! Bounded: a metric has at most the cap's series, a range at most
//! [`RANGE_BUCKETS_MAX`] buckets, so at most ⌈7,200 ÷ 120⌉ + 1 = 61 chunks of at most 120
//! entries per series; the chunks are asked for [`READ_PIPELINE_MAX`] at a time.

use hongbao_monitor::kv::{KvError, RANGE_BUCKETS_MAX, RangeRequest, SeriesRange, matches};
use hongbao_monitor::recorder::Labels;
use redis::{ErrorKind, RedisError};

use super::layout::{CHUNK_BUCKETS, Layout, SeriesName, chunk_of, parse_labels};
use crate::RedisConn;

/// Chunk reads sent in one pipeline.
pub const READ_PIPELINE_MAX: usize = 512;

/// The readings of `request`'s metric over its buckets, every series whose labels carry the
/// filter (at most `series_max` of them), sorted by labels.
pub(crate) async fn range(
    conn: &RedisConn,
    layout: &Layout,
    series_max: usize,
    request: &RangeRequest,
) -> Result<Vec<SeriesRange>, KvError> {
    if request.from_bucket > request.to_bucket {
        return Ok(Vec::new());
    }
    let from = request.from_bucket;
    let to = request.to_bucket.min(from + RANGE_BUCKETS_MAX - 1);
    let mut conn = conn.clone();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(layout.metric(&request.metric))
        .query_async(&mut conn)
        .await
        .map_err(kv_error)?;
    let mut series: Vec<(Labels, SeriesName)> = members
        .into_iter()
        .filter_map(|member| {
            let labels = parse_labels(&member)?;
            let name = SeriesName::from_member(&request.metric, member)?;
            matches(&labels, &request.filter).then_some((labels, name))
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series.truncate(series_max);

    let (first, _) = chunk_of(from);
    let (last, _) = chunk_of(to);
    let reads: Vec<(usize, u64, String)> = series
        .iter()
        .enumerate()
        .flat_map(|(index, (_, name))| {
            (first..=last)
                .map(move |chunk| (index, chunk, layout.chunk(name, request.resolution, chunk)))
        })
        .collect();
    let width = usize::try_from(to - from + 1).unwrap_or(usize::MAX);
    let mut out: Vec<SeriesRange> = series
        .into_iter()
        .map(|(labels, _)| SeriesRange { labels, values: vec![f32::NAN; width] })
        .collect();
    for page in reads.chunks(READ_PIPELINE_MAX) {
        let mut pipe = redis::pipe();
        for (_, _, key) in page {
            pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES");
        }
        let replies: Vec<Vec<(String, f64)>> =
            pipe.query_async(&mut conn).await.map_err(kv_error)?;
        for ((index, chunk, key), entries) in page.iter().zip(replies) {
            for (member, score) in entries {
                let offset =
                    member.parse::<u64>().ok().filter(|o| *o < CHUNK_BUCKETS).ok_or_else(|| {
                        KvError::Corrupt(format!("`{key}` holds member `{member}`"))
                    })?;
                let bucket = chunk * CHUNK_BUCKETS + offset;
                if (from..=to).contains(&bucket) {
                    let at = usize::try_from(bucket - from).unwrap_or(usize::MAX);
                    if let Some(value) = out[*index].values.get_mut(at) {
                        *value = score as f32;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A reply of the wrong shape (or a key of the wrong type) means something else wrote there;
/// anything else is Redis not answering.
fn kv_error(err: RedisError) -> KvError {
    let wrong = matches!(err.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType)
        || err.code() == Some("WRONGTYPE");
    if wrong {
        KvError::Corrupt(format!("redis: {err}"))
    } else {
        KvError::Unavailable(format!("redis: {err}"))
    }
}
