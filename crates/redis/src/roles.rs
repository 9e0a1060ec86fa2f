//! The role cache's shared second level ([`RoleStoreL2`]) in Redis: what one API node learned
//! from the slow game side serves every other node until it expires.
//!
//! One string per (user, game): the role list as JSON, with the TTL the cache chose (shorter for
//! "no role"). Each operation is one command on one key, so the keys carry no hash tag and spread
//! over a cluster's slots. A reply that does not decode is treated as a miss and overwritten by
//! the next load: a cache must never turn a bad entry into a refused user.

use std::sync::Arc;
use std::time::Duration;

use hongbao_domain::Role;
use hongbao_gateway::{BoxFuture, GatewayError, RoleKey, RoleStoreL2};

use crate::RedisConn;
use crate::keys::check_namespace;

/// Largest role list stored, in bytes of JSON: far above any real player's roles in one game
/// (a role is ~60 bytes), and a bound on what a corrupt or hostile entry costs a reader.
pub const ROLE_ENTRY_BYTES_MAX: usize = 64 * 1024;

/// The shared role store of one campaign under one namespace.
#[derive(Clone)]
pub struct RedisRoleStore {
    conn: RedisConn,
    /// `<ns>:<campaign>:roles:`, to which `<user>:<game index>` is appended.
    prefix: String,
}

impl RedisRoleStore {
    /// A store on `conn` (see [`crate::connect`]) for `campaign_id` under `namespace`.
    pub fn new(
        conn: RedisConn,
        namespace: &str,
        campaign_id: &str,
    ) -> Result<Self, hongbao_store::StoreError> {
        check_namespace(namespace)?;
        Ok(Self { conn, prefix: format!("{namespace}:{campaign_id}:roles:") })
    }

    fn key(&self, key: RoleKey) -> String {
        format!("{}{}:{}", self.prefix, key.user, key.game.0)
    }
}

fn unavailable(err: &redis::RedisError) -> GatewayError {
    GatewayError::Store(format!("redis: {err}"))
}

impl RoleStoreL2 for RedisRoleStore {
    fn get(&self, key: RoleKey) -> BoxFuture<'_, Result<Option<Arc<[Role]>>, GatewayError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let bytes: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            let Some(bytes) = bytes else { return Ok(None) };
            if bytes.len() > ROLE_ENTRY_BYTES_MAX {
                return Ok(None);
            }
            match serde_json::from_slice::<Vec<Role>>(&bytes) {
                Ok(roles) => Ok(Some(roles.into())),
                Err(error) => {
                    tracing::warn!(user = key.user, game = key.game.0, %error, "undecodable role cache entry; treated as a miss");
                    Ok(None)
                }
            }
        })
    }

    fn put(
        &self,
        key: RoleKey,
        roles: Arc<[Role]>,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), GatewayError>> {
        Box::pin(async move {
            let json = serde_json::to_vec(&*roles)
                .map_err(|e| GatewayError::Store(format!("encode roles: {e}")))?;
            if json.len() > ROLE_ENTRY_BYTES_MAX {
                return Err(GatewayError::Store(format!(
                    "role list of {} bytes over the {ROLE_ENTRY_BYTES_MAX}-byte bound",
                    json.len()
                )));
            }
            // PX 0 is an error in Redis; a TTL under a millisecond is not worth storing.
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            if ttl_ms == 0 {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            redis::cmd("SET")
                .arg(self.key(key))
                .arg(json)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))
        })
    }

    fn remove(&self, key: RoleKey) -> BoxFuture<'_, Result<(), GatewayError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            redis::cmd("DEL")
                .arg(self.key(key))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))
        })
    }
}
