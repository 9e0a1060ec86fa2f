//! Campaign files, structured: arbitrary files of the right shape (each value from a small pool
//! of plausible ones or arbitrary, numbers small or anywhere in i64, sections present or not),
//! so the fuzzer reaches every rule of validation, not only the TOML syntax. A campaign keeps
//! validation's promises; an unknown field anywhere is refused.
#![no_main]

use arbitrary::Arbitrary;
use hongbao_domain::CampaignError;
use libfuzzer_sys::fuzz_target;
use toml::{Table, Value};

/// A string: one of the field's plausible values, or anything.
#[derive(Arbitrary, Debug)]
enum S {
    Pick(u8),
    Any(String),
}

/// A number: small (where most rules bite), or anywhere in i64 (where overflows live).
#[derive(Arbitrary, Debug)]
enum N {
    Small(i8),
    Hours(u16),
    Any(i64),
}

impl S {
    fn get(&self, pool: &[&str]) -> Value {
        Value::String(match self {
            S::Pick(i) => pool[usize::from(*i) % pool.len()].to_string(),
            S::Any(s) => s.clone(),
        })
    }
}

impl N {
    fn get(&self) -> Value {
        Value::Integer(match *self {
            N::Small(n) => i64::from(n),
            N::Hours(n) => i64::from(n) * 3600,
            N::Any(n) => n,
        })
    }
}

const IDS: &[&str] = &["spring-2027", "a", "lantern-heroes", "cloud-kingdom", "Bad Id", ""];
const TIMES: &[&str] = &[
    "2027-02-10T00:00:00+08:00",
    "2027-02-17T00:00:00+08:00",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2027-02-10",
];
const SECRETS: &[&str] = &["dev-only-change-me-0123456789abcdef", "short", ""];
const ENVS: &[&str] = &["HONGBAO_FUZZ_SECRET", "HONGBAO_FUZZ_EMPTY", "HONGBAO_UNSET", ""];
const CHANNELS: &[&str] = &["swipe", "ar_map", "scan", "other"];
const AUDIENCES: &[&str] = &["new", "active", "any", "old"];
const URLS: &[&str] = &["http://127.0.0.1:9100", "https://game.example/", "ftp://x", "http://"];
const ITEMS: &[&str] = &["gold", "lantern-skin", "Gold"];
const REGIONS: &[&str] = &["cn-north", "eu", "EU"];

#[derive(Arbitrary, Debug)]
struct Key {
    id: S,
    secret: Option<S>,
    secret_env: Option<S>,
    example: Option<bool>,
}

#[derive(Arbitrary, Debug)]
struct Channel {
    id: S,
    coupons_per_user: N,
    budget: N,
}

#[derive(Arbitrary, Debug)]
struct Game {
    id: S,
    name: S,
    capacity: N,
    url: S,
    timeout: N,
}

#[derive(Arbitrary, Debug)]
struct Gift {
    id: S,
    game: S,
    audience: S,
    title: S,
    items: Vec<(S, N)>,
    value_cents: N,
    stock: N,
    per_user: N,
    high_value: Option<bool>,
    min_role_level: Option<N>,
    regions: Option<Vec<S>>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    id: S,
    title: S,
    starts_at: S,
    ends_at: S,
    deadline_hours: N,
    ttl_hours: N,
    keys: Vec<Key>,
    coupon_key: Option<(Option<S>, Option<S>, bool)>,
    max_age: N,
    fresh_login: N,
    audience_order: Option<Vec<S>>,
    release: Option<(N, N, Option<N>)>,
    limits: Option<[N; 6]>,
    channels: Vec<Channel>,
    games: Vec<Game>,
    gifts: Vec<Gift>,
    /// An unknown field in one of the tables (0 the file, 1 `[campaign]`, 2 `[auth]`, 3 the
    /// first game, 4 the first gift).
    typo: Option<u8>,
}

fn table(entries: Vec<(&str, Option<Value>)>) -> Table {
    entries.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect()
}

fn array(values: impl Iterator<Item = Table>) -> Value {
    Value::Array(values.map(Value::Table).collect())
}

fn campaign_file(i: &Input) -> Table {
    let mut file = Table::new();
    file.insert(
        "campaign".into(),
        Value::Table(table(vec![
            ("id", Some(i.id.get(IDS))),
            ("title", Some(i.title.get(&["Spring", " "]))),
            ("starts_at", Some(i.starts_at.get(TIMES))),
            ("ends_at", Some(i.ends_at.get(TIMES))),
            ("delivery_deadline_hours", Some(i.deadline_hours.get())),
            ("coupon_ttl_hours", Some(i.ttl_hours.get())),
        ])),
    );
    let keys = i.keys.iter().map(|k| {
        table(vec![
            ("id", Some(k.id.get(&["dev-1", "dev-2", "K"]))),
            ("secret", k.secret.as_ref().map(|s| s.get(SECRETS))),
            ("secret_env", k.secret_env.as_ref().map(|s| s.get(ENVS))),
            ("example", k.example.map(Value::Boolean)),
        ])
    });
    let coupon_key = i.coupon_key.as_ref().map(|(secret, env, example)| {
        Value::Table(table(vec![
            ("secret", secret.as_ref().map(|s| s.get(SECRETS))),
            ("secret_env", env.as_ref().map(|s| s.get(ENVS))),
            ("example", Some(Value::Boolean(*example))),
        ]))
    });
    file.insert(
        "auth".into(),
        Value::Table(table(vec![
            ("ticket_keys", Some(array(keys))),
            ("coupon_key", coupon_key),
            ("ticket_max_age_s", Some(i.max_age.get())),
            ("high_value_fresh_login_s", Some(i.fresh_login.get())),
        ])),
    );
    if let Some(order) = &i.audience_order {
        let order = order.iter().map(|s| s.get(&["active", "new", "any"])).collect();
        file.insert(
            "ranking".into(),
            Value::Table(table(vec![("audience_order", Some(Value::Array(order)))])),
        );
    }
    if let Some((waves, interval, spread)) = &i.release {
        let release = table(vec![
            ("waves", Some(waves.get())),
            ("wave_interval_s", Some(interval.get())),
            ("spread_s", spread.as_ref().map(N::get)),
        ]);
        file.insert("release".into(), Value::Table(release));
    }
    if let Some(l) = &i.limits {
        let names = [
            "high_value_per_user_per_day",
            "high_value_budget_cents_per_hour",
            "user_rate_per_s",
            "user_burst",
            "ip_rate_per_s",
            "ip_burst",
        ];
        let limits = names.iter().zip(l).map(|(k, v)| (k.to_string(), v.get())).collect();
        file.insert("limits".into(), Value::Table(limits));
    }
    let channels = i.channels.iter().map(|c| {
        table(vec![
            ("id", Some(c.id.get(CHANNELS))),
            ("coupons_per_user", Some(c.coupons_per_user.get())),
            ("budget", Some(c.budget.get())),
        ])
    });
    file.insert("channels".into(), array(channels));
    let games = i.games.iter().map(|g| {
        table(vec![
            ("id", Some(g.id.get(IDS))),
            ("name", Some(g.name.get(&["Lantern Heroes", ""]))),
            ("delivery_capacity_per_s", Some(g.capacity.get())),
            ("idip_url", Some(g.url.get(URLS))),
            ("idip_timeout_ms", Some(g.timeout.get())),
        ])
    });
    file.insert("games".into(), array(games));
    file.insert("gifts".into(), array(i.gifts.iter().map(gift)));
    file
}

fn gift(g: &Gift) -> Table {
    let items = g.items.iter().map(|(item, count)| {
        table(vec![("item", Some(item.get(ITEMS))), ("count", Some(count.get()))])
    });
    table(vec![
        ("id", Some(g.id.get(&["gold-pack", "skin", "gold-pack "]))),
        ("game", Some(g.game.get(IDS))),
        ("audience", Some(g.audience.get(AUDIENCES))),
        ("title", Some(g.title.get(&["Gold", ""]))),
        ("items", Some(array(items))),
        ("value_cents", Some(g.value_cents.get())),
        ("stock", Some(g.stock.get())),
        ("per_user", Some(g.per_user.get())),
        ("high_value", g.high_value.map(Value::Boolean)),
        ("min_role_level", g.min_role_level.as_ref().map(N::get)),
        (
            "regions",
            g.regions.as_ref().map(|r| Value::Array(r.iter().map(|s| s.get(REGIONS)).collect())),
        ),
    ])
}

/// Adds an unknown field to the table `at` names; false if that table is not in the file.
fn add_typo(file: &mut Table, at: u8) -> bool {
    let target = match at % 5 {
        0 => Some(file),
        1 => file.get_mut("campaign").and_then(Value::as_table_mut),
        2 => file.get_mut("auth").and_then(Value::as_table_mut),
        n => {
            let list = if n == 3 { "games" } else { "gifts" };
            file.get_mut(list)
                .and_then(Value::as_array_mut)
                .and_then(|a| a.first_mut())
                .and_then(Value::as_table_mut)
        }
    };
    match target {
        Some(t) => {
            t.insert("unknown_setting".into(), Value::Integer(1));
            true
        }
        None => false,
    }
}

fuzz_target!(|input: Input| {
    let mut file = campaign_file(&input);
    let typo = input.typo.is_some_and(|at| add_typo(&mut file, at));
    let text = toml::to_string(&file).expect("a table renders as TOML");
    let parsed = hongbao_fuzz::campaign::parse_and_check(&text);
    if typo {
        assert!(
            matches!(parsed, Err(CampaignError::Syntax { .. })),
            "an unknown field was accepted"
        );
    }
});
