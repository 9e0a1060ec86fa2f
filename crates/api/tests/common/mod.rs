//! The API router with in-memory parts, a hand-set clock and roles from the synthetic model.

#![allow(clippy::unwrap_used, dead_code)] // test helpers outside #[test] fns; each test binary uses a part

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use hongbao_api::ApiState;
use hongbao_clock::{Clock, ManualClock};
use hongbao_domain::profile::{ProfileHeader, ProfileWriter};
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, Channel, GameIndex, ProfileTable, sign_ticket};
use hongbao_gateway::{BoxFuture, GatewayError, RoleCache, RoleCacheConfig, RoleSource};
use hongbao_store::{CampaignBinding, MemoryStore};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const EXAMPLE: &str = include_str!("../../../../config/spring-festival.toml");
pub const USERS: u64 = 2_000;
pub const SEED: u64 = 11;

/// Roles straight from the synthetic model, or a game side that is down.
pub struct ModelRoles {
    model: SynthModel,
    down: bool,
}

impl RoleSource for ModelRoles {
    fn fetch_roles(
        &self,
        user: u64,
        game: GameIndex,
    ) -> BoxFuture<'_, Result<Vec<hongbao_domain::Role>, GatewayError>> {
        let answer = if self.down {
            Err(GatewayError::Timeout { game: "any".into(), timeout_ms: 300 })
        } else {
            Ok(self.model.roles(user, game))
        };
        Box::pin(async move { answer })
    }
}

pub struct Harness {
    pub router: Router,
    pub campaign: Arc<Campaign>,
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryStore>,
    pub profiles: Arc<ProfileTable>,
    pub model: SynthModel,
}

pub fn harness_with(text: &str, game_side_down: bool) -> Harness {
    let campaign = Campaign::parse(text, "test.toml", &|_| None).unwrap();
    let now = campaign.starts_at_unix_s + 3600;
    let campaign = Arc::new(campaign);
    let model = SynthModel::new(SEED, USERS, campaign.games.len());
    let header = ProfileHeader {
        seed: SEED,
        first_user_id: FIRST_USER_ID,
        user_count: USERS,
        game_ids: campaign.games.iter().map(|g| g.id.clone()).collect(),
    };
    let mut writer = ProfileWriter::new(Vec::new(), header).unwrap();
    for u in FIRST_USER_ID..FIRST_USER_ID + USERS {
        writer.push(&model.profile(u)).unwrap();
    }
    let profiles = Arc::new(ProfileTable::read(&writer.finish().unwrap()[..]).unwrap());
    let source = Arc::new(ModelRoles { model: model.clone(), down: game_side_down });
    let roles = Arc::new(RoleCache::new(source, None, RoleCacheConfig::default()));
    let clock = ManualClock::new(u64::try_from(now).expect("after 1970") * 1000);
    let store = Arc::new(MemoryStore::with_campaign(CampaignBinding::of(&campaign)));
    let state = ApiState::new(campaign.clone(), roles, clock.clone())
        .with_profiles(profiles.clone())
        .with_grants(store.clone())
        .with_claims(store.clone());
    state.set_ready(true);
    Harness { router: hongbao_api::router(state), campaign, clock, store, profiles, model }
}

pub fn harness() -> Harness {
    harness_with(EXAMPLE, false)
}

impl Harness {
    pub fn now(&self) -> i64 {
        self.clock.now_unix_s()
    }

    /// Sets the campaign's clock to `unix_s`.
    pub fn set_now(&self, unix_s: i64) {
        self.clock.set_ms(u64::try_from(unix_s).expect("after 1970") * 1000);
    }

    pub fn ticket(&self, user: u64) -> String {
        sign_ticket(&self.campaign.auth.ticket_keys[0], user, self.now() - 10, 3600)
    }

    pub async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let (status, _, body) = self.call_with_headers(request).await;
        (status, body)
    }

    pub async fn call_with_headers(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, headers, body)
    }

    pub async fn grab_as(&self, ticket: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut request = Request::post("/v1/coupons").header("content-type", "application/json");
        if let Some(ticket) = ticket {
            request = request.header("authorization", format!("Bearer {ticket}"));
        }
        self.call(request.body(Body::from(body.to_string())).unwrap()).await
    }

    /// A grab's answer with its headers.
    pub async fn grab_with_headers(
        &self,
        user: u64,
        channel: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let request = Request::post("/v1/coupons")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.ticket(user)))
            .body(Body::from(json!({ "channel": channel }).to_string()))
            .unwrap();
        self.call_with_headers(request).await
    }

    pub async fn grab(&self, user: u64, channel: &str) -> (StatusCode, Value) {
        self.grab_as(Some(&self.ticket(user)), &json!({ "channel": channel }).to_string()).await
    }

    pub async fn list(&self, user: u64, coupon: &str) -> (StatusCode, Value) {
        let request = Request::get(format!("/v1/coupons/{coupon}/gifts"))
            .header("authorization", format!("Bearer {}", self.ticket(user)))
            .body(Body::empty())
            .unwrap();
        self.call(request).await
    }

    pub fn granted(&self) -> u64 {
        Channel::ALL.iter().map(|&c| hongbao_store::GrantLedger::granted(&*self.store, c)).sum()
    }
}

/// `Retry-After` in seconds.
pub fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {headers:?}"))
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {body}"))
}

/// A user registered in at least `games` games.
pub fn user_in_games(h: &Harness, games: u32) -> u64 {
    (FIRST_USER_ID..FIRST_USER_ID + USERS)
        .find(|&u| h.model.profile(u).registered.0.count_ones() >= games)
        .unwrap()
}
