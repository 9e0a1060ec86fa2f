//! The API router with a hand-set clock and roles from the synthetic model, over the in-memory
//! store (the HTTP stack's tests) or over either real backend (the ledger's tests, written once
//! and run on both with [`on_both_backends`]).

#![allow(clippy::unwrap_used, dead_code)] // test helpers outside #[test] fns; each test binary uses a part

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use hongbao_api::ApiState;
use hongbao_api::ports::{Claims, Grants};
use hongbao_clock::{Clock, ManualClock};
use hongbao_distributed::{BackendConfig, SweeperConfig};
use hongbao_domain::profile::{ProfileHeader, ProfileWriter};
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, Channel, GameIndex, ProfileTable, sign_ticket};
use hongbao_gateway::{BoxFuture, GatewayError, RoleCache, RoleCacheConfig, RoleSource};
use hongbao_jetstream::JetStreamConfig;
use hongbao_store::{CampaignBinding, EmbeddedConfig, EmbeddedStore, MemoryStore};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    pub grants: Arc<dyn Grants>,
    pub claims: Arc<dyn Claims>,
    pub profiles: Arc<ProfileTable>,
    pub model: SynthModel,
    /// What holds the ledger's state for the test's life; dropped last (fields drop in order).
    _ledger: Ledger,
}

/// Which ledger a test's router decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `serve --data`: the fjall store in a directory of the test's own.
    Embedded,
    /// `serve --redis --nats`: Redis scripts, then JetStream, under a namespace of the test's
    /// own (removed when the harness drops).
    Distributed,
}

enum Ledger {
    Memory,
    Embedded(tempfile::TempDir),
    Distributed(Box<Namespace>),
}

/// The campaign, its users and the role cache a harness is built from.
struct Parts {
    campaign: Arc<Campaign>,
    model: SynthModel,
    profiles: Arc<ProfileTable>,
    roles: Arc<RoleCache>,
    clock: Arc<ManualClock>,
}

fn parts(text: &str, game_side_down: bool) -> Parts {
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
    Parts { campaign, model, profiles, roles, clock }
}

impl Parts {
    fn assemble(self, grants: Arc<dyn Grants>, claims: Arc<dyn Claims>, ledger: Ledger) -> Harness {
        let Parts { campaign, model, profiles, roles, clock } = self;
        let state = ApiState::new(campaign.clone(), roles, clock.clone())
            .with_profiles(profiles.clone())
            .with_grants(grants.clone())
            .with_claims(claims.clone());
        state.set_ready(true);
        let router = hongbao_api::router(state);
        Harness { router, campaign, clock, grants, claims, profiles, model, _ledger: ledger }
    }
}

/// The router over the in-memory store: for what the HTTP stack decides before any ledger.
pub fn harness_with(text: &str, game_side_down: bool) -> Harness {
    let parts = parts(text, game_side_down);
    let store = Arc::new(MemoryStore::with_campaign(CampaignBinding::of(&parts.campaign)));
    parts.assemble(store.clone(), store, Ledger::Memory)
}

pub fn harness() -> Harness {
    harness_with(EXAMPLE, false)
}

/// The router over `backend`'s ledger, for the tests of what the ledger decides.
pub async fn harness_on(backend: Backend, text: &str, game_side_down: bool) -> Harness {
    let parts = parts(text, game_side_down);
    match backend {
        Backend::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            let config = EmbeddedConfig { clock: parts.clock.clone(), ..EmbeddedConfig::default() };
            let binding = CampaignBinding::of(&parts.campaign);
            let store = Arc::new(EmbeddedStore::open_with(dir.path(), config, binding).unwrap());
            parts.assemble(store.clone(), store, Ledger::Embedded(dir))
        }
        Backend::Distributed => {
            let namespace = Namespace::new(&parts.campaign);
            let node = hongbao_distributed::Backend::connect(&namespace.config, &parts.campaign)
                .await
                .unwrap();
            parts.assemble(
                node.ledger.clone(),
                node.claims.clone(),
                Ledger::Distributed(Box::new(namespace)),
            )
        }
    }
}

pub async fn harness_of(backend: Backend) -> Harness {
    harness_on(backend, EXAMPLE, false).await
}

/// A test's namespace on the machine's Redis and NATS; its keys and stream go when it drops
/// (also when the test panics).
pub struct Namespace {
    config: BackendConfig,
    binding: CampaignBinding,
}

impl Namespace {
    fn new(campaign: &Campaign) -> Namespace {
        let name = format!("hbapi-{:016x}", StdRng::from_os_rng().random::<u64>());
        let config = BackendConfig {
            redis_url: REDIS_URL.to_string(),
            nats_url: NATS_URL.to_string(),
            namespace: name,
            jetstream: JetStreamConfig::default(),
            sweeper: SweeperConfig::default(),
            claim_shards: None,
        };
        Namespace { config, binding: CampaignBinding::of(campaign) }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let (config, binding) = (self.config.clone(), self.binding.clone());
        // The drop may run on the test's runtime: remove from a thread and runtime of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(hongbao_distributed::remove_namespace(&config, &binding))
                .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(done, Ok(Ok(_))) {
            eprintln!("could not remove namespace {}: {done:?}", self.config.namespace);
        }
    }
}

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// Whether Redis and NATS answer; outside CI a distributed test that gets `false` says it
/// skipped, under CI (`CI` set) it fails.
pub fn services_answer() -> bool {
    let answers = |addr: &str| {
        let addr: std::net::SocketAddr = addr.parse().expect("an address");
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)).is_ok()
    };
    let up = answers("127.0.0.1:6379") && answers("127.0.0.1:4222");
    if !up {
        assert!(std::env::var_os("CI").is_none(), "Redis or NATS missing, and CI is set");
        println!("skipped: Redis (127.0.0.1:6379) or NATS (127.0.0.1:4222) does not answer");
    }
    up
}

/// One test body, `async fn NAME(backend: Backend)`, run as two tests: `NAME::embedded` and
/// `NAME::distributed` (which skips, saying so, when Redis or NATS does not answer outside CI).
/// The bodies stay plain functions, so rustfmt and clippy see them.
#[allow(unused_macros)] // each test binary includes this module; not all of them use it
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(super::common::Backend::Embedded).await;
            }

            #[tokio::test]
            async fn distributed() {
                if !super::common::services_answer() {
                    return;
                }
                super::$name(super::common::Backend::Distributed).await;
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

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
        Channel::ALL.iter().map(|&c| self.grants.granted(c)).sum()
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
