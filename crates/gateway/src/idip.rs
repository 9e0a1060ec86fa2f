//! The game-side (IDIP) HTTP client: role queries, role creation and deliveries.
//!
//! One pooled `reqwest::Client` serves every game; each game has its own base URL and timeout
//! from the campaign. The timeout covers the whole exchange (connect, request, response body), so
//! a caller's wait on the game side is bounded by `idip_timeout_ms`.
//!
//! Error mapping, in one place (`Endpoint::transport_error`, `Endpoint::status_error` and
//! [`IdipClient::deliver`]): timeout → [`GatewayError::Timeout`]; connect failure, reset or 5xx →
//! [`GatewayError::Unavailable`]; a body not in the contract's shape → [`GatewayError::Protocol`];
//! a 4xx on role calls → [`GatewayError::Rejected`] with the game's reason. On deliveries a 4xx
//! refusal (bad zone, items, serial) is [`DeliveryOutcome::Error`] with `permanent: true`, a bare
//! 429 is [`DeliveryOutcome::Busy`], and 404/405 (a misconfigured URL) stay `Rejected`.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use hongbao_domain::campaign::Item;
use hongbao_domain::{Campaign, GameIndex, Role, RoleId, ZoneId};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;

/// Idle connections kept per game host. The games absorb a few thousand requests per second
/// each; this many warm connections covers that without reconnecting.
pub const POOL_IDLE_PER_HOST_MAX: usize = 64;
/// How long an idle pooled connection is kept before it is closed.
pub const POOL_IDLE_TIMEOUT_MS: u64 = 90_000;
/// Largest response body read from the game side. Role lists and delivery results are a few
/// hundred bytes; anything near this is a broken or hostile peer.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// How much of an unexpected body is quoted in an error message.
const ERROR_BODY_QUOTE_BYTES_MAX: usize = 200;

/// Reasons the game side gives for delivery errors that no retry will fix. Used only when the
/// answer carries no explicit `permanent` flag and its status does not already say so.
/// (`role_not_found` is the simulator's; the others are common IDIP spellings.)
pub const PERMANENT_REASONS: &[&str] = &[
    "role_not_found",
    "unknown_role",
    "unknown_user",
    "unknown_game",
    "unknown_zone",
    "unknown_item",
    "invalid_user",
    "invalid_zone",
    "invalid_items",
    "invalid_serial",
];

/// One delivery to the game side. `serial` is the order id: the game applies a serial at most
/// once and answers `duplicate` for a repeat, which is what makes retries after a timeout safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRequest {
    pub serial: String,
    pub user: u64,
    pub game: GameIndex,
    pub zone_id: ZoneId,
    pub role_id: RoleId,
    pub items: Vec<Item>,
}

/// What the game side did with a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Applied now.
    Applied,
    /// This serial was applied before; nothing changed. Counts as delivered.
    Duplicate,
    /// The game is over its capacity; try again later.
    Busy,
    /// The game refused it. `permanent` errors go to the dead letter, others are retried.
    Error { reason: String, permanent: bool },
}

/// The game side's HTTP client. Cheap to clone (the pool and the endpoint table are shared).
#[derive(Clone, Debug)]
pub struct IdipClient {
    http: reqwest::Client,
    games: Arc<[Endpoint]>,
}

#[derive(Debug)]
struct Endpoint {
    id: String,
    roles_url: String,
    deliver_url: String,
    timeout_ms: u64,
}

impl IdipClient {
    /// A client for every game of `campaign`, with the games' URLs and timeouts.
    pub fn new(campaign: &Campaign) -> Result<IdipClient, GatewayError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| GatewayError::Setup(e.to_string()))?;
        let games = campaign
            .games
            .iter()
            .enumerate()
            .map(|(i, g)| {
                assert_eq!(usize::from(g.index.0), i, "campaign games are indexed by position");
                let base = g.idip_url.trim_end_matches('/');
                Endpoint {
                    id: g.id.clone(),
                    roles_url: format!("{base}/idip/v1/roles"),
                    deliver_url: format!("{base}/idip/v1/deliver"),
                    timeout_ms: g.idip_timeout_ms,
                }
            })
            .collect();
        Ok(IdipClient { http, games })
    }

    /// The roles `user` has in `game`; an empty list when they have none there.
    pub async fn query_roles(&self, user: u64, game: GameIndex) -> Result<Vec<Role>, GatewayError> {
        let ep = self.endpoint(game)?;
        let request = self
            .http
            .get(&ep.roles_url)
            .query(&[("user", user.to_string()), ("game", ep.id.clone())]);
        let (status, body) = ep.exchange(request).await?;
        if !status.is_success() {
            return Err(ep.status_error(status, &body));
        }
        let parsed: RolesBody = ep.parse(&body)?;
        Ok(parsed.roles)
    }

    /// Creates a role (level 1) for `user` in `zone_id` of `game`, as a new player does.
    pub async fn create_role(
        &self,
        user: u64,
        game: GameIndex,
        zone_id: ZoneId,
    ) -> Result<Role, GatewayError> {
        let ep = self.endpoint(game)?;
        let request =
            self.http.post(&ep.roles_url).json(&CreateRoleBody { user, game: &ep.id, zone_id });
        let (status, body) = ep.exchange(request).await?;
        if !status.is_success() {
            return Err(ep.status_error(status, &body));
        }
        ep.parse(&body)
    }

    /// Delivers `request` to its game. A timeout leaves the outcome unknown: the caller retries
    /// with the same serial and the game answers `duplicate` if the first attempt had landed.
    pub async fn deliver(
        &self,
        request: &DeliveryRequest,
    ) -> Result<DeliveryOutcome, GatewayError> {
        let ep = self.endpoint(request.game)?;
        let wire = DeliverBody {
            serial: &request.serial,
            user: request.user,
            game: &ep.id,
            zone_id: request.zone_id,
            role_id: request.role_id,
            items: request
                .items
                .iter()
                .map(|i| WireItem { item: &i.item, count: i.count })
                .collect(),
        };
        let (status, body) = ep.exchange(self.http.post(&ep.deliver_url).json(&wire)).await?;
        if status.is_server_error() {
            return Err(ep.status_error(status, &body));
        }
        let answer: DeliverAnswer = match serde_json::from_slice(&body) {
            Ok(answer) => answer,
            Err(e) if status.is_success() => {
                return Err(ep.protocol(format!("delivery answer is not valid: {e}")));
            }
            // A bare 429 still means "over capacity".
            Err(_) if status == StatusCode::TOO_MANY_REQUESTS => return Ok(DeliveryOutcome::Busy),
            // No such path or method: the endpoint is misconfigured, not the delivery wrong.
            Err(_) if matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) => {
                return Err(ep.status_error(status, &body));
            }
            // The game refused this delivery itself (bad zone, items, serial): no retry helps.
            Err(_) if status.is_client_error() => {
                let reason = match ep.status_error(status, &body) {
                    GatewayError::Rejected { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Ok(DeliveryOutcome::Error { reason, permanent: true });
            }
            Err(_) => return Err(ep.status_error(status, &body)),
        };
        match answer.result.as_str() {
            "applied" => Ok(DeliveryOutcome::Applied),
            "duplicate" => Ok(DeliveryOutcome::Duplicate),
            "busy" => Ok(DeliveryOutcome::Busy),
            "error" => {
                let reason = answer.reason.unwrap_or_else(|| "unspecified".to_string());
                let permanent = answer.permanent.unwrap_or_else(|| {
                    (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS)
                        || PERMANENT_REASONS.contains(&reason.as_str())
                });
                Ok(DeliveryOutcome::Error { reason, permanent })
            }
            other => {
                Err(ep.protocol(format!("unknown delivery result `{}`", quote(other.as_bytes()))))
            }
        }
    }

    /// The number of games this client serves (the campaign's).
    pub fn games(&self) -> usize {
        self.games.len()
    }

    fn endpoint(&self, game: GameIndex) -> Result<&Endpoint, GatewayError> {
        self.games.get(usize::from(game.0)).ok_or(GatewayError::UnknownGame(game))
    }
}

impl Endpoint {
    /// Sends the request with this game's timeout and reads a bounded body.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), GatewayError> {
        let mut response = request
            .timeout(Duration::from_millis(self.timeout_ms))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if response.content_length().is_some_and(|n| n > RESPONSE_BYTES_MAX as u64) {
            return Err(self.protocol(format!("response body over {RESPONSE_BYTES_MAX} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
                return Err(self.protocol(format!("response body over {RESPONSE_BYTES_MAX} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn transport_error(&self, e: &reqwest::Error) -> GatewayError {
        if e.is_timeout() {
            GatewayError::Timeout { game: self.id.clone(), timeout_ms: self.timeout_ms }
        } else {
            tracing::debug!(game = %self.id, error = %e, "game side unreachable");
            GatewayError::Unavailable { game: self.id.clone(), reason: error_chain(e) }
        }
    }

    fn status_error(&self, status: StatusCode, body: &[u8]) -> GatewayError {
        let quoted = quote(body);
        if status.is_server_error() {
            GatewayError::Unavailable {
                game: self.id.clone(),
                reason: format!("status {}: {quoted}", status.as_u16()),
            }
        } else if status.is_client_error() {
            let reason = serde_json::from_slice::<ReasonBody>(body)
                .ok()
                .and_then(ReasonBody::into_reason)
                .unwrap_or(if quoted.is_empty() {
                    format!("status {}", status.as_u16())
                } else {
                    quoted
                });
            GatewayError::Rejected { game: self.id.clone(), status: status.as_u16(), reason }
        } else {
            self.protocol(format!("unexpected status {}: {quoted}", status.as_u16()))
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, GatewayError> {
        serde_json::from_slice(body).map_err(|e| self.protocol(format!("invalid JSON body: {e}")))
    }

    fn protocol(&self, reason: String) -> GatewayError {
        GatewayError::Protocol { game: self.id.clone(), reason }
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); keep the chain.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A short, printable excerpt of a peer's bytes for an error message.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut end = text.len().min(ERROR_BODY_QUOTE_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[derive(Deserialize)]
struct RolesBody {
    roles: Vec<Role>,
}

#[derive(Serialize)]
struct CreateRoleBody<'a> {
    user: u64,
    game: &'a str,
    zone_id: ZoneId,
}

#[derive(Serialize)]
struct DeliverBody<'a> {
    serial: &'a str,
    user: u64,
    game: &'a str,
    zone_id: ZoneId,
    role_id: RoleId,
    items: Vec<WireItem<'a>>,
}

#[derive(Serialize)]
struct WireItem<'a> {
    item: &'a str,
    count: u32,
}

#[derive(Deserialize)]
struct DeliverAnswer {
    result: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    permanent: Option<bool>,
}

/// The reason in a 4xx body: `{"reason": "…"}`, `{"error": "…"}` or the API style
/// `{"error": {"code": "…", "message": "…"}}`.
#[derive(Deserialize)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl ReasonBody {
    fn into_reason(self) -> Option<String> {
        if let Some(reason) = self.reason {
            return Some(reason);
        }
        match self.error? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Object(map) => {
                let code = map.get("code").and_then(|v| v.as_str());
                let message = map.get("message").and_then(|v| v.as_str());
                match (code, message) {
                    (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                    (Some(s), None) | (None, Some(s)) => Some(s.to_string()),
                    (None, None) => None,
                }
            }
            _ => None,
        }
    }
}
