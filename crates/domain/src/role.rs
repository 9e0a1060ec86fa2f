//! Roles and the ids that name them: a player's character in one zone (server) of one game.
//!
//! Zone and role ids are parsed into these types where they enter (the claim's body, the game
//! side's answers) and travel typed from the claim to the order to the delivery call, so nothing
//! downstream parses them again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A zone (server) of a game.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct ZoneId(pub u16);

/// A role (character) within a game; unique per game.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct RoleId(pub u64);

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One role of a user in one game, as the game side reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Role {
    pub zone_id: ZoneId,
    pub region: String,
    pub role_id: RoleId,
    pub level: u32,
}
