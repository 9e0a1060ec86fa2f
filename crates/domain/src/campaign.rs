//! Campaign files: the TOML contract (`shared/campaign.example.toml`) parsed into validated
//! domain types.
//!
//! Parsing happens in two steps: serde reads the file into `Raw*` structs that mirror it exactly
//! (`deny_unknown_fields`, so a typo is an error rather than a silently ignored setting), then
//! the `validate` module turns them into [`Campaign`], checking every rule that a type cannot
//! express and naming the file, the field and the reason when one fails.
//!
//! Reading the file is the caller's job: the domain does no I/O.

use std::fmt;

use serde::Deserialize;

mod validate;

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
    /// Fields of the keys marked `example = true` (e.g. `auth.ticket_keys[0]`): published
    /// with the project, so anyone can sign tickets or coupons with them. A node refuses them
    /// unless told it runs a rehearsal.
    pub example_keys: Vec<String>,
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
    /// Parses and validates campaign text; `file` names it in errors. `env` resolves
    /// `secret_env` names (the binary passes `std::env::var`; tests pass a map), and the caller
    /// reads the file, so the domain itself reads nothing from the process or the disk.
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
        validate::validate(raw, file, env)
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
    /// The file could not be read. The domain reads no files; callers that do build this one so
    /// that every refusal of a campaign file reads alike.
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
    /// A published, dev-only key (see [`AuthSettings::example_keys`]).
    #[serde(default)]
    example: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    example: bool,
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

#[cfg(test)]
mod tests;
