//! The files for the ecosystem agree with what hongbao exports: every expression of the
//! Prometheus alert rules and of the Grafana dashboard names only exported metrics (promtool is
//! not packaged for this machine, so the rules are parsed here), and the Grafana dashboard has
//! the monitor file's panels.

use std::path::PathBuf;

use hongbao_monitor::MonitorConfig;
use hongbao_monitor::catalog::exposition_names;

fn repo_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The `hongbao_…` names an expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("hongbao_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn check_expr(expr: &str, context: &str) {
    let exported = exposition_names();
    let names = metric_names(expr);
    assert!(!names.is_empty(), "{context}: names no hongbao metric: {expr}");
    for name in names {
        assert!(exported.contains(&name), "{context}: `{name}` is not exported");
    }
}

#[test]
fn every_alert_rule_names_exported_metrics() {
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&repo_file("config/prometheus/alerts.yml")).expect("YAML");
    let groups = rules["groups"].as_sequence().expect("groups");
    let mut alerts = Vec::new();
    for group in groups {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("an expression");
            check_expr(expr, name);
            let severity = rule["labels"]["severity"].as_str().expect("a severity");
            assert!(["page", "ticket"].contains(&severity), "{name}: {severity}");
            alerts.push(name.to_string());
        }
    }
    // Multi-window burn rates: both objectives have a fast and a slow pair of windows.
    for alert in [
        "DeliverySuccessBudgetBurnFast",
        "DeliverySuccessBudgetBurnSlow",
        "ClaimErrorBudgetBurnFast",
        "ClaimErrorBudgetBurnSlow",
    ] {
        assert!(alerts.iter().any(|a| a == alert), "{alert} missing");
    }
}

#[test]
fn the_grafana_dashboard_has_the_monitor_files_panels_over_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("config/grafana/hongbao.json")).expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let config = MonitorConfig::parse(&repo_file("config/monitor.toml"), "config/monitor.toml")
        .expect("the monitor file is valid");
    for panel in &config.panels {
        let found = panels.iter().find(|p| p["title"] == panel.title.as_str());
        let found = found.unwrap_or_else(|| panic!("no Grafana panel `{}`", panel.title));
        for target in found["targets"].as_array().expect("targets") {
            check_expr(target["expr"].as_str().expect("expr"), &panel.title);
        }
    }
    assert_eq!(panels.len(), config.panels.len(), "the same panels, no others");
}
