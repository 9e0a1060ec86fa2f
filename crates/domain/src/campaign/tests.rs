//! One test per validation rule, each starting from the shipped example and breaking one thing.

use super::*;

const EXAMPLE: &str = include_str!("../../../../config/spring-festival.toml");
const FILE: &str = "test.toml";

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Campaign, CampaignError> {
    Campaign::parse(text, FILE, &no_env)
}

/// The example with the first occurrence of `from` replaced; panics if `from` is absent so a
/// test can never pass by changing nothing.
fn edited(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "example lacks {from:?}");
    EXAMPLE.replacen(from, to, 1)
}

fn invalid(text: &str) -> (String, String) {
    match parse(text) {
        Err(CampaignError::Invalid { file, field, reason }) => {
            assert_eq!(file, FILE);
            (field, reason)
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn syntax(text: &str) -> (Option<usize>, String) {
    match parse(text) {
        Err(CampaignError::Syntax { file, line, message }) => {
            assert_eq!(file, FILE);
            (line, message)
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn the_example_parses_completely() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.id, "spring-2027");
    assert_eq!(c.games.len(), 10);
    assert_eq!(c.gifts.len(), 26);
    assert_eq!(c.channels.len(), 3);
    assert_eq!(c.delivery_deadline_s, 48 * 3600);
    assert_eq!(c.coupon_ttl_s, 24 * 3600);
    // 2027-02-10T00:00:00+08:00
    assert_eq!(c.starts_at_unix_s, 1_802_188_800);
    assert_eq!(c.ends_at_unix_s - c.starts_at_unix_s, 7 * 86_400);
    assert_eq!(c.auth.ticket_keys[0].id, "dev-1");
    assert_eq!(c.ranking.audience_order, [RegistrationClass::Active, RegistrationClass::New]);
    assert_eq!(c.release.waves, 4);
    assert_eq!(c.release.spread_s, 20);
    assert_eq!(c.limits.user_burst, 20);
    let legend = c.gift_by_id("lh-legend").unwrap();
    assert!(legend.high_value);
    assert_eq!(legend.min_role_level, Some(30));
    assert_eq!(legend.regions, ["cn-south", "cn-north"]);
    assert_eq!(c.game(legend.game).id, "lantern-heroes");
    assert_eq!(c.gift_by_id("ck-lucky").unwrap().audience, Audience::Any);
    assert!(!format!("{:?}", c.auth.ticket_keys[0]).contains("dev-only"), "Debug leaks the secret");
}

#[test]
fn malformed_toml_names_the_line() {
    let (line, message) = syntax("[campaign]\nid = \"x\"\ntitle = \n");
    assert_eq!(line, Some(3));
    assert!(!message.is_empty());
}

#[test]
fn unknown_field_is_refused_with_its_name() {
    let (line, message) =
        syntax(&edited("coupon_ttl_hours = 24", "coupon_ttl_hours = 24\ncoupon_ttl_hourz = 3"));
    assert!(message.contains("unknown field `coupon_ttl_hourz`"), "{message}");
    assert!(line.is_some());
    let (_, message) =
        syntax(&edited("per_user = 1\nmin_role_level = 5", "per_user = 1\nmin_level = 5"));
    assert!(message.contains("min_level"), "{message}");
}

#[test]
fn unknown_section_is_refused() {
    let (_, message) = syntax(&format!("{EXAMPLE}\n[extras]\nx = 1\n"));
    assert!(message.contains("extras"), "{message}");
}

#[test]
fn duplicate_gift_id_is_refused() {
    let (field, reason) = invalid(&edited("id = \"lh-festival\"", "id = \"lh-starter\""));
    assert_eq!(field, "gifts[1].id");
    assert!(reason.contains("duplicate"), "{reason}");
}

#[test]
fn duplicate_game_id_is_refused() {
    let (field, reason) = invalid(&edited("id = \"cloud-kingdom\"", "id = \"lantern-heroes\""));
    assert_eq!(field, "games[1].id");
    assert!(reason.contains("duplicate"));
}

#[test]
fn duplicate_channel_is_refused() {
    let (field, reason) = invalid(&edited("id = \"ar_map\"", "id = \"swipe\""));
    assert_eq!(field, "channels[1].id");
    assert!(reason.contains("duplicate"));
}

#[test]
fn duplicate_ticket_key_is_refused() {
    let text = edited(
        "ticket_keys = [{ id = \"dev-1\", secret = \"dev-only-change-me-0123456789abcdef\", example = true }]",
        "ticket_keys = [{ id = \"dev-1\", secret = \"dev-only-change-me-0123456789abcdef\", example = true }, { id = \"dev-1\", secret = \"another-secret-0123456789\" }]",
    );
    let (field, reason) = invalid(&text);
    assert_eq!(field, "auth.ticket_keys[1].id");
    assert!(reason.contains("duplicate"));
}

#[test]
fn gift_for_unknown_game_is_refused() {
    let (field, reason) = invalid(&edited("game = \"lantern-heroes\"", "game = \"pong\""));
    assert_eq!(field, "gifts[0].game");
    assert!(reason.contains("unknown game `pong`"));
}

#[test]
fn unknown_channel_is_refused() {
    let (field, reason) = invalid(&edited("id = \"scan\"", "id = \"shake\""));
    assert_eq!(field, "channels[2].id");
    assert!(reason.contains("unknown channel `shake`"));
}

#[test]
fn unknown_audience_is_refused() {
    let (field, reason) = invalid(&edited("audience = \"new\"", "audience = \"vip\""));
    assert_eq!(field, "gifts[0].audience");
    assert!(reason.contains("unknown audience `vip`"));
}

#[test]
fn unknown_audience_in_ranking_is_refused() {
    let (field, reason) = invalid(&edited(
        "audience_order = [\"active\", \"new\"]",
        "audience_order = [\"active\", \"any\"]",
    ));
    assert_eq!(field, "ranking.audience_order[1]");
    assert!(reason.contains("unknown audience"));
}

#[test]
fn incomplete_audience_order_is_refused() {
    let (field, _) =
        invalid(&edited("audience_order = [\"active\", \"new\"]", "audience_order = [\"active\"]"));
    assert_eq!(field, "ranking.audience_order");
    let (field, reason) = invalid(&edited(
        "audience_order = [\"active\", \"new\"]",
        "audience_order = [\"new\", \"new\"]",
    ));
    assert_eq!(field, "ranking.audience_order[1]");
    assert!(reason.contains("twice"));
}

#[test]
fn zero_stock_is_refused() {
    let (field, reason) = invalid(&edited("stock = 3000000", "stock = 0"));
    assert_eq!(field, "gifts[0].stock");
    assert!(reason.contains("positive"));
}

#[test]
fn negative_stock_is_refused() {
    let (field, reason) = invalid(&edited("stock = 3000000", "stock = -5"));
    assert_eq!(field, "gifts[0].stock");
    assert!(reason.contains("-5"));
}

#[test]
fn per_user_above_stock_cannot_be_met() {
    let (field, reason) =
        invalid(&edited("stock = 2000\nper_user = 1", "stock = 2000\nper_user = 2001"));
    assert_eq!(field, "gifts[2].per_user");
    assert!(reason.contains("exceeds the stock"));
}

#[test]
fn zero_per_user_is_refused() {
    let (field, _) =
        invalid(&edited("stock = 3000000\nper_user = 1", "stock = 3000000\nper_user = 0"));
    assert_eq!(field, "gifts[0].per_user");
}

#[test]
fn channel_budget_below_per_user_limit_cannot_be_met() {
    let (field, reason) = invalid(&edited("budget = 60000000", "budget = 2"));
    assert_eq!(field, "channels[0].budget");
    assert!(reason.contains("below coupons_per_user"));
}

#[test]
fn zero_coupons_per_user_is_refused() {
    let (field, _) = invalid(&edited("coupons_per_user = 3", "coupons_per_user = 0"));
    assert_eq!(field, "channels[0].coupons_per_user");
}

#[test]
fn stock_that_cannot_be_delivered_by_the_deadline_is_refused() {
    // Silk Road Tycoon: 2.3M gifts at 200/s take 3.2 h; at 10/s they take 64 h > 48 h.
    let (field, reason) =
        invalid(&edited("delivery_capacity_per_s = 200", "delivery_capacity_per_s = 10"));
    assert_eq!(field, "games[9].delivery_capacity_per_s");
    assert!(reason.contains("beyond the 48 h deadline"), "{reason}");
}

/// Found by fuzzing (`fuzz/`, campaign_structured): the hours were multiplied unchecked.
#[test]
fn hours_too_large_to_count_in_seconds_are_refused() {
    let huge = format!("delivery_deadline_hours = {}", i64::MAX);
    let (field, reason) = invalid(&edited("delivery_deadline_hours = 48", &huge));
    assert_eq!(field, "campaign.delivery_deadline_hours");
    assert!(reason.contains("out of range"), "{reason}");
    let huge = format!("coupon_ttl_hours = {}", u64::MAX / 3600 + 1);
    let (field, _) = invalid(&edited("coupon_ttl_hours = 24", &huge));
    assert_eq!(field, "campaign.coupon_ttl_hours");
}

/// Waves × interval used to be multiplied unchecked.
#[test]
fn release_waves_too_far_apart_to_count_are_refused() {
    let text = edited("waves = 4", &format!("waves = {}", u32::MAX)).replacen(
        "wave_interval_s = 120",
        &format!("wave_interval_s = {}", i64::MAX),
        1,
    );
    let (field, reason) = invalid(&text);
    assert_eq!(field, "release.waves");
    assert!(reason.contains("after the campaign ends"), "{reason}");
}

/// A game's gifts' stock used to be added unchecked.
#[test]
fn stock_too_large_to_add_up_is_refused() {
    let max = format!("stock = {}", i64::MAX);
    let text = edited("stock = 3000000", &max).replacen("stock = 2000000", &max, 1);
    let (field, reason) = invalid(&text);
    assert_eq!(field, "gifts[2].stock");
    assert!(reason.contains("overflows"), "{reason}");
}

#[test]
fn zero_capacity_is_refused() {
    let (field, _) =
        invalid(&edited("delivery_capacity_per_s = 200", "delivery_capacity_per_s = 0"));
    assert_eq!(field, "games[9].delivery_capacity_per_s");
}

#[test]
fn release_waves_past_the_campaign_end_cannot_be_met() {
    let (field, reason) = invalid(&edited("wave_interval_s = 120", "wave_interval_s = 300000"));
    assert_eq!(field, "release.waves");
    assert!(reason.contains("after the campaign ends"));
}

#[test]
fn spread_longer_than_wave_interval_is_refused() {
    let (field, _) = invalid(&edited("spread_s = 20", "spread_s = 121"));
    assert_eq!(field, "release.spread_s");
}

#[test]
fn zero_rate_limit_is_refused() {
    let (field, _) = invalid(&edited("user_rate_per_s = 10", "user_rate_per_s = 0"));
    assert_eq!(field, "limits.user_rate_per_s");
}

#[test]
fn ip_burst_below_user_burst_cannot_be_met() {
    let (field, _) = invalid(&edited("ip_burst = 10000", "ip_burst = 5"));
    assert_eq!(field, "limits.ip_burst");
}

#[test]
fn high_value_gift_with_no_daily_allowance_cannot_be_met() {
    let (field, _) =
        invalid(&edited("high_value_per_user_per_day = 1", "high_value_per_user_per_day = 0"));
    assert_eq!(field, "gifts[2].high_value");
}

#[test]
fn window_ending_before_it_starts_is_refused() {
    let (field, reason) = invalid(&edited(
        "ends_at = \"2027-02-17T00:00:00+08:00\"",
        "ends_at = \"2027-02-09T00:00:00+08:00\"",
    ));
    assert_eq!(field, "campaign.ends_at");
    assert!(reason.contains("not after starts_at"));
}

#[test]
fn window_of_zero_length_is_refused() {
    let (field, _) = invalid(&edited(
        "ends_at = \"2027-02-17T00:00:00+08:00\"",
        "ends_at = \"2027-02-10T00:00:00+08:00\"",
    ));
    assert_eq!(field, "campaign.ends_at");
}

#[test]
fn time_without_offset_is_refused() {
    let (field, reason) = invalid(&edited(
        "starts_at = \"2027-02-10T00:00:00+08:00\"",
        "starts_at = \"2027-02-10 00:00\"",
    ));
    assert_eq!(field, "campaign.starts_at");
    assert!(reason.contains("RFC 3339"));
}

#[test]
fn empty_inline_secret_is_refused() {
    let (field, reason) =
        invalid(&edited("secret = \"dev-only-change-me-0123456789abcdef\"", "secret = \"\""));
    assert_eq!(field, "auth.ticket_keys[0].secret");
    assert!(reason.contains("empty"));
}

#[test]
fn secret_from_unset_or_empty_env_is_refused() {
    let text =
        edited("secret = \"dev-only-change-me-0123456789abcdef\"", "secret_env = \"HB_KEY\"");
    let (field, reason) = invalid(&text);
    assert_eq!(field, "auth.ticket_keys[0].secret_env");
    assert!(reason.contains("not set"));
    let empty = |_: &str| Some(String::new());
    match Campaign::parse(&text, FILE, &empty) {
        Err(CampaignError::Invalid { reason, .. }) => assert!(reason.contains("empty")),
        other => panic!("{other:?}"),
    }
    let set =
        |name: &str| (name == "HB_KEY").then(|| "a-real-secret-from-the-environment".to_string());
    let c = Campaign::parse(&text, FILE, &set).unwrap();
    assert_eq!(c.auth.ticket_keys[0].secret, b"a-real-secret-from-the-environment");
}

#[test]
fn empty_env_name_is_refused() {
    let (field, _) =
        invalid(&edited("secret = \"dev-only-change-me-0123456789abcdef\"", "secret_env = \"\""));
    assert_eq!(field, "auth.ticket_keys[0].secret_env");
}

#[test]
fn no_ticket_keys_is_refused() {
    let (field, _) = invalid(&edited(
        "ticket_keys = [{ id = \"dev-1\", secret = \"dev-only-change-me-0123456789abcdef\", example = true }]",
        "ticket_keys = []",
    ));
    assert_eq!(field, "auth.ticket_keys");
}

#[test]
fn bad_ids_and_urls_are_refused() {
    let (field, _) = invalid(&edited("id = \"lh-starter\"", "id = \"LH Starter\""));
    assert_eq!(field, "gifts[0].id");
    let (field, _) =
        invalid(&edited("idip_url = \"http://127.0.0.1:9100\"", "idip_url = \"ftp://x\""));
    assert_eq!(field, "games[0].idip_url");
    let (field, _) = invalid(&edited(
        "items = [{ item = \"gold\", count = 500 }, { item = \"starter-chest\", count = 1 }]",
        "items = []",
    ));
    assert_eq!(field, "gifts[0].items");
}

#[test]
fn with_start_keeps_the_window_length() {
    let c = parse(EXAMPLE).unwrap();
    let length = c.ends_at_unix_s - c.starts_at_unix_s;
    let moved = c.with_start(1_000);
    assert_eq!(moved.starts_at_unix_s, 1_000);
    assert_eq!(moved.ends_at_unix_s - moved.starts_at_unix_s, length);
}

#[test]
fn coupon_key_is_optional_resolved_and_redacted() {
    assert!(parse(EXAMPLE).unwrap().auth.coupon_secret.is_none());
    let text = edited(
        "ticket_max_age_s = 86400",
        "coupon_key = { secret_env = \"HB_COUPON\" }\nticket_max_age_s = 86400",
    );
    let (field, reason) = invalid(&text);
    assert_eq!(field, "auth.coupon_key.secret_env");
    assert!(reason.contains("not set"));
    let env = |name: &str| {
        (name == "HB_COUPON").then(|| "coupon-secret-from-the-environment".to_string())
    };
    let c = Campaign::parse(&text, FILE, &env).unwrap();
    let secret = c.auth.coupon_secret.as_ref().unwrap();
    assert_eq!(secret.0, b"coupon-secret-from-the-environment");
    assert!(!format!("{:?}", c.auth).contains("coupon-secret"));
    let empty = edited(
        "ticket_max_age_s = 86400",
        "coupon_key = { secret = \"\" }\nticket_max_age_s = 86400",
    );
    assert_eq!(invalid(&empty).0, "auth.coupon_key.secret");
}

#[test]
fn keys_marked_as_examples_are_listed() {
    let c = parse(EXAMPLE).expect("the example parses");
    assert_eq!(c.auth.example_keys, vec!["auth.ticket_keys[0]".to_string()]);
    let real = edited(", example = true }", " }");
    assert!(parse(&real).expect("parses").auth.example_keys.is_empty());
}
