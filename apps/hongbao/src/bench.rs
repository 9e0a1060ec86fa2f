//! Helpers for the benchmarks in `bench/` (hidden subcommands): the floor server, and tokens for
//! `wrk`, which cannot compute HMACs itself.

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::{get, post};
use hongbao_domain::synth::FIRST_USER_ID;
use hongbao_domain::{Campaign, Channel, Coupon, sign_coupon, sign_ticket};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::node::shutdown_signal;

#[derive(Serialize)]
struct FloorBody {
    status: &'static str,
    gifts: [&'static str; 3],
}

/// A claim's body as the floor's claim-shaped route reads it (the API's own shape).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read only to be parsed: the route measures the parse, not a use
struct FloorClaimBody {
    coupon: String,
    gift_id: String,
    zone_id: u16,
    role_id: u64,
}

/// Whether the request carries a bearer token: read in place, as the API's `Caller` reads the
/// ticket (the `HeaderMap` extractor would copy every header, which no API route does).
struct Bearer(bool);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let token =
            parts.headers.get(AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        Ok(Bearer(token.is_some_and(|t| !t.is_empty())))
    }
}

/// The answer of the floor's claim-shaped route: a claim's 202 body.
#[derive(Serialize)]
struct FloorClaimed {
    order_id: String,
    status: &'static str,
    deliver_by: u64,
}

/// The floor: the cheapest JSON answer this stack (tokio, hyper, axum, serde) can give. Every
/// benchmark reports its requests/s as a ratio to this one, measured in the same run.
/// `POST /floor/claim` is the same stack's cheapest answer to a claim-shaped request (its headers
/// and body parsed, a 202 body written, nothing decided): how much of a claim's cost is HTTP.
pub async fn floor(addr: SocketAddr) -> Result<()> {
    let app = Router::new()
        .route(
            "/floor",
            get(|| async {
                axum::Json(FloorBody {
                    status: "ok",
                    gifts: ["lh-starter", "ck-lucky", "sa-starter"],
                })
            }),
        )
        .route(
            "/floor/claim",
            post(|Bearer(authorized): Bearer, axum::Json(body): axum::Json<FloorClaimBody>| async move {
                let status =
                    if authorized { StatusCode::ACCEPTED } else { StatusCode::UNAUTHORIZED };
                let order_id =
                    format!("{:032x}", u128::from(body.role_id) << 16 | u128::from(body.zone_id));
                (
                    status,
                    axum::Json(FloorClaimed {
                        order_id,
                        status: "queued",
                        deliver_by: 1_790_000_000_000,
                    }),
                )
            }),
        );
    let listener = TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
    println!("floor listening on http://{}/floor", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serve")
}

/// The API as `serve --role api` builds it ([`crate::node::api_state`]: profiles, role cache over
/// the campaign's game side) but left on its in-memory store for grants and claims: every
/// decision the same, no journal, no memtable, no fsync. `bench/claim-cpu.sh` with `IN_MEMORY=1`
/// measures it, to tell what share of a claim's cost the durable write is and what is left
/// without it.
pub async fn in_memory(campaign: Campaign, profiles: &Path, addr: SocketAddr) -> Result<()> {
    let campaign = std::sync::Arc::new(campaign);
    let profiles = crate::synthetic::load_profiles(profiles, &campaign)?;
    let idip = hongbao_gateway::IdipClient::new(&campaign).context("build the game-side client")?;
    let state =
        crate::node::api_state(campaign, profiles, idip, hongbao_clock::SystemClock::shared());
    state.set_ready(true);
    let listener = TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
    println!("in-memory api (NOT durable) listening on http://{}", listener.local_addr()?);
    hongbao_api::serve(listener, hongbao_api::router(state), shutdown_signal())
        .await
        .context("serve")
}

/// Writes one line per user: `user ticket coupon` (a swipe coupon with serial 1, valid for the
/// coupon TTL). The coupon is signed with the campaign's coupon key, exactly as a grab would.
pub fn tokens(campaign: &Campaign, users: u64, now: i64, out: &Path) -> Result<()> {
    let key = hongbao_api::state::coupon_key_for(campaign);
    let file = std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let ttl = campaign.auth.ticket_max_age_s.min(24 * 3600);
    for user in FIRST_USER_ID..FIRST_USER_ID + users {
        let ticket = sign_ticket(&campaign.auth.ticket_keys[0], user, now, ttl);
        let coupon = sign_coupon(
            &key,
            &Coupon {
                campaign_id: campaign.id.clone(),
                user,
                channel: Channel::Swipe,
                serial: 1,
                expires_at_unix_s: now + i64::try_from(campaign.coupon_ttl_s)?,
            },
        );
        writeln!(w, "{user} {ticket} {coupon}")?;
    }
    w.flush()?;
    Ok(())
}

/// Writes one line per claim: `ticket<TAB>claim JSON body`, every line a distinct user and
/// coupon, for users of the synthetic model (same seed and count as `gen`): each gift the user may
/// claim with one of their roles — by the same eligibility function the API runs — up to the
/// gift's per-user limit and the user's coupons. High-value gifts are left out (they need fresh
/// logins and are rare). Coupons are minted with the campaign's coupon key, as grabs would.
///
/// With `balance_s`, each game gets at most `delivery_capacity_per_s × balance_s` claims: a backlog
/// every game drains in the same time at its own pace (the delivery benchmark's ideal).
pub fn claims(
    campaign: &Campaign,
    seed: u64,
    users: u64,
    now: i64,
    balance_s: Option<u64>,
    out: &Path,
) -> Result<u64> {
    use hongbao_domain::eligibility::{RoleContext, Subject, check};
    use hongbao_domain::synth::SynthModel;
    let key = hongbao_api::state::coupon_key_for(campaign);
    let model = SynthModel::new(seed, users, campaign.games.len());
    // Every coupon a user can hold, in grant order.
    let coupons: Vec<(Channel, u32)> = campaign
        .channels
        .iter()
        .flat_map(|c| (1..=c.coupons_per_user).map(move |serial| (c.channel, serial)))
        .collect();
    // Judged as if every release wave were open, as it is in the benchmarks.
    let judged_at = campaign.starts_at_unix_s.max(now - 3600) + 3600;
    let file = std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut w = BufWriter::new(file);
    let ttl = campaign.auth.ticket_max_age_s.min(24 * 3600);
    let mut lines = 0;
    let quota: Vec<u64> = campaign
        .games
        .iter()
        .map(|g| balance_s.map_or(u64::MAX, |s| u64::from(g.delivery_capacity_per_s) * s))
        .collect();
    let mut per_game = vec![0u64; campaign.games.len()];
    for user in FIRST_USER_ID..FIRST_USER_ID + users {
        let ticket = sign_ticket(&campaign.auth.ticket_keys[0], user, now, ttl);
        let profile = model.profile(user);
        let subject = Subject { user, profile: &profile, ticket_issued_at_unix_s: judged_at };
        let mut next_coupon = coupons.iter();
        'gifts: for gift in campaign.gifts.iter().filter(|g| !g.high_value) {
            let game = usize::from(gift.game.0);
            let roles = model.roles_given(user, gift.game, profile.registered);
            let Some(role) = roles.iter().find(|r| {
                check(campaign, gift, &subject, RoleContext::Chosen(r), false, judged_at).is_ok()
            }) else {
                continue;
            };
            for _ in 0..gift.per_user {
                if per_game[game] >= quota[game] {
                    break;
                }
                let Some(&(channel, serial)) = next_coupon.next() else { break 'gifts };
                let coupon = sign_coupon(
                    &key,
                    &Coupon {
                        campaign_id: campaign.id.clone(),
                        user,
                        channel,
                        serial,
                        expires_at_unix_s: now + i64::try_from(campaign.coupon_ttl_s)?,
                    },
                );
                let body = serde_json::json!({
                    "coupon": coupon, "gift_id": gift.id, "zone_id": role.zone_id, "role_id": role.role_id,
                });
                writeln!(w, "{ticket}\t{body}")?;
                lines += 1;
                per_game[game] += 1;
            }
        }
    }
    w.flush()?;
    Ok(lines)
}
