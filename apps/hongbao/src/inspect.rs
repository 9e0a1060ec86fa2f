//! `hongbao inspect`: what a stopped node's store holds, as JSON — stock taken per gift, orders
//! by status and by gift, queue depth per game, the send log's length. Operators read it after a
//! crash; the crash tests use it to check that stock taken equals orders written.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use hongbao_domain::Campaign;
use hongbao_store::{CampaignBinding, ClaimLedger, EmbeddedConfig, EmbeddedStore, LedgerScan};
use serde::Serialize;

#[derive(Serialize, Default)]
pub struct Inspection {
    pub orders: u64,
    pub orders_by_status: BTreeMap<&'static str, u64>,
    pub orders_by_gift: BTreeMap<String, u64>,
    pub stock_taken: BTreeMap<String, u64>,
    pub queue_depth: BTreeMap<String, u64>,
    pub sent: u64,
}

pub async fn inspect(campaign: &Campaign, data: &Path) -> Result<Inspection> {
    let dir = data.join("store");
    let store =
        EmbeddedStore::open_with(&dir, EmbeddedConfig::default(), CampaignBinding::of(campaign))
            .with_context(|| {
                format!("open the store in {} (is a node running on it?)", dir.display())
            })?;
    let mut out = Inspection::default();
    for gift in &campaign.gifts {
        out.stock_taken.insert(gift.id.clone(), store.stock_taken(gift.index));
    }
    for game in &campaign.games {
        out.queue_depth.insert(game.id.clone(), store.queue_depth(game.index));
    }
    let mut after = None;
    loop {
        let page = store.scan_orders(after, hongbao_store::SCAN_PAGE_MAX).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for order in &page {
            out.orders += 1;
            *out.orders_by_status.entry(order.status.as_str()).or_default() += 1;
            *out.orders_by_gift.entry(order.gift_id.clone()).or_default() += 1;
        }
    }
    let mut after = None;
    loop {
        let page = store.scan_sent(after, hongbao_store::SCAN_PAGE_MAX).await?;
        let Some(last) = page.last() else { break };
        after = Some(*last);
        out.sent += page.len() as u64;
    }
    tokio::task::spawn_blocking(move || store.close()).await.context("close the store")??;
    Ok(out)
}
