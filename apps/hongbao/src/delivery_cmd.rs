//! `hongbao delivery status|pause|resume`: the operator's view of the delivery workers, through
//! a node's admin endpoints, each request signed with an operator key.

use anyhow::{Result, bail};
use clap::Subcommand;
use reqwest::Method;

use crate::operator_client::{KeyArgs, call};

#[derive(Subcommand)]
pub enum DeliveryCommand {
    /// Per game: queue depth, oldest queued age, current rate, in flight, retrying, dead, expired.
    Status {
        /// The node's admin address (its --admin-addr), as a URL.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        admin: String,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Stops sending to one game (its queue keeps filling).
    Pause {
        /// The node's admin address (its --admin-addr), as a URL.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        admin: String,
        /// The game's id in the campaign file (e.g. lantern-heroes).
        #[arg(long)]
        game: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Sends to one game again, at its pace.
    Resume {
        /// The node's admin address (its --admin-addr), as a URL.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        admin: String,
        /// The game's id in the campaign file (e.g. lantern-heroes).
        #[arg(long)]
        game: String,
        #[command(flatten)]
        key: KeyArgs,
    },
}

pub async fn run(command: DeliveryCommand) -> Result<()> {
    let (method, url, key, json) = match &command {
        DeliveryCommand::Status { admin, json, key } => {
            (Method::GET, format!("{}/admin/v1/delivery", admin.trim_end_matches('/')), key, *json)
        }
        DeliveryCommand::Pause { admin, game, key } => (
            Method::POST,
            format!("{}/admin/v1/delivery/{game}/pause", admin.trim_end_matches('/')),
            key,
            true,
        ),
        DeliveryCommand::Resume { admin, game, key } => (
            Method::POST,
            format!("{}/admin/v1/delivery/{game}/resume", admin.trim_end_matches('/')),
            key,
            true,
        ),
    };
    let (status, body) = call(key, method, &url, None).await?;
    if !(200..300).contains(&status) {
        bail!(
            "{status} {}: {}",
            body["error"]["code"].as_str().unwrap_or("error"),
            body["error"]["message"].as_str().unwrap_or("unknown error")
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!(
        "{:<18} {:>6} {:>9} {:>10} {:>8} {:>8} {:>9} {:>6} {:>8} {:>10}",
        "game",
        "paused",
        "queued",
        "oldest_s",
        "rate/s",
        "cap/s",
        "in_flight",
        "dead",
        "expired",
        "delivered"
    );
    for g in body["games"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let n = |k: &str| g[k].as_u64().unwrap_or(0);
        println!(
            "{:<18} {:>6} {:>9} {:>10.1} {:>8.1} {:>8.1} {:>9} {:>6} {:>8} {:>10}",
            g["game"].as_str().unwrap_or("?"),
            g["paused"].as_bool().unwrap_or(false),
            n("queue_depth"),
            g["oldest_queued_age_ms"].as_u64().map_or(0.0, |ms| ms as f64 / 1000.0),
            g["rate_per_s"].as_f64().unwrap_or(0.0),
            g["capacity_per_s"].as_f64().unwrap_or(0.0),
            n("in_flight"),
            n("dead"),
            n("expired"),
            n("delivered"),
        );
    }
    Ok(())
}
