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
//! | `<ns>:{<c>}:published` | hash | order id → the JetStream sequence of its latest message (publisher, sweeper, requeue): whether the stream still holds it |
//! | `<ns>:{<c>}:requeues` | hash | order id → how many times reconciliation published it again; its messages after the first carry the id `<order id>:r<n>` |
//! | `<ns>:{<c>:grants:<channel>}:granted` | string | coupons granted on the channel |
//! | `<ns>:{<c>:grants:<channel>}:users` | hash | user → coupons granted to them on the channel |
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
//!   slots. When one shard is too small, the next step is stock buckets per gift under their
//!   own tags with the coupon and user keys kept in one place, a design of its own.
//!   The keys added for reconciliation (`order_ids`, `published`, `requeues`) carry the same
//!   tag: the claim script indexes its order, and the requeue script writes the order,
//!   `should_send` and the generation, atomically.
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
    fn namespaces_that_could_break_the_layout_are_refused() {
        for bad in ["", "a{b", "a}b", "a*", "a?b", "a[b]", "a:b", "a b", &"x".repeat(65)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
        for good in ["hongbao", "prod-eu.1", "T_2", &"x".repeat(64)] {
            assert!(check_namespace(good).is_ok(), "{good:?}");
        }
    }
}
