//! What every handler can reach. Cheap to clone (all `Arc`s): axum clones it per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Set by the app once it serves and cleared when shutdown begins, so load balancers drain
    /// the node first. `/readyz` answers 200 only while this is set and the store is open.
    pub ready: Arc<AtomicBool>,
    /// Set by the app once its store is open (implied by [`ApiState::set_ready`]`(true)`).
    pub store_open: Arc<AtomicBool>,
    /// Whether [`Parts::profiles`] came from a profile file ([`ApiState::with_profiles`]) or is
    /// the empty table (everyone is a new user): both are valid, `/readyz` says which.
    pub profiles_loaded: bool,
    /// What `/readyz` last concluded about the game side; see [`ApiState::game_side`].
    pub game_side: Arc<Mutex<GameSideWatch>>,
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
            store_open: Arc::new(AtomicBool::new(false)),
            profiles_loaded: false,
            game_side: Arc::new(Mutex::new(GameSideWatch::default())),
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

    /// The users' profiles, loaded from a profile file.
    pub fn with_profiles(mut self, profiles: Arc<ProfileTable>) -> ApiState {
        let parts = self.parts_mut();
        parts.profiles = profiles;
        parts.profiles_loaded = true;
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

    /// Whether this node should take traffic: the app serves (not draining) and the store is
    /// open. The campaign's window and the game side do not count: a node answers
    /// `campaign_not_open` correctly, and a slow game side degrades lists instead of failing.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.store_open.load(Ordering::Acquire)
    }

    /// `true` once the app serves; `false` when shutdown begins. The app calls this only after
    /// its store is open, so `true` also marks the store open.
    pub fn set_ready(&self, ready: bool) {
        if ready {
            self.mark_store_open();
        }
        self.ready.store(ready, Ordering::Release);
    }

    /// The app opened its store.
    pub fn mark_store_open(&self) {
        self.store_open.store(true, Ordering::Release);
    }

    pub fn is_store_open(&self) -> bool {
        self.store_open.load(Ordering::Acquire)
    }

    /// Whether the game side answers, judged from the role cache's counters of calls to it
    /// since the previous judgement: some succeeded → reachable; all failed → unreachable; none
    /// made → the previous judgement (unknown until a first call). No call is made for this:
    /// a readiness probe must not add load to the game side, nor wait on it.
    pub fn game_side(&self) -> GameSide {
        let stats = self.roles.stats();
        let calls = stats.misses.load(Ordering::Relaxed);
        let errors = stats.upstream_errors.load(Ordering::Relaxed);
        let mut watch = self.game_side.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let new_calls = calls.saturating_sub(watch.calls);
        let new_errors = errors.saturating_sub(watch.errors);
        if new_calls > 0 {
            watch.verdict =
                if new_errors >= new_calls { GameSide::Unreachable } else { GameSide::Reachable };
        }
        watch.calls = calls;
        watch.errors = errors;
        watch.verdict
    }
}

/// What the node can tell of the game side without calling it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GameSide {
    /// No call to the game side yet.
    #[default]
    Unknown,
    Reachable,
    Unreachable,
}

impl GameSide {
    pub fn as_str(self) -> &'static str {
        match self {
            GameSide::Unknown => "unknown",
            GameSide::Reachable => "reachable",
            GameSide::Unreachable => "unreachable",
        }
    }
}

/// The role cache's counters as of the last judgement, and that judgement.
#[derive(Clone, Copy, Debug, Default)]
pub struct GameSideWatch {
    calls: u64,
    errors: u64,
    verdict: GameSide,
}

/// The campaign's coupon key: its own secret, or (demo) one derived from the first ticket key.
pub fn coupon_key_for(campaign: &Campaign) -> CouponKey {
    match &campaign.auth.coupon_secret {
        Some(secret) => derive_coupon_key(&secret.0),
        None => derive_coupon_key(&campaign.auth.ticket_keys[0].secret),
    }
}
