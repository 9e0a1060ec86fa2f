//! Micro-benchmarks of the pure functions on every request's path: ticket and
//! coupon verification, eligibility of one gift, a whole gift list (eligibility + ranking), order
//! id derivation and a profile lookup. Run: `cargo bench -p hongbao-domain`.
//!
//! Benchmarks are not tests: nothing here asserts a time, only that the inputs take the intended
//! path (a valid ticket verifies, the list is not empty, ...), so a figure never measures an
//! early rejection by mistake.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hongbao_domain::campaign::GameIndex;
use hongbao_domain::eligibility::{self, RoleContext, Subject};
use hongbao_domain::profile::{ProfileHeader, ProfileWriter};
use hongbao_domain::synth::{FIRST_USER_ID, SplitMix64, SynthModel};
use hongbao_domain::{
    Campaign, Channel, Coupon, CouponKey, GiftIndex, OrderId, Profile, ProfileTable, Role,
    derive_coupon_key, gift_list, ranking, sign_coupon, sign_ticket, verify_coupon, verify_ticket,
};

const CAMPAIGN: &str = include_str!("../../../config/spring-festival.toml");
const SEED: u64 = 42;
/// Users in the profile table of the lookup benchmark (12 bytes each with ten games).
const TABLE_USERS: u64 = 1_000_000;

struct Fixture {
    campaign: Campaign,
    coupon_key: CouponKey,
    /// A moment when the campaign is open for every wave.
    now_unix_s: i64,
    model: SynthModel,
}

fn fixture() -> Fixture {
    let campaign =
        Campaign::parse(CAMPAIGN, "spring-festival.toml", &|_| None).expect("shipped campaign");
    let coupon_secret = match &campaign.auth.coupon_secret {
        Some(secret) => secret.0.clone(),
        None => campaign.auth.ticket_keys[0].secret.clone(),
    };
    let coupon_key = derive_coupon_key(&coupon_secret);
    let now_unix_s = campaign.starts_at_unix_s + 86_400;
    let model = SynthModel::new(SEED, TABLE_USERS, campaign.games.len());
    Fixture { campaign, coupon_key, now_unix_s, model }
}

fn tokens(c: &mut Criterion) {
    let f = fixture();
    let keys = &f.campaign.auth.ticket_keys;
    let max_age_s = f.campaign.auth.ticket_max_age_s;
    let ticket = sign_ticket(&keys[0], 123_456, f.now_unix_s - 60, 3_600);
    assert!(verify_ticket(keys, &ticket, f.now_unix_s, max_age_s).is_ok());

    let coupon = Coupon {
        campaign_id: f.campaign.id.clone(),
        user: 123_456,
        channel: Channel::Swipe,
        serial: 3,
        expires_at_unix_s: f.now_unix_s + 3_600,
    };
    let token = sign_coupon(&f.coupon_key, &coupon);
    assert_eq!(verify_coupon(&f.coupon_key, &token, &f.campaign.id, f.now_unix_s), Ok(coupon));

    let mut g = c.benchmark_group("tokens");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_ticket", |b| {
        b.iter(|| {
            verify_ticket(black_box(keys), black_box(&ticket), f.now_unix_s, max_age_s)
                .expect("valid ticket")
        })
    });
    g.bench_function("verify_coupon", |b| {
        b.iter(|| {
            verify_coupon(
                black_box(&f.coupon_key),
                black_box(&token),
                black_box(&f.campaign.id),
                f.now_unix_s,
            )
            .expect("valid coupon")
        })
    });
    g.finish();
}

/// The first user of the model registered in exactly three games, with their roles per game.
fn three_game_user(f: &Fixture) -> (u64, Profile, Vec<Vec<Role>>) {
    let user = (FIRST_USER_ID..)
        .find(|&u| f.model.profile(u).registered.0.count_ones() == 3)
        .expect("a user registered in three games");
    let roles = (0..f.campaign.games.len())
        .map(|g| f.model.roles(user, GameIndex(u8::try_from(g).expect("at most 16 games"))))
        .collect();
    (user, f.model.profile(user), roles)
}

fn eligibility_and_ranking(c: &mut Criterion) {
    let f = fixture();
    let (user, profile, roles) = three_game_user(&f);
    let subject = Subject { user, profile: &profile, ticket_issued_at_unix_s: f.now_unix_s - 60 };
    let roles_for_game = |game: GameIndex| RoleContext::AnyOf(&roles[usize::from(game.0)]);
    let list = gift_list(&f.campaign, &subject, roles_for_game, |_| false, f.now_unix_s);
    assert!(!list.gifts.is_empty() && !list.degraded);

    // One gift through every rule, role requirements included: a listed gift that has them, or
    // failing that the first listed gift.
    let listed = |i: &GiftIndex| &f.campaign.gifts[usize::from(i.0)];
    let gift = list
        .gifts
        .iter()
        .map(listed)
        .find(|g| eligibility::has_role_requirements(g))
        .unwrap_or_else(|| listed(&list.gifts[0]));
    let gift_roles = RoleContext::AnyOf(&roles[usize::from(gift.game.0)]);
    assert!(
        eligibility::check(&f.campaign, gift, &subject, gift_roles, false, f.now_unix_s).is_ok()
    );

    eprintln!(
        "gift list fixture: user {user} registered in {} of {} games, {} roles, {} of {} gifts \
         listed; single check on `{}`",
        profile.registered.0.count_ones(),
        f.campaign.games.len(),
        roles.iter().map(Vec::len).sum::<usize>(),
        list.gifts.len(),
        f.campaign.gifts.len(),
        gift.id,
    );

    let mut all: Vec<GiftIndex> = f.campaign.gifts.iter().map(|g| g.index).collect();
    let mut g = c.benchmark_group("eligibility");
    g.throughput(Throughput::Elements(1));
    g.bench_function("check_one_gift", |b| {
        b.iter(|| {
            eligibility::check(
                black_box(&f.campaign),
                black_box(gift),
                black_box(&subject),
                gift_roles,
                false,
                f.now_unix_s,
            )
        })
    });
    g.bench_function("gift_list_26_gifts_3_games", |b| {
        b.iter(|| {
            gift_list(
                black_box(&f.campaign),
                black_box(&subject),
                roles_for_game,
                |_| false,
                black_box(f.now_unix_s),
            )
        })
    });
    g.bench_function("rank_26_gifts", |b| {
        b.iter(|| {
            // Reversed each time so the sort has work to do whatever order it left.
            all.reverse();
            ranking::rank(black_box(&f.campaign), black_box(&profile), black_box(&mut all));
        })
    });
    g.finish();
}

fn order_id(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("order");
    g.throughput(Throughput::Elements(1));
    g.bench_function("order_id_derive", |b| {
        b.iter(|| {
            OrderId::derive(black_box(&f.campaign.id), black_box(123_456), black_box("swipe-3"))
        })
    });
    g.finish();
}

fn profile_lookup(c: &mut Criterion) {
    let f = fixture();
    let header = ProfileHeader {
        seed: SEED,
        first_user_id: FIRST_USER_ID,
        user_count: TABLE_USERS,
        game_ids: f.campaign.games.iter().map(|g| g.id.clone()).collect(),
    };
    let mut writer = ProfileWriter::new(Vec::new(), header).expect("profile header");
    for user in FIRST_USER_ID..FIRST_USER_ID + TABLE_USERS {
        writer.push(&f.model.profile(user)).expect("write to memory");
    }
    let bytes = writer.finish().expect("write to memory");
    let table = ProfileTable::read(bytes.as_slice()).expect("read back");
    assert_eq!(table.get(FIRST_USER_ID + 7), f.model.profile(FIRST_USER_ID + 7));

    let mut g = c.benchmark_group("profile");
    g.throughput(Throughput::Elements(1));
    // Random users, so most lookups miss the CPU caches as in production; includes one
    // SplitMix64 step (about a nanosecond) to pick the user.
    let mut rng = SplitMix64::new(SEED);
    g.bench_function("lookup_random_user_1m_table", |b| {
        b.iter(|| table.get(FIRST_USER_ID + rng.next_u64() % TABLE_USERS))
    });
    g.finish();
}

criterion_group!(benches, tokens, eligibility_and_ranking, order_id, profile_lookup);
criterion_main!(benches);
