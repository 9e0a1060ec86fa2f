//! The claim port: one atomic step from a verified coupon to a queued order (issue 5).
//!
//! [`ClaimLedger::claim`] redeems the coupon, checks the per-user limit of the gift, takes one
//! unit of stock, writes the order (the should-send record) and enqueues it in its game's
//! delivery queue — all or nothing, durable before the answer.
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
//! 5. Otherwise [`ClaimOutcome::Accepted`]: order `queued`, one queue entry, counters + 1.
//!
//! Rejections (3, 4) change nothing: the coupon is NOT redeemed and stays usable for another
//! gift, and no idempotency record is kept for them (as in Stripe, only requests that did
//! something are replayed), so a retry with the same key is decided afresh.
//!
//! # Coupons redeemed
//!
//! The order id is derived from (campaign, user, coupon id) and the coupon id from (channel,
//! serial): the order row itself *is* the redemption record of (user, channel, serial). A
//! separate "coupons redeemed" row would be a second copy of the same fact written in the same
//! batch; there is none.

use hongbao_domain::campaign::MAX_GIFTS;
use hongbao_domain::{
    Campaign, Coupon, GameIndex, Gift, GiftIndex, Order, OrderId, RoleId, ZoneId,
};

use crate::StoreError;

/// How long an idempotency key is remembered (Stripe's 24 hours).
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;
/// Longest idempotency key accepted (Stripe's limit).
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;
/// Most orders [`ClaimLedger::orders_of`] returns.
pub const ORDERS_OF_MAX: usize = 1_000;

/// The campaign's shape as the store sees it: which gift and game a dense index names.
///
/// The store is opened for one campaign. Counters are persisted under the gift's and game's
/// *ids* (stable across edits of the campaign file), while callers address gifts and games by
/// the campaign's dense indexes (cheap: the gift list reads the stock of every gift per
/// request). Reordering gifts or games in the campaign file therefore needs a reopen with the
/// new binding; a claim that names an index the binding lacks is refused with `InvalidConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignBinding {
    campaign_id: String,
    games: Vec<String>,
    gifts: Vec<(String, GameIndex)>,
    /// Units of stock over all gifts: no campaign has more orders (sizes in-memory filters).
    stock_total: u64,
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
        Self {
            campaign_id: campaign.id.clone(),
            games: campaign.games.iter().map(|g| g.id.clone()).collect(),
            gifts: campaign.gifts.iter().map(|g| (g.id.clone(), g.game)).collect(),
            stock_total: campaign.gifts.iter().fold(0u64, |sum, g| sum.saturating_add(g.stock)),
        }
    }

    /// A binding from parts (tests, tools). Checks what a campaign file guarantees.
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
        Ok(Self { campaign_id, games, gifts, stock_total: 0 })
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
        self.gifts.get(usize::from(gift.0)).map(|(id, game)| (id.as_str(), *game))
    }

    /// Units of stock over all gifts (0 when built from parts).
    pub fn stock_total(&self) -> u64 {
        self.stock_total
    }

    pub(crate) fn gift_index(&self, gift_id: &str) -> Option<GiftIndex> {
        let i = self.gifts.iter().position(|(id, _)| id == gift_id)?;
        Some(GiftIndex(u16::try_from(i).ok()?))
    }

    pub(crate) fn gift_ids(&self) -> impl Iterator<Item = &str> {
        self.gifts.iter().map(|(id, _)| id.as_str())
    }
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
    /// The idempotency key was used with another request within its lifetime (422).
    IdempotencyConflict,
}

impl ClaimOutcome {
    pub fn order(&self) -> Option<&Order> {
        match self {
            ClaimOutcome::Accepted(o)
            | ClaimOutcome::Replayed(o)
            | ClaimOutcome::CouponAlreadyRedeemed(o) => Some(o),
            _ => None,
        }
    }
}

/// A claim checked against the binding, with the values both adapters derive from it.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub order_id: OrderId,
    pub gift_id: String,
    pub game: GameIndex,
    pub game_id: String,
    pub coupon_id: String,
}

/// Shared by the adapters: refuses requests no correct caller sends, derives the order id.
pub(crate) fn prepare(
    binding: &CampaignBinding,
    req: &ClaimRequest,
) -> Result<Prepared, StoreError> {
    if req.coupon.campaign_id != binding.campaign_id() {
        return Err(StoreError::InvalidConfig(format!(
            "claim for campaign `{}` on a store bound to `{}`",
            req.coupon.campaign_id,
            binding.campaign_id()
        )));
    }
    let (gift_id, game) = binding.gift(req.gift).ok_or_else(|| {
        StoreError::InvalidConfig(format!("gift index {} is not bound", req.gift.0))
    })?;
    let game_id = binding.game_id(game).unwrap_or_default().to_string();
    Ok(Prepared {
        order_id: req.order_id(),
        gift_id: gift_id.to_string(),
        game,
        game_id,
        coupon_id: req.coupon.id(),
    })
}

/// The order a fresh claim creates.
pub(crate) fn new_order(req: &ClaimRequest, p: &Prepared) -> Order {
    let order = Order {
        id: p.order_id,
        campaign_id: req.coupon.campaign_id.clone(),
        user: req.coupon.user,
        coupon_id: p.coupon_id.clone(),
        gift_id: p.gift_id.clone(),
        game_id: p.game_id.clone(),
        zone_id: req.zone_id,
        role_id: req.role_id,
        status: hongbao_domain::OrderStatus::Queued,
        created_at_ms: req.now_ms,
        deliver_by_ms: req.deliver_by_ms,
        updated_at_ms: req.now_ms,
        attempts: 0,
        last_error: None,
        delivered_at_ms: None,
        ready_at_ms: Some(req.now_ms),
    };
    assert!(order.is_consistent(), "{order:?}");
    order
}

/// Step 2 of the decisions: what an existing order of this coupon means for this claim.
pub fn replay(order: Order, gift_id: &str) -> ClaimOutcome {
    if order.gift_id == gift_id {
        ClaimOutcome::Replayed(Box::new(order))
    } else {
        ClaimOutcome::CouponAlreadyRedeemed(Box::new(order))
    }
}

/// Outcome kinds recorded with an idempotency key (only those that carry an order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordedKind {
    Accepted,
    Replayed,
    CouponAlreadyRedeemed,
}

impl RecordedKind {
    pub fn of(outcome: &ClaimOutcome) -> Option<RecordedKind> {
        match outcome {
            ClaimOutcome::Accepted(_) => Some(RecordedKind::Accepted),
            ClaimOutcome::Replayed(_) => Some(RecordedKind::Replayed),
            ClaimOutcome::CouponAlreadyRedeemed(_) => Some(RecordedKind::CouponAlreadyRedeemed),
            _ => None,
        }
    }

    pub fn outcome(self, order: Order) -> ClaimOutcome {
        let order = Box::new(order);
        match self {
            RecordedKind::Accepted => ClaimOutcome::Accepted(order),
            RecordedKind::Replayed => ClaimOutcome::Replayed(order),
            RecordedKind::CouponAlreadyRedeemed => ClaimOutcome::CouponAlreadyRedeemed(order),
        }
    }
}

/// What an idempotency key remembers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub expires_at_ms: u64,
    pub fingerprint: [u8; 32],
    pub kind: RecordedKind,
    pub order_id: OrderId,
}

/// Step 1 of the decisions against a found record: `None` when the record does not apply
/// (expired), else conflict or the recorded kind.
pub(crate) enum KeyCheck {
    Fresh,
    Conflict,
    Replay(RecordedKind, OrderId),
}

pub(crate) fn check_key(
    record: Option<&IdempotencyRecord>,
    key: &IdempotencyKey,
    now_ms: u64,
) -> KeyCheck {
    match record {
        Some(r) if r.expires_at_ms > now_ms => {
            if r.fingerprint == key.fingerprint {
                KeyCheck::Replay(r.kind, r.order_id)
            } else {
                KeyCheck::Conflict
            }
        }
        _ => KeyCheck::Fresh,
    }
}
