//! The key layout.
//!
//! WARNING: persisted. Renaming a key, changing a hash tag or a value's form orphans the state of
//! every running campaign (its counters restart at zero: oversell and second coupons). Add keys;
//! never change these.
//!
//! `<ns>` is the deployment's namespace, `<c>` the campaign id:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<ns>:{<c>}:orders` | hash | order id → the domain `Order` as JSON (the coupon's redemption record too) |
//! | `<ns>:{<c>}:stock` | hash | gift id → units taken |
//! | `<ns>:{<c>}:u:<user>:gifts` | hash | gift id → units the user claimed |
//! | `<ns>:{<c>}:u:<user>:orders` | zset | the user's order ids, scored by `created_at_ms` |
//! | `<ns>:{<c>}:idem:<user>:<key>` | string | an idempotency record (see `lua/claim.lua`), with a Redis TTL |
//! | `<ns>:{<c>}:hv:u:<user>:<day>` | string | high-value claims of the user in that UTC day (day = unix ms / 86,400,000), with a Redis TTL |
//! | `<ns>:{<c>}:hv:h:<hour>` | string | high-value cents accepted in that UTC hour (hour = unix ms / 3,600,000), with a Redis TTL |
//! | `<ns>:{<c>}:should_send` | zset | order ids recorded but not yet published, scored by `ready_at_ms` |
//! | `<ns>:{<c>}:sent` | zset | the actual-send log: delivered order ids, scored by `delivered_at_ms` |
//! | `<ns>:{<c>}:order_ids` | zset | every order id, all scored 0, so in id order (`ZRANGEBYLEX`): reconciliation's scan; written by the claim script, backfilled for orders recorded before it existed (`scan.rs`) |
//! | `<ns>:{<c>}:published` | hash | order id → the JetStream sequence of its latest message (publisher, sweeper, requeue): whether the stream still holds it; removed when the order reaches a final state (`settle.lua`), so it holds only orders on their way |
//! | `<ns>:{<c>}:requeues` | hash | order id → how many times reconciliation published it again; its messages after the first carry the id `<order id>:r<n>` |
//! | `<ns>:{<c>:grants:<channel>}:granted` | string | coupons granted on the channel |
//! | `<ns>:{<c>:grants:<channel>}:users` | hash | user → coupons granted to them on the channel |
//! | `<ns>:series:{<ns>:series}:…` | (several) | the fleet's monitoring series, one hash tag for the whole store: see `series/layout.rs` |
//! | `<ns>:{<c>}:layout` | string | `shards=<S>`: the claim layout a campaign's state was first written in (absent: one shard) |
//!
//! A campaign whose claims are split over `S > 1` claim shards (see "Claim shards" below) keeps
//! every claim key above except the grants' under `<ns>:{<c>:s<k>}` instead of `<ns>:{<c>}`, for
//! each shard `k` in `0..S`, and adds:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<ns>:{<c>:s<k>}:quota` | hash | resource → units this shard received from the pool minus what it gave back (a gift id: units of stock; `hv:<hour>`: cents of that hour's high-value budget) |
//! | `<ns>:{<c>:s<k>}:quota:received` | set | ids of the transfers this shard applied (so a repeated transfer adds nothing) |
//! | `<ns>:{<c>:s<k>}:quota:releases` | hash | release id → `<resource>\|<units>`: quota taken out of this shard, not yet known to be back in the pool |
//! | `<ns>:{<c>}:quota:allotted` | hash | resource → units the pool gave to shards and did not get back |
//! | `<ns>:{<c>}:quota:transfers` | hash | transfer id → `<shard>\|<resource>\|<units>`: allotted by the pool, not yet known to be applied by the shard |
//! | `<ns>:{<c>}:quota:returned` | set | ids of the releases the pool took back |
//! | `<ns>:{<c>}:quota:seq`, `<ns>:{<c>:s<k>}:quota:seq` | string | the counter naming transfers (`t<n>`) and releases (`s<k>-<n>`) |
//!
//! # Slots (Redis Cluster)
//!
//! A script may touch only keys of one slot, so each script's keys share a hash tag (the part in
//! braces, which alone decides the slot):
//!
//! - **All claim state of a campaign shares the tag `{<c>}`**: one slot, so one shard. A claim
//!   reads and writes keys of three scopes at once — the coupon's (its order, shared by every
//!   gift the coupon might be claimed for), the user's (per-gift counts, idempotency records
//!   spanning gifts and coupons) and the gift's (its stock, shared by all users) — and must do
//!   so atomically. Per-gift tags would split one coupon's redemption over several slots, so a
//!   coupon could be redeemed once per gift; per-user tags would split a gift's stock. Either
//!   split needs a cross-slot protocol (reserve, then commit) that one script cannot be. The
//!   limit: one campaign's claims run on one shard, one script at a time (Redis runs scripts
//!   serially), which is also what makes them exactly atomic. Other campaigns land on other
//!   slots. When one shard is too small, the claims are split (next point).
//!   The keys added for reconciliation (`order_ids`, `published`, `requeues`) carry the same
//!   tag: the claim script indexes its order, and the requeue script writes the order,
//!   `should_send` and the generation, atomically.
//! - **Claim shards: `{<c>:s<k>}`**, for a campaign made with `S > 1` shards. A user's whole
//!   claim state (their coupons' orders, per-gift counts, idempotency records, high-value day,
//!   and the per-order state that follows: should-send, published, requeues, the send log, the
//!   order index) lives in the shard `k` = [`shard_of`]`(user, S)`, so a claim's coupon and user
//!   scopes stay in one slot. The third scope, a gift's stock (and an hour's high-value budget),
//!   is shared by all users; it is split into *quotas*: each shard may take at most what it
//!   holds in its `quota` hash, and the claim script checks its own shard's quota and units
//!   taken in the same atomic step as today, so no shard ever takes more than its quota. Quota
//!   moves between the pool (`{<c>}`, which knows the campaign's stock) and a shard by a
//!   transfer in two scripts, one per slot, each idempotent by the transfer's id, with the
//!   pending transfer recorded on the giving side until the receiving side has applied it (a
//!   sweeper finishes transfers whose mover died). At every moment the units of a resource
//!   are split without overlap between the pool, the shards' quotas and the transfers in
//!   flight, so the sum of the shards' units taken never exceeds the stock: **no oversell**.
//!   Quota left in a shard when the pool is empty is released back to the pool on demand (see
//!   `quota.rs`), so a gift sells out everywhere before any claim answers `out_of_stock` for
//!   good.
//! - **Grants are tagged per channel, `{<c>:grants:<channel>}`**: a grant touches only its
//!   channel's budget counter and the user's count on that channel, so the three channels'
//!   grants may run on three shards, apart from the claims.
//!
//! `<ns>` comes first and outside the tag: a namespace's keys are found with `SCAN MATCH
//! <ns>:*`, and deployments sharing a cluster share slots, not keys. It is checked (see
//! [`check_namespace`]) to hold no brace, so the campaign's tag is always the key's first one,
//! and no glob character, so that `SCAN` pattern means what it says.

use hongbao_domain::Channel;
use hongbao_store::StoreError;

/// Most claim shards a campaign may be split into (each adds a few keys to every reconciliation
/// scan and a quota per gift; past a hundred masters, other limits come first).
pub const CLAIM_SHARDS_MAX: u16 = 128;

/// The claim shard of `user` among `shards` (`1..=`[`CLAIM_SHARDS_MAX`]).
///
/// WARNING: persisted — where every user's claim state lives. Changing it moves users away from
/// their orders and counts (second coupons, limits restarting at zero).
pub fn shard_of(user: u64, shards: u16) -> u16 {
    // splitmix64's finaliser: user ids are often sequential or share low bits; mixed, they
    // spread evenly over any number of shards.
    let mut x = user;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    u16::try_from(x % u64::from(shards.max(1))).unwrap_or(0)
}

/// Refuses a shard count outside `1..=`[`CLAIM_SHARDS_MAX`].
pub fn check_shards(shards: u16) -> Result<(), StoreError> {
    if (1..=CLAIM_SHARDS_MAX).contains(&shards) {
        Ok(())
    } else {
        Err(StoreError::InvalidConfig(format!(
            "claim shards must be 1..={CLAIM_SHARDS_MAX}, not {shards}"
        )))
    }
}

/// Longest namespace accepted.
pub const NAMESPACE_MAX_LEN: usize = 64;

/// Refuses a namespace that could break the layout: 1..=[`NAMESPACE_MAX_LEN`] characters of
/// `[A-Za-z0-9_.-]`.
pub fn check_namespace(namespace: &str) -> Result<(), StoreError> {
    let ok = (1..=NAMESPACE_MAX_LEN).contains(&namespace.len())
        && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidConfig(format!(
            "redis namespace `{namespace}` must be 1..={NAMESPACE_MAX_LEN} characters of \
             [A-Za-z0-9_.-]"
        )))
    }
}

/// The names of one campaign's keys under one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `<ns>:{<c>}`: the prefix of every claim key.
    claims: String,
    /// `<ns>:{<c>:grants:<channel>}` by channel index.
    grants: [String; 3],
}

/// The two keys of one channel's grants.
pub(crate) struct GrantKeys {
    pub granted: String,
    pub users: String,
}

impl Keys {
    pub fn new(namespace: &str, campaign_id: &str) -> Self {
        let grants =
            |channel: Channel| format!("{namespace}:{{{campaign_id}:grants:{}}}", channel.as_str());
        Self {
            claims: format!("{namespace}:{{{campaign_id}}}"),
            grants: [grants(Channel::Swipe), grants(Channel::ArMap), grants(Channel::Scan)],
        }
    }

    /// The claim keys of shard `k` of a campaign split into more than one shard: the same
    /// names as [`Keys::new`]'s under the tag `{<c>:s<k>}` (campaign ids hold no `:`, so no
    /// campaign's own tag can be a shard's).
    pub fn shard(namespace: &str, campaign_id: &str, k: u16) -> Self {
        let mut keys = Self::new(namespace, campaign_id);
        keys.claims = format!("{namespace}:{{{campaign_id}:s{k}}}");
        keys
    }

    pub fn grant(&self, channel: Channel) -> GrantKeys {
        let prefix = &self.grants[channel_index(channel)];
        GrantKeys { granted: format!("{prefix}:granted"), users: format!("{prefix}:users") }
    }

    pub fn orders(&self) -> String {
        format!("{}:orders", self.claims)
    }

    pub fn stock(&self) -> String {
        format!("{}:stock", self.claims)
    }

    pub fn user_gifts(&self, user: u64) -> String {
        format!("{}:u:{user}:gifts", self.claims)
    }

    pub fn user_orders(&self, user: u64) -> String {
        format!("{}:u:{user}:orders", self.claims)
    }

    /// The user's decimal id ends at the first `:`, so (user, key) pairs never share a name
    /// whatever visible characters the key holds.
    pub fn idempotency(&self, user: u64, key: &str) -> String {
        format!("{}:idem:{user}:{key}", self.claims)
    }

    /// The user's high-value claims in a UTC day (added with the high-value rules).
    pub fn high_value_user(&self, user: u64, day: u64) -> String {
        format!("{}:hv:u:{user}:{day}", self.claims)
    }

    /// High-value cents accepted in a UTC hour (added with the high-value rules).
    pub fn high_value_hour(&self, hour: u64) -> String {
        format!("{}:hv:h:{hour}", self.claims)
    }

    pub fn should_send(&self) -> String {
        format!("{}:should_send", self.claims)
    }

    pub fn sent(&self) -> String {
        format!("{}:sent", self.claims)
    }

    /// Every order id in id order (added for reconciliation's scan).
    pub fn order_ids(&self) -> String {
        format!("{}:order_ids", self.claims)
    }

    /// Order id → stream sequence of its latest message (added for reconciliation).
    pub fn published(&self) -> String {
        format!("{}:published", self.claims)
    }

    /// Order id → requeue generation (added for reconciliation).
    pub fn requeues(&self) -> String {
        format!("{}:requeues", self.claims)
    }

    /// The campaign's claim layout (pool side, `{<c>}`).
    pub fn layout(&self) -> String {
        format!("{}:layout", self.claims)
    }

    /// A shard's quota per resource (shard side).
    pub fn quota(&self) -> String {
        format!("{}:quota", self.claims)
    }

    /// Transfers a shard applied (shard side).
    pub fn quota_received(&self) -> String {
        format!("{}:quota:received", self.claims)
    }

    /// Quota taken out of a shard, not yet back in the pool (shard side).
    pub fn quota_releases(&self) -> String {
        format!("{}:quota:releases", self.claims)
    }

    /// The counter naming quota moves (pool side: transfers; shard side: releases).
    pub fn quota_seq(&self) -> String {
        format!("{}:quota:seq", self.claims)
    }

    /// Units the pool gave out, per resource (pool side).
    pub fn pool_allotted(&self) -> String {
        format!("{}:quota:allotted", self.claims)
    }

    /// Transfers allotted, not yet known applied (pool side).
    pub fn pool_transfers(&self) -> String {
        format!("{}:quota:transfers", self.claims)
    }

    /// Releases the pool took back (pool side).
    pub fn pool_returned(&self) -> String {
        format!("{}:quota:returned", self.claims)
    }
}

/// Dense index of a channel for the adapter's arrays. Not persisted (keys name the channel).
pub(crate) fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Swipe => 0,
        Channel::ArMap => 1,
        Channel::Scan => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot-deciding tag of a key: the first `{…}` with something inside, as Redis reads it.
    fn tag(key: &str) -> &str {
        let open = key.find('{').expect("a tag");
        let close = open + key[open..].find('}').expect("closed");
        &key[open + 1..close]
    }

    #[test]
    fn each_scripts_keys_share_one_tag() {
        let keys = Keys::new("hb-test.1", "spring");
        let claim = [
            keys.orders(),
            keys.stock(),
            keys.user_gifts(7),
            keys.user_orders(7),
            keys.should_send(),
            keys.sent(),
            keys.order_ids(),
            keys.published(),
            keys.requeues(),
            keys.high_value_user(7, 20_000),
            keys.high_value_hour(480_000),
            keys.idempotency(7, "{other}:key"),
        ];
        assert!(claim.iter().all(|k| tag(k) == "spring"), "{claim:?}");
        let grant = keys.grant(Channel::ArMap);
        assert_eq!(tag(&grant.granted), "spring:grants:ar_map");
        assert_eq!(tag(&grant.users), tag(&grant.granted));
        assert!(claim.iter().chain([&grant.granted]).all(|k| k.starts_with("hb-test.1:")));
    }

    #[test]
    fn a_shards_keys_share_its_own_tag() {
        let shard = Keys::shard("hb", "spring", 3);
        for key in [shard.orders(), shard.stock(), shard.quota(), shard.quota_releases()] {
            assert_eq!(tag(&key), "spring:s3", "{key}");
        }
        let pool = Keys::new("hb", "spring");
        for key in [pool.pool_allotted(), pool.pool_transfers(), pool.pool_returned()] {
            assert_eq!(tag(&key), "spring", "{key}");
        }
    }

    #[test]
    fn users_spread_evenly_over_shards() {
        let shards = 16u16;
        let mut counts = [0u32; 16];
        for user in 0..160_000u64 {
            counts[usize::from(shard_of(user, shards))] += 1;
        }
        // 10,000 expected per shard; sequential ids must not pile up on a few.
        assert!(counts.iter().all(|c| (9_500..=10_500).contains(c)), "{counts:?}");
        assert_eq!(shard_of(42, 1), 0);
        assert!(check_shards(0).is_err() && check_shards(CLAIM_SHARDS_MAX + 1).is_err());
    }

    #[test]
    fn namespaces_that_could_break_the_layout_are_refused() {
        for bad in ["", "a{b", "a}b", "a*", "a?b", "a[b]", "a:b", "a b", &"x".repeat(65)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
        for good in ["hongbao", "prod-eu.1", "T_2", &"x".repeat(64)] {
            assert!(check_namespace(good).is_ok(), "{good:?}");
        }
    }
}
