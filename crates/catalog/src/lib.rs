//! The static catalog: the public part of a campaign compiled offline into content-hashed files.
//!
//! The API never sends gift details, only gift ids in order; clients render them from these
//! files. Because each file's name carries the hash of its content, a CDN can cache it forever
//! (`immutable`) and take the read load of the whole campaign; only the small `manifest.json`,
//! which names the current version, is cached briefly.
//!
//! What goes in is an allowlist (the `Public*` structs below): ids, names, titles, items,
//! audience, value, high-value flag and role/region requirements. Stock counts, per-user limits,
//! ticket keys, IDIP endpoints and capacities never do — adding a field here publishes it.
//!
//! [`build`] is pure (same campaign, same bytes: key order comes from the structs, gifts and
//! games keep campaign order, gzip has a zero mtime); [`write`] puts the files on disk atomically.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use hongbao_domain::Campaign;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Version of the catalog's JSON layout, written into every catalog as `format`. Clients key
/// their parsing on it: changing the layout (renaming or removing a field) means bumping it.
pub const FORMAT: u32 = 1;
/// Name of the manifest, the one mutable file: it names the current version.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Hex characters of the SHA-256 of the catalog JSON kept as its version (64 bits: collisions
/// among one campaign's handful of versions are not a concern, and names stay short).
pub const VERSION_HEX_LEN: usize = 16;
/// Brotli quality (0..=11). The catalog is built once offline and is a few KiB: take the best.
const BROTLI_QUALITY: i32 = 11;
/// Brotli window, log2 bytes; 22 (4 MiB) is the format's usual default and covers the catalog.
const BROTLI_LG_WINDOW: i32 = 22;

pub const CONTENT_TYPE_JSON: &str = "application/json";

/// One file of the catalog, ready to be written to disk or served from memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogFile {
    pub name: String,
    pub bytes: Vec<u8>,
    /// Media type of the *decoded* content: always `application/json`. Precompressed variants
    /// carry `content_encoding` instead of a type of their own, exactly as a CDN or object store
    /// would serve them, so a client that fetches `catalog.<v>.json.br` directly gets JSON.
    pub content_type: &'static str,
    /// `Some("gzip")` / `Some("br")` for the precompressed variants.
    pub content_encoding: Option<&'static str>,
    /// The name carries the content hash: the file never changes and may be cached forever.
    pub immutable: bool,
}

/// A built catalog: the JSON, its `.gz` and `.br` variants, and the manifest (last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// First [`VERSION_HEX_LEN`] hex characters of the SHA-256 of the canonical JSON.
    pub version: String,
    pub files: Vec<CatalogFile>,
}

impl Catalog {
    pub fn file(&self, name: &str) -> Option<&CatalogFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The uncompressed catalog JSON (the bytes the version is the hash of).
    pub fn json(&self) -> &CatalogFile {
        self.file(&json_name(&self.version)).expect("a built catalog always holds its JSON")
    }

    pub fn manifest(&self) -> &CatalogFile {
        self.file(MANIFEST_NAME).expect("a built catalog always holds its manifest")
    }
}

/// `catalog.<version>.json`
pub fn json_name(version: &str) -> String {
    format!("catalog.{version}.json")
}

/// `catalog.<version>.json.gz`
pub fn gzip_name(version: &str) -> String {
    format!("catalog.{version}.json.gz")
}

/// `catalog.<version>.json.br`
pub fn br_name(version: &str) -> String {
    format!("catalog.{version}.json.br")
}

// ---------------------------------------------------------------------------------------------
// Published layout. WARNING: these structs are what clients parse; field names and order are the
// contract (and the order feeds the content hash). Renaming or removing a field breaks clients:
// bump FORMAT. Adding a field publishes it: never add anything private.

#[derive(Serialize)]
struct PublicCatalog<'a> {
    format: u32,
    campaign_id: &'a str,
    title: &'a str,
    games: Vec<PublicGame<'a>>,
    gifts: Vec<PublicGift<'a>>,
}

#[derive(Serialize)]
struct PublicGame<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct PublicGift<'a> {
    id: &'a str,
    game_id: &'a str,
    title: &'a str,
    audience: &'static str,
    items: Vec<PublicItem<'a>>,
    value_cents: u64,
    high_value: bool,
    /// `null` when the gift has no role-level requirement.
    min_role_level: Option<u32>,
    /// Empty means every region.
    regions: &'a [String],
}

#[derive(Serialize)]
struct PublicItem<'a> {
    item: &'a str,
    count: u32,
}

#[derive(Serialize)]
struct Manifest<'a> {
    campaign_id: &'a str,
    version: &'a str,
    files: ManifestFiles,
}

#[derive(Serialize)]
struct ManifestFiles {
    json: String,
    gzip: String,
    br: String,
}

// ---------------------------------------------------------------------------------------------

/// Compiles the campaign's public part. Pure: the same campaign gives the same bytes.
pub fn build(campaign: &Campaign) -> Catalog {
    let public = PublicCatalog {
        format: FORMAT,
        campaign_id: &campaign.id,
        title: &campaign.title,
        games: campaign.games.iter().map(|g| PublicGame { id: &g.id, name: &g.name }).collect(),
        gifts: campaign
            .gifts
            .iter()
            .map(|g| PublicGift {
                id: &g.id,
                game_id: &campaign.game(g.game).id,
                title: &g.title,
                audience: g.audience.as_str(),
                items: g
                    .items
                    .iter()
                    .map(|it| PublicItem { item: &it.item, count: it.count })
                    .collect(),
                value_cents: g.value_cents,
                high_value: g.high_value,
                min_role_level: g.min_role_level,
                regions: &g.regions,
            })
            .collect(),
    };
    let json = serde_json::to_vec(&public).expect("serializing plain structs cannot fail");
    let version = content_version(&json);
    let gz = gzip(&json);
    let br = brotli(&json);

    let manifest = Manifest {
        campaign_id: &campaign.id,
        version: &version,
        files: ManifestFiles {
            json: json_name(&version),
            gzip: gzip_name(&version),
            br: br_name(&version),
        },
    };
    let manifest = serde_json::to_vec(&manifest).expect("serializing plain structs cannot fail");

    let files = vec![
        CatalogFile {
            name: json_name(&version),
            bytes: json,
            content_type: CONTENT_TYPE_JSON,
            content_encoding: None,
            immutable: true,
        },
        CatalogFile {
            name: gzip_name(&version),
            bytes: gz,
            content_type: CONTENT_TYPE_JSON,
            content_encoding: Some("gzip"),
            immutable: true,
        },
        CatalogFile {
            name: br_name(&version),
            bytes: br,
            content_type: CONTENT_TYPE_JSON,
            content_encoding: Some("br"),
            immutable: true,
        },
        CatalogFile {
            name: MANIFEST_NAME.to_string(),
            bytes: manifest,
            content_type: CONTENT_TYPE_JSON,
            content_encoding: None,
            immutable: false,
        },
    ];
    Catalog { version, files }
}

/// First [`VERSION_HEX_LEN`] hex characters of the SHA-256 of `bytes`.
fn content_version(bytes: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(bytes));
    hex.truncate(VERSION_HEX_LEN);
    hex
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // mtime 0 and no file name: the header carries nothing that changes between builds.
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(data.len() / 2), flate2::Compression::best());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: BROTLI_LG_WINDOW,
        size_hint: data.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(data.len() / 2);
    brotli::BrotliCompress(&mut &data[..], &mut out, &params)
        .expect("compressing from a slice into a Vec cannot fail");
    out
}

/// Writes the catalog into `out_dir` (created if missing). Each file is written to a temporary
/// name, synced and renamed, so a reader (or a CDN origin pull) never sees half a file. The
/// hashed files go first and the manifest last: a manifest on disk only ever names files that
/// are already complete. Older versions' files are kept, because clients and CDN edges holding
/// an older manifest may still ask for them.
pub fn write(catalog: &Catalog, out_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(out_dir)?;
    for file in catalog.files.iter().filter(|f| f.immutable) {
        write_atomic(out_dir, &file.name, &file.bytes)?;
    }
    sync_dir(out_dir)?;
    for file in catalog.files.iter().filter(|f| !f.immutable) {
        write_atomic(out_dir, &file.name, &file.bytes)?;
    }
    sync_dir(out_dir)
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    assert!(
        !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.'),
        "catalog file names are plain names: {name:?}"
    );
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes the renames durable (a directory entry is data too). A no-op where directories cannot
/// be opened as files.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}
