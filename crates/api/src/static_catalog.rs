//! The static catalog held in memory, ready to serve: bytes, ETags and cache headers computed
//! once at startup, never per request. Files are looked up by exact name in a map, so no request
//! path ever reaches the filesystem.

use std::collections::HashMap;
use std::fmt;

use axum::http::HeaderValue;
use bytes::Bytes;
use hongbao_catalog::Catalog;
use hongbao_domain::Campaign;
use sha2::{Digest, Sha256};

/// Hashed files never change: a year (the longest max-age caches honour) and `immutable`.
pub const IMMUTABLE_MAX_AGE_S: u32 = 31_536_000;
/// The manifest names the current version; clients see a new version within this time.
pub const MANIFEST_MAX_AGE_S: u32 = 5;
/// Hex characters of the SHA-256 of a file's bytes kept in its ETag (128 bits).
const ETAG_HEX_LEN: usize = 32;

/// One file ready to serve.
#[derive(Clone)]
pub(crate) struct StaticFile {
    pub(crate) bytes: Bytes,
    /// Quoted strong tag of these exact bytes (variants of one resource have different tags).
    pub(crate) etag: HeaderValue,
    pub(crate) content_type: HeaderValue,
    pub(crate) content_encoding: Option<HeaderValue>,
    pub(crate) cache_control: HeaderValue,
}

/// The catalog of the running campaign, served under `/static/catalog/`.
pub struct CatalogStore {
    version: String,
    files: HashMap<String, StaticFile>,
    json_name: String,
    gzip_name: String,
    br_name: String,
}

impl CatalogStore {
    /// Builds the campaign's catalog in memory.
    pub fn from_campaign(campaign: &Campaign) -> CatalogStore {
        CatalogStore::new(hongbao_catalog::build(campaign))
    }

    pub fn new(catalog: Catalog) -> CatalogStore {
        let files = catalog
            .files
            .into_iter()
            .map(|f| {
                let mut tag = hex::encode(Sha256::digest(&f.bytes));
                tag.truncate(ETAG_HEX_LEN);
                let cache_control = if f.immutable {
                    format!("public, max-age={IMMUTABLE_MAX_AGE_S}, immutable")
                } else {
                    format!("public, max-age={MANIFEST_MAX_AGE_S}")
                };
                let file = StaticFile {
                    bytes: Bytes::from(f.bytes),
                    etag: header(format!("\"{tag}\"")),
                    content_type: HeaderValue::from_static(f.content_type),
                    content_encoding: f.content_encoding.map(HeaderValue::from_static),
                    cache_control: header(cache_control),
                };
                (f.name, file)
            })
            .collect::<HashMap<_, _>>();
        let store = CatalogStore {
            json_name: hongbao_catalog::json_name(&catalog.version),
            gzip_name: hongbao_catalog::gzip_name(&catalog.version),
            br_name: hongbao_catalog::br_name(&catalog.version),
            version: catalog.version,
            files,
        };
        for name in [&store.json_name, &store.gzip_name, &store.br_name] {
            assert!(store.files.contains_key(name), "catalog lacks {name}");
        }
        assert!(store.files.contains_key(hongbao_catalog::MANIFEST_NAME), "catalog lacks manifest");
        store
    }

    /// The catalog version clients must render with (`catalog_version` in gift lists).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Name of the uncompressed catalog JSON, the file that is content-negotiated.
    pub fn json_name(&self) -> &str {
        &self.json_name
    }

    /// Every file's name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.files.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub(crate) fn get(&self, name: &str) -> Option<&StaticFile> {
        self.files.get(name)
    }

    pub(crate) fn gzip(&self) -> &StaticFile {
        &self.files[&self.gzip_name]
    }

    pub(crate) fn br(&self) -> &StaticFile {
        &self.files[&self.br_name]
    }
}

impl fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.files.keys().collect();
        names.sort();
        f.debug_struct("CatalogStore")
            .field("version", &self.version)
            .field("files", &names)
            .finish()
    }
}

fn header(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("ETag and Cache-Control values are ASCII")
}
