//! Monitor files (`config/monitor.toml`): the dashboard's panels, the funnel's steps and the
//! alert thresholds. Validated like campaign files: an unknown field, an unknown metric id or a
//! label the metric does not carry is refused with the file, the field and the reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, MetricKind};

/// The shipped monitor file, built into the binary.
pub const SHIPPED: &str = include_str!("../../../config/monitor.toml");
/// Most panels a file may hold.
pub const PANELS_MAX: usize = 32;
/// Most funnel steps.
pub const FUNNEL_STEPS_MAX: usize = 8;
/// The dashboard's slowest refresh: live means at most two seconds behind.
pub const REFRESH_MS_MAX: u64 = 2_000;
/// Its fastest: each refresh is one query per panel.
pub const REFRESH_MS_MIN: u64 = 250;
/// Longest window: what the minute ring keeps.
pub const WINDOW_S_MAX: u64 = 7 * 24 * 3600;

/// A refused monitor file: where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {field}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Milliseconds between the dashboard's refreshes.
    pub refresh_ms: u64,
    pub funnel: Funnel,
    #[serde(rename = "panel")]
    pub panels: Vec<Panel>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Funnel {
    /// Over how long the funnel counts (`15m`).
    pub window: String,
    #[serde(rename = "step")]
    pub steps: Vec<Selector>,
}

/// A metric and the label values its series must carry; `a|b` accepts either.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// What the dashboard calls it (funnel steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub metric: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PanelKind {
    /// Per-second rate of a counter, one line per value of `by`.
    Rate,
    /// A level (gauge, or a histogram's quantiles), one line per value of `by`.
    Gauge,
    /// `metric` ÷ `denominator`, per value of `by`.
    Ratio,
    /// The funnel's steps with conversion rates.
    Funnel,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub id: String,
    pub title: String,
    pub kind: PanelKind,
    /// Time shown (`5m`, `2h`, `7d`).
    pub window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The label the panel draws one line per value of (others are summed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<Selector>,
    /// Warn when a line's latest value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_above: Option<f64>,
    /// Warn when a line's latest value is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_below: Option<f64>,
}

impl MonitorConfig {
    /// Parses and validates `text`, read from `file` (named in every error).
    pub fn parse(text: &str, file: &str) -> Result<MonitorConfig, ConfigError> {
        let err = |field: &str, reason: String| ConfigError {
            file: file.to_string(),
            field: field.to_string(),
            reason,
        };
        let config: MonitorConfig = toml::from_str(text).map_err(|e| {
            let field = e.span().map_or_else(|| "(file)".to_string(), |s| locate(text, s.start));
            err(&field, e.message().to_string())
        })?;
        config.validate().map_err(|(field, reason)| err(&field, reason))?;
        Ok(config)
    }

    /// The shipped file.
    pub fn shipped() -> MonitorConfig {
        MonitorConfig::parse(SHIPPED, "config/monitor.toml (built in)")
            .unwrap_or_else(|e| panic!("the shipped monitor file is valid: {e}"))
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if !(REFRESH_MS_MIN..=REFRESH_MS_MAX).contains(&self.refresh_ms) {
            return Err((
                "refresh_ms".into(),
                format!("must be {REFRESH_MS_MIN} to {REFRESH_MS_MAX} (live: at most 2 s behind)"),
            ));
        }
        parse_window(&self.funnel.window).map_err(|r| ("funnel.window".to_string(), r))?;
        if self.funnel.steps.is_empty() || self.funnel.steps.len() > FUNNEL_STEPS_MAX {
            return Err(("funnel.step".into(), format!("1 to {FUNNEL_STEPS_MAX} steps")));
        }
        for (i, step) in self.funnel.steps.iter().enumerate() {
            let field = format!("funnel.step[{i}]");
            if step.name.is_none() {
                return Err((format!("{field}.name"), "a funnel step needs a name".into()));
            }
            check_selector(step, &[MetricKind::Counter])
                .map_err(|(f, r)| (format!("{field}.{f}"), r))?;
        }
        if self.panels.len() > PANELS_MAX {
            return Err(("panel".into(), format!("at most {PANELS_MAX} panels")));
        }
        for (i, panel) in self.panels.iter().enumerate() {
            panel.validate().map_err(|(f, r)| (format!("panel[{i}].{f}"), r))?;
            if self.panels[..i].iter().any(|p| p.id == panel.id) {
                return Err((format!("panel[{i}].id"), format!("`{}` is used twice", panel.id)));
            }
        }
        Ok(())
    }
}

impl Panel {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.id.is_empty() || !self.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(("id".into(), "letters, digits and `_` only".into()));
        }
        parse_window(&self.window).map_err(|r| ("window".to_string(), r))?;
        let metric_field = |kinds: &[MetricKind]| -> Result<(), (String, String)> {
            let Some(metric) = &self.metric else {
                return Err(("metric".into(), "this kind of panel needs a metric".into()));
            };
            let selector =
                Selector { name: None, metric: metric.clone(), labels: self.labels.clone() };
            check_selector(&selector, kinds)?;
            if let Some(by) = &self.by {
                check_label(metric, by).map_err(|r| ("by".to_string(), r))?;
            }
            Ok(())
        };
        match self.kind {
            PanelKind::Rate => metric_field(&[MetricKind::Counter])?,
            PanelKind::Gauge => metric_field(&[MetricKind::Gauge, MetricKind::Histogram])?,
            PanelKind::Ratio => {
                metric_field(&[MetricKind::Counter])?;
                let Some(denominator) = &self.denominator else {
                    return Err(("denominator".into(), "a ratio needs a denominator".into()));
                };
                check_selector(denominator, &[MetricKind::Counter])
                    .map_err(|(f, r)| (format!("denominator.{f}"), r))?;
                if let Some(by) = &self.by {
                    check_label(&denominator.metric, by).map_err(|r| ("by".to_string(), r))?;
                }
            }
            PanelKind::Funnel => {
                if self.metric.is_some() || self.denominator.is_some() {
                    return Err((
                        "metric".into(),
                        "a funnel panel shows [funnel]; no metric".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks a selector's metric (of one of `kinds`, or a histogram's `_count` where counters are
/// wanted) and label names.
fn check_selector(selector: &Selector, kinds: &[MetricKind]) -> Result<(), (String, String)> {
    let id = selector.metric.as_str();
    let kind = metric_kind(id).ok_or_else(|| {
        ("metric".to_string(), format!("unknown metric id `{id}` (see hongbao_monitor::catalog)"))
    })?;
    if !kinds.contains(&kind) {
        return Err(("metric".into(), format!("`{id}` is a {kind:?}; this needs {kinds:?}")));
    }
    for name in selector.labels.keys() {
        check_label(id, name).map_err(|r| (format!("labels.{name}"), r))?;
    }
    Ok(())
}

/// The kind a query reads `id` as: catalog ids as described, a histogram's `<id>_count` as a
/// counter.
pub fn metric_kind(id: &str) -> Option<MetricKind> {
    if let Some(m) = catalog::find(id) {
        return Some(m.kind);
    }
    let base = catalog::find(id.strip_suffix("_count")?)?;
    (base.kind == MetricKind::Histogram).then_some(MetricKind::Counter)
}

/// The label names series of `id` carry (a histogram's quantile series add `quantile`).
pub fn metric_labels(id: &str) -> Vec<&'static str> {
    if let Some(m) = catalog::find(id) {
        let mut labels = m.labels.to_vec();
        if m.kind == MetricKind::Histogram {
            labels.push("quantile");
        }
        return labels;
    }
    match id.strip_suffix("_count").and_then(catalog::find) {
        Some(base) if base.kind == MetricKind::Histogram => base.labels.to_vec(),
        _ => Vec::new(),
    }
}

fn check_label(id: &str, name: &str) -> Result<(), String> {
    let labels = metric_labels(id);
    if labels.contains(&name) {
        Ok(())
    } else {
        Err(format!("`{id}` has no label `{name}` (it has {labels:?})"))
    }
}

/// Seconds in a window such as `30s`, `5m`, `2h` or `7d` (at most seven days).
/// The text comes from query strings too: its last character, not its last byte, is the unit.
pub fn parse_window(text: &str) -> Result<u64, String> {
    let not_a_duration = || format!("`{text}` is not a duration such as 30s, 5m, 2h or 7d");
    let Some((unit_at, unit)) = text.char_indices().next_back() else {
        return Err(not_a_duration());
    };
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(not_a_duration()),
    };
    let n: u64 = text[..unit_at].parse().map_err(|_| not_a_duration())?;
    let seconds = n.saturating_mul(per);
    if seconds == 0 || seconds > WINDOW_S_MAX {
        return Err(format!("`{text}` must be more than 0 and at most 7d"));
    }
    Ok(seconds)
}

/// A TOML dotted path to the table holding byte `offset`, for errors: the nearest `[header]`
/// above it and the key on its line.
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let line = text[line_start..line_end].trim();
    let key = line.split('=').next().unwrap_or("").trim();
    let header = before[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[').then(|| l.trim_matches(|c| c == '[' || c == ']').to_string())
    });
    match (header, key.is_empty() || key.starts_with('[')) {
        (Some(h), false) => format!("{h}.{key}"),
        (Some(h), true) => h,
        (None, false) => key.to_string(),
        (None, true) => "(file)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_valid() {
        let config = MonitorConfig::shipped();
        assert_eq!(config.funnel.steps.len(), 5);
        assert!(config.panels.iter().any(|p| p.kind == PanelKind::Funnel));
    }

    fn refused(edit: impl Fn(&str) -> String) -> ConfigError {
        MonitorConfig::parse(&edit(SHIPPED), "m.toml").expect_err("refused")
    }

    #[test]
    fn unknown_metric_ids_fields_and_labels_are_refused_naming_the_field() {
        let e = refused(|s| s.replacen("hongbao_grabs_total", "hongbao_grabz_total", 1));
        assert_eq!(e.field, "funnel.step[1].metric");
        assert!(e.reason.contains("unknown metric id `hongbao_grabz_total`"), "{e}");

        let e = refused(|s| s.replacen("refresh_ms", "colour = \"red\"\nrefresh_ms", 1));
        assert_eq!((e.file.as_str(), e.field.as_str()), ("m.toml", "colour"));
        assert!(e.reason.contains("unknown field"), "{e}");

        let e = refused(|s| s.replacen("by = \"route\"", "by = \"user\"", 1));
        assert!(e.field.ends_with(".by") && e.reason.contains("no label `user`"), "{e}");

        let e = refused(|s| s.replacen("refresh_ms = 1000", "refresh_ms = 5000", 1));
        assert_eq!(e.field, "refresh_ms");
    }

    #[test]
    fn windows_parse_within_seven_days() {
        assert_eq!(parse_window("90s"), Ok(90));
        assert_eq!(parse_window("7d"), Ok(604_800));
        assert!(parse_window("8d").is_err());
        assert!(parse_window("0m").is_err());
        assert!(parse_window("5").is_err());
        // Any text a query string carries: an error, never a panic.
        for text in ["\u{80}", "5\u{80}", "é", "5é", "\u{80}s", "五m"] {
            assert!(parse_window(text).is_err(), "{text:?}");
        }
        assert!(parse_window("").is_err());
    }
}
