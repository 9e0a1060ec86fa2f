//! `GET /monitor/v1/query`: series and funnels read from the key-value model.
//!
//! Parameters: `metric` (a catalog id, a histogram's `<id>_count`, or `funnel`), `labels`
//! (`name:value,name:value`, a value `a|b` accepting either), `window` (`30s` … `7d`, default
//! `5m`), `step` (default: the window ÷ 300, at least a second) and `by` (one line per value of
//! that label, the others summed). Counters answer per-second rates per step and the increase
//! over the window; gauges their last level per step; a histogram's quantile series their
//! highest per-second quantile per step.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::catalog::MetricKind;
use crate::config::{self, MonitorConfig};
use crate::kv::{KvError, RangeRequest, Resolution, SeriesKv};
use crate::recorder::Labels;
use crate::series::SECOND_BUCKETS;

/// Most points one series of an answer holds.
pub const POINTS_MAX: u64 = 1_000;
/// Points a query gets when it names no step.
pub const POINTS_DEFAULT: u64 = 300;
/// Longest parameter value accepted.
pub const PARAM_MAX_BYTES: usize = 512;

/// A refused query: a code for programs, a message for people (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> QueryError {
    QueryError { code, message: message.into() }
}

/// A label filter: each name with the values it accepts.
pub type Filter = Vec<(String, Vec<String>)>;

/// A parsed series query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub metric: String,
    pub kind: MetricKind,
    pub filter: Filter,
    pub window_s: u64,
    pub step_s: u64,
    pub by: Option<String>,
}

/// What the endpoint asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Series(Query),
    Funnel { window_s: u64 },
}

/// Parses the query string's parameters.
pub fn parse(params: &HashMap<String, String>) -> Result<Request, QueryError> {
    const KNOWN: &[&str] = &["metric", "labels", "window", "step", "by"];
    if let Some(name) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(refuse("unknown_parameter", format!("`{name}` is not one of {KNOWN:?}")));
    }
    if params.values().any(|v| v.len() > PARAM_MAX_BYTES) {
        return Err(refuse(
            "parameter_too_long",
            format!("values are at most {PARAM_MAX_BYTES} bytes"),
        ));
    }
    let metric =
        params.get("metric").ok_or_else(|| refuse("missing_metric", "`metric` is required"))?;
    let window_s = match params.get("window") {
        Some(w) => config::parse_window(w).map_err(|m| refuse("bad_window", m))?,
        None => 300,
    };
    if metric == "funnel" {
        return Ok(Request::Funnel { window_s });
    }
    let kind = config::metric_kind(metric)
        .ok_or_else(|| refuse("unknown_metric", format!("unknown metric id `{metric}`")))?;
    let names = config::metric_labels(metric);
    let filter = parse_labels(params.get("labels").map_or("", String::as_str), &names)?;
    let by = params.get("by").cloned();
    if let Some(by) = &by
        && !names.contains(&by.as_str())
    {
        return Err(refuse(
            "unknown_label",
            format!("`{metric}` has no label `{by}` (it has {names:?})"),
        ));
    }
    let step_s = match params.get("step") {
        Some(s) => config::parse_window(s).map_err(|m| refuse("bad_step", m))?,
        None => default_step(window_s),
    };
    if step_s > window_s {
        return Err(refuse("bad_step", "the step is longer than the window"));
    }
    if window_s > SECOND_BUCKETS as u64 && step_s % 60 != 0 {
        return Err(refuse(
            "bad_step",
            "beyond 2h only whole minutes are kept: use a step in minutes",
        ));
    }
    if window_s / step_s > POINTS_MAX {
        return Err(refuse("too_many_points", format!("window ÷ step is at most {POINTS_MAX}")));
    }
    Ok(Request::Series(Query { metric: metric.clone(), kind, filter, window_s, step_s, by }))
}

fn default_step(window_s: u64) -> u64 {
    let step = (window_s / POINTS_DEFAULT).max(1);
    if window_s > SECOND_BUCKETS as u64 { step.div_ceil(60) * 60 } else { step }
}

fn parse_labels(text: &str, names: &[&str]) -> Result<Filter, QueryError> {
    let mut filter = Filter::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let Some((name, values)) = pair.split_once(':') else {
            return Err(refuse("bad_labels", format!("`{pair}` is not name:value")));
        };
        if !names.contains(&name) {
            return Err(refuse(
                "unknown_label",
                format!("no label `{name}` (there are {names:?})"),
            ));
        }
        if values.is_empty() {
            return Err(refuse("bad_labels", format!("`{name}` has no value")));
        }
        filter.push((name.to_string(), values.split('|').map(str::to_string).collect()));
    }
    Ok(filter)
}

/// Turns a monitor file's `labels` table into a filter.
pub fn filter_of(labels: &BTreeMap<String, String>) -> Filter {
    labels.iter().map(|(k, v)| (k.clone(), v.split('|').map(str::to_string).collect())).collect()
}

fn accepts(filter: &Filter, labels: &Labels) -> bool {
    filter.iter().all(|(name, values)| {
        labels.iter().any(|(n, v)| n == name && values.iter().any(|want| want == v))
    })
}

/// One line of an answer.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Line {
    /// The `by` label's value (absent when the query has no `by`).
    pub labels: BTreeMap<String, String>,
    /// One value per step from `from`; `null` where nothing was read.
    pub points: Vec<Option<f64>>,
    /// Counters: the increase over the window; levels: the latest value.
    pub total: Option<f64>,
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SeriesAnswer {
    pub metric: String,
    /// `per_second` (counters) or `level`.
    pub unit: &'static str,
    pub window_s: u64,
    pub step_s: u64,
    /// Unix second of the first point.
    pub from: u64,
    pub series: Vec<Line>,
}

/// Answers a series query over the seconds before `now_s` (the current one is still counting).
pub async fn series(kv: &dyn SeriesKv, query: &Query, now_s: u64) -> Result<SeriesAnswer, KvError> {
    let resolution = if query.window_s > SECOND_BUCKETS as u64 {
        Resolution::Minute
    } else {
        Resolution::Second
    };
    let res_s = resolution.step_s();
    let steps = query.window_s / query.step_s;
    let end_s = now_s.saturating_sub(1);
    let from = (end_s + 1).saturating_sub(steps * query.step_s);
    let request = RangeRequest {
        metric: query.metric.clone(),
        filter: Vec::new(),
        resolution,
        from_bucket: from / res_s,
        to_bucket: end_s / res_s,
    };
    let quantiles = query.kind == MetricKind::Histogram;
    // Sum the series of each group bucket by bucket (quantiles: their highest).
    let mut groups: BTreeMap<Option<String>, Vec<f64>> = BTreeMap::new();
    for range in kv.range(&request).await?.into_iter().filter(|r| accepts(&query.filter, &r.labels))
    {
        let group = query.by.as_ref().map(|by| {
            range.labels.iter().find(|(n, _)| n == by).map_or_else(String::new, |(_, v)| v.clone())
        });
        let sums = groups.entry(group).or_insert_with(|| vec![f64::NAN; range.values.len()]);
        for (sum, &v) in sums.iter_mut().zip(&range.values) {
            let v = f64::from(v);
            *sum = match (sum.is_nan(), v.is_nan()) {
                (_, true) => *sum,
                (true, false) => v,
                (false, false) if quantiles => sum.max(v),
                (false, false) => *sum + v,
            };
        }
    }
    let per_step = usize::try_from((query.step_s / res_s).max(1)).unwrap_or(1);
    let series = groups
        .into_iter()
        .map(|(group, buckets)| {
            let labels = match (&query.by, group) {
                (Some(by), Some(value)) => BTreeMap::from([(by.clone(), value)]),
                _ => BTreeMap::new(),
            };
            line(labels, &buckets, per_step, query)
        })
        .collect();
    let unit = if query.kind == MetricKind::Counter { "per_second" } else { "level" };
    Ok(SeriesAnswer {
        metric: query.metric.clone(),
        unit,
        window_s: query.window_s,
        step_s: query.step_s,
        from,
        series,
    })
}

fn line(labels: BTreeMap<String, String>, buckets: &[f64], per_step: usize, query: &Query) -> Line {
    let read = |chunk: &[f64]| -> Option<f64> {
        let present = chunk.iter().copied().filter(|v| !v.is_nan());
        match query.kind {
            MetricKind::Counter => {
                let mut any = false;
                let sum: f64 = present.inspect(|_| any = true).sum();
                any.then(|| sum / query.step_s as f64)
            }
            MetricKind::Gauge => chunk.iter().rev().copied().find(|v| !v.is_nan()),
            MetricKind::Histogram => present.reduce(f64::max),
        }
    };
    let points: Vec<Option<f64>> = buckets.chunks(per_step).map(read).collect();
    let total = match query.kind {
        MetricKind::Counter => Some(buckets.iter().filter(|v| !v.is_nan()).sum()),
        MetricKind::Gauge | MetricKind::Histogram => points.iter().rev().find_map(|p| *p),
    };
    Line { labels, points, total }
}

/// One step of the funnel.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FunnelStep {
    pub name: String,
    /// How many happened in the window.
    pub count: f64,
    /// `count` ÷ the step before's (the first step: 1).
    pub from_previous: Option<f64>,
    /// `count` ÷ the first step's.
    pub from_first: Option<f64>,
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FunnelAnswer {
    pub window_s: u64,
    pub steps: Vec<FunnelStep>,
}

/// The monitor file's funnel over the `window_s` seconds before `now_s`.
pub async fn funnel(
    kv: &dyn SeriesKv,
    config: &MonitorConfig,
    window_s: u64,
    now_s: u64,
) -> Result<FunnelAnswer, KvError> {
    let step_s =
        if window_s > SECOND_BUCKETS as u64 { window_s.div_ceil(60) * 60 } else { window_s };
    let mut steps: Vec<FunnelStep> = Vec::new();
    for step in &config.funnel.steps {
        let query = Query {
            metric: step.metric.clone(),
            kind: MetricKind::Counter,
            filter: filter_of(&step.labels),
            window_s: step_s,
            step_s,
            by: None,
        };
        let count = series(kv, &query, now_s).await?.series.iter().filter_map(|l| l.total).sum();
        let ratio =
            |base: Option<&FunnelStep>| base.and_then(|b| (b.count > 0.0).then(|| count / b.count));
        let from_previous = if steps.is_empty() { Some(1.0) } else { ratio(steps.last()) };
        let from_first = if steps.is_empty() { Some(1.0) } else { ratio(steps.first()) };
        let name = step.name.clone().unwrap_or_else(|| step.metric.clone());
        steps.push(FunnelStep { name, count, from_previous, from_first });
    }
    Ok(FunnelAnswer { window_s: step_s, steps })
}
