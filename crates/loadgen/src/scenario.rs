//! One iteration of a scenario: the HTTP requests a user makes, each timed from when it was
//! meant to go out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hongbao_domain::campaign::{Gift, GiftIndex};
use hongbao_domain::synth::{ZONES_PER_GAME, region_of_zone};
use hongbao_domain::{Campaign, Channel, Role, sign_ticket};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::Scenario;
use crate::conns::{SendError, TargetConns};
use crate::replay::ReplayRequests;
use crate::stats::{Answer, Endpoint, Recorder};
use crate::users::UserStates;

/// Longest `error.code` counted as given; longer or odd ones count as `invalid_code`.
const ERROR_CODE_LEN_MAX: usize = 64;

/// Everything the iterations of one run share.
pub(crate) struct Ctx {
    pub client: reqwest::Client,
    /// Base URL without a trailing slash.
    pub target: String,
    pub campaign: Arc<Campaign>,
    pub gifts: HashMap<String, GiftIndex>,
    pub scenario: Scenario,
    pub recorder: Recorder,
    pub users: UserStates,
    /// Requests to the target in flight at once.
    pub connections: Semaphore,
    pub poll_interval: Duration,
    pub poll_limit: Duration,
    /// Journeys stop polling here, whatever their own limit, so the run ends in time.
    pub poll_deadline: Instant,
    pub ticket_ttl_s: u64,
    /// The replay scenario's requests.
    pub replay: Option<Arc<ReplayRequests>>,
    /// The replay scenario's connections to a plain `http://` target (else reqwest's).
    pub conns: Option<TargetConns>,
}

pub(crate) struct Iteration {
    pub user: u64,
    pub channel: Channel,
    pub intended: Instant,
    pub record: bool,
}

/// Why an iteration stopped early, or how it ended.
type Outcome = &'static str;

pub(crate) async fn run_iteration(ctx: &Ctx, it: Iteration) {
    if ctx.scenario == Scenario::Replay {
        // Replay lines go through `run_replay`; nothing to mint a ticket for here.
        return;
    }
    let auth = ctx.auth_header(it.user);
    let (outcome, latency) = match ctx.scenario {
        Scenario::Grab => match ctx.grab(&it, &auth, it.intended).await {
            Ok(_) => ("ok", Some(it.intended.elapsed())),
            Err(o) => (o, None),
        },
        Scenario::List => match list_iteration(ctx, &it, &auth).await {
            Ok(()) => ("ok", Some(it.intended.elapsed())),
            Err(o) => (o, None),
        },
        Scenario::Claim => match claim_iteration(ctx, &it, &auth).await {
            Ok(_) => ("ok", Some(it.intended.elapsed())),
            Err(o) => (o, None),
        },
        Scenario::Journey => match claim_iteration(ctx, &it, &auth).await {
            Ok(order_id) => {
                let latency = it.intended.elapsed();
                (ctx.poll(&it, &auth, &order_id).await, Some(latency))
            }
            Err(o) => (o, None),
        },
        Scenario::Replay => return,
    };
    ctx.recorder.iteration(it.record, outcome, latency);
}

/// Sends line `index` of the replay file: one request, counted as `replay`.
pub(crate) async fn run_replay(ctx: &Ctx, index: usize, intended: Instant, record: bool) {
    let Some(requests) = &ctx.replay else { return };
    let plain = ctx.conns.as_ref().and_then(|c| Some((c, requests.plain_request(index)?)));
    let answer = match plain {
        Some((conns, request)) => ctx.call_plain(conns, record, intended, request).await,
        None => {
            let request = requests.request(&ctx.client, &ctx.target, index);
            ctx.call(Endpoint::Replay, record, intended, request, true).await
        }
    };
    let (outcome, latency) = match answer {
        Ok((status, _)) if status.is_success() => ("ok", Some(intended.elapsed())),
        Ok(_) => (failed(Endpoint::Replay), None),
        Err(o) => (o, None),
    };
    ctx.recorder.iteration(record, outcome, latency);
}

async fn list_iteration(ctx: &Ctx, it: &Iteration, auth: &HeaderValue) -> Result<(), Outcome> {
    let coupon = match ctx.users.list_coupon(it.user) {
        Some(c) => c,
        None => {
            let c: Arc<str> = ctx.grab(it, auth, it.intended).await?.into();
            ctx.users.set_list_coupon(it.user, c.clone());
            c
        }
    };
    // The list's own intended time: now if the grab ran first, else the iteration's.
    let intended = Instant::now().max(it.intended);
    ctx.list(it, auth, &coupon, intended, false).await.map(|_| ())
}

/// grab → list → role → claim; the order id.
async fn claim_iteration(ctx: &Ctx, it: &Iteration, auth: &HeaderValue) -> Result<String, Outcome> {
    let coupon = ctx.grab(it, auth, it.intended).await?;
    let gifts = ctx.list(it, auth, &coupon, Instant::now(), true).await?;
    let first = gifts.into_iter().next().ok_or("no_gift")?;
    let gift = ctx
        .gifts
        .get(&first.gift_id)
        .map(|i| &ctx.campaign.gifts[usize::from(i.0)])
        .ok_or("unknown_gift")?;
    let role = ctx.role_for(it, gift).await?;
    ctx.claim(it, auth, &coupon, gift, &role).await
}

#[derive(Serialize)]
struct GrabBody<'a> {
    channel: &'a str,
}

#[derive(Deserialize)]
struct Grabbed {
    coupon: String,
}

#[derive(Deserialize)]
struct GiftList {
    gifts: Vec<ListedGift>,
}

#[derive(Deserialize)]
struct ListedGift {
    gift_id: String,
}

#[derive(Serialize)]
struct ClaimBody<'a> {
    coupon: &'a str,
    gift_id: &'a str,
    zone_id: u16,
    role_id: u64,
}

#[derive(Deserialize)]
struct Claimed {
    order_id: String,
}

#[derive(Deserialize)]
struct OrderView {
    status: String,
}

#[derive(Deserialize)]
struct Roles {
    roles: Vec<Role>,
}

#[derive(Serialize)]
struct CreateRole<'a> {
    user: u64,
    game: &'a str,
    zone_id: u16,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
}

/// `error.code` of an error body, if it has a sane one.
fn error_code(body: &[u8]) -> Option<String> {
    let code = serde_json::from_slice::<ErrorBody>(body).ok()?.error.code;
    let sane = !code.is_empty()
        && code.len() <= ERROR_CODE_LEN_MAX
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    Some(if sane { code } else { "invalid_code".to_string() })
}

/// Percent-encodes a path segment or query value (tokens are URL-safe already; this is for
/// whatever else a server hands out).
fn encode(s: &str) -> std::borrow::Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if s.bytes().all(safe) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.into()
}

/// Whether `role` meets `gift`'s role requirements (level, region).
fn fits(gift: &Gift, role: &Role) -> bool {
    gift.min_role_level.is_none_or(|m| role.level >= m)
        && (gift.regions.is_empty() || gift.regions.contains(&role.region))
}

/// The zone a new role is created in: zone 1 unless the gift wants another region.
fn zone_for(gift: &Gift) -> u16 {
    (1..=ZONES_PER_GAME)
        .find(|&z| {
            gift.regions.is_empty()
                || region_of_zone(z).is_some_and(|r| gift.regions.iter().any(|g| g == r))
        })
        .unwrap_or(1)
}

impl Ctx {
    fn auth_header(&self, user: u64) -> HeaderValue {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let ticket = sign_ticket(&self.campaign.auth.ticket_keys[0], user, now, self.ticket_ttl_s);
        // A ticket is base64url and dots: always a valid header value.
        HeaderValue::try_from(format!("Bearer {ticket}")).expect("tickets are header-safe")
    }

    /// Sends one request and counts it. `gated`: a request to the target, which waits for one of
    /// the run's connections (the wait counts as latency, since `intended` is when it was due).
    async fn call(
        &self,
        endpoint: Endpoint,
        record: bool,
        intended: Instant,
        request: RequestBuilder,
        gated: bool,
    ) -> Result<(StatusCode, Bytes), Outcome> {
        let _permit = if gated {
            match self.connections.acquire().await {
                Ok(p) => Some(p),
                Err(_) => return Err("run_ended"),
            }
        } else {
            None
        };
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        let result = result.map_err(|e| {
            if e.is_timeout() {
                SendError::Timeout
            } else if e.is_connect() {
                SendError::Connect
            } else {
                SendError::Io
            }
        });
        self.answered(endpoint, record, intended, result)
    }

    /// [`Ctx::call`] for a replay request on the run's own connections to the target.
    async fn call_plain(
        &self,
        conns: &TargetConns,
        record: bool,
        intended: Instant,
        request: http::Request<http_body_util::Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), Outcome> {
        let Ok(_permit) = self.connections.acquire().await else { return Err("run_ended") };
        let result = conns.send(request).await;
        self.answered(Endpoint::Replay, record, intended, result)
    }

    /// Counts a request's answer (or why there was none), timed from `intended`.
    fn answered(
        &self,
        endpoint: Endpoint,
        record: bool,
        intended: Instant,
        result: Result<(StatusCode, Bytes), SendError>,
    ) -> Result<(StatusCode, Bytes), Outcome> {
        let latency = intended.elapsed();
        match result {
            Ok((status, body)) => {
                let code = (!status.is_success()).then(|| error_code(&body)).flatten();
                let answer = Answer::Http { status: status.as_u16(), error_code: code.as_deref() };
                self.recorder.request(endpoint, record, answer, Some(latency));
                Ok((status, body))
            }
            Err(e) => {
                let (answer, latency) = match e {
                    SendError::Timeout => (Answer::Timeout, Some(latency)),
                    SendError::Connect => (Answer::ConnectError, None),
                    SendError::Io => (Answer::IoError, None),
                };
                self.recorder.request(endpoint, record, answer, latency);
                Err(failed(endpoint))
            }
        }
    }

    /// A 2xx body parsed as `T`; any other answer is the endpoint's failure outcome.
    async fn call_json<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: Endpoint,
        record: bool,
        intended: Instant,
        request: RequestBuilder,
        gated: bool,
    ) -> Result<T, Outcome> {
        let (status, body) = self.call(endpoint, record, intended, request, gated).await?;
        if !status.is_success() {
            return Err(failed(endpoint));
        }
        serde_json::from_slice(&body).map_err(|_| "bad_response")
    }

    async fn grab(
        &self,
        it: &Iteration,
        auth: &HeaderValue,
        intended: Instant,
    ) -> Result<String, Outcome> {
        let request = self
            .client
            .post(format!("{}/v1/coupons", self.target))
            .header(AUTHORIZATION, auth.clone())
            .json(&GrabBody { channel: it.channel.as_str() });
        let grabbed: Grabbed =
            self.call_json(Endpoint::Grab, it.record, intended, request, true).await?;
        Ok(grabbed.coupon)
    }

    /// Lists the coupon's gifts; parses the body only when `parse` (the list scenario only
    /// needs the status, and parsing costs CPU the server shares).
    async fn list(
        &self,
        it: &Iteration,
        auth: &HeaderValue,
        coupon: &str,
        intended: Instant,
        parse: bool,
    ) -> Result<Vec<ListedGift>, Outcome> {
        let request = self
            .client
            .get(format!("{}/v1/coupons/{}/gifts", self.target, encode(coupon)))
            .header(AUTHORIZATION, auth.clone());
        if !parse {
            let (status, _) = self.call(Endpoint::List, it.record, intended, request, true).await?;
            return if status.is_success() { Ok(Vec::new()) } else { Err(failed(Endpoint::List)) };
        }
        let list: GiftList =
            self.call_json(Endpoint::List, it.record, intended, request, true).await?;
        Ok(list.gifts)
    }

    /// A role of the user in the gift's game that meets its requirements: remembered, looked up
    /// on the game side, or created there.
    async fn role_for(&self, it: &Iteration, gift: &Gift) -> Result<Role, Outcome> {
        let game = self.campaign.game(gift.game);
        let pick = |roles: &[Role]| roles.iter().find(|r| fits(gift, r)).or(roles.first()).cloned();
        if let Some(role) = self.users.roles(it.user, gift.game.0).and_then(|r| pick(&r)) {
            return Ok(role);
        }
        let base = game.idip_url.trim_end_matches('/');
        let request = self.client.get(format!(
            "{base}/idip/v1/roles?user={}&game={}",
            it.user,
            encode(&game.id)
        ));
        let found: Roles =
            self.call_json(Endpoint::IdipRoles, it.record, Instant::now(), request, false).await?;
        if let Some(role) = pick(&found.roles) {
            self.users.set_roles(it.user, gift.game.0, found.roles.into());
            return Ok(role);
        }
        let request = self.client.post(format!("{base}/idip/v1/roles")).json(&CreateRole {
            user: it.user,
            game: &game.id,
            zone_id: zone_for(gift),
        });
        let created: Role = self
            .call_json(Endpoint::IdipCreateRole, it.record, Instant::now(), request, false)
            .await?;
        self.users.set_roles(it.user, gift.game.0, Arc::from(vec![created.clone()]));
        Ok(created)
    }

    async fn claim(
        &self,
        it: &Iteration,
        auth: &HeaderValue,
        coupon: &str,
        gift: &Gift,
        role: &Role,
    ) -> Result<String, Outcome> {
        let request = self
            .client
            .post(format!("{}/v1/claims", self.target))
            .header(AUTHORIZATION, auth.clone())
            .json(&ClaimBody {
                coupon,
                gift_id: &gift.id,
                zone_id: role.zone_id.0,
                role_id: role.role_id.0,
            });
        let claimed: Claimed =
            self.call_json(Endpoint::Claim, it.record, Instant::now(), request, true).await?;
        Ok(claimed.order_id)
    }

    /// Polls an order every `poll_interval` until a final state or the limit; the outcome.
    async fn poll(&self, it: &Iteration, auth: &HeaderValue, order_id: &str) -> Outcome {
        let url = format!("{}/v1/orders/{}", self.target, encode(order_id));
        let limit = Instant::now() + self.poll_limit;
        let deadline = limit.min(self.poll_deadline);
        let mut due = Instant::now() + self.poll_interval;
        loop {
            if due > deadline {
                return if deadline < limit { "run_ended" } else { "poll_limit" };
            }
            tokio::time::sleep_until(due.into()).await;
            let request = self.client.get(&url).header(AUTHORIZATION, auth.clone());
            match self.call(Endpoint::Order, it.record, due, request, true).await {
                Ok((status, body)) if status.is_success() => {
                    let Ok(view) = serde_json::from_slice::<OrderView>(&body) else {
                        return "bad_response";
                    };
                    match view.status.as_str() {
                        "delivered" => {
                            self.recorder.delivered(it.record, it.intended.elapsed());
                            return "delivered";
                        }
                        "dead" => return "dead",
                        "expired" => return "expired",
                        // Held for review: no delivery without an operator; stop here.
                        "held" => return "held",
                        _ => {}
                    }
                }
                // Busy or rate limited: try again at the next poll.
                Ok((status, _))
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {}
                Ok(_) => return "poll_failed",
                Err(_) => {}
            }
            due = (due + self.poll_interval).max(Instant::now());
        }
    }
}

fn failed(endpoint: Endpoint) -> Outcome {
    match endpoint {
        Endpoint::Grab => "grab_failed",
        Endpoint::List => "list_failed",
        Endpoint::Claim => "claim_failed",
        Endpoint::Order => "poll_failed",
        Endpoint::IdipRoles | Endpoint::IdipCreateRole => "roles_failed",
        Endpoint::Replay => "replay_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_and_sanitised() {
        assert_eq!(
            error_code(br#"{"error":{"code":"out_of_stock","message":"x"}}"#).as_deref(),
            Some("out_of_stock")
        );
        assert_eq!(error_code(b"not json"), None);
        assert_eq!(
            error_code(br#"{"error":{"code":"Bad Code!"}}"#).as_deref(),
            Some("invalid_code")
        );
    }

    #[test]
    fn path_segments_are_encoded_only_when_needed() {
        assert_eq!(encode("v1.abc-_~.X9"), "v1.abc-_~.X9");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
