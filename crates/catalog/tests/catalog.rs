use std::collections::BTreeSet;
use std::io::Read;

use hongbao_catalog::{Catalog, MANIFEST_NAME, build, write};
use hongbao_domain::Campaign;
use serde_json::Value;

const SPRING: &str = include_str!("../../../config/spring-festival.toml");

fn campaign() -> Campaign {
    Campaign::parse(SPRING, "spring-festival.toml", &|_| None).expect("shipped campaign parses")
}

fn json_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("valid gzip");
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).expect("valid brotli");
    out
}

#[test]
fn builds_the_four_files_with_the_manifest_last() {
    let cat = build(&campaign());
    let v = &cat.version;
    assert_eq!(v.len(), 16);
    assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
    let names: Vec<&str> = cat.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("catalog.{v}.json"),
            format!("catalog.{v}.json.gz"),
            format!("catalog.{v}.json.br"),
            MANIFEST_NAME.to_string(),
        ]
    );
    let flags: Vec<(bool, Option<&str>)> =
        cat.files.iter().map(|f| (f.immutable, f.content_encoding)).collect();
    assert_eq!(flags, [(true, None), (true, Some("gzip")), (true, Some("br")), (false, None)]);
    assert!(cat.files.iter().all(|f| f.content_type == "application/json"));
}

#[test]
fn manifest_names_the_current_version() {
    let cat = build(&campaign());
    let m = json_value(&cat.manifest().bytes);
    let v = &cat.version;
    assert_eq!(
        m,
        serde_json::json!({
            "campaign_id": "spring-2027",
            "version": v,
            "files": {
                "json": format!("catalog.{v}.json"),
                "gzip": format!("catalog.{v}.json.gz"),
                "br": format!("catalog.{v}.json.br"),
            }
        })
    );
}

#[test]
fn same_input_same_bytes() {
    let a = build(&campaign());
    let b = build(&campaign());
    assert_eq!(a, b);
}

#[test]
fn version_is_the_hash_of_the_json_and_follows_titles() {
    let base = campaign();
    let a = build(&base);

    let mut retitled = base.clone();
    retitled.gifts[0].title.push('!');
    let b = build(&retitled);
    assert_ne!(a.version, b.version);

    let mut renamed = base.clone();
    renamed.title = "Another title".to_string();
    assert_ne!(a.version, build(&renamed).version);

    // Private fields are not part of the catalog, so they do not change its version.
    let mut restocked = base;
    restocked.gifts[0].stock += 1;
    restocked.gifts[0].per_user += 1;
    assert_eq!(a.version, build(&restocked).version);
}

#[test]
fn compressed_variants_decode_to_the_json() {
    let cat = build(&campaign());
    let json = &cat.json().bytes;
    let gz = cat.file(&format!("catalog.{}.json.gz", cat.version)).expect("gz");
    let br = cat.file(&format!("catalog.{}.json.br", cat.version)).expect("br");
    assert_eq!(&gunzip(&gz.bytes), json);
    assert_eq!(&unbrotli(&br.bytes), json);
    assert!(gz.bytes.len() < json.len() && br.bytes.len() < json.len());
}

#[test]
fn json_holds_the_public_fields_in_campaign_order() {
    let c = campaign();
    let cat = build(&c);
    let doc = json_value(&cat.json().bytes);
    assert_eq!(doc["format"], 1);
    assert_eq!(doc["campaign_id"], "spring-2027");
    assert_eq!(doc["title"], c.title.as_str());
    let games = doc["games"].as_array().expect("games");
    assert_eq!(games.len(), c.games.len());
    assert_eq!(games[0], serde_json::json!({"id": "lantern-heroes", "name": "Lantern Heroes"}));
    let gifts = doc["gifts"].as_array().expect("gifts");
    let ids: Vec<&str> = gifts.iter().map(|g| g["id"].as_str().expect("id")).collect();
    let want: Vec<&str> = c.gifts.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, want);
    assert_eq!(
        gifts[2],
        serde_json::json!({
            "id": "lh-legend",
            "game_id": "lantern-heroes",
            "title": "Lantern Heroes legendary mount",
            "audience": "active",
            "items": [{"item": "legend-mount", "count": 1}],
            "value_cents": 68800,
            "high_value": true,
            "min_role_level": 30,
            "regions": ["cn-south", "cn-north"],
        })
    );
    assert_eq!(gifts[0]["min_role_level"], Value::Null);
    assert_eq!(gifts[0]["regions"], serde_json::json!([]));
}

/// Allowlist: every object in the catalog has exactly the public keys, and none of the private
/// values (stock, limits, keys, endpoints, capacities) appear anywhere in any file.
#[test]
fn nothing_private_is_published() {
    // Private numbers set to sentinels that cannot occur by chance in the public part.
    let mut c = campaign();
    for g in &mut c.gifts {
        g.stock = 987_654_321;
        g.per_user = 97_531;
    }
    for g in &mut c.games {
        g.delivery_capacity_per_s = 86_420;
        g.idip_timeout_ms = 75_319;
    }
    let cat = build(&c);
    let doc = json_value(&cat.json().bytes);

    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect::<BTreeSet<_>>()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(keys(&doc), set(&["format", "campaign_id", "title", "games", "gifts"]));
    for g in doc["games"].as_array().expect("games") {
        assert_eq!(keys(g), set(&["id", "name"]));
    }
    let gift_keys = set(&[
        "id",
        "game_id",
        "title",
        "audience",
        "items",
        "value_cents",
        "high_value",
        "min_role_level",
        "regions",
    ]);
    for g in doc["gifts"].as_array().expect("gifts") {
        assert_eq!(keys(g), gift_keys);
    }

    let secret = String::from_utf8(c.auth.ticket_keys[0].secret.clone()).expect("utf-8 secret");
    let mut forbidden: Vec<String> = [
        "stock",
        "per_user",
        "secret",
        "ticket",
        "key",
        "idip",
        "http",
        "127.0.0.1",
        "capacity",
        "timeout",
        "budget",
        "coupons_per_user",
        "limits",
        "channels",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    forbidden.push(secret);
    forbidden.push(c.auth.ticket_keys[0].id.clone());
    forbidden.extend(["987654321", "97531", "86420", "75319"].map(String::from));
    for file in [cat.json(), cat.manifest()] {
        let text = String::from_utf8(file.bytes.clone()).expect("utf-8");
        for word in &forbidden {
            assert!(!text.contains(word.as_str()), "{} contains {word:?}", file.name);
        }
    }
}

fn read_dir_sorted(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().into_string().expect("utf-8 name");
            let bytes = std::fs::read(e.path()).expect("read file");
            (name, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn writing_twice_gives_identical_files() {
    let cat = build(&campaign());
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    write(&cat, a.path()).expect("write a");
    write(&build(&campaign()), &b.path().join("nested/out")).expect("write b");
    let files_a = read_dir_sorted(a.path());
    let files_b = read_dir_sorted(&b.path().join("nested/out"));
    assert_eq!(files_a, files_b);
    // Exactly the four files: no temporaries left behind.
    assert_eq!(files_a.len(), 4);
    for f in &cat.files {
        let on_disk = files_a.iter().find(|(n, _)| n == &f.name).expect("file written");
        assert_eq!(on_disk.1, f.bytes);
    }
}

#[test]
fn a_new_version_keeps_the_old_files_and_moves_the_manifest() {
    let base = campaign();
    let old = build(&base);
    let mut changed = base;
    changed.gifts[1].title = "Lantern Heroes grand festival bundle".to_string();
    let new = build(&changed);
    assert_ne!(old.version, new.version);

    let dir = tempfile::tempdir().expect("tempdir");
    write(&old, dir.path()).expect("write old");
    write(&new, dir.path()).expect("write new");
    let files = read_dir_sorted(dir.path());
    assert_eq!(files.len(), 7, "3 hashed files per version + one manifest");
    for cat in [&old, &new] {
        for f in cat.files.iter().filter(|f| f.immutable) {
            assert!(files.iter().any(|(n, b)| n == &f.name && b == &f.bytes), "{}", f.name);
        }
    }
    let manifest = std::fs::read(dir.path().join(MANIFEST_NAME)).expect("manifest");
    assert_eq!(manifest, new.manifest().bytes);
    assert_eq!(json_value(&manifest)["version"], new.version.as_str());
}

#[test]
fn catalog_lookup_helpers() {
    let cat: Catalog = build(&campaign());
    assert!(cat.file("nope.json").is_none());
    assert_eq!(cat.json().name, format!("catalog.{}.json", cat.version));
    assert_eq!(cat.manifest().name, MANIFEST_NAME);
}
