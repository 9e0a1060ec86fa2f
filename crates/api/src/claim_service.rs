//! The claim service: every decision of a claim, in one place and free of HTTP.
//!
//! A claim is decided in this order:
//!
//! 1. the coupon: signature, campaign, expiry and owner;
//! 2. the gift exists in the campaign;
//! 3. the order pre-read: the claim's order id is derived from (campaign, user, coupon); if that
//!    order exists the claim is answered from it before anything that may have changed since
//!    (stock, the window, the role), by the store's replay rule (same gift → the same order,
//!    another gift → [`ClaimError::CouponAlreadyRedeemed`]), so a retried claim never turns into
//!    an error. Skipped with an idempotency key, whose record the store checks first;
//! 4. the role exists in the chosen zone: the role cache first, the game side once more if not
//!    (a role created a moment ago may not be in a cached list yet);
//! 5. eligibility: the same function as the gift list (window, wave, audience, high value,
//!    role requirements). Stock is left to the store, which decides it atomically;
//! 6. the store's one atomic step (redeem, stock, per-user limit, the high-value rules — a daily
//!    allowance per user and an hourly budget over everyone, counted in that same step so they
//!    hold exactly under concurrency — order, enqueue) with the delivery deadline.
//!
//! The gift list leaves out a high-value gift the store would refuse now
//! ([`high_value_refused`]): the same rule ([`HighValueRule::refusal`]) over the store's
//! committed counts.
//!
//! The HTTP handler parses the request, calls [`ClaimService::claim`] and renders the result;
//! [`ClaimError`] reaches its status in `error.rs`, like every other error.

use hongbao_clock::Clock;
use hongbao_domain::eligibility::{RoleContext, Subject, check};
use hongbao_domain::{
    Campaign, CouponError, CouponKey, Gift, GiftIndex, Ineligible, Order, ProfileTable, Role,
    RoleId, ZoneId, verify_coupon,
};
use hongbao_gateway::{GatewayError, RoleCache};
use hongbao_store::{ClaimOutcome, ClaimRequest, HighValueRule, IdempotencyKey, StoreError};
use sha2::{Digest, Sha256};

use crate::ports::Claims;

/// A claim as the caller sent it, its ids parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimCommand {
    /// The verified caller (from the login ticket).
    pub user: u64,
    /// When the caller's ticket was issued: high-value gifts need a recent login.
    pub ticket_issued_at_unix_s: i64,
    /// The signed coupon as the grab returned it.
    pub coupon: String,
    pub gift_id: String,
    pub zone_id: ZoneId,
    pub role_id: RoleId,
    /// The `Idempotency-Key` header's text, if one was sent.
    pub idempotency_key: Option<String>,
}

/// A claim that holds an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub order: Order,
    /// `true` for a new order (202); `false` for the same claim again (200).
    pub created: bool,
}

/// Why a claim was refused. Each variant has one HTTP status, given in `error.rs`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Coupon(#[from] CouponError),
    #[error("no such gift in this campaign")]
    GiftNotFound,
    #[error("no role {role_id} in zone {zone_id} of {game_id}")]
    RoleNotFound { zone_id: ZoneId, role_id: RoleId, game_id: String },
    #[error("the game could not confirm the role")]
    GameSideUnavailable,
    /// Not eligible now (window, wave, audience, login, role requirements). Never `SoldOut`:
    /// that is [`ClaimError::OutOfStock`].
    #[error(transparent)]
    Ineligible(Ineligible),
    #[error("this coupon was already redeemed for order {order_id}")]
    CouponAlreadyRedeemed { order_id: String },
    #[error("this gift is sold out")]
    OutOfStock,
    #[error("you already have the {per_user} allowed of this gift")]
    LimitReached { per_user: u32 },
    #[error("you have claimed the {per_day} high-value gifts allowed today")]
    HighValueDailyLimit { per_day: u32, resets_at_unix_s: i64, retry_after_s: u64 },
    #[error("this hour's budget for high-value gifts is spent")]
    HighValueBudgetExhausted { resets_at_unix_s: i64, retry_after_s: u64 },
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Ineligible> for ClaimError {
    fn from(e: Ineligible) -> ClaimError {
        match e {
            Ineligible::SoldOut => ClaimError::OutOfStock,
            other => ClaimError::Ineligible(other),
        }
    }
}

/// What a claim reads and writes: borrowed from the node's state for the length of one claim.
#[derive(Clone, Copy)]
pub struct ClaimService<'a> {
    pub campaign: &'a Campaign,
    pub coupon_key: &'a CouponKey,
    pub profiles: &'a ProfileTable,
    pub roles: &'a RoleCache,
    pub claims: &'a dyn Claims,
    pub clock: &'a dyn Clock,
}

impl ClaimService<'_> {
    /// Decides one claim (see the module doc for the order of the decisions).
    pub async fn claim(&self, command: ClaimCommand) -> Result<Claimed, ClaimError> {
        let campaign = self.campaign;
        // One reading for the whole claim: the coupon's expiry, the window and the order's
        // times must agree on what "now" is.
        let now_ms = self.clock.now_ms();
        let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let idempotency = idempotency_key(&command)?;
        let coupon = verify_coupon(self.coupon_key, &command.coupon, &campaign.id, now_s)?;
        coupon.check_owner(command.user)?;
        let gift = campaign.gift_by_id(&command.gift_id).ok_or(ClaimError::GiftNotFound)?;
        let mut request =
            ClaimRequest::new(campaign, gift, coupon, command.zone_id, command.role_id, now_ms);

        if idempotency.is_none()
            && let Some(existing) =
                self.claims.user_order(command.user, &request.order_id()).await?
        {
            return settle(ClaimOutcome::of_existing(existing, &gift.id), campaign, gift, now_ms);
        }

        let role = self.chosen_role(&command, gift.game).await?;
        let profile = self.profiles.get(command.user);
        let subject = Subject {
            user: command.user,
            profile: &profile,
            ticket_issued_at_unix_s: command.ticket_issued_at_unix_s,
        };
        check(campaign, gift, &subject, RoleContext::Chosen(&role), false, now_s)?;

        if let Some(key) = idempotency {
            request = request.with_idempotency(key);
        }
        settle(self.claims.claim(request).await?, campaign, gift, now_ms)
    }

    /// The role the claim names, if the game side knows it: cached, or refreshed once.
    async fn chosen_role(
        &self,
        command: &ClaimCommand,
        game: hongbao_domain::GameIndex,
    ) -> Result<Role, ClaimError> {
        let find = |roles: &[Role]| {
            roles
                .iter()
                .find(|r| r.zone_id == command.zone_id && r.role_id == command.role_id)
                .cloned()
        };
        let cached = self.roles.roles(command.user, game).await.map_err(game_side_error)?;
        if let Some(role) = find(&cached) {
            return Ok(role);
        }
        let fresh = self.roles.refresh(command.user, game).await.map_err(game_side_error)?;
        find(&fresh).ok_or_else(|| ClaimError::RoleNotFound {
            zone_id: command.zone_id,
            role_id: command.role_id,
            game_id: self.campaign.game(game).id.clone(),
        })
    }
}

/// A store outcome as the claim's answer.
fn settle(
    outcome: ClaimOutcome,
    campaign: &Campaign,
    gift: &Gift,
    now_ms: u64,
) -> Result<Claimed, ClaimError> {
    // When a refusal renews, in whole seconds, and the wait from now (at least 1 s).
    let resets = |resets_at_ms: u64| {
        let retry_after_s = resets_at_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
        (i64::try_from(resets_at_ms.div_ceil(1000)).unwrap_or(i64::MAX), retry_after_s)
    };
    match outcome {
        ClaimOutcome::Accepted(order) => Ok(Claimed { order: *order, created: true }),
        ClaimOutcome::Replayed(order) => Ok(Claimed { order: *order, created: false }),
        ClaimOutcome::CouponAlreadyRedeemed(order) => {
            Err(ClaimError::CouponAlreadyRedeemed { order_id: order.id.as_str().to_string() })
        }
        ClaimOutcome::OutOfStock => Err(ClaimError::OutOfStock),
        ClaimOutcome::LimitReached => Err(ClaimError::LimitReached { per_user: gift.per_user }),
        ClaimOutcome::HighValueDailyLimit { resets_at_ms } => {
            let (resets_at_unix_s, retry_after_s) = resets(resets_at_ms);
            Err(ClaimError::HighValueDailyLimit {
                per_day: campaign.limits.high_value_per_user_per_day,
                resets_at_unix_s,
                retry_after_s,
            })
        }
        ClaimOutcome::HighValueBudgetExhausted { resets_at_ms } => {
            let (resets_at_unix_s, retry_after_s) = resets(resets_at_ms);
            Err(ClaimError::HighValueBudgetExhausted { resets_at_unix_s, retry_after_s })
        }
        ClaimOutcome::IdempotencyConflict => Err(ClaimError::IdempotencyKeyReused),
    }
}

/// Of the `listed` gifts, the high-value ones a claim by `user` at `now_ms` would be refused by
/// the high-value rules: the store's rule over its committed counts (one read, made only when
/// the list holds a high-value gift). Claims racing this read are decided by the store, exactly.
pub async fn high_value_refused(
    campaign: &Campaign,
    claims: &dyn Claims,
    user: u64,
    now_ms: u64,
    listed: &[GiftIndex],
) -> Result<Vec<GiftIndex>, StoreError> {
    let rules: Vec<(GiftIndex, HighValueRule)> = listed
        .iter()
        .filter_map(|&g| {
            HighValueRule::of(campaign, &campaign.gifts[usize::from(g.0)]).map(|r| (g, r))
        })
        .collect();
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    let usage = claims.high_value_usage(user, now_ms).await?;
    Ok(rules
        .into_iter()
        .filter(|(_, rule)| rule.refusal(usage, now_ms).is_some())
        .map(|(gift, _)| gift)
        .collect())
}

fn game_side_error(e: GatewayError) -> ClaimError {
    tracing::warn!(error = %e, "role look-up for a claim failed");
    ClaimError::GameSideUnavailable
}

/// The `Idempotency-Key` with the fingerprint of the claim it came with: the same key with
/// another coupon, gift, zone or role is a different request.
fn idempotency_key(command: &ClaimCommand) -> Result<Option<IdempotencyKey>, ClaimError> {
    let Some(key) = &command.idempotency_key else { return Ok(None) };
    let mut hash = Sha256::new();
    for part in [command.coupon.as_bytes(), command.gift_id.as_bytes()] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.update(command.zone_id.0.to_le_bytes());
    hash.update(command.role_id.0.to_le_bytes());
    IdempotencyKey::new(key.as_str(), hash.finalize().into())
        .map(Some)
        .ok_or(ClaimError::InvalidIdempotencyKey)
}
