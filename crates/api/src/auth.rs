//! Who is calling: the login ticket in `Authorization: Bearer …`, verified against every active
//! ticket key (rotation) with expiry, maximum age and a small clock-skew allowance
//! (`hongbao_domain::ticket`). Each way a ticket can be wrong has its own 401 code.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hongbao_domain::verify_ticket;

use crate::error::ApiError;
use crate::state::ApiState;

/// A verified caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: u64,
    /// When the login service issued the ticket: high-value gifts need a recent login.
    pub ticket_issued_at_unix_s: i64,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let unauthorized =
            |code, message: String| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            unauthorized("missing_ticket", "send `Authorization: Bearer <ticket>`".into())
        })?;
        let token =
            header.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(|| {
                unauthorized("malformed_ticket", "expected `Authorization: Bearer <ticket>`".into())
            })?;
        let auth = &state.campaign.auth;
        let ticket = verify_ticket(
            &auth.ticket_keys,
            token.trim(),
            state.clock.now_unix_s(),
            auth.ticket_max_age_s,
        )
        .map_err(|e| unauthorized(e.code(), e.to_string()))?;
        // The user's request rate, where the user becomes known (see `crate::limits`).
        if let Some(limits) = parts.extensions.get::<std::sync::Arc<crate::limits::RateLimits>>() {
            limits.check_user(ticket.user)?;
        }
        Ok(Caller { user: ticket.user, ticket_issued_at_unix_s: ticket.issued_at_unix_s })
    }
}
