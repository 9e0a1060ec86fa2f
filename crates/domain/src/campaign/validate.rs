//! Turning the raw TOML file into a validated [`Campaign`]: every refusal names the file, the
//! field and the reason.
//!
//! One function per section of the file, called in file order by [`validate`]: the first rule
//! broken is the one reported, so the order of the calls is part of the behaviour.

use std::collections::HashSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    Audience, AuthSettings, Campaign, CampaignError, Channel, ChannelSpec, Game, GameIndex, Gift,
    GiftIndex, Item, Limits, MAX_GAMES, MAX_GIFTS, MAX_ID_LEN, Ranking, RawAuth, RawCampaign,
    RawChannel, RawFile, RawGame, RawGift, RawLimits, RawRanking, RawRelease, RegistrationClass,
    Release, SecretBytes, TicketKey,
};

type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// Collects the first failure with its field path; rules read top to bottom like the file.
struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn fail(&self, field: impl Into<String>, reason: impl Into<String>) -> CampaignError {
        CampaignError::Invalid {
            file: self.file.to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn id(&self, field: &str, value: &str) -> Result<String, CampaignError> {
        if value.is_empty() {
            return Err(self.fail(field, "must not be empty"));
        }
        if value.len() > MAX_ID_LEN {
            return Err(self.fail(field, format!("longer than {MAX_ID_LEN} characters")));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(self.fail(field, format!("`{value}` may hold only a-z, 0-9, '-' and '_'")));
        }
        Ok(value.to_string())
    }

    fn text(&self, field: &str, value: &str) -> Result<String, CampaignError> {
        if value.trim().is_empty() {
            return Err(self.fail(field, "must not be empty"));
        }
        Ok(value.to_string())
    }

    /// A count that must be at least `min`.
    fn at_least(&self, field: &str, value: i64, min: i64) -> Result<u64, CampaignError> {
        if value < min {
            return Err(self.fail(field, format!("is {value}, must be at least {min}")));
        }
        u64::try_from(value).map_err(|_| self.fail(field, "out of range"))
    }

    fn at_least_u32(&self, field: &str, value: i64, min: i64) -> Result<u32, CampaignError> {
        let v = self.at_least(field, value, min)?;
        u32::try_from(v).map_err(|_| self.fail(field, format!("is {v}, larger than {}", u32::MAX)))
    }

    /// A count of hours (at least 1) in seconds. Checked: in a release build an overflowing
    /// product would wrap to a short deadline without a word.
    fn hours_in_s(&self, field: &str, value: i64) -> Result<u64, CampaignError> {
        let hours = self.at_least(field, value, 1)?;
        hours
            .checked_mul(3600)
            .ok_or_else(|| self.fail(field, format!("{hours} h is out of range")))
    }

    fn time(&self, field: &str, value: &str) -> Result<i64, CampaignError> {
        OffsetDateTime::parse(value, &Rfc3339).map(|t| t.unix_timestamp()).map_err(|e| {
            self.fail(field, format!("`{value}` is not an RFC 3339 time with offset ({e})"))
        })
    }

    /// Resolves an inline `secret` or a `secret_env` name; exactly one must be given, non-empty.
    fn secret(
        &self,
        field: &str,
        inline: Option<&str>,
        env_name: Option<&str>,
        env: Env<'_>,
    ) -> Result<String, CampaignError> {
        match (inline, env_name) {
            (Some(_), Some(_)) => {
                Err(self.fail(field, "give either `secret` or `secret_env`, not both"))
            }
            (None, None) => Err(self.fail(field, "needs `secret` or `secret_env`")),
            (Some(""), None) => Err(self.fail(format!("{field}.secret"), "secret is empty")),
            (Some(secret), None) => Ok(secret.to_string()),
            (None, Some("")) => {
                Err(self.fail(format!("{field}.secret_env"), "environment variable name is empty"))
            }
            (None, Some(var)) => match env(var) {
                Some(value) if !value.is_empty() => Ok(value),
                Some(_) => {
                    Err(self
                        .fail(format!("{field}.secret_env"), format!("secret in ${var} is empty")))
                }
                None => Err(self.fail(format!("{field}.secret_env"), format!("${var} is not set"))),
            },
        }
    }

    fn unique<'v>(
        &self,
        field: &str,
        seen: &mut HashSet<&'v str>,
        id: &'v str,
    ) -> Result<(), CampaignError> {
        if !seen.insert(id) {
            return Err(self.fail(field, format!("duplicate id `{id}`")));
        }
        Ok(())
    }
}

/// Checks every section in file order, then the rules that span sections.
pub(super) fn validate(raw: RawFile, file: &str, env: Env<'_>) -> Result<Campaign, CampaignError> {
    let c = Checker { file };
    let window = campaign_window(&c, &raw.campaign)?;
    let auth = auth(&c, &raw.auth, env)?;
    let ranking = ranking(&c, raw.ranking)?;
    let release = release(&c, raw.release, window.length_s())?;
    let limits = limits(&c, raw.limits)?;
    let channels = channels(&c, &raw.channels)?;
    let games = games(&c, &raw.games)?;
    let (gifts, stock_per_game) = gifts(&c, &raw.gifts, &games, &limits)?;
    deliverable_within_deadline(&c, &games, &stock_per_game, window.delivery_deadline_s)?;
    Ok(Campaign {
        id: window.id,
        title: window.title,
        starts_at_unix_s: window.starts_at_unix_s,
        ends_at_unix_s: window.ends_at_unix_s,
        delivery_deadline_s: window.delivery_deadline_s,
        coupon_ttl_s: window.coupon_ttl_s,
        auth,
        ranking,
        release,
        limits,
        channels,
        games,
        gifts,
    })
}

/// The `[campaign]` table: identity, opening window and the deadlines that follow from it.
struct Window {
    id: String,
    title: String,
    starts_at_unix_s: i64,
    ends_at_unix_s: i64,
    delivery_deadline_s: u64,
    coupon_ttl_s: u64,
}

impl Window {
    /// Seconds the campaign is open; positive once validated.
    fn length_s(&self) -> u64 {
        u64::try_from(self.ends_at_unix_s - self.starts_at_unix_s).unwrap_or(0)
    }
}

fn campaign_window(c: &Checker<'_>, raw: &RawCampaign) -> Result<Window, CampaignError> {
    let id = c.id("campaign.id", &raw.id)?;
    let title = c.text("campaign.title", &raw.title)?;
    let starts_at_unix_s = c.time("campaign.starts_at", &raw.starts_at)?;
    let ends_at_unix_s = c.time("campaign.ends_at", &raw.ends_at)?;
    if ends_at_unix_s <= starts_at_unix_s {
        return Err(c.fail(
            "campaign.ends_at",
            format!("ends at {} which is not after starts_at {}", raw.ends_at, raw.starts_at),
        ));
    }
    let delivery_deadline_s =
        c.hours_in_s("campaign.delivery_deadline_hours", raw.delivery_deadline_hours)?;
    let coupon_ttl_s = c.hours_in_s("campaign.coupon_ttl_hours", raw.coupon_ttl_hours)?;
    Ok(Window { id, title, starts_at_unix_s, ends_at_unix_s, delivery_deadline_s, coupon_ttl_s })
}

fn auth(c: &Checker<'_>, raw: &RawAuth, env: Env<'_>) -> Result<AuthSettings, CampaignError> {
    if raw.ticket_keys.is_empty() {
        return Err(c.fail("auth.ticket_keys", "at least one ticket key is required"));
    }
    let mut key_ids = HashSet::new();
    let mut ticket_keys = Vec::with_capacity(raw.ticket_keys.len());
    let mut example_keys = Vec::new();
    for (i, key) in raw.ticket_keys.iter().enumerate() {
        let field = format!("auth.ticket_keys[{i}]");
        let key_id = c.id(&format!("{field}.id"), &key.id)?;
        c.unique(&format!("{field}.id"), &mut key_ids, &key.id)?;
        let secret = c.secret(&field, key.secret.as_deref(), key.secret_env.as_deref(), env)?;
        if secret.len() < 16 {
            return Err(c.fail(format!("{field}.secret"), "secret is shorter than 16 bytes"));
        }
        if key.example {
            example_keys.push(field);
        }
        ticket_keys.push(TicketKey { id: key_id, secret: secret.into_bytes() });
    }
    let coupon_secret = match &raw.coupon_key {
        None => None,
        Some(k) => {
            let secret =
                c.secret("auth.coupon_key", k.secret.as_deref(), k.secret_env.as_deref(), env)?;
            if secret.len() < 16 {
                return Err(c.fail("auth.coupon_key.secret", "secret is shorter than 16 bytes"));
            }
            if k.example {
                example_keys.push("auth.coupon_key".to_string());
            }
            Some(SecretBytes(secret.into_bytes()))
        }
    };
    Ok(AuthSettings {
        ticket_keys,
        coupon_secret,
        ticket_max_age_s: c.at_least("auth.ticket_max_age_s", raw.ticket_max_age_s, 1)?,
        high_value_fresh_login_s: c.at_least(
            "auth.high_value_fresh_login_s",
            raw.high_value_fresh_login_s,
            1,
        )?,
        example_keys,
    })
}

fn ranking(c: &Checker<'_>, raw: Option<RawRanking>) -> Result<Ranking, CampaignError> {
    let Some(r) = raw else {
        return Ok(Ranking { audience_order: [RegistrationClass::Active, RegistrationClass::New] });
    };
    let mut order = Vec::with_capacity(2);
    for (i, name) in r.audience_order.iter().enumerate() {
        let class = RegistrationClass::parse(name).ok_or_else(|| {
            c.fail(
                format!("ranking.audience_order[{i}]"),
                format!("unknown audience `{name}` (expected `active` or `new`)"),
            )
        })?;
        if order.contains(&class) {
            return Err(
                c.fail(format!("ranking.audience_order[{i}]"), format!("`{name}` appears twice"))
            );
        }
        order.push(class);
    }
    match order[..] {
        [a, b] => Ok(Ranking { audience_order: [a, b] }),
        _ => Err(c.fail("ranking.audience_order", "must name both `active` and `new`")),
    }
}

/// `window_s` is how long the campaign is open: every wave must open before it closes.
fn release(
    c: &Checker<'_>,
    raw: Option<RawRelease>,
    window_s: u64,
) -> Result<Release, CampaignError> {
    let Some(r) = raw else {
        return Ok(Release { waves: 1, wave_interval_s: 0, spread_s: 0 });
    };
    let waves = c.at_least_u32("release.waves", r.waves, 1)?;
    let wave_interval_s = c.at_least("release.wave_interval_s", r.wave_interval_s, 0)?;
    let spread_s = c.at_least("release.spread_s", r.spread_s, 0)?;
    if waves > 1 && wave_interval_s == 0 {
        return Err(
            c.fail("release.wave_interval_s", "must be positive when there are several waves")
        );
    }
    if waves > 1 && spread_s > wave_interval_s {
        return Err(c.fail(
            "release.spread_s",
            format!("{spread_s} s spread exceeds the {wave_interval_s} s between waves"),
        ));
    }
    // Checked: waves and interval may each be huge; their product must not wrap to a small,
    // valid-looking time.
    let last_wave_opens_s =
        u64::from(waves - 1).checked_mul(wave_interval_s).and_then(|s| s.checked_add(spread_s));
    if last_wave_opens_s.is_none_or(|s| s >= window_s) {
        let opens =
            last_wave_opens_s.map_or_else(|| format!("more than {}", u64::MAX), |s| s.to_string());
        return Err(c.fail(
            "release.waves",
            format!("the last wave opens {opens} s after the start, after the campaign ends"),
        ));
    }
    Ok(Release { waves, wave_interval_s, spread_s })
}

fn limits(c: &Checker<'_>, raw: Option<RawLimits>) -> Result<Limits, CampaignError> {
    let Some(l) = raw else {
        return Ok(Limits {
            high_value_per_user_per_day: 1,
            high_value_budget_cents_per_hour: u64::MAX,
            user_rate_per_s: 10,
            user_burst: 20,
            ip_rate_per_s: 5000,
            ip_burst: 10000,
        });
    };
    let user_rate_per_s = c.at_least_u32("limits.user_rate_per_s", l.user_rate_per_s, 1)?;
    let user_burst = c.at_least_u32("limits.user_burst", l.user_burst, 1)?;
    let ip_rate_per_s = c.at_least_u32("limits.ip_rate_per_s", l.ip_rate_per_s, 1)?;
    let ip_burst = c.at_least_u32("limits.ip_burst", l.ip_burst, 1)?;
    if ip_burst < user_burst {
        return Err(c.fail(
            "limits.ip_burst",
            format!(
                "{ip_burst} is below user_burst {user_burst}: one user could never use its burst"
            ),
        ));
    }
    Ok(Limits {
        high_value_per_user_per_day: c.at_least_u32(
            "limits.high_value_per_user_per_day",
            l.high_value_per_user_per_day,
            0,
        )?,
        high_value_budget_cents_per_hour: c.at_least(
            "limits.high_value_budget_cents_per_hour",
            l.high_value_budget_cents_per_hour,
            0,
        )?,
        user_rate_per_s,
        user_burst,
        ip_rate_per_s,
        ip_burst,
    })
}

fn channels(c: &Checker<'_>, raw: &[RawChannel]) -> Result<Vec<ChannelSpec>, CampaignError> {
    if raw.is_empty() {
        return Err(c.fail("channels", "at least one channel is required"));
    }
    let mut channel_ids = HashSet::new();
    let mut channels = Vec::with_capacity(raw.len());
    for (i, ch) in raw.iter().enumerate() {
        let field = format!("channels[{i}]");
        let channel = Channel::parse(&ch.id).ok_or_else(|| {
            c.fail(
                format!("{field}.id"),
                format!("unknown channel `{}` (expected swipe, ar_map or scan)", ch.id),
            )
        })?;
        c.unique(&format!("{field}.id"), &mut channel_ids, &ch.id)?;
        let coupons_per_user =
            c.at_least_u32(&format!("{field}.coupons_per_user"), ch.coupons_per_user, 1)?;
        let budget = c.at_least(&format!("{field}.budget"), ch.budget, 1)?;
        if budget < u64::from(coupons_per_user) {
            return Err(c.fail(
                format!("{field}.budget"),
                format!("budget {budget} is below coupons_per_user {coupons_per_user}"),
            ));
        }
        channels.push(ChannelSpec { channel, coupons_per_user, budget });
    }
    Ok(channels)
}

fn games(c: &Checker<'_>, raw: &[RawGame]) -> Result<Vec<Game>, CampaignError> {
    if raw.is_empty() {
        return Err(c.fail("games", "at least one game is required"));
    }
    if raw.len() > MAX_GAMES {
        return Err(
            c.fail("games", format!("{} games; at most {MAX_GAMES} are supported", raw.len()))
        );
    }
    let mut game_ids = HashSet::new();
    let mut games = Vec::with_capacity(raw.len());
    for (i, g) in raw.iter().enumerate() {
        games.push(game(c, i, g, &mut game_ids)?);
    }
    Ok(games)
}

/// Entry `i` of `[[games]]`; `seen` holds the ids of the entries before it.
fn game<'r>(
    c: &Checker<'_>,
    i: usize,
    g: &'r RawGame,
    seen: &mut HashSet<&'r str>,
) -> Result<Game, CampaignError> {
    let field = format!("games[{i}]");
    let id = c.id(&format!("{field}.id"), &g.id)?;
    c.unique(&format!("{field}.id"), seen, &g.id)?;
    let name = c.text(&format!("{field}.name"), &g.name)?;
    let delivery_capacity_per_s =
        c.at_least_u32(&format!("{field}.delivery_capacity_per_s"), g.delivery_capacity_per_s, 1)?;
    if !(g.idip_url.starts_with("http://") || g.idip_url.starts_with("https://"))
        || g.idip_url.len() < 10
    {
        return Err(
            c.fail(format!("{field}.idip_url"), format!("`{}` is not an http(s) URL", g.idip_url))
        );
    }
    let idip_timeout_ms = c.at_least(&format!("{field}.idip_timeout_ms"), g.idip_timeout_ms, 1)?;
    let index = GameIndex(u8::try_from(i).map_err(|_| c.fail("games", "too many games"))?);
    Ok(Game {
        index,
        id,
        name,
        delivery_capacity_per_s,
        idip_url: g.idip_url.trim_end_matches('/').to_string(),
        idip_timeout_ms,
    })
}

/// The gifts, and the total stock of each game (indexed by [`GameIndex`]) for the deadline check.
fn gifts(
    c: &Checker<'_>,
    raw: &[RawGift],
    games: &[Game],
    limits: &Limits,
) -> Result<(Vec<Gift>, Vec<u64>), CampaignError> {
    if raw.is_empty() {
        return Err(c.fail("gifts", "at least one gift is required"));
    }
    if raw.len() > MAX_GIFTS {
        return Err(
            c.fail("gifts", format!("{} gifts; at most {MAX_GIFTS} are supported", raw.len()))
        );
    }
    let mut gift_ids = HashSet::new();
    let mut gifts = Vec::with_capacity(raw.len());
    let mut stock_per_game = vec![0u64; games.len()];
    for (i, g) in raw.iter().enumerate() {
        let gift = gift(c, i, g, &mut gift_ids, games, limits)?;
        let total = &mut stock_per_game[usize::from(gift.game.0)];
        *total = total.checked_add(gift.stock).ok_or_else(|| {
            c.fail(format!("gifts[{i}].stock"), "the stock of the game's gifts together overflows")
        })?;
        gifts.push(gift);
    }
    Ok((gifts, stock_per_game))
}

/// Entry `i` of `[[gifts]]`; `seen` holds the ids of the entries before it.
fn gift<'r>(
    c: &Checker<'_>,
    i: usize,
    g: &'r RawGift,
    seen: &mut HashSet<&'r str>,
    games: &[Game],
    limits: &Limits,
) -> Result<Gift, CampaignError> {
    let field = format!("gifts[{i}]");
    let id = c.id(&format!("{field}.id"), &g.id)?;
    c.unique(&format!("{field}.id"), seen, &g.id)?;
    let game = games
        .iter()
        .find(|game| game.id == g.game)
        .ok_or_else(|| c.fail(format!("{field}.game"), format!("unknown game `{}`", g.game)))?;
    let audience = Audience::parse(&g.audience).ok_or_else(|| {
        c.fail(
            format!("{field}.audience"),
            format!("unknown audience `{}` (expected new, active or any)", g.audience),
        )
    })?;
    let title = c.text(&format!("{field}.title"), &g.title)?;
    let items = items(c, &field, g)?;
    let value_cents = c.at_least(&format!("{field}.value_cents"), g.value_cents, 0)?;
    if g.stock <= 0 {
        return Err(
            c.fail(format!("{field}.stock"), format!("stock is {}, must be positive", g.stock))
        );
    }
    let stock = c.at_least(&format!("{field}.stock"), g.stock, 1)?;
    let per_user = c.at_least_u32(&format!("{field}.per_user"), g.per_user, 1)?;
    if u64::from(per_user) > stock {
        return Err(c.fail(
            format!("{field}.per_user"),
            format!("per_user {per_user} exceeds the stock {stock}"),
        ));
    }
    let min_role_level = match g.min_role_level {
        None => None,
        Some(level) => Some(c.at_least_u32(&format!("{field}.min_role_level"), level, 1)?),
    };
    let mut regions = Vec::with_capacity(g.regions.len());
    for (j, r) in g.regions.iter().enumerate() {
        regions.push(c.id(&format!("{field}.regions[{j}]"), r)?);
    }
    if g.high_value && limits.high_value_per_user_per_day == 0 {
        return Err(c.fail(
            format!("{field}.high_value"),
            "a high-value gift can never be claimed: limits.high_value_per_user_per_day is 0",
        ));
    }
    if g.high_value && value_cents > limits.high_value_budget_cents_per_hour {
        return Err(c.fail(
            format!("{field}.value_cents"),
            "exceeds limits.high_value_budget_cents_per_hour: it could never be claimed",
        ));
    }
    Ok(Gift {
        index: GiftIndex(u16::try_from(i).map_err(|_| c.fail("gifts", "too many gifts"))?),
        id,
        game: game.index,
        audience,
        title,
        items,
        value_cents,
        stock,
        per_user,
        high_value: g.high_value,
        min_role_level,
        regions,
    })
}

/// The `items` of the gift at `field`.
fn items(c: &Checker<'_>, field: &str, g: &RawGift) -> Result<Vec<Item>, CampaignError> {
    if g.items.is_empty() {
        return Err(c.fail(format!("{field}.items"), "a gift must hold at least one item"));
    }
    let mut items = Vec::with_capacity(g.items.len());
    for (j, it) in g.items.iter().enumerate() {
        let item = c.id(&format!("{field}.items[{j}].item"), &it.item)?;
        let count = c.at_least_u32(&format!("{field}.items[{j}].count"), it.count, 1)?;
        items.push(Item { item, count });
    }
    Ok(items)
}

/// A game whose whole stock cannot be delivered within the deadline at its capacity would
/// break the campaign's promise the moment it sells out: refuse it now, not on festival eve.
fn deliverable_within_deadline(
    c: &Checker<'_>,
    games: &[Game],
    stock_per_game: &[u64],
    delivery_deadline_s: u64,
) -> Result<(), CampaignError> {
    for game in games {
        let stock = stock_per_game[usize::from(game.index.0)];
        let drain_s = stock.div_ceil(u64::from(game.delivery_capacity_per_s));
        if drain_s > delivery_deadline_s {
            return Err(c.fail(
                format!("games[{}].delivery_capacity_per_s", game.index.0),
                format!(
                    "{} gifts at {}/s take {} h to deliver, beyond the {} h deadline",
                    stock,
                    game.delivery_capacity_per_s,
                    drain_s.div_ceil(3600),
                    delivery_deadline_s / 3600
                ),
            ));
        }
    }
    Ok(())
}
