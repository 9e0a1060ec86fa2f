//! What every handler can reach. Cheap to clone (all `Arc`s): axum clones it per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hongbao_clock::SharedClock;

use hongbao_domain::campaign::Campaign;
use hongbao_domain::{CouponKey, ProfileTable, derive_coupon_key};
use hongbao_gateway::RoleCache;
use hongbao_store::{CampaignBinding, MemoryStore};

use crate::claim_service::ClaimService;
use crate::ports::{Claims, Grants};
use crate::static_catalog::CatalogStore;

/// Shared state of an API node, each part built once at startup. One `Arc` around all of it:
/// axum clones the state for every request, and one reference count is cheaper than eight.
#[derive(Clone)]
pub struct ApiState(Arc<Parts>);

impl std::ops::Deref for ApiState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// The parts of [`ApiState`].
#[derive(Clone)]
pub struct Parts {
    pub campaign: Arc<Campaign>,
    pub catalog: Arc<CatalogStore>,
    /// `/readyz` answers 200 only while this is set: the app sets it once its dependencies
    /// answer and clears it when shutdown begins, so load balancers drain the node first.
    pub ready: Arc<AtomicBool>,
    /// The time every decision reads (windows, waves, tickets, coupons, order times).
    pub clock: SharedClock,
    /// Every user's registrations and preferences; unknown users are new users.
    pub profiles: Arc<ProfileTable>,
    /// Role/zone look-ups: L1 → L2 → the game side.
    pub roles: Arc<RoleCache>,
    pub coupon_key: Arc<CouponKey>,
    /// Coupon grants: per-user-per-channel limits and channel budgets, durable.
    pub grants: Arc<dyn Grants>,
    /// Claims and orders: the atomic redeem + limit + stock + order + enqueue step.
    pub claims: Arc<dyn Claims>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("campaign", &self.campaign.id).finish_non_exhaustive()
    }
}

impl ApiState {
    /// State for `campaign` with its catalog built in memory, the given role cache and clock, no
    /// profiles (everyone is new) and an in-memory store (grants and claims). The binary replaces
    /// the parts with `with_*`; it starts *not* ready.
    pub fn new(campaign: Arc<Campaign>, roles: Arc<RoleCache>, clock: SharedClock) -> ApiState {
        let catalog = Arc::new(CatalogStore::from_campaign(&campaign));
        let profiles =
            Arc::new(ProfileTable::empty(campaign.games.iter().map(|g| g.id.clone()).collect()));
        let coupon_key = Arc::new(coupon_key_for(&campaign));
        let memory = Arc::new(MemoryStore::with_campaign(CampaignBinding::of(&campaign)));
        ApiState(Arc::new(Parts {
            campaign,
            catalog,
            ready: Arc::new(AtomicBool::new(false)),
            clock,
            profiles,
            roles,
            coupon_key,
            grants: memory.clone(),
            claims: memory,
        }))
    }

    fn parts_mut(&mut self) -> &mut Parts {
        Arc::make_mut(&mut self.0)
    }

    pub fn with_profiles(mut self, profiles: Arc<ProfileTable>) -> ApiState {
        self.parts_mut().profiles = profiles;
        self
    }

    pub fn with_roles(mut self, roles: Arc<RoleCache>) -> ApiState {
        self.parts_mut().roles = roles;
        self
    }

    pub fn with_grants(mut self, grants: Arc<dyn Grants>) -> ApiState {
        self.parts_mut().grants = grants;
        self
    }

    pub fn with_claims(mut self, claims: Arc<dyn Claims>) -> ApiState {
        self.parts_mut().claims = claims;
        self
    }

    /// The claim service over this node's parts.
    pub fn claim_service(&self) -> ClaimService<'_> {
        ClaimService {
            campaign: &self.campaign,
            coupon_key: &self.coupon_key,
            profiles: &self.profiles,
            roles: &self.roles,
            claims: &*self.claims,
            clock: &*self.clock,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// The campaign's coupon key: its own secret, or (demo) one derived from the first ticket key.
pub fn coupon_key_for(campaign: &Campaign) -> CouponKey {
    match &campaign.auth.coupon_secret {
        Some(secret) => derive_coupon_key(&secret.0),
        None => derive_coupon_key(&campaign.auth.ticket_keys[0].secret),
    }
}
