//! Eligibility: may this user have this gift, now? One function, [`check`], decides it for both
//! the gift list and the claim, so what the list shows the claim accepts (DESIGN.md §2).
//!
//! Rules, checked in this order; the first that fails is the answer:
//!
//! 1. campaign window: `starts_at <= now < ends_at` (`campaign_not_open`, `campaign_closed`);
//! 2. release wave: `now >= release::opens_at(user)` (`wave_not_open`);
//! 3. audience against registration in the gift's game: `new` only where the user is not
//!    registered, `active` only where they are, `any` both (`audience_mismatch`);
//! 4. stock: not sold out (`sold_out`);
//! 5. high value: the login ticket was issued at most `high_value_fresh_login_s` ago
//!    (`login_not_fresh`);
//! 6. role requirements (`min_role_level`, `regions`), only for gifts that have them:
//!    `role_level_too_low`, `region_not_allowed`, `no_qualifying_role`, `roles_unavailable`.
//!
//! Campaign-wide rules come first, so a closed campaign says so whatever the gift. The role rule
//! comes last because it is the only one that needs the game side: everything that can be decided
//! without it is decided first ([`check_without_roles`]), which also tells the API which games
//! are worth a role look-up at all ([`games_needing_roles`]).

use crate::campaign::{Audience, Campaign, GameIndex, Gift, GiftIndex, RegistrationClass};
use crate::profile::{GameSet, Profile};
use crate::release;
use crate::role::Role;

/// What is known about the user's roles in the gift's game.
#[derive(Clone, Copy, Debug)]
pub enum RoleContext<'a> {
    /// Gift list: all of the user's roles in the gift's game (possibly none). A gift with role
    /// requirements passes when at least one role meets all of them.
    AnyOf(&'a [Role]),
    /// Claim: the role the gift goes to. The caller has checked that the role exists and belongs
    /// to the user in the gift's game.
    Chosen(&'a Role),
    /// The game side is slow or down: only gifts without role requirements pass.
    Unknown,
}

/// Who asks.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub user: u64,
    pub profile: &'a Profile,
    /// From the verified login ticket; high-value gifts need a recent login.
    pub ticket_issued_at_unix_s: i64,
}

/// Why a user may not have a gift. [`code`](Ineligible::code) is the API's error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error("the campaign opens at {starts_at_unix_s}")]
    CampaignNotOpen { starts_at_unix_s: i64 },
    #[error("the campaign ended at {ended_at_unix_s}")]
    CampaignClosed { ended_at_unix_s: i64 },
    #[error("the campaign opens for this user at {opens_at_unix_s}")]
    WaveNotOpen { opens_at_unix_s: i64 },
    #[error(
        "the gift is for {} users; this user is {} in its game",
        audience.as_str(),
        class.as_str()
    )]
    AudienceMismatch { audience: Audience, class: RegistrationClass },
    #[error("the gift is sold out")]
    SoldOut,
    #[error("the gift needs a login within the last {max_age_s} s")]
    LoginNotFresh { max_age_s: u64 },
    #[error("the gift needs a role of level {required}; the chosen role is level {actual}")]
    RoleLevelTooLow { required: u32, actual: u32 },
    #[error("the gift cannot be delivered to a role in region `{region}`")]
    RegionNotAllowed { region: String },
    #[error("none of the user's roles in the gift's game meets its requirements")]
    NoQualifyingRole,
    #[error("the user's roles cannot be checked right now")]
    RolesUnavailable,
}

impl Ineligible {
    /// Stable snake_case code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            Ineligible::CampaignNotOpen { .. } => "campaign_not_open",
            Ineligible::CampaignClosed { .. } => "campaign_closed",
            Ineligible::WaveNotOpen { .. } => "wave_not_open",
            Ineligible::AudienceMismatch { .. } => "audience_mismatch",
            Ineligible::SoldOut => "sold_out",
            Ineligible::LoginNotFresh { .. } => "login_not_fresh",
            Ineligible::RoleLevelTooLow { .. } => "role_level_too_low",
            Ineligible::RegionNotAllowed { .. } => "region_not_allowed",
            Ineligible::NoQualifyingRole => "no_qualifying_role",
            Ineligible::RolesUnavailable => "roles_unavailable",
        }
    }

    /// A short fixed sentence for users (no numbers, nothing to allocate); `Display` has details.
    pub fn reason(&self) -> &'static str {
        match self {
            Ineligible::CampaignNotOpen { .. } => "The campaign has not started yet.",
            Ineligible::CampaignClosed { .. } => "The campaign has ended.",
            Ineligible::WaveNotOpen { .. } => "Your turn has not come yet; please try again soon.",
            Ineligible::AudienceMismatch { .. } => "This gift is not meant for your account.",
            Ineligible::SoldOut => "This gift is sold out.",
            Ineligible::LoginNotFresh { .. } => "Please log in again to claim this gift.",
            Ineligible::RoleLevelTooLow { .. } => "Your role's level is too low for this gift.",
            Ineligible::RegionNotAllowed { .. } => {
                "This gift is not available in your role's region."
            }
            Ineligible::NoQualifyingRole => "None of your roles meets this gift's requirements.",
            Ineligible::RolesUnavailable => {
                "Your roles cannot be checked right now; try again later."
            }
        }
    }
}

/// A user's registration class in a game: `Active` when registered there, else `New`.
pub fn registration_class(profile: &Profile, game: GameIndex) -> RegistrationClass {
    if profile.registered.contains(game) {
        RegistrationClass::Active
    } else {
        RegistrationClass::New
    }
}

/// Whether a gift asks anything of the receiving role.
pub fn has_role_requirements(gift: &Gift) -> bool {
    gift.min_role_level.is_some() || !gift.regions.is_empty()
}

/// Whether `role` meets every role requirement of `gift` (level and region). Allocates nothing:
/// the list asks it for every role of every gift with requirements.
pub fn role_qualifies(gift: &Gift, role: &Role) -> bool {
    level_ok(gift, role) && region_ok(gift, role)
}

fn level_ok(gift: &Gift, role: &Role) -> bool {
    gift.min_role_level.is_none_or(|required| role.level >= required)
}

fn region_ok(gift: &Gift, role: &Role) -> bool {
    gift.regions.is_empty() || gift.regions.contains(&role.region)
}

/// The first requirement the chosen `role` misses: level before region.
fn check_chosen_role(gift: &Gift, role: &Role) -> Result<(), Ineligible> {
    if !level_ok(gift, role) {
        let required = gift.min_role_level.unwrap_or_default();
        return Err(Ineligible::RoleLevelTooLow { required, actual: role.level });
    }
    if !region_ok(gift, role) {
        return Err(Ineligible::RegionNotAllowed { region: role.region.clone() });
    }
    Ok(())
}

/// Rules 1–2: the campaign is open, and open for this user. The same for every gift, so the
/// gift list (and the grab) can ask once, and explain an empty list with it.
pub fn check_open(campaign: &Campaign, user: u64, now_unix_s: i64) -> Result<(), Ineligible> {
    if now_unix_s < campaign.starts_at_unix_s {
        return Err(Ineligible::CampaignNotOpen { starts_at_unix_s: campaign.starts_at_unix_s });
    }
    if now_unix_s >= campaign.ends_at_unix_s {
        return Err(Ineligible::CampaignClosed { ended_at_unix_s: campaign.ends_at_unix_s });
    }
    let opens_at_unix_s = release::opens_at(campaign, user);
    if now_unix_s < opens_at_unix_s {
        return Err(Ineligible::WaveNotOpen { opens_at_unix_s });
    }
    Ok(())
}

/// Rules 3–5, for a campaign already known to be open for the user.
pub(crate) fn check_gift(
    campaign: &Campaign,
    gift: &Gift,
    subject: &Subject<'_>,
    sold_out: bool,
    now_unix_s: i64,
) -> Result<(), Ineligible> {
    let class = registration_class(subject.profile, gift.game);
    let audience_ok = match gift.audience {
        Audience::Any => true,
        Audience::New => class == RegistrationClass::New,
        Audience::Active => class == RegistrationClass::Active,
    };
    if !audience_ok {
        return Err(Ineligible::AudienceMismatch { audience: gift.audience, class });
    }
    if sold_out {
        return Err(Ineligible::SoldOut);
    }
    if gift.high_value {
        let max_age_s = campaign.auth.high_value_fresh_login_s;
        // A ticket issued slightly in the future (clock skew) has a negative age: fresh.
        let age_s = now_unix_s.saturating_sub(subject.ticket_issued_at_unix_s);
        if age_s > i64::try_from(max_age_s).unwrap_or(i64::MAX) {
            return Err(Ineligible::LoginNotFresh { max_age_s });
        }
    }
    Ok(())
}

/// Rules 1–5: everything that can be decided without the game side.
pub fn check_without_roles(
    campaign: &Campaign,
    gift: &Gift,
    subject: &Subject<'_>,
    sold_out: bool,
    now_unix_s: i64,
) -> Result<(), Ineligible> {
    check_open(campaign, subject.user, now_unix_s)?;
    check_gift(campaign, gift, subject, sold_out, now_unix_s)
}

/// Rule 6: the gift's role requirements against what is known of the user's roles.
pub fn check_roles(gift: &Gift, roles: RoleContext<'_>) -> Result<(), Ineligible> {
    if !has_role_requirements(gift) {
        return Ok(());
    }
    match roles {
        RoleContext::Chosen(role) => check_chosen_role(gift, role),
        RoleContext::AnyOf(roles) => {
            if roles.iter().any(|r| role_qualifies(gift, r)) {
                Ok(())
            } else {
                Err(Ineligible::NoQualifyingRole)
            }
        }
        RoleContext::Unknown => Err(Ineligible::RolesUnavailable),
    }
}

/// THE eligibility decision: may `subject` have `gift` at `now_unix_s`? `roles` describes the
/// user's roles in the gift's game; `sold_out` is the stock's state as the caller knows it.
pub fn check(
    campaign: &Campaign,
    gift: &Gift,
    subject: &Subject<'_>,
    roles: RoleContext<'_>,
    sold_out: bool,
    now_unix_s: i64,
) -> Result<(), Ineligible> {
    check_without_roles(campaign, gift, subject, sold_out, now_unix_s)?;
    check_roles(gift, roles)
}

/// The games whose roles decide some gift for this user right now: games of gifts that pass
/// rules 1–5 and have role requirements. The API looks up roles in these games only.
pub fn games_needing_roles(
    campaign: &Campaign,
    subject: &Subject<'_>,
    sold_out: impl Fn(GiftIndex) -> bool,
    now_unix_s: i64,
) -> GameSet {
    let mut games = GameSet::default();
    if check_open(campaign, subject.user, now_unix_s).is_err() {
        return games;
    }
    for gift in &campaign.gifts {
        if has_role_requirements(gift)
            && !games.contains(gift.game)
            && check_gift(campaign, gift, subject, sold_out(gift.index), now_unix_s).is_ok()
        {
            games = games.with(gift.game);
        }
    }
    games
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::role::{RoleId, ZoneId};

    const EXAMPLE: &str = include_str!("../../../config/spring-festival.toml");

    fn campaign() -> Campaign {
        Campaign::parse(EXAMPLE, "x", &|_| None).unwrap()
    }

    fn role(level: u32, region: &str) -> Role {
        Role { zone_id: ZoneId(1), region: region.to_string(), role_id: RoleId(99), level }
    }

    /// Roles as a table row holds them; borrowed into a [`RoleContext`] per row.
    enum Roles {
        AnyOf(Vec<Role>),
        Chosen(Role),
        Unknown,
    }

    impl Roles {
        fn context(&self) -> RoleContext<'_> {
            match self {
                Roles::AnyOf(v) => RoleContext::AnyOf(v),
                Roles::Chosen(r) => RoleContext::Chosen(r),
                Roles::Unknown => RoleContext::Unknown,
            }
        }
    }

    struct Row {
        case: &'static str,
        gift: &'static str,
        /// Registered in the gift's game?
        registered: bool,
        roles: Roles,
        sold_out: bool,
        /// Seconds after the campaign start.
        at_s: i64,
        /// Login age at `at_s`.
        login_age_s: i64,
        /// Wave-0 user unless set.
        late_user: bool,
        expected: Option<&'static str>,
    }

    /// A row that passes: a wave-0 user an hour in, fresh login, in stock, no roles.
    fn row(case: &'static str, gift: &'static str, registered: bool) -> Row {
        Row {
            case,
            gift,
            registered,
            roles: Roles::AnyOf(Vec::new()),
            sold_out: false,
            at_s: 3600,
            login_age_s: 60,
            late_user: false,
            expected: None,
        }
    }

    impl Row {
        fn roles(self, roles: Roles) -> Row {
            Row { roles, ..self }
        }
        fn fails(self, code: &'static str) -> Row {
            Row { expected: Some(code), ..self }
        }
    }

    /// The first user id at or after 10 000 in `wave`.
    fn user_in_wave(c: &Campaign, wave: u32) -> u64 {
        (10_000..).find(|&u| release::wave_of(u, c.release.waves) == wave).unwrap()
    }

    fn rows() -> Vec<Row> {
        use Roles::{AnyOf, Chosen, Unknown};
        let c = campaign();
        let window_s = c.ends_at_unix_s - c.starts_at_unix_s;
        vec![
            // --- 1. campaign window
            row("open", "lh-starter", false),
            Row { at_s: -1, ..row("before start", "lh-starter", false) }.fails("campaign_not_open"),
            Row { at_s: window_s - 1, ..row("last second", "lh-starter", false) },
            Row { at_s: window_s, ..row("at end", "lh-starter", false) }.fails("campaign_closed"),
            Row {
                at_s: window_s + 99,
                sold_out: true,
                ..row("closed beats all", "lh-festival", false)
            }
            .fails("campaign_closed"),
            // --- 2. release wave: a wave-3 user waits 3 × 120 s (+ spread)
            Row { at_s: 0, ..row("wave 0 at start", "ck-lucky", false) },
            Row { at_s: 0, late_user: true, ..row("wave 3 at start", "ck-lucky", false) }
                .fails("wave_not_open"),
            Row { at_s: 359, late_user: true, ..row("wave 3 early", "ck-lucky", false) }
                .fails("wave_not_open"),
            Row { at_s: 380, late_user: true, ..row("wave 3 after spread", "ck-lucky", false) },
            // --- 3. audience vs registration
            row("new pack, not registered", "lh-starter", false),
            row("new pack, registered", "lh-starter", true).fails("audience_mismatch"),
            row("active pack, not registered", "ck-festival", false)
                .roles(AnyOf(vec![role(60, "cn-east")]))
                .fails("audience_mismatch"),
            row("active pack, registered", "ck-festival", true)
                .roles(AnyOf(vec![role(6, "cn-east")])),
            row("any pack, not registered", "ck-lucky", false),
            row("any pack, registered", "ck-lucky", true),
            // --- 4. stock
            Row { sold_out: true, ..row("sold out", "lh-starter", false) }.fails("sold_out"),
            Row { sold_out: true, ..row("audience before stock", "lh-starter", true) }
                .fails("audience_mismatch"),
            // --- 5. high value needs a fresh login (900 s in the example)
            Row { login_age_s: 900, ..row("hv, login 900 s ago", "lh-legend", true) }
                .roles(Chosen(role(30, "cn-north"))),
            Row { login_age_s: 901, ..row("hv, login 901 s ago", "lh-legend", true) }
                .roles(Chosen(role(30, "cn-north")))
                .fails("login_not_fresh"),
            Row { login_age_s: -20, ..row("hv, ticket from the near future", "lh-legend", true) }
                .roles(Chosen(role(30, "cn-north"))),
            Row { login_age_s: 80_000, ..row("not hv, old login", "lh-festival", true) }
                .roles(Chosen(role(5, "cn-west"))),
            Row { login_age_s: 901, ..row("login before roles", "lh-legend", true) }
                .roles(Unknown)
                .fails("login_not_fresh"),
            // --- 6. roles: lh-festival needs level 5; lh-legend level 30 in cn-south/cn-north
            row("list, a role meets level", "lh-festival", true)
                .roles(AnyOf(vec![role(4, "cn-east"), role(5, "cn-east")])),
            row("list, no role meets level", "lh-festival", true)
                .roles(AnyOf(vec![role(4, "cn-east"), role(1, "cn-north")]))
                .fails("no_qualifying_role"),
            row("list, no role in the game", "lh-festival", true).fails("no_qualifying_role"),
            row("list, roles unknown", "lh-festival", true)
                .roles(Unknown)
                .fails("roles_unavailable"),
            row("list, roles unknown, no requirements", "ck-lucky", true).roles(Unknown),
            row("list, no role, no requirements", "lh-starter", false),
            row("list, level and region on one role", "lh-legend", true)
                .roles(AnyOf(vec![role(29, "cn-south"), role(31, "cn-south")])),
            row("list, level and region on different roles", "lh-legend", true)
                .roles(AnyOf(vec![role(29, "cn-south"), role(60, "cn-east")]))
                .fails("no_qualifying_role"),
            row("claim, level met", "lh-festival", true).roles(Chosen(role(5, "cn-east"))),
            row("claim, level too low", "lh-festival", true)
                .roles(Chosen(role(4, "cn-east")))
                .fails("role_level_too_low"),
            row("claim, region allowed", "lh-legend", true).roles(Chosen(role(30, "cn-south"))),
            row("claim, region not allowed", "lh-legend", true)
                .roles(Chosen(role(60, "cn-east")))
                .fails("region_not_allowed"),
            row("claim, level before region", "lh-legend", true)
                .roles(Chosen(role(29, "cn-east")))
                .fails("role_level_too_low"),
            row("claim, no requirements", "ck-lucky", false).roles(Chosen(role(1, "cn-east"))),
            Row { sold_out: true, ..row("stock before roles", "lh-festival", true) }
                .roles(Unknown)
                .fails("sold_out"),
        ]
    }

    #[test]
    fn table() {
        let c = campaign();
        let late = user_in_wave(&c, 3);
        let early = user_in_wave(&c, 0);
        assert!(release::opens_at(&c, early) <= c.starts_at_unix_s + c.release.spread_s as i64);
        // The wave rows assume these; fail loudly here if the example changes.
        assert_eq!((c.release.waves, c.release.wave_interval_s, c.release.spread_s), (4, 120, 20));
        assert_eq!(c.auth.high_value_fresh_login_s, 900);
        let early_opens = release::opens_at(&c, early) - c.starts_at_unix_s;

        for r in rows() {
            let gift = c.gift_by_id(r.gift).unwrap();
            let mut profile = Profile::NEW_USER;
            if r.registered {
                profile.registered = profile.registered.with(gift.game);
            }
            let now = c.starts_at_unix_s + r.at_s;
            // Rows "at the start" mean "as soon as the campaign is open for a wave-0 user".
            let now = if r.at_s == 0 && !r.late_user { now + early_opens } else { now };
            let subject = Subject {
                user: if r.late_user { late } else { early },
                profile: &profile,
                ticket_issued_at_unix_s: now - r.login_age_s,
            };
            let got = check(&c, gift, &subject, r.roles.context(), r.sold_out, now);
            assert_eq!(got.as_ref().err().map(Ineligible::code), r.expected, "{}: {got:?}", r.case);
            if let Err(e) = got {
                assert!(!e.reason().is_empty() && !e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn the_table_covers_every_rule() {
        let all = [
            Ineligible::CampaignNotOpen { starts_at_unix_s: 0 },
            Ineligible::CampaignClosed { ended_at_unix_s: 0 },
            Ineligible::WaveNotOpen { opens_at_unix_s: 0 },
            Ineligible::AudienceMismatch { audience: Audience::New, class: RegistrationClass::New },
            Ineligible::SoldOut,
            Ineligible::LoginNotFresh { max_age_s: 0 },
            Ineligible::RoleLevelTooLow { required: 0, actual: 0 },
            Ineligible::RegionNotAllowed { region: String::new() },
            Ineligible::NoQualifyingRole,
            Ineligible::RolesUnavailable,
        ];
        let codes: HashSet<&str> = all.iter().map(Ineligible::code).collect();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
        let reasons: HashSet<&str> = all.iter().map(Ineligible::reason).collect();
        assert_eq!(reasons.len(), all.len(), "reasons are distinct");
        let tested: HashSet<&str> = rows().iter().filter_map(|r| r.expected).collect();
        assert_eq!(tested, codes);
    }

    #[test]
    fn a_region_only_gift_accepts_any_level_in_its_regions() {
        let mut c = campaign();
        let i = c.gift_by_id("ck-lucky").unwrap().index.0 as usize;
        c.gifts[i].regions = vec!["cn-west".to_string()];
        let gift = &c.gifts[i];
        assert!(has_role_requirements(gift));
        assert!(role_qualifies(gift, &role(1, "cn-west")));
        assert_eq!(
            check_roles(gift, RoleContext::Chosen(&role(1, "cn-east"))),
            Err(Ineligible::RegionNotAllowed { region: "cn-east".to_string() })
        );
        assert_eq!(check_roles(gift, RoleContext::AnyOf(&[])), Err(Ineligible::NoQualifyingRole));
    }

    #[test]
    fn games_needing_roles_are_those_with_undecided_role_gifts() {
        let c = campaign();
        let user = user_in_wave(&c, 0);
        let now = c.starts_at_unix_s + 3600;
        let lh = c.game_by_id("lantern-heroes").unwrap().index;
        let ck = c.game_by_id("cloud-kingdom").unwrap().index;
        let sr = c.game_by_id("silk-road-tycoon").unwrap().index;
        let profile = Profile {
            registered: GameSet::default().with(lh).with(ck).with(sr),
            preference: [0; 16],
        };
        let subject = Subject { user, profile: &profile, ticket_issued_at_unix_s: now };
        // Silk Road's only role gift is sold out: its roles decide nothing.
        let srt = c.gift_by_id("srt-festival").unwrap().index;
        let games = games_needing_roles(&c, &subject, |g| g == srt, now);
        assert_eq!(games, GameSet::default().with(lh).with(ck));
        // Registered nowhere: the role gifts are all for active users.
        let nobody = Subject { profile: &Profile::NEW_USER, ..subject };
        assert!(games_needing_roles(&c, &nobody, |_| false, now).is_empty());
        // Closed: nothing needs roles.
        assert!(games_needing_roles(&c, &subject, |_| false, c.ends_at_unix_s).is_empty());
    }
}
