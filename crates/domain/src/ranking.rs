//! The personal gift list: eligible gifts in two-level order (DESIGN.md §2).
//!
//! Level 1: the gift's registration class for the user (`active` where registered in the gift's
//! game, else `new`), in the campaign's `audience_order`. Level 2: the user's preference score for
//! the gift's game, highest first. Ties: gift id, so the order is total and the same on every node.
//!
//! This runs on every list request over every gift (at most `MAX_GIFTS`): it allocates the
//! result vector and nothing else.

use std::cmp::Reverse;

use crate::campaign::{Campaign, GameIndex, GiftIndex, MAX_GAMES};
use crate::eligibility::{self, RoleContext, Subject};
use crate::profile::Profile;

/// The sort key of one gift for one user; the list is in ascending key order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RankKey<'c> {
    /// Position of the gift's registration class in `audience_order` (0 first).
    pub class_position: u8,
    /// The user's preference score for the gift's game, reversed so that higher sorts first.
    pub preference: Reverse<u8>,
    pub gift_id: &'c str,
}

/// The rank key of `gift` for the user with `profile`.
pub fn rank_key<'c>(campaign: &'c Campaign, profile: &Profile, gift: GiftIndex) -> RankKey<'c> {
    let gift = &campaign.gifts[usize::from(gift.0)];
    let class = eligibility::registration_class(profile, gift.game);
    let class_position = if campaign.ranking.audience_order[0] == class { 0 } else { 1 };
    RankKey {
        class_position,
        preference: Reverse(profile.preference[usize::from(gift.game.0)]),
        gift_id: &gift.id,
    }
}

/// Sorts `gifts` into the user's order. Gift ids are unique, so the order is total and the
/// result does not depend on the input order.
pub fn rank(campaign: &Campaign, profile: &Profile, gifts: &mut [GiftIndex]) {
    gifts.sort_unstable_by(|a, b| {
        rank_key(campaign, profile, *a).cmp(&rank_key(campaign, profile, *b))
    });
}

/// A user's gift list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GiftList {
    /// Eligible gifts, best first.
    pub gifts: Vec<GiftIndex>,
    /// Some gift was left out only because its game's roles were unknown (game side slow or
    /// down): the list holds the role-independent part and the client should say so.
    pub degraded: bool,
}

/// The gift list: every gift that passes [`eligibility::check`], in rank order.
///
/// `roles_for_game` is asked at most once per game, and only for games where a gift with role
/// requirements passes every other rule (see [`eligibility::games_needing_roles`]); `degraded`
/// is set when one of those answers was [`RoleContext::Unknown`]. The list is empty when the
/// campaign is not open for the user; [`eligibility::check_open`] says why.
pub fn gift_list<'r>(
    campaign: &Campaign,
    subject: &Subject<'_>,
    mut roles_for_game: impl FnMut(GameIndex) -> RoleContext<'r>,
    sold_out: impl Fn(GiftIndex) -> bool,
    now_unix_s: i64,
) -> GiftList {
    let mut list = GiftList { gifts: Vec::new(), degraded: false };
    if eligibility::check_open(campaign, subject.user, now_unix_s).is_err() {
        return list;
    }
    list.gifts.reserve_exact(campaign.gifts.len());
    let mut roles: [Option<RoleContext<'r>>; MAX_GAMES] = [None; MAX_GAMES];
    for gift in &campaign.gifts {
        if eligibility::check_gift(campaign, gift, subject, sold_out(gift.index), now_unix_s)
            .is_err()
        {
            continue;
        }
        if eligibility::has_role_requirements(gift) {
            let slot = &mut roles[usize::from(gift.game.0)];
            let context = *slot.get_or_insert_with(|| roles_for_game(gift.game));
            match eligibility::check_roles(gift, context) {
                Ok(()) => {}
                Err(eligibility::Ineligible::RolesUnavailable) => {
                    list.degraded = true;
                    continue;
                }
                Err(_) => continue,
            }
        }
        list.gifts.push(gift.index);
    }
    rank(campaign, subject.profile, &mut list.gifts);
    list
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::campaign::RegistrationClass;
    use crate::eligibility::check;
    use crate::profile::GameSet;
    use crate::release::wave_of;
    use crate::role::{Role, RoleId, ZoneId};
    use crate::synth::REGIONS;

    const EXAMPLE: &str = include_str!("../../../config/spring-festival.toml");

    fn campaign(new_first: bool) -> Campaign {
        let text = if new_first {
            let from = r#"audience_order = ["active", "new"]"#;
            assert!(EXAMPLE.contains(from));
            EXAMPLE.replacen(from, r#"audience_order = ["new", "active"]"#, 1)
        } else {
            EXAMPLE.to_string()
        };
        Campaign::parse(&text, "x", &|_| None).unwrap()
    }

    fn wave0_user(c: &Campaign) -> u64 {
        (10_000..).find(|&u| wave_of(u, c.release.waves) == 0).unwrap()
    }

    fn ids(c: &Campaign, gifts: &[GiftIndex]) -> Vec<String> {
        gifts.iter().map(|g| c.gifts[usize::from(g.0)].id.clone()).collect()
    }

    fn game(c: &Campaign, id: &str) -> GameIndex {
        c.game_by_id(id).unwrap().index
    }

    /// Registered in Lantern Heroes and Cloud Kingdom, with veteran roles everywhere; prefers
    /// Dragon Boat Rush, then Cloud Kingdom; every other game scores 10.
    fn player(c: &Campaign) -> Profile {
        let mut preference = [10u8; MAX_GAMES];
        preference[usize::from(game(c, "dragon-boat-rush").0)] = 200;
        preference[usize::from(game(c, "cloud-kingdom").0)] = 150;
        preference[usize::from(game(c, "lantern-heroes").0)] = 100;
        Profile {
            registered: GameSet::default()
                .with(game(c, "lantern-heroes"))
                .with(game(c, "cloud-kingdom")),
            preference,
        }
    }

    fn veteran() -> Vec<Role> {
        vec![Role {
            zone_id: ZoneId(2),
            region: "cn-south".to_string(),
            role_id: RoleId(1),
            level: 60,
        }]
    }

    #[test]
    fn active_first_then_preference_then_id() {
        let c = campaign(false);
        let now = c.starts_at_unix_s + 3600;
        let profile = player(&c);
        let subject =
            Subject { user: wave0_user(&c), profile: &profile, ticket_issued_at_unix_s: now };
        let roles = veteran();
        let list = gift_list(&c, &subject, |_| RoleContext::AnyOf(&roles), |_| false, now);
        assert!(!list.degraded);
        assert_eq!(
            ids(&c, &list.gifts),
            [
                // active: Cloud Kingdom (150) before Lantern Heroes (100); ids break ties
                "ck-festival",
                "ck-lucky",
                "lh-festival",
                "lh-legend",
                // new: Dragon Boat Rush (200), then the 10s by id
                "dbr-starter",
                "fhr-starter",
                "iw-lucky",
                "iw-starter",
                "mp-starter",
                "mrr-lucky",
                "mrr-starter",
                "sa-starter",
                "sc-starter",
                "srt-starter",
            ]
        );
    }

    #[test]
    fn audience_order_new_first() {
        let c = campaign(true);
        assert_eq!(c.ranking.audience_order, [RegistrationClass::New, RegistrationClass::Active]);
        let now = c.starts_at_unix_s + 3600;
        let profile = player(&c);
        let subject =
            Subject { user: wave0_user(&c), profile: &profile, ticket_issued_at_unix_s: now };
        let roles = veteran();
        let list = gift_list(&c, &subject, |_| RoleContext::AnyOf(&roles), |_| false, now);
        assert_eq!(
            ids(&c, &list.gifts),
            [
                "dbr-starter",
                "fhr-starter",
                "iw-lucky",
                "iw-starter",
                "mp-starter",
                "mrr-lucky",
                "mrr-starter",
                "sa-starter",
                "sc-starter",
                "srt-starter",
                "ck-festival",
                "ck-lucky",
                "lh-festival",
                "lh-legend",
            ]
        );
    }

    #[test]
    fn unknown_roles_give_the_role_independent_part_and_degraded() {
        let c = campaign(false);
        let now = c.starts_at_unix_s + 3600;
        let profile = player(&c);
        let subject =
            Subject { user: wave0_user(&c), profile: &profile, ticket_issued_at_unix_s: now };
        let lh = game(&c, "lantern-heroes");
        let roles = veteran();
        let mut asked = Vec::new();
        let list = gift_list(
            &c,
            &subject,
            |g| {
                asked.push(g);
                if g == lh { RoleContext::Unknown } else { RoleContext::AnyOf(&roles) }
            },
            |_| false,
            now,
        );
        assert!(list.degraded);
        let got = ids(&c, &list.gifts);
        assert!(
            !got.contains(&"lh-festival".to_string()) && !got.contains(&"lh-legend".to_string())
        );
        assert!(
            got.contains(&"ck-festival".to_string()) && got.contains(&"dbr-starter".to_string())
        );
        // Asked once per game, and only where roles decide something.
        asked.sort();
        assert_eq!(asked, [lh, game(&c, "cloud-kingdom")]);

        // Unknown roles in a game whose gifts need none: not degraded.
        let newbie = Profile::NEW_USER;
        let subject = Subject { profile: &newbie, ..subject };
        let list = gift_list(&c, &subject, |_| RoleContext::Unknown, |_| false, now);
        assert!(!list.degraded);
        assert_eq!(list.gifts.len(), 13, "{:?}", ids(&c, &list.gifts));
    }

    #[test]
    fn empty_when_not_open_for_the_user() {
        let c = campaign(false);
        let profile = player(&c);
        let late = (10_000..).find(|&u| wave_of(u, c.release.waves) == 3).unwrap();
        for (user, now) in [
            (wave0_user(&c), c.starts_at_unix_s - 1),
            (wave0_user(&c), c.ends_at_unix_s),
            (late, c.starts_at_unix_s + 60),
        ] {
            let subject = Subject { user, profile: &profile, ticket_issued_at_unix_s: now };
            let list = gift_list(&c, &subject, |_| RoleContext::Unknown, |_| false, now);
            assert_eq!(list, GiftList { gifts: Vec::new(), degraded: false });
        }
    }

    /// A user's situation for the property tests: `None` roles mean the game side is down.
    #[derive(Debug, Clone)]
    struct Case {
        new_first: bool,
        user: u64,
        registered: u16,
        preference: [u8; MAX_GAMES],
        roles: Vec<Option<Vec<Role>>>,
        sold_out: u64,
        at_s: i64,
        login_age_s: i64,
    }

    fn role_strategy() -> impl Strategy<Value = Role> {
        (1u16..=8, 1u32..=60, 0usize..REGIONS.len()).prop_map(|(zone_id, level, r)| Role {
            zone_id: ZoneId(zone_id),
            region: REGIONS[r].to_string(),
            role_id: RoleId(u64::from(zone_id)),
            level,
        })
    }

    fn case_strategy() -> impl Strategy<Value = Case> {
        (
            any::<bool>(),
            any::<u64>(),
            0u16..1024,
            // Few distinct scores, so that ties by preference are common.
            prop::array::uniform16(prop_oneof![Just(0u8), Just(7), Just(255), any::<u8>()]),
            prop::collection::vec(
                prop::option::weighted(0.8, prop::collection::vec(role_strategy(), 0..3)),
                10,
            ),
            any::<u64>(),
            -30i64..1200,
            -30i64..2000,
        )
            .prop_map(
                |(new_first, user, registered, preference, roles, sold_out, at_s, login_age_s)| {
                    Case {
                        new_first,
                        user,
                        registered,
                        preference,
                        roles,
                        // Mostly in stock.
                        sold_out: sold_out & (sold_out >> 7) & (sold_out >> 13),
                        at_s,
                        login_age_s,
                    }
                },
            )
    }

    fn context(case: &Case, game: GameIndex) -> RoleContext<'_> {
        match &case.roles[usize::from(game.0)] {
            Some(roles) => RoleContext::AnyOf(roles),
            None => RoleContext::Unknown,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_list_is_the_eligible_set_in_key_order(case in case_strategy()) {
            let c = campaign(case.new_first);
            let profile =
                Profile { registered: GameSet(case.registered), preference: case.preference };
            let now = c.starts_at_unix_s + case.at_s;
            let subject = Subject {
                user: case.user,
                profile: &profile,
                ticket_issued_at_unix_s: now - case.login_age_s,
            };
            let sold_out = |g: GiftIndex| case.sold_out & (1 << g.0) != 0;
            let list = gift_list(&c, &subject, |g| context(&case, g), sold_out, now);

            // Keys strictly increase: a total order, consistent with the keys, no duplicates.
            for pair in list.gifts.windows(2) {
                prop_assert!(rank_key(&c, &profile, pair[0]) < rank_key(&c, &profile, pair[1]));
            }
            // Exactly the gifts `check` accepts.
            let eligible: Vec<GiftIndex> = c
                .gifts
                .iter()
                .filter(|g| {
                    check(&c, g, &subject, context(&case, g.game), sold_out(g.index), now).is_ok()
                })
                .map(|g| g.index)
                .collect();
            let mut listed = list.gifts.clone();
            listed.sort();
            prop_assert_eq!(&listed, &eligible);
            // Degraded exactly when unknown roles hid a gift that passes everything else.
            let hidden = c.gifts.iter().any(|g| {
                eligibility::has_role_requirements(g)
                    && case.roles[usize::from(g.game.0)].is_none()
                    && eligibility::check_without_roles(&c, g, &subject, sold_out(g.index), now)
                        .is_ok()
            });
            prop_assert_eq!(list.degraded, hidden);
            // Deterministic, and independent of the input order.
            let again = gift_list(&c, &subject, |g| context(&case, g), sold_out, now);
            prop_assert_eq!(&again, &list);
            let mut reversed = eligible.clone();
            reversed.reverse();
            rank(&c, &profile, &mut reversed);
            prop_assert_eq!(&reversed, &list.gifts);
        }

        #[test]
        fn rank_is_a_total_order_on_any_subset(
            new_first in any::<bool>(),
            registered in 0u16..1024,
            preference in prop::array::uniform16(0u8..3),
            subset in prop::collection::vec(any::<bool>(), 26),
            rotate in 0usize..26,
        ) {
            let c = campaign(new_first);
            let profile = Profile { registered: GameSet(registered), preference };
            let mut gifts: Vec<GiftIndex> = c
                .gifts
                .iter()
                .filter(|g| subset[usize::from(g.index.0)])
                .map(|g| g.index)
                .collect();
            let n = gifts.len();
            gifts.rotate_left(if n == 0 { 0 } else { rotate % n });
            let mut sorted = gifts.clone();
            rank(&c, &profile, &mut sorted);
            let mut by_key = gifts.clone();
            by_key.sort_by_key(|g| rank_key(&c, &profile, *g));
            prop_assert_eq!(&sorted, &by_key);
            for pair in sorted.windows(2) {
                let (a, b) = (rank_key(&c, &profile, pair[0]), rank_key(&c, &profile, pair[1]));
                prop_assert!(a < b);
                prop_assert!(a.class_position <= b.class_position);
                if a.class_position == b.class_position {
                    prop_assert!(a.preference.0 >= b.preference.0);
                }
            }
        }
    }
}
