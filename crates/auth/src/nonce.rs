//! Nonces already used, per key, remembered for [`crate::NONCE_RETAIN_S`]: a replayed request is
//! refused however soon or late it comes while its timestamp is still accepted.

use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// Default most nonces remembered at once by [`InProcessNonceStore`]: 65,536 signed requests in
/// [`crate::NONCE_RETAIN_S`] (about 100 per second for 11 minutes), far above what operators
/// send; at most ~16 MiB with the longest ids and nonces.
pub const NONCE_STORE_MAX_DEFAULT: usize = 65_536;

/// Why a nonce was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NonceError {
    #[error("this nonce was already used with this key")]
    Reused,
    /// The store holds its maximum of unexpired nonces. It refuses rather than forgets: a
    /// forgotten nonce could be replayed.
    #[error("the nonce store is full ({0} unexpired nonces); retry after older ones expire")]
    Full(usize),
    /// A shared store could not be asked (Redis down): the request is refused, never let
    /// through unchecked.
    #[error("the nonce store cannot be reached: {0}")]
    Unavailable(String),
}

/// What [`NonceStore::remember`] returns: boxed, because a shared store waits on the network
/// and stores are used as `Arc<dyn NonceStore>`.
pub type NonceFuture<'a> = Pin<Box<dyn Future<Output = Result<(), NonceError>> + Send + 'a>>;

/// Where used nonces are kept. Only requests whose signature verified reach it, so only a key
/// holder can fill it. The in-process store serves one node; a distributed deployment needs a
/// shared one (Redis `SET NX EX`), or a replay sent to another node would pass.
pub trait NonceStore: Send + Sync + Debug + 'static {
    /// Records `nonce` for `key_id` until `expires_at_s` (Unix seconds), unless it is already
    /// recorded and unexpired at `now_s` (`Reused`) or the store is full (`Full`).
    fn remember<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        now_s: u64,
        expires_at_s: u64,
    ) -> NonceFuture<'a>;
}

/// The embedded store: a set plus a queue in recording order. Expiries are recorded as the
/// node's now plus a constant, so the queue is in expiry order and pruning pops its front. If
/// the clock steps back, entries are kept longer than needed, never shorter.
#[derive(Debug)]
pub struct InProcessNonceStore {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<(String, String)>,
    by_expiry: VecDeque<(u64, String, String)>,
}

impl InProcessNonceStore {
    /// A store that holds at most `max` unexpired nonces (at least 1).
    pub fn new(max: usize) -> InProcessNonceStore {
        assert!(max > 0, "a nonce store must hold at least one nonce");
        InProcessNonceStore { max, inner: Mutex::new(Inner::default()) }
    }

    /// Unexpired nonces held (expired ones are dropped at the next `remember`).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it cannot leave the two collections disagreeing for long: both
        // are updated together below; keep serving.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for InProcessNonceStore {
    fn default() -> Self {
        InProcessNonceStore::new(NONCE_STORE_MAX_DEFAULT)
    }
}

impl NonceStore for InProcessNonceStore {
    fn remember<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        now_s: u64,
        expires_at_s: u64,
    ) -> NonceFuture<'a> {
        Box::pin(std::future::ready(self.remember_now(key_id, nonce, now_s, expires_at_s)))
    }
}

impl InProcessNonceStore {
    /// [`NonceStore::remember`] without the future: this store never waits.
    pub fn remember_now(
        &self,
        key_id: &str,
        nonce: &str,
        now_s: u64,
        expires_at_s: u64,
    ) -> Result<(), NonceError> {
        let mut inner = self.lock();
        while inner.by_expiry.front().is_some_and(|(at, _, _)| *at <= now_s) {
            if let Some((_, k, n)) = inner.by_expiry.pop_front() {
                inner.seen.remove(&(k, n));
            }
        }
        let entry = (key_id.to_string(), nonce.to_string());
        if inner.seen.contains(&entry) {
            return Err(NonceError::Reused);
        }
        if inner.seen.len() >= self.max {
            return Err(NonceError::Full(self.max));
        }
        inner.by_expiry.push_back((expires_at_s, entry.0.clone(), entry.1.clone()));
        inner.seen.insert(entry);
        assert_eq!(inner.seen.len(), inner.by_expiry.len(), "nonce set and queue disagree");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_again_until_it_expires_and_per_key() {
        let store = InProcessNonceStore::new(10);
        assert_eq!(store.remember_now("k", "n1", 100, 200), Ok(()));
        assert_eq!(store.remember_now("k", "n1", 199, 299), Err(NonceError::Reused));
        assert_eq!(store.remember_now("other", "n1", 199, 299), Ok(()));
        assert_eq!(store.remember_now("k", "n1", 200, 300), Ok(()), "expired at 200");
    }

    #[test]
    fn a_full_store_refuses_new_nonces_instead_of_forgetting_old_ones() {
        let store = InProcessNonceStore::new(2);
        assert_eq!(store.remember_now("k", "a", 0, 100), Ok(()));
        assert_eq!(store.remember_now("k", "b", 0, 100), Ok(()));
        assert_eq!(store.remember_now("k", "c", 50, 150), Err(NonceError::Full(2)));
        assert_eq!(store.remember_now("k", "a", 50, 150), Err(NonceError::Reused), "still known");
        assert_eq!(store.remember_now("k", "c", 100, 200), Ok(()), "room once a and b expired");
        assert_eq!(store.len(), 1);
    }
}
