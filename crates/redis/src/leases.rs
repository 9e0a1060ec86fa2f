//! Game leases between worker processes ([`GameLeases`]) in Redis: one key per game holding the
//! holder's name with a TTL, taken or renewed by one script (`lua/game_lease.lua`) so that
//! "nobody holds it, so I take it" is atomic. The TTL runs on Redis's clock; the workers count
//! their own, shorter deadline from before they asked (see `hongbao-delivery`'s `ownership`).

use hongbao_domain::GameIndex;
use hongbao_queue::{GameLeases, Held, QueueError, leases::BoxFuture};
use redis::Script;

use crate::RedisConn;
use crate::keys::check_namespace;

/// Longest holder name: a host name, a pid and a random part fit many times over.
pub const HOLDER_BYTES_MAX: usize = 256;

/// The game leases of one campaign under one namespace.
pub struct RedisGameLeases {
    conn: RedisConn,
    /// `<ns>:<campaign>:game-lease:`, to which the game's index is appended.
    prefix: String,
    /// `<ns>:<campaign>:paused-games`: a set of the game indices operators paused.
    paused_key: String,
    hold: Script,
    release: Script,
}

impl RedisGameLeases {
    pub fn new(
        conn: RedisConn,
        namespace: &str,
        campaign_id: &str,
    ) -> Result<Self, hongbao_store::StoreError> {
        check_namespace(namespace)?;
        Ok(Self {
            conn,
            prefix: format!("{namespace}:{campaign_id}:game-lease:"),
            paused_key: format!("{namespace}:{campaign_id}:paused-games"),
            hold: Script::new(include_str!("lua/game_lease.lua")),
            release: Script::new(include_str!("lua/game_lease_release.lua")),
        })
    }

    fn key(&self, game: GameIndex) -> String {
        format!("{}{}", self.prefix, game.0)
    }
}

fn check_holder(holder: &str) -> Result<(), QueueError> {
    if holder.is_empty() || holder.len() > HOLDER_BYTES_MAX {
        return Err(QueueError::Unavailable(format!(
            "a lease holder's name must be 1..={HOLDER_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

fn unavailable(err: &redis::RedisError) -> QueueError {
    QueueError::Unavailable(format!("redis: {err}"))
}

impl GameLeases for RedisGameLeases {
    fn hold<'a>(
        &'a self,
        game: GameIndex,
        holder: &'a str,
        ttl_ms: u64,
    ) -> BoxFuture<'a, Result<Held, QueueError>> {
        Box::pin(async move {
            check_holder(holder)?;
            let mut conn = self.conn.clone();
            let answer: i64 = self
                .hold
                .key(self.key(game))
                .arg(holder)
                .arg(ttl_ms.max(1))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            match answer {
                2 => Ok(Held::Renewed),
                1 => Ok(Held::Acquired),
                0 => Ok(Held::Elsewhere),
                other => Err(QueueError::Unavailable(format!(
                    "the lease script answered {other}, not 0, 1 or 2"
                ))),
            }
        })
    }

    fn release<'a>(
        &'a self,
        game: GameIndex,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            check_holder(holder)?;
            let mut conn = self.conn.clone();
            self.release
                .key(self.key(game))
                .arg(holder)
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| unavailable(&e))
        })
    }

    fn set_paused(&self, game: GameIndex, paused: bool) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let command = if paused { "SADD" } else { "SREM" };
            redis::cmd(command)
                .arg(&self.paused_key)
                .arg(game.0)
                .query_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| unavailable(&e))
        })
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<GameIndex>, QueueError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let games: Vec<u8> = redis::cmd("SMEMBERS")
                .arg(&self.paused_key)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            Ok(games.into_iter().map(GameIndex).collect())
        })
    }
}
