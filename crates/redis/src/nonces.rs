//! The operator API's used nonces, shared by every node of a fleet: a request replayed to
//! another node than the one it was first sent to is refused there too.
//!
//! One `SET <ns>:nonce:<key id>:<nonce> 1 NX EX <seconds>` per signed request: the key exists
//! exactly while the nonce must be remembered, so Redis's own expiry bounds the store (at most
//! the signed requests of [`hongbao_auth::NONCE_RETAIN_S`]), and nothing is ever full. A Redis
//! that does not answer refuses the request (`Unavailable`), never lets it through unchecked.

use hongbao_auth::{NonceError, NonceFuture, NonceStore};

use crate::RedisConn;

/// The fleet's nonce store under one namespace.
#[derive(Clone)]
pub struct RedisNonceStore {
    conn: RedisConn,
    prefix: String,
}

impl std::fmt::Debug for RedisNonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNonceStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisNonceStore {
    /// The store of `namespace` (see [`crate::check_namespace`]).
    pub fn new(conn: RedisConn, namespace: &str) -> Result<Self, hongbao_store::StoreError> {
        crate::check_namespace(namespace)?;
        Ok(RedisNonceStore { conn, prefix: format!("{namespace}:nonce:") })
    }
}

impl NonceStore for RedisNonceStore {
    fn remember<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        now_s: u64,
        expires_at_s: u64,
    ) -> NonceFuture<'a> {
        Box::pin(async move {
            // The key id comes from the keys file and the nonce was checked by the verifier;
            // the length prefix keeps `a:b` + `c` apart from `a` + `b:c` whatever they hold.
            let key = format!("{}{}:{key_id}:{nonce}", self.prefix, key_id.len());
            let seconds = expires_at_s.saturating_sub(now_s).max(1);
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(seconds)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(|e| NonceError::Unavailable(format!("redis: {e}")))?;
            match set {
                Some(_) => Ok(()),
                None => Err(NonceError::Reused),
            }
        })
    }
}
