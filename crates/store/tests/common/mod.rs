//! The behavioural suite every `GrantLedger` passes. Each function takes a fresh, empty store.
#![allow(dead_code)] // each test binary uses a part of it

use std::collections::BTreeMap;
use std::sync::Arc;

use hongbao_store::{Channel, GrantLedger, GrantOutcome, GrantRequest};

pub fn req(user: u64, channel: Channel, per_user_limit: u32, budget: u64) -> GrantRequest {
    GrantRequest { user, channel, per_user_limit, budget }
}

pub async fn grant_ok<L: GrantLedger>(store: &L, req: GrantRequest) -> GrantOutcome {
    store.grant(req).await.expect("the store answers")
}

pub async fn serials_count_per_user_and_stop_at_the_limit<L: GrantLedger>(store: L) {
    for serial in 1..=3 {
        assert_eq!(
            grant_ok(&store, req(1, Channel::Swipe, 3, 100)).await,
            GrantOutcome::Granted { serial }
        );
    }
    assert_eq!(
        grant_ok(&store, req(1, Channel::Swipe, 3, 100)).await,
        GrantOutcome::UserLimitReached
    );
    // Another user and another channel count separately.
    assert_eq!(
        grant_ok(&store, req(2, Channel::Swipe, 3, 100)).await,
        GrantOutcome::Granted { serial: 1 }
    );
    assert_eq!(
        grant_ok(&store, req(1, Channel::Scan, 3, 100)).await,
        GrantOutcome::Granted { serial: 1 }
    );
    // A raised limit (reloaded campaign) continues the serials, never restarts them.
    assert_eq!(
        grant_ok(&store, req(1, Channel::Swipe, 4, 100)).await,
        GrantOutcome::Granted { serial: 4 }
    );
    assert_eq!(store.granted(Channel::Swipe), 5);
    assert_eq!(store.granted(Channel::Scan), 1);
    assert_eq!(store.granted(Channel::ArMap), 0);
}

pub async fn budgets_are_per_channel_and_checked_first<L: GrantLedger>(store: L) {
    for user in 0..5 {
        assert!(matches!(
            grant_ok(&store, req(user, Channel::ArMap, 1, 5)).await,
            GrantOutcome::Granted { serial: 1 }
        ));
    }
    assert_eq!(
        grant_ok(&store, req(99, Channel::ArMap, 1, 5)).await,
        GrantOutcome::BudgetExhausted
    );
    // A user at their limit on an exhausted channel hears about the budget.
    assert_eq!(grant_ok(&store, req(0, Channel::ArMap, 1, 5)).await, GrantOutcome::BudgetExhausted);
    // Other channels are untouched.
    assert_eq!(
        grant_ok(&store, req(99, Channel::Swipe, 1, 5)).await,
        GrantOutcome::Granted { serial: 1 }
    );
    // A raised budget reopens the channel.
    assert_eq!(
        grant_ok(&store, req(99, Channel::ArMap, 1, 6)).await,
        GrantOutcome::Granted { serial: 1 }
    );
    assert_eq!(store.granted(Channel::ArMap), 6);
}

pub async fn zero_limits_grant_nothing<L: GrantLedger>(store: L) {
    assert_eq!(
        grant_ok(&store, req(1, Channel::Scan, 0, 10)).await,
        GrantOutcome::UserLimitReached
    );
    assert_eq!(grant_ok(&store, req(1, Channel::Scan, 3, 0)).await, GrantOutcome::BudgetExhausted);
    assert_eq!(store.granted(Channel::Scan), 0);
}

pub async fn extreme_user_ids_are_distinct<L: GrantLedger>(store: L) {
    for user in [0, 1, u64::MAX - 1, u64::MAX] {
        assert_eq!(
            grant_ok(&store, req(user, Channel::Swipe, 1, 100)).await,
            GrantOutcome::Granted { serial: 1 }
        );
    }
    assert_eq!(store.granted(Channel::Swipe), 4);
}

/// 64 tasks grab concurrently on all channels; checks limits, budgets and serials exactly.
/// Returns the number of grants, for adapter-specific checks.
pub async fn concurrent_grabs_hold_limits_and_budgets_exactly<L: GrantLedger>(
    store: Arc<L>,
    users: u64,
    attempts_per_task: u64,
) -> u64 {
    const TASKS: u64 = 64;
    const PER_USER: u32 = 3;
    const BUDGET: u64 = 500;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for attempt in 0..attempts_per_task {
                let user = (task * 7 + attempt * 13) % users;
                let channel = Channel::ALL[((task + attempt) % 3) as usize];
                let outcome =
                    store.grant(req(user, channel, PER_USER, BUDGET)).await.expect("answered");
                seen.push((user, channel, outcome));
            }
            seen
        }));
    }
    let mut serials: BTreeMap<(u64, Channel), Vec<u32>> = BTreeMap::new();
    let mut granted: BTreeMap<Channel, u64> = BTreeMap::new();
    let mut attempts: BTreeMap<(u64, Channel), u32> = BTreeMap::new();
    for task in tasks {
        for (user, channel, outcome) in task.await.expect("task completes") {
            *attempts.entry((user, channel)).or_default() += 1;
            if let GrantOutcome::Granted { serial } = outcome {
                serials.entry((user, channel)).or_default().push(serial);
                *granted.entry(channel).or_default() += 1;
            }
        }
    }
    for (key, list) in &mut serials {
        list.sort_unstable();
        let n = list.len() as u32;
        assert!(n <= PER_USER, "{key:?} got {n} coupons");
        assert_eq!(*list, (1..=n).collect::<Vec<_>>(), "serials of {key:?}");
    }
    let mut total = 0;
    for channel in Channel::ALL {
        // Below the budget no request was refused for it, so every pair got min(attempts, cap).
        let demand: u64 = attempts
            .iter()
            .filter(|((_, c), _)| *c == channel)
            .map(|(_, n)| u64::from((*n).min(PER_USER)))
            .sum();
        let expected = BUDGET.min(demand);
        let got = granted.get(&channel).copied().unwrap_or(0);
        assert_eq!(got, expected, "channel {channel}");
        assert_eq!(store.granted(channel), got, "granted() of {channel}");
        total += got;
    }
    total
}

pub mod claims;
