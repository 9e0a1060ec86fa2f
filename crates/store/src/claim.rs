//! The claim port: one atomic step from a verified coupon to a queued order.
//!
//! [`ClaimLedger::claim`](crate::ClaimLedger::claim) redeems the coupon, checks the per-user
//! limit of the gift, takes one unit of stock, writes the order (the should-send record) and
//! enqueues it in its game's delivery queue — all or nothing, durable before the answer.
//!
//! # Decisions, in order
//!
//! 1. Idempotency key (optional, Stripe-like): an unexpired record for (user, key) with another
//!    request fingerprint → [`ClaimOutcome::IdempotencyConflict`]; with the same fingerprint →
//!    the recorded outcome kind again, with the order as it is now. Nothing changes.
//! 2. Coupon already redeemed (an order with this coupon's derived id exists) → the same gift:
//!    [`ClaimOutcome::Replayed`]; another gift: [`ClaimOutcome::CouponAlreadyRedeemed`]. The
//!    first claim's zone and role stand. Nothing changes (but a new idempotency key is recorded).
//! 3. Stock: `taken >= stock` → [`ClaimOutcome::OutOfStock`].
//! 4. Per-user limit of the gift: `claimed >= per_user_limit` → [`ClaimOutcome::LimitReached`].
//! 5. High value (only a claim carrying a [`HighValueRule`]): the user's high-value claims in
//!    the claim's UTC day `>= per_user_per_day` → [`ClaimOutcome::HighValueDailyLimit`]; then
//!    the high-value cents accepted in the claim's UTC hour plus this gift's value `>
//!    budget_cents_per_hour` → [`ClaimOutcome::HighValueBudgetExhausted`]. Day and hour are
//!    buckets of the request's `now_ms` (the caller's injected clock), never of a clock read
//!    here; the counts are the store's, read and written in the same atomic step, so they hold
//!    exactly under any concurrency.
//! 6. Otherwise [`ClaimOutcome::Accepted`]: order `queued`, one queue entry, counters + 1 (and
//!    for a high-value gift the user's day count + 1 and the hour's cents + value).
//!
//! Rejections (3, 4, 5) change nothing: the coupon is NOT redeemed and stays usable for another
//! gift, and no idempotency record is kept for them (as in Stripe, only requests that did
//! something are replayed), so a retry with the same key is decided afresh.
//!
//! These decisions are written once, in `ledger/claim.rs`, over the narrow view of a store's
//! state every adapter implements (see `ledger/mod.rs`).
//!
//! # Coupons redeemed
//!
//! The order id is derived from (campaign, user, coupon id) and the coupon id from (channel,
//! serial): the order row itself *is* the redemption record of (user, channel, serial). A
//! separate "coupons redeemed" row would be a second copy of the same fact written in the same
//! batch; there is none.

use std::collections::HashMap;

use hongbao_domain::campaign::{Item, MAX_GIFTS};
use hongbao_domain::{
    Campaign, Coupon, GameIndex, Gift, GiftIndex, Order, OrderId, RoleId, ZoneId,
};

use crate::StoreError;

/// One UTC day, the bucket of [`HighValueRule::per_user_per_day`].
pub const DAY_MS: u64 = 86_400_000;
/// One UTC hour, the bucket of [`HighValueRule::budget_cents_per_hour`].
pub const HOUR_MS: u64 = 3_600_000;

/// How long an idempotency key is remembered (Stripe's 24 hours).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// Longest idempotency key accepted (Stripe's limit).
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;
/// Most orders [`ClaimLedger::orders_of`](crate::ClaimLedger::orders_of) returns.
pub const ORDERS_OF_MAX: usize = 1_000;

/// The campaign's shape as the store sees it: which gift and game a dense index names, and what
/// each gift delivers.
///
/// The store is opened for one campaign. Counters are persisted under the gift's and game's
/// *ids* (stable across edits of the campaign file), while callers address gifts and games by
/// the campaign's dense indexes (cheap: the gift list reads the stock of every gift per
/// request). Reordering gifts or games in the campaign file therefore needs a reopen with the
/// new binding; a claim that names an index the binding lacks is refused with `InvalidConfig`.
/// Orders do not copy their gift's items: the delivery queue hands them out from here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignBinding {
    campaign_id: String,
    games: Vec<String>,
    gifts: Vec<BoundGift>,
    /// Gift id → index: orders name their gift by id.
    gift_by_id: HashMap<String, GiftIndex>,
    /// Units of stock over all gifts: no campaign has more orders (sizes in-memory filters).
    stock_total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BoundGift {
    id: String,
    game: GameIndex,
    items: Vec<Item>,
}

/// Most games a binding may name (the campaign's own limit).
pub const GAMES_MAX: usize = hongbao_domain::campaign::MAX_GAMES;
/// Longest campaign, game or gift id (the campaign's own limit).
pub const ID_MAX_LEN: usize = hongbao_domain::campaign::MAX_ID_LEN;

impl CampaignBinding {
    /// No campaign: the store serves grants only; every claim is refused with `InvalidConfig`.
    pub fn none() -> Self {
        Self::default()
    }

    /// The binding of a validated campaign.
    pub fn of(campaign: &Campaign) -> Self {
        let gifts: Vec<BoundGift> = campaign
            .gifts
            .iter()
            .map(|g| BoundGift { id: g.id.clone(), game: g.game, items: g.items.clone() })
            .collect();
        Self {
            campaign_id: campaign.id.clone(),
            games: campaign.games.iter().map(|g| g.id.clone()).collect(),
            gift_by_id: index_gifts(&gifts),
            gifts,
            stock_total: campaign.gifts.iter().fold(0u64, |sum, g| sum.saturating_add(g.stock)),
        }
    }

    /// A binding from parts (tests, tools): gifts without items. Checks what a campaign file
    /// guarantees.
    pub fn new(
        campaign_id: impl Into<String>,
        games: Vec<String>,
        gifts: Vec<(String, GameIndex)>,
    ) -> Result<Self, StoreError> {
        let campaign_id = campaign_id.into();
        let bad = |what: String| Err(StoreError::InvalidConfig(what));
        let id_ok = |id: &str| (1..=ID_MAX_LEN).contains(&id.len());
        if !id_ok(&campaign_id) {
            return bad(format!("campaign id `{campaign_id}` must be 1..={ID_MAX_LEN} bytes"));
        }
        if games.len() > GAMES_MAX || gifts.len() > MAX_GIFTS {
            return bad(format!("at most {GAMES_MAX} games and {MAX_GIFTS} gifts"));
        }
        for (i, game) in games.iter().enumerate() {
            if !id_ok(game) || games[..i].contains(game) {
                return bad(format!("game id `{game}` is empty, too long or repeated"));
            }
        }
        for (i, (gift, game)) in gifts.iter().enumerate() {
            if !id_ok(gift) || gifts[..i].iter().any(|(g, _)| g == gift) {
                return bad(format!("gift id `{gift}` is empty, too long or repeated"));
            }
            if usize::from(game.0) >= games.len() {
                return bad(format!("gift `{gift}` names game index {}", game.0));
            }
        }
        let gifts: Vec<BoundGift> =
            gifts.into_iter().map(|(id, game)| BoundGift { id, game, items: Vec::new() }).collect();
        Ok(Self { campaign_id, games, gift_by_id: index_gifts(&gifts), gifts, stock_total: 0 })
    }

    pub fn campaign_id(&self) -> &str {
        &self.campaign_id
    }

    pub fn games(&self) -> usize {
        self.games.len()
    }

    pub fn gifts(&self) -> usize {
        self.gifts.len()
    }

    pub fn game_id(&self, game: GameIndex) -> Option<&str> {
        self.games.get(usize::from(game.0)).map(String::as_str)
    }

    pub fn game_index(&self, game_id: &str) -> Option<GameIndex> {
        let i = self.games.iter().position(|g| g == game_id)?;
        Some(GameIndex(u8::try_from(i).ok()?))
    }

    /// The gift's id and game.
    pub fn gift(&self, gift: GiftIndex) -> Option<(&str, GameIndex)> {
        self.gifts.get(usize::from(gift.0)).map(|g| (g.id.as_str(), g.game))
    }

    /// The items the gift `gift_id` delivers; `None` for a gift the campaign does not have.
    pub fn gift_items(&self, gift_id: &str) -> Option<&[Item]> {
        let gift = self.gift_index(gift_id)?;
        self.gifts.get(usize::from(gift.0)).map(|g| g.items.as_slice())
    }

    /// Units of stock over all gifts (0 when built from parts).
    pub fn stock_total(&self) -> u64 {
        self.stock_total
    }

    pub(crate) fn gift_index(&self, gift_id: &str) -> Option<GiftIndex> {
        self.gift_by_id.get(gift_id).copied()
    }

    pub(crate) fn gift_ids(&self) -> impl Iterator<Item = &str> {
        self.gifts.iter().map(|g| g.id.as_str())
    }
}

fn index_gifts(gifts: &[BoundGift]) -> HashMap<String, GiftIndex> {
    let index = |i: usize| GiftIndex(u16::try_from(i).expect("at most MAX_GIFTS gifts"));
    gifts.iter().enumerate().map(|(i, g)| (g.id.clone(), index(i))).collect()
}

/// An `Idempotency-Key` with the fingerprint of the request body it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    key: String,
    fingerprint: [u8; 32],
}

impl IdempotencyKey {
    /// `key`: 1..=255 visible ASCII characters (header text). `fingerprint`: a hash of the
    /// request as the caller defines it (e.g. SHA-256 of the canonical body); two requests with
    /// the same key and different fingerprints conflict.
    pub fn new(key: impl Into<String>, fingerprint: [u8; 32]) -> Option<Self> {
        let key = key.into();
        let ok = (1..=IDEMPOTENCY_KEY_MAX_LEN).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_graphic());
        ok.then_some(Self { key, fingerprint })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }
}

/// One claim: the caller has verified the coupon (signature, owner, expiry, campaign open),
/// the role, and eligibility. Limits travel with the request (from the campaign's `Gift`), like
/// [`crate::GrantRequest`]'s; the counters they are checked against are the store's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Names campaign, user and the coupon (channel, serial).
    pub coupon: Coupon,
    pub gift: GiftIndex,
    pub zone_id: ZoneId,
    pub role_id: RoleId,
    /// `Gift.stock`: units the gift may give in the whole campaign.
    pub stock: u64,
    /// `Gift.per_user`.
    pub per_user_limit: u32,
    pub now_ms: u64,
    /// Undelivered at this time, the order expires.
    pub deliver_by_ms: u64,
    pub idempotency: Option<IdempotencyKey>,
    /// The campaign's high-value rules, for a gift marked `high_value`; `None` for any other.
    pub high_value: Option<HighValueRule>,
}

/// The high-value rules a claim of a `high_value` gift is held to (the campaign's `[limits]`),
/// travelling with the request like the stock and per-user limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HighValueRule {
    /// The gift's `value_cents`: what it spends of the hourly budget.
    pub value_cents: u64,
    /// `limits.high_value_per_user_per_day`: high-value claims per user per UTC day.
    pub per_user_per_day: u32,
    /// `limits.high_value_budget_cents_per_hour`: high-value cents accepted per UTC hour,
    /// over all users and gifts.
    pub budget_cents_per_hour: u64,
}

/// What a store has counted toward the high-value rules for one user at one time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HighValueUsage {
    /// The user's high-value claims accepted in the UTC day.
    pub claimed_today: u32,
    /// High-value cents accepted in the UTC hour, over all users.
    pub spent_this_hour_cents: u64,
}

/// The UTC day bucket of a time.
pub fn day_of(now_ms: u64) -> u64 {
    now_ms / DAY_MS
}

/// The UTC hour bucket of a time.
pub fn hour_of(now_ms: u64) -> u64 {
    now_ms / HOUR_MS
}

/// When the UTC day of `now_ms` ends: a day's allowance renews then.
pub fn day_ends_at_ms(now_ms: u64) -> u64 {
    day_of(now_ms).saturating_add(1).saturating_mul(DAY_MS)
}

/// When the UTC hour of `now_ms` ends: an hour's budget renews then.
pub fn hour_ends_at_ms(now_ms: u64) -> u64 {
    hour_of(now_ms).saturating_add(1).saturating_mul(HOUR_MS)
}

impl HighValueRule {
    /// The rule of step 5, written once: the refusal a claim at `now_ms` gets with `usage`
    /// counted, or `None` to accept. The gift list asks it too, so it never offers a gift the
    /// claim would refuse for these reasons.
    pub fn refusal(&self, usage: HighValueUsage, now_ms: u64) -> Option<ClaimOutcome> {
        if usage.claimed_today >= self.per_user_per_day {
            return Some(ClaimOutcome::HighValueDailyLimit {
                resets_at_ms: day_ends_at_ms(now_ms),
            });
        }
        if usage.spent_this_hour_cents.saturating_add(self.value_cents) > self.budget_cents_per_hour
        {
            let resets_at_ms = hour_ends_at_ms(now_ms);
            return Some(ClaimOutcome::HighValueBudgetExhausted { resets_at_ms });
        }
        None
    }

    /// The rule of a campaign's gift: `None` unless the gift is `high_value`.
    pub fn of(campaign: &Campaign, gift: &Gift) -> Option<HighValueRule> {
        gift.high_value.then_some(HighValueRule {
            value_cents: gift.value_cents,
            per_user_per_day: campaign.limits.high_value_per_user_per_day,
            budget_cents_per_hour: campaign.limits.high_value_budget_cents_per_hour,
        })
    }
}

impl ClaimRequest {
    /// The claim of `gift` with `coupon` at `now_ms`, limits and deadline from `campaign`.
    pub fn new(
        campaign: &Campaign,
        gift: &Gift,
        coupon: Coupon,
        zone_id: ZoneId,
        role_id: RoleId,
        now_ms: u64,
    ) -> Self {
        Self {
            coupon,
            gift: gift.index,
            zone_id,
            role_id,
            stock: gift.stock,
            per_user_limit: gift.per_user,
            now_ms,
            deliver_by_ms: now_ms.saturating_add(campaign.delivery_deadline_s.saturating_mul(1000)),
            idempotency: None,
            high_value: HighValueRule::of(campaign, gift),
        }
    }

    pub fn with_idempotency(mut self, key: IdempotencyKey) -> Self {
        self.idempotency = Some(key);
        self
    }

    pub fn user(&self) -> u64 {
        self.coupon.user
    }

    /// The id the order of this claim has (or will have).
    pub fn order_id(&self) -> OrderId {
        OrderId::derive(&self.coupon.campaign_id, self.coupon.user, &self.coupon.id())
    }

    /// The order this claim creates if it is accepted, after the checks every store makes before
    /// its atomic step (the claim's campaign is `binding`'s, its gift is bound): the ledger's own
    /// rules, for adapters outside this crate. A store whose atomic step runs elsewhere (the
    /// Redis script) builds the order here and has the step decide whether to write it, so the
    /// order's fields are never written twice.
    pub fn prepare_order(&self, binding: &CampaignBinding) -> Result<Order, StoreError> {
        let prepared = crate::ledger::claim::prepare(binding, self)?;
        Ok(crate::ledger::claim::new_order(self, &prepared))
    }
}

/// The answer to a claim. Rejections are answers, not errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Durable, queued for delivery (202).
    Accepted(Box<Order>),
    /// This coupon already claimed this gift: the same order, unchanged.
    Replayed(Box<Order>),
    /// This coupon already claimed another gift (409); the order is that claim's.
    CouponAlreadyRedeemed(Box<Order>),
    OutOfStock,
    LimitReached,
    /// The user has claimed `high_value_per_user_per_day` high-value gifts in this UTC day;
    /// the allowance renews at `resets_at_ms` (the next UTC midnight).
    HighValueDailyLimit {
        resets_at_ms: u64,
    },
    /// The hour's high-value budget cannot pay for this gift; it renews at `resets_at_ms` (the
    /// next UTC hour).
    HighValueBudgetExhausted {
        resets_at_ms: u64,
    },
    /// The idempotency key was used with another request within its lifetime (422).
    IdempotencyConflict,
}

impl ClaimOutcome {
    /// What an order that already exists for the claim's coupon means for a claim of `gift_id`:
    /// the same gift replays it, another gift is refused with it. The store's own rule, for a
    /// caller that reads the order before claiming (an API node answering a retry early).
    pub fn of_existing(order: Order, gift_id: &str) -> ClaimOutcome {
        crate::ledger::claim::replay(order, gift_id)
    }

    pub fn order(&self) -> Option<&Order> {
        match self {
            ClaimOutcome::Accepted(o)
            | ClaimOutcome::Replayed(o)
            | ClaimOutcome::CouponAlreadyRedeemed(o) => Some(o),
            _ => None,
        }
    }
}
