//! axe-core, vendored (`vendor/axe.min.js`, MPL-2.0, licence beside it): injected into the page
//! under test and run there, so the check needs no network.

use fantoccini::Client;
use serde_json::Value;

use crate::Error;

const AXE_SOURCE: &str = include_str!("../vendor/axe.min.js");
/// Nodes kept per violation in a report: enough to find them, bounded for readable failures.
const NODES_PER_VIOLATION_MAX: usize = 5;

/// One rule the page breaks, as axe-core reports it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The rule's id, e.g. `color-contrast`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    pub help: String,
    /// CSS selectors of (some of) the offending nodes.
    pub targets: Vec<String>,
}

impl Violation {
    /// Serious or critical: what the project's pages must not have.
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_str(), "serious" | "critical")
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {} at {}", self.id, self.impact, self.help, self.targets.join(", "))
    }
}

pub(crate) async fn run(client: &Client) -> Result<Vec<Violation>, Error> {
    let present = client.execute("return typeof window.axe === 'object';", vec![]).await?;
    if present != Value::Bool(true) {
        client.execute(AXE_SOURCE, vec![]).await?;
    }
    let result = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done(r.violations), e => done({error: String(e)}));",
            vec![],
        )
        .await?;
    parse(&result)
}

fn parse(result: &Value) -> Result<Vec<Violation>, Error> {
    if let Some(error) = result.get("error") {
        return Err(Error::Axe(error.to_string()));
    }
    let list = result
        .as_array()
        .ok_or_else(|| Error::Axe(format!("not a list of violations: {result}")))?;
    Ok(list.iter().map(violation).collect())
}

fn violation(v: &Value) -> Violation {
    let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let targets = v
        .get("nodes")
        .and_then(Value::as_array)
        .map(|nodes| {
            nodes
                .iter()
                .take(NODES_PER_VIOLATION_MAX)
                .map(|n| n.get("target").map(Value::to_string).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    Violation { id: text("id"), impact: text("impact"), help: text("help"), targets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_axe_violations_and_their_impact() {
        let answer = serde_json::json!([
            {"id": "color-contrast", "impact": "serious", "help": "Elements must have sufficient contrast",
             "nodes": [{"target": ["#a"]}, {"target": ["#b"]}]},
            {"id": "region", "impact": "moderate", "help": "Content in landmarks", "nodes": []}
        ]);
        let found = parse(&answer).expect("a list");
        assert_eq!(found.len(), 2);
        assert!(found[0].is_serious());
        assert_eq!(found[0].targets, vec![r##"["#a"]"##, r##"["#b"]"##]);
        assert!(!found[1].is_serious());
    }

    #[test]
    fn an_axe_error_is_an_error() {
        let answer = serde_json::json!({"error": "boom"});
        assert!(matches!(parse(&answer), Err(Error::Axe(_))));
    }
}
