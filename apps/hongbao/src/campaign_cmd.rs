//! `hongbao campaign check` (what an operator needs to know about a campaign file before the
//! night) and `hongbao campaign shift` (a copy that opens at a chosen time, for rehearsals and
//! load tests).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use hongbao_domain::Campaign;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::load_campaign;

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Validates a campaign file and prints what to know before the night: games and their
    /// delivery capacity, gifts with stock and value, the total liability, whether the stock
    /// can be delivered by the deadline, and when each release wave opens.
    Check {
        /// The campaign file (TOML; `config/spring-festival.toml` is the example).
        file: PathBuf,
        /// Print the report as JSON (for machines) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Writes a copy of a campaign file whose dates are moved so that it opens DURATION from
    /// now (its length kept; comments and layout kept), for rehearsals and load tests.
    Shift {
        /// The campaign file to copy.
        file: PathBuf,
        /// When the copy opens, from now: a number with a unit (s, m, h, d), several summed
        /// (`1h30m`), negative for the past (`-1h`: opened an hour ago), `0s` for now.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_signed_duration_s)]
        opens_in: i64,
        /// Where the copy goes (overwritten if it exists).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(command: CampaignCommand) -> Result<()> {
    match command {
        CampaignCommand::Check { file, json } => {
            let campaign = load_campaign(&file)?;
            let report = check(&campaign);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table(&file));
            }
            Ok(())
        }
        CampaignCommand::Shift { file, opens_in, out } => {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let shifted = shift(&file, now.saturating_add(opens_in))?;
            std::fs::write(&out, &shifted.text)
                .with_context(|| format!("write {}", out.display()))?;
            println!(
                "{}: opens {} and closes {} (a copy of {})",
                out.display(),
                shifted.starts_at,
                shifted.ends_at,
                file.display()
            );
            Ok(())
        }
    }
}

/// Seconds from text like `10m`, `1h30m`, `0s`, `-1h` or `+2d`.
pub fn parse_signed_duration_s(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration like 10m, 1h30m, 0s or -1h");
    let (sign, body) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    if body.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in body.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit_s = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit_s).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        // A bare number is only clear when it is zero.
        if number.parse::<i64>() != Ok(0) || total != 0 {
            return Err(bad());
        }
    }
    Ok(sign * total)
}

fn rfc3339(unix_s: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_s)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_s.to_string())
}

#[derive(Serialize)]
pub struct CheckReport {
    pub id: String,
    pub title: String,
    pub starts_at: String,
    pub ends_at: String,
    pub delivery_deadline_s: u64,
    pub coupon_ttl_s: u64,
    /// Keys marked `example = true`: `serve` refuses them without `--rehearsal`.
    pub example_keys: Vec<String>,
    pub games: Vec<GameCheck>,
    pub gifts: Vec<GiftCheck>,
    /// Σ stock × value over the gifts: what the campaign gives away if every pack is claimed.
    pub liability_cents: u128,
    /// Every game's stock can be delivered at its capacity within the deadline.
    pub deliverable: bool,
    pub waves: Vec<WaveCheck>,
}

#[derive(Serialize)]
pub struct GameCheck {
    pub id: String,
    pub name: String,
    pub delivery_capacity_per_s: u32,
    /// Σ stock of the game's gifts.
    pub stock: u64,
    /// Stock ÷ capacity: the time to deliver all of it at full capacity.
    pub drain_s: u64,
    /// `drain_s` ≤ the delivery deadline.
    pub deliverable: bool,
}

#[derive(Serialize)]
pub struct GiftCheck {
    pub id: String,
    pub game: String,
    pub audience: &'static str,
    pub stock: u64,
    pub value_cents: u64,
    pub liability_cents: u128,
    pub high_value: bool,
}

#[derive(Serialize)]
pub struct WaveCheck {
    /// From 1.
    pub wave: u32,
    pub opens_at: String,
    pub opens_at_unix_s: i64,
}

pub fn check(campaign: &Campaign) -> CheckReport {
    let gifts: Vec<GiftCheck> = campaign
        .gifts
        .iter()
        .map(|g| GiftCheck {
            id: g.id.clone(),
            game: campaign.game(g.game).id.clone(),
            audience: g.audience.as_str(),
            stock: g.stock,
            value_cents: g.value_cents,
            liability_cents: u128::from(g.stock) * u128::from(g.value_cents),
            high_value: g.high_value,
        })
        .collect();
    let games: Vec<GameCheck> = campaign
        .games
        .iter()
        .map(|game| {
            let stock: u64 =
                campaign.gifts.iter().filter(|g| g.game == game.index).map(|g| g.stock).sum();
            let drain_s = stock.div_ceil(u64::from(game.delivery_capacity_per_s.max(1)));
            GameCheck {
                id: game.id.clone(),
                name: game.name.clone(),
                delivery_capacity_per_s: game.delivery_capacity_per_s,
                stock,
                drain_s,
                deliverable: drain_s <= campaign.delivery_deadline_s,
            }
        })
        .collect();
    let release = &campaign.release;
    let waves = (0..release.waves)
        .map(|w| {
            let at = campaign.starts_at_unix_s.saturating_add(
                i64::try_from(u64::from(w) * release.wave_interval_s).unwrap_or(i64::MAX),
            );
            WaveCheck { wave: w + 1, opens_at: rfc3339(at), opens_at_unix_s: at }
        })
        .collect();
    CheckReport {
        id: campaign.id.clone(),
        title: campaign.title.clone(),
        starts_at: rfc3339(campaign.starts_at_unix_s),
        ends_at: rfc3339(campaign.ends_at_unix_s),
        delivery_deadline_s: campaign.delivery_deadline_s,
        coupon_ttl_s: campaign.coupon_ttl_s,
        example_keys: campaign.auth.example_keys.clone(),
        liability_cents: gifts.iter().map(|g| g.liability_cents).sum(),
        deliverable: games.iter().all(|g| g.deliverable),
        games,
        gifts,
        waves,
    }
}

fn money(cents: u128) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl CheckReport {
    pub fn table(&self, file: &Path) -> String {
        use std::fmt::Write as _;
        let mut t = String::new();
        let hours = |s: u64| s as f64 / 3600.0;
        let _ = writeln!(t, "{}: campaign `{}` ({}) is valid", file.display(), self.id, self.title);
        let _ = writeln!(t, "  opens {}, closes {}", self.starts_at, self.ends_at);
        let _ = writeln!(
            t,
            "  every claim delivered within {:.0} h; a red packet expires after {:.0} h",
            hours(self.delivery_deadline_s),
            hours(self.coupon_ttl_s)
        );
        for key in &self.example_keys {
            let _ = writeln!(
                t,
                "  WARNING {key} is an example key (example = true): `serve` refuses it without \
                 --rehearsal"
            );
        }
        let _ = writeln!(t, "\nrelease waves ({}):", self.waves.len());
        for w in &self.waves {
            let _ = writeln!(t, "  wave {:<3} opens {}", w.wave, w.opens_at);
        }
        let _ =
            writeln!(t, "\ngames ({}): stock ÷ capacity against the deadline", self.games.len());
        let _ = writeln!(
            t,
            "  {:<20} {:>12} {:>12} {:>10}  by the deadline",
            "game", "capacity/s", "stock", "drain h"
        );
        for g in &self.games {
            let _ = writeln!(
                t,
                "  {:<20} {:>12} {:>12} {:>10.1}  {}",
                g.id,
                g.delivery_capacity_per_s,
                g.stock,
                hours(g.drain_s),
                if g.deliverable { "yes" } else { "NO" }
            );
        }
        let _ = writeln!(t, "\ngifts ({}):", self.gifts.len());
        let _ = writeln!(
            t,
            "  {:<16} {:<20} {:<8} {:>10} {:>10} {:>16}",
            "gift", "game", "for", "stock", "value", "liability"
        );
        for g in &self.gifts {
            let _ = writeln!(
                t,
                "  {:<16} {:<20} {:<8} {:>10} {:>10} {:>16}{}",
                g.id,
                g.game,
                g.audience,
                g.stock,
                money(u128::from(g.value_cents)),
                money(g.liability_cents),
                if g.high_value { "  high value" } else { "" }
            );
        }
        let _ = writeln!(
            t,
            "\ntotal liability: {} (Σ stock × value, in the currency's units)",
            money(self.liability_cents)
        );
        let _ = writeln!(
            t,
            "deliverable by the deadline at the games' capacity: {}",
            if self.deliverable { "yes" } else { "NO" }
        );
        t
    }
}

/// A shifted copy of a campaign file.
pub struct Shifted {
    pub text: String,
    pub starts_at: String,
    pub ends_at: String,
}

/// `file`'s text with `campaign.starts_at` at `starts_at_unix_s` and `ends_at` moved by as
/// much, each in its own UTC offset, everything else (comments too) as it was. The copy is
/// validated before it is returned.
pub fn shift(file: &Path, starts_at_unix_s: i64) -> Result<Shifted> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("read {name}"))?;
    // Secrets are not needed to move dates: any stand-in lets the file validate, and the copy
    // keeps the original's `secret_env` names.
    let stand_in = |_: &str| Some("stand-in-secret-for-validation".to_string());
    let campaign = Campaign::parse(&text, &name, &stand_in)?;
    let length_s = campaign.ends_at_unix_s - campaign.starts_at_unix_s;
    let mut doc: toml_edit::DocumentMut =
        text.parse().with_context(|| format!("parse {name} for editing"))?;
    let starts_at = set_time(&mut doc, &name, "starts_at", starts_at_unix_s)?;
    let ends_at = set_time(&mut doc, &name, "ends_at", starts_at_unix_s.saturating_add(length_s))?;
    let out = doc.to_string();
    Campaign::parse(&out, &format!("{name} (shifted)"), &stand_in)?;
    Ok(Shifted { text: out, starts_at, ends_at })
}

/// Sets `[campaign].key` to `unix_s` in the offset the file wrote it in; returns the new text.
fn set_time(
    doc: &mut toml_edit::DocumentMut,
    file: &str,
    key: &str,
    unix_s: i64,
) -> Result<String> {
    let value = doc
        .get_mut("campaign")
        .and_then(|c| c.get_mut(key))
        .and_then(toml_edit::Item::as_value_mut)
        .with_context(|| format!("{file}: campaign.{key} is missing"))?;
    let Some(old) = value.as_str() else {
        bail!("{file}: campaign.{key} is not a string");
    };
    let offset = OffsetDateTime::parse(old, &Rfc3339)
        .with_context(|| format!("{file}: campaign.{key} `{old}` is not an RFC 3339 time"))?
        .offset();
    let new = OffsetDateTime::from_unix_timestamp(unix_s)
        .with_context(|| format!("{unix_s} is out of range"))?
        .checked_to_offset(offset)
        .with_context(|| format!("{unix_s} is out of range at {offset}"))?
        .format(&Rfc3339)
        .context("format a time")?;
    let decor = value.decor().clone();
    *value = toml_edit::Value::from(new.clone());
    *value.decor_mut() = decor;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_units_and_a_sign() {
        assert_eq!(parse_signed_duration_s("10m"), Ok(600));
        assert_eq!(parse_signed_duration_s("0s"), Ok(0));
        assert_eq!(parse_signed_duration_s("0"), Ok(0));
        assert_eq!(parse_signed_duration_s("-1h"), Ok(-3600));
        assert_eq!(parse_signed_duration_s("+1h30m"), Ok(5400));
        assert_eq!(parse_signed_duration_s("2d"), Ok(172_800));
        for bad in ["", "-", "10", "1x", "h", "1h5"] {
            assert!(parse_signed_duration_s(bad).is_err(), "{bad}");
        }
    }
}
