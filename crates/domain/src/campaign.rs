//! Campaign files: the TOML contract (`shared/campaign.example.toml`) parsed into validated
//! domain types.
//!
//! Parsing happens in two steps: serde reads the file into `Raw*` structs that mirror it exactly
//! (`deny_unknown_fields`, so a typo is an error rather than a silently ignored setting), then
//! [`validate`] turns them into [`Campaign`], checking every rule that a type cannot express and
//! naming the file, the field and the reason when one fails.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Most games a campaign may have: a user's registrations are one bitmask of this width
/// (see [`crate::profile`]), so this is a layout limit, not a tuning knob.
pub const MAX_GAMES: usize = 16;
/// Most gift packs a campaign may have; the gift list is computed per request over all of them.
pub const MAX_GIFTS: usize = 1024;
/// Longest id (campaign, game, gift, key) accepted; ids travel in URLs, tokens and log lines.
pub const MAX_ID_LEN: usize = 64;

/// The three kinds of red packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Swipe,
    ArMap,
    Scan,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Swipe, Channel::ArMap, Channel::Scan];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Swipe => "swipe",
            Channel::ArMap => "ar_map",
            Channel::Scan => "scan",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a gift pack is meant for, relative to the gift's game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Only users not registered in the gift's game.
    New,
    /// Only users registered in the gift's game.
    Active,
    /// Everyone.
    Any,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::New => "new",
            Audience::Active => "active",
            Audience::Any => "any",
        }
    }

    fn parse(s: &str) -> Option<Audience> {
        [Audience::New, Audience::Active, Audience::Any].into_iter().find(|a| a.as_str() == s)
    }
}

/// A user's class for one game: registered there (`Active`) or not (`New`). Level 1 of ranking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistrationClass {
    Active,
    New,
}

impl RegistrationClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationClass::Active => "active",
            RegistrationClass::New => "new",
        }
    }

    fn parse(s: &str) -> Option<RegistrationClass> {
        [RegistrationClass::Active, RegistrationClass::New].into_iter().find(|c| c.as_str() == s)
    }
}

/// Index of a game in [`Campaign::games`]; also its bit in a profile's registration mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GameIndex(pub u8);

/// Index of a gift in [`Campaign::gifts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GiftIndex(pub u16);

/// A validated campaign. Times are Unix seconds (UTC).
#[derive(Clone, Debug)]
pub struct Campaign {
    pub id: String,
    pub title: String,
    pub starts_at_unix_s: i64,
    pub ends_at_unix_s: i64,
    pub delivery_deadline_s: u64,
    pub coupon_ttl_s: u64,
    pub auth: AuthSettings,
    pub ranking: Ranking,
    pub release: Release,
    pub limits: Limits,
    pub channels: Vec<ChannelSpec>,
    pub games: Vec<Game>,
    pub gifts: Vec<Gift>,
}

#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Active ticket keys; the first signs, all verify (rotation).
    pub ticket_keys: Vec<TicketKey>,
    /// Secret for coupon tokens (ours, unlike the login service's ticket keys). `None`: derive
    /// it from the first ticket key, which is fine for a demo and wrong in production, where
    /// rotating the login key would void every outstanding coupon.
    pub coupon_secret: Option<SecretBytes>,
    pub ticket_max_age_s: u64,
    pub high_value_fresh_login_s: u64,
}

/// A login-ticket key. `Debug` never prints the secret.
#[derive(Clone)]
pub struct TicketKey {
    pub id: String,
    pub secret: Vec<u8>,
}

/// Secret key material; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKey").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

#[derive(Clone, Debug)]
pub struct Ranking {
    /// Level-1 order of registration classes; always holds both classes once.
    pub audience_order: [RegistrationClass; 2],
}

#[derive(Clone, Debug)]
pub struct Release {
    pub waves: u32,
    pub wave_interval_s: u64,
    pub spread_s: u64,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub high_value_per_user_per_day: u32,
    pub high_value_budget_cents_per_hour: u64,
    pub user_rate_per_s: u32,
    pub user_burst: u32,
    pub ip_rate_per_s: u32,
    pub ip_burst: u32,
}

#[derive(Clone, Debug)]
pub struct ChannelSpec {
    pub channel: Channel,
    pub coupons_per_user: u32,
    /// Coupons this channel may grant in the whole campaign.
    pub budget: u64,
}

#[derive(Clone, Debug)]
pub struct Game {
    pub index: GameIndex,
    pub id: String,
    pub name: String,
    pub delivery_capacity_per_s: u32,
    pub idip_url: String,
    pub idip_timeout_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub item: String,
    pub count: u32,
}

#[derive(Clone, Debug)]
pub struct Gift {
    pub index: GiftIndex,
    pub id: String,
    pub game: GameIndex,
    pub audience: Audience,
    pub title: String,
    pub items: Vec<Item>,
    pub value_cents: u64,
    pub stock: u64,
    pub per_user: u32,
    pub high_value: bool,
    pub min_role_level: Option<u32>,
    /// Regions whose roles may receive the gift; empty means every region.
    pub regions: Vec<String>,
}

impl Campaign {
    /// Reads and validates a campaign file. `env` resolves `secret_env` names (the binary passes
    /// `std::env::var`; tests pass a map), so the domain itself reads nothing from the process.
    pub fn load(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Campaign, CampaignError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CampaignError::Io { file: file.clone(), reason: e.to_string() })?;
        Campaign::parse(&text, &file, env)
    }

    /// Parses campaign text; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Campaign, CampaignError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line =
                e.span().map(|span| 1 + text[..span.start.min(text.len())].matches('\n').count());
            CampaignError::Syntax { file: file.to_string(), line, message: e.message().to_string() }
        })?;
        validate(raw, file, env)
    }

    pub fn game_by_id(&self, id: &str) -> Option<&Game> {
        self.games.iter().find(|g| g.id == id)
    }

    pub fn gift_by_id(&self, id: &str) -> Option<&Gift> {
        self.gifts.iter().find(|g| g.id == id)
    }

    pub fn game(&self, index: GameIndex) -> &Game {
        &self.games[usize::from(index.0)]
    }

    pub fn channel(&self, channel: Channel) -> Option<&ChannelSpec> {
        self.channels.iter().find(|c| c.channel == channel)
    }

    /// The same campaign moved in time so that it opens at `starts_at_unix_s`, keeping its
    /// length. The demo uses it to run the example "as if it had opened a minute ago".
    pub fn with_start(mut self, starts_at_unix_s: i64) -> Campaign {
        let length_s = self.ends_at_unix_s - self.starts_at_unix_s;
        self.starts_at_unix_s = starts_at_unix_s;
        self.ends_at_unix_s = starts_at_unix_s + length_s;
        self
    }
}

/// Why a campaign file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    #[error("{file}: cannot read: {reason}")]
    Io { file: String, reason: String },
    /// Malformed TOML, a wrong type or an unknown field (serde names the field in `message`).
    #[error("{file}{}: {message}", line.map(|l| format!(": line {l}")).unwrap_or_default())]
    Syntax { file: String, line: Option<usize>, message: String },
    /// A value that parses but breaks a rule.
    #[error("{file}: {field}: {reason}")]
    Invalid { file: String, field: String, reason: String },
}

// ---------------------------------------------------------------------------------------------
// The file as written. Field names here are the contract; changing one breaks campaign files.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    campaign: RawCampaign,
    auth: RawAuth,
    #[serde(default)]
    ranking: Option<RawRanking>,
    #[serde(default)]
    release: Option<RawRelease>,
    #[serde(default)]
    limits: Option<RawLimits>,
    channels: Vec<RawChannel>,
    games: Vec<RawGame>,
    gifts: Vec<RawGift>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    id: String,
    title: String,
    starts_at: String,
    ends_at: String,
    delivery_deadline_hours: i64,
    coupon_ttl_hours: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    ticket_keys: Vec<RawTicketKey>,
    /// Our own key for coupon tokens; absent = derived from the first ticket key (demo only).
    #[serde(default)]
    coupon_key: Option<RawSecret>,
    ticket_max_age_s: i64,
    high_value_fresh_login_s: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTicketKey {
    id: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRanking {
    audience_order: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    waves: i64,
    wave_interval_s: i64,
    #[serde(default)]
    spread_s: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    high_value_per_user_per_day: i64,
    high_value_budget_cents_per_hour: i64,
    user_rate_per_s: i64,
    user_burst: i64,
    ip_rate_per_s: i64,
    ip_burst: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    id: String,
    coupons_per_user: i64,
    budget: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGame {
    id: String,
    name: String,
    delivery_capacity_per_s: i64,
    idip_url: String,
    idip_timeout_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGift {
    id: String,
    game: String,
    audience: String,
    title: String,
    items: Vec<RawItem>,
    value_cents: i64,
    stock: i64,
    per_user: i64,
    #[serde(default)]
    high_value: bool,
    #[serde(default)]
    min_role_level: Option<i64>,
    #[serde(default)]
    regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    item: String,
    count: i64,
}

// ---------------------------------------------------------------------------------------------

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
        env: &dyn Fn(&str) -> Option<String>,
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

fn validate(
    raw: RawFile,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Campaign, CampaignError> {
    let c = Checker { file };

    let id = c.id("campaign.id", &raw.campaign.id)?;
    let title = c.text("campaign.title", &raw.campaign.title)?;
    let starts_at_unix_s = c.time("campaign.starts_at", &raw.campaign.starts_at)?;
    let ends_at_unix_s = c.time("campaign.ends_at", &raw.campaign.ends_at)?;
    if ends_at_unix_s <= starts_at_unix_s {
        return Err(c.fail(
            "campaign.ends_at",
            format!(
                "ends at {} which is not after starts_at {}",
                raw.campaign.ends_at, raw.campaign.starts_at
            ),
        ));
    }
    let delivery_deadline_s =
        c.at_least("campaign.delivery_deadline_hours", raw.campaign.delivery_deadline_hours, 1)?
            * 3600;
    let coupon_ttl_s =
        c.at_least("campaign.coupon_ttl_hours", raw.campaign.coupon_ttl_hours, 1)? * 3600;

    // --- auth
    if raw.auth.ticket_keys.is_empty() {
        return Err(c.fail("auth.ticket_keys", "at least one ticket key is required"));
    }
    let mut key_ids = HashSet::new();
    let mut ticket_keys = Vec::with_capacity(raw.auth.ticket_keys.len());
    for (i, key) in raw.auth.ticket_keys.iter().enumerate() {
        let field = format!("auth.ticket_keys[{i}]");
        let key_id = c.id(&format!("{field}.id"), &key.id)?;
        c.unique(&format!("{field}.id"), &mut key_ids, &key.id)?;
        let secret = c.secret(&field, key.secret.as_deref(), key.secret_env.as_deref(), env)?;
        if secret.len() < 16 {
            return Err(c.fail(format!("{field}.secret"), "secret is shorter than 16 bytes"));
        }
        ticket_keys.push(TicketKey { id: key_id, secret: secret.into_bytes() });
    }
    let coupon_secret = match &raw.auth.coupon_key {
        None => None,
        Some(k) => {
            let secret =
                c.secret("auth.coupon_key", k.secret.as_deref(), k.secret_env.as_deref(), env)?;
            if secret.len() < 16 {
                return Err(c.fail("auth.coupon_key.secret", "secret is shorter than 16 bytes"));
            }
            Some(SecretBytes(secret.into_bytes()))
        }
    };
    let auth = AuthSettings {
        ticket_keys,
        coupon_secret,
        ticket_max_age_s: c.at_least("auth.ticket_max_age_s", raw.auth.ticket_max_age_s, 1)?,
        high_value_fresh_login_s: c.at_least(
            "auth.high_value_fresh_login_s",
            raw.auth.high_value_fresh_login_s,
            1,
        )?,
    };

    // --- ranking
    let ranking = match raw.ranking {
        None => Ranking { audience_order: [RegistrationClass::Active, RegistrationClass::New] },
        Some(r) => {
            let mut order = Vec::with_capacity(2);
            for (i, name) in r.audience_order.iter().enumerate() {
                let class = RegistrationClass::parse(name).ok_or_else(|| {
                    c.fail(
                        format!("ranking.audience_order[{i}]"),
                        format!("unknown audience `{name}` (expected `active` or `new`)"),
                    )
                })?;
                if order.contains(&class) {
                    return Err(c.fail(
                        format!("ranking.audience_order[{i}]"),
                        format!("`{name}` appears twice"),
                    ));
                }
                order.push(class);
            }
            match order[..] {
                [a, b] => Ranking { audience_order: [a, b] },
                _ => {
                    return Err(
                        c.fail("ranking.audience_order", "must name both `active` and `new`")
                    );
                }
            }
        }
    };

    // --- release
    let window_s = u64::try_from(ends_at_unix_s - starts_at_unix_s).unwrap_or(0);
    let release = match raw.release {
        None => Release { waves: 1, wave_interval_s: 0, spread_s: 0 },
        Some(r) => {
            let waves = c.at_least_u32("release.waves", r.waves, 1)?;
            let wave_interval_s = c.at_least("release.wave_interval_s", r.wave_interval_s, 0)?;
            let spread_s = c.at_least("release.spread_s", r.spread_s, 0)?;
            if waves > 1 && wave_interval_s == 0 {
                return Err(c.fail(
                    "release.wave_interval_s",
                    "must be positive when there are several waves",
                ));
            }
            if waves > 1 && spread_s > wave_interval_s {
                return Err(c.fail(
                    "release.spread_s",
                    format!("{spread_s} s spread exceeds the {wave_interval_s} s between waves"),
                ));
            }
            let last_wave_opens_s = u64::from(waves - 1) * wave_interval_s + spread_s;
            if last_wave_opens_s >= window_s {
                return Err(c.fail("release.waves", format!("the last wave opens {last_wave_opens_s} s after the start, after the campaign ends")));
            }
            Release { waves, wave_interval_s, spread_s }
        }
    };

    // --- limits
    let limits = match raw.limits {
        None => Limits {
            high_value_per_user_per_day: 1,
            high_value_budget_cents_per_hour: u64::MAX,
            user_rate_per_s: 10,
            user_burst: 20,
            ip_rate_per_s: 5000,
            ip_burst: 10000,
        },
        Some(l) => {
            let user_rate_per_s = c.at_least_u32("limits.user_rate_per_s", l.user_rate_per_s, 1)?;
            let user_burst = c.at_least_u32("limits.user_burst", l.user_burst, 1)?;
            let ip_rate_per_s = c.at_least_u32("limits.ip_rate_per_s", l.ip_rate_per_s, 1)?;
            let ip_burst = c.at_least_u32("limits.ip_burst", l.ip_burst, 1)?;
            if ip_burst < user_burst {
                return Err(c.fail("limits.ip_burst", format!("{ip_burst} is below user_burst {user_burst}: one user could never use its burst")));
            }
            Limits {
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
            }
        }
    };

    // --- channels
    if raw.channels.is_empty() {
        return Err(c.fail("channels", "at least one channel is required"));
    }
    let mut channel_ids = HashSet::new();
    let mut channels = Vec::with_capacity(raw.channels.len());
    for (i, ch) in raw.channels.iter().enumerate() {
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

    // --- games
    if raw.games.is_empty() {
        return Err(c.fail("games", "at least one game is required"));
    }
    if raw.games.len() > MAX_GAMES {
        return Err(c.fail(
            "games",
            format!("{} games; at most {MAX_GAMES} are supported", raw.games.len()),
        ));
    }
    let mut game_ids = HashSet::new();
    let mut games = Vec::with_capacity(raw.games.len());
    for (i, g) in raw.games.iter().enumerate() {
        let field = format!("games[{i}]");
        let id = c.id(&format!("{field}.id"), &g.id)?;
        c.unique(&format!("{field}.id"), &mut game_ids, &g.id)?;
        let name = c.text(&format!("{field}.name"), &g.name)?;
        let delivery_capacity_per_s = c.at_least_u32(
            &format!("{field}.delivery_capacity_per_s"),
            g.delivery_capacity_per_s,
            1,
        )?;
        if !(g.idip_url.starts_with("http://") || g.idip_url.starts_with("https://"))
            || g.idip_url.len() < 10
        {
            return Err(c.fail(
                format!("{field}.idip_url"),
                format!("`{}` is not an http(s) URL", g.idip_url),
            ));
        }
        let idip_timeout_ms =
            c.at_least(&format!("{field}.idip_timeout_ms"), g.idip_timeout_ms, 1)?;
        let index = GameIndex(u8::try_from(i).map_err(|_| c.fail("games", "too many games"))?);
        games.push(Game {
            index,
            id,
            name,
            delivery_capacity_per_s,
            idip_url: g.idip_url.trim_end_matches('/').to_string(),
            idip_timeout_ms,
        });
    }

    // --- gifts
    if raw.gifts.is_empty() {
        return Err(c.fail("gifts", "at least one gift is required"));
    }
    if raw.gifts.len() > MAX_GIFTS {
        return Err(c.fail(
            "gifts",
            format!("{} gifts; at most {MAX_GIFTS} are supported", raw.gifts.len()),
        ));
    }
    let mut gift_ids = HashSet::new();
    let mut gifts = Vec::with_capacity(raw.gifts.len());
    let mut stock_per_game = vec![0u64; games.len()];
    for (i, g) in raw.gifts.iter().enumerate() {
        let field = format!("gifts[{i}]");
        let id = c.id(&format!("{field}.id"), &g.id)?;
        c.unique(&format!("{field}.id"), &mut gift_ids, &g.id)?;
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
        if g.items.is_empty() {
            return Err(c.fail(format!("{field}.items"), "a gift must hold at least one item"));
        }
        let mut items = Vec::with_capacity(g.items.len());
        for (j, it) in g.items.iter().enumerate() {
            let item = c.id(&format!("{field}.items[{j}].item"), &it.item)?;
            let count = c.at_least_u32(&format!("{field}.items[{j}].count"), it.count, 1)?;
            items.push(Item { item, count });
        }
        let value_cents = c.at_least(&format!("{field}.value_cents"), g.value_cents, 0)?;
        if g.stock <= 0 {
            return Err(c.fail(
                format!("{field}.stock"),
                format!("stock is {}, must be positive", g.stock),
            ));
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
        stock_per_game[usize::from(game.index.0)] += stock;
        gifts.push(Gift {
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
        });
    }

    // A game whose whole stock cannot be delivered within the deadline at its capacity would
    // break the campaign's promise the moment it sells out: refuse it now, not on festival eve.
    for game in &games {
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

    Ok(Campaign {
        id,
        title,
        starts_at_unix_s,
        ends_at_unix_s,
        delivery_deadline_s,
        coupon_ttl_s,
        auth,
        ranking,
        release,
        limits,
        channels,
        games,
        gifts,
    })
}

#[cfg(test)]
mod tests;
