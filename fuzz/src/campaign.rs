//! The checks every campaign target makes on what `Campaign::parse` returns.

use hongbao_domain::campaign::{MAX_GAMES, MAX_GIFTS, MAX_ID_LEN};
use hongbao_domain::{Campaign, CampaignError};

/// `secret_env` names the targets resolve: one set, one set but empty; every other is unset.
pub fn env(name: &str) -> Option<String> {
    match name {
        "HONGBAO_FUZZ_SECRET" => Some("fuzz-secret-0123456789abcdef".to_string()),
        "HONGBAO_FUZZ_EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Parses `text` and checks the result: an error names the file and renders; a campaign holds
/// the rules validation promises.
pub fn parse_and_check(text: &str) -> Result<Campaign, CampaignError> {
    let parsed = Campaign::parse(text, "fuzz.toml", &env);
    match &parsed {
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml"), "{shown}");
        }
        Ok(c) => check(c),
    }
    parsed
}

fn check(c: &Campaign) {
    let id_ok = |id: &str| !id.is_empty() && id.len() <= MAX_ID_LEN;
    assert!(id_ok(&c.id));
    assert!(c.starts_at_unix_s < c.ends_at_unix_s);
    assert!(c.delivery_deadline_s >= 3600 && c.coupon_ttl_s >= 3600);
    assert!(!c.auth.ticket_keys.is_empty());
    assert!(c.auth.ticket_keys.iter().all(|k| id_ok(&k.id) && k.secret.len() >= 16));
    assert!(!c.channels.is_empty() && c.channels.len() <= 3);
    assert!(!c.games.is_empty() && c.games.len() <= MAX_GAMES);
    assert!(!c.gifts.is_empty() && c.gifts.len() <= MAX_GIFTS);
    for (i, game) in c.games.iter().enumerate() {
        assert_eq!(usize::from(game.index.0), i);
        assert!(game.delivery_capacity_per_s >= 1);
    }
    for (i, gift) in c.gifts.iter().enumerate() {
        assert_eq!(usize::from(gift.index.0), i);
        assert!(usize::from(gift.game.0) < c.games.len());
        assert!(gift.stock >= 1 && u64::from(gift.per_user) <= gift.stock);
        assert!(!gift.items.is_empty());
    }
    assert!(c.release.waves >= 1);
    assert!(c.limits.user_burst <= c.limits.ip_burst);
    // The demo moves a campaign to open now; that must hold for any valid file.
    let moved = c.clone().with_start(1_802_188_800);
    assert_eq!(
        moved.ends_at_unix_s - moved.starts_at_unix_s,
        c.ends_at_unix_s - c.starts_at_unix_s
    );
}
